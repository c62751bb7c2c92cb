/* vsrh_store_sync.h - durable checkpoints of the LMDB store without a stall.
 *
 * A checkpoint's commit runs without a sync; a thread (the syncer) then
 * syncs data.mdb and records, in the file `synced` next to the environment,
 * which LMDB transaction is durable. The next commit waits for that (an
 * interval away), so LMDB's older meta page always names a transaction
 * that is durable and whose pages LMDB has not reused (LMDB never reuses a
 * page of the snapshot before the newest). After a power cut the newest
 * meta page may have reached the disk before the pages it points to: when
 * the machine has rebooted since and the newest transaction is not the one
 * `synced` names, vsrh_store_settle_dir rolls the environment back to the
 * older meta page before anything reads it. docs/storage.md, "Checkpoints
 * without a stall". */
#ifndef VSRH_STORE_SYNC_H
#define VSRH_STORE_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#define VSRH_BOOT_ID_LEN 40

/* Stops the replica (exit 74) with a sentence: a storage failure. It names
 * the store's directory last given to vsrh_store_fatal_names (a replica
 * process has one store), e.g. "vsr.store: LMDB checkpoint commit failed:
 * the disk is full (no space left on device) (vsr.store in
 * data/kv/replica-2/store); this replica stops (exit 74)". */
void vsrh_store_fatal(const char *what, int rc);
void vsrh_store_fatal_names(const char *dir);
const char *vsrh_store_fatal_dir(void); /* "" before any; async-signal-safe */

/* Called on the syncer's thread when checkpoint `op` is durable. */
typedef void (*vsrh_store_durable_fn)(void *arg, uint64_t op);

/* What the syncer did so far, for metrics (all zero: it never started). */
typedef struct vsrh_sync_figures {
	uint64_t syncs;        /* checkpoints made durable by the thread */
	uint64_t last_sync_ns; /* how long the last one took */
	uint64_t waits;        /* commits that found the previous sync running */
	uint64_t wait_ns;      /* the time they waited, in all */
	uint64_t held;         /* writes held while a sync ran (vsrh_overlay.h), in all */
	uint64_t deferred;     /* checkpoints whose commit waited for the replica's turn */
	uint64_t step_last_ns; /* how long the last checkpoint's commit (the step) held the loop */
	uint64_t off_loop;     /* commits made on the syncer's thread, in all */
	uint64_t commit_last_ns; /* how long the last of them took there */
	bool last_off_loop;    /* the last checkpoint's commit was one of them */
	uint64_t cleanings;    /* write-backs between checkpoints (vsrh_syncer_clean), ended */
	uint64_t cleanings_begun; /* ... and begun */
} vsrh_sync_figures;

typedef struct vsrh_syncer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started, stop, busy;
	bool cleaning;           /* the job in flight (busy) is a cleaning, not a sync */
	MDB_env *env;            /* what to sync (busy) */
	uint64_t txnid, op;      /* the commit being synced and its checkpoint */
	uint64_t synced_op;      /* the last checkpoint the thread made durable (under mu) */
	uint64_t used;           /* bytes of data.mdb in use (written back in slices) */
	uint64_t budget_ns;      /* how long the slices may be paced over */
	uint64_t started_at;     /* when the last sync was started (mono ns) */
	unsigned slot, slots;    /* this replica's turn of the replicas' (stagger) */
	bool hurry;              /* someone waits for the sync: no more pauses */
	uint64_t delay_ns;       /* this sync's turn: how long it waits to start */
	uint64_t late_ns;        /* this sync's checkpoint was committed this long
				  * after its take (the step's turn) */
	MDB_txn *commit;         /* the job's commit, still to be made on the
				  * thread (vsrh_syncer_start); NULL: made */
	_Atomic uint64_t commits; /* commits made on the thread, in all */
	uint64_t commit_last_ns; /* how long the last of them took */
	int synced_fd;           /* the `synced` file, open */
	char boot[VSRH_BOOT_ID_LEN];
	vsrh_store_durable_fn notify;
	void *notify_arg;
	/* Figures (metrics): written under mu. `syncs` is atomic as well: the
	 * store reads it after every operation (vsrh_syncer_syncs), without mu. */
	_Atomic uint64_t syncs;  /* checkpoints made durable by the thread */
	uint64_t last_sync_ns;   /* how long the last one took */
	uint64_t waits;          /* commits that found the previous sync running */
	uint64_t wait_ns;        /* the time they waited, in all */
	uint64_t cleanings;      /* cleanings ended */
	uint64_t cleanings_begun; /* cleanings begun */
	_Atomic uint64_t ended;  /* jobs ended, syncs and cleanings (vsrh_syncer_ended) */
} vsrh_syncer;

/* The boot id of the running kernel (a new one at every boot), or of the
 * environment variable VSRH_BOOT_ID when set (tests that pretend a reboot). */
void vsrh_boot_id(char out[VSRH_BOOT_ID_LEN]);

/* Opens (creating) `dir`/synced for the syncer. 0, or an errno. */
int vsrh_syncer_init(vsrh_syncer *s, const char *dir);
/* Waits for the sync in flight and stops the thread. */
void vsrh_syncer_close(vsrh_syncer *s);
/* Waits until no sync is in flight. */
void vsrh_syncer_wait(vsrh_syncer *s);
/* Its figures, read under its lock. */
vsrh_sync_figures vsrh_syncer_figures(vsrh_syncer *s);
/* Its count of syncs ended (figures.syncs), read without the lock: what
 * the store asks after every operation while pages a sync cleaned are made
 * writable again (vsrh_store_touch.h). A count read here is one the thread
 * reached after its sync's last write (acquire). */
uint64_t vsrh_syncer_syncs(const vsrh_syncer *s);
/* Its count of jobs ended, syncs and cleanings, read the same way after
 * every operation while writes are held: once it has moved past the count
 * the job began at, its last write is done and the map may be written. */
uint64_t vsrh_syncer_ended(const vsrh_syncer *s);
/* Starts syncing env (its newest commit, checkpoint `op`, committed late_ns
 * after its take) on the thread; waits first for one in flight. With
 * `commit` (a write transaction of env, handed over: the caller touches it
 * no more), the thread commits it first and then syncs that commit (its
 * `used` computed there; the argument is ignored), and counts the commit
 * (vsrh_syncer_commits) before anything else. 0, or an errno (no thread). */
int vsrh_syncer_start(vsrh_syncer *s, MDB_env *env, uint64_t op, uint64_t used,
		      uint64_t late_ns, uint64_t *ended, MDB_txn *commit);
/* Commits made on the thread so far, read without the lock (acquire: the
 * commit's effects are visible to a caller that sees it counted). */
uint64_t vsrh_syncer_commits(const vsrh_syncer *s);
/* Waits until the thread has made `n` commits in all. */
void vsrh_syncer_commit_wait(vsrh_syncer *s, uint64_t n);
/* Bytes of env's data file in use: pages up to the last committed one. */
size_t vsrh_env_used(MDB_env *env);
/* A cleaning: writes back the dirty pages of env's first `used` bytes in
 * paced slices over at most budget_ns, with no fdatasync and no record.
 * What it writes is not durable and need not be: pages of the write
 * transaction in progress, which no meta page names yet. It is there for
 * the kernel's flusher, which otherwise writes a map never synced for 30 s
 * in one unpaced burst (a checkpoint interval longer than that, or no
 * checkpoint since a bulk load: 40-100 ms stalls of the log's fdatasync
 * with 1,000,000 keys). Never waits: EBUSY when a job is in flight, else 0
 * (or an errno: no thread). *ended: the count of jobs ended before it
 * (vsrh_syncer_ended). The next sync or wait hurries it to its end. */
int vsrh_syncer_clean(vsrh_syncer *s, MDB_env *env, uint64_t used, uint64_t budget_ns,
		      uint64_t *ended);
/* Staggers this replica's syncs (slot of slots, the replica's index and the
 * replica count): replicas that share a disk then write back one after the
 * other rather than all at once. */
void vsrh_syncer_stagger(vsrh_syncer *s, unsigned slot, unsigned slots);
/* Syncs env now, on this thread, and records its newest commit (at open,
 * after an install). 0, or an errno. */
int vsrh_syncer_sync_now(vsrh_syncer *s, MDB_env *env, uint64_t op);

/* At open: makes env's newest commit durable (sync_now) unless `synced`
 * already names it. 0, or an errno. */
int vsrh_syncer_open_sync(vsrh_syncer *s, const char *dir, MDB_env *env);

/* Before anything opens the environment in `dir`/db: after a reboot, a
 * newest transaction that `synced` does not name may be torn; the older
 * meta page replaces it. Returns 0 (nothing to do, or rolled back: *rolled
 * says which) or -1 with a sentence in why. */
int vsrh_store_settle_dir(const char *dir, bool *rolled, char *why, size_t why_len);

/* What vsrh_store_settle_dir does, or would do, to an environment. */
typedef struct vsrh_store_rollback {
	bool due;            /* the newest transaction is rolled back to the older */
	bool synced_damaged; /* because `synced` is damaged (else: it does not name the
			      * newest, and the machine rebooted or a sync failed since) */
	uint64_t from_txn;   /* the newest transaction */
	uint64_t to_txn;     /* the older one, opened after the rollback */
	unsigned meta;       /* the meta page (0 or 1) that holds the newest */
	uint32_t psize;      /* the file's page size */
} vsrh_store_rollback;

/* Read only: whether a start would roll back the environment in env_dir
 * (the directory holding data.mdb; `dir`/db for the store in `dir`, whose
 * `synced` and the running kernel's boot id decide). Changes nothing, so
 * that `vsrhost --check-store` can say what the next start does. */
void vsrh_store_rollback_judge(const char *dir, const char *env_dir, vsrh_store_rollback *rb);
/* "FILE back from transaction N (why) to M": the rollback rb (due), of the
 * LMDB file `file` of the store in `dir`. */
void vsrh_store_rollback_why(const vsrh_store_rollback *rb, const char *dir, const char *file,
			     char *why, size_t why_len);
/* In this process only, makes an environment opened read-only on `file`
 * (no transaction begun yet), whose map is map_len bytes at `map`, read
 * the transaction the rollback rb (due) opens: its meta pages are mapped
 * again privately (copy on write: nothing reaches the file) and the older
 * one copied over the newest, as vsrh_store_settle_dir does on disk. LMDB
 * 0.9.24 has no MDB_PREVSNAPSHOT. 0, or -1 with a sentence in why. */
int vsrh_store_rollback_map(uint8_t *map, size_t map_len, const char *file,
			    const vsrh_store_rollback *rb, char *why, size_t why_len);

#endif /* VSRH_STORE_SYNC_H */
