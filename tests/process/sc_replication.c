/* sc_replication.c - process-test scenarios. Replication and failover:
 * writes replicate, kill -9 of the primary,
 * restarts, client retries across a failover, history, the failover benchmark. */
#include "harness.h"

int scenario_replicate(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	note("primary is replica %d", p + 1);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS, &last);
	note("%d writes acknowledged, last at op %" PRIu64, KEYS, last);
	wait_converged(last, CATCHUP_MS, "replication");
	note("all %d replicas executed op %" PRIu64 " with equal digests", N, last);
	get_keys(&m, &sb, 0, KEYS);
	scenario_close(&m, &sb);
	note("all replicas shut down cleanly on SIGTERM");
	return 0;
}

int failover_common(bool restart)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	vsr_wire_status before;
	if (!status_of(p, &before))
		fail("no status from primary %d", p + 1);
	note("primary %d in view %" PRIu64 "; %d writes acknowledged; kill -9 of the primary", p + 1,
	     before.view, KEYS / 2);
	uint64_t t0 = now_ms();
	kill_replica(p);
	put_keys(&m, &sb, KEYS / 2, KEYS / 2 + 1, &last);
	note("first write after the kill acknowledged in %" PRIu64 " ms", now_ms() - t0);
	put_keys(&m, &sb, KEYS / 2 + 1, KEYS, &last);
	int q = wait_primary(STARTUP_MS, "after failover");
	vsr_wire_status after;
	if (!status_of(q, &after))
		fail("no status from the new primary %d", q + 1);
	if (q == p || after.view <= before.view)
		fail("no new primary: replica %d in view %" PRIu64, q + 1, after.view);
	note("new primary %d in view %" PRIu64, q + 1, after.view);
	get_keys(&m, &sb, 0, KEYS);
	note("all %d acknowledged writes are readable through the new primary", KEYS);
	if (restart) {
		start_replica(p);
		wait_ports(p);
		note("replica %d restarted (memory storage: recovering)", p + 1);
		wait_converged(last, CATCHUP_MS, "catch-up");
		vsr_wire_status st;
		if (!status_of(p, &st))
			fail("no status from the restarted replica");
		note("replica %d caught up: %s, view %" PRIu64 ", executed %" PRIu64, p + 1,
		     vsr_status_name((enum vsr_status)st.status), st.view, st.executed);
		/* And it takes part again: one more write replicates to it. */
		put_keys(&m, &sb, 0, 1, &last);
		wait_converged(last, CATCHUP_MS, "after catch-up");
	}
	scenario_close(&m, &sb);
	return 0;
}

/* The primary is killed and restarted at once, before the others have
 * noticed (what a supervisor with an immediate restart does). The restarted
 * replica has amnesia and is still the primary of the current view in the
 * others' eyes: the cluster must move on to a new view, bring it back, and
 * lose no acknowledged write. */
int scenario_quick_restart(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	note("kill -9 of primary %d and immediate restart", p + 1);
	kill_replica(p);
	start_replica(p);
	wait_ports(p);
	put_keys(&m, &sb, KEYS / 2, KEYS, &last);
	note("%d more writes acknowledged after the restart", KEYS / 2);
	get_keys(&m, &sb, 0, KEYS);
	wait_converged(last, CATCHUP_MS, "after the quick restart");
	int q = wait_primary(STARTUP_MS, "after the quick restart");
	note("every replica normal again, primary %d, all %d writes readable", q + 1, KEYS);
	scenario_close(&m, &sb);
	return 0;
}

/* The one counter the dedup scenario increments. */
#define COUNTER_NAME "retried"

static int64_t counter_value(mclient *m, msgpack_sbuffer *sb)
{
	op_counter(sb, "get", COUNTER_NAME, false, 0);
	mresult r;
	mc_op(m, sb, &r, "counter get");
	int64_t v;
	if (!body_int(&r, &v))
		fail("counter get: no integer in the reply (%u bytes)", r.body_len);
	return v;
}

int scenario_dedup(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("counter.lua", &m, &sb);

	/* 1. The reply is lost: the increment committed, the client never
	 * heard. It retries with the same numbers after a failover. */
	op_counter(&sb, "add", COUNTER_NAME, true, 1);
	mresult first;
	mc_op(&m, &sb, &first, "add 1");
	uint64_t number = m.request;
	note("add 1 committed at op %" PRIu64 " (request %" PRIu64 "); kill -9 of primary %d",
	     first.op, number, p + 1);
	kill_replica(p);
	mresult again;
	if (!mc_call_number(&m, VSR_REQUEST_OP, number, (const uint8_t *)sb.data, sb.size, 300,
			    &again))
		fail("retry of request %" PRIu64 " got no answer", number);
	if (again.status != VSR_REPLY_OK || again.op != first.op ||
	    again.body_len != first.body_len || memcmp(again.body, first.body, first.body_len) != 0)
		fail("the retry was not answered with the stored reply (op %" PRIu64 " vs %" PRIu64 ")",
		     again.op, first.op);
	int64_t v = counter_value(&m, &sb);
	if (v != 1)
		fail("counter is %" PRId64 " after one increment retried across a failover", v);
	note("retry answered from the client table (op %" PRIu64 "), counter = 1", again.op);

	/* 2. The primary dies with the request in flight: it may or may not
	 * have committed. Retrying must give exactly one application. */
	p = wait_primary(STARTUP_MS, "after first failover");
	for (int i = 0; i < N; i++)
		if (g_pid[i] <= 0)
			start_replica(i);
	wait_ports(-1);
	p = wait_primary(STARTUP_MS, "after restart");
	op_counter(&sb, "add", COUNTER_NAME, true, 1);
	m.request++;
	number = m.request;
	m.target = (uint8_t)p;
	if (!mc_send_request(&m, p, VSR_REQUEST_OP, number, (const uint8_t *)sb.data, sb.size))
		fail("cannot send to primary %d", p + 1);
	kill_replica(p);
	note("add 1 (request %" PRIu64 ") sent to primary %d, which was killed at once", number, p + 1);
	if (!mc_call_number(&m, VSR_REQUEST_OP, number, (const uint8_t *)sb.data, sb.size, 300,
			    &again) || again.status != VSR_REPLY_OK)
		fail("the in-flight increment was never acknowledged");
	v = counter_value(&m, &sb);
	if (v != 2)
		fail("counter is %" PRId64 ", expected exactly 2", v);
	note("counter = 2 after the in-flight retry: applied exactly once");
	scenario_close(&m, &sb);
	return 0;
}

/* Memory storage, the whole cluster killed and restarted: every replica
 * starts unjoined, so together they begin a new history (#7 finding 1, in
 * real processes). A client of the old history gets the definite HISTORY
 * answer for its session, never a collision with a new session of the same
 * number; registering again works, and the old data is gone, as it must be
 * in memory mode. */
int scenario_history(void)
{
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 3, &last);
	uint64_t old_session = m.session, old_history = m.history;
	if (old_history == 0)
		fail("the REGISTER reply named no history");
	note("session %" PRIu64 " of history %016" PRIx64 ": 3 writes; kill -9 of every replica",
	     old_session, old_history);
	for (int i = 0; i < N; i++)
		kill_replica(i);
	for (int i = 0; i < N; i++)
		start_replica(i);
	wait_ports(-1);
	int p = wait_primary(STARTUP_MS, "after the whole cluster restarted");
	note("replica %d leads again", p + 1);
	op_kv(&sb, "put", "after-reset", "x");
	m.request++;
	mresult r;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &r))
		fail("the old session's request got no answer");
	if (r.status != VSR_REPLY_HISTORY)
		fail("the old session's request got status %u, not HISTORY (%u)", r.status,
		     VSR_REPLY_HISTORY);
	note("the old session's request: HISTORY (not applied)");
	mc_register(&m);
	m.request = 0;
	if (m.history == 0 || m.history == old_history)
		fail("the new session's history %016" PRIx64 " is not a new one", m.history);
	note("registered again: session %" PRIu64 " of history %016" PRIx64 "%s", m.session,
	     m.history, m.session == old_session ? " (the same number as the old session)" : "");
	put_keys(&m, &sb, 3, 4, &last);
	get_keys(&m, &sb, 3, 4);
	char key[32], val[64];
	key_value(0, key, val);
	op_kv(&sb, "get", key, NULL);
	m.request++;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &r))
		fail("get %s: no answer", key);
	if (r.status == VSR_REPLY_OK && body_contains(&r, val))
		fail("get %s: a value of the old history is still there", key);
	note("the new history works; the old one's data is gone (memory storage)");
	scenario_close(&m, &sb);
	return 0;
}


static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int scenario_failover_bench(int trials)
{
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 1, &last);
	uint64_t *ms = calloc((size_t)trials, sizeof *ms);
	for (int t = 0; t < trials; t++) {
		wait_converged(last, CATCHUP_MS, "before trial");
		int p = wait_primary(STARTUP_MS, "before trial");
		m.target = (uint8_t)p;
		uint64_t t0 = now_ms();
		kill_replica(p);
		/* A short attempt so the client's own patience adds little. */
		char key[32], val[64];
		key_value(t, key, val);
		op_kv(&sb, "put", key, val);
		m.request++;
		mresult r;
		if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				    50, &r) || r.status != VSR_REPLY_OK)
			fail("trial %d: no acknowledged write after the failover", t);
		ms[t] = now_ms() - t0;
		last = r.op;
		note("trial %d: killed primary %d, write acknowledged by replica %u after %" PRIu64 " ms",
		     t + 1, p + 1, r.replica + 1u, ms[t]);
		start_replica(p);
		wait_ports(p);
	}
	qsort(ms, (size_t)trials, sizeof *ms, cmp_u64);
	uint64_t median = trials % 2 ? ms[trials / 2] : (ms[trials / 2 - 1] + ms[trials / 2]) / 2;
	printf("failover over %d trials: median %" PRIu64 " ms, min %" PRIu64 " ms, max %" PRIu64 " ms\n",
	       trials, median, ms[0], ms[trials - 1]);
	free(ms);
	scenario_close(&m, &sb);
	return 0;
}

