/* wire_testutil.c - random messages, equality and raw frames for the wire tests. */
#include "wire_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

uint64_t wt_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t wt_rand_u64(uint64_t *state)
{
	static const unsigned bits[5] = {1, 8, 16, 32, 64};
	uint64_t r = wt_rand(state);
	unsigned b = bits[wt_rand(state) % 5];
	return b == 64 ? r : r & ((1ULL << b) - 1);
}

void *wt_arena_alloc(wt_arena *a, size_t len)
{
	if (a->count == sizeof(a->blocks) / sizeof(a->blocks[0])) {
		fprintf(stderr, "wt_arena: full\n");
		abort();
	}
	void *p = malloc(len ? len : 1);
	if (p == NULL) {
		fprintf(stderr, "wt_arena: out of memory\n");
		abort();
	}
	a->blocks[a->count++] = p;
	return p;
}

void wt_arena_free(wt_arena *a)
{
	for (uint32_t i = 0; i < a->count; i++)
		free(a->blocks[i]);
	a->count = 0;
}

static uint8_t *wt_bytes(uint64_t *state, wt_arena *a, uint32_t len)
{
	uint8_t *p = wt_arena_alloc(a, len);
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)wt_rand(state);
	return p;
}

/* A length that is usually small, sometimes crosses the bin8/bin16
 * boundaries, and with `big` sometimes needs bin32. */
static uint32_t wt_len(uint64_t *state, bool big)
{
	switch (wt_rand(state) % 8) {
	case 0:
		return 0;
	case 1:
		return 255 + (uint32_t)(wt_rand(state) % 3);
	case 2:
		return 65535 + (uint32_t)(wt_rand(state) % 3) * (big ? 1 : 0);
	case 3:
		return big ? 65536 + (uint32_t)(wt_rand(state) % 200000) : 31;
	default:
		return (uint32_t)(wt_rand(state) % 200);
	}
}

static void wt_put(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A valid batch body of `count` requests. */
static const uint8_t *wt_batch(uint64_t *state, wt_arena *a, uint32_t count,
			       uint32_t *len_out)
{
	uint32_t lens[8];
	uint32_t total = 0;
	for (uint32_t i = 0; i < count; i++) {
		lens[i] = (uint32_t)(wt_rand(state) % 64);
		total += VSR_BATCH_REQUEST_HEADER_SIZE + lens[i];
	}
	uint8_t *body = wt_arena_alloc(a, total);
	uint8_t *p = body;
	for (uint32_t i = 0; i < count; i++) {
		wt_put(p, wt_rand_u64(state), 8);
		wt_put(p + 8, wt_rand_u64(state), 8);
		p[16] = (uint8_t)(1 + wt_rand(state) % 2);
		wt_put(p + 17, lens[i], 4);
		p += VSR_BATCH_REQUEST_HEADER_SIZE;
		for (uint32_t j = 0; j < lens[i]; j++)
			*p++ = (uint8_t)wt_rand(state);
	}
	*len_out = total;
	return total ? body : NULL;
}

void wt_gen_message(uint64_t *state, uint8_t type, bool big, wt_arena *a,
		    vsr_message *m)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->cluster = wt_rand(state) % 2 ? WT_CLUSTER : 0;
	m->replica = (uint8_t)(wt_rand(state) % WT_REPLICAS);
	m->status = (uint8_t)(wt_rand(state) % VSR_STATUS_COUNT);
	m->epoch = wt_rand_u64(state);
	/* Within the ranges the core accepts (vsr_limits.h). */
	m->view = wt_rand_u64(state) % (VSR_VIEW_MAX + 1);
	m->log_view = wt_rand_u64(state) % (VSR_VIEW_MAX + 1);
	m->op = wt_rand_u64(state) % (VSR_OP_MAX + 1);
	m->commit = wt_rand_u64(state) % (VSR_OP_MAX + 1);
	m->checksum = wt_rand_u64(state);
	m->nonce = wt_rand_u64(state);
	m->timestamp = wt_rand_u64(state);
	m->request.session = wt_rand_u64(state);
	m->request.request = wt_rand_u64(state);
	m->request.kind = (uint8_t)(wt_rand(state) % 3);
	m->reply_op = wt_rand_u64(state);
	m->checkpoint_op = wt_rand_u64(state) % (VSR_OP_MAX + 1);
	m->checkpoint_size = wt_rand_u64(state);
	m->offset = wt_rand_u64(state);
	m->checkpoint_digest = wt_rand_u64(state);

	switch (type) {
	case VSR_MSG_REQUEST:
		m->replica = 0;
		m->request.kind = (uint8_t)(1 + wt_rand(state) % 2);
		if (m->request.kind == VSR_REQUEST_OP) {
			m->request.session |= 1;
			m->request.request |= 1;
		}
		m->request.op_len = wt_len(state, big);
		m->request.op = m->request.op_len ? wt_bytes(state, a, m->request.op_len) : NULL;
		break;
	case VSR_MSG_REPLY:
		m->status = (uint8_t)(wt_rand(state) % (VSR_REPLY_BUSY + 1));
		/* fall through */
	case VSR_MSG_CHECKPOINT_CHUNK:
		m->body_len = wt_len(state, big);
		m->body = m->body_len ? wt_bytes(state, a, m->body_len) : NULL;
		break;
	case VSR_MSG_DO_VIEW_CHANGE:
	case VSR_MSG_START_VIEW:
	case VSR_MSG_NEW_STATE:
	case VSR_MSG_PREPARE: {
		if (m->log_view > m->view) {
			uint64_t t = m->log_view;
			m->log_view = m->view;
			m->view = t;
		}
		if (m->commit > m->op) {
			uint64_t t = m->commit;
			m->commit = m->op;
			m->op = t;
		}
		uint32_t count = type == VSR_MSG_PREPARE ? 1 : (uint32_t)(wt_rand(state) % 9);
		vsr_entry *e = wt_arena_alloc(a, count * sizeof(vsr_entry));
		uint64_t op = 1 + wt_rand(state) % 1000000;
		uint64_t parent = wt_rand(state);
		for (uint32_t i = 0; i < count; i++) {
			e[i].op = op + i;
			e[i].parent = parent;
			e[i].checksum = wt_rand_u64(state);
			parent = e[i].checksum;
			e[i].view = m->view ? wt_rand(state) % (m->view + 1) : 0;
			e[i].timestamp = wt_rand_u64(state);
			e[i].request_count = (uint32_t)(wt_rand(state) % 5);
			e[i].body = wt_batch(state, a, e[i].request_count, &e[i].body_len);
		}
		m->entry_count = count;
		m->entries = count ? e : NULL;
		break;
	}
	default:
		break;
	}
}

int wt_gen_host(uint64_t *state, uint8_t type, vsr_buf *out,
		vsr_wire_decoded *expect)
{
	vsr_wire_decoded_init(expect);
	expect->type = type;
	switch (type) {
	case VSR_WIRE_HELLO:
		expect->hello.role = (uint8_t)(wt_rand(state) % VSR_WIRE_ROLE_COUNT);
		expect->hello.replica = expect->hello.role == VSR_WIRE_ROLE_REPLICA
						? (uint8_t)(wt_rand(state) % WT_REPLICAS)
						: 0;
		expect->hello.instance = wt_rand_u64(state);
		expect->hello.has_nonce = wt_rand(state) % 2 == 0;
		if (expect->hello.has_nonce)
			for (size_t i = 0; i < VSR_WIRE_NONCE_SIZE; i++)
				expect->hello.nonce[i] = (uint8_t)wt_rand(state);
		/* A replica's carries a configuration fingerprint (field 5). */
		if (expect->hello.role == VSR_WIRE_ROLE_REPLICA) {
			expect->hello.config_count =
				(uint8_t)(wt_rand(state) % (VSR_WIRE_CONFIG_PARTS_MAX + 1));
			for (uint8_t i = 0; i < expect->hello.config_count; i++)
				expect->hello.config[i] = wt_rand_u64(state);
		}
		return vsr_wire_encode_hello(out, WT_CLUSTER, &expect->hello);
	case VSR_WIRE_AUTH:
		for (size_t i = 0; i < VSR_WIRE_PROOF_SIZE; i++)
			expect->auth.proof[i] = (uint8_t)wt_rand(state);
		return vsr_wire_encode_auth(out, WT_CLUSTER, &expect->auth);
	case VSR_WIRE_PING:
	case VSR_WIRE_PONG:
		expect->ping.nonce = wt_rand_u64(state);
		expect->ping.time_ns = wt_rand_u64(state);
		return vsr_wire_encode_ping(out, WT_CLUSTER, type, &expect->ping);
	case VSR_WIRE_STATUS_REQUEST:
		expect->status_request.nonce = wt_rand_u64(state);
		return vsr_wire_encode_status_request(out, WT_CLUSTER,
						      &expect->status_request);
	case VSR_WIRE_STATUS_REPLY: {
		vsr_wire_status *s = &expect->status;
		s->nonce = wt_rand_u64(state);
		s->replica_count = (uint8_t)(1 + wt_rand(state) % WT_REPLICAS);
		s->replica = (uint8_t)(wt_rand(state) % s->replica_count);
		s->primary = (uint8_t)(wt_rand(state) % s->replica_count);
		s->status = (uint8_t)(wt_rand(state) % VSR_STATUS_COUNT);
		s->view = wt_rand_u64(state);
		s->log_view = wt_rand_u64(state);
		s->op = wt_rand_u64(state);
		s->commit = wt_rand_u64(state);
		s->executed = wt_rand_u64(state);
		s->checkpoint_op = wt_rand_u64(state);
		s->digest = wt_rand_u64(state);
		s->pipeline = (uint32_t)wt_rand_u64(state);
		s->queued = (uint32_t)wt_rand_u64(state);
		s->sessions = (uint32_t)wt_rand_u64(state);
		s->connections = (uint32_t)wt_rand_u64(state);
		s->uptime_ms = wt_rand_u64(state);
		s->ops_committed = wt_rand_u64(state);
		s->view_changes = wt_rand_u64(state);
		s->messages_dropped = wt_rand_u64(state);
		s->frames_dropped = wt_rand_u64(state);
		s->state_transfers = wt_rand_u64(state);
		s->checkpoints = wt_rand_u64(state);
		s->requests_deduplicated = wt_rand_u64(state);
		s->sessions_evicted = wt_rand_u64(state);
		s->step_age_ms = wt_rand_u64(state);
		s->progress_age_ms = wt_rand_u64(state);
		return vsr_wire_encode_status(out, WT_CLUSTER, s);
	}
	case VSR_WIRE_CLOSE: {
		vsr_wire_close *c = &expect->close;
		c->reason = (uint8_t)(wt_rand(state) % VSR_WIRE_REASON_COUNT);
		size_t len = wt_rand(state) % 3 == 0 ? VSR_WIRE_REASON_MAX
						      : wt_rand(state) % 40;
		for (size_t i = 0; i < len; i++)
			c->text[i] = (char)(' ' + wt_rand(state) % 95);
		c->text[len] = '\0';
		return vsr_wire_encode_close(out, WT_CLUSTER, c->reason, c->text);
	}
	default:
		return -VSR_WIRE_ETYPE;
	}
}

#define WT_FIELD(name)                                                      \
	do {                                                                \
		if (a->name != b->name) {                                   \
			snprintf(why, why_len, "%s: %llu != %llu", #name,   \
				 (unsigned long long)a->name,               \
				 (unsigned long long)b->name);              \
			return false;                                       \
		}                                                           \
	} while (0)

static bool wt_bytes_equal(const uint8_t *x, uint32_t xl, const uint8_t *y,
			   uint32_t yl)
{
	return xl == yl && (xl == 0 || memcmp(x, y, xl) == 0);
}

bool wt_message_equal(const vsr_message *a, const vsr_message *b, char *why,
		      size_t why_len)
{
	WT_FIELD(type);
	WT_FIELD(replica);
	WT_FIELD(status);
	WT_FIELD(epoch);
	WT_FIELD(view);
	WT_FIELD(log_view);
	WT_FIELD(op);
	WT_FIELD(commit);
	WT_FIELD(checksum);
	WT_FIELD(nonce);
	WT_FIELD(timestamp);
	WT_FIELD(request.session);
	WT_FIELD(request.request);
	WT_FIELD(request.kind);
	WT_FIELD(request.op_len);
	WT_FIELD(reply_op);
	WT_FIELD(body_len);
	WT_FIELD(entry_count);
	WT_FIELD(checkpoint_op);
	WT_FIELD(checkpoint_size);
	WT_FIELD(offset);
	WT_FIELD(checkpoint_digest);
	if (!wt_bytes_equal(a->request.op, a->request.op_len, b->request.op,
			    b->request.op_len)) {
		snprintf(why, why_len, "request.op bytes differ");
		return false;
	}
	if (!wt_bytes_equal(a->body, a->body_len, b->body, b->body_len)) {
		snprintf(why, why_len, "body bytes differ");
		return false;
	}
	for (uint32_t i = 0; i < a->entry_count; i++) {
		const vsr_entry *x = &a->entries[i], *y = &b->entries[i];
		if (x->checksum != y->checksum || x->parent != y->parent ||
		    x->op != y->op || x->view != y->view ||
		    x->timestamp != y->timestamp ||
		    x->request_count != y->request_count ||
		    !wt_bytes_equal(x->body, x->body_len, y->body, y->body_len)) {
			snprintf(why, why_len, "entries[%u] differ", i);
			return false;
		}
	}
	return true;
}

bool wt_host_equal(const vsr_wire_decoded *a, const vsr_wire_decoded *b,
		   char *why, size_t why_len)
{
	WT_FIELD(type);
	switch (a->type) {
	case VSR_WIRE_HELLO:
		WT_FIELD(hello.role);
		WT_FIELD(hello.replica);
		WT_FIELD(hello.instance);
		WT_FIELD(hello.has_nonce);
		if (a->hello.has_nonce && memcmp(a->hello.nonce, b->hello.nonce, VSR_WIRE_NONCE_SIZE)) {
			snprintf(why, why_len, "hello.nonce differs");
			return false;
		}
		WT_FIELD(hello.history);
		WT_FIELD(hello.config_count);
		if (memcmp(a->hello.config, b->hello.config,
			   sizeof(uint64_t) * a->hello.config_count) != 0) {
			snprintf(why, why_len, "hello.config differs");
			return false;
		}
		return true;
	case VSR_WIRE_AUTH:
		if (memcmp(a->auth.proof, b->auth.proof, VSR_WIRE_PROOF_SIZE) != 0) {
			snprintf(why, why_len, "auth.proof differs");
			return false;
		}
		return true;
	case VSR_WIRE_PING:
	case VSR_WIRE_PONG:
		WT_FIELD(ping.nonce);
		WT_FIELD(ping.time_ns);
		return true;
	case VSR_WIRE_STATUS_REQUEST:
		WT_FIELD(status_request.nonce);
		return true;
	case VSR_WIRE_STATUS_REPLY:
		WT_FIELD(status.nonce);
		WT_FIELD(status.replica);
		WT_FIELD(status.replica_count);
		WT_FIELD(status.status);
		WT_FIELD(status.primary);
		WT_FIELD(status.view);
		WT_FIELD(status.log_view);
		WT_FIELD(status.op);
		WT_FIELD(status.commit);
		WT_FIELD(status.executed);
		WT_FIELD(status.checkpoint_op);
		WT_FIELD(status.digest);
		WT_FIELD(status.pipeline);
		WT_FIELD(status.queued);
		WT_FIELD(status.sessions);
		WT_FIELD(status.connections);
		WT_FIELD(status.uptime_ms);
		WT_FIELD(status.ops_committed);
		WT_FIELD(status.view_changes);
		WT_FIELD(status.messages_dropped);
		WT_FIELD(status.frames_dropped);
		WT_FIELD(status.state_transfers);
		WT_FIELD(status.checkpoints);
		WT_FIELD(status.requests_deduplicated);
		WT_FIELD(status.sessions_evicted);
		WT_FIELD(status.step_age_ms);
		WT_FIELD(status.progress_age_ms);
		return true;
	case VSR_WIRE_CLOSE:
		WT_FIELD(close.reason);
		if (strcmp(a->close.text, b->close.text) != 0) {
			snprintf(why, why_len, "close.text differs");
			return false;
		}
		return true;
	default:
		snprintf(why, why_len, "not a host type: %u", a->type);
		return false;
	}
}

int wt_encode_decoded(const vsr_wire_decoded *d, vsr_buf *out)
{
	uint64_t cluster = d->header.cluster;
	switch (d->type) {
	case VSR_WIRE_HELLO:
		return vsr_wire_encode_hello(out, cluster, &d->hello);
	case VSR_WIRE_PING:
	case VSR_WIRE_PONG:
		return vsr_wire_encode_ping(out, cluster, d->type, &d->ping);
	case VSR_WIRE_STATUS_REQUEST:
		return vsr_wire_encode_status_request(out, cluster, &d->status_request);
	case VSR_WIRE_STATUS_REPLY:
		return vsr_wire_encode_status(out, cluster, &d->status);
	case VSR_WIRE_CLOSE:
		return vsr_wire_encode_close(out, cluster, d->close.reason, d->close.text);
	case VSR_WIRE_AUTH:
		return vsr_wire_encode_auth(out, cluster, &d->auth);
	default:
		return vsr_wire_encode_message(out, cluster, &d->message);
	}
}

static void wt_append(vsr_buf *b, const void *p, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *n = realloc(b->data, cap);
		if (n == NULL) {
			fprintf(stderr, "wt_append: out of memory\n");
			abort();
		}
		b->data = n;
		b->cap = cap;
	}
	if (len)
		memcpy(b->data + b->len, p, len);
	b->len += len;
}

void wt_fix_header(uint8_t *h)
{
	uint64_t c = XXH3_64bits(h, 32);
	for (int i = 0; i < 8; i++)
		h[32 + i] = (uint8_t)(c >> (8 * i));
}

void wt_frame_raw(vsr_buf *out, uint8_t type, uint64_t cluster,
		  const uint8_t *body, uint32_t body_len)
{
	uint8_t h[VSR_WIRE_HEADER_SIZE] = {0x56, 0x53, 0x52, 0x57, VSR_WIRE_VERSION, 0, type, 0};
	wt_put(h + 8, body_len, 4);
	wt_put(h + 16, cluster, 8);
	wt_put(h + 24, XXH3_64bits(body, body_len), 8);
	wt_fix_header(h);
	wt_append(out, h, sizeof(h));
	wt_append(out, body, body_len);
}

void wt_config(vsr_wire_config *c)
{
	vsr_wire_config_default(c, WT_CLUSTER, WT_REPLICAS);
}
