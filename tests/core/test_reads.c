/* test_reads.c - named scenarios for queries answered outside the log
 * (read.c): linearizable reads wait for a quorum round and for execution,
 * a cut-off primary never answers one, stale reads are labelled, leases end
 * before a new view can start.
 * Usage: test_reads [NAME]   (no name: run all; --list: names) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static int failures;

static uint64_t count_of(const fx_reply *r)
{
	return strtoull(r->body, NULL, 10);
}

static bool hold_prepare_ok(const fx_message *q, void *arg)
{
	(void)arg;
	return q->m.type == VSR_MSG_PREPARE_OK;
}

/* A read at the primary is answered after a round, by the primary, with the
 * op its answer reflects; it does not add to the log. */
static void test_linearizable_read(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0);
	const fx_reply *w = NULL;
	for (uint64_t k = 1; k <= 3; k++) {
		w = fx_call(&f, s, k, "w");
		CHECK(w && w->status == VSR_REPLY_OK);
	}
	vsr_replica_info before;
	fx_info(&f, 0, &before);
	uint64_t conn = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 1);
	fx_run(&f, 3);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->query);
	CHECK(r->read_mode == VSR_READ_LINEARIZABLE);
	CHECK(count_of(r) == count_of(w));
	CHECK(r->op == before.op);
	vsr_replica_info after;
	fx_info(&f, 0, &after);
	CHECK(after.op == before.op); /* not prepared */
	CHECK(vsr_replica_stats_get(f.node[0].r)->read_rounds >= 1);
	/* A backup refuses a linearizable read and names the primary. */
	conn = fx_query(&f, 1, VSR_READ_LINEARIZABLE, 2);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_NOT_PRIMARY && r->hint == 0);
	fx_free(&f);
}

/* A read that arrives while an op is prepared but not committed waits for
 * the round and for that op's execution, and reflects it. */
static void test_read_waits_for_prepared_op(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0);
	f.hold = hold_prepare_ok;
	uint64_t wconn = fx_request(&f, 0, VSR_REQUEST_OP, s, 1, "w");
	vsr_replica_info in;
	fx_info(&f, 0, &in);
	CHECK(in.op == in.commit + 1);
	uint64_t prepared = in.op;
	uint64_t conn = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 1);
	fx_run(&f, 20);
	CHECK(fx_reply_for(&f, conn) == NULL); /* no quorum heard: no answer */
	f.hold = NULL;
	while (f.held_count > 0) fx_release(&f, 0);
	fx_run(&f, 10);
	const fx_reply *r = fx_reply_for(&f, conn);
	const fx_reply *w = fx_reply_for(&f, wconn);
	CHECK(w && w->status == VSR_REPLY_OK);
	CHECK(r && r->status == VSR_REPLY_OK && r->op >= prepared);
	CHECK(count_of(r) >= count_of(w));
	fx_free(&f);
}

/* A primary cut off from both backups never answers a linearizable read,
 * while the others elect a primary and commit a write; the read is refused
 * once the old primary abdicates. */
static void test_cut_off_primary_does_not_answer(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0);
	CHECK(fx_call(&f, s, 1, "w"));
	fx_isolate(&f, 0);
	uint64_t conn = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 1);
	bool new_write = false;
	for (int t = 0; t < 400; t++) {
		fx_run(&f, 1);
		const fx_reply *r = fx_reply_for(&f, conn);
		CHECK(r == NULL || r->status != VSR_REPLY_OK);
		int p = fx_primary(&f);
		if (!new_write && p > 0) {
			const fx_reply *w = fx_call(&f, s, 2, "w2");
			new_write = w && w->status == VSR_REPLY_OK;
		}
	}
	CHECK(new_write);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_NOT_PRIMARY);
	/* A stale read there is answered, and labelled. */
	conn = fx_query(&f, 0, VSR_READ_STALE, 2);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->read_mode == VSR_READ_STALE);
	CHECK(count_of(r) == 1);
	fx_free(&f);
}

/* A stale read at a backup is answered at once, labelled, at its executed op. */
static void test_stale_read_at_backup(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(fx_call(&f, s, 1, "w"));
	fx_run(&f, 20);
	vsr_replica_info in;
	fx_info(&f, 2, &in);
	uint64_t conn = fx_query(&f, 2, VSR_READ_STALE, 1);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->read_mode == VSR_READ_STALE);
	CHECK(r->op == in.executed && r->replica == 2);
	CHECK(count_of(r) == 1);
	fx_free(&f);
}

static void tune_lease(vsr_config *c)
{
	c->lease_drift_ppm = 50000; /* 5% */
	c->lease_margin_ticks = 1;
}

/* With leases, an idle primary answers a lease read at once; cut off, it
 * stops before any new view can start. */
static void test_lease_ends_before_new_view(void)
{
	fixture f;
	fx_init(&f, 3, tune_lease);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(fx_call(&f, s, 1, "w"));
	fx_run(&f, 20);
	uint64_t conn = fx_query(&f, 0, VSR_READ_LEASE, 1);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->read_mode == VSR_READ_LEASE);
	fx_isolate(&f, 0);
	uint64_t last_lease = 0, new_view_at = 0;
	for (uint64_t q = 2; q < 600 && new_view_at == 0; q++) {
		conn = fx_query(&f, 0, VSR_READ_LEASE, q);
		r = fx_reply_for(&f, conn);
		if (r && r->status == VSR_REPLY_OK) {
			CHECK(r->read_mode == VSR_READ_LEASE);
			last_lease = f.now;
		}
		fx_run(&f, 1);
		for (uint8_t i = 1; i < 3; i++) {
			vsr_replica_info in;
			fx_info(&f, i, &in);
			if (in.view > 0 && new_view_at == 0) new_view_at = f.now;
		}
	}
	CHECK(last_lease > 0 && new_view_at > 0);
	CHECK(last_lease < new_view_at);
	fx_free(&f);
}

/* Without leases configured, a lease read is answered as linearizable. */
static void test_lease_off_means_linearizable(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(fx_call(&f, s, 1, "w"));
	uint64_t conn = fx_query(&f, 0, VSR_READ_LEASE, 1);
	fx_run(&f, 3);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->read_mode == VSR_READ_LINEARIZABLE);
	fx_free(&f);
}

/* One round serves every read that arrived before it started. */
static void test_reads_share_a_round(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(fx_call(&f, s, 1, "w"));
	f.hold = hold_prepare_ok;
	uint64_t rounds0 = vsr_replica_stats_get(f.node[0].r)->read_rounds;
	uint64_t conns[10];
	f.more = true; /* one burst of reads, as a host draining its sockets */
	for (int k = 0; k < 10; k++) conns[k] = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 1 + k);
	f.more = false;
	fx_flush(&f, 0);
	f.hold = NULL;
	while (f.held_count > 0) fx_release(&f, 0);
	fx_run(&f, 5);
	for (int k = 0; k < 10; k++) {
		const fx_reply *r = fx_reply_for(&f, conns[k]);
		CHECK(r && r->status == VSR_REPLY_OK);
	}
	uint64_t rounds = vsr_replica_stats_get(f.node[0].r)->read_rounds - rounds0;
	CHECK(rounds == 1);
	fx_free(&f);
}

static void test_single_replica_read(void)
{
	fixture f;
	fx_init(&f, 1, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(fx_call(&f, s, 1, "w"));
	uint64_t conn = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 1);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && count_of(r) == 1);
	fx_free(&f);
}

static uint64_t messages_out(fixture *f, uint8_t i)
{
	const vsr_replica_stats *st = vsr_replica_stats_get(f->node[i].r);
	uint64_t n = 0;
	for (int t = 0; t < VSR_MSG_TYPE_COUNT; t++) n += st->messages_out[t];
	return n;
}

/* With leases, a backup that heard its primary less than a primary timeout
 * ago keeps it, even when enough others vote for the next view that it
 * would follow them without leases (5 replicas: 3 votes above). */
static void lease_promise_case(bool leases, bool *followed)
{
	fixture f;
	fx_init(&f, 5, leases ? tune_lease : NULL);
	uint64_t s = fx_register(&f, 0, 1);
	*followed = false;
	if (!fx_call(&f, s, 1, "w")) {
		failures++;
		fx_free(&f);
		return;
	}
	fx_run(&f, 2); /* a heartbeat: the backups just heard the primary */
	for (uint8_t from = 2; from <= 4; from++) {
		vsr_message m;
		memset(&m, 0, sizeof m);
		m.type = VSR_MSG_START_VIEW_CHANGE;
		m.cluster = 7;
		m.history = f.history;
		m.replica = from;
		m.view = 1;
		fx_inject(&f, from, 1, &m);
	}
	vsr_replica_info in;
	fx_info(&f, 1, &in);
	*followed = in.view > 0;
	fx_free(&f);
}

static void test_lease_promise_holds_backup(void)
{
	bool with, without;
	lease_promise_case(false, &without);
	lease_promise_case(true, &with);
	CHECK(without); /* the rule the promise overrides */
	CHECK(!with);
}

/* With leases, a restarted replica says nothing for a primary timeout: it
 * may have backed a lease just before it crashed. */
static void test_lease_restart_keeps_quiet(void)
{
	fixture f;
	fx_init(&f, 3, tune_lease);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(fx_call(&f, s, 1, "w"));
	fx_crash(&f, 2);
	fx_restart(&f, 2);
	fx_run(&f, f.cfg[2].timeouts.primary_ticks - 1);
	CHECK(messages_out(&f, 2) == 0);
	CHECK(fx_run_until(&f, 400, fx_all_caught_up, NULL));
	CHECK(messages_out(&f, 2) > 0);
	fx_free(&f);
}


/* A new primary must not answer a read before it executed the ops the old
 * primary committed and answered in the previous view. Replica 0 commits and
 * answers a write whose COMMIT never leaves it, then crashes; replica 1 leads
 * view 1 holding that op uncommitted. Replica 2 holds view 1's log but not
 * durably yet, so its round echo confirms a read round before the op can
 * commit: the read waits for the op (step 1's "log head" rule), and answers
 * with it once replica 2's disk catches up. */
static bool hold_old_commit_and_sv(const fx_message *q, void *arg)
{
	(void)arg;
	return (q->from == 0 && q->m.type == VSR_MSG_COMMIT) ||
	       (q->to == 2 && q->m.type == VSR_MSG_START_VIEW);
}

static void test_new_primary_read_waits_for_inherited_op(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0);
	CHECK(fx_call(&f, s, 1, "w"));
	fx_run(&f, 5); /* every backup commits w */
	f.hold = hold_old_commit_and_sv;
	const fx_reply *w2 = fx_call(&f, s, 2, "w2");
	CHECK(w2 && w2->status == VSR_REPLY_OK && w2->replica == 0);
	uint64_t answered = w2 ? count_of(w2) : 0;
	vsr_replica_info b;
	fx_info(&f, 1, &b);
	CHECK(b.commit < b.op); /* w2 is in 1's log, not known committed */
	fx_crash(&f, 0);
	bool led = false;
	for (int t = 0; t < 600 && !led; t++) {
		fx_run(&f, 1);
		led = fx_primary(&f) == 1;
	}
	CHECK(led);
	/* Replica 2 takes view 1's log but cannot make it durable yet. */
	f.node[2].auto_persist = false;
	f.hold = NULL;
	while (f.held_count > 0) fx_release(&f, 0);
	fx_info(&f, 1, &b);
	uint64_t conn = fx_query(&f, 1, VSR_READ_LINEARIZABLE, 1);
	fx_run(&f, 20);
	vsr_replica_info c;
	fx_info(&f, 1, &c);
	CHECK(vsr_replica_stats_get(f.node[1].r)->read_rounds >= 1);
	const fx_reply *r = fx_reply_for(&f, conn);
	/* The round is confirmed (replica 2 echoed it) but w2 is not
	 * executed: no answer yet, and never one without w2. */
	CHECK(c.commit < c.op);
	CHECK(r == NULL || (r->status == VSR_REPLY_OK && count_of(r) >= answered));
	f.node[2].auto_persist = true;
	fx_run(&f, 20);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->replica == 1);
	CHECK(r && count_of(r) >= answered);
	fx_free(&f);
}


/* A read needs a round that began after it arrived: an echo of the round
 * already in flight does not answer it. Replica 0 starts a round for read
 * q2 and is cut off (stalled, so it does not abdicate yet); replicas 1 and 2
 * elect view 1 and commit a write; then read q3 reaches replica 0 and a
 * genuine late echo of q2's round arrives (sent in view 0 before replica 1
 * left it). It answers q2, which arrived before the write, but not q3,
 * which would miss the write. */
static bool hold_zero(const fx_message *q, void *arg)
{
	(void)arg;
	return q->from == 0 || q->to == 0;
}

static void test_inflight_round_does_not_answer_later_read(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0);
	CHECK(fx_call(&f, s, 1, "w"));
	f.hold = hold_zero;
	uint64_t q2 = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 2);
	uint64_t r2 = vsr_replica_stats_get(f.node[0].r)->read_rounds;
	fx_pause(&f, 0);
	const fx_reply *w = NULL;
	for (int t = 0; t < 600 && fx_primary(&f) != 1; t++) fx_run(&f, 1);
	CHECK(fx_primary(&f) == 1);
	w = fx_call(&f, s, 2, "w2");
	CHECK(w && w->status == VSR_REPLY_OK && w->replica == 1);
	uint64_t written = w ? count_of(w) : 0;
	fx_resume(&f, 0, false);
	uint64_t q3 = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 3);
	vsr_message m;
	memset(&m, 0, sizeof m);
	m.type = VSR_MSG_PREPARE_OK;
	m.cluster = 7;
	m.history = f.history;
	m.replica = 1;
	m.view = 0;
	m.nonce = r2; /* a round echo: op 0, checksum 0 */
	fx_deliver(&f, 0, &m);
	const fx_reply *a2 = fx_reply_for(&f, q2);
	const fx_reply *a3 = fx_reply_for(&f, q3);
	CHECK(a2 && a2->status == VSR_REPLY_OK && count_of(a2) < written);
	CHECK(a3 == NULL || (a3->status == VSR_REPLY_OK && count_of(a3) >= written) ||
	      a3->status == VSR_REPLY_NOT_PRIMARY);
	fx_free(&f);
}

static void tune_small_batches(vsr_config *c)
{
	c->batch_bytes_max = 1024;
}

/* A query larger than a batch can never be answered: REJECTED, saying why,
 * as an operation of that size is (before: BUSY, which a client retries
 * until its deadline). The queue is not touched: the next query is
 * answered. */
static void test_oversize_query_rejected(void)
{
	fixture f;
	fx_init(&f, 3, tune_small_batches);
	fx_run(&f, 50);
	CHECK(fx_primary(&f) == 0);
	static char big[2048];
	memset(big, 'q', sizeof big - 1);
	f.read_mode = VSR_READ_LINEARIZABLE;
	uint64_t conn = fx_request(&f, 0, VSR_REQUEST_QUERY, 0, 1, big);
	f.read_mode = 0;
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->query && r->status == VSR_REPLY_REJECTED);
	CHECK(strstr(r->body, "batch limit") != NULL);
	/* An operation of the same size: the same answer. */
	uint64_t s = fx_register(&f, 0, 1);
	CHECK(s != 0);
	conn = fx_request(&f, 0, VSR_REQUEST_OP, s, 1, big);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_REJECTED && strstr(r->body, "batch limit") != NULL);
	conn = fx_query(&f, 0, VSR_READ_LINEARIZABLE, 2);
	fx_run(&f, 3);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK && r->query);
	fx_free(&f);
}

static const fx_test tests[] = {
	{"oversize_query_rejected", test_oversize_query_rejected},
	{"inflight_round_does_not_answer_later_read", test_inflight_round_does_not_answer_later_read},
	{"new_primary_read_waits_for_inherited_op", test_new_primary_read_waits_for_inherited_op},
	{"lease_promise_holds_backup", test_lease_promise_holds_backup},
	{"lease_restart_keeps_quiet", test_lease_restart_keeps_quiet},
	{"linearizable_read", test_linearizable_read},
	{"read_waits_for_prepared_op", test_read_waits_for_prepared_op},
	{"cut_off_primary_does_not_answer", test_cut_off_primary_does_not_answer},
	{"stale_read_at_backup", test_stale_read_at_backup},
	{"lease_ends_before_new_view", test_lease_ends_before_new_view},
	{"lease_off_means_linearizable", test_lease_off_means_linearizable},
	{"reads_share_a_round", test_reads_share_a_round},
	{"single_replica_read", test_single_replica_read},
};

int main(int argc, char **argv)
{
	return fx_main(argc, argv, tests, sizeof tests / sizeof tests[0], &failures);
}
