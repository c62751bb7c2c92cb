/* test_telemetry.c - telemetry hooks: events reach the script's handlers; a looping or failing handler is cut, logged, and switched off; bad scripts are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vsrh_telemetry.h"

static int failures;
#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                     \
		}                                                                       \
	} while (0)

static char logged[8192];

static void test_log(void *arg, int level, const char *msg, size_t len)
{
	(void)arg;
	(void)level;
	size_t have = strlen(logged);
	snprintf(logged + have, sizeof logged - have, "%.*s\n", (int)len, msg);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

int main(void)
{
	char dir[] = "/tmp/vsr-telemetry-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	char script[256], out[256], err[512], text[2048];
	snprintf(script, sizeof script, "%s/hooks.lua", dir);
	snprintf(out, sizeof out, "%s/events.txt", dir);

	/* Handlers by name, `any` for the rest, fields as Lua values, print
	 * to the log, io available. */
	snprintf(text, sizeof text,
		 "local out = '%s'\n"
		 "return {\n"
		 "  view_change_finished = function(e)\n"
		 "    local f = assert(io.open(out, 'a'))\n"
		 "    f:write(e.event, ' ', e.replica, ' ', e.view, ' ', e.duration_ms, ' ', e.status, '\\n')\n"
		 "    f:close()\n"
		 "  end,\n"
		 "  any = function(e) print('saw ' .. e.event .. ' on ' .. e.replica) end,\n"
		 "  slow_step = function(e) while true do end end,\n"
		 "  checkpoint = function(e) error('no checkpoints here') end,\n"
		 "}\n",
		 out);
	write_file(script, text);

	vsrh_telemetry *t = NULL;
	CHECK(vsrh_telemetry_open(script, 2, test_log, NULL, &t, err, sizeof err) == 0);
	if (t == NULL) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	vsrh_telemetry_field vc[] = {{"view", 3, NULL}, {"duration_ms", 412, NULL},
				     {"status", 0, "normal"}};
	vsrh_telemetry_emit(t, "view_change_finished", vc, 3);
	vsrh_telemetry_emit(t, "became_primary", NULL, 0);
	FILE *f = fopen(out, "r");
	char line[256] = "";
	CHECK(f != NULL && fgets(line, sizeof line, f) != NULL);
	if (f != NULL)
		fclose(f);
	CHECK(strcmp(line, "view_change_finished 2 3 412 normal\n") == 0);
	CHECK(strstr(logged, "saw became_primary on 2") != NULL);

	/* A handler that never returns is cut by the instruction budget; one
	 * that raises is logged; the replica's call returns either way. */
	logged[0] = '\0';
	vsrh_telemetry_emit(t, "slow_step", NULL, 0);
	CHECK(strstr(logged, "slow_step handler failed") != NULL &&
	      strstr(logged, "instruction budget exhausted") != NULL);
	vsrh_telemetry_emit(t, "checkpoint", NULL, 0);
	CHECK(strstr(logged, "no checkpoints here") != NULL);
	uint64_t calls, errors;
	vsrh_telemetry_counts(t, &calls, &errors);
	CHECK(calls == 4 && errors == 2);
	/* A success resets the count; ten failures in a row switch it off. */
	vsrh_telemetry_emit(t, "became_primary", NULL, 0);
	for (int i = 0; i < 12; i++)
		vsrh_telemetry_emit(t, "checkpoint", NULL, 0);
	vsrh_telemetry_counts(t, &calls, &errors);
	CHECK(calls == 15 && errors == 12);
	CHECK(strstr(logged, "switched off after 10 failed calls in a row") != NULL);
	vsrh_telemetry_emit(t, "became_primary", NULL, 0);
	vsrh_telemetry_counts(t, &calls, &errors);
	CHECK(calls == 15);
	vsrh_telemetry_close(t);

	/* Scripts that are refused at load, with the reason. */
	struct {
		const char *text, *want;
	} bad[] = {
		{"return 42\n", "expected the script to return a table"},
		{"return { view_change_started = 'not a function' }\n", "mapped to functions"},
		{"return {\n", "expected"},
		{"while true do end\n", "instruction budget exhausted"},
		{"return { debug = debug.traceback }\n", "attempt to index a nil value"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_file(script, bad[i].text);
		t = NULL;
		CHECK(vsrh_telemetry_open(script, 1, test_log, NULL, &t, err, sizeof err) == -1);
		CHECK(t == NULL);
		if (strstr(err, bad[i].want) == NULL) {
			fprintf(stderr, "bad script %zu: %s\n", i, err);
			failures++;
		}
	}
	unlink(script);
	unlink(out);
	rmdir(dir);
	printf("telemetry: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
