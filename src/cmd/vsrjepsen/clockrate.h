/* clockrate.h - the control record shared by vsrjepsen and the clock-rate
 * shim (clockrate.c): how a replica's monotonic clock maps to the true one.
 *
 * One record at the start of a file the controller writes and the shim maps
 * read-only. fake(t) = t + (base_fake - base_real) + (t - base_real) *
 * rate_ppm / 1e6, for a true monotonic reading t. The controller changes the
 * rate only by moving the base to the moment of the change (vsrclock_set),
 * so fake time is continuous and never goes back; seq is odd while it
 * writes. */
#ifndef VSR_CLOCKRATE_H
#define VSR_CLOCKRATE_H

#include <stdatomic.h>
#include <stdint.h>

#define VSRCLOCK_MAGIC 0x76636c6bu /* "vclk" */

typedef struct vsrclock_ctl {
	uint32_t magic;
	_Atomic uint32_t seq;
	_Atomic int64_t base_real_ns;
	_Atomic int64_t base_fake_ns;
	_Atomic int64_t rate_ppm; /* above -1000000: -500000 is half speed, 1000000 double */
} vsrclock_ctl;

/* The fake reading for a true one, under a copy of the record. */
static inline int64_t vsrclock_fake_ns(const vsrclock_ctl *c, int64_t true_ns)
{
	int64_t since = true_ns - c->base_real_ns;
	/* since * rate / 1e6 in two parts, each within 64 bits for hours of
	 * runs at rates up to 1e8 ppm. */
	int64_t extra = since / 1000000 * c->rate_ppm + since % 1000000 * c->rate_ppm / 1000000;
	return c->base_fake_ns + since + extra;
}

/* Writer side: from true time now_ns on, the clock runs at rate_ppm. */
static inline void vsrclock_set(vsrclock_ctl *c, int64_t now_ns, int64_t rate_ppm)
{
	vsrclock_ctl copy;
	copy.base_real_ns = atomic_load(&c->base_real_ns);
	copy.base_fake_ns = atomic_load(&c->base_fake_ns);
	copy.rate_ppm = atomic_load(&c->rate_ppm);
	int64_t fake = c->magic == VSRCLOCK_MAGIC ? vsrclock_fake_ns(&copy, now_ns) : now_ns;
	atomic_fetch_add(&c->seq, 1u);
	atomic_store(&c->base_real_ns, now_ns);
	atomic_store(&c->base_fake_ns, fake);
	atomic_store(&c->rate_ppm, rate_ppm);
	c->magic = VSRCLOCK_MAGIC;
	atomic_fetch_add(&c->seq, 1u);
}

#endif /* VSR_CLOCKRATE_H */
