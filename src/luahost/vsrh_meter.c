/* vsrh_meter.c - the library functions a script sees, metered and made deterministic.
 *
 * Each wrapper charges gas (vsrh_gas.h) for the work its arguments ask
 * for before doing it, then does the work itself or calls Lua's own
 * function. Functions whose cost cannot be known up front do their own
 * work and charge as they go (the pattern functions in vsrh_pattern.c,
 * table.sort and table.concat here). Iteration (next, pairs) follows the
 * canonical key order rather than the hash layout, which depends on the
 * string hash seed, on addresses and on the table's history. */
#include "vsrh_gas.h"
#include "vsrh_sandbox.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "vsrh_codec.h"

/* ---------------------------------------------------------------- helpers */

/* Calls the original function (upvalue 1) with the same arguments. */
static int call_original(lua_State *L)
{
	int n = lua_gettop(L);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, n, LUA_MULTRET);
	return lua_gettop(L);
}

static uint64_t arg_len(lua_State *L, int i)
{
	size_t len = 0;
	if (lua_type(L, i) == LUA_TSTRING)
		lua_tolstring(L, i, &len);
	return len;
}

/* Number of elements in [i, j], 0 when empty, without overflow. */
static uint64_t span(lua_Integer i, lua_Integer j)
{
	return i > j ? 0 : (uint64_t)j - (uint64_t)i + 1;
}

/* log2 rounded up, at least 1: the comparisons of a sort per element. */
static uint64_t log2_up(uint64_t n)
{
	uint64_t l = 1;
	while (l < 63 && ((uint64_t)1 << l) < n)
		l++;
	return l;
}

/* Charges the string arguments from `first` on by their bytes, and one
 * unit per argument. */
static void charge_args(lua_State *L, int first, uint64_t bytes_factor)
{
	uint64_t units = 1;
	for (int i = first; i <= lua_gettop(L); i++)
		units = vsrh_gas_add(units, 1 + vsrh_gas_mul(bytes_factor, vsrh_gas_bytes(arg_len(L, i))));
	vsrh_gas(L, units);
}

/* ---------------------------------------------------------------- string */

/* string.rep(s, n [, sep]): n copies (a unit per 8, even when s is empty)
 * and the bytes. */
static int m_rep(lua_State *L)
{
	size_t l, lsep = 0;
	luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	if (n > 0) {
		uint64_t un = (uint64_t)n;
		uint64_t bytes = vsrh_gas_add(vsrh_gas_mul(l, un), vsrh_gas_mul(lsep, un - 1));
		vsrh_gas(L, vsrh_gas_add(un / 8 + 1, vsrh_gas_bytes(bytes)));
		if (bytes > VSRH_STRING_BYTES_MAX)
			return luaL_error(L, "string.rep: the result exceeds the sandbox's limit of "
					     "%d bytes per string", (int)VSRH_STRING_BYTES_MAX);
	}
	return call_original(L);
}

/* string.upper, lower, reverse, len-scanning utf8 functions: one pass. */
static int m_pass(lua_State *L)
{
	vsrh_gas(L, 1 + vsrh_gas_bytes(arg_len(L, 1)));
	return call_original(L);
}

/* string.byte(s, i, j): one stack slot per byte returned. */
static int m_byte(lua_State *L)
{
	size_t l;
	luaL_checklstring(L, 1, &l);
	lua_Integer i = luaL_optinteger(L, 2, 1);
	lua_Integer j = luaL_optinteger(L, 3, i);
	if (i < 0)
		i = (lua_Integer)l + i + 1 > 0 ? (lua_Integer)l + i + 1 : 1;
	if (j < 0)
		j = (lua_Integer)l + j + 1;
	if (j > (lua_Integer)l)
		j = (lua_Integer)l;
	vsrh_gas(L, 1 + span(i < 1 ? 1 : i, j));
	return call_original(L);
}

/* string.char(...), utf8.char(...), table.pack(...): one unit per argument. */
static int m_per_arg(lua_State *L)
{
	vsrh_gas(L, 1 + (uint64_t)lua_gettop(L));
	return call_original(L);
}

/* string.format(fmt, ...): the format and every string argument, four
 * times over for %q's escapes; no %p (addresses differ between replicas);
 * %s of a table or function without __tostring prints only its type. */
static int m_format(lua_State *L)
{
	size_t len;
	const char *f = luaL_checklstring(L, 1, &len);
	int top = lua_gettop(L);
	int arg = 1;
	charge_args(L, 1, 4);
	for (size_t i = 0; i < len; i++) {
		if (f[i] != '%')
			continue;
		if (++i < len && f[i] == '%')
			continue;
		while (i < len && strchr("-+ #0123456789.", f[i]))
			i++;
		if (i >= len)
			break;
		arg++;
		if (f[i] == 'p')
			return luaL_error(L, "string.format: %%p shows an address, which differs between replicas");
		int t = arg <= top ? lua_type(L, arg) : LUA_TNONE;
		if (f[i] == 's' && (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TTHREAD ||
				    t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA)) {
			if (luaL_getmetafield(L, arg, "__tostring") == LUA_TNIL) {
				lua_pushstring(L, lua_typename(L, t));
				lua_replace(L, arg);
			} else {
				lua_pop(L, 1);
			}
		}
	}
	return call_original(L);
}

/* string.pack(fmt, ...): every option may write up to 16 bytes, strings
 * their length. string.unpack(fmt, s): one value per option, the bytes
 * of s at most once. */
static int m_pack(lua_State *L)
{
	uint64_t fmt = arg_len(L, 1);
	vsrh_gas(L, vsrh_gas_add(fmt, 0));
	charge_args(L, 2, 1);
	return call_original(L);
}

static int m_unpack(lua_State *L)
{
	vsrh_gas(L, 1 + arg_len(L, 1) + vsrh_gas_bytes(arg_len(L, 2)));
	return call_original(L);
}

/* tonumber(s): scans s. */
static int m_tonumber(lua_State *L)
{
	charge_args(L, 1, 1);
	return call_original(L);
}

/* ---------------------------------------------------------------- table */

/* table.move(a1, f, e, t [, a2]): e - f + 1 reads and writes. */
static int m_move(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2);
	lua_Integer e = luaL_checkinteger(L, 3);
	vsrh_gas(L, 1 + span(f, e));
	return call_original(L);
}

/* table.unpack(t [, i [, j]]): j - i + 1 stack slots. */
static int m_unpack_table(lua_State *L)
{
	lua_Integer i = luaL_optinteger(L, 2, 1);
	lua_Integer j = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
	vsrh_gas(L, 1 + span(i, j));
	return call_original(L);
}

/* table.insert(t, [pos,] v) / table.remove(t [, pos]): the elements shifted. */
static int m_insert(lua_State *L)
{
	lua_Integer n = luaL_len(L, 1);
	uint64_t moved = lua_gettop(L) == 3 ? span(luaL_checkinteger(L, 2), n) : 0;
	vsrh_gas(L, 1 + moved);
	return call_original(L);
}

static int m_remove(lua_State *L)
{
	lua_Integer n = luaL_len(L, 1);
	vsrh_gas(L, 1 + span(luaL_optinteger(L, 2, n), n));
	return call_original(L);
}

/* table.concat(t [, sep [, i [, j]]]): its own implementation, so that the
 * bytes are known (and charged, and limited) before any is copied. */
static int m_concat(lua_State *L)
{
	size_t lsep;
	const char *sep = luaL_optlstring(L, 2, "", &lsep);
	lua_Integer i = luaL_optinteger(L, 3, 1);
	lua_Integer j = lua_isnoneornil(L, 4) ? luaL_len(L, 1) : luaL_checkinteger(L, 4);
	uint64_t n = span(i, j);
	vsrh_gas(L, 1 + n);
	lua_settop(L, 4);
	lua_createtable(L, n < 1024 ? (int)n : 1024, 0); /* 5: the pieces */
	uint64_t bytes = 0;
	for (uint64_t k = 0; k < n; k++) {
		lua_Integer at = i + (lua_Integer)k;
		lua_geti(L, 1, at);
		if (!lua_isstring(L, -1))
			return luaL_error(L, "invalid value (at index %I) in table for 'concat'", at);
		size_t l;
		lua_tolstring(L, -1, &l);
		bytes += l + (k + 1 < n ? lsep : 0);
		if (bytes > VSRH_STRING_BYTES_MAX)
			return luaL_error(L, "table.concat: result exceeds the sandbox's limit of %d "
					     "bytes per string", (int)VSRH_STRING_BYTES_MAX);
		lua_rawseti(L, 5, (lua_Integer)k + 1);
	}
	vsrh_gas(L, vsrh_gas_bytes(bytes));
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (uint64_t k = 0; k < n; k++) {
		lua_rawgeti(L, 5, (lua_Integer)k + 1);
		luaL_addvalue(&b);
		if (k + 1 < n)
			luaL_addlstring(&b, sep, lsep);
	}
	luaL_pushresult(&b);
	return 1;
}

/* Cost of one comparison of a sort: one unit, and the bytes two strings
 * share when both are strings (l_strcmp compares them in full). */
static uint64_t compare_cost(lua_State *L, int a, int b)
{
	if (lua_type(L, a) == LUA_TSTRING && lua_type(L, b) == LUA_TSTRING) {
		size_t la = lua_rawlen(L, a), lb = lua_rawlen(L, b);
		return 1 + vsrh_gas_bytes(la < lb ? la : lb);
	}
	return 1;
}

static int sort_less(lua_State *L, int has_cmp, int a, int b)
{
	vsrh_gas(L, compare_cost(L, a, b));
	if (has_cmp) {
		lua_pushvalue(L, 2);
		lua_pushvalue(L, a);
		lua_pushvalue(L, b);
		lua_call(L, 2, 1);
		int r = lua_toboolean(L, -1);
		lua_pop(L, 1);
		return r;
	}
	return lua_compare(L, a, b, LUA_OPLT);
}

/* table.sort: a stable bottom-up merge sort. Unlike Lua's quicksort, whose
 * pivot is randomised from the clock for arrays over 100 elements, it
 * gives the same order on every replica even for comparators with ties.
 * It sorts copies and writes the array back only once sorted, so a
 * comparator that raises midway leaves the array as it was. */
static int m_sort(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer n = luaL_len(L, 1);
	int has_cmp = !lua_isnoneornil(L, 2);
	if (has_cmp)
		luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	luaL_argcheck(L, n < (1 << 26), 1, "array too big");
	if (n < 2)
		return 0;
	vsrh_gas(L, 2 * (uint64_t)n);
	lua_createtable(L, (int)n, 0); /* 3 */
	lua_createtable(L, (int)n, 0); /* 4 */
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, 1, i);
		lua_rawseti(L, 3, i);
	}
	int src = 3, dst = 4;
	for (lua_Integer w = 1; w < n; w *= 2) {
		for (lua_Integer lo = 1; lo <= n; lo += 2 * w) {
			lua_Integer mid = lo + w - 1 < n ? lo + w - 1 : n;
			lua_Integer hi = lo + 2 * w - 1 < n ? lo + 2 * w - 1 : n;
			lua_Integer i = lo, j = mid + 1, k = lo;
			while (i <= mid || j <= hi) {
				int take_right;
				if (i > mid) {
					take_right = 1;
				} else if (j > hi) {
					take_right = 0;
				} else {
					lua_rawgeti(L, src, i);
					lua_rawgeti(L, src, j);
					/* right first only when strictly less: stable */
					take_right = sort_less(L, has_cmp, lua_gettop(L), lua_gettop(L) - 1);
					lua_pop(L, 2);
				}
				lua_rawgeti(L, src, take_right ? j++ : i++);
				lua_rawseti(L, dst, k++);
			}
		}
		int t = src;
		src = dst;
		dst = t;
	}
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, src, i);
		lua_seti(L, 1, i);
	}
	return 0;
}

/* ---------------------------------------------------------------- base */

/* load(chunk): the parser's work is linear in the chunk's bytes. */
static int m_load(lua_State *L)
{
	vsrh_gas(L, 1 + arg_len(L, 1));
	return call_original(L);
}

/* Pushes t's keys in canonical order (the codec's: booleans, numbers,
 * then strings by bytes), charging the sort; refuses keys that have no order the same
 * on every replica (tables, functions as keys). */
static void push_ordered_keys(lua_State *L, int t, const char *who)
{
	uint64_t count = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		count++;
	}
	vsrh_gas(L, 1 + vsrh_gas_mul(count, log2_up(count) + 1));
	size_t unordered;
	vsrh_push_ordered_keys(L, t, &unordered);
	if (unordered)
		luaL_error(L, "%s: the table has keys that are tables or functions, whose order "
			      "differs between replicas; keep them in an array or key them by "
			      "strings or numbers", who);
}

static int ordered_iter(lua_State *L)
{
	lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
	for (;;) {
		i++;
		if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL) {
			lua_pushinteger(L, i);
			lua_replace(L, lua_upvalueindex(2));
			return 0;
		}
		lua_pushvalue(L, -1);
		if (lua_rawget(L, 1) != LUA_TNIL) {
			lua_pushinteger(L, i);
			lua_replace(L, lua_upvalueindex(2));
			return 2;
		}
		lua_pop(L, 2); /* key removed during the traversal */
	}
}

/* pairs(t): in canonical key order on every replica (a __pairs metamethod
 * is honoured). The keys are taken when the loop starts: keys added during
 * the loop are not visited, removed ones are skipped. */
static int m_pairs(lua_State *L)
{
	if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
		lua_pushvalue(L, 1);
		lua_call(L, 1, 3);
		return 3;
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	push_ordered_keys(L, 1, "pairs");
	lua_pushinteger(L, 0);
	lua_pushcclosure(L, ordered_iter, 2);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

/* Canonical order of two keys (stack slots): -1, 0, 1; raises for keys
 * without one. */
static int key_rank(lua_State *L, int i)
{
	switch (lua_type(L, i)) {
	case LUA_TBOOLEAN: return 0;
	case LUA_TNUMBER: return 1;
	case LUA_TSTRING: return 2;
	default:
		return luaL_error(L, "next: the table has keys that are tables or functions, whose "
				     "order differs between replicas; keep them in an array or key "
				     "them by strings or numbers");
	}
}

static int key_order(lua_State *L, int a, int b)
{
	int ra = key_rank(L, a), rb = key_rank(L, b);
	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (ra == 0)
		return lua_toboolean(L, a) - lua_toboolean(L, b);
	if (ra == 1) {
		if (lua_compare(L, a, b, LUA_OPLT))
			return -1;
		if (lua_compare(L, b, a, LUA_OPLT))
			return 1;
		/* equal as numbers yet distinct keys: integers first */
		return lua_isinteger(L, a) ? (lua_isinteger(L, b) ? 0 : -1) : (lua_isinteger(L, b) ? 1 : 0);
	}
	size_t la, lb;
	const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
	int c = memcmp(sa, sb, la < lb ? la : lb);
	if (c)
		return c < 0 ? -1 : 1;
	return (la > lb) - (la < lb);
}

/* next(t [, k]): the key after k in canonical order, found by one pass
 * over the table (a unit per entry). A loop over next is quadratic: use
 * pairs, which sorts once. */
static int m_next(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 2);
	/* The walk works from k's order alone, so k need not be in the table
	 * any more (Lua allows clearing fields during a traversal). */
	int from = !lua_isnil(L, 2);
	if (from)
		key_rank(L, 2);
	uint64_t visited = 0;
	lua_pushnil(L); /* 3: the best key so far */
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		lua_pop(L, 1);
		visited++;
		if ((visited & 1023) == 0)
			vsrh_gas(L, 1024);
		key_rank(L, -1);
		if (from && key_order(L, -1, 2) <= 0)
			continue;
		if (!lua_isnil(L, 3) && key_order(L, -1, 3) >= 0)
			continue;
		lua_pushvalue(L, -1);
		lua_replace(L, 3);
	}
	vsrh_gas(L, 1 + (visited & 1023));
	if (lua_isnil(L, 3))
		return 1;
	lua_pushvalue(L, 3);
	lua_rawget(L, 1);
	return 2;
}

/* A host function (vsr.store's get, put...): one unit and the bytes of its
 * string arguments (keys) before it runs; encoding and decoding values is
 * charged by the codec as it goes. On the hot path of every store access,
 * so the wrapper calls the C function directly: it carries the original's
 * upvalue (if any) at the same index, and the function pointer after it. */
static uint64_t host_fn_charge(lua_State *L)
{
	uint64_t units = 1;
	int n = lua_gettop(L);
	for (int i = 1; i <= n; i++)
		if (lua_type(L, i) == LUA_TSTRING)
			units += vsrh_gas_bytes(lua_rawlen(L, i));
	return units;
}

static lua_CFunction host_fn_at(lua_State *L, int up)
{
	lua_CFunction f;
	void *p = lua_touserdata(L, lua_upvalueindex(up));
	memcpy(&f, &p, sizeof f);
	return f;
}

static int m_host_fn0(lua_State *L)
{
	vsrh_gas(L, host_fn_charge(L));
	return host_fn_at(L, 1)(L);
}

static int m_host_fn1(lua_State *L)
{
	vsrh_gas(L, host_fn_charge(L));
	return host_fn_at(L, 2)(L);
}

void vsrh_meter_wrap_cfunctions(lua_State *L, int t)
{
	_Static_assert(sizeof(lua_CFunction) == sizeof(void *), "function pointers fit a pointer");
	t = lua_absindex(L, t);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_CFunction f = lua_tocfunction(L, -1);
		int nup = 0;
		while (f && lua_getupvalue(L, -1 - nup, nup + 1) != NULL)
			nup++;
		if (!f || nup > 1) {
			lua_pop(L, 1 + nup); /* left as it is */
			continue;
		}
		void *p;
		memcpy(&p, &f, sizeof p);
		lua_pushlightuserdata(L, p);
		lua_pushcclosure(L, nup ? m_host_fn1 : m_host_fn0, nup + 1);
		lua_remove(L, -2); /* the original */
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, t); /* an existing key: the traversal goes on */
	}
}

/* ---------------------------------------------------------------- install */

/* Replaces field `name` of the table at `lib` by `f` closing over the
 * original function. */
static void wrap(lua_State *L, int lib, const char *name, lua_CFunction f)
{
	lua_getfield(L, lib, name);
	lua_pushcclosure(L, f, 1);
	lua_setfield(L, lib, name);
}

void vsrh_meter_install(lua_State *L, int tpl, int s, int t, int u)
{
	wrap(L, s, "rep", m_rep);
	wrap(L, s, "upper", m_pass);
	wrap(L, s, "lower", m_pass);
	wrap(L, s, "reverse", m_pass);
	wrap(L, s, "byte", m_byte);
	wrap(L, s, "char", m_per_arg);
	wrap(L, s, "format", m_format);
	wrap(L, s, "pack", m_pack);
	wrap(L, s, "packsize", m_pack);
	wrap(L, s, "unpack", m_unpack);
	vsrh_pattern_install(L, s);

	wrap(L, t, "move", m_move);
	wrap(L, t, "unpack", m_unpack_table);
	wrap(L, t, "pack", m_per_arg);
	wrap(L, t, "insert", m_insert);
	wrap(L, t, "remove", m_remove);
	lua_pushcfunction(L, m_concat);
	lua_setfield(L, t, "concat");
	lua_pushcfunction(L, m_sort);
	lua_setfield(L, t, "sort");

	wrap(L, u, "char", m_per_arg);
	wrap(L, u, "len", m_pass);
	wrap(L, u, "offset", m_pass);
	wrap(L, u, "codepoint", m_byte);

	wrap(L, tpl, "load", m_load);
	wrap(L, tpl, "tonumber", m_tonumber);
	lua_pushcfunction(L, m_pairs);
	lua_setfield(L, tpl, "pairs");
	lua_pushcfunction(L, m_next);
	lua_setfield(L, tpl, "next");
}
