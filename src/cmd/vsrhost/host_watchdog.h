/* host_watchdog.h - a thread that stops a replica whose step hangs.
 *
 * Every operation is bounded by the sandbox's deterministic cost model
 * (gas); the watchdog is the safety net for a hole in it. The event loop
 * marks each step's start and end. A step that runs past the limit while
 * the state machine keeps doing metered work (its progress counter moves:
 * VM instructions, charged C work) is only reported: the budget ends it,
 * at the same point on every replica, and stopping it would be worse
 * (restarted, the replica replays the same operation and is stopped again,
 * on every replica: a cluster down for good, issue 9). Such steps exist:
 * `==` or `<` on two distinct long strings costs one unit but compares up
 * to 1 MiB, so a loop of them can run seconds inside the budget. A step
 * with no metered progress for the limit is stopped: while the state
 * machine runs a script, the limit counts the CPU time the step's thread
 * used since the last progress (work the cost model does not see burns
 * CPU; a thread the kernel did not schedule on a loaded machine is not
 * stuck); otherwise (host work) it counts wall time. The watchdog logs what it was
 * running (the event, and the state machine's activity: which operation of
 * which session) and exits with EX_SOFTWARE, so that a hang becomes an
 * incident with a diagnosis. The limit is wall-clock time on purpose: it
 * decides nothing a replica replies, only whether it keeps running. */
#ifndef HOST_WATCHDOG_H
#define HOST_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsrh_lua.h"

#define HOST_WATCHDOG_MS_DEFAULT 10000u

/* Where the watchdog reads what the state machine does (from its own
 * thread: both functions must be safe to call concurrently with a step). */
typedef struct host_watchdog_source {
	void (*activity)(const void *arg, char *out, size_t len);
	uint64_t (*progress)(const void *arg);
	bool (*busy)(const void *arg); /* a script is running */
	const void *arg;
} host_watchdog_source;

/* Starts the thread (limit_ms 0: VSRHOST_WATCHDOG_MS from the environment,
 * else HOST_WATCHDOG_MS_DEFAULT), watching the calling thread (the one
 * that runs the steps). sm may be NULL (no progress is ever seen: a step is
 * stopped at the limit). Returns 0 or -1. */
int host_watchdog_start(uint32_t limit_ms, const vsrh_sm *sm);
/* The same with any source (tests). */
int host_watchdog_start_source(uint32_t limit_ms, const host_watchdog_source *src);

/* A step starts (now_ns from uv_hrtime; `what` a static string) / ends. */
void host_watchdog_enter(uint64_t now_ns, const char *what);
void host_watchdog_leave(void);

/* Before the state machine the source reads is freed: the thread reads no
 * source from then on (it runs until the process exits). */
void host_watchdog_detach(void);

/* Steps that ran past the limit and were let finish (metered progress). */
uint64_t host_watchdog_long_steps(void);

#endif /* HOST_WATCHDOG_H */
