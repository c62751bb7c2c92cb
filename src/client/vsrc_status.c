/* vsrc_status.c - asks every replica for its status over control connections (vsrctl status).
 *
 * Happy path per replica: connect, HELLO (role control) both ways,
 * STATUS_REQUEST with a nonce, STATUS_REPLY echoing it, close.
 * Failure modes: refused or lost connection, a malformed frame, a HELLO from
 * the wrong replica, or no answer before the deadline: that replica's entry
 * says why, the others are unaffected. */
#include "vsrc_client.h"
#include "vsrc_frames.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct status_conn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	struct status_query *q;
	uint8_t replica;
	bool open;      /* the tcp handle is initialised and not yet closed */
	bool finished;  /* the entry is final */
	uint64_t nonce;
	vsr_wire_reader reader;
	vsr_wire_conn_auth auth;
	char buf[16384];
} status_conn;

typedef struct status_query {
	const vsrc_options *o;
	vsr_wire_config wire;
	vsrc_status_entry *out;
	status_conn conns[VSR_REPLICAS_MAX];
	uv_timer_t timer;
	uint32_t pending; /* entries not final */
} status_query;

static void status_close_cb(uv_handle_t *h)
{
	(void)h;
}

static void status_finish(status_conn *sc, const char *error)
{
	if (sc->finished)
		return;
	sc->finished = true;
	vsrc_status_entry *e = &sc->q->out[sc->replica];
	if (error) {
		e->ok = 0;
		snprintf(e->error, sizeof(e->error), "%s", error);
	}
	if (sc->open) {
		sc->open = false;
		uv_close((uv_handle_t *)&sc->tcp, status_close_cb);
	}
	assert(sc->q->pending > 0);
	if (--sc->q->pending == 0)
		uv_timer_stop(&sc->q->timer);
}

static int status_send(status_conn *sc, vsr_buf *frame)
{
	/* Tiny frames: uv_try_write nearly always takes them whole; otherwise
	 * the entry fails rather than queueing (a control tool, not a client). */
	uv_buf_t b = uv_buf_init((char *)frame->data, (unsigned)frame->len);
	int rc = uv_try_write((uv_stream_t *)&sc->tcp, &b, 1);
	vsr_buf_free(frame);
	if (rc < 0)
		return rc;
	return (size_t)rc == b.len ? 0 : UV_EAGAIN;
}

static void status_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	status_conn *sc = h->data;
	(void)suggested;
	*buf = uv_buf_init(sc->buf, sizeof(sc->buf));
}

/* Sends the status request, sealed when the connection is authenticated. */
static void status_ask(status_conn *sc)
{
	vsr_buf f = { 0 };
	vsr_wire_status_request req = { .nonce = sc->nonce };
	int rc = vsr_wire_encode_status_request(&f, sc->q->o->cluster, &req);
	if (rc == 0)
		rc = vsr_wire_conn_auth_seal(&sc->auth, &f, 0);
	if (rc == 0)
		rc = status_send(sc, &f);
	else
		vsr_buf_free(&f);
	if (rc != 0)
		status_finish(sc, "could not send the status request");
}

static void status_frame(status_conn *sc, const vsr_wire_decoded *d)
{
	char why[256];
	if (d->type == VSR_WIRE_HELLO) {
		if (d->hello.role != VSR_WIRE_ROLE_REPLICA || d->hello.replica != sc->replica) {
			snprintf(why, sizeof(why),
				 "answered as replica %u, but the config lists it as replica %u",
				 (unsigned)d->hello.replica + 1u, (unsigned)sc->replica + 1u);
			status_finish(sc, why);
			return;
		}
		sc->q->out[sc->replica].config =
			vsr_wire_config_fingerprint(d->hello.config, d->hello.config_count);
		vsr_buf auth = { 0 };
		int rc = vsr_wire_conn_auth_peer_hello(&sc->auth, &d->hello, &auth, why, sizeof(why));
		if (rc == 0 && auth.len > 0) {
			rc = status_send(sc, &auth);
			if (rc != 0)
				snprintf(why, sizeof(why), "could not send AUTH");
		} else {
			vsr_buf_free(&auth);
		}
		if (rc != 0) {
			status_finish(sc, why);
			return;
		}
		if (vsr_wire_conn_auth_ready(&sc->auth))
			status_ask(sc);
		return;
	}
	if (d->type == VSR_WIRE_AUTH) {
		if (vsr_wire_conn_auth_peer_auth(&sc->auth, &d->auth, &sc->reader, why,
						 sizeof(why)) != 0) {
			status_finish(sc, why);
			return;
		}
		status_ask(sc);
		return;
	}
	if (d->type == VSR_WIRE_STATUS_REPLY && d->status.nonce == sc->nonce) {
		vsrc_status_entry *e = &sc->q->out[sc->replica];
		e->ok = 1;
		e->error[0] = '\0';
		e->status = d->status;
		status_finish(sc, NULL);
		return;
	}
	if (d->type == VSR_WIRE_CLOSE) {
		snprintf(why, sizeof(why), "closed by the replica: %.150s", d->close.text);
		status_finish(sc, why);
	}
}

static bool status_frame_cb(void *arg, vsr_wire_decoded *d)
{
	status_conn *sc = arg;
	status_frame(sc, d);
	return !sc->finished;
}

static void status_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	status_conn *sc = s->data;
	if (nread == 0 || sc->finished)
		return;
	if (nread < 0) {
		status_finish(sc, nread == UV_EOF ? "connection closed by the replica"
						  : uv_strerror((int)nread));
		return;
	}
	if (vsrc_frames_feed(&sc->reader, (const uint8_t *)buf->base, (size_t)nread,
			     status_frame_cb, sc) != 0) {
		char why[200];
		snprintf(why, sizeof(why), "bad frame: %.150s", sc->reader.err);
		status_finish(sc, why);
	}
}

static void status_connect_cb(uv_connect_t *req, int status)
{
	status_conn *sc = req->data;
	if (sc->finished)
		return;
	if (status < 0) {
		status_finish(sc, uv_strerror(status));
		return;
	}
	vsr_buf f = { 0 };
	uint64_t instance = 0;
	if (getrandom(&instance, sizeof(instance), 0) != (ssize_t)sizeof(instance))
		instance = uv_hrtime();
	vsr_wire_hello h = { .role = VSR_WIRE_ROLE_CONTROL, .replica = 0, .instance = instance };
	int rc = vsr_wire_conn_auth_send_hello(&sc->auth, &f, h);
	if (rc == 0)
		rc = status_send(sc, &f);
	else
		vsr_buf_free(&f);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&sc->tcp, status_alloc_cb, status_read_cb);
	if (rc != 0)
		status_finish(sc, "could not send HELLO");
}

static void status_timer_cb(uv_timer_t *t)
{
	status_query *q = t->data;
	for (uint32_t i = 0; i < q->o->replica_count; i++)
		status_finish(&q->conns[i], "no answer before the deadline");
}

void vsrc_status_query(const vsrc_options *o, uint32_t timeout_ms,
		       vsrc_status_entry out[VSR_REPLICAS_MAX])
{
	uv_loop_t loop;
	status_query *q = calloc(1, sizeof(*q));
	memset(out, 0, sizeof(vsrc_status_entry) * VSR_REPLICAS_MAX);
	if (!q || uv_loop_init(&loop) != 0) {
		for (uint32_t i = 0; i < o->replica_count; i++)
			snprintf(out[i].error, sizeof(out[i].error), "out of memory");
		free(q);
		return;
	}
	q->o = o;
	q->out = out;
	vsr_wire_config_default(&q->wire, o->cluster, o->replica_count);
	uv_timer_init(&loop, &q->timer);
	q->timer.data = q;
	q->pending = o->replica_count;
	uv_timer_start(&q->timer, status_timer_cb, timeout_ms, 0);
	for (uint32_t i = 0; i < o->replica_count; i++) {
		status_conn *sc = &q->conns[i];
		sc->q = q;
		sc->replica = (uint8_t)i;
		if (getrandom(&sc->nonce, sizeof(sc->nonce), 0) != (ssize_t)sizeof(sc->nonce))
			sc->nonce = uv_hrtime() + i;
		vsr_wire_reader_init(&sc->reader, &q->wire, NULL);
		vsr_wire_conn_auth_init(&sc->auth, o->has_key ? o->key : NULL, o->cluster,
					VSR_WIRE_ROLE_CONTROL, 0);
		uv_tcp_init(&loop, &sc->tcp);
		sc->tcp.data = sc;
		sc->connect_req.data = sc;
		sc->open = true;
		int rc = uv_tcp_connect(&sc->connect_req, &sc->tcp,
					(const struct sockaddr *)&o->addrs[i], status_connect_cb);
		if (rc < 0)
			status_finish(sc, uv_strerror(rc));
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&q->timer, status_close_cb);
	uv_run(&loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&loop);
	assert(rc == 0 && "a status handle outlived the query");
	(void)rc;
	for (uint32_t i = 0; i < o->replica_count; i++)
		vsr_wire_reader_free(&q->conns[i].reader);
	free(q);
}
