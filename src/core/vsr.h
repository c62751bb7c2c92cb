/* vsr.h - the Viewstamped Replication protocol core: a deterministic step function.
 *
 * The core is a pure state machine. The host feeds it one event at a time
 * (a message from a replica, a client request, a timer tick, a storage write
 * that completed), each event carrying the current time in ticks, and reads
 * back a list of actions (send this message, persist this, reply to that
 * client, the next deadline). The core includes no I/O, clock, socket, libuv,
 * Lua or msgpack header and links nothing: the simulator, the real network
 * host and the unit tests all drive the very same code.
 *
 * References: "Viewstamped Replication Revisited" (Liskov, Cowling 2012),
 * called VRR, and ../shared/reference/protocol.md (the holes it closes).
 *
 * Invariants. I1-I4, I9 and I10 are checked by vsr_replica_check() after
 * every step in debug and simulator builds; I5-I8, about what a replica
 * sends, by the simulator on every message, together with the cluster-wide
 * invariants of protocol.md 12 (agreement, no committed op lost, ...):
 *   I1 0 <= checkpoint <= executed <= commit <= op, and op - commit <= log capacity.
 *   I2 log_view <= view; a replica whose status is normal has log_view == view.
 *   I3 The log is hash chained: entry(op).parent == checksum(op - 1) for every
 *      op held, and checksum(log_start - 1) is kept.
 *   I4 Durable state never runs ahead of memory: durable view <= view,
 *      durable log_view <= log_view, durable op <= op.
 *   I5 PREPARE_OK(v, op) is only sent when status is normal in v, the
 *      superblock with view = log_view = v is durable, and every entry up to op
 *      is durable (log matching on ack, protocol.md 3.2-3.3).
 *   I6 START_VIEW_CHANGE / DO_VIEW_CHANGE / START_VIEW for view v are only sent
 *      once view v is durable (protocol.md 5, hole 8.1).
 *   I7 Only primary(view) sends PREPARE, COMMIT and START_VIEW, and only in
 *      status normal.
 *   I8 Recovering and state-transfer replicas send no PREPARE_OK and no
 *      view-change message.
 *   I9 Pipeline slots (waiting connections) exist only for ops in
 *      commit+1 .. op at a normal primary; only a normal primary queues
 *      requests or holds pending reads (read.c).
 *   I10 The client table holds each session at most once and at most
 *      clients_max sessions.
 */
#ifndef VSR_H
#define VSR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsr_limits.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Results: VSR_OK, VSR_PENDING and negative errors, from one table          */
/* (vsr_strerror gives the text).                                            */

#define VSR_ERRORS(X)                                                  \
	X(VSR_OK, 0, "success")                                            \
	X(VSR_ENOMEM, -1, "out of memory")                                 \
	X(VSR_EINVAL, -2, "invalid argument")                              \
	X(VSR_ECORRUPT, -3, "corrupt durable state")                       \
	X(VSR_ETOOBIG, -4, "value exceeds a configured limit")             \
	X(VSR_ESM, -5, "state machine failed")                             \
	X(VSR_EIO, -6, "storage failed (disk error)")                      \
	X(VSR_PENDING, 1, "accepted, durable later")

enum vsr_error {
#define VSR_ERROR_ENUM(name, code, text) name = code,
	VSR_ERRORS(VSR_ERROR_ENUM)
#undef VSR_ERROR_ENUM
};

const char *vsr_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Statuses (protocol.md 2).                                                 */

enum vsr_status {
	VSR_STATUS_NORMAL = 0,
	VSR_STATUS_VIEW_CHANGE,
	VSR_STATUS_RECOVERING,
	VSR_STATUS_STATE_TRANSFER,
	VSR_STATUS_COUNT
};

const char *vsr_status_name(enum vsr_status s);

/* ------------------------------------------------------------------------ */
/* Log entries.                                                              */

/* One log entry: a batch of client requests prepared by the primary of
 * `view` at `op`. `checksum` covers every other header field and the body;
 * `parent` is the checksum of the entry at op - 1, so equal checksums at an op
 * imply equal logs up to that op (the hash chain of protocol.md 3). */
typedef struct vsr_entry {
	uint64_t checksum;
	uint64_t parent;
	uint64_t op;
	uint64_t view;
	uint64_t timestamp;    /* chosen by the primary, ns; monotonic in the log */
	uint32_t request_count; /* requests in body */
	uint32_t body_len;
	const uint8_t *body;   /* batch encoding: see vsr_batch_* below */
} vsr_entry;

/* Checksum of the (non-existent) entry at op 0: the root of every chain. */
uint64_t vsr_root_checksum(uint64_t cluster);
/* Computes the checksum of `e` (ignores e->checksum). */
uint64_t vsr_entry_checksum(const vsr_entry *e);

/* Request kinds inside a batch body. */
enum vsr_request_kind {
	VSR_REQUEST_REGISTER = 1, /* open a session; the reply carries its id */
	VSR_REQUEST_OP = 2,       /* state-machine operation */
	VSR_REQUEST_QUERY = 3,    /* read-only operation, answered outside the log
	                             (never in a batch; see vsr_read_mode) */
};

/* How a QUERY is answered (docs/protocol.md "Reads", protocol.md 10).
 * LINEARIZABLE: by the primary, once a quorum round started after the read
 *   arrived confirmed it still leads its view, and once it executed every op
 *   it had prepared when the read arrived.
 * LEASE: by the primary without a round while it holds a lease (only when
 *   the configuration bounds clock drift, vsr_config.lease_drift_ppm);
 *   otherwise answered as LINEARIZABLE. Safe only under that bound.
 * STALE: by any replica at once, from whatever state it executed; the reply
 *   says so and names the op that state reflects. */
enum vsr_read_mode {
	VSR_READ_LINEARIZABLE = 0,
	VSR_READ_LEASE = 1,
	VSR_READ_STALE = 2,
	VSR_READ_MODE_COUNT
};
const char *vsr_read_mode_name(unsigned mode);

/* One client request, as it travels from client to primary and as it is
 * stored in a batch. `session` is 0 for REGISTER (then `request` is a random
 * client nonce echoed in the reply). */
typedef struct vsr_request {
	uint64_t session;
	uint64_t request;
	uint8_t kind;
	uint32_t op_len;
	const uint8_t *op;
} vsr_request;

/* Batch body encoding (little endian, fixed): per request
 *   u64 session | u64 request | u8 kind | u32 op_len | op bytes
 * vsr_batch_next() walks a body; it returns false at the end or on a
 * malformed body (which a checksummed entry never is). */
#define VSR_BATCH_REQUEST_HEADER_SIZE 21u
typedef struct vsr_batch_iter {
	const uint8_t *p;
	const uint8_t *end;
} vsr_batch_iter;
void vsr_batch_iter_init(vsr_batch_iter *it, const vsr_entry *e);
bool vsr_batch_next(vsr_batch_iter *it, vsr_request *out);
/* Validates a body fully: every request well formed and count matches. */
bool vsr_batch_valid(const uint8_t *body, uint32_t len, uint32_t count);

/* ------------------------------------------------------------------------ */
/* Messages between replicas, and between clients and replicas.              */

enum vsr_message_type {
	VSR_MSG_NONE = 0,
	/* client <-> replica */
	VSR_MSG_REQUEST = 1,
	VSR_MSG_REPLY = 2,
	/* normal operation (VRR 4.1) */
	VSR_MSG_PREPARE = 3,
	VSR_MSG_PREPARE_OK = 4,
	VSR_MSG_COMMIT = 5,
	/* view change (VRR 4.2) */
	VSR_MSG_START_VIEW_CHANGE = 6,
	VSR_MSG_DO_VIEW_CHANGE = 7,
	VSR_MSG_START_VIEW = 8,
	/* state transfer (VRR 5.2, fixed as protocol.md 6) */
	VSR_MSG_GET_STATE = 9,
	VSR_MSG_NEW_STATE = 10,
	VSR_MSG_GET_CHECKPOINT = 11,
	VSR_MSG_CHECKPOINT_CHUNK = 12,
	/* recovery (VRR 4.3, protocol.md 5) */
	VSR_MSG_RECOVERY = 13,
	VSR_MSG_RECOVERY_RESPONSE = 14,
	/* liveness (protocol.md 4, pre-vote): "I lost the primary of view v".
	 * It promises nothing, so it needs no durable view; a replica leaves a
	 * working view only once a quorum has said so (docs/protocol.md). */
	VSR_MSG_PRIMARY_LOST = 15,
	VSR_MSG_TYPE_COUNT
};

const char *vsr_message_type_name(enum vsr_message_type t);

/* Reply statuses seen by clients. */
enum vsr_reply_status {
	VSR_REPLY_OK = 0,          /* applied; body is the state machine's reply */
	VSR_REPLY_ERROR = 1,       /* applied deterministically as an error; body is the message */
	VSR_REPLY_EVICTED = 2,     /* the session is unknown (evicted): register again */
	VSR_REPLY_NOT_PRIMARY = 3, /* not applied: ask replica `primary` of `view` */
	VSR_REPLY_BUSY = 4,        /* not applied: queue full, retry later */
	VSR_REPLY_REJECTED = 5,    /* not applied, never will be: the request is invalid
	                              (too large for a batch); body says why */
	VSR_REPLY_HISTORY = 6,     /* not applied: the session belongs to another history
	                              of the cluster (every replica lost its state and a
	                              new history began); `history` names the current
	                              one; register again */
	VSR_REPLY_SCRIPT_ERROR = 7, /* applied deterministically as an error the state
	                              machine did not mean (a Lua runtime error, a spent
	                              budget), unlike ERROR (a deliberate refusal such as
	                              vsr.fail); body is the message */
};

/* Applied as an error, the state unchanged: a refusal or a script error. */
static inline int vsr_reply_is_error(unsigned status)
{
	return status == VSR_REPLY_ERROR || status == VSR_REPLY_SCRIPT_ERROR;
}

/* A message. Fields that a type does not use are zero. Pointers inside
 * (entries, bodies, chunk bytes) are borrowed: in an action they stay valid
 * until the next call into the core; in an event only for that call. */
typedef struct vsr_message {
	uint8_t type;        /* enum vsr_message_type */
	uint8_t replica;     /* sender's index (replica messages) */
	uint8_t status;      /* REPLY: enum vsr_reply_status; RECOVERY_RESPONSE: sender status */
	uint64_t cluster;
	uint64_t history;    /* the sender's cluster history (0: unjoined); REQUEST:
	                        the session's history (0 for REGISTER); REPLY: the
	                        replica's */
	uint64_t epoch;
	uint64_t view;
	uint64_t log_view;   /* DO_VIEW_CHANGE, NEW_STATE, RECOVERY_RESPONSE: v' */
	uint64_t op;         /* head op (PREPARE_OK: op acknowledged) */
	uint64_t commit;
	uint64_t checksum;   /* PREPARE_OK: checksum at op; COMMIT: at commit;
	                        DO_VIEW_CHANGE: at its commit; NEW_STATE/START_VIEW: at op;
	                        CHECKPOINT_CHUNK: checkpoint entry checksum;
	                        RECOVERY_RESPONSE: the responder's incarnation nonce,
	                        or a membership grant (recovery.c) */
	uint64_t nonce;      /* RECOVERY(_RESPONSE), GET_STATE/NEW_STATE, GET_CHECKPOINT;
	                        PREPARE/COMMIT: the primary's read round;
	                        PREPARE_OK: the highest read round the backup saw
	                        from its primary in this view (read.c) */
	uint64_t timestamp;  /* REPLY: the op's timestamp; NEW_STATE, CHECKPOINT_CHUNK:
	                        the checkpoint entry's */
	/* client fields: REQUEST and REPLY */
	vsr_request request; /* REQUEST: the request; REPLY: session/request echo */
	uint64_t reply_op;   /* REPLY: op that executed the request; to a QUERY: the
	                        op the answer reflects (the state executed through it) */
	uint8_t read_mode;   /* REQUEST of kind QUERY: enum vsr_read_mode asked;
	                        REPLY to a QUERY: the mode it was answered in
	                        (STALE: the answer may miss committed ops) */
	uint32_t body_len;   /* REPLY: reply bytes; CHECKPOINT_CHUNK: chunk bytes */
	const uint8_t *body;
	/* PREPARE (1 entry), DO_VIEW_CHANGE, START_VIEW, NEW_STATE */
	uint32_t entry_count;
	const vsr_entry *entries;
	/* checkpoints: NEW_STATE says which checkpoint to fetch when the log is
	 * compacted past the request; GET_CHECKPOINT / CHECKPOINT_CHUNK page it. */
	uint64_t checkpoint_op;
	uint64_t checkpoint_size;
	uint64_t offset;
	uint64_t checkpoint_digest; /* NEW_STATE, GET_CHECKPOINT, CHECKPOINT_CHUNK:
	                               the checkpoint's own checksum (vsr_checkpoint) */
} vsr_message;

/* Reason a message is structurally invalid, or NULL. Called by the wire
 * layer after decoding and by the core before acting on anything. */
const char *vsr_message_invalid(const vsr_message *m, uint32_t replica_count);

/* ------------------------------------------------------------------------ */
/* The state machine, as the core sees it: bytes in, bytes out.             */

typedef struct vsr_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
} vsr_buf;

/* Appends; returns VSR_OK or VSR_ENOMEM. Growth by doubling. */
int vsr_buf_append(vsr_buf *b, const void *data, size_t len);
void vsr_buf_reset(vsr_buf *b);
void vsr_buf_free(vsr_buf *b);

/* What an operation may know about where it runs. Identical on every replica. */
typedef struct vsr_apply_ctx {
	uint64_t op;         /* log position of the entry holding the request */
	uint64_t timestamp;  /* primary-chosen, carried in the log, ns */
	uint64_t session;
	uint64_t request;
	uint64_t seed;       /* for a deterministic per-operation generator */
	/* The reply must not be longer (vsr_reply_bytes_max). A state machine
	 * should refuse an operation whose reply would be, leaving its state
	 * unchanged (VSR_REPLY_ERROR). The core bounds it anyway: a longer
	 * reply is replaced by an error reply, the same on every replica, so
	 * no stored reply can outgrow a message or a checkpoint. */
	uint32_t reply_max;
} vsr_apply_ctx;

/* A session as the eviction policy sees it. */
typedef struct vsr_session_info {
	uint64_t session;
	uint64_t request;     /* last request number committed */
	uint64_t last_op;     /* op at which that request committed */
	uint64_t registered_op;
} vsr_session_info;

/* A checkpoint as the core knows it. Its bytes belong to the state machine:
 * the core never holds a whole checkpoint, it moves one between replicas in
 * (op, offset, length) chunks through the callbacks below. */
typedef struct vsr_checkpoint {
	uint64_t op;        /* the state as executed through this op; 0: none */
	uint64_t checksum;  /* checksum of the log entry at op (its place in the chain) */
	uint64_t timestamp; /* that entry's timestamp */
	uint64_t size;      /* bytes of the checkpoint's transfer image */
	uint64_t digest;    /* the checkpoint's own checksum: of its image, chosen by
	                       the state machine; verified before install */
} vsr_checkpoint;

/* The core's verdict on a checkpoint's meta bytes (its client table), called
 * by checkpoint_install before the state machine commits to the new state. */
typedef int (*vsr_checkpoint_accept)(void *arg, const uint8_t *meta, size_t len);

typedef struct vsr_state_machine {
	void *ctx;
	/* Applies one committed operation. Writes the reply into `reply` (empty on
	 * entry) and returns VSR_REPLY_OK, VSR_REPLY_ERROR or VSR_REPLY_SCRIPT_ERROR; an error leaves the
	 * state as before the operation. Must be deterministic. */
	int (*apply)(void *ctx, const vsr_apply_ctx *actx, const uint8_t *op,
		     size_t op_len, vsr_buf *reply);
	/* Whole-state serialisation: not called by the core. vsr_snapckpt
	 * (vsr_snapckpt.h) builds the checkpoint callbacks out of these two for
	 * a state machine that keeps its state in memory. restore must leave the
	 * state untouched when it fails. */
	int (*snapshot)(void *ctx, vsr_buf *out);
	int (*restore)(void *ctx, const uint8_t *data, size_t len);
	/* A digest of the whole state: equal states give equal digests. */
	uint64_t (*digest)(void *ctx);
	/* Optional dedup policy: picks which of `n` sessions (sorted by session
	 * id, n == clients_max) to evict to make room. Must be deterministic.
	 * NULL means: the session with the oldest last_op, ties by lowest id. */
	uint32_t (*evict)(void *ctx, const vsr_session_info *sessions, uint32_t n);

	/* Checkpoints (protocol.md 7). The state machine keeps the current
	 * checkpoint and the one before it readable (a replica fetching the
	 * previous one while a new one is taken still completes), and the bytes
	 * of one checkpoint being fetched.
	 *
	 * take: the executed state becomes checkpoint cp (op, checksum and
	 * timestamp are set), stored with `meta` (the core's client table,
	 * opaque). Fills cp->size and cp->digest. Returns VSR_OK when the
	 * checkpoint is durable on return, or VSR_PENDING when it is readable
	 * (and served) now but becomes durable later: the host then steps
	 * VSR_EVENT_CHECKPOINT_DURABLE. Until then the superblock keeps naming
	 * the last durable checkpoint, so the log above it is kept, and a crash
	 * may bring the state back to that one (never older). Checkpoints
	 * become durable in the order they were taken. At restart the state's
	 * own checkpoint is the truth, never an op re-applied on top of it. */
	int (*checkpoint_take)(void *ctx, vsr_checkpoint *cp, const uint8_t *meta,
			       size_t meta_len);
	/* read: appends bytes [offset, offset + len) of the image of checkpoint
	 * cp (fewer at its end) to `out`. VSR_EINVAL when cp (op and digest) is
	 * not held any more. */
	int (*checkpoint_read)(void *ctx, const vsr_checkpoint *cp, uint64_t offset,
			       uint32_t len, vsr_buf *out);
	/* write: stores fetched bytes of checkpoint cp at offset. Chunks arrive
	 * in any order, maybe twice; a different cp drops what was stored. */
	int (*checkpoint_write)(void *ctx, const vsr_checkpoint *cp, uint64_t offset,
				const uint8_t *data, uint32_t len);
	/* install: checks the fetched image of cp (complete, cp->digest), builds
	 * a fresh state from it, passes its meta to accept(arg, ...), and only
	 * when both succeed replaces the state; cp becomes the current
	 * checkpoint. On any failure the state and checkpoints are as before. */
	int (*checkpoint_install)(void *ctx, const vsr_checkpoint *cp,
				  vsr_checkpoint_accept accept, void *arg);
	/* open: at restart, the checkpoint the state holds (op 0: none) and its
	 * meta; the state is that checkpoint's, and it is durable. */
	int (*checkpoint_open)(void *ctx, vsr_checkpoint *cp, vsr_buf *meta);
} vsr_state_machine;

/* ------------------------------------------------------------------------ */
/* Configuration.                                                            */

/* Timeouts in ticks. Each timer draws jitter from the replica's own seeded
 * generator; view-change timeouts back off exponentially per attempt. */
typedef struct vsr_timeouts {
	uint32_t heartbeat_ticks;        /* primary sends COMMIT when idle this long */
	uint32_t prepare_retry_ticks;    /* primary resends unacknowledged PREPAREs */
	uint32_t primary_ticks;          /* backup suspects the primary after this */
	uint32_t view_change_ticks;      /* a stalled view change moves on */
	uint32_t recovery_retry_ticks;   /* RECOVERY / GET_STATE resend */
	uint32_t jitter_ticks;           /* uniform extra 0..jitter on suspicion timers */
} vsr_timeouts;

typedef struct vsr_config {
	uint64_t cluster;
	uint8_t replica_count;       /* n; quorum = n/2 + 1 of this, never of peers seen */
	uint8_t replica;             /* this replica's index in the member order */
	uint32_t pipeline_max;       /* prepares in flight at the primary */
	uint32_t batch_requests_max; /* requests per entry */
	uint32_t batch_bytes_max;    /* body bytes per entry */
	uint32_t request_queue_max;  /* requests waiting for a pipeline slot */
	uint64_t request_queue_bytes_max; /* their operation bytes, at most */
	uint32_t clients_max;        /* sessions in the client table */
	uint32_t checkpoint_interval; /* ops between checkpoints */
	uint32_t log_max;            /* entries kept in memory (power of two) */
	uint32_t message_entries_max; /* entries in one NEW_STATE / START_VIEW */
	uint32_t chunk_bytes_max;    /* bytes in one CHECKPOINT_CHUNK */
	uint32_t message_bytes_max;  /* bytes of one encoded message (the wire's frame limit) */
	uint64_t seed;               /* this replica's generator (jitter, nonces) */
	/* The id of the new history this replica starts if it is replica 0 and
	 * finds every configured replica unjoined (genesis, protocol.md
	 * "Joining"). Random, drawn by the host for every process start, never 0. */
	uint64_t genesis_history;
	vsr_timeouts timeouts;
	/* Lease reads (docs/protocol.md "Reads"): the bound on clock drift
	 * between any two replicas, in parts per million, that the operator
	 * vouches for. 0 (the default): no leases; a LEASE read is answered
	 * as LINEARIZABLE. With a bound, a primary whose read round was acked
	 * by a quorum holds a lease of primary_ticks * (1 - drift) -
	 * lease_margin_ticks from the round's start, and backups and restarted
	 * replicas keep the promise that makes it safe. */
	uint32_t lease_drift_ppm;
	uint32_t lease_margin_ticks;
	uint32_t bugs;               /* VSR_BUG_* (only with VSR_FAULT_INJECTION) */
} vsr_config;

/* Fills every field with a sensible default for (cluster, n, replica). */
void vsr_config_default(vsr_config *c, uint64_t cluster, uint8_t replica_count,
			uint8_t replica);
/* Reason the config is unusable, or NULL. */
const char *vsr_config_invalid(const vsr_config *c);
/* The one reply limit of a configuration: the state machine is told it, the
 * client table stores nothing longer, a REPLY carrying it fits one message
 * (message_bytes_max), and a checkpoint's table decodes (at most
 * VSR_REPLY_BYTES_MAX). */
uint32_t vsr_reply_bytes_max(const vsr_config *c);

/* Deliberate protocol bugs, compiled only into test builds of the core
 * (VSR_FAULT_INJECTION): the simulator must catch each of them. */
enum vsr_bug {
	VSR_BUG_ACK_CONFLICTING = 1u << 0,   /* ack a different entry at an op held */
	VSR_BUG_QUORUM_MINUS_ONE = 1u << 1,  /* commit with one ack fewer than a quorum */
	VSR_BUG_TRUNCATE_TRANSFER = 1u << 2, /* published state transfer: truncate to commit, adopt view */
	VSR_BUG_UNPERSISTED_VOTE = 1u << 3,  /* send view-change votes before the view is durable */
	/* The classic misses (issue 7): each one a guard or rule taken away. */
	VSR_BUG_DVC_BY_OP = 1u << 4,         /* choose the DO_VIEW_CHANGE log by op before log_view */
	VSR_BUG_DVC_STALE_COPIES = 1u << 5,  /* DO_VIEW_CHANGE copies kept (and counted) across views */
	VSR_BUG_ACK_EARLY = 1u << 6,         /* PREPARE_OK before the view's log_view is durable */
	/* Regression-seed bugs: the bug each seed of regressions.txt was added for. */
	VSR_BUG_SHORTEN_OWN_LOG = 1u << 7,   /* a stale START_VIEW/NEW_STATE shortens a log of its own log_view (R6) */
	VSR_BUG_OLD_CHECKPOINT = 1u << 8,    /* install a fetched checkpoint the commit already passed (F6) */
	VSR_BUG_BACKOFF_RESET = 1u << 9,     /* view-change backoff reset by every view that starts (F12) */
	VSR_BUG_STALE_RECOVERY_ANSWER = 1u << 10, /* keep a restarted (or long silent) replica's old recovery answer (F16) */
	VSR_BUG_BACKUP_NEW_STATE = 1u << 11, /* a normal backup answers GET_STATE with its own log (F13) */
	VSR_BUG_RECOVERY_ANY_NONCE = 1u << 12, /* count RECOVERY_RESPONSEs of any nonce */
	VSR_BUG_ACK_BELOW_LOG = 1u << 13,    /* ack an op below the log (checksum 0) after a checkpoint install (F4) */
	VSR_BUG_REGISTER_LAST_REPLY = 1u << 14, /* a late duplicate REGISTER gets the session's last reply (F10) */
	VSR_BUG_NONATOMIC_RESTORE = 1u << 15, /* a failed install keeps the checkpoint's client table (finding 3) */
	VSR_BUG_NO_ABDICATION = 1u << 16,    /* a primary that hears no quorum keeps its view forever */
	VSR_BUG_NO_DIVERGENCE_CHECK = 1u << 17, /* checkpoint digests are neither sent nor compared */
	VSR_BUG_NO_RECORD_REPAIR = 1u << 27, /* a diverged replica repairs only from a COMMIT naming the certified checkpoint */
	/* Durable checkpoints (issue 8). */
	VSR_BUG_EARLY_CHECKPOINT_NAME = 1u << 18, /* the superblock names a checkpoint at take
	                                        time, before it is durable (VSR_PENDING) */
	VSR_BUG_DURABLE_NAMES_CURRENT = 1u << 19, /* a durable report names the current checkpoint,
	                                        though it covers only an older one */
	/* Liveness (issue 7). */
	VSR_BUG_NO_DISK_SLACK = 1u << 24,    /* timeouts ignore the disk: no slack for slow writes, and a view change moves on before its vote is durable */
	VSR_BUG_NO_HEAL_RESET = 1u << 25,    /* backoff kept when a quorum is heard again; views of silent primaries not skipped */
	VSR_BUG_LOST_SAME_VIEW = 1u << 26,   /* PRIMARY_LOST of another view neither counted nor followed */
	/* Reads (issue 11). */
	VSR_BUG_READ_NO_ROUND = 1u << 20,    /* answer a linearizable read without the quorum round
	                                        (nor heed its own abdication) */
	VSR_BUG_READ_BEFORE_EXECUTE = 1u << 21, /* answer it before the ops prepared at its arrival execute */
};

/* Defensive branches: each guard against a stale, duplicate or malformed
 * message counts its hits in vsr_replica_stats.guards, so a sweep shows
 * which guards the fault mix ever reaches (docs/simulator.md). */
enum vsr_guard {
	VSR_GUARD_VOTE_OLD_VIEW,         /* START_VIEW_CHANGE / DO_VIEW_CHANGE of an older view */
	VSR_GUARD_DVC_MALFORMED,         /* DO_VIEW_CHANGE suffix not commit+1..op or broken */
	VSR_GUARD_DVC_BEST_BELOW_COMMIT, /* the best DO_VIEW_CHANGE log is shorter than our commit */
	VSR_GUARD_DVC_NO_PREFIX,         /* no committed prefix under the best log: wait */
	VSR_GUARD_SV_OLD_VIEW,           /* START_VIEW of an older view */
	VSR_GUARD_SV_BELOW_COMMIT,       /* START_VIEW whose op is below our commit */
	VSR_GUARD_SV_SHORTER_OWN_LOG,    /* START_VIEW of our log_view, shorter than our log */
	VSR_GUARD_PRIMARY_MSG_OLD_VIEW,  /* PREPARE / COMMIT of an older view */
	VSR_GUARD_PREPARE_OK_MISMATCH,   /* PREPARE_OK for an entry we do not hold */
	VSR_GUARD_REC_STALE_NONCE,       /* RECOVERY_RESPONSE to another recovery */
	VSR_GUARD_REC_FORGET_ANSWER,     /* a RECOVERY voids the sender's earlier answer (F16) */
	VSR_GUARD_NS_STALE_NONCE,        /* NEW_STATE to another request */
	VSR_GUARD_NS_OLD_VIEW,           /* NEW_STATE of an older view, or not transferring */
	VSR_GUARD_NS_BELOW_COMMIT,       /* NEW_STATE whose op is below our commit */
	VSR_GUARD_NS_SHORTER_OWN_LOG,    /* complete NEW_STATE of our log_view, shorter than our log */
	VSR_GUARD_CHUNK_STALE,           /* CHECKPOINT_CHUNK of another fetch, offset or checkpoint */
	VSR_GUARD_CHUNK_PASSED,          /* the commit passed the checkpoint being fetched (F6) */
	VSR_GUARD_RESTORE_FAILED,        /* a fetched checkpoint did not restore */
	VSR_GUARD_GET_STATE_NOT_PRIMARY, /* GET_STATE at a replica that cannot vouch for the view */
	VSR_GUARD_COUNT
};

const char *vsr_guard_name(enum vsr_guard g);

/* ------------------------------------------------------------------------ */
/* Durable state: what storage holds, and what a restart loads.              */

/* The superblock (protocol.md 5): written in two checksummed copies by the
 * storage layer. */
typedef struct vsr_superblock {
	uint64_t cluster;
	uint64_t history;           /* the cluster history this state belongs to;
	                               0: none (the replica starts unjoined) */
	uint64_t epoch;
	uint64_t view;
	uint64_t log_view;
	uint64_t commit;            /* a lower bound of the commit number */
	uint64_t checkpoint_op;     /* op of the latest durable checkpoint (0: none):
	                               the state machine's, which may be taken
	                               but not yet durable, can be newer */
	uint64_t checkpoint_checksum; /* checksum of the entry at checkpoint_op */
	uint64_t checkpoint_size;   /* bytes of the checkpoint's image */
	uint64_t checkpoint_timestamp; /* timestamp of the entry at checkpoint_op */
} vsr_superblock;

/* ------------------------------------------------------------------------ */
/* Events (input) and actions (output).                                      */

enum vsr_event_type {
	VSR_EVENT_TICK = 1,      /* the clock advanced; `now` is current */
	VSR_EVENT_MESSAGE,       /* a message from replica message.replica */
	VSR_EVENT_REQUEST,       /* a client request arrived on connection `conn` */
	VSR_EVENT_PERSISTED,     /* the persist action `persist_id` is durable */
	VSR_EVENT_FLUSH,         /* end of a burst of events marked `more` */
	VSR_EVENT_CHECKPOINT_DURABLE, /* every checkpoint at or below
	                            `checkpoint_op` is durable (a take that
	                            returned VSR_PENDING) */
};

typedef struct vsr_event {
	uint8_t type;
	uint64_t now;            /* ticks, monotonic */
	uint64_t realtime_ns;    /* wall clock, used only by a primary to timestamp entries */
	uint64_t conn;           /* REQUEST: opaque host handle, echoed in REPLY actions */
	uint64_t persist_id;     /* PERSISTED */
	uint64_t checkpoint_op;  /* CHECKPOINT_DURABLE */
	const vsr_message *message; /* MESSAGE, REQUEST */
	/* A hint that more events follow at once (a host draining its sockets):
	 * the primary may then hold queued requests back to batch them, until
	 * an event without the hint, or a FLUSH. Never needed for correctness. */
	bool more;
} vsr_event;

enum vsr_action_type {
	VSR_ACTION_SEND = 1,     /* send `message` to replica `to` */
	VSR_ACTION_REPLY,        /* send `message` (a REPLY) to client connection `conn` */
	VSR_ACTION_PERSIST,      /* write, in order, then report VSR_EVENT_PERSISTED */
	VSR_ACTION_QUERY,        /* run the state machine's read-only query on
	                            `query_op` against the state as it is now (executed
	                            through message.reply_op), put its status and answer
	                            into `message` (a REPLY) and send it to `conn` */
};

/* A persist: storage applies, in this order and before reporting it done,
 * (1) truncation of the log after `truncate_after` (when has_truncate),
 * (2) the entries, (3) the superblock. Persists complete in the order they
 * were issued. Checkpoints are not in it: the state machine stores them
 * (checkpoint_take, checkpoint_install) before the superblock naming one is
 * written. */
typedef struct vsr_persist {
	uint64_t id;
	bool has_truncate;
	uint64_t truncate_after;
	uint32_t entry_count;
	const vsr_entry *entries;
	vsr_superblock superblock;
} vsr_persist;

typedef struct vsr_action {
	uint8_t type;
	uint8_t to;              /* SEND */
	uint64_t conn;           /* REPLY */
	vsr_message message;     /* SEND, REPLY; QUERY: the reply, status OK and no body */
	vsr_persist persist;     /* PERSIST */
	const uint8_t *query_op; /* QUERY: the operation bytes (borrowed) */
	uint32_t query_op_len;
} vsr_action;

/* Actions produced by one step; owned by the replica, valid until the next
 * call into it. */
typedef struct vsr_actions {
	vsr_action *items;
	uint32_t count;
	uint64_t deadline;       /* the core wants a TICK at or before this tick */
} vsr_actions;

/* ------------------------------------------------------------------------ */
/* The replica.                                                              */

typedef struct vsr_replica vsr_replica;

/* What a restart found on disk. `entries` are the log after checkpoint_op in
 * op order, already checksum-verified by storage (a torn or corrupt tail is
 * cut off by storage). The checkpoint itself is the state machine's
 * (checkpoint_open); it may be newer than the superblock's, never older.
 * Pass NULL when the disk holds no valid state (empty, lost, unreadable, or
 * memory mode): the replica starts UNJOINED. A superblock whose history is 0
 * means the same. */
typedef struct vsr_durable {
	vsr_superblock superblock;
	uint32_t entry_count;
	const vsr_entry *entries;
} vsr_durable;

/* Creates a replica. It starts in status recovering. With durable == NULL it
 * is UNJOINED: it knows no history, votes in nothing, counts in no quorum and
 * acknowledges nothing; the protocol makes it either catch up as an amnesiac
 * with the cluster's history, or, when every configured replica is unjoined,
 * begin a new history (genesis, protocol.md "Joining"). With durable state it
 * recovers (protocol.md 5). The state machine must be empty; the core
 * restores the checkpoint into it and re-executes the committed log.
 * Returns VSR_OK or a negative error. */
int vsr_replica_create(vsr_replica **out, const vsr_config *config,
		       const vsr_state_machine *sm, const vsr_durable *durable,
		       uint64_t now);
void vsr_replica_destroy(vsr_replica *r);

/* The step function. Actions of the previous step are invalidated. */
void vsr_replica_step(vsr_replica *r, const vsr_event *event, vsr_actions *out);

/* Checks the replica's local invariants (I1-I10); returns a reason or NULL. */
const char *vsr_replica_check(const vsr_replica *r);
/* In builds with VSR_INVARIANTS the check runs after every step; this returns
 * the first failure seen, or NULL. */
const char *vsr_replica_invariant_failure(const vsr_replica *r);

/* Read-only inspection, for hosts (status output), the simulator's checker
 * and tests. */
typedef struct vsr_replica_info {
	uint8_t replica;
	uint8_t status;
	uint8_t primary;         /* primary(view) */
	uint64_t view;
	uint64_t log_view;
	uint64_t op;
	uint64_t commit;
	uint64_t executed;
	uint64_t checkpoint_op;
	uint64_t log_start;      /* first op held in memory */
	uint64_t durable_view;
	uint64_t durable_log_view;
	uint64_t durable_op;
	uint32_t pipeline;       /* prepares in flight (primary) */
	uint32_t queued;         /* requests waiting (primary) */
	uint32_t sessions;
	uint64_t digest;         /* state machine digest ^ client table digest */
	uint64_t history;        /* cluster history (0: unjoined) */
	bool amnesia;            /* no durable promises yet (unjoined or catching up) */
} vsr_replica_info;

void vsr_replica_info_get(const vsr_replica *r, vsr_replica_info *out);
/* The same without the digest (left 0), which may cost a state-machine
 * snapshot: what a host calls on its hot path. */
void vsr_replica_status_get(const vsr_replica *r, vsr_replica_info *out);
/* The entry held at `op`, or NULL when not held. */
const vsr_entry *vsr_replica_entry(const vsr_replica *r, uint64_t op);
/* Checksum of the entry at op (known for log_start - 1 .. op), or 0. */
uint64_t vsr_replica_checksum_at(const vsr_replica *r, uint64_t op);
/* The primary of `view` in a cluster of `n`: members[view mod n]. */
static inline uint8_t vsr_primary_of(uint64_t view, uint8_t n)
{
	return (uint8_t)(view % n);
}
static inline uint32_t vsr_quorum(uint8_t n)
{
	return (uint32_t)n / 2 + 1;
}

/* Counters a host exports as metrics. */
typedef struct vsr_replica_stats {
	uint64_t messages_in[VSR_MSG_TYPE_COUNT];
	uint64_t messages_out[VSR_MSG_TYPE_COUNT];
	uint64_t messages_dropped;   /* invalid, wrong cluster, stale view */
	uint64_t view_changes;
	uint64_t ops_committed;
	uint64_t requests_deduplicated;
	uint64_t sessions_evicted;
	uint64_t replies_too_large;  /* replaced by an error reply (vsr_apply_ctx.reply_max) */
	uint64_t state_transfers;
	uint64_t checkpoints;
	uint64_t divergences;        /* our state found to differ from a quorum's (vsr_divergence) */
	uint64_t divergence_repairs; /* certified checkpoints installed over a diverged state */
	uint64_t divergent_peers;    /* primary: backups told that their state differs */
	uint64_t divergence_abdications; /* primary: found itself in the minority, abdicated */
	uint64_t guards[VSR_GUARD_COUNT]; /* hits of each defensive branch */
	uint64_t reads[VSR_READ_MODE_COUNT]; /* queries answered, by the mode answered in */
	uint64_t reads_failed;       /* queries refused (not primary, view changed, busy) */
	uint64_t read_rounds;        /* read rounds started (primary) */
	uint64_t heal_resets;        /* view-change backoff reset: a quorum heard again */
} vsr_replica_stats;

const vsr_replica_stats *vsr_replica_stats_get(const vsr_replica *r);

/* Runtime divergence detection (docs/protocol.md "Divergence detection").
 * Every checkpoint's digest (vsr_checkpoint.digest, a digest of the logical
 * state and the client table chosen by the state machine) travels in
 * PREPARE_OK and COMMIT. A replica whose digest at a checkpoint op differs
 * from the one a quorum agreed on stops acknowledging, fetches that
 * checkpoint and re-executes its own log above it; a primary in the minority
 * abdicates first. The latest detection, for the host's log line: */
typedef struct vsr_divergence {
	uint64_t op;            /* the checkpoint op compared */
	uint64_t digest;        /* ours there */
	uint64_t quorum_digest; /* the quorum's there */
	uint64_t view;
	uint64_t executed;      /* our executed op when it was found */
	bool as_primary;        /* found by the primary about itself (it abdicates) */
	bool repairing;         /* the certified checkpoint is being fetched */
} vsr_divergence;

/* True when our state is known to differ from a quorum's (not yet
 * repaired); fills *out with the latest detection when out != NULL. */
bool vsr_replica_diverged(const vsr_replica *r, vsr_divergence *out);

/* The client table's encoding inside checkpoints is internal; its digest is
 * part of the replica digest. */

#ifdef __cplusplus
}
#endif

#endif /* VSR_H */
