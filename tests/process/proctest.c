/* proctest.c - process tests: real vsrhost replicas on loopback, killed, restarted and fed garbage.
 *
 * One scenario per run (ctest registers each as its own test):
 *   replicate       writes replicate to all replicas (equal digests)
 *   failover        kill -9 of the primary: a new primary, no acknowledged write lost
 *   restart         ... and the killed replica restarts and catches up
 *   quick-restart   the primary is killed and restarted at once: a new view, no loss
 *   dedup           a client retrying across a failover applies a write once (counter.lua)
 *   garbage         garbage on every port closes those connections; service goes on
 *   sandbox         the issue #9 attacks (spec/fixtures/evil.lua) each get a script
 *                   error; the replicas keep serving with equal digests, also
 *                   after a restart and a failover
 *   watchdog        a step running past the watchdog's limit (lowered to 1 s) stops
 *                   its replica with exit 70 and a log line naming the operation
 *   divergence      one replica with a smaller instruction budget computes another
 *                   state: at the next checkpoint it logs and counts it and repairs
 *                   from the quorum's checkpoint; the cluster keeps answering
 *   divergence-primary  the same with the primary misconfigured (durable storage): it
 *                   abdicates, repairs as a backup, and agrees after a restart
 *   supervisor      `vsrhost CONFIG` runs every replica; vsrctl put/get/status
 *                   work against it; SIGINT stops them all (needs --vsrctl)
 *   make-run        config/kv.lua as `make run` starts it (on free ports): writes
 *                   kept across Ctrl-C (SIGINT to the process group), SIGTERM,
 *                   kill -9 of every process and SIGINT; clean stops exit 0
 *   metrics         every replica serves /metrics (valid for promtool) and
 *                   /health; a scrape after kill -9 of the primary shows the
 *                   view change
 *   auth            keys made with `vsrhost keygen`; a connection without the key,
 *                   with a wrong key, or with one forged frame gets nothing
 *                   and is closed; a forged replica cannot move the view;
 *                   vsrctl with the key works (needs --vsrctl)
 *   attacks         no auth: slowloris on the client port, idle connections
 *                   filling every replica port while a backup restarts, a
 *                   START_VIEW_CHANGE storm and a view-inflation forgery from
 *                   an impostor replica; the cluster keeps serving, the view
 *                   is not inflated, a failover afterwards still works
 *   failover-bench  --trials N: time from kill -9 of the primary to the first
 *                   acknowledged write through the new one (median, max)
 *   crash           durable storage: writers put keys while the whole cluster,
 *                   or each replica in turn, is killed with kill -9 and
 *                   restarted, --trials N rounds; after every round every
 *                   acknowledged write is read back and the digests agree;
 *                   --writer-quota N: N puts per writer and round (the
 *                   writers done before the driver's waits are)
 *   corrupt         durable storage: a byte flipped in one replica's log and
 *                   superblock, in another's superblock copy, in a value
 *                   of vsr.store, its pages overwritten with noise, a live
 *                   kvc leaf in its free list (vsrhost --check-store run
 *                   by hand on the last two: exit 2 running, 0, 1), a data
 *                   directory deleted: each comes back, nothing lost; the
 *                   wiped replica, with a second one down, stays unjoined
 *                   (no vote, no acknowledgement, no write acknowledged)
 *                   until the quorum is back and it has caught up
 *   lost-dir-teeth  that last round with the wiped replica on vsrhost-teeth
 *                   taking its empty disk for an intact one
 *                   (VSRH_TEETH_HIDDEN_HISTORY): passes only when caught
 *   disk-full       durable storage: one replica's directory on a tiny tmpfs
 *                   fills up: it exits 74 saying so; the others go on
 *   disk-fault      durable storage: one replica's log write or fdatasync
 *                   fails (ENOSPC, EIO; the fail_io.c shim, --fail-io PATH):
 *                   it exits 74 saying so and writes nothing more; the others
 *                   go on; restarted, it agrees with them
 *   store-fault     durable storage: one replica's vsr.store checkpoint sync
 *                   fails (msync, sync_file_range, fdatasync of data.mdb; the
 *                   write or fdatasync of store/synced; the shim again): it
 *                   exits 74 saying so, syncs nothing more, its superblock
 *                   never names the failed checkpoint; the others go on;
 *                   restarted, it recovers from the checkpoint before
 *   store-open-fault  durable storage: the open of vsr.store's synced or data.mdb
 *                   fails with EIO (the shim) as a replica starts: exit 74
 *                   (disabled in ctest until vsr.store tells disk errors at
 *                   open from configuration errors)
 *   tick-commit     durable storage: replica 3's LMDB commits stalled (the
 *                   shim); its checkpoint's commit at the tick (its turn, idle)
 *                   logs a slow step at 150 ms, and at 3000 ms the watchdog
 *                   (1000 ms) stops it (exit 70) naming the commit
 *   review-transfer durable storage: a wiped backup rejoins by a state
 *                   transfer; every write read at every replica, then again
 *                   after its restart (whose store check must pass)
 *   turns           durable storage: the view's primary commits each checkpoint
 *                   at the take and the backups in their turns, also after a
 *                   failover makes replica 2 or 3 the primary
 *   powercut        durable storage, as root: every replica's data directory on
 *                   its own ext4 filesystem (loop device), all cut at once
 *                   under write load (the shutdown ioctl: what was not synced
 *                   is lost), remounted, restarted as after a reboot;
 *                   --trials N cuts; every acknowledged write present, digests
 *                   equal. Skips (77) without root, loop devices or the ioctl
 *   powercut-minority  the same disks, as root: ONE replica's disk cut at a time
 *                   (the primary or a backup) while the other two keep
 *                   acknowledging writes; it restarts as after its own
 *                   reboot and must rejoin and catch up (some rounds: a
 *                   checkpoint fetch, cut again while catching up, a
 *                   second replica cut right after it rejoined); --trials
 *                   N rounds; every acknowledged write at every replica,
 *                   digests equal
 *   powercut-minority-teeth  the same on vsrhost-teeth with VSR_BUGS set to a
 *                   planted bug that names a checkpoint before it is
 *                   durable: passes only when a cut replica is caught
 *                   with its durable state damaged
 * Availability (issue 7), each reporting its figures:
 *   pause-backup    SIGSTOP of a backup for 2, 4 and 6 s under writes, then
 *                   SIGCONT: the primary keeps its view (nobody is deposed)
 *   one-way-cut     iptables on lo: every link into the primary cut, its links
 *                   out up: it abdicates and writes go on through a new primary;
 *                   then every link into a backup cut for 3 s: no view change
 *   client-cut      iptables on lo: the C client library cut from the primary
 *                   for 2, 4 and 8 s with a call in flight; time from the heal
 *                   to the call's completion
 *   read-partition  iptables on lo: every link into the primary cut; a
 *                   linearizable read there is never answered while the
 *                   majority elects a primary and commits a new write; a
 *                   stale read there is, labelled stale, at an older op
 *   config-mismatch replica 3 runs another state machine script: on its old
 *                   data directory it refuses to start (exit 78) until
 *                   --accept-config names the new fingerprint; replicas 1
 *                   and 2 refuse it (and it them), naming the script in their
 *                   logs and counting it, and serve writes without it; it
 *                   never joins; vsrctl status exits 76. A fourth replica in
 *                   its file is refused, with the flag too. Restarted with the
 *                   right script (and --accept-config: its disk recorded the
 *                   other) it joins and agrees (digests)
 *   config-change   the whole cluster stopped and its script edited: every
 *                   replica exits 78 on its directory until started once with
 *                   --accept-config; then every write reads back, and a plain
 *                   restart needs no flag; a replica count of 2 or 5 is
 *                   refused, flag or not; a moved address is accepted (on
 *                   an older build's record, once the count is recorded)
 *   The iptables scenarios skip (exit 0, with a note) without iptables; every
 *   rule they add is removed on every exit path.
 *
 * Replicas are numbered from 1 in every message, as in vsrhost's --replica
 * and logs. Every replica is a child process started with PR_SET_PDEATHSIG(SIGKILL),
 * so none survives this driver, whatever kills it; the driver also kills
 * them on every exit path. Waiting is always for an event (a port accepts,
 * the status shows a primary, a reply arrives) polled against a deadline,
 * never a fixed sleep. On failure the replicas' logs are printed.
 *
 * The client here is deliberately minimal and blocking, written against the
 * wire layer only, so that a test can resend a request with the exact same
 * (session, request) numbers, which is what a retry across a failover is.
 *
 * Layout: harness.h/harness.c hold the shared harness (children, config,
 * the blocking client, status, metrics scraping, vsrctl); each sc_*.c holds
 * the scenarios of one area; this file, the list of scenarios and main(). */
#include "harness.h"

/* The scenarios, by the name --scenario takes. A new scenario goes in the
 * sc_*.c file of its area (or a new one, listed in CMakeLists.txt), its
 * entry point in harness.h, and a line here. `trials` is --trials. */
static int run_restart(int trials) { (void)trials; return failover_common(true); }
static int run_failover(int trials) { (void)trials; return failover_common(false); }
static int run_divergence(int trials) { (void)trials; return scenario_divergence(false); }
static int run_divergence_primary(int trials) { (void)trials; return scenario_divergence(true); }
#define PLAIN(fn) static int run_##fn(int trials) { (void)trials; return scenario_##fn(); }
PLAIN(replicate) PLAIN(dedup) PLAIN(history) PLAIN(garbage) PLAIN(sandbox) PLAIN(watchdog)
PLAIN(quick_restart) PLAIN(supervisor) PLAIN(make_run) PLAIN(metrics) PLAIN(pause_backup) PLAIN(one_way_cut)
PLAIN(client_cut) PLAIN(read_partition) PLAIN(auth) PLAIN(attacks) PLAIN(corrupt) PLAIN(disk_full) PLAIN(disk_fault)
PLAIN(store_fault) PLAIN(store_open_fault) PLAIN(tick_commit) PLAIN(config_mismatch) PLAIN(config_change)
PLAIN(lost_dir_teeth) PLAIN(turns) PLAIN(review_transfer)
static int run_open_reclaim(int trials) { (void)trials; return scenario_open_reclaim(false); }
static int run_open_reclaim_teeth(int trials) { (void)trials; return scenario_open_reclaim(true); }
#undef PLAIN

static const struct {
	const char *name;
	int (*run)(int trials);
} scenarios[] = {
	{"replicate", run_replicate}, {"failover", run_failover}, {"restart", run_restart},
	{"quick-restart", run_quick_restart}, {"dedup", run_dedup}, {"history", run_history},
	{"garbage", run_garbage}, {"supervisor", run_supervisor}, {"make-run", run_make_run}, {"metrics", run_metrics},
	{"auth", run_auth}, {"attacks", run_attacks}, {"sandbox", run_sandbox},
	{"watchdog", run_watchdog}, {"divergence", run_divergence},
	{"divergence-primary", run_divergence_primary}, {"pause-backup", run_pause_backup},
	{"one-way-cut", run_one_way_cut}, {"client-cut", run_client_cut},
	{"read-partition", run_read_partition},
	{"failover-bench", scenario_failover_bench}, {"crash", scenario_crash},
	{"corrupt", run_corrupt}, {"disk-full", run_disk_full}, {"disk-fault", run_disk_fault},
	{"store-fault", run_store_fault}, {"store-open-fault", run_store_open_fault},
	{"tick-commit", run_tick_commit}, {"turns", run_turns},
	{"review-transfer", run_review_transfer},
	{"powercut", scenario_powercut},
	{"powercut-minority", scenario_powercut_minority},
	{"powercut-minority-teeth", scenario_powercut_minority_teeth},
	{"lost-dir-teeth", run_lost_dir_teeth},
	{"open-reclaim", run_open_reclaim},
	{"open-reclaim-teeth", run_open_reclaim_teeth},
	{"config-mismatch", run_config_mismatch},
	{"config-change", run_config_change},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: proctest --vsrhost PATH --root SOURCE_DIR --scenario NAME\n"
		     "                [--vsrctl PATH] [--vsrhost-teeth PATH] [--fail-io PATH]\n"
		     "                [--trials N] [--seed S] [--keep] [--checkpoint-interval N]\n"
		     "                [--writer-quota N]\n"
		     "scenarios:");
	for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
		fprintf(out, "%s%s", i % 10 == 9 ? "\n          " : " ", scenarios[i].name);
	fprintf(out, "\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"vsrhost", required_argument, NULL, 'x'}, {"root", required_argument, NULL, 'r'},
		{"vsrctl", required_argument, NULL, 'c'}, {"fail-io", required_argument, NULL, 'F'},
		{"scenario", required_argument, NULL, 's'}, {"trials", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'S'}, {"keep", no_argument, NULL, 'k'},
		{"vsrhost-teeth", required_argument, NULL, 'T'},
		{"checkpoint-interval", required_argument, NULL, 'I'},
		{"writer-quota", required_argument, NULL, 'Q'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
	};
	const char *scenario = NULL;
	int trials = 10;
	bool seeded = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "x:r:c:F:s:t:S:T:I:Q:kh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'T': g_vsrhost_teeth = optarg; break;
		case 'x': g_vsrhost = optarg; break;
		case 'c': g_vsrctl = optarg; break;
		case 'F': g_fail_io = optarg; break;
		case 'r': g_root = optarg; break;
		case 's': scenario = optarg; break;
		case 't': trials = atoi(optarg); break;
		case 'S': g_seed = strtoull(optarg, NULL, 0); seeded = true; break;
		case 'k': g_keep = true; break;
		case 'I': g_pc_checkpoint_interval = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'Q': g_writer_quota = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (g_vsrhost == NULL || g_root == NULL || scenario == NULL || trials < 1) {
		usage(stderr);
		return 64;
	}
	if (!seeded)
		g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	g_cluster = 1000 + g_seed % 100000;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	snprintf(g_dir, sizeof g_dir, "/tmp/vsr-proctest-XXXXXX");
	if (mkdtemp(g_dir) == NULL) {
		fprintf(stderr, "proctest: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	note("scenario %s, seed %" PRIu64 ", cluster %" PRIu64 ", dir %s", scenario, g_seed,
	     g_cluster, g_dir);
	int rc = 64;
	size_t k = 0, count = sizeof scenarios / sizeof scenarios[0];
	while (k < count && strcmp(scenario, scenarios[k].name) != 0)
		k++;
	if (k < count)
		rc = scenarios[k].run(trials);
	else
		usage(stderr);
	kill_all();
	remove_dir();
	if (rc == 0)
		note("PASS");
	return rc;
}

