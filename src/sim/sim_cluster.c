/* sim_cluster.c - the simulator's event loop: network, replicas, clients, faults.
 *
 * Time is a tick counter. Each tick: draw this tick's faults, deliver every
 * event due (messages, completed persists, crashes, restarts, partition
 * heals) in (time, sequence) order from one heap, tick every live replica,
 * then let clients retry or issue requests. Every call into a replica goes
 * through step(), which copies the actions out (their pointers die at the
 * next call), runs the checker on what was sent and on the replica's state,
 * and hands messages to the network and persists to the storage.
 *
 * Faults (only before fault_ticks): message drop, duplication, delay and so
 * reordering; partitions (symmetric split, one-way cuts, primary isolated)
 * that heal; crashes of one or several replicas, some aimed at the window
 * where a vote went out and a persist is still pending; torn or corrupt
 * writes at a crash. At fault_ticks everything heals, crashed replicas come
 * back, and the cluster must settle and serve every client within
 * liveness_ticks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

enum ev_kind {
	EV_DELIVER = 1, /* msg from node `from` to node `node` */
	EV_PERSISTED,   /* replica `node`, incarnation `inc`, persist `arg` */
	EV_CRASH,       /* replica `node` if still incarnation `inc` */
	EV_RESTART,     /* replica `node` if down */
	EV_HEAL,        /* partition `arg` heals */
	EV_HEAL_ONEWAY, /* long one-way failure `arg` heals */
	EV_CKPT_SYNC,   /* replica `node`, incarnation `inc`: the sync of its
			 * checkpoint take number `arg` finishes (0: none, only
			 * tell the core what is durable) */
};

typedef struct sim_event {
	uint64_t time;
	uint64_t seq;
	uint8_t kind;
	uint8_t node;
	uint8_t from;
	uint32_t inc;
	uint64_t arg;
	sim_msg *msg;
} sim_event;

typedef struct sim_node_replica {
	vsr_replica *core;
	bool up;
	uint32_t incarnation;
	vsr_config cfg;
	sim_sm sm;
	vsr_state_machine smi;
	sim_storage st;
	vsr_replica_info info; /* after the last step */
	uint64_t next_full_check;
	uint64_t clock_offset_ns; /* this replica's wall clock is off by this */
	bool more_pending;        /* last event said "more follow": owe a FLUSH */
	uint64_t deadline;        /* the core's requested next TICK */
	uint32_t crashes;
	uint64_t up_since;        /* tick of its last start */
	/* Restarted with a wiped disk and not yet back: set at the wipe, cleared
	 * once the replica is normal and every write it had issued by then is
	 * durable (before that, a crash would leave an untrustworthy disk, so it
	 * restarts wiped again). The one-amnesiac rule counts these. */
	bool amnesiac;
	bool amnesia_normal;      /* normal again, waiting for amnesia_wait_id */
	uint64_t amnesia_wait_id; /* persist that makes the recovery durable */
	bool stay_down;           /* left down after the faults (--minority-down) */
	uint64_t busy_until;      /* a long step: nothing reaches the core before */
	bool diverged;            /* the core said diverged after the last step (trace) */
	/* Async checkpoints: the takes and waits of st.ck seen so far, and
	 * when the sync of the pending one finishes. */
	uint64_t ck_takes, ck_waits, ck_due;
	/* Store failures (docs/simulator.md "Store failures"). The process
	 * dies inside a callback of the step under way (kill_why set): what
	 * the step did reaches neither the network nor the disk. */
	const char *kill_why;
	bool kill_mid_fetch;             /* ... at a chunk, before the install */
	uint64_t fetch_op, fetch_digest; /* the fetch being written (staged) */
	uint32_t fetch_writes;           /* chunk writes of it so far */
	uint32_t fetch_kill_at;          /* killed at this write (0: not) */
	bool install_kill;               /* killed once its install is durable */
	/* --bug sync-fail-ignored: the checkpoint whose failed sync the host
	 * reported durable anyway (still pending on the disk) */
	uint64_t ck_claimed;
	/* the state machine's checkpoint callbacks that the kills wrap */
	int (*ck_write)(void *ctx, const vsr_checkpoint *cp, uint64_t offset,
			const uint8_t *data, uint32_t len);
	int (*ck_install)(void *ctx, const vsr_checkpoint *cp,
			  vsr_checkpoint_accept accept, void *arg);
	int (*ck_take)(void *ctx, vsr_checkpoint *cp, const uint8_t *meta, size_t meta_len);
	bool in_step;                    /* inside vsr_replica_step (not create) */
} sim_node_replica;

typedef struct sim_client {
	uint64_t session;
	uint64_t history;      /* the history the session belongs to */
	uint64_t nonce;        /* REGISTER nonce in flight */
	uint64_t request;      /* number of the request in flight / last sent */
	bool busy;
	bool registering;
	uint8_t op[SIM_OP_BYTES];
	uint8_t target;
	uint64_t view;         /* newest view heard of */
	uint64_t retry_at;
	uint64_t issued_at;
	uint32_t attempts;
	bool redirected;       /* next resend goes to `target` as hinted */
	uint32_t done;
	uint32_t done_after_heal;
	/* last completed request: a late duplicate reply must match it (12.10) */
	uint64_t last_session, last_request, last_reply_op, last_reply_hash;
	uint8_t last_status;
	uint32_t session_history; /* the operator era the session belongs to */
	/* Reads (--reads): the query in flight instead of a request. */
	bool reading;
	uint8_t read_mode;     /* asked */
	uint8_t read_key;
	uint64_t read_number;  /* queries are numbered apart from requests */
	uint64_t read_floor;   /* highest op committed anywhere when it was first sent */
	uint32_t read_era;
} sim_client;

/* Fault rates of one run, resolved from options and the seed. */
typedef struct sim_faults {
	uint32_t drop_ppm;
	uint32_t dup_ppm;
	uint32_t long_delay_ppm;
	uint32_t crash_ppm;
	uint32_t multi_crash_ppm;  /* share of crashes that take several replicas */
	uint32_t window_crash_ppm; /* crash right after a vote with a persist pending */
	uint32_t partition_ppm;
	uint32_t torn_ppm;
	uint32_t corrupt_ppm;
	uint32_t delay_max;
	uint32_t persist_max;
	uint32_t restart_max;
	uint32_t partition_max;
	uint32_t amnesia_ppm;      /* share of restarts that wipe the disk */
	/* issue 7 modes, drawn per seed from mode_rng when their option is on */
	bool minority_down;
	uint32_t oneway_ppm;       /* per tick: a long one-way failure starts */
	uint32_t long_step_ppm;    /* share of checkpoint steps that stall */
	uint32_t long_step_max;    /* ticks */
	bool slow_heal;
	uint32_t restore_fail_ppm;
	uint32_t big_reply_ppm;    /* share of client ops with an oversized reply */
	uint32_t state_pad;        /* bytes added to every snapshot */
	uint32_t ack_crash_ppm;    /* crash right after an ack, a write pending */
	uint32_t async_mask;       /* replicas whose checkpoints sync later */
	uint32_t ckpt_sync_max;    /* ticks a checkpoint's sync takes at most */
	uint32_t sync_fail_ppm;    /* share of checkpoint syncs that fail */
	uint32_t fetch_kill_ppm;   /* share of checkpoint fetches killed midway */
	uint64_t fresh_at;         /* operator: the whole cluster formatted anew */
} sim_faults;

struct sim {
	sim_options opt;
	sim_rng rng;
	/* Amnesia draws come from their own stream, so that a seed without
	 * amnesia takes exactly the path it took before amnesia existed. */
	sim_rng amnesia_rng;
	/* The issue-7 modes draw from a third stream, for the same reason. */
	sim_rng mode_rng;
	/* Reads draw from a fourth stream: a run without --reads is the run
	 * it was before reads existed. */
	sim_rng read_rng;
	/* Async checkpoints draw from a fifth: a seed where no replica has
	 * them runs as it did before they existed. */
	sim_rng ckpt_rng;
	/* Store failures draw from a sixth: a seed where they are off (or
	 * never strike) runs as it did before they existed. */
	sim_rng store_rng;
	bool leases;              /* --reads: this seed's replicas hold leases */
	uint64_t now;
	uint64_t seq;
	uint8_t n;
	uint8_t clients_n;
	sim_faults f;
	bool healed;
	bool use_more;            /* mark bursts with vsr_event.more, then FLUSH */
	bool tick_by_deadline;    /* TICK only when the core asked for one */
	/* heap of events */
	sim_event *heap;
	uint32_t heap_len, heap_cap;
	sim_node_replica r[SIM_REPLICAS_MAX];
	sim_client c[SIM_CLIENTS_MAX];
	/* cut[a][b]: messages from replica a to replica b are lost */
	bool cut[SIM_REPLICAS_MAX][SIM_REPLICAS_MAX];
	uint64_t partition_id;
	bool partitioned;
	/* long one-way failures (--one-way-long), on top of partitions */
	bool oneway[SIM_REPLICAS_MAX][SIM_REPLICAS_MAX];
	uint64_t oneway_id;
	bool oneway_active;
	/* liveness during faults: since when each quorum (a bitmask of
	 * replicas) is up and connected, and when a client last completed a
	 * request */
	uint64_t quorum_since[1u << SIM_REPLICAS_MAX];
	bool quorum_ok[1u << SIM_REPLICAS_MAX];
	uint64_t last_completion;
	/* Operator eras (--fresh-restarts): bumped when the operator formats
	 * the whole cluster anew; messages of an older era die with their
	 * connections. */
	uint32_t era;
	sim_ghost g;
	/* --plant-divergence: which replica and op (drawn from their own
	 * stream), and whether it struck */
	uint8_t plant_replica;
	uint64_t plant_op;
	bool planted;
	/* The cluster's history: the fault model never loses every replica's
	 * state, so exactly one genesis happens in a run. */
	uint64_t history;
	bool failed;
	char reason[512];
	uint64_t fail_tick;
	uint64_t trace_digest;
	sim_stats stats;
	/* demo narration */
	uint64_t demo_isolated_at, demo_heal_at;
	int demo_isolated;
	/* scratch for the messages of one step */
	sim_msg **out;
	uint8_t *out_to;
	bool *out_client;
	uint32_t out_cap;
};

volatile uint64_t sim_current_tick;

static void tracef(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------ */
/* Small accessors used by the checker.                                      */

void sim_fail(struct sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	s->fail_tick = s->now;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	va_end(ap);
	if (s->opt.trace)
		fprintf(s->opt.out, "%6llu VIOLATION %s\n", (unsigned long long)s->now,
			s->reason);
}

bool sim_failed(const struct sim *s) { return s->failed; }
uint8_t sim_replica_count(const struct sim *s) { return s->n; }
uint64_t sim_now(const struct sim *s) { return s->now; }
const sim_storage *sim_storage_of(const struct sim *s, uint8_t r) { return &s->r[r].st; }
bool sim_direct_checks(const struct sim *s) { return !s->opt.consequences_only; }
uint32_t sim_state_pad(const struct sim *s) { return s->f.state_pad; }

bool sim_planting(const struct sim *s) { return s->opt.plant_divergence; }

bool sim_plant_strikes(struct sim *s, uint8_t r, uint64_t op)
{
	if (!s->opt.plant_divergence || s->planted || r != s->plant_replica || op != s->plant_op)
		return false;
	s->planted = true;
	s->stats.planted = 1;
	tracef(s, "r%u   state machine DIVERGES at op %llu (planted)", r,
	       (unsigned long long)op);
	return true;
}

bool sim_restore_fails(struct sim *s, uint8_t r)
{
	if (!s->f.restore_fail_ppm || !sim_rng_ppm(&s->mode_rng, s->f.restore_fail_ppm))
		return false;
	s->stats.restore_failures++;
	tracef(s, "r%u   checkpoint restore FAILS (injected)", r);
	return true;
}

void sim_check_duplicate_apply(struct sim *s, uint8_t replica, uint64_t op,
			       uint64_t session, uint64_t request)
{
	sim_fail(s,
		 "at-most-once (12.10): replica %u applied session %llu request %llu "
		 "again at op %llu",
		 replica, (unsigned long long)session, (unsigned long long)request,
		 (unsigned long long)op);
}

/* ------------------------------------------------------------------------ */
/* Trace: a digest of every event always, text on request.                   */

static void trace_mix(struct sim *s, uint64_t a, uint64_t b, uint64_t c,
		      uint64_t d)
{
	uint64_t h = sim_hash_u64(s->trace_digest, s->now);
	h = sim_hash_u64(h, a);
	h = sim_hash_u64(h, b);
	h = sim_hash_u64(h, c);
	s->trace_digest = sim_hash_u64(h, d);
}

static void tracef(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void tracef(struct sim *s, const char *fmt, ...)
{
	if (!s->opt.trace || s->now < s->opt.trace_from)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(s->opt.out, "%6llu ", (unsigned long long)s->now);
	vfprintf(s->opt.out, fmt, ap);
	fputc('\n', s->opt.out);
	va_end(ap);
}

static void narrate(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void narrate(struct sim *s, const char *fmt, ...)
{
	if (!s->opt.demo)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(s->opt.out, "tick %5llu  ", (unsigned long long)s->now);
	vfprintf(s->opt.out, fmt, ap);
	fputc('\n', s->opt.out);
	va_end(ap);
}

static const char *mtype(uint8_t t)
{
	return vsr_message_type_name((enum vsr_message_type)t);
}

static const char *sname(uint8_t st)
{
	return vsr_status_name((enum vsr_status)st);
}

/* ------------------------------------------------------------------------ */
/* Event heap, ordered by (time, seq).                                       */

static bool ev_less(const sim_event *a, const sim_event *b)
{
	return a->time != b->time ? a->time < b->time : a->seq < b->seq;
}

static void ev_push(struct sim *s, sim_event e)
{
	if (s->heap_len == SIM_EVENTS_MAX) {
		sim_fail(s, "simulator: more than %u events in flight", SIM_EVENTS_MAX);
		sim_msg_free(e.msg);
		return;
	}
	if (s->heap_len == s->heap_cap) {
		s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 1024;
		s->heap = sim_xrealloc(s->heap, s->heap_cap * sizeof(sim_event));
	}
	e.seq = s->seq++;
	uint32_t i = s->heap_len++;
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!ev_less(&e, &s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = e;
}

static sim_event ev_pop(struct sim *s)
{
	sim_event top = s->heap[0];
	sim_event last = s->heap[--s->heap_len];
	uint32_t i = 0;
	for (;;) {
		uint32_t l = 2 * i + 1, m = i;
		if (l < s->heap_len && ev_less(&s->heap[l], &last))
			m = l;
		if (l + 1 < s->heap_len &&
		    ev_less(&s->heap[l + 1], m == i ? &last : &s->heap[m]))
			m = l + 1;
		if (m == i)
			break;
		s->heap[i] = s->heap[m];
		i = m;
	}
	if (s->heap_len)
		s->heap[i] = last;
	return top;
}

/* A replica's wall clock: simulated time (10 ms a tick) plus its own fixed
 * offset, so primaries disagree about the time by up to two seconds and the
 * core must keep timestamps monotonic in the log across view changes. */
static uint64_t realtime_ns(const struct sim *s, uint8_t r)
{
	return s->now * 10000000ull + s->r[r].clock_offset_ns;
}

/* ------------------------------------------------------------------------ */
/* Network.                                                                   */

static bool in_fault_phase(const struct sim *s)
{
	return s->opt.faults && !s->healed;
}

/* Sends from node `from` to node `to` (replicas 0..n-1, clients n..). */
static void net_send(struct sim *s, uint8_t from, uint8_t to, sim_msg *msg)
{
	s->stats.messages++;
	uint32_t copies = 1;
	if (in_fault_phase(s)) {
		if (sim_rng_ppm(&s->rng, s->f.drop_ppm)) {
			tracef(s, "net   %u -> %u %s dropped", from, to, mtype(msg->m.type));
			trace_mix(s, 1, from, to, msg->m.type);
			sim_msg_free(msg);
			return;
		}
		if (sim_rng_ppm(&s->rng, s->f.dup_ppm))
			copies = 2;
	}
	for (uint32_t i = 0; i < copies; i++) {
		uint64_t delay = 1;
		if (in_fault_phase(s)) {
			delay = sim_rng_range(&s->rng, 1, s->f.delay_max);
			if (sim_rng_ppm(&s->rng, s->f.long_delay_ppm))
				delay = sim_rng_range(&s->rng, s->f.delay_max,
						      s->f.delay_max * 20 + 40);
		} else if (s->f.slow_heal) {
			/* slower than the core's retry timer (10 ticks) for good */
			delay = sim_rng_range(&s->rng, 12, 30);
		} else {
			delay = sim_rng_range(&s->rng, 1, 3);
		}
		sim_event e = {.time = s->now + delay, .kind = EV_DELIVER,
			       .arg = s->era,
			       .node = to, .from = from,
			       .msg = i == 0 ? msg : sim_msg_clone(&msg->m)};
		ev_push(s, e);
	}
}

/* ------------------------------------------------------------------------ */
/* Replicas.                                                                  */

static void out_reserve(struct sim *s, uint32_t n)
{
	if (n <= s->out_cap)
		return;
	s->out_cap = n * 2;
	s->out = sim_xrealloc(s->out, s->out_cap * sizeof(*s->out));
	s->out_to = sim_xrealloc(s->out_to, s->out_cap);
	s->out_client = sim_xrealloc(s->out_client, s->out_cap * sizeof(bool));
}

static void crash(struct sim *s, uint8_t r, const char *why);
static void step(struct sim *s, uint8_t r, const vsr_event *ev);

static void narrate_change(struct sim *s, uint8_t r, const vsr_replica_info *b,
			   const vsr_replica_info *a)
{
	if (!s->opt.demo)
		return;
	if (a->status == b->status && a->view == b->view)
		return;
	if (a->status == VSR_STATUS_VIEW_CHANGE &&
	    (b->status != VSR_STATUS_VIEW_CHANGE || b->view != a->view))
		narrate(s, "replica %u starts a view change to view %llu "
			"(primary-to-be: replica %u)", r,
			(unsigned long long)a->view, vsr_primary_of(a->view, s->n));
	else if (a->status == VSR_STATUS_NORMAL && a->primary == r)
		narrate(s, "replica %u is now the PRIMARY of view %llu "
			"(log up to op %llu, commit %llu)", r,
			(unsigned long long)a->view, (unsigned long long)a->op,
			(unsigned long long)a->commit);
	else if (a->status == VSR_STATUS_NORMAL)
		narrate(s, "replica %u follows primary %u in view %llu "
			"(commit %llu)", r, a->primary, (unsigned long long)a->view,
			(unsigned long long)a->commit);
	else
		narrate(s, "replica %u is %s in view %llu", r, sname(a->status),
			(unsigned long long)a->view);
}

static void amnesia_cleared(struct sim *s, uint8_t r)
{
	sim_node_replica *nr = &s->r[r];
	nr->amnesiac = false;
	nr->amnesia_normal = false;
	s->stats.amnesia_recovered++;
	if (s->history == 0)
		s->history = nr->info.history;
	else if (nr->info.history != s->history)
		sim_fail(s, "replica %u joined history %016llx, the cluster is in %016llx: "
			 "a second genesis though some replica kept the state", r,
			 (unsigned long long)nr->info.history,
			 (unsigned long long)s->history);
	trace_mix(s, 14, r, nr->incarnation, nr->info.view);
	tracef(s, "r%u   recovered from amnesia: normal in view %llu, durable",
	       r, (unsigned long long)nr->info.view);
}

/* Async checkpoints (docs/simulator.md): after a step, a new pending
 * checkpoint gets its sync, which finishes 1..ckpt_sync_max ticks later
 * (after the one before it); a take that had to wait for the previous sync
 * (vsr_snapckpt syncs it first, as vsrhost's store waits) stalls the
 * replica until that sync would have finished. */
static void ckpt_after_step(struct sim *s, uint8_t r)
{
	sim_node_replica *nr = &s->r[r];
	vsr_snapckpt *ck = &nr->st.ck;
	if (ck->takes == nr->ck_takes)
		return;
	uint64_t waits = ck->waits - nr->ck_waits;
	nr->ck_takes = ck->takes;
	nr->ck_waits = ck->waits;
	uint64_t op = vsr_snapckpt_pending(ck);
	if (!op)
		return;
	s->stats.ckpt_async++;
	/* One sync at a time: this one starts when the one before finished. */
	uint64_t start = nr->ck_due > s->now ? nr->ck_due : s->now;
	if (waits) {
		/* The sync pending before this step finishes at ck_due; one of a
		 * checkpoint taken earlier in this same step took a whole sync. */
		for (uint64_t i = nr->ck_due > s->now ? 1 : 0; i < waits; i++)
			start += sim_rng_range(&s->ckpt_rng, 1, s->f.ckpt_sync_max);
		s->stats.ckpt_waits += waits;
		if (start > s->now && start > nr->busy_until) {
			nr->busy_until = start;
			trace_mix(s, 21, r, start, waits);
			tracef(s, "r%u   checkpoint take waits for the previous sync: busy "
			       "until tick %llu", r, (unsigned long long)start);
		}
	}
	nr->ck_due = start + sim_rng_range(&s->ckpt_rng, 1, s->f.ckpt_sync_max);
	sim_event e = {.time = nr->ck_due, .kind = EV_CKPT_SYNC, .node = r,
		       .inc = nr->incarnation, .arg = ck->takes};
	ev_push(s, e);
	trace_mix(s, 20, r, op, nr->ck_due);
	tracef(s, "r%u   checkpoint %llu taken, durable at tick %llu", r,
	       (unsigned long long)op, (unsigned long long)nr->ck_due);
}

static bool crash_allowed(const struct sim *s, uint8_t r);

/* --sync-fail-ppm: does this sync fail? vsrhost's syncer then stops the
 * replica (exit 74) and marks the `synced` record so that the next start
 * rolls the store back to the checkpoint before (vsrh_store_settle_dir):
 * a crash that loses the pending image. Only during the faults, and only
 * where the one-amnesiac rule lets the replica go down. */
static bool sync_fails(struct sim *s, uint8_t r)
{
	if (!s->f.sync_fail_ppm || !in_fault_phase(s) ||
	    !sim_rng_ppm(&s->store_rng, s->f.sync_fail_ppm))
		return false;
	if (crash_allowed(s, r))
		return true;
	s->stats.amnesia_blocked++;
	return false;
}

/* The sync of checkpoint take `take` finished (unless a crash, or a newer
 * take, came first): the image is durable; the core hears what is. */
static void ckpt_synced(struct sim *s, uint8_t r, uint64_t take)
{
	sim_node_replica *nr = &s->r[r];
	vsr_snapckpt *ck = &nr->st.ck;
	if (take && vsr_snapckpt_pending(ck) && ck->takes == take) {
		uint64_t op = vsr_snapckpt_pending(ck);
		if (sync_fails(s, r)) {
			s->stats.sync_failures++;
			trace_mix(s, 23, r, op, 0);
			tracef(s, "r%u   checkpoint %llu: its sync FAILED", r,
			       (unsigned long long)op);
			if (!(s->opt.bugs & SIM_BUG_SYNC_FAIL_IGNORED)) {
				crash(s, r, "checkpoint sync failed, exit 74");
				return;
			}
			/* The planted host bug: the failure is ignored and the
			 * checkpoint reported durable; the disk never got it (it
			 * stays as volatile as a pending one). */
			nr->ck_claimed = op;
		} else {
			if (vsr_snapckpt_sync(ck) != VSR_OK) {
				sim_fail(s, "simulator: replica %u: checkpoint sync failed", r);
				return;
			}
			trace_mix(s, 22, r, vsr_snapckpt_durable_op(ck), 0);
			tracef(s, "r%u   checkpoint %llu durable", r,
			       (unsigned long long)vsr_snapckpt_durable_op(ck));
		}
	}
	if (s->now < nr->busy_until) {
		/* the host's loop is busy: its callback runs afterwards */
		sim_event e = {.time = nr->busy_until, .kind = EV_CKPT_SYNC, .node = r,
			       .inc = nr->incarnation, .arg = 0};
		ev_push(s, e);
		return;
	}
	uint64_t durable = vsr_snapckpt_durable_op(ck);
	if (nr->ck_claimed && vsr_snapckpt_pending(ck) == nr->ck_claimed)
		durable = nr->ck_claimed; /* --bug sync-fail-ignored */
	vsr_event ev = {.type = VSR_EVENT_CHECKPOINT_DURABLE, .now = s->now,
			.realtime_ns = realtime_ns(s, r),
			.checkpoint_op = durable};
	step(s, r, &ev);
}

/* --fetch-kill-ppm: the process is killed while it fetches a checkpoint.
 * vsrhost builds a fetched checkpoint in store/next/ as its chunks come,
 * syncs it, then renames it over db/ (vsrh_store_ckpt_install); the next
 * start discards a next/ that was not renamed, and finishes a rename cut
 * in half. So a kill leaves either the replica's own store (killed at a
 * chunk: the write of chunk k, drawn per fetch, never happens) or the
 * installed checkpoint, durable, under a superblock that does not name it
 * yet (killed in the install once it is durable, before the core went on).
 * Drawn once per fetch, when its first chunk is written. */
static sim_node_replica *node_of_ck(void *ctx)
{
	return (sim_node_replica *)((char *)ctx - offsetof(sim_node_replica, st.ck));
}

static int kill_ck_write(void *ctx, const vsr_checkpoint *cp, uint64_t offset,
			 const uint8_t *data, uint32_t len)
{
	sim_node_replica *nr = node_of_ck(ctx);
	struct sim *s = nr->sm.sim;
	uint8_t r = nr->sm.replica;
	if (cp->op != nr->fetch_op || cp->digest != nr->fetch_digest) {
		/* A new fetch (or the same one after a restart): draw its kill. */
		nr->fetch_op = cp->op;
		nr->fetch_digest = cp->digest;
		nr->fetch_writes = 0;
		nr->fetch_kill_at = 0;
		nr->install_kill = false;
		if (s->f.fetch_kill_ppm && in_fault_phase(s) &&
		    sim_rng_ppm(&s->store_rng, s->f.fetch_kill_ppm)) {
			uint64_t chunk = nr->cfg.chunk_bytes_max;
			uint64_t chunks = (cp->size + chunk - 1) / chunk;
			if (sim_rng_below(&s->store_rng, 2))
				nr->install_kill = true;
			else
				nr->fetch_kill_at = (uint32_t)sim_rng_range(&s->store_rng, 1, chunks);
		}
	}
	nr->fetch_writes++;
	if (nr->fetch_kill_at && nr->fetch_writes == nr->fetch_kill_at &&
	    in_fault_phase(s) && !nr->kill_why) {
		nr->fetch_kill_at = 0;
		if (crash_allowed(s, r)) {
			s->stats.fetch_kills++;
			s->stats.store_kills_amnesiac += nr->amnesiac;
			trace_mix(s, 24, r, cp->op, offset);
			tracef(s, "r%u   KILLED while fetching checkpoint %llu (chunk at "
			       "offset %llu of %llu)", r, (unsigned long long)cp->op,
			       (unsigned long long)offset, (unsigned long long)cp->size);
			nr->kill_why = "killed while fetching a checkpoint";
			nr->kill_mid_fetch = true;
			return VSR_ENOMEM; /* the write never happened */
		}
		s->stats.amnesia_blocked++;
	}
	return nr->ck_write(ctx, cp, offset, data, len);
}

/* --sync-fail-ppm, the other place a sync ends: a take while the previous
 * checkpoint's sync runs waits for it (vsrhost's store, like vsr_snapckpt),
 * and when that sync fails the process dies inside the take. */
static int fail_ck_take(void *ctx, vsr_checkpoint *cp, const uint8_t *meta, size_t meta_len)
{
	sim_node_replica *nr = node_of_ck(ctx);
	struct sim *s = nr->sm.sim;
	uint8_t r = nr->sm.replica;
	uint64_t op = vsr_snapckpt_pending(&nr->st.ck);
	if (op && nr->in_step && !nr->kill_why && sync_fails(s, r)) {
		s->stats.sync_failures++;
		s->stats.sync_failures_waited++;
		trace_mix(s, 26, r, op, 0);
		tracef(s, "r%u   checkpoint %llu: its sync FAILED while the take of %llu "
		       "waited for it", r, (unsigned long long)op, (unsigned long long)cp->op);
		/* --bug sync-fail-ignored: the failure goes unnoticed, the take
		 * goes on (and the model syncs the image after all) */
		if (!(s->opt.bugs & SIM_BUG_SYNC_FAIL_IGNORED)) {
			nr->kill_why = "checkpoint sync failed while a take waited, exit 74";
			return VSR_ENOMEM;
		}
	}
	return nr->ck_take(ctx, cp, meta, meta_len);
}

static int kill_ck_install(void *ctx, const vsr_checkpoint *cp,
			   vsr_checkpoint_accept accept, void *arg)
{
	sim_node_replica *nr = node_of_ck(ctx);
	struct sim *s = nr->sm.sim;
	uint8_t r = nr->sm.replica;
	int rc = nr->ck_install(ctx, cp, accept, arg);
	if (rc != VSR_OK || !nr->install_kill || cp->op != nr->fetch_op ||
	    !in_fault_phase(s) || nr->kill_why)
		return rc;
	nr->install_kill = false;
	if (!crash_allowed(s, r)) {
		s->stats.amnesia_blocked++;
		return rc;
	}
	s->stats.install_kills++;
	s->stats.store_kills_amnesiac += nr->amnesiac;
	trace_mix(s, 25, r, cp->op, 0);
	tracef(s, "r%u   KILLED in the install of checkpoint %llu, once durable", r,
	       (unsigned long long)cp->op);
	nr->kill_why = "killed in a checkpoint install";
	return rc;
}

/* One call into replica r, with everything that must happen around it. */
static void step(struct sim *s, uint8_t r, const vsr_event *ev)
{
	sim_node_replica *nr = &s->r[r];
	vsr_replica_info before = nr->info;
	vsr_actions acts = {0};
	uint64_t checkpoints = vsr_replica_stats_get(nr->core)->checkpoints;
	nr->in_step = true;
	vsr_replica_step(nr->core, ev, &acts);
	nr->in_step = false;
	if (nr->kill_why) {
		/* Killed inside a callback of this step (--fetch-kill-ppm):
		 * nothing of the step reaches the network or the disk. */
		const char *why = nr->kill_why;
		bool mid_fetch = nr->kill_mid_fetch;
		nr->kill_why = NULL;
		nr->kill_mid_fetch = false;
		crash(s, r, why);
		if (mid_fetch && (s->opt.bugs & SIM_BUG_FETCH_REPLACES_STORE)) {
			/* The planted host bug: the next start takes the half-built
			 * store/next/ for an install cut between its renames (as
			 * vsrhost once did), so the store it had is gone and the
			 * one it opens holds no checkpoint. */
			vsr_snapckpt_forget(&nr->st.ck);
			tracef(s, "r%u   the half-fetched store REPLACES its own", r);
		}
		return;
	}
	if (s->f.long_step_ppm && in_fault_phase(s) &&
	    vsr_replica_stats_get(nr->core)->checkpoints != checkpoints &&
	    sim_rng_ppm(&s->mode_rng, s->f.long_step_ppm)) {
		/* The checkpoint took a while (a large snapshot): nothing reaches
		 * this core until busy_until, and then its timers run first. */
		nr->busy_until = s->now + sim_rng_range(&s->mode_rng, 20, s->f.long_step_max);
		s->stats.long_steps++;
		trace_mix(s, 15, r, nr->busy_until, 0);
		tracef(s, "r%u   long step: busy until tick %llu", r,
		       (unsigned long long)nr->busy_until);
	}
	ckpt_after_step(s, r);
	nr->more_pending = ev->more;
	nr->deadline = acts.deadline;
	s->stats.steps++;

	/* Copy actions out first: their pointers die at the next call. */
	out_reserve(s, acts.count);
	uint32_t nout = 0;
	bool voted = false, acked = false;
	for (uint32_t i = 0; i < acts.count; i++) {
		const vsr_action *a = &acts.items[i];
		switch (a->type) {
		case VSR_ACTION_SEND:
			if (a->to >= s->n || a->to == r) {
				sim_fail(s, "replica %u sent %s to invalid replica %u", r,
					 mtype(a->message.type), a->to);
				break;
			}
			s->out[nout] = sim_msg_clone(&a->message);
			s->out_to[nout] = a->to;
			s->out_client[nout] = false;
			nout++;
			if (a->message.type == VSR_MSG_START_VIEW_CHANGE ||
			    a->message.type == VSR_MSG_DO_VIEW_CHANGE ||
			    a->message.type == VSR_MSG_START_VIEW)
				voted = true;
			if (a->message.type == VSR_MSG_PREPARE_OK)
				acked = true;
			break;
		case VSR_ACTION_REPLY:
			if (a->conn == 0 || a->conn > s->clients_n) {
				sim_fail(s, "replica %u replied on unknown connection %llu",
					 r, (unsigned long long)a->conn);
				break;
			}
			s->out[nout] = sim_msg_clone(&a->message);
			s->out_to[nout] = (uint8_t)(s->n + a->conn - 1);
			s->out_client[nout] = true;
			nout++;
			break;
		case VSR_ACTION_QUERY: {
			if (a->conn == 0 || a->conn > s->clients_n) {
				sim_fail(s, "replica %u answered a query on unknown connection %llu",
					 r, (unsigned long long)a->conn);
				break;
			}
			/* The host's part: run the query on the state as it is now. */
			vsr_buf body = {0};
			vsr_message m = a->message;
			m.status = (uint8_t)sim_sm_query(&nr->sm, a->query_op, a->query_op_len, &body);
			m.body = body.data;
			m.body_len = (uint32_t)body.len;
			s->out[nout] = sim_msg_clone(&m);
			vsr_buf_free(&body);
			s->out_to[nout] = (uint8_t)(s->n + a->conn - 1);
			s->out_client[nout] = true;
			nout++;
			s->stats.reads[m.read_mode < VSR_READ_MODE_COUNT ? m.read_mode : 0]++;
			break;
		}
		case VSR_ACTION_PERSIST: {
			uint64_t done = s->now + 1;
			if (in_fault_phase(s) || s->f.persist_max > 1)
				done = s->now + sim_rng_range(&s->rng, 1, s->f.persist_max);
			if (!sim_storage_push(&nr->st, &a->persist, done)) {
				sim_fail(s, "replica %u: more than %u persists pending", r,
					 SIM_PERSISTS_MAX);
				break;
			}
			sim_event e = {.time = nr->st.last_done_at, .kind = EV_PERSISTED,
				       .node = r, .inc = nr->incarnation,
				       .arg = a->persist.id};
			ev_push(s, e);
			trace_mix(s, 2, r, a->persist.id, a->persist.entry_count);
			tracef(s, "r%u   persist #%llu: %u entries%s, superblock view %llu "
			       "log_view %llu commit %llu", r,
			       (unsigned long long)a->persist.id, a->persist.entry_count,
			       a->persist.has_truncate ? ", truncate" : "",
			       (unsigned long long)a->persist.superblock.view,
			       (unsigned long long)a->persist.superblock.log_view,
			       (unsigned long long)a->persist.superblock.commit);
			break;
		}
		default:
			sim_fail(s, "replica %u produced unknown action %u", r, a->type);
			break;
		}
	}

	vsr_replica_info after;
	vsr_replica_info_get(nr->core, &after);
	/* The state machine's chain at each executed op, for the read checks. */
	{
		bool inserted;
		sim_map_put(&s->g.chain_at, after.executed + 1, nr->sm.chain, &inserted);
	}
	for (uint32_t i = 0; i < nout && !s->failed; i++) {
		if (!s->out_client[i])
			sim_check_sent(s, &s->g, r, nr->core, &before, &after,
				       &s->out[i]->m);
		else
			sim_check_reply(s, &s->g, r, nr->core, &s->out[i]->m);
	}
	if (!s->failed && ev->type == VSR_EVENT_MESSAGE)
		sim_check_gating(s, r, ev->message->type, &before, &after);
	if (!s->failed)
		sim_check_after_step(s, &s->g, r, nr->core, &before, &after);
	if (after.view > before.view)
		s->stats.view_changes++;
	narrate_change(s, r, &before, &after);
	if (after.status != before.status || after.view != before.view)
		tracef(s, "r%u   now %s view %llu log_view %llu op %llu commit %llu", r,
		       sname(after.status), (unsigned long long)after.view,
		       (unsigned long long)after.log_view,
		       (unsigned long long)after.op, (unsigned long long)after.commit);
	{
		vsr_divergence dv;
		bool diverged = vsr_replica_diverged(nr->core, &dv);
		if (diverged && !nr->diverged)
			tracef(s, "r%u   DIVERGED at checkpoint %llu (ours %016llx, the "
				  "quorum's %016llx)%s", r, (unsigned long long)dv.op,
			       (unsigned long long)dv.digest,
			       (unsigned long long)dv.quorum_digest,
			       dv.as_primary ? ", found as primary" : "");
		else if (!diverged && nr->diverged)
			tracef(s, "r%u   no longer diverged", r);
		nr->diverged = diverged;
	}
	nr->info = after;
	if (after.history != 0 && !nr->amnesiac && !s->failed) {
		/* A member whose joining is durable: its history is the one. */
		if (s->history == 0)
			s->history = after.history;
		else if (after.history != s->history)
			sim_fail(s, "replica %u is in history %016llx, the cluster in %016llx: "
				 "a second genesis though some replica kept the state",
				 r, (unsigned long long)after.history,
				 (unsigned long long)s->history);
	}
	if (nr->amnesiac && !nr->amnesia_normal &&
	    after.status == VSR_STATUS_NORMAL) {
		/* Back from amnesia once what it wrote by now is durable. */
		nr->amnesia_normal = true;
		if (nr->st.q_count == 0)
			amnesia_cleared(s, r);
		else
			nr->amnesia_wait_id = nr->st.q[(nr->st.q_head + nr->st.q_count - 1) %
						       nr->st.q_cap].p.id;
	}

	for (uint32_t i = 0; i < nout; i++) {
		const vsr_message *m = &s->out[i]->m;
		trace_mix(s, 3, r, s->out_to[i],
			  sim_hash_u64(m->type ^ (m->view << 8), m->op ^ (m->commit << 20)));
		if (s->opt.trace) {
			if (s->out_client[i])
				tracef(s, "r%u   -> client %u REPLY status %u view %llu session "
				       "%llu request %llu op %llu", r, s->out_to[i] - s->n,
				       m->status, (unsigned long long)m->view,
				       (unsigned long long)m->request.session,
				       (unsigned long long)m->request.request,
				       (unsigned long long)m->reply_op);
			else if (m->checkpoint_op || m->type == VSR_MSG_GET_CHECKPOINT ||
				 m->type == VSR_MSG_RECOVERY ||
				 m->type == VSR_MSG_RECOVERY_RESPONSE ||
				 m->type == VSR_MSG_CHECKPOINT_CHUNK)
				tracef(s, "r%u   -> r%u %s view %llu log_view %llu op %llu "
				       "commit %llu entries %u checkpoint %llu size %llu "
				       "offset %llu bytes %u nonce %llx", r, s->out_to[i],
				       mtype(m->type), (unsigned long long)m->view,
				       (unsigned long long)m->log_view,
				       (unsigned long long)m->op,
				       (unsigned long long)m->commit, m->entry_count,
				       (unsigned long long)m->checkpoint_op,
				       (unsigned long long)m->checkpoint_size,
				       (unsigned long long)m->offset, m->body_len,
				       (unsigned long long)m->nonce);
			else if (m->type == VSR_MSG_PREPARE && m->entry_count == 1)
				tracef(s, "r%u   -> r%u %s view %llu op %llu commit %llu "
				       "entry %016llx parent %016llx timestamp %llu",
				       r, s->out_to[i], mtype(m->type),
				       (unsigned long long)m->view,
				       (unsigned long long)m->op,
				       (unsigned long long)m->commit,
				       (unsigned long long)m->entries[0].checksum,
				       (unsigned long long)m->entries[0].parent,
				       (unsigned long long)m->entries[0].timestamp);
			else
				tracef(s, "r%u   -> r%u %s view %llu log_view %llu op %llu "
				       "commit %llu entries %u", r, s->out_to[i],
				       mtype(m->type), (unsigned long long)m->view,
				       (unsigned long long)m->log_view,
				       (unsigned long long)m->op,
				       (unsigned long long)m->commit, m->entry_count);
		}
		net_send(s, r, s->out_to[i], s->out[i]);
	}

	/* Aim crashes at the promise window: a vote just went out, most often
	 * while a persist is still pending. Correct cores have made the vote
	 * durable already; one that has not loses the promise here (hole 8.1). */
	/* --ack-crashes: the same right after a PREPARE_OK while a write is
	 * pending (the new view's superblock, say): an ack must promise only
	 * what is durable, log_view included. */
	if (acked && !voted && in_fault_phase(s) && s->f.ack_crash_ppm &&
	    nr->st.q_count > 0 && sim_rng_ppm(&s->mode_rng, s->f.ack_crash_ppm)) {
		sim_event e = {.time = s->now + sim_rng_below(&s->mode_rng, 2),
			       .kind = EV_CRASH, .node = r, .inc = nr->incarnation};
		ev_push(s, e);
	}
	if (voted && in_fault_phase(s) &&
	    sim_rng_ppm(&s->rng, nr->st.q_count > 0 ? s->f.window_crash_ppm
						     : s->f.window_crash_ppm / 4)) {
		sim_event e = {.time = s->now + sim_rng_below(&s->rng, 2),
			       .kind = EV_CRASH, .node = r, .inc = nr->incarnation};
		ev_push(s, e);
	}
}

static void replica_config(struct sim *s, uint8_t r, vsr_config *c)
{
	*c = s->r[r].cfg;
	c->seed = sim_hash_u64(sim_hash_u64(s->opt.seed, r), s->r[r].incarnation);
	/* What vsrhost draws at random for every process start. */
	c->genesis_history = sim_hash_u64(c->seed, 0x6E65736973ull) | 1;
}

/* The one-amnesiac rule (docs/simulator.md): the core promises safety for a
 * single replica that lost its disk at a time, so a disk is wiped only when
 * no other replica is amnesiac and at least a quorum of the others is up.
 * --minority-amnesia widens it to what durable mode claims (protocol.md 5:
 * wiping a minority of disks loses nothing committed): up to f replicas
 * amnesiac at once, with a quorum of the others up and not amnesiac. */
static bool amnesia_allowed(const struct sim *s, uint8_t r)
{
	uint8_t up = 0, amnesiac = 0;
	for (uint8_t j = 0; j < s->n; j++) {
		if (j == r)
			continue;
		if (s->r[j].amnesiac)
			amnesiac++;
		else if (s->r[j].up)
			up++;
	}
	if (s->n == 1)
		return s->opt.single_amnesia;
	uint8_t most = s->opt.minority_amnesia ? (uint8_t)((s->n - 1) / 2) : 1;
	return amnesiac + 1u <= most && up >= vsr_quorum(s->n);
}

/* Does a restart of r wipe its disk? A replica still amnesiac must: what its
 * current incarnation wrote so far is not a recovered state. */
static bool restart_wipes(struct sim *s, uint8_t r)
{
	if (s->r[r].amnesiac)
		return true;
	if (s->f.amnesia_ppm == 0 || (s->n < 3 && !(s->n == 1 && s->opt.single_amnesia)))
		return false;
	if (!sim_rng_ppm(&s->amnesia_rng, s->f.amnesia_ppm))
		return false;
	if (amnesia_allowed(s, r))
		return true;
	s->stats.amnesia_blocked++;
	return false;
}

static void new_era(struct sim *s);

static void replica_start(struct sim *s, uint8_t r, bool fresh)
{
	sim_node_replica *nr = &s->r[r];
	vsr_durable d;
	nr->up_since = s->now;
	bool wiped = !fresh && restart_wipes(s, r);
	const vsr_durable *dp = NULL;
	if (wiped && s->n == 1) {
		/* A lone replica in memory mode: the whole cluster's state is
		 * gone, so its restart is a genesis (--single-amnesia). */
		tracef(s, "---   the only replica lost its state: a new history (era %u)",
		       s->era + 1);
		new_era(s);
	}
	if (wiped) {
		/* memory mode: the host hands over nothing (the replica starts
		 * unjoined). The hidden variant (teeth) is a host that keeps a
		 * history id across the wipe, as a surviving marker file would:
		 * the core then takes an empty disk for an intact one. */
		sim_storage_free(&nr->st);
		sim_storage_init(&nr->st, nr->cfg.cluster);
		memset(&d, 0, sizeof(d));
		d.superblock.cluster = nr->cfg.cluster;
		if (s->opt.amnesia_hidden) {
			d.superblock.history = nr->info.history;
			dp = &d;
		}
		sim_check_amnesia_restart(&s->g, r);
		if (!nr->amnesiac)
			s->stats.amnesia_restarts++;
		for (uint8_t j = 0; j < s->n && !nr->amnesiac; j++)
			if (j != r && s->r[j].amnesiac) {
				s->stats.amnesia_beside++;
				break;
			}
		nr->amnesiac = true;
		nr->amnesia_normal = false;
		nr->amnesia_wait_id = 0;
	} else if (!fresh) {
		sim_storage_load(&nr->st, nr->cfg.cluster, &d);
		sim_check_restart(s, &s->g, r, &nr->st, &d);
		dp = &d;
		/* A superblock without a history (never joined, or written while
		 * catching up) starts the replica unjoined: it holds nothing it
		 * can vouch for, so the one-amnesiac rule counts it. */
		if (d.superblock.history == 0) {
			nr->amnesiac = true;
			nr->amnesia_normal = false;
			nr->amnesia_wait_id = 0;
		}
	} else {
		/* A first start: unjoined, like every replica of a new cluster,
		 * until genesis makes it a member. */
		nr->amnesiac = true;
		nr->amnesia_normal = false;
		nr->amnesia_wait_id = 0;
	}
	sim_sm_init(&nr->sm, s, r);
	sim_sm_iface(&nr->sm, &nr->st.ck, &nr->smi);
	nr->ck_write = nr->smi.checkpoint_write;
	nr->ck_install = nr->smi.checkpoint_install;
	nr->ck_take = nr->smi.checkpoint_take;
	nr->smi.checkpoint_take = fail_ck_take;
	nr->smi.checkpoint_write = kill_ck_write;
	nr->smi.checkpoint_install = kill_ck_install;
	nr->kill_why = NULL;
	nr->kill_mid_fetch = false;
	nr->fetch_op = nr->fetch_digest = 0;
	nr->fetch_writes = nr->fetch_kill_at = 0;
	nr->install_kill = false;
	nr->ck_claimed = 0;
	nr->st.ck.async = (s->f.async_mask >> r & 1) != 0;
	nr->ck_takes = nr->st.ck.takes;
	nr->ck_waits = nr->st.ck.waits;
	nr->ck_due = 0;
	if (dp != NULL && vsr_snapckpt_durable_op(&nr->st.ck) > dp->superblock.checkpoint_op) {
		s->stats.ckpt_newer++;
		/* The log on the disk goes on past that checkpoint on another
		 * chain (an install of a fetched checkpoint that the superblock
		 * does not name yet): the core must cut it there. */
		const vsr_snapckpt_image *im = vsr_snapckpt_current(&nr->st.ck);
		for (uint32_t i = 0; im != NULL && i < dp->entry_count; i++)
			if (dp->entries[i].op == im->cp.op + 1) {
				s->stats.ckpt_other_chain += dp->entries[i].parent != im->cp.checksum;
				break;
			}
	}
	vsr_config cfg;
	replica_config(s, r, &cfg);
	int rc = vsr_replica_create(&nr->core, &cfg, &nr->smi, dp, s->now);
	nr->sm.started = true;
	if (rc != VSR_OK) {
		nr->core = NULL;
		sim_fail(s, "replica %u failed to %s: %s", r,
			 fresh ? "start" : "restart", vsr_strerror(rc));
		return;
	}
	ckpt_after_step(s, r); /* the replay may have taken checkpoints */
	nr->up = true;
	nr->diverged = false;
	nr->deadline = 0; /* create() gives no deadline: tick at once */
	vsr_replica_info_get(nr->core, &nr->info);
	vsr_replica_info none = {0};
	sim_check_after_step(s, &s->g, r, nr->core, &none, &nr->info);
	trace_mix(s, 4, r, nr->incarnation, nr->info.view);
	if (wiped) {
		trace_mix(s, 13, r, nr->incarnation, 0);
		tracef(s, "r%u   RESTART incarnation %u with a WIPED disk (unjoined), %s",
		       r, nr->incarnation, sname(nr->info.status));
		narrate(s, "replica %u restarts with its disk wiped and is %s", r,
			sname(nr->info.status));
	} else if (!fresh) {
		tracef(s, "r%u   RESTART incarnation %u: view %llu log_view %llu "
		       "commit %llu, %u entries on disk after checkpoint %llu, %s", r,
		       nr->incarnation, (unsigned long long)d.superblock.view,
		       (unsigned long long)d.superblock.log_view,
		       (unsigned long long)d.superblock.commit, d.entry_count,
		       (unsigned long long)d.superblock.checkpoint_op,
		       sname(nr->info.status));
		narrate(s, "replica %u restarts from its disk (view %llu, %u log "
			"entries) and is %s", r,
			(unsigned long long)d.superblock.view, d.entry_count,
			sname(nr->info.status));
	}
}

/* Adds a core's own counters to the run's coverage figures. */
static void harvest_stats(struct sim *s, const vsr_replica *core)
{
	const vsr_replica_stats *st = vsr_replica_stats_get(core);
	s->stats.state_transfers += st->state_transfers;
	s->stats.checkpoints += st->checkpoints;
	s->stats.evictions += st->sessions_evicted;
	s->stats.deduplicated += st->requests_deduplicated;
	s->stats.divergences += st->divergences;
	s->stats.divergence_repairs += st->divergence_repairs;
	s->stats.divergent_peers += st->divergent_peers;
	s->stats.divergence_abdications += st->divergence_abdications;
	for (int g = 0; g < VSR_GUARD_COUNT; g++)
		s->stats.guards[g] += st->guards[g];
}

/* While a replica is amnesiac, down and amnesiac replicas together stay
 * fewer than a quorum: another replica crashes only if that still holds. */
static bool crash_allowed(const struct sim *s, uint8_t r)
{
	uint8_t out = 1; /* r itself, once crashed */
	bool amnesia = false;
	for (uint8_t j = 0; j < s->n; j++) {
		if (j == r)
			continue;
		if (s->r[j].amnesiac)
			amnesia = true;
		if (s->r[j].amnesiac || !s->r[j].up)
			out++;
	}
	return !amnesia || out < vsr_quorum(s->n);
}

static void crash(struct sim *s, uint8_t r, const char *why)
{
	sim_node_replica *nr = &s->r[r];
	if (!nr->up)
		return;
	if (!crash_allowed(s, r)) {
		s->stats.amnesia_blocked++;
		return;
	}
	harvest_stats(s, nr->core);
	bool torn = sim_rng_ppm(&s->rng, s->f.torn_ppm);
	bool corrupt = !torn && sim_rng_ppm(&s->rng, s->f.corrupt_ppm);
	uint32_t pending = nr->st.q_count;
	uint64_t ckpt_lost = vsr_snapckpt_pending(&nr->st.ck);
	const char *what = sim_storage_crash(&nr->st, &s->rng, torn, corrupt);
	if (ckpt_lost) {
		s->stats.ckpt_lost++;
		tracef(s, "r%u   checkpoint %llu lost: its sync had not finished", r,
		       (unsigned long long)ckpt_lost);
	}
	if (!strcmp(what, "torn"))
		s->stats.torn_writes++;
	else if (!strcmp(what, "corrupt"))
		s->stats.corrupt_writes++;
	vsr_replica_destroy(nr->core);
	nr->core = NULL;
	nr->up = false;
	nr->more_pending = false;
	nr->incarnation++;
	nr->crashes++;
	nr->amnesia_normal = false; /* its pending writes died with it */
	nr->busy_until = 0;
	s->stats.crashes++;
	sim_check_crash(&s->g, r);
	trace_mix(s, 5, r, nr->incarnation, pending);
	tracef(s, "r%u   CRASH (%s): %u persists lost, disk %s", r, why, pending,
	       what);
	narrate(s, "replica %u crashes (%s)", r, why);
	uint64_t at = s->now + 1;
	if (in_fault_phase(s))
		at = s->now + sim_rng_range(&s->rng, 1, s->f.restart_max);
	sim_event e = {.time = at, .kind = EV_RESTART, .node = r};
	ev_push(s, e);
}

/* ------------------------------------------------------------------------ */
/* Clients.                                                                   */

static void client_send(struct sim *s, uint8_t ci)
{
	sim_client *c = &s->c[ci];
	vsr_message m = {0};
	m.type = VSR_MSG_REQUEST;
	m.cluster = s->r[0].cfg.cluster;
	m.view = c->view;
	if (c->reading) {
		m.request.session = c->session;
		m.request.request = c->read_number;
		m.request.kind = VSR_REQUEST_QUERY;
		m.read_mode = c->read_mode;
		m.request.op = c->op;
		m.request.op_len = SIM_OP_BYTES;
	} else if (c->registering) {
		m.request.session = 0;
		m.request.request = c->nonce;
		m.request.kind = VSR_REQUEST_REGISTER;
	} else {
		m.request.session = c->session;
		m.history = c->history;
		m.request.request = c->request;
		m.request.kind = VSR_REQUEST_OP;
		m.request.op = c->op;
		m.request.op_len = SIM_OP_BYTES;
	}
	c->attempts++;
	/* Back off on repeated timeouts, with jitter from the run's generator,
	 * up to 4x (1.6 s): the client library retries every attempt_ms
	 * (500 ms) without doubling, and a client that waited 6 s between
	 * attempts would hide a working cluster from the liveness checks. */
	uint32_t base = 40u << (c->attempts > 3 ? 2 : c->attempts - 1);
	c->retry_at = s->now + base + sim_rng_below(&s->rng, 20);
	trace_mix(s, 6, ci, c->target, m.request.request);
	tracef(s, "c%u   -> r%u REQUEST %s view %llu session %llu request %llu "
	       "(attempt %u)", ci, c->target,
	       c->reading ? vsr_read_mode_name(c->read_mode) : c->registering ? "REGISTER" : "OP",
	       (unsigned long long)c->view,
	       (unsigned long long)m.request.session,
	       (unsigned long long)m.request.request, c->attempts);
	net_send(s, (uint8_t)(s->n + ci), c->target, sim_msg_clone(&m));
}

static bool client_may_issue(const struct sim *s, const sim_client *c)
{
	if (!s->healed)
		return true;
	return c->done_after_heal < 2;
}

static void client_tick(struct sim *s, uint8_t ci)
{
	sim_client *c = &s->c[ci];
	if (c->busy) {
		if (s->now >= c->retry_at) {
			/* a timeout means the target may be down or partitioned:
			 * try the next replica; a hint names the one to ask */
			if (!c->redirected)
				c->target = (uint8_t)((c->target + 1) % s->n);
			c->redirected = false;
			client_send(s, ci);
		}
		return;
	}
	if (!client_may_issue(s, c) || s->now < c->retry_at)
		return;
	c->busy = true;
	c->attempts = 0;
	c->issued_at = s->now;
	c->reading = s->opt.reads && sim_rng_below(&s->read_rng, 3) == 0;
	if (c->reading) {
		/* A query of any mode; what every op committed by now must show. */
		c->read_number++;
		c->read_mode = (uint8_t)sim_rng_below(&s->read_rng, VSR_READ_MODE_COUNT);
		c->read_key = (uint8_t)sim_rng_below(&s->read_rng, SIM_SM_KEYS);
		c->read_floor = s->g.canon_max;
		c->read_era = s->era;
		sim_op_encode(c->op, SIM_OP_GET, c->read_key, 0);
		if (c->read_mode == VSR_READ_STALE)
			c->target = (uint8_t)sim_rng_below(&s->read_rng, s->n);
	} else if (c->session == 0) {
		c->registering = true;
		c->nonce = sim_rng_next(&s->rng) | 1;
	} else {
		c->registering = false;
		c->request++;
		uint8_t kind = (uint8_t)sim_rng_below(&s->rng, SIM_OP_KINDS);
		uint8_t key = (uint8_t)sim_rng_below(&s->rng, SIM_SM_KEYS);
		sim_op_encode(c->op, kind, key, sim_rng_below(&s->rng, 1000));
		if (s->f.big_reply_ppm && sim_rng_ppm(&s->mode_rng, s->f.big_reply_ppm)) {
			/* a reply longer than any operation may be */
			sim_op_encode(c->op, SIM_OP_BIG, key, VSR_OP_BYTES_MAX + 4096);
			s->stats.big_replies++;
		}
	}
	client_send(s, ci);
}

static void client_done(struct sim *s, uint8_t ci)
{
	sim_client *c = &s->c[ci];
	c->busy = false;
	c->done++;
	s->last_completion = s->now;
	if (s->healed)
		c->done_after_heal++;
	/* think time, so the pipeline sees both bursts and idle gaps */
	c->retry_at = s->now + sim_rng_below(&s->rng, 8);
}

/* A query's answer (docs/simulator.md "Reads"). Linearizable and lease
 * answers must reflect every op committed anywhere before the query was
 * first sent (its floor); every answer must be the state of the canonical
 * committed history at the op it names. */
static void client_read_reply(struct sim *s, uint8_t ci, const vsr_message *m)
{
	sim_client *c = &s->c[ci];
	if (!c->busy || !c->reading || m->request.request != c->read_number ||
	    m->request.session != c->session)
		return; /* a late answer to an earlier query: harmless */
	switch (m->status) {
	case VSR_REPLY_NOT_PRIMARY:
		if (c->read_mode == VSR_READ_STALE || m->view < c->view) {
			c->target = (uint8_t)((c->target + 1) % s->n);
		} else {
			c->target = vsr_primary_of(m->view, s->n);
			c->view = m->view;
		}
		c->redirected = true;
		c->retry_at = s->now + 2;
		return;
	case VSR_REPLY_BUSY:
		c->redirected = true;
		c->retry_at = s->now + 10;
		return;
	case VSR_REPLY_OK:
		break;
	default:
		sim_fail(s, "client %u: query answered with status %u", ci, m->status);
		return;
	}
	if (m->body_len != 16) {
		sim_fail(s, "client %u: query answer of %u bytes", ci, m->body_len);
		return;
	}
	uint64_t value = 0, chain = 0;
	for (int i = 0; i < 8; i++) {
		value |= (uint64_t)m->body[i] << (8 * i);
		chain |= (uint64_t)m->body[8 + i] << (8 * i);
	}
	(void)value;
	bool strong = c->read_mode != VSR_READ_STALE;
	if (strong && m->read_mode == VSR_READ_STALE) {
		sim_fail(s, "read: client %u asked a %s read and got a stale one", ci,
			 vsr_read_mode_name(c->read_mode));
		return;
	}
	if (c->read_era == s->era) {
		if (strong && m->reply_op < c->read_floor) {
			sim_fail(s,
				 "read (%s): replica %u answered client %u at op %llu, but op %llu "
				 "was committed before the read was sent (tick %llu)",
				 vsr_read_mode_name(m->read_mode), m->replica, ci,
				 (unsigned long long)m->reply_op, (unsigned long long)c->read_floor,
				 (unsigned long long)c->issued_at);
			return;
		}
		const uint64_t *want = sim_map_get(&s->g.chain_at, m->reply_op + 1);
		if (want == NULL || *want != chain) {
			sim_fail(s,
				 "read (%s): replica %u answered client %u with a state at op %llu "
				 "that is not the committed history's there",
				 vsr_read_mode_name(m->read_mode), m->replica, ci,
				 (unsigned long long)m->reply_op);
			return;
		}
	}
	s->stats.reads_checked++;
	tracef(s, "c%u   %s read answered at op %llu (floor %llu) after %llu ticks", ci,
	       vsr_read_mode_name(m->read_mode), (unsigned long long)m->reply_op,
	       (unsigned long long)c->read_floor, (unsigned long long)(s->now - c->issued_at));
	c->reading = false;
	c->busy = false;
	s->last_completion = s->now;
	c->retry_at = s->now + sim_rng_below(&s->read_rng, 8);
}

static void client_receive(struct sim *s, uint8_t ci, uint8_t from, const vsr_message *m)
{
	sim_client *c = &s->c[ci];
	if (m->type != VSR_MSG_REPLY)
		return;
	if (m->view > c->view)
		c->view = m->view;
	if (m->request.kind == VSR_REQUEST_QUERY) {
		client_read_reply(s, ci, m);
		return;
	}
	/* A late reply to an earlier request must repeat the stored answer. */
	if (!c->registering && m->request.session == c->last_session &&
	    m->request.request == c->last_request && c->last_request != 0 &&
	    (m->status == VSR_REPLY_OK || m->status == VSR_REPLY_ERROR)) {
		uint64_t h = sim_hash_bytes(m->status, m->body, m->body_len);
		if (m->reply_op != c->last_reply_op || h != c->last_reply_hash)
			sim_fail(s,
				 "at-most-once (12.10): client %u got two different replies "
				 "for session %llu request %llu (ops %llu and %llu)",
				 ci, (unsigned long long)m->request.session,
				 (unsigned long long)m->request.request,
				 (unsigned long long)c->last_reply_op,
				 (unsigned long long)m->reply_op);
		return;
	}
	if (!c->busy || c->reading)
		return;
	bool match = c->registering
			     ? m->request.request == c->nonce
			     : m->request.session == c->session &&
				       m->request.request == c->request;
	if (!match)
		return;
	switch (m->status) {
	case VSR_REPLY_NOT_PRIMARY:
		if (m->view >= c->view && vsr_primary_of(m->view, s->n) == from) {
			/* The replica that should lead is not ready (a view
			 * change in progress, or it abdicated): as the client
			 * library does, wait, then ask the next replica, rather
			 * than asking it again and again. */
			c->view = m->view;
			c->target = (uint8_t)((from + 1) % s->n);
			c->redirected = true;
			c->retry_at = s->now + 10;
			return;
		}
		if (m->view >= c->view) {
			c->target = vsr_primary_of(m->view, s->n);
			c->view = m->view;
		} else {
			/* A hint older than what we heard: the newer view may
			 * never have started (a replica crashed before its vote
			 * was durable), so do not trust either; try the next. */
			c->target = (uint8_t)((c->target + 1) % s->n);
		}
		c->redirected = true;
		c->retry_at = s->now + 2;
		return;
	case VSR_REPLY_BUSY:
		c->redirected = true;
		c->retry_at = s->now + 10;
		return;
	case VSR_REPLY_HISTORY:
		/* The session belongs to an earlier history (the cluster was
		 * formatted anew): a definite answer; register in the new one. */
	case VSR_REPLY_EVICTED:
		/* The session is gone; the request's fate is unknown to us, so
		 * open a new session and move on (its number starts again). */
		tracef(s, "c%u   session %llu evicted", ci,
		       (unsigned long long)c->session);
		c->session = 0;
		c->request = 0;
		c->last_request = 0;
		client_done(s, ci);
		return;
	case VSR_REPLY_OK:
	case VSR_REPLY_ERROR:
		break;
	default:
		sim_fail(s, "client %u got a reply with unknown status %u", ci,
			 m->status);
		return;
	}
	if (c->registering) {
		if (m->status != VSR_REPLY_OK || m->request.session == 0) {
			sim_fail(s, "client %u: REGISTER answered without a session", ci);
			return;
		}
		c->session = m->request.session;
		c->session_history = s->era;
		c->history = m->history;
		c->request = 0;
		c->registering = false;
		s->last_completion = s->now;
		tracef(s, "c%u   registered session %llu", ci,
		       (unsigned long long)c->session);
		c->busy = false;
		c->retry_at = s->now;
		return;
	}
	if (c->session_history != s->era && m->status == VSR_REPLY_OK)
		sim_fail(s,
			 "history (operator fresh): client %u's session %llu of era %u "
			 "was served in era %u (request %llu, op %llu): two clients in "
			 "one session",
			 ci, (unsigned long long)c->session, c->session_history, s->era,
			 (unsigned long long)c->request, (unsigned long long)m->reply_op);
	c->last_session = c->session;
	c->last_request = c->request;
	c->last_reply_op = m->reply_op;
	c->last_reply_hash = sim_hash_bytes(m->status, m->body, m->body_len);
	c->last_status = m->status;
	tracef(s, "c%u   reply for request %llu: op %llu after %llu ticks", ci,
	       (unsigned long long)c->request, (unsigned long long)m->reply_op,
	       (unsigned long long)(s->now - c->issued_at));
	client_done(s, ci);
}

/* ------------------------------------------------------------------------ */
/* Faults.                                                                    */

static int believed_primary(const struct sim *s)
{
	int best = -1;
	uint64_t view = 0;
	for (uint8_t r = 0; r < s->n; r++) {
		const sim_node_replica *nr = &s->r[r];
		if (!nr->up || nr->info.status != VSR_STATUS_NORMAL ||
		    nr->info.primary != r)
			continue;
		if (best < 0 || nr->info.view > view) {
			best = r;
			view = nr->info.view;
		}
	}
	return best;
}

static void partition_heal(struct sim *s)
{
	memset(s->cut, 0, sizeof(s->cut));
	s->partitioned = false;
}

static void partition_start(struct sim *s, int kind, int victim)
{
	partition_heal(s);
	uint8_t n = s->n;
	const char *what = "";
	if (kind == 0) {
		/* symmetric: a random side A against the rest */
		uint32_t mask = 0;
		while (mask == 0 || mask == (1u << n) - 1)
			mask = (uint32_t)sim_rng_below(&s->rng, 1u << n);
		for (uint8_t a = 0; a < n; a++)
			for (uint8_t b = 0; b < n; b++)
				if (((mask >> a) & 1) != ((mask >> b) & 1))
					s->cut[a][b] = true;
		what = "symmetric split";
	} else if (kind == 1) {
		/* asymmetric: a few one-way links cut */
		uint32_t links = (uint32_t)sim_rng_range(&s->rng, 1, n);
		for (uint32_t i = 0; i < links; i++) {
			uint8_t a = (uint8_t)sim_rng_below(&s->rng, n);
			uint8_t b = (uint8_t)sim_rng_below(&s->rng, n);
			if (a != b)
				s->cut[a][b] = true;
		}
		what = "one-way cuts";
	} else {
		int p = victim >= 0 ? victim : believed_primary(s);
		if (p < 0)
			p = (int)sim_rng_below(&s->rng, n);
		for (uint8_t b = 0; b < n; b++) {
			if (b == p)
				continue;
			s->cut[p][b] = true;
			s->cut[b][p] = true;
		}
		what = "primary isolated";
	}
	s->stats.partitions++;
	s->partition_id++;
	s->partitioned = true;
	trace_mix(s, 7, (uint64_t)kind, s->partition_id, 0);
	if (s->opt.trace) {
		char links[256];
		size_t at = 0;
		links[0] = 0;
		for (uint8_t a = 0; a < n; a++)
			for (uint8_t b = 0; b < n; b++)
				if (s->cut[a][b] && at + 8 < sizeof(links))
					at += (size_t)snprintf(links + at, sizeof(links) - at,
							       " %u>%u", a, b);
		tracef(s, "net   PARTITION %s, cut:%s", what, links);
	}
}

/* A one-way failure that lasts (--one-way-long): every backup's link to
 * the primary (the primary still reaches them: issue 7 finding 5), the
 * primary's link to one backup, or one random link. Each direction of a
 * TCP pair is its own connection in vsrhost, so this happens. */
static void oneway_start(struct sim *s)
{
	sim_rng *g = &s->mode_rng;
	uint8_t n = s->n;
	memset(s->oneway, 0, sizeof(s->oneway));
	int p = believed_primary(s);
	if (p < 0)
		p = (int)sim_rng_below(g, n);
	uint32_t kind = (uint32_t)sim_rng_below(g, 3);
	const char *what;
	if (kind == 0) {
		for (uint8_t b = 0; b < n; b++)
			if (b != p)
				s->oneway[b][p] = true;
		what = "every backup -> primary";
	} else if (kind == 1) {
		uint8_t b = (uint8_t)((p + 1 + sim_rng_below(g, n - 1)) % n);
		s->oneway[p][b] = true;
		what = "primary -> one backup";
	} else {
		uint8_t a = (uint8_t)sim_rng_below(g, n);
		uint8_t b = (uint8_t)((a + 1 + sim_rng_below(g, n - 1)) % n);
		s->oneway[a][b] = true;
		what = "one link";
	}
	s->oneway_active = true;
	s->oneway_id++;
	s->stats.oneway_long++;
	uint64_t until = s->now + sim_rng_range(g, 500, 3000);
	trace_mix(s, 16, kind, s->oneway_id, until);
	tracef(s, "net   ONE-WAY FAILURE (%s, primary r%d) until tick %llu", what, p,
	       (unsigned long long)until);
	sim_event e = {.time = until, .kind = EV_HEAL_ONEWAY, .arg = s->oneway_id};
	ev_push(s, e);
}

/* --fresh-restarts: the operator stops every replica and formats the
 * whole cluster anew (vsrhost --fresh) while clients keep running. The
 * data loss is expected: the checker starts a new canonical history. A
 * client's old session must never be served in the new history (finding 1:
 * session ids start over); a definite refusal is fine. */
/* Every replica's state is gone: a new history begins (genesis), and
 * losing every operation is expected. The checker starts a new canonical
 * history; messages of the old era die with their connections; clients keep
 * their sessions, which the new history must refuse (HISTORY). */
static void new_era(struct sim *s)
{
	s->era++;
	s->history = 0; /* a new genesis is expected */
	sim_ghost_free(&s->g);
	memset(&s->g, 0, sizeof(s->g));
}

static void operator_fresh(struct sim *s)
{
	tracef(s, "---   OPERATOR formats the whole cluster anew (era %u)", s->era + 1);
	trace_mix(s, 19, s->era, 0, 0);
	for (uint8_t r = 0; r < s->n; r++) {
		sim_node_replica *nr = &s->r[r];
		if (nr->up) {
			harvest_stats(s, nr->core);
			vsr_replica_destroy(nr->core);
			nr->core = NULL;
			nr->up = false;
		}
		nr->incarnation++;
		nr->amnesiac = nr->amnesia_normal = false;
		nr->busy_until = 0;
		nr->more_pending = false;
		sim_storage_free(&nr->st);
		sim_storage_init(&nr->st, nr->cfg.cluster);
	}
	new_era(s);
	for (uint8_t r = 0; r < s->n && !s->failed; r++)
		replica_start(s, r, true);
	for (uint8_t ci = 0; ci < s->clients_n; ci++) {
		/* a request in flight died with its connection: send it again */
		if (s->c[ci].busy)
			s->c[ci].retry_at = s->now;
	}
}

static void faults_tick(struct sim *s)
{
	if (s->f.fresh_at && s->now == s->f.fresh_at)
		operator_fresh(s);
	if (s->f.oneway_ppm && s->n > 1 && !s->oneway_active &&
	    sim_rng_ppm(&s->mode_rng, s->f.oneway_ppm))
		oneway_start(s);
	if (sim_rng_ppm(&s->rng, s->f.crash_ppm)) {
		uint32_t k = 1;
		if (s->n > 1 && sim_rng_ppm(&s->rng, s->f.multi_crash_ppm))
			k = (uint32_t)sim_rng_range(&s->rng, 2, s->n);
		for (uint32_t i = 0; i < k; i++)
			crash(s, (uint8_t)sim_rng_below(&s->rng, s->n),
			      k > 1 ? "several at once" : "random");
	}
	if (s->n > 1 && !s->partitioned &&
	    sim_rng_ppm(&s->rng, s->f.partition_ppm)) {
		int kind = (int)sim_rng_below(&s->rng, 3);
		partition_start(s, kind, -1);
		sim_event e = {.time = s->now + sim_rng_range(&s->rng, 20,
							      s->f.partition_max),
			       .kind = EV_HEAL, .arg = s->partition_id};
		ev_push(s, e);
	}
}

static uint32_t pick(sim_rng *rng, const uint32_t *choices, uint32_t n)
{
	return choices[sim_rng_below(rng, n)];
}

#define PICK(rng, ...) \
	pick(rng, (const uint32_t[]){__VA_ARGS__}, \
	     sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t))

/* Swarm testing: every seed draws its own fault mix, so a sweep covers calm
 * runs, lossy runs, crash storms and long partitions alike. */
static void faults_resolve(struct sim *s)
{
	sim_faults *f = &s->f;
	sim_rng *g = &s->rng;
	const sim_options *o = &s->opt;
	f->drop_ppm = PICK(g, 0, 10000, 50000, 150000);
	f->dup_ppm = PICK(g, 0, 10000, 50000);
	f->long_delay_ppm = PICK(g, 0, 5000, 30000);
	f->crash_ppm = PICK(g, 0, 1000, 3000, 8000);
	f->multi_crash_ppm = PICK(g, 0, 100000, 300000);
	f->window_crash_ppm = PICK(g, 0, 30000, 150000);
	f->partition_ppm = PICK(g, 0, 1000, 4000);
	f->torn_ppm = PICK(g, 0, 300000);
	f->corrupt_ppm = PICK(g, 0, 100000);
	f->delay_max = PICK(g, 2, 5, 20);
	f->persist_max = PICK(g, 1, 3, 10, 30);
	f->restart_max = PICK(g, 20, 100, 400);
	f->partition_max = PICK(g, 100, 300, 800);
	/* Drawn from the amnesia stream: the main stream's draws stay as they
	 * were, so seeds without amnesia keep their paths. Used with
	 * --amnesia-ppm swarm only, for now (docs/simulator.md, F16). */
	f->amnesia_ppm = PICK(&s->amnesia_rng, 0, 0, 0, 100000, 300000);
	if (o->amnesia_ppm != SIM_RATE_SEEDED)
		f->amnesia_ppm = o->amnesia_ppm;
	/* The issue-7 modes: drawn from their own stream, every draw made
	 * whatever the options, so each mode's choice per seed stays put when
	 * another mode is turned on or off. */
	sim_rng *m = &s->mode_rng;
	bool slow_disk = sim_rng_below(m, 4) == 0;
	bool minority = sim_rng_below(m, 2) == 0;
	uint32_t oneway = PICK(m, 0, 300, 1000);
	uint32_t long_step = PICK(m, 0, 100000, 500000, 1000000);
	f->long_step_max = PICK(m, 40, 100);
	bool slow_heal = sim_rng_below(m, 3) == 0;
	uint32_t big = PICK(m, 0, 2000, 20000);
	uint32_t pad = PICK(m, 0, 4096, 32768);
	uint32_t ack_crash = PICK(m, 0, 2000, 10000, 30000);
	bool fresh = sim_rng_below(m, 4) == 0;
	uint64_t fresh_at = o->fault_ticks / 4 + sim_rng_below(m, o->fault_ticks / 2 + 1);
	if (o->slow_disks && slow_disk)
		f->persist_max = 100;
	f->minority_down = o->minority_down && minority;
	f->oneway_ppm = o->long_oneway ? oneway : 0;
	f->long_step_ppm = o->long_steps ? long_step : 0;
	f->slow_heal = o->slow_heal && slow_heal;
	f->restore_fail_ppm = o->restore_fail_ppm;
	f->big_reply_ppm = o->big_replies ? big : 0;
	f->state_pad = o->large_state ? pad : 0;
	f->ack_crash_ppm = o->ack_crashes && f->window_crash_ppm ? ack_crash : 0;
	f->fresh_at = o->fresh_restarts && fresh && fresh_at ? fresh_at : 0;
	/* Async checkpoints, from their own stream: none in a quarter of the
	 * seeds, every replica in a quarter, each replica by a coin in the
	 * rest; a sync takes up to 1 or 4 times the longest write. */
	sim_rng *k = &s->ckpt_rng;
	uint32_t async_kind = (uint32_t)sim_rng_below(k, 4), async_mask = 0;
	for (uint8_t r = 0; r < SIM_REPLICAS_MAX; r++)
		if (sim_rng_below(k, 2) ? async_kind != 0 : async_kind == 3)
			async_mask |= 1u << r;
	uint32_t sync_mult = PICK(k, 1, 4);
	f->async_mask = o->async_checkpoints ? async_mask : 0;
	/* Store failures, from their own stream: off in half the seeds. A
	 * sync fails only at a replica with async checkpoints (vsrhost's
	 * syncer); a fetch is killed at one of its chunks or in its install. */
	sim_rng *sf = &s->store_rng;
	uint32_t sync_fail = PICK(sf, 0, 0, 20000, 100000);
	uint32_t fetch_kill = PICK(sf, 0, 0, 100000, 300000);
	f->sync_fail_ppm = o->sync_fail_ppm == SIM_RATE_SEEDED ? sync_fail : o->sync_fail_ppm;
	f->fetch_kill_ppm = o->fetch_kill_ppm == SIM_RATE_SEEDED ? fetch_kill : o->fetch_kill_ppm;
	if (o->drop_ppm != SIM_RATE_SEEDED)
		f->drop_ppm = o->drop_ppm;
	if (o->dup_ppm != SIM_RATE_SEEDED)
		f->dup_ppm = o->dup_ppm;
	if (o->crash_ppm != SIM_RATE_SEEDED)
		f->crash_ppm = o->crash_ppm;
	if (o->partition_ppm != SIM_RATE_SEEDED)
		f->partition_ppm = o->partition_ppm;
	if (o->delay_max_ticks != SIM_RATE_SEEDED)
		f->delay_max = o->delay_max_ticks ? o->delay_max_ticks : 1;
	if (o->persist_max_ticks != SIM_RATE_SEEDED)
		f->persist_max = o->persist_max_ticks ? o->persist_max_ticks : 1;
	if (o->demo)
		f->async_mask = 0;
	if (!o->faults || o->demo) {
		f->drop_ppm = f->dup_ppm = f->long_delay_ppm = 0;
		f->crash_ppm = f->window_crash_ppm = f->partition_ppm = 0;
		f->torn_ppm = f->corrupt_ppm = f->amnesia_ppm = 0;
		f->minority_down = f->slow_heal = false;
		f->oneway_ppm = f->long_step_ppm = f->restore_fail_ppm = 0;
		f->big_reply_ppm = f->ack_crash_ppm = 0;
		f->sync_fail_ppm = f->fetch_kill_ppm = 0;
		f->fresh_at = 0;
		f->delay_max = 3;
		f->persist_max = 2;
	}
	f->ckpt_sync_max = f->persist_max * sync_mult;
}

/* Core configuration of the run, also drawn from the seed: small
 * checkpoint intervals and logs so compaction and checkpoint transfer
 * happen within a short run. */
static void config_resolve(struct sim *s)
{
	uint64_t cluster = sim_rng_next(&s->rng) | 1;
	uint32_t ci = PICK(&s->rng, 8, 16, 64);
	uint32_t pipe = PICK(&s->rng, 1, 4, 8);
	uint32_t batch = PICK(&s->rng, 1, 4, 32);
	/* Sometimes fewer sessions than clients: evictions and EVICTED replies. */
	uint32_t clients_max = PICK(&s->rng, 3, 64);
	s->use_more = sim_rng_below(&s->rng, 2) == 1;
	s->tick_by_deadline = sim_rng_below(&s->rng, 2) == 1;
	uint32_t need = 2 * ci + 4 * pipe;
	uint32_t log_max = 16;
	while (log_max < need)
		log_max *= 2;
	for (uint8_t r = 0; r < s->n; r++) {
		vsr_config *c = &s->r[r].cfg;
		vsr_config_default(c, cluster, s->n, r);
		c->pipeline_max = pipe;
		c->batch_requests_max = batch;
		c->checkpoint_interval = ci;
		if (r == 0 && s->opt.plant_divergence) {
			/* Its own stream: the rest of the run draws as without it. */
			sim_rng pr;
			sim_rng_seed(&pr, s->opt.seed ^ 0xD1CE5EEDull);
			s->plant_replica = (uint8_t)sim_rng_below(&pr, s->n);
			s->plant_op = 1 + sim_rng_below(&pr, 2 * (uint64_t)ci);
		}
		c->log_max = log_max;
		c->message_entries_max = 2 * pipe > 16 ? 2 * pipe : 16;
		c->clients_max = clients_max;
		/* Oversized replies end up in checkpoints: 1 MiB chunks for those. */
		c->chunk_bytes_max = s->f.big_reply_ppm ? 1u << 20 : 256;
		c->bugs = s->opt.bugs & ~SIM_BUGS_HOST;
		if (s->leases) {
			/* Simulated clocks agree exactly; a bound is still required. */
			c->lease_drift_ppm = 100000;
			c->lease_margin_ticks = 1;
		}
		c->genesis_history = 1; /* drawn anew for every start: replica_config */
		const char *why = vsr_config_invalid(c);
		if (why)
			sim_fail(s, "simulator chose an invalid config: %s", why);
	}
}

/* ------------------------------------------------------------------------ */
/* The run.                                                                   */

static void deliver(struct sim *s, sim_event *e)
{
	sim_msg *msg = e->msg;
	s->stats.events++;
	if (e->arg != s->era) {
		/* sent before the cluster was formatted anew: its connection is
		 * gone */
		sim_msg_free(msg);
		return;
	}
	if (e->node >= s->n) {
		uint8_t ci = (uint8_t)(e->node - s->n);
		trace_mix(s, 8, e->node, msg->m.type, msg->m.request.request);
		client_receive(s, ci, e->from, &msg->m);
		sim_msg_free(msg);
		return;
	}
	uint8_t r = e->node;
	bool from_replica = e->from < s->n;
	if (s->r[r].up && s->now < s->r[r].busy_until) {
		/* in a long step: the message waits in the socket */
		sim_event later = *e;
		later.time = s->r[r].busy_until;
		ev_push(s, later);
		return;
	}
	if (from_replica && (s->cut[e->from][r] || s->oneway[e->from][r])) {
		tracef(s, "net   %u -> %u %s lost in partition", e->from, r,
		       mtype(msg->m.type));
		sim_msg_free(msg);
		return;
	}
	if (!s->r[r].up) {
		sim_msg_free(msg);
		return;
	}
	trace_mix(s, 9, r, e->from, msg->m.type);
	if (s->opt.trace && from_replica)
		tracef(s, "r%u   <- r%u %s view %llu op %llu commit %llu", r, e->from,
		       mtype(msg->m.type), (unsigned long long)msg->m.view,
		       (unsigned long long)msg->m.op,
		       (unsigned long long)msg->m.commit);
	else if (s->opt.trace)
		tracef(s, "r%u   <- c%u REQUEST session %llu request %llu", r,
		       e->from - s->n, (unsigned long long)msg->m.request.session,
		       (unsigned long long)msg->m.request.request);
	vsr_event ev = {.now = s->now, .realtime_ns = realtime_ns(s, r),
			.message = &msg->m};
	/* A burst: more messages for this replica in this tick (as a host
	 * draining a socket would know). The core may hold requests back to
	 * batch them until an event without the hint or a FLUSH. */
	ev.more = s->use_more && s->heap_len && s->heap[0].time <= s->now &&
		  s->heap[0].kind == EV_DELIVER && s->heap[0].node == r;
	if (from_replica) {
		ev.type = VSR_EVENT_MESSAGE;
	} else {
		ev.type = VSR_EVENT_REQUEST;
		ev.conn = (uint64_t)(e->from - s->n) + 1;
	}
	step(s, r, &ev);
	sim_msg_free(msg);
}

static void handle(struct sim *s, sim_event *e)
{
	switch (e->kind) {
	case EV_DELIVER:
		deliver(s, e);
		return;
	case EV_PERSISTED: {
		sim_node_replica *nr = &s->r[e->node];
		s->stats.events++;
		if (!nr->up || nr->incarnation != e->inc)
			return;
		sim_pending *p = sim_storage_head(&nr->st);
		if (!p || p->p.id != e->arg) {
			sim_fail(s, "simulator: persist #%llu of replica %u out of order",
				 (unsigned long long)e->arg, e->node);
			return;
		}
		sim_check_superblock(s, e->node, &nr->st.sb, &p->p.superblock);
		sim_storage_complete(&nr->st);
		if (nr->amnesiac && nr->amnesia_normal && e->arg >= nr->amnesia_wait_id)
			amnesia_cleared(s, e->node);
		trace_mix(s, 10, e->node, e->arg, 0);
		tracef(s, "r%u   persisted #%llu", e->node, (unsigned long long)e->arg);
		vsr_event ev = {.type = VSR_EVENT_PERSISTED, .now = s->now,
				.realtime_ns = realtime_ns(s, e->node),
				.persist_id = e->arg};
		step(s, e->node, &ev);
		return;
	}
	case EV_CKPT_SYNC:
		s->stats.events++;
		if (s->r[e->node].up && s->r[e->node].incarnation == e->inc)
			ckpt_synced(s, e->node, e->arg);
		return;
	case EV_CRASH:
		s->stats.events++;
		if (s->r[e->node].up && s->r[e->node].incarnation == e->inc &&
		    in_fault_phase(s)) {
			s->stats.window_crashes++;
			crash(s, e->node, "right after a vote");
		}
		return;
	case EV_RESTART:
		s->stats.events++;
		if (!s->r[e->node].up && !s->r[e->node].stay_down)
			replica_start(s, e->node, false);
		return;
	case EV_HEAL_ONEWAY:
		s->stats.events++;
		if (e->arg == s->oneway_id && s->oneway_active) {
			memset(s->oneway, 0, sizeof(s->oneway));
			s->oneway_active = false;
			tracef(s, "net   one-way failure healed");
			trace_mix(s, 17, e->arg, 0, 0);
		}
		return;
	case EV_HEAL:
		s->stats.events++;
		if (e->arg == s->partition_id) {
			partition_heal(s);
			tracef(s, "net   partition healed");
			trace_mix(s, 11, e->arg, 0, 0);
			if (s->opt.demo)
				narrate(s, "the network heals: every replica can reach "
					"every other again");
		}
		return;
	default:
		sim_fail(s, "simulator: unknown event kind %u", e->kind);
		return;
	}
}

/* --minority-down: up to f replicas stay down after the faults stop (as a
 * dead machine does), never so many that the rest cannot form a quorum
 * without an amnesiac. */
static void leave_minority_down(struct sim *s)
{
	uint8_t f = (uint8_t)((s->n - 1) / 2), amnesiac = 0;
	for (uint8_t r = 0; r < s->n; r++)
		amnesiac += s->r[r].amnesiac;
	if (amnesiac >= f)
		return;
	uint8_t k = (uint8_t)sim_rng_range(&s->mode_rng, 1, f - amnesiac);
	for (uint8_t i = 0; i < k; i++) {
		uint8_t r = (uint8_t)sim_rng_below(&s->mode_rng, s->n);
		if (s->r[r].amnesiac || s->r[r].stay_down)
			continue;
		s->r[r].stay_down = true;
		s->stats.stayed_down++;
		tracef(s, "r%u   stays DOWN after the faults", r);
		trace_mix(s, 18, r, 0, 0);
		if (s->r[r].up)
			crash(s, r, "stays down");
		if (s->r[r].up) { /* the one-amnesiac rule said no */
			s->r[r].stay_down = false;
			s->stats.stayed_down--;
		}
	}
}

static void heal_all(struct sim *s)
{
	s->healed = true;
	partition_heal(s);
	s->partition_id++; /* pending heals become no-ops */
	memset(s->oneway, 0, sizeof(s->oneway));
	s->oneway_active = false;
	s->oneway_id++;
	if (s->f.minority_down)
		leave_minority_down(s);
	tracef(s, "---   faults stop: network healed, crashed replicas restart");
	trace_mix(s, 12, 0, 0, 0);
	for (uint8_t r = 0; r < s->n; r++) {
		if (!s->r[r].up && !s->r[r].stay_down) {
			sim_event e = {.time = s->now + 1, .kind = EV_RESTART, .node = r};
			ev_push(s, e);
		}
	}
}

/* A planted divergence is found at the first checkpoint after it: a run
 * that ends before one leaves it undetectable by design (docs/protocol.md). */
static bool plant_undetectable(const struct sim *s, uint64_t commit)
{
	if (!s->opt.plant_divergence || !s->planted) return false;
	/* With a replica left down (--minority-down), the replicas up may be
	 * too few to hold a quorum on either state: nothing decides which is
	 * right, so nothing is repaired, by design. */
	for (uint8_t r = 0; r < s->n; r++)
		if (s->r[r].stay_down) return true;
	uint64_t ci = s->r[0].cfg.checkpoint_interval;
	uint64_t first = (s->plant_op + ci - 1) / ci * ci;
	return commit < first;
}

/* Liveness (12.11): everything settled once faults stopped. */
static bool settled(const struct sim *s)
{
	uint8_t ref = 0;
	while (ref + 1 < s->n && s->r[ref].stay_down)
		ref++;
	const vsr_replica_info *a = &s->r[ref].info;
	for (uint8_t r = 0; r < s->n; r++) {
		const sim_node_replica *nr = &s->r[r];
		if (nr->stay_down)
			continue;
		if (!nr->up || nr->info.status != VSR_STATUS_NORMAL)
			return false;
		if (nr->info.view != a->view || nr->info.commit != a->commit ||
		    nr->info.executed != nr->info.commit ||
		    nr->info.op != nr->info.commit)
			return false;
		if ((nr->info.digest != a->digest || vsr_replica_diverged(nr->core, NULL)) &&
		    !plant_undetectable(s, a->commit))
			return false;
	}
	for (uint8_t ci = 0; ci < s->clients_n; ci++)
		if (s->c[ci].busy || client_may_issue(s, &s->c[ci]))
			return false;
	return true;
}

/* Liveness during faults (--live-during-faults): while some quorum of
 * replicas is up, not amnesiac, and connected both ways among itself, the
 * cluster must serve: when that has held for live_window ticks, some client
 * request completed within the last live_window ticks. A replica cut from
 * that quorum (a primary that hears nobody, finding 5) must not hold it up. */
static void describe_unsettled(struct sim *s, char *buf, size_t len);

/* Whether the replicas of `mask` are up, not amnesiac, and connected both
 * ways among themselves now. */
static bool quorum_connected(const struct sim *s, uint32_t mask)
{
	for (uint8_t a = 0; a < s->n; a++) {
		if (!(mask >> a & 1))
			continue;
		const sim_node_replica *nr = &s->r[a];
		if (!nr->up || nr->amnesiac || nr->stay_down)
			return false;
		for (uint8_t b = 0; b < s->n; b++)
			if (b != a && (mask >> b & 1) && (s->cut[a][b] || s->oneway[a][b]))
				return false;
	}
	return true;
}

/* The tick since which some quorum has stayed up (no member crashed or
 * restarted) and connected, or UINT64_MAX when none is now. A quorum whose
 * members keep crashing is not one that can be asked to serve: each
 * restart is a recovery, and may rightly cost a view change. */
static uint64_t stable_quorum_since(struct sim *s, uint32_t *which)
{
	uint32_t q = vsr_quorum(s->n);
	uint64_t best = UINT64_MAX;
	for (uint32_t mask = 1; mask < (1u << s->n); mask++) {
		if ((uint32_t)__builtin_popcount(mask) < q)
			continue;
		if (!quorum_connected(s, mask)) {
			s->quorum_ok[mask] = false;
			continue;
		}
		if (!s->quorum_ok[mask]) {
			s->quorum_ok[mask] = true;
			s->quorum_since[mask] = s->now;
		}
		uint64_t since = s->quorum_since[mask];
		for (uint8_t a = 0; a < s->n; a++)
			if ((mask >> a & 1) && s->r[a].up_since > since)
				since = s->r[a].up_since;
		if (since < best) {
			best = since;
			*which = mask;
		}
	}
	return best;
}

static void check_live_during_faults(struct sim *s)
{
	uint32_t mask = 0;
	uint64_t since = stable_quorum_since(s, &mask);
	if (since == UINT64_MAX)
		return;
	uint64_t w = s->opt.live_window;
	if (s->now >= since + w && s->now >= s->last_completion + w) {
		char buf[400];
		describe_unsettled(s, buf, sizeof(buf));
		sim_fail(s,
			 "liveness during faults: replicas 0x%x (a quorum) have been up "
			 "without a restart and connected since tick %llu, but no request "
			 "completed since tick %llu:%s",
			 mask, (unsigned long long)since,
			 (unsigned long long)s->last_completion, buf);
	}
}

static void describe_unsettled(struct sim *s, char *buf, size_t len)
{
	size_t at = 0;
	for (uint8_t r = 0; r < s->n && at < len; r++) {
		const sim_node_replica *nr = &s->r[r];
		at += (size_t)snprintf(buf + at, len - at,
				       " r%u:%s v%llu op%llu c%llu e%llu;", r,
				       nr->up ? sname(nr->info.status) : "down",
				       (unsigned long long)nr->info.view,
				       (unsigned long long)nr->info.op,
				       (unsigned long long)nr->info.commit,
				       (unsigned long long)nr->info.executed);
	}
	uint32_t busy = 0;
	for (uint8_t ci = 0; ci < s->clients_n; ci++)
		busy += s->c[ci].busy;
	if (at < len)
		snprintf(buf + at, len - at, " %u clients waiting", busy);
}

static void demo_script(struct sim *s)
{
	if (s->now == s->demo_isolated_at) {
		int p = believed_primary(s);
		s->demo_isolated = p;
		narrate(s, "so far: %llu ops committed in view %llu with primary %d",
			(unsigned long long)s->r[p < 0 ? 0 : p].info.commit,
			(unsigned long long)s->r[p < 0 ? 0 : p].info.view, p);
		narrate(s, "the network ISOLATES replica %d, the primary: it can "
			"neither send to nor hear from the others", p);
		partition_start(s, 2, p);
	}
	if (s->now == (s->demo_isolated_at + s->demo_heal_at) / 2 &&
	    s->demo_isolated >= 0) {
		const vsr_replica_info *old = &s->r[s->demo_isolated].info;
		int p = believed_primary(s);
		narrate(s, "meanwhile: replica %d is %s in view %llu with commit "
			"%llu and cannot commit anything alone (its clients time out "
			"and retry elsewhere)", s->demo_isolated, sname(old->status),
			(unsigned long long)old->view, (unsigned long long)old->commit);
		if (p >= 0)
			narrate(s, "meanwhile: replica %d, primary of view %llu, has "
				"committed up to op %llu with the third replica's acks", p,
				(unsigned long long)s->r[p].info.view,
				(unsigned long long)s->r[p].info.commit);
	}
	if (s->now == s->demo_heal_at) {
		narrate(s, "the network HEALS: replica %d can talk to the others "
			"again", s->demo_isolated);
		partition_heal(s);
	}
}

static void free_all(struct sim *s)
{
	while (s->heap_len) {
		sim_event e = ev_pop(s);
		sim_msg_free(e.msg);
	}
	free(s->heap);
	for (uint8_t r = 0; r < s->n; r++) {
		if (s->r[r].core)
			vsr_replica_destroy(s->r[r].core);
		sim_storage_free(&s->r[r].st);
	}
	sim_ghost_free(&s->g);
	free(s->out);
	free(s->out_to);
	free(s->out_client);
}

void sim_run(const sim_options *opt, sim_result *res)
{
	struct sim *s = sim_xcalloc(1, sizeof(*s));
	s->opt = *opt;
	s->n = opt->replicas;
	s->clients_n = opt->clients;
	s->trace_digest = sim_hash_u64(0x7472616365, opt->seed);
	sim_rng_seed(&s->rng, opt->seed);
	sim_rng_seed(&s->amnesia_rng, sim_hash_u64(opt->seed, 0x616d6e65736961ull));
	sim_rng_seed(&s->mode_rng, sim_hash_u64(opt->seed, 0x69737375653737ull));
	sim_rng_seed(&s->read_rng, sim_hash_u64(opt->seed, 0x7265616473ull));
	sim_rng_seed(&s->ckpt_rng, sim_hash_u64(opt->seed, 0x636b707473ull));
	sim_rng_seed(&s->store_rng, sim_hash_u64(opt->seed, 0x73746f72656661ull));
	/* With reads, half the seeds run with leases (no clock drift here). */
	s->leases = opt->reads && sim_rng_below(&s->read_rng, 2) == 0;
	faults_resolve(s);
	config_resolve(s);
	if (opt->trace)
		tracef(s, "seed %llu: %u replicas, %u clients; drop %u ppm, dup %u ppm, "
		       "crash %u ppm/tick, partition %u ppm/tick, delay <= %u, "
		       "persist <= %u ticks, amnesia %u ppm of restarts; checkpoint "
		       "every %u, pipeline %u",
		       (unsigned long long)opt->seed, s->n, s->clients_n,
		       s->f.drop_ppm, s->f.dup_ppm, s->f.crash_ppm, s->f.partition_ppm,
		       s->f.delay_max, s->f.persist_max, s->f.amnesia_ppm,
		       s->r[0].cfg.checkpoint_interval, s->r[0].cfg.pipeline_max);
	for (uint8_t r = 0; r < s->n && !s->failed; r++) {
		s->r[r].clock_offset_ns = 1000000000000ull +
			sim_rng_below(&s->rng, 2000000001ull);
		sim_storage_init(&s->r[r].st, s->r[r].cfg.cluster);
		replica_start(s, r, true);
	}
	for (uint8_t ci = 0; ci < s->clients_n; ci++) {
		s->c[ci].target = (uint8_t)sim_rng_below(&s->rng, s->n);
		s->c[ci].retry_at = sim_rng_below(&s->rng, 20);
	}
	/* Clients work for fault_ticks (with or without faults), then the
	 * cluster must settle. */
	uint64_t fault_end = opt->fault_ticks;
	if (opt->demo) {
		fault_end = 0;
		s->demo_isolated_at = 200;
		s->demo_heal_at = 600;
		s->demo_isolated = -1;
		narrate(s, "a cluster of %u replicas starts in view 0; replica 0 is "
			"the primary; %u clients send requests", s->n, s->clients_n);
	}
	uint64_t settle_from = opt->demo ? s->demo_heal_at : fault_end;
	uint64_t end = settle_from + opt->liveness_ticks;
	for (s->now = 0; !s->failed; s->now++) {
		sim_current_tick = s->now;
		if (s->now == fault_end && !opt->demo)
			heal_all(s);
		if (opt->demo) {
			demo_script(s);
			if (s->now == s->demo_heal_at)
				s->healed = true;
		}
		if (in_fault_phase(s) && !opt->demo)
			faults_tick(s);
		/* A long step ends: the host's timer runs before it reads the
		 * messages that queued up meanwhile (issue 7, finding 4). */
		for (uint8_t r = 0; r < s->n && !s->failed; r++) {
			if (!s->r[r].up || s->r[r].busy_until != s->now || s->now == 0)
				continue;
			vsr_event ev = {.type = VSR_EVENT_TICK, .now = s->now,
					.realtime_ns = realtime_ns(s, r)};
			step(s, r, &ev);
			s->stats.events++;
		}
		if (opt->live_during_faults && in_fault_phase(s) && !opt->demo)
			check_live_during_faults(s);
		while (s->heap_len && s->heap[0].time <= s->now && !s->failed) {
			sim_event e = ev_pop(s);
			handle(s, &e);
		}
		/* A burst whose last message was lost on the way still ends. */
		for (uint8_t r = 0; r < s->n && !s->failed; r++) {
			if (!s->r[r].up || !s->r[r].more_pending || s->now < s->r[r].busy_until)
				continue;
			vsr_event ev = {.type = VSR_EVENT_FLUSH, .now = s->now,
					.realtime_ns = realtime_ns(s, r)};
			step(s, r, &ev);
			s->stats.events++;
		}
		for (uint8_t r = 0; r < s->n && !s->failed; r++) {
			if (!s->r[r].up)
				continue;
			/* Either every tick, or only by the deadline the core gave,
			 * as an event-driven host would: the latter holds the core to
			 * its contract that no timer needs an earlier TICK. */
			if (s->tick_by_deadline && s->now < s->r[r].deadline)
				continue;
			if (s->now < s->r[r].busy_until)
				continue;
			vsr_event ev = {.type = VSR_EVENT_TICK, .now = s->now,
					.realtime_ns = realtime_ns(s, r)};
			step(s, r, &ev);
			s->stats.events++;
			if (!s->failed && s->r[r].up && s->now >= s->r[r].next_full_check) {
				sim_check_full(s, &s->g, r, s->r[r].core);
				s->r[r].next_full_check = s->now + 128;
			}
		}
		for (uint8_t ci = 0; ci < s->clients_n && !s->failed; ci++)
			client_tick(s, ci);
		if (s->failed)
			break;
		if (s->now >= settle_from && s->healed && settled(s))
			break;
		if (s->now >= end) {
			char buf[400];
			describe_unsettled(s, buf, sizeof(buf));
			sim_fail(s,
				 "liveness (12.11): not settled %llu ticks after faults "
				 "stopped:%s",
				 (unsigned long long)opt->liveness_ticks, buf);
			break;
		}
	}
	memset(res, 0, sizeof(*res));
	res->ok = !s->failed;
	snprintf(res->reason, sizeof(res->reason), "%s", s->reason);
	res->fail_tick = s->fail_tick;
	res->ticks = s->now;
	res->settle_ticks = s->now > settle_from ? s->now - settle_from : 0;
	res->final_view = s->r[0].info.view;
	res->final_commit = s->r[0].info.commit;
	res->final_digest = s->r[0].info.digest;
	res->trace_digest = s->trace_digest;
	for (uint8_t ci = 0; ci < s->clients_n; ci++)
		s->stats.commits += s->c[ci].done;
	for (uint8_t r = 0; r < s->n; r++)
		if (s->r[r].core)
			harvest_stats(s, s->r[r].core);
	res->stats = s->stats;
	if (res->ok && !opt->plant_divergence && s->stats.divergences) {
		/* Detection must not cry wolf: without a planted bug every
		 * replica's checkpoints agree. */
		res->ok = false;
		snprintf(res->reason, sizeof(res->reason),
			 "divergence detection (issue 9): %llu divergences reported "
			 "with no planted bug", (unsigned long long)s->stats.divergences);
	}
	if (opt->demo && res->ok) {
		narrate(s, "settled: all %u replicas are normal in view %llu with "
			"%llu ops committed", s->n, (unsigned long long)res->final_view,
			(unsigned long long)res->final_commit);
		for (uint8_t r = 0; r < s->n; r++)
			narrate(s, "replica %u: view %llu, commit %llu, state digest "
				"%016llx", r, (unsigned long long)s->r[r].info.view,
				(unsigned long long)s->r[r].info.commit,
				(unsigned long long)s->r[r].info.digest);
	}
	free_all(s);
	free(s);
}
