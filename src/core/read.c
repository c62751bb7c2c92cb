/* read.c - read-only queries answered outside the log (protocol.md 10,
 * docs/protocol.md "Reads").
 *
 * A QUERY is never prepared. The core decides when and by whom it may be
 * answered and emits VSR_ACTION_QUERY; the host runs the state machine's
 * read-only hook against its state as it is right after the step, which is
 * the state executed through reply_op.
 *
 * LINEARIZABLE (ReadIndex, as etcd): the primary notes the op it has
 * prepared when the read arrives (its log head, not only its commit: a new
 * primary may hold ops committed in an earlier view that it does not yet
 * know are), then waits for (1) a read round started after the arrival to be
 * echoed by a quorum in its view, which proves no newer view had started by
 * the arrival, so every op committed before it is in our log at or below the
 * noted op, and (2) its execution to reach the noted op. Rounds ride on
 * PREPARE and COMMIT (field `nonce`); backups echo the highest round seen in
 * every PREPARE_OK; one round serves every read that arrived before it began.
 *
 * LEASE: a quorum's echo of a round started at tick t gives the primary a
 * lease until t + primary_ticks * (1 - drift) - 2 - margin: until then no
 * replica of that quorum enters a newer view (the promise kept by
 * read_lease_promise_holds and the guards that call it), so no newer view
 * can start. Only with a configured drift bound.
 *
 * STALE: any replica that holds its history answers at once; the reply is
 * labelled and names the op its state reflects.
 *
 * Failure modes: a primary that leaves its role or view, or abdicates,
 * refuses every pending read with NOT_PRIMARY (the client retries at the
 * primary it names); a full read queue answers BUSY. */
#include "replica.h"

/* Rounds in flight at once: a new one starts for every burst of reads,
 * so a read waits for at most one round started after it. */
#define READ_ROUNDS_IN_FLIGHT_MAX 4u
_Static_assert(READ_ROUNDS_IN_FLIGHT_MAX <= VSR_READ_ROUND_SLOTS, "a send time per round in flight");

bool read_leases_enabled(const vsr_replica *r)
{
	return r->cfg.lease_drift_ppm != 0;
}

/* Lease length in ticks: the backups' suspicion timeout as the primary's
 * clock may see it, less one tick of rounding at each end and the margin. */
static uint64_t lease_ticks(const vsr_replica *r)
{
	uint64_t p = r->cfg.timeouts.primary_ticks;
	uint64_t scaled = p * (1000000u - r->cfg.lease_drift_ppm) / 1000000u;
	uint64_t cut = 2u + r->cfg.lease_margin_ticks;
	return scaled > cut ? scaled - cut : 0;
}

bool read_lease_promise_holds(const vsr_replica *r)
{
	return read_leases_enabled(r) && !is_primary(r) && r->primary_heard_at != 0 &&
	       r->now < r->primary_heard_at + r->cfg.timeouts.primary_ticks;
}

static bool primary_serving(const vsr_replica *r)
{
	/* The planted bug trusts the role alone: no round, and no notice of
	 * its own abdication either (a primary that lost its quorum). */
	if (BUG(r, VSR_BUG_READ_NO_ROUND))
		return r->status == VSR_STATUS_NORMAL && is_primary(r) && !r->start_view_pending;
	return r->status == VSR_STATUS_NORMAL && is_primary(r) && !r->start_view_pending &&
	       !r->suspecting && !r->diverged;
}

static vsr_message *read_reply(vsr_replica *r, uint64_t conn, const vsr_message *m)
{
	vsr_message *out = emit_reply(r, conn);
	out->replica = r->self;
	out->request.session = m->request.session;
	out->request.request = m->request.request;
	out->request.kind = VSR_REQUEST_QUERY;
	out->read_mode = m->read_mode;
	out->commit = r->commit;
	return out;
}

static vsr_message *read_refuse(vsr_replica *r, uint64_t conn, const vsr_message *m,
				uint8_t status)
{
	vsr_message *out = read_reply(r, conn, m);
	out->status = status;
	out->replica = primary_index(r); /* where the client should go */
	r->stats.reads_failed++;
	return out;
}

/* Emits the action that answers one read from the state executed now. */
static void read_answer(vsr_replica *r, uint64_t conn, uint64_t session, uint64_t request,
			uint8_t mode, uint8_t *op, uint32_t op_len)
{
	vsr_action *a = emit_query(r, conn);
	vsr_message *out = &a->message;
	out->status = VSR_REPLY_OK;
	out->replica = r->self;
	out->request.session = session;
	out->request.request = request;
	out->request.kind = VSR_REQUEST_QUERY;
	out->read_mode = mode;
	out->reply_op = r->executed;
	out->commit = r->commit;
	const vsr_entry *e = log_get(&r->log, r->executed);
	out->timestamp = e != NULL ? e->timestamp
		       : r->executed == r->checkpoint.op ? r->checkpoint.timestamp
							  : 0;
	a->query_op = op;
	a->query_op_len = op_len;
	r->stats.reads[mode]++;
}

void read_on_request(vsr_replica *r, const vsr_message *m, uint64_t conn)
{
	assert(m->request.kind == VSR_REQUEST_QUERY && m->read_mode < VSR_READ_MODE_COUNT);
	const vsr_request *req = &m->request;
	if (m->read_mode == VSR_READ_STALE) {
		/* Any replica with a history: its executed state is a prefix of
		 * the committed history (executed <= commit, I1). */
		/* Nor a state known to differ from a quorum's (divergence.c). */
		if (r->history == 0 || r->amnesia || r->diverged) {
			read_refuse(r, conn, m, VSR_REPLY_NOT_PRIMARY);
			return;
		}
		uint8_t *op = NULL;
		if (req->op_len) {
			op = scratch_alloc(r, req->op_len);
			memcpy(op, req->op, req->op_len);
		}
		read_answer(r, conn, req->session, req->request, VSR_READ_STALE, op, req->op_len);
		return;
	}
	if (!primary_serving(r)) {
		read_refuse(r, conn, m, VSR_REPLY_NOT_PRIMARY);
		return;
	}
	/* As a request's (queue_admit): an operation larger than a batch can
	 * never be answered, so REJECTED, not BUSY (which a client retries). */
	uint8_t admit = queue_admit(r, r->reads_count, r->reads_bytes, req->op_len);
	if (admit != VSR_REPLY_OK) {
		vsr_message *out = read_refuse(r, conn, m, admit);
		if (admit == VSR_REPLY_REJECTED)
			reply_rejected(out);
		return;
	}
	pending_read *p = &r->reads[(r->reads_head + r->reads_count) % r->cfg.request_queue_max];
	r->reads_count++;
	memset(p, 0, sizeof *p);
	p->conn = conn;
	p->session = req->session;
	p->request = req->request;
	p->op_len = req->op_len;
	r->reads_bytes += req->op_len;
	if (req->op_len) {
		p->op = xmalloc(req->op_len);
		memcpy(p->op, req->op, req->op_len);
	}
	/* The op the answer must reflect. Ops above the commit that this
	 * primary prepared in its own view were never answered to anyone (only
	 * it replies in this view, after committing), so a read need not wait
	 * for them; an inherited op above the commit may have been committed,
	 * and answered, in an earlier view, so then the whole log counts. */
	const vsr_entry *first = log_get(&r->log, r->commit + 1);
	p->arrival_op = first == NULL || first->view == r->view ? r->commit : r->log.head;
	if (m->read_mode == VSR_READ_LEASE && read_leases_enabled(r) && r->now < r->lease_until) {
		p->mode = VSR_READ_LEASE;
		p->round = 0;
	} else {
		p->mode = VSR_READ_LINEARIZABLE;
		/* The next round to start: it begins after this arrival. */
		p->round = BUG(r, VSR_BUG_READ_NO_ROUND) ? 0 : r->read_round + 1;
	}
	if (p->round > r->read_round_wanted) r->read_round_wanted = p->round;
	/* It may be answerable at once (a lease, or no round needed). */
	if (p->round <= r->read_round_done) r->reads_dirty = true;
}

void read_on_ack(vsr_replica *r, uint8_t from, uint64_t round)
{
	assert(from < r->n && from != r->self);
	/* Echoes never exceed what we sent in this view. */
	if (round > r->read_round) return;
	if (round > r->read_acked[from]) r->read_acked[from] = round;
}

/* The highest round a quorum (ourselves included) has echoed. */
static uint64_t read_round_confirmed(const vsr_replica *r)
{
	if (r->quorum <= 1) return r->read_round;
	uint64_t best[VSR_REPLICAS_MAX];
	uint32_t k = 0;
	for (uint8_t i = 0; i < r->n; i++)
		if (i != r->self) best[k++] = r->read_acked[i];
	/* Partial selection sort: the (quorum - 1)-th largest. */
	uint32_t need = r->quorum - 1u;
	for (uint32_t i = 0; i < need; i++) {
		uint32_t max = i;
		for (uint32_t j = i + 1; j < k; j++)
			if (best[j] > best[max]) max = j;
		uint64_t t = best[i];
		best[i] = best[max];
		best[max] = t;
	}
	return best[need - 1];
}

static void read_round_begin(vsr_replica *r)
{
	assert(r->read_round - r->read_round_done < READ_ROUNDS_IN_FLIGHT_MAX);
	r->read_round++;
	r->read_round_sent_at[r->read_round % VSR_READ_ROUND_SLOTS] = r->now;
	r->read_round_slot[r->read_round % VSR_READ_ROUND_SLOTS] = r->read_round;
	r->stats.read_rounds++;
}

static void read_start_round(vsr_replica *r)
{
	read_round_begin(r);
	if (r->n > 1) {
		vsr_message m;
		memset(&m, 0, sizeof m);
		message_header(r, &m, VSR_MSG_COMMIT);
		m.commit = r->commit;
		m.op = r->log.head;
		m.checksum = log_checksum_at(&r->log, r->commit);
		m.nonce = r->read_round;
		emit_broadcast(r, &m);
		timer_set(r, &r->t_heartbeat, r->cfg.timeouts.heartbeat_ticks, false);
	}
}

uint64_t read_heartbeat_round(vsr_replica *r)
{
	/* Leases are kept fresh by starting a round with every heartbeat;
	 * without them an idle heartbeat only repeats the round in flight. */
	if (read_leases_enabled(r) && r->read_round - r->read_round_done < READ_ROUNDS_IN_FLIGHT_MAX)
		read_round_begin(r);
	return r->read_round;
}

static void read_confirm(vsr_replica *r)
{
	uint64_t done = read_round_confirmed(r);
	if (done <= r->read_round_done) return;
	assert(done <= r->read_round);
	r->read_round_done = done;
	/* The lease counts from when the confirmed round began. */
	uint32_t slot = (uint32_t)(done % VSR_READ_ROUND_SLOTS);
	if (read_leases_enabled(r) && r->read_round_slot[slot] == done) {
		uint64_t until = r->read_round_sent_at[slot] + lease_ticks(r);
		if (until > r->lease_until) r->lease_until = until;
	}
}

static void read_pop_free(vsr_replica *r, pending_read *p)
{
	r->reads_bytes -= p->op_len;
	memset(p, 0, sizeof *p);
}

/* Answers every pending read that may go now; keeps the others in order. */
static void read_scan(vsr_replica *r)
{
	uint32_t kept = 0;
	uint32_t cap = r->cfg.request_queue_max;
	uint64_t wanted = 0, lease_until = 0;
	for (uint32_t i = 0; i < r->reads_count; i++) {
		pending_read *p = &r->reads[(r->reads_head + i) % cap];
		if (p->mode == VSR_READ_LEASE && r->now >= r->lease_until) {
			/* The lease ran out before it could be answered. */
			p->mode = VSR_READ_LINEARIZABLE;
			p->round = r->read_round + 1;
		}
		bool confirmed = p->round <= r->read_round_done;
		bool executed = r->executed >= p->arrival_op ||
				BUG(r, VSR_BUG_READ_BEFORE_EXECUTE);
		if (confirmed && executed) {
			uint8_t *op = p->op;
			if (op != NULL) scratch_keep(r, op);
			read_answer(r, p->conn, p->session, p->request, p->mode, op, p->op_len);
			read_pop_free(r, p);
			continue;
		}
		if (p->round > wanted) wanted = p->round;
		if (p->mode == VSR_READ_LEASE) lease_until = r->lease_until;
		if (kept != i) {
			r->reads[(r->reads_head + kept) % cap] = *p;
			memset(p, 0, sizeof *p);
		}
		kept++;
	}
	r->reads_count = kept;
	if (kept == 0) r->reads_head = 0;
	r->read_round_wanted = wanted;
	r->reads_lease_until = lease_until;
	r->reads_dirty = false;
	r->reads_scan_done = r->read_round_done;
	r->reads_scan_executed = r->executed;
}

void read_flush(vsr_replica *r, bool more)
{
	if (r->reads_count == 0 && !read_leases_enabled(r)) return;
	if (!primary_serving(r)) {
		/* Abdicated (or waiting for its own disk at a new view): its view
		 * may be over, so it answers nothing. */
		if (r->suspecting && !BUG(r, VSR_BUG_READ_NO_ROUND)) read_fail_all(r);
		return;
	}
	for (int pass = 0; pass < 2; pass++) {
		read_confirm(r);
		/* The queue is scanned only when something that gates an answer
		 * moved (a round confirmed, execution advanced, a read that may go
		 * at once, a lease that may have run out): a burst of reads costs
		 * one scan, not one per read. */
		bool lease_ended = r->reads_lease_until != 0 && r->now >= r->reads_lease_until;
		if (r->reads_dirty || lease_ended || r->read_round_done != r->reads_scan_done ||
		    r->executed != r->reads_scan_executed)
			read_scan(r);
		/* Not while a burst is still arriving (the `more` hint): one
		 * round then serves all of it. */
		if (r->read_round_wanted <= r->read_round || more ||
		    r->read_round - r->read_round_done >= READ_ROUNDS_IN_FLIGHT_MAX)
			break;
		read_start_round(r);
	}
}

void read_fail_all(vsr_replica *r)
{
	uint32_t cap = r->cfg.request_queue_max;
	for (uint32_t i = 0; i < r->reads_count; i++) {
		pending_read *p = &r->reads[(r->reads_head + i) % cap];
		vsr_message m;
		memset(&m, 0, sizeof m);
		m.request.session = p->session;
		m.request.request = p->request;
		m.read_mode = p->mode;
		read_refuse(r, p->conn, &m, VSR_REPLY_NOT_PRIMARY);
		free(p->op);
		read_pop_free(r, p);
	}
	r->reads_head = 0;
	r->reads_count = 0;
	assert(r->reads_bytes == 0);
	r->lease_until = 0;
	r->read_round_wanted = 0;
	r->reads_lease_until = 0;
	r->reads_dirty = false;
}

void read_free(vsr_replica *r)
{
	uint32_t cap = r->cfg.request_queue_max;
	if (r->reads != NULL)
		for (uint32_t i = 0; i < r->reads_count; i++)
			free(r->reads[(r->reads_head + i) % cap].op);
	free(r->reads);
	r->reads = NULL;
	r->reads_count = 0;
}
