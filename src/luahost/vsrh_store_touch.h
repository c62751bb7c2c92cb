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
 * the commit as before.
 *
 * What the commit then still pays is a cache and TLB miss on the header
 * of each dirty page (150-700 ns a page on a busy virtual machine). The
 * pages of every record written in the interval are noted too, and in the
 * last VSRH_WARM_OPS operations before the checkpoint their first bytes are
 * read a slice at a time, so the commit finds them in the caches (with
 * 1,000,000 keys: a commit of 5-7 ms became 2 ms in vsrh_bench --pace).
 *
 * A cleaning between checkpoints (vsrh_syncer_clean) writes back, and so
 * write-protects, every page the transaction dirtied before it: then the
 * warm-up makes each writable again (MADV_POPULATE_WRITE) instead of
 * reading it, and the commit takes no fault on them (luahost_store_clean,
 * 568 pages: 534 faults and 0.50-0.59 ms before, 6-8 faults and 0.03 ms).
 * Only in the warm-up, not right after the cleaning: pages made dirty again
 * then would be the next cleaning's to write.
 * Nothing here changes what is stored. */
#ifndef VSRH_STORE_TOUCH_H
#define VSRH_STORE_TOUCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pages made writable after one operation, at most (~2 us each). */
#define VSRH_TOUCH_PER_OP 32u
/* Operations before a checkpoint over which its pages are read. */
#define VSRH_WARM_OPS 256u

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
	uint64_t *warm;   /* one per page: written in this interval, not yet read */
	size_t warm_pending, warm_next;
	bool cleaned;     /* a cleaning wrote the map back in this interval: warm by writing */
} vsrh_touch;

/* At a checkpoint, the write-back of bytes [0, len) of the map at base
 * starting: forgets what is pending and notes from now on. syncs: the
 * syncer's count before this write-back (it ends when the count passes). */
void vsrh_touch_arm(vsrh_touch *t, uintptr_t base, size_t len, size_t psize, uint64_t syncs);
/* Notes the page holding p (in the map), while noting. */
static inline void vsrh_touch_note(vsrh_touch *t, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (t->npages == 0 || a < t->base)
		return;
	size_t pg = (a - t->base) / t->psize;
	if (pg >= t->npages)
		return;
	uint64_t bit = (uint64_t)1 << (pg % 64);
	if (!(t->warm[pg / 64] & bit)) {
		t->warm[pg / 64] |= bit;
		t->warm_pending++;
	}
	if (t->noting && !(t->bits[pg / 64] & bit)) {
		t->bits[pg / 64] |= bit;
		t->pending++;
	}
}
/* After an operation: syncs is the syncer's count now. Once the write-back
 * has ended, stops noting and makes up to `max` pending pages writable. */
void vsrh_touch_step(vsrh_touch *t, uint64_t syncs, size_t max);
/* ops_left operations (this one included) before the next checkpoint:
 * within VSRH_WARM_OPS, reads the first byte of a share of the pages
 * written in the interval (makes them writable, once t->cleaned). */
void vsrh_touch_warm(vsrh_touch *t, uint64_t ops_left);
/* Stops noting and forgets what is pending (a map about to move). */
void vsrh_touch_disarm(vsrh_touch *t);
void vsrh_touch_free(vsrh_touch *t);

#endif /* VSRH_STORE_TOUCH_H */
