/* vsrc_hist.c - log-linear latency histogram: bucket arithmetic and quantiles. */
#include "vsrc_hist.h"

#include <assert.h>
#include <math.h>
#include <string.h>

_Static_assert(VSRC_HIST_SUB_BITS >= 1 && VSRC_HIST_SUB_BITS <= 16,
	       "sub-bucket precision out of range");

static unsigned hist_msb(uint64_t v)
{
	assert(v != 0);
	return 63u - (unsigned)__builtin_clzll(v);
}

uint32_t vsrc_hist_index(uint64_t value)
{
	if (value < 2u * VSRC_HIST_SUB)
		return (uint32_t)value;
	/* value >> shift lands in [SUB, 2 * SUB): its low SUB_BITS pick the
	 * sub-bucket inside the power of two. */
	unsigned shift = hist_msb(value) - VSRC_HIST_SUB_BITS;
	uint32_t sub = (uint32_t)(value >> shift) - VSRC_HIST_SUB;
	uint32_t index = (shift + 1u) * VSRC_HIST_SUB + sub;
	assert(index < VSRC_HIST_BUCKETS);
	return index;
}

uint64_t vsrc_hist_lowest(uint32_t index)
{
	assert(index < VSRC_HIST_BUCKETS);
	if (index < 2u * VSRC_HIST_SUB)
		return index;
	unsigned shift = index / VSRC_HIST_SUB - 1u;
	uint64_t sub = index % VSRC_HIST_SUB;
	return (VSRC_HIST_SUB + sub) << shift;
}

uint64_t vsrc_hist_highest(uint32_t index)
{
	if (index + 1u == VSRC_HIST_BUCKETS)
		return UINT64_MAX;
	return vsrc_hist_lowest(index + 1u) - 1u;
}

void vsrc_hist_init(vsrc_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void vsrc_hist_record(vsrc_hist *h, uint64_t value)
{
	h->buckets[vsrc_hist_index(value)]++;
	h->count++;
	h->sum += (double)value;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
}

void vsrc_hist_merge(vsrc_hist *into, const vsrc_hist *from)
{
	if (from->count == 0)
		return;
	for (uint32_t i = 0; i < VSRC_HIST_BUCKETS; i++)
		into->buckets[i] += from->buckets[i];
	into->count += from->count;
	into->sum += from->sum;
	if (from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
}

uint64_t vsrc_hist_quantile(const vsrc_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	if (q <= 0.0)
		return h->min;
	if (q >= 1.0)
		return h->max;
	/* Rank of the sample wanted, 1-based: at least 1, at most count. */
	double r = ceil(q * (double)h->count);
	uint64_t rank = r < 1.0 ? 1u : (uint64_t)r;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < VSRC_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = vsrc_hist_highest(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	assert(0 && "bucket counts disagree with count");
	return h->max;
}

double vsrc_hist_mean(const vsrc_hist *h)
{
	return h->count ? h->sum / (double)h->count : 0.0;
}
