/* fixture.c - the in-memory cluster behind the core's unit tests. */
#include "fixture.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- the test state machine ---- */

/* The state machine's context: the node (restore failures) and the
 * fixture (snapshot padding). */
typedef struct fx_smctx {
	fx_node *nd;
	fixture *f;
} fx_smctx;
static fx_smctx smctx[FX_MAX];

static int sm_apply(void *ctx, const vsr_apply_ctx *a, const uint8_t *op, size_t len,
		    vsr_buf *reply)
{
	fx_sm *s = &((fx_smctx *)ctx)->nd->sm;
	char text[64];
	if (len == 4 && memcmp(op, "fail", 4) == 0) {
		vsr_buf_append(reply, "failed", 6);
		return VSR_REPLY_ERROR;
	}
	/* "big:N": applied, with a reply of N bytes (a state machine that
	 * ignores a->reply_max: the core must bound it). */
	size_t big = 0;
	if (len > 4 && len < 32 && memcmp(op, "big:", 4) == 0) {
		char num[32];
		memcpy(num, op + 4, len - 4);
		num[len - 4] = '\0';
		big = (size_t)strtoull(num, NULL, 10);
	}
	uint64_t in[3] = {s->chain, a->session, a->request};
	s->chain = XXH3_64bits_withSeed(in, sizeof in, XXH3_64bits(op, len));
	s->count++;
	int n = snprintf(text, sizeof text, "%llu", (unsigned long long)s->count);
	vsr_buf_append(reply, text, (size_t)n);
	for (size_t k = 0; k < big; k += sizeof text) {
		memset(text, 'x', sizeof text);
		vsr_buf_append(reply, text, big - k < sizeof text ? big - k : sizeof text);
	}
	return VSR_REPLY_OK;
}

static int sm_snapshot(void *ctx, vsr_buf *out)
{
	fx_smctx *c = ctx;
	int rc = vsr_buf_append(out, &c->nd->sm, sizeof(fx_sm));
	for (uint32_t i = 0; rc == VSR_OK && i < c->f->snapshot_pad; i++) {
		uint8_t b = (uint8_t)(c->nd->sm.chain >> (8 * (i % 8)));
		rc = vsr_buf_append(out, &b, 1);
	}
	return rc;
}

static int sm_restore(void *ctx, const uint8_t *data, size_t len)
{
	fx_smctx *c = ctx;
	if (len != sizeof(fx_sm) + c->f->snapshot_pad) return VSR_ECORRUPT;
	if (c->nd->restore_fail) {
		c->nd->restore_fail--;
		c->nd->restore_failed++;
		return VSR_ESM;
	}
	memcpy(&c->nd->sm, data, sizeof(fx_sm));
	return VSR_OK;
}

static uint64_t sm_digest(void *ctx)
{
	return XXH3_64bits(&((fx_smctx *)ctx)->nd->sm, sizeof(fx_sm));
}

/* The machine the core sees: checkpoints kept by the node's vsr_snapckpt,
 * which survives a crash like the disk. */
static vsr_state_machine sm_of(fixture *f, uint8_t i, bool first)
{
	smctx[i] = (fx_smctx){&f->node[i], f};
	vsr_state_machine inner = {.ctx = &smctx[i], .apply = sm_apply, .snapshot = sm_snapshot,
				   .restore = sm_restore, .digest = sm_digest};
	if (first) vsr_snapckpt_init(&f->node[i].ck, &inner);
	else vsr_snapckpt_rebind(&f->node[i].ck, &inner);
	f->node[i].ck.restore_atomic = true; /* sm_restore checks before it writes */
	vsr_state_machine sm;
	vsr_snapckpt_machine(&f->node[i].ck, &sm);
	return sm;
}

/* ---- deep copies ---- */

static void *dup_bytes(const void *p, size_t n)
{
	if (n == 0 || p == NULL) return NULL;
	void *q = malloc(n);
	assert(q);
	memcpy(q, p, n);
	return q;
}

static vsr_entry *dup_entries(const vsr_entry *e, uint32_t n)
{
	if (n == 0) return NULL;
	vsr_entry *out = calloc(n, sizeof *out);
	for (uint32_t i = 0; i < n; i++) {
		out[i] = e[i];
		out[i].body = dup_bytes(e[i].body, e[i].body_len);
	}
	return out;
}

static void free_entries(vsr_entry *e, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) free((void *)e[i].body);
	free(e);
}

static void message_copy(vsr_message *dst, const vsr_message *src)
{
	*dst = *src;
	dst->entries = dup_entries(src->entries, src->entry_count);
	dst->body = dup_bytes(src->body, src->body_len);
	dst->request.op = dup_bytes(src->request.op, src->request.op_len);
}

static void message_free(vsr_message *m)
{
	free_entries((vsr_entry *)m->entries, m->entry_count);
	free((void *)m->body);
	free((void *)m->request.op);
}

/* ---- storage ---- */

static void disk_apply(fx_image *d, const vsr_persist *p)
{
	if (p->has_truncate) {
		uint32_t keep = 0;
		while (keep < d->entry_count && d->entries[keep].op <= p->truncate_after) keep++;
		for (uint32_t i = keep; i < d->entry_count; i++) free((void *)d->entries[i].body);
		d->entry_count = keep;
	}
	if (p->entry_count) {
		d->entries = realloc(d->entries, (d->entry_count + p->entry_count) * sizeof *d->entries);
		for (uint32_t i = 0; i < p->entry_count; i++) {
			/* Entries always extend the durable log at its end. */
			while (d->entry_count && d->entries[d->entry_count - 1].op >= p->entries[i].op) {
				d->entry_count--;
				free((void *)d->entries[d->entry_count].body);
			}
			d->entries[d->entry_count] = p->entries[i];
			d->entries[d->entry_count].body = dup_bytes(p->entries[i].body, p->entries[i].body_len);
			d->entry_count++;
		}
	}
	d->sb = p->superblock;
	d->formatted = true;
}

static void persist_free(vsr_persist *p)
{
	free_entries((vsr_entry *)p->entries, p->entry_count);
}

static void disk_free(fx_image *d)
{
	free_entries(d->entries, d->entry_count);
	memset(d, 0, sizeof *d);
}

/* ---- stepping ---- */

static fx_message *queue_push(fx_message **queue, uint32_t *count, uint32_t *cap)
{
	if (*count == *cap) {
		*cap = *cap ? 2 * *cap : 256;
		*queue = realloc(*queue, *cap * sizeof **queue);
	}
	return &(*queue)[(*count)++];
}

static void enqueue(fixture *f, uint8_t from, uint8_t to, const vsr_message *m)
{
	if (f->hold) {
		fx_message probe = {.from = from, .to = to, .m = *m};
		if (f->hold(&probe, f->hold_arg)) {
			fx_message *h = queue_push(&f->held, &f->held_count, &f->held_cap);
			h->from = from;
			h->to = to;
			message_copy(&h->m, m);
			return;
		}
	}
	fx_message *q = queue_push(&f->queue, &f->queue_count, &f->queue_cap);
	q->from = from;
	q->to = to;
	message_copy(&q->m, m);
}

static void step(fixture *f, uint8_t i, const vsr_event *ev)
{
	fx_node *nd = &f->node[i];
	if (!nd->up || nd->paused) return;
	vsr_actions out;
	vsr_replica_step(nd->r, ev, &out);
	const char *why = vsr_replica_invariant_failure(nd->r);
	if (why) {
		fprintf(stderr, "replica %u: invariant: %s\n", i, why);
		abort();
	}
	for (uint32_t k = 0; k < out.count; k++) {
		const vsr_action *a = &out.items[k];
		if (a->type == VSR_ACTION_SEND) {
			if (f->link[i][a->to]) enqueue(f, i, a->to, &a->message);
		} else if (a->type == VSR_ACTION_REPLY || a->type == VSR_ACTION_QUERY) {
			if (f->reply_count < FX_REPLIES_MAX) {
				fx_reply *r = &f->replies[f->reply_count++];
				memset(r, 0, sizeof *r);
				r->replica = i;
				r->conn = a->conn;
				r->status = a->message.status;
				r->hint = a->message.replica;
				r->view = a->message.view;
				r->session = a->message.request.session;
				r->request = a->message.request.request;
				r->op = a->message.reply_op;
				r->history = a->message.history;
				r->body_len = a->message.body_len;
				size_t n = a->message.body_len < sizeof r->body - 1 ? a->message.body_len
										     : sizeof r->body - 1;
				if (n) memcpy(r->body, a->message.body, n);
				r->read_mode = a->message.read_mode;
				r->query = a->message.request.kind == VSR_REQUEST_QUERY;
				if (a->type == VSR_ACTION_QUERY) {
					/* The query: the state's op count, read now. */
					r->body_len = (uint32_t)snprintf(r->body, sizeof r->body, "%llu",
									 (unsigned long long)nd->sm.count);
				}
			}
		} else if (a->type == VSR_ACTION_PERSIST) {
			assert(nd->pending_count < 4096);
			vsr_persist *p = &nd->pending[nd->pending_count++];
			*p = a->persist;
			p->entries = dup_entries(a->persist.entries, a->persist.entry_count);
		}
	}
}

static void complete_one(fixture *f, uint8_t i);

static void complete_persists(fixture *f, uint8_t i)
{
	fx_node *nd = &f->node[i];
	while (nd->up && !nd->paused && nd->auto_persist && nd->pending_count > 0)
		complete_one(f, i);
}

static void complete_one(fixture *f, uint8_t i)
{
	fx_node *nd = &f->node[i];
	vsr_persist p = nd->pending[0];
	memmove(&nd->pending[0], &nd->pending[1], (nd->pending_count - 1) * sizeof p);
	nd->pending_count--;
	disk_apply(&nd->disk, &p);
	uint64_t id = p.id;
	persist_free(&p);
	vsr_event ev = {.type = VSR_EVENT_PERSISTED, .now = f->now, .persist_id = id};
	step(f, i, &ev);
}

static void deliver_all(fixture *f)
{
	/* Messages produced while delivering go to the next round. */
	int rounds = f->hops_per_tick ? (int)f->hops_per_tick : 64;
	for (int round = 0; round < rounds && f->queue_count > 0; round++) {
		uint32_t n = f->queue_count;
		fx_message *batch = f->queue;
		f->queue = NULL;
		f->queue_count = f->queue_cap = 0;
		for (uint32_t k = 0; k < n; k++) {
			fx_message *q = &batch[k];
			if (f->node[q->to].up && f->node[q->to].paused && f->link[q->from][q->to]) {
				/* Waits in the stalled replica's socket buffer. */
				*queue_push(&f->stalled, &f->stalled_count, &f->stalled_cap) = *q;
				continue;
			}
			if (f->node[q->to].up && f->link[q->from][q->to]) {
				vsr_event ev = {.type = VSR_EVENT_MESSAGE, .now = f->now,
						.realtime_ns = f->now * 1000000, .message = &q->m};
				step(f, q->to, &ev);
			}
			message_free(&q->m);
			for (uint8_t i = 0; i < f->n; i++) complete_persists(f, i);
		}
		free(batch);
	}
}

void fx_init(fixture *f, uint8_t n, void (*tune)(vsr_config *c))
{
	memset(f, 0, sizeof *f);
	f->n = n;
	f->next_conn = 1;
	for (uint8_t a = 0; a < n; a++)
		for (uint8_t b = 0; b < n; b++) f->link[a][b] = true;
	for (uint8_t i = 0; i < n; i++) {
		vsr_config_default(&f->cfg[i], 7, n, i);
		f->cfg[i].checkpoint_interval = 64;
		f->cfg[i].log_max = 256;
		f->cfg[i].pipeline_max = 4;
		f->cfg[i].message_entries_max = 32;
		f->cfg[i].timeouts.jitter_ticks = 3;
		f->cfg[i].genesis_history = fx_history_for(i, 0);
		if (tune) tune(&f->cfg[i]);
		assert(vsr_config_invalid(&f->cfg[i]) == NULL);
		fx_node *nd = &f->node[i];
		nd->up = true;
		nd->auto_persist = true;
		int rc = vsr_replica_create(&nd->r, &f->cfg[i], &(vsr_state_machine){0}, NULL, 0);
		assert(rc == VSR_EINVAL); /* an empty state machine is refused */
		vsr_state_machine sm = sm_of(f, i, true);
		rc = vsr_replica_create(&nd->r, &f->cfg[i], &sm, NULL, 0);
		assert(rc == VSR_OK);
		nd->disk.formatted = true;
		nd->disk.sb.cluster = 7;
	}
	/* Every replica starts unjoined: genesis makes them the members of
	 * view 0 of a new history, replica 0 its primary. */
	for (uint32_t t = 0; t < 200 && !fx_all_joined(f); t++) fx_run(f, 1);
	assert(fx_all_joined(f));
	f->history = f->cfg[0].genesis_history;
}

uint64_t fx_history_for(uint8_t i, uint32_t incarnation)
{
	return 0x4849535430000000ull ^ ((uint64_t)incarnation << 8) ^ (uint64_t)(i + 1);
}

bool fx_all_joined(fixture *f)
{
	for (uint8_t i = 0; i < f->n; i++) {
		if (!f->node[i].up) continue;
		vsr_replica_info in;
		fx_info(f, i, &in);
		if (in.status != VSR_STATUS_NORMAL || in.history == 0 || in.amnesia ||
		    in.durable_view != in.view)
			return false;
	}
	return true;
}

void fx_free(fixture *f)
{
	for (uint32_t k = 0; k < f->queue_count; k++) message_free(&f->queue[k].m);
	free(f->queue);
	for (uint32_t k = 0; k < f->held_count; k++) message_free(&f->held[k].m);
	free(f->held);
	for (uint32_t k = 0; k < f->stalled_count; k++) message_free(&f->stalled[k].m);
	free(f->stalled);
	for (uint8_t i = 0; i < f->n; i++) {
		fx_node *nd = &f->node[i];
		if (nd->up) vsr_replica_destroy(nd->r);
		for (uint32_t k = 0; k < nd->pending_count; k++) persist_free(&nd->pending[k]);
		disk_free(&nd->disk);
		vsr_snapckpt_free(&nd->ck);
	}
}

void fx_run(fixture *f, uint32_t ticks)
{
	for (uint32_t t = 0; t < ticks; t++) {
		deliver_all(f);
		f->now++;
		for (uint8_t i = 0; i < f->n; i++) {
			complete_persists(f, i);
			vsr_event ev = {.type = VSR_EVENT_TICK, .now = f->now,
					.realtime_ns = f->now * 1000000};
			step(f, i, &ev);
		}
		deliver_all(f);
	}
}

bool fx_run_until(fixture *f, uint32_t ticks, bool (*pred)(fixture *f, void *arg), void *arg)
{
	for (uint32_t t = 0; t < ticks; t++) {
		if (pred(f, arg)) return true;
		fx_run(f, 1);
	}
	return pred(f, arg);
}

void fx_isolate(fixture *f, uint8_t i)
{
	for (uint8_t k = 0; k < f->n; k++) {
		if (k == i) continue;
		f->link[i][k] = f->link[k][i] = false;
	}
}

void fx_heal(fixture *f)
{
	for (uint8_t a = 0; a < f->n; a++)
		for (uint8_t b = 0; b < f->n; b++) f->link[a][b] = true;
}

void fx_crash(fixture *f, uint8_t i)
{
	fx_node *nd = &f->node[i];
	assert(nd->up);
	vsr_replica_destroy(nd->r);
	nd->r = NULL;
	nd->up = false;
	for (uint32_t k = 0; k < nd->pending_count; k++) persist_free(&nd->pending[k]);
	nd->pending_count = 0;
}

void fx_restart(fixture *f, uint8_t i)
{
	fx_node *nd = &f->node[i];
	assert(!nd->up);
	memset(&nd->sm, 0, sizeof nd->sm);
	vsr_durable d = {.superblock = nd->disk.sb, .entry_count = nd->disk.entry_count,
			 .entries = nd->disk.entries};
	vsr_state_machine sm = sm_of(f, i, false);
	int rc = vsr_replica_create(&nd->r, &f->cfg[i], &sm, &d, f->now);
	assert(rc == VSR_OK);
	nd->up = true;
}

void fx_restart_wiped(fixture *f, uint8_t i)
{
	fx_node *nd = &f->node[i];
	assert(!nd->up);
	memset(&nd->sm, 0, sizeof nd->sm);
	disk_free(&nd->disk);
	memset(&nd->disk, 0, sizeof nd->disk);
	nd->disk.formatted = true;
	nd->disk.sb.cluster = 7;
	/* A new process: a new genesis candidate, as vsrhost draws one, and a
	 * new generator seed (its nonces differ from the wiped incarnation's). */
	f->incarnation[i]++;
	f->cfg[i].seed = (f->cfg[i].seed * 6364136223846793005ull) ^ f->incarnation[i];
	f->cfg[i].genesis_history = fx_history_for(i, f->incarnation[i]);
	f->cfg[i].seed = f->cfg[i].seed * 6364136223846793005ull + 1442695040888963407ull;
	vsr_snapckpt_forget(&nd->ck); /* the state machine's checkpoints were on that disk */
	vsr_state_machine sm = sm_of(f, i, false);
	int rc = vsr_replica_create(&nd->r, &f->cfg[i], &sm, NULL, f->now);
	assert(rc == VSR_OK);
	nd->up = true;
}

void fx_release(fixture *f, uint32_t k)
{
	assert(k < f->held_count);
	fx_message q = f->held[k];
	memmove(&f->held[k], &f->held[k + 1], (f->held_count - k - 1) * sizeof q);
	f->held_count--;
	if (f->node[q.to].up && f->link[q.from][q.to]) {
		vsr_event ev = {.type = VSR_EVENT_MESSAGE, .now = f->now,
				.realtime_ns = f->now * 1000000, .message = &q.m};
		step(f, q.to, &ev);
	}
	message_free(&q.m);
	for (uint8_t i = 0; i < f->n; i++) complete_persists(f, i);
	deliver_all(f); /* what the released message caused (lost in a merge) */
}

void fx_pause(fixture *f, uint8_t i)
{
	assert(f->node[i].up);
	f->node[i].paused = true;
}

void fx_resume(fixture *f, uint8_t i, bool tick_first)
{
	fx_node *nd = &f->node[i];
	assert(nd->up && nd->paused);
	nd->paused = false;
	if (tick_first) {
		vsr_event ev = {.type = VSR_EVENT_TICK, .now = f->now,
				.realtime_ns = f->now * 1000000};
		step(f, i, &ev);
	}
	/* What waited for it arrives before anything sent from now on. */
	uint32_t kept = 0;
	for (uint32_t k = 0; k < f->stalled_count; k++) {
		if (f->stalled[k].to != i) {
			f->stalled[kept++] = f->stalled[k];
			continue;
		}
		vsr_event ev = {.type = VSR_EVENT_MESSAGE, .now = f->now,
				.realtime_ns = f->now * 1000000, .message = &f->stalled[k].m};
		step(f, i, &ev);
		message_free(&f->stalled[k].m);
		complete_persists(f, i);
	}
	f->stalled_count = kept;
	complete_persists(f, i);
	deliver_all(f);
}

void fx_persist_one(fixture *f, uint8_t i)
{
	if (f->node[i].up && f->node[i].pending_count > 0) complete_one(f, i);
	deliver_all(f);
}

void fx_inject(fixture *f, uint8_t from, uint8_t to, const vsr_message *m)
{
	(void)from;
	vsr_event ev = {.type = VSR_EVENT_MESSAGE, .now = f->now,
			.realtime_ns = f->now * 1000000, .message = m};
	step(f, to, &ev);
	for (uint8_t k = 0; k < f->n; k++) complete_persists(f, k);
	deliver_all(f);
}

uint64_t fx_query(fixture *f, uint8_t i, uint8_t mode, uint64_t request)
{
	f->read_mode = mode;
	uint64_t conn = fx_request(f, i, VSR_REQUEST_QUERY, 0, request, "count");
	f->read_mode = 0;
	return conn;
}

uint64_t fx_request(fixture *f, uint8_t i, uint8_t kind, uint64_t session, uint64_t request,
		    const char *op)
{
	uint64_t conn = f->next_conn++;
	vsr_message m;
	memset(&m, 0, sizeof m);
	m.type = VSR_MSG_REQUEST;
	m.cluster = 7;
	m.history = kind == VSR_REQUEST_OP ? f->request_history : 0;
	m.request.kind = kind;
	m.request.session = session;
	m.request.request = request;
	m.request.op = (const uint8_t *)op;
	m.request.op_len = op ? (uint32_t)strlen(op) : 0;
	m.read_mode = kind == VSR_REQUEST_QUERY ? f->read_mode : 0;
	vsr_event ev = {.type = VSR_EVENT_REQUEST, .now = f->now, .realtime_ns = f->now * 1000000,
			.conn = conn, .message = &m, .more = f->more};
	step(f, i, &ev);
	deliver_all(f);
	for (uint8_t k = 0; k < f->n; k++) complete_persists(f, k);
	return conn;
}

void fx_deliver(fixture *f, uint8_t to, const vsr_message *m)
{
	vsr_event ev = {.type = VSR_EVENT_MESSAGE, .now = f->now, .realtime_ns = f->now * 1000000,
			.message = m};
	step(f, to, &ev);
}

void fx_flush(fixture *f, uint8_t i)
{
	vsr_event ev = {.type = VSR_EVENT_FLUSH, .now = f->now, .realtime_ns = f->now * 1000000};
	step(f, i, &ev);
	deliver_all(f);
	for (uint8_t k = 0; k < f->n; k++) complete_persists(f, k);
}

const fx_reply *fx_reply_for(const fixture *f, uint64_t conn)
{
	for (uint32_t k = f->reply_count; k > 0; k--)
		if (f->replies[k - 1].conn == conn) return &f->replies[k - 1];
	return NULL;
}

int fx_primary(const fixture *f)
{
	int best = -1;
	uint64_t view = 0;
	for (uint8_t i = 0; i < f->n; i++) {
		if (!f->node[i].up) continue;
		vsr_replica_info in;
		vsr_replica_info_get(f->node[i].r, &in);
		if (in.status == VSR_STATUS_NORMAL && in.primary == i && (best < 0 || in.view > view)) {
			best = i;
			view = in.view;
		}
	}
	return best;
}

const fx_reply *fx_call(fixture *f, uint64_t session, uint64_t request, const char *op)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		int p = fx_primary(f);
		if (p < 0) {
			fx_run(f, 5);
			continue;
		}
		uint64_t conn = fx_request(f, (uint8_t)p, VSR_REQUEST_OP, session, request, op);
		for (int t = 0; t < 20; t++) {
			const fx_reply *r = fx_reply_for(f, conn);
			if (r && r->status != VSR_REPLY_NOT_PRIMARY && r->status != VSR_REPLY_BUSY)
				return r;
			if (r) break;
			fx_run(f, 1);
		}
	}
	return NULL;
}

uint64_t fx_register(fixture *f, uint8_t i, uint64_t nonce)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		int p = fx_primary(f);
		uint8_t to = p >= 0 ? (uint8_t)p : i;
		uint64_t conn = fx_request(f, to, VSR_REQUEST_REGISTER, 0, nonce, NULL);
		for (int t = 0; t < 20; t++) {
			const fx_reply *r = fx_reply_for(f, conn);
			if (r && r->status == VSR_REPLY_OK) {
				f->request_history = r->history;
				return r->session;
			}
			if (r) break;
			fx_run(f, 1);
		}
		fx_run(f, 5);
	}
	return 0;
}

void fx_info(const fixture *f, uint8_t i, vsr_replica_info *out)
{
	vsr_replica_info_get(f->node[i].r, out);
}

const char *fx_check(const fixture *f)
{
	static char why[160];
	for (uint8_t a = 0; a < f->n; a++) {
		if (!f->node[a].up) continue;
		const char *local = vsr_replica_check(f->node[a].r);
		if (local) return local;
		vsr_replica_info ia;
		fx_info(f, a, &ia);
		for (uint8_t b = a + 1; b < f->n; b++) {
			if (!f->node[b].up) continue;
			vsr_replica_info ib;
			fx_info(f, b, &ib);
			uint64_t c = ia.commit < ib.commit ? ia.commit : ib.commit;
			for (uint64_t op = 1; op <= c; op++) {
				const vsr_entry *ea = vsr_replica_entry(f->node[a].r, op);
				const vsr_entry *eb = vsr_replica_entry(f->node[b].r, op);
				if (ea && eb && ea->checksum != eb->checksum) {
					snprintf(why, sizeof why, "replicas %u and %u disagree at committed op %llu",
						 a, b, (unsigned long long)op);
					return why;
				}
			}
			if (ia.executed == ib.executed && ia.digest != ib.digest) {
				snprintf(why, sizeof why, "replicas %u and %u differ at executed op %llu",
					 a, b, (unsigned long long)ia.executed);
				return why;
			}
		}
	}
	return NULL;
}

int fx_main(int argc, char **argv, const fx_test *tests, size_t count, const int *failures)
{
	bool list = argc > 1 && strcmp(argv[1], "--list") == 0;
	int ran = 0;
	for (size_t i = 0; i < count; i++) {
		if (list) {
			printf("%s\n", tests[i].name);
			continue;
		}
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
		int before = *failures;
		tests[i].fn();
		printf("%s %s\n", *failures == before ? "ok" : "FAIL", tests[i].name);
		ran++;
	}
	if (list) return 0;
	if (ran == 0) {
		fprintf(stderr, "no such test: %s\n", argv[1]);
		return 2;
	}
	return *failures ? 1 : 0;
}

bool fx_all_caught_up(fixture *f, void *arg)
{
	(void)arg;
	int p = fx_primary(f);
	if (p < 0) return false;
	vsr_replica_info ip;
	fx_info(f, (uint8_t)p, &ip);
	for (uint8_t i = 0; i < f->n; i++) {
		if (!f->node[i].up) continue;
		vsr_replica_info in;
		fx_info(f, i, &in);
		if (in.status != VSR_STATUS_NORMAL || in.view != ip.view || in.commit != ip.commit ||
		    in.op != ip.op)
			return false;
	}
	return true;
}
