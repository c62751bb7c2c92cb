/* replica.c - replica lifecycle, the step function's dispatch, and the
 * helpers every sub-protocol shares (actions, timers, persists, log install). */
#include "replica.h"

/* ------------------------------------------------------------------------ */
/* Actions and per-step memory.                                              */

static vsr_action *action_new(vsr_replica *r, uint8_t type)
{
	if (r->action_count == r->action_cap) {
		r->action_cap = r->action_cap ? 2 * r->action_cap : 64;
		r->actions = xrealloc(r->actions, r->action_cap * sizeof *r->actions);
	}
	vsr_action *a = &r->actions[r->action_count++];
	memset(a, 0, sizeof *a);
	a->type = type;
	return a;
}

void scratch_keep(vsr_replica *r, void *p)
{
	if (r->scratch_count == r->scratch_cap) {
		r->scratch_cap = r->scratch_cap ? 2 * r->scratch_cap : 64;
		r->scratch = xrealloc(r->scratch, r->scratch_cap * sizeof *r->scratch);
	}
	r->scratch[r->scratch_count++] = p;
}

void *scratch_alloc(vsr_replica *r, size_t n)
{
	void *p = xmalloc(n);
	scratch_keep(r, p);
	return p;
}

static void scratch_free(vsr_replica *r)
{
	for (uint32_t i = 0; i < r->scratch_count; i++) free(r->scratch[i]);
	r->scratch_count = 0;
}

void message_header(const vsr_replica *r, vsr_message *m, uint8_t type)
{
	m->type = type;
	m->replica = r->self;
	m->cluster = r->cfg.cluster;
	m->history = r->history;
	m->epoch = r->epoch;
	m->view = r->view;
}

vsr_message *emit_send(vsr_replica *r, uint8_t to, uint8_t type)
{
	assert(to < r->n && to != r->self);
	vsr_action *a = action_new(r, VSR_ACTION_SEND);
	a->to = to;
	message_header(r, &a->message, type);
	r->stats.messages_out[type]++;
	return &a->message;
}

void emit_broadcast(vsr_replica *r, const vsr_message *m)
{
	for (uint8_t i = 0; i < r->n; i++) {
		if (i == r->self) continue;
		vsr_message *out = emit_send(r, i, m->type);
		*out = *m;
	}
}

vsr_message *emit_reply(vsr_replica *r, uint64_t conn)
{
	vsr_action *a = action_new(r, VSR_ACTION_REPLY);
	a->conn = conn;
	message_header(r, &a->message, VSR_MSG_REPLY);
	r->stats.messages_out[VSR_MSG_REPLY]++;
	return &a->message;
}

vsr_action *emit_query(vsr_replica *r, uint64_t conn)
{
	vsr_action *a = action_new(r, VSR_ACTION_QUERY);
	a->conn = conn;
	message_header(r, &a->message, VSR_MSG_REPLY);
	r->stats.messages_out[VSR_MSG_REPLY]++;
	return a;
}

vsr_persist *emit_persist(vsr_replica *r)
{
	vsr_action *a = action_new(r, VSR_ACTION_PERSIST);
	a->persist.id = ++r->persist_next;
	return &a->persist;
}

/* ------------------------------------------------------------------------ */
/* Status, timers, roles.                                                    */

void set_status(vsr_replica *r, uint8_t status)
{
	/* Legal transitions (protocol.md 2, 4, 5, 6). Recovering is only left
	 * for view_change or state_transfer, never straight to normal, except
	 * by joining a new history (recovery.c): view 0 and an empty log. */
	switch (status) {
	case VSR_STATUS_NORMAL:
		assert(r->status != VSR_STATUS_RECOVERING ||
		       (r->view == 0 && r->log.head == 0 && r->history != 0));
		break;
	case VSR_STATUS_VIEW_CHANGE:
	case VSR_STATUS_STATE_TRANSFER:
		break;
	case VSR_STATUS_RECOVERING:
		assert(r->status == VSR_STATUS_RECOVERING);
		break;
	default:
		assert(!"unknown status");
	}
	r->status = status;
	/* A divergence repair is one stretch of state transfer (divergence.c). */
	if (status != VSR_STATUS_STATE_TRANSFER) r->dv_repairing = false;
	/* A suspicion belongs to one normal stretch of one view. */
	vc_suspicion_clear(r);
}

void timer_set(vsr_replica *r, timer *t, uint32_t ticks, bool jitter)
{
	uint64_t extra = jitter && r->cfg.timeouts.jitter_ticks
				 ? prng_below(&r->prng, r->cfg.timeouts.jitter_ticks + 1)
				 : 0;
	t->armed = true;
	t->at = r->now + ticks + extra;
}

void timer_stop(timer *t) { t->armed = false; }

bool timer_fired(const vsr_replica *r, const timer *t) { return t->armed && r->now >= t->at; }

uint8_t primary_index(const vsr_replica *r) { return vsr_primary_of(r->view, r->n); }

bool is_primary(const vsr_replica *r) { return primary_index(r) == r->self; }

/* ------------------------------------------------------------------------ */
/* Persistence.                                                              */

static pending_persist *pending_push(vsr_replica *r)
{
	if (r->pending_count == r->pending_cap) {
		uint32_t cap = r->pending_cap ? 2 * r->pending_cap : 64;
		pending_persist *p = xcalloc(cap, sizeof *p);
		for (uint32_t i = 0; i < r->pending_count; i++)
			p[i] = r->pending[(r->pending_head + i) % r->pending_cap];
		free(r->pending);
		r->pending = p;
		r->pending_cap = cap;
		r->pending_head = 0;
	}
	pending_persist *p = &r->pending[(r->pending_head + r->pending_count) % r->pending_cap];
	r->pending_count++;
	return p;
}

vsr_persist *persist_state(vsr_replica *r, bool truncate, uint64_t truncate_after,
			   const vsr_entry *entries, uint32_t count)
{
	vsr_persist *p = emit_persist(r);
	p->has_truncate = truncate;
	p->truncate_after = truncate_after;
	p->entries = entries;
	p->entry_count = count;
	p->superblock = (vsr_superblock){
		.cluster = r->cfg.cluster,
		/* An amnesiac writes no history: restarted from this, it is
		 * unjoined again, never a member whose promises survived. */
		.history = r->amnesia ? 0 : r->history,
		.epoch = r->epoch,
		.view = r->view,
		.log_view = r->log_view,
		.commit = r->commit,
		/* Only a durable checkpoint: a crash may lose a newer one. */
		.checkpoint_op = r->checkpoint_durable.op,
		.checkpoint_checksum = r->checkpoint_durable.checksum,
		.checkpoint_size = r->checkpoint_durable.size,
		.checkpoint_timestamp = r->checkpoint_durable.timestamp,
	};
	if (truncate) {
		/* Entries above the cut are no longer ours, durable or not. */
		if (r->durable_op > truncate_after) r->durable_op = truncate_after;
		for (uint32_t i = 0; i < r->pending_count; i++) {
			pending_persist *q = &r->pending[(r->pending_head + i) % r->pending_cap];
			if (q->op > truncate_after) q->op = truncate_after;
		}
	}
	pending_persist *q = pending_push(r);
	q->id = p->id;
	q->view = r->view;
	q->log_view = r->log_view;
	q->op = r->log.head;
	q->joined = p->superblock.history != 0;
	q->issued_at = r->now;
	return p;
}

uint64_t disk_slack(const vsr_replica *r)
{
	if (BUG(r, VSR_BUG_NO_DISK_SLACK)) return 0;
	uint64_t lat = r->disk_ticks;
	if (r->pending_count) {
		uint64_t age = r->now - r->pending[r->pending_head].issued_at;
		if (age > lat) lat = age;
	}
	uint64_t cap = (uint64_t)r->cfg.timeouts.view_change_ticks << 4;
	return 2 * lat < cap ? 2 * lat : cap;
}

static void on_persisted(vsr_replica *r, uint64_t id)
{
	if (r->pending_count == 0 || r->pending[r->pending_head].id != id) {
		/* Persists complete in order; anything else is a host bug, or a
		 * completion from before a restart. Ignore it. */
		r->stats.messages_dropped++;
		return;
	}
	pending_persist p = r->pending[r->pending_head];
	r->pending_head = (r->pending_head + 1) % r->pending_cap;
	r->pending_count--;
	r->durable_view = p.view;
	r->durable_log_view = p.log_view;
	r->durable_op = p.op;
	r->durable_joined = p.joined;
	uint64_t took = r->now - p.issued_at;
	uint64_t decayed = r->disk_ticks - r->disk_ticks / 32;
	r->disk_ticks = took > decayed ? took : decayed;
	view_durable_reached(r);
}

/* ------------------------------------------------------------------------ */
/* Log helpers.                                                              */

vsr_entry *log_slice(vsr_replica *r, uint64_t start, uint64_t end, uint32_t *count)
{
	*count = 0;
	if (start < r->log.start) start = r->log.start;
	if (end > r->log.head) end = r->log.head;
	if (start > end) return NULL;
	uint32_t n = (uint32_t)(end - start + 1);
	vsr_entry *out = scratch_alloc(r, n * sizeof *out);
	for (uint32_t i = 0; i < n; i++) out[i] = *log_get(&r->log, start + i);
	*count = n;
	return out;
}

uint64_t log_slice_budget(const vsr_replica *r, uint64_t start, uint64_t end, bool from_end)
{
	uint64_t budget = r->cfg.message_bytes_max > 4 * VSR_ENTRY_WIRE_OVERHEAD
				  ? r->cfg.message_bytes_max - 4 * VSR_ENTRY_WIRE_OVERHEAD
				  : 0;
	if (start < r->log.start) start = r->log.start;
	if (end > r->log.head) end = r->log.head;
	if (start > end) return from_end ? start : end;
	uint64_t used = 0;
	if (from_end) {
		uint64_t op = end;
		for (;; op--) {
			uint64_t cost = log_get(&r->log, op)->body_len + VSR_ENTRY_WIRE_OVERHEAD;
			if (used + cost > budget && op != end) return op + 1;
			used += cost;
			if (op == start) return start;
		}
	}
	for (uint64_t op = start; op <= end; op++) {
		uint64_t cost = log_get(&r->log, op)->body_len + VSR_ENTRY_WIRE_OVERHEAD;
		if (used + cost > budget && op != start) return op - 1;
		used += cost;
	}
	return end;
}

static bool entries_verified(const vsr_entry *entries, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		if (vsr_entry_checksum(&entries[i]) != entries[i].checksum) return false;
		if (!vsr_batch_valid(entries[i].body, entries[i].body_len,
				     entries[i].request_count))
			return false;
	}
	return true;
}

uint64_t log_install(vsr_replica *r, const vsr_entry *entries, uint32_t count)
{
	if (!entries_verified(entries, count)) {
		r->stats.messages_dropped++;
		return UINT64_MAX;
	}
	uint32_t i = 0;
	/* Entries below what we hold are at or below our checkpoint: committed. */
	while (i < count && entries[i].op < r->log.start) i++;
	if (i == count) return count ? entries[count - 1].op : UINT64_MAX;
	const vsr_entry *first = &entries[i];
	if (first->op > r->log.head + 1) return UINT64_MAX;
	if (first->parent != log_checksum_at(&r->log, first->op - 1)) return UINT64_MAX;

	bool truncated = false;
	uint64_t truncate_after = 0;
	uint32_t appended_from = UINT32_MAX;
	uint64_t matched = first->op - 1;
	for (; i < count; i++) {
		const vsr_entry *e = &entries[i];
		if (e->op <= r->log.head) {
			if (log_matches(&r->log, e->op, e->checksum)) {
				matched = e->op;
				continue;
			}
			if (BUG(r, VSR_BUG_ACK_CONFLICTING)) {
				/* The bug: keep the stale entry and carry on as if
				 * it were the primary's. */
				matched = e->op;
				break;
			}
			if (e->op <= r->commit) {
				/* A different entry at a committed op: the sender is
				 * wrong or corrupt. Never replace committed state. */
				r->stats.messages_dropped++;
				break;
			}
			log_truncate_after(&r->log, e->op - 1);
			if (!truncated || e->op - 1 < truncate_after) truncate_after = e->op - 1;
			truncated = true;
		}
		if (!log_append(&r->log, e, r->checkpoint.op)) break;
		if (e->timestamp > r->last_timestamp) r->last_timestamp = e->timestamp;
		if (appended_from == UINT32_MAX) appended_from = i;
		matched = e->op;
	}
	uint32_t n = 0;
	vsr_entry *slice = NULL;
	if (appended_from != UINT32_MAX)
		slice = log_slice(r, entries[appended_from].op, r->log.head, &n);
	if (truncated || n > 0) persist_state(r, truncated, truncate_after, slice, n);
	return matched;
}

/* ------------------------------------------------------------------------ */
/* Durability reached: whatever was waiting for it may go out now.           */

void view_durable_reached(vsr_replica *r)
{
	switch (r->status) {
	case VSR_STATUS_VIEW_CHANGE:
		vc_send_votes(r);
		break;
	case VSR_STATUS_NORMAL:
		if (is_primary(r)) normal_try_commit(r);
		else normal_send_ack(r);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------------ */
/* Creation and restart.                                                     */

static void replica_free(vsr_replica *r)
{
	if (r == NULL) return;
	primary_drop_pipeline(r);
	read_free(r);
	log_free(&r->log);
	ct_free(&r->clients);
	vc_reset_votes(r);
	free(r->pipeline);
	free(r->queue);
	free(r->pending);
	checkpoint_fetch_stop(r);
	ct_free(&r->clients_staged);
	vsr_buf_free(&r->chunk_buf);
	scratch_free(r);
	free(r->scratch);
	free(r->actions);
	vsr_buf_free(&r->reply_buf);
	free(r);
}

/* With lease reads, a restarted replica keeps quiet for a primary timeout
 * before it asks anything: it may have acked a lease round just before it
 * crashed, and its RECOVERY counts as "primary lost" at the others
 * (vc_on_recovery), so speaking earlier could help depose a primary whose
 * lease it backs (docs/protocol.md "Reads"). */
static uint64_t restart_quiet_ticks(const vsr_replica *r)
{
	return read_leases_enabled(r) ? r->cfg.timeouts.primary_ticks : 0;
}

/* No valid durable state: the replica knows no history. It recovers as an
 * amnesiac (recovery.c) once it hears of the cluster's history, or begins
 * one at genesis. */
static void start_unjoined(vsr_replica *r)
{
	r->history = 0;
	r->amnesia = true;
	r->status = VSR_STATUS_RECOVERING;
	r->t_retry.armed = true;
	r->t_retry.at = r->now + restart_quiet_ticks(r);
}

static int restart_from(vsr_replica *r, const vsr_durable *d)
{
	const vsr_superblock *sb = &d->superblock;
	if (sb->cluster != r->cfg.cluster) return VSR_ECORRUPT;
	if (sb->history == 0) {
		start_unjoined(r);
		return VSR_OK;
	}
	r->history = sb->history;
	if (sb->log_view > sb->view) return VSR_ECORRUPT;
	int rc = checkpoint_open(r, sb);
	if (rc != VSR_OK) return rc;
	r->commit = r->executed = r->checkpoint.op;
	/* Storage cut a torn or corrupt tail already; re-check the chain so a
	 * bad tail can never be executed or acknowledged. */
	for (uint32_t i = 0; i < d->entry_count; i++) {
		const vsr_entry *e = &d->entries[i];
		if (e->op <= r->checkpoint.op) continue;
		if (e->op != r->log.head + 1) break;
		if (e->parent != log_checksum_at(&r->log, r->log.head)) break;
		if (vsr_entry_checksum(e) != e->checksum) break;
		if (!vsr_batch_valid(e->body, e->body_len, e->request_count)) break;
		if (!log_append(&r->log, e, r->checkpoint.op)) break;
		if (e->timestamp > r->last_timestamp) r->last_timestamp = e->timestamp;
	}
	r->epoch = sb->epoch;
	r->view = sb->view;
	r->log_view = sb->log_view;
	r->durable_view = sb->view;
	r->durable_log_view = sb->log_view;
	r->durable_op = r->log.head;
	r->durable_joined = true;
	/* The superblock's commit is a lower bound of what was committed;
	 * re-execute the committed prefix we hold. */
	uint64_t commit = sb->commit < r->log.head ? sb->commit : r->log.head;
	if (commit < r->checkpoint.op) commit = r->checkpoint.op;
	r->status = VSR_STATUS_RECOVERING;
	r->replaying = true;
	normal_advance_commit(r, commit);
	r->replaying = false;
	/* The first tick starts the recovery protocol. */
	r->t_retry.armed = true;
	r->t_retry.at = r->now + restart_quiet_ticks(r);
	return VSR_OK;
}

int vsr_replica_create(vsr_replica **out, const vsr_config *config,
		       const vsr_state_machine *sm, const vsr_durable *durable,
		       uint64_t now)
{
	*out = NULL;
	if (vsr_config_invalid(config) != NULL) return VSR_EINVAL;
	if (sm == NULL || sm->apply == NULL || sm->digest == NULL || sm->checkpoint_take == NULL ||
	    sm->checkpoint_read == NULL || sm->checkpoint_write == NULL ||
	    sm->checkpoint_install == NULL || sm->checkpoint_open == NULL)
		return VSR_EINVAL;
	vsr_replica *r = xcalloc(1, sizeof *r);
	r->cfg = *config;
	r->sm = *sm;
	r->n = config->replica_count;
	r->self = config->replica;
	r->quorum = (uint8_t)vsr_quorum(r->n);
	r->prng = config->seed ^ 0xA5A5A5A5DEADBEEFull;
	r->now = now;
	log_init(&r->log, config->log_max, 0, vsr_root_checksum(config->cluster));
	ct_init(&r->clients, config->clients_max);
	r->pipeline = xcalloc(config->pipeline_max, sizeof *r->pipeline);
	r->queue = xcalloc(config->request_queue_max, sizeof *r->queue);
	r->reads = xcalloc(config->request_queue_max, sizeof *r->reads);
	r->status = VSR_STATUS_RECOVERING;
	/* One nonce per incarnation: recovery answers name it, so answers to an
	 * earlier incarnation are never counted, and a RECOVERY with another
	 * nonce proves that its sender restarted. */
	r->recovery_nonce = prng_next(&r->prng) | 1;
	if (durable != NULL) {
		int rc = restart_from(r, durable);
		if (rc != VSR_OK) {
			replica_free(r);
			return rc;
		}
	} else {
		start_unjoined(r);
	}
	*out = r;
	return VSR_OK;
}

void vsr_replica_destroy(vsr_replica *r) { replica_free(r); }

/* ------------------------------------------------------------------------ */
/* The step function.                                                        */

static void on_message(vsr_replica *r, const vsr_message *m)
{
	const char *why = vsr_message_invalid(m, r->n);
	if (why != NULL || m->cluster != r->cfg.cluster || m->replica == r->self ||
	    m->type == VSR_MSG_REQUEST || m->type == VSR_MSG_REPLY || m->epoch != r->epoch) {
		r->stats.messages_dropped++;
		return;
	}
	/* Only recovery messages cross histories (they are how a replica joins
	 * one); everything else comes from a member of ours, or is dropped. */
	bool joining = m->type == VSR_MSG_RECOVERY || m->type == VSR_MSG_RECOVERY_RESPONSE;
	if (!joining && (r->history == 0 || m->history != r->history)) {
		r->stats.messages_dropped++;
		return;
	}
	r->stats.messages_in[m->type]++;
	if (!joining) vc_note_heard(r, m->replica);
	switch (m->type) {
	case VSR_MSG_PREPARE: normal_on_prepare(r, m); break;
	case VSR_MSG_PREPARE_OK: normal_on_prepare_ok(r, m); break;
	case VSR_MSG_COMMIT: normal_on_commit(r, m); break;
	case VSR_MSG_START_VIEW_CHANGE: vc_on_start_view_change(r, m); break;
	case VSR_MSG_DO_VIEW_CHANGE: vc_on_do_view_change(r, m); break;
	case VSR_MSG_START_VIEW: vc_on_start_view(r, m); break;
	case VSR_MSG_GET_STATE: st_on_get_state(r, m); break;
	case VSR_MSG_NEW_STATE: st_on_new_state(r, m); break;
	case VSR_MSG_GET_CHECKPOINT: st_on_get_checkpoint(r, m); break;
	case VSR_MSG_CHECKPOINT_CHUNK: st_on_checkpoint_chunk(r, m); break;
	case VSR_MSG_RECOVERY:
		vc_on_recovery(r, m);
		rec_on_recovery(r, m);
		break;
	case VSR_MSG_RECOVERY_RESPONSE: rec_on_recovery_response(r, m); break;
	case VSR_MSG_PRIMARY_LOST: vc_on_primary_lost(r, m); break;
	default: r->stats.messages_dropped++; break;
	}
}

static void on_tick(vsr_replica *r)
{
	switch (r->status) {
	case VSR_STATUS_NORMAL: normal_on_tick(r); break;
	case VSR_STATUS_VIEW_CHANGE: vc_on_tick(r); break;
	case VSR_STATUS_RECOVERING: rec_on_tick(r); break;
	case VSR_STATUS_STATE_TRANSFER: st_on_tick(r); break;
	default: break;
	}
}

static uint64_t next_deadline(const vsr_replica *r)
{
	const timer *ts[] = {&r->t_heartbeat, &r->t_prepare_retry, &r->t_primary,
			     &r->t_view_change, &r->t_retry, &r->t_lost};
	uint64_t d = UINT64_MAX;
	for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
		if (ts[i]->armed && ts[i]->at < d) d = ts[i]->at;
	return d;
}

void vsr_replica_step(vsr_replica *r, const vsr_event *ev, vsr_actions *out)
{
	r->action_count = 0;
	scratch_free(r);
	log_collect(&r->log);
	if (ev->now > r->now) r->now = ev->now;
	r->realtime_ns = ev->realtime_ns;

	switch (ev->type) {
	case VSR_EVENT_TICK: on_tick(r); break;
	case VSR_EVENT_MESSAGE:
		if (ev->message) on_message(r, ev->message);
		break;
	case VSR_EVENT_REQUEST:
		if (ev->message == NULL || ev->message->type != VSR_MSG_REQUEST ||
		    vsr_message_invalid(ev->message, r->n) != NULL ||
		    ev->message->cluster != r->cfg.cluster) {
			r->stats.messages_dropped++;
			break;
		}
		r->stats.messages_in[VSR_MSG_REQUEST]++;
		if (ev->message->request.kind == VSR_REQUEST_QUERY)
			read_on_request(r, ev->message, ev->conn);
		else
			normal_on_request(r, ev->message, ev->conn);
		break;
	case VSR_EVENT_PERSISTED: on_persisted(r, ev->persist_id); break;
	case VSR_EVENT_FLUSH: break;
	case VSR_EVENT_CHECKPOINT_DURABLE: checkpoint_on_durable(r, ev->checkpoint_op); break;
	default: r->stats.messages_dropped++; break;
	}
	if (r->status == VSR_STATUS_NORMAL && is_primary(r) && !ev->more) normal_flush_queue(r);
	/* Last: a query answered now sees everything this step executed. */
	if (r->status == VSR_STATUS_NORMAL && is_primary(r)) read_flush(r, ev->more);

#ifdef VSR_INVARIANTS
	const char *why = vsr_replica_check(r);
	if (why != NULL) {
		/* The simulator reports this itself; a debug host stops here. */
		r->invariant_failure = why;
	}
#endif
	out->items = r->actions;
	out->count = r->action_count;
	out->deadline = next_deadline(r);
}

/* ------------------------------------------------------------------------ */
/* Inspection and invariants.                                                */

static uint64_t replica_digest(const vsr_replica *r)
{
	uint64_t h[2] = {r->sm.digest(r->sm.ctx), ct_digest(&r->clients)};
	return hash64(0xD16E57, h, sizeof h);
}

void vsr_replica_info_get(const vsr_replica *r, vsr_replica_info *out)
{
	vsr_replica_status_get(r, out);
	out->digest = replica_digest(r);
}

void vsr_replica_status_get(const vsr_replica *r, vsr_replica_info *out)
{
	memset(out, 0, sizeof *out);
	out->replica = r->self;
	out->status = r->status;
	out->primary = primary_index(r);
	out->view = r->view;
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->executed = r->executed;
	out->checkpoint_op = r->checkpoint.op;
	out->log_start = r->log.start;
	out->durable_view = r->durable_view;
	out->durable_log_view = r->durable_log_view;
	out->durable_op = r->durable_op;
	out->pipeline = (uint32_t)(r->status == VSR_STATUS_NORMAL && is_primary(r)
					   ? r->log.head - r->commit
					   : 0);
	out->queued = r->queue_count;
	out->sessions = r->clients.count;
	out->history = r->history;
	out->amnesia = r->amnesia;
}

const vsr_entry *vsr_replica_entry(const vsr_replica *r, uint64_t op)
{
	return log_get(&r->log, op);
}

uint64_t vsr_replica_checksum_at(const vsr_replica *r, uint64_t op)
{
	return log_checksum_at(&r->log, op);
}

const vsr_replica_stats *vsr_replica_stats_get(const vsr_replica *r) { return &r->stats; }

const char *vsr_replica_invariant_failure(const vsr_replica *r)
{
	return r->invariant_failure;
}

const char *vsr_replica_check(const vsr_replica *r)
{
	/* I1 */
	if (!(r->checkpoint.op <= r->executed && r->executed <= r->commit &&
	      r->commit <= r->log.head))
		return "I1: checkpoint <= executed <= commit <= op violated";
	if (r->log.start > r->checkpoint.op + 1) return "I1: log starts above the checkpoint";
	if (r->checkpoint_durable.op > r->checkpoint.op)
		return "I1: the durable checkpoint is newer than the current one";
	if (r->log.head - r->log.start + 1 > log_capacity(&r->log)) return "I1: log over capacity";
	/* I2 */
	if (r->log_view > r->view) return "I2: log_view above view";
	if (r->status == VSR_STATUS_NORMAL && r->log_view != r->view &&
	    !BUG(r, VSR_BUG_TRUNCATE_TRANSFER))
		return "I2: normal status with log_view != view";
	/* I3: checked for the last few ops (all of them would be quadratic). */
	uint64_t from = r->log.head > 8 ? r->log.head - 8 : 0;
	if (from < r->log.start) from = r->log.start;
	for (uint64_t op = from; op <= r->log.head && op >= r->log.start; op++) {
		const vsr_entry *e = log_get(&r->log, op);
		if (e->parent != log_checksum_at(&r->log, op - 1)) return "I3: log not hash chained";
	}
	/* I4 */
	if (r->durable_view > r->view) return "I4: durable view above view";
	if (r->durable_log_view > r->log_view) return "I4: durable log_view above log_view";
	if (r->durable_op > r->log.head) return "I4: durable op above op";
	/* I9 */
	if (r->status == VSR_STATUS_NORMAL && is_primary(r)) {
		for (uint32_t i = 0; i < r->cfg.pipeline_max; i++) {
			const pipeline_slot *s = &r->pipeline[i];
			if (s->op == 0) continue;
			if (s->op <= r->commit || s->op > r->log.head)
				return "I9: pipeline slot outside commit+1..op";
		}
	} else if (r->queue_count != 0) {
		return "I9: a non-primary holds queued requests";
	} else if (r->reads_count != 0) {
		return "I9: a non-primary holds pending reads";
	}
	if ((r->reads_count == 0 && r->reads_bytes != 0) ||
	    r->reads_count > r->cfg.request_queue_max)
		return "I9: pending reads out of bounds";
	if ((r->queue_count == 0 && r->queue_bytes != 0) ||
	    r->queue_bytes > r->cfg.request_queue_bytes_max) {
		return "I9: queued bytes out of bounds";
	}
	/* I10 */
	if (r->clients.count > r->clients.max) return "I10: client table over capacity";
	for (uint32_t i = 1; i < r->clients.count; i++)
		if (r->clients.items[i - 1].session >= r->clients.items[i].session)
			return "I10: client table not strictly sorted";
	return NULL;
}
