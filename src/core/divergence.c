/* divergence.c - runtime divergence detection: checkpoint digests compared
 * across replicas (docs/protocol.md "Divergence detection", issue 9).
 *
 * A replicated state machine must be deterministic, and the Lua sandbox
 * closes the holes it knows; this catches the ones it does not. Each
 * checkpoint has a digest chosen by the state machine over its logical state
 * and the client table (vsr_checkpoint.digest; the core treats it as opaque).
 * Equal executions give equal digests at every checkpoint op.
 *
 *   - A backup's PREPARE_OK carries its current checkpoint (op, digest).
 *   - The primary compares it with its own checkpoint at that op. When a
 *     quorum (the primary included) holds the same digest there, that
 *     checkpoint is certified: the primary's COMMITs carry it, and a backup
 *     that reported another digest is told at once (a COMMIT to it).
 *   - A backup that holds the certified op with another digest is diverged:
 *     it counts and records it, leaves status normal for state transfer (no
 *     more acks, nothing served), fetches the certified checkpoint (the
 *     chunks' digest is checked before install, so only a copy of the
 *     quorum's state is accepted), installs it without dropping its log (the
 *     log is not diverged, only the state computed from it), and re-executes
 *     its own committed entries above it.
 *   - A primary that finds a quorum of backups agreeing on a digest other
 *     than its own is the one diverged: it abdicates (falls silent, as when
 *     it hears no quorum) and repairs as a backup of the next view.
 *   - A diverged replica remembers the certification that found it (op,
 *     the quorum's digest and size). When its primary's COMMITs name no
 *     checkpoint it can repair from (the next primary may never certify
 *     one: with one replica of three cut off, its report against the
 *     diverged one's is one to one), it repairs from that record, a few
 *     times at most: a quorum's agreement is the same fact wherever it
 *     was gathered.
 * With no quorum on any digest (every replica different) nothing is
 * certified and nothing is repaired; the replicas count what they see.
 * Nothing here changes which entries commit: logs and states are separate,
 * and a diverged state never votes differently on the log. */
#include "replica.h"

/* Repairs begun from a recorded certification alone (dv_on_commit). */
#define VSR_DV_SELF_REPAIRS_MAX 3

/* Our own checkpoint at `op` (the current one or the one before), or NULL. */
static const vsr_checkpoint *own_checkpoint(const vsr_replica *r, uint64_t op)
{
	if (op == 0) return NULL;
	if (op == r->checkpoint.op) return &r->checkpoint;
	if (op == r->checkpoint_prev.op) return &r->checkpoint_prev;
	return NULL;
}

void dv_fill_ack(const vsr_replica *r, vsr_message *m)
{
	if (BUG(r, VSR_BUG_NO_DIVERGENCE_CHECK) || r->checkpoint.op == 0) return;
	m->checkpoint_op = r->checkpoint.op;
	m->checkpoint_size = r->checkpoint.size;
	m->checkpoint_digest = r->checkpoint.digest;
}

void dv_fill_commit(const vsr_replica *r, vsr_message *m)
{
	if (BUG(r, VSR_BUG_NO_DIVERGENCE_CHECK) || r->dv_certified.op == 0) return;
	m->checkpoint_op = r->dv_certified.op;
	m->checkpoint_size = r->dv_certified.size;
	m->checkpoint_digest = r->dv_certified.digest;
}

/* One detection per episode (diverged until repaired): counted once, its
 * latest checkpoint op and digests kept for the host's log. */
static void record(vsr_replica *r, uint64_t op, uint64_t ours, uint64_t quorum,
		   bool as_primary)
{
	if (!r->diverged) r->stats.divergences++;
	if (!r->diverged || r->dv_last.op != op || r->dv_last.quorum_digest != quorum)
		r->dv_self_repairs = 0; /* a new record: its own tries */
	r->diverged = true;
	r->dv_last = (vsr_divergence){.op = op, .digest = ours, .quorum_digest = quorum,
				      .view = r->view, .executed = r->executed,
				      .as_primary = as_primary};
}

/* A COMMIT to one backup, carrying the certified checkpoint. */
static void tell(vsr_replica *r, uint8_t to)
{
	vsr_message *out = emit_send(r, to, VSR_MSG_COMMIT);
	out->commit = r->commit;
	out->op = r->log.head;
	out->checksum = log_checksum_at(&r->log, r->commit);
	dv_fill_commit(r, out);
}

void dv_on_prepare_ok(vsr_replica *r, const vsr_message *m)
{
	if (BUG(r, VSR_BUG_NO_DIVERGENCE_CHECK) || m->checkpoint_op == 0) return;
	uint8_t from = m->replica;
	r->dv_peer_op[from] = m->checkpoint_op;
	r->dv_peer_digest[from] = m->checkpoint_digest;
	const vsr_checkpoint *own = own_checkpoint(r, m->checkpoint_op);
	if (own == NULL || own->digest == 0) return;
	uint32_t with_us = 1, with_them = 0;
	for (uint8_t i = 0; i < r->n; i++) {
		if (i == r->self || r->dv_peer_op[i] != own->op) continue;
		if (r->dv_peer_digest[i] == own->digest) with_us++;
		if (r->dv_peer_digest[i] == m->checkpoint_digest) with_them++;
	}
	if (with_us >= r->quorum) {
		if (own->op > r->dv_certified.op) r->dv_certified = *own;
		if (own->op == r->dv_certified.op && r->diverged &&
		    own->op >= r->dv_last.op) {
			/* A quorum shares the state we hold now (repaired by a
			 * transfer into this checkpoint): no longer diverged. Not
			 * on agreement below the op we diverged at (a late ack
			 * reporting an older checkpoint): that says nothing of
			 * the state we hold now. */
			r->diverged = false;
		}
		if (m->checkpoint_digest != own->digest &&
		    own->op == r->dv_certified.op) {
			if (r->dv_peer_told[from] != own->op + 1) {
				r->dv_peer_told[from] = own->op + 1;
				r->stats.divergent_peers++;
			}
			/* Told again at each such ack: the COMMIT may be lost. */
			tell(r, from);
		}
		return;
	}
	if (m->checkpoint_digest != own->digest && with_them >= r->quorum && !r->diverged) {
		/* A quorum of backups agrees on another state than ours: we are
		 * the minority. Our log is sound (it is what they acked), our
		 * state is not: stop leading now, not at the next tick (a host
		 * ticks at the deadline, which a loaded primary keeps moving;
		 * normal_on_tick and normal_heard_backup keep us abdicated). */
		record(r, own->op, own->digest, m->checkpoint_digest, true);
		r->dv_quorum_size = m->checkpoint_size;
		r->stats.divergence_abdications++;
		if (!r->suspecting && !r->start_view_pending) normal_abdicate(r);
	}
}

bool dv_must_abdicate(const vsr_replica *r)
{
	return r->diverged && !BUG(r, VSR_BUG_NO_DIVERGENCE_CHECK);
}

/* Leaves status normal to fetch the certified checkpoint `cp`. */
static void repair_start(vsr_replica *r, const vsr_checkpoint *cp)
{
	primary_drop_pipeline(r);
	set_status(r, VSR_STATUS_STATE_TRANSFER);
	timer_stop(&r->t_heartbeat);
	timer_stop(&r->t_prepare_retry);
	timer_stop(&r->t_primary);
	timer_stop(&r->t_view_change);
	r->repairing = false;
	r->transfer_nonce = prng_next(&r->prng) | 1;
	r->transfer_retries = 0;
	r->stats.state_transfers++;
	r->dv_repairing = true;
	r->dv_last.repairing = true;
	st_fetch_checkpoint(r, cp);
	timer_set(r, &r->t_retry, r->cfg.timeouts.recovery_retry_ticks, true);
}

/* Repairs from the certification recorded in dv_last when it is our
 * current checkpoint (a checkpoint never goes back: storage may have
 * dropped the entries below the current one) and our log holds every entry
 * above it; otherwise the next certified checkpoint will do. */
static bool try_repair(vsr_replica *r)
{
	uint64_t op = r->dv_last.op;
	if (op == 0 || op != r->checkpoint.op || op > r->executed || r->dv_quorum_size == 0 ||
	    !log_checksum_known(&r->log, op) || !log_matches(&r->log, op, r->checkpoint.checksum))
		return false;
	/* Our checkpoint's place in the chain, the quorum's state. */
	vsr_checkpoint cp = r->checkpoint;
	cp.size = r->dv_quorum_size;
	cp.digest = r->dv_last.quorum_digest;
	repair_start(r, &cp);
	return true;
}

void dv_on_commit(vsr_replica *r, const vsr_message *m)
{
	if (BUG(r, VSR_BUG_NO_DIVERGENCE_CHECK)) return;
	const vsr_checkpoint *own = m->checkpoint_op != 0 && m->checkpoint_digest != 0
					    ? own_checkpoint(r, m->checkpoint_op)
					    : NULL;
	if (own != NULL && own->digest == m->checkpoint_digest) {
		if (r->diverged && own->op == r->checkpoint.op) r->diverged = false;
		/* Agreement at our previous checkpoint says nothing of the
		 * state we diverged at since. */
		else dv_repair_from_record(r);
		return;
	}
	if (own != NULL) {
		/* Certified by our primary: repair from it, at every such COMMIT
		 * (a repair that failed is started again by the next one). */
		if (!r->diverged || r->dv_last.op != own->op)
			record(r, own->op, own->digest, m->checkpoint_digest, false);
		r->dv_quorum_size = m->checkpoint_size;
		try_repair(r);
		return;
	}
	dv_repair_from_record(r);
}

void dv_repair_from_record(vsr_replica *r)
{
	/* Our primary names nothing we can compare (it certified nothing, or
	 * a checkpoint we no longer hold; under load it sends PREPAREs and no
	 * COMMIT at all): the certification that found us is still the
	 * quorum's, so repair from it. A few tries only: when no replica
	 * holds that checkpoint any more, every try would only cost the
	 * primary our acks. */
	if (BUG(r, VSR_BUG_NO_DIVERGENCE_CHECK) || BUG(r, VSR_BUG_NO_RECORD_REPAIR) ||
	    !r->diverged || r->dv_repairing ||
	    r->status != VSR_STATUS_NORMAL || is_primary(r))
		return;
	if (r->dv_self_repairs < VSR_DV_SELF_REPAIRS_MAX && try_repair(r)) r->dv_self_repairs++;
}

void dv_repair_failed(vsr_replica *r)
{
	/* Our log is intact and still our view's (a repair never touches it,
	 * and a view change would have ended the repair): back to a normal
	 * backup, still diverged. The next certified checkpoint in a COMMIT
	 * starts another repair; a view change here would only disturb a
	 * cluster that works. */
	r->dv_repairing = false;
	r->dv_last.repairing = false;
	checkpoint_fetch_stop(r);
	r->transfer_retries = 0;
	normal_become_backup(r);
}

void dv_repaired(vsr_replica *r)
{
	r->dv_repairing = false;
	r->diverged = false;
	r->dv_last.repairing = false;
	r->stats.divergence_repairs++;
}

bool vsr_replica_diverged(const vsr_replica *r, vsr_divergence *out)
{
	if (out != NULL) *out = r->dv_last;
	return r->diverged;
}
