/* host_watchdog.c - a thread that stops a replica whose step hangs (host_watchdog.h). */
#define _GNU_SOURCE /* pthread_setname_np */
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
static _Atomic uint64_t watchdog_long_steps;
static uint32_t watchdog_limit_ms;
static host_watchdog_source watchdog_src; /* under watchdog_src_mu (host_watchdog_detach) */
static pthread_mutex_t watchdog_src_mu = PTHREAD_MUTEX_INITIALIZER;
static clockid_t watchdog_cpu_clock; /* the stepping thread's CPU time */
static bool watchdog_cpu_known;

void host_watchdog_enter(uint64_t now_ns, const char *what)
{
	atomic_store_explicit(&watchdog_what, what, memory_order_relaxed);
	atomic_store_explicit(&watchdog_since_ns, now_ns ? now_ns : 1, memory_order_release);
}

void host_watchdog_leave(void)
{
	atomic_store_explicit(&watchdog_since_ns, 0, memory_order_release);
}

uint64_t host_watchdog_long_steps(void)
{
	return atomic_load_explicit(&watchdog_long_steps, memory_order_relaxed);
}

/* The source is read under its lock: the host detaches it before it frees
 * the state machine (host_watchdog_detach), and the thread is detached, so
 * it may still be between two checks then. */
static uint64_t source_progress(void)
{
	pthread_mutex_lock(&watchdog_src_mu);
	uint64_t p = watchdog_src.progress ? watchdog_src.progress(watchdog_src.arg) : 0;
	pthread_mutex_unlock(&watchdog_src_mu);
	return p;
}

static bool source_busy(void)
{
	pthread_mutex_lock(&watchdog_src_mu);
	bool b = watchdog_src.busy && watchdog_src.busy(watchdog_src.arg);
	pthread_mutex_unlock(&watchdog_src_mu);
	return b;
}

void host_watchdog_detach(void)
{
	pthread_mutex_lock(&watchdog_src_mu);
	memset(&watchdog_src, 0, sizeof watchdog_src);
	pthread_mutex_unlock(&watchdog_src_mu);
}

/* CPU time (ns) the stepping thread has used, or 0 when unknown. */
static uint64_t stepper_cpu_ns(void)
{
	struct timespec ts;
	if (!watchdog_cpu_known || clock_gettime(watchdog_cpu_clock, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One line on stderr, from this thread (no stdio buffers shared with the
 * loop's thread). */
static void say(const char *msg, int n)
{
	if (n > 0 && write(STDERR_FILENO, msg, (size_t)n < 1024 ? (size_t)n : 1023) < 0)
		return;
}

static void *watchdog_main(void *arg)
{
	/* Named for top -H, perf and /proc/PID/task/TID/comm. */
	pthread_setname_np(pthread_self(), "vsr-watchdog");
	(void)arg;
	/* checks four times per limit, at least every second */
	uint32_t period_ms = watchdog_limit_ms / 4 < 1000 ? watchdog_limit_ms / 4 : 1000;
	if (period_ms == 0)
		period_ms = 1;
	struct timespec period = {period_ms / 1000, (long)(period_ms % 1000) * 1000000L};
	uint64_t step = 0;         /* start of the step being watched (0: none) */
	uint64_t progress = 0;     /* the source's counter when last seen moving */
	uint64_t progress_at = 0;  /* when it was */
	uint64_t progress_cpu = 0; /* the stepping thread's CPU time then */
	uint64_t warned_at = 0;    /* last report of this step running long */
	for (;;) {
		nanosleep(&period, NULL);
		uint64_t since = atomic_load_explicit(&watchdog_since_ns, memory_order_acquire);
		if (since == 0) {
			step = 0;
			continue;
		}
		uint64_t now = uv_hrtime(), p = source_progress(), cpu = stepper_cpu_ns();
		if (since != step) {
			/* First seen now: its CPU time so far is not known, so the
			 * CPU count starts here (a check period late at most). */
			step = since;
			progress = p;
			progress_at = since;
			progress_cpu = cpu;
			warned_at = 0;
		} else if (p != progress) {
			progress = p;
			progress_at = now;
			progress_cpu = cpu;
		}
		uint64_t ran_ms = (now - since) / 1000000u;
		/* While a script runs, a stall is CPU spent without metered
		 * progress; otherwise wall time. */
		uint64_t stalled_ms = source_busy() && watchdog_cpu_known
					      ? (cpu - progress_cpu) / 1000000u
					      : (now - progress_at) / 1000000u;
		if (ran_ms < watchdog_limit_ms)
			continue;
		char activity[256] = "";
		pthread_mutex_lock(&watchdog_src_mu);
		if (watchdog_src.activity)
			watchdog_src.activity(watchdog_src.arg, activity, sizeof activity);
		pthread_mutex_unlock(&watchdog_src_mu);
		char msg[1024];
		if (stalled_ms < watchdog_limit_ms) {
			/* Long, but metered: the budget ends it deterministically. */
			if (warned_at != 0 && (now - warned_at) / 1000000u < watchdog_limit_ms)
				continue;
			if (warned_at == 0)
				atomic_fetch_add_explicit(&watchdog_long_steps, 1, memory_order_relaxed);
			warned_at = now;
			int n = snprintf(msg, sizeof msg,
					 "vsrhost: watchdog: a step (%s) has run for %llu ms, over the "
					 "%u ms limit; the state machine is %s and its work is metered "
					 "(progress %llu ms ago), so its budget ends it the same way on "
					 "every replica: letting it finish. An operation this slow is a "
					 "denial of service; please report the state machine and the "
					 "operation.\n",
					 atomic_load_explicit(&watchdog_what, memory_order_relaxed),
					 (unsigned long long)ran_ms, watchdog_limit_ms,
					 activity[0] ? activity : "idle", (unsigned long long)stalled_ms);
			say(msg, n);
			continue;
		}
		int n = snprintf(msg, sizeof msg,
				 "vsrhost: watchdog: a step (%s) has run for %llu ms, %llu ms of "
				 "them (of its CPU time while a script runs) without metered "
				 "progress, over the %u ms limit; the state "
				 "machine is %s. Stopping this replica: the sandbox's cost model "
				 "should have refused this work, so please report the state machine "
				 "and the operation.\n",
				 atomic_load_explicit(&watchdog_what, memory_order_relaxed),
				 (unsigned long long)ran_ms, (unsigned long long)stalled_ms,
				 watchdog_limit_ms, activity[0] ? activity : "idle");
		say(msg, n);
		_exit(EX_SOFTWARE);
	}
	return NULL;
}

int host_watchdog_start_source(uint32_t limit_ms, const host_watchdog_source *src)
{
	if (limit_ms == 0) {
		const char *env = getenv("VSRHOST_WATCHDOG_MS");
		limit_ms = env && atoi(env) > 0 ? (uint32_t)atoi(env) : HOST_WATCHDOG_MS_DEFAULT;
	}
	watchdog_limit_ms = limit_ms;
	if (src != NULL) {
		pthread_mutex_lock(&watchdog_src_mu);
		watchdog_src = *src;
		pthread_mutex_unlock(&watchdog_src_mu);
	}
	watchdog_cpu_known = pthread_getcpuclockid(pthread_self(), &watchdog_cpu_clock) == 0;
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

static void sm_activity(const void *arg, char *out, size_t len)
{
	vsrh_sm_activity(arg, out, len);
}

static uint64_t sm_progress(const void *arg)
{
	return vsrh_sm_progress(arg);
}

static bool sm_busy(const void *arg)
{
	return vsrh_sm_busy(arg);
}

int host_watchdog_start(uint32_t limit_ms, const vsrh_sm *sm)
{
	host_watchdog_source src = {0};
	if (sm != NULL)
		src = (host_watchdog_source){.activity = sm_activity, .progress = sm_progress,
					     .busy = sm_busy, .arg = sm};
	return host_watchdog_start_source(limit_ms, &src);
}
