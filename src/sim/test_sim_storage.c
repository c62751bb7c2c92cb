/* test_sim_storage.c - the simulator's disk model: order, crash loss, torn and corrupt tails.
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

int main(void)
{
	test_order_and_crash();
	test_torn_and_corrupt();
	test_truncate();
	if (failures) {
		fprintf(stderr, "test_sim_storage: %d checks failed\n", failures);
		return 1;
	}
	printf("test_sim_storage: all checks passed\n");
	return 0;
}
