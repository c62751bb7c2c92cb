/* sim_main.c - command line of vsrsim (and vsrsim-teeth): one seed, sweeps, demo.
 *
 *   vsrsim --seed N [--trace]          replay one run, print its digests
 *   vsrsim --seeds A..B [--replicas n] sweep; closes with "N passed, N failed"
 *   vsrsim --demo                      a short narrated run for people
 *   vsrsim-teeth --bug NAME --expect-violation --seeds A..B
 *                                      the checker must catch a planted bug
 * Sweeps run each seed in a child process so an assertion in the core names
 * its seed instead of ending the sweep. The wall clock is read only here,
 * to report the simulator's speed; no simulated decision depends on it. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

typedef struct bug_name {
	const char *name;
	uint32_t bit;
} bug_name;

static const bug_name bug_names[] = {
	{"ack-conflicting", VSR_BUG_ACK_CONFLICTING},
	{"quorum-minus-one", VSR_BUG_QUORUM_MINUS_ONE},
	{"truncate-transfer", VSR_BUG_TRUNCATE_TRANSFER},
	{"unpersisted-vote", VSR_BUG_UNPERSISTED_VOTE},
	{"dvc-by-op", VSR_BUG_DVC_BY_OP},
	{"dvc-stale-copies", VSR_BUG_DVC_STALE_COPIES},
	{"ack-early", VSR_BUG_ACK_EARLY},
	{"shorten-own-log", VSR_BUG_SHORTEN_OWN_LOG},
	{"old-checkpoint", VSR_BUG_OLD_CHECKPOINT},
	{"backoff-reset", VSR_BUG_BACKOFF_RESET},
	{"no-disk-slack", VSR_BUG_NO_DISK_SLACK},
	{"no-heal-reset", VSR_BUG_NO_HEAL_RESET},
	{"lost-same-view", VSR_BUG_LOST_SAME_VIEW},
	{"stale-recovery-answer", VSR_BUG_STALE_RECOVERY_ANSWER},
	{"backup-new-state", VSR_BUG_BACKUP_NEW_STATE},
	{"recovery-any-nonce", VSR_BUG_RECOVERY_ANY_NONCE},
	{"ack-below-log", VSR_BUG_ACK_BELOW_LOG},
	{"register-last-reply", VSR_BUG_REGISTER_LAST_REPLY},
	{"no-abdication", VSR_BUG_NO_ABDICATION},
	{"nonatomic-restore", VSR_BUG_NONATOMIC_RESTORE},
	{"no-divergence-check", VSR_BUG_NO_DIVERGENCE_CHECK},
	{"no-record-repair", VSR_BUG_NO_RECORD_REPAIR},
	{"checkpoint-named-early", VSR_BUG_EARLY_CHECKPOINT_NAME},
	{"durable-names-current", VSR_BUG_DURABLE_NAMES_CURRENT},
	{"read-no-round", VSR_BUG_READ_NO_ROUND},
	{"read-before-execute", VSR_BUG_READ_BEFORE_EXECUTE},
	/* the simulated host's (SIM_BUGS_HOST), not the core's */
	{"sync-fail-ignored", SIM_BUG_SYNC_FAIL_IGNORED},
	{"fetch-replaces-store", SIM_BUG_FETCH_REPLACES_STORE},
};


static void usage(FILE *f)
{
	fprintf(f,
		"usage: vsrsim [options]\n"
		"  --seed N             run one seed (default 1)\n"
		"  --seeds A..B         sweep seeds A to B inclusive\n"
		"  --replicas 1|3|5     cluster size (default 3)\n"
		"  --clients N          clients (default 4, at most %u)\n"
		"  --ticks N            ticks with faults before healing (default 2000)\n"
		"  --liveness-ticks N   ticks allowed to settle after healing (default 3000)\n"
		"  --faults on|off      fault injection (default on)\n"
		"  --trace              print every event of the run\n"
		"  --trace-from TICK    print the trace from this tick on\n"
		"  --drop-ppm N, --dup-ppm N, --crash-ppm N, --partition-ppm N,\n"
		"  --delay-max N, --persist-max N\n"
		"                       fix a fault rate (default: drawn per seed)\n"
		"  --amnesia-ppm N|swarm  share of restarts that wipe the disk (default\n"
		"                       swarm: 0, 10 %% or 30 %% drawn per seed)\n"
		"  --consequences-only  skip direct checks (vote before durable, ack\n"
		"                       mismatch, commit without quorum, core's local\n"
		"                       invariants): only damage done fails a run\n"		"  --no-fork            run sweep seeds in this process (faster)\n"
		"  --quiet              in sweeps, print only failing seeds\n"
		"  --demo               a short narrated run: primary isolated, healed\n"
		"  --bug NAME           (vsrsim-teeth) plant a bug (names: --help-bugs)\n"
		"  --expect-violation   sweep until the first safety violation that the\n"
		"                       same seed without the bug does not have; exit 0\n"
		"  --expect-failure     the same, counting liveness failures too\n"
		"  --count-catches      with --expect-*: sweep every seed, count catches\n"
		"  --guards             print the defensive-branch counters of a sweep\n",
		SIM_CLIENTS_MAX);
	fprintf(f,
		"More faults (issue 7; each drawn per seed when on):\n"
		"  --slow-disks         persists up to 100 ticks in a quarter of seeds\n"
		"  --minority-down      up to f replicas stay down after the faults\n"
		"  --one-way-long       one-way link failures of 500..3000 ticks\n"
		"  --long-steps         checkpoint steps that stall a replica 20..100 ticks\n"
		"  --slow-heal          after the faults, delays of 12..30 ticks (above\n"
		"                       the core's retry timer) in a third of seeds\n"
		"  --restore-fail-ppm N checkpoint restores that fail, per million\n"
		"  --big-replies        ops whose reply exceeds VSR_OP_BYTES_MAX\n"
		"  --reads              clients also send queries (linearizable, lease,\n"
		"                       stale); leases on in half the seeds; every answer\n"
		"                       is checked against the committed history\n"
		"  --large-state        snapshots padded to 4 or 32 KiB (256-byte chunks)\n"
		"  --ack-crashes        crashes aimed right after a PREPARE_OK while a\n"
		"                       write is pending\n"
		"  --single-amnesia     wiped restarts also with one replica\n"
		"  --minority-amnesia   up to f replicas amnesiac at once (a\n"
		"                       minority of disks wiped), not one\n"
		"  --async-checkpoints  checkpoints of some replicas (drawn per seed)\n"
		"                       become durable later (VSR_PENDING); a crash\n"
		"                       before loses them (--sync-checkpoints: off)\n"
		"  --sync-fail-ppm N|swarm  checkpoint syncs that fail, per million (the\n"
		"                       replica exits 74, its store rolls back to the\n"
		"                       checkpoint before); swarm (default): 0, 2 %% or\n"
		"                       10 %% drawn per seed\n"
		"  --fetch-kill-ppm N|swarm  checkpoint fetches killed midway, per million\n"
		"                       (at a chunk, or in the install once durable);\n"
		"                       swarm (default): 0, 10 %% or 30 %% per seed\n"
		"  --fresh-restarts     the operator formats the whole cluster anew once\n"
		"                       (in a quarter of seeds); clients keep running\n"
		"  --live-during-faults [--live-window N]  while a quorum is up and\n"
		"                       connected for N ticks (default 1500), requests\n"
		"                       complete\n"
		"  --new-faults         the modes on by default: every one above, with\n"
		"                       --restore-fail-ppm 100000 (live window 1500)\n"
		"  --classic-faults     all of them off (the fault model before issue 7)\n"
		"  --all-faults         the same as --new-faults\n"
		"  --plant-divergence   one replica's state machine computes another\n"
		"                       state at one op (drawn per seed); runtime\n"
		"                       divergence detection must find and repair it\n"
		"  --amnesia-hidden     (teeth) hand a wiped disk to the core as a\n"
		"                       formatted one instead of amnesia = true\n");
}

/* The issue-7 modes: all on by default since the liveness work (stale old
 * primary, expiring recovery answers, disk-aware timeouts); --new-faults
 * names them for older command lines. */
static void set_default_modes(sim_options *o)
{
	o->long_oneway = o->long_steps = o->large_state = true;
	o->ack_crashes = o->big_replies = true;
	o->async_checkpoints = true;
	o->sync_fail_ppm = o->fetch_kill_ppm = SIM_RATE_SEEDED;
	o->fresh_restarts = o->single_amnesia = true;
	o->restore_fail_ppm = 100000;
	/* Off until the liveness work: a replica normal in an older view next
	 * to a newer view whose primary was gone (minority-down, slow disks,
	 * the check during faults), and views churning when every write or
	 * message is slower than the timeouts (slow disks, slow heal). */
	o->slow_disks = o->minority_down = o->slow_heal = true;
	o->live_during_faults = true;
}

static void set_all_modes(sim_options *o)
{
	set_default_modes(o);
}

static bool parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_range(const char *s, uint64_t *a, uint64_t *b)
{
	const char *dots = s ? strstr(s, "..") : NULL;
	if (!dots)
		return false;
	char left[32];
	size_t n = (size_t)(dots - s);
	if (n == 0 || n >= sizeof(left))
		return false;
	memcpy(left, s, n);
	left[n] = 0;
	return parse_u64(left, a) && parse_u64(dots + 2, b) && *a <= *b;
}

static double wall_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_result(uint64_t seed, const sim_result *r)
{
	if (r->ok)
		printf("seed %" PRIu64 " ok: %" PRIu64 " ticks, view %" PRIu64
		       ", commit %" PRIu64 ", %" PRIu64 " crashes, %" PRIu64
		       " partitions, digest %016" PRIx64 ", trace %016" PRIx64 "\n",
		       seed, r->ticks, r->final_view, r->final_commit,
		       r->stats.crashes, r->stats.partitions, r->final_digest,
		       r->trace_digest);
	else
		printf("seed %" PRIu64 " FAILED at tick %" PRIu64 ": %s "
		       "(trace %016" PRIx64 "; replay: --seed %" PRIu64 " --trace)\n",
		       seed, r->fail_tick, r->reason, r->trace_digest, seed);
}

/* A broken safety invariant, as opposed to a run that did not settle. */
static bool is_safety(const sim_result *r)
{
	return !r->ok && strncmp(r->reason, "liveness", 8) != 0;
}

/* Runs one seed in a child; a signal (a core assertion) becomes a failure
 * that names the seed. */
static void run_isolated(const sim_options *o, sim_result *res, bool fork_it)
{
	if (!fork_it) {
		sim_run(o, res);
		return;
	}
	sim_result *shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("vsrsim: mmap");
		exit(2);
	}
	memset(shared, 0, sizeof(*shared));
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("vsrsim: fork");
		exit(2);
	}
	if (pid == 0) {
		sim_run(o, shared);
		fflush(stdout);
		_exit(0);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			perror("vsrsim: waitpid");
			exit(2);
		}
	}
	*res = *shared;
	munmap(shared, sizeof(*shared));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		memset(res, 0, sizeof(*res));
		res->ok = false;
		if (WIFSIGNALED(status))
			snprintf(res->reason, sizeof(res->reason),
				 "the process died of signal %d (%s): an assertion in the "
				 "core or the simulator",
				 WTERMSIG(status), strsignal(WTERMSIG(status)));
		else
			snprintf(res->reason, sizeof(res->reason),
				 "the process exited with status %d", WEXITSTATUS(status));
	}
}

/* A core assertion in a single run: say which seed and tick before dying,
 * with async-signal-safe calls only. */
static volatile sig_atomic_t abort_seen;
static uint64_t abort_seed;

static void put_u64_fd(int fd, uint64_t v)
{
	char buf[24];
	int i = (int)sizeof(buf);
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	ssize_t w = write(fd, buf + i, sizeof(buf) - (size_t)i);
	(void)w;
}

static void on_abort(int sig)
{
	if (!abort_seen) {
		abort_seen = 1;
		static const char a[] = "\nvsrsim: seed ";
		static const char b[] = " died of a signal at tick ";
		static const char c[] = " (an assertion in the core or the simulator)\n";
		ssize_t w = write(2, a, sizeof(a) - 1);
		put_u64_fd(2, abort_seed);
		w = write(2, b, sizeof(b) - 1);
		put_u64_fd(2, sim_current_tick);
		w = write(2, c, sizeof(c) - 1);
		(void)w;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	sim_options o = {0};
	o.seed = 1;
	o.replicas = 3;
	o.clients = 4;
	o.fault_ticks = 2000;
	o.liveness_ticks = 3000;
	o.faults = true;
	o.drop_ppm = o.dup_ppm = o.crash_ppm = o.partition_ppm = SIM_RATE_SEEDED;
	o.delay_max_ticks = o.persist_max_ticks = SIM_RATE_SEEDED;
	/* Off by default until the core leaves stale recovery answers behind
	 * (F16 in docs/simulator.md); "swarm" draws a rate per seed. */
	o.amnesia_ppm = SIM_RATE_SEEDED; /* swarm: memory mode is what vsrhost ships */
	o.out = stdout;
	o.live_window = 1500;
	set_default_modes(&o);
	uint64_t first = 0, last = 0;
	bool sweep = false, expect = false, fork_it = true, quiet = false;
	bool expect_any = false, count_catches = false, guards = false;
	const char *bug = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x = 0;
#define NEED_NUM()                                                          \
	do {                                                                    \
		if (!parse_u64(v, &x)) {                                            \
			fprintf(stderr, "vsrsim: %s needs a number, got '%s'\n", a,     \
				v ? v : "");                                                \
			return 2;                                                       \
		}                                                                   \
		i++;                                                                \
	} while (0)
		if (!strcmp(a, "--seed")) {
			NEED_NUM();
			o.seed = x;
		} else if (!strcmp(a, "--seeds")) {
			if (!parse_range(v, &first, &last)) {
				fprintf(stderr, "vsrsim: --seeds needs A..B with A <= B, got '%s'\n",
					v ? v : "");
				return 2;
			}
			sweep = true;
			i++;
		} else if (!strcmp(a, "--replicas")) {
			NEED_NUM();
			if (x != 1 && x != 3 && x != 5) {
				fprintf(stderr, "vsrsim: --replicas must be 1, 3 or 5\n");
				return 2;
			}
			o.replicas = (uint8_t)x;
		} else if (!strcmp(a, "--clients")) {
			NEED_NUM();
			if (x < 1 || x > SIM_CLIENTS_MAX) {
				fprintf(stderr, "vsrsim: --clients must be 1..%u\n", SIM_CLIENTS_MAX);
				return 2;
			}
			o.clients = (uint8_t)x;
		} else if (!strcmp(a, "--ticks")) {
			NEED_NUM();
			o.fault_ticks = x;
		} else if (!strcmp(a, "--liveness-ticks")) {
			NEED_NUM();
			o.liveness_ticks = x;
		} else if (!strcmp(a, "--faults")) {
			if (v && !strcmp(v, "on"))
				o.faults = true;
			else if (v && !strcmp(v, "off"))
				o.faults = false;
			else {
				fprintf(stderr, "vsrsim: --faults needs on or off\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--drop-ppm")) {
			NEED_NUM();
			o.drop_ppm = (uint32_t)(x > 1000000 ? 1000000 : x);
		} else if (!strcmp(a, "--dup-ppm")) {
			NEED_NUM();
			o.dup_ppm = (uint32_t)(x > 1000000 ? 1000000 : x);
		} else if (!strcmp(a, "--amnesia-ppm") && v && !strcmp(v, "swarm")) {
			o.amnesia_ppm = SIM_RATE_SEEDED;
			i++;
		} else if (!strcmp(a, "--amnesia-ppm")) {
			NEED_NUM();
			o.amnesia_ppm = (uint32_t)(x > 1000000 ? 1000000 : x);
		} else if ((!strcmp(a, "--sync-fail-ppm") || !strcmp(a, "--fetch-kill-ppm")) &&
			   v && !strcmp(v, "swarm")) {
			*(a[2] == 's' ? &o.sync_fail_ppm : &o.fetch_kill_ppm) = SIM_RATE_SEEDED;
			i++;
		} else if (!strcmp(a, "--sync-fail-ppm") || !strcmp(a, "--fetch-kill-ppm")) {
			NEED_NUM();
			*(a[2] == 's' ? &o.sync_fail_ppm : &o.fetch_kill_ppm) =
				(uint32_t)(x > 1000000 ? 1000000 : x);
		} else if (!strcmp(a, "--crash-ppm")) {
			NEED_NUM();
			o.crash_ppm = (uint32_t)(x > 1000000 ? 1000000 : x);
		} else if (!strcmp(a, "--partition-ppm")) {
			NEED_NUM();
			o.partition_ppm = (uint32_t)(x > 1000000 ? 1000000 : x);
		} else if (!strcmp(a, "--delay-max")) {
			NEED_NUM();
			o.delay_max_ticks = (uint32_t)(x > 10000 ? 10000 : x);
		} else if (!strcmp(a, "--persist-max")) {
			NEED_NUM();
			o.persist_max_ticks = (uint32_t)(x > 10000 ? 10000 : x);
		} else if (!strcmp(a, "--trace")) {
			o.trace = true;
		} else if (!strcmp(a, "--trace-from")) {
			NEED_NUM();
			o.trace = true;
			o.trace_from = x;
		} else if (!strcmp(a, "--amnesia-hidden")) {
			o.amnesia_hidden = true;
		} else if (!strcmp(a, "--plant-divergence")) {
			o.plant_divergence = true;
		} else if (!strcmp(a, "--consequences-only")) {
			o.consequences_only = true;
		} else if (!strcmp(a, "--no-fork")) {
			fork_it = false;
		} else if (!strcmp(a, "--quiet")) {
			quiet = true;
		} else if (!strcmp(a, "--demo")) {
			o.demo = true;
		} else if (!strcmp(a, "--expect-violation")) {
			expect = true;
		} else if (!strcmp(a, "--expect-failure")) {
			expect = expect_any = true;
		} else if (!strcmp(a, "--count-catches")) {
			count_catches = true;
		} else if (!strcmp(a, "--guards")) {
			guards = true;
		} else if (!strcmp(a, "--slow-disks")) {
			o.slow_disks = true;
		} else if (!strcmp(a, "--minority-down")) {
			o.minority_down = true;
		} else if (!strcmp(a, "--one-way-long")) {
			o.long_oneway = true;
		} else if (!strcmp(a, "--long-steps")) {
			o.long_steps = true;
		} else if (!strcmp(a, "--slow-heal")) {
			o.slow_heal = true;
		} else if (!strcmp(a, "--restore-fail-ppm")) {
			NEED_NUM();
			o.restore_fail_ppm = (uint32_t)(x > 1000000 ? 1000000 : x);
		} else if (!strcmp(a, "--reads")) {
			o.reads = true;
		} else if (!strcmp(a, "--async-checkpoints")) {
			o.async_checkpoints = true;
		} else if (!strcmp(a, "--sync-checkpoints")) {
			o.async_checkpoints = false;
		} else if (!strcmp(a, "--big-replies")) {
			o.big_replies = true;
		} else if (!strcmp(a, "--large-state")) {
			o.large_state = true;
		} else if (!strcmp(a, "--ack-crashes")) {
			o.ack_crashes = true;
		} else if (!strcmp(a, "--fresh-restarts")) {
			o.fresh_restarts = true;
		} else if (!strcmp(a, "--single-amnesia")) {
			o.single_amnesia = true;
		} else if (!strcmp(a, "--minority-amnesia")) {
			o.minority_amnesia = true;
		} else if (!strcmp(a, "--live-during-faults")) {
			o.live_during_faults = true;
		} else if (!strcmp(a, "--live-window")) {
			NEED_NUM();
			o.live_window = x;
		} else if (!strcmp(a, "--new-faults")) {
			set_default_modes(&o);
		} else if (!strcmp(a, "--classic-faults")) {
			/* the fault model before issue 7 (old regression seeds) */
			o.slow_disks = o.long_oneway = o.long_steps = o.large_state = false;
			o.ack_crashes = o.big_replies = false;
			o.async_checkpoints = false;
			o.sync_fail_ppm = o.fetch_kill_ppm = 0;
			o.fresh_restarts = o.single_amnesia = false;
			o.minority_down = o.slow_heal = o.live_during_faults = false;
			o.restore_fail_ppm = 0;
		} else if (!strcmp(a, "--all-faults")) {
			set_all_modes(&o);
		} else if (!strcmp(a, "--help-bugs")) {
			for (size_t k = 0; k < sizeof(bug_names) / sizeof(bug_names[0]); k++)
				printf("%s\n", bug_names[k].name);
			return 0;
		} else if (!strcmp(a, "--bug")) {
			if (!v) {
				fprintf(stderr, "vsrsim: --bug needs a name\n");
				return 2;
			}
			bug = v;
			i++;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "vsrsim: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
#undef NEED_NUM
	}

	if (bug) {
#ifndef VSR_SIM_TEETH
		fprintf(stderr, "vsrsim: --bug needs the fault-injection build: use "
			"vsrsim-teeth --bug NAME, NAME one of:");
		for (size_t k = 0; k < sizeof(bug_names) / sizeof(bug_names[0]); k++)
			fprintf(stderr, " %s", bug_names[k].name);
		fprintf(stderr, "\n");
		return 2;
#else
		/* NAME or NAME,NAME,...: a fix may have had several parts */
		for (const char *at = bug; *at;) {
			size_t len = strcspn(at, ",");
			uint32_t bit = 0;
			for (size_t k = 0; k < sizeof(bug_names) / sizeof(bug_names[0]); k++)
				if (strlen(bug_names[k].name) == len &&
				    !strncmp(at, bug_names[k].name, len))
					bit = bug_names[k].bit;
			if (!bit) {
				fprintf(stderr, "vsrsim: unknown bug '%.*s'\n", (int)len, at);
				return 2;
			}
			o.bugs |= bit;
			at += len + (at[len] == ',');
		}
#endif
	}

	if (o.demo) {
		o.replicas = 3;
		o.clients = 2;
		o.faults = false;
		o.liveness_ticks = 2000;
		printf("vsrsim demo: 3 replicas and 2 clients in one process, simulated "
		       "network and disks, seed %" PRIu64 ".\n"
		       "One tick is 10 ms of simulated time; the primary is suspected "
		       "after about 30 ticks of silence.\n\n", o.seed);
		sim_result r;
		sim_run(&o, &r);
		printf("\n");
		if (!r.ok) {
			printf("demo FAILED at tick %" PRIu64 ": %s\n", r.fail_tick, r.reason);
			return 1;
		}
		printf("What happened: the isolated primary could not reach a quorum, so "
		       "the two others\nvoted in a new view, elected a new primary and "
		       "kept committing client requests.\nWhen the network healed, the "
		       "old primary learned of the newer view, took the\nnew primary's "
		       "log and caught up. All replicas now hold the same state "
		       "(digest %016" PRIx64 ").\n", r.final_digest);
		return 0;
	}

	if (!sweep && expect) {
		/* One seed, judged like a sweep of one (regression seeds against
		 * the bug they were added for). */
		sweep = true;
		first = last = o.seed;
	}
	if (!sweep) {
		/* Line-buffer a trace so it survives an abort of the core. */
		if (o.trace)
			setvbuf(stdout, NULL, _IOLBF, 0);
		abort_seed = o.seed;
		signal(SIGABRT, on_abort);
		signal(SIGSEGV, on_abort);
		sim_result r;
		sim_run(&o, &r);
		print_result(o.seed, &r);
		return r.ok ? 0 : 1;
	}

	/* Sweep. */
	double t0 = wall_seconds();
	uint64_t passed = 0, failed = 0, events = 0, messages = 0, steps = 0;
	sim_stats cov = {0};
	uint64_t settle_max = 0, settle_sum = 0, settle_max_seed = 0;
	uint64_t *failing = NULL;
	size_t failing_n = 0;
	uint64_t catches = 0, first_catch = 0;
	for (uint64_t seed = first; seed <= last; seed++) {
		o.seed = seed;
		sim_result r;
		run_isolated(&o, &r, fork_it);
		events += r.stats.events;
		messages += r.stats.messages;
		steps += r.stats.steps;
		cov.crashes += r.stats.crashes;
		cov.window_crashes += r.stats.window_crashes;
		cov.torn_writes += r.stats.torn_writes;
		cov.corrupt_writes += r.stats.corrupt_writes;
		cov.partitions += r.stats.partitions;
		cov.view_changes += r.stats.view_changes;
		cov.state_transfers += r.stats.state_transfers;
		cov.checkpoints += r.stats.checkpoints;
		cov.evictions += r.stats.evictions;
		cov.deduplicated += r.stats.deduplicated;
		cov.commits += r.stats.commits;
		cov.amnesia_restarts += r.stats.amnesia_restarts;
		cov.amnesia_recovered += r.stats.amnesia_recovered;
		cov.amnesia_blocked += r.stats.amnesia_blocked;
		cov.amnesia_beside += r.stats.amnesia_beside;
		cov.oneway_long += r.stats.oneway_long;
		cov.stayed_down += r.stats.stayed_down;
		cov.long_steps += r.stats.long_steps;
		cov.restore_failures += r.stats.restore_failures;
		cov.big_replies += r.stats.big_replies;
		cov.ckpt_async += r.stats.ckpt_async;
		cov.ckpt_waits += r.stats.ckpt_waits;
		cov.ckpt_lost += r.stats.ckpt_lost;
		cov.ckpt_newer += r.stats.ckpt_newer;
		cov.sync_failures += r.stats.sync_failures;
		cov.sync_failures_waited += r.stats.sync_failures_waited;
		cov.fetch_kills += r.stats.fetch_kills;
		cov.install_kills += r.stats.install_kills;
		cov.store_kills_amnesiac += r.stats.store_kills_amnesiac;
		cov.ckpt_other_chain += r.stats.ckpt_other_chain;
		cov.planted += r.stats.planted;
		cov.divergences += r.stats.divergences > 0;
		cov.divergence_repairs += r.stats.divergence_repairs > 0;
		cov.divergent_peers += r.stats.divergent_peers;
		cov.divergence_abdications += r.stats.divergence_abdications > 0;
		for (int m = 0; m < VSR_READ_MODE_COUNT; m++)
			cov.reads[m] += r.stats.reads[m];
		cov.reads_checked += r.stats.reads_checked;
		for (int g = 0; g < VSR_GUARD_COUNT; g++)
			cov.guards[g] += r.stats.guards[g];
		if (r.ok) {
			passed++;
			settle_sum += r.settle_ticks;
			if (r.settle_ticks > settle_max) {
				settle_max = r.settle_ticks;
				settle_max_seed = seed;
			}
			if (!quiet && !expect)
				print_result(seed, &r);
		} else {
			failed++;
			if (!expect || !quiet)
				print_result(seed, &r);
			if (failing_n < 1000) {
				failing = realloc(failing, (failing_n + 1) * sizeof(uint64_t));
				if (!failing) {
					fprintf(stderr, "vsrsim: out of memory\n");
					return 2;
				}
				failing[failing_n++] = seed;
			}
			if (expect && (expect_any || is_safety(&r))) {
				/* Differential: the catch counts only when the same seed
				 * is safe without the planted bug, so a bug of the core
				 * itself is never mistaken for the checker's bite. */
				sim_options clean = o;
				clean.bugs = 0;
				clean.amnesia_hidden = false;
				sim_result rc;
				run_isolated(&clean, &rc, fork_it);
				if (expect_any ? !rc.ok : is_safety(&rc)) {
					printf("seed %" PRIu64 " also fails without the bug, not "
					       "counted: %s\n", seed, rc.reason);
				} else {
					if (!count_catches || !quiet || catches == 0)
						printf("caught %s at seed %" PRIu64 " after %" PRIu64
						       " seeds (%s)\n", bug ? bug : o.amnesia_hidden ?
						       "amnesia-hidden" : "a violation", seed,
						       seed - first + 1, r.reason);
					if (catches++ == 0)
						first_catch = seed;
					if (!count_catches) {
						free(failing);
						return 0;
					}
				}
			}
		}
		if (seed == UINT64_MAX)
			break;
	}
	double dt = wall_seconds() - t0;
	if (dt <= 0)
		dt = 1e-9;
	printf("speed: %" PRIu64 " seeds in %.2f s; %.0f events/s, %.0f messages/s, "
	       "%.0f replica steps/s\n",
	       passed + failed, dt, (double)events / dt, (double)messages / dt,
	       (double)steps / dt);
	printf("coverage: %" PRIu64 " client requests completed, %" PRIu64
	       " view changes seen, %" PRIu64 " crashes (%" PRIu64 " aimed right "
	       "after a vote, %" PRIu64 " torn, %" PRIu64 " corrupt writes), %" PRIu64
	       " partitions, %" PRIu64 " state transfers, %" PRIu64
	       " checkpoints, %" PRIu64 " sessions evicted, %" PRIu64
	       " duplicate requests answered, %" PRIu64 " restarts with a wiped "
	       "disk (%" PRIu64 " recovered, %" PRIu64 " crashes or wipes held "
	       "back by the one-amnesiac rule)\n",
	       cov.commits, cov.view_changes, cov.crashes, cov.window_crashes,
	       cov.torn_writes, cov.corrupt_writes, cov.partitions,
	       cov.state_transfers, cov.checkpoints, cov.evictions,
	       cov.deduplicated, cov.amnesia_restarts, cov.amnesia_recovered,
	       cov.amnesia_blocked);
	if (cov.amnesia_beside)
		printf("minority amnesia: %" PRIu64 " wipes while another replica was "
		       "amnesiac\n", cov.amnesia_beside);
	printf("more faults: %" PRIu64 " long one-way failures, %" PRIu64 " replicas "
	       "left down, %" PRIu64 " long steps, %" PRIu64 " failed restores, %"
	       PRIu64 " oversized replies\n",
	       cov.oneway_long, cov.stayed_down, cov.long_steps, cov.restore_failures,
	       cov.big_replies);
	printf("async checkpoints: %" PRIu64 " taken pending, %" PRIu64 " takes waited "
	       "for the previous sync, %" PRIu64 " lost in a crash, %" PRIu64
	       " restarts from a state machine checkpoint newer than the superblock's\n",
	       cov.ckpt_async, cov.ckpt_waits, cov.ckpt_lost, cov.ckpt_newer);
	printf("store failures: %" PRIu64 " checkpoint syncs failed (the replica exits; %"
	       PRIu64 " while a take waited for it), %" PRIu64 " fetches killed at a chunk, %"
	       PRIu64 " killed in an install once durable (%" PRIu64 " of those at an amnesiac "
	       "replica); %" PRIu64 " restarts with a log that goes on past the newer "
	       "checkpoint on another chain\n",
	       cov.sync_failures, cov.sync_failures_waited, cov.fetch_kills, cov.install_kills,
	       cov.store_kills_amnesiac, cov.ckpt_other_chain);
	if (o.plant_divergence)
		printf("divergence: planted in %" PRIu64 " runs; found in %" PRIu64
		       " runs, repaired by a checkpoint transfer in %" PRIu64
		       "; %" PRIu64 " backups told by their primary; a primary in the"
		       " minority abdicated in %" PRIu64 " runs\n",
		       cov.planted, cov.divergences, cov.divergence_repairs,
		       cov.divergent_peers, cov.divergence_abdications);
	if (o.reads)
		printf("reads: %" PRIu64 " linearizable, %" PRIu64 " lease, %" PRIu64
		       " stale answered; %" PRIu64 " checked at their clients\n",
		       cov.reads[VSR_READ_LINEARIZABLE], cov.reads[VSR_READ_LEASE],
		       cov.reads[VSR_READ_STALE], cov.reads_checked);
	if (passed)
		printf("liveness: after the faults stopped, passing runs settled in "
		       "%.0f ticks on average, at most %" PRIu64 " (seed %" PRIu64 ")\n",
		       (double)settle_sum / (double)passed, settle_max, settle_max_seed);
	if (guards || !quiet) {
		printf("guards:");
		for (int g = 0; g < VSR_GUARD_COUNT; g++)
			printf(" %s=%" PRIu64, vsr_guard_name((enum vsr_guard)g), cov.guards[g]);
		printf("\n");
	}
	if (expect && count_catches && catches) {
		printf("caught %s in %" PRIu64 " of %" PRIu64 " seeds, first at seed %"
		       PRIu64 "\n", bug ? bug : "a violation", catches, last - first + 1,
		       first_catch);
		free(failing);
		return 0;
	}
	if (expect) {
		printf("NOT caught: %s survived seeds %" PRIu64 "..%" PRIu64 "\n",
		       bug ? bug : "no bug planted", first, last);
		free(failing);
		return 1;
	}
	if (failing_n) {
		printf("failing seeds:");
		for (size_t k = 0; k < failing_n; k++)
			printf(" %" PRIu64, failing[k]);
		printf("\n");
	}
	printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
	free(failing);
	return failed ? 1 : 0;
}
