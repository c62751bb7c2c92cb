/* test_store_touch.c - the pages a checkpoint's write-back cleaned are made
 * writable again (vsrh_store_touch.h): only once the write-back has ended,
 * at most `max` per call, each noted page once, contents unchanged; and a
 * touched page then takes no fault when written, while an untouched page
 * the write-back cleaned does (what the commit used to pay for each); the
 * pages are read in the last operations before the checkpoint.
 * Exits 77 (skipped) where that cannot be observed: a kernel without
 * MADV_POPULATE_WRITE, or a filesystem that does not write-protect pages
 * it wrote back (tmpfs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "test_check.h"
#include "vsrh_store_touch.h"

#define PAGES 64

static long faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Writes one byte of page pg with its own value; returns the faults taken. */
static long rewrite(uint8_t *map, size_t psize, size_t pg)
{
	long f0 = faults();
	volatile uint8_t *p = map + pg * psize + 100;
	*p = *p;
	return faults() - f0;
}

int main(void)
{
	size_t psize = (size_t)sysconf(_SC_PAGESIZE);
	char path[] = "build-test-store-touch-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || posix_fallocate(fd, 0, (off_t)(PAGES * psize)) != 0) {
		printf("FAIL: a file of %d pages: %s\n", PAGES, strerror(errno));
		return 1;
	}
	unlink(path);
	uint8_t *map = mmap(NULL, PAGES * psize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		printf("FAIL: mmap: %s\n", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < PAGES * psize; i++)
		map[i] = (uint8_t)(i * 7 + i / psize);
	/* The write-back: every page clean, and write-protected again. */
	msync(map, PAGES * psize, MS_SYNC);

	vsrh_touch t = {0};
	vsrh_touch_arm(&t, (uintptr_t)map, PAGES * psize, psize, 5);
	CHECK(t.noting, "armed: noting");
	size_t noted[] = {3, 4, 5, 40};
	for (size_t i = 0; i < 4; i++)
		vsrh_touch_note(&t, map + noted[i] * psize + 17);
	vsrh_touch_note(&t, map + 4 * psize);      /* again: once */
	vsrh_touch_note(&t, map - 1);              /* outside the map */
	vsrh_touch_note(&t, map + PAGES * psize); /* past it */
	CHECK(t.pending == 4, "4 pages pending, not %zu", t.pending);
	/* Read before the checkpoint: only in its last VSRH_WARM_OPS operations,
	 * a share of the pages at each. */
	CHECK(t.warm_pending == 4, "4 pages to read, not %zu", t.warm_pending);
	vsrh_touch_warm(&t, VSRH_WARM_OPS + 1);
	CHECK(t.warm_pending == 4, "none read %u operations before", VSRH_WARM_OPS + 1);
	vsrh_touch_warm(&t, 2);
	CHECK(t.warm_pending == 2, "half read 2 operations before (%zu left)", t.warm_pending);
	vsrh_touch_warm(&t, 1);
	CHECK(t.warm_pending == 0, "all read at the checkpoint's own (%zu left)", t.warm_pending);

	vsrh_touch_step(&t, 5, 32); /* the write-back still runs */
	CHECK(t.touched == 0 && t.pending == 4 && t.noting,
	      "nothing touched while the write-back runs (%lu touched)", (unsigned long)t.touched);
	vsrh_touch_step(&t, 6, 2); /* it ended: at most 2 */
	if (t.off) {
		printf("SKIP: the kernel has no MADV_POPULATE_WRITE\n");
		return 77;
	}
	CHECK(!t.noting, "no more noting once the write-back ended");
	CHECK(t.touched == 2 && t.pending == 2, "2 touched, 2 pending (not %lu, %zu)",
	      (unsigned long)t.touched, t.pending);
	vsrh_touch_note(&t, map + 20 * psize); /* written after the write-back: not noted */
	vsrh_touch_step(&t, 6, 32);
	CHECK(t.touched == 4 && t.pending == 0, "4 touched in all, none pending (%lu, %zu)",
	      (unsigned long)t.touched, t.pending);

	/* Contents unchanged. */
	size_t bad = 0;
	for (size_t i = 0; i < PAGES * psize; i++)
		bad += map[i] != (uint8_t)(i * 7 + i / psize);
	CHECK(bad == 0, "%zu bytes changed", bad);

	/* The teeth: a cleaned page that was not touched faults when written. */
	long untouched = rewrite(map, psize, 10);
	if (untouched == 0) {
		printf("SKIP: this filesystem does not write-protect pages it wrote back\n");
		return 77;
	}
	/* The kernel may write the touched pages back (and write-protect them)
	 * before they are written here, under another test's write load: a
	 * fault then says nothing of the touch, so the round is done again
	 * (clean, touch, write), up to 5 times. Without the touch every round
	 * faults. */
	long touched = 0;
	for (int round = 0; round < 5; round++) {
		if (round > 0) {
			msync(map, PAGES * psize, MS_SYNC);
			vsrh_touch again = {0};
			vsrh_touch_arm(&again, (uintptr_t)map, PAGES * psize, psize, 1);
			for (size_t i = 0; i < 4; i++)
				vsrh_touch_note(&again, map + noted[i] * psize + 17);
			vsrh_touch_step(&again, 2, 32);
			vsrh_touch_free(&again);
		}
		touched = 0;
		for (size_t i = 0; i < 4; i++)
			touched += rewrite(map, psize, noted[i]);
		if (touched == 0)
			break;
		printf("round %d: the touched pages took %ld faults (written back meanwhile?)\n",
		       round + 1, touched);
	}
	CHECK(touched == 0, "the touched pages took %ld faults when written, in 5 rounds", touched);

	vsrh_touch_free(&t);
	munmap(map, PAGES * psize);
	close(fd);
	if (failures == 0)
		printf("ok: noted pages made writable once the write-back ended, %d at most per "
		       "call, contents unchanged; an untouched cleaned page took %ld fault(s)\n",
		       2, untouched);
	return failures ? 1 : 0;
}
