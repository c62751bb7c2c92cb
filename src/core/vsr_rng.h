/* vsr_rng.h - xoshiro256**, the one pseudo-random generator of the project.
 *
 * Header-only and dependency-free, so every layer (the simulator, the Lua
 * sandbox's per-operation generator) uses the same, well-studied algorithm
 * without linking anything. Seed the four words from splitmix64 (never all
 * zero). Not for cryptography. */
#ifndef VSR_RNG_H
#define VSR_RNG_H

#include <stdint.h>

static inline uint64_t vsr_rng_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* Advances the state and returns the next 64 random bits. */
static inline uint64_t vsr_rng_next(uint64_t s[4])
{
	uint64_t result = vsr_rng_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = vsr_rng_rotl(s[3], 45);
	return result;
}

#endif /* VSR_RNG_H */
