/* vsrh_store.c - vsr.store: committed and buffered tables, C accessors, snapshot encoding. */
#include "vsrh_store.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lmdb.h>
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
"local get, has, put, delete, count, state, range, unpack, keyless, lower_bound, sorted_keys = ...\n"
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
"  local writes, DEL, nwrites = state()\n"
"  local bkeys = nwrites > 0 and sorted_keys(writes) or nil\n"
"  -- committed entries in [first, last]: enough that buffered deletes\n"
"  -- cannot leave fewer than limit\n"
"  local ckeys, cvals = range(first, last, limit, nwrites)\n"
"  local i = 1\n"
"  local j = bkeys and (first and lower_bound(bkeys, first) or 1)\n"
"  local keys, values, n = {}, {}, 0\n"
"  while n < limit do\n"
"    local a, b = ckeys[i], bkeys and bkeys[j]\n"
"    local k, v\n"
"    if a == nil and b == nil then break end\n"
"    if b == nil or (a ~= nil and keyless(a, b)) then k = a; v = cvals[i]; i = i + 1\n"
"    elseif a == nil or keyless(b, a) then k = b; j = j + 1\n"
"    else k = a; v = cvals[i]; i = i + 1; j = j + 1 end\n"
"    if last ~= nil and keyless(last, k) then break end\n"
"    local w = writes[k]\n"
"    if w ~= DEL then\n"
"      n = n + 1\n"
"      keys[n] = k\n"
"      values[n] = unpack(w or v)\n"
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

/* ---------------------------------------------------------------- LMDB */

#define CKPT_MAGIC "VSRHCKP1"
#define STORE_MAP_MIN ((size_t)64 << 20)    /* the map's first size (MDB_WRITEMAP) */
#define STORE_MAP_NOWRITEMAP ((size_t)1 << 40) /* address space only, without it */
#define IMAGE_INDEX_EVERY 256u /* records between two seek points of a reader */

/* A checkpoint kept readable: a read transaction on the commit that made it,
 * a cursor, and seek points (offset -> key) noted as the cursor moves, so a
 * chunk anywhere is found without reading the image from its start. */
typedef struct ckpt_held {
	vsr_checkpoint cp;
	MDB_txn *rtxn;
	MDB_cursor *cur;
	uint8_t *prefix;      /* image bytes before the records */
	size_t prefix_len;
	bool at_valid;        /* the cursor is on the record starting at `at` */
	uint64_t at;
	uint64_t seen;        /* records stepped over since the last seek point */
	uint64_t *seek_off;   /* seek points, increasing */
	vsr_buf seek_keys;    /* their keys: u32 len | bytes, back to back */
	size_t *seek_key_pos;
	uint32_t seek_count, seek_cap;
} ckpt_held;

struct vsrh_lmdb {
	MDB_env *env;
	MDB_dbi kv, meta;
	size_t mapsize;       /* reserved on disk (fallocate) when writemap */
	bool writemap;        /* pages written through the map (see map_set) */
	MDB_txn *wtxn;        /* long-lived: everything since the last checkpoint */
	char dir[4096];       /* holds db/ (the environment), next/, staging */
	bool scratch;         /* remove dir at close */
	bool durable;
	uint64_t kv_bytes;    /* sum over records of 8 + key + value */
	ckpt_held held[2];    /* current, previous checkpoint */
	vsr_checkpoint staged; /* the one whose bytes go to the staging file */
	int staged_fd;
};

static void lmdb_fatal(const char *what, int rc)
{
	/* The store cannot follow the replicated state any more (a full or
	 * failing disk): stop rather than diverge or acknowledge what is lost,
	 * with the status vsrhost uses for a storage failure (EX_IOERR). */
	/* LMDB reports a short write (a full disk) as EIO. */
	const char *why = rc == ENOSPC	     ? "the disk is full (no space left on device)"
			  : rc == EIO	       ? "a write failed: the disk is full or failing (EIO)"
			  : rc == MDB_MAP_FULL ? "the map is full (more written in one checkpoint interval than it had room for)"
					       : mdb_strerror(rc);
	fprintf(stderr, "vsr.store: LMDB %s failed: %s; this replica stops (exit 74)\n", what, why);
	fflush(NULL);
	_exit(74);
}

static MDB_val mval(const void *p, size_t n)
{
	return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

/* The committed value of key (Lua string at idx) pushed, or nothing: returns
 * whether it pushed. */
static bool lmdb_push_get(lua_State *L, vsrh_lmdb *db, int idx)
{
	size_t kl;
	const char *k = lua_tolstring(L, idx, &kl);
	MDB_val key = mval(k, kl), val;
	if (kl == 0 || kl > 511) /* LMDB's key limit: such keys are never stored */
		return false;
	int rc = mdb_get(db->wtxn, db->kv, &key, &val);
	if (rc == MDB_NOTFOUND)
		return false;
	if (rc)
		lmdb_fatal("get", rc);
	lua_pushlstring(L, val.mv_data, val.mv_size);
	return true;
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
	int t;
	if (s->nwrites > 0) { /* (none yet: the usual first get of an apply) */
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
		lua_pushvalue(L, 1);
		t = lua_rawget(L, -2);
		lua_remove(L, -2);
		if (t != LUA_TNIL)
			return t;
		lua_pop(L, 1);
	}
	if (s->db) {
		if (lmdb_push_get(L, s->db, 1))
			return LUA_TSTRING;
		lua_pushnil(L);
		return LUA_TNIL;
	}
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
	if (s->db && (lua_rawlen(L, 1) == 0 || lua_rawlen(L, 1) > 511))
		return luaL_error(L, "vsr.store.put: a key must be 1 to 511 bytes");
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
		int existed;
		if (s->db) {
			existed = lmdb_push_get(L, s->db, -1);
			if (existed)
				lua_pop(L, 1);
		} else {
			lua_pushvalue(L, -1);
			existed = lua_rawget(L, 1) != LUA_TNIL;
			lua_pop(L, 1);
		}
		if (deleted && existed)
			n--;
		else if (!deleted && !existed)
			n++;
	}
	lua_pushinteger(L, n);
	return 1;
}

/* state() -> writes, DEL, buffered count */
static int store_state(lua_State *L)
{
	vsrh_store *s = store_of(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	lua_pushlightuserdata(L, STORE_DEL);
	lua_pushinteger(L, (lua_Integer)s->nwrites);
	return 3;
}

static void push_range_result(lua_State *L, int keys, int vals, lua_Integer n, const char *k,
			      size_t kl, const char *v, size_t vl)
{
	lua_pushlstring(L, k, kl);
	lua_rawseti(L, keys, n);
	lua_pushlstring(L, v, vl);
	lua_rawseti(L, vals, n);
}

/* range(first, last, limit, extra) -> keys, encoded values: committed
 * entries in [first, last] in byte order, at most limit + extra. */
static int store_range(lua_State *L)
{
	vsrh_store *s = store_of(L);
	size_t fl = 0, ll = 0;
	const char *first = lua_isnil(L, 1) ? NULL : luaL_checklstring(L, 1, &fl);
	const char *last = lua_isnil(L, 2) ? NULL : luaL_checklstring(L, 2, &ll);
	lua_Number lim = luaL_checknumber(L, 3) + (lua_Number)luaL_checkinteger(L, 4);
	lua_Integer max = lim >= 9.0e15 ? (lua_Integer)9e15 : (lua_Integer)lim + (lim > (lua_Integer)lim);
	lua_settop(L, 2);
	lua_newtable(L);
	lua_newtable(L);
	int keys = 3, vals = 4;
	lua_Integer n = 0;
	if (s->db) {
		MDB_cursor *c;
		int rc = mdb_cursor_open(s->db->wtxn, s->db->kv, &c);
		if (rc)
			lmdb_fatal("cursor", rc);
		MDB_val k = mval(first, fl), v;
		rc = first && fl ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
				 : mdb_cursor_get(c, &k, &v, MDB_FIRST);
		while (rc == 0 && n < max) {
			if (last && bytes_cmp(k.mv_data, k.mv_size, last, ll) > 0)
				break;
			push_range_result(L, keys, vals, ++n, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(c);
		if (rc && rc != MDB_NOTFOUND)
			lmdb_fatal("scan", rc);
		return 2;
	}
	/* The table: the sorted key cache, rebuilt after a change. */
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	int data = 5;
	if (s->ref_sorted == LUA_NOREF) {
		vsrh_push_sorted_keys(L, data);
		s->ref_sorted = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_sorted);
	int sorted = 6;
	lua_Integer lo = 1, hi = (lua_Integer)lua_rawlen(L, sorted) + 1, end = hi;
	while (first && lo < hi) {
		lua_Integer mid = lo + (hi - lo) / 2;
		size_t ml;
		lua_rawgeti(L, sorted, mid);
		const char *m = lua_tolstring(L, -1, &ml);
		int c = bytes_cmp(m, ml, first, fl);
		lua_pop(L, 1);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (lua_Integer i = lo; i < end && n < max; i++) {
		size_t kl, vl;
		lua_rawgeti(L, sorted, i);
		const char *k = lua_tolstring(L, -1, &kl);
		if (last && bytes_cmp(k, kl, last, ll) > 0) {
			lua_pop(L, 1);
			break;
		}
		lua_pushvalue(L, -1);
		lua_rawget(L, data);
		const char *v = lua_tolstring(L, -1, &vl);
		push_range_result(L, keys, vals, ++n, k, kl, v, vl);
		lua_pop(L, 2);
	}
	lua_settop(L, 4);
	return 2;
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
						   store_count, store_state, store_range};
	for (size_t i = 0; i < sizeof with_store / sizeof with_store[0]; i++) {
		lua_pushlightuserdata(L, s);
		lua_pushcclosure(L, with_store[i], 1);
	}
	lua_pushcfunction(L, store_unpack);
	lua_pushcfunction(L, store_keyless);
	lua_pushcfunction(L, store_lower_bound);
	lua_pushcfunction(L, store_sorted_keys);
	lua_call(L, 11, 1);
}

static void invalidate_sorted(lua_State *L, vsrh_store *s)
{
	luaL_unref(L, LUA_REGISTRYINDEX, s->ref_sorted);
	s->ref_sorted = LUA_NOREF;
}

/* The buffered writes into the long-lived write transaction. One B-tree
 * descent per key: a put tries to insert (MDB_NOOVERWRITE), which on an
 * existing key leaves the cursor on it with the old value (for the digest),
 * then overwrites it in place (MDB_CURRENT); a delete positions the cursor
 * and deletes there. */
static void lmdb_commit_writes(lua_State *L, vsrh_store *s)
{
	vsrh_lmdb *db = s->db;
	int top = lua_gettop(L);
	MDB_cursor *c;
	int rc = mdb_cursor_open(db->wtxn, db->kv, &c);
	if (rc)
		lmdb_fatal("cursor", rc);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	int w = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, w)) {
		size_t kl, vl = 0;
		const char *key = lua_tolstring(L, -2, &kl);
		MDB_val k = mval(key, kl);
		if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) { /* a delete */
			MDB_val old;
			rc = mdb_cursor_get(c, &k, &old, MDB_SET_KEY);
			if (rc && rc != MDB_NOTFOUND)
				lmdb_fatal("get", rc);
			if (rc == 0) {
				s->digest -= entry_hash(key, kl, old.mv_data, old.mv_size);
				db->kv_bytes -= 8 + kl + old.mv_size;
				s->count--;
				if ((rc = mdb_cursor_del(c, 0)))
					lmdb_fatal("delete", rc);
			}
		} else {
			const char *val = lua_tolstring(L, -1, &vl);
			MDB_val v = mval(val, vl);
			rc = mdb_cursor_put(c, &k, &v, MDB_NOOVERWRITE);
			if (rc == MDB_KEYEXIST) {
				/* v now points at the old value, in the page */
				s->digest -= entry_hash(key, kl, v.mv_data, v.mv_size);
				db->kv_bytes -= 8 + kl + v.mv_size;
				v = mval(val, vl);
				rc = mdb_cursor_put(c, &k, &v, MDB_CURRENT);
			} else if (rc == 0) {
				s->count++;
			}
			if (rc)
				lmdb_fatal("put", rc);
			s->digest += entry_hash(key, kl, val, vl);
			db->kv_bytes += 8 + kl + vl;
		}
		lua_pop(L, 1);
		/* clearing a field during the traversal is allowed */
		lua_pushvalue(L, -1);
		lua_pushnil(L);
		lua_rawset(L, w);
	}
	mdb_cursor_close(c);
	s->nwrites = 0;
	lua_settop(L, top);
}

void vsrh_store_commit(lua_State *L, vsrh_store *s)
{
	if (s->nwrites == 0)
		return;
	if (s->db) {
		lmdb_commit_writes(L, s);
		return;
	}
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
	if (s->db) {
		MDB_cursor *c;
		int rc = mdb_cursor_open(s->db->wtxn, s->db->kv, &c);
		if (rc)
			lmdb_fatal("cursor", rc);
		int fail = vsrh_put_map_header(out, (uint32_t)s->count);
		MDB_val k, v;
		for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !fail;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			fail |= vsrh_put_str(out, k.mv_data, k.mv_size);
			fail |= vsrh_buf_put(out, v.mv_data, v.mv_size);
		}
		mdb_cursor_close(c);
		return fail || (rc && rc != MDB_NOTFOUND) ? -1 : 0;
	}
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
		if (s->db && (kl == 0 || kl > 511)) {
			snprintf(err, err_len, "corrupt snapshot: store key %u has %zu bytes", i + 1, kl);
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
	if (s->db) {
		/* Validated above (into a table, then dropped): now replace. */
		vsrh_lmdb *db = s->db;
		int rc = mdb_drop(db->wtxn, db->kv, 0);
		if (rc)
			lmdb_fatal("drop", rc);
		db->kv_bytes = 0;
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			size_t kl, vl;
			const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
			MDB_val mk = mval(k, kl), mv = mval(v, vl);
			if ((rc = mdb_put(db->wtxn, db->kv, &mk, &mv, 0)))
				lmdb_fatal("put", rc);
			db->kv_bytes += 8 + kl + vl;
			lua_pop(L, 1);
		}
		s->count = n;
		s->digest = digest;
		lua_settop(L, top);
		return 0;
	}
	luaL_unref(L, LUA_REGISTRYINDEX, s->ref_data);
	s->ref_data = luaL_ref(L, LUA_REGISTRYINDEX);
	s->count = n;
	s->digest = digest;
	invalidate_sorted(L, s);
	lua_settop(L, top);
	return 0;
}

/* ---------------------------------------------------------------- LMDB environment */

static void put_u64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint32_t get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void path_join(char *out, size_t n, const char *dir, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* Removes an environment directory (its two files) and the directory. */
static void env_dir_remove(const char *dir)
{
	char p[4200];
	path_join(p, sizeof p, dir, "data.mdb");
	unlink(p);
	path_join(p, sizeof p, dir, "lock.mdb");
	unlink(p);
	rmdir(dir);
}

static void held_drop(ckpt_held *h)
{
	if (h->cur)
		mdb_cursor_close(h->cur);
	if (h->rtxn)
		mdb_txn_abort(h->rtxn);
	free(h->prefix);
	free(h->seek_off);
	free(h->seek_key_pos);
	free(h->seek_keys.data);
	memset(h, 0, sizeof *h);
}

/* Pages are written through the map (MDB_WRITEMAP): a commit, hence a
 * checkpoint, writes only the meta page. A page the filesystem cannot back
 * would then be a SIGBUS, so the map's whole size is allocated on disk
 * (posix_fallocate) before it is used: a full disk is an error here, at a
 * checkpoint or at start, never a signal. Returns 0 or an errno. */
static int map_set(vsrh_lmdb *db, size_t size)
{
	int fd;
	struct stat st;
	struct statvfs vfs;
	int rc = mdb_env_get_fd(db->env, &fd);
	if (rc == 0 && (fstat(fd, &st) != 0 || fstatvfs(fd, &vfs) != 0))
		rc = errno;
	/* Not even trying when the room is plainly not there: a fallocate
	 * that fails half way may keep what it took on some filesystems. */
	if (rc == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize + (uint64_t)st.st_blocks * 512 <
			       (uint64_t)size + STORE_MAP_MIN)
		rc = ENOSPC; /* and leave the log room for a segment */
	if (rc == 0)
		rc = mdb_env_set_mapsize(db->env, size);
	if (rc == 0)
		rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc == 0)
		db->mapsize = size;
	return rc;
}

/* Whether the map lacks room for another interval: twice what is in use
 * now plus 16 MiB. Returns the size to grow to (at least double), or 0. */
static size_t map_wanted(vsrh_lmdb *db)
{
	MDB_envinfo info;
	MDB_stat st;
	if (!db->writemap || mdb_env_info(db->env, &info) || mdb_env_stat(db->env, &st))
		return 0;
	size_t want = ((size_t)info.me_last_pgno + 1) * st.ms_psize * 2 + STORE_MAP_MIN / 4;
	if (want <= db->mapsize)
		return 0;
	return want > 2 * db->mapsize ? want : 2 * db->mapsize;
}

static int env_try_open(vsrh_lmdb *db, const char *path, size_t map)
{
	int rc = mdb_env_create(&db->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(db->env, 2);
	if (rc == 0)
		rc = mdb_env_set_mapsize(db->env, db->writemap ? map : STORE_MAP_NOWRITEMAP);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(db->env, 16);
	unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (db->writemap ? MDB_WRITEMAP : 0);
	if (!db->durable)
		flags |= MDB_NOSYNC | MDB_NOMETASYNC;
	if (rc == 0)
		rc = mdb_env_open(db->env, path, flags, 0600);
	if (rc == 0 && db->writemap) {
		rc = map_set(db, map);
		size_t more = rc == 0 ? map_wanted(db) : 0;
		if (more)
			rc = map_set(db, more);
	}
	if (rc && db->env) {
		mdb_env_close(db->env);
		db->env = NULL;
	}
	return rc;
}

static int env_open(vsrh_lmdb *db, const char *path, size_t min_map, char *err, size_t err_len)
{
	/* At least what the file already holds (the map of its last run). */
	char file[4200];
	struct stat fst;
	snprintf(file, sizeof file, "%s/data.mdb", path);
	size_t map = min_map > STORE_MAP_MIN ? min_map : STORE_MAP_MIN;
	if (stat(file, &fst) == 0 && (size_t)fst.st_size > map)
		map = (size_t)fst.st_size;
	off_t before = stat(file, &fst) == 0 ? fst.st_size : 0;
	db->writemap = true;
	int rc = env_try_open(db, path, map);
	if (rc == ENOSPC) {
		/* No room to reserve the map: pages are written with pwrite, and a
		 * full disk is an error at a commit. Only slower checkpoints. The
		 * file goes back to its size before (LMDB extended it to the map). */
		if (truncate(file, before) != 0 && errno != ENOENT)
			rc = errno;
		db->writemap = false;
		if (rc == ENOSPC)
			rc = env_try_open(db, path, map);
	}
	/* The handles, in a transaction of their own: read transactions can
	 * use them only once it has committed. */
	if (rc == 0)
		rc = mdb_txn_begin(db->env, NULL, 0, &db->wtxn);
	if (rc == 0)
		rc = mdb_dbi_open(db->wtxn, "kv", MDB_CREATE, &db->kv);
	if (rc == 0)
		rc = mdb_dbi_open(db->wtxn, "meta", MDB_CREATE, &db->meta);
	if (rc == 0) {
		rc = mdb_txn_commit(db->wtxn);
		db->wtxn = NULL;
	}
	if (rc == 0)
		rc = mdb_txn_begin(db->env, NULL, 0, &db->wtxn);
	if (rc) {
		snprintf(err, err_len, "vsr.store: LMDB environment %s (%zu MiB): %s", path,
			 map >> 20, rc == ENOSPC ? "the disk is full" : mdb_strerror(rc));
		if (db->wtxn)
			mdb_txn_abort(db->wtxn);
		db->wtxn = NULL;
		if (db->env)
			mdb_env_close(db->env);
		db->env = NULL;
		return -1;
	}
	return 0;
}

static void env_close(vsrh_lmdb *db)
{
	held_drop(&db->held[0]);
	held_drop(&db->held[1]);
	if (db->wtxn)
		mdb_txn_abort(db->wtxn);
	db->wtxn = NULL;
	if (db->env)
		mdb_env_close(db->env);
	db->env = NULL;
}

int vsrh_store_use_lmdb(vsrh_store *s, const char *dir, bool durable, bool fresh, char *err,
			size_t err_len)
{
	vsrh_lmdb *db = calloc(1, sizeof *db);
	if (db == NULL) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	db->staged_fd = -1;
	db->durable = durable;
	if (dir == NULL) {
		const char *tmp = getenv("TMPDIR");
		snprintf(db->dir, sizeof db->dir, "%s/vsrh-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (mkdtemp(db->dir) == NULL) {
			snprintf(err, err_len, "vsr.store: scratch directory %s: %s", db->dir,
				 strerror(errno));
			free(db);
			return -1;
		}
		db->scratch = true;
	} else {
		snprintf(db->dir, sizeof db->dir, "%s", dir);
		for (char *p = db->dir + 1; *p; p++) { /* parents first */
			if (*p != '/')
				continue;
			*p = 0;
			mkdir(db->dir, 0700);
			*p = '/';
		}
		if (mkdir(db->dir, 0700) != 0 && errno != EEXIST) {
			snprintf(err, err_len, "vsr.store: %s: %s", db->dir, strerror(errno));
			free(db);
			return -1;
		}
	}
	char path[4200], next[4200];
	path_join(path, sizeof path, db->dir, "db");
	path_join(next, sizeof next, db->dir, "next");
	if (fresh || !durable)
		env_dir_remove(path); /* nothing in it can be trusted (or wanted) */
	/* An install that stopped between its two renames left next/ only. */
	struct stat st;
	if (stat(path, &st) != 0 && stat(next, &st) == 0)
		rename(next, path);
	else
		env_dir_remove(next);
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(err, err_len, "vsr.store: %s: %s", path, strerror(errno));
		free(db);
		return -1;
	}
	if (env_open(db, path, 0, err, err_len)) {
		free(db);
		return -1;
	}
	s->db = db;
	return 0;
}

void vsrh_store_close(lua_State *L, vsrh_store *s)
{
	(void)L;
	vsrh_lmdb *db = s->db;
	if (db == NULL)
		return;
	env_close(db);
	if (db->staged_fd >= 0)
		close(db->staged_fd);
	char p[4200];
	path_join(p, sizeof p, db->dir, "staging");
	unlink(p);
	if (db->scratch) {
		path_join(p, sizeof p, db->dir, "db");
		env_dir_remove(p);
		path_join(p, sizeof p, db->dir, "next");
		env_dir_remove(p);
		rmdir(db->dir);
	}
	free(db);
	s->db = NULL;
}

/* ---------------------------------------------------------------- checkpoint images */

/* The meta record of a checkpoint: op, checksum, timestamp, size, digest,
 * count, kv_bytes, store digest; then the head. */
#define META_FIXED (8 * 8)

static uint64_t image_digest(const uint8_t *prefix, size_t len, uint64_t store_digest)
{
	return XXH3_64bits_withSeed(prefix, len, store_digest);
}

/* The prefix: magic | head_len | head | count. */
static uint8_t *image_prefix(const uint8_t *head, size_t head_len, uint64_t count, size_t *len)
{
	*len = 8 + 8 + head_len + 8;
	uint8_t *p = malloc(*len);
	if (p == NULL)
		return NULL;
	memcpy(p, CKPT_MAGIC, 8);
	put_u64le(p + 8, head_len);
	if (head_len)
		memcpy(p + 16, head, head_len);
	put_u64le(p + 16 + head_len, count);
	return p;
}

static int held_open(vsrh_lmdb *db, ckpt_held *h, const vsr_checkpoint *cp, uint8_t *prefix,
		     size_t prefix_len)
{
	memset(h, 0, sizeof *h);
	h->cp = *cp;
	h->prefix = prefix;
	h->prefix_len = prefix_len;
	int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &h->rtxn);
	if (rc == 0)
		rc = mdb_cursor_open(h->rtxn, db->kv, &h->cur);
	if (rc)
		held_drop(h);
	return rc;
}

int vsrh_store_ckpt_take(vsrh_store *s, vsr_checkpoint *cp, const uint8_t *head, size_t head_len)
{
	vsrh_lmdb *db = s->db;
	size_t plen;
	uint8_t *prefix = image_prefix(head, head_len, (uint64_t)s->count, &plen);
	if (prefix == NULL)
		return VSR_ENOMEM;
	cp->size = plen + db->kv_bytes;
	cp->digest = image_digest(prefix, plen, s->digest);
	/* The checkpoint's own record, in the same transaction as its state. */
	uint8_t fixed[META_FIXED];
	uint64_t f[8] = {cp->op, cp->checksum, cp->timestamp, cp->size, cp->digest,
			 (uint64_t)s->count, db->kv_bytes, s->digest};
	for (int i = 0; i < 8; i++)
		put_u64le(fixed + 8 * i, f[i]);
	MDB_val k1 = mval("checkpoint", 10), v1 = mval(fixed, sizeof fixed);
	MDB_val k2 = mval("head", 4), v2 = mval(head, head_len);
	int rc = mdb_put(db->wtxn, db->meta, &k1, &v1, 0);
	if (rc == 0)
		rc = mdb_put(db->wtxn, db->meta, &k2, &v2, 0);
	if (rc == 0)
		rc = mdb_txn_commit(db->wtxn);
	db->wtxn = NULL;
	if (rc)
		lmdb_fatal("checkpoint commit", rc);
	held_drop(&db->held[1]);
	size_t more = map_wanted(db);
	if (more) {
		/* Room for the next interval. Resizing needs no transaction open
		 * in this process: the previous checkpoint is no longer served. */
		held_drop(&db->held[0]);
		if ((rc = map_set(db, more)))
			lmdb_fatal("growing the map", rc);
	}
	db->held[1] = db->held[0];
	memset(&db->held[0], 0, sizeof db->held[0]);
	if ((rc = held_open(db, &db->held[0], cp, prefix, plen)))
		lmdb_fatal("read transaction", rc);
	if ((rc = mdb_txn_begin(db->env, NULL, 0, &db->wtxn)))
		lmdb_fatal("write transaction", rc);
	return VSR_OK;
}

static ckpt_held *held_find(vsrh_lmdb *db, const vsr_checkpoint *cp)
{
	for (int i = 0; i < 2; i++) {
		ckpt_held *h = &db->held[i];
		if (h->rtxn && h->cp.op == cp->op && h->cp.digest == cp->digest && h->cp.size == cp->size)
			return h;
	}
	return NULL;
}

static void seek_note(ckpt_held *h, const MDB_val *k)
{
	if (h->seek_count == h->seek_cap) {
		uint32_t cap = h->seek_cap ? 2 * h->seek_cap : 64;
		uint64_t *o = realloc(h->seek_off, cap * sizeof *o);
		size_t *p = o ? realloc(h->seek_key_pos, cap * sizeof *p) : NULL;
		if (o)
			h->seek_off = o;
		if (!o || !p)
			return; /* fewer seek points: slower, still right */
		h->seek_key_pos = p;
		h->seek_cap = cap;
	}
	if (h->seek_count && h->seek_off[h->seek_count - 1] >= h->at)
		return;
	size_t pos = h->seek_keys.len;
	uint8_t l[4] = {(uint8_t)k->mv_size, (uint8_t)(k->mv_size >> 8), 0, 0};
	if (vsrh_buf_put(&h->seek_keys, l, 4) || vsrh_buf_put(&h->seek_keys, k->mv_data, k->mv_size))
		return;
	h->seek_off[h->seek_count] = h->at;
	h->seek_key_pos[h->seek_count] = pos;
	h->seek_count++;
}

/* Puts the cursor on the record containing image byte `off` (>= prefix).
 * Returns 0, or an LMDB error. */
static int held_seek(ckpt_held *h, uint64_t off, MDB_val *k, MDB_val *v)
{
	int rc;
	if (h->at_valid && h->at <= off) {
		rc = mdb_cursor_get(h->cur, k, v, MDB_GET_CURRENT);
	} else {
		/* the last seek point at or before off, or the first record */
		uint32_t lo = 0, hi = h->seek_count;
		while (lo < hi) {
			uint32_t mid = (lo + hi) / 2;
			if (h->seek_off[mid] <= off)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == 0) {
			rc = mdb_cursor_get(h->cur, k, v, MDB_FIRST);
			h->at = h->prefix_len;
		} else {
			const uint8_t *p = h->seek_keys.data + h->seek_key_pos[lo - 1];
			*k = mval(p + 4, (size_t)p[0] | (size_t)p[1] << 8);
			rc = mdb_cursor_get(h->cur, k, v, MDB_SET_KEY);
			h->at = h->seek_off[lo - 1];
		}
		h->seen = 0;
		h->at_valid = rc == 0;
	}
	while (rc == 0 && h->at + 8 + k->mv_size + v->mv_size <= off) {
		h->at += 8 + k->mv_size + v->mv_size;
		rc = mdb_cursor_get(h->cur, k, v, MDB_NEXT);
		if (rc == 0 && ++h->seen % IMAGE_INDEX_EVERY == 0)
			seek_note(h, k);
	}
	h->at_valid = rc == 0;
	return rc;
}

int vsrh_store_ckpt_read(vsrh_store *s, const vsr_checkpoint *cp, uint64_t offset, uint32_t len,
			 vsr_buf *out)
{
	ckpt_held *h = s->db ? held_find(s->db, cp) : NULL;
	if (h == NULL || offset > cp->size)
		return VSR_EINVAL;
	uint64_t end = offset + len < cp->size ? offset + len : cp->size;
	while (offset < end && offset < h->prefix_len) {
		uint64_t n = (end < h->prefix_len ? end : h->prefix_len) - offset;
		if (vsrh_buf_put(out, h->prefix + offset, (size_t)n))
			return VSR_ENOMEM;
		offset += n;
	}
	while (offset < end) {
		MDB_val k, v;
		if (held_seek(h, offset, &k, &v))
			return VSR_ECORRUPT;
		uint8_t rec_head[8];
		uint32_t kl = (uint32_t)k.mv_size, vl = (uint32_t)v.mv_size;
		for (int i = 0; i < 4; i++) {
			rec_head[i] = (uint8_t)(kl >> (8 * i));
			rec_head[4 + i] = (uint8_t)(vl >> (8 * i));
		}
		/* the part of this record inside [offset, end) */
		const struct {
			const void *p;
			uint64_t n;
		} parts[3] = {{rec_head, 8}, {k.mv_data, kl}, {v.mv_data, vl}};
		uint64_t at = h->at;
		for (int i = 0; i < 3 && offset < end; i++) {
			uint64_t a = at, b = at + parts[i].n;
			at = b;
			if (b <= offset)
				continue;
			uint64_t from = offset - a, to = (b < end ? b : end) - a;
			if (vsrh_buf_put(out, (const uint8_t *)parts[i].p + from, (size_t)(to - from)))
				return VSR_ENOMEM;
			offset = a + to;
		}
	}
	return VSR_OK;
}

int vsrh_store_ckpt_write(vsrh_store *s, const vsr_checkpoint *cp, uint64_t offset,
			  const uint8_t *data, uint32_t len)
{
	vsrh_lmdb *db = s->db;
	char p[4200];
	path_join(p, sizeof p, db->dir, "staging");
	if (db->staged_fd < 0 || memcmp(&db->staged, cp, sizeof *cp) != 0) {
		if (db->staged_fd >= 0)
			close(db->staged_fd);
		db->staged_fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (db->staged_fd < 0)
			return VSR_EINVAL;
		db->staged = *cp;
	}
	if (offset > cp->size || len > cp->size - offset)
		return VSR_EINVAL;
	ssize_t n = pwrite(db->staged_fd, data, len, (off_t)offset);
	return n == (ssize_t)len ? VSR_OK : VSR_EINVAL;
}

/* Builds a fresh environment at `path` from the records of an image. */
static int build_env(vsrh_lmdb *db, const char *path, const uint8_t *rec, uint64_t rec_len,
		     const uint8_t *fixed, const uint8_t *head, size_t head_len)
{
	vsrh_lmdb fresh = {.durable = db->durable};
	char err[256];
	env_dir_remove(path);
	/* Room for the records, their pages' slack and what follows. */
	if (mkdir(path, 0700) != 0 || env_open(&fresh, path, (size_t)rec_len * 3, err, sizeof err))
		return -1;
	int rc = 0;
	MDB_cursor *c;
	rc = mdb_cursor_open(fresh.wtxn, fresh.kv, &c);
	for (uint64_t at = 0; rc == 0 && at < rec_len;) {
		uint32_t kl = get_u32le(rec + at), vl = get_u32le(rec + at + 4);
		MDB_val k = mval(rec + at + 8, kl), v = mval(rec + at + 8 + kl, vl);
		rc = mdb_cursor_put(c, &k, &v, MDB_APPEND);
		at += 8 + (uint64_t)kl + vl;
	}
	if (rc == 0) {
		mdb_cursor_close(c);
		MDB_val k1 = mval("checkpoint", 10), v1 = mval(fixed, META_FIXED);
		MDB_val k2 = mval("head", 4), v2 = mval(head, head_len);
		rc = mdb_put(fresh.wtxn, fresh.meta, &k1, &v1, 0);
		if (rc == 0)
			rc = mdb_put(fresh.wtxn, fresh.meta, &k2, &v2, 0);
	}
	if (rc == 0)
		rc = mdb_txn_commit(fresh.wtxn);
	else
		mdb_txn_abort(fresh.wtxn);
	fresh.wtxn = NULL;
	if (rc == 0 && db->durable)
		rc = mdb_env_sync(fresh.env, 1);
	mdb_env_close(fresh.env);
	if (rc)
		env_dir_remove(path);
	return rc ? -1 : 0;
}

int vsrh_store_ckpt_install(lua_State *L, vsrh_store *s, const vsr_checkpoint *cp,
			    int (*accept)(void *arg, const uint8_t *head, size_t len), void *arg)
{
	vsrh_lmdb *db = s->db;
	if (db->staged_fd < 0 || memcmp(&db->staged, cp, sizeof *cp) != 0 || cp->size < 24)
		return VSR_EINVAL;
	uint8_t *img = mmap(NULL, (size_t)cp->size, PROT_READ, MAP_SHARED, db->staged_fd, 0);
	if (img == MAP_FAILED)
		return VSR_ENOMEM;
	int result = VSR_ECORRUPT;
	uint64_t head_len = get_u64le(img + 8);
	if (memcmp(img, CKPT_MAGIC, 8) != 0 || head_len > cp->size - 24)
		goto out;
	const uint8_t *head = img + 16;
	uint64_t plen = 24 + head_len, count = get_u64le(img + 16 + head_len);
	/* Every record whole, keys strictly increasing, and the digest. */
	uint64_t at = plen, n = 0, sum = 0, kv_bytes = cp->size - plen;
	const uint8_t *pk = NULL;
	uint32_t pkl = 0;
	while (at < cp->size) {
		if (cp->size - at < 8)
			goto out;
		uint32_t kl = get_u32le(img + at), vl = get_u32le(img + at + 4);
		if (kl == 0 || kl > 511 || cp->size - at - 8 < (uint64_t)kl + vl)
			goto out;
		const uint8_t *k = img + at + 8;
		if (pk && bytes_cmp((const char *)pk, pkl, (const char *)k, kl) >= 0)
			goto out;
		sum += entry_hash((const char *)k, kl, (const char *)k + kl, vl);
		pk = k;
		pkl = kl;
		at += 8 + (uint64_t)kl + vl;
		n++;
	}
	if (n != count || image_digest(img, (size_t)plen, sum) != cp->digest)
		goto out;
	uint8_t fixed[META_FIXED];
	uint64_t f[8] = {cp->op, cp->checksum, cp->timestamp, cp->size, cp->digest, count, kv_bytes, sum};
	for (int i = 0; i < 8; i++)
		put_u64le(fixed + 8 * i, f[i]);
	char path[4200], next[4200], old[4200];
	path_join(path, sizeof path, db->dir, "db");
	path_join(next, sizeof next, db->dir, "next");
	path_join(old, sizeof old, db->dir, "old");
	result = VSR_ENOMEM;
	if (build_env(db, next, img + plen, cp->size - plen, fixed, head, (size_t)head_len))
		goto out;
	/* The host's half (client table, plain state): nothing is replaced
	 * unless it accepts. */
	result = accept(arg, head, (size_t)head_len);
	if (result != VSR_OK) {
		env_dir_remove(next);
		goto out;
	}
	uint8_t *prefix = malloc((size_t)plen);
	if (prefix == NULL)
		abort();
	memcpy(prefix, img, (size_t)plen);
	vsrh_store_abort(L, s);
	env_close(db);
	env_dir_remove(old);
	char err[256] = "";
	if (rename(path, old) != 0 || rename(next, path) != 0 || env_open(db, path, 0, err, sizeof err)) {
		/* The old store is closed: never run on without one. At the next
		 * start vsrh_store_use_lmdb finishes an interrupted rename. */
		fprintf(stderr, "vsr.store: installing a checkpoint in %s: %s; this replica stops "
			"(exit 74)\n", db->dir, err[0] ? err : strerror(errno));
		fflush(NULL);
		_exit(74);
	}
	env_dir_remove(old);
	s->count = (int64_t)count;
	s->digest = sum;
	db->kv_bytes = kv_bytes;
	int rc = held_open(db, &db->held[0], cp, prefix, (size_t)plen);
	if (rc)
		lmdb_fatal("read transaction", rc);
	result = VSR_OK;
out:
	munmap(img, (size_t)cp->size);
	if (result == VSR_OK || result == VSR_ECORRUPT) {
		close(db->staged_fd);
		db->staged_fd = -1;
		memset(&db->staged, 0, sizeof db->staged);
	}
	return result;
}

int vsrh_store_ckpt_open(vsrh_store *s, vsr_checkpoint *cp, vsr_buf *head)
{
	vsrh_lmdb *db = s->db;
	memset(cp, 0, sizeof *cp);
	MDB_val k1 = mval("checkpoint", 10), v1, k2 = mval("head", 4), v2;
	int rc = mdb_get(db->wtxn, db->meta, &k1, &v1);
	if (rc == MDB_NOTFOUND)
		return VSR_OK;
	if (rc == 0)
		rc = mdb_get(db->wtxn, db->meta, &k2, &v2);
	if (rc || v1.mv_size != META_FIXED)
		return VSR_ECORRUPT;
	uint64_t f[8];
	for (int i = 0; i < 8; i++)
		f[i] = get_u64le((const uint8_t *)v1.mv_data + 8 * i);
	*cp = (vsr_checkpoint){.op = f[0], .checksum = f[1], .timestamp = f[2], .size = f[3],
			       .digest = f[4]};
	s->count = (int64_t)f[5];
	db->kv_bytes = f[6];
	s->digest = f[7];
	if (vsrh_buf_put(head, v2.mv_data, v2.mv_size))
		return VSR_ENOMEM;
	size_t plen;
	uint8_t *prefix = image_prefix(v2.mv_data, v2.mv_size, f[5], &plen);
	if (prefix == NULL)
		return VSR_ENOMEM;
	if (plen + db->kv_bytes != cp->size || image_digest(prefix, plen, s->digest) != cp->digest) {
		free(prefix);
		return VSR_ECORRUPT;
	}
	rc = held_open(db, &db->held[0], cp, prefix, plen);
	return rc ? VSR_ECORRUPT : VSR_OK;
}

/* ------------------------------------------------------- verification */

/* Reads every record of the environment under `dir` (as vsrh_store_use_lmdb
 * names it) and checks it against the checkpoint record: the count, the
 * bytes, the store digest and the image digest. LMDB keeps no checksums of
 * its own, so this is what tells a flipped byte in data.mdb from the state
 * the checkpoint promised. */
int vsrh_store_verify_dir(const char *dir, uint64_t min_op, uint64_t checksum, char *why,
			  size_t why_len)
{
	char path[4200], file[4300];
	path_join(path, sizeof path, dir, "db");
	snprintf(file, sizeof file, "%s/data.mdb", path);
	struct stat st;
	if (stat(file, &st) != 0)
		return 0; /* no environment: the state is in plain Lua (checkpoint.img) */
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_dbi kv, meta;
	const char *what = "opening it";
	int rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env, 2);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env, (size_t)st.st_size > STORE_MAP_MIN ? (size_t)st.st_size
										   : STORE_MAP_MIN);
	if (rc == 0)
		rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc == 0) {
		/* Both are created at the first open, before anything is kept; a
		 * main database holding anything else has lost them. */
		what = "opening its databases";
		rc = mdb_dbi_open(txn, "meta", 0, &meta);
		if (rc == 0)
			rc = mdb_dbi_open(txn, "kv", 0, &kv);
		MDB_stat ms;
		MDB_dbi main_db;
		if (rc == MDB_NOTFOUND && min_op == 0 && mdb_dbi_open(txn, NULL, 0, &main_db) == 0 &&
		    mdb_stat(txn, main_db, &ms) == 0 && ms.ms_entries == 0) {
			mdb_txn_abort(txn);
			mdb_env_close(env);
			return 0;
		}
	}
	MDB_val k1 = mval("checkpoint", 10), v1 = {0}, k2 = mval("head", 4), v2 = {0};
	bool have_cp = false;
	if (rc == 0) {
		what = "reading its checkpoint record";
		rc = mdb_get(txn, meta, &k1, &v1);
		if (rc == MDB_NOTFOUND)
			rc = 0;
		else if (rc == 0 && (rc = mdb_get(txn, meta, &k2, &v2)) == 0)
			have_cp = true;
	}
	if (rc == 0 && have_cp && v1.mv_size != META_FIXED) {
		snprintf(why, why_len, "its checkpoint record has %zu bytes, not %d", v1.mv_size,
			 META_FIXED);
		rc = -1;
	}
	uint64_t count = 0, bytes = 0, sum = 0;
	if (rc == 0) {
		what = "reading its records";
		rc = mdb_cursor_open(txn, kv, &cur);
	}
	MDB_val k, v, prev = {0};
	int step = MDB_FIRST;
	bool scanning = rc == 0;
	while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, step)) == 0) {
		step = MDB_NEXT;
		if (count > 0 && bytes_cmp(prev.mv_data, prev.mv_size, k.mv_data, k.mv_size) >= 0) {
			snprintf(why, why_len, "its records are out of order after %" PRIu64, count);
			rc = -1;
			break;
		}
		prev = k;
		count++;
		bytes += 8 + k.mv_size + v.mv_size;
		sum += entry_hash(k.mv_data, k.mv_size, v.mv_data, v.mv_size);
	}
	if (scanning && rc == MDB_NOTFOUND)
		rc = 0; /* the end of the records */
	if (rc == 0) {
		uint64_t f[8] = {0};
		for (int i = 0; have_cp && i < 8; i++)
			f[i] = get_u64le((const uint8_t *)v1.mv_data + 8 * i);
		size_t plen = 0;
		uint8_t *prefix = have_cp ? image_prefix(v2.mv_data, v2.mv_size, count, &plen) : NULL;
		if (have_cp && prefix == NULL) {
			snprintf(why, why_len, "out of memory");
			rc = -2;
		} else if (count != f[5] || bytes != f[6] || sum != f[7]) {
			snprintf(why, why_len,
				 "its records do not match the checkpoint at op %" PRIu64 " (%" PRIu64
				 " records, %" PRIu64 " bytes, digest %016" PRIx64 "; the checkpoint "
				 "says %" PRIu64 ", %" PRIu64 ", %016" PRIx64 ")",
				 f[0], count, bytes, sum, f[5], f[6], f[7]);
			rc = -1;
		} else if (have_cp && (plen + bytes != f[3] || image_digest(prefix, plen, sum) != f[4])) {
			snprintf(why, why_len, "its checkpoint record at op %" PRIu64 " is damaged", f[0]);
			rc = -1;
		} else if (f[0] < min_op || (f[0] == min_op && min_op > 0 && f[1] != checksum)) {
			snprintf(why, why_len,
				 "it holds the checkpoint at op %" PRIu64 " (checksum %016" PRIx64
				 "), the superblock names op %" PRIu64 " (checksum %016" PRIx64 ")",
				 f[0], f[1], min_op, checksum);
			rc = -1;
		}
		free(prefix);
	} else if (rc > 0 || rc < -2) {
		snprintf(why, why_len, "LMDB failed %s: %s", what, mdb_strerror(rc));
		rc = -1;
	}
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	return rc == 0 ? 0 : rc == -2 ? -1 : 1;
}
