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
	vsrh_touch_disarm(t);
	if (t->off || base == 0 || psize == 0)
		return;
	size_t npages = len / psize, words = (npages + 63) / 64;
	if (words > t->words) {
		uint64_t *b = realloc(t->bits, words * sizeof *b);
		uint64_t *w = b != NULL ? realloc(t->warm, words * sizeof *w) : NULL;
		if (b != NULL)
			t->bits = b;
		if (w == NULL)
			return; /* nothing noted: the commit faults as it would */
		t->warm = w;
		t->words = words;
	}
	memset(t->bits, 0, words * sizeof *t->bits);
	memset(t->warm, 0, words * sizeof *t->warm);
	t->npages = npages;
	t->base = base;
	t->psize = psize;
	t->syncs = syncs;
	t->noting = true;
	t->cleaned = false; /* a new interval */
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

void vsrh_touch_warm(vsrh_touch *t, uint64_t ops_left)
{
	if (t->warm_pending == 0 || ops_left == 0 || ops_left > VSRH_WARM_OPS)
		return;
	size_t n = (size_t)((t->warm_pending + ops_left - 1) / ops_left);
	size_t words = (t->npages + 63) / 64, w = t->warm_next / 64;
	uint8_t sum = 0;
	while (n > 0 && w < words) {
		uint64_t word = t->warm[w];
		while (word != 0 && n > 0) {
			size_t pg = w * 64 + (size_t)__builtin_ctzll(word);
			word &= word - 1;
			t->warm[w] &= ~((uint64_t)1 << (pg % 64));
			void *at = (void *)(t->base + pg * t->psize);
			if (t->cleaned && !t->off &&
			    madvise(at, t->psize, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
				t->off = true; /* a kernel without it: reads, as before */
			/* A read: the header's cache line and the page's PTE. */
			sum += *(volatile const uint8_t *)at;
			t->warm_pending--;
			n--;
		}
		if (word == 0)
			w++;
	}
	t->warm_next = w * 64;
	if (w >= words)
		t->warm_pending = 0; /* cannot happen: every noted page is at or after warm_next */
	(void)sum;
}

void vsrh_touch_disarm(vsrh_touch *t)
{
	t->noting = false;
	t->pending = 0;
	t->next = 0;
	t->npages = 0;
	t->warm_pending = 0;
	t->warm_next = 0;
	t->cleaned = false;
}

void vsrh_touch_free(vsrh_touch *t)
{
	free(t->warm);
	free(t->bits);
	memset(t, 0, sizeof *t);
}
