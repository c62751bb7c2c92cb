/* lua_vsrclient.c - the Lua module "vsrclient": a blocking client session for specs and scripts.
 *
 *   local vsrclient = require "vsrclient"
 *   local c = vsrclient.connect("config/kv.lua", { call_ms = 5000 })
 *   -- or vsrclient.connect{ cluster = 1, addresses = { "127.0.0.1:7101", ... },
 *   --                       attempt_ms = 500, call_ms = 10000 }
 *   local reply, err, outcome = c:call({ "put", "k", "v" })
 *     -- outcome is "done" (err is nil, reply may be nil), "failed"
 *     -- (certainly not applied) or "unknown" (may have been applied)
 *   local v, err, outcome, info = c:query({ op = "get", key = "k" }, "stale")
 *     -- a read outside the log; mode "linearizable" (default), "lease" or
 *     -- "stale"; info = { op = N, mode = M }: what the answer reflects
 *   local replicas = c:status(timeout_ms)   -- one table per replica; replica
 *                                            -- and primary are 1-based
 *   c:set_timeouts{ attempt_ms = 200, call_ms = 1500 } -- for later calls
 *   c:close()
 *
 * Lua values travel as msgpack: nil, booleans, integers, floats, strings,
 * and tables (a table whose keys are exactly 1..#t is an array, any other
 * table a map; an empty table is an empty array). Replies decode the same
 * way; msgpack bin becomes a Lua string. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <msgpack.h>

#include "vsrc_client.h"

#define LUA_CLIENT_MT "vsrclient.client"
#define LUA_DEPTH_MAX 64

int luaopen_vsrclient(lua_State *L);

typedef struct lua_client {
	vsrc_sync *sync;
	vsrc_options opt;
} lua_client;

/* ------------------------------------------------------------------------ */
/* Lua -> msgpack. Errors are raised with luaL_error after the buffer is
 * released by the caller's protected wrapper, so encoding runs in a pcall. */

static int lvc_write(void *data, const char *buf, size_t len)
{
	return vsr_buf_append(data, buf, len) == VSR_OK ? 0 : -1;
}

/* Length of the table at idx if it is a sequence 1..n with no other key,
 * else -1. */
static lua_Integer lvc_array_len(lua_State *L, int idx)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
	lua_Integer count = 0;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1)) {
			lua_pop(L, 1);
			return -1;
		}
		lua_Integer k = lua_tointeger(L, -1);
		if (k < 1 || k > n) {
			lua_pop(L, 1);
			return -1;
		}
		count++;
	}
	return count == n ? n : -1;
}

static void lvc_pack(lua_State *L, msgpack_packer *pk, int idx, int depth)
{
	idx = lua_absindex(L, idx);
	if (depth > LUA_DEPTH_MAX)
		luaL_error(L, "value nested deeper than %d levels", LUA_DEPTH_MAX);
	int rc = 0;
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		rc = msgpack_pack_nil(pk);
		break;
	case LUA_TBOOLEAN:
		rc = lua_toboolean(L, idx) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			rc = msgpack_pack_int64(pk, (int64_t)lua_tointeger(L, idx));
		else
			rc = msgpack_pack_double(pk, (double)lua_tonumber(L, idx));
		break;
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		rc = msgpack_pack_str(pk, n);
		if (rc == 0)
			rc = msgpack_pack_str_body(pk, s, n);
		break;
	}
	case LUA_TTABLE: {
		luaL_checkstack(L, 4, "value too deep");
		lua_Integer n = lvc_array_len(L, idx);
		if (n >= 0) {
			rc = msgpack_pack_array(pk, (size_t)n);
			for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
				lua_rawgeti(L, idx, i);
				lvc_pack(L, pk, -1, depth + 1);
				lua_pop(L, 1);
			}
			break;
		}
		size_t count = 0;
		lua_pushnil(L);
		while (lua_next(L, idx) != 0) {
			lua_pop(L, 1);
			count++;
		}
		rc = msgpack_pack_map(pk, count);
		lua_pushnil(L);
		while (rc == 0 && lua_next(L, idx) != 0) {
			lvc_pack(L, pk, -2, depth + 1);
			lvc_pack(L, pk, -1, depth + 1);
			lua_pop(L, 1);
		}
		break;
	}
	default:
		luaL_error(L, "cannot send a %s value", luaL_typename(L, idx));
	}
	if (rc != 0)
		luaL_error(L, "out of memory");
}

static int lvc_pack_protected(lua_State *L)
{
	vsr_buf *b = lua_touserdata(L, 2);
	msgpack_packer pk;
	msgpack_packer_init(&pk, b, lvc_write);
	lvc_pack(L, &pk, 1, 0);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* msgpack -> Lua. */

static void lvc_unpack(lua_State *L, const msgpack_object *o, int depth)
{
	if (depth > LUA_DEPTH_MAX)
		luaL_error(L, "reply nested deeper than %d levels", LUA_DEPTH_MAX);
	luaL_checkstack(L, 4, "reply too deep");
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		lua_pushnil(L);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		lua_pushboolean(L, o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)LUA_MAXINTEGER)
			lua_pushnumber(L, (lua_Number)o->via.u64);
		else
			lua_pushinteger(L, (lua_Integer)o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		lua_pushinteger(L, (lua_Integer)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		lua_pushnumber(L, (lua_Number)o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
		lua_pushlstring(L, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		lua_createtable(L, (int)o->via.array.size, 0);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			lvc_unpack(L, &o->via.array.ptr[i], depth + 1);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	case MSGPACK_OBJECT_MAP:
		lua_createtable(L, 0, (int)o->via.map.size);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			lvc_unpack(L, &o->via.map.ptr[i].key, depth + 1);
			lvc_unpack(L, &o->via.map.ptr[i].val, depth + 1);
			if (lua_isnil(L, -2)) {
				lua_pop(L, 2); /* a nil key has no Lua form */
				continue;
			}
			lua_rawset(L, -3);
		}
		break;
	default:
		luaL_error(L, "reply holds a msgpack extension type");
	}
}

/* Pushes the decoded reply; raises on malformed bytes. Empty bytes: nil. */
static int lvc_unpack_protected(lua_State *L)
{
	const uint8_t *data = lua_touserdata(L, 1);
	size_t len = (size_t)lua_tointeger(L, 2);
	msgpack_unpacked *up = lua_touserdata(L, 3);
	if (len == 0) {
		lua_pushnil(L);
		return 1;
	}
	size_t off = 0;
	int rc = msgpack_unpack_next(up, (const char *)data, len, &off);
	if (rc != MSGPACK_UNPACK_SUCCESS || off != len)
		return luaL_error(L, "reply is not one msgpack value");
	lvc_unpack(L, &up->data, 0);
	return 1;
}

/* ------------------------------------------------------------------------ */
/* The client object. */

static lua_client *lvc_check_client(lua_State *L)
{
	lua_client *c = luaL_checkudata(L, 1, LUA_CLIENT_MT);
	if (!c->sync)
		luaL_error(L, "the client is closed");
	return c;
}

static uint32_t lvc_opt_ms(lua_State *L, int idx, const char *key, uint32_t def)
{
	lua_getfield(L, idx, key);
	lua_Integer v = luaL_optinteger(L, -1, (lua_Integer)def);
	lua_pop(L, 1);
	if (v <= 0 || v > 24 * 3600 * 1000)
		luaL_error(L, "%s: expected a positive number of milliseconds", key);
	return (uint32_t)v;
}

/* Replaces the config path at index 1 by { cluster =, addresses = } read
 * from the file, which runs as data in an empty environment. */
static void lvc_load_config(lua_State *L)
{
	const char *path = lua_tostring(L, 1);
	if (luaL_loadfilex(L, path, "t") != LUA_OK)
		lua_error(L);
	lua_newtable(L);
	lua_setupvalue(L, -2, 1); /* _ENV of the chunk: nothing to call */
	if (lua_pcall(L, 0, 1, 0) != LUA_OK)
		luaL_error(L, "%s: %s", path, lua_tostring(L, -1));
	if (!lua_istable(L, -1))
		luaL_error(L, "%s: expected the file to return a table", path);
	lua_createtable(L, 0, 2);
	lua_getfield(L, -2, "cluster");
	if (!lua_isinteger(L, -1))
		luaL_error(L, "%s: cluster: expected an integer", path);
	lua_setfield(L, -2, "cluster");
	lua_getfield(L, -2, "clients");
	if (!lua_istable(L, -1))
		luaL_error(L, "%s: clients: expected a list of \"host:port\"", path);
	lua_setfield(L, -2, "addresses");
	lua_replace(L, 1);
	lua_pop(L, 1);
}

/* connect(config_path [, { attempt_ms =, call_ms = }]) or
 * connect({ cluster =, addresses =, attempt_ms =, call_ms = }) */
static int lvc_connect(lua_State *L)
{
	if (lua_type(L, 1) == LUA_TSTRING)
		lvc_load_config(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	int opts = lua_istable(L, 2) ? 2 : 1;
	lua_getfield(L, 1, "cluster");
	lua_Integer cluster = luaL_checkinteger(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, 1, "addresses");
	luaL_checktype(L, -1, LUA_TTABLE);
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	if (n < 1 || n > (lua_Integer)VSR_REPLICAS_MAX)
		return luaL_error(L, "addresses: expected 1 to %d entries", (int)VSR_REPLICAS_MAX);
	const char *addrs[VSR_REPLICAS_MAX];
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_error(L, "addresses[%d]: expected \"host:port\"", (int)i);
		addrs[i - 1] = lua_tostring(L, -1);
		lua_pop(L, 1); /* the string stays alive in the addresses table */
	}
	lua_client *c = lua_newuserdatauv(L, sizeof(*c), 0);
	memset(c, 0, sizeof(*c));
	luaL_setmetatable(L, LUA_CLIENT_MT);
	char err[256];
	if (vsrc_options_from_addresses(&c->opt, (uint64_t)cluster, addrs, (uint32_t)n, err,
					sizeof(err)) < 0)
		return luaL_error(L, "%s", err);
	lua_getfield(L, opts, "key_file");
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_error(L, "key_file: expected the path of the cluster's client key");
		if (vsrc_options_set_key_file(&c->opt, lua_tostring(L, -1), err, sizeof(err)) < 0)
			return luaL_error(L, "key_file: %s", err);
	}
	lua_pop(L, 1);
	c->opt.timing.attempt_ms = lvc_opt_ms(L, opts, "attempt_ms", c->opt.timing.attempt_ms);
	c->opt.timing.call_ms = lvc_opt_ms(L, opts, "call_ms", c->opt.timing.call_ms);
	if (vsrc_sync_open(&c->opt, &c->sync) != 0)
		return luaL_error(L, "out of memory");
	return 1;
}

static void lvc_set_int(lua_State *L, const char *k, uint64_t v);

/* mode < 0: c:call(op), through the log; else c:query(op [, mode]). */
static int lvc_run(lua_State *L, int mode)
{
	lua_client *c = lvc_check_client(L);
	luaL_checkany(L, 2);
	vsr_buf op = { 0 };
	lua_pushcfunction(L, lvc_pack_protected);
	lua_pushvalue(L, 2);
	lua_pushlightuserdata(L, &op);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		vsr_buf_free(&op);
		return lua_error(L);
	}
	const vsrc_sync_result *r;
	if (mode < 0)
		vsrc_sync_call(c->sync, op.data, op.len, &r);
	else
		vsrc_sync_query(c->sync, (uint8_t)mode, op.data, op.len, &r);
	vsr_buf_free(&op);
	if (r->outcome == VSRC_DONE) {
		msgpack_unpacked up;
		msgpack_unpacked_init(&up);
		lua_pushcfunction(L, lvc_unpack_protected);
		lua_pushlightuserdata(L, r->reply);
		lua_pushinteger(L, (lua_Integer)r->reply_len);
		lua_pushlightuserdata(L, &up);
		int rc = lua_pcall(L, 3, 1, 0);
		msgpack_unpacked_destroy(&up);
		if (rc != LUA_OK) {
			/* Applied, but the answer cannot be shown: still "done". */
			const char *why = lua_tostring(L, -1);
			lua_pushnil(L);
			lua_pushfstring(L, "done, but %s", why ? why : "the reply is unreadable");
			lua_pushstring(L, "done");
			return 3;
		}
		lua_pushnil(L);
		lua_pushstring(L, "done");
		if (mode < 0)
			return 3;
		/* A query says what its answer reflects. */
		lua_createtable(L, 0, 2);
		lvc_set_int(L, "op", r->op);
		lua_pushstring(L, vsr_read_mode_name(r->read_mode));
		lua_setfield(L, -2, "mode");
		return 4;
	}
	lua_pushnil(L);
	if (vsr_reply_is_error(r->status) && r->reply_len) {
		/* The state machine's own message (a msgpack string, or raw). */
		msgpack_unpacked up;
		msgpack_unpacked_init(&up);
		size_t off = 0;
		if (msgpack_unpack_next(&up, (const char *)r->reply, r->reply_len, &off) ==
			    MSGPACK_UNPACK_SUCCESS &&
		    up.data.type == MSGPACK_OBJECT_STR)
			lua_pushlstring(L, up.data.via.str.ptr, up.data.via.str.size);
		else
			lua_pushlstring(L, (const char *)r->reply, r->reply_len);
		msgpack_unpacked_destroy(&up);
	} else {
		lua_pushstring(L, r->reason);
	}
	lua_pushstring(L, vsrc_outcome_name(r->outcome));
	/* which kind of applied error: a refusal (vsr.fail) or a script error */
	if (vsr_reply_is_error(r->status)) {
		lua_pushstring(L, r->status == VSR_REPLY_SCRIPT_ERROR ? "script error" : "refused");
		return 4;
	}
	return 3;
}

static int lvc_call_op(lua_State *L)
{
	return lvc_run(L, -1);
}

/* c:query(op [, mode]): a read outside the log; mode "linearizable"
 * (default), "lease" or "stale". On success a fourth value
 * { op = N, mode = M }: the op the answer reflects and the mode it was
 * answered in. */
static int lvc_query_op(lua_State *L)
{
	static const char *const modes[] = {"linearizable", "lease", "stale", NULL};
	int mode = luaL_checkoption(L, 3, "linearizable", modes);
	lua_settop(L, 2);
	return lvc_run(L, mode);
}

static int lvc_session(lua_State *L)
{
	lua_client *c = lvc_check_client(L);
	lua_pushinteger(L, (lua_Integer)vsrc_sync_session(c->sync));
	return 1;
}

static void lvc_set_int(lua_State *L, const char *k, uint64_t v)
{
	lua_pushinteger(L, (lua_Integer)v);
	lua_setfield(L, -2, k);
}

static int lvc_status(lua_State *L)
{
	lua_client *c = lvc_check_client(L);
	lua_Integer timeout = luaL_optinteger(L, 2, 2000);
	if (timeout <= 0 || timeout > 600000)
		return luaL_error(L, "timeout: expected 1 to 600000 milliseconds");
	vsrc_status_entry e[VSR_REPLICAS_MAX];
	vsrc_status_query(&c->opt, (uint32_t)timeout, e);
	lua_createtable(L, c->opt.replica_count, 0);
	for (uint32_t i = 0; i < c->opt.replica_count; i++) {
		lua_createtable(L, 0, 13);
		lua_pushstring(L, c->opt.names[i]);
		lua_setfield(L, -2, "address");
		if (!e[i].ok) {
			lua_pushstring(L, e[i].error);
			lua_setfield(L, -2, "error");
		} else {
			const vsr_wire_status *s = &e[i].status;
			/* 1-based, like vsrhost --replica, its logs and vsrctl. */
			lvc_set_int(L, "replica", (uint64_t)s->replica + 1u);
			lua_pushstring(L, s->status < VSR_STATUS_COUNT ? vsr_status_name(s->status)
								       : "unknown");
			lua_setfield(L, -2, "status");
			lvc_set_int(L, "view", s->view);
			lvc_set_int(L, "log_view", s->log_view);
			lvc_set_int(L, "op", s->op);
			lvc_set_int(L, "commit", s->commit);
			lvc_set_int(L, "executed", s->executed);
			lvc_set_int(L, "primary", (uint64_t)s->primary + 1u);
			lvc_set_int(L, "digest", s->digest);
			lvc_set_int(L, "sessions", s->sessions);
			lvc_set_int(L, "view_changes", s->view_changes);
			lvc_set_int(L, "history", s->history);
			/* Its configuration fingerprint, from its HELLO (0: none). */
			lvc_set_int(L, "config", e[i].config);
		}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

/* c:set_timeouts{ attempt_ms = ..., call_ms = ... }: for the next calls. */
static int lvc_set_timeouts(lua_State *L)
{
	lua_client *c = lvc_check_client(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	c->opt.timing.attempt_ms = lvc_opt_ms(L, 2, "attempt_ms", c->opt.timing.attempt_ms);
	c->opt.timing.call_ms = lvc_opt_ms(L, 2, "call_ms", c->opt.timing.call_ms);
	vsrc_sync_set_timing(c->sync, &c->opt.timing);
	return 0;
}

static int lvc_close_client(lua_State *L)
{
	lua_client *c = luaL_checkudata(L, 1, LUA_CLIENT_MT);
	if (c->sync) {
		vsrc_sync_close(c->sync);
		c->sync = NULL;
	}
	return 0;
}

static const luaL_Reg lvc_client_methods[] = {
	{ "call", lvc_call_op },
	{ "query", lvc_query_op },
	{ "session", lvc_session },
	{ "status", lvc_status },
	{ "set_timeouts", lvc_set_timeouts },
	{ "close", lvc_close_client },
	{ NULL, NULL },
};

static const luaL_Reg lvc_module_functions[] = {
	{ "connect", lvc_connect },
	{ NULL, NULL },
};

int luaopen_vsrclient(lua_State *L)
{
	/* A replica closing a connection while a write is queued raises
	 * SIGPIPE, whose default kills the Lua process; the write error is
	 * handled instead. Left alone if the program chose a handler. */
	struct sigaction old;
	if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	if (luaL_newmetatable(L, LUA_CLIENT_MT)) {
		luaL_newlib(L, lvc_client_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, lvc_close_client);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, lvc_close_client);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	luaL_newlib(L, lvc_module_functions);
	return 1;
}
