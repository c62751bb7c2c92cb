/* clockrate.c - libvsrclockrate.so: an LD_PRELOAD shim (tests only) that
 * makes a process's monotonic clocks run at another rate.
 *
 * vsrjepsen --clock-rate preloads it into one replica: every read of
 * CLOCK_MONOTONIC (and its COARSE and RAW kinds, and CLOCK_BOOTTIME) through
 * clock_gettime returns
 *
 *     t + (base_fake - base_real) + (t - base_real) * rate_ppm / 1e6
 *
 * where t is the true reading and the three numbers come from a small
 * control file (VSRCLOCK_FILE, written by the controller, mapped shared, so
 * the controller can change the rate while the process runs: it moves the
 * base to the moment of the change, so the fake clock never steps, in
 * particular never back). libuv reads the time through clock_gettime
 * (uv_now, uv_hrtime), so the replica's ticks, timers and suspicion run at
 * that rate; epoll's relative timeouts follow by themselves.
 *
 * A timed wait on a condition variable bound to CLOCK_MONOTONIC (the
 * store's syncer, the segment reaper) takes an absolute deadline computed
 * from the fake clock; the kernel compares it with the true one. So
 * pthread_cond_timedwait is wrapped too: a deadline that reads as a
 * monotonic time (below one billion seconds: since boot, not since 1970) is
 * moved to the true clock, as far ahead in true time as it was ahead in fake
 * time, scaled by the rate. Wall clocks (CLOCK_REALTIME, gettimeofday,
 * time) are left alone: libfaketime, preloaded after this shim, steps them.
 *
 * Failure modes: no VSRCLOCK_FILE, or a file that cannot be mapped or lacks
 * the magic: the process runs on the true clocks (said once on stderr when
 * the variable was set). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clockrate.h"

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
static const vsrclock_ctl *ctl;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void clockrate_init(void)
{
	/* (POSIX's way to store dlsym's answer in a function pointer.) */
	*(void **)&real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
	/* The default version of pthread_cond_timedwait on glibc (the old one
	 * takes another condition variable layout). */
	*(void **)&real_cond_timedwait = dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
	if (real_cond_timedwait == NULL)
		*(void **)&real_cond_timedwait = dlsym(RTLD_NEXT, "pthread_cond_timedwait");
	const char *path = getenv("VSRCLOCK_FILE");
	if (path == NULL || path[0] == '\0')
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *p = fd < 0 ? MAP_FAILED : mmap(NULL, sizeof(vsrclock_ctl), PROT_READ, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED || ((const vsrclock_ctl *)p)->magic != VSRCLOCK_MAGIC) {
		fprintf(stderr, "vsrclockrate: cannot use %s: the true clocks are used\n", path);
		if (p != MAP_FAILED)
			munmap(p, sizeof(vsrclock_ctl));
		return;
	}
	ctl = p;
}

static bool monotonic_kind(clockid_t id)
{
	return id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE || id == CLOCK_MONOTONIC_RAW ||
	       id == CLOCK_BOOTTIME;
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
	if (ns < 0)
		ns = 0;
	return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

/* A consistent copy of the control record (a seqlock: odd while written). */
static void ctl_read(vsrclock_ctl *out)
{
	for (;;) {
		uint32_t s1 = atomic_load_explicit(&ctl->seq, memory_order_acquire);
		if (s1 & 1u)
			continue;
		out->base_real_ns = atomic_load_explicit(&ctl->base_real_ns, memory_order_relaxed);
		out->base_fake_ns = atomic_load_explicit(&ctl->base_fake_ns, memory_order_relaxed);
		out->rate_ppm = atomic_load_explicit(&ctl->rate_ppm, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&ctl->seq, memory_order_relaxed) == s1)
			return;
	}
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	pthread_once(&once, clockrate_init);
	int rc = real_clock_gettime(id, ts);
	if (rc != 0 || ctl == NULL || !monotonic_kind(id))
		return rc;
	vsrclock_ctl c;
	ctl_read(&c);
	*ts = ns_ts(vsrclock_fake_ns(&c, ts_ns(ts)));
	return 0;
}

int pthread_cond_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *abstime)
{
	pthread_once(&once, clockrate_init);
	/* Seconds since boot, not since 1970: a deadline on the monotonic clock. */
	if (ctl == NULL || abstime->tv_sec >= 1000000000)
		return real_cond_timedwait(cv, mu, abstime);
	struct timespec now;
	if (real_clock_gettime(CLOCK_MONOTONIC, &now) != 0)
		return real_cond_timedwait(cv, mu, abstime);
	vsrclock_ctl c;
	ctl_read(&c);
	int64_t t = ts_ns(&now);
	int64_t ahead = ts_ns(abstime) - vsrclock_fake_ns(&c, t);
	if (ahead < 0)
		ahead = 0;
	/* ahead of fake time is ahead * 1e6 / (1e6 + rate) of true time. */
	int64_t true_ahead = (int64_t)((double)ahead * 1e6 / (1e6 + (double)c.rate_ppm));
	struct timespec until = ns_ts(t + true_ahead);
	return real_cond_timedwait(cv, mu, &until);
}
