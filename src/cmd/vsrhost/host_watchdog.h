/* host_watchdog.h - a thread that stops a replica whose step runs too long.
 *
 * Every operation is bounded by the sandbox's deterministic cost model
 * (gas); the watchdog is the safety net for a hole in it. The event loop
 * marks each step's start and end; when one step has run longer than the
 * limit, the watchdog logs what it was running (the event, and the state
 * machine's activity: which operation of which session) and exits the
 * process with EX_SOFTWARE, so that a hang becomes an incident with a
 * diagnosis. The limit is wall-clock time on purpose: it decides nothing
 * a replica replies, only whether it keeps running. */
#ifndef HOST_WATCHDOG_H
#define HOST_WATCHDOG_H

#include <stdint.h>

#include "vsrh_lua.h"

#define HOST_WATCHDOG_MS_DEFAULT 10000u

/* Starts the thread (limit_ms 0: VSRHOST_WATCHDOG_MS from the environment,
 * else HOST_WATCHDOG_MS_DEFAULT). sm may be NULL. Returns 0 or -1. */
int host_watchdog_start(uint32_t limit_ms, const vsrh_sm *sm);

/* A step starts (now_ns from uv_hrtime; `what` a static string) / ends. */
void host_watchdog_enter(uint64_t now_ns, const char *what);
void host_watchdog_leave(void);

#endif /* HOST_WATCHDOG_H */
