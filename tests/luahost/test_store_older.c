/* test_store_older.c - the checkpoints a durable vsr.store serves to state
 * transfers (the newest and the one before, held open as LMDB read
 * transactions) read byte for byte as when they were taken, while the
 * next interval rewrites every key and the next checkpoint's commit runs
 * on the syncer's thread.
 *
 * The environment has no lock file (MDB_NOLOCK, vsrh_store.c env_try_open),
 * so LMDB sees no reader: a write transaction reuses the pages freed by
 * any commit up to the newest one's predecessor (mdb_find_oldest returns
 * its own id - 1). The read transactions stay intact only while the older
 * one is at most one commit behind the newest, i.e. while each interval
 * is exactly one commit. An extra commit in the live environment between
 * two checkpoints (a future meta record, say) would let the next
 * interval's writes overwrite the older checkpoint's pages while it is
 * still served: its image then differs here, or its read stops the
 * replica on a damaged record.
 *
 * Every round rewrites the keys with new values (kv_put_round), so the
 * freed pages are reused; the images are read back before and during the
 * next commit, and compared with copies made when each was taken.
 *
 * With --turnfig: the figure the host logs for a checkpoint committed in
 * this replica's turn ("checkpoint at op N committed in this
 * replica's turn (the step that took it: X ms)", host_note_turn_commit)
 * is that commit's, read right after the step that made it, as the host
 * reads it (vsrh_sm_turn_commits).
 *
 * Since the commit left the loop (ckpt_hand_off), the step hands the write
 * transaction to the syncer's thread and the loop's part of it (hand-over
 * and pick-up) was written into step_last_ns only at the pick-up
 * (commit_pickup), after the host had logged: the log line carried the
 * previous checkpoint's figure (0.0 ms for the first). The hand-over now
 * sets it (ckpt_hand_off), and the pick-up adds its own part. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_op.h"
#include "store_test.h"

#define KEYS 3000
#define ROUNDS 7

static bool image_of(vsr_state_machine *m, const vsr_checkpoint *cp, vsr_buf *out)
{
	out->len = 0;
	int rc = m->checkpoint_read(m->ctx, cp, 0, (uint32_t)cp->size, out);
	CHECK(rc == VSR_OK && out->len == cp->size, "checkpoint at op %llu: read %d, %zu of %llu bytes",
	      (unsigned long long)cp->op, rc, out->len, (unsigned long long)cp->size);
	return rc == VSR_OK && out->len == cp->size;
}

/* cp's image read now is the copy made when it was taken. */
static void image_same(vsr_state_machine *m, const vsr_checkpoint *cp, const vsr_buf *was,
		       const char *when)
{
	vsr_buf now = {0};
	if (image_of(m, cp, &now))
		CHECK(now.len == was->len && memcmp(now.data, was->data, now.len) == 0,
		      "checkpoint at op %llu: its image changed (%s)", (unsigned long long)cp->op,
		      when);
	free(now.data);
}

/* --turnfig: commits in this replica's turn, each figure read right after
 * its step as the host reads it, then after its pick-up. */
static void turnfig(vsrh_sm *sm, vsr_state_machine *mm)
{
	vsr_state_machine m = *mm;
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
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/vsr-older-XXXXXX";
	vsrh_config cfg;
	vsr_state_machine m;
	bool started;
	vsrh_sm *sm = st_begin_durable(&cfg, dir, &m, &started);
	if (sm == NULL)
		return started ? st_end(dir, &cfg, NULL) : 1;
	if (argc > 1 && strcmp(argv[1], "--turnfig") == 0) {
		turnfig(sm, &m);
		vsrh_sm_destroy(sm);
		return st_end(dir, &cfg, "the turn commit's figure is its own");
	}
	uint64_t op = 0;
	vsr_checkpoint cp[ROUNDS];
	vsr_buf img[ROUNDS];
	memset(img, 0, sizeof img);
	for (int r = 0; r < ROUNDS && failures == 0; r++) {
		vsr_state_machine *mm = &m;
		int refused = kv_put_round(mm, KEYS, r, &op);
		CHECK(refused == 0, "%d puts of round %d refused", refused, r);
		/* The interval's writes are in LMDB's write transaction: the
		 * two checkpoints served are unchanged. */
		if (r >= 2)
			image_same(mm, &cp[r - 2], &img[r - 2], "the one before the newest");
		if (r >= 1)
			image_same(mm, &cp[r - 1], &img[r - 1], "the newest");
		static const uint8_t meta[8];
		cp[r] = (vsr_checkpoint){.op = op, .checksum = op * 31, .timestamp = op};
		int rc = mm->checkpoint_take(mm->ctx, &cp[r], meta, sizeof meta);
		CHECK(rc == VSR_PENDING, "take at op %llu: %d", (unsigned long long)op, rc);
		/* Taken: its commit runs on the syncer's thread now, and the
		 * one before is served meanwhile (read while LMDB commits). */
		if (r >= 1)
			image_same(mm, &cp[r - 1], &img[r - 1], "while the next one commits");
		image_of(mm, &cp[r], &img[r]); /* (waits for the commit) */
		vsrh_sm_on_checkpoint_durable(sm, NULL, NULL); /* and its sync */
	}
	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	printf("%d rounds of %d keys, %llu commits made on the syncer's thread\n", ROUNDS, KEYS,
	       (unsigned long long)st.checkpoint_commits_off_loop);
	vsrh_sm_destroy(sm);
	for (int r = 0; r < ROUNDS; r++)
		free(img[r].data);
	return st_end(dir, &cfg, "the checkpoints served read as taken");
}
