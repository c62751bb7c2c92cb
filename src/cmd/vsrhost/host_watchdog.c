/* host_watchdog.c - a thread that stops a replica whose step runs too long (host_watchdog.h). */
#include "host_watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

static _Atomic uint64_t watchdog_since_ns; /* 0: no step running */
static _Atomic(const char *) watchdog_what;
static uint32_t watchdog_limit_ms;
static const vsrh_sm *watchdog_sm;

void host_watchdog_enter(uint64_t now_ns, const char *what)
{
	atomic_store_explicit(&watchdog_what, what, memory_order_relaxed);
	atomic_store_explicit(&watchdog_since_ns, now_ns ? now_ns : 1, memory_order_release);
}

void host_watchdog_leave(void)
{
	atomic_store_explicit(&watchdog_since_ns, 0, memory_order_release);
}

static void *watchdog_main(void *arg)
{
	(void)arg;
	/* checks four times per limit, at least every second */
	uint32_t period_ms = watchdog_limit_ms / 4 < 1000 ? watchdog_limit_ms / 4 : 1000;
	if (period_ms == 0)
		period_ms = 1;
	struct timespec period = {period_ms / 1000, (long)(period_ms % 1000) * 1000000L};
	for (;;) {
		nanosleep(&period, NULL);
		uint64_t since = atomic_load_explicit(&watchdog_since_ns, memory_order_acquire);
		if (since == 0)
			continue;
		uint64_t ran_ms = (uv_hrtime() - since) / 1000000u;
		if (ran_ms < watchdog_limit_ms)
			continue;
		char activity[256] = "";
		if (watchdog_sm)
			vsrh_sm_activity(watchdog_sm, activity, sizeof activity);
		char msg[640];
		int n = snprintf(msg, sizeof msg,
				 "vsrhost: watchdog: a step (%s) has run for %llu ms, over the %u ms "
				 "limit; the state machine is %s. Stopping this replica: the "
				 "sandbox's cost model should have refused this work, so please "
				 "report the state machine and the operation.\n",
				 atomic_load_explicit(&watchdog_what, memory_order_relaxed),
				 (unsigned long long)ran_ms, watchdog_limit_ms,
				 activity[0] ? activity : "idle");
		if (n > 0 && write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0)
			n = 0;
		_exit(EX_SOFTWARE);
	}
	return NULL;
}

int host_watchdog_start(uint32_t limit_ms, const vsrh_sm *sm)
{
	if (limit_ms == 0) {
		const char *env = getenv("VSRHOST_WATCHDOG_MS");
		limit_ms = env && atoi(env) > 0 ? (uint32_t)atoi(env) : HOST_WATCHDOG_MS_DEFAULT;
	}
	watchdog_limit_ms = limit_ms;
	watchdog_sm = sm;
	atomic_store(&watchdog_what, "none");
	pthread_t t;
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0)
		return -1;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, watchdog_main, NULL);
	pthread_attr_destroy(&attr);
	return rc == 0 ? 0 : -1;
}
