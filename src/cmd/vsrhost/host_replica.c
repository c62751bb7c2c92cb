/* host_replica.c - one replica process: the protocol core driven by libuv timers, sockets and storage.
 *
 * Happy path: load the state machine, open storage and load what it holds,
 * create the core, start the transport, then feed the core one event at a
 * time: a TICK every tick_ms, each message from a peer, each client
 * request, each storage completion. After every step the actions are carried
 * out in the order the core listed them: SEND to a peer, REPLY to a client
 * connection, PERSIST to storage (whose completion comes back later as an
 * event, never inside the step).
 *
 * Failure modes: a setup error is reported in one sentence and exits with a
 * sysexits code (EX_CONFIG for the config or the script, EX_UNAVAILABLE when
 * a port cannot be bound, EX_SOFTWARE for the core). Storage refusing a
 * persist or failing one is fatal (EX_IOERR): continuing would acknowledge
 * what is not durable. SIGINT/SIGTERM stop the timers, close every
 * connection and listener, close storage, and exit 0 once the loop is empty
 * (uv_loop_close must succeed). SIGPIPE is ignored: a peer that vanished
 * shows up as a write error on its connection. */
#include "host.h"
#include "host_config_disk.h"
#include "host_data_dir.h"
#include "host_fingerprint.h"
#include "host_log.h"
#include "host_metrics.h"
#include "host_verify.h"
#include "host_watchdog.h"
#ifdef VSRHOST_TEETH
#include "host_teeth.h"
#endif

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "vsr.h"
#include "host_divergence.h"
#include "vsr_http.h"
#include "vsr_net.h"
#include "vsr_storage.h"
#include "vsr_wire.h"
#include "vsrh_lua.h"
#include "vsrh_telemetry.h"

typedef struct host {
	const vsrh_config *cfg;
	uint8_t replica;
	uv_loop_t *loop;
	uint64_t start_ms;        /* uv_now at start: tick 0 */
	vsrh_sm *sm;
	vsr_state_machine vsm;
	vsr_replica *core;
	vsr_actions actions;
	vsr_storage *storage;
	vsr_net *net;
	uv_timer_t tick_timer;    /* marks a TICK due; the TICK itself runs after a poll */
	uv_idle_t tick_idle;      /* while a TICK is due: the poll phase does not block */
	uv_prepare_t poll_mark;   /* right before each poll phase: its start time */
	uv_check_t flush_check;   /* after each poll phase: FLUSH the burst just read, TICK */
	bool tick_due;
	bool tick_deferred;       /* the due TICK already waited one poll phase */
	uint64_t poll_start_ns;
	bool burst;               /* events marked `more` since the last FLUSH */
	uv_signal_t sigint, sigterm;
	uv_async_t ckpt_async;    /* the store's syncer: a checkpoint is durable */
	_Atomic uint64_t ckpt_durable_op;
	bool stopping;
	int exit_code;
	vsr_replica_info last;    /* what the log lines compare against */
	uint64_t status_since_ms; /* loop time of the last status change */
	uint64_t stuck_warned_ms; /* last "still recovering" warning */
	uint64_t steps;
	uint64_t step_at_ms;      /* loop time of the last core step */
	vsrh_telemetry *telemetry; /* the config's telemetry hooks, or NULL */
	uint64_t sessions_evicted; /* last seen, for client_evicted events */
	uint64_t progress_at_ms;  /* loop time the executed op last advanced */
	uint64_t pauses;          /* times reading was paused for storage */
	uint64_t sync_waits_seen; /* checkpoint syncs waited for, already logged */
	uint64_t turn_ns;         /* the replicas' turns at a checkpoint's commit */
	uint64_t turn_commits_seen; /* checkpoint commits in this replica's turn, logged */
	uint32_t pending_max;     /* storage high-water mark, kept past close */
	vsr_http *http;           /* the metrics listener, when configured */
	uint8_t replica_key[VSR_WIRE_KEY_SIZE]; /* auth.replica_key, when configured */
	uint8_t client_key[VSR_WIRE_KEY_SIZE];  /* auth.client_key, when configured */
	host_metrics metrics;
	host_divergence_seen divergence; /* detections already logged */
	vsr_config core_cfg;      /* the core's configuration (limits the host applies too) */
	uint64_t fingerprint[VSR_WIRE_CONFIG_PARTS]; /* what must match the other replicas' */
	vsr_buf query_buf;        /* a query's answer, reused */
	/* When each pending persist was submitted, by id: ids are consecutive
	 * and at most VSR_STORAGE_PENDING_MAX are pending at once. */
	uint64_t persist_submit_ns[VSR_STORAGE_PENDING_MAX];
	/* The one client seen lately (host_inline_ok): every request since
	 * loop time solo_since_ms came from session solo_session on connection
	 * solo_conn. */
	uint64_t solo_conn;
	uint64_t solo_session;
	uint64_t solo_since_ms;
} host;

static uint64_t host_now_ticks(const host *h)
{
	return (uv_now(h->loop) - h->start_ms) / h->cfg->tick_ms;
}

static uint64_t host_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void host_stop(host *h, int exit_code, const char *why);

/* VSR_ACTION_QUERY: runs the state machine's read-only query (or apply with
 * its writes dropped, for a script without one) against the state the step
 * left, which is the one executed through a->message.reply_op, and sends the
 * answer. Outside the log: nothing is replicated or stored. */
static void host_query(host *h, const vsr_action *a)
{
	vsr_message m = a->message;
	h->query_buf.len = 0;
	/* Lua runs here, after the core's step: watched like a step. */
	host_watchdog_enter(uv_hrtime(), "query");
	int st = vsrh_sm_query(h->sm, a->query_op, a->query_op_len, &h->query_buf);
	host_watchdog_leave();
	uint32_t max = vsr_reply_bytes_max(&h->core_cfg);
	if (h->query_buf.len > max) {
		static const char why[] = "the query's answer exceeds the reply limit";
		h->query_buf.len = 0;
		vsr_buf_append(&h->query_buf, why, sizeof why - 1);
		st = VSR_REPLY_ERROR;
	}
	m.status = (uint8_t)st;
	m.body = h->query_buf.data;
	m.body_len = (uint32_t)h->query_buf.len;
	if (m.status < sizeof h->metrics.replies / sizeof h->metrics.replies[0])
		h->metrics.replies[m.status]++;
	vsr_net_reply(h->net, a->conn, &m);
}

/* Logs what changed in the replica's status, view or primary since the last
 * step: one line per event an operator cares about. */
/* Telemetry events for what changed (vsrh_telemetry.h): outside the
 * replicated state, after the step that made the change. */
static void host_emit_changes(host *h, const vsr_replica_info *was, const vsr_replica_info *now)
{
	uint64_t since = uv_now(h->loop) - h->status_since_ms;
	if (now->status != was->status) {
		if (now->status == VSR_STATUS_VIEW_CHANGE) {
			vsrh_telemetry_field f[] = {{"view", (double)now->view, NULL},
						    {"from_view", (double)was->view, NULL}};
			vsrh_telemetry_emit(h->telemetry, "view_change_started", f, 2);
		}
		if (was->status == VSR_STATUS_VIEW_CHANGE) {
			vsrh_telemetry_field f[] = {{"view", (double)now->view, NULL},
						    {"duration_ms", (double)since, NULL},
						    {"primary", (double)(now->primary + 1u), NULL},
						    {"status", 0, vsr_status_name((enum vsr_status)now->status)}};
			vsrh_telemetry_emit(h->telemetry, "view_change_finished", f, 4);
		}
		if (now->status == VSR_STATUS_STATE_TRANSFER) {
			vsrh_telemetry_field f[] = {{"op", (double)now->op, NULL},
						    {"commit", (double)now->commit, NULL}};
			vsrh_telemetry_emit(h->telemetry, "state_transfer_started", f, 2);
		}
		if (was->status == VSR_STATUS_STATE_TRANSFER) {
			vsrh_telemetry_field f[] = {{"op", (double)now->op, NULL},
						    {"duration_ms", (double)since, NULL}};
			vsrh_telemetry_emit(h->telemetry, "state_transfer_finished", f, 2);
		}
	}
	bool primary_now = now->status == VSR_STATUS_NORMAL && now->primary == h->replica;
	bool primary_was = was->status == VSR_STATUS_NORMAL && was->primary == h->replica &&
			   was->view == now->view;
	if (primary_now && !primary_was) {
		vsrh_telemetry_field f[] = {{"view", (double)now->view, NULL},
					    {"op", (double)now->op, NULL}};
		vsrh_telemetry_emit(h->telemetry, "became_primary", f, 2);
	}
	if (now->checkpoint_op != was->checkpoint_op) {
		vsrh_telemetry_field f[] = {{"op", (double)now->checkpoint_op, NULL}};
		vsrh_telemetry_emit(h->telemetry, "checkpoint", f, 1);
	}
	uint64_t evicted = vsr_replica_stats_get(h->core)->sessions_evicted;
	if (evicted > h->sessions_evicted) {
		vsrh_telemetry_field f[] = {{"count", (double)(evicted - h->sessions_evicted), NULL},
					    {"total", (double)evicted, NULL}};
		vsrh_telemetry_emit(h->telemetry, "client_evicted", f, 2);
	}
	h->sessions_evicted = evicted;
}

/* A checkpoint committed in this replica's turn (vsrh_sm_stagger), in the
 * step just run or at the tick: logged like a take, with its time. */
static void host_note_turn_commit(host *h)
{
	uint64_t op, ns, n = vsrh_sm_turn_commits(h->sm, &op, &ns);
	if (n == h->turn_commits_seen)
		return;
	h->turn_commits_seen = n;
	host_info("checkpoint at op %" PRIu64 " committed in this replica's turn (the step that "
		  "took it: %.1f ms)",
		  op, (double)ns / 1e6);
}

static void host_note_changes(host *h, uint64_t step_ns)
{
	host_note_turn_commit(h);
	vsr_replica_info now;
	vsr_replica_status_get(h->core, &now);
	vsr_replica_info *was = &h->last;
	if (h->telemetry != NULL)
		host_emit_changes(h, was, &now);
	if (now.status != was->status)
		h->status_since_ms = uv_now(h->loop);
	if (now.executed != was->executed)
		h->progress_at_ms = uv_now(h->loop);
	/* Caught up: a durable store that came back without its state may
	 * drop its "unrecovered" mark now (vsr_storage.h). */
	if (now.status == VSR_STATUS_NORMAL && was->status != VSR_STATUS_NORMAL &&
	    h->storage != NULL)
		vsr_storage_recovered(h->storage);
	if (now.status != was->status || now.view != was->view) {
		host_info("status %s, view %" PRIu64 ", primary %u%s (op %" PRIu64
			  ", commit %" PRIu64 ")",
			  vsr_status_name((enum vsr_status)now.status), now.view, now.primary + 1u,
			  now.primary == h->replica && now.status == VSR_STATUS_NORMAL ? " (me)" : "",
			  now.op, now.commit);
	}
	/* Turns at a checkpoint's commit count from the view's primary: it
	 * commits at the take, right after the warm-up read its pages
	 * (vsrh_store_touch.h) and before any sync has begun, and the backups
	 * after it. By replica number, a new primary committed 25-50 ms late,
	 * as backups do: their commits take 2-7 ms on a busy machine, against
	 * about 2 at the take (docs/storage.md, "Replicas take turns"). */
	if (now.primary != was->primary || now.view != was->view) {
		unsigned n = h->cfg->replica_count;
		vsrh_sm_stagger(h->sm, (h->replica + n - now.primary % n) % n, n, h->turn_ns);
	}
	if (now.checkpoint_op != was->checkpoint_op) {
		host_info("checkpoint at op %" PRIu64 " (the step that took it: %.1f ms)",
			  now.checkpoint_op, (double)step_ns / 1e6);
		vsrh_sm_stats st;
		vsrh_sm_stats_get(h->sm, &st);
		if (st.checkpoint_sync_waits > h->sync_waits_seen)
			host_warn("checkpoint at op %" PRIu64 " waited %.1f ms in all for the previous "
				  "checkpoint's sync (last sync %.1f ms): the disk writes back more "
				  "slowly than operations dirty the store",
				  now.checkpoint_op, (double)st.checkpoint_sync_wait_ns / 1e6,
				  (double)st.checkpoint_sync_last_ns / 1e6);
		h->sync_waits_seen = st.checkpoint_sync_waits;
	}
	if (now.history != was->history || now.amnesia != was->amnesia) {
		if (now.history != 0 && !now.amnesia)
			host_info("member of cluster history %016" PRIx64 "%s", now.history,
				  now.view == 0 && now.op == 0 ? " (a new history: every replica "
								 "was unjoined)"
							      : "");
		else if (now.history != 0)
			host_info("catching up with cluster history %016" PRIx64
				  " (this replica's own state was lost)", now.history);
		if (h->net != NULL)
			vsr_net_set_history(h->net, now.history);
	}
	*was = now;
}

/* Backpressure: when this many persists wait for storage, the host stops
 * reading from every connection, and resumes once they drain below the low
 * mark. Without it a backup that stalled (a checkpoint) and then finds
 * megabytes of PREPAREs in its sockets would queue thousands of persists in
 * one loop iteration: the queue must be bounded by flow control, not by
 * luck. What is already read when the pause starts is still handled, so
 * the storage queue (VSR_STORAGE_PENDING_MAX) keeps room above the mark. */
#define HOST_PERSIST_PAUSE_AT 1024u
#define HOST_PERSIST_RESUME_AT 256u
_Static_assert(HOST_PERSIST_PAUSE_AT * 4 <= VSR_STORAGE_PENDING_MAX,
	       "room for what arrives after the pause");

/* A step longer than this stalls every connection and timer of the
 * replica (state-machine work, a checkpoint): worth a line in the log. */
#define HOST_SLOW_STEP_MS 50u

static const char *host_event_name(uint8_t type)
{
	switch (type) {
	case VSR_EVENT_TICK: return "tick";
	case VSR_EVENT_MESSAGE: return "message";
	case VSR_EVENT_REQUEST: return "request";
	case VSR_EVENT_PERSISTED: return "persisted";
	case VSR_EVENT_FLUSH: return "flush";
	default: return "unknown";
	}
}

/* A step of step_ns just held the loop: the step-duration histogram, and
 * a line (and a telemetry event) when it was slow. `event` names a core
 * event (`carrying`: its message's type, or NULL), or is NULL for host
 * work outside the core, which `work` then names (a checkpoint's commit at
 * the tick). */
static void host_step_observe(host *h, uint64_t step_ns, const char *event, const char *carrying,
			      const char *work)
{
	uint64_t step_ms = step_ns / 1000000u;
	host_histogram_observe(&h->metrics.step, step_ns);
	if (step_ms < HOST_SLOW_STEP_MS)
		return;
	h->metrics.slow_steps++;
	vsrh_telemetry_field f[] = {{"ms", (double)step_ms, NULL},
				    {"event", 0, event != NULL ? event : work}};
	vsrh_telemetry_emit(h->telemetry, "slow_step", f, 2);
	if (event == NULL)
		host_warn("slow step: a %s took %" PRIu64 " ms", work, step_ms);
	else
		host_warn("slow step: a %s event%s%s took %" PRIu64 " ms", event,
			  carrying != NULL ? " carrying " : "", carrying != NULL ? carrying : "",
			  step_ms);
}

/* Feeds one event to the core and carries out its actions, in order. */
static void host_step(host *h, vsr_event *ev)
{
	if (h->stopping)
		return;
	/* The loop's clock is read once per iteration; a long step earlier in
	 * this iteration would make every later event look older than it is. */
	uv_update_time(h->loop);
	ev->now = host_now_ticks(h);
	ev->realtime_ns = host_realtime_ns();
	uint64_t t0 = uv_hrtime();
	host_watchdog_enter(t0, host_event_name(ev->type));
	vsr_replica_step(h->core, ev, &h->actions);
	host_watchdog_leave();
	uint64_t step_ns = uv_hrtime() - t0;
	host_step_observe(h, step_ns, host_event_name(ev->type),
			  ev->message != NULL ? vsr_message_type_name(ev->message->type) : NULL, NULL);
	h->steps++;
	h->step_at_ms = uv_now(h->loop);
	/* Builds with VSR_INVARIANTS check the replica after every step. A
	 * violation is a bug in the core: stop before acting on it, with a
	 * core dump to study. */
	/* A state machine that failed in a way it cannot undo identically on
	 * every replica (vsrh_sm_failure) stops the replica before any reply
	 * or vote of this step leaves: restarted, it comes back by replay or
	 * state transfer. */
	const char *sm_failed = vsrh_sm_failure(h->sm);
	if (sm_failed != NULL) {
		host_error("state machine failed at step %" PRIu64 ": %s", h->steps, sm_failed);
		host_stop(h, EX_SOFTWARE, "state machine failed");
		return;
	}
	const char *broken = vsr_replica_invariant_failure(h->core);
	if (broken != NULL) {
		host_error("protocol invariant violated after step %" PRIu64 ": %s", h->steps, broken);
		abort();
	}
	host_divergence_report(h->core, &h->divergence, h->telemetry);
	for (uint32_t i = 0; i < h->actions.count; i++) {
		const vsr_action *a = &h->actions.items[i];
		switch (a->type) {
		case VSR_ACTION_SEND:
			vsr_net_send(h->net, a->to, &a->message);
			break;
		case VSR_ACTION_REPLY:
			if (a->message.status < sizeof h->metrics.replies / sizeof h->metrics.replies[0])
				h->metrics.replies[a->message.status]++;
			vsr_net_reply(h->net, a->conn, &a->message);
			break;
		case VSR_ACTION_QUERY:
			host_query(h, a);
			break;
		case VSR_ACTION_PERSIST: {
			h->persist_submit_ns[a->persist.id % VSR_STORAGE_PENDING_MAX] = uv_hrtime();
			int rc = vsr_storage_submit(h->storage, &a->persist);
			if (rc != VSR_OK) {
				host_error("storage refused persist %" PRIu64 ": %s",
					   a->persist.id, vsr_strerror(rc));
				host_stop(h, EX_IOERR, "storage failed");
				return;
			}
			break;
		}
		default:
			host_error("the core returned unknown action type %u", a->type);
			host_stop(h, EX_SOFTWARE, "core bug");
			return;
		}
	}
	uint32_t pending = vsr_storage_stats_get(h->storage)->pending;
	if (pending >= HOST_PERSIST_PAUSE_AT && !vsr_net_paused(h->net)) {
		h->pauses++;
		h->metrics.storage_pauses++;
		host_debug("%u persists pending: reading paused", pending);
		vsr_net_pause(h->net, true);
	} else if (pending <= HOST_PERSIST_RESUME_AT && vsr_net_paused(h->net)) {
		host_debug("%u persists pending: reading resumed", pending);
		vsr_net_pause(h->net, false);
	}
	host_note_changes(h, step_ns);
}

/* ------------------------------------------------------------------------ */
/* Event sources.                                                           */

/* A replica that cannot leave recovery or state transfer says so now and
 * then: the usual cause (every replica lost its memory) needs an operator. */
#define HOST_STUCK_WARN_MS 10000u

static void host_idle_cb(uv_idle_t *i) { (void)i; }

/* Time passes in a TICK, and a TICK only runs after the sockets were read
 * (issue 7, finding 4 and the pause fault of real runs): libuv runs timers
 * before it polls, so after a long step (a checkpoint, SIGSTOP) a TICK run
 * from the timer would see the primary's timeout long expired while the
 * PREPAREs and COMMITs that arrived meanwhile still wait in the socket. So
 * the timer only marks the TICK due (and keeps the poll from blocking);
 * the check phase, right after the poll, runs it. When that poll phase
 * itself held a long step, what arrived during the step is read first:
 * the TICK waits for one more poll phase, once. */
#define HOST_TICK_DEFER_NS 20000000u /* a poll phase that took 20 ms held a long step */

static void host_tick_cb(uv_timer_t *t)
{
	host *h = t->data;
	if (!h->tick_due) {
		h->tick_due = true;
		uv_idle_start(&h->tick_idle, host_idle_cb);
	}
}

static void host_poll_mark_cb(uv_prepare_t *p)
{
	host *h = p->data;
	/* The messages this iteration queued go out first; then storage may
	 * write a lone persist right here (host_inline_ok) instead of waking
	 * its thread: the PREPAREs and replies are not held back by the sync.
	 * Its completion is stepped inside the flush: what that step sends (a
	 * PREPARE_OK, a reply) goes out at once. */
	if (h->net != NULL)
		vsr_net_flush(h->net);
	if (h->storage != NULL && vsr_storage_flush(h->storage) && !h->stopping && h->net != NULL)
		vsr_net_flush(h->net);
	h->poll_start_ns = uv_hrtime();
}

/* What the watchdog and a slow-step line call a checkpoint's commit run at
 * the tick (host_tick_commit). */
#define HOST_TICK_COMMIT "checkpoint commit at the tick"

/* A checkpoint's commit whose turn came while idle (vsrh_sm_stagger): run
 * at the tick, outside the core's step, but it holds the loop as a step
 * does (the commit of 1,000,000 keys: milliseconds; a disk that hangs:
 * for good). So it is watched and timed like one: the watchdog, the
 * step-duration histogram, the slow-step line. A tick with no commit due
 * is not a step (nothing observed). */
static void host_tick_commit(host *h)
{
	uint64_t t0 = uv_hrtime();
	host_watchdog_enter(t0, HOST_TICK_COMMIT);
	vsrh_sm_tick(h->sm);
	host_watchdog_leave();
	/* Every commit before this tick was noted after its step. */
	uint64_t op, ns;
	if (vsrh_sm_turn_commits(h->sm, &op, &ns) == h->turn_commits_seen)
		return;
	host_step_observe(h, uv_hrtime() - t0, NULL, NULL, HOST_TICK_COMMIT);
	host_note_turn_commit(h);
}

static void host_tick_run(host *h)
{
	if (!h->tick_due)
		return;
	if (!h->tick_deferred && uv_hrtime() - h->poll_start_ns > HOST_TICK_DEFER_NS) {
		h->tick_deferred = true;
		return;
	}
	h->tick_due = false;
	h->tick_deferred = false;
	uv_idle_stop(&h->tick_idle);
	vsr_event ev = {.type = VSR_EVENT_TICK};
	host_step(h, &ev);
	if (h->stopping)
		return;
	host_tick_commit(h);
	uint64_t now = uv_now(h->loop);
	bool catching_up = h->last.status == VSR_STATUS_RECOVERING ||
			   h->last.status == VSR_STATUS_STATE_TRANSFER;
	if (catching_up && now - h->status_since_ms >= HOST_STUCK_WARN_MS &&
	    now - h->stuck_warned_ms >= HOST_STUCK_WARN_MS) {
		h->stuck_warned_ms = now;
		host_warn("still %s after %" PRIu64 " s: waiting for a normal primary to bring this "
			  "replica up to date%s",
			  vsr_status_name((enum vsr_status)h->last.status),
			  (now - h->status_since_ms) / 1000,
			  h->cfg->durability == VSRH_DURABILITY_MEMORY
				  ? " (memory storage: if a majority of the replicas lost their memory, "
				    "the data is gone; once every replica is restarted and unjoined, a new "
				    "history begins)"
				  : "");
	}
}

/* Storage asks, with its writer thread idle, whether a persist may wait
 * for the end of this loop iteration and be synced on the loop itself
 * (vsr_storage_options.inline_ok), after the messages of the iteration are
 * sent. Only for a lone request: the replica is normal, the persist carries
 * one request at most, at most one operation is in flight and no request is
 * queued. The sync then holds up nothing but that request, and saves the
 * thread wake-ups of the worker's round trip.
 * - A backup: yes. Its PREPARE_OK is on the critical path (network hop, the
 *   backup's sync, network hop).
 * - The primary: only when a single client has been talking to it for
 *   HOST_SOLO_MS (every request from one session on one connection; a
 *   session has at most one request in flight). Its own sync runs beside
 *   the backups' round trip, but through the worker it finished last in
 *   about 30% of one-client puts (measured: worker wake-up, sync, async
 *   wake-up of the loop). With more clients a primary that blocks on a sync
 *   reads the next requests late (16 clients: -10% puts/s when the lone
 *   request condition alone decided), so there the worker keeps syncing
 *   while the loop reads, executes and answers. */
#define HOST_SOLO_MS 100u /* of one client only */

static bool host_inline_ok(void *data, const vsr_persist *p)
{
	host *h = data;
	uint32_t requests = 0;
	for (uint32_t i = 0; i < p->entry_count; i++)
		requests += p->entries[i].request_count;
	if (h->core == NULL || requests > 1 || p->has_truncate)
		return false;
	vsr_replica_info now;
	vsr_replica_status_get(h->core, &now);
	if (now.status != VSR_STATUS_NORMAL || now.op > now.commit + 1 || now.queued != 0)
		return false;
	return now.primary != h->replica || uv_now(h->loop) - h->solo_since_ms >= HOST_SOLO_MS;
}

static void host_persisted_cb(vsr_storage *s, uint64_t persist_id, int status)
{
	host *h = vsr_storage_data(s);
	if (status != VSR_OK) {
		const char *why = vsr_storage_error(s);
		host_error("persist %" PRIu64 " failed: %s", persist_id,
			   why[0] != '\0' ? why : vsr_strerror(status));
		host_stop(h, EX_IOERR, "storage failed");
		return;
	}
	host_histogram_observe(&h->metrics.persist,
			       uv_hrtime() - h->persist_submit_ns[persist_id % VSR_STORAGE_PENDING_MAX]);
	vsr_event ev = {.type = VSR_EVENT_PERSISTED, .persist_id = persist_id};
	host_step(h, &ev);
}

/* Messages and requests come in bursts: everything the poll phase read.
 * Each is marked `more` so that a primary can put the requests of one burst
 * into one batch; the check handle, which runs right after the poll phase,
 * ends the burst with a FLUSH. */
static void host_peer_message_cb(vsr_net *net, const vsr_message *m)
{
	host *h = vsr_net_data(net);
	vsr_event ev = {.type = VSR_EVENT_MESSAGE, .message = m, .more = true};
	h->burst = true;
	host_step(h, &ev);
}

static void host_request_cb(vsr_net *net, uint64_t conn, const vsr_message *m)
{
	host *h = vsr_net_data(net);
	/* A stale read is answered from this replica's own state, which only
	 * the cluster's configuration makes the cluster's: not before a quorum
	 * (with itself) has been found to run the same (docs/config.md). A
	 * replica refused for its configuration never is, and never answers. */
	if (m->request.kind == VSR_REQUEST_QUERY && m->read_mode == VSR_READ_STALE &&
	    vsr_net_config_confirmed(net) + 1u < vsr_quorum((uint8_t)h->cfg->replica_count)) {
		vsr_message r = {.type = VSR_MSG_REPLY, .status = VSR_REPLY_NOT_PRIMARY,
				 .replica = h->last.primary, .view = h->last.view,
				 .commit = h->last.commit, .history = h->last.history,
				 .read_mode = m->read_mode};
		r.request.session = m->request.session;
		r.request.request = m->request.request;
		r.request.kind = VSR_REQUEST_QUERY;
		vsr_net_reply(net, conn, &r);
		return;
	}
	if (conn != h->solo_conn || m->request.session != h->solo_session) {
		h->solo_conn = conn;
		h->solo_session = m->request.session;
		h->solo_since_ms = uv_now(h->loop);
	}
	vsr_event ev = {.type = VSR_EVENT_REQUEST, .conn = conn, .message = m, .more = true};
	h->burst = true;
	host_step(h, &ev);
}

/* On the store's syncer thread: checkpoint op is durable. */
static void host_checkpoint_durable_cb(void *arg, uint64_t op)
{
	host *h = arg;
	atomic_store(&h->ckpt_durable_op, op);
	uv_async_send(&h->ckpt_async);
}

static void host_checkpoint_async_cb(uv_async_t *a)
{
	host *h = a->data;
	vsr_event ev = {.type = VSR_EVENT_CHECKPOINT_DURABLE,
			.checkpoint_op = atomic_load(&h->ckpt_durable_op)};
	vsrh_sm_stats st;
	vsrh_sm_stats_get(h->sm, &st);
	uint64_t turn_op = 0, turn_ns;
	if (vsrh_sm_turn_commits(h->sm, &turn_op, &turn_ns) == 0)
		turn_op = 0;
	if (st.checkpoint_last_off_loop)
		host_info("checkpoint at op %" PRIu64 " is durable (its commit took %.1f ms on the "
			  "syncer's thread%s and %.2f ms of the event loop, its sync %.1f ms)",
			  ev.checkpoint_op, (double)st.checkpoint_commit_last_ns / 1e6,
			  turn_op == ev.checkpoint_op ? ", in this replica's turn" : "",
			  (double)st.checkpoint_step_last_ns / 1e6,
			  (double)st.checkpoint_sync_last_ns / 1e6);
	else
		host_info("checkpoint at op %" PRIu64 " is durable (its commit took %.1f ms%s, its "
			  "sync %.1f ms)",
			  ev.checkpoint_op, (double)st.checkpoint_step_last_ns / 1e6,
			  turn_op == ev.checkpoint_op ? ", in this replica's turn" : "",
			  (double)st.checkpoint_sync_last_ns / 1e6);
	host_step(h, &ev);
}

static void host_flush_cb(uv_check_t *c)
{
	host *h = c->data;
	if (h->burst) {
		h->burst = false;
		vsr_event ev = {.type = VSR_EVENT_FLUSH};
		host_step(h, &ev);
	}
	host_tick_run(h);
}

static void host_status_cb(vsr_net *net, uint64_t conn, uint64_t nonce)
{
	host *h = vsr_net_data(net);
	vsr_replica_info info;
	vsr_replica_info_get(h->core, &info); /* with the digest: status is rare */
	const vsr_replica_stats *rs = vsr_replica_stats_get(h->core);
	const vsr_net_stats *ns = vsr_net_stats_get(net);
	vsr_wire_status s = {
		.nonce = nonce,
		.replica = h->replica,
		.replica_count = (uint8_t)h->cfg->replica_count,
		.status = info.status,
		.primary = info.primary,
		.view = info.view,
		.log_view = info.log_view,
		.op = info.op,
		.commit = info.commit,
		.executed = info.executed,
		.checkpoint_op = info.checkpoint_op,
		.digest = info.digest,
		.pipeline = info.pipeline,
		.queued = info.queued,
		.sessions = info.sessions,
		.connections = ns->connections,
		.uptime_ms = uv_now(h->loop) - h->start_ms,
		.ops_committed = rs->ops_committed,
		.view_changes = rs->view_changes,
		.messages_dropped = rs->messages_dropped,
		.frames_dropped = vsr_wire_stats_dropped(&ns->wire) + ns->protocol_errors,
		.state_transfers = rs->state_transfers,
		.checkpoints = rs->checkpoints,
		.requests_deduplicated = rs->requests_deduplicated,
		.sessions_evicted = rs->sessions_evicted,
		.history = info.history,
		.step_age_ms = uv_now(h->loop) - (h->step_at_ms ? h->step_at_ms : h->start_ms),
		.progress_age_ms = uv_now(h->loop) - (h->progress_at_ms ? h->progress_at_ms
									: h->start_ms),
	};
	vsr_net_reply_status(net, conn, &s);
}

/* /metrics and /health: read on the loop thread between steps. */
static int host_http_cb(void *data, const char *path, vsr_http_body *body,
			const char **content_type)
{
	host *h = data;
	host_metrics_source src = {
		.replica = h->replica,
		.replica_count = (uint8_t)h->cfg->replica_count,
		.cluster = h->cfg->cluster,
		.uptime_ms = uv_now(h->loop) - h->start_ms,
		.core = h->core,
		.storage = h->storage,
		.net = h->net,
		.sm = h->sm,
		.host = &h->metrics,
	};
	if (strcmp(path, "/metrics") == 0) {
		*content_type = "text/plain; version=0.0.4; charset=utf-8";
		host_metrics_render(&src, body);
		return 200;
	}
	if (strcmp(path, "/health") == 0)
		return host_health_render(&src, body);
	vsr_http_body_printf(body, "not found: try /metrics or /health\n");
	return 404;
}

static void host_net_log(void *data, int level, const char *msg)
{
	(void)data;
	host_log(level, "net: %s", msg);
}

static void host_telemetry_log(void *arg, int level, const char *msg, size_t len)
{
	(void)arg;
	host_log(level, "telemetry: %.*s", (int)(len > INT_MAX ? INT_MAX : len), msg);
}

static void host_sm_log(void *arg, int level, const char *msg, size_t len)
{
	(void)arg;
	host_log(level, "statemachine: %.*s", (int)(len > INT_MAX ? INT_MAX : len), msg);
}

/* ------------------------------------------------------------------------ */
/* Shutdown.                                                                */

static void host_net_closed_cb(void *data)
{
	host *h = data;
	h->net = NULL;
}

static void host_storage_closed_cb(vsr_storage *s)
{
	host *h = vsr_storage_data(s);
	h->pending_max = vsr_storage_stats_get(s)->pending_max;
	h->storage = NULL;
}

/* Closes every handle; the loop then runs dry and host_replica_main returns. */
static void host_stop(host *h, int exit_code, const char *why)
{
	if (h->stopping)
		return;
	h->stopping = true;
	h->exit_code = exit_code;
	if (exit_code == 0)
		host_info("stopping: %s", why);
	else
		host_error("stopping: %s", why);
	uv_close((uv_handle_t *)&h->tick_timer, NULL);
	uv_close((uv_handle_t *)&h->tick_idle, NULL);
	uv_close((uv_handle_t *)&h->poll_mark, NULL);
	uv_close((uv_handle_t *)&h->flush_check, NULL);
	/* The signal handles stay open until everything else is closed
	 * (host_replica_main): Ctrl-C on `make run` sends SIGINT to every
	 * process and the supervisor then sends SIGTERM, which must not take
	 * the default action while the storage closes or a checkpoint's sync
	 * finishes (the supervisor escalates to SIGKILL if a replica hangs). */
	uv_unref((uv_handle_t *)&h->sigint);
	uv_unref((uv_handle_t *)&h->sigterm);
	/* A checkpoint being synced finishes first; nothing is sent after. */
	vsrh_sm_on_checkpoint_durable(h->sm, NULL, NULL);
	uv_close((uv_handle_t *)&h->ckpt_async, NULL);
	if (h->net != NULL)
		vsr_net_close(h->net, host_net_closed_cb);
	if (h->http != NULL) {
		vsr_http_close(h->http, NULL);
		h->http = NULL;
	}
	if (h->storage != NULL)
		vsr_storage_close(h->storage, host_storage_closed_cb);
}

static void host_signal_cb(uv_signal_t *sig, int signum)
{
	host *h = sig->data;
	host_stop(h, 0, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ------------------------------------------------------------------------ */
/* Setup.                                                                   */

static uint32_t host_ms_to_ticks(uint32_t ms, uint32_t tick_ms)
{
	uint32_t t = (ms + tick_ms - 1) / tick_ms;
	return t == 0 ? 1 : t;
}

/* A value that differs between processes: seeds timer jitter and the HELLO
 * instance. Randomness here is deliberate (nothing replicated depends on
 * it); the seed is logged so a run can be reasoned about afterwards. */
static uint64_t host_random_u64(void)
{
	uint64_t v = 0;
	FILE *f = fopen("/dev/urandom", "rb");
	if (f != NULL) {
		if (fread(&v, sizeof v, 1, f) != 1)
			v = 0;
		fclose(f);
	}
	if (v == 0)
		v = host_realtime_ns() ^ ((uint64_t)getpid() << 32);
	return v;
}

/* Every connection is a descriptor: a default soft limit of 1024 would
 * refuse clients before the transport's own limit does. */
static void host_raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
	if (rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		host_warn("cannot raise the open-file limit: %s", strerror(errno));
}

static void host_core_config(const host *h, uint64_t seed, vsr_config *c)
{
	const vsrh_config *cfg = h->cfg;
	vsr_config_default(c, cfg->cluster, (uint8_t)cfg->replica_count, h->replica);
	c->seed = seed;
	/* The id of the history this process begins if it finds every replica
	 * unjoined (genesis): random for every start, never 0. */
	do
		c->genesis_history = host_random_u64();
	while (c->genesis_history == 0);
	c->pipeline_max = cfg->pipeline_max;
	c->batch_requests_max = cfg->batch_requests_max;
	c->clients_max = cfg->clients_max;
	c->checkpoint_interval = cfg->checkpoint_interval;
	/* The core budgets every message it sends to fit one frame, with room
	 * for the frame header and the msgpack envelope (it counts each entry's
	 * own framing itself). A DO_VIEW_CHANGE carries a whole pipeline of
	 * batches, so a batch gets its share. The reply limit follows from the
	 * same budget (vsr_reply_bytes_max): every reply fits a frame. */
	uint32_t room = cfg->message_bytes_max - VSR_MESSAGE_WIRE_OVERHEAD;
	c->message_bytes_max = room;
	uint32_t share = room / (c->pipeline_max + 1);
	share = share > 2 * VSR_ENTRY_WIRE_OVERHEAD ? share - 2 * VSR_ENTRY_WIRE_OVERHEAD : 64;
	if (c->batch_bytes_max > share)
		c->batch_bytes_max = share;
	if (c->chunk_bytes_max > room / 2)
		c->chunk_bytes_max = room / 2;
	/* The in-memory log holds two checkpoint intervals and some pipelines. */
	uint64_t need = 2ull * c->checkpoint_interval + 4ull * c->pipeline_max;
	while (c->log_max < need && c->log_max < VSR_LOG_MAX)
		c->log_max *= 2;
	if (c->message_entries_max < 2 * c->pipeline_max)
		c->message_entries_max = 2 * c->pipeline_max;
	uint32_t tick = cfg->tick_ms;
	c->timeouts.heartbeat_ticks = host_ms_to_ticks(cfg->heartbeat_ms, tick);
	c->timeouts.prepare_retry_ticks = host_ms_to_ticks(cfg->retry_ms, tick);
	c->timeouts.primary_ticks = host_ms_to_ticks(cfg->primary_ms, tick);
	c->lease_drift_ppm = cfg->lease_drift_ppm;
	/* Rounded up: a margin never shrinks. */
	c->lease_margin_ticks = (cfg->lease_margin_ms + tick - 1) / tick;
	c->timeouts.view_change_ticks = host_ms_to_ticks(cfg->view_change_ms, tick);
	c->timeouts.recovery_retry_ticks = host_ms_to_ticks(cfg->retry_ms, tick);
	/* Enough spread that two backups rarely suspect the primary at once. */
	c->timeouts.jitter_ticks = c->timeouts.primary_ticks / 3 + 1;
#ifdef VSRHOST_TEETH
	/* vsrhost-teeth only (linked with the test core vsrcore_teeth): the
	 * planted bugs VSR_BUGS names (vsr.h VSR_BUG_*), so that vsrjepsen can
	 * show it catches them in real processes. Never in vsrhost. */
	const char *bugs = getenv("VSR_BUGS");
	if (bugs != NULL) {
		c->bugs = (uint32_t)strtoul(bugs, NULL, 0);
		host_warn("planted bugs 0x%x (VSR_BUGS): a test build, not for use", c->bugs);
	}
#endif
}

/* vsr.store found the disk too full for its map's reservation: the log's
 * pruned segments still being reaped are removed at once (the store then
 * tries again; vsrh_sm_on_disk_full). */
static bool host_disk_full_cb(void *arg)
{
	host *h = arg;
	return h->storage != NULL && vsr_storage_reclaim(h->storage);
}

static void host_free(host *h)
{
	vsrh_telemetry_close(h->telemetry);
	h->telemetry = NULL;
	if (h->core != NULL)
		vsr_replica_destroy(h->core);
	if (h->sm != NULL) {
		host_watchdog_detach(); /* its thread reads the state machine */
		vsrh_sm_destroy(h->sm);
	}
	vsr_buf_free(&h->query_buf);
}

/* The replicas' turns at committing a checkpoint (vsrh_sm_stagger):
 * VSRH_TURN_MS overrides the default for experiments (0: every replica
 * commits at the take, as all did before turns). */
static uint64_t host_turn_ns(void)
{
	const char *e = getenv("VSRH_TURN_MS");
	if (e == NULL || *e == '\0')
		return VSRH_TURN_NS;
	char *end;
	unsigned long ms = strtoul(e, &end, 10);
	return *end == '\0' && ms <= 10000 ? (uint64_t)ms * 1000000u : VSRH_TURN_NS;
}

int host_replica_main(const host_options *opts, const vsrh_config *cfg)
{
	char tag[16];
	snprintf(tag, sizeof tag, "r%d", opts->replica + 1);
	host_log_set_tag(tag);
	signal(SIGPIPE, SIG_IGN);
	host_raise_fd_limit();

	host h = {.cfg = cfg, .replica = (uint8_t)opts->replica, .loop = uv_default_loop()};
	char err[512] = "";
	uint64_t seed = host_random_u64();
	host_info("vsrhost %s: replica %u of %u, cluster %" PRIu64 ", %s storage, seed %016" PRIx64,
		  VSRHOST_VERSION, h.replica + 1u, cfg->replica_count, cfg->cluster,
		  cfg->durability == VSRH_DURABILITY_MEMORY ? "memory" : "durable", seed);

	/* Keys first: a replica must never serve its ports unauthenticated
	 * because a key file went missing. */
	const char *key_files[2] = {cfg->replica_key_file, cfg->client_key_file};
	const char *key_names[2] = {"auth.replica_key", "auth.client_key"};
	uint8_t *keys[2] = {h.replica_key, h.client_key};
	for (int k = 0; k < 2; k++) {
		if (key_files[k] != NULL &&
		    vsr_wire_key_load(key_files[k], keys[k], err, sizeof err) != 0) {
			host_error("%s: %s: %s", cfg->path, key_names[k], err);
			return EX_CONFIG;
		}
	}

	/* Storage, and what it holds. */
	int rc;
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/replica-%u", cfg->data_dir, h.replica + 1u);
	/* vsr.store's LMDB environment sits next to the log and holds the
	 * checkpoints. LMDB keeps no checksums: storage asks host_check_store
	 * to read it all before trusting it (a damaged store resets the whole
	 * directory, as a damaged log does). */
	char store_dir[4200];
	snprintf(store_dir, sizeof store_dir, "%s/store", dir);
	bool durable_mode = cfg->durability != VSRH_DURABILITY_MEMORY;
	/* Tests only: small log segments, so that rotation, pruning and the
	 * segment reaper happen within seconds (default 64 MiB). */
	const char *segment_env = getenv("VSRH_SEGMENT_BYTES");
	vsr_storage_options so = {
		.check = host_check_store,
		.check_arg = store_dir,
		.loop = h.loop,
		.kind = cfg->durability == VSRH_DURABILITY_MEMORY ? VSR_STORAGE_MEMORY
								  : VSR_STORAGE_DURABLE,
		.dir = dir,
		.cluster = cfg->cluster,
		.replica = h.replica,
		.fresh = opts->fresh,
		.persisted_cb = host_persisted_cb,
		.data = &h,
		.inline_ok = host_inline_ok,
		.segment_size = segment_env ? strtoull(segment_env, NULL, 10) : 0,
	};
	/* A directory it cannot create or write is the config's mistake (78,
	 * naming file and key), not a failing disk (74) at its first file. */
	if (host_data_dir_check(cfg->path, dir, err, sizeof err) != 0) {
		host_error("%s", err);
		return EX_CONFIG;
	}
#ifdef VSRHOST_TEETH
	/* Test-only (proctest open-reclaim-teeth): the log's reaper frees
	 * nothing in the background until the store has opened (host_teeth.h),
	 * so that the open meets the disk as full as it was left. */
	if (getenv("VSRH_TEETH_HOLD_REAPER") != NULL)
		host_teeth_reaper_hold(true);
#endif
	rc = vsr_storage_open(&so, &h.storage, err, sizeof err);
	if (rc != VSR_OK) {
		host_error("%s", err);
		host_free(&h);
		return EX_CONFIG;
	}
	const vsr_durable *durable = NULL;
	rc = vsr_storage_load(h.storage, &durable, err, sizeof err);
	if (rc != VSR_OK) {
		host_error("%s", err);
		vsr_storage_close(h.storage, NULL);
		uv_run(h.loop, UV_RUN_DEFAULT);
		host_free(&h);
		return EX_IOERR;
	}
	if (durable == NULL || durable->superblock.history == 0) {
		if (err[0] != '\0')
			host_warn("%s", err);
		host_info("storage %s: no state; unjoined: catching up with the cluster's "
			  "history, or beginning a new one if every replica is unjoined", dir);
	} else if (cfg->durability == VSRH_DURABILITY_DURABLE) {
		if (err[0] != '\0')
			host_warn("%s", err); /* e.g. one superblock copy was damaged */
		host_info("storage %s: superblock view %" PRIu64 ", checkpoint op %" PRIu64
			  ", %u log entries after it; recovering",
			  dir, durable->superblock.view, durable->superblock.checkpoint_op,
			  durable->entry_count);
	}
#ifdef VSRHOST_TEETH
	/* Test-only (proctest lost-dir-teeth): a host that keeps a history id
	 * across a lost disk, as a surviving marker file would, hands the core
	 * an empty disk as an intact one of that history (vsrsim's
	 * --amnesia-hidden). Never in vsrhost. */
	static vsr_durable hidden;
	const char *hidden_history = getenv("VSRH_TEETH_HIDDEN_HISTORY");
	if (hidden_history != NULL && (durable == NULL || durable->superblock.history == 0)) {
		memset(&hidden, 0, sizeof hidden);
		hidden.superblock.cluster = cfg->cluster;
		hidden.superblock.history = strtoull(hidden_history, NULL, 0);
		durable = &hidden;
		host_warn("planted bug (VSRH_TEETH_HIDDEN_HISTORY): an empty disk taken for an "
			  "intact one of history %s", hidden_history);
	}
#endif
	/* The state machine. vsr.store starts empty unless storage brought back
	 * a disk (in memory mode it is never synced and always starts empty). */
	bool store_fresh = durable == NULL || durable->superblock.history == 0 || !durable_mode;
	vsrh_sm_options smo = vsrh_sm_options_at(cfg, store_dir, durable_mode, store_fresh);
	smo.disk_full = host_disk_full_cb; /* the reservation at open reclaims too */
	smo.disk_full_arg = &h;
#ifdef VSRHOST_TEETH
	/* Test-only (proctest open-reclaim-teeth): the hook wired after the
	 * open, as it was, so that the reservation at open cannot reclaim. */
	bool late_disk_full = getenv("VSRH_TEETH_LATE_DISK_FULL") != NULL;
	if (late_disk_full)
		smo.disk_full = NULL;
#endif
	rc = vsrh_sm_open(&h.sm, &smo, err, sizeof err);
	if (rc != VSR_OK) {
		host_error("%s", err);
		vsr_storage_close(h.storage, NULL);
		uv_run(h.loop, UV_RUN_DEFAULT);
		host_free(&h);
		/* A store that cannot be opened or read (a disk error, damaged
		 * state) is storage's failure, which a supervisor restarts once
		 * the disk is back; anything else is the script or the config. */
		return rc == VSR_EIO || rc == VSR_ECORRUPT ? EX_IOERR : EX_CONFIG;
	}
	vsrh_sm_set_log(h.sm, host_sm_log, &h, host_log_level());
#ifdef VSRHOST_TEETH
	if (late_disk_full) {
		vsrh_sm_on_disk_full(h.sm, host_disk_full_cb, &h);
		host_warn("planted bug (VSRH_TEETH_LATE_DISK_FULL): the disk-full hook wired after "
			  "the store opened");
	}
	host_teeth_reaper_hold(false);
#endif
	{
		uint64_t sm_sources, dedup_sources;
		vsrh_sm_sources(h.sm, &sm_sources, &dedup_sources);
		host_fingerprint_parts(cfg, sm_sources, dedup_sources, h.fingerprint);
		char fp[512];
		host_fingerprint_describe(h.fingerprint, fp, sizeof fp);
		host_info("configuration fingerprint %s", fp);
	}
	/* Before the core replays anything: was the disk written under this
	 * configuration? (host_config_disk.h) */
	rc = host_config_disk_check(h.storage, dir, durable, h.fingerprint, opts->accept_config,
				    opts->accept_fingerprint);
	if (rc != 0) {
		vsr_storage_close(h.storage, NULL);
		uv_run(h.loop, UV_RUN_DEFAULT);
		host_free(&h);
		return rc;
	}
	vsrh_sm_bind(h.sm, &h.vsm);
	if (cfg->telemetry != NULL &&
	    vsrh_telemetry_open(cfg->telemetry, h.replica + 1u, host_telemetry_log, &h, &h.telemetry, err,
				sizeof err) != 0) {
		host_error("%s: telemetry: %s", cfg->path, err);
		vsr_storage_close(h.storage, NULL);
		uv_run(h.loop, UV_RUN_DEFAULT);
		host_free(&h);
		return EX_CONFIG;
	}
	if (host_watchdog_start(0, h.sm) != 0)
		host_warn("could not start the watchdog thread: steps are not watched");

	/* The core. */
	vsr_config vc;
	host_core_config(&h, seed, &vc);
	h.core_cfg = vc;
	const char *why = vsr_config_invalid(&vc);
	/* What net.c can frame must cover what the core produces: a reply it
	 * could not encode would be dropped after the operation was applied. */
	if (why == NULL &&
	    (uint64_t)vsr_reply_bytes_max(&vc) + VSR_MESSAGE_WIRE_OVERHEAD > cfg->message_bytes_max)
		why = "the reply limit does not fit limits.message_bytes";
	if (why != NULL) {
		host_error("%s: the limits give an unusable core configuration: %s", cfg->path, why);
		vsr_storage_close(h.storage, NULL);
		uv_run(h.loop, UV_RUN_DEFAULT);
		host_free(&h);
		return EX_CONFIG;
	}
	uv_update_time(h.loop);
	h.start_ms = uv_now(h.loop);
	host_watchdog_enter(uv_hrtime(), "startup (replaying the log)");
	rc = vsr_replica_create(&h.core, &vc, &h.vsm, durable, 0);
	host_watchdog_leave();
	if (rc != VSR_OK) {
		host_error("cannot create the replica: %s", vsr_strerror(rc));
		vsr_storage_close(h.storage, NULL);
		uv_run(h.loop, UV_RUN_DEFAULT);
		host_free(&h);
		return EX_SOFTWARE;
	}
	vsr_replica_status_get(h.core, &h.last);
	h.status_since_ms = h.start_ms;

	/* Signals first: a SIGTERM during startup still shuts down cleanly. */
	uv_signal_init(h.loop, &h.sigint);
	uv_signal_init(h.loop, &h.sigterm);
	h.sigint.data = h.sigterm.data = &h;
	uv_signal_start(&h.sigint, host_signal_cb, SIGINT);
	uv_signal_start(&h.sigterm, host_signal_cb, SIGTERM);
	uv_timer_init(h.loop, &h.tick_timer);
	h.tick_timer.data = &h;
	uv_idle_init(h.loop, &h.tick_idle);
	h.tick_idle.data = &h;
	uv_prepare_init(h.loop, &h.poll_mark);
	h.poll_mark.data = &h;
	uv_prepare_start(&h.poll_mark, host_poll_mark_cb);
	uv_check_init(h.loop, &h.flush_check);
	h.flush_check.data = &h;
	uv_check_start(&h.flush_check, host_flush_cb);
	uv_async_init(h.loop, &h.ckpt_async, host_checkpoint_async_cb);
	h.ckpt_async.data = &h;
	/* The replay inside vsr_replica_create may have taken checkpoints: the
	 * ones already synced are reported once the loop runs, the rest by the
	 * thread. */
	uint64_t synced = vsrh_sm_on_checkpoint_durable(h.sm, host_checkpoint_durable_cb, &h);
	h.turn_ns = host_turn_ns();
	vsrh_sm_stagger(h.sm, (h.replica + cfg->replica_count - h.last.primary % cfg->replica_count) %
				      cfg->replica_count,
			cfg->replica_count, h.turn_ns);
	if (synced > 0)
		host_checkpoint_durable_cb(&h, synced);

	/* The transport. */
	vsr_net_options no = {
		.loop = h.loop,
		.cluster = cfg->cluster,
		.replica = h.replica,
		.replica_count = (uint8_t)cfg->replica_count,
		.client = {cfg->clients[h.replica].host, cfg->clients[h.replica].port},
		.body_bytes_max = cfg->message_bytes_max,
		/* Connections, not sessions, but sized alike: one per client. */
		.clients_max = cfg->clients_max > 1024 ? cfg->clients_max : 1024,
		.reconnect_min_ms = cfg->tick_ms * 5,
		.reconnect_max_ms = cfg->primary_ms > 1000 ? cfg->primary_ms : 1000,
		.instance = host_random_u64(),
		.replica_key = cfg->replica_key_file != NULL ? h.replica_key : NULL,
		.client_key = cfg->client_key_file != NULL ? h.client_key : NULL,
		.config = h.fingerprint,
		.config_count = VSR_WIRE_CONFIG_PARTS,
		.peer_message_cb = host_peer_message_cb,
		.request_cb = host_request_cb,
		.status_cb = host_status_cb,
		.log = host_net_log,
		.data = &h,
	};
#ifdef VSRHOST_TEETH
	/* vsrhost-teeth only: VSR_NO_FINGERPRINT=1 sends no fingerprint and
	 * checks none, as a build from before fingerprints did, so that a test
	 * can still run a misconfigured replica and watch divergence detection
	 * catch it. Never in vsrhost. */
	if (getenv("VSR_NO_FINGERPRINT") != NULL) {
		no.config_count = 0;
		host_warn("VSR_NO_FINGERPRINT: no configuration fingerprint sent or checked (a test "
			  "build, not for use)");
	}
#endif
	for (uint32_t i = 0; i < cfg->replica_count; i++) {
		no.replicas[i].host = cfg->replicas[i].host;
		no.replicas[i].port = cfg->replicas[i].port;
	}
	rc = vsr_net_start(&no, &h.net, err, sizeof err);
	if (rc != 0) {
		host_error("%s", err);
		host_stop(&h, EX_UNAVAILABLE, "the transport could not start");
	} else {
		host_info("listening: replicas on %s:%u, clients on %s:%u",
			  cfg->replicas[h.replica].host, cfg->replicas[h.replica].port,
			  cfg->clients[h.replica].host, cfg->clients[h.replica].port);
		host_info("status %s, view %" PRIu64 ", primary %u",
			  vsr_status_name((enum vsr_status)h.last.status), h.last.view,
			  h.last.primary + 1u);
		uv_timer_start(&h.tick_timer, host_tick_cb, cfg->tick_ms, cfg->tick_ms);
		vsrh_telemetry_field f[] = {
			{"status", 0, vsr_status_name((enum vsr_status)h.last.status)},
			{"view", (double)h.last.view, NULL},
			{"op", (double)h.last.op, NULL}};
		vsrh_telemetry_emit(h.telemetry, "started", f, 3);
	}
	if (rc == 0 && cfg->metrics_count > 0) {
		vsr_http_options ho = {
			.loop = h.loop,
			.host = cfg->metrics[h.replica].host,
			.port = cfg->metrics[h.replica].port,
			.handler = host_http_cb,
			.data = &h,
		};
		rc = vsr_http_start(&ho, &h.http, err, sizeof err);
		if (rc != 0) {
			host_error("%s", err);
			host_stop(&h, EX_UNAVAILABLE, "the metrics listener could not start");
		} else {
			host_info("metrics on http://%s:%u/metrics", ho.host, (unsigned)ho.port);
		}
	}

	uv_run(h.loop, UV_RUN_DEFAULT);
	/* Stopped: only the signal handles are left (host_stop). */
	uv_close((uv_handle_t *)&h.sigint, NULL);
	uv_close((uv_handle_t *)&h.sigterm, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	uv_run(h.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(h.loop);
	if (rc != 0) {
		host_error("a handle was left open at exit: %s", uv_strerror(rc));
		if (h.exit_code == 0)
			h.exit_code = EX_SOFTWARE;
	}
	assert(h.net == NULL && h.storage == NULL);
	host_free(&h);
	host_info("stopped after %" PRIu64 " steps; storage backpressure paused reading %" PRIu64
		  " times, at most %u persists pending",
		  h.steps, h.pauses, h.pending_max);
	return h.exit_code;
}
