/* vsrh_lua.h - a Lua 5.4 state machine hosted in a deterministic sandbox.
 *
 * A vsrh_sm owns one lua_State running one state-machine script
 * (docs/statemachines.md) and, optionally, one dedup policy script. It is
 * what the protocol core sees as a vsr_state_machine: operations and replies
 * are msgpack bytes; the host converts them to and from Lua values, calls the
 * script's apply(op, ctx) under an instruction and a memory budget, commits
 * the key-value store's buffered writes when apply returns, and rolls the
 * state back when apply fails, identically on every replica.
 *
 * Happy path: vsrh_sm_create -> vsrh_sm_bind -> (the core calls apply,
 * snapshot, restore, digest, evict) -> vsrh_sm_destroy.
 * Failure modes: a script that does not load, or that breaks its contract at
 * load time, fails vsrh_sm_create with a plain-words message in err. A call
 * that raises, runs out of instructions or memory gives VSR_REPLY_ERROR with
 * the message as the reply body; the state is as before the call. */
#ifndef VSRH_LUA_H
#define VSRH_LUA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsr.h"
#include "vsrh_config.h"

typedef struct vsrh_sm vsrh_sm;

/* Receives the script's print() and warn() output, and the host's own notes
 * about the script (budget exhausted, rollback). `level` is an enum
 * vsrh_log_level; `msg` is not NUL-terminated. */
typedef void (*vsrh_log_fn)(void *arg, int level, const char *msg, size_t len);

/* Everything needed to open a state machine without a config file. */
typedef struct vsrh_sm_options {
	const char *statemachine;  /* path of the state-machine script */
	const char *dedup;         /* path of the dedup policy, or NULL for lua/vsr/dedup/oldest.lua */
	const char *lua_root;      /* folder holding the project's Lua modules (lua/);
	                              NULL: found next to the script, then ./lua */
	uint64_t instructions_max; /* per call; 0: 1000000 */
	uint64_t memory_bytes_max; /* per state machine; 0: 256 MiB */
	uint32_t clients_max;      /* limits.clients, passed to the policy's evict(); 0: 1024 */
	vsrh_log_fn log;           /* NULL: stderr */
	void *log_arg;
	int log_level;             /* lowest level passed to log */
	/* 0 in production. Nonzero (test kit, vsrhost check): pairs() visits keys
	 * in an order shuffled by this seed, so that a reply or state depending
	 * on table iteration order differs between two seeds. */
	uint64_t check_seed;
	/* Where vsr.store keeps its committed entries when the script's whole
	 * state is in it (no snapshot/restore hooks): LMDB in store_dir (NULL: a
	 * scratch directory removed at destroy), synced at every checkpoint
	 * when store_sync. VSRH_STORE_TABLE keeps it in a Lua table instead. */
	const char *store_dir;
	bool store_sync;
	bool store_fresh; /* remove what store_dir holds (a lost or new disk) */
	/* vsrh_sm_on_disk_full's hook, in place before the store opens: the
	 * map's first reservation, at open, may reclaim too (NULL: none). */
	bool (*disk_full)(void *arg);
	void *disk_full_arg;
	/* limits.checkpoint_interval: the store reads the pages a checkpoint
	 * will commit just before it (vsrh_store_touch.h); 0: unknown. */
	uint32_t checkpoint_interval;
	int store; /* enum vsrh_store_kind */
} vsrh_sm_options;

enum vsrh_store_kind { VSRH_STORE_LMDB = 0, VSRH_STORE_TABLE = 1 };

/* Opens cfg->statemachine with cfg->dedup and cfg's budgets. Returns VSR_OK,
 * or a negative vsr_error with a message such as
 *   "statemachines/kv.lua:12: attempt to call a nil value (global 'foo')". */
int vsrh_sm_create(vsrh_sm **out, const vsrh_config *cfg, char *err, size_t err_len);
/* The same with vsr.store's LMDB environment in store_dir (see
 * vsrh_sm_options): what a replica uses. */
int vsrh_sm_create_at(vsrh_sm **out, const vsrh_config *cfg, const char *store_dir, bool sync,
		      bool fresh, char *err, size_t err_len);
/* The options vsrh_sm_create_at opens with, for a caller that adds to them
 * (the disk-full hook) before vsrh_sm_open. */
vsrh_sm_options vsrh_sm_options_at(const vsrh_config *cfg, const char *store_dir, bool sync,
				   bool fresh);
int vsrh_sm_open(vsrh_sm **out, const vsrh_sm_options *opt, char *err, size_t err_len);
void vsrh_sm_destroy(vsrh_sm *sm);

/* Digests of the source files loaded at open (XXH3-64 of each file's chunk
 * name and bytes, chained in load order): the state machine script with the
 * modules it required while loading, and the dedup policy (0: none). A
 * module first required later, inside a call, is not in them. */
void vsrh_sm_sources(const vsrh_sm *sm, uint64_t *statemachine, uint64_t *dedup);

/* Routes print/warn and host notes to fn for messages at `level` or above. */
void vsrh_sm_set_log(vsrh_sm *sm, vsrh_log_fn fn, void *arg, int level);

/* Whether vsr.store keeps its entries in LMDB (else in a Lua table). */
bool vsrh_sm_store_lmdb(const vsrh_sm *sm);
/* A durable vsr.store makes each checkpoint durable on a thread of its own
 * (checkpoint_take returns VSR_PENDING): fn(arg, op) is called on that
 * thread once checkpoint op is; the host then steps the core with
 * VSR_EVENT_CHECKPOINT_DURABLE. fn NULL: no more calls (waits for one in
 * flight). Returns the newest checkpoint made durable before the call (0:
 * none): the takes of a restart's replay, which ran before any fn. */
uint64_t vsrh_sm_on_checkpoint_durable(vsrh_sm *sm, void (*fn)(void *arg, uint64_t op), void *arg);
/* Replicas take turns: replica `slot` of `slots` commits each checkpoint
 * slot x turn_ns after it takes it (the commit is the step that holds the
 * loop; the writes meanwhile are held), and starts its sync slot/slots of
 * half an interval after that (vsrh_syncer_stagger). A durable vsr.store
 * only; VSRH_TURN_NS is the host's turn. */
#define VSRH_TURN_NS 25000000u
void vsrh_sm_stagger(vsrh_sm *sm, unsigned slot, unsigned slots, uint64_t turn_ns);
/* Called from time to time (the host's tick): commits a checkpoint whose
 * turn has come while no operation ran. */
void vsrh_sm_tick(vsrh_sm *sm);
/* vsrh_store_settle on its store. */
void vsrh_sm_settle(vsrh_sm *sm);
/* Checkpoint commits made in this replica's turn so far; *op and *ns: the
 * last one's checkpoint and how long the commit held the loop. */
uint64_t vsrh_sm_turn_commits(const vsrh_sm *sm, uint64_t *op, uint64_t *ns);

/* A durable vsr.store that finds the disk too full to reserve room for its
 * map (at a checkpoint's commit) calls fn(arg) before it gives up (exit
 * 74): fn frees space the disk is about to get back anyway (the log's
 * pruned segments, vsr_storage_reclaim) and returns whether it freed any;
 * then the store tries once more. fn NULL: none (the default). Called on
 * the thread that steps the state machine. The reservation made when the
 * store opens (where a full disk makes the store run without writing its
 * map in place) sees only a hook given in vsrh_sm_options.disk_full. */
void vsrh_sm_on_disk_full(vsrh_sm *sm, bool (*fn)(void *arg), void *arg);

/* Fills `out` with callbacks on sm (ctx = sm). sm must outlive the core. */
void vsrh_sm_bind(vsrh_sm *sm, vsr_state_machine *out);

/* The vsr_state_machine callbacks, callable directly (tests, benchmarks). */
int vsrh_sm_apply(vsrh_sm *sm, const vsr_apply_ctx *actx, const uint8_t *op,
		  size_t op_len, vsr_buf *reply);
int vsrh_sm_snapshot(vsrh_sm *sm, vsr_buf *out);
int vsrh_sm_restore(vsrh_sm *sm, const uint8_t *data, size_t len);
uint64_t vsrh_sm_digest(vsrh_sm *sm);
uint32_t vsrh_sm_evict(vsrh_sm *sm, const vsr_session_info *sessions, uint32_t n);

/* A local read-only operation: the script's query(op, ctx), or apply when it
 * has no query, with every write discarded afterwards. Not replicated: the
 * result reflects this replica's executed state. Returns VSR_REPLY_OK or
 * VSR_REPLY_ERROR (reply holds the message). */
int vsrh_sm_query(vsrh_sm *sm, const uint8_t *op, size_t op_len, vsr_buf *reply);

/* NULL while the state machine is sound. Otherwise why it failed in a way
 * the host cannot undo identically on every replica (snapshot() or a
 * replay after a rollback failed, the hard memory cap was reached, the
 * host ran out of memory): every apply after it is refused, and the
 * replica must stop (vsrhost checks after every step) and come back
 * through a restart or state transfer. */
const char *vsrh_sm_failure(const vsrh_sm *sm);

/* What the state machine is doing now, in words ("applying op 42 of
 * session 7, request 3"), for the host's watchdog: callable from another
 * thread (the fields are read racily but atomically). */
void vsrh_sm_activity(const vsrh_sm *sm, char *out, size_t len);
/* A counter that moves whenever the state machine does metered work (VM
 * instructions, charged C work): the watchdog thread reads it to tell a
 * long but metered step, which the budget ends deterministically, from a
 * hang the cost model does not see. */
uint64_t vsrh_sm_progress(const vsrh_sm *sm);
/* Whether a script call is running (apply, query, snapshot, restore):
 * for the watchdog thread, like vsrh_sm_activity. */
bool vsrh_sm_busy(const vsrh_sm *sm);

/* Counters for metrics and the benchmark. */
typedef struct vsrh_sm_stats {
	uint64_t applied;          /* apply calls */
	uint64_t apply_errors;     /* of which raised, out of budget, bad op */
	uint64_t budget_exhausted; /* instruction budget spent */
	uint64_t memory_exhausted; /* memory budget refused an allocation */
	uint64_t rollbacks;        /* plain-state rollbacks (restore + replay) */
	uint64_t queries;
	uint64_t memory_bytes;     /* in use now */
	/* A durable vsr.store's checkpoint syncs (vsrh_store_sync.h). */
	uint64_t checkpoint_syncs;
	uint64_t checkpoint_sync_last_ns;
	uint64_t checkpoint_sync_waits; /* takes that waited for the previous sync */
	uint64_t checkpoint_sync_wait_ns;
	uint64_t checkpoint_held_writes; /* writes held while a sync ran (vsrh_overlay.h) */
	uint64_t checkpoint_turns;       /* commits that waited for this replica's turn */
	uint64_t checkpoint_step_last_ns; /* the last checkpoint commit's time on the loop */
	uint64_t checkpoint_commits_off_loop; /* commits made on the syncer's thread */
	uint64_t checkpoint_commit_last_ns;   /* the last of those: its time there */
	bool checkpoint_last_off_loop;        /* the last checkpoint's commit was one */
	uint64_t store_cleanings;        /* write-backs of the map between checkpoints, ended */
	uint64_t store_cleanings_begun;  /* ... and begun (one may be running) */
} vsrh_sm_stats;
void vsrh_sm_stats_get(const vsrh_sm *sm, vsrh_sm_stats *out);

/* The script's example operations (its optional `examples` field: an array
 * of operations, or a function returning one, called with math.random
 * seeded by `seed`), each encoded as msgpack into ops[i]. The caller frees
 * each ops[i].data and the array. Returns VSR_OK (possibly *n == 0) or a
 * negative error with err filled. */
int vsrh_sm_examples(vsrh_sm *sm, uint64_t seed, vsr_buf **ops, uint32_t *n, char *err,
		     size_t err_len);

/* The determinism self-check shared by `vsrhost check` and the test kit:
 * opens the script twice with different check seeds (pairs() order differs),
 * applies the same operations to both and compares every reply and the
 * digests; halfway it snapshots, restores into a third instance, compares
 * snapshot bytes and digests, and goes on comparing that instance's replies.
 * Returns 0 when all agree, 1 when a check failed (report says which op and
 * what differed, in plain words), or a negative error (the script does not
 * load; report says why). `seed` picks the check seeds. */
int vsrh_selfcheck(const vsrh_sm_options *o, const vsr_buf *ops, uint32_t n_ops, uint64_t seed,
		   char *report, size_t report_len);

/* The self-check over `seeds` seeds from `seed`: with ops == NULL each
 * seed runs the script's examples generated for it (vsrh_sm_examples),
 * else the given ops. Each seed restores at its own point. Fails (1) when
 * a seed fails, when every operation of a seed fails, or when there are
 * no operations unless allow_empty. Returns 0, 1 or a negative error;
 * report names the failing seed. */
#define VSRH_CHECK_SEEDS 20u
int vsrh_check_seeds(const vsrh_sm_options *o, uint64_t seed, uint32_t seeds, const vsr_buf *ops,
		     uint32_t n_ops, bool allow_empty, char *report, size_t report_len);

/* `vsrhost check CONFIG`: validates the config, loads the state machine in
 * the sandbox and runs its determinism self-check. argv[0] is "check".
 * Prints findings in plain words; returns 0, EX_USAGE, EX_CONFIG or
 * EX_DATAERR (the state machine failed a check). */
int vsrh_check_main(int argc, char **argv);

#endif /* VSRH_LUA_H */
