/* vsrh_check.c - the determinism self-check, and `vsrhost check CONFIG`. */
#include "vsrh_lua.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "vsrh_codec.h"

/* ---------------------------------------------------------------- text */

typedef struct text {
	char *p;
	size_t len, cap;
} text;

static void tx(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tx(text *t, const char *fmt, ...)
{
	if (t->len + 1 >= t->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len = t->len + (size_t)n < t->cap ? t->len + (size_t)n : t->cap - 1;
}

/* Writes a msgpack value as Lua-like text, e.g. {key = "x", op = "get"}. */
static int show(text *t, const uint8_t *d, size_t len, size_t *pos, int depth)
{
	if (*pos >= len || depth > 8)
		return -1;
	uint8_t c = d[*pos];
	uint32_t n;
	const char *s;
	size_t sl;
	int64_t v;
	if (c == 0xc0) { tx(t, "nil"); (*pos)++; return 0; }
	if (c == 0xc2 || c == 0xc3) { tx(t, c == 0xc3 ? "true" : "false"); (*pos)++; return 0; }
	if (c == 0xcb && *pos + 9 <= len) {
		uint64_t u = 0;
		for (int i = 1; i <= 8; i++)
			u = (u << 8) | d[*pos + (size_t)i];
		double f;
		memcpy(&f, &u, sizeof f);
		tx(t, "%.17g", f);
		*pos += 9;
		return 0;
	}
	if (vsrh_get_int(d, len, pos, &v) == 0) { tx(t, "%" PRId64, v); return 0; }
	if (vsrh_get_str(d, len, pos, &s, &sl) == 0) {
		tx(t, "\"%.*s%s\"", (int)(sl > 60 ? 60 : sl), s, sl > 60 ? "..." : "");
		return 0;
	}
	if (vsrh_get_array_header(d, len, pos, &n) == 0) {
		tx(t, "{");
		for (uint32_t i = 0; i < n; i++) {
			if (i)
				tx(t, ", ");
			if (show(t, d, len, pos, depth + 1))
				return -1;
		}
		tx(t, "}");
		return 0;
	}
	if (vsrh_get_map_header(d, len, pos, &n) == 0) {
		tx(t, "{");
		for (uint32_t i = 0; i < n; i++) {
			if (i)
				tx(t, ", ");
			size_t kp = *pos;
			if (vsrh_get_str(d, len, &kp, &s, &sl) == 0) {
				tx(t, "%.*s = ", (int)sl, s);
				*pos = kp;
			} else {
				tx(t, "[");
				if (show(t, d, len, pos, depth + 1))
					return -1;
				tx(t, "] = ");
			}
			if (show(t, d, len, pos, depth + 1))
				return -1;
		}
		tx(t, "}");
		return 0;
	}
	size_t p = *pos;
	if (vsrh_skip(d, len, &p))
		return -1;
	tx(t, "(value)");
	*pos = p;
	return 0;
}

static void show_value(text *t, const uint8_t *d, size_t len)
{
	size_t pos = 0;
	if (show(t, d, len, &pos, 0))
		tx(t, "(%zu bytes of malformed msgpack)", len);
}

static void show_reply(text *t, int status, const vsr_buf *r)
{
	if (status == VSR_REPLY_OK) {
		tx(t, "ok ");
		show_value(t, r->data, r->len);
	} else {
		tx(t, "error \"%.*s\"", (int)(r->len > 300 ? 300 : r->len), (const char *)r->data);
	}
}

static int same_reply(int sa, const vsr_buf *a, int sb, const vsr_buf *b)
{
	return sa == sb && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* ---------------------------------------------------------------- selfcheck */

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int contains(const vsr_buf *b, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= b->len; i++)
		if (memcmp(b->data + i, needle, n) == 0)
			return 1;
	return 0;
}

static size_t first_difference(const vsr_buf *a, const vsr_buf *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	for (size_t i = 0; i < n; i++)
		if (a->data[i] != b->data[i])
			return i;
	return n;
}

int vsrh_selfcheck(const vsrh_sm_options *o, const vsr_buf *ops, uint32_t n_ops, uint64_t seed,
		   char *report, size_t report_len)
{
	text t = {report, 0, report_len};
	report[0] = 0;
	vsrh_sm *a = NULL, *b = NULL, *c = NULL;
	vsrh_sm_options oa = *o, ob = *o, oc = *o;
	oa.check_seed = mix64(seed) | 1;
	ob.check_seed = mix64(seed + 1) | 1;
	oc.check_seed = mix64(seed + 2) | 1;
	char err[1024];
	int rc = 0;
	vsr_buf ra = {0}, rb = {0}, rcb = {0}, sa = {0}, sc = {0};
	if (vsrh_sm_open(&a, &oa, err, sizeof err) || vsrh_sm_open(&b, &ob, err, sizeof err)) {
		tx(&t, "%s\n", err);
		rc = VSR_ESM;
		goto out;
	}
	/* The restored instance takes over at a point drawn from the seed, so
	 * that many seeds restore at many points: state hidden from
	 * snapshot() (module upvalues, a holed array's length) shows only
	 * when an operation after the restore point depends on it. */
	uint32_t half = n_ops >= 2 ? 1 + (uint32_t)(mix64(seed ^ 0x7265737472ull) % (n_ops - 1)) : 0;
	uint32_t failed_ops = 0;
	size_t first_error = SIZE_MAX;
	char first_error_text[200] = "";
	for (uint32_t i = 0; i < n_ops; i++) {
		if (i == half && n_ops >= 2) {
			/* snapshot / restore round trip, halfway */
			if (vsrh_sm_snapshot(a, &sa) != VSR_OK) {
				tx(&t, "snapshot failed after %u operations (see the log for the reason)\n", i);
				rc = 1;
				goto out;
			}
			if (vsrh_sm_open(&c, &oc, err, sizeof err)) {
				tx(&t, "%s\n", err);
				rc = VSR_ESM;
				goto out;
			}
			if (vsrh_sm_restore(c, sa.data, sa.len) != VSR_OK) {
				tx(&t, "restore of a snapshot taken after %u operations failed (see the log)\n", i);
				rc = 1;
				goto out;
			}
			if (vsrh_sm_snapshot(c, &sc) != VSR_OK) {
				tx(&t, "snapshot of the restored state failed\n");
				rc = 1;
				goto out;
			}
			if (sa.len != sc.len || memcmp(sa.data, sc.data, sa.len) != 0) {
				tx(&t, "restored state differs from the replayed state: a snapshot taken "
				   "after %u operations, restored into a fresh instance and snapshotted "
				   "again, gives different bytes (%zu vs %zu bytes, first difference at "
				   "byte %zu). restore() does not rebuild what snapshot() saved.\n",
				   i, sa.len, sc.len, first_difference(&sa, &sc));
				rc = 1;
				goto out;
			}
			if (vsrh_sm_digest(a) != vsrh_sm_digest(c)) {
				tx(&t, "restored state differs from the replayed state: digests differ "
				   "after restoring a snapshot taken after %u operations\n", i);
				rc = 1;
				goto out;
			}
		}
		vsr_apply_ctx actx = {
			.op = i + 1,
			.timestamp = 1700000000000000000ull + (uint64_t)(i + 1) * 1000000ull,
			.session = 1 + i % 4,
			.request = 1 + i / 4,
			.seed = mix64(seed ^ ((uint64_t)i << 20)),
		};
		ra.len = rb.len = rcb.len = 0;
		int xa = vsrh_sm_apply(a, &actx, ops[i].data, ops[i].len, &ra);
		int xb = vsrh_sm_apply(b, &actx, ops[i].data, ops[i].len, &rb);
		if (xa != VSR_REPLY_OK) {
			failed_ops++;
			if (first_error == SIZE_MAX) {
				first_error = i;
				snprintf(first_error_text, sizeof first_error_text, "%.*s",
					 (int)(ra.len > 150 ? 150 : ra.len), (const char *)ra.data);
			}
		}
		if (xa != VSR_REPLY_OK && (contains(&ra, "is not available in the sandbox") ||
					   contains(&ra, "undefined global"))) {
			tx(&t, "operation %u ", i + 1);
			show_value(&t, ops[i].data, ops[i].len);
			tx(&t, " failed because the script reached outside what a state machine may "
			   "depend on:\n  %.*s\nAn operation may depend only on itself, the state and "
			   "ctx (ctx.timestamp for time, ctx.random for randomness).\n",
			   (int)(ra.len > 400 ? 400 : ra.len), (const char *)ra.data);
			rc = 1;
			goto out;
		}
		if (!same_reply(xa, &ra, xb, &rb)) {
			tx(&t, "operation %u ", i + 1);
			show_value(&t, ops[i].data, ops[i].len);
			tx(&t, " gave different replies in two independently seeded runs:\n  run 1: ");
			show_reply(&t, xa, &ra);
			tx(&t, "\n  run 2: ");
			show_reply(&t, xb, &rb);
			tx(&t, "\nThe reply depends on something other than the operation and the state: "
			   "usually the order of pairs() over a table (use vsr.sorted_pairs or "
			   "vsr.store.scan), or randomness not taken from ctx.random.\n");
			rc = 1;
			goto out;
		}
		if (c) {
			int xc = vsrh_sm_apply(c, &actx, ops[i].data, ops[i].len, &rcb);
			if (!same_reply(xa, &ra, xc, &rcb)) {
				tx(&t, "restored state differs from the replayed state: operation %u ", i + 1);
				show_value(&t, ops[i].data, ops[i].len);
				tx(&t, " gave\n  replayed: ");
				show_reply(&t, xa, &ra);
				tx(&t, "\n  restored from the snapshot taken after %u operations: ", half);
				show_reply(&t, xc, &rcb);
				tx(&t, "\nsnapshot()/restore() do not carry everything apply() depends on.\n");
				rc = 1;
				goto out;
			}
		}
		if (vsrh_sm_digest(a) != vsrh_sm_digest(b)) {
			tx(&t, "after operation %u ", i + 1);
			show_value(&t, ops[i].data, ops[i].len);
			tx(&t, " the two independently seeded runs hold different states (digests differ): "
			   "the state depends on pairs() order or on randomness not from ctx.random.\n");
			rc = 1;
			goto out;
		}
	}
	if (c && vsrh_sm_digest(a) != vsrh_sm_digest(c)) {
		tx(&t, "restored state differs from the replayed state: digests differ after all %u "
		   "operations\n", n_ops);
		rc = 1;
		goto out;
	}
	if (n_ops > 0 && failed_ops == n_ops) {
		tx(&t, "every one of the %u example operations failed, so the check exercised "
		   "nothing (operation %zu: %s): examples must be operations apply() accepts\n",
		   n_ops, first_error + 1, first_error_text);
		rc = 1;
		goto out;
	}
	/* the dedup policy: the same choice in both runs, on a full table */
	vsr_session_info sess[64];
	uint64_t r = seed;
	for (uint32_t i = 0; i < 64; i++) {
		r = mix64(r);
		sess[i].session = 1000 + 3 * (uint64_t)i;
		sess[i].request = 1 + r % 50;
		sess[i].last_op = 100 + (r >> 8) % 400;
		sess[i].registered_op = 1 + (r >> 20) % 100;
	}
	uint32_t ea = vsrh_sm_evict(a, sess, 64), eb = vsrh_sm_evict(b, sess, 64);
	if (ea != eb || ea >= 64) {
		tx(&t, "the dedup policy chose session %llu in one run and %llu in the other from the "
		   "same table: its choice must depend only on the sessions it is given\n",
		   (unsigned long long)(ea < 64 ? sess[ea].session : 0),
		   (unsigned long long)(eb < 64 ? sess[eb].session : 0));
		rc = 1;
		goto out;
	}
	tx(&t, "%u operations: replies and state digests agree across two independently seeded "
	   "runs%s; the dedup policy chooses alike\n", n_ops,
	   c ? "; the snapshot/restore round trip agrees" : "");
out:
	vsrh_sm_destroy(a);
	vsrh_sm_destroy(b);
	vsrh_sm_destroy(c);
	free(ra.data);
	free(rb.data);
	free(rcb.data);
	free(sa.data);
	free(sc.data);
	return rc;
}

int vsrh_check_seeds(const vsrh_sm_options *o, uint64_t seed, uint32_t seeds, const vsr_buf *ops,
		     uint32_t n_ops, bool allow_empty, char *report, size_t report_len)
{
	text t = {report, 0, report_len};
	report[0] = 0;
	char one[8192];
	uint64_t total_ops = 0;
	if (seeds == 0)
		seeds = 1;
	for (uint32_t k = 0; k < seeds; k++) {
		uint64_t sd = seed + k;
		vsr_buf *own = NULL;
		uint32_t n = n_ops;
		const vsr_buf *use = ops;
		if (!ops) {
			/* the script's examples, generated for this seed */
			vsrh_sm *sm;
			char err[1024];
			vsrh_sm_options oo = *o;
			oo.log_level = VSRH_LOG_ERROR;
			if (vsrh_sm_open(&sm, &oo, err, sizeof err) != VSR_OK) {
				tx(&t, "the state machine does not load: %s\n", err);
				return VSR_ESM;
			}
			int rc = vsrh_sm_examples(sm, sd, &own, &n, err, sizeof err);
			vsrh_sm_destroy(sm);
			if (rc != VSR_OK) {
				tx(&t, "seed %llu: %s\n", (unsigned long long)sd, err);
				return 1;
			}
			use = own;
		}
		int rc = 0;
		if (n == 0 && !allow_empty) {
			tx(&t, "no example operations, so determinism was not checked: add an `examples` "
			   "field (an array of operations, or a function of math.random returning one) "
			   "to the table the script returns\n");
			rc = 1;
		} else if (n > 0) {
			rc = vsrh_selfcheck(o, use, n, sd, one, sizeof one);
			total_ops += n;
		}
		if (own) {
			for (uint32_t i = 0; i < n; i++)
				free(own[i].data);
			free(own);
		}
		if (rc != 0) {
			if (n > 0)
				tx(&t, "seed %llu (of %llu..%llu): %s", (unsigned long long)sd,
				   (unsigned long long)seed, (unsigned long long)(seed + seeds - 1), one);
			return rc;
		}
	}
	tx(&t, "%u seeds (%llu..%llu), %llu operations: replies and state digests agree across "
	   "independently seeded runs and a restore at a different point per seed\n", seeds,
	   (unsigned long long)seed, (unsigned long long)(seed + seeds - 1),
	   (unsigned long long)total_ops);
	return 0;
}

/* ---------------------------------------------------------------- vsrhost check */

static void check_usage(FILE *f)
{
	fprintf(f, "usage: vsrhost check [--seed N] [--seeds K] [--allow-no-examples] CONFIG\n"
		   "Validates the configuration, loads its state machine in the sandbox and runs the\n"
		   "determinism self-check on the script's examples, for K seeds from N (default:\n"
		   "%u seeds from 1). Each seed generates its own workload and restores a snapshot\n"
		   "into a fresh instance at its own point, comparing replies and digests.\n",
		   VSRH_CHECK_SEEDS);
}

int vsrh_check_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"seed", required_argument, NULL, 's'},
		{"seeds", required_argument, NULL, 'k'},
		{"allow-no-examples", no_argument, NULL, 'e'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t seed = 1;
	uint32_t seeds = VSRH_CHECK_SEEDS;
	bool allow_empty = false;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': {
			char *end;
			seed = strtoull(optarg, &end, 0);
			if (*end || !*optarg) {
				fprintf(stderr, "vsrhost check: --seed: expected an integer, got \"%s\"\n", optarg);
				return EX_USAGE;
			}
			break;
		}
		case 'k': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 0);
			if (*end || !*optarg || v == 0 || v > 100000) {
				fprintf(stderr, "vsrhost check: --seeds: expected an integer from 1 to "
					"100000, got \"%s\"\n", optarg);
				return EX_USAGE;
			}
			seeds = (uint32_t)v;
			break;
		}
		case 'e':
			allow_empty = true;
			break;
		case 'h':
			check_usage(stdout);
			return 0;
		default:
			check_usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc - 1) {
		check_usage(stderr);
		return EX_USAGE;
	}
	const char *path = argv[optind];
	char err[2048];
	vsrh_config cfg;
	if (vsrh_config_load(path, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return EX_CONFIG;
	}
	printf("%s: configuration is valid: cluster %" PRIu64 ", %u replica%s, state machine %s\n",
	       path, cfg.cluster, cfg.replica_count, cfg.replica_count == 1 ? "" : "s", cfg.statemachine);
	vsrh_sm_options o = {
		.statemachine = cfg.statemachine,
		.dedup = cfg.dedup,
		.instructions_max = cfg.instructions_max,
		.memory_bytes_max = cfg.memory_bytes_max,
		.clients_max = cfg.clients_max,
		.log_level = VSRH_LOG_WARN,
	};
	vsrh_sm *sm;
	if (vsrh_sm_open(&sm, &o, err, sizeof err) != VSR_OK) {
		fprintf(stderr, "%s: the state machine does not load: %s\n", path, err);
		vsrh_config_free(&cfg);
		return EX_CONFIG;
	}
	printf("%s: loads in the sandbox (budgets: %" PRIu64 " instructions per call, %" PRIu64
	       " bytes of memory)\n", cfg.statemachine, cfg.instructions_max, cfg.memory_bytes_max);
	vsrh_sm_destroy(sm);
	char report[8192];
	int rc = vsrh_check_seeds(&o, seed, seeds, NULL, 0, allow_empty, report, sizeof report);
	int code = 0;
	if (rc == 0) {
		printf("%s: determinism self-check passed: %s", cfg.statemachine, report);
	} else {
		fprintf(stderr, "%s: determinism self-check FAILED: %s", cfg.statemachine, report);
		code = rc < 0 ? EX_CONFIG : EX_DATAERR;
	}
	vsrh_config_free(&cfg);
	return code;
}
