/* sc_powercut_minority.c - process-test scenario: power cuts of ONE replica
 * at a time while the other two keep serving.
 *
 * The disks are sc_powercut.c's (powercut.h): each replica's data directory
 * is an ext4 filesystem of its own on a loop device, and a cut is the
 * filesystem's shutdown ioctl, so what the replica wrote and never synced is
 * lost, as on a machine whose power goes.
 *
 * Happy path, every round (--trials rounds): writers put keys; one replica's
 * disk is cut and the replica killed (its machine is off): the primary or a
 * backup, alternating, with which backup from the seed; the writers must
 * keep getting acknowledgements from the other two (a cut primary means a
 * view change, which must settle on a new primary in a higher view); the
 * filesystem is mounted again (journal replay) and the replica started as
 * after its own reboot (a VSRH_BOOT_ID of its own); it must rejoin (status
 * normal in the view every live replica is in) and catch up past what was
 * committed while it was away. Then the writers pause and every acknowledged
 * write is read at each replica on its own, whose digests must agree.
 *
 * Variations, by round (and the seed): in some rounds the cluster runs past
 * the victim by more than a primary keeps of its log after a checkpoint
 * (LAG_OPS ops), so that it must fetch a checkpoint (a state transfer in
 * chunks; its GET_CHECKPOINT messages are counted from its metrics); in some
 * its disk is cut again while it catches up (as soon as its status shows it
 * recovering, in a state transfer or behind; in a fetch round, once it
 * entered the transfer, once it asked for a chunk, or right after the
 * transfer ended, when the fetched checkpoint is installed and its next
 * checkpoint's sync has not yet run); in some a second replica is cut right
 * after the first rejoins, so that the writes depend on the replica that
 * just caught up.
 *
 * Failure modes: an acknowledged write missing at any replica, digests that
 * differ, writers that stop getting acknowledgements while two replicas
 * serve, a cut replica that never rejoins, a replica that finds its durable
 * state damaged ("cannot be trusted"), a surviving replica that exits, or a
 * cut replica that stopped with anything but SIGKILL or exit 74. No root,
 * loop device or shutdown ioctl: skip (77).
 *
 * Cleanup: as sc_powercut.c (a mount namespace of the driver's own,
 * autoclearing loop devices, every exit unmounts). */
#include "harness.h"
#include "powercut.h"
#include "writers.h"

/* Ops the cluster commits past a fetch round's victim while it is down:
 * above what a primary keeps below its checkpoint (message_entries_max,
 * 256) plus a checkpoint interval, so that it cannot catch up from the log. */
#define LAG_OPS 300
#define BALLAST_KEYS 64
#define BALLAST_BYTES (48 * 1024)

typedef struct mn_tally {
	unsigned cuts, primary_cuts, backup_cuts, exited, fetch_rounds, fetches, recuts,
		recut_transfer, recut_fetch, recut_normal, recut_late, seconds, rolled, view_changes;
	unsigned recut_status[VSR_STATUS_COUNT];
	uint32_t acks_down;     /* acknowledgements while a replica was cut */
	uint64_t rejoin_ms_max; /* from a start to status normal in the view */
	uint64_t cleanings;     /* the victims' store cleanings before their cuts */
} mn_tally;

/* The writers of one round and the acknowledgements they can give. */
typedef struct mn_round {
	writers *ws;
	uint32_t cap; /* WRITERS * quota */
	const char *what;
} mn_round;

/* Waits for `more` acknowledgements past the present ones: the writers
 * must still be writing (their quota is sized so that they are). */
static void mn_more_acks(const mn_round *r, uint32_t more)
{
	if (r->ws->acks + more > r->cap)
		fail("%s: the writers' quota (%u puts) is spent: no evidence that writes go on "
		     "(the test's budget is too small)", r->what, r->cap);
	writers_wait_acks(r->ws, r->ws->acks + more, r->what);
}

/* Every live replica normal in one view with a live primary: that primary
 * (and every status in v); the writers' reports read while waiting. */
static int wait_settled(const mn_round *r, cluster_view *v)
{
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (;;) {
		check_alive();
		writers_check(r->ws, r->what);
		status_all(v);
		int p = settled_primary(v);
		if (p >= 0)
			return p;
		if (now_ms() > deadline)
			fail("%s: no settled primary within %d ms", r->what, STARTUP_MS);
		writers_drain(r->ws, 10); /* the next status round */
	}
}

/* Replica i's GET_CHECKPOINT messages sent in this incarnation (0 when
 * its metrics cannot be read): it fetched a checkpoint. */
static uint64_t fetch_requests(int i)
{
	static char buf[1 << 16];
	if (http_get(i, "/metrics", buf, sizeof buf) != 200)
		return 0;
	const char *key = ",type=\"get_checkpoint\",direction=\"out\"} ";
	const char *p = strstr(buf, key); /* vsr_messages_total{replica="N",type=... */
	return p != NULL ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* Replica i's power goes: its disk cut, the process killed (its machine is
 * off) and reaped; then the filesystem mounted again (journal replay).
 * Stopping on its own first is allowed only as for a disk error: exit 74. */
static void cut_one(int i, const mn_round *r, mn_tally *t)
{
	static char buf[1 << 16];
	uint64_t cleanings = 0;
	if (http_get(i, "/metrics", buf, sizeof buf) == 200 &&
	    metric_value(buf, "vsr_store_cleanings_total", &cleanings))
		t->cleanings += cleanings;
	int fd = disk_cut_fd(i);
	if (disk_cut(fd) != 0)
		fail("%s: the shutdown of replica %d's filesystem failed: %s", r->what, i + 1,
		     strerror(errno));
	kill(g_pid[i], SIGKILL);
	int status;
	waitpid(g_pid[i], &status, 0);
	g_pid[i] = 0;
	close(fd);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
			fail("%s: replica %d, its disk gone, stopped with status 0x%x, not exit 74 "
			     "(see its log)", r->what, i + 1, status);
		t->exited++;
	}
	t->cuts++;
	if (!disk_unmount(i) || !disk_mount(i))
		fail("%s: cannot mount replica %d's filesystem again", r->what, i + 1);
}

/* Replica i started as after its own machine's reboot: a boot id of its
 * own (its page cache is gone; the others' is not). Returns where its log
 * of this start begins. */
static long boot_one(int i, int *boots)
{
	char id[80];
	snprintf(id, sizeof id, "powercut-minority-%" PRIu64 "-%d", g_seed, ++*boots);
	setenv("VSRH_BOOT_ID", id, 1);
	long from = replica_log_size(i);
	start_replica(i);
	return from;
}

/* True when replica i's log, from byte `from` on, has a line containing
 * `first` and no line containing `then` after it. */
static bool logged_and_not_after(int i, long from, const char *first, const char *then)
{
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	bool seen = false, after = false;
	if (f != NULL && fseek(f, from, SEEK_SET) == 0)
		while (fgets(line, sizeof line, f) != NULL) {
			if (strstr(line, first) != NULL)
				seen = true, after = false;
			else if (seen && strstr(line, then) != NULL)
				after = true;
		}
	if (f != NULL)
		fclose(f);
	return seen && !after;
}

/* When a replica is cut again after its restart. */
enum recut_when {
	RECUT_AT_STATUS,    /* its status answers, not caught up (recovering, mostly) */
	RECUT_IN_TRANSFER,  /* it logged "status state_transfer" */
	RECUT_IN_FETCH,     /* ... and asked for checkpoint chunks */
	RECUT_AT_NORMAL,    /* it logged "status normal" after the transfer: the fetched
			     * checkpoint installed, before its next checkpoint's sync */
};

/* Cuts replica i again while it catches up after the start whose log
 * begins at `from` (`op`: what it must reach), at the moment `when` names.
 * A cut meant for the transfer counts as landed in it when no "status
 * normal" followed in its log; one meant for its status when that showed
 * it behind. Otherwise it is counted late. */
static void recut_catching_up(int i, long from, uint64_t op, enum recut_when when,
			      const mn_round *r, mn_tally *t)
{
	uint64_t deadline = now_ms() + CATCHUP_MS;
	for (;;) {
		check_alive();
		writers_check(r->ws, r->what);
		writers_drain(r->ws, 0);
		if (when == RECUT_AT_STATUS) {
			vsr_wire_status s;
			if (status_of(i, &s)) {
				bool behind = s.status != VSR_STATUS_NORMAL || s.executed < op;
				if (behind)
					t->recut_status[s.status]++;
				else
					t->recut_late++;
				break;
			}
		} else if (when == RECUT_AT_NORMAL) {
			if (log_count_since(i, from, "status state_transfer") > 0 &&
			    !logged_and_not_after(i, from, "status state_transfer", "status normal")) {
				t->recut_normal++;
				break;
			}
		} else if (log_count_since(i, from, "status state_transfer") > 0 &&
			   (when == RECUT_IN_TRANSFER || fetch_requests(i) > 0)) {
			break;
		}
		if (now_ms() > deadline)
			fail("%s: replica %d did not %s within %d ms", r->what, i + 1,
			     when == RECUT_AT_STATUS ? "answer its status" : "enter a state transfer",
			     CATCHUP_MS);
		poll(NULL, 0, 1); /* the next poll of its log or status */
	}
	cut_one(i, r, t);
	t->recuts++;
	if (when == RECUT_IN_TRANSFER || when == RECUT_IN_FETCH) {
		if (!logged_and_not_after(i, from, "status state_transfer", "status normal"))
			t->recut_late++;
		else if (when == RECUT_IN_FETCH)
			t->recut_fetch++;
		else
			t->recut_transfer++;
	}
}

/* Waits until replica i is back: every live replica (all three) normal in
 * one view, i executed at least `op`. Returns the primary. */
static int wait_rejoined(int i, uint64_t op, uint64_t started_ms, const mn_round *r,
			 mn_tally *t)
{
	uint64_t deadline = now_ms() + CATCHUP_MS;
	cluster_view v;
	for (;;) {
		check_alive();
		writers_check(r->ws, r->what);
		status_all(&v);
		int p = settled_primary(&v);
		if (p >= 0 && v.up[i] && v.s[i].executed >= op) {
			uint64_t took = now_ms() - started_ms;
			if (took > t->rejoin_ms_max)
				t->rejoin_ms_max = took;
			if (took > 3000) /* for a look at its log: the others take < 1 s */
				note("%s: replica %d rejoined %" PRIu64 " ms after its start", r->what,
				     i + 1, took);
			return p;
		}
		if (now_ms() > deadline) {
			for (int k = 0; k < N; k++)
				if (v.up[k])
					fprintf(stderr, "  replica %d: %s view %" PRIu64 " op %" PRIu64
						" commit %" PRIu64 " executed %" PRIu64 "\n", k + 1,
						vsr_status_name((enum vsr_status)v.s[k].status), v.s[k].view,
						v.s[k].op, v.s[k].commit, v.s[k].executed);
			fail("%s: replica %d did not rejoin (normal in the others' view, executed >= "
			     "%" PRIu64 ") within %d ms", r->what, i + 1, op, CATCHUP_MS);
		}
		writers_drain(r->ws, 10); /* the next status round */
	}
}

/* Cuts replica `victim` under load (the writers must go on), brings it
 * back after its reboot, optionally cuts it again while it catches up, and
 * waits until it rejoined. lag: the cluster commits LAG_OPS past it first.
 * Returns where its log of the first start after the cut begins. */
static long minority_cycle(int victim, bool lag, bool recut, enum recut_when when,
			   const mn_round *r, mn_tally *t, int *boots)
{
	cluster_view v;
	int p = wait_settled(r, &v);
	uint64_t view = v.s[p].view, op_at_cut = v.s[p].op;
	bool was_primary = victim == p;
	t->primary_cuts += was_primary;
	t->backup_cuts += !was_primary;
	cut_one(victim, r, t);
	/* The other two serve: acknowledgements go on (after a view change
	 * when the primary went). */
	uint32_t before = r->ws->acks;
	mn_more_acks(r, 10);
	int q = wait_settled(r, &v);
	if (was_primary && (q == victim || v.s[q].view <= view))
		fail("%s: after the primary's cut, replica %d leads view %" PRIu64 " (was %" PRIu64 ")",
		     r->what, q + 1, v.s[q].view, view);
	t->view_changes += v.s[q].view > view;
	if (lag) {
		uint64_t deadline = now_ms() + 3 * CALL_MS;
		while (v.s[q].commit < op_at_cut + LAG_OPS) {
			if (r->ws->acks == r->cap || now_ms() > deadline)
				fail("%s: the cluster committed only up to op %" PRIu64 " of %" PRIu64
				     " without replica %d", r->what, v.s[q].commit, op_at_cut + LAG_OPS,
				     victim + 1);
			writers_drain(r->ws, 20);
			q = wait_settled(r, &v);
		}
		t->fetch_rounds++;
	}
	t->acks_down += r->ws->acks - before;
	uint64_t commit = v.s[q].commit;
	long from = boot_one(victim, boots);
	uint64_t started = now_ms();
	if (recut) {
		recut_catching_up(victim, from, commit, when, r, t);
		boot_one(victim, boots);
		started = now_ms();
	}
	wait_rejoined(victim, commit, started, r, t);
	t->fetches += fetch_requests(victim) > 0;
	return from;
}

/* Replica i's log since `from` must not say that its durable state was
 * found damaged; counts its store's rollbacks to the durable checkpoint. */
/* powercut-minority-teeth: the replicas run a planted bug (vsrhost-teeth,
 * VSR_BUGS) that damages durable state, and the test must catch it. */
static bool g_expect_damage;

static bool check_log(int i, long from, const char *what, mn_tally *t)
{
	t->rolled += log_count_since(i, from, "vsr.store: rolled ");
	if (log_count_since(i, from, "cannot be trusted") == 0)
		return false;
	if (!g_expect_damage)
		fail("%s: replica %d found its durable state damaged (see its log): a cut must lose "
		     "only what was never synced", what, i + 1);
	note("%s: replica %d found its durable state damaged: the planted bug (VSR_BUGS=%s) is "
	     "caught", what, i + 1, getenv("VSR_BUGS"));
	return true;
}

int scenario_powercut_minority_teeth(int rounds)
{
	if (getenv("VSR_BUGS") == NULL)
		fail("powercut-minority-teeth runs vsrhost-teeth with a planted bug: set VSR_BUGS");
	g_expect_damage = true;
	return scenario_powercut_minority(rounds);
}

int scenario_powercut_minority(int rounds)
{
	mclient m;
	msgpack_sbuffer sb;
	/* A victim LAG_OPS behind must not catch up from the log: the
	 * primary keeps 256 entries below its checkpoint, up to an interval. */
	if (g_pc_checkpoint_interval > LAG_OPS - 256)
		fail("--checkpoint-interval %u: powercut-minority needs %u at most (a lagging victim "
		     "must fetch a checkpoint)", g_pc_checkpoint_interval, LAG_OPS - 256);
	int rc = pc_cluster_open(&m, &sb);
	if (rc != 0)
		return rc;
	/* Ballast: a checkpoint of a few MiB, so that fetching one (chunks of
	 * 1 MiB, each written and the whole synced at install) takes long
	 * enough for a cut to land in it. The digests cover it. */
	static char big[BALLAST_BYTES + 1];
	for (int k = 0; k < BALLAST_KEYS; k++) {
		char key[32];
		snprintf(key, sizeof key, "ballast-%d", k);
		memset(big, 'a' + k % 26, BALLAST_BYTES);
		snprintf(big, 32, "%" PRIu64 "-%d-", g_seed, k);
		big[strlen(big)] = 'b';
		op_kv(&sb, "put", key, big);
		mresult res;
		mc_op(&m, &sb, &res, "ballast");
	}
	writers ws = {0};
	mn_tally t = {0};
	uint64_t x = g_seed | 1;
	int boots = 0;
	for (int round = 1; round <= rounds; round++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		/* Every four rounds: one cut again as soon as its status
		 * answers (recovering, mostly), one with a second replica cut
		 * right after it rejoins, one that must fetch a checkpoint,
		 * one that must fetch and is cut again in that state
		 * transfer; some more of each from the seed. The primary and
		 * a backup alternate (which first: the seed). */
		int kind = round % 4;
		bool lag = kind == 3 || kind == 0 || (x >> 12) % 8 == 0;
		bool recut = kind == 1 || kind == 0 || (x >> 16) % 8 == 0;
		bool second = kind == 2 || (x >> 20) % 8 == 0;
		bool cut_primary = ((unsigned)round + (unsigned)(g_seed >> 3)) % 2 == 0;
		/* A cut again in a fetch round lands in the transfer, once
		 * chunks were asked for, or right after the install. */
		enum recut_when when = !lag ? RECUT_AT_STATUS : (enum recut_when)(1 + (x >> 28) % 3);
		/* The writers put as fast as the cluster lets them, for as
		 * long as the round lasts: a quota they never reach. */
		uint32_t quota = 20000;
		uint32_t round_from[WRITERS];
		memcpy(round_from, ws.next, sizeof round_from);
		char what[160];
		snprintf(what, sizeof what, "round %d", round);
		mn_round r = {.ws = &ws, .cap = WRITERS * quota, .what = what};
		writers_start_quota(&ws, quota);
		writers_wait_acks(&ws, 1 + (uint32_t)(x % 40), what);
		cluster_view v;
		int p = wait_settled(&r, &v);
		int victim = cut_primary ? p : (p + 1 + (int)((x >> 8) & 1)) % N;
		unsigned ranges = (x >> 32) % 2 == 0 ? writeback_some(victim, &x) : 0;
		snprintf(what, sizeof what, "round %d: power cut of replica %d (%s)%s%s", round,
			 victim + 1, cut_primary ? "the primary" : "a backup",
			 lag ? ", the cluster far ahead" : "", recut ? ", again while catching up" : "");
		long from = minority_cycle(victim, lag, recut, when, &r, &t, &boots);
		bool caught = check_log(victim, from, what, &t);
		int other = -1;
		if (second && !caught) {
			/* Right after it rejoined: the writes now need it. */
			p = wait_settled(&r, &v);
			other = (victim + 1 + (int)((x >> 24) & 1)) % N;
			char what2[400];
			snprintf(what2, sizeof what2, "%s, then of replica %d (%s) right after it rejoined",
				 what, other + 1, other == p ? "the primary" : "a backup");
			mn_round r2 = {.ws = &ws, .cap = r.cap, .what = what2};
			long from2 = minority_cycle(other, false, false, RECUT_AT_STATUS, &r2, &t, &boots);
			caught = check_log(other, from2, what2, &t);
			t.seconds++;
		}
		if (caught) {
			for (int w = 0; w < WRITERS; w++)
				kill(ws.pid[w], SIGKILL), waitpid(ws.pid[w], NULL, 0);
			kill_all();
			for (int i = 0; i < N; i++)
				if (!disk_unmount(i))
					fail("cannot unmount %s/data/replica-%d: %s", g_dir, i + 1,
					     strerror(errno));
			return 0;
		}
		mn_more_acks(&r, 5);
		writers_pause(&ws, true);
		/* This round's writes at every replica after every round; all
		 * of them every 8 rounds and after the last (the digests,
		 * equal at every replica, cover the rest meanwhile). */
		bool all = round % 8 == 0 || round == rounds;
		uint32_t n = verify_writes_each_from(&sb, &ws, all ? NULL : round_from, what);
		writers_pause(&ws, false);
		writers_stop(&ws);
		note("round %d: replica %d cut (%s%s%s%s), %u dirty ranges written back first; all %u "
		     "acknowledged writes %spresent at every replica, digests equal at op %" PRIu64,
		     round, victim + 1, cut_primary ? "the primary" : "a backup",
		     lag ? ", fetch" : "", recut ? ", cut again catching up" : "",
		     other >= 0 ? ", then a second replica" : "", ranges, n,
		     all ? "(of every round) " : "of the round ", ws.max_op);
	}
	if (g_expect_damage)
		fail("the planted bug (VSR_BUGS=%s) was never caught in %d rounds", getenv("VSR_BUGS"),
		     rounds);
	unsetenv("VSRH_BOOT_ID");
	unsetenv("VSRH_SEGMENT_BYTES");
	scenario_close(&m, &sb);
	note("%u power cuts of one replica in %d rounds: %u first cuts (%u of the primary, %u of a "
	     "backup), %u view changes, %u acknowledgements while a replica was cut; %u rounds "
	     "with the cluster %d ops ahead, %u catch-ups that fetched a checkpoint; %u cut again "
	     "while catching up (%u in the state transfer, %u of them after it asked for checkpoint "
	     "chunks, %u right after the transfer ended, %u recovering, %u in a view change, %u "
	     "normal but behind, %u only once it had caught up); %u second replicas cut right "
	     "after the first rejoined; %u stopped on their own (exit 74) before the kill; %u "
	     "store rollbacks; %" PRIu64 " cleanings of the victims' stores before their cuts "
	     "(checkpoint interval %u); slowest rejoin %" PRIu64 " ms; 0 acknowledged writes lost, "
	     "digests equal after every round",
	     t.cuts, rounds, t.primary_cuts + t.backup_cuts, t.primary_cuts, t.backup_cuts,
	     t.view_changes, t.acks_down, t.fetch_rounds, LAG_OPS, t.fetches, t.recuts,
	     t.recut_transfer + t.recut_fetch + t.recut_status[VSR_STATUS_STATE_TRANSFER],
	     t.recut_fetch, t.recut_normal,
	     t.recut_status[VSR_STATUS_RECOVERING], t.recut_status[VSR_STATUS_VIEW_CHANGE],
	     t.recut_status[VSR_STATUS_NORMAL], t.recut_late, t.seconds, t.exited, t.rolled,
	     t.cleanings, g_checkpoint_interval, t.rejoin_ms_max);
	const char *clean = getenv("VSRH_CLEAN_AFTER_MS");
	if (rounds >= 4 && clean != NULL && strtoul(clean, NULL, 10) > 0 && t.cleanings == 0)
		fail("VSRH_CLEAN_AFTER_MS=%s, and no cut replica had cleaned its store: the cuts "
		     "never met a cleaning", clean);
	if (rounds >= 4 && t.fetches == 0)
		fail("no cut replica ever fetched a checkpoint: the state transfer was never reached");
	for (int i = 0; i < N; i++)
		if (!disk_unmount(i))
			fail("cannot unmount %s/data/replica-%d: %s", g_dir, i + 1, strerror(errno));
	return 0;
}
