/* vsrc_hist.h - a small log-linear latency histogram (HDR-like), for vsrbench.
 *
 * Values (nanoseconds, or any unsigned unit) below 2 * VSRC_HIST_SUB are
 * counted exactly; above that every power of two is split into VSRC_HIST_SUB
 * equal buckets, so a recorded value is known within 1/VSRC_HIST_SUB (0.8%)
 * of itself. The whole uint64 range is covered; the table is static (about
 * 60 KiB), so recording never allocates and never fails. */
#ifndef VSRC_HIST_H
#define VSRC_HIST_H

#include <stdint.h>

#define VSRC_HIST_SUB_BITS 7u
#define VSRC_HIST_SUB (1u << VSRC_HIST_SUB_BITS)
/* Shifts 0 .. 63 - SUB_BITS, plus the exact first range. */
#define VSRC_HIST_BUCKETS ((64u - VSRC_HIST_SUB_BITS + 1u) * VSRC_HIST_SUB)

typedef struct vsrc_hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	double sum;
	uint64_t buckets[VSRC_HIST_BUCKETS];
} vsrc_hist;

void vsrc_hist_init(vsrc_hist *h);
void vsrc_hist_record(vsrc_hist *h, uint64_t value);
/* Adds every count of `from` into `into`. */
void vsrc_hist_merge(vsrc_hist *into, const vsrc_hist *from);
/* The value at quantile q (0 <= q <= 1): the highest value equivalent to the
 * bucket holding the ceil(q * count)-th smallest sample, clamped to
 * [min, max]. 0 when empty. */
uint64_t vsrc_hist_quantile(const vsrc_hist *h, double q);
double vsrc_hist_mean(const vsrc_hist *h);

/* Bucket arithmetic, exposed for tests. */
uint32_t vsrc_hist_index(uint64_t value);
uint64_t vsrc_hist_lowest(uint32_t index);
uint64_t vsrc_hist_highest(uint32_t index);

#endif /* VSRC_HIST_H */
