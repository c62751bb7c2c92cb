/* vsrh_telemetry.c - operator hooks in Lua: protocol events delivered to a script outside the replicated state.
 *
 * Happy path: open (own lua_State, standard libraries but debug, print to
 * the replica's log, load the script, keep its handler table in the
 * registry) -> emit* (build the event table, call the handler under an
 * instruction budget) -> close.
 * Failure modes: a script that does not load or returns no table fails
 * open; a handler that raises or runs out of instructions is logged and
 * counted; ten failures in a row switch the script off. */
#include "vsrh_telemetry.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define TELEMETRY_FAILURES_MAX 10u
#define TELEMETRY_HOOK_STEP 1000

struct vsrh_telemetry {
	lua_State *L;
	int handlers;          /* registry reference of the script's table */
	uint32_t replica;      /* 1-based */
	vsrh_log_fn log;
	void *log_arg;
	uint64_t budget;       /* instructions left in the current call */
	bool exhausted;
	bool disabled;
	uint32_t failures_in_row;
	uint64_t calls, errors;
};

static void telemetry_logf(vsrh_telemetry *t, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void telemetry_logf(vsrh_telemetry *t, int level, const char *fmt, ...)
{
	if (t->log == NULL)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	t->log(t->log_arg, level, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static vsrh_telemetry *telemetry_of(lua_State *L)
{
	vsrh_telemetry *t;
	lua_getallocf(L, (void **)&t);
	return t;
}

/* Counts instructions in steps; once the budget is gone, raises on every
 * instruction so that a pcall inside the handler cannot swallow the stop. */
static void telemetry_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	vsrh_telemetry *t = telemetry_of(L);
	if (!t->exhausted && t->budget > TELEMETRY_HOOK_STEP) {
		t->budget -= TELEMETRY_HOOK_STEP;
		return;
	}
	if (!t->exhausted) {
		t->exhausted = true;
		lua_sethook(L, telemetry_hook, LUA_MASKCOUNT, 1);
	}
	luaL_error(L, "telemetry: instruction budget exhausted");
}

static void *telemetry_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	return realloc(ptr, nsize);
}

/* print(...): one line in the replica's log, at info. */
static int telemetry_print(lua_State *L)
{
	vsrh_telemetry *t = telemetry_of(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	int n = lua_gettop(L);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	size_t len;
	const char *s = lua_tolstring(L, -1, &len);
	if (t->log != NULL)
		t->log(t->log_arg, VSRH_LOG_INFO, s, len);
	return 0;
}

static int telemetry_traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg != NULL ? msg : "(error object is not a string)", 1);
	return 1;
}

int vsrh_telemetry_open(const char *path, uint32_t replica, vsrh_log_fn log, void *log_arg,
			vsrh_telemetry **out, char *err, size_t err_len)
{
	vsrh_telemetry *t = calloc(1, sizeof *t);
	if (t == NULL) {
		snprintf(err, err_len, "telemetry: out of memory");
		return -1;
	}
	t->replica = replica;
	t->log = log;
	t->log_arg = log_arg;
	t->L = lua_newstate(telemetry_alloc, t);
	if (t->L == NULL) {
		free(t);
		snprintf(err, err_len, "telemetry: out of memory");
		return -1;
	}
	lua_State *L = t->L;
	luaL_openlibs(L);
	lua_pushnil(L);
	lua_setglobal(L, "debug");
	lua_pushcfunction(L, telemetry_print);
	lua_setglobal(L, "print");
	lua_pushcfunction(L, telemetry_traceback);
	int rc = luaL_loadfilex(L, path, "t");
	if (rc == LUA_OK) {
		t->budget = VSRH_TELEMETRY_INSTRUCTIONS_MAX;
		lua_sethook(L, telemetry_hook, LUA_MASKCOUNT, TELEMETRY_HOOK_STEP);
		rc = lua_pcall(L, 0, 1, -2);
		lua_sethook(L, NULL, 0, 0);
	}
	if (rc != LUA_OK) {
		snprintf(err, err_len, "telemetry %s: %s", path,
			 lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "cannot load");
		vsrh_telemetry_close(t);
		return -1;
	}
	if (!lua_istable(L, -1)) {
		snprintf(err, err_len, "telemetry %s: expected the script to return a table of "
				       "handlers by event name, got %s", path, luaL_typename(L, -1));
		vsrh_telemetry_close(t);
		return -1;
	}
	/* Every value must be a function: a typo shows now, not at the first
	 * view change. */
	lua_pushnil(L);
	while (lua_next(L, -2) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING || !lua_isfunction(L, -1)) {
			snprintf(err, err_len, "telemetry %s: expected event names mapped to functions, "
					       "got a %s value under a %s key", path,
				 luaL_typename(L, -1), luaL_typename(L, -2));
			vsrh_telemetry_close(t);
			return -1;
		}
		lua_pop(L, 1);
	}
	t->handlers = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_settop(L, 0);
	*out = t;
	return 0;
}

void vsrh_telemetry_close(vsrh_telemetry *t)
{
	if (t == NULL)
		return;
	if (t->L != NULL)
		lua_close(t->L);
	free(t);
}

void vsrh_telemetry_emit(vsrh_telemetry *t, const char *event, const vsrh_telemetry_field *fields,
			 size_t count)
{
	if (t == NULL || t->disabled)
		return;
	lua_State *L = t->L;
	lua_settop(L, 0);
	lua_pushcfunction(L, telemetry_traceback);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->handlers);
	lua_getfield(L, -1, event);
	if (!lua_isfunction(L, -1)) {
		lua_pop(L, 1);
		lua_getfield(L, -1, "any");
		if (!lua_isfunction(L, -1)) {
			lua_settop(L, 0);
			return;
		}
	}
	lua_createtable(L, 0, (int)count + 2);
	lua_pushstring(L, event);
	lua_setfield(L, -2, "event");
	lua_pushinteger(L, (lua_Integer)t->replica);
	lua_setfield(L, -2, "replica");
	for (size_t i = 0; i < count; i++) {
		if (fields[i].text != NULL)
			lua_pushstring(L, fields[i].text);
		else if (fields[i].value == (double)(lua_Integer)fields[i].value)
			lua_pushinteger(L, (lua_Integer)fields[i].value);
		else
			lua_pushnumber(L, fields[i].value);
		lua_setfield(L, -2, fields[i].name);
	}
	t->calls++;
	t->budget = VSRH_TELEMETRY_INSTRUCTIONS_MAX;
	t->exhausted = false;
	lua_sethook(L, telemetry_hook, LUA_MASKCOUNT, TELEMETRY_HOOK_STEP);
	int rc = lua_pcall(L, 1, 0, 1);
	lua_sethook(L, NULL, 0, 0);
	if (rc == LUA_OK) {
		t->failures_in_row = 0;
	} else {
		t->errors++;
		t->failures_in_row++;
		telemetry_logf(t, VSRH_LOG_WARN, "the %s handler failed: %s", event,
			       lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "(no message)");
		if (t->failures_in_row >= TELEMETRY_FAILURES_MAX) {
			t->disabled = true;
			telemetry_logf(t, VSRH_LOG_ERROR,
				       "switched off after %u failed calls in a row",
				       TELEMETRY_FAILURES_MAX);
		}
	}
	lua_settop(L, 0);
	/* Each call's garbage is collected with the next ones; a step keeps the
	 * heap from growing between events. */
	lua_gc(L, LUA_GCSTEP, 0);
}

void vsrh_telemetry_counts(const vsrh_telemetry *t, uint64_t *calls, uint64_t *errors)
{
	*calls = t != NULL ? t->calls : 0;
	*errors = t != NULL ? t->errors : 0;
}
