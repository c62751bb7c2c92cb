/* host_metrics.c - the replica's counters and latency histograms in Prometheus text format.
 *
 * One scrape reads the counters each layer already keeps (core, storage,
 * transport, state machine) and the host's own histograms, and renders them
 * as the text exposition format 0.0.4: # HELP and # TYPE before each family,
 * counters ending in _total, durations in seconds, histograms with
 * cumulative _bucket{le=...} lines ending at +Inf, then _sum and _count.
 * Names start with vsr_ and every sample carries the replica's index, so a
 * dashboard can put the replicas of a cluster side by side. */
#include "host_metrics.h"
#include "host_watchdog.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const double host_bucket_bounds_s[HOST_HISTOGRAM_BUCKETS] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01,    0.025,  0.05,    0.1,    0.25,  1.0,    10.0,
};

void host_histogram_observe(host_histogram *h, uint64_t ns)
{
	double s = (double)ns / 1e9;
	unsigned i = 0;
	while (i < HOST_HISTOGRAM_BUCKETS && s > host_bucket_bounds_s[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum_ns += ns;
}

/* ------------------------------------------------------------------------ */
/* Families.                                                                */

typedef struct render {
	vsr_http_body *b;
	unsigned replica; /* 1-based, as operators number replicas */
} render;

static void family(render *r, const char *name, const char *type, const char *help)
{
	vsr_http_body_printf(r->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(render *r, const char *name, const char *labels, uint64_t v)
{
	vsr_http_body_printf(r->b, "%s{replica=\"%u\"%s%s} %" PRIu64 "\n", name, r->replica,
			     labels[0] ? "," : "", labels, v);
}

static void gauge(render *r, const char *name, const char *help, uint64_t v)
{
	family(r, name, "gauge", help);
	sample(r, name, "", v);
}

static void counter(render *r, const char *name, const char *help, uint64_t v)
{
	family(r, name, "counter", help);
	sample(r, name, "", v);
}

/* A duration in seconds, from nanoseconds. */
static void seconds(render *r, const char *name, const char *type, const char *help, uint64_t ns)
{
	family(r, name, type, help);
	vsr_http_body_printf(r->b, "%s{replica=\"%u\"} %.6f\n", name, r->replica, (double)ns / 1e9);
}

static void histogram(render *r, const char *name, const char *help, const host_histogram *h)
{
	family(r, name, "histogram", help);
	uint64_t cumulative = 0;
	for (unsigned i = 0; i < HOST_HISTOGRAM_BUCKETS; i++) {
		cumulative += h->counts[i];
		vsr_http_body_printf(r->b, "%s_bucket{replica=\"%u\",le=\"%g\"} %" PRIu64 "\n", name,
				     r->replica, host_bucket_bounds_s[i], cumulative);
	}
	vsr_http_body_printf(r->b, "%s_bucket{replica=\"%u\",le=\"+Inf\"} %" PRIu64 "\n", name,
			     r->replica, h->count);
	vsr_http_body_printf(r->b, "%s_sum{replica=\"%u\"} %.9f\n", name, r->replica,
			     (double)h->sum_ns / 1e9);
	vsr_http_body_printf(r->b, "%s_count{replica=\"%u\"} %" PRIu64 "\n", name, r->replica,
			     h->count);
}

/* Every status has a label and a counter: a status added to the core
 * without one here would be counted and never shown. */
_Static_assert(sizeof ((host_metrics *)0)->replies / sizeof ((host_metrics *)0)->replies[0] ==
		       VSR_REPLY_SCRIPT_ERROR + 1,
	       "host_metrics.replies has one counter per reply status");

static const char *reply_status_label(unsigned s)
{
	switch (s) {
	case VSR_REPLY_OK: return "ok";
	case VSR_REPLY_ERROR: return "error";
	case VSR_REPLY_EVICTED: return "evicted";
	case VSR_REPLY_NOT_PRIMARY: return "not_primary";
	case VSR_REPLY_BUSY: return "busy";
	case VSR_REPLY_REJECTED: return "rejected";
	case VSR_REPLY_HISTORY: return "history";
	case VSR_REPLY_SCRIPT_ERROR: return "script_error";
	default: return NULL;
	}
}

/* ------------------------------------------------------------------------ */
/* Each layer's part.                                                       */

static void render_core(render *r, const vsr_replica *core)
{
	vsr_replica_info in;
	vsr_replica_status_get(core, &in);
	family(r, "vsr_status", "gauge", "1 for the replica's current status, 0 for the others");
	for (unsigned s = 0; s < VSR_STATUS_COUNT; s++) {
		char l[64];
		snprintf(l, sizeof l, "status=\"%s\"", vsr_status_name((enum vsr_status)s));
		sample(r, "vsr_status", l, in.status == s);
	}
	gauge(r, "vsr_primary", "1 when this replica is the normal primary of its view",
	      in.status == VSR_STATUS_NORMAL && in.primary == r->replica - 1);
	gauge(r, "vsr_view", "current view number", in.view);
	gauge(r, "vsr_log_view", "view of the log this replica holds (v')", in.log_view);
	gauge(r, "vsr_op", "highest op in the log", in.op);
	gauge(r, "vsr_commit", "highest op known committed", in.commit);
	gauge(r, "vsr_executed", "highest op applied to the state machine", in.executed);
	gauge(r, "vsr_checkpoint_op", "op of the latest checkpoint", in.checkpoint_op);
	gauge(r, "vsr_pipeline", "prepares in flight at the primary", in.pipeline);
	gauge(r, "vsr_request_queue", "requests waiting for a pipeline slot", in.queued);
	gauge(r, "vsr_sessions", "client sessions in the client table", in.sessions);

	const vsr_replica_stats *st = vsr_replica_stats_get(core);
	counter(r, "vsr_view_changes_total", "views this replica moved to", st->view_changes);
	counter(r, "vsr_ops_committed_total", "ops this replica learned committed",
		st->ops_committed);
	counter(r, "vsr_requests_deduplicated_total",
		"retried requests answered from the client table or attached to one in flight",
		st->requests_deduplicated);
	counter(r, "vsr_sessions_evicted_total", "sessions evicted from the client table",
		st->sessions_evicted);
	counter(r, "vsr_state_transfers_total", "state transfers started", st->state_transfers);
	counter(r, "vsr_checkpoints_total", "checkpoints taken or installed", st->checkpoints);
	counter(r, "vsr_divergences_total",
		"times this replica's state was found to differ from a quorum's at a checkpoint",
		st->divergences);
	counter(r, "vsr_divergence_repairs_total",
		"certified checkpoints installed over a diverged state", st->divergence_repairs);
	counter(r, "vsr_divergent_peers_total",
		"backups this primary told that their state differs from the quorum's",
		st->divergent_peers);
	gauge(r, "vsr_diverged", "1 while this replica's state is known to differ from a quorum's",
	      vsr_replica_diverged(core, NULL));
	family(r, "vsr_reads_total", "counter",
	       "queries answered outside the log, by the read mode they were answered in");
	for (unsigned m = 0; m < VSR_READ_MODE_COUNT; m++) {
		char l[64];
		snprintf(l, sizeof l, "mode=\"%s\"", vsr_read_mode_name(m));
		sample(r, "vsr_reads_total", l, st->reads[m]);
	}
	counter(r, "vsr_reads_refused_total",
		"queries refused (not the primary, view changed, quorum lost, queue full)",
		st->reads_failed);
	counter(r, "vsr_read_rounds_total",
		"read rounds started by this primary (one confirms every read that waited)",
		st->read_rounds);
	counter(r, "vsr_messages_dropped_total",
		"replica messages dropped by the core (stale view, wrong status, invalid)",
		st->messages_dropped);
	family(r, "vsr_messages_total", "counter", "replica messages by type and direction");
	for (unsigned t = 1; t < VSR_MSG_TYPE_COUNT; t++) {
		char l[96];
		const char *name = vsr_message_type_name((enum vsr_message_type)t);
		snprintf(l, sizeof l, "type=\"%s\",direction=\"in\"", name);
		sample(r, "vsr_messages_total", l, st->messages_in[t]);
		snprintf(l, sizeof l, "type=\"%s\",direction=\"out\"", name);
		sample(r, "vsr_messages_total", l, st->messages_out[t]);
	}
}

static void render_storage(render *r, const vsr_storage *s)
{
	const vsr_storage_stats *st = vsr_storage_stats_get(s);
	counter(r, "vsr_storage_persists_total", "persists completed", st->persists);
	counter(r, "vsr_storage_entries_total", "log entries written", st->entries);
	counter(r, "vsr_storage_entry_bytes_total", "log entry bytes written", st->entry_bytes);
	counter(r, "vsr_storage_truncations_total", "log suffixes truncated", st->truncations);
	counter(r, "vsr_storage_inline_groups_total",
		"persist groups written on the event loop (a lone persist, the loop idle)",
		st->inline_groups);
	counter(r, "vsr_storage_segments_spare_total",
		"log segment rotations into a segment made ahead on a thread of its own",
		st->segments_spare);
	counter(r, "vsr_storage_segments_inline_total",
		"log segment rotations that created the segment on the writer thread",
		st->segments_inline);
	counter(r, "vsr_storage_checkpoint_bytes_total", "checkpoint bytes written",
		st->checkpoint_bytes);
	gauge(r, "vsr_storage_pending", "persists submitted and not yet durable", st->pending);
	gauge(r, "vsr_storage_pending_max", "high-water mark of pending persists",
	      st->pending_max);
}

static void render_net(render *r, const vsr_net *net)
{
	const vsr_net_stats *st = vsr_net_stats_get(net);
	gauge(r, "vsr_connections", "open connections of every kind", st->connections);
	counter(r, "vsr_client_connections_accepted_total", "client connections accepted",
		st->clients_accepted);
	counter(r, "vsr_peer_connects_total", "outgoing replica connections established",
		st->peer_connects);
	counter(r, "vsr_peer_connect_failures_total", "outgoing replica dials that failed",
		st->peer_connect_failures);
	counter(r, "vsr_peer_disconnects_total", "replica connections lost",
		st->peer_disconnects);
	counter(r, "vsr_connections_refused_total", "connections refused over a limit",
		st->connections_refused);
	counter(r, "vsr_auth_failures_total",
		"connections closed for a missing or wrong key, or a forged frame",
		st->auth_failures);
	counter(r, "vsr_auth_timeouts_total", "connections not authenticated in time",
		st->auth_timeouts);
	counter(r, "vsr_frame_timeouts_total", "connections cut for a frame begun and not finished",
		st->frame_timeouts);
	counter(r, "vsr_connections_evicted_total",
		"silent or stuck connections closed to make room for a new one",
		st->connections_evicted);
	counter(r, "vsr_connections_replaced_total",
		"a replica's older inbound connection closed for its newer one",
		st->connections_replaced);
	counter(r, "vsr_config_mismatches_total",
		"replica connections refused: the peer's configuration fingerprint differs",
		st->config_mismatches);
	counter(r, "vsr_accepts_deferred_total",
		"accepts put off for want of memory (the connection waits; tried again)",
		st->accepts_deferred);
	counter(r, "vsr_protocol_errors_total",
		"frames before HELLO, of the wrong role, or with a spoofed sender",
		st->protocol_errors);
	family(r, "vsr_sends_dropped_total", "counter", "outgoing messages dropped, by reason");
	sample(r, "vsr_sends_dropped_total", "reason=\"disconnected\"",
	       st->sends_dropped_disconnected);
	sample(r, "vsr_sends_dropped_total", "reason=\"queue_full\"", st->sends_dropped_full);
	sample(r, "vsr_sends_dropped_total", "reason=\"client_reply\"", st->replies_dropped);
	counter(r, "vsr_frames_in_total", "frames accepted", st->wire.frames_in);
	counter(r, "vsr_frames_out_total", "frames sent", st->wire.frames_out);
	counter(r, "vsr_network_in_bytes_total", "bytes read", st->wire.bytes_in);
	counter(r, "vsr_network_out_bytes_total", "bytes written", st->wire.bytes_out);
	family(r, "vsr_frames_dropped_total", "counter", "malformed frames dropped, by reason");
	for (int reason = 1; reason < VSR_WIRE_REASON_COUNT; reason++) {
		char l[96];
		snprintf(l, sizeof l, "reason=\"%s\"", vsr_wire_reason_label(reason));
		sample(r, "vsr_frames_dropped_total", l, st->wire.dropped[reason]);
	}
}

static void render_sm(render *r, const vsrh_sm *sm)
{
	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	counter(r, "vsr_sm_applied_total", "operations applied", st.applied);
	counter(r, "vsr_sm_apply_errors_total",
		"operations that raised, ran out of budget or were malformed", st.apply_errors);
	counter(r, "vsr_sm_budget_exhausted_total", "operations stopped by the instruction budget",
		st.budget_exhausted);
	counter(r, "vsr_sm_memory_exhausted_total", "operations stopped by the memory budget",
		st.memory_exhausted);
	counter(r, "vsr_sm_rollbacks_total", "plain-state rollbacks (restore and replay)",
		st.rollbacks);
	counter(r, "vsr_sm_queries_total", "read-only queries answered locally", st.queries);
	gauge(r, "vsr_sm_memory_bytes", "bytes the state machine's Lua state holds",
	      st.memory_bytes);
	counter(r, "vsr_checkpoint_syncs_total",
		"checkpoints of a durable vsr.store made durable off the step", st.checkpoint_syncs);
	seconds(r, "vsr_checkpoint_sync_last_seconds", "gauge",
		"how long the last checkpoint's sync took", st.checkpoint_sync_last_ns);
	counter(r, "vsr_checkpoint_sync_waits_total",
		"checkpoints that waited for the previous one's sync (the disk is behind)",
		st.checkpoint_sync_waits);
	seconds(r, "vsr_checkpoint_sync_wait_seconds_total", "counter",
		"time checkpoints spent waiting for the previous one's sync",
		st.checkpoint_sync_wait_ns);
	counter(r, "vsr_checkpoint_held_writes_total",
		"store writes held in memory while a checkpoint's sync ran, then moved into LMDB",
		st.checkpoint_held_writes);
	counter(r, "vsr_checkpoint_turns_total",
		"checkpoints whose commit waited for this replica's turn (writes held meanwhile)",
		st.checkpoint_turns);
	seconds(r, "vsr_checkpoint_step_last_seconds", "gauge",
		"how long the last checkpoint's commit held the event loop", st.checkpoint_step_last_ns);
	counter(r, "vsr_checkpoint_commits_off_loop_total",
		"checkpoint commits made on the syncer's thread while the event loop went on",
		st.checkpoint_commits_off_loop);
	seconds(r, "vsr_checkpoint_commit_last_seconds", "gauge",
		"how long the last checkpoint commit made on the syncer's thread took there",
		st.checkpoint_commit_last_ns);
	counter(r, "vsr_store_cleanings_total",
		"paced write-backs of a durable vsr.store's map between checkpoints (none for 10 s)",
		st.store_cleanings);
}

static void render_host(render *r, const host_metrics *m)
{
	family(r, "vsr_replies_total", "counter", "client replies sent, by outcome");
	for (unsigned s = 0; s < sizeof m->replies / sizeof m->replies[0]; s++) {
		const char *label = reply_status_label(s);
		if (label == NULL)
			continue;
		char l[64];
		snprintf(l, sizeof l, "outcome=\"%s\"", label);
		sample(r, "vsr_replies_total", l, m->replies[s]);
	}
	counter(r, "vsr_slow_steps_total", "core steps that took 50 ms or more", m->slow_steps);
	counter(r, "vsr_watchdog_long_steps_total",
		"steps that ran past the watchdog's limit doing metered state-machine work "
		"(let finish: the budget ends them)", host_watchdog_long_steps());
	counter(r, "vsr_storage_backpressure_pauses_total",
		"times reading paused while persists drained", m->storage_pauses);
	histogram(r, "vsr_step_duration_seconds", "one core step with its actions", &m->step);
	histogram(r, "vsr_persist_duration_seconds",
		  "a persist from submission to durable (fsync included in durable mode)",
		  &m->persist);
}

void host_metrics_render(const host_metrics_source *src, vsr_http_body *b)
{
	render r = {.b = b, .replica = src->replica + 1u};
	family(&r, "vsr_replica_info", "gauge", "constant 1, labelled with the configuration");
	vsr_http_body_printf(b,
			     "vsr_replica_info{replica=\"%u\",cluster=\"%" PRIu64
			     "\",replicas=\"%u\"} 1\n",
			     r.replica, src->cluster, (unsigned)src->replica_count);
	gauge(&r, "vsr_uptime_seconds", "seconds since this process started",
	      src->uptime_ms / 1000u);
	if (src->core != NULL)
		render_core(&r, src->core);
	if (src->storage != NULL)
		render_storage(&r, src->storage);
	if (src->net != NULL)
		render_net(&r, src->net);
	if (src->sm != NULL)
		render_sm(&r, src->sm);
	if (src->host != NULL)
		render_host(&r, src->host);
}

int host_health_render(const host_metrics_source *src, vsr_http_body *b)
{
	if (src->core == NULL) {
		vsr_http_body_printf(b, "starting\n");
		return 503;
	}
	vsr_replica_info in;
	vsr_replica_status_get(src->core, &in);
	const char *status = vsr_status_name((enum vsr_status)in.status);
	bool primary = in.status == VSR_STATUS_NORMAL && in.primary == src->replica;
	vsr_http_body_printf(b,
			     "%s\nstatus %s\nrole %s\nview %" PRIu64 "\nop %" PRIu64
			     "\ncommit %" PRIu64 "\n",
			     in.status == VSR_STATUS_NORMAL ? "ok" : "unavailable", status,
			     primary ? "primary" : "backup", in.view, in.op, in.commit);
	return in.status == VSR_STATUS_NORMAL ? 200 : 503;
}
