/* vsrh_store_touch.h - keeps a checkpoint's commit free of page faults.
 *
 * With MDB_WRITEMAP a commit clears a flag in every page the transaction
 * dirtied (LMDB's mdb_page_flush). The syncer writes the previous
 * checkpoint back while the next transaction already dirties pages of the
 * same file: every page it dirtied before the write-back ends is cleaned
 * too, and the kernel write-protects it, so the commit takes a write fault
 * (ext4's page_mkwrite, ~2 us) on each one that was not written again: with
 * 1,000,000 keys, thousands of faults in one step (~60% of the commit).
 *
 * The store notes the page of each record it writes while the write-back
 * runs; once it has ended, a few of those pages at a time are made writable
 * again (madvise MADV_POPULATE_WRITE: a write fault without a write, the
 * contents untouched), after each operation, so the faults are spread over
 * the interval instead of landing in the checkpoint's step. Pages noted
 * wrongly (a record that moved) only cost a fault; pages missed fault at
 * the commit as before. Nothing here changes what is stored. */
#ifndef VSRH_STORE_TOUCH_H
#define VSRH_STORE_TOUCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pages made writable after one operation, at most (~2 us each). */
#define VSRH_TOUCH_PER_OP 32u

typedef struct vsrh_touch {
	uint64_t *bits;   /* one per page of the synced range: noted, not yet touched */
	size_t words;     /* allocated */
	size_t npages;    /* pages in the range */
	uintptr_t base;   /* the map's address */
	size_t psize;     /* its page size */
	size_t next;      /* the first page that may be pending */
	size_t pending;   /* pages noted and not yet touched */
	bool noting;      /* the write-back runs: note pages */
	bool off;         /* unsupported (the kernel has no MADV_POPULATE_WRITE) */
	uint64_t syncs;   /* the syncer's count of syncs when it started */
	uint64_t touched; /* pages made writable, in all (figures) */
} vsrh_touch;

/* At a checkpoint, the write-back of bytes [0, len) of the map at base
 * starting: forgets what is pending and notes from now on. syncs: the
 * syncer's count before this write-back (it ends when the count passes). */
void vsrh_touch_arm(vsrh_touch *t, uintptr_t base, size_t len, size_t psize, uint64_t syncs);
/* Notes the page holding p (in the map), while noting. */
static inline void vsrh_touch_note(vsrh_touch *t, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (!t->noting || a < t->base)
		return;
	size_t pg = (a - t->base) / t->psize;
	if (pg >= t->npages || (t->bits[pg / 64] >> (pg % 64) & 1u))
		return;
	t->bits[pg / 64] |= (uint64_t)1 << (pg % 64);
	t->pending++;
}
/* After an operation: syncs is the syncer's count now. Once the write-back
 * has ended, stops noting and makes up to `max` pending pages writable. */
void vsrh_touch_step(vsrh_touch *t, uint64_t syncs, size_t max);
/* Stops noting and forgets what is pending (a map about to move). */
void vsrh_touch_disarm(vsrh_touch *t);
void vsrh_touch_free(vsrh_touch *t);

#endif /* VSRH_STORE_TOUCH_H */
