/* sc_sandbox.c - process-test scenarios. Hostile state-machine code (issue #9): the sandbox and the watchdog. */
#include "harness.h"

/* sandbox (issue #9): a cluster running spec/fixtures/evil.lua, which runs
 * the Lua source an operation carries, is sent the attacks that used to hang
 * or abort every replica (work inside one C call, pattern backtracking, a
 * weak table, address-ordered iteration, a reply of many references to one
 * table, 65 nested tables). Each gets a script-error reply; a plain
 * operation after each succeeds; the digests agree; and the same holds
 * after one replica restarts and after a failover. */
static const char *const hostile_ops[] = {
	"return string.rep('', math.maxinteger)",
	"return table.move({}, 1, math.maxinteger - 1, 2, {})",
	"local mt = {__index = rawequal, __newindex = rawequal} "
	"return table.move(setmetatable({}, mt), 1, math.maxinteger - 1, 2, setmetatable({}, mt))",
	"return (('a'):rep(60)):find(('a*'):rep(6) .. 'b')",
	"return ('x' .. (' '):rep(500000) .. 'x'):match('^%s*(.-)%s*$')",
	"for i = 1, 1000 do local s = string.rep('x', 1 << 26) end",
	"local s = ('x'):rep(1 << 19) local t = {} for i = 1, 20000 do t[i] = s end table.sort(t)",
	"local big = {} for i = 1, 100000 do big[i] = i end "
	"local r = {} for i = 1, 2048 do r[i] = big end return r",
	"local t = {} for i = 1, 64 do t = {t} end return t",
	"local mt = {} local t = setmetatable({}, mt) mt.__mode = 'k' return 1",
	"return next({[{}] = 1, [{}] = 2})",
	"local t = nil return t.x",
};

static void op_code(msgpack_sbuffer *sb, const char *code)
{
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	pack_cstr(&pk, "code");
	pack_cstr(&pk, code);
}

static uint64_t hostile_round(mclient *m, msgpack_sbuffer *sb, const char *when)
{
	uint64_t last = 0;
	size_t n = sizeof hostile_ops / sizeof hostile_ops[0];
	for (size_t i = 0; i < n; i++) {
		op_code(sb, hostile_ops[i]);
		mresult r;
		uint64_t t0 = now_ms();
		m->request++;
		if (!mc_call_number(m, VSR_REQUEST_OP, m->request, (const uint8_t *)sb->data, sb->size,
				    300, &r))
			fail("%s: hostile op %zu (%.50s): no answer within %d ms", when, i + 1,
			     hostile_ops[i], CALL_MS);
		if (r.status != VSR_REPLY_SCRIPT_ERROR)
			fail("%s: hostile op %zu (%.50s): status %u, expected a script error (%.*s)", when,
			     i + 1, hostile_ops[i], r.status, (int)r.body_len, r.body);
		note("%s: op %" PRIu64 ": %.40s... -> script error in %" PRIu64 " ms: %.*s", when,
		     r.op, hostile_ops[i], now_ms() - t0, (int)(r.body_len > 70 ? 70 : r.body_len),
		     r.body);
		op_code(sb, "return 40 + 2");
		mresult ok;
		mc_op(m, sb, &ok, "a plain operation after a hostile one");
		int64_t v;
		if (!body_int(&ok, &v) || v != 42)
			fail("%s: the plain operation after hostile op %zu answered wrongly", when, i + 1);
		last = ok.op;
	}
	return last;
}

/* watchdog: the one attack the cost model bounds only loosely (`==` on two
 * distinct equal long strings in a loop: each comparison costs one unit
 * but reads the strings, about 6 s of CPU within the default budget with
 * 1 MiB strings; 128 KiB here: about 1.2 s unloaded, several seconds on a
 * loaded machine) runs past a watchdog limit lowered to 250 ms. Its work is
 * metered, so the budget ends it at the same point on every replica: the
 * watchdog reports it and lets it finish (it used to stop every replica,
 * and a restarted one replayed the operation and was stopped again, for
 * good). The client gets the budget's script error, every replica stays
 * up, a backup restarted from its disk replays the operation and catches
 * up, and the digests agree. */
int scenario_watchdog(void)
{
	setenv("VSRHOST_WATCHDOG_MS", "250", 1);
	g_durability = "durable";
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("../spec/fixtures/evil.lua", &m, &sb);
	op_code(&sb, "local a = ('x'):rep(1 << 17) local b = ('x'):rep((1 << 17) - 1) .. 'x' "
		     "while true do if a == b then end end");
	mresult r;
	uint64_t t0 = now_ms();
	m.request++;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &r))
		fail("no answer to the slow operation");
	char said[256];
	snprintf(said, sizeof said, "%.*s", (int)r.body_len, (const char *)r.body);
	if (r.status != VSR_REPLY_SCRIPT_ERROR || strstr(said, "instruction budget exhausted") == NULL)
		fail("the slow operation answered status %u: %.*s", r.status, (int)r.body_len, r.body);
	note("op %" PRIu64 " (== on two 128 KiB strings until the budget ends) answered in %" PRIu64
	     " ms: %.*s", r.op, now_ms() - t0, (int)(r.body_len > 60 ? 60 : r.body_len), r.body);
	uint64_t last = r.op;
	check_alive();
	if (!log_contains(p, "letting it finish") || !log_contains(p, "applying op"))
		fail("the primary's log does not report the long metered step");
	uint8_t scraped[1 << 16];
	uint64_t long_steps = 0;
	if (!metric_value(scrape(p, (char *)scraped, sizeof scraped),
			  "vsr_watchdog_long_steps_total", &long_steps) || long_steps < 1)
		fail("vsr_watchdog_long_steps_total is %" PRIu64 " at the primary", long_steps);
	note("every replica still up; the primary logged the long metered step "
	     "(vsr_watchdog_long_steps_total %" PRIu64 ")", long_steps);
	/* The same work as a query (outside the log; evil.lua has no query
	 * hook, so apply runs with its writes dropped): metered the same way. */
	uint8_t mode = 0;
	t0 = now_ms();
	/* Right after its long step the primary may not have heard a quorum
	 * lately (check-quorum): it refuses reads until it has again. */
	for (uint64_t number = 1u << 20;; number++) {
		if (!mc_query_at(&m, p, VSR_READ_LINEARIZABLE, number, &sb, 30000, &r, &mode))
			fail("no answer to the slow query");
		if (r.status != VSR_REPLY_NOT_PRIMARY) break;
		if (now_ms() - t0 > 30000) fail("the slow query found no primary for 30 s");
		p = wait_primary(STARTUP_MS, "for the slow query");
	}
	snprintf(said, sizeof said, "%.*s", (int)r.body_len, (const char *)r.body);
	if (r.status != VSR_REPLY_SCRIPT_ERROR || strstr(said, "instruction budget exhausted") == NULL)
		fail("the slow query answered status %u: %s", r.status, said);
	check_alive();
	note("the same work as a linearizable query: the budget's script error after %" PRIu64
	     " ms, every replica up", now_ms() - t0);
	int b = (p + 1) % N;
	kill_replica(b);
	start_replica(b);
	wait_ports(b);
	op_code(&sb, "return 40 + 2");
	mresult ok;
	mc_op(&m, &sb, &ok, "a plain operation after the slow one");
	last = ok.op;
	wait_converged(last, CATCHUP_MS, "a backup replaying the slow operation from its disk");
	note("backup %d restarted from its disk, replayed op %" PRIu64 " and caught up: all three "
	     "agree at op %" PRIu64, b + 1, r.op, last);
	scenario_close(&m, &sb);
	return 0;
}

int scenario_sandbox(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("../spec/fixtures/evil.lua", &m, &sb);
	note("primary is replica %d", p + 1);
	uint64_t last = hostile_round(&m, &sb, "three replicas");
	/* Every script error is counted where operators look for it. */
	static char scraped[1 << 20];
	char name[96];
	snprintf(name, sizeof name, "vsr_replies_total{replica=\"%d\",outcome=\"script_error\"}",
		 p + 1);
	uint64_t script_errors = 0;
	size_t hostile = sizeof hostile_ops / sizeof hostile_ops[0];
	if (!metric_value(scrape(p, scraped, sizeof scraped), name, &script_errors) ||
	    script_errors < hostile)
		fail("primary %d: %s is %" PRIu64 ", expected at least %zu", p + 1, name,
		     script_errors, hostile);
	note("primary %d counted %" PRIu64 " script-error replies", p + 1, script_errors);
	/* A script error's message, which a client's operation can choose, is
	 * logged on one line: it cannot forge lines of its own. */
	op_code(&sb, "error('bye\\nINJECTED-BY-CLIENT forged\\r\\27[2J', 0)");
	mresult forged;
	m.request++;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &forged) ||
	    forged.status != VSR_REPLY_SCRIPT_ERROR)
		fail("the operation raising a two-line error got no script error");
	last = forged.op;
	if (log_line_starts(p, "INJECTED-BY-CLIENT"))
		fail("a client's script error wrote a log line of its own at the primary");
	if (!log_contains(p, "bye\\x0aINJECTED-BY-CLIENT"))
		fail("the primary did not log the two-line script error, escaped");
	note("a script error with a newline is logged on one line, escaped");
	wait_converged(last, CATCHUP_MS, "after the hostile operations");
	note("every replica up, executed op %" PRIu64 " with equal digests", last);
	int b = (p + 1) % N;
	kill_replica(b);
	start_replica(b);
	wait_ports(b);
	wait_converged(last, CATCHUP_MS, "a restarted backup catching up");
	note("backup %d restarted and caught up (equal digests)", b + 1);
	last = hostile_round(&m, &sb, "after a restart");
	wait_converged(last, CATCHUP_MS, "after the restart's hostile operations");
	kill_replica(p);
	note("kill -9 of the primary %d", p + 1);
	last = hostile_round(&m, &sb, "after failover");
	int q = wait_primary(STARTUP_MS, "after failover");
	if (q == p)
		fail("no new primary after the failover");
	wait_converged(last, CATCHUP_MS, "after the failover's hostile operations");
	note("new primary %d; the two live replicas agree", q + 1);
	start_replica(p);
	wait_ports(p);
	wait_converged(last, CATCHUP_MS, "the old primary catching up");
	note("old primary %d back: all three replicas agree at op %" PRIu64, p + 1, last);
	scenario_close(&m, &sb);
	return 0;
}

/* The value of one unlabelled metric of replica i, or -1. */
static double metric_of(int i, const char *name)
{
	static char body[1 << 20];
	uint64_t v;
	if (http_get(i, "/metrics", body, sizeof body) != 200 || !metric_value(body, name, &v))
		return -1;
	return (double)v;
}

/* divergence: runtime divergence detection on a real cluster. Replica 3 is
 * misconfigured with an instruction budget 20 times smaller than the
 * others': deterministic on each replica, but not the same on all, which
 * no sandbox can prevent. An operation that fits the others' budget and not
 * its own leaves its state different. At the next checkpoint it must find
 * that out (log line, metric), repair from the quorum's checkpoint, and the
 * cluster must keep answering with all three digests equal again. */
int scenario_divergence(bool primary)
{
	g_checkpoint_interval = 16;
	/* The primary's variant on durable storage (LMDB checkpoints), the
	 * backup's in memory: both checkpoint installs repair. */
	if (primary)
		g_durability = "durable";
	/* View 0's primary is replica 1. */
	g_odd_replica = primary ? 0 : 2;
	g_odd_instructions = 50000;
	/* Such a replica is refused at connect time now (its configuration
	 * fingerprint differs, scenario config-mismatch). To show that the
	 * certified checkpoints still catch what no fingerprint covers, it
	 * runs as a build without fingerprints would: vsrhost-teeth with
	 * VSR_NO_FINGERPRINT, which the others accept with a warning. */
	if (g_vsrhost_teeth == NULL)
		fail("this scenario needs --vsrhost-teeth");
	g_odd_vsrhost = g_vsrhost_teeth;
	setenv("VSR_NO_FINGERPRINT", "1", 1);
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("../spec/fixtures/evil.lua", &m, &sb);
	note("primary is replica %d; replica %d runs with limits.instructions = %u (others: the "
	     "default 1,000,000)", p + 1, g_odd_replica + 1, g_odd_instructions);
	if (primary && p != g_odd_replica)
		fail("replica %d, not the misconfigured replica 1, leads view 0", p + 1);
	op_code(&sb, "local s = 0 for i = 1, 60000 do s = s + i end "
		     "vsr.store.put('sum', tostring(s)) return s");
	mresult r;
	m.request++;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &r))
		fail("no answer to the operation of about 240,000 instructions");
	note("op %" PRIu64 " (about 240,000 instructions): the primary answered status %u; replica "
	     "%d refuses it for its budget and holds another state than the others", r.op,
	     r.status, g_odd_replica + 1);
	uint64_t last = r.op;
	uint64_t t0 = now_ms();
	for (int k = 0; k < 40; k++) {
		op_code(&sb, "return 40 + 2");
		mresult ok;
		mc_op(&m, &sb, &ok, "a plain operation");
		last = ok.op;
	}
	note("40 plain operations past the next checkpoint (interval %u), last at op %" PRIu64,
	     g_checkpoint_interval, last);
	int odd = g_odd_replica;
	uint64_t deadline = now_ms() + CATCHUP_MS;
	while (!(log_contains(odd, "divergence: this replica's state differs") &&
		 log_contains(odd, "divergence: repaired"))) {
		check_alive();
		if (now_ms() > deadline)
			fail("replica %d did not log a divergence found and repaired", odd + 1);
		poll(NULL, 0, 20); /* next look at the log */
	}
	note("replica %d logged the divergence and its repair %" PRIu64 " ms after the plain "
	     "operations began", odd + 1, now_ms() - t0);
	if (!log_contains((odd + 1) % N, "sent no configuration fingerprint"))
		fail("replica %d did not warn that replica %d's configuration went unchecked",
		     (odd + 1) % N + 1, odd + 1);
	double found = metric_of(odd, "vsr_divergences_total");
	double repaired = metric_of(odd, "vsr_divergence_repairs_total");
	double diverged = metric_of(odd, "vsr_diverged");
	if (found < 1 || repaired < 1 || diverged != 0)
		fail("replica %d metrics: vsr_divergences_total %g, vsr_divergence_repairs_total %g, "
		     "vsr_diverged %g", odd + 1, found, repaired, diverged);
	for (int i = 0; i < N; i++)
		if (i != odd && metric_of(i, "vsr_divergences_total") != 0)
			fail("replica %d counted a divergence of its own", i + 1);
	note("replica %d metrics: vsr_divergences_total %g, vsr_divergence_repairs_total %g, "
	     "vsr_diverged %g; the others count none", odd + 1, found, repaired, diverged);
	for (int k = 0; k < 10; k++) {
		op_code(&sb, "return 40 + 2");
		mresult ok;
		mc_op(&m, &sb, &ok, "a plain operation after the repair");
		last = ok.op;
	}
	if (primary) {
		int q = wait_primary(STARTUP_MS, "after the abdication");
		if (q == odd)
			fail("the diverged replica %d leads again", odd + 1);
		if (!log_contains(odd, "this primary abdicates"))
			fail("replica %d did not log its abdication", odd + 1);
		note("replica %d abdicated; replica %d leads", odd + 1, q + 1);
	}
	op_code(&sb, "return vsr.store.get('sum')");
	mc_op(&m, &sb, &r, "reading the sum");
	if (r.status != VSR_REPLY_OK || r.body_len == 0)
		fail("the sum written by the quorum is not readable (status %u)", r.status);
	wait_converged(last, CATCHUP_MS, "after the repair");
	note("the cluster kept answering; all three replicas executed op %" PRIu64
	     " with equal digests", last);
	if (primary) {
		/* The repair is durable: restarted, it comes back from the
		 * quorum's checkpoint, not its own. */
		kill_replica(odd);
		start_replica(odd);
		wait_ports(odd);
		wait_converged(last, CATCHUP_MS, "the repaired replica restarted");
		note("replica %d restarted from its disk and agrees", odd + 1);
	}
	scenario_close(&m, &sb);
	return 0;
}
