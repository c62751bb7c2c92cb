/* maelstrom.c - vsrjepsen --maelstrom: plays Maelstrom's part for `vsrhost --maelstrom` nodes (lin-kv).
 *
 * Starts n node processes with pipes on stdin and stdout, sends each the
 * init message, then routes every line a node writes: to another node
 * (dropped while a partition separates the two: the only network fault
 * Maelstrom's lin-kv nemesis has), or to one of our clients. The clients
 * issue lin-kv read/write/cas to random nodes, one call each at a time,
 * with unique written values; a reply is ok, a definite error (codes 1, 10,
 * 11, 12, 14, 20, 21, 22, 30) fail, anything else or no reply within the
 * timeout info, as Maelstrom records them. After healing every key is read
 * and the history goes to the same checker and report as a vsrjepsen run.
 * Happy path and failure modes of the processes as in cluster.c: every node
 * is killed and reaped on every exit path; nodes die with us (PDEATHSIG). */
#define _GNU_SOURCE
#include "jepsen.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#define MH_CLIENTS_MAX 64

typedef struct mh_node {
	pid_t pid;
	int in_fd, out_fd;
	char buf[1 << 16];
	size_t len;
	char *line;
	size_t line_len, line_cap;
} mh_node;

typedef struct mh_client {
	bool busy;
	int64_t msg_id;
	int64_t deadline_ns;
	int64_t next_ns;
	jp_op cur;
} mh_client;

typedef struct mh {
	int n;
	mh_node nodes[JP_REPLICAS_MAX];
	mh_client clients[MH_CLIENTS_MAX];
	uint32_t client_count;
	jp_nemesis *nm;
	uint64_t rng;
	int64_t t0;
	int64_t next_msg_id;
	int64_t next_value;
	uint32_t keys;
	int64_t last_value[64];
	jp_op *hist;
	size_t count, cap;
	uint64_t routed, dropped;
	uint32_t init_ok;          /* bit per node that answered init */
	bool final_phase;
	int64_t final_msg_id;
	json_t *final_reply;
} mh;

static void mh_record(mh *m, const jp_op *op)
{
	if (m->count == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 4096;
		m->hist = realloc(m->hist, m->cap * sizeof *m->hist);
		if (m->hist == NULL)
			abort();
	}
	m->hist[m->count++] = *op;
}

static void mh_send(mh *m, int node, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (s == NULL || m->nodes[node].in_fd < 0) {
		free(s);
		return;
	}
	size_t len = strlen(s);
	s[len++] = '\n'; /* json_dumps leaves room: the NUL becomes the newline */
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(m->nodes[node].in_fd, s + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* the node is gone: the message is lost, as on a network */
		off += (size_t)w;
	}
	free(s);
}

static int mh_start(mh *m, int i, const char *vsrhost, const char *config, const char *dir)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
		return -1;
	char logpath[PATH_MAX];
	snprintf(logpath, sizeof logpath, "%s/node-%d.log", dir, i + 1);
	int log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		setpgid(0, 0);
		dup2(in[0], 0);
		dup2(out[1], 1);
		if (log >= 0)
			dup2(log, 2);
		const char *argv[] = {vsrhost, "--maelstrom", config, NULL};
		execv(vsrhost, (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (log >= 0)
		close(log);
	m->nodes[i].pid = pid;
	m->nodes[i].in_fd = in[1];
	m->nodes[i].out_fd = out[0];
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	return 0;
}

static void mh_stop_all(mh *m)
{
	for (int i = 0; i < m->n; i++) {
		mh_node *nd = &m->nodes[i];
		if (nd->in_fd >= 0)
			close(nd->in_fd); /* EOF: the node stops by itself */
		nd->in_fd = -1;
	}
	int64_t deadline = jp_now_ns() + 3000000000ll;
	for (int i = 0; i < m->n; i++) {
		mh_node *nd = &m->nodes[i];
		while (nd->pid > 0) {
			int st;
			pid_t r = waitpid(nd->pid, &st, WNOHANG);
			if (r == nd->pid || (r < 0 && errno != EINTR)) {
				nd->pid = 0;
				break;
			}
			if (jp_now_ns() > deadline) {
				kill(nd->pid, SIGKILL);
				waitpid(nd->pid, &st, 0);
				nd->pid = 0;
				break;
			}
			struct timespec ts = {0, 20000000};
			nanosleep(&ts, NULL);
		}
		if (nd->out_fd >= 0)
			close(nd->out_fd);
		nd->out_fd = -1;
		free(nd->line);
		nd->line = NULL;
	}
}

static bool mh_definite(int code)
{
	switch (code) {
	case 1: case 10: case 11: case 12: case 14: case 20: case 21: case 22: case 30:
		return true;
	}
	return false;
}

static void mh_client_reply(mh *m, mh_client *c, json_t *body, const char *type)
{
	jp_op *op = &c->cur;
	op->op.return_ns = jp_now_ns() - m->t0;
	int64_t *last = &m->last_value[op->op.key % 64];
	if (strcmp(type, "read_ok") == 0) {
		json_t *v = json_object_get(body, "value");
		op->op.outcome = LINCHECK_OK;
		op->op.value = json_is_integer(v) ? (int64_t)json_integer_value(v) : LINCHECK_NIL;
		*last = op->op.value;
	} else if (strcmp(type, "write_ok") == 0 || strcmp(type, "cas_ok") == 0) {
		op->op.outcome = LINCHECK_OK;
		*last = op->op.f == LINCHECK_WRITE ? op->op.value : op->op.value2;
	} else {
		int code = (int)json_integer_value(json_object_get(body, "code"));
		const char *text = json_string_value(json_object_get(body, "text"));
		snprintf(op->note, sizeof op->note, "error %d: %.60s", code, text ? text : "");
		if (op->op.f == LINCHECK_READ && code == 20) {
			op->op.outcome = LINCHECK_OK;
			op->op.value = LINCHECK_NIL;
		} else if (op->op.f == LINCHECK_CAS && (code == 20 || code == 22)) {
			op->op.outcome = LINCHECK_FAIL;
			op->op.mismatch = true;
		} else {
			op->op.outcome = mh_definite(code) ? LINCHECK_FAIL : LINCHECK_INFO;
		}
	}
	mh_record(m, op);
	c->busy = false;
	c->next_ns = jp_now_ns() + (int64_t)(jp_rand(&m->rng) % 20000000);
}

static void mh_line(mh *m, int from, const char *line)
{
	json_error_t je;
	json_t *msg = json_loads(line, 0, &je);
	const char *dest = msg ? json_string_value(json_object_get(msg, "dest")) : NULL;
	json_t *body = msg ? json_object_get(msg, "body") : NULL;
	const char *type = body ? json_string_value(json_object_get(body, "type")) : NULL;
	if (dest == NULL || type == NULL) {
		jp_log("maelstrom: node %d wrote a line that is not a message: %.80s", from + 1, line);
		json_decref(msg);
		return;
	}
	if (dest[0] == 'n') {
		int to = atoi(dest + 1) - 1;
		if (to >= 0 && to < m->n) {
			if (m->nm->cut[to][from]) {
				m->dropped++;
			} else {
				m->routed++;
				mh_send(m, to, json_incref(msg));
			}
		}
	} else if (strcmp(type, "init_ok") == 0) {
		m->init_ok |= 1u << from;
	} else if (dest[0] == 'c') {
		int c = atoi(dest + 1);
		int64_t irt = json_integer_value(json_object_get(body, "in_reply_to"));
		if (c >= 1 && (uint32_t)c <= m->client_count && m->clients[c - 1].busy &&
		    m->clients[c - 1].msg_id == irt)
			mh_client_reply(m, &m->clients[c - 1], body, type);
		else if (m->final_phase && irt == m->final_msg_id && m->final_reply == NULL)
			m->final_reply = json_incref(body);
	}
	json_decref(msg);
}

/* Reads what every node wrote, up to `wait_ms` for the first bytes. */
static void mh_pump(mh *m, int wait_ms)
{
	struct pollfd pf[JP_REPLICAS_MAX];
	for (int i = 0; i < m->n; i++)
		pf[i] = (struct pollfd){.fd = m->nodes[i].out_fd, .events = POLLIN};
	if (poll(pf, (nfds_t)m->n, wait_ms) <= 0)
		return;
	for (int i = 0; i < m->n; i++) {
		if (!(pf[i].revents & (POLLIN | POLLHUP)))
			continue;
		mh_node *nd = &m->nodes[i];
		ssize_t r = read(nd->out_fd, nd->buf, sizeof nd->buf);
		for (ssize_t k = 0; k < r; k++) {
			if (nd->buf[k] == '\n') {
				if (nd->line_len) {
					nd->line[nd->line_len] = '\0';
					mh_line(m, i, nd->line);
				}
				nd->line_len = 0;
				continue;
			}
			if (nd->line_len + 2 > nd->line_cap) {
				nd->line_cap = nd->line_cap ? nd->line_cap * 2 : 65536;
				nd->line = realloc(nd->line, nd->line_cap);
				if (nd->line == NULL)
					abort();
			}
			nd->line[nd->line_len++] = nd->buf[k];
		}
	}
}

static void mh_clients(mh *m, int64_t call_ns)
{
	int64_t now = jp_now_ns();
	for (uint32_t i = 0; i < m->client_count; i++) {
		mh_client *c = &m->clients[i];
		if (c->busy && now > c->deadline_ns) {
			c->cur.op.outcome = LINCHECK_INFO; /* a timeout is never a failure */
			c->cur.op.return_ns = now - m->t0;
			snprintf(c->cur.note, sizeof c->cur.note, "no reply within the timeout");
			mh_record(m, &c->cur);
			c->busy = false;
		}
		if (c->busy || now < c->next_ns)
			continue;
		uint32_t key = (uint32_t)(jp_rand(&m->rng) % m->keys);
		int64_t last = m->last_value[key];
		uint64_t pick = jp_rand(&m->rng) % 10;
		int node = (int)(jp_rand(&m->rng) % (uint64_t)m->n);
		memset(&c->cur, 0, sizeof c->cur);
		c->cur.op.client = i;
		c->cur.op.key = key;
		c->msg_id = ++m->next_msg_id;
		json_t *body;
		if (pick < 4) {
			c->cur.op.f = LINCHECK_READ;
			body = json_pack("{s:s, s:I, s:i}", "type", "read", "msg_id", c->msg_id, "key", key);
		} else if (pick < 7 || last == LINCHECK_NIL) {
			c->cur.op.f = LINCHECK_WRITE;
			c->cur.op.value = m->next_value++;
			body = json_pack("{s:s, s:I, s:i, s:I}", "type", "write", "msg_id", c->msg_id,
					 "key", key, "value", c->cur.op.value);
		} else {
			c->cur.op.f = LINCHECK_CAS;
			c->cur.op.value = last;
			c->cur.op.value2 = m->next_value++;
			body = json_pack("{s:s, s:I, s:i, s:I, s:I}", "type", "cas", "msg_id", c->msg_id,
					 "key", key, "from", last, "to", c->cur.op.value2);
		}
		char src[16], dest[16];
		snprintf(src, sizeof src, "c%u", i + 1);
		snprintf(dest, sizeof dest, "n%d", node + 1);
		c->busy = true;
		c->cur.op.call_ns = now - m->t0;
		c->deadline_ns = now + call_ns;
		mh_send(m, node, json_pack("{s:s, s:s, s:o}", "src", src, "dest", dest, "body", body));
	}
}

/* Partitions: halves or one node isolated, both directions, like
 * Maelstrom's partition nemesis. */
static void mh_partition(mh *m, bool on)
{
	jp_nemesis *nm = m->nm;
	int64_t t = jp_now_ns() - m->t0;
	if (!on) {
		memset(nm->cut, 0, sizeof nm->cut);
		if (nm->event_count > 0)
			nm->events[nm->event_count - 1].end_ns = t;
	} else if (nm->event_count < JP_EVENTS_MAX) {
		int order[JP_REPLICAS_MAX];
		for (int i = 0; i < m->n; i++)
			order[i] = i;
		for (int i = m->n - 1; i > 0; i--) {
			int j = (int)(jp_rand(&m->rng) % (uint64_t)(i + 1)), x = order[i];
			order[i] = order[j];
			order[j] = x;
		}
		int k = jp_rand(&m->rng) % 2 ? 1 : m->n / 2;
		jp_event *e = &nm->events[nm->event_count++];
		*e = (jp_event){.start_ns = t, .fault = k == 1 ? JP_PART_PRIMARY : JP_PART_HALVES};
		snprintf(e->what, sizeof e->what, "maelstrom partition: %d node%s cut off:", k,
			 k == 1 ? "" : "s");
		for (int a = 0; a < k; a++) {
			size_t used = strlen(e->what);
			snprintf(e->what + used, sizeof e->what - used, " n%d", order[a] + 1);
			for (int b = k; b < m->n; b++)
				nm->cut[order[a]][order[b]] = nm->cut[order[b]][order[a]] = true;
		}
		jp_log("%s", e->what);
	}
	/* Connectivity: a majority is connected unless a half cut splits 2/2
	 * (never, with odd n) - record the change for the availability figure. */
	bool maj = true;
	if (nm->conn_count == 0 || nm->conn[nm->conn_count - 1].majority != maj)
		nm->conn[nm->conn_count++] = (jp_conn_change){.t_ns = t, .majority = maj};
}

/* Reads every key through any node that answers, after healing. */
static uint32_t mh_final_reads(mh *m)
{
	uint32_t unread = 0;
	m->final_phase = true;
	for (uint32_t key = 0; key < m->keys; key++) {
		bool done = false;
		for (int attempt = 0; attempt < 30 && !done && !jp_interrupted; attempt++) {
			int node = attempt % m->n;
			m->final_msg_id = ++m->next_msg_id;
			jp_op op = {0};
			op.op.client = m->client_count;
			op.op.key = key;
			op.op.f = LINCHECK_READ;
			op.op.call_ns = jp_now_ns() - m->t0;
			char dest[16];
			snprintf(dest, sizeof dest, "n%d", node + 1);
			mh_send(m, node,
				json_pack("{s:s, s:s, s:{s:s, s:I, s:i}}", "src", "c0", "dest", dest,
					  "body", "type", "read", "msg_id", m->final_msg_id, "key", key));
			int64_t deadline = jp_now_ns() + 1000000000ll;
			while (m->final_reply == NULL && jp_now_ns() < deadline && !jp_interrupted)
				mh_pump(m, 20);
			if (m->final_reply != NULL) {
				const char *type = json_string_value(json_object_get(m->final_reply, "type"));
				json_t *v = json_object_get(m->final_reply, "value");
				int code = (int)json_integer_value(json_object_get(m->final_reply, "code"));
				if (type && strcmp(type, "read_ok") == 0 && json_is_integer(v)) {
					op.op.value = (int64_t)json_integer_value(v);
					done = true;
				} else if (type && strcmp(type, "error") == 0 && code == 20) {
					op.op.value = LINCHECK_NIL;
					done = true;
				}
				json_decref(m->final_reply);
				m->final_reply = NULL;
			}
			if (done) {
				op.op.outcome = LINCHECK_OK;
				op.op.return_ns = jp_now_ns() - m->t0;
				snprintf(op.note, sizeof op.note, "final read");
				mh_record(m, &op);
			}
		}
		unread += !done;
	}
	return unread;
}

/* config/maelstrom.lua copied into the run's folder `dir` as
 * maelstrom.lua, its "../" paths made absolute and its data_dir the
 * folder's data/: the shipped one puts the nodes' data into the source
 * tree (../data/maelstrom), shared by every run and never removed. */
static int mh_config(const char *root, const char *dir, char *config, size_t config_len)
{
	char abs[PATH_MAX], src[PATH_MAX + 32];
	if (realpath(root, abs) == NULL)
		return -1;
	snprintf(src, sizeof src, "%s/config/maelstrom.lua", abs);
	snprintf(config, config_len, "%s/maelstrom.lua", dir);
	FILE *in = fopen(src, "r");
	FILE *f = in != NULL ? fopen(config, "w") : NULL;
	if (f == NULL) {
		if (in != NULL)
			fclose(in);
		return -1;
	}
	char line[4096];
	while (fgets(line, sizeof line, in) != NULL) {
		const char *p = line + strspn(line, " \t");
		if (strncmp(p, "data_dir", 8) == 0) {
			fputs("  data_dir = \"data\", -- this run's folder (vsrjepsen --maelstrom)\n", f);
			continue;
		}
		for (const char *q = line; *q != '\0'; q++) {
			if (strncmp(q, "\"../", 4) == 0) {
				fprintf(f, "\"%s/config/../", abs);
				q += 3;
			} else {
				fputc(*q, f);
			}
		}
	}
	bool read_ok = !ferror(in);
	fclose(in);
	return fclose(f) == 0 && read_ok ? 0 : -1;
}

int jp_maelstrom_run(const char *vsrhost, const char *root, const char *out, uint64_t seed,
		     int n, uint32_t seconds, uint32_t clients, uint32_t call_ms)
{
	char dir[2048], config[2100];
	mkdir(out, 0755);
	snprintf(dir, sizeof dir, "%s/maelstrom-%" PRIu64, out, seed);
	mkdir(dir, 0755);
	if (mh_config(root, dir, config, sizeof config) != 0) {
		jp_log("maelstrom: cannot write %s/maelstrom.lua from %s/config/maelstrom.lua: %s", dir,
		       root, strerror(errno));
		return 2;
	}
	mh *m = calloc(1, sizeof *m);
	jp_nemesis *nm = calloc(1, sizeof *nm);
	jp_cluster *c = calloc(1, sizeof *c);
	if (m == NULL || nm == NULL || c == NULL)
		return 2;
	c->n = n;
	nm->c = c;
	m->nm = nm;
	m->n = n;
	m->rng = seed * 0x9e3779b97f4a7c15ull + 3;
	m->client_count = clients > MH_CLIENTS_MAX ? MH_CLIENTS_MAX : clients;
	m->keys = 8;
	m->next_value = 1;
	for (int k = 0; k < 64; k++)
		m->last_value[k] = LINCHECK_NIL;
	for (int i = 0; i < n; i++)
		m->nodes[i].in_fd = m->nodes[i].out_fd = -1;
	int rc = 2;
	for (int i = 0; i < n; i++)
		if (mh_start(m, i, vsrhost, config, dir) != 0)
			goto out;
	json_t *ids = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(ids, json_sprintf("n%d", i + 1));
	for (int i = 0; i < n; i++) {
		char id[16];
		snprintf(id, sizeof id, "n%d", i + 1);
		mh_send(m, i, json_pack("{s:s, s:s, s:{s:s, s:i, s:s, s:O}}", "src", "c0", "dest", id,
					"body", "type", "init", "msg_id", i + 1, "node_id", id,
					"node_ids", ids));
	}
	json_decref(ids);
	int64_t init_deadline = jp_now_ns() + 10000000000ll;
	while (m->init_ok != (1u << n) - 1 && jp_now_ns() < init_deadline && !jp_interrupted)
		mh_pump(m, 50);
	for (int i = 0; i < n; i++)
		if (!(m->init_ok >> i & 1)) {
			jp_log("maelstrom: node n%d did not answer init within 10 s (see %s/node-%d.log)",
			       i + 1, dir, i + 1);
			goto out;
		}
	m->t0 = jp_now_ns();
	mh_partition(m, false);
	int64_t end = m->t0 + (int64_t)seconds * 1000000000ll;
	int64_t next_fault = m->t0 + 2000000000ll;
	bool cut = false;
	while (!jp_interrupted && jp_now_ns() < end) {
		mh_pump(m, 5);
		mh_clients(m, (int64_t)call_ms * 1000000);
		if (jp_now_ns() >= next_fault) {
			cut = !cut;
			mh_partition(m, cut);
			next_fault = jp_now_ns() + (int64_t)(1500 + jp_rand(&m->rng) % 3000) * 1000000;
		}
	}
	if (cut)
		mh_partition(m, false);
	/* Let the calls in progress finish or time out, then read every key. */
	int64_t drain = jp_now_ns() + (int64_t)call_ms * 1000000 + 500000000;
	while (!jp_interrupted && jp_now_ns() < drain) {
		mh_pump(m, 10);
		bool busy = false;
		for (uint32_t i = 0; i < m->client_count; i++) {
			mh_client *cl = &m->clients[i];
			if (cl->busy && jp_now_ns() > cl->deadline_ns) {
				cl->cur.op.outcome = LINCHECK_INFO;
				cl->cur.op.return_ns = jp_now_ns() - m->t0;
				mh_record(m, &cl->cur);
				cl->busy = false;
			}
			busy |= cl->busy;
		}
		if (!busy)
			break;
	}
	size_t first_final = m->count;
	jp_verdict v;
	memset(&v, 0, sizeof v);
	v.unread_keys = mh_final_reads(m);
	int64_t end_ns = jp_now_ns() - m->t0;
	mh_stop_all(m);
	if (jp_interrupted) {
		rc = 130;
		goto out;
	}
	v.digests_agree = true; /* no status port under Maelstrom: final reads only */
	lincheck_op *ops = malloc((m->count ? m->count : 1) * sizeof *ops);
	for (size_t i = 0; i < m->count; i++)
		ops[i] = m->hist[i].op;
	lincheck_limits lim = {.time_ms = 60000, .memory_bytes = 256u << 20};
	if (lincheck_check(ops, m->count, &lim, &v.lin) != 0)
		v.lin.verdict = LINCHECK_UNKNOWN;
	free(ops);
	jp_report_lost(m->hist, m->count, (uint32_t)first_final, &v);
	jp_report_availability(m->hist, first_final, nm, end_ns, &v);
	bool violation = v.lin.verdict == LINCHECK_NOT_LINEARIZABLE || v.lost_writes > 0;
	v.valid = !violation && v.lin.verdict == LINCHECK_LINEARIZABLE && v.unread_keys == 0;
	jp_report_write(dir, m->hist, m->count, nm, &v, m->client_count, end_ns, seed);
	printf("maelstrom seed %" PRIu64 ": %s; %d nodes, %" PRIu64 " ops (%" PRIu64 " ok, %" PRIu64
	       " fail, %" PRIu64 " info) on %u keys; lost writes %u; unread keys %u; %u partitions; "
	       "%" PRIu64 " node messages routed, %" PRIu64 " dropped -> %s\n",
	       seed, lincheck_verdict_name(v.lin.verdict), n, v.ops, v.ok, v.fail, v.info,
	       v.lin.keys, v.lost_writes, v.unread_keys, nm->event_count, m->routed, m->dropped, dir);
	if (v.lin.why[0])
		printf("  checker: %s\n", v.lin.why);
	if (v.lost_writes)
		printf("  lost: %s\n", v.lost_example);
	rc = violation ? 1 : v.valid ? 0 : 2;
	if (v.valid) { /* the nodes' data, kept only for a run to look into */
		char data[sizeof dir + 8];
		snprintf(data, sizeof data, "%s/data", dir);
		if (jp_remove_tree(data) != 0)
			jp_log("cannot remove %s: %s", data, strerror(errno));
	}
out:
	mh_stop_all(m);
	free(m->hist);
	free(m);
	free(nm);
	free(c);
	return jp_interrupted ? 130 : rc;
}
