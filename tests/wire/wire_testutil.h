/* wire_testutil.h - shared helpers for the wire tests, corpus replay and fuzzer. */
#ifndef WIRE_TESTUTIL_H
#define WIRE_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsr_wire.h"

/* The cluster id and size every test frame and the corpus use. */
#define WT_CLUSTER 0x5eed0000c0ffeeULL
#define WT_REPLICAS 5u

/* splitmix64: small, seedable, good enough to pick test contents. */
uint64_t wt_rand(uint64_t *state);
/* A value of random width (1, 8, 16, 32 or 64 significant bits) so every
 * msgpack integer encoding is exercised. */
uint64_t wt_rand_u64(uint64_t *state);

/* Memory a generated message points into; freed by wt_arena_free. */
typedef struct wt_arena {
	void *blocks[512];
	uint32_t count;
} wt_arena;
void *wt_arena_alloc(wt_arena *a, size_t len);
void wt_arena_free(wt_arena *a);

/* A random, valid (vsr_message_invalid accepts it) message of core type
 * `type`; `big` allows bodies past 64 KiB (bin32). */
void wt_gen_message(uint64_t *state, uint8_t type, bool big, wt_arena *a,
		    vsr_message *m);

/* A random host message of `type` encoded into out; fills the matching
 * member of `expect` (type set) for comparison. */
int wt_gen_host(uint64_t *state, uint8_t type, vsr_buf *out,
		vsr_wire_decoded *expect);

/* Field-by-field equality; on a difference writes its name into why. */
bool wt_message_equal(const vsr_message *a, const vsr_message *b, char *why,
		      size_t why_len);
bool wt_host_equal(const vsr_wire_decoded *a, const vsr_wire_decoded *b,
		   char *why, size_t why_len);

/* Re-encodes a decoded frame (any type) into out. */
int wt_encode_decoded(const vsr_wire_decoded *d, vsr_buf *out);

/* Appends a frame with a hand-made body and correct checksums, for
 * malformation tests. */
void wt_frame_raw(vsr_buf *out, uint8_t type, uint64_t cluster,
		  const uint8_t *body, uint32_t body_len);
/* Recomputes the header checksum after a test edited header bytes. */
void wt_fix_header(uint8_t *frame);

/* The decoder configuration every test uses. */
void wt_config(vsr_wire_config *c);

#endif /* WIRE_TESTUTIL_H */
