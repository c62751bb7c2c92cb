/* sim.h - the deterministic cluster simulator: shared types of its parts.
 *
 * One process runs n replicas of the real protocol core (vsr.h), several
 * clients, a simulated network, simulated storage and simulated time, all
 * driven by one 64-bit seed. Parts:
 *   sim_util.c     generator, hashing, maps, heap, message copies
 *   sim_sm.c       the deterministic test state machine
 *   sim_storage.c  per-replica persist queue, durable image, crash, restart
 *   sim_check.c    ghost state and the invariants of protocol.md 12
 *   sim_cluster.c  the event loop: network, replicas, clients, faults
 *   sim_main.c     command line: one seed, sweeps, demo, teeth
 * Nothing here reads a clock or a random source other than the seed, so a
 * seed always gives the same run. */
#ifndef VSR_SIM_H
#define VSR_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vsr.h"
#include "vsr_snapckpt.h"

/* ------------------------------------------------------------------------ */
/* Limits of the simulator itself.                                           */

#define SIM_REPLICAS_MAX 5u
#define SIM_CLIENTS_MAX 16u
#define SIM_NODES_MAX (SIM_REPLICAS_MAX + SIM_CLIENTS_MAX)
/* Events in flight at once (messages, persists, faults); past this the run
 * fails loudly instead of eating memory. */
#define SIM_EVENTS_MAX (1u << 20)
/* Persists queued at one replica's storage. */
#define SIM_PERSISTS_MAX 65536u
/* Sessions the test state machine tracks for its at-most-once count. */
#define SIM_SM_SESSIONS_MAX 256u
/* Keys of the test state machine's map. */
#define SIM_SM_KEYS 16u
/* Bytes of a test operation: kind, key, value. */
#define SIM_OP_BYTES 10u

_Static_assert(SIM_REPLICAS_MAX <= VSR_REPLICAS_MAX, "replicas fit the core");

/* ------------------------------------------------------------------------ */
/* Utilities (sim_util.c).                                                   */

/* xoshiro256**, seeded by splitmix64: the only source of randomness. */
typedef struct sim_rng {
	uint64_t s[4];
} sim_rng;

void sim_rng_seed(sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(sim_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t sim_rng_below(sim_rng *r, uint64_t n);
/* Uniform in [lo, hi]. */
uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi);
/* True with probability ppm / 1,000,000. */
bool sim_rng_ppm(sim_rng *r, uint32_t ppm);

uint64_t sim_mix64(uint64_t x);
uint64_t sim_hash_bytes(uint64_t h, const void *data, size_t len);
uint64_t sim_hash_u64(uint64_t h, uint64_t v);

/* Open-addressing map from a non-zero u64 key to a u64 value. */
typedef struct sim_map {
	uint64_t *keys;
	uint64_t *values;
	size_t cap; /* power of two, or 0 */
	size_t count;
} sim_map;

void sim_map_free(sim_map *m);
/* Returns a pointer to the value of key, or NULL. */
uint64_t *sim_map_get(const sim_map *m, uint64_t key);
/* Returns a pointer to the value of key, inserting `init` when absent. */
uint64_t *sim_map_put(sim_map *m, uint64_t key, uint64_t init, bool *inserted);

/* A message that owns its bytes (entries, bodies, request op). */
typedef struct sim_msg {
	vsr_message m;
	vsr_entry *entries;
	uint8_t *entry_blob; /* bodies of entries */
	uint8_t *blob;       /* body and request op */
} sim_msg;

sim_msg *sim_msg_clone(const vsr_message *m);
void sim_msg_free(sim_msg *s);

/* Owned copy of an array of entries with their bodies in one blob. */
vsr_entry *sim_entries_clone(const vsr_entry *src, uint32_t n, uint8_t **blob);

/* A growable array of u64 indexed from 0, zero filled. */
typedef struct sim_vec {
	uint64_t *v;
	size_t cap;
} sim_vec;

uint64_t sim_vec_get(const sim_vec *a, uint64_t i);
void sim_vec_set(sim_vec *a, uint64_t i, uint64_t value);
void sim_vec_free(sim_vec *a);

void *sim_xmalloc(size_t n);
void *sim_xcalloc(size_t n, size_t size);
void *sim_xrealloc(void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* The test state machine (sim_sm.c).                                        */

enum sim_op_kind { SIM_OP_SET = 0, SIM_OP_ADD = 1, SIM_OP_GET = 2, SIM_OP_KINDS };
/* Not drawn with the others (that would change every seed's path): an op
 * whose reply is `value` bytes long (--big-replies). */
#define SIM_OP_BIG 3u

struct sim;

typedef struct sim_sm_session {
	uint64_t session;
	uint64_t request; /* highest request applied */
} sim_sm_session;

typedef struct sim_sm {
	/* replicated state */
	uint64_t chain;     /* hash chain over every applied operation */
	uint64_t applied;
	uint64_t kv[SIM_SM_KEYS];
	uint32_t session_count;
	sim_sm_session sessions[SIM_SM_SESSIONS_MAX];
	uint64_t duplicates; /* (session, request) applied again: must stay 0 */
	/* host side: where to report a duplicate */
	struct sim *sim;
	uint8_t replica;
	bool started;        /* created: restores may now fail (--restore-fail-ppm) */
} sim_sm;

/* Run settings the state machine needs (sim_cluster.c). */
uint32_t sim_state_pad(const struct sim *s);       /* snapshot padding bytes */
bool sim_restore_fails(struct sim *s, uint8_t r);  /* draw a failing restore */
/* --plant-divergence: true once, when replica r applies the planted op. */
bool sim_plant_strikes(struct sim *s, uint8_t r, uint64_t op);
bool sim_planting(const struct sim *s);

void sim_sm_init(sim_sm *sm, struct sim *sim, uint8_t replica);
/* The machine the core sees; its checkpoints live in `ck` (on the disk). */
void sim_sm_iface(sim_sm *sm, vsr_snapckpt *ck, vsr_state_machine *out);
void sim_op_encode(uint8_t out[SIM_OP_BYTES], uint8_t kind, uint8_t key,
		   uint64_t value);
/* The read-only query (a GET op): answers the key's value and the state's
 * chain, 16 bytes, from the state as it is. */
int sim_sm_query(const sim_sm *sm, const uint8_t *op, size_t op_len, vsr_buf *reply);

/* ------------------------------------------------------------------------ */
/* Simulated storage (sim_storage.c).                                        */

typedef struct sim_pending {
	vsr_persist p;     /* pointers below are owned copies */
	vsr_entry *entries;
	uint8_t *blob;
	uint64_t done_at;  /* tick at which it becomes durable */
} sim_pending;

typedef struct sim_slot {
	bool present;
	vsr_entry e;       /* e.body points at body */
	uint8_t *body;
} sim_slot;

typedef struct sim_storage {
	/* durable image */
	vsr_superblock sb;
	vsr_snapckpt ck;   /* the state machine's checkpoints (async: the newest
			    * may be pending, lost at a crash) */
	sim_slot *slots;   /* indexed by op */
	uint64_t slot_cap;
	uint64_t slot_end; /* no slot at or above is present */
	uint64_t pruned;   /* no slot below is present: at or below a checkpoint
			    * a superblock named */
	/* queue of persists not yet durable, in issue order */
	sim_pending *q;
	uint32_t q_head, q_count, q_cap;
	uint64_t last_done_at;
	/* what a restart builds; kept until the next restart */
	vsr_entry *load_entries;
	uint32_t load_count;
} sim_storage;

void sim_storage_init(sim_storage *st, uint64_t cluster);
void sim_storage_free(sim_storage *st);
/* Queues a copy of `p`; returns false when the queue is full. */
bool sim_storage_push(sim_storage *st, const vsr_persist *p, uint64_t done_at);
/* The oldest pending persist, or NULL. */
sim_pending *sim_storage_head(sim_storage *st);
/* Applies the oldest pending persist to the image and drops it. */
void sim_storage_complete(sim_storage *st);
/* Crash: drops pending persists and a pending checkpoint; `torn` applies a
 * prefix of the first one's entries, `corrupt` writes them with one entry
 * damaged. Returns a short word for the trace. */
const char *sim_storage_crash(sim_storage *st, sim_rng *rng, bool torn,
			      bool corrupt);
/* The newest durable checkpoint on the disk: the superblock's, or the state
 * machine's own when it made a newer one durable before a superblock named
 * it (a pending one does not count). Every op up to it is in the durable
 * state. */
uint64_t sim_storage_checkpoint_op(const sim_storage *st);
/* Builds what a restart reads: verified entries after checkpoint_op, cut at
 * the first bad checksum, broken parent link or gap. */
void sim_storage_load(sim_storage *st, uint64_t cluster, vsr_durable *out);

/* ------------------------------------------------------------------------ */
/* Ghost state and invariants (sim_check.c).                                 */

typedef struct sim_ghost_replica {
	uint64_t max_vote_view;   /* across incarnations: SVC, DVC, SV, PREPARE_OK */
	uint64_t max_sent_view;   /* this incarnation */
	uint64_t max_sent_log_view; /* this incarnation */
	uint64_t max_dvc_log_view;  /* across incarnations */
	uint64_t checked_commit;  /* agreement checked up to here */
	/* the last PREPARE_OK sent: while the replica is in that view it keeps
	 * that entry (and, by the hash chain, every one it acked before) */
	uint64_t ack_view, ack_op, ack_checksum;
	bool ack_valid;
	vsr_replica_info info;    /* after the last step */
	bool has_info;
} sim_ghost_replica;

typedef struct sim_ghost {
	sim_vec canon;            /* op -> first committed checksum (0: unknown) */
	sim_vec canon_view;       /* op -> view of the replica that first committed it */
	sim_vec canon_ts;         /* op -> timestamp of the canonical entry (0: unknown) */
	uint64_t canon_max;       /* highest op known committed */
	sim_map digest_at;        /* executed op + 1 -> state digest */
	sim_map chain_at;         /* executed op + 1 -> the state machine's chain */
	sim_vec digest_replica;   /* executed op -> replica that set it, + 1 */
	sim_map view_log;         /* (view, op) -> checksum of view's log at op */
	sim_map acks;             /* (view, replica) -> highest op acked + 1 */
	sim_map dvc_sent;         /* (view, replica) -> 1: sent DO_VIEW_CHANGE(view) */
	sim_map primary_durable;  /* view -> primary's durable op + 1 while primary */
	uint64_t max_view;
	sim_ghost_replica r[SIM_REPLICAS_MAX];
} sim_ghost;

void sim_ghost_free(sim_ghost *g);

/* ------------------------------------------------------------------------ */
/* The simulator (sim_cluster.c).                                            */

typedef struct sim_options {
	uint64_t seed;
	uint8_t replicas;
	uint8_t clients;
	uint64_t fault_ticks;     /* faults happen in [0, fault_ticks) */
	uint64_t liveness_ticks;  /* after healing, everything settles within this */
	bool faults;
	bool trace;
	uint64_t trace_from;      /* print trace lines from this tick on */
	bool demo;
	uint32_t bugs;            /* VSR_BUG_* for the teeth build */
	bool consequences_only;   /* only check consequences, not direct evidence */
	/* rates; -1 (as UINT32_MAX) means "drawn from the seed" */
	uint32_t drop_ppm;
	uint32_t dup_ppm;
	uint32_t crash_ppm;       /* per tick */
	uint32_t partition_ppm;   /* per tick */
	uint32_t delay_max_ticks;
	uint32_t persist_max_ticks;
	/* share of restarts (per million) that wipe the disk (amnesia), within
	 * the one-amnesiac rule of docs/simulator.md */
	uint32_t amnesia_ppm;
	/* teeth for the amnesia path: a wiped disk is handed to the core as a
	 * formatted one (amnesia = false), a host bug memory mode must not have */
	bool amnesia_hidden;
	/* Fault modes of issue 7 (docs/simulator.md, "More faults"); each is
	 * drawn per seed when on. */
	bool slow_disks;          /* persist up to 100 ticks in a quarter of seeds */
	bool minority_down;       /* up to f replicas stay down after the faults */
	bool long_oneway;         /* one-way link failures lasting 500..3000 ticks */
	bool long_steps;          /* checkpoint steps that stall a replica */
	bool slow_heal;           /* after the faults the network stays slower
				   * than the core's retry timer */
	uint32_t restore_fail_ppm; /* share of checkpoint restores that fail */
	bool big_replies;         /* ops whose reply exceeds VSR_OP_BYTES_MAX */
	bool large_state;         /* snapshots padded to 4..32 KiB */
	bool ack_crashes;         /* crashes aimed right after a PREPARE_OK */
	bool fresh_restarts;      /* operator formats the whole cluster anew */
	bool single_amnesia;      /* wipes also with one replica */
	bool minority_amnesia;    /* up to f replicas amnesiac at once, not one
				   * (protocol.md 5: wiping a minority of disks
				   * loses nothing committed) */
	/* A planted state machine bug (issue 9): one replica, drawn per seed,
	 * computes a different state at one op drawn per seed (its reply is
	 * unchanged). Runtime divergence detection must find and repair it:
	 * check 12.9 (equal op, equal state) is then left to settling, which
	 * demands equal digests and no replica left diverged. */
	bool plant_divergence;
	bool live_during_faults;  /* requests complete while a majority is up
				   * and connected (live_window ticks) */
	uint64_t live_window;
	bool reads;               /* clients also send queries of every read mode
				   * (docs/simulator.md "Reads") */
	bool async_checkpoints;   /* some replicas' checkpoints become durable
				   * later (VSR_PENDING), drawn per seed */
	/* vsrhost store failures (docs/simulator.md "Store failures"); rates
	 * per million, SIM_RATE_SEEDED: drawn per seed ("swarm") */
	uint32_t sync_fail_ppm;   /* a checkpoint's sync fails: the replica
				   * exits (74), its store rolls back */
	uint32_t fetch_kill_ppm;  /* a checkpoint fetch is killed midway (a
				   * chunk, or the install once durable) */
	FILE *out;                /* trace and narration */
} sim_options;

#define SIM_RATE_SEEDED UINT32_MAX

/* Planted bugs of the simulated host rather than of the core (vsrsim-teeth
 * --bug, with the core's VSR_BUG_* in one word; never passed to the core). */
#define SIM_BUG_SYNC_FAIL_IGNORED (1u << 31) /* a failed checkpoint sync is
						reported durable, the host runs on */
#define SIM_BUG_FETCH_REPLACES_STORE (1u << 30) /* a start after a fetch killed
						   midway takes its half-built
						   store for an installed one */
#define SIM_BUGS_HOST (SIM_BUG_SYNC_FAIL_IGNORED | SIM_BUG_FETCH_REPLACES_STORE)

typedef struct sim_stats {
	uint64_t events;
	uint64_t messages;
	uint64_t steps;
	uint64_t crashes;
	uint64_t partitions;
	uint64_t commits;
	uint64_t view_changes;
	/* coverage: did the fault mix reach the interesting paths? */
	uint64_t window_crashes;  /* crashes aimed at a pending-vote window */
	uint64_t torn_writes;
	uint64_t corrupt_writes;
	uint64_t state_transfers; /* summed from the cores' own counters */
	uint64_t checkpoints;
	uint64_t evictions;
	uint64_t deduplicated;
	uint64_t amnesia_restarts;  /* restarts with a wiped disk */
	uint64_t amnesia_recovered; /* ... that became normal and durable again */
	uint64_t amnesia_blocked;   /* crashes and wipes the one-amnesiac rule refused */
	uint64_t amnesia_beside;    /* wipes while another replica was amnesiac
				     * (--minority-amnesia) */
	uint64_t guards[VSR_GUARD_COUNT]; /* the cores' defensive branches taken */
	uint64_t oneway_long;       /* long one-way link failures */
	uint64_t stayed_down;       /* replicas left down after the faults */
	uint64_t long_steps;        /* stalled steps */
	uint64_t restore_failures;  /* restores made to fail */
	uint64_t big_replies;       /* oversized replies produced */
	uint64_t planted;           /* --plant-divergence: runs where the bug struck */
	uint64_t divergences;       /* the cores' own counters (vsr_replica_stats) */
	uint64_t divergence_repairs;
	uint64_t divergent_peers;
	uint64_t divergence_abdications;
	uint64_t reads[VSR_READ_MODE_COUNT]; /* queries answered, by mode answered in */
	uint64_t reads_checked;     /* answers that reached their client and were checked */
	uint64_t ckpt_async;        /* checkpoints taken pending (durable later) */
	uint64_t ckpt_waits;        /* takes that waited for the previous sync */
	uint64_t ckpt_lost;         /* pending checkpoints lost in a crash */
	uint64_t ckpt_newer;        /* restarts whose state machine's checkpoint is
				     * newer than the superblock's */
	uint64_t sync_failures;     /* checkpoint syncs failed (the replica exits) */
	uint64_t sync_failures_waited; /* ... of those, while a take waited for it */
	uint64_t fetch_kills;       /* fetches killed before their install */
	uint64_t install_kills;     /* killed in an install that was durable */
	uint64_t store_kills_amnesiac; /* ... of those two, at an amnesiac replica
					* (it restarts empty and fetches again) */
	uint64_t ckpt_other_chain;  /* restarts whose log goes on past the state
				     * machine's newer checkpoint on another chain */
} sim_stats;

typedef struct sim_result {
	bool ok;
	char reason[512];
	uint64_t fail_tick;
	uint64_t ticks;
	uint64_t final_digest;
	uint64_t trace_digest;
	uint64_t final_view;
	uint64_t final_commit;
	uint64_t settle_ticks;    /* from the end of faults to settled */
	sim_stats stats;
} sim_result;

/* The tick of the run in progress, for a report from a signal handler. */
extern volatile uint64_t sim_current_tick;

/* Runs one seed to completion or first violation. */
void sim_run(const sim_options *opt, sim_result *res);

/* Internal: reports an invariant violation (first one wins). */
void sim_fail(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool sim_failed(const struct sim *s);
uint8_t sim_replica_count(const struct sim *s);
uint64_t sim_now(const struct sim *s);
const sim_storage *sim_storage_of(const struct sim *s, uint8_t r);
/* Direct checks catch a protocol mistake where it happens (a vote sent
 * before its view is durable, an ack that does not match, a commit without
 * a quorum, the core's own local invariants). Without them only the
 * consequences are checked: divergent or lost committed state, lost
 * promises after a crash, diverging digests, double execution. */
bool sim_direct_checks(const struct sim *s);

/* Checker entry points, called by the cluster around every step. */
void sim_check_sent(struct sim *s, sim_ghost *g, uint8_t from,
		    const vsr_replica *core, const vsr_replica_info *before,
		    const vsr_replica_info *after, const vsr_message *m);
void sim_check_after_step(struct sim *s, sim_ghost *g, uint8_t r,
			  const vsr_replica *core, const vsr_replica_info *before,
			  const vsr_replica_info *after);
void sim_check_full(struct sim *s, sim_ghost *g, uint8_t r,
		    const vsr_replica *core);
void sim_check_restart(struct sim *s, sim_ghost *g, uint8_t r,
		       const sim_storage *st, const vsr_durable *d);
/* A restart with a wiped disk: the replica is a new identity for the
 * promises it cannot remember (per-replica vote and log_view floors). */
void sim_check_amnesia_restart(sim_ghost *g, uint8_t r);
void sim_check_crash(sim_ghost *g, uint8_t r);
void sim_check_reply(struct sim *s, sim_ghost *g, uint8_t r,
		     const vsr_replica *core, const vsr_message *m);
void sim_check_gating(struct sim *s, uint8_t r, uint8_t msg_type,
		      const vsr_replica_info *before, const vsr_replica_info *after);
void sim_check_superblock(struct sim *s, uint8_t r, const vsr_superblock *old,
			  const vsr_superblock *sb);
void sim_check_duplicate_apply(struct sim *s, uint8_t replica, uint64_t op,
			       uint64_t session, uint64_t request);

#endif /* VSR_SIM_H */
