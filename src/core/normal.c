/* normal.c - normal operation (VRR 4.1, protocol.md 3): requests, batching,
 * pipelined prepares, acknowledgements, commits and execution. */
#include "replica.h"

/* ------------------------------------------------------------------------ */
/* Roles.                                                                    */

static void queue_clear(vsr_replica *r)
{
	for (uint32_t i = 0; i < r->queue_count; i++) {
		queued_request *q = &r->queue[(r->queue_head + i) % r->cfg.request_queue_max];
		free(q->op);
		memset(q, 0, sizeof *q);
	}
	r->queue_head = 0;
	r->queue_count = 0;
	r->queue_bytes = 0;
}

static void slot_clear(pipeline_slot *s)
{
	free(s->requests);
	memset(s, 0, sizeof *s);
}

void primary_drop_pipeline(vsr_replica *r)
{
	if (r->pipeline != NULL)
		for (uint32_t i = 0; i < r->cfg.pipeline_max; i++) slot_clear(&r->pipeline[i]);
	if (r->queue != NULL) queue_clear(r);
	for (uint32_t i = 0; i < r->clients.count; i++) {
		r->clients.items[i].pending_request = 0;
		r->clients.items[i].pending_op = 0;
	}
	r->start_view_pending = false;
	read_fail_all(r);
}

/* A new primary inherits uncommitted ops from the view change: mark their
 * requests in flight so that retries attach instead of being prepared again. */
void normal_mark_inherited_pending(vsr_replica *r)
{
	for (uint64_t op = r->commit + 1; op <= r->log.head; op++) {
		const vsr_entry *e = log_get(&r->log, op);
		/* A slot, so that retries of these requests wait for the reply
		 * (when the ring has room: more inherited ops than pipeline_max
		 * only happen after a restart with a stale commit). */
		pipeline_slot *slot = &r->pipeline[op % r->cfg.pipeline_max];
		if (slot->op == 0 && e->request_count > 0) {
			slot->op = op;
			slot->count = e->request_count;
			slot->requests = xcalloc(e->request_count, sizeof *slot->requests);
		} else {
			slot = NULL;
		}
		vsr_batch_iter it;
		vsr_request q;
		uint32_t index = 0;
		vsr_batch_iter_init(&it, e);
		while (vsr_batch_next(&it, &q)) {
			if (slot != NULL && index < slot->count) {
				slot->requests[index].session = q.session;
				slot->requests[index].request = q.request;
				slot->requests[index].kind = q.kind;
			}
			ct_session *s = q.kind == VSR_REQUEST_OP ? ct_find(&r->clients, q.session) : NULL;
			if (s != NULL && q.request > s->request) {
				s->pending_request = q.request;
				s->pending_op = op;
				s->pending_index = index;
			}
			index++;
		}
	}
}

void normal_become_primary(vsr_replica *r)
{
	assert(is_primary(r));
	set_status(r, VSR_STATUS_NORMAL);
	r->amnesia = false;
	primary_drop_pipeline(r);
	memset(r->acked, 0, sizeof r->acked);
	/* The checkpoints replicas reported stay: each is a fact about a
	 * checkpoint, whatever the view (a newer report replaces it). */
	memset(r->dv_peer_told, 0, sizeof r->dv_peer_told);
	r->dv_certified = (vsr_checkpoint){0};
	memset(r->read_acked, 0, sizeof r->read_acked);
	r->read_round_done = r->read_round; /* no round in flight in this view */
	r->lease_until = 0;
	/* Every backup starts the view as heard: check-quorum counts from here. */
	for (uint8_t i = 0; i < r->n; i++) r->heard_at[i] = r->now;
	timer_stop(&r->t_primary);
	timer_stop(&r->t_view_change);
	timer_stop(&r->t_retry);
	timer_set(r, &r->t_heartbeat, 0, false);
	timer_set(r, &r->t_prepare_retry, r->cfg.timeouts.prepare_retry_ticks, false);
	/* view_change_attempt is kept until the view proves itself (a backup's
	 * ack reaches us): a run of views that never work keeps backing off. */
	if (BUG(r, VSR_BUG_BACKOFF_RESET)) r->view_change_attempt = 0;
	r->repairing = false;
}

void normal_become_backup(vsr_replica *r)
{
	assert(!is_primary(r));
	set_status(r, VSR_STATUS_NORMAL);
	r->amnesia = false; /* we hold a view's log again */
	primary_drop_pipeline(r);
	timer_stop(&r->t_heartbeat);
	timer_stop(&r->t_prepare_retry);
	timer_stop(&r->t_view_change);
	timer_stop(&r->t_retry);
	timer_set(r, &r->t_primary, r->cfg.timeouts.primary_ticks, true);
	/* The backoff is kept until the primary's first message arrives. */
	r->repairing = false;
	r->ack_sent_view = 0;
	r->ack_sent_op = 0;
	r->read_round_seen = 0;
	r->echo_sent_round = 0;
	r->primary_heard_at = 0;
}

/* ------------------------------------------------------------------------ */
/* Requests at the primary.                                                  */

uint8_t queue_admit(const vsr_replica *r, uint32_t count, uint64_t bytes, uint32_t op_len)
{
	if ((uint64_t)VSR_BATCH_REQUEST_HEADER_SIZE + op_len > r->cfg.batch_bytes_max)
		return VSR_REPLY_REJECTED;
	/* Bounded by count and by bytes: a burst of large operations must not
	 * hold more memory than request_queue_bytes_max while it waits. */
	if (count == r->cfg.request_queue_max || bytes + op_len > r->cfg.request_queue_bytes_max)
		return VSR_REPLY_BUSY;
	return VSR_REPLY_OK;
}

void reply_rejected(vsr_message *out)
{
	static const char why[] = "operation larger than the batch limit (batch_bytes_max)";
	out->status = VSR_REPLY_REJECTED;
	out->body = (const uint8_t *)why;
	out->body_len = sizeof why - 1;
}

static void reply_status(vsr_replica *r, const vsr_message *m, uint64_t conn, uint8_t status)
{
	vsr_message *out = emit_reply(r, conn);
	out->status = status;
	out->replica = primary_index(r); /* where the client should go */
	out->request = m->request;
	out->request.op = NULL;
	out->request.op_len = 0;
	out->commit = r->commit;
}

static void waiters_add(waiter_set *w, uint64_t conn)
{
	for (uint32_t i = 0; i < w->count; i++)
		if (w->conns[i] == conn) return;
	if (w->count < VSR_WAITERS_MAX) {
		w->conns[w->count++] = conn;
	} else {
		/* Bounded: the newest connection is the one most likely alive. */
		memmove(&w->conns[0], &w->conns[1], (VSR_WAITERS_MAX - 1) * sizeof w->conns[0]);
		w->conns[VSR_WAITERS_MAX - 1] = conn;
	}
}

static pipeline_slot *slot_of(vsr_replica *r, uint64_t op)
{
	pipeline_slot *s = &r->pipeline[op % r->cfg.pipeline_max];
	return s->op == op ? s : NULL;
}

static bool same_register(const vsr_request *a, uint64_t nonce)
{
	return a->kind == VSR_REQUEST_REGISTER && a->request == nonce;
}

/* Attaches `conn` to the session's request in flight, if it is this one. */
static bool attach_session_pending(vsr_replica *r, ct_session *s, const vsr_request *req,
				   uint64_t conn)
{
	if (s->pending_request != req->request) return false;
	if (s->pending_op != 0) {
		pipeline_slot *slot = slot_of(r, s->pending_op);
		if (slot != NULL && s->pending_index < slot->count)
			waiters_add(&slot->requests[s->pending_index].waiters, conn);
		return true;
	}
	for (uint32_t i = 0; i < r->queue_count; i++) {
		queued_request *q = &r->queue[(r->queue_head + i) % r->cfg.request_queue_max];
		if (q->kind == VSR_REQUEST_OP && q->session == req->session &&
		    q->request == req->request) {
			waiters_add(&q->waiters, conn);
			return true;
		}
	}
	return false;
}

/* Attaches `conn` to an identical REGISTER already prepared or queued
 * (protocol.md 8.4: a retried duplicate must not starve). Registrations are
 * rare, so a scan of the uncommitted suffix is fine here. */
static bool attach_in_flight(vsr_replica *r, const vsr_request *req, uint64_t conn)
{
	for (uint64_t op = r->commit + 1; op <= r->log.head; op++) {
		const vsr_entry *e = log_get(&r->log, op);
		vsr_batch_iter it;
		vsr_request q;
		uint32_t index = 0;
		vsr_batch_iter_init(&it, e);
		while (vsr_batch_next(&it, &q)) {
			if (same_register(&q, req->request)) {
				pipeline_slot *s = slot_of(r, op);
				if (s != NULL && index < s->count)
					waiters_add(&s->requests[index].waiters, conn);
				/* Without a slot (prepared in an earlier view) the
				 * client's retry after commit gets the stored reply. */
				return true;
			}
			index++;
		}
	}
	for (uint32_t i = 0; i < r->queue_count; i++) {
		queued_request *q = &r->queue[(r->queue_head + i) % r->cfg.request_queue_max];
		vsr_request qr = {.session = q->session, .request = q->request, .kind = q->kind};
		if (same_register(&qr, req->request)) {
			waiters_add(&q->waiters, conn);
			return true;
		}
	}
	return false;
}

static void resend_stored(vsr_replica *r, const vsr_message *m, uint64_t conn,
			  const ct_session *s)
{
	vsr_message *out = emit_reply(r, conn);
	out->replica = r->self;
	out->request.session = s->session;
	out->request.kind = m->request.kind;
	out->commit = r->commit;
	if (m->request.kind == VSR_REQUEST_REGISTER && !BUG(r, VSR_BUG_REGISTER_LAST_REPLY)) {
		/* The registration's own answer, not the session's last reply. */
		out->status = VSR_REPLY_OK;
		out->request.request = s->nonce;
		out->reply_op = s->registered_op;
		return;
	}
	out->status = s->reply_status;
	out->request.request = s->request;
	out->reply_op = s->last_op;
	out->timestamp = s->reply_timestamp;
	if (s->reply_len > vsr_reply_bytes_max(&r->cfg)) {
		/* Stored under a larger limit (the configuration changed since):
		 * it cannot travel now. Say so rather than send nothing. */
		static const char why[] = "the stored reply exceeds the current reply limit";
		out->status = VSR_REPLY_ERROR;
		out->body = (const uint8_t *)why;
		out->body_len = sizeof why - 1;
		return;
	}
	if (s->reply_len) {
		uint8_t *body = scratch_alloc(r, s->reply_len);
		memcpy(body, s->reply, s->reply_len);
		out->body = body;
		out->body_len = s->reply_len;
	}
}

/* The REGISTER that opens `session` is in our log but not executed yet: a
 * new primary inherited it from the view change (finding 7). The session
 * is about to exist, so "evicted" (a final answer) would be wrong. */
static bool register_pending(const vsr_replica *r, uint64_t session)
{
	uint64_t op = ct_session_op(session);
	if (op <= r->executed || op > r->log.head) return false;
	const vsr_entry *e = log_get(&r->log, op);
	if (e == NULL) return false;
	vsr_batch_iter it;
	vsr_request q;
	uint32_t index = 0;
	vsr_batch_iter_init(&it, e);
	while (vsr_batch_next(&it, &q)) {
		if (index == ct_session_index(session)) return q.kind == VSR_REQUEST_REGISTER;
		index++;
	}
	return false;
}

void normal_on_request(vsr_replica *r, const vsr_message *m, uint64_t conn)
{
	const vsr_request *req = &m->request;
	if (r->history != 0 && req->kind == VSR_REQUEST_OP && m->history != r->history) {
		/* A session of another history: every replica lost its state
		 * since, and a new history began. Its number may well name a
		 * session of ours; never apply it there. */
		reply_status(r, m, conn, VSR_REPLY_HISTORY);
		return;
	}
	/* An abdicated primary (it heard no quorum) takes nothing new: its view
	 * is about to end. */
	if (r->status != VSR_STATUS_NORMAL || !is_primary(r) || r->start_view_pending ||
	    r->suspecting) {
		reply_status(r, m, conn, VSR_REPLY_NOT_PRIMARY);
		return;
	}
	if (req->kind == VSR_REQUEST_REGISTER) {
		ct_session *s = ct_find_nonce(&r->clients, req->request);
		if (s != NULL) {
			r->stats.requests_deduplicated++;
			resend_stored(r, m, conn, s);
			return;
		}
		if (attach_in_flight(r, req, conn)) {
			r->stats.requests_deduplicated++;
			return;
		}
	} else {
		ct_session *s = ct_find(&r->clients, req->session);
		if (s == NULL) {
			/* Not yet opened (retry once it is), or really gone. */
			reply_status(r, m, conn,
				     register_pending(r, req->session) ? VSR_REPLY_BUSY
								       : VSR_REPLY_EVICTED);
			return;
		}
		if (req->request < s->request ||
		    (s->pending_request != 0 && req->request < s->pending_request)) {
			/* Older than the last one committed or in flight: the client
			 * has moved on and this is a delayed retry. */
			r->stats.requests_deduplicated++;
			return;
		}
		if (req->request == s->request) {
			r->stats.requests_deduplicated++;
			resend_stored(r, m, conn, s);
			return;
		}
		if (attach_session_pending(r, s, req, conn)) {
			r->stats.requests_deduplicated++;
			return;
		}
	}
	uint8_t admit = queue_admit(r, r->queue_count, r->queue_bytes, req->op_len);
	if (admit == VSR_REPLY_REJECTED) {
		/* It could never be prepared: say so rather than wedge the log. */
		vsr_message *out = emit_reply(r, conn);
		out->replica = r->self;
		out->request = *req;
		out->request.op = NULL;
		out->request.op_len = 0;
		reply_rejected(out);
		return;
	}
	if (admit == VSR_REPLY_BUSY) {
		reply_status(r, m, conn, VSR_REPLY_BUSY);
		return;
	}
	queued_request *q = &r->queue[(r->queue_head + r->queue_count) % r->cfg.request_queue_max];
	r->queue_count++;
	memset(q, 0, sizeof *q);
	q->session = req->session;
	q->request = req->request;
	q->kind = req->kind;
	q->op_len = req->op_len;
	r->queue_bytes += req->op_len;
	if (req->op_len) {
		q->op = xmalloc(req->op_len);
		memcpy(q->op, req->op, req->op_len);
	}
	waiters_add(&q->waiters, conn);
	if (req->kind == VSR_REQUEST_OP) {
		ct_session *s = ct_find(&r->clients, req->session);
		s->pending_request = req->request;
		s->pending_op = 0;
	}
}

/* ------------------------------------------------------------------------ */
/* Prepares.                                                                 */

void primary_send_prepare(vsr_replica *r, uint64_t op, int to)
{
	uint32_t n;
	vsr_entry *e = log_slice(r, op, op, &n);
	if (n != 1) return;
	vsr_message m;
	memset(&m, 0, sizeof m);
	message_header(r, &m, VSR_MSG_PREPARE);
	m.op = op;
	m.commit = r->commit;
	m.nonce = r->read_round;
	m.entries = e;
	m.entry_count = 1;
	if (to < 0) {
		emit_broadcast(r, &m);
	} else {
		vsr_message *out = emit_send(r, (uint8_t)to, VSR_MSG_PREPARE);
		*out = m;
	}
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Takes as many queued requests as fit one entry, prepares the entry and
 * sends it. Called at the end of every step at the primary, so requests that
 * arrive while the pipeline is full are batched together. */
void normal_flush_queue(vsr_replica *r)
{
	if (r->start_view_pending || r->suspecting) return;
	while (r->queue_count > 0 && r->log.head - r->commit < r->cfg.pipeline_max) {
		uint32_t count = 0;
		size_t bytes = 0;
		while (count < r->queue_count && count < r->cfg.batch_requests_max) {
			queued_request *q = &r->queue[(r->queue_head + count) % r->cfg.request_queue_max];
			size_t need = VSR_BATCH_REQUEST_HEADER_SIZE + q->op_len;
			if (count > 0 && bytes + need > r->cfg.batch_bytes_max) break;
			bytes += need;
			count++;
		}
		uint8_t *body = xmalloc(bytes);
		pipeline_request *preq = xcalloc(count, sizeof *preq);
		uint8_t *p = body;
		for (uint32_t i = 0; i < count; i++) {
			queued_request *q = &r->queue[(r->queue_head + i) % r->cfg.request_queue_max];
			put_le(p, q->session, 8);
			put_le(p + 8, q->request, 8);
			p[16] = q->kind;
			put_le(p + 17, q->op_len, 4);
			if (q->op_len) memcpy(p + VSR_BATCH_REQUEST_HEADER_SIZE, q->op, q->op_len);
			p += VSR_BATCH_REQUEST_HEADER_SIZE + q->op_len;
			preq[i].session = q->session;
			preq[i].request = q->request;
			preq[i].kind = q->kind;
			preq[i].waiters = q->waiters;
		}
		uint64_t ts = r->realtime_ns > r->last_timestamp ? r->realtime_ns : r->last_timestamp + 1;
		vsr_entry e = {
			.parent = log_checksum_at(&r->log, r->log.head),
			.op = r->log.head + 1,
			.view = r->view,
			.timestamp = ts,
			.request_count = count,
			.body_len = (uint32_t)bytes,
			.body = body,
		};
		e.checksum = vsr_entry_checksum(&e);
		bool ok = log_append(&r->log, &e, r->checkpoint.op);
		free(body);
		if (!ok) {
			/* The log is full of unexecuted entries: wait for commits. */
			free(preq);
			return;
		}
		r->last_timestamp = ts;
		for (uint32_t i = 0; i < count; i++) {
			queued_request *q = &r->queue[(r->queue_head + i) % r->cfg.request_queue_max];
			ct_session *cs = q->kind == VSR_REQUEST_OP ? ct_find(&r->clients, q->session) : NULL;
			if (cs != NULL && cs->pending_request == q->request) {
				cs->pending_op = e.op;
				cs->pending_index = i;
			}
			r->queue_bytes -= q->op_len;
			free(q->op);
			memset(q, 0, sizeof *q);
		}
		r->queue_head = (r->queue_head + count) % r->cfg.request_queue_max;
		r->queue_count -= count;
		pipeline_slot *s = &r->pipeline[e.op % r->cfg.pipeline_max];
		slot_clear(s);
		s->op = e.op;
		s->count = count;
		s->requests = preq;
		uint32_t n;
		vsr_entry *slice = log_slice(r, e.op, e.op, &n);
		persist_state(r, false, 0, slice, n);
		primary_send_prepare(r, e.op, -1);
		timer_set(r, &r->t_heartbeat, r->cfg.timeouts.heartbeat_ticks, false);
	}
}

/* The common gate of PREPARE and COMMIT, the primary's messages: true when
 * a normal backup of the message's view should process it (and the primary
 * is then known alive). A newer view we missed starts a state transfer. */
static bool backup_accepts_primary_message(vsr_replica *r, const vsr_message *m)
{
	if (r->status == VSR_STATUS_RECOVERING) return false;
	if (m->view < r->view && GUARD(r, VSR_GUARD_PRIMARY_MSG_OLD_VIEW)) return false;
	if (m->replica != vsr_primary_of(m->view, r->n)) {
		r->stats.messages_dropped++;
		return false;
	}
	if (m->view > r->view) {
		/* We missed a view change: learn the new view's log first. */
		st_start(r, m->view);
		return false;
	}
	if (r->status != VSR_STATUS_NORMAL || is_primary(r)) return false;
	timer_set(r, &r->t_primary, r->cfg.timeouts.primary_ticks, true);
	r->primary_heard_at = r->now;
	if (m->nonce > r->read_round_seen) r->read_round_seen = m->nonce;
	vc_suspicion_clear(r); /* the primary is alive after all */
	r->view_change_attempt = 0; /* the view works */
	return true;
}

void normal_on_prepare(vsr_replica *r, const vsr_message *m)
{
	if (!backup_accepts_primary_message(r, m)) return;
	const vsr_entry *e = &m->entries[0];
	if (e->op != m->op) {
		r->stats.messages_dropped++;
		return;
	}
	bool duplicate = e->op <= r->log.head &&
			 log_matches(&r->log, e->op, e->checksum);
	if (e->op > r->log.head + 1) {
		st_request_repair(r);
	} else if (!duplicate) {
		uint64_t matched = log_install(r, e, 1);
		if (matched == UINT64_MAX) st_request_repair(r);
	}
	uint64_t c = m->commit < r->log.head ? m->commit : r->log.head;
	normal_advance_commit(r, c);
	dv_repair_from_record(r);
	if (r->status != VSR_STATUS_NORMAL) return; /* a divergence repair began */
	if (duplicate) r->ack_sent_op = 0; /* the primary may have missed our ack */
	normal_send_ack(r);
}

/* A read round echo that acknowledges nothing (op 0, checksum 0: no real
 * ack carries checksum 0, an empty log's is the root's): what a normal
 * backup sends for a new round while its view's log is not durable yet. The
 * echo needs no disk: it only says "I am in this view now" (docs/protocol.md
 * "Reads outside the log"), and a view it voted in before is durable, so
 * neither a crash nor a restart brings it back into an older one. */
static void send_round_echo(vsr_replica *r)
{
	if (r->amnesia || r->read_round_seen <= r->echo_sent_round) return;
	vsr_message *out = emit_send(r, primary_index(r), VSR_MSG_PREPARE_OK);
	out->op = 0;
	out->checksum = 0;
	out->commit = r->commit;
	out->nonce = r->read_round_seen;
	r->echo_sent_round = r->read_round_seen;
}

void normal_send_ack(vsr_replica *r)
{
	if (r->status != VSR_STATUS_NORMAL || is_primary(r)) return;
	/* Log matching on ack (I5): only what is durable, in a view whose
	 * superblock is durable, in a log that is this view's log. */
	if (r->durable_view != r->view ||
	    (r->durable_log_view != r->view && !BUG(r, VSR_BUG_ACK_EARLY))) {
		send_round_echo(r);
		return;
	}
	/* Nor before the superblock says we are a member again (an amnesiac
	 * restarted from one that does not would be unjoined). */
	if (!r->durable_joined) return;
	uint64_t op = r->durable_op;
	if (r->ack_sent_view == r->view && op <= r->ack_sent_op) return;
	/* Nothing to ack below what we hold (a checkpoint was just installed).
	 * An empty log acks op 0: the primary's check-quorum hears it. */
	if (op + 1 < r->log.start && !BUG(r, VSR_BUG_ACK_BELOW_LOG)) return;
	vsr_message *out = emit_send(r, primary_index(r), VSR_MSG_PREPARE_OK);
	out->op = op;
	out->commit = r->commit;
	out->checksum = log_checksum_at(&r->log, op);
	dv_fill_ack(r, out);
	out->nonce = r->read_round_seen; /* the read round we back */
	r->echo_sent_round = r->read_round_seen;
	r->ack_sent_view = r->view;
	r->ack_sent_op = op;
}

/* Check-quorum: replicas (ourselves included) heard in this view lately. */
static uint32_t heard_count(const vsr_replica *r)
{
	/* A backup acks only once its write of our PREPARE or START_VIEW is
	 * durable: a slow disk must not read as a lost quorum. */
	uint64_t window = VSR_ABDICATE_PRIMARY_TIMEOUTS * (uint64_t)r->cfg.timeouts.primary_ticks +
			  disk_slack(r);
	uint32_t count = 1;
	/* A backup that voted in a higher view has left ours, whatever it
	 * said before. */
	for (uint8_t i = 0; i < r->n; i++)
		if (i != r->self && r->heard_at[i] + window >= r->now && r->above_view[i] <= r->view)
			count++;
	return count;
}

void normal_abdicate(vsr_replica *r)
{
	assert(r->status == VSR_STATUS_NORMAL && is_primary(r) && !r->suspecting);
	timer_stop(&r->t_heartbeat);
	timer_stop(&r->t_prepare_retry);
	vc_primary_lost(r);
}

void normal_backup_left(vsr_replica *r, uint8_t from)
{
	assert(r->status == VSR_STATUS_NORMAL && is_primary(r));
	(void)from; /* its vote is in above_view, which heard_count reads */
	if (!r->suspecting && !r->start_view_pending && heard_count(r) < r->quorum &&
	    !BUG(r, VSR_BUG_NO_ABDICATION))
		normal_abdicate(r);
}

void normal_heard_backup(vsr_replica *r, uint8_t from)
{
	assert(r->status == VSR_STATUS_NORMAL && is_primary(r));
	/* The backup is in our view and hears us: check-quorum counts it. */
	r->heard_at[from] = r->now;
	if (r->suspecting && heard_count(r) >= r->quorum && !dv_must_abdicate(r)) {
		/* We abdicated, but a quorum answers again before any view
		 * change took us away (both backups stalled in one long step,
		 * a checkpoint at the same op): take the view back. Abdication
		 * is silence, not a promise, so nothing forbids it. */
		vc_suspicion_clear(r);
		timer_set(r, &r->t_heartbeat, 0, false);
		timer_set(r, &r->t_prepare_retry, 0, false);
	}
}

void normal_on_prepare_ok(vsr_replica *r, const vsr_message *m)
{
	if (m->view > r->view && r->status != VSR_STATUS_RECOVERING) {
		/* A replica acks in a view we do not know: we are behind. */
		st_start(r, m->view);
		return;
	}
	if (r->status != VSR_STATUS_NORMAL || !is_primary(r) || m->view != r->view) return;
	normal_heard_backup(r, m->replica);
	read_on_ack(r, m->replica, m->nonce);
	if (m->op == 0 && m->checksum == 0) return; /* a read round echo: acks nothing */
	if (m->op > r->log.head || !log_matches(&r->log, m->op, m->checksum)) {
		GUARD(r, VSR_GUARD_PREPARE_OK_MISMATCH);
		r->stats.messages_dropped++;
		return;
	}
	if (m->op > r->acked[m->replica]) r->acked[m->replica] = m->op;
	r->view_change_attempt = 0; /* the view works */
	dv_on_prepare_ok(r, m);
	normal_try_commit(r);
}

void normal_try_commit(vsr_replica *r)
{
	if (r->status != VSR_STATUS_NORMAL || !is_primary(r)) return;
	if (r->start_view_pending) {
		/* The new view's log and view are durable: announce it (I6). */
		if (r->durable_view != r->view || r->durable_log_view != r->view) return;
		r->start_view_pending = false;
		vc_send_start_view(r, -1);
	}
	uint64_t self = (r->durable_view == r->view && r->durable_log_view == r->view)
				? r->durable_op
				: r->commit;
	uint32_t need = r->quorum;
	if (BUG(r, VSR_BUG_QUORUM_MINUS_ONE) && need > 1) need--;
	uint64_t best = r->commit;
	/* The primary's own durable write is part of every quorum (protocol.md
	 * 3.4): nothing commits that is not on the primary's disk. */
	uint64_t top = self < r->log.head ? self : r->log.head;
	for (uint64_t op = top; op > r->commit; op--) {
		uint32_t count = 1;
		for (uint8_t i = 0; i < r->n; i++)
			if (i != r->self && r->acked[i] >= op) count++;
		if (count >= need) {
			best = op;
			break;
		}
	}
	normal_advance_commit(r, best);
}

void normal_on_commit(vsr_replica *r, const vsr_message *m)
{
	if (!backup_accepts_primary_message(r, m)) return;
	if (m->commit > r->log.head) st_request_repair(r);
	normal_advance_commit(r, m->commit < r->log.head ? m->commit : r->log.head);
	dv_on_commit(r, m);
	if (r->status != VSR_STATUS_NORMAL) return; /* a divergence repair began */
	/* Every heartbeat gets an ack: acks can be lost while the primary has
	 * not committed what we hold, and an idle primary's check-quorum needs
	 * to hear its backups. The record of the last ack is forgotten, view
	 * included (no view is UINT64_MAX): an empty log (a new history no one
	 * has written to yet) acks op 0, which clearing ack_sent_op alone would
	 * still swallow, and an ack this step cannot send yet (its view not
	 * durable) goes out with the next persist. */
	r->ack_sent_op = 0;
	r->ack_sent_view = UINT64_MAX;
	normal_send_ack(r);
}

/* ------------------------------------------------------------------------ */
/* Commit and execution.                                                     */

void normal_advance_commit(vsr_replica *r, uint64_t commit)
{
	if (commit > r->log.head) commit = r->log.head;
	if (commit <= r->commit) return;
	r->commit = commit;
	normal_execute(r);
}

static void reply_waiters(vsr_replica *r, const vsr_entry *e, const pipeline_request *pr,
			  uint8_t status, uint64_t session)
{
	if (pr == NULL || pr->waiters.count == 0) return;
	uint8_t *body = NULL;
	uint32_t len = (uint32_t)r->reply_buf.len;
	if (len) {
		body = scratch_alloc(r, len);
		memcpy(body, r->reply_buf.data, len);
	}
	for (uint32_t i = 0; i < pr->waiters.count; i++) {
		vsr_message *out = emit_reply(r, pr->waiters.conns[i]);
		out->status = status;
		out->replica = r->self;
		out->request.kind = pr->kind;
		out->request.session = session;
		out->request.request = pr->request; /* REGISTER: the nonce */
		out->reply_op = e->op;
		out->timestamp = e->timestamp;
		out->commit = r->commit;
		out->body = body;
		out->body_len = len;
	}
}

static void execute_entry(vsr_replica *r, const vsr_entry *e)
{
	bool primary = r->status == VSR_STATUS_NORMAL && is_primary(r);
	pipeline_slot *slot = primary ? slot_of(r, e->op) : NULL;
	vsr_batch_iter it;
	vsr_request req;
	uint32_t index = 0;
	vsr_batch_iter_init(&it, e);
	while (vsr_batch_next(&it, &req)) {
		uint8_t status;
		uint64_t session;
		ct_execute_request(r, e, &req, index, &status, &session);
		if (slot != NULL && index < slot->count && status != CT_NO_REPLY)
			reply_waiters(r, e, &slot->requests[index], status, session);
		index++;
	}
	if (slot != NULL) slot_clear(slot);
	r->executed = e->op;
	r->stats.ops_committed++;
	if (r->executed % r->cfg.checkpoint_interval == 0) checkpoint_take(r);
}

void normal_execute(vsr_replica *r)
{
	while (r->executed < r->commit) {
		const vsr_entry *e = log_get(&r->log, r->executed + 1);
		assert(e != NULL);
		execute_entry(r, e);
	}
}

/* ------------------------------------------------------------------------ */
/* Timers.                                                                   */

void normal_on_tick(vsr_replica *r)
{
	if (r->suspecting) {
		/* Lost the primary, or abdicated: say so again until a quorum
		 * agrees or the primary is heard. */
		vc_lost_tick(r);
		return;
	}
	if (is_primary(r)) {
		if (r->start_view_pending) {
			/* Our own disk holds the view back, not the backups. */
			for (uint8_t i = 0; i < r->n; i++) r->heard_at[i] = r->now;
		} else if ((heard_count(r) < r->quorum && !BUG(r, VSR_BUG_NO_ABDICATION)) ||
			   dv_must_abdicate(r)) {
			/* Abdication (finding 5): no quorum heard us for a while, so
			 * nothing can commit, while backups that still receive our
			 * PREPAREs and COMMITs would stay loyal forever. Fall silent,
			 * so that they lose us and elect another primary. */
			normal_abdicate(r);
			return;
		}
		if (timer_fired(r, &r->t_heartbeat)) {
			if (r->start_view_pending) {
				/* still waiting for the disk */
			} else {
				vsr_message m;
				memset(&m, 0, sizeof m);
				message_header(r, &m, VSR_MSG_COMMIT);
				m.commit = r->commit;
				m.op = r->log.head;
				m.checksum = log_checksum_at(&r->log, r->commit);
				dv_fill_commit(r, &m);
				m.nonce = read_heartbeat_round(r);
				emit_broadcast(r, &m);
			}
			timer_set(r, &r->t_heartbeat, r->cfg.timeouts.heartbeat_ticks, false);
		}
		if (timer_fired(r, &r->t_prepare_retry)) {
			if (!r->start_view_pending) {
				for (uint8_t i = 0; i < r->n; i++) {
					if (i == r->self) continue;
					uint64_t from = r->acked[i] > r->commit ? r->acked[i] : r->commit;
					uint32_t sent = 0;
					for (uint64_t op = from + 1; op <= r->log.head && sent < r->cfg.pipeline_max; op++, sent++)
						primary_send_prepare(r, op, i);
				}
			}
			timer_set(r, &r->t_prepare_retry, r->cfg.timeouts.prepare_retry_ticks, false);
		}
		return;
	}
	if (timer_fired(r, &r->t_primary)) {
		/* Pre-vote: lost the primary, but the view changes only when a
		 * quorum lost it too. */
		timer_stop(&r->t_primary);
		vc_primary_lost(r);
		return;
	}
	if (r->repairing && timer_fired(r, &r->t_retry)) st_request_repair(r);
}
