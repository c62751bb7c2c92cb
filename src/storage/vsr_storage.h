/* vsr_storage.h - the replica's durable state behind an asynchronous interface.
 *
 * The core asks for durability with VSR_ACTION_PERSIST and expects a
 * VSR_EVENT_PERSISTED later. This interface is what the host calls to carry
 * that out: submit a persist (the storage copies everything it needs, since
 * the core's pointers die at its next step), then receive a completion
 * callback on the event loop, never inside vsr_storage_submit() itself.
 * Persists complete in the order they were submitted (vsr.h contract).
 *
 * Backends:
 *   memory   keeps nothing across processes (development and tests). See
 *            vsr_storage_load() for what a restart means there.
 *   durable  a checksummed, hash-chained write-ahead log in preallocated
 *            segments, written and fdatasync'ed on a worker thread with group
 *            commit (a lone persist on the loop thread, see inline_ok),
 *            and the superblock in two checksummed copies
 *            (storage_durable.c; the on-disk format is docs/storage.md).
 *
 * Lifecycle: open -> load (once) -> submit* -> close(cb). The storage owns a
 * libuv handle; its memory is released only in the close callback. */
#ifndef VSR_STORAGE_H
#define VSR_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "vsr.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vsr_storage_kind {
	VSR_STORAGE_MEMORY = 0,
	VSR_STORAGE_DURABLE = 1,
};

/* The durable backend's writes go through these, so that tests can make a
 * disk fail (ENOSPC, EIO, a failed fdatasync) at a chosen call. Each returns
 * what the system call would (-1 with errno set on failure). NULL members
 * (or a NULL vsr_storage_options.io) mean the real system calls. They run
 * on the storage's worker thread, or, with inline_ok, also on the loop
 * thread inside vsr_storage_flush(); never on both at once. fallocate and
 * fdatasync also run on the thread that makes the next log segment ahead
 * (spare.h), at the same time as the others. */
typedef struct vsr_storage_io {
	ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(void *ctx, int fd);
	int (*fallocate)(void *ctx, int fd, off_t off, off_t len);
	void *ctx;
} vsr_storage_io;

/* Persists accepted but not yet reported complete. The core issues one per
 * step that changed durable state, so a burst of messages read in one loop
 * iteration is a burst of persists: the host must apply backpressure (stop
 * reading) well below this bound. Beyond it submit fails with VSR_ETOOBIG. */
#define VSR_STORAGE_PENDING_MAX 16384u

typedef struct vsr_storage vsr_storage;

/* Called on the loop once persist `persist_id` is durable (status VSR_OK) or
 * has failed (negative status: the host must stop, durability is lost). */
typedef void (*vsr_storage_persisted_cb)(vsr_storage *s, uint64_t persist_id,
					 int status);
typedef void (*vsr_storage_close_cb)(vsr_storage *s);

typedef struct vsr_storage_options {
	uv_loop_t *loop;
	int kind;            /* enum vsr_storage_kind */
	const char *dir;     /* this replica's own directory; created if missing */
	uint64_t cluster;
	uint8_t replica;
	/* Discard whatever state the directory holds: the replica starts
	 * unjoined (vsr.h). It then catches up with the cluster's history as an
	 * amnesiac, or, when every replica is unjoined, a new history begins.
	 * The memory backend holds nothing anyway. */
	bool fresh;
	/* Durable backend, optional: asked by load, once the superblock and the
	 * log after it are verified and before anything is started, whether the
	 * state the caller keeps beside the log (vsr.store's environment) agrees
	 * with the superblock (it must hold the checkpoint the superblock names,
	 * or a newer one). 0: it does; > 0: it is damaged, why says why, and
	 * load resets the directory with the "unrecovered" mark as for a corrupt
	 * log, so the replica is repaired from the others; < 0: it could not be
	 * checked, load fails with why. Not asked when there is no state. */
	int (*check)(void *arg, const vsr_superblock *sb, char *why, size_t why_len);
	void *check_arg;
	vsr_storage_persisted_cb persisted_cb;
	void *data;          /* for the caller: vsr_storage_data() */
	/* Durable backend only. */
	uint64_t segment_size;     /* log segment bytes; 0: 64 MiB */
	const vsr_storage_io *io;  /* NULL: the real system calls */
	/* Durable backend, optional: asked on the loop at submit, while the
	 * writer thread is idle, whether this persist may wait for the next
	 * vsr_storage_flush() and be written and synced there, on the loop
	 * thread. That spares the two thread wake-ups of the writer's round
	 * trip (tens of microseconds each on an idle core), but holds the loop
	 * for one sync: say yes only when that delays nothing else (vsrhost:
	 * a lone request, see host_inline_ok). A caller that sets it calls
	 * vsr_storage_flush() once per loop iteration, before the loop waits
	 * and after that iteration's messages are sent. NULL: every persist
	 * goes to the writer thread. `data` is the data above. */
	bool (*inline_ok)(void *data, const vsr_persist *p);
} vsr_storage_options;

/* Counters for logs and metrics. */
typedef struct vsr_storage_stats {
	uint64_t persists;        /* completed */
	uint64_t entries;         /* entries written */
	uint64_t entry_bytes;     /* body bytes written */
	uint64_t truncations;
	uint64_t checkpoints;
	uint64_t checkpoint_bytes;
	uint64_t inline_groups;   /* groups written on the loop thread (inline_ok) */
	uint64_t segments_spare;  /* rotations into a segment made ahead (durable) */
	uint64_t segments_inline; /* rotations that had to create the segment */
	uint32_t pending;         /* submitted, not yet complete */
	uint32_t pending_max;     /* high-water mark of `pending` */
} vsr_storage_stats;

/* Opens (memory: sets up) the storage. Returns VSR_OK or a negative error with
 * a sentence in err. */
int vsr_storage_open(const vsr_storage_options *opts, vsr_storage **out,
		     char *err, size_t err_len);

/* What a restart must hand to vsr_replica_create(). *out is NULL when the
 * directory holds no valid state (empty, lost, unreadable): the replica
 * starts UNJOINED and the protocol decides (protocol.md "Joining"): it
 * catches up with the cluster's history as an amnesiac, taking part in no
 * quorum until a state transfer has given it the log back, or, when every
 * configured replica is unjoined, a new history begins. No marker file is
 * involved. Backends persist every superblock field, the history included.
 * On VSR_OK, err holds a note on what load found when it is not the plain
 * case (why a durable store came back unjoined), else "".
 *
 * Durable backend: NULL when no superblock was ever written (nothing was
 * ever acknowledged from this directory). Otherwise the superblock, the
 * checkpoint it names and the verified log after it, with a torn tail (past
 * the superblock's durable log end) cut. When a superblock, the checkpoint
 * or an entry that was durable fails its checksum, the directory is reset
 * with an "unrecovered" mark and the state comes back without a history
 * (unjoined): the replica is repaired from the others, never shortened
 * (docs/storage.md).
 *
 * Memory backend: always NULL. If every replica dies the data is gone; the
 * restarted cluster begins a new history and clients of the old one get a
 * HISTORY error for their sessions. The returned pointers stay valid until
 * vsr_storage_close(). */
int vsr_storage_load(vsr_storage *s, const vsr_durable **out, char *err,
		     size_t err_len);

/* Accepts `p` for writing and copies what it needs. The completion is
 * delivered later on the loop through persisted_cb, in submission order.
 * Returns VSR_OK, VSR_ETOOBIG when too many are pending, VSR_ENOMEM, or
 * VSR_EINVAL after close. */
int vsr_storage_submit(vsr_storage *s, const vsr_persist *p);

/* Stops the storage: pending completions are dropped (not reported), the
 * handles close and cb runs once everything is released. */
void vsr_storage_close(vsr_storage *s, vsr_storage_close_cb cb);

void *vsr_storage_data(const vsr_storage *s);
const vsr_storage_stats *vsr_storage_stats_get(const vsr_storage *s);
/* The last superblock submitted (what a durable backend would hold). */
const vsr_superblock *vsr_storage_superblock(const vsr_storage *s);
const char *vsr_storage_kind_name(int kind);

/* mkdir -p: every missing component of `path`, mode 0755, each one checked
 * to be a directory. 0, or an errno with the component it stopped at in
 * `at` (when given; the whole path for a path too long). Storage opens
 * its directory with it; vsrhost checks data_dir with it first, to report
 * a bad one as a config error. */
int vsr_storage_mkdirs(const char *path, char *at, size_t at_len);
/* The superblock a load of the durable directory `dir` would take (the
 * newer of its copies that pass their checksums), read only, nothing
 * locked: for tools on a stopped replica's directory (vsrhost
 * --check-store). *unrecovered: the directory carries the "unrecovered"
 * mark (a start resets it). 0, or -1 with a sentence in err. */
int vsr_storage_read_superblock(const char *dir, vsr_superblock *out, bool *unrecovered,
				char *err, size_t err_len);
/* A sentence saying why the storage failed (a persist reported a negative
 * status), naming the file and the system error; "" while all is well. */
const char *vsr_storage_error(const vsr_storage *s);
/* The host calls this once the core has left recovery or state transfer for
 * status normal. A durable backend that came up without its state (a corrupt
 * disk, returned as amnesia by load) keeps an "unrecovered" mark on disk
 * until then, so that a crash in between cannot make the disk look intact. */
void vsr_storage_recovered(vsr_storage *s);
/* Writes the persists held since the last call (vsr_storage_options.inline_ok)
 * on this thread, or hands them to the writer thread when it has started
 * writing meanwhile. Written here, they are reported through persisted_cb
 * before flush returns (after any earlier completions still waiting), and
 * flush returns true: the caller sends what those callbacks queued. A
 * persist submitted from inside those callbacks goes to the writer thread.
 * A no-op (false) when nothing is held. */
bool vsr_storage_flush(vsr_storage *s);
/* Space the log gave up but has not freed yet (pruned segments its reaper
 * still shrinks a slice at a time, with pauses: reaper.h) is freed now;
 * returns once it is, true when there was any. For another writer on the
 * same disk that found it full (vsr.store reserving room for its map),
 * before it gives up. Call on the loop's thread. The memory backend has
 * none (false). */
bool vsr_storage_reclaim(vsr_storage *s);

/* The configuration fingerprint recorded in the superblock: up to this many
 * u64 parts, opaque to storage (the host computes and compares them; a
 * replica must not replay its log under another configuration, see
 * docs/config.md "Changing the configuration"). */
#define VSR_STORAGE_CONFIG_MAX 16u
/* What the superblock load found records, copied to parts; returns how
 * many (0: none: no state, a superblock written by a build from before the
 * record, a reset directory, or the memory backend). Call after load and
 * before vsr_storage_set_config(). */
uint8_t vsr_storage_config(const vsr_storage *s, uint64_t parts[VSR_STORAGE_CONFIG_MAX]);
/* Sets the fingerprint every superblock written from now on records. Call
 * once, after load and before the first submit, when the host has decided
 * that the directory may be used under this configuration. A directory
 * whose superblock records other parts (or none) gets both copies written
 * again at once, so that an accepted change is on disk before anything runs
 * under it. Returns VSR_OK, or a negative status when that write failed
 * (vsr_storage_error() says why: stop, as for a failed persist). The memory
 * backend records nothing: VSR_OK. */
int vsr_storage_set_config(vsr_storage *s, const uint64_t *parts, uint8_t count);

#ifdef __cplusplus
}
#endif

#endif /* VSR_STORAGE_H */
