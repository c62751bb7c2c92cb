/* vsrh_bench.c - micro-benchmark of the apply path (decode op, call Lua, encode reply) for kv.lua.
 *
 * usage: vsrh_bench [--ops N] [--keys K] [--repeat R] [--statemachine PATH]
 *                   [--checkpoint[=PUTS]]
 *        vsrh_bench --verify STORE_DIR [--repeat R]
 * Prints ops/s for kv put (apply), get (apply) and get (query) on one core,
 * with the machine it ran on; with --checkpoint, the wall time of taking a
 * checkpoint after writing every key, and again after PUTS (4096) more puts
 * to random keys (what a replica stalls for every checkpoint interval); with --verify, the
 * wall and CPU time of the store check at restart (vsrh_store_verify_dir) on a store a
 * --durable run left, R times. Not a test: figures depend on the machine. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "vsrh_codec.h"
#include "vsrh_lua.h"
#include "vsrh_store.h"

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* {op = NAME, key = "k<i>", value = i} as msgpack (keys in canonical order). */
static uint32_t value_size; /* --value-size: a string value of this many bytes, not an integer */

static void encode_op(vsr_buf *b, const char *name, uint32_t key, int with_value, int64_t value)
{
	char k[32];
	int kl = snprintf(k, sizeof k, "k%u", key);
	vsrh_put_map_header(b, with_value ? 3 : 2);
	vsrh_put_str(b, "key", 3);
	vsrh_put_str(b, k, (size_t)kl);
	vsrh_put_str(b, "op", 2);
	vsrh_put_str(b, name, strlen(name));
	if (with_value) {
		vsrh_put_str(b, "value", 5);
		if (value_size) {
			char v[4096];
			uint32_t n = value_size < sizeof v ? value_size : (uint32_t)sizeof v;
			for (uint32_t i = 0; i < n; i++)
				v[i] = (char)('a' + (uint32_t)(value + i) % 26u);
			vsrh_put_str(b, v, n);
		} else {
			vsrh_put_int(b, value);
		}
	}
}

static void cpu_model(char *out, size_t len)
{
	snprintf(out, len, "unknown cpu");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "model name", 10) == 0) {
			char *c = strchr(line, ':');
			if (c) {
				c += 2;
				c[strcspn(c, "\n")] = 0;
				snprintf(out, len, "%s", c);
			}
			break;
		}
	}
	fclose(f);
}

/* The speed of plain Lua on this machine, to compare figures across
 * machines: CPU ns per iteration of a loop that allocates a small table. */
static double calibrate(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	double t0 = now_s();
	if (luaL_dostring(L, "local t = {} for i = 1, 2000000 do t[i % 1000] = {i} end") != LUA_OK)
		fprintf(stderr, "calibration: %s\n", lua_tostring(L, -1));
	double dt = now_s() - t0;
	lua_close(L);
	return dt * 1e9 / 2000000;
}

typedef struct run {
	const char *name;
	const vsr_buf *ops;
	uint32_t n_distinct;
	int query;
} run;

static int bench(vsrh_sm *sm, const run *r, uint64_t n, uint64_t *op_no, int repeat)
{
	vsr_buf reply = {0};
	uint64_t errors = 0;
	double best = 0;
	for (int rep = 0; rep < repeat; rep++) {
	double t0 = now_s();
	for (uint64_t i = 0; i < n; i++) {
		const vsr_buf *op = &r->ops[i % r->n_distinct];
		reply.len = 0;
		int st;
		if (r->query) {
			st = vsrh_sm_query(sm, op->data, op->len, &reply);
		} else {
			vsr_apply_ctx a = {.op = ++*op_no, .timestamp = *op_no * 1000, .session = 1,
					   .request = *op_no};
			st = vsrh_sm_apply(sm, &a, op->data, op->len, &reply);
		}
		if (st != VSR_REPLY_OK)
			errors++;
	}
	double dt = now_s() - t0;
	if (rep == 0 || dt < best)
		best = dt;
	}
	double dt = best;
	printf("  %-12s %10llu ops in %6.3f s of CPU: %10.0f ops/s (%.2f us/op)%s\n", r->name,
	       (unsigned long long)n, dt, (double)n / dt, dt * 1e6 / (double)n,
	       errors ? " ERRORS" : "");
	free(reply.data);
	return errors ? 1 : 0;
}

/* Times the checkpoint callback the core calls (and the whole-state
 * snapshot, what a checkpoint cost before the store kept its own). */
static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int bench_checkpoint(vsrh_sm *sm, const vsr_buf *puts, uint32_t keys, uint64_t *op_no,
			    uint32_t between, int rounds, double pace_ms)
{
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf b = {0}, reply = {0};
	double t0 = wall_s();
	int bad = vsrh_sm_snapshot(sm, &b) != VSR_OK;
	double snap = wall_s() - t0;
	static const uint8_t meta[8];
	double *took = calloc((size_t)rounds + 1, sizeof *took);
	double *cpu = calloc((size_t)rounds + 1, sizeof *cpu);
	double *commit = calloc((size_t)rounds + 1, sizeof *commit);
	if (took == NULL || cpu == NULL || commit == NULL)
		return 1;
	uint32_t next = 0; /* the puts go on through the keys, round after round */
	/* Checkpoints at multiples of `between`, as a replica takes them at
	 * multiples of its interval (the store reads their pages just before). */
	if (*op_no % between)
		*op_no += between - *op_no % between;
	for (int round = 0; round <= rounds && !bad; round++) {
		vsr_checkpoint cp = {.op = *op_no, .checksum = *op_no, .timestamp = *op_no};
		t0 = wall_s();
		double c0 = now_s();
		int rc = m.checkpoint_take(m.ctx, &cp, meta, sizeof meta);
		bad |= rc != VSR_OK && rc != VSR_PENDING;
		double dt = wall_s() - t0;
		took[round] = dt;
		cpu[round] = now_s() - c0;
		/* A durable store syncs it on its own thread (the step does not
		 * wait): timed apart, and waited for, so the next take does not;
		 * with --pace the puts go on meanwhile, as in a replica. */
		t0 = wall_s();
		if (pace_ms == 0)
			vsrh_sm_on_checkpoint_durable(sm, NULL, NULL);
		double sync = wall_s() - t0;
		char off[64] = "";
		if (rc == VSR_PENDING && pace_ms == 0)
			snprintf(off, sizeof off, "; synced off the step in %.1f ms", sync * 1e3);
		if (round == 0)
			printf("  checkpoint of the whole state: %.1f ms wall (image %.1f MiB%s)\n",
			       dt * 1e3, (double)cp.size / (1 << 20), off);
		else if (round <= 3 || rounds <= 3)
			printf("  checkpoint after %u more puts: %.1f ms wall (image %.1f MiB%s)\n",
			       between, dt * 1e3, (double)cp.size / (1 << 20), off);
		if (round == rounds)
			break;
		double start = wall_s();
		for (uint32_t i = 0; i < between; i++, next++) {
			if (pace_ms && i % 64 == 0) {
				/* The puts spread over pace_ms, as clients send them. */
				double due = start + pace_ms / 1e3 * i / between, now = wall_s();
				if (due > now) {
					struct timespec ts = {.tv_sec = (time_t)(due - now),
							      .tv_nsec = (long)((due - now - (double)(time_t)(due - now)) * 1e9)};
					nanosleep(&ts, NULL);
				}
			}
			uint32_t key = (uint32_t)(((uint64_t)next * 7919u) % keys);
			vsr_apply_ctx a = {.op = ++*op_no, .timestamp = *op_no * 1000, .session = 1,
					   .request = *op_no};
			reply.len = 0;
			bad |= vsrh_sm_apply(sm, &a, puts[key].data, puts[key].len, &reply) !=
			       VSR_REPLY_OK;
		}
		/* The commit of this round's checkpoint: in the take, or (--turn)
		 * after the first put past its turn. */
		vsrh_sm_stats st;
		vsrh_sm_stats_get(sm, &st);
		commit[round] = (double)st.checkpoint_step_last_ns / 1e9;
	}
	if (rounds > 3 && !bad) {
		/* The takes after the first (the whole state), sorted. */
		qsort(took + 1, (size_t)rounds, sizeof *took, dbl_cmp);
		qsort(cpu + 1, (size_t)rounds, sizeof *cpu, dbl_cmp);
		qsort(commit + 1, (size_t)rounds - 1, sizeof *commit, dbl_cmp);
		size_t p50 = 1 + (size_t)rounds / 2, p99 = 1 + (size_t)((rounds - 1) * 0.99);
		printf("  checkpoints after %u puts each, %d of them: ms wall p50 %.2f p99 %.2f max "
		       "%.2f; ms CPU p50 %.2f p99 %.2f max %.2f\n",
		       between, rounds, took[p50] * 1e3, took[p99] * 1e3, took[rounds] * 1e3,
		       cpu[p50] * 1e3, cpu[p99] * 1e3, cpu[rounds] * 1e3);
		size_t c50 = 1 + (size_t)(rounds - 2) / 2;
		vsrh_sm_stats st;
		vsrh_sm_stats_get(sm, &st);
		printf("  their commits (in the take, or in the replica's turn): ms wall p50 %.2f "
		       "max %.2f; takes that waited for the last sync: %llu (%.1f ms in all)\n",
		       commit[c50] * 1e3, commit[rounds - 1] * 1e3,
		       (unsigned long long)st.checkpoint_sync_waits,
		       (double)st.checkpoint_sync_wait_ns / 1e6);
	}
	free(commit);
	free(took);
	free(cpu);
	printf("  whole-state snapshot: %.1f ms wall (%.1f MiB)\n", snap * 1e3,
	       (double)b.len / (1 << 20));
	free(b.data);
	free(reply.data);
	return bad;
}

/* The store check on dir, `repeat` times: each opens and maps the
 * environment afresh, as a restart's check does (the page cache warm after
 * the first). */
static int verify_bench(const char *dir, int repeat)
{
	for (int r = 0; r < repeat; r++) {
		char why[600] = "";
		double w0 = wall_s(), c0 = now_s();
		int rc = vsrh_store_verify_dir(dir, 0, 0, why, sizeof why);
		double w = wall_s() - w0, c = now_s() - c0;
		printf("  store check %d: %.1f ms wall, %.1f ms of CPU: %s\n", r + 1, w * 1e3, c * 1e3,
		       rc == 0 ? "intact" : why);
		if (rc != 0)
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t n = 1000000;
	int repeat = 3, calibration = 1, checkpoint = 0, table_store = 0, rounds = 3;
	double pace_ms = 0, turn_ms = 0;
	const char *only = NULL, *durable_dir = NULL, *verify_dir = NULL;
	uint32_t keys = 10000;
	const char *path = "statemachines/kv.lua";
	static const struct option longopts[] = {
		{"ops", required_argument, NULL, 'n'}, {"keys", required_argument, NULL, 'k'},
		{"statemachine", required_argument, NULL, 's'}, {"repeat", required_argument, NULL, 'r'},
		{"only", required_argument, NULL, 'o'}, {"no-calibration", no_argument, NULL, 'C'},
		{"checkpoint", optional_argument, NULL, 'c'}, {"table-store", no_argument, NULL, 't'},
		{"durable", required_argument, NULL, 'D'}, {"value-size", required_argument, NULL, 'V'},
		{"rounds", required_argument, NULL, 'R'}, {"pace", required_argument, NULL, 'P'},
		{"turn", required_argument, NULL, 'T'}, {"verify", required_argument, NULL, 'Y'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "n:k:s:r:o:Cc::tD:V:R:P:T:Y:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'k': keys = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': path = optarg; break;
		case 'r': repeat = atoi(optarg); break;
		case 'o': only = optarg; break;
		case 'C': calibration = 0; break;
		case 't': table_store = 1; break;
		case 'D': durable_dir = optarg; break;
		case 'Y': verify_dir = optarg; break;
		case 'R': rounds = atoi(optarg); break;
		case 'P': pace_ms = atof(optarg); break;
		case 'T': turn_ms = atof(optarg); break;
		case 'V': value_size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'c': checkpoint = optarg ? (int)strtoul(optarg, NULL, 10) : 4096; break;
		case 'h':
			printf("usage: vsrh_bench [--ops N] [--keys K] [--repeat R] [--statemachine PATH]\n"
			       "                  [--only put|get|query] [--no-calibration] [--checkpoint[=PUTS]]\n"
			       "                  [--table-store]   (vsr.store in a Lua table, not LMDB)\n"
			       "                  [--durable DIR]   (LMDB in DIR, synced as in durable mode)\n"
			       "                  [--value-size B]  (string values of B bytes)\n"
			       "                  [--rounds N]      (checkpoints after the first, default 3;\n"
			       "                                     more than 3: their p50, p99 and max)\n"
			       "                  [--pace MS]       (the puts of a round spread over MS ms while\n"
			       "                                     the last checkpoint syncs, as in a replica)\n"
			       "                  [--turn MS]       (--durable: each commit MS ms after its take,\n"
			       "                                     as replica 1 of 2)\n"
			       "       vsrh_bench --verify STORE_DIR [--repeat R]  (the store check on a\n"
			       "                                     --durable run's store, R times)\n"
			       "Reports the best of R runs of N operations each, in CPU time.\n");
			return 0;
		default:
			return 64;
		}
	}
	if (verify_dir != NULL)
		return verify_bench(verify_dir, repeat);
	if (n == 0 || keys == 0 || repeat < 1 || rounds < 1) {
		fprintf(stderr, "vsrh_bench: --ops, --keys and --repeat must be positive\n");
		return 64;
	}
	char err[1024];
	vsrh_sm_options o = {.statemachine = path, .log_level = VSRH_LOG_WARN,
			     .store = table_store ? VSRH_STORE_TABLE : VSRH_STORE_LMDB,
			     .store_dir = durable_dir, .store_sync = durable_dir != NULL,
			     .store_fresh = durable_dir != NULL,
			     .checkpoint_interval = (uint32_t)checkpoint};
	vsrh_sm *sm;
	if (vsrh_sm_open(&sm, &o, err, sizeof err) != VSR_OK) {
		fprintf(stderr, "vsrh_bench: %s\n", err);
		return 1;
	}
	vsr_buf *puts = calloc(keys, sizeof *puts), *gets = calloc(keys, sizeof *gets);
	if (!puts || !gets)
		return 1;
	for (uint32_t i = 0; i < keys; i++) {
		encode_op(&puts[i], "put", i, 1, (int64_t)i * 7);
		encode_op(&gets[i], "get", i, 0, 0);
	}
	struct utsname u;
	uname(&u);
	char cpu[128];
	cpu_model(cpu, sizeof cpu);
	printf("vsrh_bench: %s, %llu ops over %u keys, best of %d, one core, vsr.store in %s\n", path,
	       (unsigned long long)n, keys, repeat, vsrh_sm_store_lmdb(sm) ? "LMDB" : "a Lua table");
	printf("machine: %s, %s %s %s\n", cpu, u.sysname, u.release, u.machine);
	uint64_t op_no = 0;
	int bad = 0;
	run rp = {"kv put", puts, keys, 0}, rg = {"kv get", gets, keys, 0}, rq = {"kv get/query", gets, keys, 1};
	if (calibration)
		printf("calibration: plain Lua allocates a small table in %.0f ns of CPU here\n",
		       calibrate());
	/* gets need the keys: a put phase always runs first */
	bad |= bench(sm, &rp, only && strcmp(only, "put") != 0 ? keys : n, &op_no,
		     only && strcmp(only, "put") != 0 ? 1 : repeat);
	if (!only || strcmp(only, "get") == 0)
		bad |= bench(sm, &rg, n, &op_no, repeat);
	if (!only || strcmp(only, "query") == 0)
		bad |= bench(sm, &rq, n, &op_no, repeat);
	/* As replica 1 of 2: each commit waits turn_ms after its take. */
	vsrh_sm_stagger(sm, 1, 2, (uint64_t)(turn_ms * 1e6));
	if (checkpoint)
		bad |= bench_checkpoint(sm, puts, keys, &op_no, checkpoint, rounds, pace_ms);
	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	printf("  state machine memory: %.1f MiB\n", (double)st.memory_bytes / (1 << 20));
	for (uint32_t i = 0; i < keys; i++) {
		free(puts[i].data);
		free(gets[i].data);
	}
	free(puts);
	free(gets);
	vsrh_sm_destroy(sm);
	return bad;
}
