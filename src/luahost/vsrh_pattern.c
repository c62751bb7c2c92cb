/* vsrh_pattern.c - Lua's pattern functions (find, match, gmatch, gsub), metered step by step.
 *
 * The matcher in liblua5.4 backtracks without bound inside one C call:
 * ("a"):rep(60):find(("a*"):rep(6) .. "b") takes seconds, and the trim
 * idiom s:match("^%s*(.-)%s*$") is quadratic in s. This is an
 * implementation of the same pattern language (Lua 5.4 reference manual
 * §6.4.1, same results and same errors; spec/pattern_spec.lua compares it
 * with the originals on generated patterns) that charges one unit of gas
 * per matching step, so a pattern that would run for hours is stopped by
 * the call's budget, identically on every replica. Plain searches use
 * memmem (linear) and are charged by bytes. */
#define _GNU_SOURCE
#include "vsrh_gas.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

#define PM_CAPTURES_MAX 32 /* LUA_MAXCAPTURES */
#define PM_DEPTH_MAX 200   /* MAXCCALLS: recursion of the matcher */
#define PM_ESC '%'
#define PM_SPECIALS "^$*+?.([%-"
#define PM_CAP_OPEN (-1)
#define PM_CAP_POSITION (-2)
/* Steps are counted locally and charged in batches of this many. */
#define PM_STEP_BATCH 256u

typedef struct pm_state {
	const char *src;
	const char *src_end;
	const char *pat_end;
	lua_State *L;
	int depth;
	int level;
	uint32_t steps; /* not yet charged */
	struct {
		const char *at;
		ptrdiff_t len;
	} cap[PM_CAPTURES_MAX];
} pm_state;

static void pm_step(pm_state *ms)
{
	if (++ms->steps >= PM_STEP_BATCH) {
		ms->steps = 0;
		vsrh_gas(ms->L, PM_STEP_BATCH);
	}
}

static void pm_flush(pm_state *ms)
{
	if (ms->steps)
		vsrh_gas(ms->L, ms->steps);
	ms->steps = 0;
}

static const char *pm_match(pm_state *ms, const char *s, const char *p);

/* ---------------------------------------------------------------- classes */

/* Index of the open capture to close. */
static int pm_open_capture(pm_state *ms)
{
	for (int l = ms->level - 1; l >= 0; l--)
		if (ms->cap[l].len == PM_CAP_OPEN)
			return l;
	return luaL_error(ms->L, "invalid pattern capture");
}

/* Capture index of a back-reference %1..%9. */
static int pm_backref_index(pm_state *ms, int c)
{
	int l = c - '1';
	if (l < 0 || l >= ms->level || ms->cap[l].len == PM_CAP_OPEN)
		return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
	return l;
}

/* The end of the single-character class starting at p. */
static const char *pm_class_end(pm_state *ms, const char *p)
{
	char c = *p++;
	if (c == PM_ESC) {
		if (p == ms->pat_end)
			luaL_error(ms->L, "malformed pattern (ends with '%%')");
		return p + 1;
	}
	if (c == '[') {
		if (*p == '^')
			p++;
		do { /* the first ']' right after '[' or '[^' is a member */
			if (p == ms->pat_end)
				luaL_error(ms->L, "malformed pattern (missing ']')");
			c = *p++;
			if (c == PM_ESC && p < ms->pat_end)
				p++; /* skip the escaped character */
		} while (*p != ']');
		return p + 1;
	}
	return p;
}

/* Whether c belongs to the %-class named by cl (upper case: complement). */
static int pm_class_has(int c, int cl)
{
	int r;
	switch (tolower(cl)) {
	case 'a': r = isalpha(c); break;
	case 'c': r = iscntrl(c); break;
	case 'd': r = isdigit(c); break;
	case 'g': r = isgraph(c); break;
	case 'l': r = islower(c); break;
	case 'p': r = ispunct(c); break;
	case 's': r = isspace(c); break;
	case 'u': r = isupper(c); break;
	case 'w': r = isalnum(c); break;
	case 'x': r = isxdigit(c); break;
	case 'z': r = c == 0; break; /* deprecated, still in Lua 5.4 */
	default: return cl == c; /* an escaped character stands for itself */
	}
	if (isupper(cl))
		r = !r;
	return r != 0;
}

/* Whether c belongs to the set [ ... ] from p (at '[') to ec (at ']'). */
static int pm_set_has(int c, const char *p, const char *ec)
{
	int yes = 1;
	if (*(p + 1) == '^') {
		yes = 0;
		p++;
	}
	while (++p < ec) {
		if (*p == PM_ESC) {
			p++;
			if (pm_class_has(c, (unsigned char)*p))
				return yes;
		} else if (*(p + 1) == '-' && p + 2 < ec) {
			if ((unsigned char)*p <= c && c <= (unsigned char)*(p + 2))
				return yes;
			p += 2;
		} else if ((unsigned char)*p == c) {
			return yes;
		}
	}
	return !yes;
}

/* Whether the character at s matches the class from p to ep. */
static int pm_single(pm_state *ms, const char *s, const char *p, const char *ep)
{
	if (s >= ms->src_end)
		return 0;
	int c = (unsigned char)*s;
	switch (*p) {
	case '.': return 1;
	case PM_ESC: return pm_class_has(c, (unsigned char)*(p + 1));
	case '[': return pm_set_has(c, p, ep - 1);
	default: return (unsigned char)*p == c;
	}
}

/* ---------------------------------------------------------------- items */

/* %bxy: a balanced run from x to the matching y. */
static const char *pm_balance(pm_state *ms, const char *s, const char *p)
{
	if (p >= ms->pat_end - 1)
		luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
	if (s >= ms->src_end || *s != *p)
		return NULL;
	char open = *p, close = *(p + 1);
	int open_count = 1;
	while (++s < ms->src_end) {
		pm_step(ms);
		if (*s == close) {
			if (--open_count == 0)
				return s + 1;
		} else if (*s == open) {
			open_count++;
		}
	}
	return NULL;
}

/* x* and x+: the longest run, then backs off one at a time. */
static const char *pm_max_expand(pm_state *ms, const char *s, const char *p, const char *ep)
{
	ptrdiff_t i = 0;
	while (pm_single(ms, s + i, p, ep)) {
		pm_step(ms);
		i++;
	}
	for (; i >= 0; i--) {
		pm_step(ms);
		const char *r = pm_match(ms, s + i, ep + 1);
		if (r)
			return r;
	}
	return NULL;
}

/* x-: the shortest run that lets the rest match. */
static const char *pm_min_expand(pm_state *ms, const char *s, const char *p, const char *ep)
{
	for (;;) {
		pm_step(ms);
		const char *r = pm_match(ms, s, ep + 1);
		if (r)
			return r;
		if (!pm_single(ms, s, p, ep))
			return NULL;
		s++;
	}
}

static const char *pm_start_capture(pm_state *ms, const char *s, const char *p, ptrdiff_t what)
{
	if (ms->level >= PM_CAPTURES_MAX)
		luaL_error(ms->L, "too many captures");
	ms->cap[ms->level].at = s;
	ms->cap[ms->level].len = what;
	ms->level++;
	const char *r = pm_match(ms, s, p);
	if (!r)
		ms->level--; /* undo */
	return r;
}

static const char *pm_end_capture(pm_state *ms, const char *s, const char *p)
{
	int l = pm_open_capture(ms);
	ms->cap[l].len = s - ms->cap[l].at;
	const char *r = pm_match(ms, s, p);
	if (!r)
		ms->cap[l].len = PM_CAP_OPEN; /* undo */
	return r;
}

static const char *pm_backref(pm_state *ms, const char *s, int c)
{
	int l = pm_backref_index(ms, c);
	size_t len = (size_t)ms->cap[l].len;
	vsrh_gas(ms->L, 1 + vsrh_gas_bytes(len));
	if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].at, s, len) == 0)
		return s + len;
	return NULL;
}

/* Matches pattern p at subject position s: the end of the match, or NULL. */
static const char *pm_match(pm_state *ms, const char *s, const char *p)
{
	if (++ms->depth > PM_DEPTH_MAX)
		luaL_error(ms->L, "pattern too complex");
	for (;;) {
		pm_step(ms);
		if (p == ms->pat_end)
			break;
		if (*p == '(') {
			s = *(p + 1) == ')' ? pm_start_capture(ms, s, p + 2, PM_CAP_POSITION)
					    : pm_start_capture(ms, s, p + 1, PM_CAP_OPEN);
			break;
		}
		if (*p == ')') {
			s = pm_end_capture(ms, s, p + 1);
			break;
		}
		if (*p == '$' && p + 1 == ms->pat_end) {
			if (s != ms->src_end)
				s = NULL;
			break;
		}
		if (*p == PM_ESC && *(p + 1) == 'b') {
			s = pm_balance(ms, s, p + 2);
			if (s) {
				p += 4;
				continue;
			}
			break;
		}
		if (*p == PM_ESC && *(p + 1) == 'f') {
			p += 2;
			if (*p != '[')
				luaL_error(ms->L, "missing '[' after '%%f' in pattern");
			const char *ep = pm_class_end(ms, p);
			int prev = s == ms->src ? '\0' : (unsigned char)*(s - 1);
			int cur = s < ms->src_end ? (unsigned char)*s : '\0';
			if (!pm_set_has(prev, p, ep - 1) && pm_set_has(cur, p, ep - 1)) {
				p = ep;
				continue;
			}
			s = NULL;
			break;
		}
		if (*p == PM_ESC && isdigit((unsigned char)*(p + 1))) {
			s = pm_backref(ms, s, (unsigned char)*(p + 1));
			if (s) {
				p += 2;
				continue;
			}
			break;
		}
		/* a single-character class, maybe followed by a quantifier */
		const char *ep = pm_class_end(ms, p);
		if (!pm_single(ms, s, p, ep)) {
			if (*ep == '*' || *ep == '?' || *ep == '-') {
				p = ep + 1; /* zero repetitions are fine */
				continue;
			}
			s = NULL;
			break;
		}
		if (*ep == '?') {
			const char *r = pm_match(ms, s + 1, ep + 1);
			if (r) {
				s = r;
				break;
			}
			p = ep + 1;
			continue;
		}
		if (*ep == '+') {
			s = pm_max_expand(ms, s + 1, p, ep);
			break;
		}
		if (*ep == '*') {
			s = pm_max_expand(ms, s, p, ep);
			break;
		}
		if (*ep == '-') {
			s = pm_min_expand(ms, s, p, ep);
			break;
		}
		s++;
		p = ep;
	}
	ms->depth--;
	return s;
}

/* ---------------------------------------------------------------- results */

/* Pushes capture i (or the whole match s..e when there are none). */
static void pm_push_capture(pm_state *ms, int i, const char *s, const char *e)
{
	if (i >= ms->level) {
		if (i != 0)
			luaL_error(ms->L, "invalid capture index %%%d", i + 1);
		lua_pushlstring(ms->L, s, (size_t)(e - s));
		return;
	}
	ptrdiff_t l = ms->cap[i].len;
	if (l == PM_CAP_OPEN)
		luaL_error(ms->L, "unfinished capture");
	if (l == PM_CAP_POSITION)
		lua_pushinteger(ms->L, (ms->cap[i].at - ms->src) + 1);
	else
		lua_pushlstring(ms->L, ms->cap[i].at, (size_t)l);
}

static int pm_push_captures(pm_state *ms, const char *s, const char *e, int whole_if_none)
{
	int n = ms->level == 0 && whole_if_none ? 1 : ms->level;
	luaL_checkstack(ms->L, n, "too many captures");
	for (int i = 0; i < n; i++)
		pm_push_capture(ms, i, s, e);
	return n;
}

static void pm_init(pm_state *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
	ms->L = L;
	ms->src = s;
	ms->src_end = s + ls;
	ms->pat_end = p + lp;
	ms->steps = 0;
}

static void pm_reset(pm_state *ms)
{
	ms->level = 0;
	ms->depth = 0;
}

/* Lua's string-position rules: a start position relative to the length. */
static size_t pm_start(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0)
		return 1;
	if (pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

static int pm_has_specials(const char *p, size_t lp)
{
	size_t upto = 0;
	do {
		if (strpbrk(p + upto, PM_SPECIALS))
			return 1;
		upto += strlen(p + upto) + 1; /* the pattern may hold zeros */
	} while (upto <= lp);
	return 0;
}

/* find and match */
static int pm_find_aux(lua_State *L, int find)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = pm_start(luaL_optinteger(L, 3, 1), ls) - 1;
	if (init > ls) {
		luaL_pushfail(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || !pm_has_specials(p, lp))) {
		vsrh_gas(L, 1 + vsrh_gas_bytes(ls - init + lp));
		const char *r = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
		if (r) {
			lua_pushinteger(L, (r - s) + 1);
			lua_pushinteger(L, (lua_Integer)((r - s) + (ptrdiff_t)lp));
			return 2;
		}
		luaL_pushfail(L);
		return 1;
	}
	pm_state ms;
	const char *s1 = s + init;
	int anchor = lp > 0 && *p == '^';
	if (anchor) {
		p++;
		lp--;
	}
	pm_init(&ms, L, s, ls, p, lp);
	do {
		pm_reset(&ms);
		const char *e = pm_match(&ms, s1, p);
		if (e) {
			pm_flush(&ms);
			if (find) {
				lua_pushinteger(L, (s1 - s) + 1);
				lua_pushinteger(L, e - s);
				return pm_push_captures(&ms, NULL, NULL, 0) + 2;
			}
			return pm_push_captures(&ms, s1, e, 1);
		}
	} while (s1++ < ms.src_end && !anchor);
	pm_flush(&ms);
	luaL_pushfail(L);
	return 1;
}

static int pm_find(lua_State *L)
{
	return pm_find_aux(L, 1);
}

static int pm_match_fn(lua_State *L)
{
	return pm_find_aux(L, 0);
}

/* gmatch: the iterator keeps the subject, the pattern, the position and
 * the end of the last match in a userdata (upvalue 3). */
typedef struct pm_gmatch {
	pm_state ms;
	const char *pos;
	const char *last;
} pm_gmatch;

static int pm_gmatch_next(lua_State *L)
{
	pm_gmatch *g = lua_touserdata(L, lua_upvalueindex(3));
	/* the state's pointers stay valid: the strings are upvalues */
	g->ms.L = L;
	for (const char *src = g->pos; src <= g->ms.src_end; src++) {
		pm_reset(&g->ms);
		const char *e = pm_match(&g->ms, src, lua_tostring(L, lua_upvalueindex(2)));
		if (e && e != g->last) {
			g->pos = g->last = e;
			pm_flush(&g->ms);
			return pm_push_captures(&g->ms, src, e, 1);
		}
	}
	pm_flush(&g->ms);
	return 0;
}

static int pm_gmatch_fn(lua_State *L)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = pm_start(luaL_optinteger(L, 3, 1), ls) - 1;
	lua_settop(L, 2);
	pm_gmatch *g = lua_newuserdatauv(L, sizeof *g, 0);
	if (init > ls)
		init = ls + 1; /* starts past the end: no matches */
	pm_init(&g->ms, L, s, ls, p, lp);
	g->pos = s + init;
	g->last = NULL;
	lua_pushcclosure(L, pm_gmatch_next, 3);
	return 1;
}

/* gsub: appends the replacement of one match (s..e) to b. */
static void pm_add_string(pm_state *ms, luaL_Buffer *b, const char *s, const char *e)
{
	lua_State *L = ms->L;
	size_t l;
	const char *news = lua_tolstring(L, 3, &l);
	const char *end = news + l;
	const char *p;
	while ((p = memchr(news, PM_ESC, (size_t)(end - news))) != NULL) {
		luaL_addlstring(b, news, (size_t)(p - news));
		p++;
		if (p >= end || *p == PM_ESC) {
			if (p >= end)
				luaL_error(L, "invalid use of '%c' in replacement string", PM_ESC);
			luaL_addchar(b, *p);
		} else if (*p == '0') {
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (isdigit((unsigned char)*p)) {
			pm_push_capture(ms, *p - '1', s, e);
			luaL_tolstring(L, -1, NULL);
			lua_remove(L, -2);
			vsrh_gas(L, vsrh_gas_bytes(lua_rawlen(L, -1)));
			luaL_addvalue(b);
		} else {
			luaL_error(L, "invalid use of '%c' in replacement string", PM_ESC);
		}
		news = p + 1;
	}
	luaL_addlstring(b, news, (size_t)(end - news));
}

static int pm_add_value(pm_state *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
	lua_State *L = ms->L;
	if (tr == LUA_TFUNCTION) {
		lua_pushvalue(L, 3);
		int n = pm_push_captures(ms, s, e, 1);
		lua_call(L, n, 1);
	} else if (tr == LUA_TTABLE) {
		pm_push_capture(ms, 0, s, e);
		lua_gettable(L, 3);
	} else {
		pm_add_string(ms, b, s, e);
		return 1;
	}
	if (!lua_toboolean(L, -1)) {
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s)); /* keep the original */
		return 0;
	}
	if (!lua_isstring(L, -1))
		return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	vsrh_gas(L, vsrh_gas_bytes(lua_rawlen(L, -1)));
	luaL_addvalue(b);
	return 1;
}

static int pm_gsub(lua_State *L)
{
	size_t ls, lp;
	const char *src = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	const char *last = NULL;
	int tr = lua_type(L, 3);
	lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
	luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
			     tr == LUA_TTABLE, 3, "string/function/table");
	int anchor = lp > 0 && *p == '^';
	if (anchor) {
		p++;
		lp--;
	}
	/* the subject is copied once at least, the replacement strings as
	 * they are added (pm_add_*) */
	vsrh_gas(L, 1 + vsrh_gas_bytes(ls));
	if (tr == LUA_TSTRING || tr == LUA_TNUMBER)
		vsrh_gas(L, vsrh_gas_bytes(lua_rawlen(L, 3)));
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	pm_state ms;
	pm_init(&ms, L, src, ls, p, lp);
	lua_Integer n = 0;
	uint64_t out = 0;
	while (n < max_n) {
		pm_reset(&ms);
		const char *e = pm_match(&ms, src, p);
		if (e && e != last) {
			n++;
			pm_add_value(&ms, &b, src, e, tr);
			if (tr == LUA_TSTRING || tr == LUA_TNUMBER) {
				/* a replacement string is copied per match */
				out += lua_rawlen(L, 3) + (size_t)(e - src);
				vsrh_gas(L, 1 + vsrh_gas_bytes(lua_rawlen(L, 3)));
			}
			src = last = e;
		} else if (src < ms.src_end) {
			luaL_addchar(&b, *src++);
		} else {
			break;
		}
		if (out > VSRH_STRING_BYTES_MAX)
			return luaL_error(L, "string.gsub: the result exceeds the sandbox's limit of "
					     "%d bytes per string", (int)VSRH_STRING_BYTES_MAX);
		if (anchor)
			break;
	}
	pm_flush(&ms);
	if (!(ms.src_end > src)) {
		/* nothing left to copy */
	} else {
		luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
	}
	luaL_pushresult(&b);
	lua_pushinteger(L, n);
	return 2;
}

void vsrh_pattern_install(lua_State *L, int string_lib)
{
	static const luaL_Reg fns[] = {{"find", pm_find}, {"match", pm_match_fn},
		{"gmatch", pm_gmatch_fn}, {"gsub", pm_gsub}, {NULL, NULL}};
	for (const luaL_Reg *r = fns; r->name; r++) {
		lua_pushcfunction(L, r->func);
		lua_setfield(L, string_lib, r->name);
	}
}
