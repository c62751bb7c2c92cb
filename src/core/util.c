/* util.c - names, errors, buffers, checksums, batches, configuration defaults. */
#include <stdio.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "replica.h"

const char *vsr_strerror(int code)
{
	switch (code) {
#define VSR_ERROR_CASE(name, value, text) \
	case value:                       \
		return text;
		VSR_ERRORS(VSR_ERROR_CASE)
#undef VSR_ERROR_CASE
	}
	return "unknown error";
}

const char *vsr_read_mode_name(unsigned mode)
{
	static const char *const names[VSR_READ_MODE_COUNT] = {"linearizable", "lease", "stale"};
	return mode < VSR_READ_MODE_COUNT ? names[mode] : "unknown";
}

const char *vsr_status_name(enum vsr_status s)
{
	switch (s) {
	case VSR_STATUS_NORMAL: return "normal";
	case VSR_STATUS_VIEW_CHANGE: return "view_change";
	case VSR_STATUS_RECOVERING: return "recovering";
	case VSR_STATUS_STATE_TRANSFER: return "state_transfer";
	default: return "?";
	}
}

const char *vsr_guard_name(enum vsr_guard g)
{
	static const char *const names[VSR_GUARD_COUNT] = {
		[VSR_GUARD_VOTE_OLD_VIEW] = "vote_old_view",
		[VSR_GUARD_DVC_MALFORMED] = "dvc_malformed",
		[VSR_GUARD_DVC_BEST_BELOW_COMMIT] = "dvc_best_below_commit",
		[VSR_GUARD_DVC_NO_PREFIX] = "dvc_no_prefix",
		[VSR_GUARD_SV_OLD_VIEW] = "start_view_old_view",
		[VSR_GUARD_SV_BELOW_COMMIT] = "start_view_below_commit",
		[VSR_GUARD_SV_SHORTER_OWN_LOG] = "start_view_shorter_own_log",
		[VSR_GUARD_PRIMARY_MSG_OLD_VIEW] = "prepare_commit_old_view",
		[VSR_GUARD_PREPARE_OK_MISMATCH] = "prepare_ok_mismatch",
		[VSR_GUARD_REC_STALE_NONCE] = "recovery_response_stale_nonce",
		[VSR_GUARD_REC_FORGET_ANSWER] = "recovery_forget_answer",
		[VSR_GUARD_NS_STALE_NONCE] = "new_state_stale_nonce",
		[VSR_GUARD_NS_OLD_VIEW] = "new_state_old_view",
		[VSR_GUARD_NS_BELOW_COMMIT] = "new_state_below_commit",
		[VSR_GUARD_NS_SHORTER_OWN_LOG] = "new_state_shorter_own_log",
		[VSR_GUARD_CHUNK_STALE] = "chunk_stale",
		[VSR_GUARD_CHUNK_PASSED] = "chunk_checkpoint_passed",
		[VSR_GUARD_RESTORE_FAILED] = "restore_failed",
		[VSR_GUARD_GET_STATE_NOT_PRIMARY] = "get_state_not_primary",
	};
	return (unsigned)g < VSR_GUARD_COUNT && names[g] ? names[g] : "?";
}

const char *vsr_message_type_name(enum vsr_message_type t)
{
	static const char *names[VSR_MSG_TYPE_COUNT] = {
		"none", "request", "reply", "prepare", "prepare_ok", "commit",
		"start_view_change", "do_view_change", "start_view", "get_state",
		"new_state", "get_checkpoint", "checkpoint_chunk", "recovery",
		"recovery_response", "primary_lost",
	};
	return (unsigned)t < VSR_MSG_TYPE_COUNT ? names[t] : "?";
}

/* Aborts on allocation failure: the core allocates at init and for log
 * entries bounded by the configuration; running out there is not an
 * operating error the protocol can recover from. */
void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) abort();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL) abort();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) abort();
	return q;
}

int vsr_buf_append(vsr_buf *b, const void *data, size_t len)
{
	/* len + b->len must not wrap, nor the doubling below. */
	if (len > SIZE_MAX / 2 - b->len) return VSR_ENOMEM;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + len) cap *= 2;
		uint8_t *p = realloc(b->data, cap);
		if (p == NULL) return VSR_ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	if (len) memcpy(b->data + b->len, data, len);
	b->len += len;
	return VSR_OK;
}

void vsr_buf_reset(vsr_buf *b) { b->len = 0; }

void vsr_buf_free(vsr_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* splitmix64: small, fast, and good enough for jitter and nonces. */
uint64_t prng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t prng_below(uint64_t *state, uint64_t bound)
{
	assert(bound > 0);
	return prng_next(state) % bound;
}

uint32_t popcount32(uint32_t x)
{
	uint32_t c = 0;
	for (; x; x &= x - 1) c++;
	return c;
}

uint64_t hash64(uint64_t seed, const void *data, size_t len)
{
	return XXH3_64bits_withSeed(data, len, seed);
}

uint64_t vsr_root_checksum(uint64_t cluster)
{
	const char root[] = "vsrhost-root";
	return hash64(cluster, root, sizeof root);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint64_t vsr_entry_checksum(const vsr_entry *e)
{
	/* The header fields in a fixed little-endian layout, then the body. */
	uint8_t h[48];
	put64(h + 0, e->parent);
	put64(h + 8, e->op);
	put64(h + 16, e->view);
	put64(h + 24, e->timestamp);
	put64(h + 32, e->request_count);
	put64(h + 40, e->body_len);
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, h, sizeof h);
	if (e->body_len) XXH3_64bits_update(&st, e->body, e->body_len);
	return XXH3_64bits_digest(&st);
}

void vsr_batch_iter_init(vsr_batch_iter *it, const vsr_entry *e)
{
	it->p = e->body;
	/* No arithmetic on a NULL body (an empty entry). */
	it->end = e->body != NULL ? e->body + e->body_len : NULL;
}

bool vsr_batch_next(vsr_batch_iter *it, vsr_request *out)
{
	if (it->p == NULL || (size_t)(it->end - it->p) < VSR_BATCH_REQUEST_HEADER_SIZE)
		return false;
	const uint8_t *p = it->p;
	out->session = get64(p);
	out->request = get64(p + 8);
	out->kind = p[16];
	out->op_len = get32(p + 17);
	p += VSR_BATCH_REQUEST_HEADER_SIZE;
	if ((size_t)(it->end - p) < out->op_len) return false;
	out->op = p;
	it->p = p + out->op_len;
	return true;
}

bool vsr_batch_valid(const uint8_t *body, uint32_t len, uint32_t count)
{
	vsr_entry e = {.body = body, .body_len = len};
	vsr_batch_iter it;
	vsr_request req;
	uint32_t n = 0;
	vsr_batch_iter_init(&it, &e);
	while (vsr_batch_next(&it, &req)) {
		if (req.kind != VSR_REQUEST_REGISTER && req.kind != VSR_REQUEST_OP)
			return false;
		if (req.op_len > VSR_OP_BYTES_MAX) return false;
		n++;
	}
	return it.p == it.end && n == count;
}

void vsr_config_default(vsr_config *c, uint64_t cluster, uint8_t replica_count,
			uint8_t replica)
{
	memset(c, 0, sizeof *c);
	c->cluster = cluster;
	c->replica_count = replica_count;
	c->replica = replica;
	c->pipeline_max = 16;
	c->batch_requests_max = 256;
	c->batch_bytes_max = 512 * 1024;
	c->request_queue_max = 4096;
	c->request_queue_bytes_max = 64u << 20;
	c->clients_max = 1024;
	c->checkpoint_interval = 4096;
	c->log_max = 16384;
	c->message_entries_max = 256;
	c->chunk_bytes_max = 1u << 20;
	c->message_bytes_max = 16u << 20;
	c->seed = cluster * 1000003u + replica;
	c->timeouts.heartbeat_ticks = 5;
	c->timeouts.prepare_retry_ticks = 10;
	c->timeouts.primary_ticks = 30;
	c->timeouts.view_change_ticks = 30;
	c->timeouts.recovery_retry_ticks = 10;
	c->timeouts.jitter_ticks = 10;
}

uint32_t vsr_reply_bytes_max(const vsr_config *c)
{
	uint32_t room = c->message_bytes_max > VSR_MESSAGE_WIRE_OVERHEAD
				? c->message_bytes_max - VSR_MESSAGE_WIRE_OVERHEAD
				: 0;
	return room < VSR_REPLY_BYTES_MAX ? room : VSR_REPLY_BYTES_MAX;
}

const char *vsr_config_invalid(const vsr_config *c)
{
	if (c->replica_count < 1 || c->replica_count > VSR_REPLICAS_MAX)
		return "replica_count must be 1..VSR_REPLICAS_MAX";
	if (c->replica >= c->replica_count) return "replica must be below replica_count";
	if (c->pipeline_max < 1 || c->pipeline_max > VSR_PIPELINE_MAX)
		return "pipeline_max must be 1..VSR_PIPELINE_MAX";
	if (c->batch_requests_max < 1 || c->batch_requests_max > VSR_BATCH_REQUESTS_MAX)
		return "batch_requests_max must be 1..VSR_BATCH_REQUESTS_MAX";
	if (c->batch_bytes_max < 64 || c->batch_bytes_max > VSR_BATCH_BYTES_MAX)
		return "batch_bytes_max must be 64..VSR_BATCH_BYTES_MAX";
	if (c->request_queue_max < 1 || c->request_queue_max > 1u << 20)
		return "request_queue_max must be 1..1048576";
	if (c->request_queue_bytes_max < c->batch_bytes_max)
		return "request_queue_bytes_max must hold at least one full batch";
	if (c->clients_max < 1 || c->clients_max > VSR_CLIENTS_MAX)
		return "clients_max must be 1..VSR_CLIENTS_MAX";
	if (c->checkpoint_interval < 4) return "checkpoint_interval must be at least 4";
	if (c->log_max == 0 || (c->log_max & (c->log_max - 1)) != 0 || c->log_max > VSR_LOG_MAX)
		return "log_max must be a power of two up to VSR_LOG_MAX";
	/* The log holds a checkpoint interval, a pipeline of uncommitted ops and
	 * the slack a lagging backup may hold beyond its commit. */
	if ((uint64_t)c->log_max < 2ull * c->checkpoint_interval + 4ull * c->pipeline_max)
		return "log_max must be at least 2 * checkpoint_interval + 4 * pipeline_max";
	if (c->message_entries_max < 2 * c->pipeline_max)
		return "message_entries_max must be at least 2 * pipeline_max";
	if (c->chunk_bytes_max < 64 || c->chunk_bytes_max > VSR_CHUNK_BYTES_MAX)
		return "chunk_bytes_max must be 64..VSR_CHUNK_BYTES_MAX";
	if (c->message_bytes_max > VSR_MESSAGE_BYTES_MAX)
		return "message_bytes_max must be at most VSR_MESSAGE_BYTES_MAX";
	/* A DO_VIEW_CHANGE carries the whole uncommitted suffix: a full
	 * pipeline of full batches must fit one message, and so must a chunk. */
	if ((uint64_t)c->pipeline_max * (c->batch_bytes_max + VSR_ENTRY_WIRE_OVERHEAD) +
		    VSR_ENTRY_WIRE_OVERHEAD >
	    c->message_bytes_max)
		return "message_bytes_max must hold pipeline_max full batches";
	if ((uint64_t)c->chunk_bytes_max + VSR_ENTRY_WIRE_OVERHEAD > c->message_bytes_max)
		return "message_bytes_max must hold one checkpoint chunk";
	if (vsr_reply_bytes_max(c) < 256)
		return "message_bytes_max must hold a reply of at least 256 bytes";
	const vsr_timeouts *t = &c->timeouts;
	if (c->lease_drift_ppm >= 1000000u) return "lease_drift_ppm must be below 1000000";
	if (c->lease_margin_ticks >= t->primary_ticks)
		return "lease_margin_ticks must be below primary_ticks";
	if (!t->heartbeat_ticks || !t->prepare_retry_ticks || !t->primary_ticks ||
	    !t->view_change_ticks || !t->recovery_retry_ticks)
		return "timeouts must be positive";
	if (t->primary_ticks <= t->heartbeat_ticks)
		return "primary_ticks must exceed heartbeat_ticks";
	if (c->genesis_history == 0)
		return "genesis_history must be a random non-zero value drawn by the host";
#ifndef VSR_FAULT_INJECTION
	if (c->bugs) return "bugs are only available in the fault-injection build";
#endif
	return NULL;
}

const char *vsr_message_invalid(const vsr_message *m, uint32_t replica_count)
{
	if (m->type == VSR_MSG_NONE || m->type >= VSR_MSG_TYPE_COUNT) return "unknown type";
	bool client = m->type == VSR_MSG_REQUEST || m->type == VSR_MSG_REPLY;
	if (!client && m->replica >= replica_count) return "sender index out of range";
	if (m->entry_count && m->entries == NULL) return "entries missing";
	if (m->view > VSR_VIEW_MAX || m->log_view > VSR_VIEW_MAX) return "view out of range";
	if (m->op > VSR_OP_MAX || m->commit > VSR_OP_MAX || m->checkpoint_op > VSR_OP_MAX)
		return "op out of range";
	if (m->body_len && m->body == NULL) return "body missing";
	switch (m->type) {
	case VSR_MSG_REQUEST:
		if (m->request.kind != VSR_REQUEST_REGISTER && m->request.kind != VSR_REQUEST_OP &&
		    m->request.kind != VSR_REQUEST_QUERY)
			return "unknown request kind";
		if (m->read_mode >= VSR_READ_MODE_COUNT) return "unknown read mode";
		if (m->read_mode != 0 && m->request.kind != VSR_REQUEST_QUERY)
			return "a read mode on a request that is not a query";
		if (m->request.op_len > VSR_OP_BYTES_MAX) return "operation too large";
		if (m->request.op_len && m->request.op == NULL) return "operation missing";
		if (m->request.kind == VSR_REQUEST_OP && m->request.session == 0)
			return "operation without a session";
		if (m->request.kind == VSR_REQUEST_OP && m->request.request == 0)
			return "request numbers start at 1";
		break;
	case VSR_MSG_PREPARE:
		if (m->entry_count != 1) return "prepare carries one entry";
		break;
	case VSR_MSG_DO_VIEW_CHANGE:
		if (m->log_view > m->view) return "log_view above view";
		if (m->commit > m->op) return "commit above op";
		break;
	case VSR_MSG_START_VIEW:
	case VSR_MSG_NEW_STATE:
		if (m->commit > m->op) return "commit above op";
		break;
	default:
		break;
	}
	for (uint32_t i = 0; i < m->entry_count; i++) {
		const vsr_entry *e = &m->entries[i];
		if (e->op == 0 || e->op > VSR_OP_MAX) return "entry op out of range";
		if (i > 0 && e->op != m->entries[i - 1].op + 1) return "entries not consecutive";
		if (i > 0 && e->parent != m->entries[i - 1].checksum) return "entries not chained";
		if (e->view > m->view) return "entry from a future view";
		if (e->body_len > VSR_BATCH_BYTES_MAX) return "entry body too large";
		if (e->body_len && e->body == NULL) return "entry body missing";
		if (e->request_count > VSR_BATCH_REQUESTS_MAX) return "too many requests in entry";
	}
	return NULL;
}
