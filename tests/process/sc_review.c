/* sc_review.c - a state transfer into a durable vsr.store, end to end
 * (review of records with checks, format 2).
 *
 * transfer: writers put keys under load (checkpoint every 16 ops); a
 * backup is killed, its data directory deleted, and started again: it
 * rejoins by fetching a checkpoint from the others (it must log "status
 * state_transfer"), its store built from the image's plain values with
 * each record's check made as it goes. Then every acknowledged write is
 * read at every replica, the transferred one included (a record that
 * failed its check would stop it with exit 74). Last, the transferred
 * replica is restarted: the restart's store check (every record's check,
 * the free list against the trees, the branch keys) must find its store
 * intact (no reset, "cannot be trusted"), and every write is read at every
 * replica again. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "writers.h"

/* Waits until replica r is normal, the writers drained meanwhile. */
static void wait_normal(writers *ws, int r, const char *what)
{
	uint64_t deadline = now_ms() + CATCHUP_MS;
	vsr_wire_status st;
	for (;;) {
		if (now_ms() > deadline)
			fail("%s: replica %d is not normal after %d ms", what, r + 1, CATCHUP_MS);
		writers_drain(ws, 20);
		writers_check(ws, what);
		if (status_of(r, &st) && st.status == VSR_STATUS_NORMAL)
			return;
	}
}

int scenario_review_transfer(void)
{
	g_durability = "durable";
	g_checkpoint_interval = 16;
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	int victim = (p + 1) % N;
	const char *what = "a wiped backup fetches the state";
	writers ws = {0};
	writers_start_quota(&ws, 400);
	writers_wait_acks(&ws, 120, what); /* several checkpoints */
	kill_replica(victim);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/data/replica-%d'", g_dir, victim + 1);
	if (system(cmd) != 0)
		fail("cannot delete replica %d's directory", victim + 1);
	writers_wait_acks(&ws, writers_target(&ws, 120), what); /* the others go on */
	start_replica(victim);
	wait_ports(victim);
	wait_normal(&ws, victim, what);
	if (!log_contains(victim, "status state_transfer"))
		fail("%s: replica %d never logged \"status state_transfer\" (caught up from the log "
		     "alone: no checkpoint was fetched)",
		     what, victim + 1);
	writers_wait_acks(&ws, writers_target(&ws, 40), what);
	writers_stop(&ws);
	uint32_t n = verify_writes_each(&sb, &ws, what);
	note("%s: replica %d wiped, rejoined by a state transfer; all %u acknowledged writes read at "
	     "every replica, digests equal at op %" PRIu64,
	     what, victim + 1, n, ws.max_op);

	what = "the transferred replica restarted";
	kill_replica(victim);
	start_replica(victim);
	wait_ports(victim);
	wait_normal(&ws, victim, what);
	if (log_contains(victim, "cannot be trusted") || log_contains(victim, "fails its check"))
		fail("%s: replica %d judged its store damaged", what, victim + 1);
	n = verify_writes_each(&sb, &ws, what);
	note("%s: its store passed the restart's check; all %u writes read at every replica", what,
	     n);
	scenario_close(&m, &sb);
	return 0;
}
