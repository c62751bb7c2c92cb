/* test_core.c - named scenarios for the protocol core, each a ctest test.
 * Usage: test_core [NAME]   (no name: run all) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static int failures;



static void call_ok(fixture *f, uint64_t session, uint64_t request, uint64_t *applied)
{
	char op[32];
	snprintf(op, sizeof op, "op-%llu", (unsigned long long)request);
	const fx_reply *r = fx_call(f, session, request, op);
	if (r && r->status == VSR_REPLY_OK && applied) (*applied)++;
}

/* Requests first..last of the session (call_ok each); how many were applied. */
static uint64_t calls(fixture *f, uint64_t session, uint64_t first, uint64_t last)
{
	uint64_t applied = 0;
	for (uint64_t k = first; k <= last; k++) call_ok(f, session, k, &applied);
	return applied;
}

/* The set-up the scenarios share: fx_init(f, n, tune) and a session
 * registered through replica 0 (its id, 0 if that failed). */
static uint64_t start(fixture *f, uint8_t n, void (*tune)(vsr_config *c), uint64_t nonce)
{
	fx_init(f, n, tune);
	return fx_register(f, 0, nonce);
}

/* ------------------------------------------------------------------------ */

static void test_normal_operation(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 42);
	CHECK(s != 0);
	for (uint64_t k = 1; k <= 100; k++) {
		const fx_reply *r = fx_call(&f, s, k, "x");
		CHECK(r && r->status == VSR_REPLY_OK);
		char want[16];
		snprintf(want, sizeof want, "%llu", (unsigned long long)k);
		CHECK(strcmp(r->body, want) == 0);
	}
	CHECK(fx_run_until(&f, 200, fx_all_caught_up, NULL));
	vsr_replica_info a, b, c;
	fx_info(&f, 0, &a);
	fx_info(&f, 1, &b);
	fx_info(&f, 2, &c);
	CHECK(a.commit >= 101 && a.commit == b.commit && b.commit == c.commit);
	CHECK(a.digest == b.digest && b.digest == c.digest);
	CHECK(a.checkpoint_op >= 64); /* a checkpoint was taken every 64 ops */
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_batching_and_pipelining(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	enum { CLIENTS = 40 };
	uint64_t s[CLIENTS], conn[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		s[i] = fx_register(&f, 0, 1000 + (uint64_t)i);
		CHECK(s[i] != 0);
	}
	vsr_replica_info before;
	fx_info(&f, 0, &before);
	/* All requests arrive before any storage completes: the pipeline fills
	 * (4 prepares) and the rest wait to be batched together. */
	f.node[0].auto_persist = false;
	for (int i = 0; i < CLIENTS; i++)
		conn[i] = fx_request(&f, 0, VSR_REQUEST_OP, s[i], 1, "batched");
	f.node[0].auto_persist = true;
	fx_run(&f, 30);
	for (int i = 0; i < CLIENTS; i++) {
		const fx_reply *r = fx_reply_for(&f, conn[i]);
		CHECK(r && r->status == VSR_REPLY_OK);
	}
	vsr_replica_info after;
	fx_info(&f, 0, &after);
	CHECK(after.commit - before.commit < CLIENTS); /* fewer entries than requests */
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_burst_hint_makes_one_batch(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	enum { CLIENTS = 10 };
	uint64_t s[CLIENTS], conn[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) s[i] = fx_register(&f, 0, 500 + (uint64_t)i);
	fx_run(&f, 5);
	vsr_replica_info before, after;
	fx_info(&f, 0, &before);
	/* The pipeline has room, but the host says more requests follow. */
	f.more = true;
	for (int i = 0; i < CLIENTS; i++)
		conn[i] = fx_request(&f, 0, VSR_REQUEST_OP, s[i], 1, "burst");
	f.more = false;
	fx_info(&f, 0, &after);
	CHECK(after.op == before.op && after.queued == CLIENTS);
	fx_flush(&f, 0);
	fx_info(&f, 0, &after);
	CHECK(after.op == before.op + 1); /* all ten in one entry */
	fx_run(&f, 10);
	for (int i = 0; i < CLIENTS; i++) {
		const fx_reply *r = fx_reply_for(&f, conn[i]);
		CHECK(r && r->status == VSR_REPLY_OK);
	}
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_primary_isolated_then_healed(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 7);
	CHECK(s != 0);
	CHECK(calls(&f, s, 1, 10) == 10);
	fx_isolate(&f, 0);
	fx_run(&f, 200);
	int p = fx_primary(&f);
	CHECK(p == 1 || p == 2);
	vsr_replica_info in;
	fx_info(&f, (uint8_t)p, &in);
	CHECK(in.view >= 1);
	CHECK(calls(&f, s, 11, 20) == 10);
	fx_heal(&f);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	fx_info(&f, 0, &in);
	CHECK(in.status == VSR_STATUS_NORMAL && in.view >= 1 && in.commit >= 21);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_backup_with_stale_suffix_rejoins(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 9);
	CHECK(calls(&f, s, 1, 5) == 5);
	fx_run(&f, 10);
	/* The primary prepares ops nobody else sees: a stale uncommitted suffix. */
	fx_isolate(&f, 0);
	uint64_t lost = fx_request(&f, 0, VSR_REQUEST_OP, s, 6, "never-committed");
	vsr_replica_info old;
	fx_info(&f, 0, &old);
	CHECK(old.op > old.commit);
	fx_run(&f, 200);
	/* The others move on and commit different ops at the same positions. */
	CHECK(calls(&f, s, 6, 12) == 7);
	fx_heal(&f);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	vsr_replica_info now;
	fx_info(&f, 0, &now);
	CHECK(now.commit >= old.op);
	/* Replica 0's stale entry was replaced by the committed one. */
	CHECK(vsr_replica_entry(f.node[0].r, old.op)->checksum ==
	      vsr_replica_entry(f.node[1].r, old.op)->checksum);
	const fx_reply *r = fx_reply_for(&f, lost);
	CHECK(r == NULL); /* the old primary never answered it */
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_lagging_backup_state_transfer_with_checkpoint(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 11);
	fx_crash(&f, 2);
	/* Far enough that the others' logs no longer hold what 2 lacks. */
	CHECK(calls(&f, s, 1, 400) == 400);
	vsr_replica_info p;
	fx_info(&f, 0, &p);
	CHECK(p.log_start > 1);
	fx_restart(&f, 2);
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	vsr_replica_info in;
	fx_info(&f, 2, &in);
	CHECK(in.commit == p.commit && in.checkpoint_op > 0);
	CHECK(vsr_replica_stats_get(f.node[2].r)->state_transfers >= 1);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_view_change_during_state_transfer(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 13);
	fx_isolate(&f, 2);
	uint64_t applied = calls(&f, s, 1, 50);
	/* Replica 2 comes back in a newer view it learns through a commit; while
	 * it asks for state, the primary crashes. */
	fx_crash(&f, 0);
	fx_heal(&f);
	fx_run(&f, 3);
	fx_restart(&f, 0);
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	applied += calls(&f, s, 51, 60);
	CHECK(applied == 60);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_restart_all_keeps_committed(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 15);
	CHECK(calls(&f, s, 1, 80) == 80);
	fx_run(&f, 10);
	vsr_replica_info before;
	fx_info(&f, 0, &before);
	for (uint8_t i = 0; i < 3; i++) fx_crash(&f, i);
	for (uint8_t i = 0; i < 3; i++) fx_restart(&f, i);
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	vsr_replica_info after;
	fx_info(&f, 1, &after);
	CHECK(after.commit >= before.commit && after.view > before.view);
	/* The session survived (it is in the checkpoint and the log). */
	const fx_reply *r = fx_call(&f, s, 81, "after-restart");
	CHECK(r && r->status == VSR_REPLY_OK && strcmp(r->body, "81") == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_at_most_once(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 17);
	const fx_reply *r1 = fx_call(&f, s, 1, "once");
	CHECK(r1 && r1->status == VSR_REPLY_OK);
	char first[64];
	strcpy(first, r1->body);
	/* The same request again: the stored reply, not a second execution. */
	const fx_reply *r2 = fx_call(&f, s, 1, "once");
	CHECK(r2 && r2->status == VSR_REPLY_OK && strcmp(r2->body, first) == 0);
	/* A retry while the first is in flight: both waiters get the reply. */
	f.node[0].auto_persist = false;
	uint64_t c1 = fx_request(&f, 0, VSR_REQUEST_OP, s, 2, "twice");
	uint64_t c2 = fx_request(&f, 0, VSR_REQUEST_OP, s, 2, "twice");
	f.node[0].auto_persist = true;
	fx_run(&f, 10);
	const fx_reply *a = fx_reply_for(&f, c1), *b = fx_reply_for(&f, c2);
	CHECK(a && b && a->status == VSR_REPLY_OK && strcmp(a->body, b->body) == 0);
	CHECK(strcmp(a->body, "2") == 0); /* applied exactly twice in total */
	/* A deterministic error is a reply, and changes nothing. */
	const fx_reply *e = fx_call(&f, s, 3, "fail");
	CHECK(e && e->status == VSR_REPLY_ERROR && strcmp(e->body, "failed") == 0);
	const fx_reply *n = fx_call(&f, s, 4, "next");
	CHECK(n && strcmp(n->body, "3") == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void tune_two_clients(vsr_config *c) { c->clients_max = 2; }

static void test_session_eviction(void)
{
	fixture f;
	uint64_t a = start(&f, 3, tune_two_clients, 1);
	uint64_t b = fx_register(&f, 0, 2);
	CHECK(a && b && a != b);
	const fx_reply *r = fx_call(&f, b, 1, "b1");
	CHECK(r && r->status == VSR_REPLY_OK);
	uint64_t c = fx_register(&f, 0, 3); /* evicts a: the oldest last commit */
	CHECK(c != 0);
	r = fx_call(&f, a, 1, "a1");
	CHECK(r && r->status == VSR_REPLY_EVICTED);
	r = fx_call(&f, b, 2, "b2");
	CHECK(r && r->status == VSR_REPLY_OK);
	CHECK(vsr_replica_stats_get(f.node[1].r)->sessions_evicted == 1);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_single_replica_restart(void)
{
	fixture f;
	uint64_t s = start(&f, 1, NULL, 19);
	CHECK(calls(&f, s, 1, 100) == 100);
	fx_crash(&f, 0);
	fx_restart(&f, 0);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	const fx_reply *r = fx_call(&f, s, 101, "x");
	CHECK(r && r->status == VSR_REPLY_OK && strcmp(r->body, "101") == 0);
	fx_free(&f);
}

static void test_five_replicas_two_down(void)
{
	fixture f;
	uint64_t s = start(&f, 5, NULL, 21);
	fx_crash(&f, 0); /* the primary */
	fx_crash(&f, 3);
	CHECK(calls(&f, s, 1, 20) == 20);
	fx_restart(&f, 0);
	fx_restart(&f, 3);
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_not_primary_hint(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t conn = fx_request(&f, 2, VSR_REQUEST_REGISTER, 0, 5, NULL);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_NOT_PRIMARY);
	/* The hint travels in message.replica: view 0's primary is replica 0. */
	CHECK(r->hint == 0 && r->view == 0);
	/* After the primary is isolated, a backup points at the new primary. */
	fx_isolate(&f, 0);
	fx_run(&f, 200);
	int p = fx_primary(&f);
	CHECK(p == 1 || p == 2);
	uint8_t other = p == 1 ? 2 : 1;
	conn = fx_request(&f, other, VSR_REQUEST_REGISTER, 0, 6, NULL);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_NOT_PRIMARY && r->hint == p && r->view >= 1);
	fx_free(&f);
}

static void tune_small_messages(vsr_config *c)
{
	c->batch_bytes_max = 8192;
	c->message_bytes_max = 40000;
	c->chunk_bytes_max = 16384;
}

static void test_transfer_in_byte_bounded_messages(void)
{
	fixture f;
	uint64_t s = start(&f, 3, tune_small_messages, 23);
	static char big[4001];
	memset(big, 'v', sizeof big - 1);
	fx_isolate(&f, 2);
	for (uint64_t k = 1; k <= 40; k++) {
		const fx_reply *r = fx_call(&f, s, k, big);
		CHECK(r && r->status == VSR_REPLY_OK);
	}
	fx_heal(&f);
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	/* 40 entries of 4 KB cannot travel in one 40 KB message: several rounds. */
	const vsr_replica_stats *st = vsr_replica_stats_get(f.node[2].r);
	CHECK(st->messages_in[VSR_MSG_NEW_STATE] >= 4);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void tune_small_batches(vsr_config *c) { c->batch_bytes_max = 1024; }

static void test_oversize_operation_rejected(void)
{
	fixture f;
	uint64_t s = start(&f, 3, tune_small_batches, 25);
	static char big[2048];
	memset(big, 'x', sizeof big - 1);
	uint64_t conn = fx_request(&f, 0, VSR_REQUEST_OP, s, 1, big);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_REJECTED);
	/* The log is not wedged: the next request commits. */
	const fx_reply *n = fx_call(&f, s, 2, "small");
	CHECK(n && n->status == VSR_REPLY_OK && strcmp(n->body, "1") == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Finding 1 (#7): one replica in memory mode. A restart loses everything, so
 * it begins a new history; session ids restart from the same numbers, and an
 * old client's request must get a definite HISTORY error instead of landing
 * in a new client's session (which then never answers the new client). */
static void test_single_replica_wipe_new_history(void)
{
	fixture f;
	fx_init(&f, 1, NULL);
	uint64_t old_history = f.request_history;
	uint64_t a = fx_register(&f, 0, 101);
	const fx_reply *r = fx_call(&f, a, 1, "a1");
	CHECK(r && r->status == VSR_REPLY_OK);
	fx_crash(&f, 0);
	fx_restart_wiped(&f, 0);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	uint64_t b = fx_register(&f, 0, 102);
	CHECK(b == a); /* the numbers do collide: only the history tells them apart */
	CHECK(f.request_history != old_history && f.request_history != 0);
	uint64_t new_history = f.request_history;
	/* The old client's next request, in its session of the old history. */
	f.request_history = old_history;
	uint64_t conn = fx_request(&f, 0, VSR_REQUEST_OP, a, 2, "a2");
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_HISTORY && r->history == new_history);
	/* The new client's first request is applied and answered. */
	f.request_history = new_history;
	r = fx_call(&f, b, 1, "b1");
	CHECK(r && r->status == VSR_REPLY_OK && strcmp(r->body, "1") == 0);
	fx_free(&f);
}

/* Finding 2 (#7), first trace: op 1 is committed by r0 with r1's ack and
 * answered; r1 has not learned the commit. r0 restarts with nothing on disk
 * (a lost volume, a lost marker). It must not rejoin as a brand-new member of
 * view 0: a new client registering at it would replace r1's op 1 and the
 * acknowledged op would be gone. */
static void test_lost_disk_primary_keeps_acked_op(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	fx_isolate(&f, 2);
	uint64_t s = fx_register(&f, 0, 201);
	CHECK(s != 0);
	vsr_replica_info i1;
	fx_info(&f, 1, &i1);
	CHECK(i1.op == 1 && i1.commit == 0); /* r1 acked op 1, knows no commit */
	uint64_t acked = vsr_replica_checksum_at(f.node[1].r, 1);
	fx_crash(&f, 0);
	fx_restart_wiped(&f, 0);
	fx_heal(&f);
	uint64_t other = fx_register(&f, 0, 202);
	CHECK(other != 0 && other != s);
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	for (uint8_t i = 0; i < 3; i++) CHECK(vsr_replica_checksum_at(f.node[i].r, 1) == acked);
	/* The acknowledged registration still stands. */
	const fx_reply *r = fx_call(&f, s, 1, "s1");
	CHECK(r && r->status == VSR_REPLY_OK);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Finding 2 (#7), second trace: the backups already know the commit. A
 * primary that restarts with nothing must not wedge the cluster (before: no
 * reply and no view change for 3000 ticks, its heartbeats keeping the
 * backups loyal to an empty log). */
static void test_lost_disk_primary_no_wedge(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 301);
	CHECK(calls(&f, s, 1, 5) == 5);
	CHECK(fx_run_until(&f, 200, fx_all_caught_up, NULL));
	fx_crash(&f, 0);
	fx_restart_wiped(&f, 0);
	uint64_t other = fx_register(&f, 1, 302);
	CHECK(other != 0);
	const fx_reply *r = fx_call(&f, s, 6, "s6");
	CHECK(r && r->status == VSR_REPLY_OK && strcmp(r->body, "6") == 0);
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	vsr_replica_info i0;
	fx_info(&f, 0, &i0);
	CHECK(i0.history == f.history && !i0.amnesia);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* The genesis rule: a lone replica without state, whose peers are down, does
 * not begin a history of its own; when they come back from their disks it
 * catches up with theirs. */
static void test_lone_amnesiac_waits_for_history(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 401);
	CHECK(calls(&f, s, 1, 3) == 3);
	fx_run(&f, 20);
	for (uint8_t i = 0; i < 3; i++) fx_crash(&f, i);
	fx_restart_wiped(&f, 0);
	fx_run(&f, 1000);
	vsr_replica_info i0;
	fx_info(&f, 0, &i0);
	CHECK(i0.history == 0 && i0.status == VSR_STATUS_RECOVERING);
	fx_restart(&f, 1);
	fx_restart(&f, 2);
	CHECK(fx_run_until(&f, 3000, fx_all_caught_up, NULL));
	fx_info(&f, 0, &i0);
	CHECK(i0.history == f.history);
	const fx_reply *r = fx_call(&f, s, 4, "s4");
	CHECK(r && r->status == VSR_REPLY_OK && strcmp(r->body, "4") == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Every replica lost its state (memory mode, the whole cluster restarted):
 * a new history begins, and the old sessions get HISTORY, not a collision. */
static void test_whole_cluster_wipe_new_history(void)
{
	fixture f;
	fx_init(&f, 3, NULL);
	uint64_t old_history = f.request_history;
	uint64_t s = fx_register(&f, 0, 501);
	CHECK(fx_call(&f, s, 1, "s1") != NULL);
	for (uint8_t i = 0; i < 3; i++) fx_crash(&f, i);
	for (uint8_t i = 0; i < 3; i++) fx_restart_wiped(&f, i);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	vsr_replica_info in;
	fx_info(&f, 2, &in);
	CHECK(in.history == fx_history_for(0, f.incarnation[0]) && in.history != old_history);
	f.request_history = old_history;
	const fx_reply *r = fx_call(&f, s, 2, "s2");
	CHECK(r && r->status == VSR_REPLY_HISTORY);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* #7 robustness: replies are bounded where they are produced, by the one
 * limit the frame, the client table and the checkpoint agree on. Before: a
 * reply over VSR_OP_BYTES_MAX was stored, every later checkpoint failed to
 * decode, and a replica restarted from it (or fetching it) never came back;
 * a reply over message_bytes was stored and then dropped by the transport. */
static void test_oversized_reply_bounded(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 601);
	uint64_t a = fx_register(&f, 0, 602);
	fx_isolate(&f, 2);
	/* Session a's last reply, stored in its table entry from now on. */
	const fx_reply *r = fx_call(&f, a, 1, "big:1100000");
	CHECK(r && r->status == VSR_REPLY_ERROR && strstr(r->body, "reply limit"));
	CHECK(r->body_len <= vsr_reply_bytes_max(&f.cfg[0]));
	CHECK(vsr_replica_stats_get(f.node[0].r)->replies_too_large == 1);
	/* Past a checkpoint, which holds session a's stored reply. */
	CHECK(calls(&f, s, 1, 80) == 80);
	vsr_replica_info i1;
	fx_info(&f, 1, &i1);
	CHECK(i1.checkpoint_op >= 64);
	/* A restart from that checkpoint, and a transfer of it. */
	fx_crash(&f, 1);
	fx_restart(&f, 1);
	fx_heal(&f);
	CHECK(fx_run_until(&f, 3000, fx_all_caught_up, NULL));
	fx_info(&f, 2, &i1);
	CHECK(i1.checkpoint_op >= 64);
	r = fx_call(&f, a, 1, "big:1100000"); /* the stored, bounded error again */
	CHECK(r && r->status == VSR_REPLY_ERROR && strstr(r->body, "reply limit"));
	r = fx_call(&f, s, 81, "after");
	CHECK(r && r->status == VSR_REPLY_OK);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void tune_70k_messages(vsr_config *c)
{
	c->message_bytes_max = 70000;
	c->batch_bytes_max = 8192;
	c->chunk_bytes_max = 8192;
}

/* The same when message_bytes is small: the limit follows the frame. */
static void test_reply_fits_small_messages(void)
{
	fixture f;
	fx_init(&f, 3, tune_70k_messages);
	uint32_t limit = vsr_reply_bytes_max(&f.cfg[0]);
	CHECK(limit + VSR_MESSAGE_WIRE_OVERHEAD <= 70000);
	uint64_t s = fx_register(&f, 0, 701);
	const fx_reply *r = fx_call(&f, s, 1, "big:100000");
	CHECK(r && r->status == VSR_REPLY_ERROR && r->body_len <= limit);
	r = fx_call(&f, s, 2, "big:60000");
	CHECK(r && r->status == VSR_REPLY_OK && r->body_len > 60000 && r->body_len <= limit);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static bool restore_failed_once(fixture *f, void *arg)
{
	return f->node[*(uint8_t *)arg].restore_failed > 0;
}

/* #7 finding 3: a checkpoint whose restore fails leaves the replica exactly
 * as it was (its client table too), and the replica still catches up. */
static void test_failed_restore_leaves_state_intact(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 31);
	uint64_t applied = calls(&f, s, 1, 29);
	fx_run(&f, 5);
	fx_crash(&f, 2);
	applied += calls(&f, s, 30, 200);
	CHECK(applied == 200);
	fx_restart(&f, 2);
	vsr_replica_info before;
	fx_info(&f, 2, &before);
	f.node[2].restore_fail = 1;
	uint8_t who = 2;
	CHECK(fx_run_until(&f, 1000, restore_failed_once, &who));
	vsr_replica_info mid;
	fx_info(&f, 2, &mid);
	CHECK(mid.executed == before.executed);
	CHECK(mid.digest == before.digest); /* state machine and client table unchanged */
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	CHECK(calls(&f, s, 201, 210) == 10);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Keeps `n` sessions busy, one request each in flight, for one tick. */
typedef struct fx_load {
	uint32_t n;
	uint64_t session[8], request[8], conn[8];
	uint64_t done;
} fx_load;

static void load_tick(fixture *f, fx_load *l)
{
	bool ready[8];
	for (uint32_t i = 0; i < l->n; i++) {
		const fx_reply *r = l->conn[i] ? fx_reply_for(f, l->conn[i]) : NULL;
		ready[i] = l->conn[i] == 0 || r != NULL;
		if (r && r->status == VSR_REPLY_OK) {
			l->request[i]++;
			l->done++;
		}
	}
	f->reply_count = 0; /* every reply of interest was read above */
	for (uint32_t i = 0; i < l->n; i++) {
		if (!ready[i]) continue;
		int p = fx_primary(f);
		l->conn[i] = 0;
		if (p < 0) continue;
		char op[32];
		snprintf(op, sizeof op, "load-%llu", (unsigned long long)l->request[i]);
		l->conn[i] = fx_request(f, (uint8_t)p, VSR_REQUEST_OP, l->session[i], l->request[i], op);
	}
	fx_run(f, 1);
}

static void tune_slow_checkpoints(vsr_config *c)
{
	c->checkpoint_interval = 32;
	c->chunk_bytes_max = 64;
}

/* #7 finding 6: a checkpoint whose transfer takes longer than the checkpoint
 * period (a large state on a slow network, the cluster under load) is still
 * fetched: several chunks in flight, from any replica that holds it, the
 * previous checkpoint still served, a retry resuming where it stopped. */
static void test_checkpoint_fetch_under_load(void)
{
	fixture f;
	fx_init(&f, 3, tune_slow_checkpoints);
	f.snapshot_pad = 150 * 64; /* ~150 chunks */
	fx_load l = {.n = 2};
	for (uint32_t i = 0; i < l.n; i++) {
		l.session[i] = fx_register(&f, 0, 40 + i);
		l.request[i] = 1;
		CHECK(l.session[i] != 0);
	}
	fx_crash(&f, 2);
	for (int t = 0; t < 200; t++) load_tick(&f, &l);
	vsr_replica_info p;
	fx_info(&f, 0, &p);
	fprintf(stderr, "load: %llu ops, primary checkpoint %llu log_start %llu\n",
		(unsigned long long)l.done, (unsigned long long)p.checkpoint_op,
		(unsigned long long)p.log_start);
	CHECK(p.log_start > 1 && p.checkpoint_op >= 64);
	fx_restart(&f, 2);
	f.hops_per_tick = 1; /* one hop per delivery: a chunk round trip is a tick */
	bool installed = false;
	int t = 0;
	for (; t < 3000 && !installed; t++) {
		load_tick(&f, &l);
		vsr_replica_info in;
		fx_info(&f, 2, &in);
		installed = in.checkpoint_op > 0 && in.status == VSR_STATUS_NORMAL;
	}
	fprintf(stderr, "checkpoint_fetch_under_load: %llu ops under load, installed after %d ticks: %s, "
		"%llu GET_STATE sent\n", (unsigned long long)l.done, t, installed ? "yes" : "no",
		(unsigned long long)vsr_replica_stats_get(f.node[2].r)->messages_out[VSR_MSG_GET_STATE]);
	CHECK(installed);
	f.hops_per_tick = 0;
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static bool half_fetched(fixture *f, void *arg)
{
	(void)arg;
	return vsr_replica_stats_get(f->node[2].r)->messages_in[VSR_MSG_CHECKPOINT_CHUNK] >= 75;
}

/* A checkpoint fetch cut half way (the fetcher isolated long enough to give
 * up and leave for a view change) resumes where it stopped: chunks already
 * stored are not fetched again. */
static void test_checkpoint_fetch_resumes(void)
{
	fixture f;
	fx_init(&f, 3, tune_slow_checkpoints);
	f.snapshot_pad = 150 * 64; /* ~150 chunks */
	uint64_t s = fx_register(&f, 0, 51);
	fx_crash(&f, 2);
	CHECK(calls(&f, s, 1, 100) == 100);
	fx_restart(&f, 2);
	f.hops_per_tick = 1;
	CHECK(fx_run_until(&f, 500, half_fetched, NULL));
	fx_isolate(&f, 2);
	fx_run(&f, 150);
	fx_heal(&f);
	f.hops_per_tick = 0;
	CHECK(fx_run_until(&f, 3000, fx_all_caught_up, NULL));
	const vsr_replica_stats *st = vsr_replica_stats_get(f.node[2].r);
	fprintf(stderr, "checkpoint_fetch_resumes: %llu chunks received for a checkpoint of ~151, "
		"%llu state transfers\n", (unsigned long long)st->messages_in[VSR_MSG_CHECKPOINT_CHUNK],
		(unsigned long long)st->state_transfers);
	CHECK(st->state_transfers >= 2); /* it was interrupted */
	CHECK(st->messages_in[VSR_MSG_CHECKPOINT_CHUNK] <= 151 + 16);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void tune_queue_bytes(vsr_config *c)
{
	c->pipeline_max = 1;
	c->message_entries_max = 32;
	c->batch_bytes_max = 4096;
	c->request_queue_bytes_max = 4096;
}

/* #7 robustness: the primary's request queue is bounded by bytes as well as
 * by count (before: 4096 requests of any size could wait). */
static void test_request_queue_bounded_by_bytes(void)
{
	fixture f;
	fx_init(&f, 3, tune_queue_bytes);
	uint64_t s[8];
	for (int i = 0; i < 8; i++) {
		s[i] = fx_register(&f, 0, 800 + (uint64_t)i);
		CHECK(s[i] != 0);
	}
	static char op[1501];
	memset(op, 'q', sizeof op - 1);
	/* The pipeline (one op) is stuck on the primary's own disk. */
	f.node[0].auto_persist = false;
	uint64_t conn[8];
	for (int i = 0; i < 8; i++) conn[i] = fx_request(&f, 0, VSR_REQUEST_OP, s[i], 1, op);
	int busy = 0;
	for (int i = 0; i < 8; i++) {
		const fx_reply *r = fx_reply_for(&f, conn[i]);
		if (r && r->status == VSR_REPLY_BUSY) busy++;
	}
	vsr_replica_info in;
	fx_info(&f, 0, &in);
	/* One prepared, two queued (3000 bytes; a third would pass 4096). */
	CHECK(in.queued == 2 && busy == 5);
	f.node[0].auto_persist = true;
	fx_run(&f, 20);
	for (int i = 0; i < 3; i++) {
		const fx_reply *r = fx_reply_for(&f, conn[i]);
		CHECK(r && r->status == VSR_REPLY_OK);
	}
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* #7 small item: a replica told of a newer view whose primary is itself (a
 * backup acks in it) used to enter state transfer and send GET_STATE to
 * another replica, which never answers it (only a view's primary serves its
 * log), until eight retries gave up. It now moves to the next view at once. */
static void test_no_get_state_to_a_silent_replica(void)
{
	fixture f;
	uint64_t s = start(&f, 3, NULL, 901);
	CHECK(calls(&f, s, 1, 1) == 1);
	vsr_message ack;
	memset(&ack, 0, sizeof ack);
	ack.type = VSR_MSG_PREPARE_OK;
	ack.replica = 1;
	ack.cluster = 7;
	ack.history = f.history;
	ack.view = 3; /* primary(3) = replica 0 */
	uint64_t before = vsr_replica_stats_get(f.node[0].r)->messages_out[VSR_MSG_GET_STATE];
	fx_deliver(&f, 0, &ack);
	vsr_replica_info in;
	fx_info(&f, 0, &in);
	CHECK(in.status == VSR_STATUS_VIEW_CHANGE && in.view == 4);
	CHECK(vsr_replica_stats_get(f.node[0].r)->messages_out[VSR_MSG_GET_STATE] == before);
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	const fx_reply *r = fx_call(&f, s, 2, "two");
	CHECK(r && r->status == VSR_REPLY_OK && strcmp(r->body, "2") == 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void tune_small_ring(vsr_config *c)
{
	c->checkpoint_interval = 8;
	c->pipeline_max = 1;
	c->log_max = 32; /* 2 * interval + 4 * pipeline fits, barely */
	c->message_entries_max = 8;
}

/* Requests *req, *req + 1, ... (each followed by two ticks, at most 64)
 * until replica 2's checkpoint is at op `least` or later; returns replica
 * 2's checkpoint then. */
static uint64_t calls_to_checkpoint(fixture *f, uint64_t s, uint64_t *req, uint64_t least)
{
	vsr_replica_info in;
	fx_info(f, 2, &in);
	for (int k = 0; k < 64 && in.checkpoint_op < least; k++) {
		call_ok(f, s, (*req)++, NULL);
		fx_run(f, 2);
		fx_info(f, 2, &in);
	}
	return in.checkpoint_op;
}

static uint64_t disk_head(const fixture *f, uint8_t i)
{
	const fx_image *d = &f->node[i].disk;
	return d->entry_count ? d->entries[d->entry_count - 1].op : d->sb.checkpoint_op;
}

/* Async durable checkpoints (VSR_PENDING): a replica that crashes after
 * every checkpoint it takes, before the checkpoint is durable, comes back
 * each time to its last durable one. Its restart re-executes the log above
 * it, and must take the checkpoints it passes: before, the replay skipped
 * them, the durable checkpoint never moved, and after a few rounds the log
 * above it outgrew the ring: the restart forgot acknowledged entries that
 * were on its disk (vsrsim seed 4975, 3 replicas, its acks-kept check). */
static void test_restart_replay_takes_checkpoints(void)
{
	fixture f;
	fx_init(&f, 3, tune_small_ring);
	/* r2's checkpoints are durable only when a later take syncs them (the
	 * fixture never reports CHECKPOINT_DURABLE) */
	f.node[2].ck.async = true;
	uint64_t s = fx_register(&f, 0, 42);
	CHECK(s != 0);
	uint64_t req = 1;
	for (int round = 0; round < 8; round++) {
		vsr_replica_info in;
		fx_info(&f, 2, &in);
		uint64_t before = in.checkpoint_op;
		CHECK(calls_to_checkpoint(&f, s, &req, before + 1) > before);
		/* a little further, so that its superblock's commit is past it,
		 * then the pending checkpoint is lost with a crash */
		for (int k = 0; k < 3; k++) {
			call_ok(&f, s, req++, NULL);
			fx_run(&f, 2);
		}
		fx_crash(&f, 2);
		vsr_snapckpt_crash(&f.node[2].ck);
		fx_restart(&f, 2);
		fx_info(&f, 2, &in);
		/* everything on its disk is back, its acknowledged entries too */
		CHECK(in.op == disk_head(&f, 2));
		CHECK(vsr_snapckpt_durable_op(&f.node[2].ck) + 32 > in.op);
		CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	}
	vsr_replica_info in;
	fx_info(&f, 2, &in);
	CHECK(in.op > 64); /* well past what the ring holds above checkpoint 0 */
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* An install of a fetched checkpoint is durable when it returns, before the
 * superblock that names it (and cuts the log) is written; vsrhost killed in
 * between (vsrsim --fetch-kill-ppm, docs/simulator.md "Store failures")
 * restarts with the state machine's checkpoint newer than the superblock's
 * and the replica's own log still on the disk. If that log goes on past the
 * checkpoint on another chain (its entry at the checkpoint's op was another
 * view's), the restart keeps none of it: nothing above the checkpoint that
 * does not chain on its checksum. The simulator never reached this disk;
 * here it is built by hand: r2's superblock set back to checkpoint 8 while
 * its state machine holds 16, and its log from 16 on re-chained from a
 * different entry 16. */
static void test_restart_log_off_a_newer_checkpoint(void)
{
	fixture f;
	uint64_t s = start(&f, 3, tune_small_ring, 42);
	CHECK(s != 0);
	uint64_t req = 1;
	CHECK(calls_to_checkpoint(&f, s, &req, 16) == 16);
	vsr_replica_info in;
	for (int k = 0; k < 3; k++) call_ok(&f, s, req++, NULL);
	fx_run(&f, 4);
	fx_crash(&f, 2);
	fx_image *d = &f.node[2].disk;
	CHECK(vsr_snapckpt_durable_op(&f.node[2].ck) == 16 && disk_head(&f, 2) > 17);
	uint32_t at8 = 0, at16 = 0;
	for (uint32_t i = 0; i < d->entry_count; i++) {
		if (d->entries[i].op == 8) at8 = i;
		if (d->entries[i].op == 16) at16 = i;
	}
	CHECK(d->entries[at8].op == 8 && d->entries[at16].op == 16);
	d->sb.checkpoint_op = 8;
	d->sb.checkpoint_checksum = d->entries[at8].checksum;
	d->entries[at16].timestamp++; /* another entry 16, and its chain on */
	for (uint32_t i = at16; i < d->entry_count; i++) {
		if (i > at16) d->entries[i].parent = d->entries[i - 1].checksum;
		d->entries[i].checksum = vsr_entry_checksum(&d->entries[i]);
	}
	fx_restart(&f, 2);
	fx_info(&f, 2, &in);
	CHECK(in.checkpoint_op == 16);
	CHECK(in.op == 16 && in.executed == 16); /* nothing off the chain kept */
	CHECK(vsr_replica_check(f.node[2].r) == NULL);
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	call_ok(&f, s, req++, NULL);
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static const fx_test tests[] = {
	{"normal_operation", test_normal_operation},
	{"batching_and_pipelining", test_batching_and_pipelining},
	{"burst_hint_makes_one_batch", test_burst_hint_makes_one_batch},
	{"primary_isolated_then_healed", test_primary_isolated_then_healed},
	{"backup_with_stale_suffix_rejoins", test_backup_with_stale_suffix_rejoins},
	{"lagging_backup_state_transfer_with_checkpoint", test_lagging_backup_state_transfer_with_checkpoint},
	{"view_change_during_state_transfer", test_view_change_during_state_transfer},
	{"restart_all_keeps_committed", test_restart_all_keeps_committed},
	{"at_most_once", test_at_most_once},
	{"session_eviction", test_session_eviction},
	{"single_replica_restart", test_single_replica_restart},
	{"five_replicas_two_down", test_five_replicas_two_down},
	{"not_primary_hint", test_not_primary_hint},
	{"transfer_in_byte_bounded_messages", test_transfer_in_byte_bounded_messages},
	{"oversize_operation_rejected", test_oversize_operation_rejected},
	{"single_replica_wipe_new_history", test_single_replica_wipe_new_history},
	{"lost_disk_primary_keeps_acked_op", test_lost_disk_primary_keeps_acked_op},
	{"lost_disk_primary_no_wedge", test_lost_disk_primary_no_wedge},
	{"lone_amnesiac_waits_for_history", test_lone_amnesiac_waits_for_history},
	{"whole_cluster_wipe_new_history", test_whole_cluster_wipe_new_history},
	{"oversized_reply_bounded", test_oversized_reply_bounded},
	{"reply_fits_small_messages", test_reply_fits_small_messages},
	{"failed_restore_leaves_state_intact", test_failed_restore_leaves_state_intact},
	{"checkpoint_fetch_under_load", test_checkpoint_fetch_under_load},
	{"checkpoint_fetch_resumes", test_checkpoint_fetch_resumes},
	{"request_queue_bounded_by_bytes", test_request_queue_bounded_by_bytes},
	{"no_get_state_to_a_silent_replica", test_no_get_state_to_a_silent_replica},
	{"restart_replay_takes_checkpoints", test_restart_replay_takes_checkpoints},
	{"restart_log_off_a_newer_checkpoint", test_restart_log_off_a_newer_checkpoint},
};

int main(int argc, char **argv)
{
	return fx_main(argc, argv, tests, sizeof tests / sizeof tests[0], &failures);
}
