/* test_store_turnfig.c - the figure the host logs for a checkpoint
 * committed in this replica's turn ("checkpoint at op N committed in this
 * replica's turn (the step that took it: X ms)", host_note_turn_commit)
 * is that commit's, read right after the step that made it, as the host
 * reads it (vsrh_sm_turn_commits).
 *
 * Since the commit left the loop (ckpt_hand_off), the step hands the write
 * transaction to the syncer's thread and the loop's part of it (hand-over
 * and pick-up) is written into step_last_ns only at the pick-up
 * (commit_pickup), after the host has logged: the log line then carries
 * the previous checkpoint's figure (0.0 ms for the first). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kv_op.h"
#include "store_test.h"

int main(void)
{
	char dir[] = "/tmp/vsr-turnfig-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	vsrh_sm *sm = st_create(&cfg, dir, true, true);
	if (sm == NULL)
		return st_end(dir, &cfg, NULL);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	/* Replica 1 of 2, its turn 1 us after the take. */
	vsrh_sm_stagger(sm, 1, 2, 1000);
	uint64_t op = 0;
	for (int r = 0; r < 3; r++) {
		int refused = kv_put_round(&m, 500, r, &op);
		CHECK(refused == 0, "%d puts refused", refused);
		static const uint8_t meta[8];
		vsr_checkpoint cp = {.op = op, .checksum = op * 31, .timestamp = op};
		int rc = m.checkpoint_take(m.ctx, &cp, meta, sizeof meta);
		CHECK(rc == VSR_PENDING, "take at op %llu: %d", (unsigned long long)op, rc);
		uint64_t n0 = vsrh_sm_turn_commits(sm, &(uint64_t){0}, &(uint64_t){0});
		struct timespec ts = {0, 100000}; /* past its turn */
		nanosleep(&ts, NULL);
		vsrh_sm_tick(sm); /* the step: committed in its turn */
		uint64_t at = 0, ns = 0;
		uint64_t n = vsrh_sm_turn_commits(sm, &at, &ns);
		CHECK(n == n0 + 1 && at == op, "checkpoint at op %llu: not committed in its turn",
		      (unsigned long long)op);
		/* What the host logs now. */
		uint64_t logged = ns;
		vsrh_sm_settle(sm);
		vsrh_sm_turn_commits(sm, &at, &ns);
		CHECK(logged > 0 && logged <= ns,
		      "checkpoint at op %llu: the figure read right after its step is %llu ns, its own "
		      "(after the pick-up) %llu ns: the host logs another commit's",
		      (unsigned long long)op, (unsigned long long)logged, (unsigned long long)ns);
		vsrh_sm_on_checkpoint_durable(sm, NULL, NULL);
	}
	vsrh_sm_destroy(sm);
	return st_end(dir, &cfg, "the turn commit's figure is its own");
}
