/* vsrh_store.h - the host's ordered key-value store (vsr.store) inside one Lua state.
 *
 * Committed entries live either in LMDB (state machines whose whole state
 * is in the store) or in a Lua table (key -> msgpack-encoded value; state
 * machines with plain Lua state, whose snapshots carry the store). Writes of
 * the running operation go to a Lua table (key -> encoded value, or a
 * delete marker) that the host commits when apply returns and drops when it
 * fails. On LMDB, committed writes go into one long-lived write transaction;
 * a checkpoint commits it (with the checkpoint's op and the host's bytes),
 * so it costs the pages written since the last one, and keeps a read
 * transaction on it from which the checkpoint is served in chunks. get/has/put/delete are C functions, so the hot path
 * runs no Lua instructions of the host's own; scan and pairs are Lua on top
 * of them. The digest is a sum of per-entry hashes: independent of the
 * order entries were written, O(1) to keep up to date. Every function here
 * may raise Lua errors (allocation): call them in protected mode. */
#ifndef VSRH_STORE_H
#define VSRH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "vsr.h"
#include "vsrh_store_sync.h"

/* Store modes, set by the host around each call into the script. */
enum vsrh_store_mode {
	VSRH_STORE_CLOSED = 0, /* load time, snapshot hooks, policy: read-only */
	VSRH_STORE_APPLY = 1,  /* writes buffered, committed by the host */
	VSRH_STORE_QUERY = 2,  /* read-only */
	VSRH_STORE_DRY = 3,    /* apply run as a query: writes buffered, dropped */
};

typedef struct vsrh_lmdb vsrh_lmdb;

typedef struct vsrh_store {
	int ref_data;     /* committed entries */
	int ref_writes;   /* buffered writes */
	int ref_sorted;   /* committed keys in byte order, or LUA_NOREF */
	uint32_t nwrites; /* keys in the buffer */
	int64_t count;    /* committed keys */
	uint64_t digest;  /* sum of entry hashes */
	int mode;         /* enum vsrh_store_mode */
	vsrh_lmdb *db;    /* LMDB backend, or NULL: the Lua table */
	uint32_t checkpoint_interval; /* ops between checkpoints (0: unknown) */
	uint64_t op;      /* the operation whose writes are committed next */
} vsrh_store;

/* Creates the store in L and pushes the table of functions scripts see. */
void vsrh_store_open(lua_State *L, vsrh_store *s);
void vsrh_store_commit(lua_State *L, vsrh_store *s);
void vsrh_store_abort(lua_State *L, vsrh_store *s);

/* Appends the committed entries as a msgpack map in key byte order. */
int vsrh_store_write(lua_State *L, vsrh_store *s, vsr_buf *out);
/* Reads such a map at *pos and makes it the committed state. Returns 0, or
 * -1 with err filled and the store unchanged. */
int vsrh_store_read(lua_State *L, vsrh_store *s, const uint8_t *d, size_t len, size_t *pos,
		    char *err, size_t err_len);

/* Moves the (empty) store onto LMDB in `dir` (created if missing), or in a
 * scratch directory removed at close when dir is NULL. `durable`: commits
 * are fsync'ed; otherwise nothing is synced (memory durability). An
 * existing environment keeps its contents (vsrh_store_ckpt_open reads
 * them) unless `fresh` or not durable: then it is removed first.
 * disk_full(disk_full_arg) (NULL: none) is vsrh_store_on_disk_full's
 * hook, in place before the map's first reservation, made here.
 * Returns 0, or -1 with err. */
int vsrh_store_use_lmdb(vsrh_store *s, const char *dir, bool durable, bool fresh,
			bool (*disk_full)(void *arg), void *disk_full_arg, char *err, size_t err_len);
/* Durable: a checkpoint is made durable on a thread of the store's own;
 * fn(arg, op) is called there when checkpoint op is (vsr.h,
 * VSR_EVENT_CHECKPOINT_DURABLE). Returns the last checkpoint the thread
 * made durable before (0: none), which no call reported. */
uint64_t vsrh_store_on_durable(vsrh_store *s, void (*fn)(void *arg, uint64_t op), void *arg);
/* Replica slot of slots commits each checkpoint slot x turn_ns after taking
 * it (vsrh_sm_stagger), and writes it back in its own turn
 * (vsrh_syncer_stagger). */
void vsrh_store_stagger(vsrh_store *s, unsigned slot, unsigned slots, uint64_t turn_ns);
/* Before a full disk refuses the map's reservation: fn(arg) may free
 * space (vsrh_sm_on_disk_full; for the reservation at open, pass it to
 * vsrh_store_use_lmdb). */
void vsrh_store_on_disk_full(vsrh_store *s, bool (*fn)(void *arg), void *arg);
/* Commits the checkpoint waiting for this replica's turn once it has come
 * (after each operation, and from the host's tick). */
void vsrh_store_tick(vsrh_store *s);
/* Commits the checkpoint waiting for this replica's turn now, and waits
 * for a commit handed to the syncer's thread to be made and picked up:
 * reads then come from the next write transaction (tests, and anything
 * that needs the checkpoint committed). */
void vsrh_store_settle(vsrh_store *s);
/* Commits made in a turn so far; *op and *ns: the last one's checkpoint and
 * how long it took (for the host's log). */
uint64_t vsrh_store_turn_commits(const vsrh_store *s, uint64_t *op, uint64_t *ns);
/* The syncer's figures (zeros: a memory store, or none yet). */
vsrh_sync_figures vsrh_store_sync_figures(vsrh_store *s);
void vsrh_store_close(lua_State *L, vsrh_store *s);

/* Checkpoints of an LMDB store. The image is
 *   "VSRHCKP1" | u64 head_len | head | u64 count | count x (u32 klen | u32 vlen | key | value)
 * in key order; `head` is the host's (client table, plain state). Its digest
 * is XXH3-64 of everything before the records, seeded with the store's
 * order-independent digest, so it costs nothing to take and is checked on
 * install by summing the records received. */
int vsrh_store_ckpt_take(vsrh_store *s, vsr_checkpoint *cp, const uint8_t *head, size_t head_len);
int vsrh_store_ckpt_read(vsrh_store *s, const vsr_checkpoint *cp, uint64_t offset, uint32_t len,
			 vsr_buf *out);
int vsrh_store_ckpt_write(vsrh_store *s, const vsr_checkpoint *cp, uint64_t offset,
			  const uint8_t *data, uint32_t len);
/* Verifies the fetched image, builds a fresh environment from it, calls
 * accept(arg, head) and, only when that succeeds, replaces the store. */
int vsrh_store_ckpt_install(lua_State *L, vsrh_store *s, const vsr_checkpoint *cp,
			    int (*accept)(void *arg, const uint8_t *head, size_t len), void *arg);
/* Restart: the checkpoint the environment holds (op 0: none) and its head. */
int vsrh_store_ckpt_open(vsrh_store *s, vsr_checkpoint *cp, vsr_buf *head);
/* Before a restart checks or opens the store in `dir` (the directory given
 * to vsrh_store_use_lmdb, which calls it too): an install that stopped
 * between its two renames is finished (next/ is complete and durable once
 * db/ has moved) or undone, and what a fetch or an install left (next/,
 * old/) removed, so that the check reads the environment the store will
 * open. */
void vsrh_store_settle_install(const char *dir);
/* Read only: the directory under `dir` whose environment the next start
 * opens, after vsrh_store_settle_install: "db", or "next" or "old" when an
 * install stopped between its two renames (finished, or undone). */
const char *vsrh_store_env_name(const char *dir);
/* The bytes of the pages the environment in `dir`/env_name uses (as its
 * newest meta page counts them, no more than its file; the file's
 * allocated blocks when LMDB cannot open it), 0 when there is none: about
 * what a check reads. Reads the meta pages only. */
uint64_t vsrh_store_used_bytes(const char *dir, const char *env_name);
/* Before a restart opens it: reads every record of the environment in `dir`
 * (the directory given to vsrh_store_use_lmdb) and checks them against its
 * checkpoint record, and that record against what the superblock names: a
 * checkpoint at min_op with entry checksum `checksum`, or a newer one
 * (min_op 0: none). 0: intact, or no environment at all; 1: damaged, with
 * a sentence in why; -1: could not be checked (out of memory). A damaged
 * page can also crash LMDB: run this in a process of its own
 * (src/cmd/vsrhost/host_verify.c). */
int vsrh_store_verify_dir(const char *dir, uint64_t min_op, uint64_t checksum, char *why,
			  size_t why_len);
/* The same on the environment in `dir`/env_name, read as it is after the
 * rollback rb when that is due (vsrh_store_rollback_map; NULL: none): what
 * the next start opens, with nothing written (vsrhost --check-store). */
int vsrh_store_verify_env(const char *dir, const char *env_name, const vsrh_store_rollback *rb,
			  uint64_t min_op, uint64_t checksum, char *why, size_t why_len);

#endif /* VSRH_STORE_H */
