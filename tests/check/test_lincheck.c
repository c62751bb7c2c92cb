/* test_lincheck.c - the linearizability checker fails every bad history and passes every good one.
 *
 * Three kinds of evidence: hand-made histories with a known answer (stale
 * read, lost write, contradictory cas, INFO operations taking effect late or
 * never, concurrent writes in either order); random small histories, some
 * mutated, whose answer comes from an independent brute-force search over
 * every order; and larger random histories built from a sequential register
 * (must pass) then given a read of a value never written (must fail).
 * Usage: test_lincheck [SEED] (the seed is printed either way). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lincheck.h"

static int failures;

#define NIL LINCHECK_NIL
#define R LINCHECK_READ
#define W LINCHECK_WRITE
#define C LINCHECK_CAS
#define OK LINCHECK_OK
#define FAIL LINCHECK_FAIL
#define INFO LINCHECK_INFO

/* {client, key, f, outcome, value, value2, call, return} */
#define OP(cl, fn, out, v, v2, call, ret) \
	{.client = (cl), .key = 1, .f = (fn), .outcome = (out), .value = (v), .value2 = (v2), \
	 .call_ns = (call), .return_ns = (ret)}

static int verdict_of(const lincheck_op *ops, size_t n, lincheck_limits lim, lincheck_result *r)
{
	if (lincheck_check(ops, n, &lim, r) != 0)
		return -1;
	return r->verdict;
}

static void expect(const char *name, const lincheck_op *ops, size_t n, int want)
{
	lincheck_result r;
	lincheck_limits lim = {.time_ms = 10000, .memory_bytes = 64u << 20};
	int got = verdict_of(ops, n, lim, &r);
	if (got != want) {
		fprintf(stderr, "FAIL %s: expected %s, got %s (%s)\n", name,
			lincheck_verdict_name(want), got < 0 ? "error" : lincheck_verdict_name(got),
			r.why);
		failures++;
	} else {
		printf("ok   %-44s %s%s%s\n", name, lincheck_verdict_name(got),
		       r.why[0] ? ": " : "", r.why);
	}
}

#define EXPECT(name, want, ...)                                                 \
	do {                                                                     \
		const lincheck_op ops_[] = {__VA_ARGS__};                        \
		expect(name, ops_, sizeof ops_ / sizeof ops_[0], want);           \
	} while (0)

static void hand_made(void)
{
	const int Y = LINCHECK_LINEARIZABLE, N = LINCHECK_NOT_LINEARIZABLE;
	EXPECT("empty register reads nil", Y, OP(1, R, OK, NIL, 0, 0, 1));
	EXPECT("write then read", Y, OP(1, W, OK, 1, 0, 0, 1), OP(2, R, OK, 1, 0, 2, 3));
	EXPECT("stale read", N, OP(1, W, OK, 1, 0, 0, 1), OP(1, W, OK, 2, 0, 2, 3),
	       OP(2, R, OK, 1, 0, 4, 5));
	EXPECT("lost write (read nil after ack)", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, R, OK, NIL, 0, 2, 3));
	EXPECT("lost write (older value after ack)", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(1, W, OK, 2, 0, 2, 3), OP(3, R, OK, 2, 0, 4, 5), OP(2, R, OK, 1, 0, 6, 7));
	EXPECT("read of a value never written", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, R, OK, 7, 0, 2, 3));
	EXPECT("sequential cas chain", Y, OP(1, W, OK, 1, 0, 0, 1), OP(2, C, OK, 1, 2, 2, 3),
	       OP(3, C, OK, 2, 3, 4, 5), OP(1, R, OK, 3, 0, 6, 7));
	EXPECT("contradictory cas (sequential)", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, C, OK, 1, 2, 2, 3), OP(3, C, OK, 1, 3, 4, 5));
	EXPECT("contradictory cas (concurrent)", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, C, OK, 1, 2, 2, 10), OP(3, C, OK, 1, 3, 3, 9));
	EXPECT("concurrent cas, one refused", Y, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, C, OK, 1, 2, 2, 10), OP(3, C, FAIL, 1, 3, 3, 9));
	{
		lincheck_op ops[] = {OP(1, W, OK, 1, 0, 0, 1), OP(2, C, FAIL, 1, 2, 2, 3)};
		ops[1].mismatch = true;
		expect("cas refused while the value matched", ops, 2, N);
		ops[1].value = 5;
		expect("cas refused, value differed", ops, 2, Y);
	}
	EXPECT("failed write seen by a read", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, W, FAIL, 2, 0, 2, 3), OP(3, R, OK, 2, 0, 4, 5));
	EXPECT("failed write not seen", Y, OP(1, W, OK, 1, 0, 0, 1), OP(2, W, FAIL, 2, 0, 2, 3),
	       OP(3, R, OK, 1, 0, 4, 5));
	EXPECT("info write takes effect late", Y, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, W, INFO, 2, 0, 2, 0), OP(3, R, OK, 1, 0, 3, 4), OP(3, R, OK, 1, 0, 5, 6),
	       OP(3, R, OK, 2, 0, 100, 101));
	EXPECT("info write never takes effect", Y, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, W, INFO, 2, 0, 2, 0), OP(3, R, OK, 1, 0, 10, 11), OP(3, R, OK, 1, 0, 50, 51));
	EXPECT("info write seen before its call", N, OP(3, R, OK, 2, 0, 0, 1),
	       OP(2, W, INFO, 2, 0, 5, 0));
	EXPECT("info write seen, then undone", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, W, INFO, 2, 0, 2, 0), OP(3, R, OK, 2, 0, 3, 4), OP(3, R, OK, 1, 0, 5, 6));
	EXPECT("info cas takes effect late", Y, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, C, INFO, 1, 2, 2, 0), OP(1, W, OK, 1, 0, 20, 21),
	       OP(3, R, OK, 2, 0, 30, 31));
	EXPECT("info cas cannot apply", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, C, INFO, 5, 2, 2, 0), OP(3, R, OK, 2, 0, 30, 31));
	EXPECT("info read constrains nothing", Y, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, R, INFO, 9, 0, 2, 0));
	EXPECT("concurrent writes, first order", Y, OP(1, W, OK, 1, 0, 0, 10),
	       OP(2, W, OK, 2, 0, 1, 9), OP(3, R, OK, 1, 0, 11, 12));
	EXPECT("concurrent writes, second order", Y, OP(1, W, OK, 1, 0, 0, 10),
	       OP(2, W, OK, 2, 0, 1, 9), OP(3, R, OK, 2, 0, 11, 12));
	EXPECT("concurrent writes, both orders seen", N, OP(1, W, OK, 1, 0, 0, 10),
	       OP(2, W, OK, 2, 0, 1, 9), OP(3, R, OK, 2, 0, 11, 12), OP(3, R, OK, 1, 0, 13, 14));
	EXPECT("read during a write: old then new", Y, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, W, OK, 2, 0, 2, 10), OP(3, R, OK, 1, 0, 3, 4), OP(3, R, OK, 2, 0, 5, 6));
	EXPECT("read during a write: new then old", N, OP(1, W, OK, 1, 0, 0, 1),
	       OP(2, W, OK, 2, 0, 2, 10), OP(3, R, OK, 2, 0, 3, 4), OP(3, R, OK, 1, 0, 5, 6));
	EXPECT("equal times count as concurrent", Y, OP(1, W, OK, 1, 0, 0, 5),
	       OP(2, R, OK, 1, 0, 5, 6));
	{
		/* Keys are independent: key 2 is bad, key 1 fine. */
		lincheck_op ops[] = {OP(1, W, OK, 1, 0, 0, 1), OP(2, R, OK, 1, 0, 2, 3),
				     OP(1, W, OK, 1, 0, 0, 1), OP(2, R, OK, NIL, 0, 2, 3)};
		ops[2].key = ops[3].key = 2;
		lincheck_result r;
		lincheck_limits lim = {0};
		int v = verdict_of(ops, 4, lim, &r);
		if (v != LINCHECK_NOT_LINEARIZABLE || r.bad_key != 2 || r.bad_op != 3 ||
		    r.keys != 2 || r.keys_bad != 1) {
			fprintf(stderr, "FAIL per-key verdict: v=%d key=%" PRIu64 " op=%zu\n", v,
				r.bad_key, r.bad_op);
			failures++;
		} else {
			printf("ok   %-44s names key 2, op 3\n", "per-key verdict");
		}
	}
	{
		lincheck_op bad[] = {OP(1, W, OK, 1, 0, 5, 4)};
		lincheck_result r;
		lincheck_limits lim = {0};
		if (lincheck_check(bad, 1, &lim, &r) != -1) {
			fprintf(stderr, "FAIL a return before its call was accepted\n");
			failures++;
		}
	}
}

/* A search too large for its bounds answers UNKNOWN, never a guess: many
 * concurrent writes and a final read of a value nobody wrote. */
static void bounds(void)
{
	enum { W_COUNT = 22 };
	lincheck_op ops[W_COUNT + 1];
	for (int i = 0; i < W_COUNT; i++)
		ops[i] = (lincheck_op)OP((uint32_t)i, W, OK, i + 1, 0, i, 1000);
	ops[W_COUNT] = (lincheck_op)OP(99, R, OK, 777, 0, 2000, 2001);
	lincheck_result r;
	lincheck_limits mem = {.time_ms = 0, .memory_bytes = 256 * 1024};
	int v = verdict_of(ops, W_COUNT + 1, mem, &r);
	if (v != LINCHECK_UNKNOWN) {
		fprintf(stderr, "FAIL memory bound: got %d\n", v);
		failures++;
	} else {
		printf("ok   %-44s unknown: %s\n", "memory bound", r.why);
	}
	lincheck_limits tm = {.time_ms = 20, .memory_bytes = 0};
	v = verdict_of(ops, W_COUNT + 1, tm, &r);
	if (v != LINCHECK_UNKNOWN) {
		fprintf(stderr, "FAIL time bound: got %d\n", v);
		failures++;
	} else {
		printf("ok   %-44s unknown: %s\n", "time bound", r.why);
	}
}

/* ------------------------------------------------------------------------ */
/* Random histories.                                                          */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static int rnd_below(int n) { return (int)(rnd() % (uint64_t)n); }

/* Builds a linearizable history of n ops over `keys` keys by running a
 * sequential register at random instants inside each op's interval. */
static void generate(lincheck_op *ops, int n, int clients, int keys, int info_pct)
{
	int64_t free_at[16] = {0};
	int64_t lin[512];
	int order[512];
	for (int i = 0; i < n; i++) {
		int c = rnd_below(clients);
		int64_t call = free_at[c] + rnd_below(4);
		lin[i] = call + 1 + rnd_below(6);
		int64_t ret = lin[i] + 1 + rnd_below(6);
		free_at[c] = ret + 1;
		ops[i] = (lincheck_op){.client = (uint32_t)c, .key = (uint64_t)rnd_below(keys),
				       .call_ns = call, .return_ns = ret};
		order[i] = i;
	}
	for (int i = 1; i < n; i++) /* insertion sort by linearization point */
		for (int j = i; j > 0 && lin[order[j - 1]] > lin[order[j]]; j--) {
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	int64_t state[16];
	for (int k = 0; k < 16; k++)
		state[k] = NIL;
	int64_t next_value = 1;
	for (int j = 0; j < n; j++) {
		lincheck_op *op = &ops[order[j]];
		int64_t *s = &state[op->key];
		bool info = rnd_below(100) < info_pct;
		bool applied = !info || rnd_below(2) == 0;
		switch (rnd_below(3)) {
		case 0:
			op->f = R;
			op->value = *s;
			break;
		case 1:
			op->f = W;
			op->value = next_value++;
			if (applied)
				*s = op->value;
			break;
		default:
			op->f = C;
			op->value = rnd_below(3) ? *s : (next_value > 1 ? 1 + rnd_below((int)next_value - 1) : 5);
			if (op->value == NIL)
				op->value = 1000;
			op->value2 = next_value++;
			if (*s == op->value) {
				if (applied)
					*s = op->value2;
			} else if (!info) {
				op->outcome = FAIL;
				op->mismatch = rnd_below(4) != 0;
			} else {
				applied = false;
			}
			break;
		}
		if (info)
			op->outcome = INFO;
	}
}

/* The oracle: every order that respects real time, no memo, no lists. */
static bool brute_relevant(const lincheck_op *op)
{
	if (op->outcome == FAIL)
		return op->f == C && op->mismatch;
	return !(op->outcome == INFO && op->f == R);
}

static bool brute(const lincheck_op *ops, int n, uint32_t used, int64_t state)
{
	int64_t min_ret = INT64_MAX;
	bool left = false;
	for (int i = 0; i < n; i++)
		if (!(used >> i & 1) && ops[i].outcome != INFO) {
			left = true;
			if (ops[i].return_ns < min_ret)
				min_ret = ops[i].return_ns;
		}
	if (!left)
		return true;
	for (int i = 0; i < n; i++) {
		if ((used >> i & 1) || ops[i].call_ns > min_ret)
			continue;
		const lincheck_op *op = &ops[i];
		int64_t s = state;
		bool fits;
		if (op->f == R)
			fits = s == op->value;
		else if (op->f == W)
			fits = true, s = op->value;
		else if (op->outcome == FAIL)
			fits = s != op->value;
		else
			fits = s == op->value, s = op->value2;
		if (fits && brute(ops, n, used | 1u << i, s))
			return true;
	}
	return false;
}

static bool brute_check(const lincheck_op *ops, int n)
{
	lincheck_op kept[32];
	int m = 0;
	for (int i = 0; i < n; i++)
		if (brute_relevant(&ops[i]))
			kept[m++] = ops[i];
	return brute(kept, m, 0, NIL);
}

static void mutate(lincheck_op *ops, int n)
{
	lincheck_op *op = &ops[rnd_below(n)];
	switch (rnd_below(5)) {
	case 0:
		op->value = rnd_below(4) == 0 && op->f == R ? NIL : 1 + rnd_below(2 * n);
		break;
	case 1:
		op->outcome = (uint8_t)rnd_below(3);
		break;
	case 2:
		op->mismatch = !op->mismatch;
		break;
	case 3:
		op->f = (uint8_t)rnd_below(3);
		if (op->f != R && op->value == NIL)
			op->value = 3;
		if (op->f == C)
			op->value2 = 1 + rnd_below(2 * n);
		break;
	default: {
		int64_t d = rnd_below(9) - 4;
		op->call_ns += d;
		op->return_ns += d;
		break;
	}
	}
}

static void random_small(int rounds)
{
	lincheck_op ops[8];
	int agree = 0, bad_seen = 0;
	for (int round = 0; round < rounds; round++) {
		int n = 3 + rnd_below(6);
		generate(ops, n, 3, 1, 15);
		bool mutated = round % 2 == 1;
		if (mutated)
			mutate(ops, n);
		bool want = brute_check(ops, n);
		lincheck_result r;
		lincheck_limits lim = {0};
		int v = verdict_of(ops, (size_t)n, lim, &r);
		if (!mutated && !want) {
			fprintf(stderr, "FAIL generator made a non-linearizable history (round %d)\n",
				round);
			failures++;
		}
		int wantv = want ? LINCHECK_LINEARIZABLE : LINCHECK_NOT_LINEARIZABLE;
		if (v != wantv) {
			fprintf(stderr, "FAIL round %d: brute force says %s, checker %s\n", round,
				lincheck_verdict_name(wantv), v < 0 ? "error" : lincheck_verdict_name(v));
			for (int i = 0; i < n; i++)
				fprintf(stderr, "  c%u %s %s v=%" PRId64 " v2=%" PRId64 " mm=%d [%" PRId64
					", %" PRId64 "]\n", ops[i].client, lincheck_f_name(ops[i].f),
					lincheck_outcome_name(ops[i].outcome), ops[i].value,
					ops[i].value2, ops[i].mismatch, ops[i].call_ns, ops[i].return_ns);
			failures++;
		} else {
			agree++;
			bad_seen += !want;
		}
	}
	printf("ok   random small histories: %d/%d agree with brute force, %d of them "
	       "not linearizable\n", agree, rounds, bad_seen);
	if (bad_seen < rounds / 20) { /* about one mutation in five should break it */
		fprintf(stderr, "FAIL too few bad histories to mean anything\n");
		failures++;
	}
}

static void random_large(int rounds)
{
	static lincheck_op ops[400];
	int passed = 0, failed = 0;
	for (int round = 0; round < rounds; round++) {
		int n = 200 + rnd_below(200);
		generate(ops, n, 6, 4, 5);
		lincheck_result r;
		lincheck_limits lim = {.time_ms = 5000, .memory_bytes = 64u << 20};
		int v = verdict_of(ops, (size_t)n, lim, &r);
		if (v == LINCHECK_LINEARIZABLE)
			passed++;
		else
			fprintf(stderr, "FAIL large round %d: %s (%s)\n", round,
				lincheck_verdict_name(v), r.why), failures++;
		/* An OK read of a value nobody wrote cannot be linearized. */
		int i;
		do
			i = rnd_below(n);
		while (ops[i].f != R || ops[i].outcome != OK);
		ops[i].value = 1000000 + round;
		v = verdict_of(ops, (size_t)n, lim, &r);
		if (v == LINCHECK_NOT_LINEARIZABLE && r.bad_key == ops[i].key)
			failed++;
		else
			fprintf(stderr, "FAIL mutated large round %d: %s\n", round,
				lincheck_verdict_name(v)), failures++;
	}
	printf("ok   random large histories: %d/%d pass, %d/%d fail once mutated\n", passed,
	       rounds, failed, rounds);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
	printf("seed %" PRIu64 " (rerun: test_lincheck %" PRIu64 ")\n", seed, seed);
	rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
	hand_made();
	bounds();
	random_small(4000);
	random_large(60);
	if (failures) {
		fprintf(stderr, "%d failures (seed %" PRIu64 ")\n", failures, seed);
		return 1;
	}
	printf("all passed (seed %" PRIu64 ")\n", seed);
	return 0;
}
