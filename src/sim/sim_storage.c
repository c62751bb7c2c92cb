/* sim_storage.c - simulated storage: a FIFO of persists over a durable image.
 *
 * A persist action of the core is copied (its pointers die at the next step)
 * and queued; it becomes durable at its completion tick, strictly in issue
 * order, and only then is it applied to the image: truncate, entries,
 * superblock, as vsr.h specifies; then, as real storage prunes its
 * segments, the entries at or below the superblock's checkpoint are
 * dropped: a checkpoint named too early really loses the log under it.
 * Checkpoints are the state machine's, kept in the image's vsr_snapckpt:
 * written at once, durable at once or (async mode) when the simulator syncs
 * them. A crash throws the queue away and a checkpoint not yet durable.
 * Optionally the crash leaves part of the first pending write on disk: a
 * prefix of its entries (torn) or its entries with one of them damaged
 * (corrupt). Neither touches the superblock, which real storage keeps in two
 * checksummed copies. A restart reads the image back and keeps only the
 * entries it can verify: contiguous after the checkpoint, each matching its
 * own checksum and chained to its parent. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_storage_init(sim_storage *st, uint64_t cluster)
{
	memset(st, 0, sizeof(*st));
	st->sb.cluster = cluster;
}

static void pending_free(sim_pending *p)
{
	free(p->entries);
	free(p->blob);
	memset(p, 0, sizeof(*p));
}

static void slots_clear_from(sim_storage *st, uint64_t op)
{
	for (uint64_t i = op; i < st->slot_end; i++) {
		if (st->slots[i].present) {
			free(st->slots[i].body);
			st->slots[i].body = NULL;
			st->slots[i].present = false;
		}
	}
	if (op < st->slot_end)
		st->slot_end = op;
}

void sim_storage_free(sim_storage *st)
{
	while (st->q_count) {
		pending_free(&st->q[st->q_head]);
		st->q_head = (st->q_head + 1) % st->q_cap;
		st->q_count--;
	}
	free(st->q);
	slots_clear_from(st, 0);
	free(st->slots);
	vsr_snapckpt_free(&st->ck);
	free(st->load_entries);
	memset(st, 0, sizeof(*st));
}

bool sim_storage_push(sim_storage *st, const vsr_persist *p, uint64_t done_at)
{
	if (st->q_count == st->q_cap) {
		if (st->q_cap >= SIM_PERSISTS_MAX)
			return false;
		uint32_t cap = st->q_cap ? st->q_cap * 2 : 16;
		sim_pending *q = sim_xcalloc(cap, sizeof(sim_pending));
		for (uint32_t i = 0; i < st->q_count; i++)
			q[i] = st->q[(st->q_head + i) % st->q_cap];
		free(st->q);
		st->q = q;
		st->q_cap = cap;
		st->q_head = 0;
	}
	sim_pending *d = &st->q[(st->q_head + st->q_count) % st->q_cap];
	memset(d, 0, sizeof(*d));
	d->p = *p;
	d->entries = sim_entries_clone(p->entries, p->entry_count, &d->blob);
	d->p.entries = d->entries;
	/* in order: never before the persist issued ahead of it */
	if (done_at < st->last_done_at)
		done_at = st->last_done_at;
	st->last_done_at = done_at;
	d->done_at = done_at;
	st->q_count++;
	return true;
}

sim_pending *sim_storage_head(sim_storage *st)
{
	return st->q_count ? &st->q[st->q_head] : NULL;
}

static void image_put_entry(sim_storage *st, const vsr_entry *e)
{
	if (e->op >= st->slot_cap) {
		uint64_t cap = st->slot_cap ? st->slot_cap : 256;
		while (cap <= e->op)
			cap *= 2;
		st->slots = sim_xrealloc(st->slots, cap * sizeof(sim_slot));
		memset(st->slots + st->slot_cap, 0,
		       (cap - st->slot_cap) * sizeof(sim_slot));
		st->slot_cap = cap;
	}
	sim_slot *s = &st->slots[e->op];
	free(s->body);
	s->present = true;
	s->e = *e;
	s->body = NULL;
	if (e->body_len) {
		s->body = sim_xmalloc(e->body_len);
		memcpy(s->body, e->body, e->body_len);
	}
	s->e.body = s->body;
	if (e->op + 1 > st->slot_end)
		st->slot_end = e->op + 1;
}

static void image_apply_entries(sim_storage *st, const vsr_persist *p,
				uint32_t count)
{
	if (p->has_truncate)
		slots_clear_from(st, p->truncate_after + 1);
	for (uint32_t i = 0; i < count; i++)
		image_put_entry(st, &p->entries[i]);
}

/* What real storage does once a superblock names a checkpoint (segments_
 * prune, storage_durable.c, at segment granularity): the log at or below it
 * is gone. */
static void image_prune(sim_storage *st)
{
	uint64_t end = st->sb.checkpoint_op + 1 < st->slot_end ? st->sb.checkpoint_op + 1
								  : st->slot_end;
	for (uint64_t op = st->pruned; op < end; op++) {
		if (st->slots[op].present) {
			free(st->slots[op].body);
			st->slots[op].body = NULL;
			st->slots[op].present = false;
		}
	}
	if (end > st->pruned)
		st->pruned = end;
}

void sim_storage_complete(sim_storage *st)
{
	sim_pending *d = sim_storage_head(st);
	if (!d)
		return;
	image_apply_entries(st, &d->p, d->p.entry_count);
	st->sb = d->p.superblock;
	image_prune(st);
	pending_free(d);
	st->q_head = (st->q_head + 1) % st->q_cap;
	st->q_count--;
}

const char *sim_storage_crash(sim_storage *st, sim_rng *rng, bool torn,
			      bool corrupt)
{
	const char *what = "clean";
	sim_pending *d = sim_storage_head(st);
	if (d && d->p.entry_count && (torn || corrupt)) {
		if (corrupt) {
			/* All entries reach the disk, one of them damaged. */
			image_apply_entries(st, &d->p, d->p.entry_count);
			uint32_t i = (uint32_t)sim_rng_below(rng, d->p.entry_count);
			sim_slot *s = &st->slots[d->p.entries[i].op];
			if (s->e.body_len && sim_rng_below(rng, 2)) {
				s->body[sim_rng_below(rng, s->e.body_len)] ^= 0x5a;
			} else {
				s->e.checksum ^= 1ull << sim_rng_below(rng, 64);
			}
			what = "corrupt";
		} else {
			uint32_t n = (uint32_t)sim_rng_below(rng, d->p.entry_count);
			image_apply_entries(st, &d->p, n);
			what = "torn";
		}
	}
	while (st->q_count) {
		pending_free(&st->q[st->q_head]);
		st->q_head = (st->q_head + 1) % st->q_cap;
		st->q_count--;
	}
	st->last_done_at = 0;
	/* A checkpoint whose sync had not finished is lost with the rest. */
	vsr_snapckpt_crash(&st->ck);
	return what;
}

uint64_t sim_storage_checkpoint_op(const sim_storage *st)
{
	uint64_t op = vsr_snapckpt_durable_op(&st->ck);
	return op > st->sb.checkpoint_op ? op : st->sb.checkpoint_op;
}

void sim_storage_load(sim_storage *st, uint64_t cluster, vsr_durable *out)
{
	memset(out, 0, sizeof(*out));
	out->superblock = st->sb;
	free(st->load_entries);
	st->load_entries = NULL;
	st->load_count = 0;
	uint64_t start = st->sb.checkpoint_op + 1;
	uint64_t parent = st->sb.checkpoint_op ? st->sb.checkpoint_checksum
					       : vsr_root_checksum(cluster);
	uint64_t n = 0;
	for (uint64_t op = start; op < st->slot_end; op++) {
		const sim_slot *s = &st->slots[op];
		if (!s->present || s->e.op != op || s->e.parent != parent ||
		    vsr_entry_checksum(&s->e) != s->e.checksum)
			break;
		parent = s->e.checksum;
		n++;
	}
	/* Entries past the first bad one are unreachable: cut them off the
	 * image too, as a real log would be truncated on open. */
	slots_clear_from(st, start + n);
	if (n) {
		st->load_entries = sim_xmalloc(n * sizeof(vsr_entry));
		for (uint64_t i = 0; i < n; i++)
			st->load_entries[i] = st->slots[start + i].e;
		st->load_count = (uint32_t)n;
	}
	out->entries = st->load_entries;
	out->entry_count = st->load_count;
}
