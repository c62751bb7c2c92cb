/* vsrh_le.h - little-endian integers in the Lua host's file formats
 * (checkpoint images and records, the `synced` record). */
#ifndef VSRH_LE_H
#define VSRH_LE_H

#include <stdint.h>

static inline void vsrh_put_u64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t vsrh_get_u64le(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline uint32_t vsrh_get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif /* VSRH_LE_H */
