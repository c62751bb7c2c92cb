/* sc_ops.c - process-test scenarios. Operations: the supervisor with vsrctl, /metrics and /health. */
#include "harness.h"

/* Counts the lines of `text` containing `word`. */
static int count_lines_with(const char *text, const char *word)
{
	int n = 0;
	for (const char *line = text; *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		for (size_t i = 0; i + strlen(word) <= len; i++) {
			if (strncmp(line + i, word, strlen(word)) == 0) {
				n++;
				break;
			}
		}
		line += len + (end ? 1 : 0);
	}
	return n;
}

/* The `make run` shape: vsrhost CONFIG (no --replica) supervises every
 * replica; vsrctl put/get/status work against it; SIGINT stops them all. */
/* Starts `vsrhost CONFIG [extra]` (the supervisor; slot 0 of g_pid tracks
 * it) and waits until vsrctl status shows every replica normal. */
static pid_t supervisor_start(const char *extra, char *out, size_t out_len)
{
	char config[400], log[400], outp[400];
	snprintf(config, sizeof config, "%s/cluster.lua", g_dir);
	snprintf(log, sizeof log, "%s/supervisor.log", g_dir);
	snprintf(outp, sizeof outp, "%s/supervisor.out", g_dir);
	int e = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	/* The supervisor's own children die with it (it sets that up). */
	char *const argv[] = {"vsrhost", config, (char *)extra, NULL};
	pid_t pid = spawn(g_vsrhost, argv, o, e);
	if (e >= 0)
		close(e);
	if (o >= 0)
		close(o);
	g_pid[0] = pid;
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (;;) {
		check_alive();
		int rc = run_vsrctl(out, out_len, (const char *const[]){"status", NULL});
		if (rc == 0 && count_lines_with(out, "normal") == N)
			break;
		if (now_ms() > deadline)
			fail("vsrctl status never showed %d normal replicas:\n%s", N, out);
		poll(NULL, 0, 50); /* next status round */
	}
	return pid;
}

/* SIGINT to the supervisor: it must exit 0 and leave no replica port open. */
static void supervisor_stop(pid_t pid)
{
	kill(pid, SIGINT);
	uint64_t deadline = now_ms() + 10000;
	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			g_pid[0] = 0;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				fail("the supervisor exited with status 0x%x after SIGINT", status);
			break;
		}
		if (now_ms() > deadline)
			fail("the supervisor did not exit within 10 s of SIGINT");
		poll(NULL, 0, 10); /* bounded wait for its exit */
	}
	/* It waits for its children before exiting: every port is closed. */
	for (int i = 0; i < N; i++) {
		if (port_accepts(g_client_port[i]))
			fail("replica %d still accepts connections after the supervisor stopped", i + 1);
	}
}

int scenario_supervisor(void)
{
	if (g_vsrctl == NULL)
		fail("the supervisor scenario needs --vsrctl PATH");
	/* Durable: what a restart keeps, and what --fresh discards, shows. */
	g_durability = "durable";
	pick_ports();
	write_config("kv.lua");
	char out[8192], outp[400];
	snprintf(outp, sizeof outp, "%s/supervisor.out", g_dir);
	pid_t pid = supervisor_start(NULL, out, sizeof out);
	note("vsrctl status shows %d normal replicas", N);
	char value[64];
	snprintf(value, sizeof value, "world-%" PRIu64, g_seed);
	int rc = run_vsrctl(out, sizeof out, (const char *const[]){"put", "hello", value, NULL});
	if (rc != 0)
		fail("vsrctl put exited %d: %s", rc, out);
	rc = run_vsrctl(out, sizeof out, (const char *const[]){"get", "hello", NULL});
	if (rc != 0 || strstr(out, value) == NULL)
		fail("vsrctl get exited %d and printed: %s", rc, out);
	note("vsrctl put then get returned %s", value);
	/* Status after the write: every replica reports lag and ages; once the
	 * write has reached them all, every lag is 0. */
	uint64_t deadline = now_ms() + CATCHUP_MS;
	for (;;) {
		rc = run_vsrctl(out, sizeof out, (const char *const[]){"status", NULL});
		if (rc != 0)
			fail("vsrctl status exited %d: %s", rc, out);
		if (strstr(out, "lag") == NULL || strstr(out, "progress_ago") == NULL)
			fail("vsrctl status shows no lag or progress columns:\n%s", out);
		int caught_up = 0;
		for (char *line = strchr(out, '\n'); line != NULL; line = strchr(line + 1, '\n')) {
			unsigned id, primary;
			char addr[64], st[32];
			unsigned long long view, op, commit, lag;
			if (sscanf(line + 1, "%u %63s %31s %llu %llu %llu %u %llu", &id, addr, st, &view,
				   &op, &commit, &primary, &lag) == 8 && lag == 0)
				caught_up++;
		}
		if (caught_up == N)
			break;
		if (now_ms() > deadline)
			fail("vsrctl status never showed every replica with lag 0:\n%s", out);
		poll(NULL, 0, 50); /* next status round */
	}
	note("vsrctl status: every replica at lag 0, with step and progress ages");
	FILE *f = fopen(outp, "r");
	size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
	out[n] = '\0';
	if (f)
		fclose(f);
	char port[16];
	snprintf(port, sizeof port, ":%u", g_client_port[0]);
	if (strstr(out, "clients connect to") == NULL || strstr(out, port) == NULL)
		fail("the supervisor did not print where clients connect:\n%s", out);
	supervisor_stop(pid);
	note("SIGINT stopped the supervisor and every replica (exit 0)");

	/* Started again, the cluster has the write; started with --fresh,
	 * every replica discards its state (a new history). */
	pid = supervisor_start(NULL, out, sizeof out);
	rc = run_vsrctl(out, sizeof out, (const char *const[]){"get", "hello", NULL});
	if (rc != 0 || strstr(out, value) == NULL)
		fail("after a restart, vsrctl get exited %d and printed: %s", rc, out);
	supervisor_stop(pid);
	pid = supervisor_start("--fresh", out, sizeof out);
	rc = run_vsrctl(out, sizeof out, (const char *const[]){"get", "hello", NULL});
	if (strstr(out, value) != NULL)
		fail("`vsrhost CONFIG --fresh` kept the data: vsrctl get exited %d and printed: %s",
		     rc, out);
	supervisor_stop(pid);
	note("a restart kept the write; a restart with --fresh discarded it");
	return 0;
}


/* ------------------------------------------------------------------------ */
/* Metrics.                                                                 */



/* Every line of replica i's log is one JSON object with ts, level, who and
 * msg; returns the number of lines. */
static int check_json_log(int i)
{
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		fail("cannot read %s", path);
	int n = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);
		if (o == NULL || !json_is_string(json_object_get(o, "ts")) ||
		    !json_is_string(json_object_get(o, "level")) ||
		    !json_is_string(json_object_get(o, "who")) ||
		    !json_is_string(json_object_get(o, "msg")))
			fail("replica %d: log line %d is not a JSON log object: %s", i + 1, n + 1, line);
		json_decref(o);
		n++;
	}
	fclose(f);
	return n;
}

/* Every metric family the shipped Grafana dashboard queries (vsr_ names in
 * its expressions, a histogram's _bucket suffix dropped) is in `scrape`. */
static int check_dashboard(const char *scrape_text)
{
	char path[400];
	snprintf(path, sizeof path, "%s/docs/grafana/vsrhost-dashboard.json", g_root);
	json_error_t e;
	json_t *d = json_load_file(path, 0, &e);
	if (d == NULL)
		fail("%s:%d: not JSON: %s", path, e.line, e.text);
	int names = 0;
	size_t pi;
	json_t *panel;
	json_array_foreach(json_object_get(d, "panels"), pi, panel) {
		size_t ti;
		json_t *target;
		json_array_foreach(json_object_get(panel, "targets"), ti, target) {
			const char *expr = json_string_value(json_object_get(target, "expr"));
			if (expr == NULL)
				fail("%s: panel %zu has a target without expr", path, pi + 1);
			for (const char *p = expr; (p = strstr(p, "vsr_")) != NULL;) {
				char name[128];
				size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
				snprintf(name, sizeof name, "%.*s", (int)n, p);
				p += n;
				size_t len = strlen(name);
				if (len > 7 && strcmp(name + len - 7, "_bucket") == 0)
					name[len - 7] = '\0';
				char want[160];
				snprintf(want, sizeof want, "# TYPE %s ", name);
				const char *at = strstr(scrape_text, want);
				while (at != NULL && at != scrape_text && at[-1] != '\n')
					at = strstr(at + 1, want);
				if (at == NULL)
					fail("the dashboard queries %s, which no replica exports", name);
				names++;
			}
		}
	}
	json_decref(d);
	return names;
}

int scenario_metrics(void)
{
	static char buf[1 << 20];
	mclient m;
	msgpack_sbuffer sb;
	g_log_format = "json";
	g_telemetry = true;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	wait_converged(last, CATCHUP_MS, "replication");
	uint64_t v;
	for (int i = 0; i < N; i++) {
		const char *body = scrape(i, buf, sizeof buf);
		if (!metric_value(body, "vsr_commit", &v) || v != last)
			fail("replica %d: vsr_commit is not %" PRIu64, i + 1, last);
		if (!metric_value(body, "vsr_primary", &v) || v != (uint64_t)(i == p))
			fail("replica %d: vsr_primary is wrong", i + 1);
		if (i == p && (!metric_value(body, "vsr_replies_total", &v) || v < KEYS / 2))
			fail("replica %d: fewer ok replies than acknowledged writes", i + 1);
		if (http_get(i, "/health", buf, sizeof buf) != 200)
			fail("replica %d: /health is not 200 in a normal cluster", i + 1);
	}
	note("every replica's scrape passes promtool; commit %" PRIu64 " on each", last);
	int names = check_dashboard(scrape(p, buf, sizeof buf));
	note("the Grafana dashboard's %d metric references are all exported", names);
	kill_replica(p);
	put_keys(&m, &sb, KEYS / 2, KEYS, &last);
	int q = wait_primary(STARTUP_MS, "after failover");
	const char *body = scrape(q, buf, sizeof buf);
	uint64_t view, changes;
	if (!metric_value(body, "vsr_view", &view) || view == 0 ||
	    !metric_value(body, "vsr_view_changes_total", &changes) || changes == 0)
		fail("replica %d: the scrape after failover shows no view change", q + 1);
	if (!metric_value(body, "vsr_primary", &v) || v != 1)
		fail("replica %d: the new primary does not say so", q + 1);
	note("after kill -9 of primary %d: replica %d scrapes view %" PRIu64
	     ", %" PRIu64 " view change(s), primary 1",
	     p + 1, q + 1, view, changes);
	scenario_close(&m, &sb);
	/* The telemetry hooks saw the failover on the new primary. */
	char tpath[400], tline[256];
	snprintf(tpath, sizeof tpath, "%s/telemetry-%d.log", g_dir, q + 1);
	FILE *tf = fopen(tpath, "r");
	bool became = false, finished = false;
	while (tf != NULL && fgets(tline, sizeof tline, tf) != NULL) {
		became |= strncmp(tline, "became_primary ", 15) == 0;
		finished |= strncmp(tline, "view_change_finished ", 21) == 0 &&
			    strstr(tline, "duration_ms=nil") == NULL;
	}
	if (tf != NULL)
		fclose(tf);
	if (!became || !finished)
		fail("the telemetry hooks of replica %d did not see became_primary and "
		     "view_change_finished (with its duration) in %s", q + 1, tpath);
	note("telemetry hooks: replica %d's script saw view_change_finished and became_primary",
	     q + 1);
	int lines = check_json_log(q);
	note("log_format = \"json\": all %d lines of replica %d's log are JSON objects", lines, q + 1);
	return 0;
}


/* ------------------------------------------------------------------------ */
/* `make run`: its own config, stopped and started again.                   */

/* Reads all of `path` into a malloc'ed string. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		fail("cannot read %s: %s", path, strerror(errno));
	char *text = malloc(1 << 16);
	size_t n = text ? fread(text, 1, (1 << 16) - 1, f) : 0;
	fclose(f);
	if (text == NULL)
		fail("out of memory");
	text[n] = '\0';
	return text;
}

/* config/kv.lua as shipped, its 9 addresses (replicas, clients, metrics, in
 * that order) replaced by free ports, written to DIR/config/kv.lua with
 * DIR/statemachines and DIR/lua linked to the source tree: its relative
 * paths hold, and its data_dir (../data/kv) lands in DIR. */
static void write_make_run_config(char *config, size_t config_len)
{
	char path[600];
	snprintf(path, sizeof path, "%s/config/kv.lua", g_root);
	char *text = slurp(path);
	const char *c = strstr(text, "cluster = ");
	if (c == NULL)
		fail("%s: no `cluster = ` line", path);
	g_cluster = strtoull(c + strlen("cluster = "), NULL, 10);
	note("config/kv.lua's cluster %" PRIu64 " on free ports, data in %s/data/kv", g_cluster, g_dir);
	pick_ports();
	char *out = malloc(strlen(text) + 1024);
	if (out == NULL)
		fail("out of memory");
	size_t o = 0;
	int addr = 0;
	const char *prefix = "\"127.0.0.1:";
	for (const char *p = text; *p != '\0';) {
		if (strncmp(p, prefix, strlen(prefix)) != 0) {
			out[o++] = *p++;
			continue;
		}
		const char *q = p + strlen(prefix);
		while (*q >= '0' && *q <= '9')
			q++;
		if (*q != '"' || addr >= 3 * N)
			fail("%s: expected exactly %d addresses \"127.0.0.1:PORT\"", path, 3 * N);
		uint16_t port = addr < N ? g_replica_port[addr]
				: addr < 2 * N ? g_client_port[addr - N] : g_metrics_port[addr - 2 * N];
		o += (size_t)sprintf(out + o, "%s%u\"", prefix, port);
		addr++;
		p = q + 1;
	}
	out[o] = '\0';
	if (addr != 3 * N)
		fail("%s: expected %d addresses \"127.0.0.1:PORT\", found %d", path, 3 * N, addr);
	char dir[600], link[600], target[600];
	snprintf(dir, sizeof dir, "%s/config", g_dir);
	if (mkdir(dir, 0755) != 0)
		fail("cannot create %s: %s", dir, strerror(errno));
	const char *linked[] = {"statemachines", "lua"};
	for (int i = 0; i < 2; i++) {
		snprintf(link, sizeof link, "%s/%s", g_dir, linked[i]);
		snprintf(target, sizeof target, "%s/%s", g_root, linked[i]);
		if (symlink(target, link) != 0)
			fail("cannot link %s: %s", link, strerror(errno));
	}
	snprintf(config, config_len, "%s/kv.lua", dir);
	FILE *f = fopen(config, "w");
	if (f == NULL || fputs(out, f) < 0 || fclose(f) != 0)
		fail("cannot write %s", config);
	free(out);
	free(text);
}

/* `vsrhost CONFIG` in a process group of its own, its stderr in
 * DIR/make-run-<round>.log; waits until every replica is normal in one
 * view, has executed `op` and they agree on the state digest. */
static pid_t make_run_start(const char *config, int round, uint64_t op)
{
	char log[400];
	snprintf(log, sizeof log, "%s/make-run-%d.log", g_dir, round);
	int e = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int o = open("/dev/null", O_WRONLY | O_CLOEXEC);
	char *const argv[] = {"vsrhost", (char *)config, NULL};
	pid_t pid = spawn_group(g_vsrhost, argv, o, e);
	close(e);
	close(o);
	g_pid[0] = pid; /* check_alive and the exit paths watch the supervisor */
	uint64_t deadline = now_ms() + STARTUP_MS + CATCHUP_MS;
	cluster_view v;
	for (;;) {
		check_alive();
		/* status_of asks only replicas it started; these are the
		 * supervisor's, alive while it is. */
		for (int i = 1; i < N; i++)
			g_pid[i] = pid;
		status_all(&v);
		for (int i = 1; i < N; i++)
			g_pid[i] = 0;
		bool ok = true;
		for (int i = 0; i < N && ok; i++)
			ok = v.up[i] && v.s[i].status == VSR_STATUS_NORMAL && v.s[i].view == v.s[0].view &&
			     v.s[i].executed >= op && v.s[i].executed == v.s[0].executed &&
			     v.s[i].digest == v.s[0].digest;
		if (ok)
			return pid;
		if (now_ms() > deadline)
			fail("start %d: the replicas were not all normal at op %" PRIu64
			     " with equal digests within %d ms (see %s)", round, op,
			     STARTUP_MS + CATCHUP_MS, log);
		poll(NULL, 0, 20); /* next status round */
	}
}

/* Sends `sig` to the supervisor (`group`: to its whole process group, as
 * Ctrl-C in a terminal does) and waits for it. A clean stop (SIGINT,
 * SIGTERM) must end the supervisor and every replica with exit 0. */
static void make_run_stop(pid_t pid, int sig, bool group, int round)
{
	kill(group ? -pid : pid, sig);
	uint64_t deadline = now_ms() + 10000;
	int status;
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ms() > deadline)
			fail("start %d: the supervisor did not exit within 10 s of %s", round,
			     strsignal(sig));
		poll(NULL, 0, 10); /* bounded wait for its exit */
	}
	g_pid[0] = 0;
	if (sig == SIGKILL) {
		kill(-pid, SIGKILL); /* the replicas, if the group signal missed one */
		for (int i = 0; i < N; i++) {
			deadline = now_ms() + 10000;
			while (port_accepts(g_client_port[i])) {
				if (now_ms() > deadline)
					fail("replica %d still listens after kill -9", i + 1);
				poll(NULL, 0, 10); /* until the kernel closed it */
			}
		}
		return;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("start %d: the supervisor exited with status 0x%x after %s", round, status,
		     strsignal(sig));
	char log[400];
	snprintf(log, sizeof log, "%s/make-run-%d.log", g_dir, round);
	char *text = slurp(log);
	int clean = count_lines_with(text, "exited with status 0");
	free(text);
	if (clean != N)
		fail("start %d: %d of %d replicas exited with status 0 after %s (see %s)", round,
		     clean, N, strsignal(sig), log);
	for (int i = 0; i < N; i++)
		if (port_accepts(g_client_port[i]))
			fail("replica %d still accepts connections after the supervisor stopped", i + 1);
}

int scenario_make_run(void)
{
	/* The config this checks is the one `make run` starts. */
	char path[600];
	snprintf(path, sizeof path, "%s/Makefile", g_root);
	char *mk = slurp(path);
	if (strstr(mk, "\nrun:") == NULL || strstr(mk, "/vsrhost config/kv.lua") == NULL)
		fail("%s: `make run` no longer starts vsrhost config/kv.lua: update this test", path);
	free(mk);
	char config[700];
	write_make_run_config(config, sizeof config);
	const int per_round = 100;
	const struct {
		int sig;
		bool group;
		const char *what;
	} stops[] = {
		{SIGINT, true, "Ctrl-C (SIGINT to the process group)"},
		{SIGTERM, false, "SIGTERM to vsrhost"},
		{SIGKILL, true, "kill -9 of every process"},
		{SIGINT, false, "SIGINT to vsrhost"},
	};
	const int rounds = (int)(sizeof stops / sizeof stops[0]);
	mclient m;
	msgpack_sbuffer sb;
	mc_init(&m);
	msgpack_sbuffer_init(&sb);
	uint64_t op = 0;
	for (int round = 0; round <= rounds; round++) {
		pid_t pid = make_run_start(config, round, op);
		if (round == 0)
			mc_register(&m);
		get_keys(&m, &sb, 0, round * per_round);
		if (round > 0)
			note("start %d, after %s: all %d acknowledged writes present, digests equal",
			     round, stops[round - 1].what, round * per_round);
		if (round == rounds) {
			make_run_stop(pid, SIGINT, true, round);
			break;
		}
		put_keys(&m, &sb, round * per_round, (round + 1) * per_round, &op);
		make_run_stop(pid, stops[round].sig, stops[round].group, round);
	}
	mc_free(&m);
	msgpack_sbuffer_destroy(&sb);
	/* Where `make run` keeps its data: config/kv.lua's data_dir, durable. */
	snprintf(path, sizeof path, "%s/data/kv/replica-1/superblock", g_dir);
	struct stat st;
	if (stat(path, &st) != 0)
		fail("%s: missing (%s): is config/kv.lua's cluster durable?", path, strerror(errno));
	note("config/kv.lua (make run): %d writes kept across %d stops and starts", rounds * per_round,
	     rounds);
	return 0;
}
