/* hiccup.c - how long the machine itself stops: one thread per CPU, pinned
 * to it and at the highest real-time priority it may have, sleeps 1 ms in a
 * loop and measures how late each wake-up is. Such a thread preempts every
 * ordinary one the moment its timer fires, so a wake-up many ms late means
 * the CPU itself did not run: the hypervisor descheduled the virtual CPU,
 * or the kernel ran a long stretch with preemption off. No client call can
 * beat such a stall, whatever the replicas do.
 *
 * Without the privilege for SCHED_FIFO (not root) the threads run at the
 * default policy and measure the run queue's delay as well; the summary
 * says which.
 *
 * Usage: hiccup [MIN_MS]   runs until SIGINT/SIGTERM. Every wake-up late by
 * MIN_MS (default 2) or more is printed on stdout at once, as
 *   2026-12-06T11:04:43.247Z hiccup: cpu 1 late 96.210 ms
 * (the time the wake-up was due, UTC, like vsrbench --slow lines); at exit
 * a summary line:
 *   hiccup: SCHED_FIFO, 2 cpus, 39.9 s: worst 96.2 ms, 3 over 5 ms, p99.9 0.21 ms */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 1000000u
#define BUCKETS 4096 /* lateness histogram: 10 us buckets up to ~41 ms, then the last */

typedef struct meter {
	pthread_t thread;
	int cpu;
	uint64_t counts[BUCKETS];
	uint64_t worst_ns, over5, n;
} meter;

static atomic_bool stopping;
static uint64_t min_ns;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t ns_of(const struct timespec *t)
{
	return (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec;
}

static void print_late(int cpu, uint64_t late_ns, uint64_t due_mono)
{
	/* The wall-clock time the wake-up was due. */
	struct timespec mono, real;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	int64_t due_real = (int64_t)ns_of(&real) - (int64_t)(ns_of(&mono) - due_mono);
	time_t secs = (time_t)(due_real / 1000000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char stamp[32];
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&out_mu);
	printf("%s.%03dZ hiccup: cpu %d late %.3f ms\n", stamp, (int)(due_real / 1000000 % 1000), cpu,
	       (double)late_ns / 1e6);
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
}

static void *meter_main(void *arg)
{
	meter *m = arg;
	struct timespec due;
	clock_gettime(CLOCK_MONOTONIC, &due);
	while (!atomic_load(&stopping)) {
		uint64_t at = ns_of(&due) + PERIOD_NS;
		due.tv_sec = (time_t)(at / 1000000000u);
		due.tv_nsec = (long)(at % 1000000000u);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		uint64_t late = ns_of(&now) > at ? ns_of(&now) - at : 0;
		size_t b = late / 10000u;
		m->counts[b < BUCKETS ? b : BUCKETS - 1]++;
		m->n++;
		if (late > m->worst_ns)
			m->worst_ns = late;
		if (late >= 5000000u)
			m->over5++;
		if (late >= min_ns)
			print_late(m->cpu, late, at);
		/* After a long stall, start again from now rather than firing
		 * every missed period at once. */
		if (late > PERIOD_NS)
			due = now;
	}
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&stopping, true);
}

int main(int argc, char **argv)
{
	double min_ms = argc > 1 ? atof(argv[1]) : 2.0;
	if (argc > 2 || min_ms <= 0) {
		fprintf(stderr, "usage: hiccup [MIN_MS]\n");
		return 64;
	}
	min_ns = (uint64_t)(min_ms * 1e6);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		cpus = 1;
	meter *ms = calloc((size_t)cpus, sizeof *ms);
	if (ms == NULL)
		return 71;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bool fifo = true;
	for (long i = 0; i < cpus; i++) {
		ms[i].cpu = (int)i;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)i, &set);
		pthread_attr_setaffinity_np(&attr, sizeof set, &set);
		struct sched_param sp = {.sched_priority = sched_get_priority_max(SCHED_FIFO)};
		pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
		pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
		pthread_attr_setschedparam(&attr, &sp);
		if (pthread_create(&ms[i].thread, &attr, meter_main, &ms[i]) != 0) {
			/* No privilege for SCHED_FIFO: the default policy. */
			fifo = false;
			pthread_attr_setinheritsched(&attr, PTHREAD_INHERIT_SCHED);
			if (pthread_create(&ms[i].thread, &attr, meter_main, &ms[i]) != 0) {
				fprintf(stderr, "hiccup: cannot start a thread\n");
				return 71;
			}
		}
		pthread_attr_destroy(&attr);
	}
	for (long i = 0; i < cpus; i++)
		pthread_join(ms[i].thread, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	uint64_t all[BUCKETS] = {0}, n = 0, worst = 0, over5 = 0;
	for (long i = 0; i < cpus; i++) {
		for (size_t b = 0; b < BUCKETS; b++)
			all[b] += ms[i].counts[b];
		n += ms[i].n;
		over5 += ms[i].over5;
		if (ms[i].worst_ns > worst)
			worst = ms[i].worst_ns;
	}
	uint64_t want = n - n / 1000, seen = 0;
	size_t p999 = 0;
	while (p999 < BUCKETS - 1 && (seen += all[p999]) < want)
		p999++;
	printf("hiccup: %s, %ld cpus, %.1f s: worst %.1f ms, %" PRIu64 " over 5 ms, p99.9 %.2f ms\n",
	       fifo ? "SCHED_FIFO" : "default policy (no privilege for SCHED_FIFO)", cpus,
	       (double)(ns_of(&t1) - ns_of(&t0)) / 1e9, (double)worst / 1e6, over5,
	       (double)(p999 + 1) / 100.0);
	free(ms);
	return 0;
}
