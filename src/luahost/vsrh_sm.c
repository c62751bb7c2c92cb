/* vsrh_sm.c - a sandboxed Lua state machine behind the core's vsr_state_machine interface.
 *
 * Happy path of one operation: decode the op (msgpack -> Lua), call the
 * script's apply(op, ctx) under the budgets, encode the reply (Lua ->
 * msgpack, canonical), commit the store's buffered writes.
 * Failure modes: the op does not decode, apply raises or runs out of
 * instructions or memory, or the reply does not encode: the reply is an
 * error, the store's buffer is dropped and, for a script that keeps plain
 * Lua state (it has snapshot/restore hooks), the state is rolled back by
 * restoring the last base snapshot and replaying the operations applied
 * since. All of it depends only on the log, so every replica does the same.
 * Host-internal steps run with the memory budget lifted. A failure the
 * host cannot undo deterministically (snapshot() failing, a replay after a
 * rollback failing, the hard memory cap, a real out-of-memory) never
 * aborts: it marks the state machine failed (vsrh_sm_failure), every call
 * after it refuses, and the replica stops cleanly. */
#include "vsrh_lua.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "vsrh_codec.h"
#include "vsrh_gas.h"
#include "vsrh_sandbox.h"
#include "vsrh_le.h"
#include "vsrh_store.h"
#include "vsr_snapckpt.h"

#define SNAPSHOT_MAGIC "vsrh-snapshot-1"
/* A plain-state script takes a base snapshot every this many operations
 * (or bytes of operations), bounding both the replay on rollback and the
 * memory the replay log holds. */
#define REPLAY_OPS_MAX 256u
#define REPLAY_BYTES_MAX (4u << 20)
#define ERR_TEXT_MAX 1024

typedef struct replay_rec {
	vsr_apply_ctx actx;
	size_t off;
	size_t len;
} replay_rec;

struct vsrh_sm {
	vsrh_box box;
	char script_name[256];
	/* Digests of the sources loaded at open (vsrh_sm_sources). */
	uint64_t sources_statemachine;
	uint64_t sources_dedup;
	int ref_apply, ref_query, ref_snapshot, ref_restore;
	vsrh_store store;
	int ref_ctx; /* the read-only ctx */
	vsr_apply_ctx ctx_now; /* what ctx.op, .timestamp, .session, .request read */
	int ref_policy; /* policy table or LUA_NOREF */
	int ref_examples; /* the script's examples (table or function) or LUA_NOREF */
	bool plain;     /* the script keeps its own state (snapshot/restore hooks) */
	bool policy_has_state; /* the dedup policy has snapshot/restore hooks */
	bool policy_has_commit; /* ... and a commit hook, run after every apply */
	uint64_t last_op, last_timestamp;
	uint32_t clients_max; /* limits.clients: the table's size, passed to evict() */
	/* plain-state rollback */
	bool has_base, replaying;
	/* digest of the plain state and the policy's state: a snapshot each,
	 * so cached until either may have changed */
	bool digest_valid;
	uint64_t digest_part;
	vsr_buf base;
	vsr_buf replay_bytes;
	replay_rec *recs;
	uint32_t nrecs;
	vsrh_sm_stats stats;
	/* what it is doing, for the watchdog thread (vsrh_sm_activity) */
	_Atomic int act_kind; /* 0 idle, 1 apply, 2 query, 3 snapshot, 4 restore */
	_Atomic uint64_t act_op, act_session, act_request;
	/* set once by sm_fail: the state machine can no longer be trusted */
	bool failed;
	char failure[ERR_TEXT_MAX];
	vsr_snapckpt ck; /* checkpoints: whole-state images in memory */
	char *image_path; /* plain state on a durable disk: the current image's file */
};

/* Marks the state machine failed (first reason kept) and logs it. */
static void sm_fail(vsrh_sm *sm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sm_fail(vsrh_sm *sm, const char *fmt, ...)
{
	if (sm->failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sm->failure, sizeof sm->failure, fmt, ap);
	va_end(ap);
	sm->failed = true;
	vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "%s: %s", sm->script_name, sm->failure);
}

const char *vsrh_sm_failure(const vsrh_sm *sm)
{
	if (sm->failed)
		return sm->failure;
	if (sm->box.broken)
		return sm->box.broken_why;
	return NULL;
}

/* The budget of work over the whole state (snapshot, restore): sized for
 * the largest state the memory cap allows, never the per-operation one. */
static uint64_t state_budget(const vsrh_sm *sm)
{
	return sm->box.mem_max > sm->box.instr_max ? sm->box.mem_max : sm->box.instr_max;
}

/* ---------------------------------------------------------------- helpers */

/* Charges a sort of the keys of the table at 1 (n log n units). */
static void charge_key_sort(lua_State *L)
{
	uint64_t n = 0, log = 1;
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		lua_pop(L, 1);
		n++;
	}
	while (log < 63 && ((uint64_t)1 << log) < n)
		log++;
	vsrh_gas(L, 1 + vsrh_gas_mul(n, log + 1));
}

static int vsr_sorted_keys(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	charge_key_sort(L);
	vsrh_push_sorted_keys(L, 1);
	return 1;
}

static int sorted_pairs_iter(lua_State *L)
{
	lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
	lua_pushinteger(L, i);
	lua_replace(L, lua_upvalueindex(2));
	for (;; i++) {
		if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL)
			return 0;
		lua_pushvalue(L, -1);
		if (lua_rawget(L, 1) != LUA_TNIL) {
			lua_pushinteger(L, i);
			lua_replace(L, lua_upvalueindex(2));
			return 2;
		}
		lua_pop(L, 2);
	}
}

/* vsr.sorted_pairs(t): like pairs, in canonical key order on every replica */
static int vsr_sorted_pairs(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	charge_key_sort(L);
	vsrh_push_sorted_keys(L, 1);
	lua_pushinteger(L, 0);
	lua_pushcclosure(L, sorted_pairs_iter, 2);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

/* Returns argument 1 (a new table when absent) marked with metatable
 * `mt_key`, which tells the codec how to encode it. */
static int mark_table(lua_State *L, const char *mt_key)
{
	if (lua_isnoneornil(L, 1))
		lua_newtable(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	luaL_setmetatable(L, mt_key);
	return 1;
}

/* vsr.array(t): t encodes as a msgpack array */
static int vsr_array(lua_State *L)
{
	return mark_table(L, vsrh_array_mt_key);
}

/* vsr.map(t): t encodes as a msgpack map, even when empty */
static int vsr_map(lua_State *L)
{
	return mark_table(L, vsrh_map_mt_key);
}

/* Sets the fields a script sees of one log entry (ctx in apply, the table
 * given to the dedup policy's commit) on the table on top of the stack. */
static void set_ctx_fields(lua_State *L, const vsr_apply_ctx *actx)
{
	lua_pushinteger(L, (lua_Integer)actx->op);
	lua_setfield(L, -2, "op");
	lua_pushinteger(L, (lua_Integer)actx->timestamp);
	lua_setfield(L, -2, "timestamp");
	lua_pushinteger(L, (lua_Integer)actx->session);
	lua_setfield(L, -2, "session");
	lua_pushinteger(L, (lua_Integer)actx->request);
	lua_setfield(L, -2, "request");
}

/* The store's mode: closed outside apply (read-only), apply, query
 * (read-only), or apply run as a query (writes dropped). Every path that
 * runs script code other than apply (snapshot, restore, policy, examples)
 * closes it first. */
static void set_mode(vsrh_sm *sm, int mode)
{
	sm->store.mode = mode;
}

static void put_error(vsr_buf *reply, const char *text, size_t len)
{
	reply->len = 0;
	if (vsrh_buf_put(reply, text, len))
		reply->len = 0; /* out of memory: an empty error reply */
}

/* Runs f(ud) in protected mode with the memory budget lifted; a failure
 * there is a real out-of-memory or a host bug, and determinism cannot be
 * kept after it: the state machine is marked failed (its replica stops).
 * Returns 0, or -1 when it failed. */
static int host_protected(vsrh_sm *sm, lua_CFunction f, void *ud, const char *what)
{
	lua_State *L = sm->box.L;
	lua_pushcfunction(L, f);
	lua_pushlightuserdata(L, ud);
	int st = lua_pcall(L, 1, 0, 0);
	vsrh_box_disarm(&sm->box);
	if (st != LUA_OK) {
		sm_fail(sm, "%s failed inside the host: %s", what,
			lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object)");
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- apply */

/* The longest reply the core accepts for this operation (its one reply limit,
 * vsr_reply_bytes_max): a longer one makes the operation an error, with the
 * writes undone, rather than a reply the core would have to replace. */
static size_t reply_limit(const vsr_apply_ctx *a)
{
	return a != NULL && a->reply_max != 0 && a->reply_max < VSR_OP_BYTES_MAX ? a->reply_max
										  : VSR_OP_BYTES_MAX;
}

typedef struct apply_job {
	vsrh_sm *sm;
	const vsr_apply_ctx *actx;
	const uint8_t *op;
	size_t op_len;
	vsr_buf *reply;
	int mode;   /* 1 apply, 2 query, 3 apply as a query (writes dropped) */
	int result; /* VSR_REPLY_OK, VSR_REPLY_ERROR or VSR_REPLY_SCRIPT_ERROR */
} apply_job;

static uint64_t op_seed(const vsr_apply_ctx *a)
{
	if (a->seed)
		return a->seed;
	/* The core may leave seed 0: derive one from fields in the log. */
	uint64_t in[3] = {a->op, a->timestamp, a->session ^ (a->request << 1)};
	return XXH3_64bits(in, sizeof in);
}

static int apply_tramp(lua_State *L)
{
	apply_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	vsrh_box *b = &sm->box;
	char err[ERR_TEXT_MAX];
	lua_settop(L, 0);
	int ref = j->mode == 2 ? sm->ref_query : sm->ref_apply;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	if (vsrh_decode(L, j->op, j->op_len, err, sizeof err)) {
		char msg[ERR_TEXT_MAX + 32];
		int n = snprintf(msg, sizeof msg, "bad operation: %s", err);
		put_error(j->reply, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
		j->result = VSR_REPLY_ERROR;
		return 0;
	}
	/* ctx: one read-only table per state machine whose log fields are
	 * read from ctx_now when the script asks for them (ctx_index): no
	 * allocation and no table writes on the hot path. */
	sm->ctx_now = *j->actx;
	lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_ctx);
	vsrh_box_seed(b, op_seed(j->actx));
	set_mode(sm, j->mode);
	/* one budget for the call and the encoding of its reply */
	vsrh_box_arm(b, b->instr_max);
	int st = vsrh_box_call(b, 2, 1);
	size_t n = 0;
	/* anything but a vsr.fail refusal is a script error: a bug in the
	 * script, a spent budget, a reply that does not encode */
	bool script_error = true;
	if (st != LUA_OK) {
		script_error = !vsrh_box_error_is_fail(b, st, -1);
		n = vsrh_box_error_text(b, st, -1, err, sizeof err);
		if (b->fatal == VSRH_FATAL_BUDGET)
			sm->stats.budget_exhausted++;
		if (b->fatal == VSRH_FATAL_MEMORY)
			sm->stats.memory_exhausted++;
	} else if (j->mode != 3) {
		j->reply->len = 0;
		if (vsrh_encode(L, -1, j->reply, reply_limit(j->actx), err, sizeof err) == 0) {
			if (j->mode == 1) {
				sm->store.op = j->actx->op;
				vsrh_store_commit(L, &sm->store);
			}
			j->result = VSR_REPLY_OK;
			return 0;
		}
		char msg[ERR_TEXT_MAX + 16];
		snprintf(msg, sizeof msg, "reply: %s", err);
		n = (size_t)snprintf(err, sizeof err, "%s", msg);
	} else {
		/* query through apply: encode the reply, drop the writes */
		j->reply->len = 0;
		if (vsrh_encode(L, -1, j->reply, reply_limit(j->actx), err, sizeof err) == 0) {
			vsrh_store_abort(L, &sm->store);
			j->result = VSR_REPLY_OK;
			return 0;
		}
		n = strlen(err);
	}
	vsrh_store_abort(L, &sm->store);
	put_error(j->reply, err, n);
	j->result = script_error ? VSR_REPLY_SCRIPT_ERROR : VSR_REPLY_ERROR;
	if (script_error && j->mode == 1 && !sm->replaying)
		vsrh_box_log(b, VSRH_LOG_WARN, "%s: op %llu (session %llu, request %llu): script error: %.*s",
			     sm->script_name, (unsigned long long)j->actx->op,
			     (unsigned long long)j->actx->session, (unsigned long long)j->actx->request,
			     (int)(n > 300 ? 300 : n), err);
	return 0;
}

static void set_activity(vsrh_sm *sm, int kind, const vsr_apply_ctx *actx)
{
	if (actx) {
		atomic_store_explicit(&sm->act_op, actx->op, memory_order_relaxed);
		atomic_store_explicit(&sm->act_session, actx->session, memory_order_relaxed);
		atomic_store_explicit(&sm->act_request, actx->request, memory_order_relaxed);
	}
	atomic_store_explicit(&sm->act_kind, kind, memory_order_relaxed);
}

uint64_t vsrh_sm_progress(const vsrh_sm *sm)
{
	return atomic_load_explicit(&sm->box.progress, memory_order_relaxed);
}

bool vsrh_sm_busy(const vsrh_sm *sm)
{
	return atomic_load_explicit(&sm->act_kind, memory_order_relaxed) != 0;
}

void vsrh_sm_activity(const vsrh_sm *sm, char *out, size_t len)
{
	static const char *const kinds[] = {"idle", "applying", "running a query for",
					    "taking a snapshot", "restoring a snapshot"};
	int k = atomic_load_explicit(&sm->act_kind, memory_order_relaxed);
	if (k == 1 || k == 2)
		snprintf(out, len, "%s op %llu (session %llu, request %llu) of %s", kinds[k],
			 (unsigned long long)atomic_load_explicit(&sm->act_op, memory_order_relaxed),
			 (unsigned long long)atomic_load_explicit(&sm->act_session, memory_order_relaxed),
			 (unsigned long long)atomic_load_explicit(&sm->act_request, memory_order_relaxed),
			 sm->script_name);
	else
		snprintf(out, len, "%s (%s)", kinds[k >= 0 && k <= 4 ? k : 0], sm->script_name);
}

static int run_apply(vsrh_sm *sm, const vsr_apply_ctx *actx, const uint8_t *op, size_t op_len,
		     vsr_buf *reply, int mode)
{
	apply_job j = {sm, actx, op, op_len, reply, mode, VSR_REPLY_ERROR};
	set_activity(sm, mode == 2 ? 2 : 1, actx);
	int failed = host_protected(sm, apply_tramp, &j, "apply");
	set_activity(sm, 0, NULL);
	if (failed) {
		static const char msg[] = "the state machine failed inside the host";
		put_error(reply, msg, sizeof msg - 1);
		return VSR_REPLY_ERROR;
	}
	return j.result;
}

static int full_snapshot(vsrh_sm *sm, vsr_buf *out, char *err, size_t err_len);
static int full_restore(vsrh_sm *sm, const uint8_t *data, size_t len, bool with_policy, char *err,
			size_t err_len);

/* Plain state: the base snapshot that a failed operation rolls back to. */
static int ensure_base(vsrh_sm *sm)
{
	if (sm->has_base && sm->nrecs < REPLAY_OPS_MAX && sm->replay_bytes.len < REPLAY_BYTES_MAX)
		return 0;
	char err[ERR_TEXT_MAX];
	sm->base.len = 0;
	if (full_snapshot(sm, &sm->base, err, sizeof err)) {
		/* Without a base a failing operation could not be undone. */
		sm_fail(sm, "snapshot() failed, so operations can no longer be undone: %s", err);
		return -1;
	}
	sm->has_base = true;
	sm->nrecs = 0;
	sm->replay_bytes.len = 0;
	return 0;
}

static void rollback(vsrh_sm *sm)
{
	char err[ERR_TEXT_MAX];
	sm->stats.rollbacks++;
	/* The policy's state is left alone: a failed operation did not touch
	 * it, and its commit() calls since the base are not replayed. */
	if (full_restore(sm, sm->base.data, sm->base.len, false, err, sizeof err)) {
		sm_fail(sm, "restoring the base snapshot after a failed operation failed: %s", err);
		return;
	}
	vsr_buf scratch = {0};
	sm->replaying = true;
	for (uint32_t i = 0; i < sm->nrecs; i++) {
		replay_rec *r = &sm->recs[i];
		if (run_apply(sm, &r->actx, sm->replay_bytes.data + r->off, r->len, &scratch, 1) !=
		    VSR_REPLY_OK) {
			sm_fail(sm, "not deterministic: op %llu succeeded, then failed when replayed "
				"after a rollback: %.*s", (unsigned long long)r->actx.op,
				(int)(scratch.len > 300 ? 300 : scratch.len), (char *)scratch.data);
			break;
		}
	}
	sm->replaying = false;
	free(scratch.data);
}

static void policy_commit(vsrh_sm *sm, const vsr_apply_ctx *actx);

int vsrh_sm_apply(vsrh_sm *sm, const vsr_apply_ctx *actx, const uint8_t *op, size_t op_len,
		  vsr_buf *reply)
{
	if (sm->failed || sm->box.broken || (sm->plain && ensure_base(sm))) {
		char msg[ERR_TEXT_MAX + 64];
		int n = snprintf(msg, sizeof msg, "state machine stopped: %s", vsrh_sm_failure(sm));
		put_error(reply, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
		return VSR_REPLY_ERROR;
	}
	int rc = run_apply(sm, actx, op, op_len, reply, 1);
	sm->stats.applied++;
	sm->digest_valid = false;
	if (rc != VSR_REPLY_OK) {
		sm->stats.apply_errors++;
		vsrh_box_log(&sm->box, VSRH_LOG_DEBUG, "op %llu failed: %.*s",
			     (unsigned long long)actx->op, (int)(reply->len > 200 ? 200 : reply->len),
			     (const char *)reply->data);
		if (sm->plain)
			rollback(sm);
	} else if (sm->plain) {
		if (vsrh_buf_put(&sm->replay_bytes, op, op_len)) {
			sm_fail(sm, "out of memory keeping the operations since the base snapshot");
			return rc;
		}
		replay_rec *r = &sm->recs[sm->nrecs++];
		r->actx = *actx;
		r->off = sm->replay_bytes.len - op_len;
		r->len = op_len;
	}
	/* after any rollback, which restores the base's op and timestamp */
	sm->last_op = actx->op;
	sm->last_timestamp = actx->timestamp;
	if (sm->policy_has_commit)
		policy_commit(sm, actx);
	return rc;
}

int vsrh_sm_query(vsrh_sm *sm, const uint8_t *op, size_t op_len, vsr_buf *reply)
{
	vsr_apply_ctx a = {.op = sm->last_op, .timestamp = sm->last_timestamp};
	sm->stats.queries++;
	int mode = 2;
	if (sm->ref_query == LUA_NOREF) {
		if (sm->plain) {
			static const char msg[] = "this state machine has no query() function";
			put_error(reply, msg, sizeof msg - 1);
			return VSR_REPLY_ERROR;
		}
		mode = 3;
	}
	return run_apply(sm, &a, op, op_len, reply, mode);
}

/* ---------------------------------------------------------------- snapshots */

typedef struct snap_job {
	vsrh_sm *sm;
	vsr_buf *out;
	const uint8_t *data;
	size_t len;
	bool with_policy;
	char *err;
	size_t err_len;
	int rc;
	bool skip_store; /* an LMDB checkpoint's head: the store is not in it */
} snap_job;

/* A snapshot or restore hook raised an error (on top of the stack): puts
 * "what: error" in err, pops the error, returns -1. */
static int hook_failed(vsrh_sm *sm, int st, char *err, size_t err_len, const char *what)
{
	char t[ERR_TEXT_MAX];
	vsrh_box_error_text(&sm->box, st, -1, t, sizeof t);
	snprintf(err, err_len, "%s: %s", what, t);
	lua_pop(sm->box.L, 1);
	return -1;
}

/* Calls hook `ref` of the script (or policy table field) with the budgets and
 * encodes its result. Returns 0 or -1 with err. */
static int snapshot_user(vsrh_sm *sm, int fn_on_top, vsr_buf *out, char *err, size_t err_len,
			 const char *what)
{
	lua_State *L = sm->box.L;
	(void)fn_on_top;
	int st = vsrh_box_call(&sm->box, 0, 1);
	if (st != LUA_OK)
		return hook_failed(sm, st, err, err_len, what);
	char e[256];
	if (vsrh_encode(L, -1, out, sm->box.mem_max, e, sizeof e)) {
		snprintf(err, err_len, "%s returned a value that does not encode: %s", what, e);
		lua_pop(L, 1);
		return -1;
	}
	lua_pop(L, 1);
	return 0;
}

static int snapshot_tramp(lua_State *L)
{
	snap_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	set_mode(sm, 0);
	vsrh_box_arm(&sm->box, state_budget(sm));
	vsr_buf *o = j->out;
	int fail = 0;
	fail |= vsrh_put_array_header(o, 6);
	fail |= vsrh_put_str(o, SNAPSHOT_MAGIC, sizeof SNAPSHOT_MAGIC - 1);
	fail |= vsrh_put_int(o, (int64_t)sm->last_op);
	fail |= vsrh_put_int(o, (int64_t)sm->last_timestamp);
	/* the store: a map in key byte order, values copied as stored */
	fail |= j->skip_store ? vsrh_put_map_header(o, 0) : vsrh_store_write(L, &sm->store, o);
	if (fail) {
		snprintf(j->err, j->err_len, "out of memory");
		j->rc = -1;
		return 0;
	}
	/* the script's own state */
	if (sm->plain) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_snapshot);
		if (snapshot_user(sm, 1, o, j->err, j->err_len, "snapshot()")) {
			j->rc = -1;
			return 0;
		}
	} else if (vsrh_put_nil(o)) {
		j->rc = -1;
		return 0;
	}
	/* the dedup policy's state */
	int has = 0;
	if (sm->ref_policy != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_policy);
		has = lua_getfield(L, -1, "snapshot") == LUA_TFUNCTION;
		lua_remove(L, -2);
		if (!has)
			lua_pop(L, 1);
	}
	if (has) {
		if (snapshot_user(sm, 1, o, j->err, j->err_len, "dedup policy snapshot()")) {
			j->rc = -1;
			return 0;
		}
	} else if (vsrh_put_nil(o)) {
		j->rc = -1;
		return 0;
	}
	j->rc = 0;
	return 0;
}

static int snapshot_as(vsrh_sm *sm, vsr_buf *out, bool skip_store, char *err, size_t err_len)
{
	size_t start = out->len;
	snap_job j = {sm, out, NULL, 0, true, err, err_len, -1, skip_store};
	set_activity(sm, 3, NULL);
	if (host_protected(sm, snapshot_tramp, &j, "snapshot"))
		snprintf(err, err_len, "%s", sm->failure);
	set_activity(sm, 0, NULL);
	if (j.rc)
		out->len = start;
	return j.rc;
}

static int full_snapshot(vsrh_sm *sm, vsr_buf *out, char *err, size_t err_len)
{
	return snapshot_as(sm, out, false, err, err_len);
}

/* Decodes the value at *pos and calls hook(value) of the script or policy
 * (function below on the stack). */
static int restore_user(vsrh_sm *sm, const uint8_t *d, size_t len, size_t *pos, char *err,
			size_t err_len, const char *what)
{
	lua_State *L = sm->box.L;
	size_t start = *pos;
	char e[256];
	if (vsrh_skip(d, len, pos) ||
	    vsrh_decode(L, d + start, *pos - start, e, sizeof e)) {
		snprintf(err, err_len, "%s: corrupt snapshot", what);
		lua_pop(L, 1);
		return -1;
	}
	int st = vsrh_box_call(&sm->box, 1, 0);
	if (st != LUA_OK)
		return hook_failed(sm, st, err, err_len, what);
	return 0;
}

static int restore_tramp(lua_State *L)
{
	snap_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	set_mode(sm, 0);
	vsrh_box_arm(&sm->box, state_budget(sm));
	const uint8_t *d = j->data;
	size_t len = j->len, pos = 0;
	uint32_t n;
	const char *s;
	size_t sl;
	int64_t op, ts;
	j->rc = -1;
	if (vsrh_get_array_header(d, len, &pos, &n) || n != 6 || vsrh_get_str(d, len, &pos, &s, &sl) ||
	    sl != sizeof SNAPSHOT_MAGIC - 1 || memcmp(s, SNAPSHOT_MAGIC, sl) != 0 ||
	    vsrh_get_int(d, len, &pos, &op) || vsrh_get_int(d, len, &pos, &ts)) {
		snprintf(j->err, j->err_len, "not a vsrhost snapshot (or a different version)");
		return 0;
	}
	if (j->skip_store) {
		uint32_t none;
		if (vsrh_get_map_header(d, len, &pos, &none) || none != 0) {
			snprintf(j->err, j->err_len, "corrupt checkpoint head: the store is in LMDB");
			return 0;
		}
	} else if (vsrh_store_read(L, &sm->store, d, len, &pos, j->err, j->err_len)) {
		return 0;
	}
	if (sm->plain) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_restore);
		if (restore_user(sm, d, len, &pos, j->err, j->err_len, "restore()"))
			return 0;
	} else if (!vsrh_peek_nil(d, len, pos) || (pos++, 0)) {
		snprintf(j->err, j->err_len, "the snapshot holds plain Lua state, but %s has no restore()",
			 sm->script_name);
		return 0;
	}
	int has = 0;
	if (sm->ref_policy != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_policy);
		has = lua_getfield(L, -1, "restore") == LUA_TFUNCTION;
		lua_remove(L, -2);
		if (!has)
			lua_pop(L, 1);
	}
	if (has && j->with_policy && !vsrh_peek_nil(d, len, pos)) {
		if (restore_user(sm, d, len, &pos, j->err, j->err_len, "dedup policy restore()")) {
			return 0;
		}
	} else if (vsrh_skip(d, len, &pos)) {
		snprintf(j->err, j->err_len, "corrupt snapshot: dedup policy state");
		return 0;
	}
	if (pos != len) {
		snprintf(j->err, j->err_len, "corrupt snapshot: %zu trailing bytes", len - pos);
		return 0;
	}
	sm->last_op = (uint64_t)op;
	sm->last_timestamp = (uint64_t)ts;
	j->rc = 0;
	return 0;
}

static int restore_as(vsrh_sm *sm, const uint8_t *data, size_t len, bool with_policy,
		      bool skip_store, char *err, size_t err_len)
{
	snap_job j = {sm, NULL, data, len, with_policy, err, err_len, -1, skip_store};
	set_activity(sm, 4, NULL);
	if (host_protected(sm, restore_tramp, &j, "restore"))
		snprintf(err, err_len, "%s", sm->failure);
	set_activity(sm, 0, NULL);
	return j.rc;
}

static int full_restore(vsrh_sm *sm, const uint8_t *data, size_t len, bool with_policy, char *err,
			size_t err_len)
{
	return restore_as(sm, data, len, with_policy, false, err, err_len);
}

int vsrh_sm_snapshot(vsrh_sm *sm, vsr_buf *out)
{
	char err[ERR_TEXT_MAX];
	if (full_snapshot(sm, out, err, sizeof err)) {
		vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "%s: snapshot failed: %s", sm->script_name, err);
		return VSR_ESM;
	}
	return VSR_OK;
}

/* After the state was replaced. */
static void state_replaced(vsrh_sm *sm)
{
	sm->digest_valid = false;
	/* The restored state is the new base for plain-state rollback. */
	sm->has_base = false;
	sm->nrecs = 0;
	sm->replay_bytes.len = 0;
}

int vsrh_sm_restore(vsrh_sm *sm, const uint8_t *data, size_t len)
{
	char err[ERR_TEXT_MAX];
	if (full_restore(sm, data, len, true, err, sizeof err)) {
		vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "%s: restore failed: %s", sm->script_name, err);
		return VSR_ESM;
	}
	sm->digest_valid = false;
	/* The restored state is the new base for plain-state rollback. */
	sm->has_base = false;
	sm->nrecs = 0;
	sm->replay_bytes.len = 0;
	return VSR_OK;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

uint64_t vsrh_sm_digest(vsrh_sm *sm)
{
	uint64_t d = mix(sm->store.digest ^ 0x5653524844494731ull);
	if (sm->digest_valid)
		return d ^ sm->digest_part;
	sm->digest_part = 0;
	if (sm->plain || sm->policy_has_state) {
		/* Plain state has no running digest: hash its part of a snapshot
		 * (after the header and the store, whose digest is above). */
		vsr_buf b = {0};
		size_t pos = 0;
		uint32_t n;
		const char *str;
		size_t sl;
		int64_t v;
		char err[ERR_TEXT_MAX];
		/* without the store: its digest is kept apart, above */
		if (snapshot_as(sm, &b, true, err, sizeof err) == 0 &&
		    vsrh_get_array_header(b.data, b.len, &pos, &n) == 0 &&
		    vsrh_get_str(b.data, b.len, &pos, &str, &sl) == 0 &&
		    vsrh_get_int(b.data, b.len, &pos, &v) == 0 &&
		    vsrh_get_int(b.data, b.len, &pos, &v) == 0 && vsrh_skip(b.data, b.len, &pos) == 0)
			sm->digest_part = mix(XXH3_64bits(b.data + pos, b.len - pos));
		free(b.data);
	}
	sm->digest_valid = true;
	d ^= sm->digest_part;
	return d;
}

/* ---------------------------------------------------------------- dedup policy */

typedef struct evict_job {
	vsrh_sm *sm;
	const vsr_session_info *s;
	uint32_t n;
	int64_t chosen; /* session id, or -1 */
	char err[ERR_TEXT_MAX];
} evict_job;

static int evict_tramp(lua_State *L)
{
	evict_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	set_mode(sm, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_policy);
	lua_getfield(L, -1, "evict");
	lua_createtable(L, (int)j->n, 0);
	for (uint32_t i = 0; i < j->n; i++) {
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, (lua_Integer)j->s[i].session);
		lua_setfield(L, -2, "session");
		lua_pushinteger(L, (lua_Integer)j->s[i].request);
		lua_setfield(L, -2, "request");
		lua_pushinteger(L, (lua_Integer)j->s[i].last_op);
		lua_setfield(L, -2, "last_op");
		lua_pushinteger(L, (lua_Integer)j->s[i].registered_op);
		lua_setfield(L, -2, "registered_op");
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	/* The policy may look at every session: give it room for that. */
	uint64_t saved = sm->box.instr_max;
	uint64_t need = 64ull * j->n + 10000;
	if (sm->box.instr_max < need)
		sm->box.instr_max = need;
	lua_pushinteger(L, (lua_Integer)sm->clients_max);
	int st = vsrh_box_call(&sm->box, 2, 1);
	sm->box.instr_max = saved;
	j->chosen = -1;
	if (st != LUA_OK) {
		vsrh_box_error_text(&sm->box, st, -1, j->err, sizeof j->err);
		return 0;
	}
	if (!lua_isinteger(L, -1)) {
		snprintf(j->err, sizeof j->err, "evict() must return a session id (an integer), got %s",
			 luaL_typename(L, -1));
		return 0;
	}
	j->chosen = (int64_t)lua_tointeger(L, -1);
	return 0;
}

uint32_t vsrh_sm_evict(vsrh_sm *sm, const vsr_session_info *s, uint32_t n)
{
	if (n == 0)
		return 0;
	sm->digest_valid = false; /* the policy may keep state */
	if (sm->ref_policy != LUA_NOREF) {
		evict_job j = {sm, s, n, -1, ""};
		host_protected(sm, evict_tramp, &j, "dedup policy");
		if (j.chosen >= 0) {
			uint32_t lo = 0, hi = n;
			while (lo < hi) {
				uint32_t mid = lo + (hi - lo) / 2;
				if (s[mid].session < (uint64_t)j.chosen)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < n && s[lo].session == (uint64_t)j.chosen)
				return lo;
			snprintf(j.err, sizeof j.err, "evict() returned %lld, which is not a session in the table",
				 (long long)j.chosen);
		}
		vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "dedup policy failed, evicting by the built-in "
			     "rule (oldest last_op): %s", j.err);
	}
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (s[i].last_op < s[best].last_op)
			best = i; /* sorted by id: the first of equals has the lowest id */
	return best;
}

typedef struct pcommit_job {
	vsrh_sm *sm;
	const vsr_apply_ctx *actx;
} pcommit_job;

static int pcommit_tramp(lua_State *L)
{
	pcommit_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	set_mode(sm, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_policy);
	if (lua_getfield(L, -1, "commit") != LUA_TFUNCTION)
		return 0;
	lua_createtable(L, 0, 4);
	set_ctx_fields(L, j->actx);
	int st = vsrh_box_call(&sm->box, 1, 0);
	if (st != LUA_OK) {
		char t[ERR_TEXT_MAX];
		vsrh_box_error_text(&sm->box, st, -1, t, sizeof t);
		vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "dedup policy commit() failed: %s", t);
	}
	return 0;
}

static void policy_commit(vsrh_sm *sm, const vsr_apply_ctx *actx)
{
	pcommit_job j = {sm, actx};
	host_protected(sm, pcommit_tramp, &j, "dedup policy");
}

/* ---------------------------------------------------------------- loading */

typedef struct open_job {
	vsrh_sm *sm;
	const vsrh_sm_options *o;
	const char *policy_path;
	char *err;
	size_t err_len;
	int rc;
} open_job;

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int dir_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads a script: runs it with the budgets and checks it returned a table.
 * Leaves the table on the stack. */
static int load_script(vsrh_sm *sm, const char *path, const char *name, char *err, size_t err_len)
{
	lua_State *L = sm->box.L;
	char e[ERR_TEXT_MAX];
	vsrh_box_push_env(&sm->box);
	if (vsrh_box_load_file(&sm->box, path, name, e, sizeof e)) {
		snprintf(err, err_len, "%s", e);
		return -1;
	}
	int st = vsrh_box_call(&sm->box, 0, 1);
	if (st != LUA_OK) {
		vsrh_box_error_text(&sm->box, st, -1, e, sizeof e);
		snprintf(err, err_len, "%s: loading failed: %s", name, e);
		lua_pop(L, 1);
		return -1;
	}
	if (!lua_istable(L, -1)) {
		snprintf(err, err_len, "%s: expected the script to return a table of functions "
			 "(return { apply = function(op, ctx) ... end }), got %s", name, luaL_typename(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

/* Takes field `name` of the table on top as a function ref, or LUA_NOREF. */
static int take_fn(lua_State *L, const char *script, const char *name, int required, int *ref,
		   char *err, size_t err_len)
{
	lua_pushstring(L, name);
	int t = lua_rawget(L, -2);
	if (t == LUA_TNIL && !required) {
		lua_pop(L, 1);
		*ref = LUA_NOREF;
		return 0;
	}
	if (t != LUA_TFUNCTION) {
		snprintf(err, err_len, "%s: %s: expected a function, got %s%s", script, name,
			 lua_typename(L, t), t == LUA_TNIL ? " (it is required)" : "");
		lua_pop(L, 1);
		return -1;
	}
	*ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

static int ctx_readonly(lua_State *L)
{
	return luaL_error(L, "ctx is read-only (keep your own state in vsr.store or your tables)");
}

/* ctx's __index: the log entry's fields from the running (or last) call,
 * anything else (random) from the table in upvalue 2. */
static int ctx_index(lua_State *L)
{
	const vsrh_sm *sm = lua_touserdata(L, lua_upvalueindex(1));
	size_t n;
	const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
	uint64_t v;
	if (k && n == 2 && memcmp(k, "op", 2) == 0)
		v = sm->ctx_now.op;
	else if (k && n == 9 && memcmp(k, "timestamp", 9) == 0)
		v = sm->ctx_now.timestamp;
	else if (k && n == 7 && memcmp(k, "session", 7) == 0)
		v = sm->ctx_now.session;
	else if (k && n == 7 && memcmp(k, "request", 7) == 0)
		v = sm->ctx_now.request;
	else {
		lua_settop(L, 2);
		lua_rawget(L, lua_upvalueindex(2));
		return 1;
	}
	lua_pushinteger(L, (lua_Integer)v);
	return 1;
}

static int open_tramp(lua_State *L)
{
	open_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	char *err = j->err;
	size_t err_len = j->err_len;
	j->rc = -1;
	/* host additions to the global vsr table */
	lua_getfield(L, LUA_REGISTRYINDEX, VSRH_BOX_VSR);
	int vsr = lua_gettop(L);
	static const luaL_Reg fns[] = {{"sorted_keys", vsr_sorted_keys},
		{"sorted_pairs", vsr_sorted_pairs}, {"array", vsr_array}, {"map", vsr_map},
		{NULL, NULL}};
	luaL_setfuncs(L, fns, 0);
	/* the store */
	vsrh_store_open(L, &sm->store);
	/* metered at their entry points (keys by their bytes) */
	vsrh_meter_wrap_cfunctions(L, -1);
	/* the store's functions, read-only */
	lua_newtable(L);
	lua_createtable(L, 0, 3);
	lua_insert(L, -3);
	lua_insert(L, -3); /* proxy, meta, store */
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	vsrh_box_protect(L, -1, 0);
	lua_setfield(L, vsr, "store");
	lua_settop(L, 1);

	/* ctx: a read-only view; the log fields come from sm->ctx_now */
	lua_newtable(L); /* the view */
	lua_createtable(L, 0, 3); /* its metatable */
	lua_pushlightuserdata(L, sm);
	lua_createtable(L, 0, 1);
	vsrh_box_push_random(&sm->box);
	lua_setfield(L, -2, "random");
	lua_pushcclosure(L, ctx_index, 2);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, ctx_readonly);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	vsrh_box_protect(L, -1, 0);
	sm->ref_ctx = luaL_ref(L, LUA_REGISTRYINDEX);

	/* the state machine: what it loads (itself and the modules it
	 * requires while loading) is digested for the configuration
	 * fingerprint, apart from the dedup policy's */
	sm->box.sources_digest = 0;
	if (load_script(sm, j->o->statemachine, sm->script_name, err, err_len))
		return 0;
	if (take_fn(L, sm->script_name, "apply", 1, &sm->ref_apply, err, err_len) ||
	    take_fn(L, sm->script_name, "query", 0, &sm->ref_query, err, err_len) ||
	    take_fn(L, sm->script_name, "snapshot", 0, &sm->ref_snapshot, err, err_len) ||
	    take_fn(L, sm->script_name, "restore", 0, &sm->ref_restore, err, err_len))
		return 0;
	if ((sm->ref_snapshot == LUA_NOREF) != (sm->ref_restore == LUA_NOREF)) {
		snprintf(err, err_len, "%s: snapshot and restore go together: define both (plain Lua "
			 "state) or neither (state kept in vsr.store)", sm->script_name);
		return 0;
	}
	sm->plain = sm->ref_snapshot != LUA_NOREF;
	lua_pushstring(L, "examples");
	int et = lua_rawget(L, -2);
	if (et == LUA_TTABLE || et == LUA_TFUNCTION) {
		sm->ref_examples = luaL_ref(L, LUA_REGISTRYINDEX);
	} else if (et != LUA_TNIL) {
		snprintf(err, err_len, "%s: examples: expected an array of operations or a function "
			 "returning one, got %s", sm->script_name, lua_typename(L, et));
		return 0;
	}
	lua_settop(L, 1);
	sm->sources_statemachine = sm->box.sources_digest;
	sm->box.sources_digest = 0;
	/* the dedup policy */
	if (j->policy_path) {
		char pname[300];
		snprintf(pname, sizeof pname, "%s", base_name(j->policy_path));
		if (load_script(sm, j->policy_path, pname, err, err_len))
			return 0;
		int ref;
		if (take_fn(L, pname, "evict", 1, &ref, err, err_len))
			return 0;
		luaL_unref(L, LUA_REGISTRYINDEX, ref);
		static const char *const opt[] = {"commit", "snapshot", "restore"};
		for (int i = 0; i < 3; i++) {
			if (take_fn(L, pname, opt[i], 0, &ref, err, err_len))
				return 0;
			luaL_unref(L, LUA_REGISTRYINDEX, ref);
		}
		lua_pushstring(L, "snapshot");
		int hs = lua_rawget(L, -2) != LUA_TNIL;
		lua_pushstring(L, "restore");
		int hr = lua_rawget(L, -3) != LUA_TNIL;
		lua_pop(L, 2);
		if (hs != hr) {
			snprintf(err, err_len, "%s: snapshot and restore go together: define both or neither",
				 pname);
			return 0;
		}
		sm->policy_has_state = hs;
		lua_pushstring(L, "commit");
		sm->policy_has_commit = lua_rawget(L, -2) == LUA_TFUNCTION;
		lua_pop(L, 1);
		sm->ref_policy = luaL_ref(L, LUA_REGISTRYINDEX);
		sm->sources_dedup = sm->box.sources_digest;
	}
	sm->box.sources_sealed = true;
	j->rc = 0;
	return 0;
}

/* ---------------------------------------------------------------- plain-state images on disk */

/* File: "VSRHIMG1" | op | checksum | timestamp | size | digest (u64 little
 * endian each) | the image. Written to a temporary, fsync'ed, renamed. */
#define IMAGE_MAGIC "VSRHIMG1"
#define IMAGE_HEADER 48


static int image_persist(void *arg, const vsr_snapckpt_image *im)
{
	vsrh_sm *sm = arg;
	char tmp[4300];
	snprintf(tmp, sizeof tmp, "%s.tmp", sm->image_path);
	uint8_t h[IMAGE_HEADER];
	memcpy(h, IMAGE_MAGIC, 8);
	uint64_t f[5] = {im->cp.op, im->cp.checksum, im->cp.timestamp, im->cp.size, im->cp.digest};
	for (int i = 0; i < 5; i++)
		vsrh_put_u64le(h + 8 + 8 * i, f[i]);
	FILE *fp = fopen(tmp, "wb");
	bool ok = fp && fwrite(h, 1, sizeof h, fp) == sizeof h &&
		  fwrite(im->data, 1, (size_t)im->cp.size, fp) == im->cp.size && fflush(fp) == 0 &&
		  fsync(fileno(fp)) == 0;
	if (fp && fclose(fp) != 0)
		ok = false;
	if (ok && rename(tmp, sm->image_path) != 0)
		ok = false;
	if (!ok) {
		vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "%s: cannot write the checkpoint %s: %s",
			     sm->script_name, sm->image_path, strerror(errno));
		return VSR_EINVAL;
	}
	return VSR_OK;
}

/* The image a durable disk holds, if any, becomes the current checkpoint. */
static int image_load(vsrh_sm *sm, char *err, size_t err_len)
{
	FILE *fp = fopen(sm->image_path, "rb");
	if (fp == NULL)
		return errno == ENOENT ? 0 : -1;
	uint8_t h[IMAGE_HEADER];
	uint8_t *data = NULL;
	int rc = -1;
	if (fread(h, 1, sizeof h, fp) == sizeof h && memcmp(h, IMAGE_MAGIC, 8) == 0) {
		vsr_checkpoint cp = {vsrh_get_u64le(h + 8), vsrh_get_u64le(h + 16), vsrh_get_u64le(h + 24),
				     vsrh_get_u64le(h + 32), vsrh_get_u64le(h + 40)};
		data = cp.size < ((uint64_t)1 << 40) ? malloc(cp.size ? (size_t)cp.size : 1) : NULL;
		if (data && fread(data, 1, (size_t)cp.size, fp) == cp.size &&
		    XXH3_64bits(data, (size_t)cp.size) == cp.digest) {
			vsr_snapckpt_adopt(&sm->ck, &cp, data);
			data = NULL;
			rc = 0;
		}
	}
	free(data);
	fclose(fp);
	if (rc)
		snprintf(err, err_len, "%s: unreadable or damaged checkpoint image", sm->image_path);
	return rc;
}

int vsrh_sm_open(vsrh_sm **out, const vsrh_sm_options *o, char *err, size_t err_len)
{
	*out = NULL;
	if (!o->statemachine) {
		snprintf(err, err_len, "no state machine script given");
		return VSR_EINVAL;
	}
	vsrh_sm *sm = calloc(1, sizeof *sm);
	if (!sm) {
		snprintf(err, err_len, "out of memory");
		return VSR_ENOMEM;
	}
	sm->ref_apply = sm->ref_query = sm->ref_snapshot = sm->ref_restore = LUA_NOREF;
	sm->ref_policy = LUA_NOREF;
	sm->ref_examples = LUA_NOREF;
	snprintf(sm->script_name, sizeof sm->script_name, "%s", base_name(o->statemachine));
	if (!file_exists(o->statemachine)) {
		snprintf(err, err_len, "%s: state machine script not found", o->statemachine);
		free(sm);
		return VSR_EINVAL;
	}
	/* Folders for require: lua/ next to the script's folder, or ./lua. */
	char script_dir[VSRH_PATH_MAX], lua_root[VSRH_PATH_MAX + 16];
	const char *slash = strrchr(o->statemachine, '/');
	if (slash)
		snprintf(script_dir, sizeof script_dir, "%.*s", (int)(slash - o->statemachine),
			 o->statemachine);
	else
		snprintf(script_dir, sizeof script_dir, ".");
	if (o->lua_root)
		snprintf(lua_root, sizeof lua_root, "%s", o->lua_root);
	else {
		snprintf(lua_root, sizeof lua_root, "%s/../lua", script_dir);
		if (!dir_exists(lua_root))
			snprintf(lua_root, sizeof lua_root, "lua");
		if (!dir_exists(lua_root))
			lua_root[0] = 0;
	}
	char policy[VSRH_PATH_MAX + 64];
	const char *policy_path = o->dedup;
	if (!policy_path && lua_root[0]) {
		snprintf(policy, sizeof policy, "%s/vsr/dedup/oldest.lua", lua_root);
		if (file_exists(policy))
			policy_path = policy;
	}
	vsrh_box_options bo = {
		.instructions_max = o->instructions_max,
		.memory_bytes_max = o->memory_bytes_max,
		.lua_root = lua_root,
		.script_dir = script_dir,
		.log = o->log,
		.log_arg = o->log_arg,
		.log_level = o->log_level,
		.check_seed = o->check_seed,
	};
	if (vsrh_box_open(&sm->box, &bo, err, err_len)) {
		free(sm);
		return VSR_ENOMEM;
	}
	open_job j = {sm, o, policy_path, err, err_len, -1};
	lua_State *L = sm->box.L;
	lua_pushcfunction(L, open_tramp);
	lua_pushlightuserdata(L, &j);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		snprintf(err, err_len, "%s: %s", sm->script_name,
			 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "out of memory");
		j.rc = -1;
	}
	lua_settop(L, 0);
	if (j.rc) {
		vsrh_sm_destroy(sm);
		return VSR_ESM;
	}
	/* All state in vsr.store: the store lives in LMDB. Plain Lua state is
	 * snapshotted whole, the store with it, so it stays in a table. */
	if (!sm->plain && o->store != VSRH_STORE_TABLE &&
	    vsrh_store_use_lmdb(&sm->store, o->store_dir, o->store_sync, o->store_fresh,
				o->disk_full, o->disk_full_arg, err, err_len)) {
		/* The store's directory or files could not be opened: the disk
		 * (or its permissions), not the configuration. */
		vsrh_sm_destroy(sm);
		return VSR_EIO;
	}
	sm->store.checkpoint_interval = o->checkpoint_interval;
	/* Plain state on a durable disk: the current checkpoint image is a
	 * file next to (where LMDB would be) the store. */
	if (sm->store.db == NULL && o->store_dir && o->store_sync) {
		size_t n = strlen(o->store_dir) + 32;
		sm->image_path = malloc(n);
		if (sm->image_path == NULL || (mkdir(o->store_dir, 0700) != 0 && errno != EEXIST)) {
			bool nomem = sm->image_path == NULL;
			snprintf(err, err_len, "%s: %s", o->store_dir,
				 nomem ? "out of memory" : strerror(errno));
			vsrh_sm_destroy(sm);
			return nomem ? VSR_ENOMEM : VSR_EIO;
		}
		snprintf(sm->image_path, n, "%s/checkpoint.img", o->store_dir);
		if (o->store_fresh)
			unlink(sm->image_path);
		else if (image_load(sm, err, err_len)) {
			vsrh_sm_destroy(sm);
			return VSR_ECORRUPT;
		}
		sm->ck.persist = image_persist;
		sm->ck.persist_arg = sm;
	}
	sm->clients_max = o->clients_max ? o->clients_max : 1024;
	sm->recs = calloc(REPLAY_OPS_MAX, sizeof *sm->recs);
	if (!sm->recs) {
		vsrh_sm_destroy(sm);
		snprintf(err, err_len, "out of memory");
		return VSR_ENOMEM;
	}
	*out = sm;
	return VSR_OK;
}

int vsrh_sm_create(vsrh_sm **out, const vsrh_config *cfg, char *err, size_t err_len)
{
	return vsrh_sm_create_at(out, cfg, NULL, false, false, err, err_len);
}

vsrh_sm_options vsrh_sm_options_at(const vsrh_config *cfg, const char *store_dir, bool sync,
				   bool fresh)
{
	return (vsrh_sm_options){
		.store_dir = store_dir,
		.store_sync = sync,
		.store_fresh = fresh,
		.checkpoint_interval = cfg->checkpoint_interval,
		.statemachine = cfg->statemachine,
		.dedup = cfg->dedup,
		.instructions_max = cfg->instructions_max,
		.memory_bytes_max = cfg->memory_bytes_max,
		.clients_max = cfg->clients_max,
		.log_level = cfg->log_level,
	};
}

int vsrh_sm_create_at(vsrh_sm **out, const vsrh_config *cfg, const char *store_dir, bool sync,
		      bool fresh, char *err, size_t err_len)
{
	vsrh_sm_options o = vsrh_sm_options_at(cfg, store_dir, sync, fresh);
	return vsrh_sm_open(out, &o, err, err_len);
}

void vsrh_sm_destroy(vsrh_sm *sm)
{
	if (!sm)
		return;
	vsrh_store_close(sm->box.L, &sm->store);
	free(sm->image_path);
	vsrh_box_close(&sm->box);
	free(sm->base.data);
	free(sm->replay_bytes.data);
	free(sm->recs);
	vsr_snapckpt_free(&sm->ck);
	free(sm);
}

void vsrh_sm_set_log(vsrh_sm *sm, vsrh_log_fn fn, void *arg, int level)
{
	sm->box.log = fn;
	sm->box.log_arg = arg;
	sm->box.log_level = level;
}

static int cb_apply(void *ctx, const vsr_apply_ctx *a, const uint8_t *op, size_t len, vsr_buf *r)
{
	return vsrh_sm_apply(ctx, a, op, len, r);
}
static int cb_snapshot(void *ctx, vsr_buf *out)
{
	return vsrh_sm_snapshot(ctx, out);
}
static int cb_restore(void *ctx, const uint8_t *d, size_t len)
{
	return vsrh_sm_restore(ctx, d, len);
}
static uint64_t cb_digest(void *ctx)
{
	return vsrh_sm_digest(ctx);
}
static uint32_t cb_evict(void *ctx, const vsr_session_info *s, uint32_t n)
{
	return vsrh_sm_evict(ctx, s, n);
}

/* ---------------------------------------------------------------- LMDB checkpoints */

/* A checkpoint's head: u64 meta_len | meta (the core's client table) | the
 * state outside the store (a snapshot whose store map is empty). */
static int lm_take(void *ctx, vsr_checkpoint *cp, const uint8_t *meta, size_t meta_len)
{
	vsrh_sm *sm = ctx;
	char err[ERR_TEXT_MAX];
	vsr_buf head = {0};
	uint8_t l[8];
	for (int i = 0; i < 8; i++)
		l[i] = (uint8_t)((uint64_t)meta_len >> (8 * i));
	int rc = VSR_ENOMEM;
	if (vsrh_buf_put(&head, l, 8) == 0 && vsrh_buf_put(&head, meta, meta_len) == 0) {
		rc = VSR_ESM;
		if (snapshot_as(sm, &head, true, err, sizeof err) == 0)
			rc = vsrh_store_ckpt_take(&sm->store, cp, head.data, head.len);
		else
			vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "%s: checkpoint failed: %s",
				     sm->script_name, err);
	}
	free(head.data);
	return rc;
}

static int lm_read(void *ctx, const vsr_checkpoint *cp, uint64_t off, uint32_t len, vsr_buf *out)
{
	return vsrh_store_ckpt_read(&((vsrh_sm *)ctx)->store, cp, off, len, out);
}

static int lm_write(void *ctx, const vsr_checkpoint *cp, uint64_t off, const uint8_t *d,
		    uint32_t len)
{
	return vsrh_store_ckpt_write(&((vsrh_sm *)ctx)->store, cp, off, d, len);
}

/* Splits a head into the core's meta and the rest. */
static int head_split(const uint8_t *head, size_t len, const uint8_t **meta, size_t *meta_len)
{
	if (len < 8)
		return -1;
	uint64_t ml = 0;
	for (int i = 0; i < 8; i++)
		ml |= (uint64_t)head[i] << (8 * i);
	if (ml > len - 8)
		return -1;
	*meta = head + 8;
	*meta_len = (size_t)ml;
	return 0;
}

/* Restores the state outside the store from a head; on failure puts back
 * what was there. */
static int head_restore(vsrh_sm *sm, const uint8_t *head, size_t len)
{
	const uint8_t *meta;
	size_t ml;
	char err[ERR_TEXT_MAX];
	if (head_split(head, len, &meta, &ml))
		return VSR_ECORRUPT;
	vsr_buf before = {0};
	if (snapshot_as(sm, &before, true, err, sizeof err)) {
		free(before.data);
		return VSR_ESM;
	}
	const uint8_t *rest = meta + ml;
	int rc = VSR_OK;
	if (restore_as(sm, rest, len - 8 - ml, true, true, err, sizeof err)) {
		vsrh_box_log(&sm->box, VSRH_LOG_ERROR, "%s: checkpoint restore failed: %s",
			     sm->script_name, err);
		if (restore_as(sm, before.data, before.len, true, true, err, sizeof err))
			/* the state before cannot be put back: never run on (the
			 * replica stops, vsrh_sm_failure) */
			sm_fail(sm, "a failed checkpoint restore could not put the state back: %s", err);
		rc = VSR_ESM;
	}
	free(before.data);
	if (rc == VSR_OK)
		state_replaced(sm);
	return rc;
}

typedef struct lm_accept_job {
	vsrh_sm *sm;
	vsr_checkpoint_accept accept;
	void *arg;
} lm_accept_job;

static int lm_accept(void *arg, const uint8_t *head, size_t len)
{
	lm_accept_job *j = arg;
	const uint8_t *meta;
	size_t ml;
	if (head_split(head, len, &meta, &ml))
		return VSR_ECORRUPT;
	int rc = j->accept(j->arg, meta, ml);
	return rc == VSR_OK ? head_restore(j->sm, head, len) : rc;
}

static int lm_install(void *ctx, const vsr_checkpoint *cp, vsr_checkpoint_accept accept, void *arg)
{
	vsrh_sm *sm = ctx;
	lm_accept_job j = {sm, accept, arg};
	return vsrh_store_ckpt_install(sm->box.L, &sm->store, cp, lm_accept, &j);
}

static int lm_open(void *ctx, vsr_checkpoint *cp, vsr_buf *meta)
{
	vsrh_sm *sm = ctx;
	vsr_buf head = {0};
	int rc = vsrh_store_ckpt_open(&sm->store, cp, &head);
	if (rc == VSR_OK && cp->op) {
		const uint8_t *m = NULL;
		size_t ml = 0;
		rc = head_split(head.data, head.len, &m, &ml) ? VSR_ECORRUPT
							      : head_restore(sm, head.data, head.len);
		if (rc == VSR_OK && vsrh_buf_put(meta, m, ml))
			rc = VSR_ENOMEM;
	}
	free(head.data);
	return rc;
}

bool vsrh_sm_store_lmdb(const vsrh_sm *sm)
{
	return sm->store.db != NULL;
}

uint64_t vsrh_sm_on_checkpoint_durable(vsrh_sm *sm, void (*fn)(void *arg, uint64_t op), void *arg)
{
	return vsrh_store_on_durable(&sm->store, fn, arg);
}

void vsrh_sm_stagger(vsrh_sm *sm, unsigned slot, unsigned slots, uint64_t turn_ns)
{
	vsrh_store_stagger(&sm->store, slot, slots, turn_ns);
}

void vsrh_sm_on_disk_full(vsrh_sm *sm, bool (*fn)(void *arg), void *arg)
{
	vsrh_store_on_disk_full(&sm->store, fn, arg);
}

void vsrh_sm_tick(vsrh_sm *sm)
{
	vsrh_store_tick(&sm->store);
}

void vsrh_sm_settle(vsrh_sm *sm)
{
	vsrh_store_settle(&sm->store);
}

uint64_t vsrh_sm_turn_commits(const vsrh_sm *sm, uint64_t *op, uint64_t *ns)
{
	return vsrh_store_turn_commits(&sm->store, op, ns);
}

void vsrh_sm_bind(vsrh_sm *sm, vsr_state_machine *out)
{
	vsr_state_machine inner = {.ctx = sm, .apply = cb_apply, .snapshot = cb_snapshot,
				   .restore = cb_restore, .digest = cb_digest,
				   .evict = sm->ref_policy != LUA_NOREF ? cb_evict : NULL};
	if (sm->store.db == NULL) {
		/* plain Lua state: whole-state snapshots (the store in them too) */
		vsr_snapckpt_rebind(&sm->ck, &inner);
		vsr_snapckpt_machine(&sm->ck, out);
		return;
	}
	*out = inner;
	out->checkpoint_take = lm_take;
	out->checkpoint_read = lm_read;
	out->checkpoint_write = lm_write;
	out->checkpoint_install = lm_install;
	out->checkpoint_open = lm_open;
}

typedef struct examples_job {
	vsrh_sm *sm;
	uint64_t seed;
	vsr_buf *ops;
	uint32_t n;
	char *err;
	size_t err_len;
	int rc;
} examples_job;

/* Most example operations taken from a script. */
#define EXAMPLES_MAX 100000u

static int examples_tramp(lua_State *L)
{
	examples_job *j = lua_touserdata(L, 1);
	vsrh_sm *sm = j->sm;
	set_mode(sm, 0);
	j->rc = VSR_ESM;
	lua_rawgeti(L, LUA_REGISTRYINDEX, sm->ref_examples);
	if (lua_isfunction(L, -1)) {
		vsrh_box_seed(&sm->box, j->seed);
		int st = vsrh_box_call(&sm->box, 0, 1);
		if (st != LUA_OK) {
			char t[ERR_TEXT_MAX];
			vsrh_box_error_text(&sm->box, st, -1, t, sizeof t);
			snprintf(j->err, j->err_len, "%s: examples(): %s", sm->script_name, t);
			return 0;
		}
	}
	if (!lua_istable(L, -1)) {
		snprintf(j->err, j->err_len, "%s: examples: expected an array of operations, got %s",
			 sm->script_name, luaL_typename(L, -1));
		return 0;
	}
	lua_Unsigned n = lua_rawlen(L, -1);
	if (n > EXAMPLES_MAX) {
		snprintf(j->err, j->err_len, "%s: examples: more than %u operations", sm->script_name,
			 EXAMPLES_MAX);
		return 0;
	}
	j->ops = calloc(n ? n : 1, sizeof *j->ops);
	if (!j->ops) {
		snprintf(j->err, j->err_len, "out of memory");
		return 0;
	}
	for (lua_Unsigned i = 1; i <= n; i++) {
		char e[256];
		lua_rawgeti(L, -1, (lua_Integer)i);
		if (vsrh_encode(L, -1, &j->ops[i - 1], VSR_OP_BYTES_MAX, e, sizeof e)) {
			snprintf(j->err, j->err_len, "%s: examples[%llu]: %s", sm->script_name,
				 (unsigned long long)i, e);
			j->n = (uint32_t)i;
			return 0;
		}
		lua_pop(L, 1);
	}
	j->n = (uint32_t)n;
	j->rc = VSR_OK;
	return 0;
}

int vsrh_sm_examples(vsrh_sm *sm, uint64_t seed, vsr_buf **ops, uint32_t *n, char *err,
		     size_t err_len)
{
	*ops = NULL;
	*n = 0;
	if (sm->ref_examples == LUA_NOREF)
		return VSR_OK;
	examples_job j = {sm, seed, NULL, 0, err, err_len, VSR_ESM};
	host_protected(sm, examples_tramp, &j, "examples");
	if (j.rc != VSR_OK) {
		for (uint32_t i = 0; i < j.n; i++)
			free(j.ops[i].data);
		free(j.ops);
		return j.rc;
	}
	*ops = j.ops;
	*n = j.n;
	return VSR_OK;
}

void vsrh_sm_stats_get(const vsrh_sm *sm, vsrh_sm_stats *out)
{
	*out = sm->stats;
	out->memory_bytes = sm->box.mem_used;
	vsrh_sync_figures f = vsrh_store_sync_figures((vsrh_store *)&sm->store);
	out->checkpoint_syncs = f.syncs;
	out->checkpoint_sync_last_ns = f.last_sync_ns;
	out->checkpoint_sync_waits = f.waits;
	out->checkpoint_sync_wait_ns = f.wait_ns;
	out->checkpoint_held_writes = f.held;
	out->checkpoint_turns = f.deferred;
	out->checkpoint_step_last_ns = f.step_last_ns;
	out->checkpoint_commits_off_loop = f.off_loop;
	out->checkpoint_commit_last_ns = f.commit_last_ns;
	out->checkpoint_last_off_loop = f.last_off_loop;
	out->store_cleanings = f.cleanings;
	out->store_cleanings_begun = f.cleanings_begun;
}

void vsrh_sm_sources(const vsrh_sm *sm, uint64_t *statemachine, uint64_t *dedup)
{
	*statemachine = sm->sources_statemachine;
	*dedup = sm->sources_dedup;
}
