/* view_change.c - view change (VRR 4.2, protocol.md 4): START_VIEW_CHANGE,
 * DO_VIEW_CHANGE, START_VIEW.
 *
 * Every vote is sent only once the new view is durable (hole 8.1). The new
 * primary assembles the log with the highest (log_view, op) from a quorum of
 * DO_VIEW_CHANGE messages. A DO_VIEW_CHANGE carries only the sender's
 * uncommitted suffix plus the checksum at its commit, so the new primary
 * checks, through the hash chain, that it holds the committed prefix the
 * chosen log builds on; when it does not, it waits and the view change times
 * out to the next primary (the replica with the best log always can). */
#include "replica.h"

static void dvc_clear(dvc_copy *d)
{
	if (d->entries != NULL) {
		for (uint32_t i = 0; i < d->entry_count; i++) free((void *)d->entries[i].body);
		free(d->entries);
	}
	memset(d, 0, sizeof *d);
}

void vc_reset_votes(vsr_replica *r)
{
	r->svc_from = 0;
	for (uint32_t i = 0; i < VSR_REPLICAS_MAX; i++) dvc_clear(&r->dvc[i]);
}

static void dvc_record(vsr_replica *r, uint8_t from, uint64_t log_view, uint64_t op,
		       uint64_t commit, uint64_t commit_checksum, const vsr_entry *entries,
		       uint32_t count)
{
	dvc_copy *d = &r->dvc[from];
	dvc_clear(d);
	d->have = true;
	d->log_view = log_view;
	d->op = op;
	d->commit = commit;
	d->commit_checksum = commit_checksum;
	d->entry_count = count;
	d->entries = count ? xcalloc(count, sizeof *d->entries) : NULL;
	for (uint32_t i = 0; i < count; i++) {
		d->entries[i] = entries[i];
		if (entries[i].body_len) {
			uint8_t *b = xmalloc(entries[i].body_len);
			memcpy(b, entries[i].body, entries[i].body_len);
			d->entries[i].body = b;
		}
	}
}

/* Arms the view change's timeout. Every view change entered counts as an
 * attempt, joined or started (F12: replicas that only ever join must back
 * off too, or views slower than the base timeout churn forever); a cut-off
 * backup no longer climbs through views on its own (pre-vote), so a burst
 * of its votes cannot stretch the backoff either. */
/* The view change's timeout: the backoff, plus the writes it waits for in
 * sequence: the votes, the new primary's log, and ours of its START_VIEW
 * (with slow disks, twice one write was not enough: a replica gave up a
 * view a few ticks before its START_VIEW arrived, and pulled the others
 * along, view after view; vsrsim seed 7146). */
static uint32_t vc_timeout(const vsr_replica *r)
{
	return (uint32_t)(((uint64_t)r->cfg.timeouts.view_change_ticks << r->vc_shift) +
			  2 * disk_slack(r));
}

static void arm_view_change_timers(vsr_replica *r)
{
	uint32_t shift = r->view_change_attempt < 4 ? r->view_change_attempt : 4;
	r->vc_shift = shift;
	timer_set(r, &r->t_view_change, vc_timeout(r), true);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
	r->view_change_attempt++;
}

static void enter_view_change(vsr_replica *r)
{
	/* Queued and in-flight requests are dropped; clients retry. */
	primary_drop_pipeline(r);
	set_status(r, VSR_STATUS_VIEW_CHANGE);
	if (!BUG(r, VSR_BUG_DVC_STALE_COPIES)) vc_reset_votes(r);
	else r->svc_from = 0;
	r->svc_sent_view = 0;
	r->dvc_sent_view = 0;
	r->repairing = false;
	r->start_view_pending = false;
	timer_stop(&r->t_heartbeat);
	timer_stop(&r->t_prepare_retry);
	timer_stop(&r->t_primary);
	arm_view_change_timers(r);
}

void vc_start(vsr_replica *r, uint64_t view)
{
	assert(view > r->view);
	/* Recovering and state-transfer replicas do not vote (protocol.md 5, 6). */
	if (r->status == VSR_STATUS_RECOVERING || r->status == VSR_STATUS_STATE_TRANSFER) return;
	r->view = view;
	r->stats.view_changes++;
	enter_view_change(r);
	/* The promise of this view must survive a crash before any vote leaves. */
	persist_state(r, false, 0, NULL, 0);
	vc_send_votes(r);
}

/* ------------------------------------------------------------------------ */
/* Pre-vote and check-quorum.                                                */

/* Replicas (ourselves included) that lost the primary of our view lately. */
static uint32_t lost_count(const vsr_replica *r)
{
	uint32_t count = r->suspecting ? 1 : 0;
	uint64_t window = r->cfg.timeouts.primary_ticks;
	for (uint8_t i = 0; i < r->n; i++)
		if (i != r->self && r->lost_view[i] == r->view + 1 && r->lost_at[i] + window >= r->now)
			count++;
	return count;
}

static void send_primary_lost(vsr_replica *r)
{
	vsr_message m;
	memset(&m, 0, sizeof m);
	message_header(r, &m, VSR_MSG_PRIMARY_LOST);
	emit_broadcast(r, &m);
	timer_set(r, &r->t_lost, r->cfg.timeouts.recovery_retry_ticks, false);
}

void vc_primary_lost(vsr_replica *r)
{
	assert(r->status == VSR_STATUS_NORMAL);
	if (!r->suspecting) {
		r->suspecting = true;
		send_primary_lost(r);
	}
	/* A view change promises the next view: only when a quorum agrees
	 * that the primary is gone, so that one replica that stalled (a long
	 * step, SIGSTOP) or was cut off never deposes a primary the others
	 * still hear, nor climbs through views on its own. */
	if (lost_count(r) >= r->quorum) vc_start(r, r->view + 1);
}

void vc_lost_tick(vsr_replica *r)
{
	if (!r->suspecting || !timer_fired(r, &r->t_lost)) return;
	send_primary_lost(r);
	vc_primary_lost(r);
}

void vc_suspicion_clear(vsr_replica *r)
{
	r->suspecting = false;
	timer_stop(&r->t_lost);
}

static void note_lost(vsr_replica *r, uint8_t from)
{
	r->lost_view[from] = r->view + 1;
	r->lost_at[from] = r->now;
	if (r->suspecting) vc_primary_lost(r);
}

void vc_on_primary_lost(vsr_replica *r, const vsr_message *m)
{
	if (m->view > r->view && r->status == VSR_STATUS_NORMAL && r->suspecting &&
	    !BUG(r, VSR_BUG_LOST_SAME_VIEW)) {
		/* We lost our primary (or abdicated) while another replica is
		 * already in a newer view, where it lost its own: it will not
		 * come back to ours, and its view's primary may be waiting for
		 * our ack to hear a quorum again. Learn that view. */
		st_start(r, m->view);
		return;
	}
	if (m->view > r->view || r->status != VSR_STATUS_NORMAL) return;
	if (m->view < r->view && BUG(r, VSR_BUG_LOST_SAME_VIEW)) return;
	/* A replica that lost the primary of an older view follows none of
	 * ours either: the first PREPARE or COMMIT of our view would have taken
	 * it into our view. It counts with us, or an old primary that abdicated
	 * and a backup of a newer view whose primary died would each wait for
	 * the other's view forever (test_guards
	 * stale_old_primary_blocks_view_change). */
	note_lost(r, m->replica);
}

void vc_on_recovery(vsr_replica *r, const vsr_message *m)
{
	/* A recovering replica follows no primary: if we lost ours, it counts
	 * with us (the primary may be the replica that restarted, and its
	 * recovery waits for a normal primary that only a view change gives). */
	if (r->status == VSR_STATUS_NORMAL) note_lost(r, m->replica);
}

void vc_note_heard(vsr_replica *r, uint8_t from) { r->peer_heard_at[from] = r->now + 1; }

bool vc_heard_lately(const vsr_replica *r, uint8_t p)
{
	uint64_t window = 2 * (uint64_t)r->cfg.timeouts.primary_ticks + disk_slack(r);
	return r->peer_heard_at[p] != 0 && r->peer_heard_at[p] - 1 + window >= r->now;
}

/* Primary timeouts without the votes of a quorum in any view change before
 * they come again: a heal (a partition ended, replicas came back). */
#define VC_HEAL_SILENCE_TIMEOUTS 8u

/* Votes of a quorum for our view change just arrived. When none had for a
 * long while, the backoff grew over views that could not form without the
 * replicas now back, and says nothing about the views that can form now;
 * kept, it held the first view after a heal for up to 16 view-change
 * timeouts when that view's primary was the replica still missing (issue
 * 7: 4.75-7 s after a healed partition with a replica down). A cluster
 * that churns with a quorum connected gathers such votes at every view
 * change, so its backoff keeps growing. (A first version reset whenever a
 * quorum of replicas was heard again after a primary timeout of silence;
 * two backups of a working view say nothing to each other, so it fired
 * over and over and a replica stuck in view changes never backed off.) */
static void heal_reset(vsr_replica *r)
{
	uint64_t last = r->vote_quorum_at;
	r->vote_quorum_at = r->now + 1;
	if (BUG(r, VSR_BUG_NO_HEAL_RESET) || last == 0 ||
	    r->now - (last - 1) < VC_HEAL_SILENCE_TIMEOUTS * (uint64_t)r->cfg.timeouts.primary_ticks)
		return;
	r->view_change_attempt = 0;
	r->stats.heal_resets++;
	if (!r->t_view_change.armed) return;
	r->vc_shift = 0;
	uint64_t at = r->now + vc_timeout(r);
	if (at < r->t_view_change.at) timer_set(r, &r->t_view_change, vc_timeout(r), true);
}

/* A normal replica heard a vote for a view above its own. It follows only
 * when its view cannot go on anyway: it lost the primary itself, or the
 * primary left the view, or so many replicas left that no quorum remains.
 * A primary also follows a replica that no longer acks in its view (one
 * stuck in a view change above it, after a cut): once, straight to that
 * view, which brings it back instead of running a replica short. */
static bool normal_may_leave(vsr_replica *r, const vsr_message *m)
{
	if (m->view > r->above_view[m->replica]) r->above_view[m->replica] = m->view;
	/* Lease reads: a backup that heard its primary less than a primary
	 * timeout ago promised it (by acking its read round) to stay, unless
	 * the primary itself moves on (docs/protocol.md "Reads"). */
	if (read_lease_promise_holds(r) && m->replica != primary_index(r)) return false;
	/* With replicas down, the two backups of an exact quorum that both
	 * moved on left a primary that could commit nothing, yet it held its
	 * view until check-quorum's window ran out (the simulator's
	 * --minority-down with --slow-disks, 5 replicas). */
	if (is_primary(r)) normal_backup_left(r, m->replica);
	if (r->suspecting) return true;
	if (m->replica == primary_index(r)) return true;
	uint32_t above = 0;
	for (uint8_t i = 0; i < r->n; i++)
		if (i != r->self && r->above_view[i] > r->view) above++;
	if (above >= (uint32_t)(r->n - r->quorum + 1)) return true;
	if (is_primary(r) &&
	    r->heard_at[m->replica] + r->cfg.timeouts.primary_ticks + disk_slack(r) < r->now)
		return true;
	return false;
}

void vc_resume(vsr_replica *r, uint64_t view)
{
	assert(r->status == VSR_STATUS_RECOVERING && view >= r->view);
	bool higher = view > r->view;
	r->view = view;
	enter_view_change(r);
	if (higher) {
		r->stats.view_changes++;
		persist_state(r, false, 0, NULL, 0);
	}
	vc_send_votes(r);
}

static void vc_try_assemble(vsr_replica *r);

void vc_send_votes(vsr_replica *r)
{
	if (r->status != VSR_STATUS_VIEW_CHANGE) return;
	if (r->durable_view != r->view && !BUG(r, VSR_BUG_UNPERSISTED_VOTE)) return;
	if (r->svc_sent_view != r->view) {
		vsr_message m;
		memset(&m, 0, sizeof m);
		message_header(r, &m, VSR_MSG_START_VIEW_CHANGE);
		emit_broadcast(r, &m);
		if (r->vc_timer_view != r->view) {
			/* The first vote of this view just became durable: the view
			 * gets its whole timeout from now, however slow the disk. */
			timer_set(r, &r->t_view_change, vc_timeout(r), true);
			r->vc_timer_view = r->view;
		}
		r->svc_sent_view = r->view;
	}
	uint32_t f = (r->n - 1u) / 2u;
	if (popcount32(r->svc_from) >= f && r->vote_quorum_view != r->view) {
		r->vote_quorum_view = r->view;
		heal_reset(r);
	}
	if (r->dvc_sent_view == r->view || popcount32(r->svc_from) < f) return;
	r->dvc_sent_view = r->view;
	uint32_t count;
	vsr_entry *entries = log_slice(r, r->commit + 1, r->log.head, &count);
	uint64_t commit_checksum = log_checksum_at(&r->log, r->commit);
	uint8_t primary = primary_index(r);
	if (primary == r->self) {
		dvc_record(r, r->self, r->log_view, r->log.head, r->commit, commit_checksum,
			   entries, count);
		vc_try_assemble(r);
		return;
	}
	vsr_message *out = emit_send(r, primary, VSR_MSG_DO_VIEW_CHANGE);
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->checksum = commit_checksum;
	out->entries = entries;
	out->entry_count = count;
}

/* The common gate of the two votes: true when the replica is changing to the
 * vote's view (joining it first if it is newer). Recovering and
 * state-transfer replicas take no part; a normal primary of that view answers
 * a voter that missed its START_VIEW. */
static bool vote_for_current_view(vsr_replica *r, const vsr_message *m)
{
	if (r->status == VSR_STATUS_RECOVERING || r->status == VSR_STATUS_STATE_TRANSFER) return false;
	if (m->view < r->view && GUARD(r, VSR_GUARD_VOTE_OLD_VIEW)) return false;
	if (m->view > r->view) {
		if (r->status == VSR_STATUS_NORMAL && !normal_may_leave(r, m)) return false;
		/* Leaving may have started a view of its own (a primary that
		 * abdicated just now, with a quorum already lost). */
		if (m->view > r->view) vc_start(r, m->view);
	}
	if (m->view != r->view) return false;
	if (r->status == VSR_STATUS_NORMAL) {
		if (is_primary(r) && !r->start_view_pending) vc_send_start_view(r, m->replica);
		return false;
	}
	return true;
}

void vc_on_start_view_change(vsr_replica *r, const vsr_message *m)
{
	if (!vote_for_current_view(r, m)) return;
	r->svc_from |= 1u << m->replica;
	vc_send_votes(r);
}

void vc_on_do_view_change(vsr_replica *r, const vsr_message *m)
{
	if (!vote_for_current_view(r, m) || !is_primary(r)) return;
	/* The suffix must be exactly commit+1 .. op, each entry intact. */
	if (m->entry_count != m->op - m->commit ||
	    (m->entry_count && m->entries[0].op != m->commit + 1)) {
		GUARD(r, VSR_GUARD_DVC_MALFORMED);
		r->stats.messages_dropped++;
		return;
	}
	for (uint32_t i = 0; i < m->entry_count; i++) {
		/* An entry's view may exceed the sender's log_view (a log taken
		 * from a newer view whose claim was not yet durable): under-claiming
		 * is safe, so such a vote counts. */
		if (vsr_entry_checksum(&m->entries[i]) != m->entries[i].checksum ||
		    (i == 0 && m->entries[i].parent != m->checksum)) {
			GUARD(r, VSR_GUARD_DVC_MALFORMED);
			r->stats.messages_dropped++;
			return;
		}
	}
	dvc_record(r, m->replica, m->log_view, m->op, m->commit, m->checksum, m->entries,
		   m->entry_count);
	r->svc_from |= 1u << m->replica;
	vc_send_votes(r);
	vc_try_assemble(r);
}

/* The checksum at `op` in a DO_VIEW_CHANGE's log, when it says. */
static bool dvc_checksum_at(const dvc_copy *d, uint64_t op, uint64_t *out)
{
	if (op == d->commit) {
		*out = d->commit_checksum;
		return true;
	}
	if (op > d->commit && op <= d->op) {
		*out = d->entries[op - d->commit - 1].checksum;
		return true;
	}
	return false;
}

static void vc_try_assemble(vsr_replica *r)
{
	if (r->status != VSR_STATUS_VIEW_CHANGE || !is_primary(r) || !r->dvc[r->self].have) return;
	uint32_t have = 0;
	int best = -1;
	uint64_t commit_max = 0;
	for (uint8_t i = 0; i < r->n; i++) {
		const dvc_copy *d = &r->dvc[i];
		if (!d->have) continue;
		have++;
		if (d->commit > commit_max) commit_max = d->commit;
		if (BUG(r, VSR_BUG_DVC_BY_OP)) {
			if (best < 0 || d->op > r->dvc[best].op ||
			    (d->op == r->dvc[best].op && d->log_view > r->dvc[best].log_view))
				best = i;
		} else if (best < 0 || d->log_view > r->dvc[best].log_view ||
		    (d->log_view == r->dvc[best].log_view && d->op > r->dvc[best].op))
			best = i;
	}
	if (have < r->quorum) return;
	const dvc_copy *b = &r->dvc[best];
	/* Every committed op is in the best log (quorum intersection); a best
	 * log shorter than our commit means a broken peer: do not install it. */
	if (b->op < r->commit && GUARD(r, VSR_GUARD_DVC_BEST_BELOW_COMMIT)) return;

	/* 1. The committed prefix the best log builds on: ours if our log has
	 *    the same entry at its commit, else borrowed from another DVC whose
	 *    suffix reaches it and chains onto our log. */
	uint64_t junction = b->commit;
	/* Below our own log start the prefix is inside our checkpoint, hence
	 * committed and canonical; log_install checks the chain from there. */
	if (junction + 1 >= r->log.start &&
	    !log_matches(&r->log, junction, b->commit_checksum)) {
		for (uint8_t i = 0; i < r->n; i++) {
			const dvc_copy *d = &r->dvc[i];
			uint64_t c;
			if (!d->have || i == best || !dvc_checksum_at(d, junction, &c) ||
			    c != b->commit_checksum || d->entry_count == 0)
				continue;
			uint32_t count = (uint32_t)(junction - d->commit);
			if (count == 0) continue;
			log_install(r, d->entries, count);
			if (log_matches(&r->log, junction, b->commit_checksum)) break;
		}
		if (!log_matches(&r->log, junction, b->commit_checksum) &&
		    GUARD(r, VSR_GUARD_DVC_NO_PREFIX))
			return;
	}
	/* 2. The best log's uncommitted suffix, and nothing beyond it. */
	if (b->entry_count) {
		uint64_t matched = log_install(r, b->entries, b->entry_count);
		if (matched == UINT64_MAX || matched < b->op) return;
	}
	bool truncated = false;
	if (r->log.head > b->op) {
		log_truncate_after(&r->log, b->op);
		truncated = true;
	}
	/* 3. Normal in the new view; START_VIEW once the log and view are durable. */
	r->log_view = r->view;
	normal_become_primary(r);
	r->start_view_pending = true;
	persist_state(r, truncated, b->op, NULL, 0);
	normal_advance_commit(r, commit_max);
	normal_mark_inherited_pending(r);
	vc_reset_votes(r);
	/* last_timestamp already covers every entry installed and the
	 * checkpoint's: the new primary's entries come after all of them. */
}

void vc_send_start_view(vsr_replica *r, int to)
{
	uint64_t from = r->log.head >= r->cfg.message_entries_max
				? r->log.head - r->cfg.message_entries_max + 1
				: 1;
	from = log_slice_budget(r, from, r->log.head, true);
	uint32_t count;
	vsr_entry *entries = log_slice(r, from, r->log.head, &count);
	vsr_message m;
	memset(&m, 0, sizeof m);
	message_header(r, &m, VSR_MSG_START_VIEW);
	m.op = r->log.head;
	m.commit = r->commit;
	m.checksum = log_checksum_at(&r->log, r->log.head);
	m.entries = entries;
	m.entry_count = count;
	if (to < 0) {
		emit_broadcast(r, &m);
	} else {
		vsr_message *out = emit_send(r, (uint8_t)to, VSR_MSG_START_VIEW);
		*out = m;
	}
}

void vc_on_start_view(vsr_replica *r, const vsr_message *m)
{
	if (r->status == VSR_STATUS_RECOVERING) return;
	if (m->view < r->view && GUARD(r, VSR_GUARD_SV_OLD_VIEW)) return;
	if (m->view == r->view && r->status == VSR_STATUS_NORMAL) return;
	if (m->replica != vsr_primary_of(m->view, r->n) || m->replica == r->self) {
		r->stats.messages_dropped++;
		return;
	}
	if (m->entry_count && m->entries[m->entry_count - 1].op != m->op) {
		r->stats.messages_dropped++;
		return;
	}
	/* An older START_VIEW of this view, delayed: we already know more. A log
	 * is never shortened within its own log_view (found by review: a
	 * delayed copy truncated an acknowledged, committed entry). */
	if (m->op < r->commit && GUARD(r, VSR_GUARD_SV_BELOW_COMMIT)) return;
	if (r->log_view == m->view && m->op < r->log.head &&
	    !BUG(r, VSR_BUG_SHORTEN_OWN_LOG) && GUARD(r, VSR_GUARD_SV_SHORTER_OWN_LOG))
		return;
	/* Does the suffix chain onto our log? If not, we are too far behind:
	 * state transfer, never claiming the view's log before we have it. */
	bool chains;
	if (m->entry_count == 0) {
		chains = log_matches(&r->log, m->op, m->checksum);
	} else {
		uint32_t i = 0;
		while (i < m->entry_count && m->entries[i].op < r->log.start) i++;
		chains = i == m->entry_count ||
			 (m->entries[i].op <= r->log.head + 1 &&
			  m->entries[i].parent == log_checksum_at(&r->log, m->entries[i].op - 1));
	}
	if (!chains || m->commit > m->op) {
		if (r->status != VSR_STATUS_STATE_TRANSFER || m->view > r->view)
			st_start(r, m->view);
		return;
	}
	if (m->view > r->view) {
		r->view = m->view;
		vc_reset_votes(r);
	}
	if (m->entry_count) {
		uint64_t matched = log_install(r, m->entries, m->entry_count);
		if (matched == UINT64_MAX || (matched < m->op && !BUG(r, VSR_BUG_ACK_CONFLICTING))) {
			/* We could not take the whole of the view's log. */
			st_start(r, m->view);
			return;
		}
	}
	bool truncated = false;
	if (r->log.head > m->op && !BUG(r, VSR_BUG_ACK_CONFLICTING)) {
		log_truncate_after(&r->log, m->op);
		truncated = true;
	}
	/* Only now, with the whole of the view's log in hand, does the log claim
	 * to be the view's (protocol.md 6). The persist carries the new commit
	 * too (a restart then re-learns less), and execution follows it, so a
	 * checkpoint's superblock never precedes the truncation. */
	r->log_view = m->view;
	normal_become_backup(r);
	uint64_t commit = m->commit < r->log.head ? m->commit : r->log.head;
	if (commit > r->commit) r->commit = commit;
	persist_state(r, truncated, m->op, NULL, 0);
	normal_execute(r);
}

/* The view a stalled view change moves on to: the next one whose primary
 * we heard from lately (ourselves included), skipping views led by replicas
 * that are silent (down, or cut off from us): each of those would cost a
 * whole, backed-off timeout, and with two replicas of five down that was
 * two of every five views. Any higher view is safe to start; a replica
 * wrongly skipped leads again n views later, and the others follow the
 * highest vote they hear. None heard (not even one peer): the next view,
 * not ours: a replica that hears nobody cannot lead a view, and one whose
 * outgoing links still work would pull the others, one view it leads
 * after another, out of every view they could form without it (vsrsim
 * seed 30179 with --ticks 8000). */
static uint64_t next_live_view(const vsr_replica *r)
{
	if (BUG(r, VSR_BUG_NO_HEAL_RESET)) return r->view + 1;
	bool heard = false;
	for (uint8_t p = 0; p < r->n; p++)
		if (p != r->self && vc_heard_lately(r, p)) heard = true;
	if (!heard) return r->view + 1;
	for (uint64_t v = r->view + 1; v <= r->view + r->n; v++) {
		uint8_t p = vsr_primary_of(v, r->n);
		if (p == r->self || vc_heard_lately(r, p)) return v;
	}
	return r->view + 1;
}

void vc_on_tick(vsr_replica *r)
{
	if (timer_fired(r, &r->t_view_change)) {
		if (r->durable_view != r->view && !BUG(r, VSR_BUG_UNPERSISTED_VOTE) &&
		    !BUG(r, VSR_BUG_NO_DISK_SLACK)) {
			/* Our vote of this view is not even durable yet (a slow
			 * disk): moving on would only queue another superblock
			 * behind it, and with writes slower than the timeout the
			 * views would climb without any vote ever leaving. The
			 * timeout starts again when the vote becomes durable. */
			timer_stop(&r->t_view_change);
			return;
		}
		vc_start(r, next_live_view(r));
		return;
	}
	if (timer_fired(r, &r->t_retry)) {
		/* Votes may have been lost: send them again. */
		r->svc_sent_view = 0;
		if (!is_primary(r)) r->dvc_sent_view = 0;
		vc_send_votes(r);
		timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, false);
	}
}
