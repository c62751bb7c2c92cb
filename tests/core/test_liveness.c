/* test_liveness.c - named liveness scenarios for the protocol core (issue 7,
 * findings 4, 5 and 7, and the availability faults of real runs), each
 * driving the real core message by message through the fixture.
 * Usage: test_liveness [NAME]   (no name: run all; --list: names) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static int failures;

static uint64_t view_of(fixture *f, uint8_t i)
{
	vsr_replica_info in;
	fx_info(f, i, &in);
	return in.view;
}

static uint64_t view_changes_of(fixture *f, uint8_t i)
{
	return vsr_replica_stats_get(f->node[i].r)->view_changes;
}

/* Every up replica normal in `view`, at the primary's op and commit. */
static bool caught_up_in(fixture *f, uint64_t view)
{
	int p = fx_primary(f);
	if (p < 0) return false;
	vsr_replica_info ip;
	fx_info(f, (uint8_t)p, &ip);
	if (ip.view != view) return false;
	for (uint8_t i = 0; i < f->n; i++) {
		if (!f->node[i].up) continue;
		vsr_replica_info in;
		fx_info(f, i, &in);
		if (in.status != VSR_STATUS_NORMAL || in.view != view || in.commit != ip.commit ||
		    in.op != ip.op)
			return false;
	}
	return true;
}

static bool caught_up_in_view_0(fixture *f, void *arg)
{
	(void)arg;
	return caught_up_in(f, 0);
}

/* Requests through replica 0 for `ticks` ticks: load while something stalls. */
static void load_at_0(fixture *f, uint64_t session, uint64_t *request, uint32_t ticks)
{
	for (uint32_t t = 0; t < ticks; t++) {
		if (t % 3 == 0) fx_request(f, 0, VSR_REQUEST_OP, session, ++*request, "load");
		fx_run(f, 1);
	}
}

/* The cluster most scenarios start from: three replicas, a session
 * registered through replica 0 (`nonce`) and `ticks` ticks of load_at_0.
 * Returns the session (0, and no load, if the register failed). */
static uint64_t loaded_cluster(fixture *f, uint64_t nonce, uint64_t *request, uint32_t ticks)
{
	fx_init(f, 3, NULL);
	uint64_t s = fx_register(f, 0, nonce);
	*request = 0;
	if (s != 0) load_at_0(f, s, request, ticks);
	return s;
}

/* The next request of the session answered OK. */
static bool next_call_ok(fixture *f, uint64_t session, uint64_t *request, const char *op)
{
	const fx_reply *r = fx_call(f, session, ++*request, op);
	return r && r->status == VSR_REPLY_OK;
}

/* A START_VIEW_CHANGE for `view` from member `from` (a member's message:
 * others are dropped), delivered to `to`. */
static void start_view_change(fixture *f, uint8_t from, uint8_t to, uint64_t view)
{
	vsr_message m;
	memset(&m, 0, sizeof m);
	m.type = VSR_MSG_START_VIEW_CHANGE;
	m.cluster = 7;
	m.history = f->history;
	m.replica = from;
	m.view = view;
	fx_inject(f, from, to, &m);
}

/* Backups first..last stall (no ticks, messages held) for `ticks` ticks of
 * load, resume (`tick_first`: their timer fires before the held messages
 * arrive), and 60 more ticks of load follow; then every replica must be
 * caught up in view 0 within 300 ticks. */
static bool stall_backups_keep_view_0(fixture *f, uint64_t session, uint64_t *request,
				      uint8_t first, uint8_t last, uint32_t ticks, bool tick_first)
{
	for (uint8_t i = first; i <= last; i++) fx_pause(f, i);
	load_at_0(f, session, request, ticks);
	for (uint8_t i = first; i <= last; i++) fx_resume(f, i, tick_first);
	load_at_0(f, session, request, 60);
	if (!fx_run_until(f, 300, caught_up_in_view_0, NULL)) return false;
	for (uint8_t i = 0; i < f->n; i++)
		if (view_of(f, i) != 0) return false;
	return true;
}

/* ------------------------------------------------------------------------ */

/* Finding 4 and "a backup resuming from a pause deposes the healthy
 * primary": a backup stalls (a long checkpoint step, SIGSTOP) for three
 * primary timeouts while the primary and the other backup keep committing.
 * When it resumes, its first event is a tick (its timer has long fired)
 * and the PREPAREs queued for it come after. The healthy primary keeps its
 * view: a lone replica that lost the primary moves nobody. */
static void test_paused_backup_keeps_primary(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 71, &req, 20);
	CHECK(s != 0);
	CHECK(stall_backups_keep_view_0(&f, s, &req, 1, 1, 3 * f.cfg[1].timeouts.primary_ticks, true));
	CHECK(view_changes_of(&f, 0) == 0 && view_changes_of(&f, 2) == 0);
	CHECK(next_call_ok(&f, s, &req, "after"));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Finding 4, the other half: one START_VIEW_CHANGE, from a backup that
 * still takes part in the view, pulls neither the primary nor the other
 * backup out of a working view. */
static void test_lone_start_view_change_moves_nobody(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 72, &req, 20);
	CHECK(s != 0);
	start_view_change(&f, 2, 0, 1);
	start_view_change(&f, 2, 1, 1);
	CHECK(view_of(&f, 0) == 0 && view_of(&f, 1) == 0);
	load_at_0(&f, s, &req, 30);
	CHECK(view_of(&f, 0) == 0 && view_of(&f, 1) == 0);
	CHECK(next_call_ok(&f, s, &req, "after"));
	CHECK(view_of(&f, 0) == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Finding 5: both backup->primary links cut, primary->backup links up. The
 * backups hear the primary's PREPAREs and COMMITs, so they never suspect
 * it, and the primary never hears an ack: without abdication nothing
 * commits, forever. With it, the primary steps down, the backups elect one
 * of them, and requests commit again while the cut lasts. */
static void test_one_way_cut_primary_abdicates(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 73, &req, 10);
	CHECK(s != 0);
	f.link[1][0] = false;
	f.link[2][0] = false;
	fx_run(&f, 400);
	int p = fx_primary(&f);
	CHECK(p == 1 || p == 2);
	CHECK(next_call_ok(&f, s, &req, "during the cut"));
	fx_heal(&f);
	CHECK(next_call_ok(&f, s, &req, "after the cut"));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Both backups stall at once for longer than the primary's abdication
 * window (they take the same checkpoint at the same op: the real runs of
 * finding 4 showed 670 ms steps on both). The primary abdicates; when the
 * backups resume, their acks reach it before they could lose it, and it
 * takes its view back: nobody is deposed. */
static void test_abdication_undone_when_acks_return(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 78, &req, 20);
	CHECK(s != 0);
	CHECK(stall_backups_keep_view_0(&f, s, &req, 1, 2, 3 * f.cfg[0].timeouts.primary_ticks, false));
	CHECK(next_call_ok(&f, s, &req, "after"));
	CHECK(view_of(&f, 0) == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* "An isolated backup keeps raising its view": a backup cut off for a long
 * time must not climb through views on its own, and when the cut heals it
 * drags nobody anywhere: it catches up in the view that kept working. */
static void test_isolated_backup_rejoins_quietly(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 74, &req, 10);
	CHECK(s != 0);
	fx_isolate(&f, 2);
	load_at_0(&f, s, &req, 600);
	CHECK(view_of(&f, 2) == 0);
	fx_heal(&f);
	load_at_0(&f, s, &req, 30);
	CHECK(fx_run_until(&f, 300, caught_up_in_view_0, NULL));
	CHECK(view_changes_of(&f, 0) == 0 && view_changes_of(&f, 1) == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* A replica stuck in a view change above the working view (it voted, then
 * lost its links) is brought back: the primary follows it once, straight
 * to its view, and the cluster ends normal in one view. */
static void test_stale_high_view_replica_reintegrated(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 75, &req, 10);
	CHECK(s != 0);
	fx_isolate(&f, 2);
	/* A START_VIEW_CHANGE for view 5 from the primary itself pulls the
	 * isolated replica 2 into a view change (a vote that crossed the cut
	 * just before it closed; the primary's own copy of it is lost). */
	start_view_change(&f, 0, 2, 5);
	fx_run(&f, 200);
	CHECK(view_of(&f, 2) >= 5);
	fx_heal(&f);
	CHECK(next_call_ok(&f, s, &req, "after"));
	int p;
	for (int t = 0; t < 300; t++) {
		p = fx_primary(&f);
		if (p >= 0 && caught_up_in(&f, view_of(&f, (uint8_t)p))) break;
		fx_run(&f, 1);
	}
	p = fx_primary(&f);
	CHECK(p >= 0 && caught_up_in(&f, view_of(&f, (uint8_t)p)));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static bool primary_1_with_register_uncommitted(fixture *f, void *arg)
{
	uint64_t op = *(uint64_t *)arg;
	if (fx_primary(f) != 1) return false;
	vsr_replica_info in;
	fx_info(f, 1, &in);
	return in.commit < op && in.op >= op;
}

/* Finding 7: a new primary holds a REGISTER in its log that it has not
 * executed yet (the old primary committed it and answered, then crashed
 * before the backups learned the commit). The client's first operation in
 * that session reaches the new primary: it must not be told "evicted", a
 * final answer, for a session that is about to exist. */
static void test_register_in_flight_not_evicted(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s0 = fx_register(&f, 0, 76);
	CHECK(s0 != 0);
	fx_run(&f, 10);
	/* The REGISTER reaches replica 1 only; replica 1's ack commits it at
	 * the primary, which answers and crashes before any COMMIT. */
	f.link[0][2] = false;
	uint64_t conn = fx_request(&f, 0, VSR_REQUEST_REGISTER, 0, 77, NULL);
	const fx_reply *reg = fx_reply_for(&f, conn);
	CHECK(reg && reg->status == VSR_REPLY_OK);
	uint64_t session = reg->session, register_op = reg->op;
	fx_crash(&f, 0);
	f.link[0][2] = true;
	vsr_replica_info in1;
	fx_info(&f, 1, &in1);
	CHECK(in1.commit < register_op && in1.op >= register_op);
	/* Replica 2's disk stalls: it writes its view-change votes but not
	 * the new view's log, so the new primary cannot commit the REGISTER. */
	f.node[2].auto_persist = false;
	bool held = false;
	for (int t = 0; t < 600 && !held; t++) {
		fx_run(&f, 1);
		while (f.node[2].pending_count > 0 && f.node[2].pending[0].superblock.log_view == 0)
			fx_persist_one(&f, 2);
		held = primary_1_with_register_uncommitted(&f, &register_op);
	}
	CHECK(held);
	uint64_t c = fx_request(&f, 1, VSR_REQUEST_OP, session, 1, "first");
	const fx_reply *r = fx_reply_for(&f, c);
	CHECK(r == NULL || r->status != VSR_REPLY_EVICTED);
	/* The disk comes back: the REGISTER commits and the operation with it
	 * (or its retry). */
	f.node[2].auto_persist = true;
	fx_run(&f, 5);
	r = fx_call(&f, session, 1, "first");
	CHECK(r && r->status == VSR_REPLY_OK);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}


/* A restarted replica whose recovery heard "normal in view 0" from a
 * replica that then went down (its answer is kept) and never heard the
 * view's primary must not wait for that primary forever while the replicas
 * still up change views and need its vote (5 replicas, 2 down: every quorum
 * needs it). The answers naming a later view show view 0 is over. */
static bool hold_zero_to_two(const fx_message *q, void *arg)
{
	(void)arg;
	return q->from == 0 && q->to == 2;
}

static void test_recovery_not_stuck_on_stale_normal_answer(void)
{
	fixture f;
	fx_init(&f, 5, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0 && fx_call(&f, s, 1, "w"));
	fx_crash(&f, 2);
	f.hold = hold_zero_to_two; /* the primary's answer never reaches it */
	fx_restart(&f, 2);
	fx_run(&f, 30); /* answers from 1, 3 and 4: normal in view 0 */
	vsr_replica_info in;
	fx_info(&f, 2, &in);
	CHECK(in.status == VSR_STATUS_RECOVERING);
	fx_crash(&f, 0);
	fx_crash(&f, 1); /* its "normal in view 0" stays with replica 2 */
	f.hold = NULL;
	bool led = false;
	for (int t = 0; t < 3000 && !led; t++) {
		fx_run(&f, 1);
		int p = fx_primary(&f);
		led = p >= 2;
	}
	CHECK(led);
	CHECK(fx_call(&f, s, 2, "w2"));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* A new history that nobody has written to yet: every backup's log is
 * empty, so its heartbeat acks name op 0. They must still reach the primary,
 * or its check-quorum hears no one and it abdicates, view after view, for as
 * long as clients only read (found by vsrsim --reads after a reformat:
 * seeds 482 with 3 replicas, 917 and 2680 with 5). */
static void test_idle_empty_log_keeps_primary(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	fx_run(&f, 200); /* genesis and view 0, nothing written */
	int p = fx_primary(&f);
	CHECK(p >= 0);
	uint64_t changes = 0;
	for (uint8_t i = 0; i < 3; i++) changes += view_changes_of(&f, i);
	fx_run(&f, 2000); /* many check-quorum windows, only heartbeats */
	uint64_t after = 0;
	for (uint8_t i = 0; i < 3; i++) after += view_changes_of(&f, i);
	CHECK(fx_primary(&f) == p);
	CHECK(after == changes);
	CHECK(view_of(&f, (uint8_t)p) == 0);
	/* A linearizable read is answered: the primary hears its quorum. */
	uint64_t conn = fx_query(&f, (uint8_t)p, VSR_READ_LINEARIZABLE, 1);
	fx_run(&f, 50);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r != NULL && r->status == VSR_REPLY_OK);
	fx_free(&f);
}

/* A replica that hears nobody must not lead the others from view to view.
 * vsrsim --seed 30179 --ticks 8000: every link into r2 cut (one way) while
 * all three were in a view change; r2's stalled view change skipped the
 * views of the replicas it could not hear, so it always moved, first, to a
 * view it leads; r0 and r1, connected both ways, followed its
 * START_VIEW_CHANGE into each of them, where their DO_VIEW_CHANGE never
 * reached it: no request completed for 1,500 ticks. A replica that heard no
 * one lately has no reason to prefer its own view: it moves to the next.
 * Here r2, in a view change and then cut off, must also visit views others
 * lead; and once r0 and r1 (and r2's outgoing links) are back, with r2
 * still deaf, a request completes. */
static bool both_in_view_change(fixture *f, void *arg)
{
	(void)arg;
	vsr_replica_info a, b;
	fx_info(f, 1, &a);
	fx_info(f, 2, &b);
	return a.status == VSR_STATUS_VIEW_CHANGE && b.status == VSR_STATUS_VIEW_CHANGE;
}

static bool quorum_serves(fixture *f, void *arg)
{
	const fx_reply *r = fx_reply_for(f, *(uint64_t *)arg);
	return r != NULL && r->status == VSR_REPLY_OK;
}

static void test_deaf_replica_leads_nobody_away(void)
{
	fixture f;
	uint64_t req, s = loaded_cluster(&f, 91, &req, 10);
	CHECK(s != 0);
	f.hops_per_tick = 1; /* a view change takes ticks: it can be caught in it */
	fx_isolate(&f, 0);
	uint32_t pt = f.cfg[2].timeouts.primary_ticks;
	CHECK(fx_run_until(&f, 10 * pt, both_in_view_change, NULL));
	fx_isolate(&f, 2);
	/* Past the window in which r2 still counts what it heard before. */
	fx_run(&f, 4 * pt);
	uint64_t last = view_of(&f, 2), others = 0, moves = 0;
	for (uint32_t t = 0; t < 200 * pt && moves < 6; t++) {
		fx_run(&f, 1);
		uint64_t v = view_of(&f, 2);
		if (v == last) continue;
		moves++;
		others += vsr_primary_of(v, 3) != 2;
		last = v;
	}
	CHECK(moves >= 3);
	CHECK(others > 0); /* not only views it leads */
	fx_heal(&f);
	f.link[0][2] = f.link[1][2] = false; /* still deaf */
	bool served = false;
	++req;
	for (int round = 0; round < 100 && !served; round++) {
		uint64_t conn = fx_request(&f, (uint8_t)(round % 2), VSR_REQUEST_OP, s, req, "after");
		served = fx_run_until(&f, 50, quorum_serves, &conn);
	}
	CHECK(served);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static const fx_test tests[] = {
	{"deaf_replica_leads_nobody_away", test_deaf_replica_leads_nobody_away},
	{"idle_empty_log_keeps_primary", test_idle_empty_log_keeps_primary},
	{"recovery_not_stuck_on_stale_normal_answer", test_recovery_not_stuck_on_stale_normal_answer},
	{"paused_backup_keeps_primary", test_paused_backup_keeps_primary},
	{"lone_start_view_change_moves_nobody", test_lone_start_view_change_moves_nobody},
	{"one_way_cut_primary_abdicates", test_one_way_cut_primary_abdicates},
	{"abdication_undone_when_acks_return", test_abdication_undone_when_acks_return},
	{"isolated_backup_rejoins_quietly", test_isolated_backup_rejoins_quietly},
	{"stale_high_view_replica_reintegrated", test_stale_high_view_replica_reintegrated},
	{"register_in_flight_not_evicted", test_register_in_flight_not_evicted},
};

int main(int argc, char **argv)
{
	return fx_main(argc, argv, tests, sizeof tests / sizeof tests[0], &failures);
}
