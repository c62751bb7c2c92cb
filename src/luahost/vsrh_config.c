/* vsrh_config.c - loads the cluster configuration from a sandboxed Lua file and validates it. */
#include "vsrh_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "vsr.h"
#include "vsrh_sandbox.h"

/* A config file is small: these budgets only stop runaway files. */
#define CONFIG_INSTRUCTIONS_MAX 10000000u
#define CONFIG_MEMORY_BYTES_MAX (16u << 20)

typedef struct cfg_ctx {
	lua_State *L;
	const char *file;
	char *err;
	size_t err_len;
} cfg_ctx;

/* Writes "file: key: message" and returns VSR_EINVAL. */
static int cfg_fail(cfg_ctx *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int cfg_fail(cfg_ctx *c, const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (key)
		snprintf(c->err, c->err_len, "%s: %s: %s", c->file, key, msg);
	else
		snprintf(c->err, c->err_len, "%s: %s", c->file, msg);
	return VSR_EINVAL;
}

/* Describes the value at idx for "got ..." without calling metamethods. */
static const char *describe(lua_State *L, int idx, char *buf, size_t len)
{
	switch (lua_type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		return "nothing";
	case LUA_TBOOLEAN:
		return lua_toboolean(L, idx) ? "true" : "false";
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx));
		else
			snprintf(buf, len, "%.14g", (double)lua_tonumber(L, idx));
		return buf;
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		if (n > 60)
			snprintf(buf, len, "\"%.57s...\"", s);
		else
			snprintf(buf, len, "\"%s\"", s);
		return buf;
	}
	case LUA_TTABLE:
		return "a table";
	default:
		snprintf(buf, len, "a %s", luaL_typename(L, idx));
		return buf;
	}
}

/* Reads a field without metamethods: a config file cannot run code during
 * validation, outside its budget. */
static void rawfield(lua_State *L, int idx, const char *name)
{
	lua_pushstring(L, name);
	lua_rawget(L, idx);
}

static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 30 || lb > 30)
		return 99;
	int d[31][31];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
	return d[la][lb];
}

/* Rejects any key of the table at idx that is not in `known`. */
static int check_keys(cfg_ctx *c, int idx, const char *prefix, const char *const *known)
{
	lua_State *L = c->L;
	char key[160], got[96];
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			snprintf(key, sizeof key, "%s[%s]", prefix ? prefix : "", describe(L, -1, got, sizeof got));
			return cfg_fail(c, key, "unexpected key: %s takes only named keys", prefix ? prefix : "the configuration");
		}
		const char *k = lua_tostring(L, -1);
		int found = 0;
		const char *best = NULL;
		int best_d = 3;
		for (const char *const *p = known; *p; p++) {
			if (strcmp(*p, k) == 0)
				found = 1;
			int dist = edit_distance(*p, k);
			if (strncmp(*p, k, strlen(k)) == 0 && strlen(k) >= 3)
				dist = 1; /* a prefix: "tick" for "tick_ms" */
			if (dist < best_d) {
				best_d = dist;
				best = *p;
			}
		}
		if (!found) {
			char list[512] = "";
			for (const char *const *p = known; *p; p++) {
				strncat(list, *p, sizeof list - strlen(list) - 1);
				if (p[1])
					strncat(list, ", ", sizeof list - strlen(list) - 1);
			}
			snprintf(key, sizeof key, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k);
			lua_pop(L, 1);
			if (best)
				return cfg_fail(c, key, "unknown key (did you mean \"%s\"? known keys: %s)", best, list);
			return cfg_fail(c, key, "unknown key (known keys: %s)", list);
		}
	}
	return 0;
}

/* Reads an integer in [lo, hi] from field `name` of the table at idx. A
 * missing field takes `def` unless `required`. */
static int get_uint(cfg_ctx *c, int idx, const char *prefix, const char *name, uint64_t lo,
		    uint64_t hi, uint64_t def, int required, uint64_t *out)
{
	lua_State *L = c->L;
	char key[128], got[96];
	snprintf(key, sizeof key, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name);
	rawfield(L, idx, name);
	if (lua_isnil(L, -1) && !required) {
		lua_pop(L, 1);
		*out = def;
		return 0;
	}
	lua_Integer v = 0;
	int ok = 0;
	if (lua_isinteger(L, -1)) {
		v = lua_tointeger(L, -1);
		ok = 1;
	} else if (lua_type(L, -1) == LUA_TNUMBER) {
		lua_Number d = lua_tonumber(L, -1);
		ok = lua_numbertointeger(d, &v) && (lua_Number)v == d;
	}
	if (!ok || v < 0 || (uint64_t)v < lo || (uint64_t)v > hi) {
		int rc = cfg_fail(c, key, "expected an integer from %llu to %llu, got %s%s",
				  (unsigned long long)lo, (unsigned long long)hi,
				  describe(L, -1, got, sizeof got),
				  lua_isnil(L, -1) ? " (the key is required)" : "");
		lua_pop(L, 1);
		return rc;
	}
	lua_pop(L, 1);
	*out = (uint64_t)v;
	return 0;
}

static int parse_address(const char *s, vsrh_address *a)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -1;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[') { /* [IPv6]:port */
		if (hl < 3 || h[hl - 1] != ']')
			return -1;
		h++;
		hl -= 2;
	} else if (memchr(h, ':', hl)) {
		return -1; /* a bare IPv6 address needs brackets */
	}
	if (hl == 0 || hl >= VSRH_HOST_MAX)
		return -1;
	const char *p = colon + 1;
	if (!*p || strlen(p) > 5)
		return -1;
	unsigned long port = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port < 1 || port > 65535)
		return -1;
	for (size_t i = 0; i < hl; i++)
		if (h[i] == ' ' || h[i] == '/' || (unsigned char)h[i] < 0x21)
			return -1;
	memcpy(a->host, h, hl);
	a->host[hl] = 0;
	a->port = (uint16_t)port;
	return 0;
}

/* Reads a list of addresses from field `name`; n_expected 0 means any
 * count from 1 to VSR_REPLICAS_MAX. */
static int get_addresses(cfg_ctx *c, int idx, const char *name, uint32_t n_expected,
			 vsrh_address *out, uint32_t *n_out)
{
	lua_State *L = c->L;
	char key[64], got[96];
	rawfield(L, idx, name);
	int t = lua_gettop(L);
	if (!lua_istable(L, t)) {
		int rc = cfg_fail(c, name, "expected a list of \"host:port\" strings, got %s%s",
				  describe(L, t, got, sizeof got),
				  lua_isnil(L, t) ? " (the key is required)" : "");
		lua_pop(L, 1);
		return rc;
	}
	lua_Integer n = (lua_Integer)lua_rawlen(L, t);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
		if (k < 1 || k > n) {
			int rc = cfg_fail(c, name, "expected a list of \"host:port\" strings, got a table with key %s",
					  describe(L, -1, got, sizeof got));
			lua_pop(L, 2);
			return rc;
		}
	}
	if (n < 1 || n > (lua_Integer)VSR_REPLICAS_MAX) {
		lua_pop(L, 1);
		return cfg_fail(c, name, "expected 1 to %u addresses, got %lld", VSR_REPLICAS_MAX, (long long)n);
	}
	if (n_expected && (uint32_t)n != n_expected) {
		lua_pop(L, 1);
		return cfg_fail(c, name, "expected one address per replica (%u), got %lld",
				n_expected, (long long)n);
	}
	for (lua_Integer i = 1; i <= n; i++) {
		snprintf(key, sizeof key, "%s[%lld]", name, (long long)i);
		lua_rawgeti(L, t, i);
		if (lua_type(L, -1) != LUA_TSTRING || parse_address(lua_tostring(L, -1), &out[i - 1])) {
			int rc = cfg_fail(c, key, "expected \"host:port\" (port 1-65535), got %s",
					  describe(L, -1, got, sizeof got));
			lua_pop(L, 2);
			return rc;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	*n_out = (uint32_t)n;
	return 0;
}

/* Removes "." and "dir/.." components lexically, so that messages show
 * "statemachines/kv.lua" rather than "config/../statemachines/kv.lua". */
static void normalize(char *p)
{
	int absolute = p[0] == '/';
	char *parts[512];
	int n = 0;
	char *save = NULL;
	char *copy = strdup(p);
	if (!copy)
		return;
	for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0 && n > 0 && strcmp(parts[n - 1], "..") != 0) {
			n--;
			continue;
		}
		if (strcmp(tok, "..") == 0 && absolute && n == 0)
			continue; /* "/.." is "/" */
		if (n == 512) {
			free(copy);
			return; /* absurdly deep: leave it as it is */
		}
		parts[n++] = tok;
	}
	size_t len = 0;
	if (absolute)
		p[len++] = '/';
	for (int i = 0; i < n; i++) {
		size_t l = strlen(parts[i]);
		if (i)
			p[len++] = '/';
		memmove(p + len, parts[i], l);
		len += l;
	}
	if (len == 0)
		p[len++] = '.';
	p[len] = 0;
	free(copy);
}

/* Joins `rel` to the folder of the config file unless it is absolute. */
static char *resolve(const char *file, const char *rel)
{
	char *p;
	if (rel[0] == '/') {
		p = strdup(rel);
	} else {
		const char *slash = strrchr(file, '/');
		size_t dl = slash ? (size_t)(slash - file) : 1;
		const char *dir = slash ? file : ".";
		size_t n = dl + 1 + strlen(rel) + 1;
		p = malloc(n);
		if (p)
			snprintf(p, n, "%.*s/%s", (int)dl, dir, rel);
	}
	return p;
}

/* Uses the normalized spelling of an existing file's path when it names the
 * same file (it would not through a symbolic link followed by ".."). */
static void tidy_existing(char *p)
{
	char *n = strdup(p);
	if (!n)
		return;
	normalize(n);
	struct stat a, b;
	if (stat(p, &a) == 0 && stat(n, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		strcpy(p, n); /* never longer than p */
	free(n);
}

static int get_path(cfg_ctx *c, int idx, const char *name, int required, int must_exist,
		    char **out)
{
	lua_State *L = c->L;
	char got[96];
	rawfield(L, idx, name);
	if (lua_isnil(L, -1) && !required) {
		lua_pop(L, 1);
		*out = NULL;
		return 0;
	}
	if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
		int rc = cfg_fail(c, name, "expected a path (a non-empty string, relative to the "
				  "configuration file), got %s%s", describe(L, -1, got, sizeof got),
				  lua_isnil(L, -1) ? " (the key is required)" : "");
		lua_pop(L, 1);
		return rc;
	}
	char *p = resolve(c->file, lua_tostring(L, -1));
	lua_pop(L, 1);
	if (!p)
		return cfg_fail(c, name, "out of memory");
	if (must_exist) {
		FILE *f = fopen(p, "rb");
		if (!f) {
			int rc = cfg_fail(c, name, "expected a readable Lua file, but \"%s\": %s", p,
					  strerror(errno));
			free(p);
			return rc;
		}
		fclose(f);
		tidy_existing(p);
	}
	*out = p;
	return 0;
}

static int get_choice(cfg_ctx *c, int idx, const char *name, const char *const *choices,
		      int def, int *out)
{
	lua_State *L = c->L;
	char got[96];
	rawfield(L, idx, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		*out = def;
		return 0;
	}
	if (lua_type(L, -1) == LUA_TSTRING)
		for (int i = 0; choices[i]; i++)
			if (strcmp(lua_tostring(L, -1), choices[i]) == 0) {
				lua_pop(L, 1);
				*out = i;
				return 0;
			}
	char list[128] = "";
	for (int i = 0; choices[i]; i++) {
		char q[40];
		snprintf(q, sizeof q, "%s\"%s\"", i ? (choices[i + 1] ? ", " : " or ") : "", choices[i]);
		strncat(list, q, sizeof list - strlen(list) - 1);
	}
	int rc = cfg_fail(c, name, "expected %s, got %s", list, describe(L, -1, got, sizeof got));
	lua_pop(L, 1);
	return rc;
}

/* Pushes the sub-table `name` (or an empty table when absent). */
static int get_section(cfg_ctx *c, int idx, const char *name)
{
	lua_State *L = c->L;
	char got[96];
	rawfield(L, idx, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
		return 0;
	}
	if (!lua_istable(L, -1)) {
		int rc = cfg_fail(c, name, "expected a table, got %s", describe(L, -1, got, sizeof got));
		lua_pop(L, 1);
		return rc;
	}
	return 0;
}

/* An optional path inside a section ("auth.replica_key"), resolved against
 * the configuration file; *out stays NULL when the key is absent. */
static int get_section_path(cfg_ctx *c, int idx, const char *section, const char *name,
			    char **out)
{
	lua_State *L = c->L;
	char key[96], got[96];
	snprintf(key, sizeof key, "%s.%s", section, name);
	*out = NULL;
	rawfield(L, idx, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
		int rc = cfg_fail(c, key, "expected a path (a non-empty string, relative to the "
				  "configuration file), got %s", describe(L, -1, got, sizeof got));
		lua_pop(L, 1);
		return rc;
	}
	*out = resolve(c->file, lua_tostring(L, -1));
	lua_pop(L, 1);
	return *out == NULL ? cfg_fail(c, key, "out of memory") : 0;
}

static int same_address(const vsrh_address *a, const vsrh_address *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static int validate(cfg_ctx *c, int t, vsrh_config *o)
{
	static const char *const top_keys[] = {"cluster", "replicas", "clients", "statemachine",
		"dedup", "data_dir", "durability", "timeouts", "limits", "metrics", "log_level", "log_format", "auth", "telemetry", "reads", NULL};
	static const char *const read_keys[] = {"lease_drift_ppm", "lease_margin_ms", NULL};
	static const char *const auth_keys[] = {"replica_key", "client_key", NULL};
	static const char *const timeout_keys[] = {"tick_ms", "heartbeat_ms", "primary_ms",
		"view_change_ms", "retry_ms", NULL};
	static const char *const limit_keys[] = {"pipeline", "batch_requests", "clients",
		"message_bytes", "checkpoint_interval", "instructions", "memory_bytes", NULL};
	static const char *const durabilities[] = {"memory", "durable", NULL};
	static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
	static const char *const formats[] = {"text", "json", NULL};
	lua_State *L = c->L;
	int rc;
	uint64_t v;
	if ((rc = check_keys(c, t, NULL, top_keys)))
		return rc;
	if ((rc = get_uint(c, t, NULL, "cluster", 0, INT64_MAX, 0, 1, &o->cluster)))
		return rc;
	if ((rc = get_addresses(c, t, "replicas", 0, o->replicas, &o->replica_count)))
		return rc;
	uint32_t n;
	if ((rc = get_addresses(c, t, "clients", o->replica_count, o->clients, &n)))
		return rc;
	rawfield(L, t, "metrics");
	int has_metrics = !lua_isnil(L, -1);
	lua_pop(L, 1);
	if (has_metrics &&
	    (rc = get_addresses(c, t, "metrics", o->replica_count, o->metrics, &o->metrics_count)))
		return rc;
	/* Every listener must be distinct. */
	const struct { const char *name; const vsrh_address *a; uint32_t n; } lists[3] = {
		{"replicas", o->replicas, o->replica_count}, {"clients", o->clients, o->replica_count},
		{"metrics", o->metrics, o->metrics_count}};
	for (int la = 0; la < 3; la++)
		for (uint32_t i = 0; i < lists[la].n; i++)
			for (int lb = 0; lb <= la; lb++)
				for (uint32_t j = 0; j < (lb == la ? i : lists[lb].n); j++)
					if (same_address(&lists[la].a[i], &lists[lb].a[j])) {
						char key[64];
						snprintf(key, sizeof key, "%s[%u]", lists[la].name, i + 1);
						return cfg_fail(c, key, "expected a distinct address, but %s:%u is also %s[%u]",
								lists[la].a[i].host, lists[la].a[i].port,
								lists[lb].name, j + 1);
					}
	if ((rc = get_path(c, t, "statemachine", 1, 1, &o->statemachine)))
		return rc;
	if ((rc = get_path(c, t, "dedup", 0, 1, &o->dedup)))
		return rc;
	if ((rc = get_path(c, t, "telemetry", 0, 1, &o->telemetry)))
		return rc;
	if ((rc = get_path(c, t, "data_dir", 1, 0, &o->data_dir)))
		return rc;
	if ((rc = get_choice(c, t, "durability", durabilities, VSRH_DURABILITY_DURABLE, &o->durability)))
		return rc;
	if ((rc = get_choice(c, t, "log_level", levels, VSRH_LOG_INFO, &o->log_level)))
		return rc;
	if ((rc = get_choice(c, t, "log_format", formats, VSRH_LOG_TEXT, &o->log_format)))
		return rc;

	if ((rc = get_section(c, t, "auth")))
		return rc;
	int s = lua_gettop(L);
	if ((rc = check_keys(c, s, "auth", auth_keys)) ||
	    (rc = get_section_path(c, s, "auth", "replica_key", &o->replica_key_file)) ||
	    (rc = get_section_path(c, s, "auth", "client_key", &o->client_key_file)))
		return rc;
	lua_pop(L, 1);

	if ((rc = get_section(c, t, "timeouts")))
		return rc;
	s = lua_gettop(L);
	if ((rc = check_keys(c, s, "timeouts", timeout_keys)))
		return rc;
	if ((rc = get_uint(c, s, "timeouts", "tick_ms", 1, 1000, 10, 0, &v)))
		return rc;
	o->tick_ms = (uint32_t)v;
	if ((rc = get_uint(c, s, "timeouts", "heartbeat_ms", 1, 60000, 50, 0, &v)))
		return rc;
	o->heartbeat_ms = (uint32_t)v;
	if ((rc = get_uint(c, s, "timeouts", "primary_ms", 1, 600000, 300, 0, &v)))
		return rc;
	o->primary_ms = (uint32_t)v;
	if ((rc = get_uint(c, s, "timeouts", "view_change_ms", 1, 600000, 300, 0, &v)))
		return rc;
	o->view_change_ms = (uint32_t)v;
	if ((rc = get_uint(c, s, "timeouts", "retry_ms", 1, 600000, 100, 0, &v)))
		return rc;
	o->retry_ms = (uint32_t)v;
	lua_pop(L, 1);
	if (o->heartbeat_ms < o->tick_ms)
		return cfg_fail(c, "timeouts.heartbeat_ms", "expected at least timeouts.tick_ms (%u), got %u",
				o->tick_ms, o->heartbeat_ms);
	if (o->primary_ms <= o->heartbeat_ms)
		return cfg_fail(c, "timeouts.primary_ms", "expected more than timeouts.heartbeat_ms (%u) "
				"so that an idle primary is not suspected, got %u", o->heartbeat_ms, o->primary_ms);

	/* reads = { lease_drift_ppm, lease_margin_ms }: lease reads, opt-in
	 * (docs/protocol.md "Reads"). */
	if ((rc = get_section(c, t, "reads")))
		return rc;
	s = lua_gettop(L);
	if ((rc = check_keys(c, s, "reads", read_keys)))
		return rc;
	if ((rc = get_uint(c, s, "reads", "lease_drift_ppm", 0, 500000, 0, 0, &v)))
		return rc;
	o->lease_drift_ppm = (uint32_t)v;
	if ((rc = get_uint(c, s, "reads", "lease_margin_ms", 0, 600000, 0, 0, &v)))
		return rc;
	o->lease_margin_ms = (uint32_t)v;
	lua_pop(L, 1);
	if (o->lease_margin_ms >= o->primary_ms)
		return cfg_fail(c, "reads.lease_margin_ms", "expected less than timeouts.primary_ms (%u), got %u",
				o->primary_ms, o->lease_margin_ms);

	if ((rc = get_section(c, t, "limits")))
		return rc;
	s = lua_gettop(L);
	if ((rc = check_keys(c, s, "limits", limit_keys)))
		return rc;
	if ((rc = get_uint(c, s, "limits", "pipeline", 1, VSR_PIPELINE_MAX, 16, 0, &v)))
		return rc;
	o->pipeline_max = (uint32_t)v;
	if ((rc = get_uint(c, s, "limits", "batch_requests", 1, VSR_BATCH_REQUESTS_MAX, 256, 0, &v)))
		return rc;
	o->batch_requests_max = (uint32_t)v;
	if ((rc = get_uint(c, s, "limits", "clients", 1, VSR_CLIENTS_MAX, 1024, 0, &v)))
		return rc;
	o->clients_max = (uint32_t)v;
	if ((rc = get_uint(c, s, "limits", "message_bytes", 65536, VSR_MESSAGE_BYTES_MAX, 16u << 20, 0, &v)))
		return rc;
	o->message_bytes_max = (uint32_t)v;
	if ((rc = get_uint(c, s, "limits", "checkpoint_interval", 1, 1u << 30, 4096, 0, &v)))
		return rc;
	o->checkpoint_interval = (uint32_t)v;
	if ((rc = get_uint(c, s, "limits", "instructions", 1000, 10000000000ull, 1000000, 0,
			   &o->instructions_max)))
		return rc;
	if ((rc = get_uint(c, s, "limits", "memory_bytes", 1u << 20, 1ull << 40, 256u << 20, 0,
			   &o->memory_bytes_max)))
		return rc;
	lua_pop(L, 1);
	return 0;
}

struct validate_args {
	cfg_ctx *c;
	int t;
	vsrh_config *out;
	int rc;
};

static int validate_tramp(lua_State *L)
{
	struct validate_args *a = lua_touserdata(L, 1);
	lua_checkstack(L, 32);
	a->rc = validate(a->c, a->t, a->out);
	return 0;
}

int vsrh_config_load(const char *path, vsrh_config *out, char *err, size_t err_len)
{
	memset(out, 0, sizeof *out);
	vsrh_box box;
	vsrh_box_options bo = {.instructions_max = CONFIG_INSTRUCTIONS_MAX,
			       .memory_bytes_max = CONFIG_MEMORY_BYTES_MAX,
			       .log_level = VSRH_LOG_INFO};
	if (vsrh_box_open(&box, &bo, err, err_len))
		return VSR_ENOMEM;
	lua_State *L = box.L;
	cfg_ctx c = {L, path, err, err_len};
	int rc;
	char msg[512];
	vsrh_box_push_env(&box);
	if (vsrh_box_load_file(&box, path, path, msg, sizeof msg)) {
		/* Messages already start with the file name. */
		snprintf(err, err_len, "%s", msg);
		rc = VSR_EINVAL;
		goto out;
	}
	int st = vsrh_box_call(&box, 0, 1);
	if (st != LUA_OK) {
		vsrh_box_error_text(&box, st, -1, msg, sizeof msg);
		if (strncmp(msg, path, strlen(path)) == 0)
			snprintf(err, err_len, "%s", msg);
		else
			snprintf(err, err_len, "%s: %s", path, msg);
		rc = VSR_EINVAL;
		goto out;
	}
	if (!lua_istable(L, -1)) {
		char got[96];
		rc = cfg_fail(&c, NULL, "expected the file to return a table (return { cluster = 1, ... }), got %s",
			      describe(L, -1, got, sizeof got));
		goto out;
	}
	/* Validation runs in protected mode: reading fields can allocate. */
	struct validate_args va = {&c, 2, out, 0};
	int t = lua_gettop(L);
	lua_pushcfunction(L, validate_tramp);
	lua_pushlightuserdata(L, &va);
	lua_pushvalue(L, t); /* index 2 inside the call */
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		snprintf(err, err_len, "%s: %s", path, lua_tostring(L, -1));
		rc = VSR_ENOMEM;
		goto out;
	}
	rc = va.rc;
	if (rc == 0) {
		out->path = strdup(path);
		if (!out->path)
			rc = VSR_ENOMEM;
	}
out:
	vsrh_box_close(&box);
	if (rc)
		vsrh_config_free(out);
	return rc;
}

void vsrh_config_free(vsrh_config *c)
{
	free(c->path);
	free(c->statemachine);
	free(c->dedup);
	free(c->data_dir);
	free(c->replica_key_file);
	free(c->telemetry);
	c->telemetry = NULL;
	free(c->client_key_file);
	c->path = c->statemachine = c->dedup = c->data_dir = NULL;
	c->replica_key_file = c->client_key_file = NULL;
}
