/* reaper.h - removes files that are no longer needed (log segments behind
 * a durable checkpoint) a slice at a time, on a thread of its own.
 *
 * Why: unlinking a 64 MiB preallocated segment frees all its blocks in one
 * journal transaction (with the `discard` mount option, one large discard
 * too). On the log's writer thread that took 17-19 ms, during which no
 * persist completed; and the journal commit it forced delayed the other
 * replicas' fdatasyncs on the same disk by 8-11 ms (perf trace, issue 8's
 * checkpoint benchmark). The reaper shrinks a file by VSR_REAP_SLICE at a
 * time with a pause between, then unlinks what is left: each step frees
 * little.
 *
 * A file handed over has already been renamed out of the log's namespace
 * (the caller's business): a crash half way leaves a shorter file under
 * that name, which the next start hands over again. */
#ifndef VSR_REAPER_H
#define VSR_REAPER_H

#include <stdbool.h>

#define VSR_REAP_SLICE (4u << 20) /* bytes freed per step */
#define VSR_REAP_PAUSE_MS 10u     /* between two steps */

typedef struct vsr_reaper vsr_reaper;

/* A reaper for files in directory dirfd (kept open by the caller until
 * vsr_reaper_stop). NULL when out of memory or threads. */
vsr_reaper *vsr_reaper_start(int dirfd);
/* Hands over file `name` (in dirfd). Returns 0, or -1 when out of memory
 * (the caller then unlinks it itself). */
int vsr_reaper_add(vsr_reaper *r, const char *name);
/* Whether every file handed over is gone (tests). */
bool vsr_reaper_idle(vsr_reaper *r);
/* Returns once every file handed over is gone, removed from now on without
 * pauses: for a writer that found the disk full while space it gave up is
 * still being freed. */
void vsr_reaper_flush(vsr_reaper *r);
/* Stops after the step in progress and frees r; files not yet removed stay
 * (the next start hands them over again). */
void vsr_reaper_stop(vsr_reaper *r);

#endif
