/* vsr_snapckpt.h - checkpoints for a state machine that serialises its whole
 * state (snapshot/restore): the sim's and the tests' machines, and Lua
 * machines that keep plain tables.
 *
 * It keeps in memory the images of the current and the previous checkpoint
 * (its "disk": a host keeps it across a simulated crash and drops it for
 * amnesia) and the image being fetched, and gives the core the checkpoint
 * callbacks of vsr.h over them. An image is
 *     u64 meta_len | meta (the core's client table) | snapshot
 * and its digest is XXH3-64 of the image. Install checks the digest, hands
 * the meta to the core, then restores; if restore fails the state before
 * it is put back (from a snapshot taken first), so an install changes
 * nothing unless it succeeds. Large state belongs in a state machine with
 * its own checkpoint callbacks (vsr.store on LMDB), not here. */
#ifndef VSR_SNAPCKPT_H
#define VSR_SNAPCKPT_H

#include <stdbool.h>

#include "vsr.h"

typedef struct vsr_snapckpt_image {
	vsr_checkpoint cp;
	uint8_t *data; /* cp.size bytes */
	bool pending;  /* taken, readable, not yet durable (async mode) */
} vsr_snapckpt_image;

typedef struct vsr_snapckpt {
	vsr_state_machine inner;     /* apply, snapshot, restore, digest, evict */
	vsr_snapckpt_image held[2];  /* current, previous */
	vsr_snapckpt_image staged;   /* being fetched */
	/* Optional: makes a new current image durable (a host that keeps them
	 * on disk), called before take returns (async mode: at
	 * vsr_snapckpt_sync) and after an install restored it. Returns VSR_OK or an error (take then fails; an install that
	 * cannot be made durable stops the process). */
	int (*persist)(void *arg, const vsr_snapckpt_image *im);
	void *persist_arg;
	/* inner.restore changes nothing when it fails: no undo snapshot needed
	 * (otherwise install takes one first and puts it back). */
	bool restore_atomic;
	/* Asynchronous durability (vsr.h checkpoint_take): a take returns
	 * VSR_PENDING and its image stays pending until vsr_snapckpt_sync
	 * (the host's syncer finished; persist is called then); a crash
	 * (vsr_snapckpt_crash) drops a pending image, so the state comes back
	 * to the last durable one. A take while one is pending syncs that one
	 * first, as a host that waits for the previous sync: at most one image
	 * is pending, and the previous one is durable. Install is synchronous. */
	bool async;
	uint64_t takes;  /* checkpoints taken */
	uint64_t waits;  /* takes that first had to sync a pending image */
} vsr_snapckpt;

/* `inner` must have snapshot and restore. */
void vsr_snapckpt_init(vsr_snapckpt *s, const vsr_state_machine *inner);
/* Points at a new inner state machine (a restart), keeping the images. */
void vsr_snapckpt_rebind(vsr_snapckpt *s, const vsr_state_machine *inner);
/* Makes (cp, data) the current image (read back from disk at a restart);
 * takes ownership of data (malloc'ed, cp->size bytes). */
void vsr_snapckpt_adopt(vsr_snapckpt *s, const vsr_checkpoint *cp, uint8_t *data);
/* Drops every image (a lost disk). */
void vsr_snapckpt_forget(vsr_snapckpt *s);
void vsr_snapckpt_free(vsr_snapckpt *s);
/* The state machine the core sees: inner's apply, snapshot, restore, digest
 * and evict (called with inner's ctx) and the checkpoint callbacks. */
void vsr_snapckpt_machine(vsr_snapckpt *s, vsr_state_machine *out);
/* The current checkpoint's image, or NULL (tests, tools). */
const vsr_snapckpt_image *vsr_snapckpt_current(const vsr_snapckpt *s);
/* Async mode: the op of the pending image (0: none). */
uint64_t vsr_snapckpt_pending(const vsr_snapckpt *s);
/* The op of the newest durable image (0: none). */
uint64_t vsr_snapckpt_durable_op(const vsr_snapckpt *s);
/* Makes the pending image durable (persist is called); returns VSR_OK
 * (also when none is pending) or persist's error (it stays pending). */
int vsr_snapckpt_sync(vsr_snapckpt *s);
/* A crash: a pending image is lost, the previous (durable) one is current
 * again, and an image being fetched is gone. */
void vsr_snapckpt_crash(vsr_snapckpt *s);

#endif /* VSR_SNAPCKPT_H */
