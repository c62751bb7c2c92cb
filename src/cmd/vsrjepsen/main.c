/* main.c - vsrjepsen: Jepsen-style runs of a real vsrhost cluster under faults, checked for linearizability.
 *
 * See jepsen.h for the shape of one run. Exit codes: 0 every run valid
 * (linearizable, no acknowledged write lost, replicas' digests agree), 1 a
 * violation in some run, 2 no violation but some run could not decide
 * (checker unknown, a key unreadable after healing, the cluster did not
 * start), 64 usage, 130 interrupted. */
#include "jepsen.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t jp_interrupted;

int64_t jp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool jp_sleep_ms(uint32_t ms)
{
	int64_t end = jp_now_ns() + (int64_t)ms * 1000000;
	while (!jp_interrupted) {
		int64_t left = end - jp_now_ns();
		if (left <= 0)
			return true;
		if (left > 50000000)
			left = 50000000;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = left};
		nanosleep(&ts, NULL);
	}
	return false;
}

uint64_t jp_rand(uint64_t *s)
{
	/* splitmix64: every seed, including 0, gives a good stream. */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void jp_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vsrjepsen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static void jp_on_signal(int sig)
{
	(void)sig;
	jp_interrupted = 1;
}

typedef struct jp_options {
	const char *vsrhost;
	const char *root;
	const char *out;
	const char *check_file;
	uint64_t seed;
	uint32_t runs;
	uint32_t seconds;
	int replicas;
	uint32_t nemesis;
	bool loopback;
	bool durable;
	bool maelstrom;
	bool mix;
	uint32_t lease_ppm;
	uint32_t checkpoint_interval;
	int64_t clock_rate_ppm;     /* --clock-rate: ppm fast (negative: slow), 0 off */
	int clock_rate_replica;     /* 1-based */
	char clockrate_lib[PATH_MAX];
	bool unsettled_kills;
	jp_work_opts work;
	uint32_t quiet_ms_min, quiet_ms_max, hold_ms_min, hold_ms_max;
	uint64_t check_ms;
} jp_options;

/* Totals over every run, for the closing summary. */
typedef struct jp_totals {
	uint32_t runs, valid, violations, undecided;
	uint64_t ops, ok, fail, info, majority_ops, majority_done;
	uint32_t fault_count[JP_FAULT_COUNT];
	int64_t gap_ns[JP_FAULT_COUNT];
	uint32_t alone_count[JP_FAULT_COUNT];
	int64_t gap_alone_ns[JP_FAULT_COUNT];
	int64_t recovery_ns[JP_FAULT_COUNT];
	uint32_t crashes;
} jp_totals;

static void jp_usage(FILE *f)
{
	fprintf(f,
		"usage: vsrjepsen --vsrhost PATH --root DIR [options]\n"
		"       vsrjepsen --check HISTORY.jsonl\n"
		"\n"
		"Runs a cluster of real vsrhost processes, each in its own network namespace\n"
		"(root; otherwise loopback without partitions), under concurrent kv clients and\n"
		"a nemesis drawn from the seed; then heals, reads every key, compares the\n"
		"replicas' digests and checks the history for linearizability.\n"
		"\n"
		"  --vsrhost PATH      the vsrhost program\n"
		"  --root DIR          the source tree (statemachines/kv.lua)\n"
		"  --out DIR           results folder (default jepsen-results); one run-SEED/ each\n"
		"  --seed N            first seed (default: from the clock, printed)\n"
		"  --runs N            runs, seeds N, N+1, ... (default 1)\n"
		"  --time S            seconds of faults and load per run (default 20)\n"
		"  --replicas 3|5      (default 3)\n"
		"  --nemesis LIST      all, none, kill, pause, partition, clock, disk, or single\n"
		"                      faults (kill-one, kill-minority, kill-primary, pause-one,\n"
		"                      pause-primary, partition-halves, partition-primary,\n"
		"                      partition-bridge, partition-oneway, clock, kill-all,\n"
		"                      kill-majority, wipe, wipe-minority, flip), comma separated\n"
		"                      (default all; disk: the last five); partition-creep (the\n"
		"                      primary cut from one backup, then from all) only by name\n"
		"  --durable           durability = \"durable\" (needed by the disk faults)\n"
		"  --clients N         concurrent clients (default 6)\n"
		"  --readers N         of them, how many only read (default 0)\n"
		"  --keys N            keys in use at once (default 6)\n"
		"  --ops-per-key N     operations before a key is retired (default 250)\n"
		"  --reads-via-log     reads as operations through the log (default: reads\n"
		"                      outside the log, linearizable queries)\n"
		"  --unsettled-kills   (durable) kills need not wait for the cluster to settle:\n"
		"                      they land in recoveries, view changes, transfers\n"
		"  --lease-reads PPM   reads as lease queries, the cluster configured with\n"
		"                      reads.lease_drift_ppm = PPM (docs/protocol.md \"Reads\");\n"
		"                      clock faults step the wall clock only\n"
		"  --checkpoint-interval N  limits.checkpoint_interval (default: the config's,\n"
		"                      4096): short ones keep checkpoint commits and syncs in flight\n"
		"  --clock-rate PPM[@R] replica R's (default 1) monotonic clocks run PPM parts per\n"
		"                      million fast (negative: slow) for the whole run, across its\n"
		"                      restarts (libvsrclockrate.so beside this program, preloaded):\n"
		"                      against --lease-reads' drift bound\n"
		"  --rate N            operations per second over all clients (default 300; 0:\n"
		"                      as fast as the cluster answers)\n"
		"  --quiet-ms A-B      quiet stretch between faults (default 1000-3000)\n"
		"  --hold-ms A-B       how long a fault lasts (default 1500-5000)\n"
		"  --call-ms N         a call's deadline before it is recorded info (default 4000)\n"
		"  --attempt-ms N      a client's wait for one attempt before it retries, maybe\n"
		"                      elsewhere (default: the client library's, 500)\n"
		"  --check-ms N        checker time bound per run (default 60000)\n"
		"  --loopback          do not use namespaces even as root\n"
		"  --mix               vary runs: 3 and 5 replicas in turn, and every other pair\n"
		"                      of runs on durable storage with the disk nemeses added\n"
		"  --check FILE        only check a recorded history.jsonl\n"
		"  --maelstrom         play Maelstrom's part instead: vsrhost --maelstrom nodes\n"
		"                      (lin-kv, --replicas nodes, --clients clients) with lines\n"
		"                      routed between them and partitions that drop them\n");
}

static int jp_range(const char *s, uint32_t *lo, uint32_t *hi)
{
	unsigned a, b;
	if (sscanf(s, "%u-%u", &a, &b) != 2 || a > b || b > 600000)
		return -1;
	*lo = a;
	*hi = b;
	return 0;
}

static int jp_check_only(const char *path, uint64_t check_ms)
{
	char err[512];
	size_t n;
	jp_op *h = jp_history_read(path, &n, err, sizeof err);
	if (h == NULL) {
		jp_log("%s", err);
		return EX_DATAERR;
	}
	lincheck_op *ops = malloc((n ? n : 1) * sizeof *ops);
	for (size_t i = 0; i < n; i++)
		ops[i] = h[i].op;
	lincheck_limits lim = {.time_ms = check_ms, .memory_bytes = 256u << 20};
	lincheck_result r;
	int rc = lincheck_check(ops, n, &lim, &r);
	printf("%s: %zu ops, %u keys: %s%s%s\n", path, n, r.keys,
	       rc ? "error" : lincheck_verdict_name(r.verdict), r.why[0] ? ": " : "", r.why);
	free(ops);
	free(h);
	if (rc != 0)
		return EX_DATAERR;
	return r.verdict == LINCHECK_LINEARIZABLE ? 0 : r.verdict == LINCHECK_NOT_LINEARIZABLE ? 1 : 2;
}

/* Waits for every replica to report the same executed op and digest. */
static bool jp_digests(jp_cluster *c, char *note, size_t note_len)
{
	int64_t deadline = jp_now_ns() + 15000000000ll;
	while (!jp_interrupted) {
		vsrc_status_entry st[VSR_REPLICAS_MAX];
		vsrc_status_query(&c->copt, 500, st);
		bool all = true, same = true;
		size_t used = 0;
		note[0] = '\0';
		for (int i = 0; i < c->n; i++) {
			if (!st[i].ok) {
				all = false;
				used += (size_t)snprintf(note + used, used < note_len ? note_len - used : 0,
							 "%sreplica %d: %s", i ? "; " : "", i + 1,
							 st[i].error);
				continue;
			}
			if (st[i].status.executed != st[0].status.executed ||
			    st[i].status.digest != st[0].status.digest)
				same = false;
			used += (size_t)snprintf(note + used, used < note_len ? note_len - used : 0,
						 "%sreplica %d: view %" PRIu64 " executed %" PRIu64
						 " digest %016" PRIx64,
						 i ? "; " : "", i + 1, st[i].status.view,
						 st[i].status.executed, st[i].status.digest);
		}
		if (all && same)
			return true;
		if (jp_now_ns() > deadline)
			return false;
		jp_sleep_ms(200);
	}
	return false;
}

/* One run. Returns 0 valid, 1 violation, 2 undecided, 130 interrupted. */
static int jp_one_run(const jp_options *o, uint64_t seed, jp_totals *tot)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/run-%" PRIu64, o->out, seed);
	mkdir(o->out, 0755);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		jp_log("cannot make %s: %s", dir, strerror(errno));
		return 2;
	}
	bool faketime = (o->nemesis >> JP_CLOCK) & 1;
	jp_cluster c;
	jp_nemesis *nm = calloc(1, sizeof *nm);
	if (nm == NULL)
		return 2;
	int rc = 2;
	jp_op *h = NULL;
	int64_t rates[JP_REPLICAS_MAX] = {0};
	if (o->clock_rate_ppm != 0)
		rates[o->clock_rate_replica - 1] = o->clock_rate_ppm;
	if (jp_cluster_create(&c, o->replicas, !o->loopback, faketime, o->durable, o->lease_ppm,
			      o->checkpoint_interval, rates, o->clockrate_lib, o->vsrhost, o->root,
			      dir, seed) != 0) {
		jp_log("seed %" PRIu64 ": could not build the cluster", seed);
		goto out;
	}
	for (int i = 0; i < c.n; i++)
		if (jp_cluster_start(&c, i, true) != 0)
			goto out;
	int primary;
	if (!jp_cluster_settled(&c, 20000, &primary)) {
		jp_log("seed %" PRIu64 ": the cluster did not come up within 20 s, or a replica exited "
		       "(see %s/replica-*.log)", seed, dir);
		goto out;
	}
	int64_t t0 = jp_now_ns();
	jp_work *w = jp_work_start(&c.copt, &o->work, seed, t0);
	nm->c = &c;
	nm->rng = seed ^ 0x6a09e667f3bcc909ull;
	nm->enabled = o->nemesis;
	nm->unsettled_kills = o->unsettled_kills;
	nm->t0_ns = t0;
	nm->quiet_ms_min = o->quiet_ms_min;
	nm->quiet_ms_max = o->quiet_ms_max;
	nm->hold_ms_min = o->hold_ms_min;
	nm->hold_ms_max = o->hold_ms_max;
	jp_nemesis_run(nm, o->seconds * 1000u);
	/* Healed: give the cluster a moment to settle while clients go on. */
	bool settled = jp_cluster_settled(&c, 20000, &primary);
	size_t n;
	uint32_t keys_used;
	h = jp_work_stop(w, &n, &keys_used);
	if (jp_interrupted) {
		rc = 130;
		goto out;
	}
	uint32_t first_final = (uint32_t)n;
	jp_verdict v;
	memset(&v, 0, sizeof v);
	v.unread_keys = jp_final_reads(&c.copt, keys_used, t0, &h, &n, o->work.clients);
	int64_t end_ns = jp_now_ns() - t0;
	v.digests_agree = jp_digests(&c, v.digest_note, sizeof v.digest_note);
	jp_cluster_destroy(&c);

	lincheck_op *ops = malloc((n ? n : 1) * sizeof *ops);
	if (ops == NULL)
		goto out;
	for (size_t i = 0; i < n; i++)
		ops[i] = h[i].op;
	lincheck_limits lim = {.time_ms = o->check_ms, .memory_bytes = 256u << 20};
	if (lincheck_check(ops, n, &lim, &v.lin) != 0)
		v.lin.verdict = LINCHECK_UNKNOWN;
	free(ops);
	jp_report_lost(h, n, first_final, &v);
	jp_report_availability(h, first_final, nm, end_ns, &v);
	bool violation = v.lin.verdict == LINCHECK_NOT_LINEARIZABLE || v.lost_writes > 0 ||
			 !v.digests_agree;
	v.valid = !violation && v.lin.verdict == LINCHECK_LINEARIZABLE && v.unread_keys == 0;
	if (jp_report_write(dir, h, n, nm, &v, o->work.clients, end_ns, seed) != 0)
		jp_log("could not write every file of %s", dir);
	/* The replicas' data directories (64 MiB of store each, even with
	 * memory storage) are kept only for a run that needs looking into. */
	if (v.valid) {
		char data[PATH_MAX + 8];
		snprintf(data, sizeof data, "%s/data", dir);
		if (jp_remove_tree(data) != 0)
			jp_log("cannot remove %s: %s", data, strerror(errno));
	}

	uint32_t crashes = 0;
	for (uint32_t e = 0; e < nm->event_count; e++)
		crashes += nm->events[e].fault < 0;
	printf("run seed %" PRIu64 ": %s; %" PRIu64 " ops (%" PRIu64 " ok, %" PRIu64 " fail, %" PRIu64
	       " info) on %u keys; lost writes %u; unread keys %u; digests %s; availability "
	       "%.1f%% of %" PRIu64 " ops called with a majority connected; %u faults%s%s -> %s\n",
	       seed, lincheck_verdict_name(v.lin.verdict), v.ops, v.ok, v.fail, v.info, v.lin.keys,
	       v.lost_writes, v.unread_keys, v.digests_agree ? "agree" : "DIFFER",
	       100.0 * v.availability, v.majority_ops, nm->event_count,
	       settled ? "" : "; NOT settled after healing", crashes ? "; A REPLICA CRASHED" : "",
	       dir);
	if (v.lin.why[0])
		printf("  checker: %s\n", v.lin.why);
	if (v.lost_writes)
		printf("  lost: %s\n", v.lost_example);
	if (!v.digests_agree)
		printf("  digests: %s\n", v.digest_note);
	for (int k = 0; k < JP_FAULT_COUNT; k++)
		if (v.fault_count[k])
			printf("  %-18s x%-3u longest stretch without a completed op: %.2f s; "
			       "alone x%u: %.2f s; heal to next completed op: %.2f s\n",
			       jp_fault_names[k], v.fault_count[k], v.gap_ns[k] / 1e9, v.alone_count[k],
			       v.gap_alone_ns[k] / 1e9, v.recovery_ns[k] / 1e9);
	fflush(stdout);

	tot->ops += v.ops;
	tot->ok += v.ok;
	tot->fail += v.fail;
	tot->info += v.info;
	tot->majority_ops += v.majority_ops;
	tot->majority_done += (uint64_t)(v.availability * (double)v.majority_ops + 0.5);
	tot->crashes += crashes;
	for (int k = 0; k < JP_FAULT_COUNT; k++) {
		tot->fault_count[k] += v.fault_count[k];
		if (v.gap_ns[k] > tot->gap_ns[k])
			tot->gap_ns[k] = v.gap_ns[k];
		tot->alone_count[k] += v.alone_count[k];
		if (v.recovery_ns[k] > tot->recovery_ns[k])
			tot->recovery_ns[k] = v.recovery_ns[k];
		if (v.gap_alone_ns[k] > tot->gap_alone_ns[k])
			tot->gap_alone_ns[k] = v.gap_alone_ns[k];
	}
	rc = violation ? 1 : v.valid ? 0 : 2;
out:
	jp_cluster_destroy(&c);
	free(h);
	free(nm);
	if (jp_interrupted)
		rc = 130;
	return rc;
}

int main(int argc, char **argv)
{
	jp_options o = {
		.out = "jepsen-results",
		.runs = 1,
		.seconds = 20,
		.replicas = 3,
		.work = {.clients = 6, .keys = 6, .ops_per_key = 250, .rate = 300},
		.quiet_ms_min = 1000, .quiet_ms_max = 3000,
		.hold_ms_min = 1500, .hold_ms_max = 5000,
		.check_ms = 60000,
	};
	bool seed_given = false;
	char err[256];
	uint32_t call_ms = 4000, attempt_ms = 0;
	jp_nemesis_parse("all", &o.nemesis, err, sizeof err);
	static const struct option longopts[] = {
		{"vsrhost", required_argument, NULL, 'H'}, {"root", required_argument, NULL, 'R'},
		{"out", required_argument, NULL, 'o'}, {"seed", required_argument, NULL, 's'},
		{"runs", required_argument, NULL, 'n'}, {"time", required_argument, NULL, 't'},
		{"replicas", required_argument, NULL, 'r'}, {"nemesis", required_argument, NULL, 'N'},
		{"durable", no_argument, NULL, 'D'}, {"clients", required_argument, NULL, 'c'},
		{"keys", required_argument, NULL, 'k'}, {"ops-per-key", required_argument, NULL, 'K'},
		{"rate", required_argument, NULL, 'q'}, {"quiet-ms", required_argument, NULL, 'Q'},
		{"hold-ms", required_argument, NULL, 'O'}, {"call-ms", required_argument, NULL, 'C'},
		{"check-ms", required_argument, NULL, 'M'}, {"loopback", no_argument, NULL, 'L'},
		{"check", required_argument, NULL, 'X'}, {"help", no_argument, NULL, 'h'},
		{"maelstrom", no_argument, NULL, 'm'}, {"mix", no_argument, NULL, 'x'},
		{"reads-via-log", no_argument, NULL, 'V'},
		{"lease-reads", required_argument, NULL, 'E'},
		{"unsettled-kills", no_argument, NULL, 'U'},
		{"clock-rate", required_argument, NULL, 'F'},
		{"checkpoint-interval", required_argument, NULL, 'I'},
		{"attempt-ms", required_argument, NULL, 'A'},
		{"readers", required_argument, NULL, 'B'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		unsigned long long v = optarg ? strtoull(optarg, NULL, 10) : 0;
		switch (ch) {
		case 'H': o.vsrhost = optarg; break;
		case 'R': o.root = optarg; break;
		case 'o': o.out = optarg; break;
		case 's': o.seed = v; seed_given = true; break;
		case 'n': o.runs = (uint32_t)v; break;
		case 't': o.seconds = (uint32_t)v; break;
		case 'r': o.replicas = (int)v; break;
		case 'N':
			if (jp_nemesis_parse(optarg, &o.nemesis, err, sizeof err) != 0) {
				jp_log("--nemesis: %s", err);
				return EX_USAGE;
			}
			break;
		case 'D': o.durable = true; break;
		case 'c': o.work.clients = (uint32_t)v; break;
		case 'k': o.work.keys = (uint32_t)v; break;
		case 'K': o.work.ops_per_key = (uint32_t)v; break;
		case 'q': o.work.rate = (uint32_t)v; break;
		case 'V': o.work.reads_via_log = true; break;
		case 'U': o.unsettled_kills = true; break;
		case 'I': o.checkpoint_interval = (uint32_t)v; break;
		case 'F': {
			long long ppm = 0;
			int at = 1, used = 0;
			if (sscanf(optarg, "%lld%n@%d%n", &ppm, &used, &at, &used) < 1 ||
			    optarg[used] != '\0' || ppm <= -1000000 || ppm > 100000000 ||
			    at < 1 || at > JP_REPLICAS_MAX) {
				jp_log("--clock-rate: expected PPM or PPM@REPLICA (ppm fast, above "
				       "-1000000, at most 100000000), got \"%s\"", optarg);
				return EX_USAGE;
			}
			o.clock_rate_ppm = ppm;
			o.clock_rate_replica = at;
			break;
		}
		case 'E':
			o.lease_ppm = (uint32_t)v;
			o.work.lease_reads = v > 0;
			break;
		case 'Q':
			if (jp_range(optarg, &o.quiet_ms_min, &o.quiet_ms_max) != 0) {
				jp_log("--quiet-ms: expected A-B in milliseconds, got \"%s\"", optarg);
				return EX_USAGE;
			}
			break;
		case 'O':
			if (jp_range(optarg, &o.hold_ms_min, &o.hold_ms_max) != 0) {
				jp_log("--hold-ms: expected A-B in milliseconds, got \"%s\"", optarg);
				return EX_USAGE;
			}
			break;
		case 'C': call_ms = (uint32_t)v; break;
		case 'A': attempt_ms = (uint32_t)v; break;
		case 'B': o.work.readers = (uint32_t)v; break;
		case 'M': o.check_ms = v; break;
		case 'L': o.loopback = true; break;
		case 'X': o.check_file = optarg; break;
		case 'm': o.maelstrom = true; break;
		case 'x': o.mix = true; break;
		case 'h': jp_usage(stdout); return 0;
		default: jp_usage(stderr); return EX_USAGE;
		}
	}
	if (o.check_file)
		return jp_check_only(o.check_file, o.check_ms);
	if (o.vsrhost == NULL || o.root == NULL || optind != argc) {
		jp_usage(stderr);
		return EX_USAGE;
	}
	if ((o.replicas != 3 && o.replicas != 5) || o.work.clients == 0 || o.work.clients > 256 ||
	    o.work.keys == 0 || o.work.ops_per_key == 0 || o.runs == 0 || call_ms < 100 ||
	    o.work.readers >= o.work.clients) {
		jp_log("expected --replicas 3 or 5, 1-256 clients, fewer readers than clients, at "
		       "least one key, op per key and run, --call-ms of 100 or more");
		return EX_USAGE;
	}
	if (o.lease_ppm > 500000 || (o.lease_ppm && o.work.reads_via_log)) {
		jp_log("--lease-reads takes a drift bound of 1-500000 ppm, and not with "
		       "--reads-via-log");
		return EX_USAGE;
	}
	if (o.clock_rate_ppm != 0) {
		if (o.clock_rate_replica > o.replicas) {
			jp_log("--clock-rate: replica %d of %d", o.clock_rate_replica, o.replicas);
			return EX_USAGE;
		}
		/* The shim is built beside this program (tests only). */
		char self[PATH_MAX - 32];
		ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
		char *slash = len > 0 ? (self[len] = '\0', strrchr(self, '/')) : NULL;
		if (slash != NULL)
			*slash = '\0';
		snprintf(o.clockrate_lib, sizeof o.clockrate_lib, "%s/libvsrclockrate.so",
			 slash != NULL ? self : ".");
		if (access(o.clockrate_lib, R_OK) != 0) {
			jp_log("--clock-rate needs %s (built with vsrjepsen): %s", o.clockrate_lib,
			       strerror(errno));
			return EX_USAGE;
		}
	}
	if (o.unsettled_kills && !o.durable) {
		jp_log("--unsettled-kills needs --durable: in memory mode a replica killed before "
		       "it recovered makes a second amnesiac, which memory mode does not survive");
		return EX_USAGE;
	}
	if ((o.nemesis & JP_DISK_FAULTS) && !o.durable) {
		jp_log("kill-all, kill-majority, wipe, wipe-minority and flip need --durable: in "
		       "memory mode a majority lost is data lost, by design (docs/storage.md)");
		return EX_USAGE;
	}
	/* Replicas read paths from a config written elsewhere: make them absolute. */
	static char root_abs[PATH_MAX], vsrhost_abs[PATH_MAX];
	if (realpath(o.root, root_abs) == NULL || realpath(o.vsrhost, vsrhost_abs) == NULL) {
		jp_log("--root %s or --vsrhost %s: %s", o.root, o.vsrhost, strerror(errno));
		return EX_USAGE;
	}
	o.root = root_abs;
	o.vsrhost = vsrhost_abs;
	/* The results folder too: the replicas resolve the config's data_dir
	 * against the config's own folder, so a relative one put their data
	 * in a nested copy of the path, where wipe, flip and the removal of a
	 * valid run's data (which use the path as given) never looked: a wipe
	 * removed nothing and a flip found no file. */
	static char out_abs[PATH_MAX];
	if ((mkdir(o.out, 0755) != 0 && errno != EEXIST) || realpath(o.out, out_abs) == NULL) {
		jp_log("--out %s: %s", o.out, strerror(errno));
		return EX_USAGE;
	}
	o.out = out_abs;
	vsrc_timing_default(&o.work.timing);
	o.work.timing.call_ms = call_ms;
	if (attempt_ms != 0)
		o.work.timing.attempt_ms = attempt_ms;
	if (!seed_given)
		o.seed = (uint64_t)time(NULL) % 1000000;

	struct sigaction sa = {.sa_handler = jp_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	jp_cluster_sweep_stale();

	if (o.maelstrom) {
		printf("vsrjepsen --maelstrom: %u run(s) of %u s, seeds %" PRIu64 "..%" PRIu64
		       ", %d nodes, %u lin-kv clients, partitions\n",
		       o.runs, o.seconds, o.seed, o.seed + o.runs - 1, o.replicas, o.work.clients);
	} else {
		printf("vsrjepsen: %u run(s) of %u s, seeds %" PRIu64 "..%" PRIu64 ", %d replicas, "
		       "%u clients at %u ops/s, nemesis:",
		       o.runs, o.seconds, o.seed, o.seed + o.runs - 1, o.replicas, o.work.clients,
		       o.work.rate);
		for (int f = 0; f < JP_FAULT_COUNT; f++)
			if (o.nemesis >> f & 1)
				printf(" %s", jp_fault_names[f]);
		printf("\n");
	}
	/* Everything that shapes a run, so that the line replays one seed. */
	printf("  rerun one: %s --vsrhost %s --root %s --time %u --replicas %d --clients %u "
	       "--keys %u --ops-per-key %u --rate %u --quiet-ms %u-%u --hold-ms %u-%u "
	       "--call-ms %u%s%s%s%s --lease-reads %u --nemesis ",
	       o.maelstrom ? "vsrjepsen --maelstrom" : "vsrjepsen", o.vsrhost, o.root, o.seconds,
	       o.replicas, o.work.clients, o.work.keys, o.work.ops_per_key, o.work.rate,
	       o.quiet_ms_min, o.quiet_ms_max, o.hold_ms_min, o.hold_ms_max, call_ms,
	       o.durable ? " --durable" : "", o.work.reads_via_log ? " --reads-via-log" : "",
	       o.loopback ? " --loopback" : "", o.unsettled_kills ? " --unsettled-kills" : "",
	       o.lease_ppm);
	int listed = 0;
	for (int f = 0; f < JP_FAULT_COUNT; f++)
		if (o.nemesis >> f & 1)
			printf("%s%s", listed++ ? "," : "", jp_fault_names[f]);
	printf("%s", listed ? "" : "none");
	if (o.clock_rate_ppm != 0)
		printf(" --clock-rate %lld@%d", (long long)o.clock_rate_ppm, o.clock_rate_replica);
	if (o.checkpoint_interval != 0)
		printf(" --checkpoint-interval %u", o.checkpoint_interval);
	if (attempt_ms != 0)
		printf(" --attempt-ms %u", attempt_ms);
	if (o.work.readers != 0)
		printf(" --readers %u", o.work.readers);
	printf(" --seed SEED\n");
	fflush(stdout);

	jp_totals tot = {0};
	int worst = 0;
	for (uint32_t r = 0; r < o.runs && !jp_interrupted; r++) {
		jp_options run = o;
		if (o.mix) {
			run.replicas = r % 2 ? 5 : 3;
			run.durable = (r / 2) % 2 == 1;
			if (run.durable)
				run.nemesis |= JP_DISK_FAULTS;
			printf("run %u of %u: %d replicas, %s storage\n", r + 1, o.runs, run.replicas,
			       run.durable ? "durable" : "memory");
		}
		int rc = o.maelstrom ? jp_maelstrom_run(o.vsrhost, o.root, o.out, o.seed + r,
							o.replicas, o.seconds, o.work.clients,
							call_ms)
				     : jp_one_run(&run, o.seed + r, &tot);
		tot.runs++;
		if (rc == 0)
			tot.valid++;
		else if (rc == 1)
			tot.violations++;
		else
			tot.undecided++;
		if (rc == 130)
			break;
		if (rc == 1 || (rc == 2 && worst == 0))
			worst = rc;
	}
	if (o.maelstrom) {
		printf("vsrjepsen --maelstrom: %u runs: %u valid, %u with a violation, %u undecided\n",
		       tot.runs, tot.valid, tot.violations, tot.undecided);
		return jp_interrupted ? 130 : worst;
	}
	printf("vsrjepsen: %u runs: %u valid, %u with a violation, %u undecided; %" PRIu64
	       " ops (%" PRIu64 " ok, %" PRIu64 " fail, %" PRIu64 " info); availability %.1f%% of %"
	       PRIu64 " ops called with a majority connected; %u replica crashes\n",
	       tot.runs, tot.valid, tot.violations, tot.undecided, tot.ops, tot.ok, tot.fail,
	       tot.info,
	       tot.majority_ops ? 100.0 * (double)tot.majority_done / (double)tot.majority_ops : 0.0,
	       tot.majority_ops, tot.crashes);
	for (int k = 0; k < JP_FAULT_COUNT; k++)
		if (tot.fault_count[k])
			printf("  %-18s x%-4u longest stretch without a completed op: %.2f s; "
			       "alone x%u: %.2f s; heal to next completed op: %.2f s\n",
			       jp_fault_names[k], tot.fault_count[k], tot.gap_ns[k] / 1e9,
			       tot.alone_count[k], tot.gap_alone_ns[k] / 1e9, tot.recovery_ns[k] / 1e9);
	if (jp_interrupted) {
		jp_log("interrupted; everything started was stopped and removed");
		return 130;
	}
	return worst;
}
