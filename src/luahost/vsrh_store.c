/* vsrh_store.c - vsr.store: committed and buffered tables, C accessors, snapshot encoding. */
#include "vsrh_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "vsrh_codec.h"
#include "vsrh_sandbox.h"

/* The delete marker in the write buffer: a light userdata no script can
 * forge (scripts cannot create light userdata). */
static const char store_del_marker;
#define STORE_DEL ((void *)&store_del_marker)

/* scan and pairs, in Lua on top of the C accessors. They run inside the
 * caller's budget; the sorted key cache and the merge with buffered writes
 * are C helpers, so their cost does not depend on the cache's history. */
static const char store_lua[] =
"local get, has, put, delete, count, state, unpack, keyless, lower_bound, sorted_keys = ...\n"
"local type, error, maxinteger = type, error, math.maxinteger\n"
"local store = {get = get, has = has, put = put, delete = delete, count = count}\n"
"-- Keys in [first, last] (nil: unbounded) in byte order, at most limit:\n"
"-- two arrays, keys and values.\n"
"function store.scan(first, last, limit)\n"
"  if first ~= nil and type(first) ~= 'string' then\n"
"    error('vsr.store.scan: first must be a string or nil', 2)\n"
"  end\n"
"  if last ~= nil and type(last) ~= 'string' then\n"
"    error('vsr.store.scan: last must be a string or nil', 2)\n"
"  end\n"
"  if limit ~= nil and (type(limit) ~= 'number' or limit < 0) then\n"
"    error('vsr.store.scan: limit must be a non-negative number', 2)\n"
"  end\n"
"  limit = limit or maxinteger\n"
"  local data, writes, DEL, sorted, nwrites = state()\n"
"  local bkeys = nwrites > 0 and sorted_keys(writes) or nil\n"
"  local i = first and lower_bound(sorted, first) or 1\n"
"  local j = bkeys and (first and lower_bound(bkeys, first) or 1)\n"
"  local keys, values, n = {}, {}, 0\n"
"  while n < limit do\n"
"    local a, b = sorted[i], bkeys and bkeys[j]\n"
"    local k\n"
"    if a == nil and b == nil then break end\n"
"    if b == nil or (a ~= nil and keyless(a, b)) then k = a; i = i + 1\n"
"    elseif a == nil or keyless(b, a) then k = b; j = j + 1\n"
"    else k = a; i = i + 1; j = j + 1 end\n"
"    if last ~= nil and keyless(last, k) then break end\n"
"    local w = writes[k]\n"
"    if w ~= DEL then\n"
"      n = n + 1\n"
"      keys[n] = k\n"
"      values[n] = unpack(w or data[k])\n"
"    end\n"
"  end\n"
"  return keys, values\n"
"end\n"
"-- for k, v in vsr.store.pairs(first, last) do ... end, in byte order\n"
"function store.pairs(first, last)\n"
"  local keys, values = store.scan(first, last)\n"
"  local i = 0\n"
"  return function()\n"
"    i = i + 1\n"
"    return keys[i], values[i]\n"
"  end\n"
"end\n"
"return store\n";

static uint64_t entry_hash(const char *k, size_t kl, const char *v, size_t vl)
{
	return XXH3_64bits_withSeed(v, vl, XXH3_64bits(k, kl));
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al > bl) - (al < bl);
}

static vsrh_store *store_of(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

static void check_key(lua_State *L, const char *fn)
{
	if (lua_type(L, 1) != LUA_TSTRING)
		luaL_error(L, "vsr.store.%s: key must be a string, got %s", fn, luaL_typename(L, 1));
}

static void check_writable(lua_State *L, vsrh_store *s, const char *fn)
{
	if (s->mode == VSRH_STORE_APPLY || s->mode == VSRH_STORE_DRY)
		return;
	if (s->mode == VSRH_STORE_QUERY)
		luaL_error(L, "vsr.store.%s: the store is read-only in query()", fn);
	luaL_error(L, "vsr.store.%s: the store can only change inside apply()", fn);
}

/* Pushes the value of key 1: buffered first, then committed. Returns the
 * type pushed: nil (absent), string (encoded) or light userdata (deleted). */
static int lookup(lua_State *L, vsrh_store *s)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	lua_pushvalue(L, 1);
	int t = lua_rawget(L, -2);
	lua_remove(L, -2);
	if (t != LUA_TNIL)
		return t;
	lua_pop(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	lua_pushvalue(L, 1);
	t = lua_rawget(L, -2);
	lua_remove(L, -2);
	return t;
}

static void push_decoded(lua_State *L, int idx)
{
	size_t len;
	const char *v = lua_tolstring(L, idx, &len);
	char err[256];
	if (vsrh_decode(L, (const uint8_t *)v, len, err, sizeof err))
		luaL_error(L, "vsr.store: a stored value does not decode: %s", err);
}

static int store_get(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "get");
	lua_settop(L, 1);
	if (lookup(L, s) != LUA_TSTRING) {
		lua_pushnil(L);
		return 1;
	}
	push_decoded(L, -1);
	return 1;
}

static int store_has(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "has");
	lua_settop(L, 1);
	lua_pushboolean(L, lookup(L, s) == LUA_TSTRING);
	return 1;
}

/* Buffers key 1 -> the value on top of the stack (popped). */
static void buffer_write(lua_State *L, vsrh_store *s)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, -2) == LUA_TNIL)
		s->nwrites++;
	lua_pop(L, 1);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, -3);
	lua_rawset(L, -3);
	lua_pop(L, 2);
}

static int store_put(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "put");
	check_writable(L, s, "put");
	if (lua_isnoneornil(L, 2))
		return luaL_error(L, "vsr.store.put: value is nil (use vsr.store.delete)");
	lua_settop(L, 2);
	vsr_buf *b = &vsrh_box_of(L)->scratch; /* reused: no allocation per write */
	char err[256];
	b->len = 0;
	if (vsrh_encode(L, 2, b, VSR_OP_BYTES_MAX, err, sizeof err))
		return luaL_error(L, "vsr.store.put: %s", err);
	lua_pushlstring(L, (const char *)b->data, b->len);
	if (b->cap > (64u << 10)) { /* do not keep a large one around */
		free(b->data);
		memset(b, 0, sizeof *b);
	}
	buffer_write(L, s);
	return 0;
}

static int store_delete(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "delete");
	check_writable(L, s, "delete");
	lua_settop(L, 1);
	lua_pushlightuserdata(L, STORE_DEL);
	buffer_write(L, s);
	return 0;
}

static int store_count(lua_State *L)
{
	vsrh_store *s = store_of(L);
	lua_Integer n = (lua_Integer)s->count;
	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);    /* 1 */
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);  /* 2 */
	lua_pushnil(L);
	while (lua_next(L, 2)) {
		int deleted = lua_type(L, -1) == LUA_TLIGHTUSERDATA;
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		int existed = lua_rawget(L, 1) != LUA_TNIL;
		lua_pop(L, 1);
		if (deleted && existed)
			n--;
		else if (!deleted && !existed)
			n++;
	}
	lua_pushinteger(L, n);
	return 1;
}

/* state() -> data, writes, DEL, sorted committed keys, buffered count */
static int store_state(lua_State *L)
{
	vsrh_store *s = store_of(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	lua_pushlightuserdata(L, STORE_DEL);
	if (s->ref_sorted == LUA_NOREF) {
		vsrh_push_sorted_keys(L, -3);
		s->ref_sorted = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_sorted);
	lua_pushinteger(L, (lua_Integer)s->nwrites);
	return 5;
}

static int store_unpack(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TSTRING);
	push_decoded(L, 1);
	return 1;
}

static int store_keyless(lua_State *L)
{
	size_t al, bl;
	const char *a = luaL_checklstring(L, 1, &al);
	const char *b = luaL_checklstring(L, 2, &bl);
	lua_pushboolean(L, bytes_cmp(a, al, b, bl) < 0);
	return 1;
}

/* lower_bound(arr, key): first index whose key is >= key, bytewise */
static int store_lower_bound(lua_State *L)
{
	size_t kl;
	const char *k = luaL_checklstring(L, 2, &kl);
	lua_Integer lo = 1, hi = (lua_Integer)lua_rawlen(L, 1) + 1;
	while (lo < hi) {
		lua_Integer mid = lo + (hi - lo) / 2;
		size_t ml;
		lua_rawgeti(L, 1, mid);
		const char *m = lua_tolstring(L, -1, &ml);
		int c = bytes_cmp(m, ml, k, kl);
		lua_pop(L, 1);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	lua_pushinteger(L, lo);
	return 1;
}

static int store_sorted_keys(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	vsrh_push_sorted_keys(L, 1);
	return 1;
}

void vsrh_store_open(lua_State *L, vsrh_store *s)
{
	memset(s, 0, sizeof *s);
	lua_newtable(L);
	s->ref_data = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_newtable(L);
	s->ref_writes = luaL_ref(L, LUA_REGISTRYINDEX);
	s->ref_sorted = LUA_NOREF;
	s->mode = VSRH_STORE_CLOSED;
	vsrh_box_push_env(vsrh_box_of(L));
	if (luaL_loadbufferx(L, store_lua, sizeof store_lua - 1, "=vsr.store", "t") != LUA_OK)
		lua_error(L); /* a host bug: the source is compiled in */
	lua_insert(L, -2);
	lua_setupvalue(L, -2, 1);
	static const lua_CFunction with_store[] = {store_get, store_has, store_put, store_delete,
						   store_count, store_state};
	for (size_t i = 0; i < sizeof with_store / sizeof with_store[0]; i++) {
		lua_pushlightuserdata(L, s);
		lua_pushcclosure(L, with_store[i], 1);
	}
	lua_pushcfunction(L, store_unpack);
	lua_pushcfunction(L, store_keyless);
	lua_pushcfunction(L, store_lower_bound);
	lua_pushcfunction(L, store_sorted_keys);
	lua_call(L, 10, 1);
}

static void invalidate_sorted(lua_State *L, vsrh_store *s)
{
	luaL_unref(L, LUA_REGISTRYINDEX, s->ref_sorted);
	s->ref_sorted = LUA_NOREF;
}

void vsrh_store_commit(lua_State *L, vsrh_store *s)
{
	if (s->nwrites == 0)
		return;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	int d = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	int w = lua_gettop(L);
	int changed = 0;
	lua_pushnil(L);
	while (lua_next(L, w)) {
		int k = lua_gettop(L) - 1, v = k + 1;
		size_t kl, vl, ol;
		const char *key = lua_tolstring(L, k, &kl);
		lua_pushvalue(L, k);
		int had = lua_rawget(L, d) != LUA_TNIL; /* the old value at v + 1 */
		const char *old = had ? lua_tolstring(L, v + 1, &ol) : NULL;
		if (lua_type(L, v) == LUA_TLIGHTUSERDATA) {
			if (had) {
				s->digest -= entry_hash(key, kl, old, ol);
				s->count--;
				changed = 1;
				lua_pushvalue(L, k);
				lua_pushnil(L);
				lua_rawset(L, d);
			}
		} else {
			const char *val = lua_tolstring(L, v, &vl);
			if (had) {
				s->digest -= entry_hash(key, kl, old, ol);
			} else {
				s->count++;
				changed = 1;
			}
			s->digest += entry_hash(key, kl, val, vl);
			lua_pushvalue(L, k);
			lua_pushvalue(L, v);
			lua_rawset(L, d);
		}
		lua_settop(L, k);
		/* clearing a field during the traversal is allowed */
		lua_pushvalue(L, k);
		lua_pushnil(L);
		lua_rawset(L, w);
	}
	s->nwrites = 0;
	if (changed)
		invalidate_sorted(L, s);
	lua_settop(L, top);
}

void vsrh_store_abort(lua_State *L, vsrh_store *s)
{
	if (s->nwrites == 0)
		return;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	int w = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, w)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushnil(L);
		lua_rawset(L, w);
	}
	s->nwrites = 0;
	lua_settop(L, top);
}

typedef struct kv_ref {
	const char *k;
	size_t kl;
	const char *v;
	size_t vl;
} kv_ref;

static int kv_cmp(const void *pa, const void *pb)
{
	const kv_ref *a = pa, *b = pb;
	return bytes_cmp(a->k, a->kl, b->k, b->kl);
}

int vsrh_store_write(lua_State *L, vsrh_store *s, vsr_buf *out)
{
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	int t = lua_gettop(L);
	size_t n = (size_t)s->count;
	kv_ref *kv = lua_newuserdatauv(L, (n ? n : 1) * sizeof *kv, 0);
	size_t i = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (i < n) {
			kv[i].k = lua_tolstring(L, -2, &kv[i].kl);
			kv[i].v = lua_tolstring(L, -1, &kv[i].vl);
		}
		i++;
		lua_pop(L, 1);
	}
	if (i != n) { /* the count is kept in step with the table: a host bug */
		lua_settop(L, top);
		return -1;
	}
	qsort(kv, n, sizeof *kv, kv_cmp);
	int fail = vsrh_put_map_header(out, (uint32_t)n);
	for (i = 0; i < n && !fail; i++) {
		fail |= vsrh_put_str(out, kv[i].k, kv[i].kl);
		fail |= vsrh_buf_put(out, kv[i].v, kv[i].vl);
	}
	lua_settop(L, top);
	return fail ? -1 : 0;
}

int vsrh_store_read(lua_State *L, vsrh_store *s, const uint8_t *d, size_t len, size_t *pos,
		    char *err, size_t err_len)
{
	uint32_t n;
	int top = lua_gettop(L);
	if (vsrh_get_map_header(d, len, pos, &n)) {
		snprintf(err, err_len, "corrupt snapshot: the store is not a map");
		return -1;
	}
	lua_createtable(L, 0, (int)(n < (1u << 24) ? n : 0));
	uint64_t digest = 0;
	const char *prev = NULL;
	size_t prev_len = 0;
	for (uint32_t i = 0; i < n; i++) {
		const char *k;
		size_t kl;
		if (vsrh_get_str(d, len, pos, &k, &kl)) {
			snprintf(err, err_len, "corrupt snapshot: store key %u", i + 1);
			lua_settop(L, top);
			return -1;
		}
		/* written in strictly increasing order: no duplicates */
		if (prev && bytes_cmp(prev, prev_len, k, kl) >= 0) {
			snprintf(err, err_len, "corrupt snapshot: store key %u out of order", i + 1);
			lua_settop(L, top);
			return -1;
		}
		prev = k;
		prev_len = kl;
		size_t vstart = *pos;
		if (vsrh_skip(d, len, pos)) {
			snprintf(err, err_len, "corrupt snapshot: store value %u", i + 1);
			lua_settop(L, top);
			return -1;
		}
		lua_pushlstring(L, k, kl);
		lua_pushlstring(L, (const char *)d + vstart, *pos - vstart);
		lua_rawset(L, -3);
		digest += entry_hash(k, kl, (const char *)d + vstart, *pos - vstart);
	}
	vsrh_store_abort(L, s);
	luaL_unref(L, LUA_REGISTRYINDEX, s->ref_data);
	s->ref_data = luaL_ref(L, LUA_REGISTRYINDEX);
	s->count = n;
	s->digest = digest;
	invalidate_sorted(L, s);
	lua_settop(L, top);
	return 0;
}
