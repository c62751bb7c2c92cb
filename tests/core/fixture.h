/* fixture.h - a small in-memory cluster for the core's unit tests: explicit
 * control over delivery, links, storage completion, crashes and restarts. */
#ifndef VSR_FIXTURE_H
#define VSR_FIXTURE_H

#include "vsr.h"
#include "vsr_snapckpt.h"

#define FX_MAX 5
#define FX_REPLIES_MAX 4096

/* The test state machine: a hash chain over applied operations plus a count.
 * apply() answers "<count>" so every reply is distinct; an op "fail" is
 * applied as a deterministic error that leaves the state unchanged. */
typedef struct fx_sm {
	uint64_t chain;
	uint64_t count;
} fx_sm;

typedef struct fx_message {
	uint8_t from, to;
	vsr_message m; /* deep copy: owns entries, bodies, op and body */
} fx_message;

typedef struct fx_image { /* a replica's disk */
	bool formatted;
	vsr_superblock sb;
	uint32_t entry_count;
	vsr_entry *entries; /* in op order, bodies owned */
} fx_image;

typedef struct fx_reply {
	uint8_t replica;
	uint64_t conn;
	uint8_t status;
	uint8_t hint;    /* message.replica: NOT_PRIMARY's primary hint */
	uint64_t view;
	uint64_t session;
	uint64_t request;
	uint64_t op;
	uint64_t history; /* the replying replica's */
	uint8_t read_mode; /* a QUERY's: the mode it was answered in */
	bool query;        /* the reply is to a QUERY (its body: the op count) */
	uint32_t body_len;
	char body[64];
} fx_reply;

typedef struct fx_node {
	bool up;
	vsr_replica *r;
	fx_sm sm;
	fx_image disk;
	vsr_snapckpt ck; /* the state machine's checkpoints: on disk too */
	/* persists issued but not yet durable (deep copies) */
	uint32_t pending_count;
	vsr_persist pending[4096];
	bool auto_persist; /* complete persists during fx_run */
	uint32_t restore_fail;   /* fail this many coming restores */
	uint32_t restore_failed; /* restores that failed */
	bool paused;       /* a stalled process: no ticks, messages held for it */
} fx_node;

typedef struct fixture {
	uint8_t n;
	vsr_config cfg[FX_MAX];
	fx_node node[FX_MAX];
	bool link[FX_MAX][FX_MAX]; /* link[a][b]: messages from a reach b */
	fx_message *queue;
	uint32_t queue_count, queue_cap;
	fx_message *stalled; /* messages for paused replicas, in arrival order */
	uint32_t stalled_count, stalled_cap;
	uint64_t now;
	uint32_t reply_count;
	fx_reply replies[FX_REPLIES_MAX];
	uint64_t next_conn;
	bool more; /* mark requests with the `more` hint */
	uint32_t snapshot_pad; /* extra bytes in every snapshot (large checkpoints) */
	uint32_t hops_per_tick; /* message hops delivered per delivery (0: 64) */
	/* Messages the test holds back (a delayed message): when `hold` says
	 * so, a message goes to `held` instead of the queue; fx_release sends
	 * it later, as a network that delayed it would. */
	bool (*hold)(const fx_message *m, void *arg);
	void *hold_arg;
	fx_message *held;
	uint32_t held_count, held_cap;
	uint64_t history;         /* of the genesis fx_init ran */
	/* The history OP requests carry: set by fx_register from its reply
	 * (the session's history), or by a test. */
	uint64_t request_history;
	uint32_t incarnation[FX_MAX];
	uint8_t read_mode; /* of the QUERY fx_request sends (fx_query) */
} fixture;

void fx_init(fixture *f, uint8_t n, void (*tune)(vsr_config *c));
void fx_free(fixture *f);
/* Delivers messages and persists and ticks, for `ticks` ticks. */
void fx_run(fixture *f, uint32_t ticks);
/* Runs until `pred` holds or `ticks` pass; returns whether it held. */
bool fx_run_until(fixture *f, uint32_t ticks, bool (*pred)(fixture *f, void *arg), void *arg);
void fx_isolate(fixture *f, uint8_t i);
void fx_heal(fixture *f);
void fx_crash(fixture *f, uint8_t i);
void fx_restart(fixture *f, uint8_t i);
/* Delivers held message k now (links permitting); it leaves `held`. */
void fx_release(fixture *f, uint32_t k);
/* A stall (SIGSTOP, a long step): replica i gets no tick, no message and no
 * storage completion; messages sent to it wait, as in its socket buffers. */
void fx_pause(fixture *f, uint8_t i);
/* Ends the stall. With tick_first the replica's first event is a TICK at
 * the current time, before the messages that waited for it (a host that
 * runs its timers before reading its sockets). */
void fx_resume(fixture *f, uint8_t i, bool tick_first);
/* Delivers message m from replica `from` to replica `to` directly (a
 * message crafted by the test), then runs what follows from it. */
void fx_inject(fixture *f, uint8_t from, uint8_t to, const vsr_message *m);
/* Completes replica i's oldest pending persist (also without auto_persist). */
void fx_persist_one(fixture *f, uint8_t i);
/* Restarts replica i with nothing on its disk (memory mode, a lost volume):
 * it starts unjoined, with a new genesis candidate. */
void fx_restart_wiped(fixture *f, uint8_t i);
/* The genesis candidate of replica i's incarnation (fx_init: 0). */
uint64_t fx_history_for(uint8_t i, uint32_t incarnation);
/* For fx_run_until: a primary exists and every up replica is normal in its
 * view with the same op and commit. */
bool fx_all_caught_up(fixture *f, void *arg);
/* Every up replica is a normal member of a history, durably. */
bool fx_all_joined(fixture *f);
/* Sends a request to replica i; returns the connection id used. */
uint64_t fx_request(fixture *f, uint8_t i, uint8_t kind, uint64_t session, uint64_t request,
		    const char *op);
/* Sends a QUERY ("count": the fixture answers with the state's op count)
 * in read mode `mode` to replica i; returns the connection id used. */
uint64_t fx_query(fixture *f, uint8_t i, uint8_t mode, uint64_t request);
/* Hands replica `to` a message built by the test (a forged or delayed one);
 * what it sends in answer is queued as usual. */
void fx_deliver(fixture *f, uint8_t to, const vsr_message *m);
/* Sends a FLUSH event to replica i. */
void fx_flush(fixture *f, uint8_t i);
/* The last reply for conn, or NULL. */
const fx_reply *fx_reply_for(const fixture *f, uint64_t conn);
/* Registers a session through replica i and returns its id (0 on failure). */
uint64_t fx_register(fixture *f, uint8_t i, uint64_t nonce);
/* Sends op with (session, request) to whichever replica is primary, running
 * until a reply; returns it or NULL. */
const fx_reply *fx_call(fixture *f, uint64_t session, uint64_t request, const char *op);
int fx_primary(const fixture *f); /* a normal primary of the highest view, or -1 */
void fx_info(const fixture *f, uint8_t i, vsr_replica_info *out);
/* Checks agreement of committed entries and equal digests at equal
 * executed ops across up replicas; returns a reason or NULL. */
const char *fx_check(const fixture *f);

/* Checks inside a scenario; the including file defines `static int
 * failures`. A failed check ends the scenario. */
#include <stdio.h>
#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                    \
			return;                                                        \
		}                                                                      \
	} while (0)

#define CHECK_CLUSTER(f)                                                               \
	do {                                                                           \
		const char *why_ = fx_check(f);                                        \
		if (why_) {                                                            \
			fprintf(stderr, "%s:%d: cluster check: %s\n", __FILE__, __LINE__, why_); \
			failures++;                                                    \
			return;                                                        \
		}                                                                      \
	} while (0)

/* A named scenario, and the runner shared by the scenario programs:
 * `prog [NAME]` runs one (or all), `prog --list` names them. A scenario
 * reports failure by raising *failures. */
typedef struct fx_test {
	const char *name;
	void (*fn)(void);
} fx_test;
int fx_main(int argc, char **argv, const fx_test *tests, size_t count, const int *failures);

#endif
