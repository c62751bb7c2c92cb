/* workload.c - concurrent kv clients on one libuv thread, recording every operation.
 *
 * Each client runs one call at a time: a read, a write of a value never
 * written before, or a cas from the latest value seen on that key. The key
 * comes from a small set of live keys; a key is retired after ops_per_key
 * operations and replaced by a new one, so each key's history stays short
 * enough for the checker (the history of many short keys is checked key by
 * key). Every call is recorded with its call and return time and an outcome:
 *   ok    the client library said DONE, or the state machine answered with a
 *         definite refusal that is itself an observation (get of a missing key
 *         = read of nil; cas refused with 20 or 22 = "the value was not from");
 *   fail  the library said FAILED (certainly not applied), or another refusal;
 *   info  the library said UNKNOWN: it may have been applied. A timeout is
 *         never a failure.
 * Happy path: start -> (call -> callback -> record -> think) per client ->
 * stop (async) -> calls in progress finish -> clients closed -> loop ends. */
#include "jepsen.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vsrc_json.h"
#include "vsrc_op.h"

typedef struct jp_key_slot {
	uint32_t key;
	uint32_t used;
} jp_key_slot;

typedef struct jp_client jp_client;

struct jp_work {
	jp_work_opts o;
	vsrc_options copt;
	uv_loop_t loop;
	uv_async_t stop;
	pthread_t thread;
	uint64_t rng;
	int64_t t0_ns;
	bool stopping;
	uint32_t running;
	uint32_t open;
	jp_client *clients;
	jp_key_slot *slots;
	uint32_t next_key;
	int64_t *last_value;  /* per key: the latest value seen written or read */
	uint32_t last_cap;
	int64_t next_value;
	jp_op *hist;
	size_t count, cap;
	bool oom;
};

struct jp_client {
	jp_work *w;
	uint32_t id;
	vsrc_client *c;
	uv_timer_t think;
	vsr_buf op;
	jp_op cur;
	bool closed;
};

static int64_t jp_value_parse(const uint8_t *p, size_t len);

static void jp_record(jp_work *w, const jp_op *op)
{
	if (w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		jp_op *h = realloc(w->hist, cap * sizeof *h);
		if (h == NULL) {
			w->oom = true;
			return;
		}
		w->hist = h;
		w->cap = cap;
	}
	w->hist[w->count++] = *op;
}

static int64_t *jp_last(jp_work *w, uint32_t key)
{
	if (key >= w->last_cap) {
		uint32_t cap = key * 2 + 64;
		int64_t *l = realloc(w->last_value, cap * sizeof *l);
		if (l == NULL)
			abort(); /* a few kilobytes: nothing sensible to do without them */
		for (uint32_t i = w->last_cap; i < cap; i++)
			l[i] = LINCHECK_NIL;
		w->last_value = l;
		w->last_cap = cap;
	}
	return &w->last_value[key];
}

/* Finds `name` in a msgpack map and returns its value as a value of ours
 * (values travel as decimal strings). Returns LINCHECK_NIL when absent. */
static int64_t jp_reply_value(const uint8_t *data, size_t len, bool *ok)
{
	msgpack_zone zone;
	msgpack_object obj;
	msgpack_zone_init(&zone, 1024);
	size_t off = 0;
	int64_t v = LINCHECK_NIL;
	*ok = false;
	if (msgpack_unpack(( const char *)data, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
	    obj.type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < obj.via.map.size; i++) {
			msgpack_object *k = &obj.via.map.ptr[i].key, *val = &obj.via.map.ptr[i].val;
			if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 5 ||
			    memcmp(k->via.str.ptr, "value", 5) != 0)
				continue;
			if (val->type == MSGPACK_OBJECT_STR || val->type == MSGPACK_OBJECT_BIN) {
				v = jp_value_parse((const uint8_t *)val->via.str.ptr, val->via.str.size);
				*ok = v != LINCHECK_NIL;
			}
		}
	}
	msgpack_zone_destroy(&zone);
	return v;
}

static int64_t jp_value_parse(const uint8_t *p, size_t len)
{
	if (len == 0 || len > 19)
		return LINCHECK_NIL;
	int64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return LINCHECK_NIL;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static void jp_next(jp_client *cl);

static void jp_think_cb(uv_timer_t *t)
{
	jp_next(t->data);
}

static void jp_schedule(jp_client *cl)
{
	jp_work *w = cl->w;
	if (w->stopping)
		return;
	if (w->o.rate == 0) {
		jp_next(cl);
		return;
	}
	/* Mean think time makes clients * (1 / think) = rate. */
	uint64_t mean_ms = (uint64_t)w->o.clients * 1000u / w->o.rate;
	uint64_t ms = mean_ms ? jp_rand(&w->rng) % (2 * mean_ms + 1) : 0;
	uv_timer_start(&cl->think, jp_think_cb, ms, 0);
}

static void jp_call_cb(vsrc_client *c, const vsrc_result *r, void *arg)
{
	jp_client *cl = arg;
	jp_work *w = cl->w;
	(void)c;
	w->running--;
	jp_op *op = &cl->cur;
	op->op.return_ns = jp_now_ns() - w->t0_ns;
	int64_t *last = jp_last(w, (uint32_t)op->op.key);
	if (r->outcome == VSRC_DONE) {
		op->op.outcome = LINCHECK_OK;
		if (op->op.f == LINCHECK_READ) {
			bool ok;
			op->op.value = jp_reply_value(r->reply, r->reply_len, &ok);
			if (!ok) {
				op->op.outcome = LINCHECK_INFO; /* cannot say what it read */
				snprintf(op->note, sizeof op->note, "unreadable reply");
			} else {
				*last = op->op.value;
				/* Which path answered it (--lease-reads): a lease, or
				 * a round when the primary held none. */
				if (w->o.lease_reads)
					snprintf(op->note, sizeof op->note, "%s",
						 r->read_mode == VSR_READ_LEASE ? "lease" : "round");
			}
		} else {
			*last = op->op.f == LINCHECK_WRITE ? op->op.value : op->op.value2;
		}
	} else if (r->status == VSR_REPLY_ERROR) {
		int code = vsrc_refusal_code(r->reply, r->reply_len, NULL, NULL);
		snprintf(op->note, sizeof op->note, "refused %d", code);
		if (op->op.f == LINCHECK_READ && code == 20) {
			op->op.outcome = LINCHECK_OK;
			op->op.value = LINCHECK_NIL;
		} else if (op->op.f == LINCHECK_CAS && (code == 20 || code == 22)) {
			op->op.outcome = LINCHECK_FAIL;
			op->op.mismatch = true;
		} else {
			op->op.outcome = LINCHECK_FAIL;
		}
	} else {
		op->op.outcome = r->outcome == VSRC_FAILED ? LINCHECK_FAIL : LINCHECK_INFO;
		snprintf(op->note, sizeof op->note, "%s", r->reason ? r->reason : "");
	}
	jp_record(w, op);
	jp_schedule(cl);
}

static void jp_next(jp_client *cl)
{
	jp_work *w = cl->w;
	if (w->stopping)
		return;
	jp_key_slot *s = &w->slots[jp_rand(&w->rng) % w->o.keys];
	if (s->used >= w->o.ops_per_key) {
		s->key = w->next_key++;
		s->used = 0;
	}
	s->used++;
	uint32_t key = s->key;
	int64_t last = *jp_last(w, key);
	uint64_t pick = jp_rand(&w->rng) % 10;
	uint8_t f = pick < 4 ? LINCHECK_READ : pick < 7 || last == LINCHECK_NIL ? LINCHECK_WRITE
										   : LINCHECK_CAS;
	/* The last `readers` clients only read (--readers): a client that
	 * writes nothing keeps asking the primary it knows, where a writer
	 * stuck at a deposed one moves on. */
	if (cl->id + w->o.readers >= w->o.clients)
		f = LINCHECK_READ;
	jp_op *op = &cl->cur;
	memset(op, 0, sizeof *op);
	op->op.client = cl->id;
	op->op.key = key;
	op->op.f = f;
	char k[24], v1[24], v2[24];
	snprintf(k, sizeof k, "k%u", key);
	const char *fields[3] = {"key", NULL, NULL};
	const char *vals[3] = {k, v1, v2};
	size_t lens[3] = {strlen(k), 0, 0};
	uint32_t nf = 1;
	const char *name = "get";
	if (f == LINCHECK_WRITE) {
		op->op.value = w->next_value++;
		name = "put";
		fields[1] = "value";
		lens[1] = (size_t)snprintf(v1, sizeof v1, "%" PRId64, op->op.value);
		nf = 2;
	} else if (f == LINCHECK_CAS) {
		op->op.value = last;
		op->op.value2 = w->next_value++;
		name = "cas";
		fields[1] = "from";
		fields[2] = "to";
		lens[1] = (size_t)snprintf(v1, sizeof v1, "%" PRId64, op->op.value);
		lens[2] = (size_t)snprintf(v2, sizeof v2, "%" PRId64, op->op.value2);
		nf = 3;
	}
	vsr_buf_reset(&cl->op);
	if (vsrc_op_map(&cl->op, name, fields, vals, lens, nf) != 0) {
		w->oom = true;
		return;
	}
	op->op.call_ns = jp_now_ns() - w->t0_ns;
	/* Reads go outside the log, as linearizable queries: the checker then
	 * judges the read path under every fault. */
	int rc = f == LINCHECK_READ && !w->o.reads_via_log
			 ? vsrc_client_query(cl->c,
					     w->o.lease_reads ? VSR_READ_LEASE : VSR_READ_LINEARIZABLE,
					     cl->op.data, cl->op.len,
					     jp_call_cb, cl)
			 : vsrc_client_call(cl->c, cl->op.data, cl->op.len, jp_call_cb, cl);
	if (rc != 0) {
		w->oom = true;
		return;
	}
	w->running++;
}

static void jp_client_closed_cb(void *arg)
{
	jp_client *cl = arg;
	cl->closed = true;
	cl->w->open--;
}

static void jp_handle_closed_cb(uv_handle_t *h)
{
	(void)h;
}

static void jp_close_when_idle(uv_timer_t *t);

static void jp_stop_cb(uv_async_t *a)
{
	jp_work *w = a->data;
	w->stopping = true;
	for (uint32_t i = 0; i < w->o.clients; i++)
		uv_timer_stop(&w->clients[i].think);
	/* Calls in progress complete by their own deadline (call_ms); then
	 * every client and handle closes and the loop runs dry. */
	uv_timer_start(&w->clients[0].think, jp_close_when_idle, 20, 20);
}

static void jp_close_when_idle(uv_timer_t *t)
{
	jp_work *w = ((jp_client *)t->data)->w;
	if (w->running > 0)
		return;
	uv_timer_stop(t);
	for (uint32_t i = 0; i < w->o.clients; i++) {
		vsrc_client_close(w->clients[i].c, jp_client_closed_cb, &w->clients[i]);
		uv_close((uv_handle_t *)&w->clients[i].think, jp_handle_closed_cb);
	}
	uv_close((uv_handle_t *)&w->stop, jp_handle_closed_cb);
}

static void *jp_work_main(void *arg)
{
	jp_work *w = arg;
	for (uint32_t i = 0; i < w->o.clients; i++)
		jp_schedule(&w->clients[i]);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	return NULL;
}

jp_work *jp_work_start(const vsrc_options *o, const jp_work_opts *wo, uint64_t seed,
		       int64_t t0_ns)
{
	jp_work *w = calloc(1, sizeof *w);
	if (w == NULL)
		return NULL;
	w->o = *wo;
	w->copt = *o;
	w->copt.timing = wo->timing;
	w->rng = seed * 0x9e3779b97f4a7c15ull + 7;
	w->t0_ns = t0_ns;
	w->next_value = 1;
	w->clients = calloc(wo->clients, sizeof *w->clients);
	w->slots = calloc(wo->keys, sizeof *w->slots);
	if (w->clients == NULL || w->slots == NULL || uv_loop_init(&w->loop) != 0)
		abort();
	for (uint32_t i = 0; i < wo->keys; i++)
		w->slots[i].key = w->next_key++;
	uv_async_init(&w->loop, &w->stop, jp_stop_cb);
	w->stop.data = w;
	for (uint32_t i = 0; i < wo->clients; i++) {
		jp_client *cl = &w->clients[i];
		cl->w = w;
		cl->id = i;
		uv_timer_init(&w->loop, &cl->think);
		cl->think.data = cl;
		if (vsrc_client_create(&w->loop, &w->copt, &cl->c) != 0)
			abort();
		w->open++;
	}
	if (pthread_create(&w->thread, NULL, jp_work_main, w) != 0)
		abort();
	return w;
}

jp_op *jp_work_stop(jp_work *w, size_t *count, uint32_t *keys_used)
{
	uv_async_send(&w->stop);
	pthread_join(w->thread, NULL);
	int rc = uv_loop_close(&w->loop);
	if (rc != 0)
		jp_log("client loop: %s (a handle outlived the clients)", uv_strerror(rc));
	if (w->oom)
		jp_log("clients ran out of memory or could not start a call: the history is short");
	jp_op *h = w->hist;
	*count = w->count;
	*keys_used = w->next_key;
	for (uint32_t i = 0; i < w->o.clients; i++)
		vsr_buf_free(&w->clients[i].op);
	free(w->clients);
	free(w->slots);
	free(w->last_value);
	free(w);
	return h;
}

uint32_t jp_final_reads(const vsrc_options *o, uint32_t keys, int64_t t0_ns, jp_op **h,
			size_t *count, uint32_t client_id)
{
	vsrc_options opt = *o;
	vsrc_timing_default(&opt.timing);
	opt.timing.call_ms = 5000;
	vsrc_sync *s;
	if (vsrc_sync_open(&opt, &s) != 0)
		return keys;
	uint32_t unread = 0;
	jp_op *hist = realloc(*h, (*count + keys) * sizeof *hist);
	if (hist == NULL) {
		vsrc_sync_close(s);
		return keys;
	}
	*h = hist;
	for (uint32_t key = 0; key < keys; key++) {
		char k[24];
		snprintf(k, sizeof k, "k%u", key);
		bool done = false;
		for (int attempt = 0; attempt < 6 && !done && !jp_interrupted; attempt++) {
			vsr_buf op = {0};
			vsrc_op_get(&op, k, strlen(k));
			jp_op rec = {0};
			rec.op.client = client_id;
			rec.op.key = key;
			rec.op.f = LINCHECK_READ;
			rec.op.call_ns = jp_now_ns() - t0_ns;
			const vsrc_sync_result *r;
			int outcome = vsrc_sync_call(s, op.data, op.len, &r);
			rec.op.return_ns = jp_now_ns() - t0_ns;
			vsr_buf_free(&op);
			if (outcome == VSRC_DONE) {
				bool ok;
				rec.op.value = jp_reply_value(r->reply, r->reply_len, &ok);
				done = ok;
			} else if (r->status == VSR_REPLY_ERROR &&
				   vsrc_refusal_code(r->reply, r->reply_len, NULL, NULL) == 20) {
				rec.op.value = LINCHECK_NIL;
				done = true;
			}
			if (done) {
				rec.op.outcome = LINCHECK_OK;
				snprintf(rec.note, sizeof rec.note, "final read");
				hist[(*count)++] = rec;
			}
		}
		if (!done)
			unread++;
	}
	vsrc_sync_close(s);
	return unread;
}
