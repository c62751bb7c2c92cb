/* recovery.c - rejoining after a restart (VRR 4.3, adapted by protocol.md 5).
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
 * answers to an earlier incarnation's request are never counted. A replica
 * that lost its disk (amnesia) neither answers nor counts itself. */
#include "replica.h"

static uint32_t popcount32(uint32_t x)
{
	uint32_t c = 0;
	for (; x; x &= x - 1) c++;
	return c;
}

void rec_on_tick(vsr_replica *r)
{
	if (r->status != VSR_STATUS_RECOVERING || !timer_fired(r, &r->t_retry)) return;
	if (r->recovery_nonce == 0) r->recovery_nonce = prng_next(&r->prng) | 1;
	if (r->n == 1) {
		/* Alone, our durable state is the whole cluster. */
		vc_resume(r, r->view + 1);
		return;
	}
	vsr_message m;
	memset(&m, 0, sizeof m);
	message_header(r, &m, VSR_MSG_RECOVERY);
	m.nonce = r->recovery_nonce;
	emit_broadcast(r, &m);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, true);
}

void rec_on_recovery(vsr_replica *r, const vsr_message *m)
{
	/* Normal replicas answer; so do recovering ones whose disk is intact,
	 * so that a cluster that restarts as a whole can find its way back. */
	/* A RECOVERY proves its sender restarted: any answer it gave our own
	 * recovery before is stale (F16: we waited forever on such an answer). */
	if (r->status == VSR_STATUS_RECOVERING && (r->recovery_from & (1u << m->replica)) &&
	    !BUG(r, VSR_BUG_STALE_RECOVERY_ANSWER) && GUARD(r, VSR_GUARD_REC_FORGET_ANSWER))
		r->recovery_from &= ~(1u << m->replica);
	/* Every replica with an intact disk answers, whatever its status, so
	 * that a cluster where nobody is normal can still find its way back. */
	if (r->amnesia) return;
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_RECOVERY_RESPONSE);
	out->status = r->status;
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->nonce = m->nonce;
}

void rec_on_recovery_response(vsr_replica *r, const vsr_message *m)
{
	if (r->status != VSR_STATUS_RECOVERING) return;
	if (m->nonce != r->recovery_nonce && !BUG(r, VSR_BUG_RECOVERY_ANY_NONCE) &&
	    GUARD(r, VSR_GUARD_REC_STALE_NONCE))
		return;
	r->recovery_from |= 1u << m->replica;
	r->recovery_view[m->replica] = m->view;
	r->recovery_status[m->replica] = m->status;
	/* Our own durable state counts toward the quorum, unless it is lost. */
	uint32_t count = popcount32(r->recovery_from) + (r->amnesia ? 0 : 1);
	if (count < r->quorum) return;
	bool normal_seen = false, primary_seen = false;
	uint64_t vn = 0, top = r->view;
	for (uint8_t i = 0; i < r->n; i++) {
		if (!(r->recovery_from & (1u << i))) continue;
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
		st_start(r, vn);
	} else if (r->amnesia) {
		/* Wait for a normal primary: we can vouch for nothing. */
	} else if (!normal_seen || r->view > vn) {
		/* Nobody in the quorum runs a view at or above ours: start a view
		 * strictly above every view anyone here knows (a view that may
		 * already have had a START_VIEW is never started again). */
		vc_resume(r, top + 1);
	} else if (vn == r->view && vsr_primary_of(vn, r->n) == r->self) {
		/* The backups of our view wait for us, their primary. */
		vc_resume(r, top + 1);
	}
	/* Otherwise wait: the primary's answer is still missing. */
}
