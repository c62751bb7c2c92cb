/* replica.h - the replica's internal state, shared by the sub-protocol files.
 *
 * One file per sub-protocol (normal.c, view_change.c, state_transfer.c,
 * recovery.c, client_table.c), one dispatch switch (replica.c). Nothing here
 * is visible to hosts: they see vsr.h only. */
#ifndef VSR_REPLICA_H
#define VSR_REPLICA_H

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "vsr.h"

/* A primary that hears no quorum for this many primary timeouts abdicates:
 * longer than a backup's suspicion, so a backup's long step (a checkpoint)
 * is not mistaken for a lost quorum. */
#define VSR_ABDICATE_PRIMARY_TIMEOUTS 2u

/* Retry rounds (recovery_retry_ticks plus jitter) for which a recovery
 * answer counts. */
#define VSR_RECOVERY_ANSWER_ROUNDS 4u

/* Retries without progress before a state transfer gives up for a view change. */
#define VSR_TRANSFER_RETRIES_MAX 8

#ifdef VSR_FAULT_INJECTION
#define BUG(r, flag) (((r)->cfg.bugs & (flag)) != 0)
#else
#define BUG(r, flag) ((void)(r), false)
#endif

/* Counts a defensive branch taken; always true, so it reads as part of the
 * guard's condition: `if (stale && GUARD(r, VSR_GUARD_X)) return;`. */
#define GUARD(r, g) guard_hit((r), (g))

/* ---- small utilities (util.c) ---- */

uint64_t prng_next(uint64_t *state);
/* Uniform in [0, bound); bound > 0. */
uint64_t prng_below(uint64_t *state, uint64_t bound);
uint64_t hash64(uint64_t seed, const void *data, size_t len);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
uint32_t popcount32(uint32_t x);

/* ---- the log (log.c) ---- */

/* A ring of entries indexed by op; slot bodies are owned. Holds the ops
 * start .. head; checksum(start - 1) is kept in prev_checksum. */
typedef struct vsr_log {
	vsr_entry *slots;
	uint32_t mask;          /* capacity - 1 */
	uint64_t start;         /* first op held (head + 1 when empty) */
	uint64_t head;          /* last op held */
	uint64_t prev_checksum; /* checksum at start - 1 */
	void **graveyard;       /* retired bodies, freed by log_collect */
	uint32_t grave_count, grave_cap;
} vsr_log;

void log_init(vsr_log *l, uint32_t capacity, uint64_t base_op, uint64_t base_checksum);
void log_free(vsr_log *l);
void log_collect(vsr_log *l);
uint32_t log_capacity(const vsr_log *l);
const vsr_entry *log_get(const vsr_log *l, uint64_t op);
/* Whether the checksum at op is known: start - 1 <= op <= head. */
bool log_checksum_known(const vsr_log *l, uint64_t op);
/* Checksum at op when known; 0 otherwise, which is ambiguous (a message may
 * carry 0): compare with log_matches instead. */
uint64_t log_checksum_at(const vsr_log *l, uint64_t op);
/* The checksum at op is known and equals `checksum`. */
bool log_matches(const vsr_log *l, uint64_t op, uint64_t checksum);
/* Appends a copy of e at head + 1 (body copied). e->parent must match. Drops
 * the oldest entry first when full, which the caller has to allow by passing
 * the highest op that may be dropped. Returns false when it does not fit. */
bool log_append(vsr_log *l, const vsr_entry *e, uint64_t droppable_max);
/* Drops the oldest entries, up to and including op. */
void log_drop_through(vsr_log *l, uint64_t op);
/* Removes every op > op (op >= start - 1). */
void log_truncate_after(vsr_log *l, uint64_t op);
/* Drops everything and restarts the log after base_op. */
void log_reset(vsr_log *l, uint64_t base_op, uint64_t base_checksum);

/* ---- client table (client_table.c) ---- */

/* ct_execute_request status for a stale duplicate nobody waits for. */
#define CT_NO_REPLY 0xFF

typedef struct ct_session {
	uint64_t session;
	uint64_t nonce;         /* the REGISTER nonce that created it */
	uint64_t request;       /* last request committed */
	uint64_t last_op;
	uint64_t registered_op;
	uint64_t reply_timestamp;
	uint8_t reply_status;
	uint32_t reply_len;
	uint8_t *reply;
	/* Primary-local and volatile (neither encoded nor digested): the
	 * request of this session that is queued (pending_op == 0) or prepared
	 * at pending_op, position pending_index, so that a retry finds it in
	 * O(1) (protocol.md 8.4). */
	uint64_t pending_request;
	uint64_t pending_op;
	uint32_t pending_index;
	uint64_t hash;          /* of the replicated fields, for the table digest */
} ct_session;

/* Sessions sorted by session id (binary search), at most clients_max. */
typedef struct client_table {
	ct_session *items;
	uint32_t count;
	uint32_t max;
	uint64_t digest;        /* XOR of the sessions' hashes: O(1) to read */
} client_table;

void ct_init(client_table *t, uint32_t max);
void ct_free(client_table *t);
/* A session id is the op of its REGISTER and its position in the batch:
 * unique, and equal on every replica. */
#define CT_SESSION_INDEX_BITS 11u
static inline uint64_t ct_session_id(uint64_t op, uint32_t index)
{
	return (op << CT_SESSION_INDEX_BITS) | index;
}
static inline uint64_t ct_session_op(uint64_t session) { return session >> CT_SESSION_INDEX_BITS; }
static inline uint32_t ct_session_index(uint64_t session)
{
	return (uint32_t)(session & ((1u << CT_SESSION_INDEX_BITS) - 1));
}

ct_session *ct_find(client_table *t, uint64_t session);
ct_session *ct_find_nonce(client_table *t, uint64_t nonce);
uint64_t ct_digest(const client_table *t);
int ct_encode(const client_table *t, vsr_buf *out);
/* Returns bytes consumed, or -1 if malformed. */
long ct_decode(client_table *t, const uint8_t *data, size_t len);

/* ---- the replica ---- */

typedef struct waiter_set {
	uint32_t count;
	uint64_t conns[VSR_WAITERS_MAX];
} waiter_set;

/* A request waiting for a pipeline slot (primary only). */
typedef struct queued_request {
	uint64_t session;
	uint64_t request;
	uint8_t kind;
	uint32_t op_len;
	uint8_t *op;
	waiter_set waiters;
} queued_request;

/* Waiters of one request inside a prepared entry (primary only). */
typedef struct pipeline_request {
	uint64_t session;
	uint64_t request;
	uint8_t kind;
	waiter_set waiters;
} pipeline_request;

typedef struct pipeline_slot {
	uint64_t op;
	uint32_t count;
	pipeline_request *requests;
} pipeline_slot;

/* Send times kept for the latest read rounds (leases), a power of two. */
#define VSR_READ_ROUND_SLOTS 8u

/* A QUERY waiting at the primary (read.c). */
typedef struct pending_read {
	uint64_t conn;
	uint64_t session;
	uint64_t request;
	uint8_t mode;           /* enum vsr_read_mode asked */
	uint64_t arrival_op;    /* log head when it arrived: executed must reach it */
	uint64_t round;         /* read round that must be confirmed first */
	uint32_t op_len;
	uint8_t *op;
} pending_read;

/* A persist issued but not yet reported done. */
typedef struct pending_persist {
	uint64_t id;
	uint64_t view;
	uint64_t log_view;
	uint64_t op;            /* log head once applied */
	bool joined;            /* the superblock names our history (no amnesia) */
	uint64_t issued_at;     /* tick: its latency feeds disk_ticks */
} pending_persist;

/* A DO_VIEW_CHANGE kept by the would-be primary (deep copy). */
typedef struct dvc_copy {
	bool have;
	uint64_t log_view;
	uint64_t op;
	uint64_t commit;
	uint64_t commit_checksum;
	uint32_t entry_count;
	vsr_entry *entries;     /* bodies owned */
} dvc_copy;

typedef struct timer {
	bool armed;
	uint64_t at;
} timer;

struct vsr_replica {
	vsr_config cfg;
	vsr_state_machine sm;
	uint8_t n;
	uint8_t self;
	uint8_t quorum;

	uint8_t status;
	uint64_t history;           /* cluster history; 0: unjoined */
	uint64_t epoch;
	uint64_t view;
	uint64_t log_view;
	uint64_t commit;
	uint64_t executed;
	uint64_t last_timestamp;    /* highest entry timestamp seen: a new primary's floor */
	vsr_log log;            /* log.head is the op number */

	/* durability */
	uint64_t persist_next;
	pending_persist *pending;   /* ring of cfg.log_max, FIFO */
	uint32_t pending_head, pending_count, pending_cap;
	uint64_t durable_view, durable_log_view, durable_op;
	bool durable_joined;        /* the durable superblock names our history */
	/* How long our writes take lately (ticks from issue to completion, a
	 * maximum that decays by 1/32 per completion). Timeouts that wait for
	 * another replica's write grow by it (disk_slack), so a disk slower
	 * than the timeouts delays views instead of churning them. */
	uint64_t disk_ticks;

	/* checkpoint: the current one is the newest taken, opened or installed
	 * (op 0: none yet). The state machine holds its image; a pending one
	 * may not be durable yet (checkpoint_durable says which is). */
	vsr_checkpoint checkpoint;
	vsr_checkpoint checkpoint_prev; /* the one before: still served */
	/* The newest checkpoint the state machine has made durable: the
	 * superblock names this one (it is the current or the previous
	 * checkpoint, or an older one when two takes are in flight). */
	vsr_checkpoint checkpoint_durable;

	client_table clients;
	client_table clients_staged; /* a fetched checkpoint's, until it is installed */
	vsr_buf chunk_buf;           /* one checkpoint chunk, or the client table being checkpointed */

	/* primary */
	uint64_t acked[VSR_REPLICAS_MAX]; /* highest op each replica acked in this view */
	pipeline_slot *pipeline;          /* ring of pipeline_max, by op */
	queued_request *queue;            /* FIFO ring of request_queue_max */
	uint32_t queue_head, queue_count;
	uint64_t queue_bytes;             /* op bytes held by the queue */

	/* reads (read.c): pending queries, FIFO ring of request_queue_max */
	pending_read *reads;
	uint32_t reads_head, reads_count;
	uint64_t reads_bytes;
	uint64_t read_round;              /* primary: the last read round started */
	uint64_t read_round_sent_at[VSR_READ_ROUND_SLOTS]; /* tick each recent round began */
	uint64_t read_round_slot[VSR_READ_ROUND_SLOTS];    /* the round each slot holds */
	uint64_t read_round_done;         /* primary: highest round a quorum confirmed */
	uint64_t read_acked[VSR_REPLICAS_MAX]; /* primary: highest round each echoed, this view */
	uint64_t lease_until;             /* primary: tick its lease ends (0: none) */
	uint64_t read_round_wanted;       /* primary: highest round a pending read needs */
	uint64_t reads_scan_done;         /* read_round_done at the last scan of the reads */
	uint64_t reads_scan_executed;     /* executed at the last scan */
	uint64_t reads_lease_until;       /* a pending lease read's lease end (0: none) */
	bool reads_dirty;                 /* a read arrived that may go at once */
	uint64_t read_round_seen;         /* backup: highest round from the primary, this view */
	uint64_t echo_sent_round;         /* backup: highest round echoed, this view */
	uint64_t primary_heard_at;        /* backup: tick the primary was last heard */

	/* view change */
	uint32_t svc_from;                /* bitmask, for `view` */
	dvc_copy dvc[VSR_REPLICAS_MAX];   /* for `view`, primary(view) only */
	uint64_t svc_sent_view;           /* views for which the vote was sent (+1; 0 none) */
	uint64_t dvc_sent_view;
	uint32_t view_change_attempt;
	uint64_t vc_timer_view;           /* view whose timeout restarted at its durable vote */

	/* Liveness (pre-vote and check-quorum, docs/protocol.md 4). A normal
	 * replica leaves a working view only when a quorum lost its primary,
	 * or the view can no longer commit anyway. */
	bool suspecting;                  /* backup: lost the primary; primary: abdicated */
	uint64_t lost_view[VSR_REPLICAS_MAX]; /* view whose primary each replica said it lost (+1; 0 none) */
	uint64_t lost_at[VSR_REPLICAS_MAX];   /* tick of that PRIMARY_LOST */
	uint64_t above_view[VSR_REPLICAS_MAX]; /* highest view each replica voted in (SVC/DVC) */
	uint64_t peer_heard_at[VSR_REPLICAS_MAX]; /* tick + 1 of each replica's last message (0: never) */
	uint64_t vote_quorum_at;          /* tick + 1 a quorum last voted in our view change (0: never) */
	uint64_t vote_quorum_view;        /* the view it was */
	uint64_t heard_at[VSR_REPLICAS_MAX];  /* primary: tick of each backup's last PREPARE_OK in this view */
	uint32_t vc_shift;                /* backoff shift of the current view change's timeout */

	/* Divergence detection (divergence.c, docs/protocol.md): the latest
	 * checkpoint each replica reported in its PREPARE_OK (primary), the
	 * latest checkpoint a quorum agreed on with us (primary: sent in
	 * COMMIT), and whether our own state is known to differ from a
	 * quorum's. */
	uint64_t dv_peer_op[VSR_REPLICAS_MAX];
	uint64_t dv_peer_digest[VSR_REPLICAS_MAX];
	uint64_t dv_peer_told[VSR_REPLICAS_MAX]; /* checkpoint op last told to each (+1; 0 none) */
	vsr_checkpoint dv_certified;
	bool diverged;
	bool dv_repairing;                /* fetching the certified checkpoint */
	vsr_divergence dv_last;           /* the latest detection, for the host */
	uint64_t dv_quorum_size;          /* size of the quorum's checkpoint at dv_last.op */
	uint8_t dv_self_repairs;          /* repairs begun from dv_last alone (no COMMIT named it) */

	/* backup: the last ack sent, to avoid resending */
	uint64_t ack_sent_op;
	uint64_t ack_sent_view;

	/* recovery and joining */
	uint64_t recovery_nonce;          /* this incarnation's, drawn at creation */
	uint32_t recovery_from;           /* bitmask of responders of our history */
	uint32_t unjoined_from;           /* bitmask: answered unjoined this round */
	/* The incarnation nonce each responder reported with its answer (or
	 * with an unjoined answer): a RECOVERY with another nonce proves it
	 * restarted since, so that answer is stale. */
	uint64_t responder_nonce[VSR_REPLICAS_MAX];
	/* Replica 0 at genesis: the incarnation nonces of the replicas whose
	 * "nothing held" answers it counted; they join as members. */
	uint64_t genesis_member_nonce[VSR_REPLICAS_MAX];
	/* Replica 0's incarnation nonce from its latest RECOVERY or answer
	 * sent while it held nothing: a grant must name that incarnation. */
	uint64_t genesis_peer_nonce;
	/* Unjoined: the history the answers we count name (an amnesiac's, until
	 * its state transfer begins and it becomes r->history). */
	uint64_t joining_history;
	/* The latest answer of each responder: answers can go stale as the
	 * cluster moves on, so decisions use only the newest from each. */
	uint64_t recovery_view[VSR_REPLICAS_MAX];
	uint8_t recovery_status[VSR_REPLICAS_MAX];
	/* Tick each latest answer arrived: one older than
	 * VSR_RECOVERY_ANSWER_ROUNDS retry rounds no longer counts, since its
	 * sender may have gone down for good (it would never answer again,
	 * nor send the RECOVERY that makes its answer stale). */
	uint64_t recovery_at[VSR_REPLICAS_MAX];
	/* No durable promises: unjoined, or restarted without its disk's
	 * contents and still catching up. Counts in no quorum, answers no
	 * RECOVERY (except to say it is unjoined). */
	bool amnesia;

	/* state transfer */
	uint64_t transfer_nonce;
	uint8_t transfer_target;
	bool fetching_checkpoint;
	vsr_checkpoint fetch;             /* the checkpoint being fetched */
	uint32_t fetch_chunks;            /* chunks in it */
	uint32_t fetch_have_count;
	uint8_t *fetch_have;              /* bitmap: chunk stored by the state machine */
	uint8_t *fetch_asked;             /* bitmap: chunk asked since the last retry */
	uint32_t fetch_inflight;          /* asked, not yet stored */
	uint32_t fetch_cursor;            /* below it every chunk is stored or asked */
	uint32_t fetch_sources;           /* replicas to ask (bitmask) */
	uint32_t fetch_answered;          /* replicas that sent a new chunk since the last retry */
	uint32_t fetch_rotate;            /* spreads chunks over the sources, moved per retry */
	uint32_t fetch_window;            /* chunks in flight per source (slow start) */
	uint32_t fetch_have_at_retry;     /* fetch_have_count at the last retry */
	bool repairing;                   /* normal backup fetching a gap in its view */
	uint32_t transfer_retries;        /* retries without progress */

	/* timers */
	uint64_t now;
	timer t_heartbeat;      /* primary: send COMMIT */
	timer t_prepare_retry;  /* primary: resend PREPAREs */
	timer t_primary;        /* backup: suspect the primary */
	timer t_view_change;    /* view change stalled */
	timer t_retry;          /* recovery / state transfer resend */
	timer t_lost;           /* resend PRIMARY_LOST while suspecting */
	uint64_t prng;

	/* output of the current step */
	vsr_action *actions;
	uint32_t action_count, action_cap;
	/* memory referenced by this step's actions, freed at the next step */
	void **scratch;
	uint32_t scratch_count, scratch_cap;

	uint64_t realtime_ns;       /* of the current event: entry timestamps */
	bool start_view_pending;    /* new primary: send START_VIEW once durable */
	bool replaying;             /* restart: re-executing the durable committed log */
	const char *invariant_failure; /* first local invariant broken (VSR_INVARIANTS) */
	vsr_buf reply_buf;
	vsr_replica_stats stats;
};

static inline bool guard_hit(vsr_replica *r, enum vsr_guard g)
{
	r->stats.guards[g]++;
	return true;
}

/* replica.c */
void *scratch_alloc(vsr_replica *r, size_t n);
/* Keeps `p` alive until the next step, then frees it. */
void scratch_keep(vsr_replica *r, void *p);
vsr_message *emit_send(vsr_replica *r, uint8_t to, uint8_t type);
void emit_broadcast(vsr_replica *r, const vsr_message *m);
vsr_message *emit_reply(vsr_replica *r, uint64_t conn);
/* A QUERY action for `conn`: its message is a REPLY header to fill. */
vsr_action *emit_query(vsr_replica *r, uint64_t conn);
vsr_persist *emit_persist(vsr_replica *r);
void message_header(const vsr_replica *r, vsr_message *m, uint8_t type);
void set_status(vsr_replica *r, uint8_t status);
void timer_set(vsr_replica *r, timer *t, uint32_t ticks, bool jitter);
void timer_stop(timer *t);
bool timer_fired(const vsr_replica *r, const timer *t);
uint8_t primary_index(const vsr_replica *r);
bool is_primary(const vsr_replica *r);
/* Persists the superblock (and log changes described by the arguments). */
vsr_persist *persist_state(vsr_replica *r, bool truncate, uint64_t truncate_after,
			   const vsr_entry *entries, uint32_t count);
/* Bounds a slice of start..end by the message byte budget: with from_end,
 * the first op of the longest suffix ending at `end` that fits; otherwise
 * the last op of the longest prefix starting at `start` that fits. */
uint64_t log_slice_budget(const vsr_replica *r, uint64_t start, uint64_t end, bool from_end);
/* Copies entries start..end (inclusive) from the log into a scratch array. */
vsr_entry *log_slice(vsr_replica *r, uint64_t start, uint64_t end, uint32_t *count);
/* Installs entries that extend or replace the log suffix. Returns the op up
 * to which the log now matches `entries`, or UINT64_MAX if they do not chain
 * onto the log. Issues the persist. */
uint64_t log_install(vsr_replica *r, const vsr_entry *entries, uint32_t count);
void view_durable_reached(vsr_replica *r);
/* What a timeout that waits for a write (ours or a peer's, assumed alike)
 * adds: twice the recent write latency, or the age of the oldest write
 * still pending if longer; bounded by the view-change backoff's cap. */
uint64_t disk_slack(const vsr_replica *r);

/* normal.c */
/* Admission to the primary's bounded queues (requests to prepare, reads to
 * answer) of an operation of op_len bytes, the queue holding `count` of
 * them and `bytes`: VSR_REPLY_REJECTED when it can never fit a batch,
 * VSR_REPLY_BUSY when the queue is full by count or bytes, else OK. */
uint8_t queue_admit(const vsr_replica *r, uint32_t count, uint64_t bytes, uint32_t op_len);
/* Makes `out` a REJECTED reply saying why (larger than a batch). */
void reply_rejected(vsr_message *out);
void normal_on_request(vsr_replica *r, const vsr_message *m, uint64_t conn);
void normal_on_prepare(vsr_replica *r, const vsr_message *m);
void normal_on_prepare_ok(vsr_replica *r, const vsr_message *m);
/* Primary: a backup showed that it is in our view and hears us (an ack, or
 * a GET_STATE while it catches up): check-quorum counts it. */
void normal_heard_backup(vsr_replica *r, uint8_t from);
/* Primary: no quorum hears us; fall silent and say PRIMARY_LOST. */
void normal_abdicate(vsr_replica *r);
/* Primary: a backup voted in a higher view, so it left ours: it no longer
 * counts for check-quorum, and without it no quorum may be left (then we
 * abdicate at once: nothing can commit in our view any more). */
void normal_backup_left(vsr_replica *r, uint8_t from);
void normal_on_commit(vsr_replica *r, const vsr_message *m);
void normal_flush_queue(vsr_replica *r);
void normal_send_ack(vsr_replica *r);
void normal_try_commit(vsr_replica *r);
void normal_advance_commit(vsr_replica *r, uint64_t commit);
void normal_execute(vsr_replica *r);
void normal_on_tick(vsr_replica *r);
void normal_become_primary(vsr_replica *r);
void normal_become_backup(vsr_replica *r);
/* A new primary, once it has executed what is committed, marks the requests
 * of its inherited uncommitted ops as in flight. */
void normal_mark_inherited_pending(vsr_replica *r);
void primary_drop_pipeline(vsr_replica *r);
void primary_send_prepare(vsr_replica *r, uint64_t op, int to);

/* read.c */
void read_on_request(vsr_replica *r, const vsr_message *m, uint64_t conn);
/* End of a step at a normal primary: starts a read round when reads wait for
 * one, and answers the reads that are ready. */
void read_flush(vsr_replica *r, bool more);
/* The primary left its role or its view: every pending read is refused
 * (NOT_PRIMARY), so clients retry at the new primary. */
void read_fail_all(vsr_replica *r);
void read_free(vsr_replica *r);
/* A PREPARE_OK of our view echoed read round `round`. */
void read_on_ack(vsr_replica *r, uint8_t from, uint64_t round);
/* The read round a heartbeat carries (with leases, a new one when none is
 * in flight, which keeps the lease fresh). */
uint64_t read_heartbeat_round(vsr_replica *r);
bool read_leases_enabled(const vsr_replica *r);
/* Whether a backup's promise (lease reads) still forbids it to enter a view
 * above its own on its own initiative. */
bool read_lease_promise_holds(const vsr_replica *r);

/* view_change.c */
void vc_start(vsr_replica *r, uint64_t view);
/* Pre-vote: we lost our view's primary (a backup's timeout) or a quorum
 * (a primary's abdication). Says so to every replica, and starts the next
 * view once a quorum says the same. */
void vc_primary_lost(vsr_replica *r);
void vc_on_primary_lost(vsr_replica *r, const vsr_message *m);
/* A RECOVERY from another replica: it follows no primary either. */
void vc_on_recovery(vsr_replica *r, const vsr_message *m);
/* While suspecting: resends PRIMARY_LOST and re-counts the quorum. */
void vc_lost_tick(vsr_replica *r);
/* Ends suspicion: the primary was heard again, or the status changed. */
void vc_suspicion_clear(vsr_replica *r);
/* A message of our history from `from` (a stalled view change skips views
 * whose primary it has not heard lately). */
void vc_note_heard(vsr_replica *r, uint8_t from);
/* Whether replica p sent us anything within two primary timeouts plus the
 * disk's slack: a live view's primary, a fetch's source. */
bool vc_heard_lately(const vsr_replica *r, uint8_t p);
void vc_on_start_view_change(vsr_replica *r, const vsr_message *m);
void vc_on_do_view_change(vsr_replica *r, const vsr_message *m);
void vc_on_start_view(vsr_replica *r, const vsr_message *m);
void vc_on_tick(vsr_replica *r);
void vc_send_votes(vsr_replica *r);
void vc_reset_votes(vsr_replica *r);
/* Sends START_VIEW to `to`, or to every backup when to < 0. */
void vc_send_start_view(vsr_replica *r, int to);
/* Leaves recovery for a view change in `view` (>= the durable view). */
void vc_resume(vsr_replica *r, uint64_t view);

/* state_transfer.c */
/* Enters state transfer into `view` (>= ours), asking that view's primary. */
void st_start(vsr_replica *r, uint64_t view);
void st_request_repair(vsr_replica *r);
void st_on_get_state(vsr_replica *r, const vsr_message *m);
void st_on_new_state(vsr_replica *r, const vsr_message *m);
void st_on_get_checkpoint(vsr_replica *r, const vsr_message *m);
void st_on_checkpoint_chunk(vsr_replica *r, const vsr_message *m);
void st_on_tick(vsr_replica *r);
void st_send_request(vsr_replica *r);
/* Takes a checkpoint of the executed state at r->executed. */
void checkpoint_take(vsr_replica *r);
/* The state machine made every checkpoint at or below `op` durable. */
void checkpoint_on_durable(vsr_replica *r, uint64_t op);
/* Restart: adopts the state machine's own checkpoint (at or above the
 * superblock's); returns VSR_OK or an error. */
int checkpoint_open(vsr_replica *r, const vsr_superblock *sb);
/* Starts fetching checkpoint cp (status state_transfer). */
void st_fetch_checkpoint(vsr_replica *r, const vsr_checkpoint *cp);
/* Drops a checkpoint fetch (its bitmaps). */
void checkpoint_fetch_stop(vsr_replica *r);

/* divergence.c */
/* Fills the divergence fields of an outgoing PREPARE_OK or COMMIT. */
void dv_fill_ack(const vsr_replica *r, vsr_message *m);
void dv_fill_commit(const vsr_replica *r, vsr_message *m);
/* Primary: a matching PREPARE_OK from a backup of our view. */
void dv_on_prepare_ok(vsr_replica *r, const vsr_message *m);
/* Backup: a COMMIT of our view's primary. */
void dv_on_commit(vsr_replica *r, const vsr_message *m);
/* A normal backup heard its primary: a diverged one repairs from the
 * certification it recorded when no COMMIT names one (divergence.c). */
void dv_repair_from_record(vsr_replica *r);
/* Primary: whether it must abdicate (its state differs from a quorum's). */
bool dv_must_abdicate(const vsr_replica *r);
/* State transfer: the fetched certified checkpoint was installed; the log
 * is kept and re-executed above it. */
void dv_repaired(vsr_replica *r);
/* The repair's fetch or install failed: back to a normal backup, still
 * diverged (the next certification tries again). */
void dv_repair_failed(vsr_replica *r);

/* recovery.c */
void rec_on_recovery(vsr_replica *r, const vsr_message *m);
void rec_on_recovery_response(vsr_replica *r, const vsr_message *m);
void rec_on_tick(vsr_replica *r);

/* client_table.c: commit-time processing of one request */
void ct_execute_request(vsr_replica *r, const vsr_entry *e, const vsr_request *req,
			uint32_t index, uint8_t *status_out, uint64_t *session_out);

#endif /* VSR_REPLICA_H */
