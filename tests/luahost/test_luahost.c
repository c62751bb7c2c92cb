/* test_luahost.c - the Lua host through its C API: codec against msgpack-c, the core-facing callbacks. */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "vsrh_codec.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"

static int failures;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			failures++;                                               \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
		}                                                                 \
	} while (0)

/* ---------------------------------------------------------------- codec */

/* Encodes the Lua expression with the host's encoder; returns its bytes. */
static vsr_buf lua_encode(lua_State *L, const char *expr)
{
	char chunk[512];
	snprintf(chunk, sizeof chunk, "return %s", expr);
	vsr_buf b = {0};
	char err[256];
	if (luaL_dostring(L, chunk) != LUA_OK) {
		CHECK(0, "lua: %s", lua_tostring(L, -1));
		lua_pop(L, 1);
		return b;
	}
	CHECK(vsrh_encode(L, -1, &b, 1 << 20, err, sizeof err) == 0, "encode %s: %s", expr, err);
	lua_pop(L, 1);
	return b;
}

static void test_codec_against_msgpack_c(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	vsrh_codec_init(L);

	/* host encoder -> msgpack-c decoder */
	vsr_buf b = lua_encode(L, "{ n = -5, big = math.maxinteger, f = 0.5, s = 'hey', "
				  "list = {1, 2, 3}, t = true, e = {} }");
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	int rc = msgpack_unpack_next(&u, (const char *)b.data, b.len, &off);
	CHECK(rc == MSGPACK_UNPACK_SUCCESS, "msgpack-c says %d", rc);
	CHECK(off == b.len, "msgpack-c consumed %zu of %zu", off, b.len);
	msgpack_object o = u.data;
	CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 7, "a map of 7");
	/* keys come sorted bytewise: big, e, f, list, n, s, t */
	static const char *order[] = {"big", "e", "f", "list", "n", "s", "t"};
	for (uint32_t i = 0; i < o.via.map.size && i < 7; i++) {
		msgpack_object k = o.via.map.ptr[i].key;
		CHECK(k.type == MSGPACK_OBJECT_STR && k.via.str.size == strlen(order[i]) &&
		      memcmp(k.via.str.ptr, order[i], k.via.str.size) == 0, "key %u is %s", i, order[i]);
	}
	if (o.via.map.size == 7) {
		CHECK(o.via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		      o.via.map.ptr[0].val.via.u64 == (uint64_t)INT64_MAX, "maxinteger");
		CHECK(o.via.map.ptr[1].val.type == MSGPACK_OBJECT_ARRAY &&
		      o.via.map.ptr[1].val.via.array.size == 0, "empty table is an empty array");
		CHECK(o.via.map.ptr[2].val.type == MSGPACK_OBJECT_FLOAT64 &&
		      o.via.map.ptr[2].val.via.f64 == 0.5, "float64");
		CHECK(o.via.map.ptr[3].val.type == MSGPACK_OBJECT_ARRAY &&
		      o.via.map.ptr[3].val.via.array.size == 3, "array");
		CHECK(o.via.map.ptr[4].val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
		      o.via.map.ptr[4].val.via.i64 == -5, "negative");
		CHECK(o.via.map.ptr[6].val.type == MSGPACK_OBJECT_BOOLEAN, "boolean");
	}
	msgpack_unpacked_destroy(&u);
	free(b.data);

	/* msgpack-c encoder -> host decoder, with forms the host never writes */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_float(&pk, 1.5f);
	msgpack_pack_bin(&pk, 3);
	msgpack_pack_bin_body(&pk, "a\0b", 3);
	msgpack_pack_uint16(&pk, 300);
	msgpack_pack_int64(&pk, INT64_MIN);
	msgpack_pack_str(&pk, 40);
	msgpack_pack_str_body(&pk, "0123456789012345678901234567890123456789", 40);
	msgpack_pack_nil(&pk);
	char err[256];
	rc = vsrh_decode(L, (const uint8_t *)sb.data, sb.size, err, sizeof err);
	CHECK(rc == 0, "decode: %s", err);
	if (rc == 0) {
		lua_rawgeti(L, -1, 1);
		CHECK(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 1.5, "float32 -> float");
		lua_rawgeti(L, -2, 2);
		size_t len;
		const char *s = lua_tolstring(L, -1, &len);
		CHECK(len == 3 && memcmp(s, "a\0b", 3) == 0, "bin -> string");
		lua_rawgeti(L, -3, 3);
		CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 300, "uint16");
		lua_rawgeti(L, -4, 4);
		CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == LUA_MININTEGER, "int64 min");
		lua_rawgeti(L, -5, 5);
		CHECK(lua_rawlen(L, -1) == 40, "str8");
		lua_pop(L, 6);
	}
	msgpack_sbuffer_destroy(&sb);

	/* uint64 above INT64_MAX is refused, not wrapped */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	rc = vsrh_decode(L, (const uint8_t *)sb.data, sb.size, err, sizeof err);
	CHECK(rc != 0 && strstr(err, "does not fit a Lua integer"), "uint64 max: %s", err);
	msgpack_sbuffer_destroy(&sb);

	/* every truncation of a valid value is refused cleanly */
	b = lua_encode(L, "{ a = {1, {2, {3, 'x'}}}, b = 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy' }");
	for (size_t cut = 0; cut < b.len; cut++) {
		int top = lua_gettop(L);
		CHECK(vsrh_decode(L, b.data, cut, err, sizeof err) != 0, "truncated at %zu decodes", cut);
		CHECK(lua_gettop(L) == top, "stack unchanged after a failed decode");
		size_t pos = 0;
		CHECK(vsrh_skip(b.data, cut, &pos) != 0, "skip of truncated at %zu succeeds", cut);
	}
	size_t pos = 0;
	CHECK(vsrh_skip(b.data, b.len, &pos) == 0 && pos == b.len, "skip of the whole value");
	free(b.data);
	lua_close(L);
}

/* ---------------------------------------------------------------- state machine */

static int log_lines;
static void count_log(void *arg, int level, const char *msg, size_t len)
{
	(void)arg;
	(void)level;
	(void)msg;
	(void)len;
	log_lines++;
}

static void put_op(vsr_buf *b, const char *op, const char *key, int64_t value)
{
	b->len = 0;
	vsrh_put_map_header(b, value >= 0 ? 3 : 2);
	vsrh_put_str(b, "key", 3);
	vsrh_put_str(b, key, strlen(key));
	vsrh_put_str(b, "op", 2);
	vsrh_put_str(b, op, strlen(op));
	if (value >= 0) {
		vsrh_put_str(b, "value", 5);
		vsrh_put_int(b, value);
	}
}

static void test_state_machine_callbacks(void)
{
	char err[1024];
	vsrh_config cfg;
	int rc = vsrh_config_load("config/kv.lua", &cfg, err, sizeof err);
	CHECK(rc == 0, "config/kv.lua: %s", err);
	if (rc)
		return;
	vsrh_sm *sm = NULL, *sm2 = NULL;
	rc = vsrh_sm_create(&sm, &cfg, err, sizeof err);
	CHECK(rc == VSR_OK, "create: %s", err);
	rc = vsrh_sm_create(&sm2, &cfg, err, sizeof err);
	CHECK(rc == VSR_OK, "create: %s", err);
	vsrh_config_free(&cfg);
	if (!sm || !sm2)
		return;
	vsrh_sm_set_log(sm, count_log, NULL, VSRH_LOG_DEBUG);
	vsr_state_machine vsm, vsm2;
	vsrh_sm_bind(sm, &vsm);
	vsrh_sm_bind(sm2, &vsm2);
	CHECK(vsm.evict != NULL, "the config names a dedup policy");

	vsr_buf op = {0}, reply = {0};
	uint64_t empty = vsm.digest(vsm.ctx);
	for (int i = 0; i < 10000; i++) {
		char key[32];
		snprintf(key, sizeof key, "key%d", i % 2000);
		put_op(&op, "put", key, i);
		vsr_apply_ctx a = {.op = (uint64_t)i + 1, .timestamp = 1000u * (uint64_t)i, .session = 1,
				   .request = (uint64_t)i + 1};
		reply.len = 0;
		CHECK(vsm.apply(vsm.ctx, &a, op.data, op.len, &reply) == VSR_REPLY_OK, "put %d", i);
	}
	CHECK(vsm.digest(vsm.ctx) != empty, "digest moves");

	/* malformed op bytes: an error reply, no state change */
	uint64_t d = vsm.digest(vsm.ctx);
	static const uint8_t junk[] = {0x93, 0x01};
	vsr_apply_ctx a = {.op = 10001, .session = 1, .request = 10001};
	reply.len = 0;
	CHECK(vsm.apply(vsm.ctx, &a, junk, sizeof junk, &reply) == VSR_REPLY_ERROR, "junk op");
	CHECK(reply.len > 14 && memcmp(reply.data, "bad operation:", 14) == 0, "says bad operation");
	CHECK(vsm.digest(vsm.ctx) == d, "junk changed nothing");

	/* snapshot -> restore into another instance: same digest, same answers */
	vsr_buf snap = {0};
	CHECK(vsm.snapshot(vsm.ctx, &snap) == VSR_OK, "snapshot");
	CHECK(vsm2.restore(vsm2.ctx, snap.data, snap.len) == VSR_OK, "restore");
	CHECK(vsm2.digest(vsm2.ctx) == d, "restored digest");
	put_op(&op, "get", "key1999", -1);
	vsr_buf r2 = {0};
	reply.len = 0;
	CHECK(vsrh_sm_query(sm, op.data, op.len, &reply) == VSR_REPLY_OK, "query");
	CHECK(vsrh_sm_query(sm2, op.data, op.len, &r2) == VSR_REPLY_OK, "query restored");
	CHECK(reply.len == r2.len && memcmp(reply.data, r2.data, reply.len) == 0, "same answer");

	/* corrupt snapshots are refused, and leave the instance usable */
	for (size_t cut = 0; cut < 64 && cut < snap.len; cut += 7)
		CHECK(vsm2.restore(vsm2.ctx, snap.data, cut) != VSR_OK, "truncated snapshot %zu", cut);
	snap.data[2] ^= 0x55;
	CHECK(vsm2.restore(vsm2.ctx, snap.data, snap.len) != VSR_OK, "damaged magic");

	/* eviction through the policy */
	vsr_session_info s[3] = {{.session = 4, .last_op = 9}, {.session = 8, .last_op = 3},
				 {.session = 9, .last_op = 3}};
	CHECK(vsm.evict(vsm.ctx, s, 3) == 1, "oldest last_op, lowest id");

	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	CHECK(st.applied == 10001 && st.apply_errors == 1, "stats %llu %llu",
	      (unsigned long long)st.applied, (unsigned long long)st.apply_errors);
	CHECK(log_lines >= 1, "the failed op was logged at debug level");
	free(op.data);
	free(reply.data);
	free(r2.data);
	free(snap.data);
	vsrh_sm_destroy(sm);
	vsrh_sm_destroy(sm2);
}

/* The escape attempts of spec/sandbox_spec.lua again, through the C API, so
 * that sanitizer builds watch the error paths (budgets, memory, unwinding). */
static void test_sandbox_error_paths(void)
{
	static const char *const attempts[] = {
		"return io.open('/etc/passwd')",
		"return require('os')",
		"return load('\\27Lua')()",
		"return string.dump(print)",
		"getmetatable('').__index = {}",
		"while true do end",
		"while true do pcall(function() while true do end end) end",
		"local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end",
		"return string.rep('x', 1 << 30)",
		"pcall(function() local t = {} for i = 1, 1e9 do t[i] = {i} end end) return 1",
		"local function f(n) return f(n + 1) + 1 end return f(1)",
		"error(setmetatable({}, {__tostring = function() while true do end end}))",
		"error({code = 1})",
		"error()",
		"return function() end",
		/* issue #9: work in C, refused by gas before it runs */
		"return string.rep('', math.maxinteger)",
		"return table.move({}, 1, math.maxinteger - 1, 2, {})",
		"return (('a'):rep(60)):find(('a*'):rep(6) .. 'b')",
		"return ('x' .. (' '):rep(100000) .. 'x'):match('^%s*(.-)%s*$')",
		"local mt = {} local t = setmetatable({}, mt) mt.__mode = 'k' return 1",
		"return next({[{}] = 1, [{}] = 2})",
		"local t = {} for i = 1, 100 do t = setmetatable({}, {__index = t}) end return t.x",
	};
	/* the default budgets: gas stops every bomb, never the memory cap */
	vsrh_sm_options o = {.statemachine = "spec/fixtures/evil.lua", .log_level = VSRH_LOG_ERROR};
	char err[1024];
	vsrh_sm *sm;
	if (vsrh_sm_open(&sm, &o, err, sizeof err) != VSR_OK) {
		CHECK(0, "open evil.lua: %s", err);
		return;
	}
	vsr_buf op = {0}, reply = {0};
	for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
		op.len = 0;
		vsrh_put_map_header(&op, 1);
		vsrh_put_str(&op, "code", 4);
		vsrh_put_str(&op, attempts[i], strlen(attempts[i]));
		vsr_apply_ctx a = {.op = i + 1, .session = 1, .request = i + 1};
		reply.len = 0;
		CHECK(vsrh_sm_apply(sm, &a, op.data, op.len, &reply) == VSR_REPLY_SCRIPT_ERROR,
		      "attempt %zu (%s) must fail as a script error", i, attempts[i]);
		/* still healthy */
		op.len = 0;
		vsrh_put_map_header(&op, 1);
		vsrh_put_str(&op, "code", 4);
		vsrh_put_str(&op, "return 40 + 2", 13);
		reply.len = 0;
		CHECK(vsrh_sm_apply(sm, &a, op.data, op.len, &reply) == VSR_REPLY_OK &&
		      reply.len == 1 && reply.data[0] == 42, "healthy after attempt %zu", i);
	}
	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	CHECK(st.budget_exhausted >= 8 && st.memory_exhausted == 0, "gas was spent, the cap never hit");
	CHECK(vsrh_sm_failure(sm) == NULL, "the state machine did not fail");
	CHECK(st.memory_bytes < (64u << 20), "memory back down");
	free(op.data);
	free(reply.data);
	vsrh_sm_destroy(sm);
}

static void test_check_command(void)
{
	char *argv[] = {"check", "spec/fixtures/config/bad_port.lua", NULL};
	CHECK(vsrh_check_main(2, argv) == 78, "a bad config exits EX_CONFIG");
	char *argv2[] = {"check", "spec/fixtures/check_hidden_state.lua", NULL};
	CHECK(vsrh_check_main(2, argv2) == 65, "a nondeterministic state machine exits EX_DATAERR");
	char *argv3[] = {"check", "config/kv.lua", NULL};
	CHECK(vsrh_check_main(2, argv3) == 0, "config/kv.lua passes");
	char *argv4[] = {"check", NULL};
	CHECK(vsrh_check_main(1, argv4) == 64, "no config is a usage error");
}

int main(void)
{
	test_codec_against_msgpack_c();
	test_state_machine_callbacks();
	test_sandbox_error_paths();
	test_check_command();
	if (failures) {
		fprintf(stderr, "test_luahost: %d checks failed\n", failures);
		return 1;
	}
	printf("test_luahost: all checks passed\n");
	return 0;
}
