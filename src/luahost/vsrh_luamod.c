/* vsrh_luamod.c - Lua C module `vsrhost`: the host's sandbox, codec and state machines for busted.
 *
 * The test kit (lua/vsr/testkit.lua) drives state machines through this
 * module, so specs exercise the very C code vsrhost runs: the same sandbox,
 * budgets, msgpack conversion, store and snapshots. Every operation and reply
 * crosses the msgpack boundary as it does in a cluster. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "vsrh_codec.h"
#include "vsrh_lua.h"

#define SM_MT "vsrhost.sm"
/* Log lines kept per state machine for sm:logs(). */
#define LOG_LINES_MAX 1000

typedef struct lsm {
	vsrh_sm *sm;
	vsrh_sm_options opts;
	char *statemachine, *dedup, *lua_root, *store_dir;
	char **logs;
	int nlogs;
	uint64_t ops; /* default op number for apply */
} lsm;

static void lsm_log(void *arg, int level, const char *msg, size_t len)
{
	lsm *s = arg;
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (s->nlogs >= LOG_LINES_MAX) {
		free(s->logs[0]);
		memmove(s->logs, s->logs + 1, (LOG_LINES_MAX - 1) * sizeof *s->logs);
		s->nlogs--;
	}
	size_t n = len + 16;
	char *line = malloc(n);
	if (!line)
		return;
	snprintf(line, n, "%s: %.*s", names[level & 3], (int)len, msg);
	s->logs[s->nlogs++] = line;
}

static lsm *check_sm(lua_State *L)
{
	lsm *s = luaL_checkudata(L, 1, SM_MT);
	if (!s->sm)
		luaL_error(L, "state machine is closed");
	return s;
}

static char *opt_strdup(lua_State *L, int t, const char *k)
{
	lua_getfield(L, t, k);
	char *r = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
	lua_pop(L, 1);
	return r;
}

static uint64_t opt_u64(lua_State *L, int t, const char *k, uint64_t def)
{
	lua_getfield(L, t, k);
	uint64_t v = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : def;
	lua_pop(L, 1);
	return v;
}

static int lsm_gc(lua_State *L)
{
	lsm *s = luaL_checkudata(L, 1, SM_MT);
	vsrh_sm_destroy(s->sm);
	s->sm = NULL;
	for (int i = 0; i < s->nlogs; i++)
		free(s->logs[i]);
	free(s->logs);
	s->logs = NULL;
	s->nlogs = 0;
	free(s->statemachine);
	free(s->dedup);
	free(s->lua_root);
	free(s->store_dir);
	s->statemachine = s->dedup = s->lua_root = s->store_dir = NULL;
	return 0;
}

/* Fills options from a table {statemachine=, dedup=, lua_root=,
 * instructions=, memory=, check_seed=, log_level=}. */
static void read_options(lua_State *L, int t, lsm *s)
{
	luaL_checktype(L, t, LUA_TTABLE);
	s->statemachine = opt_strdup(L, t, "statemachine");
	if (!s->statemachine)
		luaL_error(L, "vsrhost: options.statemachine (a path) is required");
	s->dedup = opt_strdup(L, t, "dedup");
	s->lua_root = opt_strdup(L, t, "lua_root");
	memset(&s->opts, 0, sizeof s->opts);
	s->opts.statemachine = s->statemachine;
	s->opts.dedup = s->dedup;
	s->opts.lua_root = s->lua_root;
	s->opts.instructions_max = opt_u64(L, t, "instructions", 0);
	s->opts.memory_bytes_max = opt_u64(L, t, "memory", 0);
	s->opts.check_seed = opt_u64(L, t, "check_seed", 0);
	s->opts.log_level = (int)opt_u64(L, t, "log_level", VSRH_LOG_INFO);
	s->opts.log = lsm_log;
	s->opts.log_arg = s;
	/* store = "table" keeps vsr.store in a Lua table; store_dir puts LMDB there */
	char *kind = opt_strdup(L, t, "store");
	s->opts.store = kind && strcmp(kind, "table") == 0 ? VSRH_STORE_TABLE : VSRH_STORE_LMDB;
	free(kind);
	s->store_dir = opt_strdup(L, t, "store_dir");
	s->opts.store_dir = s->store_dir;
	lua_getfield(L, t, "store_sync"); /* a durable store: kept across opens */
	s->opts.store_sync = lua_toboolean(L, -1);
	lua_pop(L, 1);
}

/* vsrhost.open(options) -> sm | nil, message */
static int l_open(lua_State *L)
{
	lsm *s = lua_newuserdatauv(L, sizeof *s, 0);
	memset(s, 0, sizeof *s);
	luaL_setmetatable(L, SM_MT);
	s->logs = calloc(LOG_LINES_MAX, sizeof *s->logs);
	if (!s->logs)
		return luaL_error(L, "out of memory");
	read_options(L, 1, s);
	char err[2048];
	if (vsrh_sm_open(&s->sm, &s->opts, err, sizeof err) != VSR_OK) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	return 1;
}

static void encode_arg(lua_State *L, int idx, vsr_buf *b, const char *what)
{
	char err[512];
	if (vsrh_encode(L, idx, b, VSR_OP_BYTES_MAX, err, sizeof err)) {
		free(b->data);
		luaL_error(L, "%s: %s", what, err);
	}
}

/* Pushes ok, reply: the decoded reply, or the error text. */
static int push_result(lua_State *L, int status, vsr_buf *r)
{
	if (status == VSR_REPLY_OK) {
		char err[512];
		lua_pushboolean(L, 1);
		if (vsrh_decode(L, r->data, r->len, err, sizeof err)) {
			free(r->data);
			return luaL_error(L, "reply does not decode: %s", err);
		}
	} else {
		lua_pushboolean(L, 0);
		lua_pushlstring(L, (const char *)r->data, r->len);
		/* third result: which kind of error the client would see */
		lua_pushstring(L, status == VSR_REPLY_SCRIPT_ERROR ? "script error" : "refused");
		free(r->data);
		return 3;
	}
	free(r->data);
	return 2;
}

/* sm:apply(op [, ctx]) -> ok, reply-or-error-text [, "refused" | "script error"].
 * ctx = {op=, timestamp=, session=, request=, seed=}; op numbers default
 * to a counter, the timestamp to op * 1ms. */
static int l_apply(lua_State *L)
{
	lsm *s = check_sm(L);
	luaL_checkany(L, 2);
	vsr_apply_ctx a = {0};
	s->ops++;
	a.op = s->ops;
	if (lua_istable(L, 3)) {
		a.op = opt_u64(L, 3, "op", a.op);
		a.timestamp = opt_u64(L, 3, "timestamp", a.op * 1000000ull);
		a.session = opt_u64(L, 3, "session", 1);
		a.request = opt_u64(L, 3, "request", a.op);
		a.seed = opt_u64(L, 3, "seed", 0);
	} else {
		a.timestamp = a.op * 1000000ull;
		a.session = 1;
		a.request = a.op;
	}
	if (a.op > s->ops)
		s->ops = a.op;
	vsr_buf op = {0}, reply = {0};
	encode_arg(L, 2, &op, "apply: operation");
	int st = vsrh_sm_apply(s->sm, &a, op.data, op.len, &reply);
	free(op.data);
	return push_result(L, st, &reply);
}

/* sm:apply_raw(bytes [, ctx]) -> ok, reply: the op as msgpack bytes */
static int l_apply_raw(lua_State *L)
{
	lsm *s = check_sm(L);
	size_t len;
	const char *bytes = luaL_checklstring(L, 2, &len);
	vsr_apply_ctx a = {.op = ++s->ops, .session = 1};
	a.timestamp = a.op * 1000000ull;
	a.request = a.op;
	vsr_buf reply = {0};
	int st = vsrh_sm_apply(s->sm, &a, (const uint8_t *)bytes, len, &reply);
	return push_result(L, st, &reply);
}

static int l_query(lua_State *L)
{
	lsm *s = check_sm(L);
	luaL_checkany(L, 2);
	vsr_buf op = {0}, reply = {0};
	encode_arg(L, 2, &op, "query: operation");
	int st = vsrh_sm_query(s->sm, op.data, op.len, &reply);
	free(op.data);
	return push_result(L, st, &reply);
}

static int l_snapshot(lua_State *L)
{
	lsm *s = check_sm(L);
	vsr_buf b = {0};
	if (vsrh_sm_snapshot(s->sm, &b) != VSR_OK) {
		free(b.data);
		lua_pushnil(L);
		lua_pushstring(L, s->nlogs ? s->logs[s->nlogs - 1] : "snapshot failed");
		return 2;
	}
	lua_pushlstring(L, (const char *)b.data, b.len);
	free(b.data);
	return 1;
}

static int l_restore(lua_State *L)
{
	lsm *s = check_sm(L);
	size_t len;
	const char *d = luaL_checklstring(L, 2, &len);
	if (vsrh_sm_restore(s->sm, (const uint8_t *)d, len) != VSR_OK) {
		lua_pushnil(L);
		lua_pushstring(L, s->nlogs ? s->logs[s->nlogs - 1] : "restore failed");
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- checkpoints, through the callbacks the core calls ---- */

static vsr_checkpoint check_cp(lua_State *L, int idx)
{
	luaL_checktype(L, idx, LUA_TTABLE);
	vsr_checkpoint cp;
	cp.op = opt_u64(L, idx, "op", 0);
	cp.checksum = opt_u64(L, idx, "checksum", 0);
	cp.timestamp = opt_u64(L, idx, "timestamp", 0);
	cp.size = opt_u64(L, idx, "size", 0);
	cp.digest = opt_u64(L, idx, "digest", 0);
	return cp;
}

static void push_cp(lua_State *L, const vsr_checkpoint *cp)
{
	lua_createtable(L, 0, 5);
	const struct {
		const char *k;
		uint64_t v;
	} f[] = {{"op", cp->op}, {"checksum", cp->checksum}, {"timestamp", cp->timestamp},
		 {"size", cp->size}, {"digest", cp->digest}};
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		lua_pushinteger(L, (lua_Integer)f[i].v);
		lua_setfield(L, -2, f[i].k);
	}
}

/* sm:store_backend() -> "lmdb" | "table" */
static int l_store_backend(lua_State *L)
{
	lua_pushstring(L, vsrh_sm_store_lmdb(check_sm(L)->sm) ? "lmdb" : "table");
	return 1;
}

/* sm:checkpoint_take(op, meta) -> cp {op, checksum, timestamp, size, digest} */
static int l_checkpoint_take(lua_State *L)
{
	lsm *s = check_sm(L);
	vsr_checkpoint cp = {.op = (uint64_t)luaL_checkinteger(L, 2)};
	cp.checksum = cp.op * 31;
	cp.timestamp = cp.op * 1000;
	size_t ml;
	const char *meta = luaL_optlstring(L, 3, "", &ml);
	vsr_state_machine m;
	vsrh_sm_bind(s->sm, &m);
	int rc = m.checkpoint_take(m.ctx, &cp, (const uint8_t *)meta, ml);
	if (rc != VSR_OK && rc != VSR_PENDING) /* PENDING: durable a moment later */
		return luaL_error(L, "checkpoint_take failed");
	push_cp(L, &cp);
	return 1;
}

/* sm:checkpoint_read(cp, offset, len) -> bytes | nil */
static int l_checkpoint_read(lua_State *L)
{
	lsm *s = check_sm(L);
	vsr_checkpoint cp = check_cp(L, 2);
	vsr_state_machine m;
	vsrh_sm_bind(s->sm, &m);
	vsr_buf b = {0};
	int rc = m.checkpoint_read(m.ctx, &cp, (uint64_t)luaL_checkinteger(L, 3),
				   (uint32_t)luaL_checkinteger(L, 4), &b);
	if (rc == VSR_OK)
		lua_pushlstring(L, (const char *)b.data, b.len);
	else
		lua_pushnil(L);
	free(b.data);
	return 1;
}

/* sm:checkpoint_write(cp, offset, bytes) -> bool */
static int l_checkpoint_write(lua_State *L)
{
	lsm *s = check_sm(L);
	vsr_checkpoint cp = check_cp(L, 2);
	size_t len;
	const char *d = luaL_checklstring(L, 4, &len);
	vsr_state_machine m;
	vsrh_sm_bind(s->sm, &m);
	lua_pushboolean(L, m.checkpoint_write(m.ctx, &cp, (uint64_t)luaL_checkinteger(L, 3),
					      (const uint8_t *)d, (uint32_t)len) == VSR_OK);
	return 1;
}

typedef struct accept_job {
	lua_State *L;
	bool refuse;
	bool called;
	vsr_buf meta;
} accept_job;

static int accept_meta(void *arg, const uint8_t *meta, size_t len)
{
	accept_job *j = arg;
	j->called = true;
	if (j->refuse)
		return VSR_ECORRUPT;
	return vsrh_buf_put(&j->meta, meta, len) ? VSR_ENOMEM : VSR_OK;
}

/* sm:checkpoint_install(cp [, refuse]) -> true, meta | false, why.
 * refuse: the core's half refuses the meta (nothing may change). */
static int l_checkpoint_install(lua_State *L)
{
	lsm *s = check_sm(L);
	vsr_checkpoint cp = check_cp(L, 2);
	accept_job j = {L, lua_toboolean(L, 3), false, {0}};
	vsr_state_machine m;
	vsrh_sm_bind(s->sm, &m);
	int rc = m.checkpoint_install(m.ctx, &cp, accept_meta, &j);
	lua_pushboolean(L, rc == VSR_OK);
	if (rc == VSR_OK)
		lua_pushlstring(L, j.meta.data ? (const char *)j.meta.data : "", j.meta.len);
	else
		lua_pushstring(L, rc == VSR_ECORRUPT ? "corrupt durable state"
				  : rc == VSR_ESM    ? "state machine failed"
						     : "refused");
	free(j.meta.data);
	return 2;
}

/* sm:checkpoint_open() -> cp, meta (what a restart finds) */
static int l_checkpoint_open(lua_State *L)
{
	lsm *s = check_sm(L);
	vsr_state_machine m;
	vsrh_sm_bind(s->sm, &m);
	vsr_checkpoint cp;
	vsr_buf meta = {0};
	if (m.checkpoint_open(m.ctx, &cp, &meta) != VSR_OK) {
		free(meta.data);
		return luaL_error(L, "checkpoint_open failed");
	}
	push_cp(L, &cp);
	lua_pushlstring(L, meta.data ? (const char *)meta.data : "", meta.len);
	free(meta.data);
	return 2;
}

static int l_digest(lua_State *L)
{
	lsm *s = check_sm(L);
	lua_pushinteger(L, (lua_Integer)vsrh_sm_digest(s->sm));
	return 1;
}

/* sm:evict(sessions) -> 1-based index; sessions = {{session=, request=,
 * last_op=, registered_op=}, ...} sorted by session */
static int l_evict(lua_State *L)
{
	lsm *s = check_sm(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_Unsigned n = lua_rawlen(L, 2);
	luaL_argcheck(L, n > 0 && n <= VSR_CLIENTS_MAX, 2, "1 to 65536 sessions");
	vsr_session_info *si = lua_newuserdatauv(L, n * sizeof *si, 0);
	for (lua_Unsigned i = 0; i < n; i++) {
		lua_rawgeti(L, 2, (lua_Integer)i + 1);
		int t = lua_gettop(L);
		si[i].session = opt_u64(L, t, "session", 0);
		si[i].request = opt_u64(L, t, "request", 0);
		si[i].last_op = opt_u64(L, t, "last_op", 0);
		si[i].registered_op = opt_u64(L, t, "registered_op", 0);
		lua_pop(L, 1);
	}
	lua_pushinteger(L, (lua_Integer)vsrh_sm_evict(s->sm, si, (uint32_t)n) + 1);
	return 1;
}

static int l_stats(lua_State *L)
{
	lsm *s = check_sm(L);
	vsrh_sm_stats st;
	vsrh_sm_stats_get(s->sm, &st);
	lua_createtable(L, 0, 7);
#define F(name) lua_pushinteger(L, (lua_Integer)st.name); lua_setfield(L, -2, #name)
	F(applied);
	F(apply_errors);
	F(budget_exhausted);
	F(memory_exhausted);
	F(rollbacks);
	F(queries);
	F(memory_bytes);
#undef F
	return 1;
}

/* sm:failure() -> nil, or why the state machine stopped (vsrh_sm_failure) */
static int l_failure(lua_State *L)
{
	lsm *s = check_sm(L);
	const char *f = vsrh_sm_failure(s->sm);
	if (f)
		lua_pushstring(L, f);
	else
		lua_pushnil(L);
	return 1;
}

/* sm:logs([clear]) -> array of "level: text" lines */
static int l_logs(lua_State *L)
{
	lsm *s = luaL_checkudata(L, 1, SM_MT);
	lua_createtable(L, s->nlogs, 0);
	for (int i = 0; i < s->nlogs; i++) {
		lua_pushstring(L, s->logs[i]);
		lua_rawseti(L, -2, i + 1);
	}
	if (lua_toboolean(L, 2)) {
		for (int i = 0; i < s->nlogs; i++)
			free(s->logs[i]);
		s->nlogs = 0;
	}
	return 1;
}

/* sm:examples([seed]) -> array of operations (decoded) */
static int l_examples(lua_State *L)
{
	lsm *s = check_sm(L);
	uint64_t seed = (uint64_t)luaL_optinteger(L, 2, 1);
	vsr_buf *ops;
	uint32_t n;
	char err[1024];
	if (vsrh_sm_examples(s->sm, seed, &ops, &n, err, sizeof err) != VSR_OK)
		return luaL_error(L, "%s", err);
	lua_createtable(L, (int)n, 0);
	int bad = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (!bad && vsrh_decode(L, ops[i].data, ops[i].len, err, sizeof err) == 0)
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		else
			bad = 1;
		free(ops[i].data);
	}
	free(ops);
	if (bad)
		return luaL_error(L, "examples: %s", err);
	return 1;
}

/* vsrhost.selfcheck(options, ops|nil [, seed [, seeds [, allow_empty]]]) -> ok, report
 * ops nil: the script's examples, generated per seed (vsrh_check_seeds). */
static int l_selfcheck(lua_State *L)
{
	lsm tmp;
	memset(&tmp, 0, sizeof tmp);
	tmp.logs = calloc(LOG_LINES_MAX, sizeof *tmp.logs);
	if (!tmp.logs)
		return luaL_error(L, "out of memory");
	int have_ops = !lua_isnoneornil(L, 2);
	if (have_ops)
		luaL_checktype(L, 2, LUA_TTABLE);
	lua_Unsigned n = have_ops ? lua_rawlen(L, 2) : 0;
	uint64_t seed = (uint64_t)luaL_optinteger(L, 3, 1);
	lua_Integer seeds = luaL_optinteger(L, 4, 1);
	bool allow_empty = lua_toboolean(L, 5);
	luaL_argcheck(L, seeds >= 1 && seeds <= 100000, 4, "seeds must be 1..100000");
	/* Keep tmp in a userdata so errors below free it through __gc. */
	lsm *s = lua_newuserdatauv(L, sizeof *s, 0);
	*s = tmp;
	luaL_setmetatable(L, SM_MT);
	read_options(L, 1, s);
	s->opts.log_level = VSRH_LOG_ERROR;
	vsr_buf *ops = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ops, 0);
	memset(ops, 0, (n ? n : 1) * sizeof *ops);
	char err[512];
	for (lua_Unsigned i = 0; i < n; i++) {
		lua_rawgeti(L, 2, (lua_Integer)i + 1);
		if (vsrh_encode(L, -1, &ops[i], VSR_OP_BYTES_MAX, err, sizeof err)) {
			for (lua_Unsigned k = 0; k <= i; k++)
				free(ops[k].data);
			return luaL_error(L, "selfcheck: ops[%d]: %s", (int)i + 1, err);
		}
		lua_pop(L, 1);
	}
	char report[8192];
	int rc = vsrh_check_seeds(&s->opts, seed, (uint32_t)seeds, have_ops ? ops : NULL,
				  (uint32_t)n, allow_empty, report, sizeof report);
	for (lua_Unsigned i = 0; i < n; i++)
		free(ops[i].data);
	lua_pushboolean(L, rc == 0);
	lua_pushstring(L, report);
	return 2;
}

static int l_encode(lua_State *L)
{
	vsr_buf b = {0};
	luaL_checkany(L, 1);
	encode_arg(L, 1, &b, "encode");
	lua_pushlstring(L, (const char *)b.data, b.len);
	free(b.data);
	return 1;
}

static int l_decode(lua_State *L)
{
	size_t len;
	const char *d = luaL_checklstring(L, 1, &len);
	char err[512];
	if (vsrh_decode(L, (const uint8_t *)d, len, err, sizeof err)) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	return 1;
}

static void push_address(lua_State *L, const vsrh_address *a)
{
	lua_pushfstring(L, "%s:%d", a->host, (int)a->port);
}

/* vsrhost.config(path) -> table | nil, message */
static int l_config(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	vsrh_config c;
	char err[2048];
	if (vsrh_config_load(path, &c, err, sizeof err) != 0) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	lua_newtable(L);
	lua_pushinteger(L, (lua_Integer)c.cluster);
	lua_setfield(L, -2, "cluster");
	const struct { const char *name; const vsrh_address *a; uint32_t n; } lists[] = {
		{"replicas", c.replicas, c.replica_count}, {"clients", c.clients, c.replica_count},
		{"metrics", c.metrics, c.metrics_count}};
	for (int l = 0; l < 3; l++) {
		lua_createtable(L, (int)lists[l].n, 0);
		for (uint32_t i = 0; i < lists[l].n; i++) {
			push_address(L, &lists[l].a[i]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, -2, lists[l].name);
	}
	lua_pushstring(L, c.statemachine);
	lua_setfield(L, -2, "statemachine");
	if (c.dedup) {
		lua_pushstring(L, c.dedup);
		lua_setfield(L, -2, "dedup");
	}
	lua_pushstring(L, c.data_dir);
	lua_setfield(L, -2, "data_dir");
	lua_pushstring(L, c.durability == VSRH_DURABILITY_DURABLE ? "durable" : "memory");
	lua_setfield(L, -2, "durability");
	static const char *levels[] = {"debug", "info", "warn", "error"};
	lua_pushstring(L, levels[c.log_level & 3]);
	lua_setfield(L, -2, "log_level");
#define F(name) lua_pushinteger(L, (lua_Integer)c.name); lua_setfield(L, -2, #name)
	F(tick_ms);
	F(heartbeat_ms);
	F(primary_ms);
	F(view_change_ms);
	F(retry_ms);
	F(pipeline_max);
	F(batch_requests_max);
	F(clients_max);
	F(message_bytes_max);
	F(checkpoint_interval);
	F(instructions_max);
	F(memory_bytes_max);
#undef F
	vsrh_config_free(&c);
	return 1;
}

int luaopen_vsrhost(lua_State *L);
int luaopen_vsrhost(lua_State *L)
{
	static const luaL_Reg sm_methods[] = {
		{"apply", l_apply}, {"apply_raw", l_apply_raw}, {"query", l_query},
		{"snapshot", l_snapshot}, {"restore", l_restore}, {"digest", l_digest},
		{"evict", l_evict}, {"stats", l_stats}, {"logs", l_logs}, {"failure", l_failure},
		{"examples", l_examples}, {"close", lsm_gc}, {"store_backend", l_store_backend},
		{"checkpoint_take", l_checkpoint_take}, {"checkpoint_read", l_checkpoint_read},
		{"checkpoint_write", l_checkpoint_write}, {"checkpoint_install", l_checkpoint_install},
		{"checkpoint_open", l_checkpoint_open}, {NULL, NULL}};
	static const luaL_Reg fns[] = {
		{"open", l_open}, {"selfcheck", l_selfcheck}, {"encode", l_encode},
		{"decode", l_decode}, {"config", l_config}, {NULL, NULL}};
	luaL_newmetatable(L, SM_MT);
	lua_pushcfunction(L, lsm_gc);
	lua_setfield(L, -2, "__gc");
	luaL_newlib(L, sm_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	vsrh_codec_init(L);
	luaL_newlib(L, fns);
	luaL_getmetatable(L, vsrh_array_mt_key);
	lua_setfield(L, -2, "array_mt");
	luaL_getmetatable(L, vsrh_map_mt_key);
	lua_setfield(L, -2, "map_mt");
	return 1;
}
