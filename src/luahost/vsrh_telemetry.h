/* vsrh_telemetry.h - operator hooks in Lua: protocol events delivered to a script outside the replicated state.
 *
 * The config may name a telemetry script (`telemetry = "hooks.lua"`). It
 * returns a table of handlers by event name, and optionally `any`, called
 * for every event without a handler of its own:
 *
 *   return {
 *     view_change_finished = function(e) print(e.view, e.duration_ms) end,
 *     any = function(e) print(e.event) end,
 *   }
 *
 * Each handler gets one table: `event` (its name), `replica` (1-based) and
 * the event's own fields (numbers and strings). Events: started,
 * view_change_started, view_change_finished, became_primary,
 * state_transfer_started, state_transfer_finished, checkpoint, slow_step,
 * client_evicted.
 *
 * The script runs in a lua_State of its own, never the state machine's: it
 * sees none of the replicated state and nothing it does can change it. It
 * is operator code, trusted like the config: the standard libraries are
 * open (io, os: write a file, read the clock), except debug. It runs on the
 * replica's event loop, so each call is stopped after an instruction budget
 * (a loop that never ends is cut, never a hung replica), an error is logged
 * and the replica goes on; after ten failed calls in a row the script is
 * switched off, with a log line that says so. */
#ifndef VSRH_TELEMETRY_H
#define VSRH_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "vsrh_lua.h"

typedef struct vsrh_telemetry vsrh_telemetry;

/* Instructions one handler call may run. */
#define VSRH_TELEMETRY_INSTRUCTIONS_MAX 1000000u

/* Loads `path`. Returns 0, or -1 with a plain-words message in err (the
 * script does not load, or does not return a table of functions). */
int vsrh_telemetry_open(const char *path, uint32_t replica, vsrh_log_fn log, void *log_arg,
			vsrh_telemetry **out, char *err, size_t err_len);
void vsrh_telemetry_close(vsrh_telemetry *t);

/* One field of an event: a number (name = value) or, when `text` is set, a
 * string. */
typedef struct vsrh_telemetry_field {
	const char *name;
	double value;
	const char *text;
} vsrh_telemetry_field;

/* Calls the handler for `event` (or `any`) with the fields. Never fails:
 * what goes wrong in the script is logged. */
void vsrh_telemetry_emit(vsrh_telemetry *t, const char *event, const vsrh_telemetry_field *fields,
			 size_t count);

/* Calls made, and calls that raised or ran out of instructions. */
void vsrh_telemetry_counts(const vsrh_telemetry *t, uint64_t *calls, uint64_t *errors);

#endif /* VSRH_TELEMETRY_H */
