/* test_session.c - the client's outcome rules, step by step, with no I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsrc_session.h"
#include "check.h"

static vsrc_timing timing(void)
{
	vsrc_timing t = { .attempt_ms = 100, .call_ms = 1000, .backoff_min_ms = 2,
			  .backoff_max_ms = 16 };
	return t;
}

static vsr_message reply(uint8_t status, uint64_t session, uint64_t request,
			 uint64_t view)
{
	vsr_message m;
	memset(&m, 0, sizeof(m));
	m.type = VSR_MSG_REPLY;
	m.status = status;
	m.view = view;
	m.request.session = session;
	m.request.request = request;
	return m;
}

/* A registered session of 3 replicas, idle, target 0. */
static void registered(vsrc_session *s, uint64_t session_id)
{
	vsrc_timing t = timing();
	vsrc_session_init(s, 3, &t);
	vsrc_decision d = vsrc_session_start(s, VSR_REQUEST_REGISTER, 77, 0);
	CHECK(d.type == VSRC_SEND && d.replica == 0);
	vsrc_session_sent(s, 0, 0);
	vsr_message m = reply(VSR_REPLY_OK, session_id, 77, 0);
	m.history = 0x1111;
	d = vsrc_session_reply(s, 0, &m, 1);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_DONE);
	CHECK(s->session == session_id && vsrc_session_ready(s));
}

static void test_register_and_number(void)
{
	vsrc_session s;
	registered(&s, 9);
	for (uint64_t i = 1; i <= 3; i++) {
		vsrc_decision d = vsrc_session_start(&s, VSR_REQUEST_OP, 0, 10 * i);
		CHECK(d.type == VSRC_SEND && s.number == i);
		vsrc_session_sent(&s, d.replica, 10 * i);
		/* A stale reply (earlier number) is ignored. */
		vsr_message old = reply(VSR_REPLY_OK, 9, i - 1, 0);
		CHECK(vsrc_session_reply(&s, 0, &old, 10 * i).type == VSRC_NOTHING);
		/* So is a reply for another session. */
		vsr_message other = reply(VSR_REPLY_OK, 8, i, 0);
		CHECK(vsrc_session_reply(&s, 0, &other, 10 * i).type == VSRC_NOTHING);
		vsr_message m = reply(VSR_REPLY_OK, 9, i, 0);
		d = vsrc_session_reply(&s, 0, &m, 10 * i + 1);
		CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_DONE && d.status == VSR_REPLY_OK);
	}
}

static void test_not_primary_redirect_is_failed_if_nothing_else_sent(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_decision d = vsrc_session_start(&s, VSR_REQUEST_OP, 0, 100);
	vsrc_session_sent(&s, 0, 100);
	vsr_message np = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, 4); /* primary(4) = 1 */
	d = vsrc_session_reply(&s, 0, &np, 101);
	CHECK(d.type == VSRC_SEND && d.replica == 1);
	CHECK(s.view == 4);
	vsrc_session_sent(&s, 1, 101);
	/* Replica 1 also refuses, naming itself (a view change in progress):
	 * wait, then ask the next replica. */
	vsr_message np2 = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, 4);
	d = vsrc_session_reply(&s, 1, &np2, 102);
	CHECK(d.type == VSRC_NOTHING && s.phase == VSRC_BACKOFF && s.target == 2);
	CHECK(s.deadline_ms == 104);
	d = vsrc_session_timer(&s, 104);
	CHECK(d.type == VSRC_SEND && d.replica == 2);
	vsrc_session_sent(&s, 2, 104);
	vsr_message busy = reply(VSR_REPLY_BUSY, 9, 1, 4);
	d = vsrc_session_reply(&s, 2, &busy, 105);
	CHECK(d.type == VSRC_NOTHING && s.phase == VSRC_BACKOFF);
	/* Every copy was refused: at the deadline the call failed, certainly. */
	d = vsrc_session_timer(&s, 100 + 1000);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED);
	CHECK(s.request == 1); /* the number is used, even though it failed */
}

static void test_timeout_after_send_is_unknown(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	/* Attempt timeout: the same request goes to the next replica. */
	vsrc_decision d = vsrc_session_timer(&s, 50);
	CHECK(d.type == VSRC_NOTHING);
	d = vsrc_session_timer(&s, 100);
	CHECK(d.type == VSRC_SEND && d.replica == 1 && s.number == 1);
	vsrc_session_sent(&s, 1, 100);
	/* Replica 1 says it is not primary: that vouches for its copy only. */
	vsr_message np = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, 0);
	d = vsrc_session_reply(&s, 1, &np, 101);
	CHECK(d.type == VSRC_SEND && d.replica == 0);
	vsrc_session_sent(&s, 0, 101);
	vsr_message np0 = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, 0);
	d = vsrc_session_reply(&s, 0, &np0, 102);
	/* Replica 0 named itself: back off. One of its two copies is still
	 * unanswered, so the call can no longer fail for certain. */
	CHECK(d.type == VSRC_NOTHING);
	CHECK(s.in_flight[0] == 1 && s.in_flight[1] == 0);
	d = vsrc_session_timer(&s, 1000);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_UNKNOWN);
	CHECK(d.reason && strstr(d.reason, "may have been applied"));
}

static void test_late_reply_from_old_target_is_done(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsrc_decision d = vsrc_session_timer(&s, 100);
	CHECK(d.type == VSRC_SEND && d.replica == 1);
	vsrc_session_sent(&s, 1, 100);
	vsr_message ok = reply(VSR_REPLY_OK, 9, 1, 0);
	d = vsrc_session_reply(&s, 0, &ok, 120);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_DONE);
	CHECK(s.target == 0);
}

static void test_unreachable_rotates_and_fails_when_nothing_sent(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_decision d = vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	CHECK(d.type == VSRC_SEND && d.replica == 0);
	d = vsrc_session_unreachable(&s, 0, 0);
	CHECK(d.type == VSRC_NOTHING && s.target == 1 && s.phase == VSRC_BACKOFF);
	/* Unreachability of a replica that is not the target changes nothing. */
	CHECK(vsrc_session_unreachable(&s, 2, 1).type == VSRC_NOTHING && s.target == 1);
	uint64_t now = s.deadline_ms;
	for (int i = 0; i < 200 && now < 1000; i++) {
		d = vsrc_session_timer(&s, now);
		if (d.type == VSRC_COMPLETE)
			break;
		CHECK(d.type == VSRC_SEND);
		d = vsrc_session_unreachable(&s, d.replica, now);
		CHECK(d.type == VSRC_NOTHING);
		CHECK(s.deadline_ms - now <= 16); /* backoff is capped */
		now = s.deadline_ms;
	}
	d = vsrc_session_timer(&s, 1000);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED);
	CHECK(d.reason && strstr(d.reason, "no replica could be reached"));
}

static void test_lost_connection_after_send_is_unknown(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsrc_decision d = vsrc_session_unreachable(&s, 0, 5);
	CHECK(d.type == VSRC_NOTHING && s.target == 1);
	d = vsrc_session_timer(&s, 1000);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_UNKNOWN);
}

static void test_error_reply_is_failed_definitely(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsr_message e = reply(VSR_REPLY_ERROR, 9, 1, 0);
	vsrc_decision d = vsrc_session_reply(&s, 0, &e, 1);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED &&
	      d.status == VSR_REPLY_ERROR);
	CHECK(vsrc_session_ready(&s));
}

static void test_evicted(void)
{
	/* First copy refused as evicted: certainly not applied. */
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsr_message ev = reply(VSR_REPLY_EVICTED, 9, 1, 0);
	vsrc_decision d = vsrc_session_reply(&s, 0, &ev, 1);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED &&
	      d.status == VSR_REPLY_EVICTED);
	CHECK(d.reason && strstr(d.reason, "evicted"));
	CHECK(!vsrc_session_ready(&s) && s.evicted);

	/* A retry refused as evicted: the first copy may have committed before
	 * the eviction, so the outcome is unknown. */
	registered(&s, 10);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	d = vsrc_session_timer(&s, 100);
	CHECK(d.type == VSRC_SEND && d.replica == 1);
	vsrc_session_sent(&s, 1, 100);
	vsr_message ev2 = reply(VSR_REPLY_EVICTED, 10, 1, 0);
	d = vsrc_session_reply(&s, 1, &ev2, 101);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_UNKNOWN);

	/* Registering again clears the eviction. */
	d = vsrc_session_start(&s, VSR_REQUEST_REGISTER, 5, 200);
	vsrc_session_sent(&s, d.replica, 200);
	vsr_message ok = reply(VSR_REPLY_OK, 11, 5, 0);
	d = vsrc_session_reply(&s, d.replica, &ok, 201);
	CHECK(d.outcome == VSRC_DONE && vsrc_session_ready(&s) && s.session == 11);
	d = vsrc_session_start(&s, VSR_REQUEST_OP, 0, 300);
	CHECK(s.number == 1);
}

/* The cluster lost every replica's state and began a new history: the
 * session's request gets HISTORY. Definite even with a retry out (nothing of
 * the old history exists any more), and the next call registers again,
 * carrying the new history in its requests. */
static void test_history_changed(void)
{
	vsrc_session s;
	registered(&s, 2048);
	CHECK(s.history == 0x1111);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsrc_decision d = vsrc_session_timer(&s, 100);
	vsrc_session_sent(&s, d.replica, 100);
	vsr_message h = reply(VSR_REPLY_HISTORY, 2048, 1, 0);
	h.history = 0x2222;
	d = vsrc_session_reply(&s, d.replica, &h, 101);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED &&
	      d.status == VSR_REPLY_HISTORY);
	CHECK(d.reason && strstr(d.reason, "new history"));
	CHECK(!vsrc_session_ready(&s) && s.evicted);
	d = vsrc_session_start(&s, VSR_REQUEST_REGISTER, 6, 200);
	vsrc_session_sent(&s, d.replica, 200);
	vsr_message ok = reply(VSR_REPLY_OK, 2048, 6, 0);
	ok.history = 0x2222;
	d = vsrc_session_reply(&s, d.replica, &ok, 201);
	CHECK(d.outcome == VSRC_DONE && vsrc_session_ready(&s) && s.history == 0x2222);
}

static void test_rejected_is_failed(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsr_message rj = reply(VSR_REPLY_REJECTED, 9, 1, 0);
	vsrc_decision d = vsrc_session_reply(&s, 0, &rj, 1);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED &&
	      d.status == VSR_REPLY_REJECTED);
	CHECK(vsrc_session_ready(&s)); /* the session goes on */
}

static void test_redirect_loop_backs_off(void)
{
	/* Replicas that keep naming each other (views racing ahead) are not
	 * chased without pause: after n immediate redirects the session waits. */
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	int sends = 0;
	vsrc_decision d;
	for (uint64_t v = 1; v <= 10; v++) {
		uint8_t from = s.target;
		vsr_message np = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, v);
		d = vsrc_session_reply(&s, from, &np, 1);
		if (d.type != VSRC_SEND)
			break;
		sends++;
		vsrc_session_sent(&s, d.replica, 1);
	}
	CHECK(d.type == VSRC_NOTHING && s.phase == VSRC_BACKOFF);
	CHECK(sends <= 3);
}

static void test_isolated_replica_view_does_not_stick(void)
{
	/* Replica 2, cut off, keeps starting view changes (view 8, whose
	 * primary is itself); the cluster is normal in view 4 (primary 1). */
	vsrc_session s;
	registered(&s, 9);
	vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	vsrc_session_sent(&s, 0, 0);
	vsrc_decision d = vsrc_session_timer(&s, 100);
	CHECK(d.type == VSRC_SEND && d.replica == 1);
	d = vsrc_session_unreachable(&s, 1, 100); /* a moment of trouble */
	d = vsrc_session_timer(&s, s.deadline_ms);
	CHECK(d.type == VSRC_SEND && d.replica == 2);
	vsrc_session_sent(&s, 2, 110);
	vsr_message iso = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, 8);
	d = vsrc_session_reply(&s, 2, &iso, 111);
	CHECK(d.type == VSRC_NOTHING && s.target == 0);
	d = vsrc_session_timer(&s, s.deadline_ms);
	CHECK(d.type == VSRC_SEND && d.replica == 0);
	vsrc_session_sent(&s, 0, 120);
	vsr_message np = reply(VSR_REPLY_NOT_PRIMARY, 9, 1, 4);
	d = vsrc_session_reply(&s, 0, &np, 121);
	CHECK(d.type == VSRC_SEND && d.replica == 1); /* not back to replica 2 */
	vsrc_session_sent(&s, 1, 121);
	vsr_message ok = reply(VSR_REPLY_OK, 9, 1, 4);
	d = vsrc_session_reply(&s, 1, &ok, 122);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_DONE);
}

static void test_connecting_then_connected(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_decision d = vsrc_session_start(&s, VSR_REQUEST_OP, 0, 0);
	d = vsrc_session_pending(&s, d.replica, 0);
	CHECK(d.type == VSRC_NOTHING && s.phase == VSRC_UNSENT);
	CHECK(vsrc_session_connected(&s, 2, 1).type == VSRC_NOTHING);
	d = vsrc_session_connected(&s, 0, 1);
	CHECK(d.type == VSRC_SEND && d.replica == 0);
	/* Never sent and then aborted: failed. */
	d = vsrc_session_abort(&s, "failed: closed");
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED);
}

/* Queries: numbered apart, matched by kind, never UNKNOWN, and they leave
 * the session's request numbering alone. */
static void test_query(void)
{
	vsrc_session s;
	registered(&s, 9);
	vsrc_decision d = vsrc_session_start_query(&s, VSR_READ_LINEARIZABLE, 10);
	CHECK(d.type == VSRC_SEND && s.number == 1 && s.kind == VSR_REQUEST_QUERY);
	vsrc_session_sent(&s, d.replica, 10);
	/* The reply to request 1 of the session is not the query's answer. */
	vsr_message op_reply = reply(VSR_REPLY_OK, 9, 1, 0);
	op_reply.request.kind = VSR_REQUEST_OP;
	CHECK(vsrc_session_reply(&s, 0, &op_reply, 11).type == VSRC_NOTHING);
	vsr_message m = reply(VSR_REPLY_OK, 9, 1, 0);
	m.request.kind = VSR_REQUEST_QUERY;
	d = vsrc_session_reply(&s, 0, &m, 12);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_DONE);
	/* The next operation still takes request number 1. */
	d = vsrc_session_start(&s, VSR_REQUEST_OP, 0, 20);
	CHECK(d.type == VSRC_SEND && s.number == 1);
	vsrc_session_sent(&s, d.replica, 20);
	/* A late answer to query 1 does not complete request 1. */
	CHECK(vsrc_session_reply(&s, 0, &m, 21).type == VSRC_NOTHING);
	d = vsrc_session_reply(&s, 0, &op_reply, 22);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_DONE);
	/* A query sent and never answered FAILED: it changed nothing. */
	d = vsrc_session_start_query(&s, VSR_READ_STALE, 100);
	CHECK(d.type == VSRC_SEND && s.number == 2);
	vsrc_session_sent(&s, d.replica, 100);
	d = vsrc_session_timer(&s, 100 + s.timing.call_ms);
	CHECK(d.type == VSRC_COMPLETE && d.outcome == VSRC_FAILED);
	/* Stale: a NOT_PRIMARY moves on to the next replica. */
	d = vsrc_session_start_query(&s, VSR_READ_STALE, 200);
	vsrc_session_sent(&s, 1, 200);
	vsr_message np = reply(VSR_REPLY_NOT_PRIMARY, 9, 3, 0);
	np.request.kind = VSR_REQUEST_QUERY;
	d = vsrc_session_reply(&s, 1, &np, 201);
	CHECK(d.type == VSRC_NOTHING && s.target == 2);
}

int main(void)
{
	test_query();
	test_register_and_number();
	test_not_primary_redirect_is_failed_if_nothing_else_sent();
	test_timeout_after_send_is_unknown();
	test_late_reply_from_old_target_is_done();
	test_unreachable_rotates_and_fails_when_nothing_sent();
	test_lost_connection_after_send_is_unknown();
	test_error_reply_is_failed_definitely();
	test_evicted();
	test_history_changed();
	test_rejected_is_failed();
	test_redirect_loop_backs_off();
	test_isolated_replica_view_does_not_stick();
	test_connecting_then_connected();
	if (failures) {
		fprintf(stderr, "test_session: %d checks failed\n", failures);
		return 1;
	}
	printf("test_session: all checks passed\n");
	return 0;
}
