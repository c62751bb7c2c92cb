/* test_store_syncpace.c - the syncer paces its write-back with pauses on its
 * own thread only: a sync on the caller's thread (vsrh_syncer_sync_now, at
 * open and after a state-transfer install, on the event loop) never sleeps,
 * whatever budget the last checkpoint's sync was given.
 *
 * Linked with -Wl,--wrap=nanosleep,--wrap=sync_file_range: nanosleep counts
 * the pauses per thread; sync_file_range spins 1 ms after the real call, so
 * that every slice looks like one that wrote pages (a pause is then due
 * whenever the budget allows it). The budget is set by the public path: a
 * checkpoint's sync started an interval (1 s, set through started_at) after
 * the previous one. Armed that way, the syncer's own sync does pause (so
 * the test can fail), the sync_now after it must not. And a waiter (the
 * next take) ends the pause in progress, not only the ones after it: a
 * slice on a slow disk (800 ms) is followed by a pause as long, and the
 * waiter, arriving when the pause begins, must be back before it would
 * have ended. Linked with --wrap=pthread_cond_timedwait as well: a pause
 * may be a timed wait, counted like a sleep. Last, a replica's turn
 * (vsrh_syncer_stagger; 1 s here) ends when a waiter comes and at close. */
#define _GNU_SOURCE
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_check.h"
#include "vsrh_store_sync.h"

static pthread_t main_thread;
static _Atomic unsigned pauses_main, pauses_other;
/* Armed: the next slice on the syncer's thread takes this long; then when
 * the pause after it would end (mono ns). */
static _Atomic uint64_t slow_slice_ns, pause_due_ns;
/* Armed (watch): when the syncer's thread next began a slice (mono ns). The
 * checks below compare it, not the waiter's return (which also waits for
 * the I/O and the fdatasync, however slow the disk is), with when the
 * pause or the turn would have ended. */
static _Atomic int watch;
static _Atomic uint64_t resumed_ns;

int __real_nanosleep(const struct timespec *req, struct timespec *rem);
int __wrap_nanosleep(const struct timespec *req, struct timespec *rem);
int __wrap_nanosleep(const struct timespec *req, struct timespec *rem)
{
	if (pthread_equal(pthread_self(), main_thread))
		atomic_fetch_add(&pauses_main, 1);
	else
		atomic_fetch_add(&pauses_other, 1);
	return __real_nanosleep(req, rem);
}

int __real_pthread_cond_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu,
				  const struct timespec *until);
int __wrap_pthread_cond_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu,
				  const struct timespec *until);
int __wrap_pthread_cond_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu,
				  const struct timespec *until)
{
	if (pthread_equal(pthread_self(), main_thread))
		atomic_fetch_add(&pauses_main, 1);
	else
		atomic_fetch_add(&pauses_other, 1);
	return __real_pthread_cond_timedwait(cv, mu, until);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int __real_sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags);
int __wrap_sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags);
int __wrap_sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags)
{
	if (!pthread_equal(pthread_self(), main_thread) && atomic_exchange(&watch, 0))
		atomic_store(&resumed_ns, now_ns());
	int rc = __real_sync_file_range(fd, off, n, flags);
	uint64_t slow = atomic_exchange(&slow_slice_ns, 0);
	if (slow > 0 && !pthread_equal(pthread_self(), main_thread)) {
		/* A slice on a slow disk: the pause after it is as long. */
		struct timespec ts = {.tv_sec = (time_t)(slow / 1000000000u),
				      .tv_nsec = (long)(slow % 1000000000u)};
		__real_nanosleep(&ts, NULL);
		atomic_store(&resumed_ns, 0);
		atomic_store(&watch, 1);
		atomic_store(&pause_due_ns, now_ns() + slow);
		return rc;
	}
	uint64_t until = now_ns() + 1000000u; /* a slice that wrote pages */
	while (now_ns() < until)
		;
	return rc;
}

static void put_some(MDB_env *env)
{
	MDB_txn *t;
	MDB_dbi dbi;
	if (mdb_txn_begin(env, NULL, 0, &t) || mdb_dbi_open(t, NULL, 0, &dbi)) {
		printf("FAIL lmdb txn\n");
		exit(1);
	}
	char k[16], v[256];
	memset(v, 'v', sizeof v);
	for (int i = 0; i < 2000; i++) {
		snprintf(k, sizeof k, "k%06d", i);
		MDB_val kv = {strlen(k), k}, vv = {sizeof v, v};
		if (mdb_put(t, dbi, &kv, &vv, 0)) {
			printf("FAIL mdb_put\n");
			exit(1);
		}
	}
	if (mdb_txn_commit(t)) {
		printf("FAIL commit\n");
		exit(1);
	}
}

int main(void)
{
	main_thread = pthread_self();
	char dir[] = "/tmp/vsrh-syncpace-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	MDB_env *env;
	if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 64u << 20) ||
	    mdb_env_open(env, dir, MDB_NOSYNC, 0600)) {
		printf("FAIL lmdb open\n");
		return 1;
	}
	vsrh_syncer s;
	uint64_t ended; /* (jobs ended before each: not looked at here) */
	CHECK(vsrh_syncer_init(&s, dir) == 0, "syncer init");
	const uint64_t used = 4u << 20; /* 8 slices */

	put_some(env);
	CHECK(vsrh_syncer_start(&s, env, 10, used, 0, &ended, NULL) == 0, "first checkpoint's sync");
	vsrh_syncer_wait(&s);
	/* The next checkpoint comes an interval (1 s) after the first: its sync
	 * may be paced over half of it. Not waited for here: it ends on its own. */
	s.started_at -= 1000000000u;
	put_some(env);
	CHECK(vsrh_syncer_start(&s, env, 20, used, 0, &ended, NULL) == 0, "second checkpoint's sync");
	CHECK(s.budget_ns >= 400000000u, "budget %llu ns", (unsigned long long)s.budget_ns);
	/* Its pauses are taken on the syncer's thread: wait for the first. */
	for (;;) {
		pthread_mutex_lock(&s.mu);
		bool busy = s.busy;
		pthread_mutex_unlock(&s.mu);
		if (atomic_load(&pauses_other) > 0 || !busy)
			break;
		sched_yield();
	}
	CHECK(atomic_load(&pauses_other) > 0, "the syncer's own sync paused (%u)",
	      atomic_load(&pauses_other));
	vsrh_syncer_wait(&s);

	/* An install: the caller syncs the new environment itself. */
	put_some(env);
	unsigned before = atomic_load(&pauses_main);
	CHECK(vsrh_syncer_sync_now(&s, env, 30) == 0, "sync_now");
	CHECK(atomic_load(&pauses_main) == before,
	      "sync_now paused %u times on the caller's thread (the event loop)",
	      atomic_load(&pauses_main) - before);

	/* A take that waits for a sync in a pause: the pause ends then, not
	 * when it would have (a slice on a slow disk, 800 ms, then a pause as
	 * long, in a budget of 2 s). */
	s.started_at -= 4000000000u;
	put_some(env);
	atomic_store(&slow_slice_ns, 800000000u);
	CHECK(vsrh_syncer_start(&s, env, 40, used, 0, &ended, NULL) == 0, "fourth checkpoint's sync");
	CHECK(s.budget_ns >= 1700000000u, "budget %llu ns", (unsigned long long)s.budget_ns);
	while (atomic_load(&pause_due_ns) == 0)
		sched_yield();
	vsrh_syncer_wait(&s);
	uint64_t due = atomic_load(&pause_due_ns), at = atomic_load(&resumed_ns);
	CHECK(at != 0 && at < due, "the waiter waited for the pause in progress (the next slice "
				   "began %.0f ms after it ended)", (double)(at - due) / 1e6);

	/* A replica's turn (replica 2 of 2 waits half of half an interval, 1 s
	 * here) ends when someone waits for its sync, and at close. */
	vsrh_syncer_stagger(&s, 1, 2);
	/* A commit that came 1.5 s after its take (the replica's turn at the
	 * commit, vsrh_store.c): its sync's turn and budget count from the
	 * take, so that it still ends within three quarters of the interval. */
	s.started_at -= 4000000000u;
	put_some(env);
	CHECK(vsrh_syncer_start(&s, env, 45, used, 1500000000u, &ended, NULL) == 0, "a late commit's sync");
	CHECK(s.late_ns + s.delay_ns + s.budget_ns <= 3000000000u,
	      "late %llu ns, turn %llu ns, budget %llu ns: past 3/4 of the interval",
	      (unsigned long long)s.late_ns, (unsigned long long)s.delay_ns,
	      (unsigned long long)s.budget_ns);
	vsrh_syncer_wait(&s);
	for (int close_it = 0; close_it < 2; close_it++) {
		s.started_at -= 4000000000u;
		put_some(env);
		uint64_t t0 = now_ns();
		atomic_store(&resumed_ns, 0);
		atomic_store(&watch, 1);
		CHECK(vsrh_syncer_start(&s, env, 50 + (uint64_t)close_it, used, 0, &ended, NULL) == 0, "a turn");
		CHECK(s.delay_ns >= 900000000u && s.budget_ns <= 3000000000u - s.delay_ns,
		      "turn %llu ns, budget %llu ns", (unsigned long long)s.delay_ns,
		      (unsigned long long)s.budget_ns);
		uint64_t turn_ends = t0 + s.delay_ns;
		if (close_it)
			vsrh_syncer_close(&s);
		else
			vsrh_syncer_wait(&s);
		uint64_t began = atomic_load(&resumed_ns);
		CHECK(began != 0 && began < turn_ends, "%s waited for the replica's turn to end",
		      close_it ? "close" : "a waiter");
	}
	vsrh_syncer_close(&s);
	mdb_env_close(env);
	char cmd[64];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
	printf("%s: %u checks, %d failures\n", failures ? "FAILED" : "passed", checks, failures);
	return failures ? 1 : 0;
}
