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

/* Chunks asked at once from each replica that serves a checkpoint: the
 * window starts at FETCH_WINDOW_MIN and grows by one per chunk received
 * (it doubles per round trip, as TCP's slow start does), up to
 * FETCH_WINDOW_MAX, so that a network slower than the retry timer still
 * keeps the pipe full; a retry without any chunk halves it. */
#define FETCH_WINDOW_MIN 4u
#define FETCH_WINDOW_MAX 64u

void st_send_request(vsr_replica *r)
{
	/* Only the primary's log is the whole of its view's log: a backup's may
	 * be a shorter prefix, shorter even than ours (that would lose entries
	 * we acknowledged). A replica in state transfer is never its view's
	 * primary (every st_start names a view led by another replica). */
	if (r->n == 1 || is_primary(r)) return;
	r->transfer_target = primary_index(r);
	vsr_message *out = emit_send(r, r->transfer_target, VSR_MSG_GET_STATE);
	out->op = r->commit;
	out->nonce = r->transfer_nonce;
}

void st_start(vsr_replica *r, uint64_t view)
{
	assert(view >= r->view);
	primary_drop_pipeline(r);
	if (vsr_primary_of(view, r->n) == r->self && !r->amnesia &&
	    r->status != VSR_STATUS_RECOVERING && r->status != VSR_STATUS_STATE_TRANSFER) {
		/* Only a view's primary serves its log, and that is us: a
		 * GET_STATE would go to a replica that never answers it. A view
		 * we lead but do not hold is dead; our log is intact (nothing was
		 * dropped), so our vote for the next view is sound. */
		set_status(r, VSR_STATUS_VIEW_CHANGE);
		vc_start(r, view + 1);
		return;
	}
	r->transfer_nonce = prng_next(&r->prng) | 1;
	r->transfer_retries = 0;
	r->stats.state_transfers++;
	r->dv_repairing = false; /* a full transfer replaces a divergence repair */
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
	r->fetching_checkpoint = false; /* paused: resumed if the answer names it again */
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
	/* Only the normal primary of the same view vouches for that view's log;
	 * and not one whose state is known to differ from a quorum's (its
	 * checkpoint would spread the divergence: divergence.c). */
	if ((r->status != VSR_STATUS_NORMAL || m->view != r->view || r->diverged ||
	     (!is_primary(r) && !BUG(r, VSR_BUG_BACKUP_NEW_STATE))) &&
	    GUARD(r, VSR_GUARD_GET_STATE_NOT_PRIMARY))
		return;
	/* It catches up into our view, so it hears us: not a lost backup
	 * (a transfer or a backup's slow disk can outlast the abdication
	 * window, which would depose us for nothing). */
	if (is_primary(r)) normal_heard_backup(r, m->replica);
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_NEW_STATE);
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->checksum = log_checksum_at(&r->log, r->log.head);
	out->nonce = m->nonce;
	uint64_t from = m->op + 1;
	if (from > r->log.head) return;
	if (from < r->log.start) {
		out->checkpoint_op = r->checkpoint.op;
		out->checkpoint_size = r->checkpoint.size;
		out->checkpoint_digest = r->checkpoint.digest;
		out->checksum = r->checkpoint.checksum;
		out->timestamp = r->checkpoint.timestamp;
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
	r->dv_repairing = false; /* still diverged: the next certified checkpoint repairs */
	r->fetching_checkpoint = false; /* paused, see st_start */
	set_status(r, VSR_STATUS_VIEW_CHANGE);
	vc_start(r, r->view + 1);
}

static void transfer_done(vsr_replica *r)
{
	/* The answer came from our view's primary, which is not us. */
	assert(!is_primary(r));
	bool was_amnesiac = r->amnesia;
	r->amnesia = false;
	checkpoint_fetch_stop(r);
	normal_become_backup(r);
	/* A member again: the superblock names the history once more (acks wait
	 * for it to be durable). */
	if (was_amnesiac) persist_state(r, false, 0, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Checkpoint fetch: chunks of one checkpoint, asked from every replica that
 * answered (or, after a retry without progress, from every other replica),
 * a window (fetch_window) at a time from each. A retry asks again only for
 * what is missing; nothing fetched is dropped unless another checkpoint
 * replaces this one. */

static bool bit_get(const uint8_t *b, uint32_t i) { return (b[i / 8] >> (i % 8)) & 1u; }
static void bit_set(uint8_t *b, uint32_t i) { b[i / 8] |= (uint8_t)(1u << (i % 8)); }

void checkpoint_fetch_stop(vsr_replica *r)
{
	r->fetching_checkpoint = false;
	free(r->fetch_have);
	free(r->fetch_asked);
	r->fetch_have = r->fetch_asked = NULL;
	r->fetch_chunks = r->fetch_have_count = r->fetch_inflight = r->fetch_cursor = 0;
}

static uint32_t others_mask(const vsr_replica *r)
{
	return ((1u << r->n) - 1u) & ~(1u << r->self);
}

static void fetch_fill(vsr_replica *r)
{
	uint8_t src[VSR_REPLICAS_MAX];
	uint32_t nsrc = 0;
	for (uint8_t i = 0; i < r->n; i++)
		if (r->fetch_sources & (1u << i)) src[nsrc++] = i;
	if (nsrc == 0) return;
	uint32_t window = r->fetch_window * nsrc;
	uint64_t chunk = r->cfg.chunk_bytes_max;
	while (r->fetch_inflight < window && r->fetch_cursor < r->fetch_chunks) {
		uint32_t k = r->fetch_cursor++;
		if (bit_get(r->fetch_have, k) || bit_get(r->fetch_asked, k)) continue;
		bit_set(r->fetch_asked, k);
		r->fetch_inflight++;
		vsr_message *out = emit_send(r, src[(k + r->fetch_rotate) % nsrc],
					     VSR_MSG_GET_CHECKPOINT);
		out->checkpoint_op = r->fetch.op;
		out->checkpoint_size = r->fetch.size;
		out->checksum = r->fetch.checksum;
		out->checkpoint_digest = r->fetch.digest;
		out->offset = (uint64_t)k * chunk;
		out->nonce = r->transfer_nonce;
	}
}

/* The other replicas heard from within two primary timeouts (plus the
 * disk's slack), as the view change's choice of a live view counts them;
 * every other replica if none was. A fetch that asks a replica that is
 * down waits a whole retry for each chunk sent there (vsrsim seed 1012864:
 * 348 of 612 asks went to a replica down for good, F17). */
static uint32_t live_others_mask(const vsr_replica *r)
{
	uint32_t live = 0;
	for (uint8_t p = 0; p < r->n; p++)
		if (p != r->self && vc_heard_lately(r, p)) live |= 1u << p;
	return live ? live : others_mask(r);
}

/* A retry: forget what is in flight, ask again for what is missing, from
 * those that answered since the last retry, or else from every replica
 * heard from lately. */
static void fetch_retry(vsr_replica *r)
{
	memset(r->fetch_asked, 0, (r->fetch_chunks + 7) / 8);
	r->fetch_inflight = 0;
	r->fetch_cursor = 0;
	r->fetch_rotate++;
	r->fetch_sources = r->fetch_answered ? r->fetch_answered : live_others_mask(r);
	r->fetch_answered = 0;
	fetch_fill(r);
}

static void fetch_begin(vsr_replica *r, const vsr_checkpoint *cp)
{
	if (r->fetch_have != NULL && r->fetch.op == cp->op && r->fetch.digest == cp->digest &&
	    r->fetch.size == cp->size && r->fetch.checksum == cp->checksum) {
		/* A fetch of this checkpoint was interrupted (a view change, a
		 * restarted transfer): resume it, keeping every chunk stored. */
		r->fetching_checkpoint = true;
		r->fetch_answered = 0;
		r->fetch_window = FETCH_WINDOW_MIN;
		fetch_retry(r);
		return;
	}
	checkpoint_fetch_stop(r);
	uint64_t chunks = (cp->size + r->cfg.chunk_bytes_max - 1) / r->cfg.chunk_bytes_max;
	if (cp->size == 0 || chunks > UINT32_MAX / 2) return; /* not a checkpoint we can take */
	r->fetching_checkpoint = true;
	r->fetch = *cp;
	r->fetch_chunks = (uint32_t)chunks;
	r->fetch_have = xcalloc((chunks + 7) / 8, 1);
	r->fetch_asked = xcalloc((chunks + 7) / 8, 1);
	r->fetch_sources = others_mask(r);
	r->fetch_answered = 0;
	r->fetch_window = FETCH_WINDOW_MIN;
	r->fetch_have_at_retry = 0;
	fetch_fill(r);
}

void st_fetch_checkpoint(vsr_replica *r, const vsr_checkpoint *cp)
{
	fetch_begin(r, cp);
}

void st_on_new_state(vsr_replica *r, const vsr_message *m)
{
	if (m->nonce != r->transfer_nonce && GUARD(r, VSR_GUARD_NS_STALE_NONCE)) return;
	/* A divergence repair fetches the certified checkpoint, nothing else. */
	if (r->dv_repairing) return;
	if (r->status == VSR_STATUS_NORMAL && r->repairing) {
		repair_on_new_state(r, m);
		return;
	}
	/* GET_STATE carries our view and only a primary of that view answers,
	 * so an answer of another view is stale. */
	if ((r->status != VSR_STATUS_STATE_TRANSFER || m->view != r->view) &&
	    GUARD(r, VSR_GUARD_NS_OLD_VIEW))
		return;
	/* stale: we already know more */
	if (m->op < r->commit && GUARD(r, VSR_GUARD_NS_BELOW_COMMIT)) return;
	if (m->checkpoint_op > r->commit && m->entry_count == 0 &&
	    log_matches(&r->log, m->checkpoint_op, m->checksum)) {
		/* Our own log reaches the checkpoint on the same chain: execute up
		 * to it from our entries and ask again, rather than fetch it and
		 * drop (possibly acknowledged) entries above it. */
		r->transfer_retries = 0;
		checkpoint_fetch_stop(r);
		normal_advance_commit(r, m->checkpoint_op);
		st_send_request(r);
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
		return;
	}
	if (m->checkpoint_op > r->commit && m->entry_count == 0) {
		/* Everything of ours above our commit is off the committed chain
		 * (we do not hold the checkpoint's entry), so the reset is safe.
		 * A fetch of this very checkpoint goes on where it is. */
		if (r->fetching_checkpoint && r->fetch.op == m->checkpoint_op &&
		    r->fetch.digest == m->checkpoint_digest)
			return; /* already fetching it */
		vsr_checkpoint cp = {.op = m->checkpoint_op, .checksum = m->checksum,
				     .timestamp = m->timestamp, .size = m->checkpoint_size,
				     .digest = m->checkpoint_digest};
		fetch_begin(r, &cp);
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
		return;
	}
	bool complete = m->entry_count ? m->entries[m->entry_count - 1].op == m->op
				       : log_matches(&r->log, m->op, m->checksum);
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
		    !log_matches(&r->log, m->op, m->checksum))
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
	if (matched > r->commit) r->transfer_retries = 0;
	normal_advance_commit(r, matched);
	st_send_request(r);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
}

/* Any replica serves its current or previous checkpoint, whatever its
 * status: a checkpoint is committed state, the same on every replica. */
void st_on_get_checkpoint(vsr_replica *r, const vsr_message *m)
{
	const vsr_checkpoint *cp = NULL;
	if (r->checkpoint.op && m->checkpoint_op == r->checkpoint.op) cp = &r->checkpoint;
	else if (r->checkpoint_prev.op && m->checkpoint_op == r->checkpoint_prev.op) cp = &r->checkpoint_prev;
	/* Never the checkpoint a quorum disagreed with (divergence.c). */
	if (r->diverged && cp != NULL && cp->op == r->dv_last.op && cp->digest == r->dv_last.digest)
		cp = NULL;
	if (cp == NULL || m->checkpoint_digest != cp->digest || m->checksum != cp->checksum ||
	    m->checkpoint_size != cp->size || m->offset >= cp->size ||
	    m->offset % r->cfg.chunk_bytes_max != 0)
		return;
	uint64_t n = cp->size - m->offset;
	if (n > r->cfg.chunk_bytes_max) n = r->cfg.chunk_bytes_max;
	vsr_buf *b = &r->chunk_buf;
	vsr_buf_reset(b);
	if (r->sm.checkpoint_read(r->sm.ctx, cp, m->offset, (uint32_t)n, b) != VSR_OK || b->len != n)
		return; /* not held any more */
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_CHECKPOINT_CHUNK);
	out->checkpoint_op = cp->op;
	out->checkpoint_size = cp->size;
	out->checksum = cp->checksum;
	out->checkpoint_digest = cp->digest;
	out->timestamp = cp->timestamp;
	out->offset = m->offset;
	out->nonce = m->nonce;
	out->body = scratch_alloc(r, n);
	memcpy((uint8_t *)out->body, b->data, n);
	out->body_len = (uint32_t)n;
}

/* The core's half of an atomic install: decode the checkpoint's client
 * table aside; it replaces ours only if the state machine's install
 * succeeds too. */
static int accept_client_table(void *arg, const uint8_t *meta, size_t len)
{
	vsr_replica *r = arg;
	ct_free(&r->clients_staged);
	ct_init(&r->clients_staged, r->cfg.clients_max);
	long used = ct_decode(&r->clients_staged, meta, len);
	return used >= 0 && (size_t)used == len ? VSR_OK : VSR_ECORRUPT;
}

static void fetch_install(vsr_replica *r)
{
	vsr_checkpoint cp = r->fetch;
	checkpoint_fetch_stop(r);
	int rc = r->sm.checkpoint_install(r->sm.ctx, &cp, accept_client_table, r);
	if (rc != VSR_OK) {
		/* Nothing changed, neither the state nor the client table: the
		 * retry timer asks again (another replica's copy, maybe). */
		GUARD(r, VSR_GUARD_RESTORE_FAILED);
		if (r->dv_repairing) {
			ct_free(&r->clients_staged);
			dv_repair_failed(r);
			return;
		}
		if (BUG(r, VSR_BUG_NONATOMIC_RESTORE) && r->clients_staged.items != NULL) {
			/* The published order: the client table replaced before the
			 * state machine's restore, and kept when that fails. */
			ct_free(&r->clients);
			r->clients = r->clients_staged;
			memset(&r->clients_staged, 0, sizeof r->clients_staged);
			return;
		}
		ct_free(&r->clients_staged);
		return;
	}
	ct_free(&r->clients);
	r->clients = r->clients_staged;
	memset(&r->clients_staged, 0, sizeof r->clients_staged);
	/* The checkpoint becomes ours; the log restarts after it. */
	r->checkpoint_prev = (vsr_checkpoint){0};
	r->checkpoint = cp;
	r->checkpoint_durable = cp; /* an install is durable when it returns */
	if (r->checkpoint.timestamp > r->last_timestamp) r->last_timestamp = r->checkpoint.timestamp;
	if (r->dv_repairing) {
		/* A divergence repair: only the state was wrong, never the log,
		 * which holds every entry above the checkpoint (divergence.c):
		 * keep it (its acknowledged entries too) and execute again. */
		r->executed = r->checkpoint.op;
		dv_repaired(r);
		persist_state(r, false, 0, NULL, 0);
		normal_execute(r);
		transfer_done(r);
		return;
	}
	log_reset(&r->log, r->checkpoint.op, r->checkpoint.checksum);
	r->commit = r->executed = r->checkpoint.op;
	r->transfer_retries = 0;
	persist_state(r, true, r->checkpoint.op, NULL, 0);
	st_send_request(r);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
}

void st_on_checkpoint_chunk(vsr_replica *r, const vsr_message *m)
{
	if (r->status != VSR_STATUS_STATE_TRANSFER || !r->fetching_checkpoint ||
	    m->nonce != r->transfer_nonce || m->checkpoint_op != r->fetch.op ||
	    m->checkpoint_size != r->fetch.size || m->checksum != r->fetch.checksum ||
	    m->checkpoint_digest != r->fetch.digest) {
		GUARD(r, VSR_GUARD_CHUNK_STALE);
		return;
	}
	uint64_t chunk = r->cfg.chunk_bytes_max;
	if (m->offset % chunk != 0 || m->offset >= r->fetch.size) {
		r->stats.messages_dropped++;
		return;
	}
	uint32_t k = (uint32_t)(m->offset / chunk);
	uint64_t want = r->fetch.size - m->offset < chunk ? r->fetch.size - m->offset : chunk;
	if (m->body_len != want) {
		r->stats.messages_dropped++;
		return;
	}
	if (bit_get(r->fetch_have, k)) return; /* a duplicate */
	if (r->fetch.op <= r->commit && !r->dv_repairing && !BUG(r, VSR_BUG_OLD_CHECKPOINT) &&
	    GUARD(r, VSR_GUARD_CHUNK_PASSED)) {
		/* Entries arrived meanwhile and took us past it: never go back. */
		checkpoint_fetch_stop(r);
		st_send_request(r);
		return;
	}
	if (r->sm.checkpoint_write(r->sm.ctx, &r->fetch, m->offset, m->body, m->body_len) != VSR_OK)
		return; /* asked again at the retry */
	bit_set(r->fetch_have, k);
	r->fetch_have_count++;
	if (bit_get(r->fetch_asked, k)) r->fetch_inflight--;
	else bit_set(r->fetch_asked, k);
	r->fetch_answered |= 1u << m->replica;
	if (r->fetch_window < FETCH_WINDOW_MAX) r->fetch_window++;
	r->transfer_retries = 0; /* progress */
	if (r->fetch_have_count == r->fetch_chunks) {
		fetch_install(r);
		return;
	}
	fetch_fill(r);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
}

void st_on_tick(vsr_replica *r)
{
	if (!timer_fired(r, &r->t_retry)) return;
	if (r->dv_repairing && r->transfer_retries + 1 > VSR_TRANSFER_RETRIES_MAX) {
		dv_repair_failed(r);
		return;
	}
	/* With lease reads, not while our promise to the primary we last
	 * heard holds (docs/protocol.md "Reads"). */
	if (++r->transfer_retries > VSR_TRANSFER_RETRIES_MAX && !r->amnesia &&
	    !read_lease_promise_holds(r)) {
		/* No normal replica answers: the view we are transferring into may
		 * be dead. Our log is intact (state transfer only ever drops what is
		 * off the committed chain), so leave for a view change rather than
		 * wait forever for a primary that needs our vote. */
		transfer_to_view_change(r);
		return;
	}
	if (r->fetching_checkpoint && r->fetch_have_count > r->fetch_have_at_retry) {
		/* Chunks came since the last retry, then none for a while: the
		 * round trip is longer than the timer, nothing is known lost.
		 * Keep what is in flight (asking it again would only bring
		 * duplicates) and fill the window, which grew meanwhile. */
		r->fetch_have_at_retry = r->fetch_have_count;
		fetch_fill(r);
	} else if (r->fetching_checkpoint) {
		/* No chunk since the last retry (a chunk re-arms the timer): ask
		 * again for what is missing, and ask the primary whether a newer
		 * checkpoint replaced this one everywhere (its answer switches). */
		r->fetch_window = r->fetch_window / 2 > FETCH_WINDOW_MIN ? r->fetch_window / 2
									 : FETCH_WINDOW_MIN;
		fetch_retry(r);
		if (r->transfer_retries > 1) st_send_request(r);
	} else {
		st_send_request(r);
	}
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, true);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints: the client table is the core's meta, the rest the state
 * machine's. */

void checkpoint_take(vsr_replica *r)
{
	vsr_buf *meta = &r->chunk_buf;
	vsr_buf_reset(meta);
	if (ct_encode(&r->clients, meta) != VSR_OK) return;
	vsr_checkpoint cp = {.op = r->executed, .checksum = log_checksum_at(&r->log, r->executed)};
	const vsr_entry *ce = log_get(&r->log, r->executed);
	cp.timestamp = ce != NULL ? ce->timestamp : r->last_timestamp;
	/* A checkpoint is local, not replicated: skipping one is safe. */
	int rc = r->sm.checkpoint_take(r->sm.ctx, &cp, meta->data, meta->len);
	if (rc != VSR_OK && rc != VSR_PENDING) return;
	r->checkpoint_prev = r->checkpoint;
	r->checkpoint = cp;
	r->stats.checkpoints++;
	/* A pending one is named by the superblock once it is durable
	 * (checkpoint_on_durable); until then the log above the last durable
	 * one is kept, which is all a restart needs. A restart's replay takes
	 * the checkpoints it passes too: skipping them left a state machine
	 * whose pending checkpoints were lost in crashes on its old durable
	 * one, and each restart had more log above it to load than the ring
	 * holds (acknowledged entries forgotten). No action can leave
	 * vsr_replica_create: the next superblock names a durable one. */
	if (rc == VSR_OK || BUG(r, VSR_BUG_EARLY_CHECKPOINT_NAME)) {
		if (r->replaying) r->checkpoint_durable = cp;
		else checkpoint_on_durable(r, cp.op);
	}
	/* Memory is bounded by the checkpoint interval: keep only a tail below
	 * the checkpoint, enough for a backup a little behind to catch up from
	 * the log instead of the whole checkpoint. */
	uint64_t keep = r->cfg.message_entries_max;
	if (r->checkpoint.op > keep) log_drop_through(&r->log, r->checkpoint.op - keep);
}

void checkpoint_on_durable(vsr_replica *r, uint64_t op)
{
	/* Checkpoints become durable in the order they were taken: the newest
	 * we still know at or below `op` is. An older one (a report that
	 * arrived after two more takes) names nothing new. */
	const vsr_checkpoint *cp = NULL;
	if (r->checkpoint.op > 0 && (r->checkpoint.op <= op || BUG(r, VSR_BUG_DURABLE_NAMES_CURRENT)))
		cp = &r->checkpoint;
	else if (r->checkpoint_prev.op > 0 && r->checkpoint_prev.op <= op)
		cp = &r->checkpoint_prev;
	if (cp == NULL || cp->op <= r->checkpoint_durable.op) return;
	r->checkpoint_durable = *cp;
	/* The superblock now names it, and storage may drop the log below. */
	persist_state(r, false, 0, NULL, 0);
}

int checkpoint_open(vsr_replica *r, const vsr_superblock *sb)
{
	vsr_checkpoint cp = {0};
	vsr_buf *meta = &r->chunk_buf;
	vsr_buf_reset(meta);
	int rc = r->sm.checkpoint_open(r->sm.ctx, &cp, meta);
	if (rc != VSR_OK) return rc;
	/* The state machine stores a checkpoint before the superblock names it,
	 * so its own is at least as new; a newer one is the truth (its ops are
	 * in the state and must not be applied again). */
	if (cp.op < sb->checkpoint_op) return VSR_ECORRUPT;
	if (cp.op == sb->checkpoint_op && cp.op > 0 && cp.checksum != sb->checkpoint_checksum)
		return VSR_ECORRUPT;
	if (cp.op == 0) return VSR_OK;
	long used = ct_decode(&r->clients, meta->data, meta->len);
	if (used < 0 || (uint64_t)used != meta->len) return VSR_ECORRUPT;
	r->checkpoint = cp;
	r->checkpoint_durable = cp;
	r->last_timestamp = cp.timestamp;
	log_reset(&r->log, cp.op, cp.checksum);
	return VSR_OK;
}
