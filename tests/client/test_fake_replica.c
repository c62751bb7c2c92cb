/* test_fake_replica.c - the libuv client against scripted fake replicas on loopback.
 *
 * Each fake replica listens on 127.0.0.1 (port chosen by the kernel), sends
 * HELLO, and answers REQUESTs according to its script: act as primary, say
 * NOT_PRIMARY, stay silent, answer BUSY a few times, EVICTED, ERROR, or close
 * the connection. The client and the fakes share one loop; every scenario
 * ends by closing all handles and checking uv_loop_close() == 0. A "down"
 * replica is a port that was bound and closed again (connection refused). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "vsrc_client.h"
#include "check.h"

enum script {
	FAKE_PRIMARY = 0,   /* registers sessions and executes ops */
	FAKE_NOT_PRIMARY,   /* NOT_PRIMARY with view `view` */
	FAKE_SILENT_OPS,    /* primary for REGISTER, silent for ops */
	FAKE_BUSY_TWICE,    /* primary, but BUSY for the first two ops */
	FAKE_EVICT_FIRST,   /* primary, but EVICTED for the first op */
	FAKE_ERROR,         /* primary, but every op is refused as ERROR */
	FAKE_CLOSE_ON_OP,   /* primary for REGISTER, closes the connection on ops */
	FAKE_DOUBLE_REPLY,  /* primary that answers every op twice (as after a retry) */
	FAKE_DOWN,          /* nothing listens */
};

#define CONNS_MAX 16

typedef struct fake fake;

typedef struct fake_conn {
	uv_tcp_t tcp;
	fake *f;
	bool open;
	vsr_wire_reader reader;
	char buf[65536];
} fake_conn;

struct fake {
	uv_tcp_t server;
	bool listening;
	uint8_t index;
	uint8_t count;
	int script;
	uint64_t view;
	uint16_t port;
	uint64_t next_session;
	uint32_t ops_seen;
	uint64_t last_request;
	uint64_t last_session;
	fake_conn conns[CONNS_MAX];
};

static vsr_wire_config wire;

static void fake_conn_close_cb(uv_handle_t *h)
{
	fake_conn *fc = h->data;
	vsr_wire_reader_free(&fc->reader);
}

static void fake_conn_close(fake_conn *fc)
{
	if (!fc->open)
		return;
	fc->open = false;
	uv_close((uv_handle_t *)&fc->tcp, fake_conn_close_cb);
}

static void fake_write_cb(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
	free(req);
}

static void fake_send(fake_conn *fc, vsr_buf *b)
{
	uv_write_t *req = malloc(sizeof(*req));
	req->data = b->data;
	uv_buf_t ub = uv_buf_init((char *)b->data, (unsigned)b->len);
	if (uv_write(req, (uv_stream_t *)&fc->tcp, &ub, 1, fake_write_cb) != 0) {
		free(b->data);
		free(req);
	}
	b->data = NULL;
	b->len = b->cap = 0;
}

static void fake_reply(fake_conn *fc, const vsr_message *req, uint8_t status,
		       uint64_t session, const void *body, uint32_t body_len)
{
	vsr_message m;
	memset(&m, 0, sizeof(m));
	m.type = VSR_MSG_REPLY;
	m.status = status;
	m.view = fc->f->view;
	m.replica = fc->f->index;
	m.request.session = session;
	m.request.request = req->request.request;
	m.request.kind = req->request.kind;
	m.reply_op = fc->f->ops_seen;
	m.body = body;
	m.body_len = body_len;
	vsr_buf b = { 0 };
	CHECK(vsr_wire_encode_message(&b, wire.cluster, &m) == 0);
	fake_send(fc, &b);
}

static void fake_request(fake_conn *fc, const vsr_message *m)
{
	fake *f = fc->f;
	const vsr_request *r = &m->request;
	if (f->script == FAKE_NOT_PRIMARY) {
		fake_reply(fc, m, VSR_REPLY_NOT_PRIMARY, r->session, NULL, 0);
		return;
	}
	if (r->kind == VSR_REQUEST_REGISTER) {
		fake_reply(fc, m, VSR_REPLY_OK, ++f->next_session, NULL, 0);
		return;
	}
	f->ops_seen++;
	f->last_request = r->request;
	f->last_session = r->session;
	switch (f->script) {
	case FAKE_SILENT_OPS:
		return;
	case FAKE_CLOSE_ON_OP: {
		vsr_buf b = { 0 };
		CHECK(vsr_wire_encode_close(&b, wire.cluster, 0, "going away") == 0);
		fake_send(fc, &b);
		fake_conn_close(fc);
		return;
	}
	case FAKE_BUSY_TWICE:
		if (f->ops_seen <= 2) {
			fake_reply(fc, m, VSR_REPLY_BUSY, r->session, NULL, 0);
			return;
		}
		break;
	case FAKE_EVICT_FIRST:
		if (f->ops_seen == 1) {
			fake_reply(fc, m, VSR_REPLY_EVICTED, r->session, NULL, 0);
			return;
		}
		break;
	case FAKE_ERROR: {
		const uint8_t msg[] = { 0xa4, 'n', 'o', 'p', 'e' }; /* msgpack "nope" */
		fake_reply(fc, m, VSR_REPLY_ERROR, r->session, msg, sizeof(msg));
		return;
	}
	case FAKE_DOUBLE_REPLY:
		fake_reply(fc, m, VSR_REPLY_OK, r->session, r->op, r->op_len);
		break;
	default:
		break;
	}
	/* The reply echoes the op bytes: the client must hand them back. */
	fake_reply(fc, m, VSR_REPLY_OK, r->session, r->op, r->op_len);
}

static void fake_alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	fake_conn *fc = h->data;
	(void)s;
	*buf = uv_buf_init(fc->buf, sizeof(fc->buf));
}

static void fake_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	fake_conn *fc = s->data;
	if (nread < 0) {
		fake_conn_close(fc);
		return;
	}
	size_t off = 0;
	while (fc->open && off < (size_t)nread) {
		size_t used;
		int rc = vsr_wire_reader_feed(&fc->reader, (const uint8_t *)buf->base + off,
					      (size_t)nread - off, &used);
		off += used;
		if (rc == 0)
			break;
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		if (rc == 1)
			rc = vsr_wire_reader_decode(&fc->reader, &d);
		CHECK(rc == 0);
		if (rc != 0) {
			vsr_wire_decoded_free(&d);
			fake_conn_close(fc);
			return;
		}
		if (d.type == VSR_WIRE_HELLO)
			CHECK(d.hello.role == VSR_WIRE_ROLE_CLIENT);
		else if (d.type == VSR_MSG_REQUEST)
			fake_request(fc, &d.message);
		vsr_wire_decoded_free(&d);
	}
}

static void fake_accept_cb(uv_stream_t *server, int status)
{
	fake *f = server->data;
	if (status < 0)
		return;
	fake_conn *fc = NULL;
	for (int i = 0; i < CONNS_MAX; i++)
		if (!fc && !f->conns[i].open && f->conns[i].tcp.type == UV_UNKNOWN_HANDLE)
			fc = &f->conns[i];
	if (!fc) {
		/* The scenarios stay well below CONNS_MAX connections. */
		CHECK(!"fake replica ran out of connection slots");
		return;
	}
	uv_tcp_init(server->loop, &fc->tcp);
	fc->tcp.data = fc;
	fc->f = f;
	fc->open = true;
	vsr_wire_reader_init(&fc->reader, &wire, NULL);
	if (uv_accept(server, (uv_stream_t *)&fc->tcp) != 0) {
		fake_conn_close(fc);
		return;
	}
	vsr_wire_hello h = { .role = VSR_WIRE_ROLE_REPLICA, .replica = f->index, .instance = 1 };
	vsr_buf b = { 0 };
	CHECK(vsr_wire_encode_hello(&b, wire.cluster, &h) == 0);
	fake_send(fc, &b);
	uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc_cb, fake_read_cb);
}

static void fake_start(uv_loop_t *loop, fake *f)
{
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(loop, &f->server);
	f->server.data = f;
	CHECK(uv_tcp_bind(&f->server, (const struct sockaddr *)&a, 0) == 0);
	struct sockaddr_in got;
	int len = sizeof(got);
	uv_tcp_getsockname(&f->server, (struct sockaddr *)&got, &len);
	f->port = ntohs(got.sin_port);
	if (f->script == FAKE_DOWN) {
		/* Bound then closed: the port refuses connections. */
		uv_close((uv_handle_t *)&f->server, NULL);
		return;
	}
	CHECK(uv_listen((uv_stream_t *)&f->server, 16, fake_accept_cb) == 0);
	f->listening = true;
}

static void fake_stop(fake *f)
{
	if (f->listening) {
		f->listening = false;
		uv_close((uv_handle_t *)&f->server, NULL);
	}
	for (int i = 0; i < CONNS_MAX; i++)
		fake_conn_close(&f->conns[i]);
}

/* ------------------------------------------------------------------------ */

typedef struct scenario {
	uv_loop_t loop;
	fake fakes[3];
	uint8_t n;
	vsrc_client *client;
	bool done;
	vsrc_result r;
	uint8_t reply[64];
	size_t reply_len;
	char reason[256];
} scenario;

static void scenario_cb(vsrc_client *c, const vsrc_result *r, void *arg)
{
	scenario *s = arg;
	(void)c;
	s->done = true;
	s->r = *r;
	s->reply_len = r->reply_len < sizeof(s->reply) ? r->reply_len : sizeof(s->reply);
	if (r->reply_len)
		memcpy(s->reply, r->reply, s->reply_len);
	snprintf(s->reason, sizeof(s->reason), "%s", r->reason ? r->reason : "");
	s->r.reason = s->reason;
	s->r.reply = s->reply;
}

static void scenario_start(scenario *s, uint8_t n, const int *scripts, uint64_t view,
			   uint32_t attempt_ms, uint32_t call_ms)
{
	memset(s, 0, sizeof(*s));
	CHECK(uv_loop_init(&s->loop) == 0);
	s->n = n;
	vsr_wire_config_default(&wire, 42, n);
	const char *addrs[3];
	char text[3][32];
	for (uint8_t i = 0; i < n; i++) {
		fake *f = &s->fakes[i];
		f->index = i;
		f->count = n;
		f->script = scripts[i];
		f->view = view;
		f->next_session = 100u * (i + 1u);
		fake_start(&s->loop, f);
		snprintf(text[i], sizeof(text[i]), "127.0.0.1:%u", f->port);
		addrs[i] = text[i];
	}
	vsrc_options o;
	char err[256];
	CHECK(vsrc_options_from_addresses(&o, 42, addrs, n, err, sizeof(err)) == 0);
	o.timing.attempt_ms = attempt_ms;
	o.timing.call_ms = call_ms;
	CHECK(vsrc_client_create(&s->loop, &o, &s->client) == 0);
}

/* Runs one call to completion; returns its outcome. */
static int scenario_call(scenario *s, const char *op)
{
	s->done = false;
	CHECK(vsrc_client_call(s->client, (const uint8_t *)op, strlen(op), scenario_cb, s) == 0);
	/* A second call while one is in progress is refused. */
	CHECK(vsrc_client_call(s->client, (const uint8_t *)op, strlen(op), scenario_cb, s) == -1);
	CHECK(!s->done); /* never completes inside vsrc_client_call */
	while (!s->done)
		uv_run(&s->loop, UV_RUN_ONCE);
	return s->r.outcome;
}

static void scenario_end(scenario *s)
{
	vsrc_client_close(s->client, NULL, NULL);
	for (uint8_t i = 0; i < s->n; i++)
		fake_stop(&s->fakes[i]);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&s->loop) == 0);
}

static void test_redirect_to_primary(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[3] = { FAKE_NOT_PRIMARY, FAKE_PRIMARY, FAKE_NOT_PRIMARY };
	scenario_start(&s, 3, scripts, 1, 500, 3000); /* primary(1) = replica 1 */
	CHECK(scenario_call(&s, "op-1") == VSRC_DONE);
	CHECK(s.r.session == 201 && s.r.request == 1 && s.r.replica == 1);
	CHECK(s.reply_len == 4 && memcmp(s.reply, "op-1", 4) == 0);
	CHECK(scenario_call(&s, "op-2") == VSRC_DONE);
	CHECK(s.fakes[1].last_request == 2 && s.fakes[1].last_session == 201);
	CHECK(s.fakes[0].ops_seen == 0);
	scenario_end(&s);
}

static void test_dead_replica_skipped(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[3] = { FAKE_DOWN, FAKE_PRIMARY, FAKE_NOT_PRIMARY };
	scenario_start(&s, 3, scripts, 1, 500, 3000);
	CHECK(scenario_call(&s, "x") == VSRC_DONE);
	CHECK(s.r.replica == 1);
	scenario_end(&s);
}

static void test_all_down_is_failed(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[3] = { FAKE_DOWN, FAKE_DOWN, FAKE_DOWN };
	scenario_start(&s, 3, scripts, 0, 100, 400);
	CHECK(scenario_call(&s, "x") == VSRC_FAILED);
	CHECK(strstr(s.reason, "could not register") != NULL);
	CHECK(strstr(s.reason, "connection refused") != NULL);
	scenario_end(&s);
}

static void test_silent_primary_is_unknown(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[3] = { FAKE_SILENT_OPS, FAKE_NOT_PRIMARY, FAKE_NOT_PRIMARY };
	scenario_start(&s, 3, scripts, 0, 100, 600);
	CHECK(scenario_call(&s, "x") == VSRC_UNKNOWN);
	CHECK(strstr(s.reason, "may have been applied") != NULL);
	/* Retries kept the request number. */
	CHECK(s.fakes[0].ops_seen >= 2 && s.fakes[0].last_request == 1);
	scenario_end(&s);
}

static void test_connection_lost_after_send_is_unknown(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[1] = { FAKE_CLOSE_ON_OP };
	scenario_start(&s, 1, scripts, 0, 100, 500);
	CHECK(scenario_call(&s, "x") == VSRC_UNKNOWN);
	/* The replica's CLOSE reason reaches the caller. */
	CHECK(strstr(s.reason, "closed by the replica: going away") != NULL);
	scenario_end(&s);
}

static void test_busy_then_done(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[1] = { FAKE_BUSY_TWICE };
	scenario_start(&s, 1, scripts, 0, 500, 3000);
	CHECK(scenario_call(&s, "x") == VSRC_DONE);
	CHECK(s.fakes[0].ops_seen == 3 && s.fakes[0].last_request == 1);
	scenario_end(&s);
}

static void test_evicted_then_registers_again(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[1] = { FAKE_EVICT_FIRST };
	scenario_start(&s, 1, scripts, 0, 500, 3000);
	CHECK(scenario_call(&s, "x") == VSRC_FAILED);
	CHECK(s.r.status == VSR_REPLY_EVICTED && strstr(s.reason, "evicted") != NULL);
	CHECK(s.r.session == 101);
	CHECK(scenario_call(&s, "y") == VSRC_DONE);
	CHECK(s.r.session == 102 && s.r.request == 1);
	scenario_end(&s);
}

static void test_error_reply(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[1] = { FAKE_ERROR };
	scenario_start(&s, 1, scripts, 0, 500, 3000);
	CHECK(scenario_call(&s, "x") == VSRC_FAILED);
	CHECK(s.r.status == VSR_REPLY_ERROR && s.reply_len == 5);
	/* The session goes on with the next number. */
	CHECK(scenario_call(&s, "y") == VSRC_FAILED && s.r.request == 2);
	scenario_end(&s);
}

/* Closed loop: each callback starts the next call at once, while the
 * duplicate reply of the call just completed is still being read. Regression:
 * that stale reply used to stop the timer that starts the next call, so the
 * loop hung with a call that never began. */
typedef struct loop_state {
	scenario *s;
	int left;
	int done;
	int not_done;
} loop_state;

static void loop_cb(vsrc_client *c, const vsrc_result *r, void *arg)
{
	loop_state *ls = arg;
	if (r->outcome == VSRC_DONE)
		ls->done++;
	else
		ls->not_done++;
	if (--ls->left > 0)
		CHECK(vsrc_client_call(c, (const uint8_t *)"again", 5, loop_cb, ls) == 0);
	else
		ls->s->done = true;
}

static void guard_cb(uv_timer_t *t)
{
	scenario *s = t->data;
	CHECK(!"closed loop did not finish within 10 s");
	s->done = true;
}

static void test_duplicate_replies_closed_loop(void)
{
	static scenario s;
	int scripts[1] = { FAKE_DOUBLE_REPLY };
	scenario_start(&s, 1, scripts, 0, 500, 3000);
	loop_state ls = { .s = &s, .left = 200 };
	uv_timer_t guard;
	uv_timer_init(&s.loop, &guard);
	guard.data = &s;
	uv_timer_start(&guard, guard_cb, 10000, 0);
	CHECK(vsrc_client_call(s.client, (const uint8_t *)"first", 5, loop_cb, &ls) == 0);
	while (!s.done)
		uv_run(&s.loop, UV_RUN_ONCE);
	CHECK(ls.done == 200 && ls.not_done == 0);
	CHECK(s.fakes[0].last_request == 200);
	uv_close((uv_handle_t *)&guard, NULL);
	scenario_end(&s);
}

static void test_close_during_call(void)
{
	static scenario s; /* large: fake read buffers */
	int scripts[1] = { FAKE_SILENT_OPS };
	scenario_start(&s, 1, scripts, 0, 1000, 300);
	/* Registers, then the op goes unanswered until the call's deadline. */
	CHECK(scenario_call(&s, "x") == VSRC_UNKNOWN);
	CHECK(s.fakes[0].ops_seen == 1);
	s.done = false;
	CHECK(vsrc_client_call(s.client, (const uint8_t *)"z", 1, scenario_cb, &s) == 0);
	/* Let the request reach the fake, then close the client mid-call. */
	while (s.fakes[0].ops_seen < 2)
		uv_run(&s.loop, UV_RUN_ONCE);
	vsrc_client_close(s.client, NULL, NULL);
	CHECK(s.done && s.r.outcome == VSRC_UNKNOWN);
	fake_stop(&s.fakes[0]);
	uv_run(&s.loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&s.loop) == 0);
}

int main(void)
{
	test_redirect_to_primary();
	test_dead_replica_skipped();
	test_all_down_is_failed();
	test_silent_primary_is_unknown();
	test_connection_lost_after_send_is_unknown();
	test_busy_then_done();
	test_evicted_then_registers_again();
	test_error_reply();
	test_close_during_call();
	test_duplicate_replies_closed_loop();
	if (failures) {
		fprintf(stderr, "test_fake_replica: %d checks failed\n", failures);
		return 1;
	}
	printf("test_fake_replica: all checks passed\n");
	return 0;
}
