/* vsrc_client.c - one client session on libuv: connections, frames, and the session logic.
 *
 * Every handle belongs to its vsrc_client and is freed only after its close
 * callback (the client's memory goes once `handles` reaches zero). Each write
 * owns a copy of its frame until its callback. A session has at most one
 * request in flight, so a connection holds at most a few frames queued; a
 * connection whose write queue grows past CLIENT_WRITE_QUEUE_MAX is treated as
 * dead rather than buffering without bound. */
#include "vsrc_client.h"
#include "vsrc_frames.h"

#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define CLIENT_WRITE_QUEUE_MAX (8u << 20)

enum conn_state {
	CONN_DOWN = 0,   /* no handle */
	CONN_CONNECTING, /* TCP connect or HELLO (and AUTH) exchange in progress */
	CONN_UP,         /* HELLO received and, with a key, authenticated: requests may be sent */
	CONN_CLOSING,    /* uv_close called, waiting for its callback */
};

typedef struct client_conn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	struct vsrc_client *owner;
	uint8_t replica;
	int state;
	vsr_wire_reader reader;
	vsr_wire_conn_auth auth;
	char *read_buf;
	size_t read_cap;
} client_conn;

typedef struct client_write {
	uv_write_t req;
	client_conn *conn;
	size_t len;
	uint8_t data[];
} client_write;

struct vsrc_client {
	uv_loop_t *loop;
	vsrc_options opt;
	vsr_wire_config wire;
	vsrc_session s;
	client_conn conns[VSR_REPLICAS_MAX];
	uv_timer_t timer;
	uint32_t handles; /* open handles, timer included */
	bool closing;
	vsrc_closed_cb closed_cb;
	void *closed_arg;
	uint64_t instance;
	bool trace;         /* VSRC_TRACE set: retries are reported on stderr */
	/* The call in progress. */
	bool in_call;
	bool query;         /* the call is a QUERY (no registration) */
	uint8_t query_mode;
	bool start_pending; /* the timer is set to start the call: leave it be */
	bool registering;   /* the REGISTER that precedes the caller's op */
	vsr_buf op;         /* the caller's op, kept for resends */
	vsr_buf frame;      /* the encoded REQUEST of the current attempt */
	vsrc_call_cb cb;
	void *cb_arg;
	char reason[256];
};

static uint64_t client_random64(void)
{
	uint64_t v = 0;
	while (v == 0) {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
			/* getrandom on Linux >= 3.17 does not fail for 8 bytes;
			 * fall back on the clock rather than abort. */
			v = uv_hrtime() ^ ((uint64_t)rand() << 32);
		}
	}
	return v;
}

/* ------------------------------------------------------------------------ */
/* Options. */

static int options_parse_address(vsrc_options *o, uint32_t i, const char *host,
				 uint16_t port, char *err, size_t err_len)
{
	char service[8];
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, err_len, "client address %u (%s:%u): %s", i + 1, host,
			 (unsigned)port, gai_strerror(rc));
		return -1;
	}
	memcpy(&o->addrs[i], res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	snprintf(o->names[i], sizeof(o->names[i]), "%.56s:%u", host, (unsigned)port);
	return 0;
}

static void options_defaults(vsrc_options *o, uint64_t cluster)
{
	memset(o, 0, sizeof(*o));
	o->cluster = cluster;
	o->message_bytes_max = VSR_WIRE_BODY_BYTES_MAX;
	vsrc_timing_default(&o->timing);
}

int vsrc_options_set_key_file(vsrc_options *o, const char *path, char *err, size_t err_len)
{
	if (vsr_wire_key_load(path, o->key, err, err_len) != 0)
		return -1;
	o->has_key = true;
	return 0;
}

int vsrc_options_from_addresses(vsrc_options *o, uint64_t cluster,
				const char *const *addresses, uint32_t count,
				char *err, size_t err_len)
{
	options_defaults(o, cluster);
	if (count == 0 || count > VSR_REPLICAS_MAX) {
		snprintf(err, err_len, "expected 1 to %u replica addresses, got %u",
			 VSR_REPLICAS_MAX, count);
		return -1;
	}
	for (uint32_t i = 0; i < count; i++) {
		const char *a = addresses[i];
		const char *colon = strrchr(a, ':');
		char host[256];
		char *end = NULL;
		unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
		size_t host_len = colon ? (size_t)(colon - a) : 0;
		if (!colon || host_len == 0 || host_len >= sizeof(host) || *end != '\0' ||
		    end == colon + 1 || port == 0 || port > 65535) {
			snprintf(err, err_len, "address %u: expected \"host:port\", got \"%s\"",
				 i + 1, a);
			return -1;
		}
		memcpy(host, a, host_len);
		host[host_len] = '\0';
		/* "[::1]:7001": the brackets are not part of the host. */
		if (host[0] == '[' && host[host_len - 1] == ']') {
			memmove(host, host + 1, host_len - 2);
			host[host_len - 2] = '\0';
		}
		if (options_parse_address(o, i, host, (uint16_t)port, err, err_len) < 0)
			return -1;
	}
	o->replica_count = (uint8_t)count;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Handles and connections. */

static void client_maybe_free(vsrc_client *c)
{
	if (!c->closing || c->handles > 0)
		return;
	for (uint32_t i = 0; i < c->opt.replica_count; i++)
		vsr_wire_reader_free(&c->conns[i].reader);
	vsrc_closed_cb cb = c->closed_cb;
	void *arg = c->closed_arg;
	vsr_buf_free(&c->op);
	vsr_buf_free(&c->frame);
	free(c);
	if (cb)
		cb(arg);
}

static void conn_close_cb(uv_handle_t *h)
{
	client_conn *conn = h->data;
	vsrc_client *c = conn->owner;
	conn->state = CONN_DOWN;
	free(conn->read_buf);
	conn->read_buf = NULL;
	conn->read_cap = 0;
	assert(c->handles > 0);
	c->handles--;
	client_maybe_free(c);
}

static void client_apply(vsrc_client *c, vsrc_decision d);
static void client_finish(vsrc_client *c, vsrc_decision d, vsrc_result *r);
static void timer_cb(uv_timer_t *t);

/* Drops a connection; the session hears that its replica is unreachable. */
static void conn_fail(client_conn *conn, const char *why)
{
	vsrc_client *c = conn->owner;
	if (conn->state == CONN_DOWN || conn->state == CONN_CLOSING)
		return;
	if (why)
		snprintf(c->reason, sizeof(c->reason), "%.64s: %.180s",
			 c->opt.names[conn->replica], why);
	conn->state = CONN_CLOSING;
	uv_read_stop((uv_stream_t *)&conn->tcp);
	uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
	if (!c->closing)
		client_apply(c, vsrc_session_unreachable(&c->s, conn->replica,
							 uv_now(c->loop)));
}

/* Closes a connection quietly: the session is not told (it has moved on). */
static void conn_drop(client_conn *conn)
{
	if (conn->state != CONN_UP && conn->state != CONN_CONNECTING)
		return;
	conn->state = CONN_CLOSING;
	uv_read_stop((uv_stream_t *)&conn->tcp);
	uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
}

static void write_cb(uv_write_t *req, int status)
{
	client_write *w = req->data;
	client_conn *conn = w->conn;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		conn_fail(conn, uv_strerror(status));
}

/* Queues `len` bytes on an up connection; returns 0 or a libuv error. */
static int conn_write(client_conn *conn, const uint8_t *data, size_t len)
{
	if (uv_stream_get_write_queue_size((uv_stream_t *)&conn->tcp) > CLIENT_WRITE_QUEUE_MAX)
		return UV_ENOBUFS;
	client_write *w = malloc(sizeof(*w) + len);
	if (!w)
		return UV_ENOMEM;
	w->conn = conn;
	w->len = len;
	w->req.data = w;
	memcpy(w->data, data, len);
	uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)len);
	int rc = uv_write(&w->req, (uv_stream_t *)&conn->tcp, &buf, 1, write_cb);
	if (rc < 0)
		free(w);
	return rc;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	client_conn *conn = h->data;
	/* One fixed buffer per connection: the reader copies what it keeps. */
	if (!conn->read_buf) {
		conn->read_cap = 64u * 1024u;
		conn->read_buf = malloc(conn->read_cap);
		if (!conn->read_buf)
			conn->read_cap = 0;
	}
	(void)suggested;
	*buf = uv_buf_init(conn->read_buf, (unsigned)conn->read_cap);
}

static void conn_handle_frame(client_conn *conn, vsr_wire_decoded *d)
{
	vsrc_client *c = conn->owner;
	uint64_t now = uv_now(c->loop);
	switch (d->type) {
	case VSR_WIRE_HELLO:
		if (conn->state != CONN_CONNECTING)
			return;
		if (d->hello.role != VSR_WIRE_ROLE_REPLICA ||
		    d->hello.replica != conn->replica) {
			char why[128];
			snprintf(why, sizeof(why),
				 "answered as replica %u, but the config lists it as replica %u",
				 (unsigned)d->hello.replica + 1u, (unsigned)conn->replica + 1u);
			conn_fail(conn, why);
			return;
		}
		{
			char why[256];
			vsr_buf auth = { 0 };
			int rc = vsr_wire_conn_auth_peer_hello(&conn->auth, &d->hello, &auth, why,
							       sizeof(why));
			if (rc == 0 && auth.len > 0)
				rc = conn_write(conn, auth.data, auth.len);
			vsr_buf_free(&auth);
			if (rc != 0) {
				conn_fail(conn, rc == -VSR_WIRE_EMAC ? why : "cannot send AUTH");
				return;
			}
		}
		if (!vsr_wire_conn_auth_ready(&conn->auth))
			return; /* up once the replica's AUTH checks out */
		conn->state = CONN_UP;
		client_apply(c, vsrc_session_connected(&c->s, conn->replica, now));
		return;
	case VSR_WIRE_AUTH: {
		char why[256];
		if (conn->state != CONN_CONNECTING ||
		    vsr_wire_conn_auth_peer_auth(&conn->auth, &d->auth, &conn->reader, why,
						 sizeof(why)) != 0) {
			conn_fail(conn, conn->state != CONN_CONNECTING ? "an unexpected AUTH" : why);
			return;
		}
		conn->state = CONN_UP;
		client_apply(c, vsrc_session_connected(&c->s, conn->replica, now));
		return;
	}
	case VSR_MSG_REPLY:
		if (conn->state != CONN_UP)
			return;
		{
			vsrc_decision dec = vsrc_session_reply(&c->s, conn->replica,
							       &d->message, now);
			if (dec.type == VSRC_COMPLETE &&
			    (dec.status == VSR_REPLY_OK || vsr_reply_is_error(dec.status) ||
			     dec.status == VSR_REPLY_REJECTED)) {
				/* Hand the reply bytes to the completion. */
				vsrc_result r = { 0 };
				r.reply = d->message.body;
				r.reply_len = d->message.body_len;
				r.op = d->message.reply_op;
				r.replica = conn->replica;
				r.read_mode = d->message.read_mode;
				client_finish(c, dec, &r);
				return;
			}
			client_apply(c, dec);
		}
		return;
	case VSR_WIRE_CLOSE: {
		/* The replica is about to close: keep its reason, not the EOF. */
		char why[200];
		snprintf(why, sizeof(why), "closed by the replica: %.160s", d->close.text);
		conn_fail(conn, why);
		return;
	}
	default:
		/* PING, STATUS and replica traffic are not for a client. */
		return;
	}
}

/* A connection reads on while it is neither closing nor down and its client
 * is not closing: a frame can end all three. */
static bool conn_reading(const client_conn *conn)
{
	return conn->state != CONN_CLOSING && conn->state != CONN_DOWN &&
	       !conn->owner->closing;
}

static bool conn_frame_cb(void *arg, vsr_wire_decoded *d)
{
	client_conn *conn = arg;
	conn_handle_frame(conn, d);
	return conn_reading(conn);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	client_conn *conn = stream->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		conn_fail(conn, nread == UV_EOF ? "connection closed by the replica"
						: uv_strerror((int)nread));
		return;
	}
	if (!conn_reading(conn))
		return;
	if (vsrc_frames_feed(&conn->reader, (const uint8_t *)buf->base, (size_t)nread,
			     conn_frame_cb, conn) != 0) {
		char why[220];
		snprintf(why, sizeof(why), "bad frame: %.180s", conn->reader.err);
		conn_fail(conn, why);
	}
}

static void connect_cb(uv_connect_t *req, int status)
{
	client_conn *conn = req->data;
	vsrc_client *c = conn->owner;
	if (conn->state != CONN_CONNECTING)
		return; /* closed meanwhile */
	if (status < 0) {
		conn_fail(conn, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&conn->tcp, 1);
	/* A replica that stops acknowledging our bytes (cut off, paused) ends
	 * the connection within two attempts, instead of the kernel's
	 * retransmission backoff keeping it half-alive for minutes. */
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&conn->tcp, &fd) == 0) {
		unsigned int user_timeout_ms = 2u * c->s.timing.attempt_ms;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
				 sizeof user_timeout_ms);
	}
	vsr_buf hello = { 0 };
	vsr_wire_hello h = { .role = VSR_WIRE_ROLE_CLIENT, .replica = 0,
			     .instance = c->instance };
	if (vsr_wire_conn_auth_send_hello(&conn->auth, &hello, h) != 0) {
		conn_fail(conn, "out of memory");
		return;
	}
	int rc = conn_write(conn, hello.data, hello.len);
	vsr_buf_free(&hello);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb);
	if (rc != 0) {
		conn_fail(conn, uv_strerror(rc));
		return;
	}
}

/* Starts connecting; returns 0 or a libuv error (the connection stays down). */
static int conn_start(client_conn *conn)
{
	vsrc_client *c = conn->owner;
	assert(conn->state == CONN_DOWN);
	int rc = uv_tcp_init(c->loop, &conn->tcp);
	if (rc < 0)
		return rc;
	conn->tcp.data = conn;
	conn->connect_req.data = conn;
	c->handles++;
	conn->state = CONN_CONNECTING;
	vsr_wire_reader_free(&conn->reader);
	vsr_wire_reader_init(&conn->reader, &c->wire, NULL);
	vsr_wire_conn_auth_init(&conn->auth, c->opt.has_key ? c->opt.key : NULL, c->opt.cluster,
				VSR_WIRE_ROLE_CLIENT, 0);
	rc = uv_tcp_connect(&conn->connect_req, &conn->tcp,
			    (const struct sockaddr *)&c->opt.addrs[conn->replica], connect_cb);
	if (rc < 0) {
		conn->state = CONN_CLOSING;
		uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
		return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Carrying out the session's decisions. */

static int client_encode_request(vsrc_client *c)
{
	vsr_message m;
	memset(&m, 0, sizeof(m));
	m.type = VSR_MSG_REQUEST;
	m.cluster = c->opt.cluster;
	m.view = c->s.view;
	m.request.session = c->s.session;
	m.history = c->s.kind == VSR_REQUEST_OP ? c->s.history : 0;
	m.request.request = c->s.number;
	m.request.kind = c->s.kind;
	if (c->s.kind == VSR_REQUEST_OP || c->s.kind == VSR_REQUEST_QUERY) {
		m.request.op = c->op.data;
		m.request.op_len = (uint32_t)c->op.len;
	}
	if (c->s.kind == VSR_REQUEST_QUERY)
		m.read_mode = c->s.read_mode;
	vsr_buf_reset(&c->frame);
	return vsr_wire_encode_message(&c->frame, c->opt.cluster, &m);
}

static void client_arm_timer(vsrc_client *c)
{
	/* Before a call starts the session is idle, yet the timer holds the
	 * call's start: a stale reply handled meanwhile must not stop it. */
	if (c->closing || c->start_pending)
		return;
	if (c->s.phase == VSRC_IDLE) {
		uv_timer_stop(&c->timer);
		return;
	}
	uint64_t now = uv_now(c->loop);
	uint64_t wait = c->s.deadline_ms > now ? c->s.deadline_ms - now : 0;
	uv_timer_start(&c->timer, timer_cb, wait, 0);
}

static void client_apply(vsrc_client *c, vsrc_decision d)
{
	/* Each SEND is resolved into sent / pending / unreachable; the latter
	 * two never answer SEND, so this loop runs at most twice. */
	for (int guard = 0; guard < 4; guard++) {
		uint64_t now = uv_now(c->loop);
		if (d.type == VSRC_NOTHING)
			break;
		if (d.type == VSRC_COMPLETE) {
			vsrc_result r = { 0 };
			client_finish(c, d, &r);
			return;
		}
		client_conn *conn = &c->conns[d.replica];
		if (conn->state == CONN_UP) {
			int rc = client_encode_request(c);
			if (rc == 0)
				rc = vsr_wire_conn_auth_seal(&conn->auth, &c->frame, 0);
			if (rc != 0) {
				/* The request cannot be framed (too large, no
				 * memory): this copy never went out. */
				snprintf(c->reason, sizeof(c->reason),
					 "failed: the request cannot be encoded (%s)",
					 vsr_wire_strerror(rc));
				d = vsrc_session_abort(&c->s, c->reason);
				continue;
			}
			rc = conn_write(conn, c->frame.data, c->frame.len);
			if (rc == 0) {
				vsrc_session_sent(&c->s, d.replica, now);
				break;
			}
			conn_fail(conn, uv_strerror(rc));
			return; /* conn_fail applied the session's answer */
		}
		if (conn->state == CONN_CONNECTING) {
			d = vsrc_session_pending(&c->s, d.replica, now);
			continue;
		}
		if (conn->state == CONN_DOWN) {
			int rc = conn_start(conn);
			if (rc == 0) {
				d = vsrc_session_pending(&c->s, d.replica, now);
				continue;
			}
			snprintf(c->reason, sizeof(c->reason), "%s: %s",
				 c->opt.names[conn->replica], uv_strerror(rc));
		}
		d = vsrc_session_unreachable(&c->s, d.replica, now);
	}
	client_arm_timer(c);
}

static void client_start_op(vsrc_client *c)
{
	client_apply(c, vsrc_session_start(&c->s, VSR_REQUEST_OP, 0, uv_now(c->loop)));
}

static void client_start_register(vsrc_client *c)
{
	c->registering = true;
	client_apply(c, vsrc_session_start(&c->s, VSR_REQUEST_REGISTER,
					   client_random64(), uv_now(c->loop)));
}

/* A call (REGISTER or OP) completed: go on with the op, or report. */
static void client_finish(vsrc_client *c, vsrc_decision d, vsrc_result *r)
{
	assert(d.type == VSRC_COMPLETE);
	uv_timer_stop(&c->timer);
	if (c->registering) {
		c->registering = false;
		if (d.outcome == VSRC_DONE && !c->closing) {
			client_start_op(c);
			return;
		}
		/* The op itself never left: the call failed, whatever became of
		 * the REGISTER. */
		char why[256];
		snprintf(why, sizeof(why), "failed: could not register a session (%.80s%s%.120s)",
			 d.reason ? d.reason : "no reason", c->reason[0] ? "; last error: " : "",
			 c->reason);
		snprintf(c->reason, sizeof(c->reason), "%s", why);
		d.outcome = VSRC_FAILED;
		d.reason = c->reason;
		r->reply = NULL;
		r->reply_len = 0;
	} else if (d.status == VSR_REPLY_REJECTED && r->reply_len > 0) {
		/* The body says why, in words. */
		snprintf(c->reason, sizeof(c->reason),
			 "failed: the cluster rejected the request: %.*s",
			 (int)(r->reply_len < 200 ? r->reply_len : 200), (const char *)r->reply);
		d.reason = c->reason;
	} else if (d.outcome != VSRC_DONE && !vsr_reply_is_error(d.status) &&
		   c->reason[0] && d.reason != c->reason) {
		char why[256];
		snprintf(why, sizeof(why), "%.100s (last error: %.140s)", d.reason, c->reason);
		snprintf(c->reason, sizeof(c->reason), "%s", why);
		d.reason = c->reason;
	}
	r->outcome = d.outcome;
	r->status = d.status;
	r->reason = d.reason;
	r->session = c->s.session;
	r->request = c->s.number;
	c->in_call = false;
	vsrc_call_cb cb = c->cb;
	void *arg = c->cb_arg;
	c->cb = NULL;
	cb(c, r, arg);
}

static void timer_cb(uv_timer_t *t)
{
	vsrc_client *c = t->data;
	if (c->closing)
		return;
	uint64_t now = uv_now(c->loop);
	if (c->trace && c->s.phase == VSRC_AWAIT && now >= c->s.deadline_ms)
		fprintf(stderr, "vsrclient: session %llu request %llu: no reply from %s within %u ms\n",
			(unsigned long long)c->s.session, (unsigned long long)c->s.number,
			c->opt.names[c->s.target], c->s.timing.attempt_ms);
	bool timed_out = (c->s.phase == VSRC_AWAIT || c->s.phase == VSRC_UNSENT) &&
			 now >= c->s.deadline_ms;
	uint8_t was = c->s.target;
	client_apply(c, vsrc_session_timer(&c->s, now));
	/* An attempt went unanswered: that connection may be one the kernel
	 * keeps retransmitting into with a growing backoff (a cut that has
	 * healed meanwhile still waits out its RTO). The next attempt there
	 * gets a fresh connection (issue 7: a client cut from the primary
	 * stayed stuck 1.3-6.8 s after the heal). */
	if (timed_out && !c->closing && c->s.target != was)
		conn_drop(&c->conns[was]);
}

static void timer_close_cb(uv_handle_t *h)
{
	vsrc_client *c = h->data;
	assert(c->handles > 0);
	c->handles--;
	client_maybe_free(c);
}

/* ------------------------------------------------------------------------ */
/* Public API. */

int vsrc_client_create(uv_loop_t *loop, const vsrc_options *o, vsrc_client **out)
{
	assert(o->replica_count >= 1 && o->replica_count <= VSR_REPLICAS_MAX);
	vsrc_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->loop = loop;
	c->opt = *o;
	vsr_wire_config_default(&c->wire, o->cluster, o->replica_count);
	if (o->message_bytes_max && o->message_bytes_max < c->wire.body_bytes_max)
		c->wire.body_bytes_max = o->message_bytes_max;
	vsrc_session_init(&c->s, o->replica_count, &o->timing);
	c->instance = client_random64();
	c->trace = getenv("VSRC_TRACE") != NULL;
	for (uint32_t i = 0; i < o->replica_count; i++) {
		c->conns[i].owner = c;
		c->conns[i].replica = (uint8_t)i;
		c->conns[i].state = CONN_DOWN;
		vsr_wire_reader_init(&c->conns[i].reader, &c->wire, NULL);
	}
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	*out = c;
	return 0;
}

static void call_later_cb(uv_timer_t *t);

static int client_begin(vsrc_client *c, bool query, uint8_t mode, const uint8_t *op,
			size_t op_len, vsrc_call_cb cb, void *arg);

int vsrc_client_call(vsrc_client *c, const uint8_t *op, size_t op_len,
		     vsrc_call_cb cb, void *arg)
{
	return client_begin(c, false, 0, op, op_len, cb, arg);
}

int vsrc_client_query(vsrc_client *c, uint8_t mode, const uint8_t *op, size_t op_len,
		      vsrc_call_cb cb, void *arg)
{
	if (mode >= VSR_READ_MODE_COUNT)
		return -1;
	return client_begin(c, true, mode, op, op_len, cb, arg);
}

static int client_begin(vsrc_client *c, bool query, uint8_t mode, const uint8_t *op,
			size_t op_len, vsrc_call_cb cb, void *arg)
{
	if (c->closing || c->in_call || op_len > VSR_OP_BYTES_MAX)
		return -1;
	c->query = query;
	c->query_mode = mode;
	vsr_buf_reset(&c->op);
	if (op_len && vsr_buf_append(&c->op, op, op_len) != VSR_OK)
		return -1;
	c->in_call = true;
	c->cb = cb;
	c->cb_arg = arg;
	c->reason[0] = '\0';
	/* The callback must never run inside this function (callers start the
	 * next call from it): start on the next loop turn via the timer. */
	c->start_pending = true;
	uv_timer_start(&c->timer, call_later_cb, 0, 0);
	return 0;
}

static void call_later_cb(uv_timer_t *t)
{
	vsrc_client *c = t->data;
	c->start_pending = false;
	if (c->closing)
		return;
	if (c->query)
		client_apply(c, vsrc_session_start_query(&c->s, c->query_mode, uv_now(c->loop)));
	else if (c->s.session == 0 || c->s.evicted)
		client_start_register(c);
	else
		client_start_op(c);
}

void vsrc_client_set_timing(vsrc_client *c, const vsrc_timing *t)
{
	assert(t->attempt_ms > 0 && t->call_ms > 0);
	assert(t->backoff_min_ms > 0 && t->backoff_min_ms <= t->backoff_max_ms);
	c->opt.timing = *t;
	c->s.timing = *t; /* read when a call starts */
}

bool vsrc_client_busy(const vsrc_client *c)
{
	return c->in_call;
}

uint64_t vsrc_client_session(const vsrc_client *c)
{
	return c->s.session;
}

void vsrc_client_close(vsrc_client *c, vsrc_closed_cb cb, void *arg)
{
	if (c->closing)
		return;
	/* Closing first: a callback run below cannot start another call. */
	c->closing = true;
	if (c->in_call) {
		vsrc_decision d = vsrc_session_abort(&c->s, "failed: the client was closed");
		if (d.type != VSRC_COMPLETE) {
			/* Not started yet (the call waits for its first turn). */
			d.type = VSRC_COMPLETE;
			d.outcome = VSRC_FAILED;
			d.status = -1;
			d.reason = "failed: the client was closed";
		}
		c->registering = false;
		vsrc_result r = { 0 };
		client_finish(c, d, &r);
	}
	c->closed_cb = cb;
	c->closed_arg = arg;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, timer_close_cb);
	for (uint32_t i = 0; i < c->opt.replica_count; i++) {
		client_conn *conn = &c->conns[i];
		if (conn->state == CONN_CONNECTING || conn->state == CONN_UP) {
			conn->state = CONN_CLOSING;
			uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
		}
	}
}
