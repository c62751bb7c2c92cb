/* vsr_wire.c - frame encoding, validation and decoding with msgpack-c and XXH3.
 *
 * Happy path: encode appends header placeholder + msgpack body to a vsr_buf,
 * then writes the header with both checksums. Decode checks the header, the
 * body checksum, pre-scans the msgpack structure (bounded, allocation free),
 * then unpacks element by element with msgpack-c into a vsr_message whose
 * pointers reference the frame body, which the result owns.
 *
 * Failure modes: every malformed input returns -reason with a detail string;
 * nothing here aborts on peer input. Memory: a frame costs its body, plus at
 * most one vsr_entry per 9 body bytes, plus one small msgpack zone reused per
 * element (never a tree for the whole body).
 */
#include "vsr_wire.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <xxhash.h>

/* Elements in the top-level array of each body shape. */
#define WIRE_CORE_FIELDS 23u
/* Core bodies of an encoder from before the read mode was appended (field
 * 22): still accepted, the missing field read as 0. */
#define WIRE_CORE_FIELDS_MIN 22u
#define WIRE_ENTRY_FIELDS 7u
/* HELLO: field 5 (the configuration fingerprint) was appended within
 * version 2; a HELLO of 5 (a client's, an older build's) is accepted, and
 * fields past the ones known are skipped. */
#define WIRE_HELLO_FIELDS_MIN 5u
#define WIRE_HELLO_FIELDS 6u
#define WIRE_AUTH_FIELDS 1u
#define WIRE_PING_FIELDS 2u
#define WIRE_STATUS_REQUEST_FIELDS 1u
#define WIRE_STATUS_FIELDS 28u
#define WIRE_CLOSE_FIELDS 2u
/* Per-depth element limits of the pre-scan: a top-level array is one of the
 * shapes above, an array at depth 3 is an entry. Depth 2 (entries) is
 * limited by the configuration. */
#define WIRE_TOP_ELEMENTS_MAX 32u
#define WIRE_LEAF_ARRAY_ELEMENTS_MAX 16u
/* A reader's first body allocation; it doubles up to body_len as bytes come. */
#define WIRE_READER_FIRST_BYTES (64u * 1024u)
/* Smallest encoding of an entry: fixarray + 6 fixints + empty bin8. */
#define WIRE_ENTRY_BYTES_MIN 9u

_Static_assert(VSR_WIRE_HEADER_SIZE == 40, "docs/wire.md fixes the header at 40 bytes");
_Static_assert(WIRE_STATUS_FIELDS <= WIRE_TOP_ELEMENTS_MAX, "status fits the pre-scan");
_Static_assert(WIRE_CORE_FIELDS <= WIRE_TOP_ELEMENTS_MAX, "core shape fits the pre-scan");
_Static_assert(WIRE_ENTRY_FIELDS <= WIRE_LEAF_ARRAY_ELEMENTS_MAX, "entry fits the pre-scan");

/* ------------------------------------------------------------------------ */
/* Names and reasons.                                                       */

static const char *const wire_reason_text[VSR_WIRE_REASON_COUNT] = {
	[0] = "success",
#define WIRE_REASON_TEXT(name, code, text) [code] = text,
	VSR_WIRE_REASONS(WIRE_REASON_TEXT)
#undef WIRE_REASON_TEXT
};

static const char *const wire_reason_labels[VSR_WIRE_REASON_COUNT] = {
	"ok", "bad_magic", "header_checksum", "version", "flags", "foreign_cluster",
	"unknown_type", "too_big", "body_checksum", "truncated", "trailing",
	"msgpack", "shape", "range", "limit", "invalid", "nomem", "mac",
};

const char *vsr_wire_strerror(int code)
{
	if (code < 0)
		code = -code;
	if (code >= VSR_WIRE_REASON_COUNT)
		return "unknown wire error";
	return wire_reason_text[code];
}

const char *vsr_wire_reason_label(int code)
{
	if (code < 0)
		code = -code;
	if (code >= VSR_WIRE_REASON_COUNT)
		return "unknown";
	return wire_reason_labels[code];
}

bool vsr_wire_type_known(uint8_t type)
{
	return (type >= VSR_MSG_REQUEST && type < VSR_MSG_TYPE_COUNT) ||
	       (type >= VSR_WIRE_HELLO && type < VSR_WIRE_TYPE_END);
}

const char *vsr_wire_type_name(uint8_t type)
{
	static const char *const core[VSR_MSG_TYPE_COUNT] = {
		"NONE", "REQUEST", "REPLY", "PREPARE", "PREPARE_OK", "COMMIT",
		"START_VIEW_CHANGE", "DO_VIEW_CHANGE", "START_VIEW", "GET_STATE",
		"NEW_STATE", "GET_CHECKPOINT", "CHECKPOINT_CHUNK", "RECOVERY",
		"RECOVERY_RESPONSE", "PRIMARY_LOST",
	};
	static const char *const host[VSR_WIRE_TYPE_END - VSR_WIRE_HELLO] = {
		"HELLO", "PING", "PONG", "STATUS_REQUEST", "STATUS_REPLY", "CLOSE", "AUTH",
	};
	if (!vsr_wire_type_known(type))
		return "UNKNOWN";
	if (type < VSR_MSG_TYPE_COUNT)
		return core[type];
	return host[type - VSR_WIRE_HELLO];
}

uint64_t vsr_wire_stats_dropped(const vsr_wire_stats *stats)
{
	uint64_t sum = 0;
	for (int i = 1; i < VSR_WIRE_REASON_COUNT; i++)
		sum += stats->dropped[i];
	return sum;
}

void vsr_wire_stats_add(vsr_wire_stats *into, const vsr_wire_stats *from)
{
	into->frames_in += from->frames_in;
	into->bytes_in += from->bytes_in;
	into->frames_out += from->frames_out;
	into->bytes_out += from->bytes_out;
	for (int i = 0; i < VSR_WIRE_REASON_COUNT; i++)
		into->dropped[i] += from->dropped[i];
}

void vsr_wire_config_default(vsr_wire_config *c, uint64_t cluster,
			     uint8_t replica_count)
{
	memset(c, 0, sizeof(*c));
	c->cluster = cluster;
	c->body_bytes_max = VSR_WIRE_BODY_BYTES_MAX;
	c->entries_max = VSR_LOG_MAX;
	c->replica_count = replica_count;
}

static uint32_t wire_body_max(const vsr_wire_config *c)
{
	if (c->body_bytes_max == 0 || c->body_bytes_max > VSR_WIRE_BODY_BYTES_MAX)
		return VSR_WIRE_BODY_BYTES_MAX;
	return c->body_bytes_max;
}

static uint32_t wire_entries_max(const vsr_wire_config *c)
{
	if (c->entries_max == 0 || c->entries_max > VSR_LOG_MAX)
		return VSR_LOG_MAX;
	return c->entries_max;
}

/* Replica count used for index ranges: unknown (0) means the hard maximum. */
static uint8_t wire_replica_count(const vsr_wire_config *c)
{
	if (c->replica_count == 0 || c->replica_count > VSR_REPLICAS_MAX)
		return VSR_REPLICAS_MAX;
	return c->replica_count;
}

/* Formats a detail and returns -reason, so error paths are one line. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int wire_fail(char *err, size_t err_len, int reason, const char *fmt, ...)
{
	if (err != NULL && err_len > 0) {
		int n = snprintf(err, err_len, "%s: ", vsr_wire_strerror(reason));
		if (n >= 0 && (size_t)n < err_len) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -reason;
}

/* ------------------------------------------------------------------------ */
/* Little-endian helpers.                                                    */

static void wire_put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wire_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t wire_get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t wire_get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ------------------------------------------------------------------------ */
/* Encoding.                                                                 */

/* Growable output for the packer: appends to a vsr_buf. We grow it here
 * (rather than through the core's vsr_buf_append) because the frame header
 * is written in place after the body. */
typedef struct wire_out {
	vsr_buf *buf;
	bool failed;
} wire_out;

static int wire_reserve(vsr_buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len)
		return -VSR_WIRE_ENOMEM;
	size_t need = b->len + extra;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(b->data, cap);
	if (p == NULL)
		return -VSR_WIRE_ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

static int wire_out_write(void *data, const char *buf, size_t len)
{
	wire_out *o = data;
	if (o->failed)
		return -1;
	if (wire_reserve(o->buf, len) != 0) {
		o->failed = true;
		return -1;
	}
	memcpy(o->buf->data + o->buf->len, buf, len);
	o->buf->len += len;
	return 0;
}

/* The encoder state: packer, frame start, and the type being written. */
typedef struct wire_enc {
	wire_out out;
	msgpack_packer pk;
	size_t start;
	uint8_t type;
} wire_enc;

static int wire_enc_begin(wire_enc *e, vsr_buf *buf, uint8_t type)
{
	e->out.buf = buf;
	e->out.failed = false;
	e->start = buf->len;
	e->type = type;
	if (wire_reserve(buf, VSR_WIRE_HEADER_SIZE) != 0)
		return -VSR_WIRE_ENOMEM;
	memset(buf->data + buf->len, 0, VSR_WIRE_HEADER_SIZE);
	buf->len += VSR_WIRE_HEADER_SIZE;
	msgpack_packer_init(&e->pk, &e->out, wire_out_write);
	return 0;
}

static void wire_header_write(uint8_t *h, uint8_t type, uint32_t body_len,
			      uint64_t cluster, uint64_t body_checksum)
{
	h[0] = VSR_WIRE_MAGIC0;
	h[1] = VSR_WIRE_MAGIC1;
	h[2] = VSR_WIRE_MAGIC2;
	h[3] = VSR_WIRE_MAGIC3;
	h[4] = VSR_WIRE_VERSION;
	h[5] = 0; /* flags */
	h[6] = type;
	h[7] = 0;
	wire_put_u32(h + 8, body_len);
	wire_put_u32(h + 12, 0);
	wire_put_u64(h + 16, cluster);
	wire_put_u64(h + 24, body_checksum);
	wire_put_u64(h + 32, XXH3_64bits(h, 32));
}

/* Finishes the frame, or rolls the buffer back to where it was. */
static int wire_enc_end(wire_enc *e, uint64_t cluster, int rc)
{
	vsr_buf *b = e->out.buf;
	if (rc == 0 && e->out.failed)
		rc = -VSR_WIRE_ENOMEM;
	size_t body_len = b->len - e->start - VSR_WIRE_HEADER_SIZE;
	if (rc == 0 && body_len > VSR_WIRE_BODY_BYTES_MAX)
		rc = -VSR_WIRE_ETOOBIG;
	if (rc != 0) {
		b->len = e->start;
		return rc;
	}
	uint8_t *body = b->data + e->start + VSR_WIRE_HEADER_SIZE;
	wire_header_write(b->data + e->start, e->type, (uint32_t)body_len, cluster,
			  XXH3_64bits(body, body_len));
	return 0;
}

static void wire_pack_u(wire_enc *e, uint64_t v)
{
	msgpack_pack_uint64(&e->pk, v);
}

/* What a core type may carry besides scalars; shared by encoder and decoder
 * so that nothing encodable is undecodable. */
static bool wire_type_has_entries(uint8_t type)
{
	return type == VSR_MSG_PREPARE || type == VSR_MSG_DO_VIEW_CHANGE ||
	       type == VSR_MSG_START_VIEW || type == VSR_MSG_NEW_STATE;
}

static uint32_t wire_body_limit(uint8_t type)
{
	if (type == VSR_MSG_REPLY)
		return VSR_OP_BYTES_MAX;
	if (type == VSR_MSG_CHECKPOINT_CHUNK)
		return VSR_CHUNK_BYTES_MAX;
	return 0;
}

static uint32_t wire_op_limit(uint8_t type)
{
	return type == VSR_MSG_REQUEST ? VSR_OP_BYTES_MAX : 0;
}

/* Direct packing for the hot path (every message): the space is reserved
 * once for the whole frame, then values are written in place in the same
 * shortest forms msgpack-c's packer chooses (the wire tests compare the
 * bytes), instead of a callback, a capacity check and a memcpy per value. */
#define WIRE_UINT_BYTES_MAX 9u
#define WIRE_BIN_HEADER_MAX 5u
#define WIRE_ARRAY_HEADER_MAX 5u

static uint8_t *wire_put_uint(uint8_t *p, uint64_t v)
{
	if (v <= 0x7f) {
		*p++ = (uint8_t)v;
	} else if (v <= 0xff) {
		*p++ = 0xcc;
		*p++ = (uint8_t)v;
	} else if (v <= 0xffff) {
		*p++ = 0xcd;
		*p++ = (uint8_t)(v >> 8);
		*p++ = (uint8_t)v;
	} else if (v <= 0xffffffffu) {
		*p++ = 0xce;
		for (int s = 24; s >= 0; s -= 8)
			*p++ = (uint8_t)(v >> s);
	} else {
		*p++ = 0xcf;
		for (int s = 56; s >= 0; s -= 8)
			*p++ = (uint8_t)(v >> s);
	}
	return p;
}

/* A header of `small` (fixarray) or the 16/32-bit form `b16`/`b16 + 1`. */
static uint8_t *wire_put_len(uint8_t *p, uint32_t n, uint8_t b8, uint8_t b16)
{
	if (b8 != 0 && n <= 0xff) {
		*p++ = b8;
		*p++ = (uint8_t)n;
	} else if (n <= 0xffff) {
		*p++ = b16;
		*p++ = (uint8_t)(n >> 8);
		*p++ = (uint8_t)n;
	} else {
		*p++ = (uint8_t)(b16 + 1);
		for (int s = 24; s >= 0; s -= 8)
			*p++ = (uint8_t)(n >> s);
	}
	return p;
}

static uint8_t *wire_put_array(uint8_t *p, uint32_t n)
{
	if (n <= 15) {
		*p++ = (uint8_t)(0x90 | n);
		return p;
	}
	return wire_put_len(p, n, 0, 0xdc);
}

static uint8_t *wire_put_bin(uint8_t *p, const uint8_t *data, uint32_t len)
{
	p = wire_put_len(p, len, 0xc4, 0xc5);
	if (len > 0) {
		memcpy(p, data, len);
		p += len;
	}
	return p;
}

int vsr_wire_encode_message(vsr_buf *out, uint64_t cluster, const vsr_message *m)
{
	if (m->type < VSR_MSG_REQUEST || m->type >= VSR_MSG_TYPE_COUNT)
		return -VSR_WIRE_ETYPE;
	if (m->cluster != 0 && m->cluster != cluster)
		return -VSR_WIRE_ECLUSTER;
	if (m->entry_count > 0 && !wire_type_has_entries(m->type))
		return -VSR_WIRE_ESHAPE;
	if (m->type == VSR_MSG_PREPARE && m->entry_count != 1)
		return -VSR_WIRE_ESHAPE;
	if (m->body_len > wire_body_limit(m->type) ||
	    m->request.op_len > wire_op_limit(m->type) ||
	    m->entry_count > VSR_LOG_MAX)
		return -VSR_WIRE_ELIMIT;
	if ((m->body_len > 0 && m->body == NULL) ||
	    (m->request.op_len > 0 && m->request.op == NULL) ||
	    (m->entry_count > 0 && m->entries == NULL))
		return -VSR_WIRE_ESHAPE;
	for (uint32_t i = 0; i < m->entry_count; i++) {
		const vsr_entry *en = &m->entries[i];
		if (en->body_len > VSR_BATCH_BYTES_MAX ||
		    en->request_count > VSR_BATCH_REQUESTS_MAX)
			return -VSR_WIRE_ELIMIT;
		if (en->body_len > 0 && en->body == NULL)
			return -VSR_WIRE_ESHAPE;
	}

	/* The largest this frame can be; each term is bounded by the checks
	 * above, so the sum cannot overflow a size_t. */
	uint64_t bound = VSR_WIRE_HEADER_SIZE + WIRE_ARRAY_HEADER_MAX +
			 (uint64_t)WIRE_CORE_FIELDS * WIRE_UINT_BYTES_MAX +
			 2u * WIRE_BIN_HEADER_MAX + m->request.op_len + m->body_len +
			 WIRE_ARRAY_HEADER_MAX;
	for (uint32_t i = 0; i < m->entry_count; i++)
		bound += WIRE_ARRAY_HEADER_MAX + 6u * WIRE_UINT_BYTES_MAX + WIRE_BIN_HEADER_MAX +
			 m->entries[i].body_len;
	if (bound > SIZE_MAX || wire_reserve(out, (size_t)bound) != 0)
		return -VSR_WIRE_ENOMEM;
	size_t start = out->len;
	uint8_t *body = out->data + start + VSR_WIRE_HEADER_SIZE;
	uint8_t *p = body;
	p = wire_put_array(p, WIRE_CORE_FIELDS);
	p = wire_put_uint(p, m->replica);
	p = wire_put_uint(p, m->status);
	p = wire_put_uint(p, m->epoch);
	p = wire_put_uint(p, m->view);
	p = wire_put_uint(p, m->log_view);
	p = wire_put_uint(p, m->op);
	p = wire_put_uint(p, m->commit);
	p = wire_put_uint(p, m->checksum);
	p = wire_put_uint(p, m->nonce);
	p = wire_put_uint(p, m->timestamp);
	p = wire_put_uint(p, m->request.session);
	p = wire_put_uint(p, m->request.request);
	p = wire_put_uint(p, m->request.kind);
	p = wire_put_bin(p, m->request.op, m->request.op_len);
	p = wire_put_uint(p, m->reply_op);
	p = wire_put_bin(p, m->body, m->body_len);
	p = wire_put_array(p, m->entry_count);
	for (uint32_t i = 0; i < m->entry_count; i++) {
		const vsr_entry *en = &m->entries[i];
		p = wire_put_array(p, WIRE_ENTRY_FIELDS);
		p = wire_put_uint(p, en->checksum);
		p = wire_put_uint(p, en->parent);
		p = wire_put_uint(p, en->op);
		p = wire_put_uint(p, en->view);
		p = wire_put_uint(p, en->timestamp);
		p = wire_put_uint(p, en->request_count);
		p = wire_put_bin(p, en->body, en->body_len);
	}
	p = wire_put_uint(p, m->checkpoint_op);
	p = wire_put_uint(p, m->checkpoint_size);
	p = wire_put_uint(p, m->offset);
	p = wire_put_uint(p, m->history);
	p = wire_put_uint(p, m->checkpoint_digest);
	p = wire_put_uint(p, m->read_mode);
	size_t body_len = (size_t)(p - body);
	assert(VSR_WIRE_HEADER_SIZE + body_len <= bound);
	if (body_len > VSR_WIRE_BODY_BYTES_MAX)
		return -VSR_WIRE_ETOOBIG; /* out->len unchanged: nothing appended */
	wire_header_write(out->data + start, m->type, (uint32_t)body_len, cluster,
			  XXH3_64bits(body, body_len));
	out->len = start + VSR_WIRE_HEADER_SIZE + body_len;
	return 0;
}

int vsr_wire_encode_hello(vsr_buf *out, uint64_t cluster, const vsr_wire_hello *h)
{
	if (h->role >= VSR_WIRE_ROLE_COUNT || h->replica >= VSR_REPLICAS_MAX ||
	    (h->role != VSR_WIRE_ROLE_REPLICA && h->replica != 0))
		return -VSR_WIRE_ERANGE;
	if (h->config_count > VSR_WIRE_CONFIG_PARTS_MAX)
		return -VSR_WIRE_ELIMIT;
	wire_enc e;
	if (wire_enc_begin(&e, out, VSR_WIRE_HELLO) != 0)
		return -VSR_WIRE_ENOMEM;
	msgpack_pack_array(&e.pk, h->config_count > 0 ? WIRE_HELLO_FIELDS : WIRE_HELLO_FIELDS_MIN);
	wire_pack_u(&e, h->role);
	wire_pack_u(&e, h->replica);
	wire_pack_u(&e, h->instance);
	wire_pack_u(&e, h->history);
	uint32_t nonce_len = h->has_nonce ? VSR_WIRE_NONCE_SIZE : 0;
	msgpack_pack_bin(&e.pk, nonce_len);
	if (nonce_len > 0)
		msgpack_pack_bin_body(&e.pk, h->nonce, nonce_len);
	if (h->config_count > 0) {
		msgpack_pack_array(&e.pk, h->config_count);
		for (uint8_t i = 0; i < h->config_count; i++)
			wire_pack_u(&e, h->config[i]);
	}
	return wire_enc_end(&e, cluster, 0);
}

int vsr_wire_seal(vsr_buf *out, size_t frame_start, const uint8_t key[VSR_WIRE_KEY_SIZE],
		  uint64_t seq)
{
	assert(out->len >= frame_start + VSR_WIRE_HEADER_SIZE);
	if (wire_reserve(out, VSR_WIRE_MAC_SIZE) != 0)
		return -VSR_WIRE_ENOMEM;
	uint8_t *h = out->data + frame_start;
	uint32_t body_len = (uint32_t)(out->len - frame_start - VSR_WIRE_HEADER_SIZE);
	assert(wire_get_u32(h + 8) == body_len && (h[5] & VSR_WIRE_FLAG_MAC) == 0);
	h[5] |= VSR_WIRE_FLAG_MAC;
	wire_put_u64(h + 32, XXH3_64bits(h, 32));
	vsr_wire_mac_compute(key, seq, h, h + VSR_WIRE_HEADER_SIZE, body_len,
			     out->data + out->len);
	out->len += VSR_WIRE_MAC_SIZE;
	return 0;
}

int vsr_wire_encode_auth(vsr_buf *out, uint64_t cluster, const vsr_wire_auth *a)
{
	wire_enc e;
	if (wire_enc_begin(&e, out, VSR_WIRE_AUTH) != 0)
		return -VSR_WIRE_ENOMEM;
	msgpack_pack_array(&e.pk, WIRE_AUTH_FIELDS);
	msgpack_pack_bin(&e.pk, VSR_WIRE_PROOF_SIZE);
	msgpack_pack_bin_body(&e.pk, a->proof, VSR_WIRE_PROOF_SIZE);
	return wire_enc_end(&e, cluster, 0);
}

int vsr_wire_encode_ping(vsr_buf *out, uint64_t cluster, uint8_t type,
			 const vsr_wire_ping *p)
{
	if (type != VSR_WIRE_PING && type != VSR_WIRE_PONG)
		return -VSR_WIRE_ETYPE;
	wire_enc e;
	if (wire_enc_begin(&e, out, type) != 0)
		return -VSR_WIRE_ENOMEM;
	msgpack_pack_array(&e.pk, WIRE_PING_FIELDS);
	wire_pack_u(&e, p->nonce);
	wire_pack_u(&e, p->time_ns);
	return wire_enc_end(&e, cluster, 0);
}

int vsr_wire_encode_status_request(vsr_buf *out, uint64_t cluster,
				   const vsr_wire_status_request *s)
{
	wire_enc e;
	if (wire_enc_begin(&e, out, VSR_WIRE_STATUS_REQUEST) != 0)
		return -VSR_WIRE_ENOMEM;
	msgpack_pack_array(&e.pk, WIRE_STATUS_REQUEST_FIELDS);
	wire_pack_u(&e, s->nonce);
	return wire_enc_end(&e, cluster, 0);
}

int vsr_wire_encode_status(vsr_buf *out, uint64_t cluster, const vsr_wire_status *s)
{
	if (s->replica_count == 0 || s->replica_count > VSR_REPLICAS_MAX ||
	    s->replica >= s->replica_count || s->primary >= s->replica_count ||
	    s->status >= VSR_STATUS_COUNT)
		return -VSR_WIRE_ERANGE;
	wire_enc e;
	if (wire_enc_begin(&e, out, VSR_WIRE_STATUS_REPLY) != 0)
		return -VSR_WIRE_ENOMEM;
	msgpack_pack_array(&e.pk, WIRE_STATUS_FIELDS);
	const uint64_t v[WIRE_STATUS_FIELDS] = {
		s->nonce, s->replica, s->replica_count, s->status, s->primary,
		s->view, s->log_view, s->op, s->commit, s->executed,
		s->checkpoint_op, s->digest, s->pipeline, s->queued, s->sessions,
		s->connections, s->uptime_ms, s->ops_committed, s->view_changes,
		s->messages_dropped, s->frames_dropped, s->state_transfers,
		s->checkpoints, s->requests_deduplicated, s->sessions_evicted,
		s->history, s->step_age_ms, s->progress_age_ms,
	};
	for (uint32_t i = 0; i < WIRE_STATUS_FIELDS; i++)
		wire_pack_u(&e, v[i]);
	return wire_enc_end(&e, cluster, 0);
}

int vsr_wire_encode_close(vsr_buf *out, uint64_t cluster, uint8_t reason,
			  const char *text)
{
	if (reason >= VSR_WIRE_REASON_COUNT)
		return -VSR_WIRE_ERANGE;
	size_t len = text != NULL ? strlen(text) : 0;
	if (len > VSR_WIRE_REASON_MAX)
		len = VSR_WIRE_REASON_MAX;
	wire_enc e;
	if (wire_enc_begin(&e, out, VSR_WIRE_CLOSE) != 0)
		return -VSR_WIRE_ENOMEM;
	msgpack_pack_array(&e.pk, WIRE_CLOSE_FIELDS);
	wire_pack_u(&e, reason);
	msgpack_pack_str(&e.pk, len);
	if (len > 0)
		msgpack_pack_str_body(&e.pk, text, len);
	return wire_enc_end(&e, cluster, 0);
}

/* ------------------------------------------------------------------------ */
/* Header.                                                                   */

int vsr_wire_header_parse(const uint8_t *h, const vsr_wire_config *c,
			  vsr_wire_header *out, char *err, size_t err_len)
{
	if (h[0] != VSR_WIRE_MAGIC0 || h[1] != VSR_WIRE_MAGIC1 ||
	    h[2] != VSR_WIRE_MAGIC2 || h[3] != VSR_WIRE_MAGIC3)
		return wire_fail(err, err_len, VSR_WIRE_EMAGIC,
				 "got %02x %02x %02x %02x, want 56 53 52 57 (\"VSRW\")",
				 h[0], h[1], h[2], h[3]);
	uint64_t want = XXH3_64bits(h, 32);
	uint64_t got = wire_get_u64(h + 32);
	if (want != got)
		return wire_fail(err, err_len, VSR_WIRE_EHEADER_CHECKSUM,
				 "header says %016" PRIx64 ", bytes hash to %016" PRIx64,
				 got, want);
	/* Only now are the fields trustworthy as what the sender meant. */
	if (h[4] != VSR_WIRE_VERSION)
		return wire_fail(err, err_len, VSR_WIRE_EVERSION,
				 "version %u, this build speaks %u", h[4],
				 VSR_WIRE_VERSION);
	if ((h[5] & ~VSR_WIRE_FLAG_MAC) != 0 || h[7] != 0 || wire_get_u32(h + 12) != 0)
		return wire_fail(err, err_len, VSR_WIRE_EFLAGS,
				 "flags %02x, reserved %02x %08" PRIx32, h[5], h[7],
				 wire_get_u32(h + 12));
	uint64_t cluster = wire_get_u64(h + 16);
	if (cluster != c->cluster)
		return wire_fail(err, err_len, VSR_WIRE_ECLUSTER,
				 "cluster %" PRIu64 ", this is cluster %" PRIu64,
				 cluster, c->cluster);
	if (!vsr_wire_type_known(h[6]))
		return wire_fail(err, err_len, VSR_WIRE_ETYPE, "type %u", h[6]);
	uint32_t body_len = wire_get_u32(h + 8);
	if (body_len > wire_body_max(c))
		return wire_fail(err, err_len, VSR_WIRE_ETOOBIG,
				 "body of %" PRIu32 " bytes, maximum %" PRIu32,
				 body_len, wire_body_max(c));
	if (body_len == 0)
		return wire_fail(err, err_len, VSR_WIRE_ETRUNCATED,
				 "empty body (a body is at least one msgpack array)");
	out->version = h[4];
	out->flags = h[5];
	out->type = h[6];
	out->body_len = body_len;
	out->cluster = cluster;
	out->body_checksum = wire_get_u64(h + 24);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Pre-scan: walks the msgpack bytes once, without allocating, and accepts
 * only what the format uses (positive integers, bin, str, arrays). Every
 * array length is checked against the bytes that remain and against a
 * per-depth limit, so the element-wise unpacking below can never be made to
 * allocate more than a small multiple of the body. */

typedef struct wire_scan {
	const uint8_t *p;
	const uint8_t *end;
	uint32_t entries_max;
	char *err;
	size_t err_len;
} wire_scan;

static int wire_scan_need(wire_scan *s, uint64_t n, const char *what)
{
	if ((uint64_t)(s->end - s->p) < n)
		return wire_fail(s->err, s->err_len, VSR_WIRE_ETRUNCATED,
				 "%s needs %" PRIu64 " bytes, %zu remain", what, n,
				 (size_t)(s->end - s->p));
	return 0;
}

static uint64_t wire_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static int wire_scan_value(wire_scan *s, unsigned depth)
{
	int rc = wire_scan_need(s, 1, "a msgpack value");
	if (rc != 0)
		return rc;
	uint8_t b = *s->p++;
	uint64_t len;
	unsigned width;
	if (b <= 0x7f || b >= 0xe0)
		return 0; /* fixint; a negative one fails the type check later */
	if (b >= 0xa0 && b <= 0xbf) { /* fixstr */
		len = b & 0x1f;
		rc = wire_scan_need(s, len, "a string");
		if (rc == 0)
			s->p += len;
		return rc;
	}
	if (b >= 0x90 && b <= 0x9f) {
		len = b & 0x0f;
		goto array;
	}
	switch (b) {
	case 0xcc: case 0xcd: case 0xce: case 0xcf: /* uint 8/16/32/64 */
	case 0xd0: case 0xd1: case 0xd2: case 0xd3: /* int 8/16/32/64 */
		/* Some encoders write non-negative values in the signed
		 * formats; msgpack-c reads those as unsigned, so accept them. */
		width = 1u << ((b - 0xcc) & 3u);
		rc = wire_scan_need(s, width, "an integer");
		if (rc == 0)
			s->p += width;
		return rc;
	case 0xc4: case 0xc5: case 0xc6: /* bin 8/16/32 */
	case 0xd9: case 0xda: case 0xdb: /* str 8/16/32 */
		width = b <= 0xc6 ? 1u << (b - 0xc4) : 1u << (b - 0xd9);
		rc = wire_scan_need(s, width, "a length");
		if (rc != 0)
			return rc;
		len = wire_be(s->p, width);
		s->p += width;
		rc = wire_scan_need(s, len, b <= 0xc6 ? "bin bytes" : "string bytes");
		if (rc == 0)
			s->p += len;
		return rc;
	case 0xdc: case 0xdd: /* array 16/32 */
		width = b == 0xdc ? 2 : 4;
		rc = wire_scan_need(s, width, "an array length");
		if (rc != 0)
			return rc;
		len = wire_be(s->p, width);
		s->p += width;
		goto array;
	default:
		return wire_fail(s->err, s->err_len, VSR_WIRE_EMSGPACK,
				 "msgpack byte %02x (nil, bool, float, map and ext are "
				 "not used by the format)", b);
	}
array:
	if (depth >= VSR_WIRE_DEPTH_MAX)
		return wire_fail(s->err, s->err_len, VSR_WIRE_ESHAPE,
				 "arrays nested deeper than %u", VSR_WIRE_DEPTH_MAX);
	/* Each element takes at least one byte: a longer claim is a lie. */
	if (len > (uint64_t)(s->end - s->p))
		return wire_fail(s->err, s->err_len, VSR_WIRE_ETRUNCATED,
				 "array of %" PRIu64 " elements in %zu bytes", len,
				 (size_t)(s->end - s->p));
	uint64_t limit = depth == 0   ? WIRE_TOP_ELEMENTS_MAX
			 : depth == 1 ? s->entries_max
				      : WIRE_LEAF_ARRAY_ELEMENTS_MAX;
	if (len > limit)
		return wire_fail(s->err, s->err_len, VSR_WIRE_ELIMIT,
				 "array of %" PRIu64 " elements at depth %u, limit %" PRIu64,
				 len, depth + 1, limit);
	for (uint64_t i = 0; i < len; i++) {
		/* Integers, most of every message, are stepped over here: a
		 * recursive call each costs more than the check. Anything else,
		 * or an integer cut short, takes the full path and its errors. */
		if (s->p < s->end) {
			uint8_t e = *s->p;
			if (e <= 0x7f || e >= 0xe0) {
				s->p++;
				continue;
			}
			if (e >= 0xcc && e <= 0xd3) {
				size_t w = (size_t)1 << ((e - 0xcc) & 3u);
				if ((size_t)(s->end - s->p) > w) {
					s->p += 1 + w;
					continue;
				}
			}
		}
		rc = wire_scan_value(s, depth + 1);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Element-wise decoding with msgpack-c. The cursor walks the top-level
 * array; each element is unpacked on its own into a small zone that is
 * cleared per element, so no whole-body object tree is ever built. */

typedef struct wire_dec {
	const uint8_t *body;
	size_t len;
	size_t off;
	msgpack_zone zone; /* only for entries (arrays): set up on first use */
	bool zone_ready;
	char *err;
	size_t err_len;
	const char *field; /* name of the field being read, for messages */
} wire_dec;

/* Reads an array header (already validated by the pre-scan). */
static int wire_dec_array(wire_dec *d, uint32_t *count)
{
	if (d->off >= d->len)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ETRUNCATED,
				 "%s: missing", d->field);
	uint8_t b = d->body[d->off];
	if (b >= 0x90 && b <= 0x9f) {
		*count = b & 0x0f;
		d->off += 1;
	} else if (b == 0xdc && d->len - d->off >= 3) {
		*count = (uint32_t)wire_be(d->body + d->off + 1, 2);
		d->off += 3;
	} else if (b == 0xdd && d->len - d->off >= 5) {
		*count = (uint32_t)wire_be(d->body + d->off + 1, 4);
		d->off += 5;
	} else {
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "%s: expected an array, got msgpack byte %02x",
				 d->field, b);
	}
	return 0;
}

static bool wire_is_array_byte(uint8_t b)
{
	return (b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd;
}

/* Unpacks the next element into obj. Scalars and bin/str need no zone; an
 * array is only allowed where the shape has one (an entry, whose elements
 * the pre-scan limited to scalars), so the zone holds at most a few objects
 * and a hostile body cannot make msgpack-c build a large tree. */
/* Scalars (integers, bin, str) are read here directly, into the same
 * msgpack_object msgpack-c would build: the pre-scan has already checked
 * that every length lies inside the body, and this is most of what a
 * message holds. Returns 1 when the byte is not one of those forms. */
static int wire_dec_scalar(wire_dec *d, msgpack_object *obj)
{
	const uint8_t *p = d->body + d->off;
	size_t left = d->len - d->off;
	uint8_t b = p[0];
	if (b <= 0x7f) {
		obj->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		obj->via.u64 = b;
		d->off += 1;
		return 0;
	}
	unsigned width;
	if (b >= 0xcc && b <= 0xcf) { /* uint 8/16/32/64 */
		width = 1u << (b - 0xcc);
		if (left < 1u + width)
			return 1;
		obj->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		obj->via.u64 = wire_be(p + 1, width);
		d->off += 1u + width;
		return 0;
	}
	if (b >= 0xd0 && b <= 0xd3) { /* int 8/16/32/64 */
		width = 1u << (b - 0xd0);
		if (left < 1u + width)
			return 1;
		uint64_t raw = wire_be(p + 1, width);
		unsigned bits = 8u * width;
		bool negative = (raw >> (bits - 1)) & 1u;
		if (negative) {
			/* Sign-extend, as msgpack-c does: a NEGATIVE_INTEGER,
			 * which the shape checks refuse. */
			obj->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
			obj->via.i64 = bits == 64 ? (int64_t)raw
						  : (int64_t)(raw | (~UINT64_C(0) << bits));
		} else {
			obj->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
			obj->via.u64 = raw;
		}
		d->off += 1u + width;
		return 0;
	}
	if (b >= 0xe0) {
		obj->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
		obj->via.i64 = (int8_t)b;
		d->off += 1;
		return 0;
	}
	uint64_t len;
	size_t head;
	bool bin;
	if (b >= 0xa0 && b <= 0xbf) {
		len = b & 0x1fu;
		head = 1;
		bin = false;
	} else if ((b >= 0xc4 && b <= 0xc6) || (b >= 0xd9 && b <= 0xdb)) {
		bin = b <= 0xc6;
		width = bin ? 1u << (b - 0xc4) : 1u << (b - 0xd9);
		if (left < 1u + width)
			return 1;
		len = wire_be(p + 1, width);
		head = 1u + width;
	} else {
		return 1;
	}
	if (len > left - head)
		return 1; /* let msgpack-c report it */
	if (bin) {
		obj->type = MSGPACK_OBJECT_BIN;
		obj->via.bin.size = (uint32_t)len;
		obj->via.bin.ptr = (const char *)p + head;
	} else {
		obj->type = MSGPACK_OBJECT_STR;
		obj->via.str.size = (uint32_t)len;
		obj->via.str.ptr = (const char *)p + head;
	}
	d->off += head + (size_t)len;
	return 0;
}

static int wire_dec_next(wire_dec *d, msgpack_object *obj, bool allow_array)
{
	if (d->off >= d->len)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ETRUNCATED,
				 "%s: missing", d->field);
	bool array = wire_is_array_byte(d->body[d->off]);
	if (!allow_array && array)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "%s: expected a scalar, got an array", d->field);
	if (!array && wire_dec_scalar(d, obj) == 0)
		return 0;
	if (!d->zone_ready) {
		if (!msgpack_zone_init(&d->zone, 1024))
			return wire_fail(d->err, d->err_len, VSR_WIRE_ENOMEM, "msgpack zone");
		d->zone_ready = true;
	} else {
		msgpack_zone_clear(&d->zone);
	}
	size_t off = d->off;
	msgpack_unpack_return r = msgpack_unpack((const char *)d->body, d->len,
						 &off, &d->zone, obj);
	switch (r) {
	case MSGPACK_UNPACK_SUCCESS:
	case MSGPACK_UNPACK_EXTRA_BYTES:
		d->off = off;
		return 0;
	case MSGPACK_UNPACK_CONTINUE:
		return wire_fail(d->err, d->err_len, VSR_WIRE_ETRUNCATED,
				 "%s: value cut short", d->field);
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return wire_fail(d->err, d->err_len, VSR_WIRE_ENOMEM,
				 "%s: msgpack zone", d->field);
	default:
		return wire_fail(d->err, d->err_len, VSR_WIRE_EMSGPACK,
				 "%s: msgpack parse error %d", d->field, (int)r);
	}
}

static int wire_obj_uint(wire_dec *d, const msgpack_object *o, uint64_t max,
			 uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "%s: expected an unsigned integer, got msgpack type %d",
				 d->field, (int)o->type);
	if (o->via.u64 > max)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
				 "%s: %" PRIu64 " exceeds %" PRIu64, d->field,
				 o->via.u64, max);
	*v = o->via.u64;
	return 0;
}

static int wire_dec_uint(wire_dec *d, const char *field, uint64_t max, uint64_t *v)
{
	msgpack_object o;
	d->field = field;
	int rc = wire_dec_next(d, &o, false);
	return rc != 0 ? rc : wire_obj_uint(d, &o, max, v);
}

#define WIRE_DEC_U(d, name, max, lvalue)                                   \
	do {                                                               \
		uint64_t wire_v_;                                          \
		int wire_rc_ = wire_dec_uint((d), (name), (max), &wire_v_); \
		if (wire_rc_ != 0)                                         \
			return wire_rc_;                                   \
		(lvalue) = wire_v_; /* range checked: fits */              \
	} while (0)

/* A bin or str object: pointer into the body (msgpack-c references the
 * input for raw bytes), checked to lie inside it. */
static int wire_obj_bytes(wire_dec *d, const msgpack_object *o, int want_type,
			  uint32_t max, const uint8_t **p, uint32_t *len)
{
	if ((int)o->type != want_type)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "%s: expected %s, got msgpack type %d", d->field,
				 want_type == MSGPACK_OBJECT_BIN ? "bin" : "str",
				 (int)o->type);
	const uint8_t *ptr = (const uint8_t *)(want_type == MSGPACK_OBJECT_BIN
						       ? o->via.bin.ptr
						       : o->via.str.ptr);
	uint32_t size = want_type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.str.size;
	if (size > max)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ELIMIT,
				 "%s: %" PRIu32 " bytes, limit %" PRIu32, d->field,
				 size, max);
	if (size > 0 && (ptr < d->body || ptr > d->body + d->len ||
			 size > (size_t)(d->body + d->len - ptr)))
		return wire_fail(d->err, d->err_len, VSR_WIRE_EMSGPACK,
				 "%s: bytes outside the body", d->field);
	*p = size > 0 ? ptr : NULL;
	*len = size;
	return 0;
}

static int wire_dec_bytes(wire_dec *d, const char *field, int type, uint32_t max,
			  const uint8_t **p, uint32_t *len)
{
	msgpack_object o;
	d->field = field;
	int rc = wire_dec_next(d, &o, false);
	return rc != 0 ? rc : wire_obj_bytes(d, &o, type, max, p, len);
}

/* The top-level array of `want_min`..`want` elements; its size in *got. */
static int wire_dec_top_range(wire_dec *d, uint32_t want_min, uint32_t want, uint32_t *got)
{
	uint32_t n;
	d->field = "body";
	int rc = wire_dec_array(d, &n);
	if (rc != 0)
		return rc;
	*got = n;
	if (n < want_min || n > want)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "body: array of %" PRIu32 " elements, want %" PRIu32 "..%" PRIu32,
				 n, want_min, want);
	return 0;
}

static int wire_dec_top(wire_dec *d, uint32_t want)
{
	uint32_t n;
	d->field = "body";
	int rc = wire_dec_array(d, &n);
	if (rc != 0)
		return rc;
	if (n != want)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "body: array of %" PRIu32 " elements, want %" PRIu32,
				 n, want);
	return 0;
}

/* One entry: [checksum, parent, op, view, timestamp, request_count, body]. */
static int wire_dec_entry(wire_dec *d, uint32_t index, vsr_entry *en)
{
	msgpack_object o;
	d->field = "entry";
	int rc = wire_dec_next(d, &o, true);
	if (rc != 0)
		return rc;
	if (o.type != MSGPACK_OBJECT_ARRAY || o.via.array.size != WIRE_ENTRY_FIELDS)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "entries[%" PRIu32 "]: expected an array of %u", index,
				 WIRE_ENTRY_FIELDS);
	const msgpack_object *f = o.via.array.ptr;
	static const char *const names[WIRE_ENTRY_FIELDS] = {
		"entry.checksum", "entry.parent", "entry.op", "entry.view",
		"entry.timestamp", "entry.request_count", "entry.body",
	};
	uint64_t v[6];
	for (int i = 0; i < 6; i++) {
		d->field = names[i];
		uint64_t max = i == 5 ? VSR_BATCH_REQUESTS_MAX : UINT64_MAX;
		rc = wire_obj_uint(d, &f[i], max, &v[i]);
		if (rc != 0)
			return rc;
	}
	d->field = names[6];
	rc = wire_obj_bytes(d, &f[6], MSGPACK_OBJECT_BIN, VSR_BATCH_BYTES_MAX,
			    &en->body, &en->body_len);
	if (rc != 0)
		return rc;
	en->checksum = v[0];
	en->parent = v[1];
	en->op = v[2];
	en->view = v[3];
	en->timestamp = v[4];
	en->request_count = (uint32_t)v[5];
	/* The batch must parse as exactly request_count requests: the state
	 * machine would otherwise meet a body the core cannot walk. */
	bool batch_ok = en->body_len == 0
				? en->request_count == 0
				: vsr_batch_valid(en->body, en->body_len, en->request_count);
	/* (An empty body is checked here: the core's iterator would compute
	 * NULL + 0, which UBSan reports.) */
	if (!batch_ok)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
				 "entries[%" PRIu32 "]: body is not a batch of %" PRIu32
				 " requests", index, en->request_count);
	return 0;
}

static int wire_dec_core(wire_dec *d, const vsr_wire_config *c, uint8_t type,
			 vsr_wire_decoded *out)
{
	vsr_message *m = &out->message;
	uint8_t n = wire_replica_count(c);
	uint32_t fields;
	/* More fields than this version knows: a newer peer's appended ones
	 * (docs/wire.md 3.1), skipped, so that versions can be mixed while a
	 * cluster is upgraded one replica at a time. */
	int rc = wire_dec_top_range(d, WIRE_CORE_FIELDS_MIN, WIRE_TOP_ELEMENTS_MAX, &fields);
	if (rc != 0)
		return rc;
	m->type = type;
	/* A client sends no replica index; every other core type comes from a
	 * replica of this cluster. */
	WIRE_DEC_U(d, "replica", type == VSR_MSG_REQUEST ? 0 : (uint64_t)n - 1, m->replica);
	WIRE_DEC_U(d, "status",
		   type == VSR_MSG_REPLY ? VSR_REPLY_SCRIPT_ERROR : VSR_STATUS_COUNT - 1,
		   m->status);
	WIRE_DEC_U(d, "epoch", UINT64_MAX, m->epoch);
	WIRE_DEC_U(d, "view", UINT64_MAX, m->view);
	WIRE_DEC_U(d, "log_view", UINT64_MAX, m->log_view);
	WIRE_DEC_U(d, "op", UINT64_MAX, m->op);
	WIRE_DEC_U(d, "commit", UINT64_MAX, m->commit);
	WIRE_DEC_U(d, "checksum", UINT64_MAX, m->checksum);
	WIRE_DEC_U(d, "nonce", UINT64_MAX, m->nonce);
	WIRE_DEC_U(d, "timestamp", UINT64_MAX, m->timestamp);
	WIRE_DEC_U(d, "session", UINT64_MAX, m->request.session);
	WIRE_DEC_U(d, "request", UINT64_MAX, m->request.request);
	WIRE_DEC_U(d, "kind", VSR_REQUEST_QUERY, m->request.kind);
	if (type == VSR_MSG_REQUEST && m->request.kind != VSR_REQUEST_REGISTER &&
	    m->request.kind != VSR_REQUEST_OP && m->request.kind != VSR_REQUEST_QUERY)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
				 "kind: %u is not REGISTER (1), OP (2) or QUERY (3)",
				 m->request.kind);
	rc = wire_dec_bytes(d, "op_bytes", MSGPACK_OBJECT_BIN, wire_op_limit(type),
			    &m->request.op, &m->request.op_len);
	if (rc != 0)
		return rc;
	WIRE_DEC_U(d, "reply_op", UINT64_MAX, m->reply_op);
	rc = wire_dec_bytes(d, "body", MSGPACK_OBJECT_BIN, wire_body_limit(type),
			    &m->body, &m->body_len);
	if (rc != 0)
		return rc;

	uint32_t count;
	d->field = "entries";
	rc = wire_dec_array(d, &count);
	if (rc != 0)
		return rc;
	uint32_t count_max = !wire_type_has_entries(type) ? 0
			     : type == VSR_MSG_PREPARE   ? 1
							 : wire_entries_max(c);
	if (count > count_max ||
	    (uint64_t)count * WIRE_ENTRY_BYTES_MIN > d->len - d->off)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ELIMIT,
				 "entries: %" PRIu32 " for %s, at most %" PRIu32, count,
				 vsr_wire_type_name(type), count_max);
	if (type == VSR_MSG_PREPARE && count != 1)
		return wire_fail(d->err, d->err_len, VSR_WIRE_ESHAPE,
				 "entries: a PREPARE carries exactly one entry");
	if (count > 0) {
		/* Bounded: count * 9 <= remaining body bytes (checked above). */
		out->owned_entries = calloc(count, sizeof(vsr_entry));
		if (out->owned_entries == NULL)
			return wire_fail(d->err, d->err_len, VSR_WIRE_ENOMEM,
					 "entries: %" PRIu32, count);
		for (uint32_t i = 0; i < count; i++) {
			rc = wire_dec_entry(d, i, &out->owned_entries[i]);
			if (rc != 0)
				return rc;
		}
	}
	m->entry_count = count;
	m->entries = out->owned_entries;
	WIRE_DEC_U(d, "checkpoint_op", UINT64_MAX, m->checkpoint_op);
	WIRE_DEC_U(d, "checkpoint_size", UINT64_MAX, m->checkpoint_size);
	WIRE_DEC_U(d, "offset", UINT64_MAX, m->offset);
	WIRE_DEC_U(d, "history", UINT64_MAX, m->history);
	WIRE_DEC_U(d, "checkpoint_digest", UINT64_MAX, m->checkpoint_digest);
	if (fields > 22)
		WIRE_DEC_U(d, "read_mode", VSR_READ_MODE_COUNT - 1, m->read_mode);
	for (uint32_t i = WIRE_CORE_FIELDS; i < fields; i++) {
		msgpack_object unknown;
		d->field = "an appended field";
		if ((rc = wire_dec_next(d, &unknown, true)) != 0)
			return rc;
	}
	m->cluster = out->header.cluster;

	/* The core's own structural check, on top of ours. */
	const char *why = vsr_message_invalid(m, n);
	if (why != NULL)
		return wire_fail(d->err, d->err_len, VSR_WIRE_EINVALID, "%s: %s",
				 vsr_wire_type_name(type), why);
	return 0;
}

static int wire_dec_host(wire_dec *d, const vsr_wire_config *c, uint8_t type,
			 vsr_wire_decoded *out)
{
	uint8_t n = wire_replica_count(c);
	int rc;
	switch (type) {
	case VSR_WIRE_HELLO: {
		vsr_wire_hello *h = &out->hello;
		uint32_t fields;
		rc = wire_dec_top_range(d, WIRE_HELLO_FIELDS_MIN, WIRE_TOP_ELEMENTS_MAX, &fields);
		if (rc != 0)
			return rc;
		WIRE_DEC_U(d, "role", VSR_WIRE_ROLE_COUNT - 1, h->role);
		WIRE_DEC_U(d, "replica", h->role == VSR_WIRE_ROLE_REPLICA ? n - 1u : 0u,
			   h->replica);
		WIRE_DEC_U(d, "instance", UINT64_MAX, h->instance);
		WIRE_DEC_U(d, "history", UINT64_MAX, h->history);
		const uint8_t *p;
		uint32_t len;
		rc = wire_dec_bytes(d, "nonce", MSGPACK_OBJECT_BIN, VSR_WIRE_NONCE_SIZE, &p, &len);
		if (rc != 0)
			return rc;
		if (len != 0 && len != VSR_WIRE_NONCE_SIZE)
			return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
					 "nonce: %" PRIu32 " bytes, want 0 or %u", len,
					 VSR_WIRE_NONCE_SIZE);
		h->has_nonce = len > 0;
		if (len > 0)
			memcpy(h->nonce, p, len);
		h->config_count = 0;
		if (fields > WIRE_HELLO_FIELDS_MIN) {
			uint32_t count;
			d->field = "config";
			if ((rc = wire_dec_array(d, &count)) != 0)
				return rc;
			if (count > VSR_WIRE_CONFIG_PARTS_MAX)
				return wire_fail(d->err, d->err_len, VSR_WIRE_ELIMIT,
						 "config: %" PRIu32 " parts, at most %u", count,
						 VSR_WIRE_CONFIG_PARTS_MAX);
			for (uint32_t i = 0; i < count; i++)
				WIRE_DEC_U(d, "config", UINT64_MAX, h->config[i]);
			h->config_count = (uint8_t)count;
		}
		for (uint32_t i = WIRE_HELLO_FIELDS; i < fields; i++) {
			msgpack_object unknown;
			d->field = "an appended field";
			if ((rc = wire_dec_next(d, &unknown, true)) != 0)
				return rc;
		}
		return 0;
	}
	case VSR_WIRE_AUTH: {
		const uint8_t *p;
		uint32_t len;
		if ((rc = wire_dec_top(d, WIRE_AUTH_FIELDS)) != 0)
			return rc;
		rc = wire_dec_bytes(d, "proof", MSGPACK_OBJECT_BIN, VSR_WIRE_PROOF_SIZE, &p, &len);
		if (rc != 0)
			return rc;
		if (len != VSR_WIRE_PROOF_SIZE)
			return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
					 "proof: %" PRIu32 " bytes, want %u", len, VSR_WIRE_PROOF_SIZE);
		memcpy(out->auth.proof, p, len);
		return 0;
	}
	case VSR_WIRE_PING:
	case VSR_WIRE_PONG:
		if ((rc = wire_dec_top(d, WIRE_PING_FIELDS)) != 0)
			return rc;
		WIRE_DEC_U(d, "nonce", UINT64_MAX, out->ping.nonce);
		WIRE_DEC_U(d, "time_ns", UINT64_MAX, out->ping.time_ns);
		return 0;
	case VSR_WIRE_STATUS_REQUEST:
		if ((rc = wire_dec_top(d, WIRE_STATUS_REQUEST_FIELDS)) != 0)
			return rc;
		WIRE_DEC_U(d, "nonce", UINT64_MAX, out->status_request.nonce);
		return 0;
	case VSR_WIRE_STATUS_REPLY: {
		vsr_wire_status *s = &out->status;
		if ((rc = wire_dec_top(d, WIRE_STATUS_FIELDS)) != 0)
			return rc;
		WIRE_DEC_U(d, "nonce", UINT64_MAX, s->nonce);
		WIRE_DEC_U(d, "replica", VSR_REPLICAS_MAX - 1, s->replica);
		WIRE_DEC_U(d, "replica_count", VSR_REPLICAS_MAX, s->replica_count);
		WIRE_DEC_U(d, "status", VSR_STATUS_COUNT - 1, s->status);
		WIRE_DEC_U(d, "primary", VSR_REPLICAS_MAX - 1, s->primary);
		if (s->replica_count == 0 || s->replica >= s->replica_count ||
		    s->primary >= s->replica_count)
			return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
					 "status: replica %u / primary %u of %u",
					 s->replica, s->primary, s->replica_count);
		WIRE_DEC_U(d, "view", UINT64_MAX, s->view);
		WIRE_DEC_U(d, "log_view", UINT64_MAX, s->log_view);
		WIRE_DEC_U(d, "op", UINT64_MAX, s->op);
		WIRE_DEC_U(d, "commit", UINT64_MAX, s->commit);
		WIRE_DEC_U(d, "executed", UINT64_MAX, s->executed);
		WIRE_DEC_U(d, "checkpoint_op", UINT64_MAX, s->checkpoint_op);
		WIRE_DEC_U(d, "digest", UINT64_MAX, s->digest);
		WIRE_DEC_U(d, "pipeline", UINT32_MAX, s->pipeline);
		WIRE_DEC_U(d, "queued", UINT32_MAX, s->queued);
		WIRE_DEC_U(d, "sessions", UINT32_MAX, s->sessions);
		WIRE_DEC_U(d, "connections", UINT32_MAX, s->connections);
		WIRE_DEC_U(d, "uptime_ms", UINT64_MAX, s->uptime_ms);
		WIRE_DEC_U(d, "ops_committed", UINT64_MAX, s->ops_committed);
		WIRE_DEC_U(d, "view_changes", UINT64_MAX, s->view_changes);
		WIRE_DEC_U(d, "messages_dropped", UINT64_MAX, s->messages_dropped);
		WIRE_DEC_U(d, "frames_dropped", UINT64_MAX, s->frames_dropped);
		WIRE_DEC_U(d, "state_transfers", UINT64_MAX, s->state_transfers);
		WIRE_DEC_U(d, "checkpoints", UINT64_MAX, s->checkpoints);
		WIRE_DEC_U(d, "requests_deduplicated", UINT64_MAX, s->requests_deduplicated);
		WIRE_DEC_U(d, "sessions_evicted", UINT64_MAX, s->sessions_evicted);
		WIRE_DEC_U(d, "history", UINT64_MAX, s->history);
		WIRE_DEC_U(d, "step_age_ms", UINT64_MAX, s->step_age_ms);
		WIRE_DEC_U(d, "progress_age_ms", UINT64_MAX, s->progress_age_ms);
		return 0;
	}
	case VSR_WIRE_CLOSE: {
		vsr_wire_close *cl = &out->close;
		const uint8_t *p;
		uint32_t len;
		if ((rc = wire_dec_top(d, WIRE_CLOSE_FIELDS)) != 0)
			return rc;
		WIRE_DEC_U(d, "reason", VSR_WIRE_REASON_COUNT - 1, cl->reason);
		rc = wire_dec_bytes(d, "text", MSGPACK_OBJECT_STR, VSR_WIRE_REASON_MAX,
				    &p, &len);
		if (rc != 0)
			return rc;
		if (len > 0 && memchr(p, 0, len) != NULL)
			return wire_fail(d->err, d->err_len, VSR_WIRE_ERANGE,
					 "text: contains a NUL byte");
		/* From the other end, maybe not authenticated, on its way to
		 * logs and terminals: no control characters. */
		for (uint32_t i = 0; i < len; i++)
			cl->text[i] = p[i] < 0x20 || p[i] == 0x7f ? '?' : (char)p[i];
		cl->text[len] = '\0';
		return 0;
	}
	default:
		return wire_fail(d->err, d->err_len, VSR_WIRE_ETYPE, "type %u", type);
	}
}

/* ------------------------------------------------------------------------ */
/* Decoded results.                                                          */

void vsr_wire_decoded_init(vsr_wire_decoded *d)
{
	memset(d, 0, sizeof(*d));
}

void vsr_wire_decoded_free(vsr_wire_decoded *d)
{
	free(d->owned_body);
	free(d->owned_entries);
	vsr_wire_decoded_init(d);
}

int vsr_wire_decode_body(const vsr_wire_header *h, uint8_t *body,
			 const vsr_wire_config *c, vsr_wire_decoded *out,
			 char *err, size_t err_len)
{
	vsr_wire_decoded_free(out);
	out->header = *h;
	out->owned_body = body;

	wire_scan s = {
		.p = body,
		.end = body + h->body_len,
		.entries_max = wire_entries_max(c),
		.err = err,
		.err_len = err_len,
	};
	int rc = wire_scan_value(&s, 0);
	if (rc == 0 && s.p != s.end)
		rc = wire_fail(err, err_len, VSR_WIRE_ETRAILING,
			       "%zu bytes after the body's msgpack value",
			       (size_t)(s.end - s.p));
	if (rc != 0)
		goto fail;

	wire_dec d = {
		.body = body,
		.len = h->body_len,
		.off = 0,
		.err = err,
		.err_len = err_len,
		.field = "body",
	};
	if (h->type < VSR_MSG_TYPE_COUNT)
		rc = wire_dec_core(&d, c, h->type, out);
	else
		rc = wire_dec_host(&d, c, h->type, out);
	if (d.zone_ready)
		msgpack_zone_destroy(&d.zone);
	if (rc == 0 && d.off != d.len)
		/* The pre-scan saw one value; the shape read less of it. */
		rc = wire_fail(err, err_len, VSR_WIRE_ETRAILING, "%zu unread bytes",
			       d.len - d.off);
	if (rc != 0)
		goto fail;
	out->type = h->type;
	return 0;
fail:
	vsr_wire_decoded_free(out);
	return rc;
}

static void wire_count(vsr_wire_stats *stats, int rc)
{
	if (stats == NULL)
		return;
	if (rc == 0)
		stats->frames_in++;
	else if (-rc > 0 && -rc < VSR_WIRE_REASON_COUNT)
		stats->dropped[-rc]++;
}

static int wire_check_body(const vsr_wire_header *h, const uint8_t *body,
			   char *err, size_t err_len)
{
	uint64_t got = XXH3_64bits(body, h->body_len);
	if (got != h->body_checksum)
		return wire_fail(err, err_len, VSR_WIRE_EBODY_CHECKSUM,
				 "header says %016" PRIx64 ", body hashes to %016" PRIx64,
				 h->body_checksum, got);
	return 0;
}

int vsr_wire_decode(const uint8_t *data, size_t len, const vsr_wire_config *c,
		    vsr_wire_decoded *out, size_t *frame_len, vsr_wire_stats *stats,
		    char *err, size_t err_len)
{
	vsr_wire_header h;
	int rc;
	vsr_wire_decoded_free(out);
	if (stats != NULL)
		stats->bytes_in += len;
	if (len < VSR_WIRE_HEADER_SIZE) {
		rc = wire_fail(err, err_len, VSR_WIRE_ETRUNCATED,
			       "%zu bytes, a header is %u", len, VSR_WIRE_HEADER_SIZE);
		goto done;
	}
	rc = vsr_wire_header_parse(data, c, &h, err, err_len);
	if (rc != 0)
		goto done;
	if (len - VSR_WIRE_HEADER_SIZE < h.body_len) {
		rc = wire_fail(err, err_len, VSR_WIRE_ETRUNCATED,
			       "body of %" PRIu32 " bytes, %zu present", h.body_len,
			       len - VSR_WIRE_HEADER_SIZE);
		goto done;
	}
	if (h.flags & VSR_WIRE_FLAG_MAC) {
		/* Only a reader that holds the connection's key can check it. */
		rc = wire_fail(err, err_len, VSR_WIRE_EMAC, "sealed frame outside a connection");
		goto done;
	}
	const uint8_t *body = data + VSR_WIRE_HEADER_SIZE;
	rc = wire_check_body(&h, body, err, err_len);
	if (rc != 0)
		goto done;
	uint8_t *copy = malloc(h.body_len);
	if (copy == NULL) {
		rc = wire_fail(err, err_len, VSR_WIRE_ENOMEM, "body copy");
		goto done;
	}
	memcpy(copy, body, h.body_len);
	rc = vsr_wire_decode_body(&h, copy, c, out, err, err_len);
	if (rc == 0 && frame_len != NULL)
		*frame_len = VSR_WIRE_HEADER_SIZE + (size_t)h.body_len;
done:
	wire_count(stats, rc);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Streaming reader.                                                         */

void vsr_wire_reader_init(vsr_wire_reader *r, const vsr_wire_config *c,
			  vsr_wire_stats *stats)
{
	memset(r, 0, sizeof(*r));
	r->config = *c;
	r->stats = stats;
}

void vsr_wire_reader_free(vsr_wire_reader *r)
{
	free(r->body);
	r->body = NULL;
}

/* Forgets the held frame, ready for the next header. */
static void wire_reader_next_frame(vsr_wire_reader *r)
{
	free(r->body);
	r->body = NULL;
	r->header_have = 0;
	r->body_have = 0;
	r->body_cap = 0;
	r->mac_have = 0;
	r->frame_ready = false;
}

void vsr_wire_reader_expect_mac(vsr_wire_reader *r, const uint8_t key[VSR_WIRE_KEY_SIZE])
{
	memcpy(r->mac_key, key, VSR_WIRE_KEY_SIZE);
	r->mac_on = true;
	r->mac_seq = 0;
	r->mac_have = 0;
}

static int wire_reader_fail(vsr_wire_reader *r, int rc)
{
	r->error = rc;
	wire_count(r->stats, rc);
	free(r->body);
	r->body = NULL;
	r->frame_ready = false;
	return rc;
}

int vsr_wire_reader_feed(vsr_wire_reader *r, const uint8_t *data, size_t len,
			 size_t *used)
{
	size_t off = 0;
	*used = 0;
	if (r->error != 0)
		return r->error;
	if (r->frame_ready)
		wire_reader_next_frame(r);
	while (off < len) {
		if (r->header_have < VSR_WIRE_HEADER_SIZE) {
			size_t take = VSR_WIRE_HEADER_SIZE - r->header_have;
			if (take > len - off)
				take = len - off;
			memcpy(r->header_bytes + r->header_have, data + off, take);
			r->header_have += (uint32_t)take;
			off += take;
			if (r->header_have < VSR_WIRE_HEADER_SIZE)
				break;
			int rc = vsr_wire_header_parse(r->header_bytes, &r->config,
						       &r->header, r->err,
						       sizeof(r->err));
			if (rc != 0) {
				*used = off;
				if (r->stats != NULL)
					r->stats->bytes_in += off;
				return wire_reader_fail(r, rc);
			}
			bool sealed = (r->header.flags & VSR_WIRE_FLAG_MAC) != 0;
			if (sealed != r->mac_on) {
				*used = off;
				if (r->stats != NULL)
					r->stats->bytes_in += off;
				return wire_reader_fail(
					r, wire_fail(r->err, sizeof(r->err), VSR_WIRE_EMAC,
						     sealed ? "a sealed frame before authentication"
							    : "an unsealed frame after authentication"));
			}
			/* The header is valid: body_len is within the maximum.
			 * The buffer still grows only as bytes arrive, so a peer
			 * announcing a large body and going quiet holds little. */
			r->body_cap = r->header.body_len < WIRE_READER_FIRST_BYTES
					      ? r->header.body_len
					      : WIRE_READER_FIRST_BYTES;
			r->body = malloc(r->body_cap);
			if (r->body == NULL) {
				*used = off;
				return wire_reader_fail(
					r, wire_fail(r->err, sizeof(r->err),
						     VSR_WIRE_ENOMEM, "body of %" PRIu32,
						     r->header.body_len));
			}
			r->body_have = 0;
			continue;
		}
		if (r->body_have == r->header.body_len) {
			/* Body complete: the MAC behind it. */
			size_t want = VSR_WIRE_MAC_SIZE - r->mac_have;
			if (want > len - off)
				want = len - off;
			memcpy(r->mac_bytes + r->mac_have, data + off, want);
			r->mac_have += (uint32_t)want;
			off += want;
			break;
		}
		size_t take = r->header.body_len - r->body_have;
		if (take > len - off)
			take = len - off;
		if (r->body_have + take > r->body_cap) {
			uint64_t cap = r->body_cap;
			while (cap < r->body_have + take)
				cap *= 2;
			if (cap > r->header.body_len)
				cap = r->header.body_len;
			uint8_t *grown = realloc(r->body, (size_t)cap);
			if (grown == NULL) {
				*used = off;
				return wire_reader_fail(
					r, wire_fail(r->err, sizeof(r->err),
						     VSR_WIRE_ENOMEM, "body of %" PRIu32,
						     r->header.body_len));
			}
			r->body = grown;
			r->body_cap = (uint32_t)cap;
		}
		memcpy(r->body + r->body_have, data + off, take);
		r->body_have += (uint32_t)take;
		off += take;
		if (r->body_have == r->header.body_len && !r->mac_on)
			break;
	}
	*used = off;
	if (r->stats != NULL)
		r->stats->bytes_in += off;
	if (r->header_have == VSR_WIRE_HEADER_SIZE && r->body != NULL &&
	    r->body_have == r->header.body_len &&
	    (!r->mac_on || r->mac_have == VSR_WIRE_MAC_SIZE)) {
		int rc = 0;
		if (r->mac_on &&
		    !vsr_wire_mac_verify(r->mac_key, r->mac_seq, r->header_bytes, r->body,
					 r->header.body_len, r->mac_bytes))
			rc = wire_fail(r->err, sizeof(r->err), VSR_WIRE_EMAC,
				       "%s frame %" PRIu64 " of this connection",
				       vsr_wire_type_name(r->header.type), r->mac_seq);
		if (rc == 0)
			rc = wire_check_body(&r->header, r->body, r->err, sizeof(r->err));
		if (rc != 0)
			return wire_reader_fail(r, rc);
		if (r->mac_on)
			r->mac_seq++;
		r->frame_ready = true;
		return 1;
	}
	return 0;
}

int vsr_wire_reader_decode(vsr_wire_reader *r, vsr_wire_decoded *out)
{
	if (r->error != 0)
		return r->error;
	if (!r->frame_ready)
		return wire_reader_fail(r, wire_fail(r->err, sizeof(r->err),
						     VSR_WIRE_ETRUNCATED,
						     "no whole frame is buffered"));
	uint8_t *body = r->body;
	r->body = NULL; /* ownership moves to `out`, whatever the outcome */
	wire_reader_next_frame(r);
	int rc = vsr_wire_decode_body(&r->header, body, &r->config, out, r->err,
				      sizeof(r->err));
	if (rc != 0)
		return wire_reader_fail(r, rc);
	wire_count(r->stats, 0);
	return 0;
}

bool vsr_wire_reader_partial(const vsr_wire_reader *r)
{
	return r->error == 0 && !r->frame_ready && r->header_have > 0;
}

size_t vsr_wire_reader_buffered(const vsr_wire_reader *r)
{
	return r->header_have + (r->body != NULL ? r->body_have : 0);
}
