/* test_store_nolock.c - an operation of a durable vsr.store takes no lock
 * of the syncer's: while a checkpoint's sync runs, and after it while its
 * held writes drain and its pages are made writable again, the store asks
 * after every operation whether the sync has ended (held_holding,
 * touch_step), and that question is an atomic read of the syncer's count
 * (vsrh_syncer_syncs), not a round trip through its mutex, which the
 * syncer thread takes between write-back slices. The figures for metrics
 * still come under the lock.
 *
 * Linked with -Wl,--wrap=pthread_mutex_lock,--wrap=mdb_env_sync: every
 * mutex lock the store's code takes on this (the loop's) thread is
 * counted, and the sync is held at a gate in mdb_env_sync (after the
 * write-back, before its fdatasync) while the puts run, so that they all
 * find it running. The puts must be held writes (the path is the one
 * under test), and take no lock; after the gate opens and the sync ends,
 * the next puts (the drain and the touch) take none either. */
#define _GNU_SOURCE
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_op.h"
#include "store_test.h"

#define KEYS 2000 /* before the checkpoint */
#define PUTS 200  /* during the sync, and after it */

static pthread_t main_thread;
static _Atomic long main_locks; /* pthread_mutex_lock calls on the main thread */

int __real_pthread_mutex_lock(pthread_mutex_t *mu);
int __wrap_pthread_mutex_lock(pthread_mutex_t *mu);
int __wrap_pthread_mutex_lock(pthread_mutex_t *mu)
{
	if (pthread_equal(pthread_self(), main_thread))
		atomic_fetch_add(&main_locks, 1);
	return __real_pthread_mutex_lock(mu);
}

/* The gate: a sync arriving while it is closed waits there. (Its own
 * locks run on the syncer's thread: not counted.) */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_closed, at_gate;
static uint64_t durable_op; /* the last checkpoint reported durable (gate_mu) */

int __real_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force)
{
	pthread_mutex_lock(&gate_mu);
	at_gate = gate_closed;
	pthread_cond_broadcast(&gate_cv);
	while (gate_closed)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	return __real_mdb_env_sync(env, force);
}

static void on_durable(void *arg, uint64_t op)
{
	(void)arg;
	pthread_mutex_lock(&gate_mu);
	durable_op = op;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* Waits on the gate's condition (gate_mu held) for at most 30 s; false
 * when the time ran out. */
static bool gate_wait(const struct timespec *until)
{
	return pthread_cond_timedwait(&gate_cv, &gate_mu, until) == 0;
}

/* n puts from key `from` on, at ops *op + 1...; the main thread's locks they
 * took. */
static long puts_locks(const vsr_state_machine *m, int from, int n, uint64_t *op)
{
	vsr_buf b = {0}, reply = {0};
	long before = atomic_load(&main_locks);
	for (int i = 0; i < n; i++) {
		kv_put_op(&b, from + i, 100, 1);
		vsr_apply_ctx a = {.op = ++*op, .session = 1, .request = *op};
		reply.len = 0;
		CHECK(m->apply(m->ctx, &a, b.data, b.len, &reply) == VSR_REPLY_OK, "put %d", from + i);
	}
	long took = atomic_load(&main_locks) - before;
	free(b.data);
	free(reply.data);
	return took;
}

int main(void)
{
	main_thread = pthread_self();
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-store-nolock-XXXXXX";
	if (st_begin(&cfg, dir) != 0)
		return 1;
	vsrh_sm *sm = st_create(&cfg, dir, true, true);
	if (sm == NULL)
		return st_end(dir, &cfg, NULL);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	uint64_t op = 0;
	CHECK(kv_put_round(&m, KEYS, 0, &op) == 0, "the first puts");
	vsrh_sm_on_checkpoint_durable(sm, on_durable, NULL); /* idle: returns at once */

	pthread_mutex_lock(&gate_mu);
	gate_closed = true;
	pthread_mutex_unlock(&gate_mu);
	vsr_checkpoint cp = {.op = op, .checksum = op * 31, .timestamp = op};
	static const uint8_t meta[8];
	CHECK(m.checkpoint_take(m.ctx, &cp, meta, sizeof meta) == VSR_PENDING,
	      "the checkpoint is synced off the step");
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&gate_mu);
	while (!at_gate && gate_wait(&until))
		;
	bool reached = at_gate;
	pthread_mutex_unlock(&gate_mu);
	CHECK(reached, "the sync reached the gate within 30 s");

	vsrh_sm_stats st0, st1;
	vsrh_sm_stats_get(sm, &st0);
	long during = puts_locks(&m, KEYS, PUTS, &op);
	vsrh_sm_stats_get(sm, &st1);
	uint64_t held = st1.checkpoint_held_writes - st0.checkpoint_held_writes;
	printf("%d puts while the sync ran: %llu held, %ld mutex locks on this thread\n", PUTS,
	       (unsigned long long)held, during);
	CHECK(held == PUTS, "every put during the sync was held (%llu of %d)",
	      (unsigned long long)held, PUTS);
	CHECK(during == 0, "the puts during the sync took %ld locks", during);

	pthread_mutex_lock(&gate_mu);
	gate_closed = false;
	pthread_cond_broadcast(&gate_cv);
	while (durable_op != cp.op && gate_wait(&until))
		;
	uint64_t got = durable_op;
	pthread_mutex_unlock(&gate_mu);
	CHECK(got == cp.op, "checkpoint %llu durable within 30 s (last %llu)",
	      (unsigned long long)cp.op, (unsigned long long)got);
	long after = puts_locks(&m, KEYS + PUTS, PUTS, &op);
	printf("%d puts after the sync (the drain, the touch): %ld mutex locks on this thread\n",
	       PUTS, after);
	CHECK(after == 0, "the puts after the sync took %ld locks", after);
	vsrh_sm_destroy(sm);
	return st_end(dir, &cfg, "store nolock: passed");
}
