/* harness.c - the process tests' shared harness (see harness.h). */
#include "harness.h"

/* ------------------------------------------------------------------------ */
/* Harness: temporary directory, config, child processes.                   */

const char *g_vsrhost;
const char *g_vsrctl;
const char *g_fail_io;
const char *g_root;
char g_dir[256];
uint64_t g_cluster;
uint16_t g_replica_port[N], g_client_port[N], g_metrics_port[N];
pid_t g_pid[N];
bool g_keep;
uint64_t g_seed;
const char *g_durability = "memory";
char g_mounted[400]; /* a tmpfs this run mounted (disk-full) */
unsigned g_checkpoint_interval; /* limits.checkpoint_interval; 0: default */
unsigned g_pc_checkpoint_interval; /* --checkpoint-interval (power cuts); 0: theirs */
unsigned g_writer_quota; /* --writer-quota (crash); 0: its own */
/* limits.instructions of one replica (index g_odd_replica) when not 0: a
 * misconfigured replica whose budget differs from the others' (divergence). */
unsigned g_odd_instructions;
int g_odd_replica = -1;
/* When set: the state machine of that replica's configuration, and the
 * program it runs instead of vsrhost (with the environment it inherits). */
const char *g_odd_statemachine;
const char *g_odd_vsrhost;
const char *g_vsrhost_teeth; /* --vsrhost-teeth: vsrhost on the test core */
const char *g_log_format = "text"; /* the config's log_format */
/* auth scenario: the config names these key files, and the test's own
 * client authenticates with the client key. */
bool g_auth;
bool g_telemetry; /* metrics scenario: the config names a telemetry script */
uint8_t g_client_key[VSR_WIRE_KEY_SIZE];

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* iptables rules (INPUT, on lo) this run added: removed on every exit. */
char g_cuts[CUTS_MAX][64];
int g_cut_count;
pthread_mutex_t g_cut_lock = PTHREAD_MUTEX_INITIALIZER;

void cuts_clear(void)
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

void kill_all(void)
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

void remove_dir(void)
{
	if (g_dir[0] == '\0' || g_keep)
		return;
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "proctest: could not remove %s\n", g_dir);
	g_dir[0] = '\0';
}

void dump_logs(void)
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


void fail(const char *fmt, ...)
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

void on_signal(int sig)
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


void note(const char *fmt, ...)
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
void pick_ports(void)
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

static void write_config_file(const char *statemachine, const char *path, unsigned instructions);

void write_config(const char *statemachine)
{
	char path[400];
	snprintf(path, sizeof path, "%s/cluster.lua", g_dir);
	write_config_file(statemachine, path, 0);
	if (g_odd_replica >= 0) {
		snprintf(path, sizeof path, "%s/cluster-%d.lua", g_dir, g_odd_replica + 1);
		write_config_file(g_odd_statemachine != NULL ? g_odd_statemachine : statemachine, path,
				  g_odd_instructions);
	}
}

static void write_config_file(const char *statemachine, const char *path, unsigned instructions)
{
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
	if (statemachine[0] == '/') /* a script of the test's own */
		fprintf(f, " },\n  statemachine = \"%s\",\n", statemachine);
	else
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
	if (g_checkpoint_interval && instructions)
		fprintf(f, "  limits = { checkpoint_interval = %u, instructions = %u },\n",
			g_checkpoint_interval, instructions);
	else if (g_checkpoint_interval)
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
static pid_t spawn_in(const char *path, char *const argv[], int out_fd, int err_fd, bool group)
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
		if (group)
			setpgid(0, 0);
		if (err_fd >= 0)
			dup2(err_fd, 2);
		if (out_fd >= 0)
			dup2(out_fd, 1);
		execv(path, argv);
		fprintf(stderr, "cannot execute %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	if (group)
		setpgid(pid, pid); /* either side may run first */
	return pid;
}

pid_t spawn(const char *path, char *const argv[], int out_fd, int err_fd)
{
	return spawn_in(path, argv, out_fd, err_fd, false);
}

pid_t spawn_group(const char *path, char *const argv[], int out_fd, int err_fd)
{
	return spawn_in(path, argv, out_fd, err_fd, true);
}

void start_replica(int i)
{
	char config[400], log[400], idx[16];
	if (i == g_odd_replica)
		snprintf(config, sizeof config, "%s/cluster-%d.lua", g_dir, i + 1);
	else
		snprintf(config, sizeof config, "%s/cluster.lua", g_dir);
	snprintf(log, sizeof log, "%s/replica-%d.log", g_dir, i + 1);
	snprintf(idx, sizeof idx, "%d", i + 1);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	char *const argv[] = {"vsrhost", config, "--replica", idx, NULL};
	g_pid[i] = spawn(i == g_odd_replica && g_odd_vsrhost != NULL ? g_odd_vsrhost : g_vsrhost,
			 argv, fd, fd);
	if (fd >= 0)
		close(fd);
}

void kill_replica(int i)
{
	if (g_pid[i] <= 0)
		fail("replica %d is not running", i + 1);
	kill(g_pid[i], SIGKILL);
	waitpid(g_pid[i], NULL, 0);
	g_pid[i] = 0;
}

bool wait_exit(pid_t pid, uint64_t ms, int *status)
{
	uint64_t deadline = now_ms() + ms;
	while (waitpid(pid, status, WNOHANG) != pid) {
		if (now_ms() > deadline)
			return false;
		poll(NULL, 0, 10); /* bounded wait for the child's exit */
	}
	return true;
}

/* SIGTERM every replica and require a clean exit 0 (all handles closed). */
void stop_all(void)
{
	for (int i = 0; i < N; i++)
		if (g_pid[i] > 0)
			kill(g_pid[i], SIGTERM);
	uint64_t deadline = now_ms() + 10000;
	for (int i = 0; i < N; i++) {
		if (g_pid[i] <= 0)
			continue;
		int status;
		uint64_t now = now_ms();
		if (!wait_exit(g_pid[i], deadline > now ? deadline - now : 0, &status))
			fail("replica %d did not exit within 10 s of SIGTERM", i + 1);
		g_pid[i] = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("replica %d did not shut down cleanly on SIGTERM (status 0x%x)", i + 1,
			     status);
	}
}

void check_alive(void)
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



int tcp_connect(uint16_t port)
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

bool write_all(int fd, const void *data, size_t len)
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

void mc_drop(mclient *m, int i)
{
	if (m->c[i].fd >= 0)
		close(m->c[i].fd);
	m->c[i].fd = -1;
	vsr_wire_reader_free(&m->c[i].rd);
}


/* Opens connection i (role client or control) if it is not open; with
 * g_auth, completes the HELLO/AUTH exchange before returning. `key`
 * overrides the client key (a test of a wrong one). */
bool mc_open_key(mclient *m, int i, uint8_t role, const uint8_t *key)
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

bool mc_open(mclient *m, int i, uint8_t role)
{
	return mc_open_key(m, i, role, g_auth ? g_client_key : NULL);
}

/* Seals (when authenticated) and writes one frame on connection i. */
bool mc_write_frame(mclient *m, int i, vsr_buf *b)
{
	if (vsr_wire_conn_auth_seal(&m->c[i].auth, b, 0) != 0)
		fail("cannot seal a frame");
	return write_all(m->c[i].fd, b->data, b->len);
}

void mc_init(mclient *m)
{
	memset(m, 0, sizeof *m);
	for (int i = 0; i < N; i++)
		m->c[i].fd = -1;
	vsr_wire_config_default(&m->wc, g_cluster, N);
	vsr_wire_decoded_init(&m->d);
}

void mc_free(mclient *m)
{
	for (int i = 0; i < N; i++)
		mc_drop(m, i);
	vsr_wire_decoded_free(&m->d);
}

/* Waits until `deadline` for one frame on any open connection. Returns the
 * connection index with the frame in m->d, or -1 at the deadline. */
int mc_next(mclient *m, uint64_t deadline)
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

bool mc_send_request(mclient *m, int i, uint8_t kind, uint64_t number,
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


/* Sends (kind, number, op) until a definite answer (OK or ERROR) arrives or
 * CALL_MS passes; NOT_PRIMARY redirects, silence or a dead connection moves
 * on to the next replica. Every copy carries the same numbers, so the
 * cluster's client table must apply it at most once. Returns false on
 * timeout. `attempt_ms` is how long one copy is given. */
bool mc_call_number(mclient *m, uint8_t kind, uint64_t number, const uint8_t *op,
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

void mc_register(mclient *m)
{
	mresult r;
	uint64_t nonce = g_seed ^ now_ms() ^ 0x5eed;
	if (!mc_call_number(m, VSR_REQUEST_REGISTER, nonce, NULL, 0, 300, &r) ||
	    r.status != VSR_REPLY_OK || m->session == 0)
		fail("could not register a session");
}

void mc_op(mclient *m, const msgpack_sbuffer *op, mresult *r, const char *what)
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
void pack_cstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* kv.lua: {op = name, key = key [, value = value]} */
void op_kv(msgpack_sbuffer *sb, const char *name, const char *key, const char *value)
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
void op_counter(msgpack_sbuffer *sb, const char *name, const char *counter,
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

bool body_contains(const mresult *r, const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i + n <= r->body_len; i++)
		if (memcmp(r->body + i, s, n) == 0)
			return true;
	return false;
}

/* The first integer found in a msgpack reply (the counter's value, however
 * the state machine wraps it). */
bool body_int(const mresult *r, int64_t *out)
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
bool status_of(int i, vsr_wire_status *out)
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


void status_all(cluster_view *v)
{
	for (int i = 0; i < N; i++)
		v->up[i] = status_of(i, &v->s[i]);
}

/* The primary when every live replica (and at least a quorum) is normal in
 * one view and agrees on who leads it; -1 otherwise. */
int settled_primary(const cluster_view *v)
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

int wait_primary(uint32_t timeout_ms, const char *what)
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

void print_cluster(const cluster_view *v)
{
	for (int i = 0; i < N; i++) {
		if (v->up[i])
			fprintf(stderr, "  replica %d: %s view %" PRIu64 " op %" PRIu64 " commit %" PRIu64
				" executed %" PRIu64 " digest %016" PRIx64 "\n",
				i + 1, vsr_status_name((enum vsr_status)v->s[i].status), v->s[i].view,
				v->s[i].op, v->s[i].commit, v->s[i].executed, v->s[i].digest);
		else if (g_pid[i] > 0)
			fprintf(stderr, "  replica %d: running (pid %d) but no status answer within 1 s\n",
				i + 1, (int)g_pid[i]);
		else
			fprintf(stderr, "  replica %d: not running\n", i + 1);
	}
}

/* Every live replica normal, executed >= op, and all with equal digests at
 * equal executed numbers. */
void wait_converged(uint64_t op, uint32_t timeout_ms, const char *what)
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
			print_cluster(&v);
			fail("%s: replicas did not converge on op %" PRIu64 " within %u ms", what,
			     op, timeout_ms);
		}
		poll(NULL, 0, 20); /* next status round */
	}
}

/* True when a connection to `port` succeeds (it is closed at once): a
 * process listens there. */
bool port_accepts(uint16_t port)
{
	int fd = tcp_connect(port);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Where process pid is (its state and the kernel function it waits in),
 * and its children the same way (vsrhost checks its store in a child):
 * printed when a replica never comes up, so that a hang says where. */
static void say_where(pid_t pid, int depth)
{
	char path[96], comm[64] = "?", stat[512] = "", wchan[96] = "?";
	FILE *f;
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (fgets(comm, sizeof comm, f) != NULL)
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (fgets(stat, sizeof stat, f) == NULL)
			stat[0] = '\0';
		fclose(f);
	}
	const char *close_paren = strrchr(stat, ')');
	char state = close_paren != NULL && close_paren[1] == ' ' ? close_paren[2] : '?';
	snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (fgets(wchan, sizeof wchan, f) == NULL)
			snprintf(wchan, sizeof wchan, "-");
		fclose(f);
	}
	fprintf(stderr, "proctest: %*spid %d (%s): state %c, waiting in %s\n", 2 * depth, "",
		(int)pid, comm, state, wchan[0] ? wchan : "-");
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
	if (depth < 3 && (f = fopen(path, "r")) != NULL) {
		int child;
		while (fscanf(f, "%d", &child) == 1)
			say_where((pid_t)child, depth + 1);
		fclose(f);
	}
}

/* Waits until every port of every replica accepts: the processes are up. */
void wait_ports(int only)
{
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (int i = 0; i < N; i++) {
		if ((only >= 0 && i != only) || g_pid[i] <= 0)
			continue;
		for (;;) {
			check_alive();
			if (port_accepts(g_client_port[i]))
				break;
			if (now_ms() > deadline) {
				say_where(g_pid[i], 0);
				fail("replica %d: client port %u never accepted", i + 1, g_client_port[i]);
			}
			poll(NULL, 0, 10); /* next connect attempt */
		}
	}
}

/* True once every replica's client port accepts; false when a replica
 * exited with EX_UNAVAILABLE (69): it could not bind a port, which another
 * process took between pick_ports and the replica's start (ports picked
 * free are only free until someone binds or dials from them). */
bool wait_ports_or_taken(void)
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
			if (now_ms() > deadline) {
				say_where(g_pid[i], 0);
				fail("replica %d: client port %u never accepted", i + 1, g_client_port[i]);
			}
			poll(NULL, 0, 10); /* next connect attempt */
		}
	}
	return true;
}

void cluster_start(const char *statemachine)
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


/* The key numbered k and the value written to it in this run (the seed in
 * the value tells this run's writes from any other's). */
void key_value(int k, char key[32], char val[64])
{
	snprintf(key, 32, "k%d", k);
	snprintf(val, 64, "v%d-%" PRIu64, k, g_seed);
}

void put_keys(mclient *m, msgpack_sbuffer *sb, int from, int to, uint64_t *last_op)
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

void get_keys(mclient *m, msgpack_sbuffer *sb, int from, int to)
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
int scenario_open(const char *statemachine, mclient *m, msgpack_sbuffer *sb)
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
void scenario_close(mclient *m, msgpack_sbuffer *sb)
{
	msgpack_sbuffer_destroy(sb);
	mc_free(m);
	stop_all();
	/* Divergence detection must not cry wolf: only a scenario that
	 * misconfigures a replica on purpose may see it. */
	for (int i = 0; i < N && g_odd_replica < 0; i++)
		if (log_contains(i, "divergence: "))
			fail("replica %d reported a divergence in a cluster of equal replicas", i + 1);
}

/* Runs vsrctl with `args` (NULL-terminated) and captures its stdout.
 * vsrctl bounds its own calls (-t), so this returns in bounded time. */
int run_vsrctl(char *out, size_t out_len, const char *const *args)
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


/* ------------------------------------------------------------------------ */
/* Metrics and vsrctl, shared by several scenarios.                         */

/* GET `path` from replica i's metrics listener into `out`; returns the HTTP
 * status, or 0 when no complete answer came. */
int http_get(int i, const char *path, char *out, size_t cap)
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
bool metric_value(const char *text, const char *name, uint64_t *out)
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
const char *scrape(int i, char *buf, size_t cap)
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

/* Does a line of replica i's log contain `needle` (begin with it, when
 * `at_start`)? */
static bool log_has(int i, const char *needle, bool at_start)
{
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	bool found = false;
	while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
		found = at_start ? strncmp(line, needle, strlen(needle)) == 0
				 : strstr(line, needle) != NULL;
	if (f != NULL)
		fclose(f);
	return found;
}

bool log_contains(int i, const char *needle)
{
	return log_has(i, needle, false);
}

bool log_line_starts(int i, const char *prefix)
{
	return log_has(i, prefix, true);
}

long replica_log_size(int i)
{
	char path[400];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}
