/* test_hist.c - the latency histogram: bucket arithmetic, precision, quantiles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "vsrc_hist.h"
#include "check.h"

static vsrc_hist h, h2;

static uint64_t next_random(uint64_t *state)
{
	/* splitmix64: a fixed, printed seed makes any failure reproducible. */
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_buckets(void)
{
	/* Every bucket's range maps back to it, and ranges tile the line. */
	for (uint32_t i = 0; i + 1 < VSRC_HIST_BUCKETS; i++) {
		uint64_t lo = vsrc_hist_lowest(i), hi = vsrc_hist_highest(i);
		CHECK(lo <= hi);
		CHECK(vsrc_hist_index(lo) == i);
		CHECK(vsrc_hist_index(hi) == i);
		CHECK(vsrc_hist_lowest(i + 1) == hi + 1);
		/* Relative width stays within 1/SUB. */
		if (lo >= VSRC_HIST_SUB)
			CHECK((double)(hi - lo) / (double)lo <= 1.0 / VSRC_HIST_SUB + 1e-12);
	}
	CHECK(vsrc_hist_index(0) == 0);
	CHECK(vsrc_hist_index(UINT64_MAX) == VSRC_HIST_BUCKETS - 1);
	CHECK(vsrc_hist_highest(VSRC_HIST_BUCKETS - 1) == UINT64_MAX);
}

static void test_quantiles(uint64_t seed)
{
	enum { N = 100000 };
	static uint64_t v[N];
	uint64_t state = seed;
	vsrc_hist_init(&h);
	vsrc_hist_init(&h2);
	CHECK(vsrc_hist_quantile(&h, 0.5) == 0);
	for (int i = 0; i < N; i++) {
		/* Log-uniform from 1 us to ~1 s in ns: latency-like spread. */
		double e = 3.0 + 6.0 * (double)(next_random(&state) >> 11) / 9007199254740992.0;
		v[i] = (uint64_t)pow(10.0, e);
		vsrc_hist_record(i % 2 ? &h : &h2, v[i]);
	}
	vsrc_hist_merge(&h, &h2);
	CHECK(h.count == N);
	qsort(v, N, sizeof(v[0]), cmp_u64);
	CHECK(h.min == v[0] && h.max == v[N - 1]);
	const double qs[] = { 0.5, 0.9, 0.99, 0.999, 0.9999 };
	for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
		uint64_t exact = v[(size_t)ceil(qs[k] * N) - 1];
		uint64_t got = vsrc_hist_quantile(&h, qs[k]);
		/* Never below the true value, at most one bucket above it. */
		CHECK(got >= exact);
		CHECK((double)(got - exact) <= (double)exact / VSRC_HIST_SUB + 1.0);
		if (got < exact || (double)(got - exact) > (double)exact / VSRC_HIST_SUB + 1.0)
			fprintf(stderr, "q=%g exact=%llu got=%llu\n", qs[k],
				(unsigned long long)exact, (unsigned long long)got);
	}
	CHECK(vsrc_hist_quantile(&h, 0.0) == v[0]);
	CHECK(vsrc_hist_quantile(&h, 1.0) == v[N - 1]);
	double mean = 0;
	for (int i = 0; i < N; i++)
		mean += (double)v[i];
	mean /= N;
	CHECK(fabs(vsrc_hist_mean(&h) - mean) <= mean * 1e-9);
}

static void test_small_exact(void)
{
	vsrc_hist_init(&h);
	for (uint64_t i = 1; i <= 100; i++)
		vsrc_hist_record(&h, i);
	/* Values below 2*SUB are exact. */
	CHECK(vsrc_hist_quantile(&h, 0.5) == 50);
	CHECK(vsrc_hist_quantile(&h, 0.99) == 99);
	CHECK(vsrc_hist_quantile(&h, 0.999) == 100);
	CHECK(vsrc_hist_quantile(&h, 0.01) == 1);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 0x5eed2026ull;
	printf("test_hist: seed %llu\n", (unsigned long long)seed);
	test_buckets();
	test_quantiles(seed);
	test_small_exact();
	if (failures) {
		fprintf(stderr, "test_hist: %d checks failed (seed %llu)\n", failures,
			(unsigned long long)seed);
		return 1;
	}
	printf("test_hist: all checks passed\n");
	return 0;
}
