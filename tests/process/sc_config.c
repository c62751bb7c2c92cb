/* sc_config.c - process scenarios of the configuration fingerprint: a replica whose configuration
 * differs is refused on both ends and never joins; with the same configuration it does. */
#include "harness.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* The fingerprint replica i logged at start ("configuration fingerprint
 * <16 hex digits> (...)"), as text; false while it has not. */
static bool logged_fingerprint(int i, char out[17])
{
	char path[400];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char line[4096];
	bool found = false;
	static const char tag[] = "configuration fingerprint ";
	while (!found && fgets(line, sizeof line, f) != NULL) {
		const char *p = strstr(line, tag);
		if (p == NULL)
			continue;
		p += sizeof tag - 1;
		if (strspn(p, "0123456789abcdef") < 16)
			continue;
		memcpy(out, p, 16);
		out[16] = '\0';
		found = true;
	}
	fclose(f);
	return found;
}

/* Replicas a and b normal in one view led by one of them, in a history:
 * the cluster they formed without the third. Returns the primary. */
static int wait_pair(int a, int b, uint32_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		check_alive();
		vsr_wire_status sa, sb;
		if (status_of(a, &sa) && status_of(b, &sb) && sa.status == VSR_STATUS_NORMAL &&
		    sb.status == VSR_STATUS_NORMAL && sa.view == sb.view && sa.primary == sb.primary &&
		    (sa.primary == a || sa.primary == b) && sa.history != 0 && sa.history == sb.history)
			return sa.primary;
		if (now_ms() > deadline)
			fail("replicas %d and %d formed no cluster within %u ms", a + 1, b + 1, timeout_ms);
		poll(NULL, 0, 20); /* next status round */
	}
}

static uint64_t metric_or_fail(int i, const char *name)
{
	static char body[1 << 20];
	uint64_t v;
	if (scrape(i, body, sizeof body) == NULL || !metric_value(body, name, &v))
		fail("replica %d: no metric %s", i + 1, name);
	return v;
}

/* A copy of statemachines/kv.lua with one comment line added, in
 * g_dir/sm/ (g_dir/lua links to the project's lua/, so that the default
 * dedup policy is found as for the original): what an operator who edited
 * the script on one machine only would run. Returns its path. */
static const char *edited_kv(void)
{
	static char path[520];
	char src[400], link[400], lua[400], dir[300];
	snprintf(dir, sizeof dir, "%s/sm", g_dir);
	snprintf(path, sizeof path, "%s/kv.lua", dir);
	snprintf(src, sizeof src, "%s/statemachines/kv.lua", g_root);
	snprintf(link, sizeof link, "%s/lua", g_dir);
	snprintf(lua, sizeof lua, "%s/lua", g_root);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		fail("mkdir %s: %s", dir, strerror(errno));
	if (symlink(lua[0] == '/' ? lua : realpath(lua, NULL), link) != 0 && errno != EEXIST)
		fail("symlink %s: %s", link, strerror(errno));
	FILE *in = fopen(src, "r"), *out = fopen(path, "w");
	if (in == NULL || out == NULL)
		fail("cannot copy %s to %s", src, path);
	fprintf(out, "-- edited on this machine only\n");
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	if (fclose(out) != 0)
		fail("cannot write %s", path);
	return path;
}

/* `vsrhost fingerprint FILE` (FILE in g_dir): its first line, 16 hex digits. */
static void file_fingerprint(const char *name, char out[17])
{
	char cmd[1200], got[64] = "";
	snprintf(cmd, sizeof cmd, "'%s' fingerprint '%s/%s' 2>&1", g_vsrhost, g_dir, name);
	FILE *pf = popen(cmd, "r");
	if (pf == NULL || fgets(got, sizeof got, pf) == NULL)
		fail("%s printed nothing", cmd);
	int st = pclose(pf);
	if (st != 0 || strspn(got, "0123456789abcdef") != 16)
		fail("%s (status %d) printed %s", cmd, st, got);
	snprintf(out, 17, "%.16s", got);
}

/* Replica i's superblock file, whole (two copies of 4096 bytes). */
static void read_superblock(int i, uint8_t out[8192])
{
	char path[400];
	snprintf(path, sizeof path, "%s/data/replica-%d/superblock", g_dir, i + 1);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, out, 8192, 0) != 8192)
		fail("cannot read %s", path);
	close(fd);
}

/* Starts replica i with configuration file `config` (in g_dir) and, unless
 * NULL, --accept-config `accept`, its output appended to its log. With
 * `wait_exit`, waits (bounded) for it to exit and returns its exit status;
 * otherwise it runs on as g_pid[i] and this returns -1. */
static int start_with(int i, const char *config, const char *accept, bool wait_exit)
{
	char path[400], log[400], idx[16];
	snprintf(path, sizeof path, "%s/%s", g_dir, config);
	snprintf(log, sizeof log, "%s/replica-%d.log", g_dir, i + 1);
	snprintf(idx, sizeof idx, "%d", i + 1);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	char *argv[] = {"vsrhost", path, "--replica", idx, "--accept-config", (char *)accept, NULL};
	if (accept == NULL)
		argv[4] = NULL;
	pid_t pid = spawn(g_vsrhost, argv, fd, fd);
	if (fd >= 0)
		close(fd);
	if (!wait_exit) {
		g_pid[i] = pid;
		return -1;
	}
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (;;) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail("replica %d with %s did not exit within %d ms", i + 1, config, STARTUP_MS);
		}
		poll(NULL, 0, 20); /* bounded wait for the child's exit */
	}
}

/* Replica i, started with `config` on the data directory its last run
 * wrote under configuration `recorded`, whose fingerprint is `now`: it
 * exits 78 with one line naming the directory, both fingerprints, the
 * part that differs and the flag, and leaves the superblock as it was.
 * With --accept-config naming another fingerprint, the same. */
static void expect_refused(int i, const char *config, const char recorded[17], const char now[17])
{
	uint8_t before[8192], after[8192];
	read_superblock(i, before);
	int st = start_with(i, config, NULL, true);
	char want[3][600];
	snprintf(want[0], sizeof want[0],
		 "storage %s/data/replica-%d: this data directory was written under configuration "
		 "fingerprint %s, and this configuration's is %s: state machine script (recorded ",
		 g_dir, i + 1, recorded, now);
	snprintf(want[1], sizeof want[1], "start each replica once with --accept-config %s", now);
	if (st != 78 || !log_contains(i, want[0]) || !log_contains(i, want[1]))
		fail("replica %d with %s on a directory written under %s: exit %d, want 78 and a log "
		     "line \"%s ... %s\"", i + 1, config, recorded, st, want[0], want[1]);
	st = start_with(i, config, recorded, true);
	snprintf(want[2], sizeof want[2],
		 "--accept-config %s names another configuration: this one's fingerprint is %s",
		 recorded, now);
	if (st != 78 || !log_contains(i, want[2]))
		fail("replica %d with --accept-config %s (not its configuration's): exit %d, want 78 "
		     "and \"%s\"", i + 1, recorded, st, want[2]);
	read_superblock(i, after);
	if (memcmp(before, after, sizeof before) != 0)
		fail("replica %d's refused starts changed its superblock", i + 1);
	note("replica %d with %s on its directory (written under %s): exit 78, the refusal names "
	     "the directory, both fingerprints, the script and --accept-config %s; with "
	     "--accept-config %s: exit 78; its superblock unchanged", i + 1, config, recorded, now,
	     recorded);
}

/* Lines of replica i's log that contain `needle`. */
static int log_count(int i, const char *needle)
{
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	int n = 0;
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		n += strstr(line, needle) != NULL;
	if (f != NULL)
		fclose(f);
	return n;
}

/* g_dir/name: g_dir/cluster.lua with `count` replicas: its `replicas`,
 * `clients` and `metrics` lists cut to `count` addresses or grown with
 * addresses nothing listens on (127.0.0.2, .3 and .4: distinct from every
 * other), everything else as it is. With `moved`, replica `moved`'s
 * (1-based) replica address goes to 127.0.0.2 instead. */
static void write_members(const char *name, int count, int moved)
{
	static const char *const lists[3] = {"  replicas = {", "  clients = {", "  metrics = {"};
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/cluster.lua", g_dir);
	FILE *in = fopen(path, "r");
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	FILE *out = fopen(path, "w");
	if (in == NULL || out == NULL)
		fail("cannot write %s from %s/cluster.lua", path, g_dir);
	while (fgets(line, sizeof line, in) != NULL) {
		int l = 0;
		while (l < 3 && strncmp(line, lists[l], strlen(lists[l])) != 0)
			l++;
		if (l == 3) {
			fputs(line, out);
			continue;
		}
		/* "  replicas = { \"127.0.0.1:P1\", ... },": the ports, in order. */
		unsigned port[VSR_REPLICAS_MAX];
		int have = 0;
		for (const char *q = strstr(line, ":"); q != NULL && have < (int)VSR_REPLICAS_MAX;
		     q = strstr(q + 1, ":"))
			port[have++] = (unsigned)strtoul(q + 1, NULL, 10);
		if (have != N)
			fail("%s/cluster.lua: %d addresses in \"%s\", want %d", g_dir, have, lists[l], N);
		fputs(lists[l], out);
		for (int k = 0; k < count; k++) {
			bool other = k >= have || (l == 0 && k + 1 == moved);
			fprintf(out, "%s\"127.0.0.%d:%u\"", k ? ", " : " ", other ? 2 + l : 1,
				k < have ? port[k] : port[0] + (unsigned)k);
		}
		fputs(" },\n", out);
	}
	fclose(in);
	if (fclose(out) != 0)
		fail("cannot write %s", path);
}

/* Rewrites both copies of replica i's superblock with a configuration
 * record of its first `parts` parts only, as a vsrhost from before the
 * later parts wrote it (docs/storage.md: the record at byte 1024, its part
 * count at 1032, the parts from 1040, then XXH3-64 of the copy before it).
 * Returns the count the record had. */
static uint32_t truncate_record(int i, uint32_t parts)
{
	uint8_t sb[8192];
	read_superblock(i, sb);
	uint32_t had = 0;
	for (int c = 0; c < 2; c++) {
		uint8_t *copy = sb + 4096 * c;
		memcpy(&had, copy + 1032, 4); /* little endian, as this host */
		if (had <= parts || had > 16)
			fail("replica %d's superblock copy %d records %u parts", i + 1, c, had);
		memcpy(copy + 1032, &parts, 4);
		memset(copy + 1040 + 8 * parts, 0, 8 * (had - parts) + 8);
		uint64_t sum = XXH3_64bits(copy, 1040 + 8 * parts);
		memcpy(copy + 1040 + 8 * parts, &sum, 8);
	}
	char path[400];
	snprintf(path, sizeof path, "%s/data/replica-%d/superblock", g_dir, i + 1);
	int fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, sb, sizeof sb, 0) != (ssize_t)sizeof sb || fsync(fd) != 0)
		fail("cannot write %s", path);
	close(fd);
	return had;
}

/* Replica i, whose directory a cluster of N replicas wrote, started with
 * g_dir/name (`count` replicas), without the flag and with --accept-config
 * naming name's own fingerprint: both times exit 78 with one line naming
 * the directory and both counts and saying that membership changes are
 * not supported; its superblock unchanged. */
static void expect_count_refused(int i, const char *name, int count)
{
	char fp[17], want[600];
	file_fingerprint(name, fp);
	snprintf(want, sizeof want,
		 "storage %s/data/replica-%d: this data directory was written by a cluster of %d "
		 "replicas, and this configuration has %d: membership changes (another replica "
		 "count) are not supported yet", g_dir, i + 1, N, count);
	uint8_t before[8192], after[8192];
	read_superblock(i, before);
	for (int k = 0; k < 2; k++) {
		int seen = log_count(i, want);
		int st = start_with(i, name, k == 0 ? NULL : fp, true);
		if (st != 78 || log_count(i, want) != seen + 1)
			fail("replica %d with %s (%d replicas)%s%s: exit %d, want 78 and a log line "
			     "\"%s\"", i + 1, name, count, k == 0 ? "" : " and --accept-config ",
			     k == 0 ? "" : fp, st, want);
	}
	read_superblock(i, after);
	if (memcmp(before, after, sizeof before) != 0)
		fail("replica %d's refused starts with %s changed its superblock", i + 1, name);
	note("replica %d with %s (%d replicas, fingerprint %s) on a directory %d replicas wrote: "
	     "exit 78 without the flag and with --accept-config %s, the refusal names both "
	     "counts; its superblock unchanged", i + 1, name, count, fp, N, fp);
}

/* config-mismatch: a cluster of three running kv.lua; one backup is
 * restarted with an edited copy of the script (everything else equal). */
int scenario_config_mismatch(void)
{
	g_durability = "durable";
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	wait_converged(last, CATCHUP_MS, "the first writes");
	const int odd = (p + 1) % N, a = (odd + 1) % N, b = (odd + 2) % N;
	kill_replica(odd);
	g_odd_replica = odd;
	g_odd_statemachine = edited_kv();
	write_config("kv.lua");
	/* Its disk was written under the cluster's configuration: it refuses
	 * to replay it under another unless told to (host_config_disk.c). */
	char odd_config[32], fp_cluster[17], fp_edited[17];
	snprintf(odd_config, sizeof odd_config, "cluster-%d.lua", odd + 1);
	file_fingerprint("cluster.lua", fp_cluster);
	file_fingerprint(odd_config, fp_edited);
	expect_refused(odd, odd_config, fp_cluster, fp_edited);
	/* A fourth replica added in its file alone: another membership, which
	 * no flag accepts. */
	write_members("grown.lua", N + 1, 0);
	expect_count_refused(odd, "grown.lua", N + 1);
	start_with(odd, odd_config, fp_edited, false);
	wait_ports(odd);
	if (!log_contains(odd, "accepted (--accept-config): the "))
		fail("replica %d did not log the accepted change", odd + 1);
	note("replica %d restarted with a script differing by one comment line (%s) and "
	     "--accept-config %s", odd + 1, g_odd_statemachine, fp_edited);

	/* Both ends name the difference, with both fingerprints. */
	char fp[N][17];
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (int i = 0; i < N; i++)
		while (!logged_fingerprint(i, fp[i]) ||
		       (i == odd && strcmp(fp[i], fp[a]) == 0 && now_ms() < deadline)) {
			check_alive();
			if (now_ms() > deadline)
				fail("replica %d logged no configuration fingerprint", i + 1);
			poll(NULL, 0, 20); /* next look at the log */
		}
	/* The odd replica's log holds its first start's line too: its last. */
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, odd + 1);
	FILE *f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		const char *q = strstr(line, "configuration fingerprint ");
		if (q != NULL)
			snprintf(fp[odd], sizeof fp[odd], "%.16s", q + strlen("configuration fingerprint "));
	}
	if (f != NULL)
		fclose(f);
	/* `vsrhost fingerprint CONFIG` prints what the replicas logged. */
	for (int k = 0; k < 2; k++) {
		char cmd[1200], got[64] = "", name[32] = "cluster.lua";
		if (k == 1)
			snprintf(name, sizeof name, "cluster-%d.lua", odd + 1);
		snprintf(cmd, sizeof cmd, "'%s' fingerprint '%s/%s' 2>&1", g_vsrhost, g_dir, name);
		FILE *pf = popen(cmd, "r");
		if (pf == NULL || fgets(got, sizeof got, pf) == NULL)
			fail("%s printed nothing", cmd);
		int st = pclose(pf);
		const char *want_fp = k == 0 ? fp[a] : fp[odd];
		if (st != 0 || strncmp(got, want_fp, 16) != 0)
			fail("%s (status %d) printed %s, the replica logged %s", cmd, st, got, want_fp);
	}
	if (strcmp(fp[a], fp[b]) != 0 || strcmp(fp[a], fp[odd]) == 0)
		fail("fingerprints %s (%d), %s (%d), %s (%d): want the first two equal, the third "
		     "different", fp[a], a + 1, fp[b], b + 1, fp[odd], odd + 1);
	char good_line[256], odd_line[2][256], good_fps[128], odd_fps[128];
	snprintf(good_line, sizeof good_line,
		 "replica %d refused: its configuration differs from this replica's: state machine "
		 "script differs (ours ", odd + 1);
	snprintf(odd_line[0], sizeof odd_line[0],
		 "replica %d refused: its configuration differs from this replica's: state "
		 "machine script differs (ours ", a + 1);
	snprintf(odd_line[1], sizeof odd_line[1],
		 "replica %d refused: its configuration differs from this replica's: state "
		 "machine script differs (ours ", b + 1);
	snprintf(good_fps, sizeof good_fps, "fingerprint ours %s, theirs %s", fp[a], fp[odd]);
	snprintf(odd_fps, sizeof odd_fps, "fingerprint ours %s, theirs %s", fp[odd], fp[a]);
	for (;;) {
		check_alive();
		bool seen = log_contains(a, good_line) && log_contains(b, good_line) &&
			    log_contains(a, good_fps) && log_contains(b, good_fps) &&
			    log_contains(odd, odd_line[0]) && log_contains(odd, odd_line[1]) &&
			    log_contains(odd, odd_fps);
		if (seen)
			break;
		if (now_ms() > deadline)
			fail("the refusal was not logged on both sides (want \"%s\" and \"%s\")",
			     good_line, good_fps);
		poll(NULL, 0, 20); /* next look at the logs */
	}
	for (int i = 0; i < N; i++)
		if (log_contains(i, "limits differ (") || log_contains(i, "addresses) differs (") ||
		    log_contains(i, "dedup policy script differs (") ||
		    log_contains(i, "durability differs (") || log_contains(i, "tick_ms) differ ("))
			fail("replica %d names a difference other than the script", i + 1);
	note("both ends logged \"state machine script differs\" with fingerprints %s (%d, %d) and "
	     "%s (%d), nothing else", fp[a], a + 1, b + 1, fp[odd], odd + 1);

	note("`vsrhost fingerprint` of each configuration file prints what its replicas logged");
	/* vsrctl status shows the fingerprints (first 8 hex digits) and says
	 * they differ. */
	char out[8192];
	int rc = run_vsrctl(out, sizeof out, (const char *const[]){"status", NULL});
	char short_good[9], short_odd[9];
	snprintf(short_good, sizeof short_good, "%.8s", fp[a]);
	snprintf(short_odd, sizeof short_odd, "%.8s", fp[odd]);
	if (rc != 76 || strstr(out, "config") == NULL || strstr(out, short_good) == NULL ||
	    strstr(out, short_odd) == NULL || strstr(out, "configuration fingerprints differ") == NULL)
		fail("vsrctl status (exit %d, want 76) does not show fingerprints %s and %s as "
		     "differing:\n%s", rc, short_good, short_odd, out);
	/* And says so on stderr, naming who runs which. */
	{
		char cmd[1200], err[2048] = "", want[256];
		snprintf(cmd, sizeof cmd, "'%s' -c '%s/cluster.lua' -t 10000 status 2>&1 >/dev/null",
			 g_vsrctl, g_dir);
		FILE *pf = popen(cmd, "r");
		size_t got = pf != NULL ? fread(err, 1, sizeof err - 1, pf) : 0;
		err[got] = '\0';
		int st = pf != NULL ? pclose(pf) : -1;
		snprintf(want, sizeof want, "replica %d runs %s", odd + 1, fp[odd]);
		if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 76 ||
		    strstr(err, "vsrctl: status: the replicas report different configuration "
				"fingerprints (") == NULL || strstr(err, want) == NULL ||
		    strstr(err, fp[a]) == NULL)
			fail("vsrctl status (status 0x%x) said on stderr: %s", st, err);
	}
	note("vsrctl status shows config %s for replicas %d and %d, %s for replica %d, says they "
	     "differ and exits 76 (EX_PROTOCOL; 78 is its own config's error), naming both on stderr", short_good, a + 1, b + 1, short_odd,
	     odd + 1);

	/* The two serve writes; the third takes no part. */
	int q = wait_pair(a, b, STARTUP_MS);
	vsr_wire_status before;
	if (!status_of(odd, &before))
		fail("no status from replica %d", odd + 1);
	put_keys(&m, &sb, KEYS / 2, KEYS, &last);
	get_keys(&m, &sb, 0, KEYS);
	vsr_wire_status so, sa;
	if (!status_of(odd, &so) || !status_of(a, &sa))
		fail("no status from replicas %d and %d", odd + 1, a + 1);
	if (so.status == VSR_STATUS_NORMAL || so.executed >= last || so.commit >= last ||
	    so.executed != before.executed || sa.executed < last)
		fail("replica %d took part: status %s, commit %" PRIu64 ", executed %" PRIu64
		     " (before the writes %" PRIu64 ", the cluster at %" PRIu64 ")", odd + 1,
		     vsr_status_name((enum vsr_status)so.status), so.commit, so.executed,
		     before.executed, sa.executed);
	/* Nor does it answer stale reads from its own state (a read any
	 * replica with a history answers otherwise): it says NOT_PRIMARY. The
	 * others do answer them. */
	op_kv(&sb, "get", "k0", NULL);
	for (int i = 0; i < N; i++) {
		mresult qr;
		uint8_t mode = 0xff;
		if (!mc_query_at(&m, i, VSR_READ_STALE, (1u << 20) + (uint64_t)i, &sb, CALL_MS, &qr,
				 &mode))
			fail("replica %d did not answer a stale read at all", i + 1);
		bool refused = qr.status == VSR_REPLY_NOT_PRIMARY;
		if (refused != (i == odd) || (!refused && (qr.status != VSR_REPLY_OK ||
							     mode != VSR_READ_STALE)))
			fail("replica %d answered a stale read with status %u, mode %u: %.*s", i + 1,
			     qr.status, mode, (int)qr.body_len, qr.body);
	}
	note("a stale read: refused by replica %d (NOT_PRIMARY), answered by the other two", odd + 1);
	for (int i = 0; i < N; i++) {
		uint64_t refused = metric_or_fail(i, "vsr_config_mismatches_total");
		if (refused == 0)
			fail("replica %d counted no refusal", i + 1);
		note("replica %d: vsr_config_mismatches_total %" PRIu64, i + 1, refused);
	}
	note("%d more writes served by replicas %d and %d (primary %d, last op %" PRIu64
	     "); replica %d stayed %s at executed %" PRIu64, KEYS - KEYS / 2, a + 1, b + 1, q + 1,
	     last, odd + 1, vsr_status_name((enum vsr_status)so.status), so.executed);

	/* Restarted with the cluster's script, it is accepted and agrees. Its
	 * disk now records the edited configuration (the accepted change was
	 * recorded at once): the cluster's is a change again. */
	kill_replica(odd);
	g_odd_replica = -1;
	g_odd_statemachine = NULL;
	expect_refused(odd, "cluster.lua", fp_edited, fp_cluster);
	start_with(odd, "cluster.lua", fp_cluster, false);
	wait_ports(odd);
	wait_converged(last, CATCHUP_MS, "the replica restarted with kv.lua");
	char back[128];
	snprintf(back, sizeof back, "replica %d now runs with the same configuration", odd + 1);
	if (!log_contains(a, back) || !log_contains(b, back))
		fail("replicas %d and %d did not log \"%s\"", a + 1, b + 1, back);
	put_keys(&m, &sb, KEYS, KEYS + 5, &last);
	wait_converged(last, CATCHUP_MS, "after more writes");
	rc = run_vsrctl(out, sizeof out, (const char *const[]){"status", NULL});
	if (rc != 0 || strstr(out, "configuration fingerprints differ") != NULL)
		fail("vsrctl status (exit %d) after the restart:\n%s", rc, out);
	note("replica %d restarted with kv.lua: accepted, caught up; all three executed op %" PRIu64
	     " with equal digests", odd + 1, last);
	scenario_close(&m, &sb);
	return 0;
}

/* config-change: the documented way to change the configuration of a
 * durable cluster (docs/config.md, "Changing the configuration"): stopped
 * as a whole, the script edited on every machine, every replica refuses
 * its directory until started once with --accept-config; then the cluster
 * forms with every acknowledged write, and later starts need no flag. */
int scenario_config_change(void)
{
	g_durability = "durable";
	g_checkpoint_interval = 8; /* a checkpoint and a log suffix to replay */
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	wait_converged(last, CATCHUP_MS, "the first writes");
	char fp_old[17], fp_new[17];
	file_fingerprint("cluster.lua", fp_old);
	stop_all();
	write_config(edited_kv());
	file_fingerprint("cluster.lua", fp_new);
	if (strcmp(fp_old, fp_new) == 0)
		fail("the edited script left the fingerprint at %s", fp_old);
	note("%d writes up to op %" PRIu64 "; the cluster stopped; the script edited on every "
	     "replica: fingerprint %s, was %s", KEYS / 2, last, fp_new, fp_old);
	for (int i = 0; i < N; i++)
		expect_refused(i, "cluster.lua", fp_old, fp_new);
	for (int i = 0; i < N; i++)
		start_with(i, "cluster.lua", fp_new, false);
	wait_ports(-1);
	int p = wait_primary(STARTUP_MS, "after the accepted change");
	char accepted[200];
	snprintf(accepted, sizeof accepted,
		 "the configuration changed from fingerprint %s to %s (state machine script "
		 "(recorded ", fp_old, fp_new);
	for (int i = 0; i < N; i++)
		if (!log_contains(i, accepted) || !log_contains(i, "accepted (--accept-config)"))
			fail("replica %d did not log \"%s ... accepted (--accept-config)\"", i + 1,
			     accepted);
	get_keys(&m, &sb, 0, KEYS / 2);
	put_keys(&m, &sb, KEYS / 2, KEYS, &last);
	wait_converged(last, CATCHUP_MS, "after the accepted change");
	note("started with --accept-config %s: each logged the change, replica %d leads, the "
	     "first writes read back, %d more converged at op %" PRIu64, fp_new, p + 1,
	     KEYS - KEYS / 2, last);
	/* Recorded: the next start needs no flag. */
	stop_all();
	for (int i = 0; i < N; i++)
		start_replica(i);
	wait_ports(-1);
	wait_primary(STARTUP_MS, "after a plain restart");
	get_keys(&m, &sb, 0, KEYS);
	put_keys(&m, &sb, KEYS, KEYS + 2, &last);
	wait_converged(last, CATCHUP_MS, "after a plain restart");
	note("restarted without the flag: every write reads back, op %" PRIu64 " converged", last);

	/* Another replica count on the stopped cluster is refused, flag or
	 * not: membership changes are not supported. */
	stop_all();
	write_members("shrunk.lua", N - 1, 0);
	expect_count_refused(0, "shrunk.lua", N - 1);
	write_members("grown.lua", N + 2, 0);
	expect_count_refused(1, "grown.lua", N + 2);
	/* A replica's address moved, the count kept: accepted with the flag
	 * (a replica is its index and its directory, not where it listens). */
	char fp_moved[17], moved[200];
	write_members("moved.lua", N, N);
	file_fingerprint("moved.lua", fp_moved);
	/* But not on a directory whose record (from a build before the count
	 * part) cannot tell a moved address from another count, until a start
	 * under its own configuration has recorded the count. */
	uint32_t parts = truncate_record(0, VSR_WIRE_CONFIG_REPLICAS);
	static const char older[] = "does not say the replica count it had: membership changes "
				    "(another replica count) are not supported yet";
	int st = start_with(0, "moved.lua", fp_moved, true);
	if (st != 78 || !log_contains(0, older))
		fail("replica 1 with moved.lua and --accept-config %s on a record of %u parts: exit "
		     "%d, want 78 and \"%s\"", fp_moved, VSR_WIRE_CONFIG_REPLICAS, st, older);
	start_replica(0);
	wait_ports(0);
	kill_replica(0);
	uint8_t rec[8192];
	read_superblock(0, rec);
	uint32_t now_parts;
	memcpy(&now_parts, rec + 1032, 4);
	if (now_parts != parts)
		fail("replica 1 started under its own configuration recorded %u parts, want %u",
		     now_parts, parts);
	note("on a record of %u parts (an older build's): moved.lua refused with the flag (exit "
	     "78); a start under cluster.lua recorded %u parts", VSR_WIRE_CONFIG_REPLICAS, parts);
	start_with(0, "moved.lua", fp_moved, false);
	snprintf(moved, sizeof moved,
		 "the configuration changed from fingerprint %s to %s (membership (cluster id, "
		 "replica count or addresses) (recorded ", fp_new, fp_moved);
	for (uint64_t deadline = now_ms() + STARTUP_MS; !log_contains(0, moved);) {
		check_alive();
		if (now_ms() > deadline)
			fail("replica 1 with moved.lua and --accept-config %s did not log \"%s\"",
			     fp_moved, moved);
		poll(NULL, 0, 20); /* next look at the log */
	}
	kill_replica(0);
	note("replica %d's address moved (moved.lua, %s): accepted with --accept-config", N,
	     fp_moved);
	scenario_close(&m, &sb);
	return 0;
}
