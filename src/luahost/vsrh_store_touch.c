/* vsrh_store_touch.c - pages written during a checkpoint's write-back made
 * writable again a few at a time (vsrh_store_touch.h). */
#define _GNU_SOURCE
#include "vsrh_store_touch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

void vsrh_touch_arm(vsrh_touch *t, uintptr_t base, size_t len, size_t psize, uint64_t syncs)
{
	t->noting = false;
	t->pending = 0;
	t->next = 0;
	if (t->off || base == 0 || psize == 0)
		return;
	size_t npages = len / psize, words = (npages + 63) / 64;
	if (words > t->words) {
		uint64_t *b = realloc(t->bits, words * sizeof *b);
		if (b == NULL)
			return; /* nothing noted: the commit faults as it would */
		t->bits = b;
		t->words = words;
	}
	memset(t->bits, 0, words * sizeof *t->bits);
	t->npages = npages;
	t->base = base;
	t->psize = psize;
	t->syncs = syncs;
	t->noting = true;
}

void vsrh_touch_step(vsrh_touch *t, uint64_t syncs, size_t max)
{
	if (t->noting) {
		if (syncs <= t->syncs)
			return; /* still written back: a page made writable now could be cleaned again */
		t->noting = false;
	}
	size_t done = 0;
	while (t->pending > 0 && done < max) {
		/* The next run of noted pages, from t->next on. */
		size_t w = t->next / 64;
		uint64_t word = t->bits[w] & (~(uint64_t)0 << (t->next % 64));
		while (word == 0 && w + 1 < (t->npages + 63) / 64)
			word = t->bits[++w];
		if (word == 0) { /* cannot happen: every noted page is at or after next */
			t->pending = 0;
			break;
		}
		size_t first = w * 64 + (size_t)__builtin_ctzll(word), end = first;
		while (end < t->npages && end - first < max - done &&
		       (t->bits[end / 64] >> (end % 64) & 1u)) {
			t->bits[end / 64] &= ~((uint64_t)1 << (end % 64));
			end++;
		}
		t->next = end;
		t->pending -= end - first;
		done += end - first;
		if (madvise((void *)(t->base + first * t->psize), (end - first) * t->psize,
			    MADV_POPULATE_WRITE) != 0 &&
		    errno == EINVAL) {
			/* A kernel without it (or a map it refuses): never again. */
			t->off = true;
			t->pending = 0;
		}
	}
	t->touched += done;
}

void vsrh_touch_disarm(vsrh_touch *t)
{
	t->noting = false;
	t->pending = 0;
}

void vsrh_touch_free(vsrh_touch *t)
{
	free(t->bits);
	memset(t, 0, sizeof *t);
}
