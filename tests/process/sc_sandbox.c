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
 * distinct equal 1 MiB strings in a loop: about 4 s of CPU within the
 * default budget) runs past a watchdog limit lowered to 1 s: the replica
 * executing it logs which operation it was running and exits 70. */
static bool log_contains(int i, const char *needle)
{
	char path[400], line[2048];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	bool found = false;
	while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
		found = strstr(line, needle) != NULL;
	if (f != NULL)
		fclose(f);
	return found;
}

int scenario_watchdog(void)
{
	setenv("VSRHOST_WATCHDOG_MS", "1000", 1);
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("../spec/fixtures/evil.lua", &m, &sb);
	op_code(&sb, "local a = ('x'):rep(1 << 20) local b = ('x'):rep((1 << 20) - 1) .. 'x' "
		     "while true do if a == b then end end");
	m.request++;
	if (!mc_send_request(&m, p, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size))
		fail("cannot send the slow operation to the primary");
	note("sent an operation that runs for seconds inside the budget to primary %d", p + 1);
	uint64_t deadline = now_ms() + 30000;
	int status = 0;
	while (g_pid[p] > 0) {
		if (waitpid(g_pid[p], &status, WNOHANG) == g_pid[p]) {
			g_pid[p] = 0;
			break;
		}
		if (now_ms() > deadline)
			fail("the primary did not stop within 30 s");
		poll(NULL, 0, 20); /* bounded wait for the child's exit */
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 70)
		fail("the primary ended with status 0x%x, expected exit 70 (EX_SOFTWARE)", status);
	if (!log_contains(p, "watchdog: a step") || !log_contains(p, "applying op"))
		fail("the primary's log does not say what the watchdog found");
	note("primary %d exited 70, its log naming the step and the operation", p + 1);
	msgpack_sbuffer_destroy(&sb);
	mc_free(&m);
	kill_all();
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

