/* vsrh_codec.h - msgpack <-> Lua value conversion and the host's byte buffer.
 *
 * Encoding is canonical: map keys are sorted (booleans, then numbers in
 * numeric order, then strings bytewise), integers take their shortest form,
 * floats are always float64. Equal Lua values give equal bytes on every
 * replica, which replies (kept in the client table) and snapshots rely on.
 * The rules for tables (array or map, empty tables, nil in arrays) are in
 * docs/statemachines.md. Both directions may raise Lua errors (allocation),
 * so callers run them inside a protected call. */
#ifndef VSRH_CODEC_H
#define VSRH_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "vsr.h"

/* Nesting depth of arrays and maps accepted either way. */
#define VSRH_CODEC_DEPTH_MAX 64

/* Grows b to hold at least `extra` more bytes. Returns 0 or -1 (no memory).
 * Uses realloc, so a buffer it grew is freed by vsr_buf_free. */
int vsrh_buf_reserve(vsr_buf *b, size_t extra);
int vsrh_buf_put(vsr_buf *b, const void *data, size_t len);

/* Registry key of the metatable that marks a table as an array (so that an
 * empty or holed table encodes as an array). */
extern const char vsrh_array_mt_key[];
/* Registry key of the metatable that marks a table as a map. */
extern const char vsrh_map_mt_key[];
/* Creates both marker metatables in L's registry. */
void vsrh_codec_init(lua_State *L);

/* Encodes the value at `idx` onto b. Returns 0, or -1 with a message in err
 * (unsupported type, too deep, non-finite key, bytes over max_len). */
int vsrh_encode(lua_State *L, int idx, vsr_buf *b, size_t max_len, char *err,
		size_t err_len);

/* Pushes an array of the keys of the table at idx in canonical order
 * (booleans, numbers, strings bytewise). Keys of other types are left out. */
void vsrh_push_sorted_keys(lua_State *L, int idx);
/* The same, counting in *unordered the keys left out (tables, functions:
 * no order that is the same on every replica); returns the keys pushed. */
size_t vsrh_push_ordered_keys(lua_State *L, int idx, size_t *unordered);

/* Decodes exactly one value from data[0..len) and pushes it. Returns 0, or
 * -1 with a message in err and nothing pushed. Trailing bytes are an error. */
int vsrh_decode(lua_State *L, const uint8_t *data, size_t len, char *err,
		size_t err_len);

/* Walks one msgpack value starting at *pos without building anything; on
 * success advances *pos past it. Returns 0 or -1 (malformed or truncated). */
int vsrh_skip(const uint8_t *data, size_t len, size_t *pos);

/* Writers for the snapshot encoder. */
int vsrh_put_array_header(vsr_buf *b, uint32_t n);
int vsrh_put_map_header(vsr_buf *b, uint32_t n);
int vsrh_put_str(vsr_buf *b, const char *s, size_t len);
int vsrh_put_int(vsr_buf *b, int64_t v);
int vsrh_put_nil(vsr_buf *b);

/* Readers for the snapshot decoder: each checks the type and bounds, and
 * advances *pos. Return 0 or -1. */
int vsrh_get_array_header(const uint8_t *d, size_t len, size_t *pos, uint32_t *n);
int vsrh_get_map_header(const uint8_t *d, size_t len, size_t *pos, uint32_t *n);
int vsrh_get_str(const uint8_t *d, size_t len, size_t *pos, const char **s, size_t *slen);
int vsrh_get_int(const uint8_t *d, size_t len, size_t *pos, int64_t *v);
int vsrh_peek_nil(const uint8_t *d, size_t len, size_t pos);

#endif /* VSRH_CODEC_H */
