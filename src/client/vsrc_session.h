/* vsrc_session.h - one client session's retry and outcome logic, without I/O.
 *
 * Like the protocol core, this is a step function: the transport reports what
 * happened (a reply arrived from replica i, a connection to replica i is down,
 * the timer fired) with the current time in milliseconds, and the session
 * answers with one decision: send the pending request to replica j, wait, or
 * complete the call with an outcome. The libuv client (vsrc_client.c), the
 * blocking wrapper and the unit tests all drive this same code.
 *
 * Outcomes (never a guess):
 *   VSRC_DONE     the request was applied: `status` is VSR_REPLY_OK and the
 *                 reply bytes are the state machine's answer.
 *   VSRC_FAILED   the request was certainly not applied: no copy of it was
 *                 ever handed to a connection, every copy that was sent has
 *                 been refused definitely (NOT_PRIMARY, BUSY, REJECTED,
 *                 EVICTED on the first send), the cluster answered HISTORY
 *                 (it lost every replica's state and began a new history:
 *                 nothing of the old one, this session included, exists any
 *                 more), or the state machine rejected it
 *                 (VSR_REPLY_ERROR: applied as an error, state unchanged).
 *   VSRC_UNKNOWN  the request may have been applied: a copy was sent and
 *                 neither a reply nor a definite refusal came back for it
 *                 before the call's deadline.
 *
 * Why per-replica counts of copies in flight: replies carry only (session,
 * request), so a refusal from replica i can only vouch for one copy sent to
 * i; a copy sent earlier to another replica, or an earlier copy to i that i
 * silently put in its pipeline, may still commit. The call is FAILED only if
 * every copy sent has been refused. */
#ifndef VSRC_SESSION_H
#define VSRC_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "vsr.h"

enum vsrc_outcome {
	VSRC_DONE = 0,
	VSRC_FAILED = 1,
	VSRC_UNKNOWN = 2,
};

const char *vsrc_outcome_name(int outcome);

enum vsrc_decision_type {
	VSRC_NOTHING = 0, /* keep waiting until s->deadline_ms */
	VSRC_SEND,        /* send the pending request to `replica` now */
	VSRC_COMPLETE,    /* the call is over: see outcome, status, reason */
};

typedef struct vsrc_decision {
	int type;
	uint8_t replica;   /* SEND */
	int outcome;       /* COMPLETE: enum vsrc_outcome */
	int status;        /* COMPLETE: the reply status seen, or -1 when none */
	const char *reason; /* COMPLETE and not DONE: why, static text */
} vsrc_decision;

typedef struct vsrc_timing {
	uint32_t attempt_ms;     /* wait for a reply this long before another replica */
	uint32_t call_ms;        /* give up on the call after this long */
	uint32_t backoff_min_ms; /* first wait after BUSY or a view change in progress */
	uint32_t backoff_max_ms;
} vsrc_timing;

void vsrc_timing_default(vsrc_timing *t);

enum vsrc_phase {
	VSRC_IDLE = 0,   /* no call */
	VSRC_AWAIT,      /* a copy was sent to `target`; waiting for its reply */
	VSRC_BACKOFF,    /* waiting before resending to `target` */
	VSRC_UNSENT,     /* wants to send but the target's connection is down */
};

typedef struct vsrc_session {
	uint8_t replica_count;
	uint8_t target;          /* replica believed to be primary */
	uint64_t view;           /* view named by the latest reply (informational) */
	uint64_t session;        /* 0 until registered */
	uint64_t registered_op;  /* op of the REGISTER that opened it */
	uint64_t history;        /* the cluster history the session belongs to
	                            (from the REGISTER reply); every OP carries it */
	uint64_t request;        /* number of the current (or last) request */
	uint64_t queries;        /* QUERY calls started: their own numbering, which
	                            never consumes a request number of the session */
	uint8_t read_mode;       /* QUERY: enum vsr_read_mode */
	vsrc_timing timing;
	/* The call in progress. */
	int phase;
	uint8_t kind;            /* enum vsr_request_kind */
	uint64_t number;         /* REGISTER: the nonce; OP: the request number */
	uint64_t call_deadline_ms;
	uint64_t deadline_ms;    /* the transport arms its timer for this */
	uint32_t backoff_ms;
	uint32_t redirects;      /* immediate redirects since the last wait */
	uint32_t sends;          /* copies handed to a connection */
	uint32_t in_flight[VSR_REPLICAS_MAX]; /* copies not yet refused, per replica */
	bool evicted;            /* the cluster forgot this session (EVICTED, or
	                            HISTORY: it began a new history) */
} vsrc_session;

void vsrc_session_init(vsrc_session *s, uint8_t replica_count,
		       const vsrc_timing *timing);

/* True when a call may start (idle and, for an OP, registered). */
bool vsrc_session_ready(const vsrc_session *s);

/* Starts a REGISTER call with `nonce`, or an OP call with the next request
 * number. The decision is SEND (or NOTHING, then the transport must report
 * vsrc_session_connected when the target comes up or the timer fires). */
vsrc_decision vsrc_session_start(vsrc_session *s, uint8_t kind, uint64_t nonce,
				 uint64_t now_ms);

/* Starts a QUERY call (a read outside the log, docs/wire.md 6.7) in read
 * mode `mode`, numbered from the session's query counter. It needs no
 * session: it is sent with the session id when there is one, 0 otherwise.
 * A query changes nothing, so it is never UNKNOWN: a query that gets no
 * answer FAILED. A stale query goes to whichever replica answers; the
 * others to the primary. */
vsrc_decision vsrc_session_start_query(vsrc_session *s, uint8_t mode, uint64_t now_ms);

/* The transport handed the copy to replica `replica`'s connection. Must
 * follow each SEND decision that was carried out; when the connection is
 * down the transport calls vsrc_session_unreachable instead. */
void vsrc_session_sent(vsrc_session *s, uint8_t replica, uint64_t now_ms);

/* A REPLY arrived from `from`. Replies that do not belong to the call in
 * progress are ignored (decision NOTHING). */
vsrc_decision vsrc_session_reply(vsrc_session *s, uint8_t from,
				 const vsr_message *reply, uint64_t now_ms);

/* A SEND could not be carried out yet because the connection to `replica`
 * is still being established: wait for vsrc_session_connected, or move on
 * to another replica after attempt_ms. */
vsrc_decision vsrc_session_pending(vsrc_session *s, uint8_t replica,
				   uint64_t now_ms);

/* The connection to `replica` is down or could not be used for a SEND. */
vsrc_decision vsrc_session_unreachable(vsrc_session *s, uint8_t replica,
				       uint64_t now_ms);

/* The connection to `replica` came up (again). */
vsrc_decision vsrc_session_connected(vsrc_session *s, uint8_t replica,
				     uint64_t now_ms);

/* The timer fired: now_ms >= s->deadline_ms (earlier calls are harmless). */
vsrc_decision vsrc_session_timer(vsrc_session *s, uint64_t now_ms);

/* The caller abandons the call (the client is closing): completes it with
 * the outcome the copies sent so far allow. */
vsrc_decision vsrc_session_abort(vsrc_session *s, const char *why);

#endif /* VSRC_SESSION_H */
