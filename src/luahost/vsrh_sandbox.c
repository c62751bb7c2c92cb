/* vsrh_sandbox.c - allow-listed Lua environment with deterministic budgets. */
#include "vsr_rng.h"
#include "vsrh_sandbox.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "vsrh_codec.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

const char vsrh_fail_mt_key[] = "vsrh.fail";

#define BOX_TEMPLATE "vsrh.template"  /* globals copied into every env */
#define BOX_STRICT "vsrh.strict"      /* metatable of every env */
#define BOX_PRELOAD "vsrh.preload"    /* host modules for require */
#define BOX_LOADED "vsrh.loaded"      /* modules already required */
#define BOX_PROTECTED "vsrh.protected" /* host tables rawset may not touch */
/* Bytes of one required module file. */
#define BOX_FILE_BYTES_MAX (4u << 20)

/* ---------------------------------------------------------------- logging */

void vsrh_box_log(vsrh_box *b, int level, const char *fmt, ...)
{
	if (level < b->log_level)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
	if (b->log) {
		b->log(b->log_arg, level, msg, len);
	} else {
		static const char *names[] = {"debug", "info", "warn", "error"};
		fprintf(stderr, "lua %s: %.*s\n", names[level & 3], (int)len, msg);
	}
}

/* ---------------------------------------------------------------- random */


static void xo_seed(uint64_t s[4], uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		s[i] = z ^ (z >> 31);
	}
}

void vsrh_box_seed(vsrh_box *b, uint64_t seed)
{
	b->rng_seed = seed;
	b->rng_ready = false;
}

/* A uniform integer in [0, lim] by rejection: deterministic and unbiased. */
static uint64_t xo_project(uint64_t s[4], uint64_t lim)
{
	if ((lim & (lim + 1)) == 0)
		return vsr_rng_next(s) & lim;
	uint64_t mask = lim;
	mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4;
	mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
	uint64_t r;
	while ((r = vsr_rng_next(s) & mask) > lim)
		;
	return r;
}

/* math.random / ctx.random: same interface as Lua's, drawn from the
 * generator the host seeded for this call. */
static int box_random(lua_State *L)
{
	vsrh_box *b = vsrh_box_of(L);
	lua_Integer lo, up;
	if (!b->rng_ready) {
		xo_seed(b->rng, b->rng_seed);
		b->rng_ready = true;
	}
	switch (lua_gettop(L)) {
	case 0: {
		double f = (double)(vsr_rng_next(b->rng) >> 11) * 0x1.0p-53;
		lua_pushnumber(L, (lua_Number)f);
		return 1;
	}
	case 1:
		lo = 1;
		up = luaL_checkinteger(L, 1);
		if (up == 0) {
			lua_pushinteger(L, (lua_Integer)vsr_rng_next(b->rng));
			return 1;
		}
		break;
	case 2:
		lo = luaL_checkinteger(L, 1);
		up = luaL_checkinteger(L, 2);
		break;
	default:
		return luaL_error(L, "wrong number of arguments");
	}
	luaL_argcheck(L, lo <= up, lua_gettop(L), "interval is empty");
	uint64_t r = xo_project(b->rng, (uint64_t)up - (uint64_t)lo);
	lua_pushinteger(L, (lua_Integer)(r + (uint64_t)lo));
	return 1;
}

void vsrh_box_push_random(vsrh_box *b)
{
	lua_pushcfunction(b->L, box_random);
}

static int box_randomseed(lua_State *L)
{
	return luaL_error(L, "math.randomseed is not available: the host seeds math.random "
			     "for each operation from the log, identically on every replica");
}

/* ---------------------------------------------------------------- base wrappers */

static int box_readonly(lua_State *L);

static int box_pcall(lua_State *L)
{
	luaL_checkany(L, 1);
	lua_pushboolean(L, 1);
	lua_insert(L, 1); /* true, f, args... */
	int st = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
	vsrh_box *b = vsrh_box_of(L);
	if (st == LUA_ERRMEM && !b->fatal)
		b->fatal = VSRH_FATAL_MEMORY;
	if (st != LUA_OK && b->fatal)
		return lua_error(L); /* budgets cannot be caught */
	if (st != LUA_OK) {
		lua_pushboolean(L, 0);
		lua_insert(L, -2);
		return 2;
	}
	return lua_gettop(L);
}

static int box_xpcall(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2); /* f, handler, true, f, args... */
	int st = lua_pcall(L, n - 2, LUA_MULTRET, 2);
	vsrh_box *b = vsrh_box_of(L);
	if (st == LUA_ERRMEM && !b->fatal)
		b->fatal = VSRH_FATAL_MEMORY;
	if (st != LUA_OK && b->fatal)
		return lua_error(L);
	if (st != LUA_OK) {
		lua_pushboolean(L, 0);
		lua_insert(L, -2);
		return 2;
	}
	return lua_gettop(L) - 2;
}

static int box_tostring(lua_State *L);

static int box_print(lua_State *L)
{
	vsrh_box *b = vsrh_box_of(L);
	if (b->log_level > VSRH_LOG_INFO)
		return 0;
	int n = lua_gettop(L);
	luaL_checkstack(L, 2 * n + 2, "too many arguments to print");
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			lua_pushliteral(L, "\t");
		/* as tostring does: a table or function without __tostring
		 * shows its type, not its address */
		lua_pushcfunction(L, box_tostring);
		lua_pushvalue(L, i);
		lua_call(L, 1, 1);
	}
	if (n == 0)
		lua_pushliteral(L, "");
	else
		lua_concat(L, 2 * n - 1);
	vsrh_box_log(b, VSRH_LOG_INFO, "print: %s", lua_tostring(L, -1));
	return 0;
}

static int box_warn(lua_State *L)
{
	vsrh_box *b = vsrh_box_of(L);
	int n = lua_gettop(L);
	luaL_checkstring(L, 1);
	for (int i = 2; i <= n; i++)
		luaL_checkstring(L, i);
	lua_concat(L, n);
	const char *s = lua_tostring(L, -1);
	if (s[0] != '@') /* "@on"/"@off" control messages mean nothing here */
		vsrh_box_log(b, VSRH_LOG_WARN, "warn: %s", s);
	return 0;
}

static int box_tostring(lua_State *L)
{
	luaL_checkany(L, 1);
	int t = lua_type(L, 1);
	if (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TTHREAD ||
	    t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA) {
		if (luaL_getmetafield(L, 1, "__tostring") == LUA_TNIL) {
			/* The default shows an address, which differs between
			 * replicas: give only the type. */
			lua_pushstring(L, lua_typename(L, t));
			return 1;
		}
		lua_pop(L, 1);
	}
	luaL_tolstring(L, 1, NULL);
	return 1;
}

/* Tables an access may walk through `field` (__index or __newindex)
 * starting from metatable mt (at idx), up to BOX_CHAIN_MAX + 1. Each step
 * is work a single VM instruction does without the count hook seeing it. */
#define BOX_CHAIN_MAX 32
static int chain_depth(lua_State *L, int idx, const char *field)
{
	int top = lua_gettop(L);
	int depth = 0;
	luaL_checkstack(L, 4, "setmetatable");
	lua_pushvalue(L, idx); /* the metatable being walked */
	while (depth <= BOX_CHAIN_MAX) {
		lua_pushstring(L, field);
		if (lua_rawget(L, -2) != LUA_TTABLE)
			break;
		depth++;
		if (!lua_getmetatable(L, -1))
			break;
		lua_replace(L, -3); /* one slot, however deep */
		lua_pop(L, 1);
	}
	lua_settop(L, top);
	return depth;
}

static int box_setmetatable(lua_State *L)
{
	if (lua_type(L, 2) == LUA_TTABLE) {
		/* a chain of __index (or __newindex) tables is walked by one VM
		 * instruction: bounded so that one unit of gas stays small work */
		if (chain_depth(L, 2, "__index") > BOX_CHAIN_MAX ||
		    chain_depth(L, 2, "__newindex") > BOX_CHAIN_MAX)
			return luaL_error(L, "setmetatable: a chain of more than %d __index or "
					     "__newindex tables (one access would walk all of them)",
					  BOX_CHAIN_MAX);
		/* raw, as the collector looks them up */
		if (lua_getfield(L, LUA_REGISTRYINDEX, VSRH_BOX_METATABLES) != LUA_TTABLE)
			return luaL_error(L, "setmetatable: the sandbox is not set up");
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc is not allowed in the sandbox "
					     "(finalizers run at times that differ between replicas)");
		lua_pushliteral(L, "__mode");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __mode is not allowed in the sandbox "
					     "(weak entries vanish at times that differ between replicas)");
		lua_pop(L, 2);
		/* remembered: a __mode added later is found when the call ends
		 * (vsrh_box_weak_check) */
		lua_pushvalue(L, 2);
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
		lua_pop(L, 1);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

int vsrh_box_weak_check(vsrh_box *b)
{
	lua_State *L = b->L;
	int found = 0;
	if (lua_getfield(L, LUA_REGISTRYINDEX, VSRH_BOX_METATABLES) != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		lua_pop(L, 1);
		lua_pushliteral(L, "__mode");
		if (lua_rawget(L, -2) != LUA_TNIL) {
			found = 1;
			/* taken away again, so the table is strong from now on */
			lua_pushliteral(L, "__mode");
			lua_pushnil(L);
			lua_rawset(L, -4);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return found;
}

/* rawset, except on the host's own tables (marker metatables, library
 * proxies, environment metatables), which a script could otherwise alter
 * behind their read-only guards. */
static int box_rawset(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkany(L, 2);
	luaL_checkany(L, 3);
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_PROTECTED);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, -2) != LUA_TNIL)
		return luaL_error(L, "rawset: this table belongs to the host and is read-only");
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return 1;
}

/* Marks the table at idx as the host's: rawset refuses it and, when
 * `guard`, ordinary writes of new keys raise an error. */
void vsrh_box_protect(lua_State *L, int idx, int guard)
{
	idx = lua_absindex(L, idx);
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_PROTECTED);
	lua_pushvalue(L, idx);
	lua_pushboolean(L, 1);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	if (guard) {
		lua_createtable(L, 0, 2);
		lua_pushcfunction(L, box_readonly);
		lua_setfield(L, -2, "__newindex");
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "__metatable");
		lua_setmetatable(L, idx);
	}
}

static int box_load(lua_State *L)
{
	size_t len;
	const char *chunk = lua_tolstring(L, 1, &len);
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "load: only source strings are accepted in the sandbox");
	const char *name = luaL_optstring(L, 2, "=(load)");
	const char *mode = luaL_optstring(L, 3, "t");
	if (strchr(mode, 'b'))
		return luaL_error(L, "load: binary chunks are not allowed in the sandbox");
	int st = luaL_loadbufferx(L, chunk, len, name, "t");
	if (st != LUA_OK) {
		luaL_pushfail(L);
		lua_insert(L, -2);
		return 2;
	}
	if (!lua_isnoneornil(L, 4))
		lua_pushvalue(L, 4);
	else
		vsrh_box_push_env(vsrh_box_of(L));
	lua_setupvalue(L, -2, 1);
	return 1;
}

/* ---------------------------------------------------------------- globals */

static const char *hint_for(const char *name)
{
	static const struct { const char *name, *hint; } hints[] = {
		{"os", "there is no clock or process access: use ctx.timestamp (chosen by the primary, "
		       "carried in the log) for time"},
		{"io", "there is no file access: keep state in vsr.store or in Lua tables"},
		{"debug", "the debug library could escape the sandbox"},
		{"package", "use require, limited to the project's own modules"},
		{"collectgarbage", "garbage collection is the host's business"},
		{"dofile", "use require"},
		{"loadfile", "use require"},
		{"coroutine", "coroutines are not part of the sandbox"},
		{"unpack", "use table.unpack"},
	};
	for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
		if (strcmp(name, hints[i].name) == 0)
			return hints[i].hint;
	return NULL;
}

static int box_strict_index(lua_State *L)
{
	const char *name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
	const char *hint = hint_for(name);
	luaL_where(L, 1);
	if (hint)
		lua_pushfstring(L, "global '%s' is not available in the sandbox: %s",
				name, hint);
	else
		lua_pushfstring(L, "undefined global '%s' (the sandbox has no implicit nil globals)",
				name);
	lua_concat(L, 2);
	return lua_error(L);
}

static int box_readonly(lua_State *L)
{
	return luaL_error(L, "library tables are read-only in the sandbox");
}

void vsrh_box_push_env(vsrh_box *b)
{
	lua_State *L = b->L;
	lua_newtable(L);
	int env = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_TEMPLATE);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, env);
	}
	lua_pop(L, 1);
	lua_pushvalue(L, env);
	lua_setfield(L, env, "_G");
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_STRICT);
	lua_setmetatable(L, env);
}

void vsrh_box_preload(vsrh_box *b, const char *name)
{
	lua_State *L = b->L;
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_PRELOAD);
	lua_insert(L, -2);
	lua_setfield(L, -2, name);
	lua_pop(L, 1);
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
		if (n == cap) {
			if (cap >= BOX_FILE_BYTES_MAX) {
				free(buf);
				fclose(f);
				snprintf(err, err_len, "%s: larger than %u bytes", path, BOX_FILE_BYTES_MAX);
				return -1;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (!buf || bad) {
		free(buf);
		snprintf(err, err_len, "%s: cannot read", path);
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

int vsrh_box_load_file(vsrh_box *b, const char *path, const char *chunkname,
		       char *err, size_t err_len)
{
	lua_State *L = b->L;
	char *src;
	size_t len;
	if (read_file(path, &src, &len, err, err_len)) {
		lua_pop(L, 1);
		return -1;
	}
	char name[VSRH_PATH_MAX + 2];
	snprintf(name, sizeof name, "=%s", chunkname);
	/* The chunk name counts: it is in error messages, hence in replies. */
	b->sources_digest = XXH3_64bits_withSeed(
		src, len, XXH3_64bits_withSeed(name, strlen(name), b->sources_digest));
	b->sources_loaded++;
	if (b->sources_sealed)
		vsrh_box_log(b, VSRH_LOG_WARN, "%s was first loaded inside a call: it is not in the configuration "
				   "fingerprint that replicas compare (require it while the script "
				   "loads)", chunkname);
	int st = luaL_loadbufferx(L, src, len, name, "t");
	free(src);
	if (st != LUA_OK) {
		snprintf(err, err_len, "%s", lua_tostring(L, -1));
		lua_pop(L, 2);
		return -1;
	}
	lua_insert(L, -2);
	lua_setupvalue(L, -2, 1);
	return 0;
}

static int valid_module_name(const char *s)
{
	/* identifiers separated by dots: no slashes, no "..", no absolute paths */
	int start = 1;
	if (!*s)
		return 0;
	for (; *s; s++) {
		char c = *s;
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
		int digit = c >= '0' && c <= '9';
		if (c == '.') {
			if (start)
				return 0;
			start = 1;
		} else if (alpha || (digit && !start)) {
			start = 0;
		} else {
			return 0;
		}
	}
	return !start;
}

static int box_require(lua_State *L)
{
	vsrh_box *b = vsrh_box_of(L);
	const char *name = luaL_checkstring(L, 1);
	lua_settop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_LOADED); /* 2 */
	if (lua_getfield(L, 2, name) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, BOX_PRELOAD);
	if (lua_getfield(L, -1, name) != LUA_TNIL)
		return 1;
	lua_pop(L, 2);
	if (!valid_module_name(name))
		return luaL_error(L, "require: invalid module name '%s'", name);
	char rel[512];
	if (strlen(name) >= sizeof rel - 16)
		return luaL_error(L, "require: module name too long");
	strcpy(rel, name);
	for (char *p = rel; *p; p++)
		if (*p == '.')
			*p = '/';
	const char *dirs[2] = {b->lua_root, b->script_dir};
	char path[VSRH_PATH_MAX + 600];
	for (int d = 0; d < 2; d++) {
		if (!dirs[d][0])
			continue;
		for (int f = 0; f < 2; f++) {
			if (f == 0)
				snprintf(path, sizeof path, "%s/%s.lua", dirs[d], rel);
			else
				snprintf(path, sizeof path, "%s/%s/init.lua", dirs[d], rel);
			FILE *fp = fopen(path, "rb");
			if (!fp)
				continue;
			fclose(fp);
			char err[1024];
			char chunk[600];
			snprintf(chunk, sizeof chunk, f ? "%s/init.lua" : "%s.lua", rel);
			vsrh_box_push_env(b);
			if (vsrh_box_load_file(b, path, chunk, err, sizeof err))
				return luaL_error(L, "require '%s': %s", name, err);
			lua_pushstring(L, name);
			lua_call(L, 1, 1);
			if (lua_isnil(L, -1)) {
				lua_pop(L, 1);
				lua_pushboolean(L, 1);
			}
			lua_pushvalue(L, -1);
			lua_setfield(L, 2, name);
			return 1;
		}
	}
	return luaL_error(L, "module '%s' not found: the sandbox only loads the project's own Lua "
			     "modules (from %s%s%s)", name, b->lua_root[0] ? b->lua_root : "",
			  b->lua_root[0] && b->script_dir[0] ? " and " : "", b->script_dir);
}

/* Copies the fields of the table at idx into a new table, except `skip`. */
static void copy_lib(lua_State *L, int idx, const char *const *skip)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int skipped = 0;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (const char *const *s = skip; s && *s; s++)
				if (strcmp(lua_tostring(L, -2), *s) == 0)
					skipped = 1;
		if (skipped) {
			lua_pop(L, 1);
			continue;
		}
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
}

/* Replaces the table on top by a read-only proxy of it. */
static void make_proxy(lua_State *L)
{
	lua_newtable(L);         /* proxy */
	lua_createtable(L, 0, 3); /* its metatable */
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, box_readonly);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	lua_remove(L, -2);
	vsrh_box_protect(L, -1, 0);
}

static int box_fail(lua_State *L)
{
	lua_Integer code = luaL_checkinteger(L, 1);
	const char *msg = luaL_optstring(L, 2, "");
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, code);
	lua_setfield(L, -2, "code");
	lua_pushstring(L, msg);
	lua_setfield(L, -2, "message");
	luaL_setmetatable(L, vsrh_fail_mt_key);
	return lua_error(L);
}

static int box_setup(lua_State *L)
{
	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	lua_pop(L, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
	int s_string = lua_gettop(L) - 3, s_table = s_string + 1, s_math = s_string + 2,
	    s_utf8 = s_string + 3;
	vsrh_codec_init(L);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, BOX_PROTECTED);
	/* the tables scripts used as metatables, weakly held: only the host
	 * iterates it, and a collected metatable governs nothing */
	lua_newtable(L);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, VSRH_BOX_METATABLES);
	luaL_newmetatable(L, vsrh_fail_mt_key);
	lua_pushliteral(L, "vsr.fail");
	lua_setfield(L, -2, "__name");
	vsrh_box_protect(L, -1, 1);
	lua_pop(L, 1);
	luaL_getmetatable(L, vsrh_array_mt_key);
	vsrh_box_protect(L, -1, 1);
	lua_pop(L, 1);
	luaL_getmetatable(L, vsrh_map_mt_key);
	vsrh_box_protect(L, -1, 1);
	lua_pop(L, 1);

	lua_newtable(L);
	int tpl = lua_gettop(L);
	/* base functions that stay inside the state */
	static const char *const base_ok[] = {"assert", "error", "ipairs", "next", "pairs",
		"rawequal", "rawget", "rawlen", "select", "tonumber", "type",
		"getmetatable", "_VERSION", NULL};
	lua_pushglobaltable(L);
	for (const char *const *n = base_ok; *n; n++) {
		lua_getfield(L, -1, *n);
		lua_setfield(L, tpl, *n);
	}
	lua_getfield(L, -1, "setmetatable");
	lua_pushcclosure(L, box_setmetatable, 1);
	lua_setfield(L, tpl, "setmetatable");
	lua_pop(L, 1);
	static const luaL_Reg wrapped[] = {{"pcall", box_pcall}, {"xpcall", box_xpcall},
		{"rawset", box_rawset},
		{"print", box_print}, {"warn", box_warn}, {"tostring", box_tostring},
		{"load", box_load}, {"require", box_require}, {NULL, NULL}};
	for (const luaL_Reg *r = wrapped; r->name; r++) {
		lua_pushcfunction(L, r->func);
		lua_setfield(L, tpl, r->name);
	}
	/* copies of the libraries, metered (vsrh_meter.c); string without dump */
	static const char *const string_skip[] = {"dump", NULL};
	copy_lib(L, s_string, string_skip);
	int c_string = lua_gettop(L);
	copy_lib(L, s_table, NULL);
	int c_table = lua_gettop(L);
	copy_lib(L, s_utf8, NULL);
	int c_utf8 = lua_gettop(L);
	vsrh_meter_install(L, tpl, c_string, c_table, c_utf8);
	/* math: the host's generator */
	copy_lib(L, s_math, NULL);
	lua_pushcfunction(L, box_random);
	lua_setfield(L, -2, "random");
	lua_pushcfunction(L, box_randomseed);
	lua_setfield(L, -2, "randomseed");
	make_proxy(L);
	lua_setfield(L, tpl, "math");
	/* the shared string metatable: hidden, indexing the clean copy */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushvalue(L, c_string);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);
	lua_pushvalue(L, c_string);
	make_proxy(L);
	lua_setfield(L, tpl, "string");
	lua_pushvalue(L, c_table);
	make_proxy(L);
	lua_setfield(L, tpl, "table");
	lua_pushvalue(L, c_utf8);
	make_proxy(L);
	lua_setfield(L, tpl, "utf8");
	lua_settop(L, tpl);
	/* vsr: helpers every script may use (the state-machine host adds more) */
	lua_newtable(L);
	lua_pushcfunction(L, box_fail);
	lua_setfield(L, -2, "fail");
	luaL_getmetatable(L, vsrh_array_mt_key);
	lua_setfield(L, -2, "array_mt");
	luaL_getmetatable(L, vsrh_map_mt_key);
	lua_setfield(L, -2, "map_mt");
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, VSRH_BOX_VSR);
	make_proxy(L);
	lua_setfield(L, tpl, "vsr");
	lua_setfield(L, LUA_REGISTRYINDEX, BOX_TEMPLATE);

	lua_createtable(L, 0, 3);
	lua_pushcfunction(L, box_strict_index);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	vsrh_box_protect(L, -1, 0);
	lua_setfield(L, LUA_REGISTRYINDEX, BOX_STRICT);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, BOX_PRELOAD);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, BOX_LOADED);
	return 0;
}

static void box_warnf(void *ud, const char *msg, int tocont)
{
	(void)ud;
	(void)msg;
	(void)tocont; /* Lua's own warnings (e.g. from __close) go through warn() */
}

int vsrh_box_open(vsrh_box *b, const vsrh_box_options *o, char *err, size_t err_len)
{
	memset(b, 0, sizeof *b);
	b->mem_max = o->memory_bytes_max ? (size_t)o->memory_bytes_max : (size_t)256 << 20;
	b->instr_max = o->instructions_max ? o->instructions_max : 1000000;
	b->log = o->log;
	b->log_arg = o->log_arg;
	b->log_level = o->log_level;
	vsrh_box_seed(b, 0);
	if (o->lua_root)
		snprintf(b->lua_root, sizeof b->lua_root, "%s", o->lua_root);
	if (o->script_dir)
		snprintf(b->script_dir, sizeof b->script_dir, "%s", o->script_dir);
	b->L = lua_newstate(vsrh_box_alloc, b);
	if (!b->L) {
		snprintf(err, err_len, "cannot create a Lua state: out of memory");
		return -1;
	}
	*(vsrh_box **)lua_getextraspace(b->L) = b;
	/* Most garbage of an operation dies young: the generational mode
	 * collects it cheaply. The collector has no effect a script can see
	 * (no __gc, no weak tables), so the mode does not touch determinism. */
	lua_gc(b->L, LUA_GCGEN, 0, 0);
	lua_setwarnf(b->L, box_warnf, b);
	lua_pushcfunction(b->L, box_setup);
	lua_pushlightuserdata(b->L, b);
	if (lua_pcall(b->L, 1, 0, 0) != LUA_OK) {
		snprintf(err, err_len, "cannot set up the sandbox: %s", lua_tostring(b->L, -1));
		lua_close(b->L);
		b->L = NULL;
		return -1;
	}
	return 0;
}

void vsrh_box_close(vsrh_box *b)
{
	if (b->L)
		lua_close(b->L);
	b->L = NULL;
	free(b->scratch.data);
	memset(&b->scratch, 0, sizeof b->scratch);
	vsrh_box_release_blocks(b);
}
