/* state_transfer.c - state transfer (VRR 5.2, fixed as protocol.md 6) and
 * checkpoints (VRR 5.1, protocol.md 7).
 *
 * A replica that is behind asks GET_STATE for the entries after its commit.
 * Unlike the published protocol it does NOT truncate to its commit and take
 * the new view while it waits (hole 8.2): it sits in status state_transfer,
 * processes no PREPARE, sends no vote, and only when the answer covers the
 * responder's whole log does it install it and set view and log_view
 * together. A normal backup that merely has a gap in its own view repairs it
 * the same way without leaving status normal. When the log was compacted past
 * the request, the answer names a checkpoint, fetched in bounded chunks. */
#include "replica.h"

static uint8_t other_replica(const vsr_replica *r, uint8_t preferred)
{
	if (preferred != r->self && preferred < r->n) return preferred;
	return (uint8_t)((r->self + 1) % r->n);
}

void st_send_request(vsr_replica *r)
{
	if (r->n == 1) return;
	/* Only the primary's log is the whole of its view's log: a backup's may
	 * be a shorter prefix, shorter even than ours (that would lose entries
	 * we acknowledged). */
	r->transfer_target = other_replica(r, primary_index(r));
	vsr_message *out = emit_send(r, r->transfer_target, VSR_MSG_GET_STATE);
	out->op = r->commit;
	out->nonce = r->transfer_nonce;
}

static void send_get_checkpoint(vsr_replica *r)
{
	vsr_message *out = emit_send(r, r->transfer_target, VSR_MSG_GET_CHECKPOINT);
	out->checkpoint_op = r->fetch_checkpoint_op;
	out->offset = r->fetch_buf.len;
	out->nonce = r->transfer_nonce;
}

void st_start(vsr_replica *r, uint64_t view)
{
	assert(view >= r->view);
	primary_drop_pipeline(r);
	r->transfer_nonce = prng_next(&r->prng) | 1;
	r->transfer_retries = 0;
	r->stats.state_transfers++;
	if (BUG(r, VSR_BUG_TRUNCATE_TRANSFER) && r->status != VSR_STATUS_RECOVERING &&
	    vsr_primary_of(view, r->n) != r->self) {
		/* The published behaviour: cut the log to the commit and claim the
		 * new view's log right away (hole 8.2). */
		bool cut = r->log.head > r->commit;
		uint64_t commit = r->commit;
		if (cut) log_truncate_after(&r->log, commit);
		if (view > r->view) vc_reset_votes(r);
		r->view = view;
		r->log_view = view;
		normal_become_backup(r);
		persist_state(r, cut, commit, NULL, 0);
		r->repairing = true;
		vsr_message *out = emit_send(r, primary_index(r), VSR_MSG_GET_STATE);
		out->op = r->log.head;
		out->nonce = r->transfer_nonce;
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
		return;
	}
	if (view > r->view) {
		r->view = view;
		vc_reset_votes(r);
	}
	set_status(r, VSR_STATUS_STATE_TRANSFER);
	timer_stop(&r->t_heartbeat);
	timer_stop(&r->t_prepare_retry);
	timer_stop(&r->t_primary);
	timer_stop(&r->t_view_change);
	r->repairing = false;
	r->fetching_checkpoint = false;
	vsr_buf_reset(&r->fetch_buf);
	persist_state(r, false, 0, NULL, 0);
	st_send_request(r);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, true);
}

void st_request_repair(vsr_replica *r)
{
	if (r->status != VSR_STATUS_NORMAL || is_primary(r)) return;
	if (r->repairing && !timer_fired(r, &r->t_retry)) return;
	/* One nonce per repair: an answer slower than the retry timer still
	 * counts (a fresh nonce per retry would never be answered in time). */
	if (!r->repairing) r->transfer_nonce = prng_next(&r->prng) | 1;
	r->repairing = true;
	vsr_message *out = emit_send(r, primary_index(r), VSR_MSG_GET_STATE);
	out->op = r->log.head;
	out->nonce = r->transfer_nonce;
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
}

void st_on_get_state(vsr_replica *r, const vsr_message *m)
{
	/* Only the normal primary of the same view vouches for that view's log. */
	if ((r->status != VSR_STATUS_NORMAL || m->view != r->view ||
	     (!is_primary(r) && !BUG(r, VSR_BUG_BACKUP_NEW_STATE))) &&
	    GUARD(r, VSR_GUARD_GET_STATE_NOT_PRIMARY))
		return;
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_NEW_STATE);
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->checksum = log_checksum_at(&r->log, r->log.head);
	out->nonce = m->nonce;
	uint64_t from = m->op + 1;
	if (from > r->log.head) return;
	if (from < r->log.start) {
		out->checkpoint_op = r->checkpoint_op;
		out->checkpoint_size = r->checkpoint_len;
		out->checksum = r->checkpoint_checksum;
		out->timestamp = r->checkpoint_timestamp;
		return;
	}
	uint64_t to = r->log.head;
	if (to - from + 1 > r->cfg.message_entries_max) to = from + r->cfg.message_entries_max - 1;
	to = log_slice_budget(r, from, to, false);
	uint32_t count;
	out->entries = log_slice(r, from, to, &count);
	out->entry_count = count;
}

static void repair_on_new_state(vsr_replica *r, const vsr_message *m)
{
	if (m->view != r->view || m->replica != primary_index(r)) return;
	if (m->checkpoint_op && m->entry_count == 0) {
		/* The primary compacted past our head: a full transfer. */
		st_start(r, r->view);
		return;
	}
	if (m->entry_count) {
		uint64_t matched = log_install(r, m->entries, m->entry_count);
		if (matched == UINT64_MAX) {
			st_start(r, r->view);
			return;
		}
	}
	r->repairing = r->log.head < m->op;
	normal_advance_commit(r, m->commit);
	normal_send_ack(r);
	if (r->repairing) {
		timer_stop(&r->t_retry);
		r->repairing = false;
		st_request_repair(r);
	}
}

/* Leaves state transfer for a view change to the next view (which votes,
 * so it is only for a replica whose log is intact). */
static void transfer_to_view_change(vsr_replica *r)
{
	r->transfer_retries = 0;
	r->fetching_checkpoint = false;
	set_status(r, VSR_STATUS_VIEW_CHANGE);
	vc_start(r, r->view + 1);
}

static void transfer_done(vsr_replica *r)
{
	if (is_primary(r)) {
		/* The view's primary is us, from before a crash: the others must
		 * move on without it. */
		r->amnesia = false;
		transfer_to_view_change(r);
		return;
	}
	bool was_amnesiac = r->amnesia;
	r->amnesia = false;
	normal_become_backup(r);
	/* A member again: the superblock names the history once more (acks wait
	 * for it to be durable). */
	if (was_amnesiac) persist_state(r, false, 0, NULL, 0);
}

void st_on_new_state(vsr_replica *r, const vsr_message *m)
{
	if (m->nonce != r->transfer_nonce && GUARD(r, VSR_GUARD_NS_STALE_NONCE)) return;
	if (r->status == VSR_STATUS_NORMAL && r->repairing) {
		repair_on_new_state(r, m);
		return;
	}
	if ((r->status != VSR_STATUS_STATE_TRANSFER || m->view < r->view) &&
	    GUARD(r, VSR_GUARD_NS_OLD_VIEW))
		return;
	/* stale: we already know more */
	if (m->op < r->commit && GUARD(r, VSR_GUARD_NS_BELOW_COMMIT)) return;
	r->transfer_retries = 0;
	if (m->view > r->view) {
		r->view = m->view;
		persist_state(r, false, 0, NULL, 0);
	}
	if (m->checkpoint_op > r->commit && m->entry_count == 0 &&
	    log_checksum_at(&r->log, m->checkpoint_op) == m->checksum) {
		/* Our own log reaches the checkpoint on the same chain: execute up
		 * to it from our entries and ask again, rather than fetch it and
		 * drop (possibly acknowledged) entries above it. */
		normal_advance_commit(r, m->checkpoint_op);
		st_send_request(r);
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
		return;
	}
	if (m->checkpoint_op > r->commit && m->entry_count == 0) {
		/* Everything of ours above our commit is off the committed chain
		 * (we do not hold the checkpoint's entry), so the reset is safe. */
		r->fetching_checkpoint = true;
		r->fetch_checkpoint_op = m->checkpoint_op;
		r->fetch_checkpoint_checksum = m->checksum;
		r->fetch_checkpoint_size = m->checkpoint_size;
		r->fetch_checkpoint_timestamp = m->timestamp;
		r->transfer_target = m->replica;
		vsr_buf_reset(&r->fetch_buf);
		send_get_checkpoint(r);
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
		return;
	}
	bool complete = m->entry_count ? m->entries[m->entry_count - 1].op == m->op
				       : log_checksum_at(&r->log, m->op) == m->checksum;
	if (complete && m->log_view == r->log_view && m->op < r->log.head &&
	    !BUG(r, VSR_BUG_SHORTEN_OWN_LOG) && GUARD(r, VSR_GUARD_NS_SHORTER_OWN_LOG)) {
		/* Never shorten a log of the same log_view: our extra entries are
		 * that view's, and maybe acknowledged. (A normal primary's log
		 * holds all of its view's entries, so this is a stale answer.) */
		return;
	}
	if (complete) {
		uint64_t matched = m->entry_count ? log_install(r, m->entries, m->entry_count) : m->op;
		if (matched == UINT64_MAX || matched < m->op ||
		    log_checksum_at(&r->log, m->op) != m->checksum)
			return; /* the retry timer asks again */
		bool truncated = r->log.head > m->op;
		if (truncated) log_truncate_after(&r->log, m->op);
		/* The log is the view's now: claim it, then execute. */
		r->log_view = r->view;
		uint64_t commit = m->commit < r->log.head ? m->commit : r->log.head;
		if (commit > r->commit) r->commit = commit;
		persist_state(r, truncated, m->op, NULL, 0);
		normal_execute(r);
		transfer_done(r);
		return;
	}
	/* A partial answer: take only what is committed, which is the same in
	 * every log, and ask for the rest. Our uncommitted suffix is dropped, but
	 * log_view is not raised, so the log never claims to be the view's. */
	uint32_t k = 0;
	while (k < m->entry_count && m->entries[k].op <= m->commit) k++;
	if (k == 0) return;
	/* log_install replaces a conflicting suffix (never committed, since it
	 * is off the committed chain) but keeps entries that chain on, which
	 * may be ours in a quorum of an older view. */
	uint64_t matched = log_install(r, m->entries, k);
	if (matched == UINT64_MAX) return;
	normal_advance_commit(r, matched);
	st_send_request(r);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
}

void st_on_get_checkpoint(vsr_replica *r, const vsr_message *m)
{
	if (r->checkpoint == NULL || r->checkpoint_op != m->checkpoint_op ||
	    m->offset > r->checkpoint_len)
		return;
	uint64_t n = r->checkpoint_len - m->offset;
	if (n > r->cfg.chunk_bytes_max) n = r->cfg.chunk_bytes_max;
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_CHECKPOINT_CHUNK);
	out->checkpoint_op = r->checkpoint_op;
	out->checkpoint_size = r->checkpoint_len;
	out->checksum = r->checkpoint_checksum;
	out->offset = m->offset;
	out->nonce = m->nonce;
	out->body = r->checkpoint + m->offset;
	out->body_len = (uint32_t)n;
}

void st_on_checkpoint_chunk(vsr_replica *r, const vsr_message *m)
{
	if (r->status != VSR_STATUS_STATE_TRANSFER || !r->fetching_checkpoint ||
	    m->nonce != r->transfer_nonce || m->checkpoint_op != r->fetch_checkpoint_op ||
	    m->checkpoint_size != r->fetch_checkpoint_size ||
	    m->checksum != r->fetch_checkpoint_checksum || m->offset != r->fetch_buf.len) {
		GUARD(r, VSR_GUARD_CHUNK_STALE);
		return;
	}
	r->transfer_retries = 0;
	if (r->fetch_checkpoint_op <= r->commit && !BUG(r, VSR_BUG_OLD_CHECKPOINT) &&
	    GUARD(r, VSR_GUARD_CHUNK_PASSED)) {
		/* Entries arrived meanwhile and took us past it: never go back. */
		r->fetching_checkpoint = false;
		vsr_buf_reset(&r->fetch_buf);
		st_send_request(r);
		return;
	}
	if (r->fetch_buf.len + m->body_len > r->fetch_checkpoint_size ||
	    (m->body_len == 0 && r->fetch_buf.len < r->fetch_checkpoint_size)) {
		r->stats.messages_dropped++;
		return;
	}
	if (vsr_buf_append(&r->fetch_buf, m->body, m->body_len) != VSR_OK) return;
	if (r->fetch_buf.len < r->fetch_checkpoint_size) {
		send_get_checkpoint(r);
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
		return;
	}
	r->fetching_checkpoint = false;
	if (checkpoint_restore(r, r->fetch_buf.data, r->fetch_buf.len) != VSR_OK) {
		GUARD(r, VSR_GUARD_RESTORE_FAILED);
		r->stats.messages_dropped++;
		vsr_buf_reset(&r->fetch_buf);
		return;
	}
	/* The blob becomes our checkpoint; the log restarts after it. */
	if (r->checkpoint) scratch_keep(r, r->checkpoint);
	r->checkpoint = r->fetch_buf.data;
	r->checkpoint_len = r->fetch_buf.len;
	r->fetch_buf = (vsr_buf){0};
	r->checkpoint_op = r->fetch_checkpoint_op;
	r->checkpoint_checksum = r->fetch_checkpoint_checksum;
	r->checkpoint_timestamp = r->fetch_checkpoint_timestamp;
	if (r->checkpoint_timestamp > r->last_timestamp) r->last_timestamp = r->checkpoint_timestamp;
	log_reset(&r->log, r->checkpoint_op, r->checkpoint_checksum);
	r->commit = r->executed = r->checkpoint_op;
	vsr_persist *p = persist_state(r, true, r->checkpoint_op, NULL, 0);
	p->checkpoint = r->checkpoint;
	p->checkpoint_len = r->checkpoint_len;
	st_send_request(r);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
}

void st_on_tick(vsr_replica *r)
{
	if (!timer_fired(r, &r->t_retry)) return;
	if (++r->transfer_retries > VSR_TRANSFER_RETRIES_MAX && !r->amnesia) {
		/* No normal replica answers: the view we are transferring into may
		 * be dead. Our log is intact (state transfer only ever drops what is
		 * off the committed chain), so leave for a view change rather than
		 * wait forever for a primary that needs our vote. */
		transfer_to_view_change(r);
		return;
	}
	if (r->fetching_checkpoint) {
		/* The server may have moved to a newer checkpoint: start over
		 * with GET_STATE, which names the current one. */
		r->fetching_checkpoint = false;
		vsr_buf_reset(&r->fetch_buf);
		st_send_request(r);
	} else {
		st_send_request(r);
	}
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, true);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints: u64 client-table length | client table | state machine.      */

void checkpoint_take(vsr_replica *r)
{
	if (r->replaying) return; /* restart replays what the disk already has */
	vsr_buf b = {0};
	uint8_t len[8] = {0};
	int rc = vsr_buf_append(&b, len, sizeof len);
	if (rc == VSR_OK) rc = ct_encode(&r->clients, &b);
	uint64_t ct_len = b.len - 8;
	for (int i = 0; i < 8; i++) b.data[i] = (uint8_t)(ct_len >> (8 * i));
	vsr_buf sm = {0};
	if (rc == VSR_OK) rc = r->sm.snapshot(r->sm.ctx, &sm);
	if (rc == VSR_OK) rc = vsr_buf_append(&b, sm.data, sm.len);
	vsr_buf_free(&sm);
	if (rc != VSR_OK) {
		/* A checkpoint is local, not replicated: skipping one is safe. */
		vsr_buf_free(&b);
		return;
	}
	if (r->checkpoint) scratch_keep(r, r->checkpoint);
	r->checkpoint = b.data;
	r->checkpoint_len = b.len;
	r->checkpoint_op = r->executed;
	r->checkpoint_checksum = log_checksum_at(&r->log, r->executed);
	const vsr_entry *ce = log_get(&r->log, r->executed);
	if (ce != NULL) r->checkpoint_timestamp = ce->timestamp;
	vsr_persist *p = persist_state(r, false, 0, NULL, 0);
	p->checkpoint = r->checkpoint;
	p->checkpoint_len = r->checkpoint_len;
	r->stats.checkpoints++;
	/* Memory is bounded by the checkpoint interval: keep only a tail below
	 * the checkpoint, enough for a backup a little behind to catch up from
	 * the log instead of the whole checkpoint. */
	uint64_t keep = r->cfg.message_entries_max;
	if (r->checkpoint_op > keep) log_drop_through(&r->log, r->checkpoint_op - keep);
}

int checkpoint_restore(vsr_replica *r, const uint8_t *blob, uint64_t len)
{
	if (len < 8) return VSR_ECORRUPT;
	uint64_t ct_len = 0;
	for (int i = 0; i < 8; i++) ct_len |= (uint64_t)blob[i] << (8 * i);
	if (ct_len > len - 8) return VSR_ECORRUPT;
	long used = ct_decode(&r->clients, blob + 8, ct_len);
	if (used < 0 || (uint64_t)used != ct_len) return VSR_ECORRUPT;
	int rc = r->sm.restore(r->sm.ctx, blob + 8 + ct_len, len - 8 - ct_len);
	return rc == VSR_OK ? VSR_OK : VSR_ESM;
}
