/* vsrh_codec.c - canonical msgpack encoding of Lua values, and strict decoding. */
#include "vsrh_codec.h"
#include "vsrh_gas.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

const char vsrh_array_mt_key[] = "vsrh.array";
const char vsrh_map_mt_key[] = "vsrh.map";

/* ---------------------------------------------------------------- buffer */

int vsrh_buf_reserve(vsr_buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap - b->len < extra) {
		if (cap > SIZE_MAX / 2)
			return -1;
		cap *= 2;
	}
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int vsrh_buf_put(vsr_buf *b, const void *data, size_t len)
{
	if (vsrh_buf_reserve(b, len) != 0)
		return -1;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

static int put_u8(vsr_buf *b, uint8_t v)
{
	return vsrh_buf_put(b, &v, 1);
}

/* Writes a type byte followed by `n` bytes of v, big endian. */
static int put_be(vsr_buf *b, uint8_t type, uint64_t v, int n)
{
	uint8_t t[9];
	t[0] = type;
	for (int i = 0; i < n; i++)
		t[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return vsrh_buf_put(b, t, (size_t)n + 1);
}

int vsrh_put_nil(vsr_buf *b)
{
	return put_u8(b, 0xc0);
}

int vsrh_put_int(vsr_buf *b, int64_t v)
{
	if (v >= 0) {
		uint64_t u = (uint64_t)v;
		if (u < 128)
			return put_u8(b, (uint8_t)u);
		if (u <= UINT8_MAX)
			return put_be(b, 0xcc, u, 1);
		if (u <= UINT16_MAX)
			return put_be(b, 0xcd, u, 2);
		if (u <= UINT32_MAX)
			return put_be(b, 0xce, u, 4);
		return put_be(b, 0xcf, u, 8);
	}
	if (v >= -32)
		return put_u8(b, (uint8_t)(int8_t)v);
	if (v >= INT8_MIN)
		return put_be(b, 0xd0, (uint64_t)v & 0xff, 1);
	if (v >= INT16_MIN)
		return put_be(b, 0xd1, (uint64_t)v & 0xffff, 2);
	if (v >= INT32_MIN)
		return put_be(b, 0xd2, (uint64_t)v & 0xffffffffu, 4);
	return put_be(b, 0xd3, (uint64_t)v, 8);
}

static int put_float(vsr_buf *b, double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	return put_be(b, 0xcb, u, 8);
}

int vsrh_put_str(vsr_buf *b, const char *s, size_t len)
{
	int rc;
	if (len < 32) { /* fixstr: one reservation, one copy */
		if (vsrh_buf_reserve(b, len + 1))
			return -1;
		b->data[b->len] = (uint8_t)(0xa0 | len);
		memcpy(b->data + b->len + 1, s, len);
		b->len += len + 1;
		return 0;
	}
	if (len > UINT32_MAX)
		return -1;
	if (len < 32)
		rc = put_u8(b, (uint8_t)(0xa0 | len));
	else if (len <= UINT8_MAX)
		rc = put_be(b, 0xd9, len, 1);
	else if (len <= UINT16_MAX)
		rc = put_be(b, 0xda, len, 2);
	else
		rc = put_be(b, 0xdb, len, 4);
	return rc ? rc : vsrh_buf_put(b, s, len);
}

int vsrh_put_array_header(vsr_buf *b, uint32_t n)
{
	if (n < 16)
		return put_u8(b, (uint8_t)(0x90 | n));
	if (n <= UINT16_MAX)
		return put_be(b, 0xdc, n, 2);
	return put_be(b, 0xdd, n, 4);
}

int vsrh_put_map_header(vsr_buf *b, uint32_t n)
{
	if (n < 16)
		return put_u8(b, (uint8_t)(0x80 | n));
	if (n <= UINT16_MAX)
		return put_be(b, 0xde, n, 2);
	return put_be(b, 0xdf, n, 4);
}

/* ---------------------------------------------------------------- encoder */

void vsrh_codec_init(lua_State *L)
{
	luaL_newmetatable(L, vsrh_array_mt_key);
	lua_pushliteral(L, "array");
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
	luaL_newmetatable(L, vsrh_map_mt_key);
	lua_pushliteral(L, "map");
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}

/* One map key, captured so keys can be sorted into canonical order. */
typedef struct enc_key {
	int kind;      /* 0 boolean, 1 number, 2 string */
	int is_int;
	lua_Integer i;
	lua_Number d;
	const char *s;
	size_t len;
	int slot;      /* stack slot of the value (small maps) */
} enc_key;

static int key_cmp(const void *pa, const void *pb)
{
	const enc_key *a = pa, *b = pb;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->kind == 0)
		return (a->i > b->i) - (a->i < b->i);
	if (a->kind == 1) {
		if (a->is_int && b->is_int)
			return (a->i > b->i) - (a->i < b->i);
		long double x = a->is_int ? (long double)a->i : (long double)a->d;
		long double y = b->is_int ? (long double)b->i : (long double)b->d;
		if (x != y)
			return x < y ? -1 : 1;
		/* Equal as numbers yet distinct keys: order integers first. */
		return a->is_int ? -1 : (b->is_int ? 1 : 0);
	}
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->s, b->s, n);
	if (c)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

typedef struct enc_state {
	lua_State *L;
	vsrh_box *box; /* charged as it goes, or NULL (not a box's state) */
	vsr_buf *b;
	size_t start;
	size_t max_len;
	char *err;
	size_t err_len;
} enc_state;

static int enc_fail(enc_state *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int enc_fail(enc_state *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->err, e->err_len, fmt, ap);
	va_end(ap);
	return -1;
}

static int enc_value(enc_state *e, int depth);

/* Pushes key k (captured earlier) back onto the stack. */
static void push_key(lua_State *L, const enc_key *k)
{
	switch (k->kind) {
	case 0:
		lua_pushboolean(L, (int)k->i);
		break;
	case 1:
		if (k->is_int)
			lua_pushinteger(L, k->i);
		else
			lua_pushnumber(L, k->d);
		break;
	default:
		lua_pushlstring(L, k->s, k->len);
		break;
	}
}

/* Insertion sort for the usual small maps (qsort's setup costs more). */
static void sort_keys(enc_key *k, size_t n)
{
	if (n > 24) {
		qsort(k, n, sizeof *k, key_cmp);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		enc_key x = k[i];
		size_t j = i;
		while (j > 0 && key_cmp(&k[j - 1], &x) > 0) {
			k[j] = k[j - 1];
			j--;
		}
		k[j] = x;
	}
}

/* Captures the key at stack index idx; returns -1 for a type with no order. */
static int capture_key(lua_State *L, int idx, enc_key *k)
{
	memset(k, 0, sizeof *k);
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		k->kind = 0;
		k->i = lua_toboolean(L, idx);
		return 0;
	case LUA_TNUMBER:
		k->kind = 1;
		k->is_int = lua_isinteger(L, idx);
		if (k->is_int)
			k->i = lua_tointeger(L, idx);
		else
			k->d = lua_tonumber(L, idx);
		return 0;
	case LUA_TSTRING:
		k->kind = 2;
		k->s = lua_tolstring(L, idx, &k->len);
		return 0;
	default:
		return -1;
	}
}

static int put_key(vsr_buf *b, const enc_key *k)
{
	switch (k->kind) {
	case 0:
		return put_u8(b, k->i ? 0xc3 : 0xc2);
	case 1:
		return k->is_int ? vsrh_put_int(b, (int64_t)k->i) : put_float(b, (double)k->d);
	default:
		return vsrh_put_str(b, k->s, k->len);
	}
}

/* Maps up to this many entries are encoded in one traversal, their values
 * kept on the Lua stack; larger ones take a second traversal. */
#define ENC_SMALL_MAP 32

static int enc_table(enc_state *e, int depth)
{
	lua_State *L = e->L;
	int t = lua_gettop(L);
	int marked = 0; /* 1 array, 2 map */
	if (lua_getmetatable(L, t)) {
		luaL_getmetatable(L, vsrh_array_mt_key);
		if (lua_rawequal(L, -1, -2))
			marked = 1;
		lua_pop(L, 1);
		luaL_getmetatable(L, vsrh_map_mt_key);
		if (lua_rawequal(L, -1, -2))
			marked = 2;
		lua_pop(L, 2);
	}
	if (!lua_checkstack(L, 2 * ENC_SMALL_MAP + 8))
		return enc_fail(e, "%s", "value nested too deeply");
	/* One traversal: count keys, check whether they are exactly 1..n, and
	 * keep the first entries (key captured, value on the stack). */
	lua_Unsigned n = lua_rawlen(L, t);
	lua_Integer max_index = 0;
	size_t count = 0;
	int all_index = 1, bad_key = 0;
	enc_key small[ENC_SMALL_MAP];
	lua_pushnil(L);
	while (lua_next(L, t)) {
		count++;
		if (count <= ENC_SMALL_MAP) {
			enc_key *k = &small[count - 1];
			if (capture_key(L, -2, k))
				bad_key = 1; /* captured as kind 0: not an index */
			if (k->kind != 1 || !k->is_int || k->i < 1)
				all_index = 0;
			else if (k->i > max_index)
				max_index = k->i;
			/* keep key and value where they are (the value at
			 * t + 2 * count) and continue from a copy of the key */
			k->slot = t + 2 * (int)count;
			lua_pushvalue(L, -2);
		} else {
			int isint = lua_isinteger(L, -2);
			lua_Integer k = isint ? lua_tointeger(L, -2) : 0;
			if (!isint || k < 1)
				all_index = 0;
			else if (k > max_index)
				max_index = k;
			lua_pop(L, 1);
		}
	}
	if (count > UINT32_MAX)
		return enc_fail(e, "%s", "table too large to encode");
	int as_array;
	if (marked == 1) {
		if (!all_index)
			return enc_fail(e, "%s", "a table marked as an array has a key that is not a positive integer");
		as_array = 1;
		n = (lua_Unsigned)max_index;
		if (n > UINT32_MAX || n > count * 2 + 1024)
			return enc_fail(e, "%s", "a table marked as an array is too sparse to encode");
	} else if (marked == 2) {
		as_array = 0;
	} else {
		/* Unmarked: an array iff its keys are exactly 1..n; the empty table
		 * is an empty array (mark maps with vsr.map()). */
		as_array = all_index && count == n && (lua_Unsigned)max_index == n;
	}
	if (as_array) {
		if (vsrh_put_array_header(e->b, (uint32_t)n))
			return enc_fail(e, "%s", "out of memory");
		if (count == n && count <= ENC_SMALL_MAP) {
			/* keys exactly 1..n: every value is already on the stack */
			int slot[ENC_SMALL_MAP];
			for (size_t i = 0; i < count; i++)
				slot[small[i].i - 1] = small[i].slot;
			for (size_t i = 0; i < count; i++) {
				lua_pushvalue(L, slot[i]);
				if (enc_value(e, depth + 1))
					return -1;
				lua_pop(L, 1);
			}
			lua_settop(L, t);
			return 0;
		}
		lua_settop(L, t);
		for (lua_Unsigned i = 1; i <= n; i++) {
			lua_rawgeti(L, t, (lua_Integer)i);
			if (enc_value(e, depth + 1))
				return -1;
			lua_pop(L, 1);
		}
		return 0;
	}
	if (bad_key)
		return enc_fail(e, "%s", "cannot encode a map key that is not a boolean, number or string");
	if (vsrh_put_map_header(e->b, (uint32_t)count))
		return enc_fail(e, "%s", "out of memory");
	if (count <= ENC_SMALL_MAP) {
		sort_keys(small, count);
		for (size_t i = 0; i < count; i++) {
			int slot = small[i].slot;
			if (put_key(e->b, &small[i]))
				return enc_fail(e, "%s", "out of memory");
			lua_pushvalue(L, slot);
			if (enc_value(e, depth + 1))
				return -1;
			lua_pop(L, 1);
		}
		lua_settop(L, t);
		return 0;
	}
	/* A large map: capture every key, sort, then fetch values by key. */
	lua_settop(L, t);
	enc_key *keys = lua_newuserdatauv(L, count * sizeof *keys, 0);
	size_t i = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		if (capture_key(L, -1, &keys[i++])) {
			lua_pop(L, 1);
			return enc_fail(e, "cannot encode a map key of type %s", luaL_typename(L, -1));
		}
	}
	sort_keys(keys, count);
	for (i = 0; i < count; i++) {
		if (put_key(e->b, &keys[i]))
			return enc_fail(e, "%s", "out of memory");
		push_key(L, &keys[i]);
		lua_rawget(L, t);
		if (enc_value(e, depth + 1))
			return -1;
		lua_pop(L, 1);
	}
	lua_settop(L, t);
	return 0;
}

/* Encodes the value on top of the stack (left there). */
static int enc_value(enc_state *e, int depth)
{
	lua_State *L = e->L;
	int rc = 0;
	if (depth >= VSRH_CODEC_DEPTH_MAX)
		return enc_fail(e, "value nested deeper than %d levels (or a cycle)", VSRH_CODEC_DEPTH_MAX);
	/* one unit per value and per VSRH_GAS_BYTES of strings, charged to
	 * the armed budget: a reply or a stored value made of many references
	 * to one big table costs what its encoding does */
	int type = lua_type(L, -1);
	if (vsrh_gas_try_box(e->box, type == LUA_TSTRING ? 1 + vsrh_gas_bytes(lua_rawlen(L, -1)) : 1))
		return enc_fail(e, "%s", "instruction budget exhausted while encoding");
	if (e->b->len - e->start > e->max_len) {
		return enc_fail(e, "encoded value exceeds %zu bytes", e->max_len);
	}
	/* (a table's own encoder makes room on the stack for what it pushes) */
	switch (type) {
	case LUA_TNIL:
		rc = vsrh_put_nil(e->b);
		break;
	case LUA_TBOOLEAN:
		rc = put_u8(e->b, lua_toboolean(L, -1) ? 0xc3 : 0xc2);
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, -1))
			rc = vsrh_put_int(e->b, (int64_t)lua_tointeger(L, -1));
		else
			rc = put_float(e->b, (double)lua_tonumber(L, -1));
		break;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, -1, &len);
		rc = vsrh_put_str(e->b, s, len);
		break;
	}
	case LUA_TTABLE:
		return enc_table(e, depth);
	default:
		return enc_fail(e, "cannot encode a %s value (only nil, booleans, numbers, strings and tables)",
				luaL_typename(L, -1));
	}
	if (rc)
		return enc_fail(e, "%s", "out of memory");
	return 0;
}

int vsrh_encode(lua_State *L, int idx, vsr_buf *b, size_t max_len, char *err,
		size_t err_len)
{
	enc_state e = {L, vsrh_gas_box(L), b, b->len, max_len, err, err_len};
	int top = lua_gettop(L);
	/* the value's copy and what enc_table pushes before it checks */
	if (!lua_checkstack(L, 4)) {
		snprintf(err, err_len, "out of Lua stack");
		return -1;
	}
	lua_pushvalue(L, idx);
	int rc = enc_value(&e, 0);
	if (rc == 0 && b->len - e.start > max_len) {
		snprintf(err, err_len, "encoded value exceeds %zu bytes", max_len);
		rc = -1;
	}
	if (rc)
		b->len = e.start;
	lua_settop(L, top);
	return rc;
}

size_t vsrh_push_ordered_keys(lua_State *L, int idx, size_t *unordered)
{
	idx = lua_absindex(L, idx);
	size_t count = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		count++;
	}
	/* The scratch array lives in a userdata so that an allocation error
	 * raised below cannot leak it. */
	enc_key *keys = lua_newuserdatauv(L, (count ? count : 1) * sizeof *keys, 0);
	size_t n = 0;
	if (unordered)
		*unordered = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (capture_key(L, -1, &keys[n])) {
			/* tables, functions as keys have no stable order */
			if (unordered)
				(*unordered)++;
			continue;
		}
		n++;
	}
	sort_keys(keys, n);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		push_key(L, &keys[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_remove(L, -2);
	return n;
}

void vsrh_push_sorted_keys(lua_State *L, int idx)
{
	vsrh_push_ordered_keys(L, idx, NULL);
}

/* ---------------------------------------------------------------- decoder */

typedef struct dec_state {
	lua_State *L;
	vsrh_box *box; /* charged as it goes, or NULL (not a box's state) */
	const uint8_t *d;
	size_t len;
	size_t pos;
	char *err;
	size_t err_len;
} dec_state;

static int dec_fail(dec_state *s, const char *msg)
{
	snprintf(s->err, s->err_len, "malformed msgpack at byte %zu: %s", s->pos, msg);
	return -1;
}

static int need(const uint8_t *d, size_t len, size_t pos, size_t n)
{
	(void)d;
	return pos <= len && len - pos >= n;
}

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Classifies the header at pos. kind: 'n' nil, 'b' bool, 'i' int, 'u' uint,
 * 'f' float32, 'd' float64, 's' string or binary, 'a' array, 'm' map,
 * 'x' ext. Sets *hdr (header bytes) and *arg (length, count or value). */
static int header(const uint8_t *d, size_t len, size_t pos, char *kind,
		  size_t *hdr, uint64_t *arg)
{
	if (!need(d, len, pos, 1))
		return -1;
	uint8_t c = d[pos];
	int n = 0;
	*hdr = 1;
	*arg = 0;
	if (c <= 0x7f) { *kind = 'u'; *arg = c; return 0; }
	if (c >= 0xe0) { *kind = 'i'; *arg = (uint64_t)(int64_t)(int8_t)c; return 0; }
	if ((c & 0xf0) == 0x80) { *kind = 'm'; *arg = c & 0x0f; return 0; }
	if ((c & 0xf0) == 0x90) { *kind = 'a'; *arg = c & 0x0f; return 0; }
	if ((c & 0xe0) == 0xa0) { *kind = 's'; *arg = c & 0x1f; return 0; }
	switch (c) {
	case 0xc0: *kind = 'n'; return 0;
	case 0xc2: *kind = 'b'; *arg = 0; return 0;
	case 0xc3: *kind = 'b'; *arg = 1; return 0;
	case 0xc4: case 0xd9: *kind = 's'; n = 1; break;
	case 0xc5: case 0xda: *kind = 's'; n = 2; break;
	case 0xc6: case 0xdb: *kind = 's'; n = 4; break;
	case 0xca: *kind = 'f'; n = 4; break;
	case 0xcb: *kind = 'd'; n = 8; break;
	case 0xcc: *kind = 'u'; n = 1; break;
	case 0xcd: *kind = 'u'; n = 2; break;
	case 0xce: *kind = 'u'; n = 4; break;
	case 0xcf: *kind = 'u'; n = 8; break;
	case 0xd0: *kind = 'i'; n = 1; break;
	case 0xd1: *kind = 'i'; n = 2; break;
	case 0xd2: *kind = 'i'; n = 4; break;
	case 0xd3: *kind = 'i'; n = 8; break;
	case 0xdc: *kind = 'a'; n = 2; break;
	case 0xdd: *kind = 'a'; n = 4; break;
	case 0xde: *kind = 'm'; n = 2; break;
	case 0xdf: *kind = 'm'; n = 4; break;
	default: *kind = 'x'; return 0; /* ext types and the unused 0xc1 */
	}
	if (!need(d, len, pos, 1 + (size_t)n))
		return -1;
	uint64_t v = be(d + pos + 1, n);
	if (*kind == 'i') {
		/* sign-extend */
		int shift = 64 - 8 * n;
		v = (uint64_t)(((int64_t)(v << shift)) >> shift);
	}
	*arg = v;
	*hdr = 1 + (size_t)n;
	return 0;
}

static int dec_value(dec_state *s, int depth);

static int dec_key_ok(dec_state *s)
{
	lua_State *L = s->L;
	switch (lua_type(L, -1)) {
	case LUA_TSTRING:
	case LUA_TBOOLEAN:
		return 0;
	case LUA_TNUMBER:
		if (!lua_isinteger(L, -1) && isnan(lua_tonumber(L, -1)))
			return dec_fail(s, "a map key is NaN");
		return 0;
	case LUA_TNIL:
		return dec_fail(s, "a map key is nil");
	default:
		return dec_fail(s, "a map key is an array or a map");
	}
}

static int dec_value(dec_state *s, int depth)
{
	lua_State *L = s->L;
	char kind;
	size_t hdr;
	uint64_t arg;
	if (depth >= VSRH_CODEC_DEPTH_MAX)
		return dec_fail(s, "nested deeper than 64 levels");
	if (header(s->d, s->len, s->pos, &kind, &hdr, &arg))
		return dec_fail(s, "truncated");
	/* inside a call (vsr.store.get), decoding is charged like encoding */
	if (vsrh_gas_try_box(s->box, 1 + (kind == 's' ? vsrh_gas_bytes(arg) : 0)))
		return dec_fail(s, "instruction budget exhausted while decoding");
	s->pos += hdr;
	switch (kind) {
	case 'n': lua_pushnil(L); return 0;
	case 'b': lua_pushboolean(L, (int)arg); return 0;
	case 'i': lua_pushinteger(L, (lua_Integer)(int64_t)arg); return 0;
	case 'u':
		if (arg > (uint64_t)LUA_MAXINTEGER) {
			s->pos -= hdr;
			return dec_fail(s, "unsigned integer does not fit a Lua integer (max 2^63-1)");
		}
		lua_pushinteger(L, (lua_Integer)arg);
		return 0;
	case 'f': {
		uint32_t u = (uint32_t)arg;
		float f;
		memcpy(&f, &u, sizeof f);
		lua_pushnumber(L, (lua_Number)f);
		return 0;
	}
	case 'd': {
		double f;
		memcpy(&f, &arg, sizeof f);
		lua_pushnumber(L, (lua_Number)f);
		return 0;
	}
	case 's':
		if (!need(s->d, s->len, s->pos, arg))
			return dec_fail(s, "string runs past the end");
		lua_pushlstring(L, (const char *)s->d + s->pos, (size_t)arg);
		s->pos += (size_t)arg;
		return 0;
	case 'a': {
		/* Every element takes at least one byte: bound the count first. */
		if (arg > s->len - s->pos)
			return dec_fail(s, "array count larger than the input");
		if (!lua_checkstack(L, 4))
			return dec_fail(s, "out of Lua stack");
		lua_createtable(L, (int)arg, 0);
		int holed = 0;
		for (uint64_t i = 1; i <= arg; i++) {
			if (dec_value(s, depth + 1))
				return -1;
			if (lua_isnil(L, -1))
				holed = 1;
			lua_rawseti(L, -2, (lua_Integer)i);
		}
		if (holed)
			luaL_setmetatable(L, vsrh_array_mt_key);
		return 0;
	}
	case 'm': {
		if (arg > (s->len - s->pos) / 2)
			return dec_fail(s, "map count larger than the input");
		if (!lua_checkstack(L, 4))
			return dec_fail(s, "out of Lua stack");
		lua_createtable(L, 0, (int)arg);
		if (arg == 0)
			luaL_setmetatable(L, vsrh_map_mt_key);
		for (uint64_t i = 0; i < arg; i++) {
			if (dec_value(s, depth + 1))
				return -1;
			if (dec_key_ok(s))
				return -1;
			if (dec_value(s, depth + 1))
				return -1;
			lua_rawset(L, -3);
		}
		return 0;
	}
	default:
		s->pos -= hdr;
		return dec_fail(s, "ext types and byte 0xc1 are not supported");
	}
}

int vsrh_decode(lua_State *L, const uint8_t *data, size_t len, char *err,
		size_t err_len)
{
	dec_state s = {L, vsrh_gas_box(L), data, len, 0, err, err_len};
	int top = lua_gettop(L);
	if (!lua_checkstack(L, 4)) {
		snprintf(err, err_len, "out of Lua stack");
		return -1;
	}
	if (dec_value(&s, 0)) {
		lua_settop(L, top);
		return -1;
	}
	if (s.pos != len) {
		lua_settop(L, top);
		snprintf(err, err_len, "malformed msgpack: %zu trailing bytes after the value", len - s.pos);
		return -1;
	}
	return 0;
}

int vsrh_skip(const uint8_t *data, size_t len, size_t *pos)
{
	/* Iterative: `pending` counts values still to skip. */
	uint64_t pending = 1;
	size_t p = *pos;
	while (pending) {
		char kind;
		size_t hdr;
		uint64_t arg;
		if (header(data, len, p, &kind, &hdr, &arg))
			return -1;
		p += hdr;
		pending--;
		switch (kind) {
		case 's':
			if (!need(data, len, p, arg))
				return -1;
			p += (size_t)arg;
			break;
		case 'a':
			if (arg > len - p)
				return -1;
			pending += arg;
			break;
		case 'm':
			if (arg > (len - p) / 2)
				return -1;
			pending += 2 * arg;
			break;
		case 'x':
			return -1;
		default:
			break;
		}
	}
	*pos = p;
	return 0;
}

/* Reads the header of a container of kind `want` ('a' array, 'm' map) at
 * *pos: its element count goes to *n and *pos moves past the header. */
static int get_container_header(const uint8_t *d, size_t len, size_t *pos, char want,
				uint32_t *n)
{
	char kind;
	size_t hdr;
	uint64_t arg;
	if (header(d, len, *pos, &kind, &hdr, &arg) || kind != want || arg > UINT32_MAX)
		return -1;
	*pos += hdr;
	*n = (uint32_t)arg;
	return 0;
}

int vsrh_get_array_header(const uint8_t *d, size_t len, size_t *pos, uint32_t *n)
{
	return get_container_header(d, len, pos, 'a', n);
}

int vsrh_get_map_header(const uint8_t *d, size_t len, size_t *pos, uint32_t *n)
{
	return get_container_header(d, len, pos, 'm', n);
}

int vsrh_get_str(const uint8_t *d, size_t len, size_t *pos, const char **s, size_t *slen)
{
	char kind;
	size_t hdr;
	uint64_t arg;
	if (header(d, len, *pos, &kind, &hdr, &arg) || kind != 's')
		return -1;
	if (!need(d, len, *pos + hdr, arg))
		return -1;
	*s = (const char *)d + *pos + hdr;
	*slen = (size_t)arg;
	*pos += hdr + (size_t)arg;
	return 0;
}

int vsrh_get_int(const uint8_t *d, size_t len, size_t *pos, int64_t *v)
{
	char kind;
	size_t hdr;
	uint64_t arg;
	if (header(d, len, *pos, &kind, &hdr, &arg))
		return -1;
	if (kind == 'u' && arg > (uint64_t)INT64_MAX)
		return -1;
	if (kind != 'u' && kind != 'i')
		return -1;
	*v = (int64_t)arg;
	*pos += hdr;
	return 0;
}

int vsrh_peek_nil(const uint8_t *d, size_t len, size_t pos)
{
	return pos < len && d[pos] == 0xc0;
}
