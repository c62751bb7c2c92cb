/* vsrh_budget.c - the sandbox's budgets: gas (VM instructions + work in C), the hard memory cap.
 *
 * Gas (vsrh_gas.h) decides whether an operation succeeds; it depends only
 * on the log. The allocator's view of memory depends on the heap's history
 * (garbage not yet collected, table sizes after deletes), so it never
 * decides an operation's outcome: it is a last line, a hard cap whose
 * crossing marks the box broken (vsrh_box_broken) and the replica stops. */
#include "vsrh_gas.h"
#include "vsrh_sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "vsrh_codec.h"

/* The hook is armed in chunks so budgets above INT_MAX work; the budget is
 * still exact to the instruction for VM work. A chunk is also how often the
 * watchdog sees metered progress (vsrh_sandbox.h): 2,000 instructions that
 * each compare two distinct 1 MiB strings with `<` take about 30 ms, far
 * below its limit even on a loaded machine; the hook costs about 0.1 % of
 * VM time at this rate. */
#define BOX_CHUNK 2000u
/* The smallest allocation that can only be a long string (a short string
 * is at most 40 bytes plus its header). */
#define BOX_LONG_STRING_ALLOC 80u
/* A string's header and terminating zero (offsetof(TString, contents) + 1
 * in Lua 5.4 on 64-bit machines). */
#define BOX_STRING_OVERHEAD 25u

/* ---------------------------------------------------------------- allocator */

static size_t size_class(size_t n)
{
	return (n + VSRH_BOX_CLASS_BYTES - 1) / VSRH_BOX_CLASS_BYTES;
}

static void *block_get(vsrh_box *b, size_t n)
{
	size_t c = size_class(n);
	if (c > VSRH_BOX_CLASSES)
		return malloc(n);
	void *p = b->free_list[c];
	if (p) {
		b->free_list[c] = *(void **)p;
		b->free_count[c]--;
		return p;
	}
	return malloc(c * VSRH_BOX_CLASS_BYTES);
}

static void block_put(vsrh_box *b, void *p, size_t n)
{
	size_t c = size_class(n);
	if (c > VSRH_BOX_CLASSES || b->free_count[c] >= VSRH_BOX_FREE_MAX) {
		free(p);
		return;
	}
	*(void **)p = b->free_list[c];
	b->free_list[c] = p;
	b->free_count[c]++;
}

void vsrh_box_release_blocks(vsrh_box *b)
{
	for (size_t c = 0; c <= VSRH_BOX_CLASSES; c++) {
		while (b->free_list[c]) {
			void *p = b->free_list[c];
			b->free_list[c] = *(void **)p;
			free(p);
		}
		b->free_count[c] = 0;
	}
}

/* A new long string is the one object whose size is exact and whose
 * creation is deterministic (long strings are never interned), and the one
 * a single VM instruction (`..`) can make arbitrarily large: it is charged
 * here, by its bytes, and refused above VSRH_STRING_BYTES_MAX. */
static int alloc_charge_string(vsrh_box *b, size_t nsize)
{
	if (nsize > VSRH_STRING_BYTES_MAX + BOX_STRING_OVERHEAD) {
		if (b->fatal == VSRH_FATAL_NONE)
			b->fatal = VSRH_FATAL_STRING;
		return -1;
	}
	return vsrh_gas_try(b, vsrh_gas_bytes(nsize));
}

/* Everything but the two common cases (vsrh_box_alloc), out of line so
 * that those run without saving registers or calling anything. */
static __attribute__((noinline)) void *box_alloc_slow(vsrh_box *b, void *ptr, size_t osize,
						       size_t nsize)
{
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		if (ptr) {
			b->mem_used -= old;
			block_put(b, ptr, old);
		}
		return NULL;
	}
	if (b->mem_limited) {
		if (b->fatal != VSRH_FATAL_NONE)
			return NULL; /* the call is over: let it unwind */
		if (!ptr && osize == LUA_TSTRING && nsize > BOX_LONG_STRING_ALLOC &&
		    alloc_charge_string(b, nsize))
			return NULL;
		if (nsize > old && b->mem_used - old + nsize > b->mem_max) {
			/* Lua collects garbage in an emergency and retries once;
			 * only the retry's refusal is final (see box_call). */
			b->mem_refusals++;
			return NULL;
		}
	}
	void *p;
	size_t co = size_class(old), cn = size_class(nsize);
	if (ptr && co == cn && cn <= VSRH_BOX_CLASSES) {
		p = ptr; /* same block size */
	} else if (ptr && co > VSRH_BOX_CLASSES && cn > VSRH_BOX_CLASSES) {
		p = realloc(ptr, nsize);
		if (!p)
			return NULL;
	} else {
		p = block_get(b, nsize);
		if (!p)
			return NULL;
		if (ptr) {
			memcpy(p, ptr, old < nsize ? old : nsize);
			block_put(b, ptr, old);
		}
	}
	b->mem_used = b->mem_used - old + nsize;
	return p;
}

void *vsrh_box_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	vsrh_box *b = ud;
	if (ptr == NULL) {
		/* a new small block from its free list, when no budget or cap
		 * could refuse it: not over the cap, not a long string */
		size_t c = size_class(nsize);
		void *p;
		if (nsize != 0 && c <= VSRH_BOX_CLASSES && (p = b->free_list[c]) != NULL &&
		    b->fatal == VSRH_FATAL_NONE && b->mem_used + nsize <= b->mem_max &&
		    (osize != LUA_TSTRING || nsize <= BOX_LONG_STRING_ALLOC)) {
			b->free_list[c] = *(void **)p;
			b->free_count[c]--;
			b->mem_used += nsize;
			return p;
		}
	} else if (nsize == 0) {
		/* a small block back to its free list */
		size_t c = size_class(osize);
		if (c <= VSRH_BOX_CLASSES && b->free_count[c] < VSRH_BOX_FREE_MAX) {
			b->mem_used -= osize;
			*(void **)ptr = b->free_list[c];
			b->free_list[c] = ptr;
			b->free_count[c]++;
			return NULL;
		}
	}
	return box_alloc_slow(b, ptr, osize, nsize);
}

/* ---------------------------------------------------------------- gas */

void vsrh_box_arm(vsrh_box *b, uint64_t units)
{
	b->armed = true;
	b->budget_now = units ? units : 1;
	b->instr_left = b->budget_now;
	b->instr_chunk = 0;
	b->fatal = VSRH_FATAL_NONE;
}

void vsrh_box_disarm(vsrh_box *b)
{
	b->armed = false;
}

uint64_t vsrh_gas_left(const vsrh_box *b)
{
	return b->armed ? b->instr_left : UINT64_MAX;
}

static void box_hook(lua_State *L, lua_Debug *ar);

static void budget_spent(vsrh_box *b)
{
	if (b->fatal == VSRH_FATAL_NONE) {
		b->fatal = VSRH_FATAL_BUDGET;
		b->budget_exhausted++;
	}
	/* From now on every instruction raises again, so neither pcall nor a
	 * __close handler can carry on. */
	if (b->in_call)
		lua_sethook(b->L, box_hook, LUA_MASKCOUNT, 1);
}

/* Metered work happened (vsrh_sandbox.h: progress). */
static inline void box_progress(vsrh_box *b)
{
	atomic_store_explicit(&b->progress,
			      atomic_load_explicit(&b->progress, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

int vsrh_gas_try(vsrh_box *b, uint64_t units)
{
	if (!b->armed)
		return 0;
	box_progress(b);
	if (b->fatal != VSRH_FATAL_NONE)
		return -1;
	/* instr_left counts from the start of the hook's current chunk, so a
	 * charge that passes here may still end the budget at the chunk's
	 * end: the bound is deterministic, and exceeded by at most a chunk of
	 * VM instructions, never by work in C. */
	if (units >= b->instr_left) {
		budget_spent(b);
		return -1;
	}
	b->instr_left -= units;
	return 0;
}

vsrh_box *vsrh_gas_box(lua_State *L)
{
	void *ud;
	return lua_getallocf(L, &ud) == vsrh_box_alloc ? ud : NULL;
}

int vsrh_gas_try_state(lua_State *L, uint64_t units)
{
	return vsrh_gas_try_box(vsrh_gas_box(L), units);
}

int vsrh_gas_raise(lua_State *L)
{
	vsrh_box *b = vsrh_box_of(L);
	if (b->fatal == VSRH_FATAL_STRING)
		return luaL_error(L, "string too long (the sandbox's limit is %d bytes per string)",
				  (int)VSRH_STRING_BYTES_MAX);
	return luaL_error(L, "instruction budget exhausted (%I units per call, counting VM "
			     "instructions and the work done in C functions)",
			  (lua_Integer)b->budget_now);
}

void vsrh_gas(lua_State *L, uint64_t units)
{
	vsrh_box *b = vsrh_box_of(L);
	if (vsrh_gas_try(b, units))
		vsrh_gas_raise(L);
}

static void box_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	vsrh_box *b = vsrh_box_of(L);
	box_progress(b);
	if (b->fatal == VSRH_FATAL_NONE) {
		if (b->instr_left > b->instr_chunk) {
			b->instr_left -= b->instr_chunk;
			b->instr_chunk = b->instr_left < BOX_CHUNK ? (uint32_t)b->instr_left : BOX_CHUNK;
			lua_sethook(L, box_hook, LUA_MASKCOUNT, (int)b->instr_chunk);
			return;
		}
		b->instr_left = 0;
		budget_spent(b);
	}
	vsrh_gas_raise(L);
}

/* ---------------------------------------------------------------- calls */

static int box_msgh(lua_State *L)
{
	vsrh_box *b = vsrh_box_of(L);
	if (b->log_level <= VSRH_LOG_DEBUG && lua_type(L, 1) == LUA_TSTRING) {
		bool limited = b->mem_limited;
		b->mem_limited = false;
		luaL_traceback(L, L, lua_tostring(L, 1), 1);
		vsrh_box_log(b, VSRH_LOG_DEBUG, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
		b->mem_limited = limited;
	}
	return 1;
}

int vsrh_box_call(vsrh_box *b, int nargs, int nresults)
{
	lua_State *L = b->L;
	int base = lua_gettop(L) - nargs;
	bool own = !b->armed;
	if (own)
		vsrh_box_arm(b, b->instr_max);
	/* The handler is there whatever the log level, though only the debug
	 * log uses it: with or without one, Lua can end an overflowing call
	 * differently, and a reply must not depend on a replica's log level. */
	lua_pushcfunction(L, box_msgh);
	lua_insert(L, base);
	b->in_call = true;
	if (b->fatal == VSRH_FATAL_NONE) {
		b->instr_chunk = b->instr_left < BOX_CHUNK ? (uint32_t)b->instr_left : BOX_CHUNK;
		lua_sethook(L, box_hook, LUA_MASKCOUNT, (int)b->instr_chunk);
	} else {
		lua_sethook(L, box_hook, LUA_MASKCOUNT, 1);
	}
	b->mem_limited = true;
	size_t refusals = b->mem_refusals;
	int st = lua_pcall(L, nargs, nresults, base);
	b->mem_limited = false;
	b->in_call = false;
	lua_sethook(L, NULL, 0, 0);
	lua_remove(L, base);
	if (vsrh_box_weak_check(b) && st == LUA_OK) {
		/* the call made a weak table: it fails, the same way everywhere */
		lua_settop(L, base - 1);
		lua_pushliteral(L, "a metatable was given a __mode field after setmetatable: weak "
				   "tables are not allowed in the sandbox (their entries vanish at "
				   "times that differ between replicas)");
		st = LUA_ERRRUN;
	}
	if (st == LUA_ERRMEM && b->fatal == VSRH_FATAL_NONE) {
		/* Neither gas nor a string limit refused: the process cap did,
		 * after an emergency collection. Whether it does depends on the
		 * heap, not the log: the box is broken, its owner stops. */
		b->fatal = VSRH_FATAL_MEMORY;
		if (b->mem_refusals > refusals && !b->broken) {
			b->broken = true;
			snprintf(b->broken_why, sizeof b->broken_why,
				 "the state machine's memory reached the hard cap of %zu bytes "
				 "(memory_bytes_max); results past this point could differ between "
				 "replicas, so this replica stops", b->mem_max);
		}
	}
	if (own)
		vsrh_box_disarm(b);
	return st;
}

int vsrh_box_error_is_fail(vsrh_box *b, int status, int idx)
{
	lua_State *L = b->L;
	if (status != LUA_ERRRUN || b->fatal != VSRH_FATAL_NONE || lua_type(L, idx) != LUA_TTABLE)
		return 0;
	int is_fail = 0;
	if (lua_getmetatable(L, idx)) {
		luaL_getmetatable(L, vsrh_fail_mt_key);
		is_fail = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	return is_fail;
}

size_t vsrh_box_error_text(vsrh_box *b, int status, int idx, char *out, size_t out_len)
{
	lua_State *L = b->L;
	int n;
	idx = lua_absindex(L, idx);
	if (b->fatal == VSRH_FATAL_BUDGET) {
		n = snprintf(out, out_len,
			     "instruction budget exhausted (%llu units per call, counting VM "
			     "instructions and the work done in C functions)",
			     (unsigned long long)b->budget_now);
	} else if (b->fatal == VSRH_FATAL_STRING) {
		n = snprintf(out, out_len, "string too long (the sandbox's limit is %zu bytes per string)",
			     VSRH_STRING_BYTES_MAX);
	} else if (status == LUA_ERRMEM || b->fatal == VSRH_FATAL_MEMORY) {
		n = snprintf(out, out_len, "memory budget exhausted (%llu bytes per state machine)",
			     (unsigned long long)b->mem_max);
	} else {
		switch (lua_type(L, idx)) {
		case LUA_TSTRING:
		case LUA_TNUMBER: {
			size_t len;
			lua_pushvalue(L, idx); /* tolstring converts numbers in place */
			const char *s = lua_tolstring(L, -1, &len);
			n = snprintf(out, out_len, "%.*s", (int)(len > 65536 ? 65536 : len), s);
			lua_pop(L, 1);
			break;
		}
		case LUA_TNIL:
			n = snprintf(out, out_len, "error raised with a nil value");
			break;
		case LUA_TTABLE: {
			int is_fail = 0;
			if (lua_getmetatable(L, idx)) {
				luaL_getmetatable(L, vsrh_fail_mt_key);
				is_fail = lua_rawequal(L, -1, -2);
				lua_pop(L, 2);
			}
			if (is_fail) {
				lua_pushliteral(L, "code");
				lua_rawget(L, idx);
				lua_pushliteral(L, "message");
				lua_rawget(L, idx);
				n = snprintf(out, out_len, "%lld: %s", (long long)lua_tointeger(L, -2),
					     lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
				lua_pop(L, 2);
				break;
			}
		}
		/* fall through */
		default:
			n = snprintf(out, out_len,
				     "error object is a %s value (raise a string, or vsr.fail(code, message))",
				     luaL_typename(L, idx));
			break;
		}
	}
	if (n < 0)
		n = 0;
	return (size_t)n < out_len ? (size_t)n : out_len - 1;
}
