/* spare.h - the log's next segment, created, preallocated and made durable
 * ahead of time on a thread of its own.
 *
 * Used only with VSR_SPARE=1 (storage_durable.c, spare_wanted: the worst
 * client latency was higher with it, for a reason not found yet).
 *
 * Why: creating a 64 MiB segment (open, posix_fallocate, fdatasync of the
 * file, fsync of the directory) took 0.64 ms (median; up to 2.6 ms) at
 * every rotation, on the log's writer thread, so no persist completed
 * meanwhile; and the three
 * replicas of a cluster, whose logs are identical, rotate at nearly the same
 * moment (issue 8's checkpoint benchmark, about every 16 s). With a spare
 * ready, a rotation writes the old segment's end record, syncs it, and
 * switches to the spare's file descriptor.
 *
 * Happy path: the writer asks for the spare of its next segment under its
 * final name (vsr_spare_prepare); the thread opens it with O_TRUNC,
 * preallocates it, fdatasyncs it and fsyncs the directory, and only then
 * holds it ready. At the rotation the writer takes it (vsr_spare_take),
 * waiting if it is still being made. Nothing is written into a spare before
 * it is taken, so it reads as zeros until the writer's records arrive.
 *
 * Failure modes: a failed open, preallocation or sync is kept (errno and
 * which step) and handed to the writer at the rotation, which decides (the
 * durable backend: ENOSPC and EDQUOT create the segment inline, as before
 * spares existed; anything else stops the replica). A crash at any step
 * leaves a file under the name of the segment after the log's end, all
 * zeros or short: a restart removes every segment after the log's end
 * (storage_durable.c, writer_resume), so a spare is never read as entries.
 *
 * Thread use: prepare and take from the writer's owner (one thread at a
 * time); the I/O through the storage's injectable layer (vsr_storage_io),
 * on this thread. */
#ifndef VSR_SPARE_H
#define VSR_SPARE_H

#include "vsr_storage.h"

#include <stdint.h>

typedef struct vsr_spare vsr_spare;

/* A spare maker for files in directory dirfd (kept open by the caller until
 * vsr_spare_stop), doing its I/O through io (copied). NULL when out of
 * memory or threads: the caller then creates every segment itself. */
vsr_spare *vsr_spare_start(int dirfd, const vsr_storage_io *io);

/* Asks for file `name` (in dirfd) of `cap` bytes, created anew (O_TRUNC),
 * preallocated and durable, name included. A spare not yet taken is
 * dropped (its file stays: the caller's to reuse or remove). */
void vsr_spare_prepare(vsr_spare *s, const char *name, uint64_t cap);

/* The outcome of vsr_spare_take. */
typedef struct vsr_spare_result {
	int fd;                /* >= 0: the spare, durable; the caller owns it */
	int err;               /* fd < 0: the errno of a failed preparation, or 0
				* when none of this name and size was asked */
	const char *step;      /* with err: "create", "preallocate" or "sync" */
} vsr_spare_result;

/* Takes the spare `name` of at least `cap` bytes, waiting while it is
 * being made. A spare of another name or a smaller size is dropped (its
 * file stays) and the result is fd -1, err 0: the caller creates it.
 * A preparation that failed is reported once, here. */
vsr_spare_result vsr_spare_take(vsr_spare *s, const char *name, uint64_t cap);

/* Whether no preparation is asked or running (tests). */
bool vsr_spare_idle(vsr_spare *s);

/* Stops after the step in progress and frees s; a spare not taken is
 * closed and its file stays (a restart removes it). */
void vsr_spare_stop(vsr_spare *s);

#endif
