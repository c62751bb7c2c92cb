/* test_sim_storage.c - the simulator's disk model: order, crash loss, torn and
 * corrupt tails, the log pruned under a named checkpoint, async checkpoints.
 *
 * The simulator is only as good as its fault model, so the model has its own
 * test: persists become durable only when completed and in order, a crash
 * drops what was pending, and a restart keeps exactly the verified chain. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static int failures;

#define CHECK(cond)                                                        \
	do {                                                                   \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,         \
				__LINE__, #cond);                                          \
			failures++;                                                    \
		}                                                                  \
	} while (0)

#define CLUSTER 77u

/* Entries first..last chained from `parent`, each with an 8-byte body. */
static void make_entries(vsr_entry *e, uint8_t (*bodies)[8], uint64_t first,
			 uint64_t last, uint64_t parent, uint64_t view)
{
	for (uint64_t op = first; op <= last; op++) {
		vsr_entry *x = &e[op - first];
		memset(x, 0, sizeof(*x));
		memset(bodies[op - first], (int)op, 8);
		x->op = op;
		x->view = view;
		x->parent = parent;
		x->timestamp = op * 1000;
		x->body = bodies[op - first];
		x->body_len = 8;
		x->checksum = vsr_entry_checksum(x);
		parent = x->checksum;
	}
}

static vsr_persist persist_of(uint64_t id, vsr_entry *e, uint32_t n,
			      uint64_t view, uint64_t commit)
{
	vsr_persist p;
	memset(&p, 0, sizeof(p));
	p.id = id;
	p.entries = e;
	p.entry_count = n;
	p.superblock.cluster = CLUSTER;
	p.superblock.view = view;
	p.superblock.log_view = view;
	p.superblock.commit = commit;
	return p;
}

static void test_order_and_crash(void)
{
	sim_storage st;
	sim_storage_init(&st, CLUSTER);
	vsr_entry e[6];
	uint8_t b[6][8];
	make_entries(e, b, 1, 6, vsr_root_checksum(CLUSTER), 1);
	vsr_persist p1 = persist_of(1, e, 3, 1, 0);
	vsr_persist p2 = persist_of(2, e + 3, 3, 2, 2);
	CHECK(sim_storage_push(&st, &p1, 10));
	/* asked to finish earlier than the one ahead of it: still after it */
	CHECK(sim_storage_push(&st, &p2, 5));
	CHECK(st.q[(st.q_head + 1) % st.q_cap].done_at == 10);
	/* the caller's buffers may die at once: the queue holds copies */
	memset(b, 0xee, sizeof(b));
	CHECK(sim_storage_head(&st)->p.id == 1);
	sim_storage_complete(&st);
	CHECK(st.sb.view == 1);
	CHECK(st.slot_end == 4);
	CHECK(st.slots[2].body[0] == 2);
	/* crash with p2 pending, cleanly: p2 is gone */
	sim_rng rng;
	sim_rng_seed(&rng, 1);
	CHECK(strcmp(sim_storage_crash(&st, &rng, false, false), "clean") == 0);
	CHECK(sim_storage_head(&st) == NULL);
	vsr_durable d;
	sim_storage_load(&st, CLUSTER, &d);
	CHECK(d.superblock.view == 1);
	CHECK(d.entry_count == 3);
	CHECK(d.entry_count == 3 && d.entries[2].op == 3);
	sim_storage_free(&st);
}

static void test_torn_and_corrupt(void)
{
	for (int mode = 0; mode < 2; mode++) {
		for (uint64_t seed = 1; seed <= 50; seed++) {
			sim_storage st;
			sim_storage_init(&st, CLUSTER);
			vsr_entry e[8];
			uint8_t b[8][8];
			make_entries(e, b, 1, 8, vsr_root_checksum(CLUSTER), 1);
			vsr_persist p1 = persist_of(1, e, 4, 1, 0);
			vsr_persist p2 = persist_of(2, e + 4, 4, 1, 3);
			CHECK(sim_storage_push(&st, &p1, 1));
			CHECK(sim_storage_push(&st, &p2, 2));
			sim_storage_complete(&st);
			sim_rng rng;
			sim_rng_seed(&rng, seed);
			const char *what = sim_storage_crash(&st, &rng, mode == 0, mode == 1);
			CHECK(strcmp(what, mode == 0 ? "torn" : "corrupt") == 0);
			vsr_durable d;
			sim_storage_load(&st, CLUSTER, &d);
			/* the superblock of p2 never landed */
			CHECK(d.superblock.commit == 0);
			/* everything p1 wrote survives; of p2 only a verified prefix */
			CHECK(d.entry_count >= 4 && d.entry_count <= 8);
			if (mode == 1)
				CHECK(d.entry_count < 8);
			uint64_t parent = vsr_root_checksum(CLUSTER);
			for (uint32_t i = 0; i < d.entry_count; i++) {
				CHECK(d.entries[i].op == i + 1);
				CHECK(d.entries[i].parent == parent);
				CHECK(vsr_entry_checksum(&d.entries[i]) == d.entries[i].checksum);
				parent = d.entries[i].checksum;
			}
			sim_storage_free(&st);
		}
	}
}

static void test_truncate(void)
{
	sim_storage st;
	sim_storage_init(&st, CLUSTER);
	vsr_entry e[5], f[2];
	uint8_t b[5][8], c[2][8];
	make_entries(e, b, 1, 5, vsr_root_checksum(CLUSTER), 1);
	vsr_persist p1 = persist_of(1, e, 5, 1, 0);
	CHECK(sim_storage_push(&st, &p1, 1));
	sim_storage_complete(&st);
	/* a new view replaces ops 4 and 5 */
	make_entries(f, c, 4, 5, e[2].checksum, 2);
	vsr_persist p2 = persist_of(2, f, 2, 2, 3);
	p2.has_truncate = true;
	p2.truncate_after = 3;
	CHECK(sim_storage_push(&st, &p2, 2));
	sim_storage_complete(&st);
	vsr_durable d;
	sim_storage_load(&st, CLUSTER, &d);
	CHECK(d.entry_count == 5);
	CHECK(d.entry_count == 5 && d.entries[3].view == 2 && d.entries[4].view == 2);
	sim_storage_free(&st);
}

/* Once a superblock names a checkpoint, the log at or below it is gone (as
 * real storage prunes its segments), and a restart reads only after it. */
static void test_prune_below_checkpoint(void)
{
	sim_storage st;
	sim_storage_init(&st, CLUSTER);
	vsr_entry e[6];
	uint8_t b[6][8];
	make_entries(e, b, 1, 6, vsr_root_checksum(CLUSTER), 1);
	vsr_persist p1 = persist_of(1, e, 6, 1, 6);
	CHECK(sim_storage_push(&st, &p1, 1));
	sim_storage_complete(&st);
	CHECK(st.slots[3].present && st.slots[4].present);
	vsr_persist p2 = persist_of(2, NULL, 0, 1, 6);
	p2.superblock.checkpoint_op = 4;
	p2.superblock.checkpoint_checksum = e[3].checksum;
	CHECK(sim_storage_push(&st, &p2, 2));
	sim_storage_complete(&st);
	for (uint64_t op = 1; op <= 4; op++)
		CHECK(!st.slots[op].present);
	CHECK(st.slots[5].present && st.slots[6].present);
	vsr_durable d;
	sim_storage_load(&st, CLUSTER, &d);
	CHECK(d.entry_count == 2 && d.entries[0].op == 5);
	sim_storage_free(&st);
}

/* A one-word state machine for the checkpoint images. */
static int word_snapshot(void *ctx, vsr_buf *out)
{
	return vsr_buf_append(out, ctx, sizeof(uint64_t));
}

static int word_restore(void *ctx, const uint8_t *data, size_t len)
{
	if (len != sizeof(uint64_t))
		return VSR_ECORRUPT;
	memcpy(ctx, data, len);
	return VSR_OK;
}

static uint64_t open_op(vsr_snapckpt *ck, uint64_t *word)
{
	vsr_state_machine sm;
	vsr_snapckpt_machine(ck, &sm);
	vsr_checkpoint cp;
	vsr_buf meta = {0};
	*word = 0;
	CHECK(sm.checkpoint_open(sm.ctx, &cp, &meta) == VSR_OK);
	vsr_buf_free(&meta);
	return cp.op;
}

/* Async checkpoints: a take is pending until synced, a crash loses it (the
 * durable one before comes back), a second take syncs the first. */
static void test_async_checkpoints(void)
{
	sim_storage st;
	sim_storage_init(&st, CLUSTER);
	uint64_t word = 0;
	vsr_state_machine inner = {.ctx = &word, .snapshot = word_snapshot,
				   .restore = word_restore};
	vsr_snapckpt_init(&st.ck, &inner);
	vsr_state_machine sm;
	vsr_snapckpt_machine(&st.ck, &sm);
	vsr_checkpoint cp = {.op = 8, .checksum = 1};
	/* synchronous: durable on return */
	word = 8;
	CHECK(sm.checkpoint_take(sm.ctx, &cp, NULL, 0) == VSR_OK);
	CHECK(vsr_snapckpt_durable_op(&st.ck) == 8 && vsr_snapckpt_pending(&st.ck) == 0);
	st.ck.async = true;
	word = 16;
	cp = (vsr_checkpoint){.op = 16, .checksum = 2};
	CHECK(sm.checkpoint_take(sm.ctx, &cp, NULL, 0) == VSR_PENDING);
	CHECK(vsr_snapckpt_pending(&st.ck) == 16 && vsr_snapckpt_durable_op(&st.ck) == 8);
	CHECK(sim_storage_checkpoint_op(&st) == 8);
	/* readable (served) while pending */
	vsr_buf out = {0};
	CHECK(sm.checkpoint_read(sm.ctx, &cp, 0, 64, &out) == VSR_OK && out.len == cp.size);
	vsr_buf_free(&out);
	/* a crash before the sync: checkpoint 8 is back */
	sim_rng rng;
	sim_rng_seed(&rng, 1);
	sim_storage_crash(&st, &rng, false, false);
	CHECK(vsr_snapckpt_pending(&st.ck) == 0 && vsr_snapckpt_durable_op(&st.ck) == 8);
	CHECK(open_op(&st.ck, &word) == 8 && word == 8);
	/* two takes: the second syncs the first before it is taken */
	cp = (vsr_checkpoint){.op = 16, .checksum = 2};
	CHECK(sm.checkpoint_take(sm.ctx, &cp, NULL, 0) == VSR_PENDING);
	cp = (vsr_checkpoint){.op = 24, .checksum = 3};
	CHECK(sm.checkpoint_take(sm.ctx, &cp, NULL, 0) == VSR_PENDING);
	CHECK(st.ck.waits == 1 && st.ck.takes == 4);
	CHECK(vsr_snapckpt_pending(&st.ck) == 24 && vsr_snapckpt_durable_op(&st.ck) == 16);
	sim_storage_crash(&st, &rng, false, false);
	CHECK(open_op(&st.ck, &word) == 16);
	/* synced: a crash keeps it */
	cp = (vsr_checkpoint){.op = 24, .checksum = 3};
	CHECK(sm.checkpoint_take(sm.ctx, &cp, NULL, 0) == VSR_PENDING);
	CHECK(vsr_snapckpt_sync(&st.ck) == VSR_OK);
	CHECK(vsr_snapckpt_pending(&st.ck) == 0 && vsr_snapckpt_durable_op(&st.ck) == 24);
	sim_storage_crash(&st, &rng, false, false);
	CHECK(open_op(&st.ck, &word) == 24);
	sim_storage_free(&st);
}

int main(void)
{
	test_order_and_crash();
	test_torn_and_corrupt();
	test_truncate();
	test_prune_below_checkpoint();
	test_async_checkpoints();
	if (failures) {
		fprintf(stderr, "test_sim_storage: %d checks failed\n", failures);
		return 1;
	}
	printf("test_sim_storage: all checks passed\n");
	return 0;
}
