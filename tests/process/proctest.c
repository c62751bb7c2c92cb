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
 *   supervisor      `vsrhost CONFIG` runs every replica; vsrctl put/get/status
 *                   work against it; SIGINT stops them all (needs --vsrctl)
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
 *                   acknowledged write is read back and the digests agree
 *   corrupt         durable storage: a byte flipped in one replica's log and
 *                   superblock, in another's superblock copy, a data
 *                   directory deleted: each comes back, nothing lost
 *   disk-full       durable storage: one replica's directory on a tiny tmpfs
 *                   fills up: it exits 74 saying so; the others go on
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
 * (session, request) numbers, which is what a retry across a failover is. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <jansson.h>
#include <msgpack.h>

#include "vsr.h"
#include "vsr_wire.h"
#include "vsrc_client.h"

#define N 3
#define STARTUP_MS 15000   /* replicas up and a primary elected */
#define CALL_MS 15000      /* one client call, failovers included */
#define CATCHUP_MS 20000   /* a restarted replica reaches the others */

/* ------------------------------------------------------------------------ */
/* Harness: temporary directory, config, child processes.                   */

static const char *g_vsrhost;
static const char *g_vsrctl;
static const char *g_root;
static char g_dir[256];
static uint64_t g_cluster;
static uint16_t g_replica_port[N], g_client_port[N], g_metrics_port[N];
static pid_t g_pid[N];
static bool g_keep;
static uint64_t g_seed;
static const char *g_durability = "memory";
static char g_mounted[400]; /* a tmpfs this run mounted (disk-full) */
static unsigned g_checkpoint_interval; /* limits.checkpoint_interval; 0: default */
static const char *g_log_format = "text"; /* the config's log_format */
/* auth scenario: the config names these key files, and the test's own
 * client authenticates with the client key. */
static bool g_auth;
static bool g_telemetry; /* metrics scenario: the config names a telemetry script */
static uint8_t g_client_key[VSR_WIRE_KEY_SIZE];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* iptables rules (INPUT, on lo) this run added: removed on every exit. */
#define CUTS_MAX 8
static char g_cuts[CUTS_MAX][64];
static int g_cut_count;
static pthread_mutex_t g_cut_lock = PTHREAD_MUTEX_INITIALIZER;

static void cuts_clear(void)
{
	pthread_mutex_lock(&g_cut_lock);
	for (int i = 0; i < g_cut_count; i++) {
		char cmd[sizeof g_cuts[0] + 64];
		snprintf(cmd, sizeof cmd, "iptables -w 5 -D INPUT %.63s -j DROP 2>/dev/null", g_cuts[i]);
		if (system(cmd) != 0)
			fprintf(stderr, "proctest: could not remove iptables rule: %s\n", g_cuts[i]);
	}
	g_cut_count = 0;
	pthread_mutex_unlock(&g_cut_lock);
}

static void kill_all(void)
{
	cuts_clear();
	for (int i = 0; i < N; i++) {
		if (g_pid[i] > 0) {
			kill(g_pid[i], SIGKILL);
			waitpid(g_pid[i], NULL, 0);
			g_pid[i] = 0;
		}
	}
}

static void remove_dir(void)
{
	if (g_dir[0] == '\0' || g_keep)
		return;
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "proctest: could not remove %s\n", g_dir);
	g_dir[0] = '\0';
}

static void dump_logs(void)
{
	for (int i = 0; i <= N; i++) {
		char path[400];
		if (i == N)
			snprintf(path, sizeof path, "%s/supervisor.log", g_dir);
		else
			snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		fprintf(stderr, "---- %s (last 60 lines)\n", path);
		char *lines[60] = {0};
		char buf[1024];
		unsigned n = 0;
		while (fgets(buf, sizeof buf, f) != NULL) {
			free(lines[n % 60]);
			lines[n % 60] = strdup(buf);
			n++;
		}
		for (unsigned k = n > 60 ? n - 60 : 0; k < n; k++)
			fputs(lines[k % 60], stderr);
		for (unsigned k = 0; k < 60; k++)
			free(lines[k]);
		fclose(f);
	}
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "proctest: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (seed %" PRIu64 ", dir %s)\n", g_seed, g_dir);
	va_end(ap);
	kill_all();
	dump_logs();
	g_keep = true; /* keep the logs of a failure */
	exit(1);
}

static void on_signal(int sig)
{
	(void)sig;
	cuts_clear();
	for (int i = 0; i < N; i++)
		if (g_pid[i] > 0)
			kill(g_pid[i], SIGKILL);
	if (g_mounted[0] != '\0')
		umount2(g_mounted, MNT_DETACH);
	_exit(2);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("proctest: ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

/* Nine distinct free loopback ports: all bound at once, then released. */
static void pick_ports(void)
{
	int fds[3 * N];
	for (int i = 0; i < 3 * N; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof a;
		if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
		    getsockname(fds[i], (struct sockaddr *)&a, &len) != 0)
			fail("cannot find a free port: %s", strerror(errno));
		uint16_t port = ntohs(a.sin_port);
		if (i < N)
			g_replica_port[i] = port;
		else if (i < 2 * N)
			g_client_port[i - N] = port;
		else
			g_metrics_port[i - 2 * N] = port;
	}
	for (int i = 0; i < 3 * N; i++)
		close(fds[i]);
}

static void write_config(const char *statemachine)
{
	char path[400];
	snprintf(path, sizeof path, "%s/cluster.lua", g_dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		fail("cannot write %s: %s", path, strerror(errno));
	fprintf(f, "-- written by proctest, seed %" PRIu64 "\nreturn {\n  cluster = %" PRIu64 ",\n",
		g_seed, g_cluster);
	fprintf(f, "  replicas = {");
	for (int i = 0; i < N; i++)
		fprintf(f, "%s\"127.0.0.1:%u\"", i ? ", " : " ", g_replica_port[i]);
	fprintf(f, " },\n  clients = {");
	for (int i = 0; i < N; i++)
		fprintf(f, "%s\"127.0.0.1:%u\"", i ? ", " : " ", g_client_port[i]);
	fprintf(f, " },\n  metrics = {");
	for (int i = 0; i < N; i++)
		fprintf(f, "%s\"127.0.0.1:%u\"", i ? ", " : " ", g_metrics_port[i]);
	fprintf(f, " },\n  statemachine = \"%s/statemachines/%s\",\n", g_root, statemachine);
	fprintf(f, "  data_dir = \"%s/data\",\n  durability = \"%s\",\n  log_level = \"info\",\n",
		g_dir, g_durability);
	fprintf(f, "  log_format = \"%s\",\n", g_log_format);
	if (g_telemetry) {
		char hooks[400];
		snprintf(hooks, sizeof hooks, "%s/hooks.lua", g_dir);
		FILE *h = fopen(hooks, "w");
		if (h == NULL)
			fail("cannot write %s", hooks);
		/* Every event, one line in telemetry-N.log of its replica. */
		fprintf(h, "return { any = function(e)\n"
			   "  local f = assert(io.open('%s/telemetry-' .. e.replica .. '.log', 'a'))\n"
			   "  f:write(e.event, ' view=', tostring(e.view), ' duration_ms=',\n"
			   "          tostring(e.duration_ms), '\\n')\n"
			   "  f:close()\n"
			   "end }\n", g_dir);
		fclose(h);
		fprintf(f, "  telemetry = \"%s\",\n", hooks);
	}
	if (g_checkpoint_interval)
		fprintf(f, "  limits = { checkpoint_interval = %u },\n", g_checkpoint_interval);
	if (g_auth)
		fprintf(f, "  auth = { replica_key = \"%s/replica.key\", client_key = \"%s/client.key\" },\n",
			g_dir, g_dir);
	fprintf(f, "}\n");
	fclose(f);
}

/* Starts `path` with `argv` as a child that dies with this driver
 * (PR_SET_PDEATHSIG), with its stdout and stderr on `out_fd` and `err_fd`
 * (-1: this process's own). Open them close-on-exec: the child then keeps
 * only its copies as 1 and 2. Returns the child's pid. */
static pid_t spawn(const char *path, char *const argv[], int out_fd, int err_fd)
{
	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127); /* the driver died before prctl took effect */
		if (err_fd >= 0)
			dup2(err_fd, 2);
		if (out_fd >= 0)
			dup2(out_fd, 1);
		execv(path, argv);
		fprintf(stderr, "cannot execute %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	return pid;
}

static void start_replica(int i)
{
	char config[400], log[400], idx[16];
	snprintf(config, sizeof config, "%s/cluster.lua", g_dir);
	snprintf(log, sizeof log, "%s/replica-%d.log", g_dir, i + 1);
	snprintf(idx, sizeof idx, "%d", i + 1);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	char *const argv[] = {"vsrhost", config, "--replica", idx, NULL};
	g_pid[i] = spawn(g_vsrhost, argv, fd, fd);
	if (fd >= 0)
		close(fd);
}

static void kill_replica(int i)
{
	if (g_pid[i] <= 0)
		fail("replica %d is not running", i + 1);
	kill(g_pid[i], SIGKILL);
	waitpid(g_pid[i], NULL, 0);
	g_pid[i] = 0;
}

/* SIGTERM every replica and require a clean exit 0 (all handles closed). */
static void stop_all(void)
{
	for (int i = 0; i < N; i++)
		if (g_pid[i] > 0)
			kill(g_pid[i], SIGTERM);
	uint64_t deadline = now_ms() + 10000;
	for (int i = 0; i < N; i++) {
		while (g_pid[i] > 0) {
			int status;
			pid_t r = waitpid(g_pid[i], &status, WNOHANG);
			if (r == g_pid[i]) {
				g_pid[i] = 0;
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					fail("replica %d did not shut down cleanly on SIGTERM (status 0x%x)",
					     i + 1, status);
				break;
			}
			if (now_ms() > deadline)
				fail("replica %d did not exit within 10 s of SIGTERM", i + 1);
			poll(NULL, 0, 10); /* bounded wait for the child's exit */
		}
	}
}

static void check_alive(void)
{
	for (int i = 0; i < N; i++) {
		if (g_pid[i] <= 0)
			continue;
		int status;
		if (waitpid(g_pid[i], &status, WNOHANG) == g_pid[i]) {
			g_pid[i] = 0;
			fail("replica %d exited unexpectedly (status 0x%x)", i + 1, status);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* A minimal blocking client over the wire layer.                           */

typedef struct mconn {
	int fd;
	vsr_wire_reader rd;
	vsr_wire_conn_auth auth;
} mconn;

typedef struct mclient {
	mconn c[N];
	vsr_wire_config wc;
	vsr_wire_decoded d;
	uint64_t session;
	uint64_t history;   /* of the session (its REGISTER reply's) */
	uint64_t request;   /* last request number used */
	uint8_t target;
	uint64_t view;
} mclient;

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static bool write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void mc_drop(mclient *m, int i)
{
	if (m->c[i].fd >= 0)
		close(m->c[i].fd);
	m->c[i].fd = -1;
	vsr_wire_reader_free(&m->c[i].rd);
}

static int mc_next(mclient *m, uint64_t deadline);

/* Opens connection i (role client or control) if it is not open; with
 * g_auth, completes the HELLO/AUTH exchange before returning. `key`
 * overrides the client key (a test of a wrong one). */
static bool mc_open_key(mclient *m, int i, uint8_t role, const uint8_t *key)
{
	if (m->c[i].fd >= 0)
		return true;
	int fd = tcp_connect(g_client_port[i]);
	if (fd < 0)
		return false;
	mconn *c = &m->c[i];
	vsr_wire_conn_auth_init(&c->auth, key, g_cluster, role, 0);
	vsr_buf b = {0};
	vsr_wire_hello h = {.role = role, .instance = g_seed};
	vsr_wire_conn_auth_send_hello(&c->auth, &b, h);
	bool ok = write_all(fd, b.data, b.len);
	vsr_buf_free(&b);
	if (!ok) {
		close(fd);
		return false;
	}
	c->fd = fd;
	vsr_wire_reader_init(&c->rd, &m->wc, NULL);
	uint64_t deadline = now_ms() + 2000;
	char err[256];
	while (c->fd >= 0 && !(c->auth.peer_hello_seen && vsr_wire_conn_auth_ready(&c->auth))) {
		if (mc_next(m, deadline) != i)
			break;
		if (m->d.type == VSR_WIRE_HELLO) {
			vsr_buf a = {0};
			ok = vsr_wire_conn_auth_peer_hello(&c->auth, &m->d.hello, &a, err, sizeof err) == 0 &&
			     write_all(fd, a.data, a.len);
			vsr_buf_free(&a);
		} else if (m->d.type == VSR_WIRE_AUTH) {
			ok = vsr_wire_conn_auth_peer_auth(&c->auth, &m->d.auth, &c->rd, err, sizeof err) == 0;
		} else {
			ok = false;
		}
		if (!ok)
			break;
	}
	if (c->fd < 0 || !c->auth.peer_hello_seen || !vsr_wire_conn_auth_ready(&c->auth)) {
		if (c->fd >= 0) {
			close(c->fd);
			c->fd = -1;
			vsr_wire_reader_free(&c->rd);
		}
		return false;
	}
	return true;
}

static bool mc_open(mclient *m, int i, uint8_t role)
{
	return mc_open_key(m, i, role, g_auth ? g_client_key : NULL);
}

/* Seals (when authenticated) and writes one frame on connection i. */
static bool mc_write_frame(mclient *m, int i, vsr_buf *b)
{
	if (vsr_wire_conn_auth_seal(&m->c[i].auth, b, 0) != 0)
		fail("cannot seal a frame");
	return write_all(m->c[i].fd, b->data, b->len);
}

static void mc_init(mclient *m)
{
	memset(m, 0, sizeof *m);
	for (int i = 0; i < N; i++)
		m->c[i].fd = -1;
	vsr_wire_config_default(&m->wc, g_cluster, N);
	vsr_wire_decoded_init(&m->d);
}

static void mc_free(mclient *m)
{
	for (int i = 0; i < N; i++)
		mc_drop(m, i);
	vsr_wire_decoded_free(&m->d);
}

/* Waits until `deadline` for one frame on any open connection. Returns the
 * connection index with the frame in m->d, or -1 at the deadline. */
static int mc_next(mclient *m, uint64_t deadline)
{
	for (;;) {
		/* A frame already buffered in a reader comes first. */
		struct pollfd pfd[N];
		int idx[N], n = 0;
		for (int i = 0; i < N; i++) {
			if (m->c[i].fd < 0)
				continue;
			pfd[n] = (struct pollfd){.fd = m->c[i].fd, .events = POLLIN};
			idx[n++] = i;
		}
		uint64_t now = now_ms();
		if (now >= deadline)
			return -1;
		int rc = poll(pfd, (nfds_t)n, (int)(deadline - now));
		if (rc < 0 && errno != EINTR)
			fail("poll: %s", strerror(errno));
		for (int k = 0; k < n && rc > 0; k++) {
			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int i = idx[k];
			/* One frame at a time: read only what completes it. */
			uint8_t buf[4096];
			ssize_t got = recv(m->c[i].fd, buf, sizeof buf, MSG_PEEK);
			if (got <= 0) {
				mc_drop(m, i);
				continue;
			}
			size_t used = 0;
			int fr = vsr_wire_reader_feed(&m->c[i].rd, buf, (size_t)got, &used);
			if (recv(m->c[i].fd, buf, used, 0) != (ssize_t)used)
				fail("recv after peek");
			if (fr < 0) {
				/* A connection whose authentication failed may end
				 * in anything; every other one must be well formed. */
				if (m->c[i].auth.required && !m->c[i].auth.authenticated) {
					mc_drop(m, i);
					continue;
				}
				fail("replica %d sent a malformed frame: %s", i + 1, m->c[i].rd.err);
			}
			if (fr == 1) {
				if (vsr_wire_reader_decode(&m->c[i].rd, &m->d) != 0)
					fail("replica %d sent an undecodable frame: %s", i + 1, m->c[i].rd.err);
				return i;
			}
		}
	}
}

static bool mc_send_request(mclient *m, int i, uint8_t kind, uint64_t number,
			    const uint8_t *op, size_t op_len)
{
	if (!mc_open(m, i, VSR_WIRE_ROLE_CLIENT))
		return false;
	vsr_message q = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
	q.request.kind = kind;
	q.request.session = kind == VSR_REQUEST_REGISTER ? 0 : m->session;
	q.history = kind == VSR_REQUEST_REGISTER ? 0 : m->history;
	q.request.request = number;
	q.request.op = op;
	q.request.op_len = (uint32_t)op_len;
	vsr_buf b = {0};
	if (vsr_wire_encode_message(&b, g_cluster, &q) != 0)
		fail("cannot encode a request");
	bool ok = mc_write_frame(m, i, &b);
	vsr_buf_free(&b);
	if (!ok)
		mc_drop(m, i);
	return ok;
}

typedef struct mresult {
	uint8_t status;
	uint64_t op;
	uint8_t replica;
	uint8_t body[4096];
	uint32_t body_len;
} mresult;

/* Sends (kind, number, op) until a definite answer (OK or ERROR) arrives or
 * CALL_MS passes; NOT_PRIMARY redirects, silence or a dead connection moves
 * on to the next replica. Every copy carries the same numbers, so the
 * cluster's client table must apply it at most once. Returns false on
 * timeout. `attempt_ms` is how long one copy is given. */
static bool mc_call_number(mclient *m, uint8_t kind, uint64_t number, const uint8_t *op,
			   size_t op_len, uint32_t attempt_ms, mresult *out)
{
	uint64_t deadline = now_ms() + CALL_MS;
	while (now_ms() < deadline) {
		check_alive();
		int t = m->target;
		if (!mc_send_request(m, t, kind, number, op, op_len)) {
			m->target = (uint8_t)((t + 1) % N);
			/* Refused at once: the replica is down. Give the next
			 * one a moment instead of spinning. */
			poll(NULL, 0, 5);
			continue;
		}
		uint64_t attempt_end = now_ms() + attempt_ms;
		bool resend = false;
		while (!resend) {
			int from = mc_next(m, attempt_end < deadline ? attempt_end : deadline);
			if (from < 0) {
				m->target = (uint8_t)((t + 1) % N);
				break;
			}
			if (m->d.type != VSR_MSG_REPLY)
				continue; /* HELLO */
			const vsr_message *r = &m->d.message;
			if (r->request.request != number)
				continue; /* an answer to an older copy */
			if (kind == VSR_REQUEST_OP && r->request.session != m->session)
				continue;
			if (r->view > m->view)
				m->view = r->view;
			switch (r->status) {
			case VSR_REPLY_OK:
			case VSR_REPLY_ERROR:
			case VSR_REPLY_SCRIPT_ERROR:
			case VSR_REPLY_HISTORY: /* definite: the session's history is gone */
				out->status = r->status;
				out->op = r->reply_op;
				out->replica = (uint8_t)from;
				out->body_len = r->body_len < sizeof out->body ? r->body_len : sizeof out->body;
				if (r->body_len > 0)
					memcpy(out->body, r->body, out->body_len);
				if (kind == VSR_REQUEST_REGISTER) {
					m->session = r->request.session;
					m->history = r->history;
				}
				m->target = (uint8_t)from;
				return true;
			case VSR_REPLY_NOT_PRIMARY: {
				uint8_t hint = vsr_primary_of(m->view, N);
				if (hint == from) {
					/* The next primary is not ready yet: wait for
					 * the rest of this attempt, then ask again. */
					m->target = hint;
					continue;
				}
				m->target = hint;
				resend = true;
				break;
			}
			case VSR_REPLY_BUSY:
				m->target = (uint8_t)from;
				continue;
			case VSR_REPLY_EVICTED:
				fail("session %" PRIu64 " evicted", m->session);
			case VSR_REPLY_REJECTED:
				fail("request rejected: larger than the batch limit");
			default:
				continue;
			}
		}
	}
	return false;
}

static void mc_register(mclient *m)
{
	mresult r;
	uint64_t nonce = g_seed ^ now_ms() ^ 0x5eed;
	if (!mc_call_number(m, VSR_REQUEST_REGISTER, nonce, NULL, 0, 300, &r) ||
	    r.status != VSR_REPLY_OK || m->session == 0)
		fail("could not register a session");
}

static void mc_op(mclient *m, const msgpack_sbuffer *op, mresult *r, const char *what)
{
	m->request++;
	if (!mc_call_number(m, VSR_REQUEST_OP, m->request, (const uint8_t *)op->data, op->size,
			    300, r))
		fail("%s: no answer within %d ms", what, CALL_MS);
	if (r->status != VSR_REPLY_OK)
		fail("%s: the state machine refused it: %.*s", what, (int)r->body_len, r->body);
}

/* Operations are msgpack maps naming the operation in `op`
 * (docs/statemachines.md). */
static void pack_cstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* kv.lua: {op = name, key = key [, value = value]} */
static void op_kv(msgpack_sbuffer *sb, const char *name, const char *key, const char *value)
{
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, value != NULL ? 3 : 2);
	pack_cstr(&pk, "op");
	pack_cstr(&pk, name);
	pack_cstr(&pk, "key");
	pack_cstr(&pk, key);
	if (value != NULL) {
		pack_cstr(&pk, "value");
		pack_cstr(&pk, value);
	}
}

/* counter.lua: {op = "add", name = counter, delta = d} or
 * {op = "get", name = counter}; both answer {value = V}. */
static void op_counter(msgpack_sbuffer *sb, const char *name, const char *counter,
		       bool with_delta, int64_t delta)
{
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, with_delta ? 3 : 2);
	pack_cstr(&pk, "op");
	pack_cstr(&pk, name);
	pack_cstr(&pk, "name");
	pack_cstr(&pk, counter);
	if (with_delta) {
		pack_cstr(&pk, "delta");
		msgpack_pack_int64(&pk, delta);
	}
}

static bool body_contains(const mresult *r, const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i + n <= r->body_len; i++)
		if (memcmp(r->body + i, s, n) == 0)
			return true;
	return false;
}

/* The first integer found in a msgpack reply (the counter's value, however
 * the state machine wraps it). */
static bool body_int(const mresult *r, int64_t *out)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	bool ok = false;
	if (msgpack_unpack_next(&u, (const char *)r->body, r->body_len, NULL) ==
	    MSGPACK_UNPACK_SUCCESS) {
		msgpack_object o = u.data;
		/* Walk down: integer, or an array / map holding one. */
		for (int depth = 0; depth < 4 && !ok; depth++) {
			if (o.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
				*out = (int64_t)o.via.u64;
				ok = true;
			} else if (o.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
				*out = o.via.i64;
				ok = true;
			} else if (o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size > 0) {
				o = o.via.array.ptr[o.via.array.size - 1];
			} else if (o.type == MSGPACK_OBJECT_MAP && o.via.map.size > 0) {
				o = o.via.map.ptr[o.via.map.size - 1].val;
			} else {
				break;
			}
		}
	}
	msgpack_unpacked_destroy(&u);
	return ok;
}

/* ------------------------------------------------------------------------ */
/* Status.                                                                  */

/* Asks replica i for its status over a control connection. */
static bool status_of(int i, vsr_wire_status *out)
{
	if (g_pid[i] <= 0)
		return false;
	mclient m;
	mc_init(&m);
	bool ok = mc_open(&m, i, VSR_WIRE_ROLE_CONTROL);
	vsr_wire_status_request q = {.nonce = now_ms()};
	if (ok) {
		vsr_buf b = {0};
		vsr_wire_encode_status_request(&b, g_cluster, &q);
		ok = mc_write_frame(&m, i, &b);
		vsr_buf_free(&b);
	}
	bool got = false;
	uint64_t deadline = now_ms() + 1000;
	while (ok && !got) {
		int from = mc_next(&m, deadline);
		if (from < 0)
			break;
		if (m.d.type == VSR_WIRE_STATUS_REPLY && m.d.status.nonce == q.nonce) {
			*out = m.d.status;
			got = true;
		}
	}
	mc_free(&m);
	return got;
}

typedef struct cluster_view {
	bool up[N];
	vsr_wire_status s[N];
} cluster_view;

static void status_all(cluster_view *v)
{
	for (int i = 0; i < N; i++)
		v->up[i] = status_of(i, &v->s[i]);
}

/* The primary when every live replica (and at least a quorum) is normal in
 * one view and agrees on who leads it; -1 otherwise. */
static int settled_primary(const cluster_view *v)
{
	int up = 0, primary = -1;
	uint64_t view = 0;
	for (int i = 0; i < N; i++) {
		if (g_pid[i] <= 0)
			continue;
		if (!v->up[i] || v->s[i].status != VSR_STATUS_NORMAL)
			return -1;
		if (up == 0) {
			view = v->s[i].view;
			primary = v->s[i].primary;
		} else if (v->s[i].view != view) {
			return -1;
		}
		up++;
	}
	if (up < (int)vsr_quorum(N) || primary < 0 || g_pid[primary] <= 0)
		return -1;
	return primary;
}

static int wait_primary(uint32_t timeout_ms, const char *what)
{
	uint64_t deadline = now_ms() + timeout_ms;
	cluster_view v;
	for (;;) {
		check_alive();
		status_all(&v);
		int p = settled_primary(&v);
		if (p >= 0)
			return p;
		if (now_ms() > deadline)
			fail("%s: no settled primary within %u ms", what, timeout_ms);
		poll(NULL, 0, 20); /* next status round */
	}
}

/* Every live replica normal, executed >= op, and all with equal digests at
 * equal executed numbers. */
static void wait_converged(uint64_t op, uint32_t timeout_ms, const char *what)
{
	uint64_t deadline = now_ms() + timeout_ms;
	cluster_view v;
	for (;;) {
		check_alive();
		status_all(&v);
		bool ok = settled_primary(&v) >= 0;
		for (int i = 0; i < N && ok; i++) {
			if (g_pid[i] <= 0)
				continue;
			ok = v.up[i] && v.s[i].executed >= op;
		}
		int first = -1;
		for (int i = 0; i < N && ok; i++) {
			if (g_pid[i] <= 0)
				continue;
			if (first < 0)
				first = i;
			else
				ok = v.s[i].executed == v.s[first].executed &&
				     v.s[i].digest == v.s[first].digest;
		}
		if (ok)
			return;
		if (now_ms() > deadline) {
			for (int i = 0; i < N; i++)
				if (v.up[i])
					fprintf(stderr, "  replica %d: %s view %" PRIu64 " op %" PRIu64
						" commit %" PRIu64 " executed %" PRIu64 " digest %016" PRIx64 "\n",
						i + 1, vsr_status_name((enum vsr_status)v.s[i].status),
						v.s[i].view, v.s[i].op, v.s[i].commit, v.s[i].executed,
						v.s[i].digest);
			fail("%s: replicas did not converge on op %" PRIu64 " within %u ms", what,
			     op, timeout_ms);
		}
		poll(NULL, 0, 20); /* next status round */
	}
}

/* True when a connection to `port` succeeds (it is closed at once): a
 * process listens there. */
static bool port_accepts(uint16_t port)
{
	int fd = tcp_connect(port);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Waits until every port of every replica accepts: the processes are up. */
static void wait_ports(int only)
{
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (int i = 0; i < N; i++) {
		if ((only >= 0 && i != only) || g_pid[i] <= 0)
			continue;
		for (;;) {
			check_alive();
			if (port_accepts(g_client_port[i]))
				break;
			if (now_ms() > deadline)
				fail("replica %d: client port %u never accepted", i + 1, g_client_port[i]);
			poll(NULL, 0, 10); /* next connect attempt */
		}
	}
}

/* True once every replica's client port accepts; false when a replica
 * exited with EX_UNAVAILABLE (69): it could not bind a port, which another
 * process took between pick_ports and the replica's start (ports picked
 * free are only free until someone binds or dials from them). */
static bool wait_ports_or_taken(void)
{
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (int i = 0; i < N; i++) {
		for (;;) {
			int status;
			if (waitpid(g_pid[i], &status, WNOHANG) == g_pid[i]) {
				g_pid[i] = 0;
				if (WIFEXITED(status) && WEXITSTATUS(status) == 69)
					return false;
				fail("replica %d exited at startup (status 0x%x)", i + 1, status);
			}
			if (port_accepts(g_client_port[i]))
				break;
			if (now_ms() > deadline)
				fail("replica %d: client port %u never accepted", i + 1, g_client_port[i]);
			poll(NULL, 0, 10); /* next connect attempt */
		}
	}
	return true;
}

static void cluster_start(const char *statemachine)
{
	for (int attempt = 1;; attempt++) {
		pick_ports();
		write_config(statemachine);
		for (int i = 0; i < N; i++)
			start_replica(i);
		if (wait_ports_or_taken())
			return;
		if (attempt == 3)
			fail("three clusters in a row found a port taken");
		note("a port was taken before a replica could bind it; new ports");
		kill_all();
		/* The replicas that did start left memory-storage markers: the
		 * next cluster must be new, not a restart of this one. */
		char cmd[400];
		snprintf(cmd, sizeof cmd, "rm -rf '%s/data'", g_dir);
		if (system(cmd) != 0)
			fail("cannot clear %s/data", g_dir);
	}
}

/* ------------------------------------------------------------------------ */
/* Scenarios.                                                               */

#define KEYS 20

/* The key numbered k and the value written to it in this run (the seed in
 * the value tells this run's writes from any other's). */
static void key_value(int k, char key[32], char val[64])
{
	snprintf(key, 32, "k%d", k);
	snprintf(val, 64, "v%d-%" PRIu64, k, g_seed);
}

static void put_keys(mclient *m, msgpack_sbuffer *sb, int from, int to, uint64_t *last_op)
{
	for (int k = from; k < to; k++) {
		char key[32], val[64];
		key_value(k, key, val);
		op_kv(sb, "put", key, val);
		mresult r;
		mc_op(m, sb, &r, key);
		*last_op = r.op;
	}
}

static void get_keys(mclient *m, msgpack_sbuffer *sb, int from, int to)
{
	for (int k = from; k < to; k++) {
		char key[32], val[64];
		key_value(k, key, val);
		op_kv(sb, "get", key, NULL);
		mresult r;
		mc_op(m, sb, &r, key);
		if (!body_contains(&r, val))
			fail("get %s: acknowledged value %s is missing (reply of %u bytes from replica %u)",
			     key, val, r.body_len, r.replica + 1u);
	}
}

/* Every client scenario starts the same way: a new cluster running
 * `statemachine`, a primary elected, one registered session and an empty
 * buffer to pack its ops into. Returns the primary's index. */
static int scenario_open(const char *statemachine, mclient *m, msgpack_sbuffer *sb)
{
	cluster_start(statemachine);
	int p = wait_primary(STARTUP_MS, "startup");
	mc_init(m);
	msgpack_sbuffer_init(sb);
	mc_register(m);
	return p;
}

/* ... and ends the same way: the session gone, every replica required to
 * shut down cleanly on SIGTERM. */
static void scenario_close(mclient *m, msgpack_sbuffer *sb)
{
	msgpack_sbuffer_destroy(sb);
	mc_free(m);
	stop_all();
}

static int scenario_replicate(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	note("primary is replica %d", p + 1);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS, &last);
	note("%d writes acknowledged, last at op %" PRIu64, KEYS, last);
	wait_converged(last, CATCHUP_MS, "replication");
	note("all %d replicas executed op %" PRIu64 " with equal digests", N, last);
	get_keys(&m, &sb, 0, KEYS);
	scenario_close(&m, &sb);
	note("all replicas shut down cleanly on SIGTERM");
	return 0;
}

static int failover_common(bool restart)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	vsr_wire_status before;
	if (!status_of(p, &before))
		fail("no status from primary %d", p + 1);
	note("primary %d in view %" PRIu64 "; %d writes acknowledged; kill -9 of the primary", p + 1,
	     before.view, KEYS / 2);
	uint64_t t0 = now_ms();
	kill_replica(p);
	put_keys(&m, &sb, KEYS / 2, KEYS / 2 + 1, &last);
	note("first write after the kill acknowledged in %" PRIu64 " ms", now_ms() - t0);
	put_keys(&m, &sb, KEYS / 2 + 1, KEYS, &last);
	int q = wait_primary(STARTUP_MS, "after failover");
	vsr_wire_status after;
	if (!status_of(q, &after))
		fail("no status from the new primary %d", q + 1);
	if (q == p || after.view <= before.view)
		fail("no new primary: replica %d in view %" PRIu64, q + 1, after.view);
	note("new primary %d in view %" PRIu64, q + 1, after.view);
	get_keys(&m, &sb, 0, KEYS);
	note("all %d acknowledged writes are readable through the new primary", KEYS);
	if (restart) {
		start_replica(p);
		wait_ports(p);
		note("replica %d restarted (memory storage: recovering)", p + 1);
		wait_converged(last, CATCHUP_MS, "catch-up");
		vsr_wire_status st;
		if (!status_of(p, &st))
			fail("no status from the restarted replica");
		note("replica %d caught up: %s, view %" PRIu64 ", executed %" PRIu64, p + 1,
		     vsr_status_name((enum vsr_status)st.status), st.view, st.executed);
		/* And it takes part again: one more write replicates to it. */
		put_keys(&m, &sb, 0, 1, &last);
		wait_converged(last, CATCHUP_MS, "after catch-up");
	}
	scenario_close(&m, &sb);
	return 0;
}

/* The primary is killed and restarted at once, before the others have
 * noticed (what a supervisor with an immediate restart does). The restarted
 * replica has amnesia and is still the primary of the current view in the
 * others' eyes: the cluster must move on to a new view, bring it back, and
 * lose no acknowledged write. */
static int scenario_quick_restart(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	note("kill -9 of primary %d and immediate restart", p + 1);
	kill_replica(p);
	start_replica(p);
	wait_ports(p);
	put_keys(&m, &sb, KEYS / 2, KEYS, &last);
	note("%d more writes acknowledged after the restart", KEYS / 2);
	get_keys(&m, &sb, 0, KEYS);
	wait_converged(last, CATCHUP_MS, "after the quick restart");
	int q = wait_primary(STARTUP_MS, "after the quick restart");
	note("every replica normal again, primary %d, all %d writes readable", q + 1, KEYS);
	scenario_close(&m, &sb);
	return 0;
}

/* The one counter the dedup scenario increments. */
#define COUNTER_NAME "retried"

static int64_t counter_value(mclient *m, msgpack_sbuffer *sb)
{
	op_counter(sb, "get", COUNTER_NAME, false, 0);
	mresult r;
	mc_op(m, sb, &r, "counter get");
	int64_t v;
	if (!body_int(&r, &v))
		fail("counter get: no integer in the reply (%u bytes)", r.body_len);
	return v;
}

static int scenario_dedup(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("counter.lua", &m, &sb);

	/* 1. The reply is lost: the increment committed, the client never
	 * heard. It retries with the same numbers after a failover. */
	op_counter(&sb, "add", COUNTER_NAME, true, 1);
	mresult first;
	mc_op(&m, &sb, &first, "add 1");
	uint64_t number = m.request;
	note("add 1 committed at op %" PRIu64 " (request %" PRIu64 "); kill -9 of primary %d",
	     first.op, number, p + 1);
	kill_replica(p);
	mresult again;
	if (!mc_call_number(&m, VSR_REQUEST_OP, number, (const uint8_t *)sb.data, sb.size, 300,
			    &again))
		fail("retry of request %" PRIu64 " got no answer", number);
	if (again.status != VSR_REPLY_OK || again.op != first.op ||
	    again.body_len != first.body_len || memcmp(again.body, first.body, first.body_len) != 0)
		fail("the retry was not answered with the stored reply (op %" PRIu64 " vs %" PRIu64 ")",
		     again.op, first.op);
	int64_t v = counter_value(&m, &sb);
	if (v != 1)
		fail("counter is %" PRId64 " after one increment retried across a failover", v);
	note("retry answered from the client table (op %" PRIu64 "), counter = 1", again.op);

	/* 2. The primary dies with the request in flight: it may or may not
	 * have committed. Retrying must give exactly one application. */
	p = wait_primary(STARTUP_MS, "after first failover");
	for (int i = 0; i < N; i++)
		if (g_pid[i] <= 0)
			start_replica(i);
	wait_ports(-1);
	p = wait_primary(STARTUP_MS, "after restart");
	op_counter(&sb, "add", COUNTER_NAME, true, 1);
	m.request++;
	number = m.request;
	m.target = (uint8_t)p;
	if (!mc_send_request(&m, p, VSR_REQUEST_OP, number, (const uint8_t *)sb.data, sb.size))
		fail("cannot send to primary %d", p + 1);
	kill_replica(p);
	note("add 1 (request %" PRIu64 ") sent to primary %d, which was killed at once", number, p + 1);
	if (!mc_call_number(&m, VSR_REQUEST_OP, number, (const uint8_t *)sb.data, sb.size, 300,
			    &again) || again.status != VSR_REPLY_OK)
		fail("the in-flight increment was never acknowledged");
	v = counter_value(&m, &sb);
	if (v != 2)
		fail("counter is %" PRId64 ", expected exactly 2", v);
	note("counter = 2 after the in-flight retry: applied exactly once");
	scenario_close(&m, &sb);
	return 0;
}

/* Memory storage, the whole cluster killed and restarted: every replica
 * starts unjoined, so together they begin a new history (#7 finding 1, in
 * real processes). A client of the old history gets the definite HISTORY
 * answer for its session, never a collision with a new session of the same
 * number; registering again works, and the old data is gone, as it must be
 * in memory mode. */
static int scenario_history(void)
{
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 3, &last);
	uint64_t old_session = m.session, old_history = m.history;
	if (old_history == 0)
		fail("the REGISTER reply named no history");
	note("session %" PRIu64 " of history %016" PRIx64 ": 3 writes; kill -9 of every replica",
	     old_session, old_history);
	for (int i = 0; i < N; i++)
		kill_replica(i);
	for (int i = 0; i < N; i++)
		start_replica(i);
	wait_ports(-1);
	int p = wait_primary(STARTUP_MS, "after the whole cluster restarted");
	note("replica %d leads again", p + 1);
	op_kv(&sb, "put", "after-reset", "x");
	m.request++;
	mresult r;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &r))
		fail("the old session's request got no answer");
	if (r.status != VSR_REPLY_HISTORY)
		fail("the old session's request got status %u, not HISTORY (%u)", r.status,
		     VSR_REPLY_HISTORY);
	note("the old session's request: HISTORY (not applied)");
	mc_register(&m);
	m.request = 0;
	if (m.history == 0 || m.history == old_history)
		fail("the new session's history %016" PRIx64 " is not a new one", m.history);
	note("registered again: session %" PRIu64 " of history %016" PRIx64 "%s", m.session,
	     m.history, m.session == old_session ? " (the same number as the old session)" : "");
	put_keys(&m, &sb, 3, 4, &last);
	get_keys(&m, &sb, 3, 4);
	char key[32], val[64];
	key_value(0, key, val);
	op_kv(&sb, "get", key, NULL);
	m.request++;
	if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size, 300,
			    &r))
		fail("get %s: no answer", key);
	if (r.status == VSR_REPLY_OK && body_contains(&r, val))
		fail("get %s: a value of the old history is still there", key);
	note("the new history works; the old one's data is gone (memory storage)");
	scenario_close(&m, &sb);
	return 0;
}

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

static int scenario_watchdog(void)
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

static int scenario_sandbox(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("../spec/fixtures/evil.lua", &m, &sb);
	note("primary is replica %d", p + 1);
	uint64_t last = hostile_round(&m, &sb, "three replicas");
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

/* Sends `len` bytes on a fresh connection to port and requires the replica
 * to close it (EOF or reset) within a deadline. */
static void garbage_send(uint16_t port, const void *data, size_t len, const char *what)
{
	int fd = tcp_connect(port);
	if (fd < 0)
		fail("%s: port %u refused the connection", what, port);
	(void)write_all(fd, data, len); /* a reset mid-way is an acceptable answer */
	uint64_t deadline = now_ms() + 5000;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint64_t now = now_ms();
		if (now > deadline)
			fail("%s: port %u kept a connection that sent garbage", what, port);
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		uint8_t buf[4096];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break; /* closed by the replica */
		/* Its HELLO arrives first; keep reading until the close. */
	}
	close(fd);
}

static int scenario_garbage(void)
{
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 5, &last);

	srandom((unsigned)g_seed);
	uint8_t noise[8192];
	for (size_t i = 0; i < sizeof noise; i++)
		noise[i] = (uint8_t)random();
	/* A valid header announcing a body beyond any limit. */
	uint8_t huge[VSR_WIRE_HEADER_SIZE];
	{
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		memcpy(huge, b.data, sizeof huge);
		vsr_buf_free(&b);
		huge[8] = huge[9] = huge[10] = huge[11] = 0xff; /* header checksum now wrong too */
	}
	/* A HELLO followed by a frame whose body checksum is wrong. */
	vsr_buf corrupt = {0};
	{
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
		vsr_wire_encode_hello(&corrupt, g_cluster, &h);
		size_t at = corrupt.len;
		vsr_message q = {.type = VSR_MSG_REQUEST};
		q.request.kind = VSR_REQUEST_OP;
		q.request.session = m.session;
		q.request.request = 1;
		q.request.op = (const uint8_t *)"xxxx";
		q.request.op_len = 4;
		vsr_wire_encode_message(&corrupt, g_cluster, &q);
		corrupt.data[corrupt.len - 1] ^= 0x55;
		(void)at;
	}
	/* A well-formed REQUEST before any HELLO. */
	vsr_buf early = {0};
	{
		vsr_message q = {.type = VSR_MSG_REQUEST};
		q.request.kind = VSR_REQUEST_REGISTER;
		q.request.request = 7;
		vsr_wire_encode_message(&early, g_cluster, &q);
	}
	/* On the replica port: a HELLO claiming to be the replica itself. */
	for (int i = 0; i < N; i++) {
		uint16_t ports[2] = {g_replica_port[i], g_client_port[i]};
		for (int k = 0; k < 2; k++) {
			garbage_send(ports[k], noise, sizeof noise, "random bytes");
			garbage_send(ports[k], huge, sizeof huge, "bad header");
			garbage_send(ports[k], corrupt.data, corrupt.len, "corrupt body");
			garbage_send(ports[k], early.data, early.len, "frame before HELLO");
		}
		vsr_buf self = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = (uint8_t)i};
		vsr_wire_encode_hello(&self, g_cluster, &h);
		garbage_send(g_replica_port[i], self.data, self.len, "HELLO impersonating the replica");
		vsr_buf_free(&self);
	}
	vsr_buf_free(&corrupt);
	vsr_buf_free(&early);
	note("every port of every replica closed each garbage connection");

	put_keys(&m, &sb, 5, KEYS, &last);
	get_keys(&m, &sb, 0, KEYS);
	wait_converged(last, CATCHUP_MS, "after garbage");
	cluster_view v;
	status_all(&v);
	for (int i = 0; i < N; i++) {
		if (!v.up[i] || v.s[i].frames_dropped == 0)
			fail("replica %d does not count the refused frames", i + 1);
		note("replica %d: %" PRIu64 " frames refused, still serving", i + 1, v.s[i].frames_dropped);
	}
	scenario_close(&m, &sb);
	return 0;
}

/* Runs vsrctl with `args` (NULL-terminated) and captures its stdout.
 * vsrctl bounds its own calls (-t), so this returns in bounded time. */
static int run_vsrctl(char *out, size_t out_len, const char *const *args)
{
	char config[400];
	snprintf(config, sizeof config, "%s/cluster.lua", g_dir);
	const char *argv[16] = {"vsrctl", "-c", config, "-t", "10000"};
	int argc = 5;
	for (int i = 0; args[i] != NULL && argc < 15; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	int fds[2];
	if (pipe(fds) != 0)
		fail("pipe: %s", strerror(errno));
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	pid_t pid = spawn(g_vsrctl, (char *const *)argv, fds[1], -1);
	close(fds[1]);
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fds[0], out + have, out_len - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		if (have == out_len - 1)
			break;
	}
	out[have] = '\0';
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

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
static int scenario_supervisor(void)
{
	if (g_vsrctl == NULL)
		fail("the supervisor scenario needs --vsrctl PATH");
	pick_ports();
	write_config("kv.lua");
	char config[400], log[400], outp[400];
	snprintf(config, sizeof config, "%s/cluster.lua", g_dir);
	snprintf(log, sizeof log, "%s/supervisor.log", g_dir);
	snprintf(outp, sizeof outp, "%s/supervisor.out", g_dir);
	int e = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	/* The supervisor's own children die with it (it sets that up). */
	char *const argv[] = {"vsrhost", config, NULL};
	pid_t pid = spawn(g_vsrhost, argv, o, e);
	if (e >= 0)
		close(e);
	if (o >= 0)
		close(o);
	g_pid[0] = pid; /* slot 0 tracks the supervisor in this scenario */
	char out[8192];
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (;;) {
		check_alive();
		int rc = run_vsrctl(out, sizeof out, (const char *const[]){"status", NULL});
		if (rc == 0 && count_lines_with(out, "normal") == N)
			break;
		if (now_ms() > deadline)
			fail("vsrctl status never showed %d normal replicas:\n%s", N, out);
		poll(NULL, 0, 50); /* next status round */
	}
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
	deadline = now_ms() + CATCHUP_MS;
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
	kill(pid, SIGINT);
	deadline = now_ms() + 10000;
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
	note("SIGINT stopped the supervisor and every replica (exit 0)");
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int scenario_failover_bench(int trials)
{
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 1, &last);
	uint64_t *ms = calloc((size_t)trials, sizeof *ms);
	for (int t = 0; t < trials; t++) {
		wait_converged(last, CATCHUP_MS, "before trial");
		int p = wait_primary(STARTUP_MS, "before trial");
		m.target = (uint8_t)p;
		uint64_t t0 = now_ms();
		kill_replica(p);
		/* A short attempt so the client's own patience adds little. */
		char key[32], val[64];
		key_value(t, key, val);
		op_kv(&sb, "put", key, val);
		m.request++;
		mresult r;
		if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				    50, &r) || r.status != VSR_REPLY_OK)
			fail("trial %d: no acknowledged write after the failover", t);
		ms[t] = now_ms() - t0;
		last = r.op;
		note("trial %d: killed primary %d, write acknowledged by replica %u after %" PRIu64 " ms",
		     t + 1, p + 1, r.replica + 1u, ms[t]);
		start_replica(p);
		wait_ports(p);
	}
	qsort(ms, (size_t)trials, sizeof *ms, cmp_u64);
	uint64_t median = trials % 2 ? ms[trials / 2] : (ms[trials / 2 - 1] + ms[trials / 2]) / 2;
	printf("failover over %d trials: median %" PRIu64 " ms, min %" PRIu64 " ms, max %" PRIu64 " ms\n",
	       trials, median, ms[0], ms[trials - 1]);
	free(ms);
	scenario_close(&m, &sb);
	return 0;
}

/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Metrics.                                                                 */

/* GET `path` from replica i's metrics listener into `out`; returns the HTTP
 * status, or 0 when no complete answer came. */
static int http_get(int i, const char *path, char *out, size_t cap)
{
	out[0] = '\0';
	int fd = tcp_connect(g_metrics_port[i]);
	if (fd < 0)
		return 0;
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (!write_all(fd, req, (size_t)n)) {
		close(fd);
		return 0;
	}
	size_t len = 0;
	uint64_t deadline = now_ms() + 5000;
	while (len + 1 < cap && now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t r = read(fd, out + len, cap - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	out[len] = '\0';
	int status = 0;
	if (sscanf(out, "HTTP/1.1 %d", &status) != 1)
		return 0;
	return status;
}

/* The value of the first sample of `name` ("name{...} value") in a scrape. */
static bool metric_value(const char *text, const char *name, uint64_t *out)
{
	size_t len = strlen(name);
	for (const char *p = text; (p = strstr(p, name)) != NULL; p += len) {
		if ((p != text && p[-1] != '\n') || (p[len] != '{' && p[len] != ' '))
			continue;
		const char *sp = strchr(p, ' ');
		if (sp == NULL)
			return false;
		*out = strtoull(sp + 1, NULL, 10);
		return true;
	}
	return false;
}

/* Scrapes replica i, checks the exposition with promtool, returns the body. */
static const char *scrape(int i, char *buf, size_t cap)
{
	int status = http_get(i, "/metrics", buf, cap);
	if (status != 200)
		fail("replica %d: GET /metrics answered %d", i + 1, status);
	const char *body = strstr(buf, "\r\n\r\n");
	if (body == NULL)
		fail("replica %d: /metrics answer without a body", i + 1);
	body += 4;
	char path[400], cmd[1000];
	snprintf(path, sizeof path, "%s/metrics-%d.txt", g_dir, i + 1);
	FILE *f = fopen(path, "w");
	if (f == NULL || fputs(body, f) < 0 || fclose(f) != 0)
		fail("cannot write %s", path);
	snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s.check' 2>&1", path, path);
	int rc = system(cmd);
	if (rc != 0) {
		snprintf(cmd, sizeof cmd, "cat '%s.check' >&2", path);
		(void)!system(cmd);
		fail("replica %d: promtool check metrics failed (exit 0x%x; is the Debian "
		     "package prometheus installed? make deps installs it)", i + 1, rc);
	}
	return body;
}

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

static int scenario_metrics(void)
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
/* Authentication.                                                          */

/* Runs `vsrhost keygen path`; the key must then load. */
static void keygen(const char *name, uint8_t key[VSR_WIRE_KEY_SIZE])
{
	char path[400], err[256];
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	char *const argv[] = {"vsrhost", "keygen", path, NULL};
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pid_t pid = spawn(g_vsrhost, argv, devnull, -1);
	close(devnull);
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("vsrhost keygen %s failed (status 0x%x)", path, status);
	if (vsr_wire_key_load(path, key, err, sizeof err) != 0)
		fail("the key vsrhost keygen wrote does not load: %s", err);
}

/* Reads connection fd until the replica closes it (or 5 s pass) and tells
 * what came: whether any REPLY did, and the text of a CLOSE. */
static bool drain_until_closed(int fd, vsr_wire_reader *rd, bool *got_reply, char *close_text,
			       size_t close_len)
{
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	*got_reply = false;
	close_text[0] = '\0';
	uint64_t deadline = now_ms() + 5000;
	bool closed = false;
	while (!closed && now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		uint8_t buf[4096];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0) {
			closed = true;
			break;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			size_t used = 0;
			int fr = vsr_wire_reader_feed(rd, buf + off, (size_t)n - off, &used);
			off += used;
			if (fr != 1)
				break;
			if (vsr_wire_reader_decode(rd, &d) != 0)
				break;
			if (d.type == VSR_MSG_REPLY)
				*got_reply = true;
			if (d.type == VSR_WIRE_CLOSE)
				snprintf(close_text, close_len, "%s", d.close.text);
		}
	}
	vsr_wire_decoded_free(&d);
	return closed;
}

/* Connects to `port`, sends `frames` (freed), and drains the connection
 * until the replica closes it: false when it stays open. */
static bool send_until_closed(uint16_t port, vsr_buf *frames, bool *got_reply, char *close_text,
			      size_t close_len)
{
	int fd = tcp_connect(port);
	bool ok = fd >= 0 && write_all(fd, frames->data, frames->len);
	vsr_buf_free(frames);
	if (!ok)
		fail("cannot reach port %u", port);
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, g_cluster, N);
	vsr_wire_reader rd;
	vsr_wire_reader_init(&rd, &wc, NULL);
	bool closed = drain_until_closed(fd, &rd, got_reply, close_text, close_len);
	vsr_wire_reader_free(&rd);
	close(fd);
	return closed;
}

/* A REQUEST registering a session, as a client without the key would send. */
static void append_register(vsr_buf *b)
{
	vsr_message q = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
	q.request.kind = VSR_REQUEST_REGISTER;
	q.request.request = 1;
	if (vsr_wire_encode_message(b, g_cluster, &q) != 0)
		fail("cannot encode a request");
}

static uint64_t scrape_value(int i, const char *name)
{
	static char buf[1 << 20];
	uint64_t v = 0;
	if (!metric_value(scrape(i, buf, sizeof buf), name, &v))
		fail("replica %d exports no %s", i + 1, name);
	return v;
}

static int scenario_auth(void)
{
	uint8_t replica_key[VSR_WIRE_KEY_SIZE], wrong[VSR_WIRE_KEY_SIZE];
	keygen("replica.key", replica_key);
	keygen("client.key", g_client_key);
	keygen("wrong.key", wrong);
	g_auth = true;
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	wait_converged(last, CATCHUP_MS, "replication with authentication");
	note("keys from vsrhost keygen; primary %d; %d authenticated writes replicated", p + 1,
	     KEYS / 2);
	vsr_wire_status before;
	if (!status_of(p, &before))
		fail("no status from the primary");

	/* 1. No key: HELLO without a nonce, then a request. */
	{
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .instance = 1};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		append_register(&b);
		bool reply;
		char text[300];
		if (!send_until_closed(g_client_port[p], &b, &reply, text, sizeof text))
			fail("a connection without the key was not closed");
		if (reply)
			fail("a connection without the key got a reply");
		note("no key: closed, no reply; the replica said \"%s\"", text);
		if (strstr(text, "no key") == NULL)
			fail("the CLOSE does not say the key is missing");
	}
	/* 2. A wrong key: the handshake fails, nothing is accepted. */
	{
		mclient w;
		mc_init(&w);
		if (mc_open_key(&w, p, VSR_WIRE_ROLE_CLIENT, wrong))
			fail("a client with a wrong key authenticated");
		mc_free(&w);
		note("wrong key: the replica refused the handshake");
	}
	/* 3. An authenticated connection, then one forged frame (a request
	 * whose MAC was made without the key): closed, not applied. */
	{
		mclient f;
		mc_init(&f);
		if (!mc_open(&f, p, VSR_WIRE_ROLE_CLIENT))
			fail("cannot authenticate with the right key");
		msgpack_sbuffer_clear(&sb);
		op_kv(&sb, "put", "forged", "never");
		vsr_message q = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
		q.request.kind = VSR_REQUEST_OP;
		q.request.session = m.session;
		q.request.request = m.request + 100;
		q.request.op = (const uint8_t *)sb.data;
		q.request.op_len = (uint32_t)sb.size;
		vsr_buf b = {0};
		vsr_wire_encode_message(&b, g_cluster, &q);
		if (vsr_wire_conn_auth_seal(&f.c[p].auth, &b, 0) != 0)
			fail("seal");
		b.data[b.len - 1] ^= 0x01; /* the MAC no longer matches */
		if (!write_all(f.c[p].fd, b.data, b.len))
			fail("write forged frame");
		vsr_buf_free(&b);
		bool reply;
		char text[300];
		if (!drain_until_closed(f.c[p].fd, &f.c[p].rd, &reply, text, sizeof text))
			fail("a forged frame did not close its connection");
		if (reply)
			fail("a forged frame was answered");
		mc_free(&f);
		mresult r;
		op_kv(&sb, "get", "forged", NULL);
		m.request++;
		if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				    300, &r))
			fail("get forged: no answer");
		if (r.status != VSR_REPLY_ERROR || !body_contains(&r, "does not exist"))
			fail("the forged put was applied: get answered %.*s", (int)r.body_len, r.body);
		note("forged frame on an authenticated connection: closed, not applied");
	}
	/* 4. A forged replica on the replica port: HELLO as replica 2 (no key),
	 * then a START_VIEW_CHANGE for a huge view. */
	{
		int target = p;
		int claimed = (p + 1) % N;
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = (uint8_t)claimed,
				    .instance = 2};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		vsr_message svc = {.type = VSR_MSG_START_VIEW_CHANGE, .cluster = g_cluster,
				   .replica = (uint8_t)claimed, .view = before.view + 1000};
		vsr_wire_encode_message(&b, g_cluster, &svc);
		bool reply;
		char text[300];
		if (!send_until_closed(g_replica_port[target], &b, &reply, text, sizeof text))
			fail("a replica-port connection without the key was not closed");
		put_keys(&m, &sb, KEYS / 2, KEYS, &last);
		vsr_wire_status after;
		if (!status_of(p, &after))
			fail("no status from the primary");
		if (after.view != before.view)
			fail("a forged START_VIEW_CHANGE moved the view from %" PRIu64 " to %" PRIu64,
			     before.view, after.view);
		note("forged replica: closed; view still %" PRIu64 ", writes go on", after.view);
	}
	uint64_t failures = scrape_value(p, "vsr_auth_failures_total");
	if (failures < 3)
		fail("vsr_auth_failures_total is %" PRIu64 ", want at least 3", failures);
	note("vsr_auth_failures_total on the primary: %" PRIu64, failures);
	/* 5. vsrctl reads the client key from the config. */
	if (g_vsrctl != NULL) {
		char out[4096];
		const char *put[] = {"put", "auth-key", "works", NULL};
		const char *get[] = {"get", "auth-key", NULL};
		if (run_vsrctl(out, sizeof out, put) != 0)
			fail("vsrctl put with the config's key failed: %s", out);
		if (run_vsrctl(out, sizeof out, get) != 0 || strstr(out, "works") == NULL)
			fail("vsrctl get with the config's key failed: %s", out);
		const char *status[] = {"status", NULL};
		if (run_vsrctl(out, sizeof out, status) != 0)
			fail("vsrctl status with the config's key failed: %s", out);
		note("vsrctl put, get and status authenticate with auth.client_key");
	}
	get_keys(&m, &sb, 0, KEYS);
	scenario_close(&m, &sb);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Durable storage: crashes and corruption under write load.                */

#define WRITERS 4
#define WRITER_QUOTA 60    /* puts per writer per round */

static volatile sig_atomic_t g_writer_stop;

static void writer_on_term(int sig)
{
	(void)sig;
	g_writer_stop = 1;
}

static void writer_key(int w, uint32_t seq, char key[32], char val[64])
{
	snprintf(key, 32, "w%d-%u", w, seq);
	snprintf(val, 64, "v%d-%u-%" PRIu64, w, seq, g_seed);
}

/* A writer process: its own session, puts w<w>-<seq> from `first` for
 * `quota` keys, each retried with the same request number until answered (a
 * crash of the whole cluster only delays it), and reports every
 * acknowledgement on `fd` as "w seq op". SIGTERM: finish the put in flight,
 * then exit. */
static void writer_main(int w, int fd, uint32_t first, uint32_t quota)
{
	memset(g_pid, 0, sizeof g_pid); /* the driver's children, not ours */
	g_keep = true;
	signal(SIGTERM, writer_on_term);
	mclient m;
	mc_init(&m);
	m.target = (uint8_t)(w % N);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	mresult r;
	uint64_t nonce = g_seed ^ ((uint64_t)w << 40) ^ ((uint64_t)first << 8) ^ 0x77;
	while (!mc_call_number(&m, VSR_REQUEST_REGISTER, nonce, NULL, 0, 300, &r) ||
	       r.status != VSR_REPLY_OK || m.session == 0) {
		if (g_writer_stop) _exit(0);
	}
	for (uint32_t seq = first; seq < first + quota && !g_writer_stop; seq++) {
		char key[32], val[64];
		writer_key(w, seq, key, val);
		op_kv(&sb, "put", key, val);
		m.request++;
		while (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				       300, &r)) {
		}
		if (r.status != VSR_REPLY_OK) _exit(4);
		dprintf(fd, "%d %u %" PRIu64 "\n", w, seq, r.op);
	}
	while (!g_writer_stop) pause();
	_exit(0);
}

typedef struct writers {
	pid_t pid[WRITERS];
	int fd;                  /* read end of the acknowledgement pipe */
	uint32_t next[WRITERS];  /* first seq not yet acknowledged */
	uint64_t max_op;
	uint32_t acks;           /* acknowledgements read this round */
	char buf[4096];
	size_t len;
} writers;

static void writers_start_quota(writers *ws, uint32_t quota);

static void writers_start(writers *ws)
{
	writers_start_quota(ws, WRITER_QUOTA);
}

static void writers_start_quota(writers *ws, uint32_t quota)
{
	int p[2];
	if (pipe(p) != 0) fail("pipe: %s", strerror(errno));
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ws->fd = p[0];
	ws->acks = 0;
	ws->len = 0;
	fflush(NULL);
	for (int w = 0; w < WRITERS; w++) {
		pid_t pid = fork();
		if (pid < 0) fail("fork: %s", strerror(errno));
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(p[0]);
			writer_main(w, p[1], ws->next[w], quota);
		}
		ws->pid[w] = pid;
	}
	close(p[1]);
}

/* Reads what the writers reported; returns false at end of file. */
static bool writers_drain(writers *ws, int timeout_ms)
{
	struct pollfd pfd = {.fd = ws->fd, .events = POLLIN};
	if (poll(&pfd, 1, timeout_ms) <= 0) return true;
	ssize_t n = read(ws->fd, ws->buf + ws->len, sizeof ws->buf - ws->len - 1);
	if (n == 0) return false;
	if (n < 0) return true;
	ws->len += (size_t)n;
	ws->buf[ws->len] = '\0';
	char *line = ws->buf, *nl;
	while ((nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		int w;
		unsigned seq;
		uint64_t op;
		if (sscanf(line, "%d %u %" SCNu64, &w, &seq, &op) != 3 || w < 0 || w >= WRITERS ||
		    seq != ws->next[w])
			fail("writer report out of order: %s", line);
		ws->next[w] = seq + 1;
		if (op > ws->max_op) ws->max_op = op;
		ws->acks++;
		line = nl + 1;
	}
	ws->len = strlen(line);
	memmove(ws->buf, line, ws->len);
	return true;
}

static void writers_wait_acks(writers *ws, uint32_t acks, const char *what)
{
	uint64_t deadline = now_ms() + 3 * CALL_MS;
	while (ws->acks < acks) {
		check_alive();
		if (now_ms() > deadline)
			fail("%s: only %u of %u writes acknowledged within %d ms", what, ws->acks, acks,
			     3 * CALL_MS);
		writers_drain(ws, 50);
	}
}

static void writers_stop(writers *ws)
{
	for (int w = 0; w < WRITERS; w++) kill(ws->pid[w], SIGTERM);
	uint64_t deadline = now_ms() + 3 * CALL_MS;
	for (int w = 0; w < WRITERS; w++) {
		for (;;) {
			int status;
			pid_t r = waitpid(ws->pid[w], &status, WNOHANG);
			if (r == ws->pid[w]) {
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					fail("writer %d failed (status 0x%x)", w, status);
				break;
			}
			if (now_ms() > deadline) {
				kill(ws->pid[w], SIGKILL);
				fail("writer %d did not finish its last put within %d ms", w, 3 * CALL_MS);
			}
			writers_drain(ws, 20);
		}
	}
	while (writers_drain(ws, 0)) {
	}
	close(ws->fd);
}

/* Every acknowledged write of every writer, read back; the replicas agree. */
static uint32_t verify_writes(mclient *m, msgpack_sbuffer *sb, const writers *ws, const char *what)
{
	wait_converged(ws->max_op, CATCHUP_MS, what);
	uint32_t n = 0;
	for (int w = 0; w < WRITERS; w++) {
		for (uint32_t seq = 0; seq < ws->next[w]; seq++) {
			char key[32], val[64];
			writer_key(w, seq, key, val);
			op_kv(sb, "get", key, NULL);
			mresult r;
			mc_op(m, sb, &r, key);
			if (!body_contains(&r, val))
				fail("%s: acknowledged write %s=%s is missing", what, key, val);
			n++;
		}
	}
	return n;
}

static void wait_started(int i)
{
	wait_ports(i);
}

static int scenario_crash(int rounds)
{
	g_durability = "durable";
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	for (int round = 1; round <= rounds; round++) {
		writers_start(&ws);
		writers_wait_acks(&ws, 20, "before the crash");
		bool all = round % 2 == 1;
		if (all) {
			for (int i = 0; i < N; i++) kill_replica(i);
			for (int i = 0; i < N; i++) start_replica(i);
			wait_ports(-1);
		} else {
			for (int i = 0; i < N; i++) {
				kill_replica(i);
				start_replica(i);
				wait_started(i);
			}
		}
		uint32_t before = ws.acks;
		writers_wait_acks(&ws, before + 20, "after the restart");
		writers_stop(&ws);
		uint32_t n = verify_writes(&m, &sb, &ws, all ? "after kill -9 of every replica"
							    : "after kill -9 of each replica in turn");
		note("round %d: kill -9 of %s under load (%u writes acknowledged before); all %u "
		     "acknowledged writes present, digests equal at op %" PRIu64,
		     round, all ? "all replicas at once" : "each replica in turn", before, n, ws.max_op);
	}
	scenario_close(&m, &sb);
	return 0;
}

static void flip_byte(int replica, const char *name, long off)
{
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/%s", g_dir, replica + 1, name);
	int fd = open(path, O_RDWR);
	uint8_t b;
	if (fd < 0 || pread(fd, &b, 1, off) != 1)
		fail("cannot read %s: %s", path, strerror(errno));
	b ^= 0x40;
	if (pwrite(fd, &b, 1, off) != 1) fail("cannot write %s: %s", path, strerror(errno));
	close(fd);
}

/* The replica's log says it found what was flipped and is being repaired. */
static bool log_mentions(int replica, const char *text)
{
	char path[400];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, replica + 1);
	FILE *f = fopen(path, "r");
	if (f == NULL) return false;
	char line[2048];
	bool found = false;
	while (!found && fgets(line, sizeof line, f) != NULL) found = strstr(line, text) != NULL;
	fclose(f);
	return found;
}

static void corrupt_round(mclient *m, msgpack_sbuffer *sb, writers *ws, const char *what,
			  int victim, void (*damage)(int))
{
	writers_start(ws);
	writers_wait_acks(ws, 20, what);
	damage(victim);
	if (g_pid[victim] > 0)
		kill_replica(victim);
	start_replica(victim);
	wait_ports(victim);
	uint32_t before = ws->acks;
	writers_wait_acks(ws, before + 20, what);
	writers_stop(ws);
	uint32_t n = verify_writes(m, sb, ws, what);
	note("%s (replica %d): back, all %u acknowledged writes present, digests equal at op %" PRIu64,
	     what, victim + 1, n, ws->max_op);
}

static void damage_log_and_superblock(int r)
{
	flip_byte(r, "log-0000000000000001", 64 + 4); /* the first entry's body */
	flip_byte(r, "superblock", 72);                /* copy 0: the epoch word */
}

static void damage_superblock_copy(int r)
{
	flip_byte(r, "superblock", 4096 + 72); /* copy 1: the epoch word */
}

/* Deleted while it runs; what it writes until kill -9 goes as well. */
static void damage_delete_dir(int r)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/data/replica-%d' 2>/dev/null", g_dir, r + 1);
	if (system(cmd) != 0) {
		/* It was creating a file meanwhile. */
	}
	kill_replica(r);
	if (system(cmd) != 0) fail("cannot delete replica %d's directory", r + 1);
}

static int scenario_corrupt(void)
{
	g_durability = "durable";
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	corrupt_round(&m, &sb, &ws, "byte flipped in the log and the superblock of the primary", p,
		      damage_log_and_superblock);
	if (!log_mentions(p, "cannot be trusted"))
		fail("replica %d did not report its corrupt log", p + 1);
	int b = (p + 1) % N;
	corrupt_round(&m, &sb, &ws, "byte flipped in one superblock copy of a backup", b,
		      damage_superblock_copy);
	corrupt_round(&m, &sb, &ws, "data directory deleted", (p + 2) % N, damage_delete_dir);
	scenario_close(&m, &sb);
	return 0;
}

/* A full disk: replica `victim`'s directory is a tmpfs with room for its
 * first log segment (64 MiB, preallocated) and little more, so its first
 * checkpoint file (at entry 1024) does not fit. It must stop with exit status 74 and say
 * why; the others go on, and no acknowledged write is lost. */
static void unmount_scratch(void)
{
	if (g_mounted[0] != '\0') {
		umount2(g_mounted, MNT_DETACH);
		g_mounted[0] = '\0';
	}
}

static int scenario_disk_full(void)
{
	g_durability = "durable";
	g_checkpoint_interval = 1024; /* >= 1024 keys in the first one */
	int victim = 1;
	snprintf(g_mounted, sizeof g_mounted, "%s/data/replica-%d", g_dir, victim + 1);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_mounted);
	if (system(cmd) != 0) fail("cannot create %s", g_mounted);
	/* Its first segment, the superblock and 24 KiB: the superblock always
	 * fits (exact sizing is at the mercy of tmpfs's page accounting), the
	 * first checkpoint (1024 keys or more) never does. */
	if (mount("tmpfs", g_mounted, "tmpfs", 0, "size=65568k") != 0) {
		note("SKIP: cannot mount a small tmpfs at %s: %s", g_mounted, strerror(errno));
		g_mounted[0] = '\0';
		return 77;
	}
	atexit(unmount_scratch);
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	/* Enough for 1024 entries even if every entry held all 4 writers' puts. */
	writers_start_quota(&ws, 1500);
	/* Until the victim stops: only its exit is expected. */
	uint64_t deadline = now_ms() + 6 * CALL_MS;
	int status = 0;
	for (;;) {
		if (waitpid(g_pid[victim], &status, WNOHANG) == g_pid[victim]) {
			g_pid[victim] = 0;
			break;
		}
		if (now_ms() > deadline)
			fail("replica %d never ran out of disk (%u writes acknowledged)", victim + 1,
			     ws.acks);
		writers_drain(&ws, 20);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
		fail("replica %d stopped with status 0x%x, not exit 74", victim + 1, status);
	if (!log_mentions(victim, "disk is full"))
		fail("replica %d's log does not say its disk is full", victim + 1);
	uint32_t before = ws.acks;
	note("replica %d stopped with exit 74 after %u acknowledged writes: disk full", victim + 1,
	     before);
	writers_wait_acks(&ws, before + 20, "after the disk filled up");
	writers_stop(&ws);
	uint32_t n = verify_writes(&m, &sb, &ws, "after the disk filled up");
	note("the other replicas go on: all %u acknowledged writes present, digests equal at op %" PRIu64,
	     n, ws.max_op);
	scenario_close(&m, &sb);
	unmount_scratch();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Availability (issue 7): pauses, one-way cuts, a client cut off.          */

static bool iptables_usable(void)
{
	return system("iptables -w 5 -L INPUT -n >/dev/null 2>&1") == 0;
}

/* Drops every TCP packet on lo whose `dir` port ("dport": to the local
 * listener `port`, so its connections carry nothing into it; "sport": what
 * comes back from it) is `port`. */
static void cut_port(const char *dir, uint16_t port)
{
	pthread_mutex_lock(&g_cut_lock);
	if (g_cut_count == CUTS_MAX) {
		pthread_mutex_unlock(&g_cut_lock);
		fail("too many iptables rules");
	}
	char *spec = g_cuts[g_cut_count];
	snprintf(spec, sizeof g_cuts[0], "-i lo -p tcp --%s %u", dir, port);
	char cmd[sizeof g_cuts[0] + 64];
	snprintf(cmd, sizeof cmd, "iptables -w 5 -I INPUT %.63s -j DROP", spec);
	int rc = system(cmd);
	if (rc == 0)
		g_cut_count++;
	pthread_mutex_unlock(&g_cut_lock);
	if (rc != 0)
		fail("iptables refused: %s", cmd);
}

static vsr_wire_status must_status(int i, const char *what)
{
	vsr_wire_status st;
	if (!status_of(i, &st))
		fail("%s: no status from replica %d", what, i + 1);
	return st;
}

/* Writes through the cluster until `ms` have passed: the load during a
 * fault, paced by the replies themselves. Returns the writes done. */
static int write_for(mclient *m, msgpack_sbuffer *sb, uint32_t ms, uint64_t *last_op)
{
	uint64_t end = now_ms() + ms;
	int k = 0;
	while (now_ms() < end) {
		put_keys(m, sb, k % KEYS, k % KEYS + 1, last_op);
		k++;
	}
	return k;
}

/* A backup stalls (SIGSTOP) for 2, 4 and 6 s while the primary keeps
 * committing with the other backup, then resumes (SIGCONT): its timers have
 * long expired and the primary's messages wait in its sockets. Before issue
 * 7 it deposed the healthy primary in 35 of 37 real runs. */
static int scenario_pause_backup(void)
{
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS, &last);
	vsr_wire_status before = must_status(p, "before");
	static const uint32_t pause_ms[] = {2000, 4000, 6000};
	for (size_t t = 0; t < sizeof pause_ms / sizeof pause_ms[0]; t++) {
		int b = (p + 1 + (int)t % (N - 1)) % N;
		kill(g_pid[b], SIGSTOP);
		int writes = write_for(&m, &sb, pause_ms[t], &last);
		kill(g_pid[b], SIGCONT);
		uint64_t t0 = now_ms();
		put_keys(&m, &sb, 0, 1, &last);
		uint64_t first = now_ms() - t0;
		wait_converged(last, CATCHUP_MS, "after the pause");
		uint64_t caught = now_ms() - t0;
		for (int i = 0; i < N; i++) {
			vsr_wire_status st = must_status(i, "after the pause");
			if (st.view != before.view || st.primary != p)
				fail("backup %d paused %u ms: replica %d is in view %" PRIu64
				     " with primary %u, was view %" PRIu64 " with primary %d",
				     b + 1, pause_ms[t], i + 1, st.view, st.primary + 1u, before.view,
				     p + 1);
		}
		note("backup %d stopped %u ms (%d writes meanwhile): view %" PRIu64
		     " kept, primary %d kept; first write after SIGCONT %" PRIu64
		     " ms, backup caught up %" PRIu64 " ms after SIGCONT",
		     b + 1, pause_ms[t], writes, before.view, p + 1, first, caught);
	}
	vsr_wire_status after = must_status(p, "at the end");
	note("view changes counted by the primary: %" PRIu64 " (before the pauses: %" PRIu64 ")",
	     after.view_changes, before.view_changes);
	if (after.view_changes != before.view_changes)
		fail("the primary went through %" PRIu64 " view changes",
		     after.view_changes - before.view_changes);
	scenario_close(&m, &sb);
	return 0;
}

/* Every link into the primary cut, its links out up (finding 5): the
 * backups still hear it, it hears no ack. It must abdicate, the backups
 * elect another primary, and writes go on during the cut. Then every link
 * into one backup is cut for 3 s: it loses the primary alone, which moves
 * nobody. */
static int scenario_one_way_cut(void)
{
	if (!iptables_usable()) {
		note("SKIP: iptables is not usable here (needs root and the iptables tool)");
		return 0;
	}
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	vsr_wire_status before = must_status(p, "before the cut");
	uint64_t t0 = now_ms();
	cut_port("dport", g_replica_port[p]);
	note("cut: every link into primary %d (replica port %u) dropped, its links out up", p + 1,
	     g_replica_port[p]);
	put_keys(&m, &sb, KEYS / 2, KEYS / 2 + 1, &last);
	uint64_t during = now_ms() - t0;
	int q = -1;
	vsr_wire_status st;
	for (int i = 0; i < N; i++) {
		if (i == p || !status_of(i, &st))
			continue;
		if (st.status == VSR_STATUS_NORMAL && st.primary != p && st.view > before.view)
			q = st.primary;
	}
	if (q < 0 || q == p)
		fail("a write committed during the cut, but no backup names a new primary");
	note("write acknowledged %" PRIu64 " ms after the cut, through new primary %d (view %" PRIu64
	     ")", during, q + 1, st.view);
	put_keys(&m, &sb, KEYS / 2 + 1, KEYS, &last);
	cuts_clear();
	uint64_t t1 = now_ms();
	put_keys(&m, &sb, 0, 1, &last);
	note("healed: first write %" PRIu64 " ms after the heal", now_ms() - t1);
	wait_converged(last, CATCHUP_MS, "after the heal");
	note("the old primary %d caught up %" PRIu64 " ms after the heal", p + 1, now_ms() - t1);
	get_keys(&m, &sb, 0, KEYS);

	/* A backup that hears nobody for 3 s (its links out still up). */
	int r = wait_primary(STARTUP_MS, "before the second cut");
	vsr_wire_status mid = must_status(r, "before the second cut");
	int b = (r + 1) % N;
	cut_port("dport", g_replica_port[b]);
	int writes = write_for(&m, &sb, 3000, &last);
	cuts_clear();
	uint64_t t2 = now_ms();
	wait_converged(last, CATCHUP_MS, "after the backup's cut");
	for (int i = 0; i < N; i++) {
		vsr_wire_status s2 = must_status(i, "after the backup's cut");
		if (s2.view != mid.view || s2.primary != r)
			fail("backup %d deaf for 3 s: replica %d in view %" PRIu64 " primary %u, was view %"
			     PRIu64 " primary %d", b + 1, i + 1, s2.view, s2.primary + 1u, mid.view, r + 1);
	}
	note("backup %d deaf for 3 s (%d writes meanwhile): view %" PRIu64 " and primary %d kept; "
	     "caught up %" PRIu64 " ms after the heal", b + 1, writes, mid.view, r + 1, now_ms() - t2);
	scenario_close(&m, &sb);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Hostile peers (no authentication: what the transport and the core must
 * withstand on their own).                                                 */

/* Writes keys from *next for `ms` milliseconds; returns the rate in writes
 * per second (a figure to report: nothing is asserted on it). */
static double puts_for(mclient *m, msgpack_sbuffer *sb, int *next, uint32_t ms, uint64_t *last)
{
	uint64_t t0 = now_ms();
	int n = 0;
	while (now_ms() < t0 + ms) {
		put_keys(m, sb, *next, *next + 10, last);
		*next += 10;
		n += 10;
	}
	return n * 1000.0 / (double)(now_ms() - t0);
}

/* An impostor on replica `target`'s replica port claiming to be replica
 * `claimed`: reads the target's HELLO for the cluster history (as a real
 * attacker on the network would), then sends `svc_view` START_VIEW_CHANGEs.
 * Returns the socket, or -1 when the target closed it (it was replaced by
 * the real replica, or refused). */
static int impostor_svc(int target, int claimed, uint64_t svc_view)
{
	int fd = tcp_connect(g_replica_port[target]);
	if (fd < 0)
		return -1;
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, g_cluster, N);
	vsr_wire_reader rd;
	vsr_wire_reader_init(&rd, &wc, NULL);
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	uint64_t history = 0;
	bool got = false;
	uint64_t deadline = now_ms() + 2000;
	while (!got && now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		uint8_t buf[512];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		size_t used = 0;
		if (vsr_wire_reader_feed(&rd, buf, (size_t)n, &used) == 1 &&
		    vsr_wire_reader_decode(&rd, &d) == 0 && d.type == VSR_WIRE_HELLO) {
			history = d.hello.history;
			got = true;
		}
	}
	vsr_wire_decoded_free(&d);
	vsr_wire_reader_free(&rd);
	vsr_buf b = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = (uint8_t)claimed,
			    .instance = 0xbad, .history = history};
	vsr_wire_encode_hello(&b, g_cluster, &h);
	vsr_message svc = {.type = VSR_MSG_START_VIEW_CHANGE, .cluster = g_cluster,
			   .replica = (uint8_t)claimed, .view = svc_view, .history = history};
	vsr_wire_encode_message(&b, g_cluster, &svc);
	bool ok = got && write_all(fd, b.data, b.len);
	vsr_buf_free(&b);
	if (!ok) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint64_t max_view(void)
{
	cluster_view v;
	status_all(&v);
	uint64_t m = 0;
	for (int i = 0; i < N; i++)
		if (v.up[i] && v.s[i].view > m)
			m = v.s[i].view;
	return m;
}

static int scenario_attacks(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	int next_key = 0;
	double base = puts_for(&m, &sb, &next_key, 3000, &last);
	note("no attack: %.0f writes/s through primary %d (one client, sequential)", base, p + 1);

	/* 1. Slowloris: more client connections than the replica takes, each
	 * a HELLO and half a frame header, then silence. */
	enum { SLOW = 1100 };
	static int slow[SLOW];
	int opened = 0;
	for (int i = 0; i < SLOW; i++) {
		slow[i] = tcp_connect(g_client_port[p]);
		if (slow[i] < 0)
			break;
		opened++;
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .instance = (uint64_t)i};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		size_t hello_len = b.len;
		vsr_wire_status_request q = {.nonce = 1};
		vsr_wire_encode_status_request(&b, g_cluster, &q);
		/* The HELLO and 20 bytes of the next frame's 40-byte header. */
		(void)write_all(slow[i], b.data, hello_len + 20);
		vsr_buf_free(&b);
	}
	mclient fresh;
	mc_init(&fresh);
	msgpack_sbuffer fsb;
	msgpack_sbuffer_init(&fsb);
	mc_register(&fresh);
	double slowloris = puts_for(&fresh, &fsb, &next_key, 3000, &last);
	note("slowloris (%d connections holding half a frame): a new client registers and "
	     "writes at %.0f/s (%.2fx of no attack)", opened, slowloris, slowloris / base);
	for (int i = 0; i < opened; i++)
		close(slow[i]);
	mc_free(&fresh);
	msgpack_sbuffer_destroy(&fsb);

	/* 2. Every replica port filled with idle connections while a backup
	 * restarts: it must still reach the others. */
	enum { IDLE = 70 };
	static int idle[N][IDLE];
	for (int r = 0; r < N; r++)
		for (int i = 0; i < IDLE; i++)
			idle[r][i] = tcp_connect(g_replica_port[r]);
	int b = (p + 1) % N;
	kill_replica(b);
	put_keys(&m, &sb, next_key, next_key + 50, &last);
	next_key += 50;
	uint64_t t0 = now_ms();
	start_replica(b);
	wait_ports(b);
	wait_converged(last, CATCHUP_MS, "rejoin with the replica ports full of idle connections");
	note("idle connections on every replica port (%d each): restarted replica %d rejoined "
	     "in %" PRIu64 " ms", IDLE, b + 1, now_ms() - t0);
	for (int r = 0; r < N; r++)
		for (int i = 0; i < IDLE; i++)
			if (idle[r][i] >= 0)
				close(idle[r][i]);

	/* 3. A START_VIEW_CHANGE storm: an impostor of backup b (a child
	 * process) sends one for the next view to the two others every 100 ms
	 * for 3 s, reconnecting whenever it is cut off, while a client writes. */
	uint64_t view0 = max_view();
	fflush(NULL);
	pid_t forger = fork();
	if (forger < 0)
		fail("fork: %s", strerror(errno));
	if (forger == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		uint64_t end = now_ms() + 3000;
		while (now_ms() < end) {
			for (int r = 0; r < N; r++) {
				if (r == b)
					continue;
				int fd = impostor_svc(r, b, view0 + 1);
				if (fd >= 0)
					close(fd);
			}
			poll(NULL, 0, 100); /* the storm's own pace, not a wait for an event */
		}
		_exit(0);
	}
	double storm = puts_for(&m, &sb, &next_key, 3000, &last);
	waitpid(forger, NULL, 0);
	uint64_t view1 = max_view();
	if (view1 != view0)
		fail("a START_VIEW_CHANGE storm from one impostor moved the view %" PRIu64
		     " -> %" PRIu64, view0, view1);
	note("START_VIEW_CHANGE storm (every 100 ms for 3 s) from an impostor of replica %d: "
	     "view stays %" PRIu64 ", writes at %.0f/s (%.2fx of no attack)",
	     b + 1, view1, storm, storm / base);

	/* 4. View inflation: one forged START_VIEW_CHANGE for view 2^48 to
	 * each other replica; then the primary dies and the rest must still
	 * agree on a new view. */
	for (int r = 0; r < N; r++) {
		if (r == b)
			continue;
		int fd = impostor_svc(r, b, 1ull << 48);
		if (fd >= 0)
			close(fd);
	}
	put_keys(&m, &sb, next_key, next_key + 10, &last);
	next_key += 10;
	uint64_t inflated = max_view();
	if (inflated >= 1000)
		fail("a forged START_VIEW_CHANGE inflated the view to %" PRIu64, inflated);
	int q = wait_primary(STARTUP_MS, "after the forgeries");
	t0 = now_ms();
	kill_replica(q);
	put_keys(&m, &sb, next_key, next_key + 10, &last);
	next_key += 10;
	int q2 = wait_primary(STARTUP_MS, "failover after the forgeries");
	note("view inflation to 2^48 refused (highest view %" PRIu64 "); after kill -9 of primary "
	     "%d, primary %d took over and writes went on within %" PRIu64 " ms",
	     inflated, q + 1, q2 + 1, now_ms() - t0);
	get_keys(&m, &sb, 0, next_key);
	scenario_close(&m, &sb);
	return 0;
}

/* The heal of a client cut, from another thread while the call waits. */
typedef struct healer {
	uint32_t after_ms;
	uint64_t healed_at;
} healer;

static void *healer_main(void *arg)
{
	healer *h = arg;
	struct timespec ts = {.tv_sec = h->after_ms / 1000, .tv_nsec = (h->after_ms % 1000) * 1000000L};
	/* The cut's length is the fault being modelled, not a synchronisation. */
	nanosleep(&ts, NULL);
	/* Taken before the rules go: the first one removed already lets
	 * packets through (the figure errs on the long side by the time
	 * iptables takes). */
	h->healed_at = now_ms();
	cuts_clear();
	return NULL;
}

/* The C client library (what applications use) is cut from the primary,
 * both directions of its client port, while a call is in flight; the cut
 * heals after 2, 4 and 8 s. Before issue 7 the client kept its old TCP
 * connection, on which the kernel had backed off retransmission, and stayed
 * stuck 1.3-6.8 s after the heal. */
static int scenario_client_cut(void)
{
	if (!iptables_usable()) {
		note("SKIP: iptables is not usable here (needs root and the iptables tool)");
		return 0;
	}
	cluster_start("kv.lua");
	int p = wait_primary(STARTUP_MS, "startup");
	vsrc_options o;
	char err[256];
	const char *addrs[N];
	char names[N][32];
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "127.0.0.1:%u", g_client_port[i]);
		addrs[i] = names[i];
	}
	if (vsrc_options_from_addresses(&o, g_cluster, addrs, N, err, sizeof err) != 0)
		fail("client options: %s", err);
	o.timing.call_ms = 30000;
	vsrc_sync *c;
	if (vsrc_sync_open(&o, &c) != 0)
		fail("cannot open a client");
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	const vsrc_sync_result *res;
	op_kv(&sb, "put", "warm", "up");
	if (vsrc_sync_call(c, (const uint8_t *)sb.data, sb.size, &res) != VSRC_DONE)
		fail("first call: %s", res->reason);
	static const uint32_t cut_ms[] = {2000, 4000, 8000};
	for (size_t t = 0; t < sizeof cut_ms / sizeof cut_ms[0]; t++) {
		p = wait_primary(STARTUP_MS, "before the client cut");
		cut_port("dport", g_client_port[p]);
		cut_port("sport", g_client_port[p]);
		healer h = {.after_ms = cut_ms[t]};
		pthread_t th;
		if (pthread_create(&th, NULL, healer_main, &h) != 0)
			fail("pthread_create");
		uint64_t t0 = now_ms();
		char val[32];
		snprintf(val, sizeof val, "cut-%zu", t);
		op_kv(&sb, "put", "during", val);
		int outcome = vsrc_sync_call(c, (const uint8_t *)sb.data, sb.size, &res);
		uint64_t done = now_ms();
		pthread_join(th, NULL);
		if (outcome != VSRC_DONE)
			fail("the call during a %u ms client cut ended %s: %s", cut_ms[t],
			     outcome == VSRC_FAILED ? "failed" : "unknown", res->reason);
		int64_t after = (int64_t)done - (int64_t)h.healed_at;
		note("client cut from primary %d for %u ms: the call completed %" PRId64
		     " ms after the heal (%" PRIu64 " ms after it started)", p + 1, cut_ms[t], after,
		     done - t0);
		/* Generous: the goal is 1 s; a loaded 2-core machine adds noise. */
		if (after > 5000)
			fail("the call completed %" PRId64 " ms after the heal", after);
	}
	msgpack_sbuffer_destroy(&sb);
	vsrc_sync_close(c);
	stop_all();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Reads outside the log (issue 11).                                        */

/* Sends one QUERY in read mode `mode` to replica i only and waits up to
 * wait_ms for its answer. Returns false when none came. */
static bool mc_query_at(mclient *m, int i, uint8_t mode, uint64_t number,
			const msgpack_sbuffer *op, uint32_t wait_ms, mresult *out,
			uint8_t *mode_out)
{
	if (!mc_open(m, i, VSR_WIRE_ROLE_CLIENT))
		return false;
	vsr_message q = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
	q.request.kind = VSR_REQUEST_QUERY;
	q.request.request = number;
	q.request.op = (const uint8_t *)op->data;
	q.request.op_len = (uint32_t)op->size;
	q.read_mode = mode;
	vsr_buf b = {0};
	if (vsr_wire_encode_message(&b, g_cluster, &q) != 0)
		fail("cannot encode a query");
	bool ok = mc_write_frame(m, i, &b);
	vsr_buf_free(&b);
	if (!ok) {
		mc_drop(m, i);
		return false;
	}
	uint64_t deadline = now_ms() + wait_ms;
	int from;
	while ((from = mc_next(m, deadline)) >= 0) {
		if (from != i || m->d.type != VSR_MSG_REPLY)
			continue;
		const vsr_message *r = &m->d.message;
		if (r->request.kind != VSR_REQUEST_QUERY || r->request.request != number)
			continue;
		out->status = r->status;
		out->op = r->reply_op;
		out->replica = r->replica;
		out->body_len = r->body_len < sizeof out->body ? r->body_len : sizeof out->body;
		memcpy(out->body, r->body, out->body_len);
		*mode_out = r->read_mode;
		return true;
	}
	return false;
}

/* The old primary cut off (every link into it dropped: it hears no ack and
 * no vote) keeps its last state. A linearizable read sent to it must never
 * be answered from that state, before or after the others elect a primary
 * and commit a newer value; a stale read is answered there, and says so. */
static int scenario_read_partition(void)
{
	if (!iptables_usable()) {
		note("SKIP: iptables is not usable here (needs root and the iptables tool)");
		return 0;
	}
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	mresult w, r;
	uint8_t mode = 0;
	op_kv(&sb, "put", "rk", "old");
	mc_op(&m, &sb, &w, "put rk=old");
	op_kv(&sb, "get", "rk", NULL);
	if (!mc_query_at(&m, p, VSR_READ_LINEARIZABLE, 1, &sb, 5000, &r, &mode) ||
	    r.status != VSR_REPLY_OK || !body_contains(&r, "old"))
		fail("a linearizable read at primary %d before the cut did not return old", p + 1);
	note("before the cut: primary %d answers rk=old at op %" PRIu64 " (linearizable)", p + 1,
	     r.op);

	uint64_t t0 = now_ms();
	cut_port("dport", g_replica_port[p]);
	note("cut: every link into primary %d (replica port %u) dropped", p + 1, g_replica_port[p]);
	/* Asked at once: it cannot confirm its view with a quorum any more. */
	bool answered = mc_query_at(&m, p, VSR_READ_LINEARIZABLE, 2, &sb, 1500, &r, &mode);
	if (answered && r.status == VSR_REPLY_OK)
		fail("the cut-off primary answered a linearizable read (op %" PRIu64 ")", r.op);
	note("linearizable read at the cut-off primary: %s after %" PRIu64 " ms",
	     answered ? (r.status == VSR_REPLY_NOT_PRIMARY ? "NOT_PRIMARY" : "refused")
		      : "no answer", now_ms() - t0);

	/* The majority elects a primary and commits a newer value. */
	op_kv(&sb, "put", "rk", "new");
	mc_op(&m, &sb, &w, "put rk=new during the cut");
	note("rk=new committed at op %" PRIu64 " %" PRIu64 " ms after the cut", w.op,
	     now_ms() - t0);

	op_kv(&sb, "get", "rk", NULL);
	for (uint8_t md = VSR_READ_LINEARIZABLE; md <= VSR_READ_LEASE; md++) {
		answered = mc_query_at(&m, p, md, 3 + md, &sb, 1000, &r, &mode);
		if (answered && r.status == VSR_REPLY_OK)
			fail("the cut-off primary answered a %s read with op %" PRIu64
			     " after rk=new committed at op %" PRIu64 ": %.*s",
			     vsr_read_mode_name(md), r.op, w.op, (int)r.body_len, r.body);
		note("%s read at the cut-off primary after the write: %s", vsr_read_mode_name(md),
		     answered ? "refused (NOT_PRIMARY)" : "no answer");
	}
	if (!mc_query_at(&m, p, VSR_READ_STALE, 5, &sb, 2000, &r, &mode) ||
	    r.status != VSR_REPLY_OK)
		fail("the cut-off replica %d did not answer a stale read", p + 1);
	if (mode != VSR_READ_STALE)
		fail("a stale read came back labelled %s", vsr_read_mode_name(mode));
	if (!body_contains(&r, "old") || r.op >= w.op)
		fail("the stale read at the cut-off replica says op %" PRIu64 ": %.*s", r.op,
		     (int)r.body_len, r.body);
	note("stale read at the cut-off replica: rk=old at op %" PRIu64 ", labelled stale", r.op);

	/* The cluster's primary answers the new value. */
	int q = -1;
	vsr_wire_status st;
	for (int i = 0; i < N; i++)
		if (i != p && status_of(i, &st) && st.status == VSR_STATUS_NORMAL && st.primary != p)
			q = st.primary;
	if (q < 0 || q == p)
		fail("a write committed during the cut, but no backup names a new primary");
	if (!mc_query_at(&m, q, VSR_READ_LINEARIZABLE, 6, &sb, 5000, &r, &mode) ||
	    r.status != VSR_REPLY_OK || !body_contains(&r, "new") || r.op < w.op)
		fail("a linearizable read at the new primary %d did not return new", q + 1);
	note("linearizable read at the new primary %d: rk=new at op %" PRIu64, q + 1, r.op);
	cuts_clear();
	wait_converged(w.op, CATCHUP_MS, "after the heal");
	scenario_close(&m, &sb);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: proctest --vsrhost PATH --root SOURCE_DIR --scenario NAME\n"
		     "                [--vsrctl PATH] [--trials N] [--seed S] [--keep]\n"
		     "scenarios: replicate failover restart quick-restart dedup garbage supervisor metrics auth attacks sandbox watchdog\n"
		     "           pause-backup one-way-cut client-cut read-partition failover-bench crash corrupt disk-full\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"vsrhost", required_argument, NULL, 'x'}, {"root", required_argument, NULL, 'r'},
		{"vsrctl", required_argument, NULL, 'c'},
		{"scenario", required_argument, NULL, 's'}, {"trials", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'S'}, {"keep", no_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
	};
	const char *scenario = NULL;
	int trials = 10;
	bool seeded = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "x:r:c:s:t:S:kh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'x': g_vsrhost = optarg; break;
		case 'c': g_vsrctl = optarg; break;
		case 'r': g_root = optarg; break;
		case 's': scenario = optarg; break;
		case 't': trials = atoi(optarg); break;
		case 'S': g_seed = strtoull(optarg, NULL, 0); seeded = true; break;
		case 'k': g_keep = true; break;
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
	int rc;
	if (strcmp(scenario, "replicate") == 0)
		rc = scenario_replicate();
	else if (strcmp(scenario, "failover") == 0)
		rc = failover_common(false);
	else if (strcmp(scenario, "restart") == 0)
		rc = failover_common(true);
	else if (strcmp(scenario, "dedup") == 0)
		rc = scenario_dedup();
	else if (strcmp(scenario, "history") == 0)
		rc = scenario_history();
	else if (strcmp(scenario, "garbage") == 0)
		rc = scenario_garbage();
	else if (strcmp(scenario, "sandbox") == 0)
		rc = scenario_sandbox();
	else if (strcmp(scenario, "watchdog") == 0)
		rc = scenario_watchdog();
	else if (strcmp(scenario, "quick-restart") == 0)
		rc = scenario_quick_restart();
	else if (strcmp(scenario, "supervisor") == 0)
		rc = scenario_supervisor();
	else if (strcmp(scenario, "metrics") == 0)
		rc = scenario_metrics();
	else if (strcmp(scenario, "pause-backup") == 0)
		rc = scenario_pause_backup();
	else if (strcmp(scenario, "one-way-cut") == 0)
		rc = scenario_one_way_cut();
	else if (strcmp(scenario, "client-cut") == 0)
		rc = scenario_client_cut();
	else if (strcmp(scenario, "read-partition") == 0)
		rc = scenario_read_partition();
	else if (strcmp(scenario, "auth") == 0)
		rc = scenario_auth();
	else if (strcmp(scenario, "attacks") == 0)
		rc = scenario_attacks();
	else if (strcmp(scenario, "failover-bench") == 0)
		rc = scenario_failover_bench(trials);
	else if (strcmp(scenario, "crash") == 0)
		rc = scenario_crash(trials);
	else if (strcmp(scenario, "corrupt") == 0)
		rc = scenario_corrupt();
	else if (strcmp(scenario, "disk-full") == 0)
		rc = scenario_disk_full();
	else {
		usage(stderr);
		rc = 64;
	}
	kill_all();
	remove_dir();
	if (rc == 0)
		note("PASS");
	return rc;
}
