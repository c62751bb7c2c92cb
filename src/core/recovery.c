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
 * Only normal replicas answer, with a nonce so that answers to an earlier
 * incarnation's request are never counted. */
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
	if (r->status != VSR_STATUS_NORMAL) return;
	vsr_message *out = emit_send(r, m->replica, VSR_MSG_RECOVERY_RESPONSE);
	out->status = r->status;
	out->log_view = r->log_view;
	out->op = r->log.head;
	out->commit = r->commit;
	out->nonce = m->nonce;
}

void rec_on_recovery_response(vsr_replica *r, const vsr_message *m)
{
	if (r->status != VSR_STATUS_RECOVERING || m->nonce != r->recovery_nonce) return;
	r->recovery_from |= 1u << m->replica;
	bool from_primary = m->replica == vsr_primary_of(m->view, r->n);
	if (m->view > r->recovery_view_max) {
		r->recovery_view_max = m->view;
		r->recovery_primary_seen = from_primary;
	} else if (m->view == r->recovery_view_max && from_primary) {
		r->recovery_primary_seen = true;
	}
	if (popcount32(r->recovery_from) + 1 < r->quorum) return;
	uint64_t v = r->recovery_view_max;
	if (r->view > v) {
		vc_resume(r, r->view);
	} else if (v == r->view && vsr_primary_of(v, r->n) == r->self) {
		vc_resume(r, r->view + 1);
	} else if (r->recovery_primary_seen) {
		st_start(r, v, vsr_primary_of(v, r->n));
	}
	/* Otherwise wait: the primary's answer is still missing. */
}
