/* host_divergence.c - logs what runtime divergence detection found: the
 * state machine computed another state than a quorum of replicas did, which
 * a deterministic state machine never does (issue 9). */
#include <inttypes.h>
#include <stdio.h>

#include "host_divergence.h"
#include "host_log.h"

/* Ops logged before the checkpoint op: where to look for the bug. */
#define HOST_DIVERGENCE_OPS_LOGGED 4u
/* Requests described per op. */
#define HOST_DIVERGENCE_REQUESTS_LOGGED 4u

/* One log line per op: its place, time and the requests it carried. */
static void log_op(const vsr_entry *e)
{
	char reqs[256];
	size_t at = 0;
	reqs[0] = '\0';
	vsr_batch_iter it;
	vsr_batch_iter_init(&it, e);
	vsr_request q;
	uint32_t n = 0;
	while (vsr_batch_next(&it, &q) && n++ < HOST_DIVERGENCE_REQUESTS_LOGGED && at < sizeof reqs) {
		int w = snprintf(reqs + at, sizeof reqs - at,
				 " [session %" PRIu64 " request %" PRIu64 " kind %u, %u bytes]",
				 q.session, q.request, q.kind, q.op_len);
		if (w < 0) break;
		at += (size_t)w;
	}
	host_error("divergence:   op %" PRIu64 " (view %" PRIu64 ", timestamp %" PRIu64
		   ", checksum %016" PRIx64 ", %u requests)%s%s",
		   e->op, e->view, e->timestamp, e->checksum, e->request_count, reqs,
		   e->request_count > HOST_DIVERGENCE_REQUESTS_LOGGED ? " ..." : "");
}

void host_divergence_report(const vsr_replica *core, host_divergence_seen *seen,
			    vsrh_telemetry *telemetry)
{
	const vsr_replica_stats *st = vsr_replica_stats_get(core);
	if (st->divergences == seen->divergences && st->divergence_repairs == seen->repairs &&
	    st->divergent_peers == seen->peers)
		return;
	vsr_divergence d;
	vsr_replica_diverged(core, &d);
	if (st->divergences != seen->divergences) {
		host_error("divergence: this replica's state differs from a quorum's at "
			   "checkpoint op %" PRIu64 ": our digest %016" PRIx64 ", the quorum's %016"
			   PRIx64 " (view %" PRIu64 ", executed %" PRIu64 "). The state machine is "
			   "not deterministic: %s",
			   d.op, d.digest, d.quorum_digest, d.view, d.executed,
			   d.as_primary ? "this primary abdicates, then repairs from a "
					  "certified checkpoint as a backup"
					: "this replica stops acknowledging and repairs from "
					  "the quorum's checkpoint");
		uint64_t from = d.op > HOST_DIVERGENCE_OPS_LOGGED ? d.op - HOST_DIVERGENCE_OPS_LOGGED + 1 : 1;
		for (uint64_t op = from; op <= d.op; op++) {
			const vsr_entry *e = vsr_replica_entry(core, op);
			if (e != NULL) log_op(e);
		}
		vsrh_telemetry_field f[] = {{"op", (double)d.op, NULL},
					    {"primary", d.as_primary ? 1 : 0, NULL}};
		vsrh_telemetry_emit(telemetry, "divergence", f, 2);
	}
	if (st->divergence_repairs != seen->repairs)
		host_warn("divergence: repaired: installed the quorum's checkpoint at op %" PRIu64
			  " (digest %016" PRIx64 ") over the diverged state, executing the log "
			  "above it again", d.op, d.quorum_digest);
	if (st->divergent_peers != seen->peers)
		host_warn("divergence: told a backup that its state differs from the quorum's "
			  "(%" PRIu64 " so far)", st->divergent_peers);
	seen->divergences = st->divergences;
	seen->repairs = st->divergence_repairs;
	seen->peers = st->divergent_peers;
}
