/* vsrc_session.c - one client session's retry and outcome logic (see the header). */
#include "vsrc_session.h"

#include <assert.h>
#include <string.h>

const char *vsrc_outcome_name(int outcome)
{
	switch (outcome) {
	case VSRC_DONE:
		return "done";
	case VSRC_FAILED:
		return "failed";
	case VSRC_UNKNOWN:
		return "unknown";
	default:
		return "invalid";
	}
}

void vsrc_timing_default(vsrc_timing *t)
{
	/* A request pending at a primary that is deposed is answered by
	 * nobody: the client learns of it only by waiting. On the default
	 * config a new primary is normal some 300-600 ms after the old one
	 * stopped, so a retry after 500 ms usually finds it; a retry to a
	 * primary that is merely slow costs one duplicate, which the primary
	 * attaches to the request in flight. A call lasts several view changes. */
	t->attempt_ms = 500;
	t->call_ms = 10000;
	t->backoff_min_ms = 2;
	t->backoff_max_ms = 200;
}

void vsrc_session_init(vsrc_session *s, uint8_t replica_count,
		       const vsrc_timing *timing)
{
	assert(replica_count >= 1 && replica_count <= VSR_REPLICAS_MAX);
	memset(s, 0, sizeof(*s));
	s->replica_count = replica_count;
	if (timing)
		s->timing = *timing;
	else
		vsrc_timing_default(&s->timing);
	assert(s->timing.attempt_ms > 0 && s->timing.call_ms > 0);
	assert(s->timing.backoff_min_ms > 0 &&
	       s->timing.backoff_min_ms <= s->timing.backoff_max_ms);
	s->phase = VSRC_IDLE;
}

bool vsrc_session_ready(const vsrc_session *s)
{
	return s->phase == VSRC_IDLE && s->session != 0 && !s->evicted;
}

static uint64_t session_clamp(const vsrc_session *s, uint64_t t)
{
	return t < s->call_deadline_ms ? t : s->call_deadline_ms;
}

static vsrc_decision session_send(vsrc_session *s)
{
	vsrc_decision d = { .type = VSRC_SEND, .replica = s->target, .status = -1 };
	return d;
}

static vsrc_decision session_nothing(void)
{
	vsrc_decision d = { .type = VSRC_NOTHING, .status = -1 };
	return d;
}

static vsrc_decision session_complete(vsrc_session *s, int outcome, int status,
				      const char *reason)
{
	s->phase = VSRC_IDLE;
	s->deadline_ms = 0;
	vsrc_decision d = { .type = VSRC_COMPLETE, .outcome = outcome,
			    .status = status, .reason = reason };
	return d;
}

static bool session_copies_pending(const vsrc_session *s)
{
	for (uint32_t i = 0; i < s->replica_count; i++)
		if (s->in_flight[i] > 0)
			return true;
	return false;
}

/* The call cannot go on: the outcome depends only on whether some copy sent
 * may still be applied. */
static vsrc_decision session_give_up(vsrc_session *s, const char *why_failed,
				     int status)
{
	if (session_copies_pending(s) && s->kind != VSR_REQUEST_QUERY)
		return session_complete(s, VSRC_UNKNOWN, status,
					"unknown: the request may have been applied");
	return session_complete(s, VSRC_FAILED, status, why_failed);
}

/* Waits before sending to `target` again; the wait doubles each time. */
static vsrc_decision session_backoff(vsrc_session *s, uint64_t now_ms)
{
	s->phase = VSRC_BACKOFF;
	s->deadline_ms = session_clamp(s, now_ms + s->backoff_ms);
	s->backoff_ms = s->backoff_ms * 2 > s->timing.backoff_max_ms
				? s->timing.backoff_max_ms
				: s->backoff_ms * 2;
	s->redirects = 0;
	return session_nothing();
}

static void session_rotate(vsrc_session *s)
{
	s->target = (uint8_t)((s->target + 1u) % s->replica_count);
}

/* A call's own state, once its request number is set: deadlines, backoff,
 * no send yet (the phase until the transport confirms one), then the
 * first send. */
static vsrc_decision session_begin_call(vsrc_session *s, uint64_t now_ms)
{
	s->call_deadline_ms = now_ms + s->timing.call_ms;
	s->backoff_ms = s->timing.backoff_min_ms;
	s->redirects = 0;
	s->sends = 0;
	memset(s->in_flight, 0, sizeof(s->in_flight));
	s->phase = VSRC_UNSENT;
	s->deadline_ms = session_clamp(s, now_ms + s->timing.attempt_ms);
	return session_send(s);
}

vsrc_decision vsrc_session_start(vsrc_session *s, uint8_t kind, uint64_t nonce,
				 uint64_t now_ms)
{
	assert(s->phase == VSRC_IDLE);
	assert(kind == VSR_REQUEST_REGISTER || kind == VSR_REQUEST_OP);
	s->kind = kind;
	if (kind == VSR_REQUEST_REGISTER) {
		assert(nonce != 0);
		s->session = 0;
		s->history = 0;
		s->request = 0;
		s->evicted = false;
		s->number = nonce;
	} else {
		assert(vsrc_session_ready(s));
		s->number = ++s->request;
	}
	return session_begin_call(s, now_ms);
}

vsrc_decision vsrc_session_start_query(vsrc_session *s, uint8_t mode, uint64_t now_ms)
{
	assert(s->phase == VSRC_IDLE);
	assert(mode < VSR_READ_MODE_COUNT);
	s->kind = VSR_REQUEST_QUERY;
	s->read_mode = mode;
	s->number = ++s->queries;
	return session_begin_call(s, now_ms);
}

void vsrc_session_sent(vsrc_session *s, uint8_t replica, uint64_t now_ms)
{
	assert(s->phase != VSRC_IDLE);
	assert(replica < s->replica_count);
	s->target = replica;
	s->phase = VSRC_AWAIT;
	s->sends++;
	s->in_flight[replica]++;
	s->deadline_ms = session_clamp(s, now_ms + s->timing.attempt_ms);
}

vsrc_decision vsrc_session_pending(vsrc_session *s, uint8_t replica,
				   uint64_t now_ms)
{
	if (s->phase == VSRC_IDLE || replica != s->target)
		return session_nothing();
	s->phase = VSRC_UNSENT;
	s->deadline_ms = session_clamp(s, now_ms + s->timing.attempt_ms);
	return session_nothing();
}

vsrc_decision vsrc_session_connected(vsrc_session *s, uint8_t replica,
				     uint64_t now_ms)
{
	(void)now_ms;
	if (s->phase == VSRC_UNSENT && replica == s->target)
		return session_send(s);
	return session_nothing();
}

vsrc_decision vsrc_session_unreachable(vsrc_session *s, uint8_t replica,
				       uint64_t now_ms)
{
	if (s->phase == VSRC_IDLE || replica != s->target)
		return session_nothing();
	if (now_ms >= s->call_deadline_ms)
		return session_give_up(s, "failed: no replica could be reached", -1);
	/* A copy already sent to `replica` keeps its in-flight count: the
	 * replica may have received it before the connection broke. */
	session_rotate(s);
	return session_backoff(s, now_ms);
}

vsrc_decision vsrc_session_timer(vsrc_session *s, uint64_t now_ms)
{
	if (s->phase == VSRC_IDLE)
		return session_nothing();
	if (now_ms >= s->call_deadline_ms)
		return session_give_up(
			s, s->sends ? "failed: every copy sent was refused"
				    : "failed: no replica could be reached",
			-1);
	if (now_ms < s->deadline_ms)
		return session_nothing();
	switch (s->phase) {
	case VSRC_AWAIT:
	case VSRC_UNSENT:
		/* No reply (or no connection) in time: the target may be dead
		 * or partitioned; any other replica will name the primary. */
		session_rotate(s);
		return session_send(s);
	case VSRC_BACKOFF:
		return session_send(s);
	default:
		assert(0 && "bad phase");
		return session_nothing();
	}
}

static bool session_reply_matches(const vsrc_session *s, const vsr_message *m)
{
	if (m->request.request != s->number)
		return false;
	/* Queries are numbered apart from requests: the kind tells a late
	 * answer to query k from the reply to request k. */
	if ((m->request.kind == VSR_REQUEST_QUERY) != (s->kind == VSR_REQUEST_QUERY))
		return false;
	if (s->kind == VSR_REQUEST_QUERY)
		return m->request.session == s->session;
	if (s->kind == VSR_REQUEST_REGISTER) {
		/* A successful REGISTER reply names the new session; a refusal
		 * echoes the session 0 it was sent with. */
		if (m->status == VSR_REPLY_OK || vsr_reply_is_error(m->status))
			return m->request.session != 0 || vsr_reply_is_error(m->status);
		return m->request.session == 0;
	}
	return m->request.session == s->session;
}

static void session_refused(vsrc_session *s, uint8_t from)
{
	/* A definite refusal vouches for one copy sent to `from`, never more. */
	if (s->in_flight[from] > 0)
		s->in_flight[from]--;
}

vsrc_decision vsrc_session_reply(vsrc_session *s, uint8_t from,
				 const vsr_message *m, uint64_t now_ms)
{
	if (s->phase == VSRC_IDLE || from >= s->replica_count ||
	    m->type != VSR_MSG_REPLY || !session_reply_matches(s, m))
		return session_nothing();
	switch (m->status) {
	case VSR_REPLY_OK:
		s->target = from;
		s->view = m->view;
		if (s->kind == VSR_REQUEST_REGISTER) {
			s->session = m->request.session;
			s->registered_op = m->reply_op;
			s->history = m->history;
			s->request = 0;
		}
		return session_complete(s, VSRC_DONE, VSR_REPLY_OK, NULL);
	case VSR_REPLY_ERROR:
		if (s->kind == VSR_REQUEST_QUERY) {
			s->target = from;
			return session_complete(s, VSRC_FAILED, VSR_REPLY_ERROR,
						"failed: the state machine refused the query");
		}
		/* Committed and executed as an error: the state machine left
		 * its state as it was, so the operation did not take effect. */
		s->target = from;
		return session_complete(s, VSRC_FAILED, VSR_REPLY_ERROR,
					"failed: the state machine refused the operation");
	case VSR_REPLY_SCRIPT_ERROR:
		if (s->kind == VSR_REQUEST_QUERY) {
			s->target = from;
			return session_complete(s, VSRC_FAILED, VSR_REPLY_SCRIPT_ERROR,
						"failed: the state machine's query raised an error");
		}
		/* Committed and executed, and the script raised (a bug in it or
		 * a spent budget): the state is as it was. */
		s->target = from;
		return session_complete(s, VSRC_FAILED, VSR_REPLY_SCRIPT_ERROR,
					"failed: the state machine's script raised an error");
	case VSR_REPLY_REJECTED:
		/* Definite: the request can never be prepared (too large). */
		s->target = from;
		return session_complete(s, VSRC_FAILED, VSR_REPLY_REJECTED,
					"failed: the cluster rejected the request (larger than its batch limit)");
	case VSR_REPLY_EVICTED:
		session_refused(s, from);
		if (m->commit < s->registered_op) {
			/* The replica has not yet executed the REGISTER that opened
			 * the session (a stale primary, or one that inherited it
			 * in a view change): its "evicted" means "not yet", and
			 * only a replica past that op can say it for certain. */
			session_rotate(s);
			return session_backoff(s, now_ms);
		}
		s->evicted = true;
		return session_give_up(
			s, "failed: session evicted (the cluster forgot this session; register again)",
			VSR_REPLY_EVICTED);
	case VSR_REPLY_HISTORY:
		/* Definite, whatever copies are still out: the history this
		 * session belongs to is gone from every replica, so no copy can
		 * be applied in the state the cluster holds now. */
		s->evicted = true;
		return session_complete(
			s, VSRC_FAILED, VSR_REPLY_HISTORY,
			"failed: the cluster lost every replica's state and began a new history; "
			"this session and whatever it did belong to the old one (register again)");
	case VSR_REPLY_NOT_PRIMARY: {
		session_refused(s, from);
		if (s->kind == VSR_REQUEST_QUERY && s->read_mode == VSR_READ_STALE) {
			/* Any replica that holds the history answers: the next one. */
			s->target = (uint8_t)((from + 1u) % s->replica_count);
			return session_backoff(s, now_ms);
		}
		/* Follow the answering replica's own view, never a remembered
		 * maximum: an isolated replica may name a view that never starts,
		 * and a sticky view would send every retry to it. */
		s->view = m->view;
		uint8_t hint = vsr_primary_of(m->view, s->replica_count);
		if (hint != from && s->redirects < s->replica_count) {
			s->target = hint;
			s->redirects++;
			return session_send(s);
		}
		/* The replica that should lead is not ready (a view change in
		 * progress), or replicas keep naming each other: wait, then ask
		 * the next replica, so every replica is tried in turn. */
		s->target = (uint8_t)((from + 1u) % s->replica_count);
		return session_backoff(s, now_ms);
	}
	case VSR_REPLY_BUSY:
		session_refused(s, from);
		s->target = from;
		return session_backoff(s, now_ms);
	default:
		/* A status this client does not know: not an answer it can act on. */
		return session_nothing();
	}
}

vsrc_decision vsrc_session_abort(vsrc_session *s, const char *why)
{
	if (s->phase == VSRC_IDLE)
		return session_nothing();
	return session_give_up(s, why, -1);
}
