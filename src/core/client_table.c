/* client_table.c - client sessions and at-most-once execution (protocol.md 9).
 *
 * Sessions are created by a committed REGISTER request (the session id is
 * derived from the op and position, so it is the same on every replica) and
 * the table is only ever changed at commit, never at prepare (hole 8.3).
 * When the table is full the dedup policy (or the default: oldest last
 * commit, then lowest id) picks the session to evict, deterministically. */
#include <stdio.h>

#include "replica.h"

void ct_init(client_table *t, uint32_t max)
{
	t->items = xcalloc(max, sizeof *t->items);
	t->count = 0;
	t->max = max;
}

static uint64_t session_hash(const ct_session *s)
{
	uint64_t f[7] = {s->session, s->nonce, s->request, s->last_op,
			 s->registered_op, s->reply_status, s->reply_timestamp};
	uint64_t h = hash64(0x5E551045ull, f, sizeof f);
	return s->reply_len ? hash64(h, s->reply, s->reply_len) : h;
}

/* Every change of a session's replicated fields goes between these two, so
 * the table digest stays the XOR of the current hashes. */
static void rehash_begin(client_table *t, ct_session *s) { t->digest ^= s->hash; }

static void rehash_end(client_table *t, ct_session *s)
{
	s->hash = session_hash(s);
	t->digest ^= s->hash;
}

static void session_clear(ct_session *s)
{
	free(s->reply);
	memset(s, 0, sizeof *s);
}

void ct_free(client_table *t)
{
	for (uint32_t i = 0; i < t->count; i++) session_clear(&t->items[i]);
	free(t->items);
	t->items = NULL;
	t->count = 0;
}

/* Index of the first session >= id. */
static uint32_t lower_bound(const client_table *t, uint64_t id)
{
	uint32_t lo = 0, hi = t->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t->items[mid].session < id) lo = mid + 1;
		else hi = mid;
	}
	return lo;
}

ct_session *ct_find(client_table *t, uint64_t session)
{
	uint32_t i = lower_bound(t, session);
	return i < t->count && t->items[i].session == session ? &t->items[i] : NULL;
}

ct_session *ct_find_nonce(client_table *t, uint64_t nonce)
{
	for (uint32_t i = 0; i < t->count; i++)
		if (t->items[i].nonce == nonce) return &t->items[i];
	return NULL;
}

static void remove_at(client_table *t, uint32_t i)
{
	assert(i < t->count);
	t->digest ^= t->items[i].hash;
	session_clear(&t->items[i]);
	memmove(&t->items[i], &t->items[i + 1], (t->count - i - 1) * sizeof *t->items);
	t->count--;
	memset(&t->items[t->count], 0, sizeof *t->items);
}

static ct_session *insert(client_table *t, uint64_t session)
{
	assert(t->count < t->max);
	uint32_t i = lower_bound(t, session);
	assert(i == t->count || t->items[i].session != session);
	memmove(&t->items[i + 1], &t->items[i], (t->count - i) * sizeof *t->items);
	t->count++;
	memset(&t->items[i], 0, sizeof *t->items);
	t->items[i].session = session;
	return &t->items[i];
}

static uint32_t default_victim(const vsr_session_info *s, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (s[i].last_op < s[best].last_op) best = i; /* ties: lowest id wins */
	return best;
}

static void evict_one(vsr_replica *r)
{
	client_table *t = &r->clients;
	vsr_session_info *info = xcalloc(t->count, sizeof *info);
	for (uint32_t i = 0; i < t->count; i++) {
		info[i].session = t->items[i].session;
		info[i].request = t->items[i].request;
		info[i].last_op = t->items[i].last_op;
		info[i].registered_op = t->items[i].registered_op;
	}
	uint32_t victim = r->sm.evict ? r->sm.evict(r->sm.ctx, info, t->count)
				      : default_victim(info, t->count);
	/* A policy that answers out of range must not break the replica; every
	 * replica makes the same correction, so the choice stays deterministic. */
	if (victim >= t->count) victim = default_victim(info, t->count);
	free(info);
	remove_at(t, victim);
	r->stats.sessions_evicted++;
}

static void store_reply(ct_session *s, uint8_t status, const uint8_t *data, size_t len,
			uint64_t timestamp)
{
	free(s->reply);
	s->reply = NULL;
	s->reply_len = (uint32_t)len;
	if (len) {
		s->reply = xmalloc(len);
		memcpy(s->reply, data, len);
	}
	s->reply_status = status;
	s->reply_timestamp = timestamp;
}

void ct_execute_request(vsr_replica *r, const vsr_entry *e, const vsr_request *req,
			uint32_t index, uint8_t *status_out, uint64_t *session_out)
{
	client_table *t = &r->clients;
	vsr_buf *reply = &r->reply_buf;
	vsr_buf_reset(reply);
	*session_out = req->session;

	if (req->kind == VSR_REQUEST_REGISTER) {
		/* A REGISTER retried into two entries opens one session only. */
		ct_session *s = ct_find_nonce(t, req->request);
		if (s != NULL) {
			*session_out = s->session;
			*status_out = VSR_REPLY_OK;
			r->stats.requests_deduplicated++;
			return;
		}
		if (t->count == t->max) evict_one(r);
		/* Unique and equal everywhere: op and position in the batch. */
		uint64_t id = ct_session_id(e->op, index);
		s = insert(t, id);
		s->nonce = req->request;
		s->registered_op = e->op;
		s->last_op = e->op;
		s->request = 0;
		store_reply(s, VSR_REPLY_OK, NULL, 0, e->timestamp);
		rehash_end(t, s);
		*session_out = id;
		*status_out = VSR_REPLY_OK;
		return;
	}

	ct_session *s = ct_find(t, req->session);
	if (s == NULL) {
		*status_out = VSR_REPLY_EVICTED;
		return;
	}
	if (req->request <= s->request) {
		/* Already executed: never again (at-most-once). The same request
		 * gets the stored reply; an older one only a refusal. */
		r->stats.requests_deduplicated++;
		if (req->request == s->request) {
			*status_out = s->reply_status;
			vsr_buf_append(reply, s->reply, s->reply_len);
		} else {
			/* The client moved past this request long ago: no reply. */
			*status_out = CT_NO_REPLY;
		}
		return;
	}
	vsr_apply_ctx ctx = {
		.op = e->op,
		.timestamp = e->timestamp,
		.session = req->session,
		.request = req->request,
		.seed = e->checksum ^ (0x9E3779B97F4A7C15ull * (index + 1)),
		.reply_max = vsr_reply_bytes_max(&r->cfg),
	};
	if (s->pending_request == req->request) {
		s->pending_request = 0; /* no longer in flight at this primary */
		s->pending_op = 0;
	}
	int status = r->sm.apply(r->sm.ctx, &ctx, req->op, req->op_len, reply);
	if (status != VSR_REPLY_OK && !vsr_reply_is_error((unsigned)status)) status = VSR_REPLY_ERROR;
	if (reply->len > ctx.reply_max) {
		/* Bounded where it is produced: a reply no message could carry
		 * and no checkpoint could hold never enters the table. The same
		 * on every replica (the limit is part of the configuration). */
		char text[160];
		int n = snprintf(text, sizeof text,
				 "reply of %zu bytes exceeds the cluster's reply limit of %u bytes "
				 "(limits.message_bytes)",
				 reply->len, ctx.reply_max);
		vsr_buf_reset(reply);
		vsr_buf_append(reply, text, (size_t)n);
		status = VSR_REPLY_ERROR;
		r->stats.replies_too_large++;
	}
	rehash_begin(t, s);
	s->request = req->request;
	s->last_op = e->op;
	store_reply(s, (uint8_t)status, reply->data, reply->len, e->timestamp);
	rehash_end(t, s);
	*status_out = (uint8_t)status;
}

uint64_t ct_digest(const client_table *t) { return t->digest ^ t->count; }

static int put_u64(vsr_buf *b, uint64_t v)
{
	uint8_t p[8];
	for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
	return vsr_buf_append(b, p, 8);
}

static bool get_u64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	if (end - *p < 8) return false;
	*v = 0;
	for (int i = 0; i < 8; i++) *v |= (uint64_t)(*p)[i] << (8 * i);
	*p += 8;
	return true;
}

/* Encoding: u64 count, then per session u64 session, nonce, request,
 * last_op, registered_op, reply_timestamp, reply_status, reply_len, bytes. */
int ct_encode(const client_table *t, vsr_buf *out)
{
	int rc = put_u64(out, t->count);
	for (uint32_t i = 0; rc == VSR_OK && i < t->count; i++) {
		const ct_session *s = &t->items[i];
		uint64_t f[8] = {s->session, s->nonce, s->request, s->last_op,
				 s->registered_op, s->reply_timestamp, s->reply_status,
				 s->reply_len};
		for (int k = 0; rc == VSR_OK && k < 8; k++) rc = put_u64(out, f[k]);
		if (rc == VSR_OK) rc = vsr_buf_append(out, s->reply, s->reply_len);
	}
	return rc;
}

long ct_decode(client_table *t, const uint8_t *data, size_t len)
{
	const uint8_t *p = data, *end = data + len;
	uint64_t count;
	for (uint32_t i = 0; i < t->count; i++) session_clear(&t->items[i]);
	t->count = 0;
	t->digest = 0;
	if (!get_u64(&p, end, &count) || count > t->max) return -1;
	for (uint64_t i = 0; i < count; i++) {
		uint64_t f[8];
		for (int k = 0; k < 8; k++)
			if (!get_u64(&p, end, &f[k])) return -1;
		if (f[7] > VSR_REPLY_BYTES_MAX || (uint64_t)(end - p) < f[7]) return -1;
		if (i > 0 && f[0] <= t->items[i - 1].session) return -1;
		ct_session *s = &t->items[t->count++];
		s->session = f[0];
		s->nonce = f[1];
		s->request = f[2];
		s->last_op = f[3];
		s->registered_op = f[4];
		store_reply(s, (uint8_t)f[6], p, f[7], f[5]);
		rehash_end(t, s);
		p += f[7];
	}
	return (long)(p - data);
}
