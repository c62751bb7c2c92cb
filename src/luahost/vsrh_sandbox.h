/* vsrh_sandbox.h - the one definition of the Lua sandbox (host, config, test kit).
 *
 * A box is a lua_State whose scripts see only an allow-list: the base
 * functions that cannot reach outside the state, string (no dump), table
 * (with a deterministic stable sort), math (random from the host's
 * per-call generator, no randomseed), utf8, and `require` limited to the
 * project's own Lua modules. Library tables are read-only proxies and the
 * string metatable is hidden. Every call into Lua goes through
 * vsrh_box_call(), which arms a deterministic instruction budget that the
 * script cannot catch with pcall, under a memory budget. print and warn go to
 * the host's log callback. */
#ifndef VSRH_SANDBOX_H
#define VSRH_SANDBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "vsrh_lua.h"

#define VSRH_PATH_MAX 4096

enum vsrh_fatal {
	VSRH_FATAL_NONE = 0,
	VSRH_FATAL_BUDGET,  /* the instruction budget is spent */
	VSRH_FATAL_MEMORY,  /* the hard memory cap refused an allocation */
	VSRH_FATAL_STRING,  /* a string longer than VSRH_STRING_BYTES_MAX */
};

/* Small blocks are recycled through per-size free lists: an operation
 * allocates and drops a dozen small objects, and glibc's own caches are
 * too shallow for the garbage collector's bursts of frees. */
#define VSRH_BOX_CLASS_BYTES 16u
#define VSRH_BOX_CLASSES 16u     /* blocks up to 256 bytes */
#define VSRH_BOX_FREE_MAX 2048u  /* blocks kept per class */

typedef struct vsrh_box {
	lua_State *L;
	void *free_list[VSRH_BOX_CLASSES + 1];
	uint32_t free_count[VSRH_BOX_CLASSES + 1];
	/* memory budget */
	size_t mem_used;
	size_t mem_max;
	bool mem_limited;      /* false while the host itself works in the state */
	uint64_t mem_refusals;
	/* gas (vsrh_gas.h): the default budget per call, the armed one */
	uint64_t instr_max;
	uint64_t budget_now;   /* units of the armed budget */
	uint64_t instr_left;   /* left at the start of the hook's chunk */
	uint32_t instr_chunk;  /* count the hook is armed with */
	bool armed;            /* a budget is armed (vsrh_box_arm) */
	bool in_call;          /* inside vsrh_box_call */
	int fatal;             /* enum vsrh_fatal, for the current call */
	uint64_t budget_exhausted;
	/* Bumped whenever metered work is charged (a hook chunk of VM
	 * instructions, a C function's charge): read by the watchdog thread,
	 * which stops only a step that makes no metered progress. Written by
	 * the box's thread only (a relaxed load and store, no RMW). */
	_Atomic uint64_t progress;
	/* the hard memory cap was crossed: results may now depend on the heap */
	bool broken;
	char broken_why[256];
	/* the per-call generator behind math.random and ctx.random, seeded on
	 * first use in a call (most operations never draw) */
	uint64_t rng[4];
	uint64_t rng_seed;
	bool rng_ready;
	/* log routing */
	vsrh_log_fn log;
	void *log_arg;
	int log_level;
	/* scratch buffer for host helpers that encode inside a call */
	vsr_buf scratch;
	/* where require looks, in order */
	char lua_root[VSRH_PATH_MAX];
	char script_dir[VSRH_PATH_MAX];
	/* Every source file loaded (vsrh_box_load_file: scripts and required
	 * modules), chained: XXH3-64 of each one's chunk name and bytes, seeded
	 * with the value before. What the replicas of a cluster must share
	 * (the host's configuration fingerprint); the caller may reset it. */
	uint64_t sources_digest;
	uint32_t sources_loaded;
	/* Set once the fingerprinted sources are loaded: a file loaded later
	 * (a module first required inside a call) is logged as not covered. */
	bool sources_sealed;
} vsrh_box;

typedef struct vsrh_box_options {
	uint64_t instructions_max;
	uint64_t memory_bytes_max;
	const char *lua_root;   /* may be NULL */
	const char *script_dir; /* may be NULL */
	vsrh_log_fn log;
	void *log_arg;
	int log_level;
	uint64_t check_seed;    /* unused by the box (pairs() order is canonical) */
} vsrh_box_options;

/* The allocator behind every box (vsrh_budget.c) and its free lists. */
void *vsrh_box_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void vsrh_box_release_blocks(vsrh_box *b);

/* Installs the metered library functions (vsrh_meter.c) into the copies
 * of the libraries at the given stack slots and the globals template. */
void vsrh_meter_install(lua_State *L, int tpl, int string_lib, int table_lib, int utf8_lib);
/* Wraps every C function in the table at t so that it charges one unit
 * and the bytes of its string arguments before running (vsr.store). */
void vsrh_meter_wrap_cfunctions(lua_State *L, int t);
/* Sets find, match, gmatch, gsub (vsrh_pattern.c) in the table at string_lib. */
void vsrh_pattern_install(lua_State *L, int string_lib);

/* Finds metatables that gained a __mode field after setmetatable (a weak
 * table, whose entries would vanish at times that differ between
 * replicas), takes the field away again and returns 1; else 0. */
int vsrh_box_weak_check(vsrh_box *b);

/* Registry key of the set of tables used as metatables. */
#define VSRH_BOX_METATABLES "vsrh.metatables"

/* Creates the state. Returns 0, or -1 with err filled. */
int vsrh_box_open(vsrh_box *b, const vsrh_box_options *o, char *err, size_t err_len);
void vsrh_box_close(vsrh_box *b);

/* Pushes a fresh environment table for one script (its _ENV): the
 * allow-listed globals, reading an unknown global raises an error that
 * names it and says what to use instead. */
void vsrh_box_push_env(vsrh_box *b);

/* Registers a host module returned by require(name) (value on top, popped). */
void vsrh_box_preload(vsrh_box *b, const char *name);

/* Loads a file as a text chunk with the environment on top of the stack
 * (popped) as its _ENV. `chunkname` names it in messages (e.g. "kv.lua").
 * Pushes the function and returns 0, or returns -1 with err filled. */
int vsrh_box_load_file(vsrh_box *b, const char *path, const char *chunkname,
		       char *err, size_t err_len);

/* Calls the function below `nargs` arguments with the budgets armed, like
 * lua_pcall with a message handler. Returns the lua_pcall status; on error
 * the message handler has logged the traceback at debug level and left the
 * error object on the stack. */
int vsrh_box_call(vsrh_box *b, int nargs, int nresults);

/* Converts the error object at idx into text without calling any metamethod,
 * writing at most out_len-1 bytes. Knows vsr.fail tables, budget and memory
 * errors. Returns the length written. */
size_t vsrh_box_error_text(vsrh_box *b, int status, int idx, char *out, size_t out_len);

/* Whether the error object at idx is a vsr.fail(code, message) refusal
 * (as opposed to a runtime error or a spent budget). */
int vsrh_box_error_is_fail(vsrh_box *b, int status, int idx);

/* Marks the table at idx as the host's: the sandbox's rawset refuses it and,
 * with `guard`, writing a new key raises an error. */
void vsrh_box_protect(lua_State *L, int idx, int guard);

/* Seeds the per-call generator (math.random, ctx.random). */
void vsrh_box_seed(vsrh_box *b, uint64_t seed);

/* Logs through the box's callback. */
void vsrh_box_log(vsrh_box *b, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Pushes the shared deterministic random function (for ctx.random). */
void vsrh_box_push_random(vsrh_box *b);

/* Registry key of the writable table behind the read-only global `vsr`:
 * the state-machine host adds its functions there. */
#define VSRH_BOX_VSR "vsrh.vsr"

/* Registry key of the metatable of vsr.fail(code, message) error objects. */
extern const char vsrh_fail_mt_key[];

static inline vsrh_box *vsrh_box_of(lua_State *L)
{
	return *(vsrh_box **)lua_getextraspace(L);
}

#endif /* VSRH_SANDBOX_H */
