/* sim_check.c - ghost state and the cluster invariants of protocol.md 12.
 *
 * The checker sees every message a replica sends (before the network can
 * lose it), every replica's inspection data after every step, and the
 * durable images of the simulated disks. From that it keeps ghost state that
 * no replica has: the canonical committed history (first checksum committed
 * at each op), the log of every view as its primary published it, every
 * acknowledgement ever sent, every vote per replica across incarnations, and
 * the state digest at each executed op. Each check names the invariant it
 * enforces; a failure stops the run with a message that says what broke. */
#include <string.h>

#include "sim.h"

static const char *type_name(uint8_t t)
{
	return vsr_message_type_name((enum vsr_message_type)t);
}

static uint64_t key_view_op(uint64_t view, uint64_t op)
{
	return ((view + 1) << 32) ^ op;
}

static uint64_t key_view_replica(uint64_t view, uint8_t r)
{
	return ((view + 1) << 8) | r;
}

void sim_ghost_free(sim_ghost *g)
{
	sim_vec_free(&g->canon);
	sim_vec_free(&g->canon_view);
	sim_vec_free(&g->canon_ts);
	sim_map_free(&g->digest_at);
	sim_map_free(&g->chain_at);
	sim_vec_free(&g->digest_replica);
	sim_map_free(&g->view_log);
	sim_map_free(&g->acks);
	sim_map_free(&g->dvc_sent);
	sim_map_free(&g->primary_durable);
	memset(g, 0, sizeof(*g));
}

static bool is_vote(uint8_t t)
{
	return t == VSR_MSG_START_VIEW_CHANGE || t == VSR_MSG_DO_VIEW_CHANGE ||
	       t == VSR_MSG_START_VIEW || t == VSR_MSG_PREPARE_OK;
}

/* A read round echo (op 0, checksum 0): acknowledges nothing, promises
 * nothing, needs no disk (src/core/normal.c send_round_echo). */
static bool is_round_echo(const vsr_message *m)
{
	return m->type == VSR_MSG_PREPARE_OK && m->op == 0 && m->checksum == 0;
}

static bool is_quiet_status(uint8_t status)
{
	return status == VSR_STATUS_RECOVERING ||
	       status == VSR_STATUS_STATE_TRANSFER;
}

/* Records the checksum of view `view`'s log at `op`; one log per view (5). */
static void view_log_put(struct sim *s, sim_ghost *g, uint64_t view,
			 uint64_t op, uint64_t checksum, uint8_t from,
			 uint8_t type)
{
	bool inserted;
	uint64_t *v = sim_map_put(&g->view_log, key_view_op(view, op),
				  checksum, &inserted);
	if (!inserted && *v != checksum)
		sim_fail(s,
			 "deterministic primary (12.5): view %llu has two logs at op %llu "
			 "(checksum %016llx, then %016llx in %s from replica %u)",
			 (unsigned long long)view, (unsigned long long)op,
			 (unsigned long long)*v, (unsigned long long)checksum,
			 type_name(type), from);
}

/* Highest canonical op first committed in a view below `view`: every log
 * that view `view` starts from must contain it (12.2). Ops committed are a
 * prefix, so everything below it must be there too. */
static uint64_t committed_before_view(const sim_ghost *g, uint64_t view)
{
	uint64_t c = g->canon_max;
	/* Ops with an unknown canonical checksum (0) were committed by a
	 * replica that did not hold the entry; skip over them. */
	while (c > 0) {
		uint64_t cs = sim_vec_get(&g->canon, c);
		if (cs != 0 && sim_vec_get(&g->canon_view, c) < view)
			return c;
		c--;
	}
	return 0;
}

/* No committed op lost (12.2): a log that starts view `view`. */
static void check_starting_log(struct sim *s, const sim_ghost *g, uint8_t r,
			       const vsr_replica *core, uint64_t view,
			       uint64_t head_op, const char *what)
{
	uint64_t c = committed_before_view(g, view);
	if (c == 0)
		return;
	if (head_op < c) {
		sim_fail(s,
			 "no committed op lost (12.2): replica %u %s view %llu with head "
			 "op %llu, but op %llu was committed in an earlier view",
			 r, what, (unsigned long long)view,
			 (unsigned long long)head_op, (unsigned long long)c);
		return;
	}
	vsr_replica_info info;
	vsr_replica_info_get(core, &info);
	uint64_t lo = info.log_start > 1 ? info.log_start : 1;
	for (uint64_t op = lo; op <= c && op <= info.op; op++) {
		uint64_t canon = sim_vec_get(&g->canon, op);
		uint64_t cs = vsr_replica_checksum_at(core, op);
		if (canon && cs && cs != canon) {
			sim_fail(s,
				 "no committed op lost (12.2): replica %u %s view %llu "
				 "with op %llu = %016llx, but %016llx was committed there",
				 r, what, (unsigned long long)view,
				 (unsigned long long)op, (unsigned long long)cs,
				 (unsigned long long)canon);
			return;
		}
	}
}

void sim_check_sent(struct sim *s, sim_ghost *g, uint8_t from,
		    const vsr_replica *core, const vsr_replica_info *before,
		    const vsr_replica_info *after, const vsr_message *m)
{
	sim_ghost_replica *gr = &g->r[from];
	uint8_t n = sim_replica_count(s);
	const char *tn = type_name(m->type);

	if (m->replica != from)
		sim_fail(s, "message header: replica %u sent %s claiming to be %u",
			 from, tn, m->replica);
	if (m->view > g->max_view)
		g->max_view = m->view;

	/* 12.3: the view in what a replica says never goes down within an
	 * incarnation; across restarts its votes bound it (promise). */
	if (m->view < gr->max_sent_view)
		sim_fail(s,
			 "monotonic view (12.3): replica %u sent %s in view %llu after "
			 "sending view %llu",
			 from, tn, (unsigned long long)m->view,
			 (unsigned long long)gr->max_sent_view);
	if (m->view > gr->max_sent_view)
		gr->max_sent_view = m->view;

	/* 12.3: a replica's claimed log_view never goes down either; in a
	 * DO_VIEW_CHANGE it is a vote's content, so across restarts too. */
	if (m->type == VSR_MSG_DO_VIEW_CHANGE || m->type == VSR_MSG_NEW_STATE ||
	    m->type == VSR_MSG_RECOVERY_RESPONSE) {
		uint64_t floor = gr->max_sent_log_view;
		if (m->type == VSR_MSG_DO_VIEW_CHANGE && gr->max_dvc_log_view > floor)
			floor = gr->max_dvc_log_view;
		if (m->log_view < floor)
			sim_fail(s,
				 "monotonic log_view (12.3): replica %u sent %s with log_view "
				 "%llu after claiming log_view %llu",
				 from, tn, (unsigned long long)m->log_view,
				 (unsigned long long)floor);
		if (m->log_view > gr->max_sent_log_view)
			gr->max_sent_log_view = m->log_view;
		if (m->type == VSR_MSG_DO_VIEW_CHANGE &&
		    m->log_view > gr->max_dvc_log_view)
			gr->max_dvc_log_view = m->log_view;
	}

	if (is_round_echo(m)) {
		/* 12.8: only a normal replica of that view echoes. */
		if (after->status != VSR_STATUS_NORMAL || after->view != m->view)
			sim_fail(s,
				 "status gating (12.8): replica %u echoed a read round of view "
				 "%llu while %s in view %llu",
				 from, (unsigned long long)m->view,
				 vsr_status_name((enum vsr_status)after->status),
				 (unsigned long long)after->view);
		return;
	}
	if (is_vote(m->type)) {
		if (m->view < gr->max_vote_view)
			sim_fail(s,
				 "promise durability (12.4): replica %u sent %s in view "
				 "%llu after voting in view %llu",
				 from, tn, (unsigned long long)m->view,
				 (unsigned long long)gr->max_vote_view);
		if (m->view > gr->max_vote_view)
			gr->max_vote_view = m->view;
		/* I6 / protocol.md 5: the vote's view is on disk before it goes
		 * out. Checked on the simulated disk itself, not the core's
		 * belief about it. */
		const sim_storage *st = sim_storage_of(s, from);
		if (sim_direct_checks(s) && st->sb.view < m->view)
			sim_fail(s,
				 "promise durability (I6): replica %u sent %s for view %llu "
				 "while its disk holds view %llu",
				 from, tn, (unsigned long long)m->view,
				 (unsigned long long)st->sb.view);
		/* 12.8: recovering and state-transfer replicas do not vote. */
		if (is_quiet_status(before->status) && is_quiet_status(after->status))
			sim_fail(s,
				 "status gating (12.8): replica %u sent %s while %s",
				 from, tn, vsr_status_name((enum vsr_status)after->status));
	}

	switch (m->type) {
	case VSR_MSG_PREPARE:
	case VSR_MSG_COMMIT:
	case VSR_MSG_START_VIEW:
		/* 12.5 / I7 */
		if (from != vsr_primary_of(m->view, n))
			sim_fail(s,
				 "deterministic primary (12.5): replica %u sent %s for view "
				 "%llu whose primary is %u",
				 from, tn, (unsigned long long)m->view,
				 vsr_primary_of(m->view, n));
		if (after->status != VSR_STATUS_NORMAL || after->view != m->view)
			sim_fail(s,
				 "status gating (I7): replica %u sent %s for view %llu while "
				 "%s in view %llu",
				 from, tn, (unsigned long long)m->view,
				 vsr_status_name((enum vsr_status)after->status),
				 (unsigned long long)after->view);
		break;
	default:
		break;
	}
	if (sim_failed(s))
		return;

	switch (m->type) {
	case VSR_MSG_PREPARE:
	case VSR_MSG_START_VIEW:
		for (uint32_t i = 0; i < m->entry_count; i++) {
			const vsr_entry *e = &m->entries[i];
			if (vsr_entry_checksum(e) != e->checksum) {
				sim_fail(s, "entry checksum: replica %u sent %s with a bad "
					 "entry at op %llu", from, tn,
					 (unsigned long long)e->op);
				return;
			}
			uint64_t *parent = sim_map_get(&g->view_log,
						       key_view_op(m->view, e->op - 1));
			if (parent && e->op > 1 && *parent != e->parent)
				sim_fail(s,
					 "log matching (12.7): %s of view %llu at op %llu does "
					 "not chain to the view's entry at op %llu",
					 tn, (unsigned long long)m->view,
					 (unsigned long long)e->op,
					 (unsigned long long)(e->op - 1));
			view_log_put(s, g, m->view, e->op, e->checksum, from, m->type);
		}
		if (m->type == VSR_MSG_START_VIEW)
			check_starting_log(s, g, from, core, m->view, m->op,
					   "sent START_VIEW of");
		break;
	case VSR_MSG_PREPARE_OK: {
		/* 12.6 / 12.7: an ack is for the acking replica's own log, in
		 * the view it is normal in, and that log is the view's log. */
		if (after->status != VSR_STATUS_NORMAL || after->view != m->view)
			sim_fail(s,
				 "status gating (12.8): replica %u sent PREPARE_OK for view "
				 "%llu while %s in view %llu",
				 from, (unsigned long long)m->view,
				 vsr_status_name((enum vsr_status)after->status),
				 (unsigned long long)after->view);
		uint64_t own = vsr_replica_checksum_at(core, m->op);
		if (!sim_direct_checks(s))
			own = m->checksum; /* consequences only */
		if (own != 0 && own != m->checksum)
			sim_fail(s,
				 "log matching (12.7): replica %u acked op %llu with %016llx "
				 "but holds %016llx there",
				 from, (unsigned long long)m->op,
				 (unsigned long long)m->checksum,
				 (unsigned long long)own);
		uint64_t *vl = sim_map_get(&g->view_log, key_view_op(m->view, m->op));
		if (vl && *vl != m->checksum && sim_direct_checks(s))
			sim_fail(s,
				 "log matching (12.7): replica %u acked op %llu of view %llu "
				 "with %016llx, but the view's log has %016llx",
				 from, (unsigned long long)m->op,
				 (unsigned long long)m->view,
				 (unsigned long long)m->checksum,
				 (unsigned long long)*vl);
		/* I5: the acked entry is on the simulated disk. */
		const sim_storage *st = sim_storage_of(s, from);
		if (sim_direct_checks(s) && m->op > sim_storage_checkpoint_op(st) &&
		    (m->op >= st->slot_end || !st->slots[m->op].present ||
		     st->slots[m->op].e.checksum != m->checksum))
			sim_fail(s,
				 "durability before ack (I5): replica %u acked op %llu that "
				 "is not on its disk",
				 from, (unsigned long long)m->op);
		/* ... and in a log its disk already claims for that view: an ack
		 * says "view v's log holds this", which a restart must not forget
		 * (a DO_VIEW_CHANGE with an older log_view would outrank it). */
		if (sim_direct_checks(s) && !sim_failed(s) &&
		    (st->sb.view != m->view || st->sb.log_view != m->view))
			sim_fail(s,
				 "durability before ack (I5): replica %u acked op %llu in view "
				 "%llu while its disk says view %llu log_view %llu",
				 from, (unsigned long long)m->op, (unsigned long long)m->view,
				 (unsigned long long)st->sb.view,
				 (unsigned long long)st->sb.log_view);
		sim_ghost_replica *ga = &g->r[from];
		if (!ga->ack_valid || m->view > ga->ack_view ||
		    (m->view == ga->ack_view && m->op > ga->ack_op)) {
			ga->ack_valid = true;
			ga->ack_view = m->view;
			ga->ack_op = m->op;
			ga->ack_checksum = m->checksum;
		}
		uint64_t *a = sim_map_put(&g->acks, key_view_replica(m->view, from),
					  0, NULL);
		if (m->op + 1 > *a)
			*a = m->op + 1;
		break;
	}
	case VSR_MSG_DO_VIEW_CHANGE:
		sim_map_put(&g->dvc_sent, key_view_replica(m->view, from), 1, NULL);
		if (m->log_view > m->view)
			sim_fail(s, "view change (12.3): replica %u sent DO_VIEW_CHANGE "
				 "with log_view %llu above view %llu", from,
				 (unsigned long long)m->log_view,
				 (unsigned long long)m->view);
		for (uint32_t i = 0; i < m->entry_count; i++)
			if (vsr_entry_checksum(&m->entries[i]) != m->entries[i].checksum)
				sim_fail(s, "entry checksum: replica %u sent DO_VIEW_CHANGE "
					 "with a bad entry at op %llu", from,
					 (unsigned long long)m->entries[i].op);
		break;
	default:
		break;
	}
}

/* A new op entered the canonical history: was it acknowledged by a quorum
 * of distinct replicas in one view (12.6)? The primary of that view counts
 * when the entry is on its disk. */
static void check_quorum(struct sim *s, sim_ghost *g, uint64_t op,
			 uint64_t entry_view, uint64_t canon)
{
	uint8_t n = sim_replica_count(s);
	uint32_t q = vsr_quorum(n);
	if (!sim_direct_checks(s))
		return;
	for (uint64_t w = entry_view; w <= g->max_view; w++) {
		uint32_t count = 0;
		uint8_t p = vsr_primary_of(w, n);
		for (uint8_t r = 0; r < n; r++) {
			if (r == p) {
				const sim_storage *st = sim_storage_of(s, r);
				bool on_disk = op <= sim_storage_checkpoint_op(st) ||
					       (op < st->slot_end &&
						st->slots[op].present &&
						st->slots[op].e.checksum == canon);
				uint64_t *pd = sim_map_get(&g->primary_durable, w + 1);
				if (on_disk && pd && *pd > op)
					count++;
				continue;
			}
			uint64_t *a = sim_map_get(&g->acks, key_view_replica(w, r));
			if (a && *a > op)
				count++;
		}
		if (count >= q)
			return;
	}
	sim_fail(s,
		 "quorum (12.6): op %llu committed, but no view from %llu to %llu "
		 "has %u distinct acknowledgements for it",
		 (unsigned long long)op, (unsigned long long)entry_view,
		 (unsigned long long)g->max_view, q);
}

/* Timestamps are chosen by primaries whose clocks differ; in the committed
 * history they must still never go back (vsr.h: monotonic in the log). */
static void check_timestamp(struct sim *s, sim_ghost *g, uint64_t op,
			    uint64_t ts)
{
	sim_vec_set(&g->canon_ts, op, ts);
	uint64_t prev = op > 1 ? sim_vec_get(&g->canon_ts, op - 1) : 0;
	uint64_t next = sim_vec_get(&g->canon_ts, op + 1);
	if ((prev && ts < prev) || (next && next < ts))
		sim_fail(s,
			 "timestamps: committed op %llu has timestamp %llu, op %llu has "
			 "%llu, op %llu has %llu: not monotonic",
			 (unsigned long long)op, (unsigned long long)ts,
			 (unsigned long long)(op - 1), (unsigned long long)prev,
			 (unsigned long long)(op + 1), (unsigned long long)next);
}

/* Agreement (12.1) over ops lo..hi of replica r's log. */
static void check_agreement(struct sim *s, sim_ghost *g, uint8_t r,
			    const vsr_replica *core, const vsr_replica_info *info,
			    uint64_t lo, uint64_t hi)
{
	if (lo < info->log_start)
		lo = info->log_start;
	if (lo < 1)
		lo = 1;
	for (uint64_t op = lo; op <= hi; op++) {
		uint64_t cs = vsr_replica_checksum_at(core, op);
		if (cs == 0)
			continue;
		uint64_t canon = sim_vec_get(&g->canon, op);
		if (canon == 0) {
			sim_vec_set(&g->canon, op, cs);
			sim_vec_set(&g->canon_view, op, info->view);
			if (op > g->canon_max)
				g->canon_max = op;
			const vsr_entry *e = vsr_replica_entry(core, op);
			if (e) {
				check_quorum(s, g, op, e->view, cs);
				check_timestamp(s, g, op, e->timestamp);
			}
		} else if (canon != cs) {
			sim_fail(s,
				 "agreement (12.1): replica %u has %016llx at committed op "
				 "%llu, the canonical history has %016llx",
				 r, (unsigned long long)cs, (unsigned long long)op,
				 (unsigned long long)canon);
		}
		if (sim_failed(s))
			return;
	}
}

void sim_check_after_step(struct sim *s, sim_ghost *g, uint8_t r,
			  const vsr_replica *core, const vsr_replica_info *before,
			  const vsr_replica_info *after)
{
	sim_ghost_replica *gr = &g->r[r];
	const char *why = sim_direct_checks(s) ? vsr_replica_check(core) : NULL;
	if (why) {
		sim_fail(s, "local invariant (vsr_replica_check) of replica %u: %s",
			 r, why);
		return;
	}
	if (after->view > g->max_view)
		g->max_view = after->view;
	if (gr->has_info) {
		const vsr_replica_info *b = before;
		if (after->view < b->view || after->log_view < b->log_view ||
		    after->commit < b->commit ||
		    after->checkpoint_op < b->checkpoint_op)
			sim_fail(s,
				 "monotonic (12.3): replica %u went from view %llu log_view "
				 "%llu commit %llu checkpoint %llu to %llu %llu %llu %llu",
				 r, (unsigned long long)b->view,
				 (unsigned long long)b->log_view,
				 (unsigned long long)b->commit,
				 (unsigned long long)b->checkpoint_op,
				 (unsigned long long)after->view,
				 (unsigned long long)after->log_view,
				 (unsigned long long)after->commit,
				 (unsigned long long)after->checkpoint_op);
	}
	if (after->log_view > after->view)
		sim_fail(s, "12.3: replica %u has log_view %llu above view %llu", r,
			 (unsigned long long)after->log_view,
			 (unsigned long long)after->view);
	if (sim_failed(s))
		return;

	/* The primary's own durable write counts toward its quorum. */
	if (after->status == VSR_STATUS_NORMAL &&
	    vsr_primary_of(after->view, sim_replica_count(s)) == r) {
		uint64_t *pd = sim_map_put(&g->primary_durable, after->view + 1, 0,
					   NULL);
		if (after->durable_op + 1 > *pd)
			*pd = after->durable_op + 1;
	}

	/* 12.1 agreement: newly committed ops, plus a short window below the
	 * commit point so a committed entry that changes is seen soon. */
	uint64_t lo = gr->has_info ? gr->checked_commit + 1 : 1;
	if (after->commit >= 4 && after->commit - 4 < lo)
		lo = after->commit - 4;
	check_agreement(s, g, r, core, after, lo, after->commit);
	if (sim_failed(s))
		return;
	gr->checked_commit = after->commit;

	/* View-change quorum (issue 7): a new primary starts its view from the
	 * DO_VIEW_CHANGEs of a quorum, each sent for this very view (a copy
	 * kept from an earlier view promises nothing about this one). */
	if (sim_direct_checks(s) && after->status == VSR_STATUS_NORMAL &&
	    vsr_primary_of(after->view, sim_replica_count(s)) == r &&
	    gr->has_info && before->status == VSR_STATUS_VIEW_CHANGE &&
	    before->view == after->view) {
		uint32_t voters = 1;
		for (uint8_t i = 0; i < sim_replica_count(s); i++)
			if (i != r && sim_map_get(&g->dvc_sent, key_view_replica(after->view, i)))
				voters++;
		if (voters < vsr_quorum(sim_replica_count(s))) {
			sim_fail(s,
				 "view-change quorum: replica %u started view %llu as primary "
				 "with DO_VIEW_CHANGEs of that view from only %u replicas "
				 "(itself included)",
				 r, (unsigned long long)after->view, voters);
			return;
		}
	}

	/* 12.2: a replica that starts a view starts it from a complete log. */
	if (after->status == VSR_STATUS_NORMAL &&
	    (!gr->has_info || before->status != VSR_STATUS_NORMAL ||
	     before->view != after->view))
		check_starting_log(s, g, r, core, after->view, after->op,
				   "entered normal status in");
	if (sim_failed(s))
		return;

	/* Acks kept (issue 7): a replica still in the view of its last
	 * PREPARE_OK keeps the entry it acked there (and, by the hash chain,
	 * every entry it acked before in that view), across restarts too: a
	 * delayed START_VIEW or NEW_STATE must never shorten it. Only a move to
	 * a newer view (a view change or a transfer into it) may. */
	if (gr->ack_valid && sim_direct_checks(s) && after->view == gr->ack_view &&
	    gr->ack_op > after->checkpoint_op) {
		uint64_t held = after->op >= gr->ack_op
					? vsr_replica_checksum_at(core, gr->ack_op) : 0;
		if (held != gr->ack_checksum) {
			sim_fail(s,
				 "acks kept: replica %u acked op %llu (%016llx) in view %llu and "
				 "is still in that view (%s), but its log %s",
				 r, (unsigned long long)gr->ack_op,
				 (unsigned long long)gr->ack_checksum,
				 (unsigned long long)gr->ack_view,
				 vsr_status_name((enum vsr_status)after->status),
				 after->op < gr->ack_op ? "ends before it" : "holds another entry");
			return;
		}
	}

	/* 12.9: equal executed op, equal state. A planted divergence breaks
	 * it on purpose: settling then demands the repair (sim_cluster.c). */
	if (sim_planting(s)) {
		gr->info = *after;
		gr->has_info = true;
		return;
	}
	bool inserted;
	uint64_t *d = sim_map_put(&g->digest_at, after->executed + 1,
				  after->digest, &inserted);
	if (inserted) {
		sim_vec_set(&g->digest_replica, after->executed, r + 1u);
	} else if (*d != after->digest) {
		sim_fail(s,
			 "execution (12.9): replica %u has digest %016llx after executing "
			 "op %llu, replica %llu had %016llx there",
			 r, (unsigned long long)after->digest,
			 (unsigned long long)after->executed,
			 (unsigned long long)(sim_vec_get(&g->digest_replica,
							  after->executed) - 1),
			 (unsigned long long)*d);
		return;
	}

	gr->info = *after;
	gr->has_info = true;
}

void sim_check_full(struct sim *s, sim_ghost *g, uint8_t r,
		    const vsr_replica *core)
{
	vsr_replica_info info;
	vsr_replica_info_get(core, &info);
	check_agreement(s, g, r, core, &info, 1, info.commit);
}

void sim_check_restart(struct sim *s, sim_ghost *g, uint8_t r,
		       const sim_storage *st, const vsr_durable *d)
{
	sim_ghost_replica *gr = &g->r[r];
	/* 12.4: the promise of every vote survives the crash. */
	if (d->superblock.view < gr->max_vote_view)
		sim_fail(s,
			 "promise durability (12.4): replica %u restarted in view %llu "
			 "after voting in view %llu (the vote was not durable)",
			 r, (unsigned long long)d->superblock.view,
			 (unsigned long long)gr->max_vote_view);
	/* Durable committed entries agree with the canonical history. */
	for (uint32_t i = 0; i < d->entry_count && !sim_failed(s); i++) {
		const vsr_entry *e = &d->entries[i];
		uint64_t canon = sim_vec_get(&g->canon, e->op);
		if (e->op <= d->superblock.commit && canon && canon != e->checksum)
			sim_fail(s,
				 "agreement (12.1): replica %u has %016llx on disk at "
				 "committed op %llu, the canonical history has %016llx",
				 r, (unsigned long long)e->checksum,
				 (unsigned long long)e->op, (unsigned long long)canon);
	}
	/* The superblock names only a durable checkpoint: the state machine's
	 * own after the crash (a pending one is lost) is at least as new, or
	 * the ops between the two are gone (the log below the superblock's
	 * checkpoint was dropped). The core refuses such a disk (checkpoint_open:
	 * VSR_ECORRUPT); say why first. A consequence: checked in both modes. */
	uint64_t image = vsr_snapckpt_durable_op(&st->ck);
	if (!sim_failed(s) && image < d->superblock.checkpoint_op)
		sim_fail(s,
			 "checkpoint durability: replica %u restarted with a superblock "
			 "naming checkpoint %llu, but its state machine's durable checkpoint "
			 "is %llu: ops %llu..%llu are in neither (a checkpoint named before "
			 "it was durable, or a store that lost it since)",
			 r, (unsigned long long)d->superblock.checkpoint_op,
			 (unsigned long long)image, (unsigned long long)image + 1,
			 (unsigned long long)d->superblock.checkpoint_op);
	/* ... and, at the same op, the very checkpoint it names (the entry's
	 * checksum it was taken at): a restart never names one it lacks. */
	const vsr_snapckpt_image *im = vsr_snapckpt_current(&st->ck);
	if (!sim_failed(s) && im != NULL && im->cp.op == d->superblock.checkpoint_op &&
	    im->cp.checksum != d->superblock.checkpoint_checksum)
		sim_fail(s,
			 "checkpoint durability: replica %u restarted with a superblock "
			 "naming checkpoint %llu (entry %016llx), but its state machine's "
			 "checkpoint %llu is of entry %016llx",
			 r, (unsigned long long)d->superblock.checkpoint_op,
			 (unsigned long long)d->superblock.checkpoint_checksum,
			 (unsigned long long)im->cp.op, (unsigned long long)im->cp.checksum);
	gr->max_sent_view = gr->max_vote_view;
	gr->max_sent_log_view = 0;
	gr->checked_commit = 0;
	gr->has_info = false;
}

void sim_check_amnesia_restart(sim_ghost *g, uint8_t r)
{
	/* The wiped replica cannot keep promises it no longer remembers: its
	 * floors for votes (12.4) and DO_VIEW_CHANGE log_views (12.3) start
	 * over, as for a new replica. What its old votes and acks promised is
	 * the cluster's business now: 12.1 and 12.2 stay global and strict, and
	 * the core must keep the amnesiac out of every quorum until a state
	 * transfer brings it to a view at least as high as any it could have
	 * voted in that still matters. */
	sim_ghost_replica *gr = &g->r[r];
	gr->max_vote_view = 0;
	gr->max_dvc_log_view = 0;
	gr->max_sent_view = 0;
	gr->max_sent_log_view = 0;
	gr->checked_commit = 0;
	gr->has_info = false;
	gr->ack_valid = false; /* its acks are forgotten with its disk */
}

void sim_check_crash(sim_ghost *g, uint8_t r)
{
	g->r[r].has_info = false;
}

void sim_check_superblock(struct sim *s, uint8_t r, const vsr_superblock *old,
			  const vsr_superblock *sb)
{
	/* 12.3 on the disk itself: what survives a crash never goes back. */
	if (sb->view < old->view || sb->log_view < old->log_view ||
	    sb->commit < old->commit || sb->checkpoint_op < old->checkpoint_op ||
	    sb->epoch < old->epoch)
		sim_fail(s,
			 "monotonic durable state (12.3): replica %u wrote a superblock "
			 "view %llu log_view %llu commit %llu checkpoint %llu over view "
			 "%llu log_view %llu commit %llu checkpoint %llu",
			 r, (unsigned long long)sb->view,
			 (unsigned long long)sb->log_view,
			 (unsigned long long)sb->commit,
			 (unsigned long long)sb->checkpoint_op,
			 (unsigned long long)old->view,
			 (unsigned long long)old->log_view,
			 (unsigned long long)old->commit,
			 (unsigned long long)old->checkpoint_op);
	else if (sb->log_view > sb->view || sb->cluster != old->cluster)
		sim_fail(s,
			 "durable state: replica %u wrote a superblock with log_view %llu "
			 "above view %llu or another cluster id",
			 r, (unsigned long long)sb->log_view,
			 (unsigned long long)sb->view);
}

void sim_check_gating(struct sim *s, uint8_t r, uint8_t msg_type,
		      const vsr_replica_info *before, const vsr_replica_info *after)
{
	/* 12.8: only normal replicas process PREPARE and COMMIT. A replica that
	 * is not normal before and after such a message must neither extend
	 * its log nor move its commit point because of it. */
	if (msg_type != VSR_MSG_PREPARE && msg_type != VSR_MSG_COMMIT)
		return;
	if (before->status == VSR_STATUS_NORMAL || after->status == VSR_STATUS_NORMAL)
		return;
	if (after->op != before->op || after->commit != before->commit)
		sim_fail(s,
			 "status gating (12.8): replica %u, %s, processed %s: op %llu -> "
			 "%llu, commit %llu -> %llu",
			 r, vsr_status_name((enum vsr_status)after->status),
			 type_name(msg_type), (unsigned long long)before->op,
			 (unsigned long long)after->op,
			 (unsigned long long)before->commit,
			 (unsigned long long)after->commit);
}

void sim_check_reply(struct sim *s, sim_ghost *g, uint8_t r,
		     const vsr_replica *core, const vsr_message *m)
{
	/* 12.10 and linearizability of answers: a reply that says "executed"
	 * names a committed op of the canonical history that holds exactly
	 * this (session, request). */
	if (m->status != VSR_REPLY_OK && m->status != VSR_REPLY_ERROR)
		return;
	vsr_replica_info info;
	vsr_replica_info_get(core, &info);
	if (m->request.kind == VSR_REQUEST_QUERY) {
		/* A query's answer is the state executed right now: it names
		 * that op, which is committed (the client checks the rest). */
		if (m->reply_op != info.executed || m->reply_op > info.commit)
			sim_fail(s,
				 "read: replica %u answered a query at op %llu, its executed "
				 "op is %llu (commit %llu)",
				 r, (unsigned long long)m->reply_op,
				 (unsigned long long)info.executed, (unsigned long long)info.commit);
		return;
	}
	if (m->reply_op == 0 || m->reply_op > info.commit) {
		sim_fail(s,
			 "reply: replica %u answered session %llu request %llu with op "
			 "%llu, which is not committed (commit %llu)",
			 r, (unsigned long long)m->request.session,
			 (unsigned long long)m->request.request,
			 (unsigned long long)m->reply_op,
			 (unsigned long long)info.commit);
		return;
	}
	const vsr_entry *e = vsr_replica_entry(core, m->reply_op);
	if (!e)
		return; /* compacted: an old stored reply */
	uint64_t canon = sim_vec_get(&g->canon, m->reply_op);
	if (canon && canon != e->checksum) {
		sim_fail(s, "reply: replica %u answered from op %llu that is not the "
			 "canonical entry", r, (unsigned long long)m->reply_op);
		return;
	}
	vsr_batch_iter it;
	vsr_request q;
	vsr_batch_iter_init(&it, e);
	while (vsr_batch_next(&it, &q)) {
		if (q.kind == VSR_REQUEST_REGISTER && m->request.session != 0 &&
		    q.request == m->request.request)
			return; /* REGISTER: echoes the nonce, carries the new session */
		if (q.session == m->request.session && q.request == m->request.request)
			return;
	}
	sim_fail(s,
		 "reply: replica %u answered session %llu request %llu with op %llu, "
		 "whose entry does not hold that request",
		 r, (unsigned long long)m->request.session,
		 (unsigned long long)m->request.request,
		 (unsigned long long)m->reply_op);
}
