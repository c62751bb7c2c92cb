/* net_maelstrom.c - the vsr_net.h transport over Maelstrom's node protocol: JSON lines on stdin and stdout.
 *
 * Linked into vsrhost-maelstrom instead of src/net (same interface, so
 * host_replica.c runs unchanged). Every line is {"src","dest","body"}.
 *   Replica messages: body {"type":"vsr","frame":"<hex of one wire frame>"}
 *   to and from the other nodes, so Maelstrom's network carries them (and
 *   drops them in its partitions: the protocol retransmits what matters).
 *   lin-kv operations from clients: read {key}, write {key,value},
 *   cas {key,from,to}. Each becomes a REQUEST of one of this node's client
 *   sessions (kv.lua's get/put/cas); the REPLY becomes read_ok, write_ok,
 *   cas_ok, or an error: 20 key does not exist and 22 precondition failed
 *   (the state machine's own refusals, definite), 11 temporarily unavailable
 *   (not the primary, busy, evicted: definite, nothing was applied). A request
 *   that this node's core never answers (a deposed primary) gets no reply;
 *   Maelstrom's client records that as indefinite, as it must.
 * Sessions: one per operation in flight at this node, kept in a pool and
 * reused once their call is over; a new one is registered (a committed
 * REGISTER) when every session is busy.
 * Failure modes: a line that is not JSON or a frame that does not decode is
 * logged and dropped; a line longer than any message can be is dropped as it
 * arrives (never held); an unknown body type gets error 10 (not supported).
 * Re-entrancy: vsr_net_reply runs inside the host's step (one of its
 * actions), so a call it starts (the operation after a REGISTER) is handed
 * to the core from an idle callback, never from inside that step. */
#include "host_maelstrom.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "vsr_net.h"
#include "vsrc_json.h"

char maelstrom_node_id[32];
char maelstrom_node_ids[VSR_REPLICAS_MAX][32];
uint32_t maelstrom_node_count;

#define MN_SESSIONS_MAX 1024u

enum mn_call { MN_IDLE = 0, MN_REGISTERING, MN_RUNNING };
enum mn_f { MN_READ, MN_WRITE, MN_CAS };

typedef struct mn_session {
	uint64_t session;     /* 0 until registered */
	uint64_t history;     /* the cluster history the session belongs to */
	uint64_t request;     /* last request number used */
	uint64_t nonce;       /* REGISTER nonce */
	int call;             /* enum mn_call */
	bool submit_due;      /* registered: its operation waits for mn_idle_cb */
	uint32_t generation;  /* part of conn: a late reply to an old call is ignored */
	/* The lin-kv call being served. */
	char client[32];
	json_t *msg_id;
	int f;
	vsr_buf op;
} mn_session;

struct vsr_net {
	vsr_net_options o;
	uv_pipe_t in;
	uv_check_t flush;
	uv_idle_t submit;     /* runs while due[] holds sessions */
	bool reading, paused, closing;
	char *line;
	size_t line_len, line_cap;
	size_t line_max;      /* longer lines are dropped */
	size_t line_dropped;  /* bytes of the line being dropped (0: none) */
	uint32_t due[MN_SESSIONS_MAX]; /* sessions whose operation is to be submitted */
	uint32_t due_count;
	vsr_wire_config wire;
	vsr_net_stats stats;
	mn_session sessions[MN_SESSIONS_MAX];
	uint32_t session_count;
	uint64_t rng;
	vsr_net_close_cb close_cb;
	int pending_closes;
};

static void mn_log(vsr_net *net, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void mn_log(vsr_net *net, int level, const char *fmt, ...)
{
	if (net->o.log == NULL)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	net->o.log(net->o.data, level, msg);
}

void maelstrom_emit(const char *dest, json_t *body)
{
	json_t *m = json_pack("{s:s, s:s, s:o}", "src", maelstrom_node_id, "dest", dest, "body",
			      body);
	char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
	if (s != NULL) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	json_decref(m);
}

static void mn_error(const char *dest, json_t *in_reply_to, int code, const char *text)
{
	maelstrom_emit(dest, json_pack("{s:s, s:O, s:i, s:s}", "type", "error", "in_reply_to",
				       in_reply_to, "code", code, "text", text));
}

static int mn_node_index(const char *name)
{
	for (uint32_t i = 0; i < maelstrom_node_count; i++)
		if (strcmp(name, maelstrom_node_ids[i]) == 0)
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Replica messages.                                                          */

static const char mn_hex[] = "0123456789abcdef";

void vsr_net_send(vsr_net *net, uint8_t to, const vsr_message *m)
{
	if (net->closing || to >= maelstrom_node_count)
		return;
	vsr_buf frame = {0};
	if (vsr_wire_encode_message(&frame, net->o.cluster, m) != 0) {
		net->stats.sends_dropped_full++;
		vsr_buf_free(&frame);
		return;
	}
	char *hex = malloc(frame.len * 2 + 1);
	if (hex == NULL) {
		vsr_buf_free(&frame);
		return;
	}
	for (size_t i = 0; i < frame.len; i++) {
		hex[2 * i] = mn_hex[frame.data[i] >> 4];
		hex[2 * i + 1] = mn_hex[frame.data[i] & 15];
	}
	hex[frame.len * 2] = '\0';
	maelstrom_emit(maelstrom_node_ids[to], json_pack("{s:s, s:s}", "type", "vsr", "frame", hex));
	net->stats.wire.frames_out++;
	free(hex);
	vsr_buf_free(&frame);
}

static int mn_unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void mn_peer_frame(vsr_net *net, int from, const char *hex)
{
	size_t n = strlen(hex);
	if (n % 2 != 0) {
		net->stats.frames_malformed++;
		return;
	}
	uint8_t *bytes = malloc(n / 2 + 1);
	if (bytes == NULL)
		return;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = mn_unhex(hex[2 * i]), lo = mn_unhex(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			net->stats.frames_malformed++;
			free(bytes);
			return;
		}
		bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	char err[200];
	int rc = vsr_wire_decode(bytes, n / 2, &net->wire, &d, NULL, &net->stats.wire, err,
				 sizeof err);
	free(bytes);
	if (rc != 0) {
		net->stats.frames_malformed++;
		mn_log(net, 2, "a frame from %s does not decode: %s", maelstrom_node_ids[from], err);
	} else if (d.type == VSR_MSG_REQUEST || d.type == VSR_MSG_REPLY || d.type == 0 ||
		   d.type >= VSR_MSG_TYPE_COUNT || d.message.replica != from) {
		net->stats.protocol_errors++;
		mn_log(net, 2, "%s sent a frame it may not send (type %u)", maelstrom_node_ids[from],
		       d.type);
	} else {
		net->o.peer_message_cb(net, &d.message);
	}
	vsr_wire_decoded_free(&d);
}

/* ------------------------------------------------------------------------ */
/* lin-kv clients.                                                            */

static uint64_t mn_conn(const vsr_net *net, const mn_session *s)
{
	return (uint64_t)s->generation << 32 | (uint64_t)(s - net->sessions);
}

/* Hands the session's pending call to the core: REGISTER first if needed. */
static void mn_submit(vsr_net *net, mn_session *s)
{
	vsr_message m = {.type = VSR_MSG_REQUEST, .cluster = net->o.cluster};
	if (s->f == MN_READ) {
		/* A read goes outside the log, as a linearizable query: it needs no
		 * session and consumes no request number (the number it carries is
		 * only echoed; the call's generation tells late replies apart). */
		s->call = MN_RUNNING;
		m.request = (vsr_request){.session = s->session, .request = s->request,
					  .kind = VSR_REQUEST_QUERY, .op = s->op.data,
					  .op_len = (uint32_t)s->op.len};
		m.read_mode = VSR_READ_LINEARIZABLE;
	} else if (s->session == 0) {
		s->call = MN_REGISTERING;
		s->nonce = (net->rng += 0x9e3779b97f4a7c15ull) | 1;
		m.request = (vsr_request){.session = 0, .request = s->nonce,
					  .kind = VSR_REQUEST_REGISTER};
	} else {
		s->call = MN_RUNNING;
		s->request++;
		m.request = (vsr_request){.session = s->session, .request = s->request,
					  .kind = VSR_REQUEST_OP, .op = s->op.data,
					  .op_len = (uint32_t)s->op.len};
		m.history = s->history;
	}
	net->o.request_cb(net, mn_conn(net, s), &m);
}

static void mn_finish(mn_session *s)
{
	json_decref(s->msg_id);
	s->msg_id = NULL;
	s->call = MN_IDLE;
	s->generation++;
}

/* msgpack {op = name, key = K, value|from,to = ...} from JSON values. */
static int mn_pack_json(msgpack_packer *pk, json_t *v)
{
	if (json_is_integer(v))
		return msgpack_pack_int64(pk, json_integer_value(v));
	if (json_is_string(v)) {
		size_t n = json_string_length(v);
		return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(v), n);
	}
	if (json_is_real(v))
		return msgpack_pack_double(pk, json_real_value(v));
	if (json_is_boolean(v))
		return json_is_true(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	return -1; /* lin-kv uses integers; anything else is refused as malformed */
}

static int mn_buf_write(void *data, const char *buf, size_t len)
{
	return vsr_buf_append(data, buf, len);
}

static int mn_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static void mn_client_op(vsr_net *net, const char *src, json_t *body, const char *type)
{
	json_t *msg_id = json_object_get(body, "msg_id");
	int f = strcmp(type, "read") == 0 ? MN_READ : strcmp(type, "write") == 0 ? MN_WRITE : MN_CAS;
	mn_session *s = NULL;
	for (uint32_t i = 0; i < net->session_count && s == NULL; i++)
		if (net->sessions[i].call == MN_IDLE)
			s = &net->sessions[i];
	if (s == NULL && net->session_count < MN_SESSIONS_MAX)
		s = &net->sessions[net->session_count++];
	if (s == NULL) {
		mn_error(src, msg_id, 11, "every session of this node is busy");
		return;
	}
	vsr_buf_reset(&s->op);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &s->op, mn_buf_write);
	static const char *const names[] = {"get", "put", "cas"};
	int rc = msgpack_pack_map(&pk, f == MN_CAS ? 4 : f == MN_WRITE ? 3 : 2) ||
		 mn_pack_str(&pk, "op") || mn_pack_str(&pk, names[f]) || mn_pack_str(&pk, "key") ||
		 mn_pack_json(&pk, json_object_get(body, "key"));
	if (rc == 0 && f == MN_WRITE)
		rc = mn_pack_str(&pk, "value") || mn_pack_json(&pk, json_object_get(body, "value"));
	if (rc == 0 && f == MN_CAS)
		rc = mn_pack_str(&pk, "from") || mn_pack_json(&pk, json_object_get(body, "from")) ||
		     mn_pack_str(&pk, "to") || mn_pack_json(&pk, json_object_get(body, "to"));
	if (rc != 0) {
		mn_error(src, msg_id, 12, "expected integer or string key and values");
		return;
	}
	snprintf(s->client, sizeof s->client, "%s", src);
	s->msg_id = json_incref(msg_id);
	s->f = f;
	mn_submit(net, s);
}

/* The state machine's refusal "<code>: text" into `text`; returns the code
 * (0 when there is none). */
static int mn_refusal(const uint8_t *p, size_t len, char *text, size_t text_len)
{
	const char *t;
	size_t n;
	int code = vsrc_refusal_code(p, len, &t, &n);
	snprintf(text, text_len, "%.*s", (int)(n > 1000 ? 1000 : n), t);
	return code < 0 ? 0 : code;
}

static json_t *mn_json_of(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	default: return json_null();
	}
}

static json_t *mn_read_value(const uint8_t *data, size_t len)
{
	msgpack_zone zone;
	msgpack_object obj;
	msgpack_zone_init(&zone, 512);
	size_t off = 0;
	json_t *v = NULL;
	if (msgpack_unpack((const char *)data, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
	    obj.type == MSGPACK_OBJECT_MAP)
		for (uint32_t i = 0; i < obj.via.map.size; i++) {
			const msgpack_object *k = &obj.via.map.ptr[i].key;
			if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 5 &&
			    memcmp(k->via.str.ptr, "value", 5) == 0)
				v = mn_json_of(&obj.via.map.ptr[i].val);
		}
	msgpack_zone_destroy(&zone);
	return v;
}

/* The operations of sessions that have just registered, outside any step. */
static void mn_idle_cb(uv_idle_t *h)
{
	vsr_net *net = h->data;
	uv_idle_stop(h);
	uint32_t n = net->due_count;
	net->due_count = 0;
	for (uint32_t i = 0; i < n && !net->closing; i++) {
		mn_session *s = &net->sessions[net->due[i]];
		s->submit_due = false;
		if (s->call == MN_REGISTERING && s->session != 0)
			mn_submit(net, s);
	}
}

void vsr_net_reply(vsr_net *net, uint64_t conn, const vsr_message *m)
{
	uint32_t slot = (uint32_t)conn;
	if (slot >= net->session_count)
		return;
	mn_session *s = &net->sessions[slot];
	if (s->call == MN_IDLE || s->generation != (uint32_t)(conn >> 32))
		return; /* a reply to a call already answered */
	if (s->call == MN_REGISTERING) {
		if (m->status == VSR_REPLY_OK && m->request.request == s->nonce &&
		    m->request.session != 0) {
			s->session = m->request.session;
			s->history = m->history;
			s->request = 0;
			/* Not from here: this runs inside the host's step, and
			 * submitting is a step of its own. */
			if (!s->submit_due) {
				s->submit_due = true;
				net->due[net->due_count++] = (uint32_t)(s - net->sessions);
				uv_idle_start(&net->submit, mn_idle_cb);
			}
			return;
		}
	} else if (m->request.session != s->session || m->request.request != s->request) {
		return;
	}
	const char *to = s->client;
	char text[200];
	switch (m->status) {
	case VSR_REPLY_OK:
		if (s->f == MN_READ) {
			json_t *v = mn_read_value(m->body, m->body_len);
			if (v == NULL)
				mn_error(to, s->msg_id, 13, "the state machine's reply has no value");
			else
				maelstrom_emit(to, json_pack("{s:s, s:O, s:o}", "type", "read_ok",
							     "in_reply_to", s->msg_id, "value", v));
		} else {
			maelstrom_emit(to, json_pack("{s:s, s:O}", "type",
						     s->f == MN_WRITE ? "write_ok" : "cas_ok",
						     "in_reply_to", s->msg_id));
		}
		break;
	case VSR_REPLY_ERROR: {
		int code = mn_refusal(m->body, m->body_len, text, sizeof text);
		/* 20 and 22 are lin-kv's own codes; anything else the state
		 * machine refused was not applied either. */
		mn_error(to, s->msg_id, code == 20 || code == 22 ? code : 12, text);
		break;
	}
	case VSR_REPLY_NOT_PRIMARY:
		snprintf(text, sizeof text, "not the primary; the primary of view %" PRIu64 " is %s",
			 m->view, m->replica < maelstrom_node_count ? maelstrom_node_ids[m->replica] : "?");
		mn_error(to, s->msg_id, 11, text);
		break;
	case VSR_REPLY_EVICTED:
	case VSR_REPLY_HISTORY:
		s->session = 0; /* registers anew next time */
		mn_error(to, s->msg_id, 11, m->status == VSR_REPLY_EVICTED
			 ? "session evicted; nothing was applied"
			 : "the session belongs to an earlier history of the cluster; nothing was applied");
		break;
	case VSR_REPLY_SCRIPT_ERROR:
		/* Applied as an error the state machine did not mean: the state is
		 * unchanged, so the operation certainly did not take effect. */
		mn_refusal(m->body, m->body_len, text, sizeof text);
		mn_error(to, s->msg_id, 12, text);
		break;
	default:
		mn_error(to, s->msg_id, 11, "busy or refused; nothing was applied");
		break;
	}
	mn_finish(s);
}

void vsr_net_reply_status(vsr_net *net, uint64_t conn, const vsr_wire_status *s)
{
	(void)net, (void)conn, (void)s; /* no status connections under Maelstrom */
}

/* ------------------------------------------------------------------------ */
/* stdin.                                                                     */

static void mn_line(vsr_net *net, const char *line)
{
	json_error_t je;
	json_t *msg = json_loads(line, 0, &je);
	const char *src = msg ? json_string_value(json_object_get(msg, "src")) : NULL;
	json_t *body = msg ? json_object_get(msg, "body") : NULL;
	const char *type = body ? json_string_value(json_object_get(body, "type")) : NULL;
	if (src == NULL || type == NULL) {
		mn_log(net, 2, "dropped a line that is not a Maelstrom message: %s",
		       msg ? "no src or body.type" : je.text);
		json_decref(msg);
		return;
	}
	if (strcmp(type, "vsr") == 0) {
		int from = mn_node_index(src);
		const char *hex = json_string_value(json_object_get(body, "frame"));
		if (from >= 0 && hex != NULL)
			mn_peer_frame(net, from, hex);
	} else if (strcmp(type, "read") == 0 || strcmp(type, "write") == 0 ||
		   strcmp(type, "cas") == 0) {
		mn_client_op(net, src, body, type);
	} else if (json_object_get(body, "msg_id") != NULL) {
		mn_error(src, json_object_get(body, "msg_id"), 10, "not supported");
	}
	json_decref(msg);
}

static void mn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(suggested);
	buf->len = buf->base ? suggested : 0;
}

static void mn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	vsr_net *net = stream->data;
	if (nread < 0) {
		free(buf->base);
		if (nread == UV_EOF)
			mn_log(net, 1, "stdin closed: Maelstrom is done with this node");
		else
			mn_log(net, 3, "stdin: %s", uv_strerror((int)nread));
		uv_read_stop(stream);
		net->reading = false;
		raise(SIGTERM); /* the host stops cleanly on SIGTERM */
		return;
	}
	for (ssize_t i = 0; i < nread; i++) {
		char c = buf->base[i];
		if (c == '\n') {
			if (net->line_dropped > 0) {
				net->stats.frames_malformed++;
				mn_log(net, 2, "dropped a line of %zu bytes: longer than any message "
					       "(%zu bytes)", net->line_dropped, net->line_max);
			} else if (net->line_len > 0) {
				net->line[net->line_len] = '\0';
				mn_line(net, net->line);
			}
			net->line_len = 0;
			net->line_dropped = 0;
			continue;
		}
		if (net->line_dropped > 0) {
			net->line_dropped++;
			continue;
		}
		if (net->line_len + 2 > net->line_cap) {
			size_t cap = net->line_cap ? net->line_cap * 2 : 65536;
			char *l = cap <= net->line_max + 2 ? realloc(net->line, cap) : NULL;
			if (l == NULL) {
				/* Too long (or no memory): the rest of it goes. */
				net->line_dropped = net->line_len + 1;
				net->line_len = 0;
				continue;
			}
			net->line = l;
			net->line_cap = cap;
		}
		net->line[net->line_len++] = c;
	}
	free(buf->base);
}

/* Lines written during one loop iteration leave in one write. */
static void mn_flush_cb(uv_check_t *c)
{
	(void)c;
	fflush(stdout);
}

void vsr_net_flush(vsr_net *net)
{
	(void)net;
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */

int vsr_net_start(const vsr_net_options *opts, vsr_net **out, char *err, size_t err_len)
{
	vsr_net *net = calloc(1, sizeof *net);
	if (net == NULL) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	*out = net;
	net->o = *opts;
	net->rng = opts->instance;
	vsr_wire_config_default(&net->wire, opts->cluster, opts->replica_count);
	if (opts->body_bytes_max)
		net->wire.body_bytes_max = opts->body_bytes_max;
	/* The longest message: a whole frame in hex, and the JSON around it. */
	net->line_max = 2 * ((size_t)VSR_WIRE_HEADER_SIZE + net->wire.body_bytes_max) + 65536;
	uv_idle_init(opts->loop, &net->submit);
	net->submit.data = net;
	uv_pipe_init(opts->loop, &net->in, 0);
	net->in.data = net;
	int rc = uv_pipe_open(&net->in, 0);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&net->in, mn_alloc_cb, mn_read_cb);
	uv_check_init(opts->loop, &net->flush);
	net->flush.data = net;
	uv_check_start(&net->flush, mn_flush_cb);
	if (rc != 0) {
		snprintf(err, err_len, "cannot read Maelstrom's messages on stdin: %s", uv_strerror(rc));
		return rc;
	}
	net->reading = true;
	return 0;
}

static void mn_closed_cb(uv_handle_t *h)
{
	vsr_net *net = h->data;
	if (--net->pending_closes > 0)
		return;
	vsr_net_close_cb cb = net->close_cb;
	void *data = net->o.data;
	for (uint32_t i = 0; i < net->session_count; i++) {
		json_decref(net->sessions[i].msg_id);
		vsr_buf_free(&net->sessions[i].op);
	}
	free(net->line);
	free(net);
	fflush(stdout);
	if (cb)
		cb(data);
}

void vsr_net_close(vsr_net *net, vsr_net_close_cb cb)
{
	if (net->closing)
		return;
	net->closing = true;
	net->close_cb = cb;
	net->pending_closes = 3;
	uv_close((uv_handle_t *)&net->in, mn_closed_cb);
	uv_close((uv_handle_t *)&net->flush, mn_closed_cb);
	uv_close((uv_handle_t *)&net->submit, mn_closed_cb);
}

void vsr_net_pause(vsr_net *net, bool paused)
{
	net->paused = paused;
	if (net->closing || !net->reading)
		return;
	if (paused)
		uv_read_stop((uv_stream_t *)&net->in);
	else
		uv_read_start((uv_stream_t *)&net->in, mn_alloc_cb, mn_read_cb);
}

bool vsr_net_paused(const vsr_net *net) { return net->paused; }
/* Maelstrom's network has no HELLO to carry the history in: every replica
 * message and client request carries its own. */
void vsr_net_set_history(vsr_net *net, uint64_t history)
{
	(void)net;
	(void)history;
}
void *vsr_net_data(const vsr_net *net) { return net->o.data; }
const vsr_net_stats *vsr_net_stats_get(const vsr_net *net) { return &net->stats; }

bool vsr_net_peer_connected(const vsr_net *net, uint8_t to)
{
	(void)net;
	return to < maelstrom_node_count;
}

/* One configuration for every node: Maelstrom starts them all from it. */
unsigned vsr_net_config_confirmed(const vsr_net *net)
{
	(void)net;
	return maelstrom_node_count > 0 ? maelstrom_node_count - 1u : 0;
}
