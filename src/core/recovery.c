/* recovery.c - rejoining after a restart (VRR 4.3, adapted by protocol.md 5),
 * and joining a cluster history (protocol.md "Joining").
 *
 * A restarted replica has its durable superblock and log, but it may have
 * missed view changes while down, so it starts in status recovering: it
 * acknowledges nothing and votes in nothing until a quorum (itself included,
 * since its promises are durable) has told it the current view. Then:
 * - the cluster is in a view above ours with a live primary: state transfer
 *   from that primary into that view;
 * - our durable view is above every answer: we promised that view before the
 *   crash, so we resume its view change (re-sending the same promise);
 * - we are the primary of the current view: the others cannot make progress
 *   without us, so we start the next view change.
 * Every replica whose disk is intact answers, with its status; only normal
 * ones can be followed into a view. Answers carry the request's nonce so that
 * answers to an earlier incarnation's request are never counted.
 *
 * A replica without valid durable state is UNJOINED (history 0). It votes in
 * nothing, counts in no quorum and acknowledges nothing. It answers RECOVERY
 * only to say that it holds nothing (history 0), and learns from the answers
 * to its own RECOVERY:
 * - replica 0, unjoined itself, with every other configured replica answering
 *   "nothing held" in one round: GENESIS, a new history with the id the host
 *   drew (cfg.genesis_history), view 0, replica 0 its primary. It remembers
 *   whose answers it counted (their incarnation nonces);
 * - an answer from replica 0 that grants membership (its checksum is a token
 *   of our nonce and of the nonce replica 0 last reported while holding
 *   nothing: our answer was counted at its genesis): the history began after
 *   we started, so we never promised anything in it; we join it as a backup
 *   of view 0 with an empty log (a lagging member, nothing more);
 * - any other answer of a history: we may have promised things in it before
 *   we lost them, so we catch up as an AMNESIAC of it, through a state
 *   transfer from a normal primary (below); until that transfer begins we
 *   still hold nothing and still answer "nothing held". */
#include "replica.h"

/* A grant names both incarnations: the member's (whose answer was counted)
 * and replica 0's (that began the history). A delayed grant from an earlier
 * incarnation of replica 0, whose history died with it, no longer matches
 * once the member has heard the current one say it holds nothing. */
static uint64_t grant_token(uint64_t member_nonce, uint64_t genesis_nonce)
{
	return hash64(member_nonce, &genesis_nonce, sizeof genesis_nonce) | 1;
}

/* The history begins here: view 0, empty log, we are its primary. */
static void genesis(vsr_replica *r)
{
	assert(r->self == vsr_primary_of(0, r->n) && r->history == 0);
	r->history = r->cfg.genesis_history;
	r->amnesia = false;
	r->view = r->log_view = 0;
	normal_become_primary(r);
	persist_state(r, false, 0, NULL, 0);
}

/* A history that began after this incarnation started: we are one of its
 * first members, with nothing promised, nothing held. */
static void join_as_member(vsr_replica *r, uint64_t history)
{
	assert(r->history == 0 && r->log.head == 0);
	r->history = history;
	r->amnesia = false;
	r->view = r->log_view = 0;
	normal_become_backup(r);
	persist_state(r, false, 0, NULL, 0);
}

void rec_on_tick(vsr_replica *r)
{
	if (r->status != VSR_STATUS_RECOVERING || !timer_fired(r, &r->t_retry)) return;
	if (r->n == 1) {
		/* Alone, our durable state is the whole cluster; without any, we
		 * are every configured replica and all of them are unjoined. */
		if (r->history == 0) genesis(r);
		else vc_resume(r, r->view + 1);
		return;
	}
	/* Genesis needs every other replica's "unjoined" from this round: an
	 * older answer may predate its joining. */
	r->unjoined_from = 0;
	vsr_message m;
	memset(&m, 0, sizeof m);
	message_header(r, &m, VSR_MSG_RECOVERY);
	m.nonce = r->recovery_nonce;
	emit_broadcast(r, &m);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, true);
}

void rec_on_recovery(vsr_replica *r, const vsr_message *m)
{
	/* Replica 0 asking while it holds nothing: the incarnation a grant
	 * must name (we answer this very RECOVERY before it can count us). */
	if (m->replica == vsr_primary_of(0, r->n) && m->history == 0) r->genesis_peer_nonce = m->nonce;
	/* A RECOVERY with a nonce other than the one its sender answered us with
	 * proves that it restarted since: that answer is stale (F16: we waited
	 * forever on such an answer). Retries of the same incarnation keep it. */
	if (r->status == VSR_STATUS_RECOVERING && r->responder_nonce[m->replica] != m->nonce &&
	    ((r->recovery_from | r->unjoined_from) & (1u << m->replica)) &&
	    !BUG(r, VSR_BUG_STALE_RECOVERY_ANSWER) && GUARD(r, VSR_GUARD_REC_FORGET_ANSWER)) {
		r->recovery_from &= ~(1u << m->replica);
		r->unjoined_from &= ~(1u << m->replica);
	}
	if (m->history != 0 && r->history != 0 && m->history != r->history) {
		r->stats.messages_dropped++;
		return;
	}
	/* An amnesiac catching up in a history says nothing: it can vouch for
	 * nothing, and it is committed to that history. */
	if (r->amnesia && r->history != 0) return;
	/* Every other replica answers, whatever its status, so that a cluster
	 * where nobody is normal can still find its way back; one that holds
	 * nothing answers with history 0. */
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_RECOVERY_RESPONSE);
	out->status = r->status;
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->nonce = m->nonce;
	out->checksum = r->recovery_nonce;
	/* Its answer was counted at our genesis, by this very incarnation of
	 * it: it joins as a member (the checksum names its own nonce). */
	if (r->history != 0 && r->genesis_member_nonce[m->replica] == m->nonce)
		out->checksum = grant_token(m->nonce, r->recovery_nonce);
}

/* Sorts out an answer by history. Returns true when it was consumed (the
 * answer counts toward nothing else). */
static bool on_history_answer(vsr_replica *r, const vsr_message *m)
{
	uint8_t from = m->replica;
	if (m->history == 0) {
		/* The responder holds nothing: unjoined, or an amnesiac that has
		 * not begun catching up. */
		r->recovery_from &= ~(1u << from);
		r->unjoined_from |= 1u << from;
		if (from == vsr_primary_of(0, r->n)) r->genesis_peer_nonce = m->checksum;
		uint32_t others = ((1u << r->n) - 1) & ~(1u << r->self);
		if (r->history == 0 && r->self == vsr_primary_of(0, r->n) &&
		    (r->unjoined_from & others) == others) {
			/* Every configured replica holds nothing: genesis. */
			for (uint8_t i = 0; i < r->n; i++)
				r->genesis_member_nonce[i] = r->responder_nonce[i];
			genesis(r);
		}
		return true;
	}
	r->unjoined_from &= ~(1u << from);
	if (r->history != 0) {
		if (m->history == r->history) return false;
		r->stats.messages_dropped++; /* another history: not our cluster */
		return true;
	}
	if (from == vsr_primary_of(0, r->n) && r->genesis_peer_nonce != 0 &&
	    m->checksum == grant_token(r->recovery_nonce, r->genesis_peer_nonce)) {
		join_as_member(r, m->history);
		return true;
	}
	/* The cluster has a history, and we may have held promises in it
	 * before we lost them: catch up as an amnesiac. Answers count for the
	 * history they name; a different one starts the count again. */
	if (m->history != r->joining_history) {
		r->joining_history = m->history;
		r->recovery_from = 0;
	}
	return false;
}

void rec_on_recovery_response(vsr_replica *r, const vsr_message *m)
{
	if (r->status != VSR_STATUS_RECOVERING) return;
	if (m->nonce != r->recovery_nonce && !BUG(r, VSR_BUG_RECOVERY_ANY_NONCE) &&
	    GUARD(r, VSR_GUARD_REC_STALE_NONCE))
		return;
	r->responder_nonce[m->replica] = m->checksum;
	if (on_history_answer(r, m)) return;
	r->recovery_from |= 1u << m->replica;
	r->recovery_view[m->replica] = m->view;
	r->recovery_status[m->replica] = m->status;
	r->recovery_at[m->replica] = r->now;
	/* Only recent answers count: a responder that went down for good after
	 * answering (a minority left down) would otherwise hold its view up
	 * forever, "normal in view v" with the primary of v gone too. */
	uint64_t window = VSR_RECOVERY_ANSWER_ROUNDS *
			  ((uint64_t)r->cfg.timeouts.recovery_retry_ticks + r->cfg.timeouts.jitter_ticks);
	uint32_t fresh = 0;
	for (uint8_t i = 0; i < r->n; i++)
		if ((r->recovery_from & (1u << i)) &&
		    (r->recovery_at[i] + window >= r->now || BUG(r, VSR_BUG_STALE_RECOVERY_ANSWER)))
			fresh |= 1u << i;
	/* Our own durable state counts toward the quorum, unless it is lost. */
	uint32_t count = popcount32(fresh) + (r->amnesia ? 0 : 1);
	if (count < r->quorum) return;
	bool normal_seen = false, primary_seen = false;
	uint64_t vn = 0, top = r->view;
	for (uint8_t i = 0; i < r->n; i++) {
		if (!(fresh & (1u << i))) continue;
		uint64_t v = r->recovery_view[i];
		if (v > top) top = v;
		if (r->recovery_status[i] != VSR_STATUS_NORMAL) continue;
		bool from_primary = i == vsr_primary_of(v, r->n);
		if (!normal_seen || v > vn) {
			vn = v;
			primary_seen = from_primary;
		} else if (v == vn && from_primary) {
			primary_seen = true;
		}
		normal_seen = true;
	}
	/* A replica that lost its disk may have voted, before the crash, in a
	 * view change that is still open. Its votes were counted by replicas of
	 * that view or above, and a quorum of answers always includes one of
	 * them, so it waits until the normal view is at least every view it
	 * hears of (DISC'17 hole 8.1, for a single amnesiac). */
	if (primary_seen && vn >= r->view && vsr_primary_of(vn, r->n) != r->self &&
	    (!r->amnesia || vn >= top)) {
		/* An amnesiac commits to the history here. */
		if (r->history == 0) r->history = r->joining_history;
		st_start(r, vn);
	} else if (r->amnesia) {
		/* Wait for a normal primary: we can vouch for nothing. */
	} else if (!normal_seen || r->view > vn) {
		/* Nobody in the quorum runs a view at or above ours: start a view
		 * strictly above every view anyone here knows (a view that may
		 * already have had a START_VIEW is never started again). A stale
		 * "normal" answer from a replica that went down since no longer
		 * holds us: answers expire (above). */
		vc_resume(r, top + 1);
	} else if (vn == r->view && vsr_primary_of(vn, r->n) == r->self) {
		/* The backups of our view wait for us, their primary. */
		vc_resume(r, top + 1);
	}
	/* Otherwise wait: the primary's answer is still missing. */
}
