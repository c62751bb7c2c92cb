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
 * next commit, and compared with copies made when each was taken. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
	char dir[] = "/tmp/vsr-older-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	vsrh_sm *sm = st_create(&cfg, dir, true, true);
	if (sm == NULL)
		return st_end(dir, &cfg, NULL);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
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
