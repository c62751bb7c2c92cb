/* test_store_clean.c - a durable vsr.store's map that no sync has written
 * for a while is written back by the syncer in paced slices (a cleaning),
 * not left to the kernel's flusher, which writes a file whose first dirty
 * page is 30 s old whole and unpaced (the log's fdatasyncs queue behind it:
 * 40-100 ms stalls with 1,000,000 keys and no checkpoint for 30 s).
 *
 * cachestat(2) (Linux 6.5) counts the dirty pages of data.mdb. After puts
 * and no checkpoint some are dirty. Ticks, as the host's timer gives them,
 * bring a cleaning once VSRH_CLEAN_AFTER_MS have passed; it is held at a
 * gate in its first sync_file_range (linked with --wrap) while more puts
 * run, which must be held writes (the map is not written while it is
 * written back). Once it has ended (the store's figures) no page of the
 * file is dirty, no checkpoint was made durable by it (`synced` unchanged,
 * no sync counted), and a checkpoint taken after it is durable as always.
 * With cleanings off (VSRH_CLEAN_AFTER_MS=0) the same ticks bring none.
 *
 * A cleaning whose write-back fails (sync_file_range EIO, in a child)
 * stops the replica like a failed sync: exit 74 with the sentence, `synced`
 * still naming the last durable checkpoint but without its boot id (the
 * page cache is not trusted at the next start), and that start opens the
 * checkpoint. The error must not be left behind: sync_file_range's wait
 * reports it once per open file (errseq), so the next checkpoint's sync
 * would not see it, and pages marked clean after a failed write-back may be
 * dropped and read back stale into the transaction that sync makes
 * durable. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv_op.h"
#include "store_test.h"

#define KEYS 3000
#define HELD 50
#define AFTER_MS 100

#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

struct cs_range {
	uint64_t off, len;
};
struct cs {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Dirty pages of path, or -1 (no cachestat: the test is skipped). */
static long dirty_pages(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	struct cs_range r = {0, 0}; /* the whole file */
	struct cs c;
	long rc = syscall(SYS_cachestat, fd, &r, &c, 0);
	close(fd);
	return rc == 0 ? (long)c.nr_dirty : -1;
}

/* The gate in the syncer's write-back. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_closed, at_gate;
static _Atomic bool failing; /* every write-back fails with EIO */

int __real_sync_file_range(int fd, off_t off, off_t n, unsigned flags);
int __wrap_sync_file_range(int fd, off_t off, off_t n, unsigned flags);
int __wrap_sync_file_range(int fd, off_t off, off_t n, unsigned flags)
{
	pthread_mutex_lock(&gate_mu);
	if (gate_closed) {
		at_gate = true;
		pthread_cond_broadcast(&gate_cv);
		while (gate_closed)
			pthread_cond_wait(&gate_cv, &gate_mu);
	}
	pthread_mutex_unlock(&gate_mu);
	if (atomic_load(&failing)) {
		errno = EIO;
		return -1;
	}
	return __real_sync_file_range(fd, off, n, flags);
}

static void gate(bool closed)
{
	pthread_mutex_lock(&gate_mu);
	gate_closed = closed;
	at_gate = false;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* Opens the gate once the main thread is about to take a checkpoint (the
 * take may wait for the cleaning before or after: either way it ends). */
static _Atomic bool taking;
static void *open_gate_when_taking(void *arg)
{
	(void)arg;
	while (!atomic_load(&taking))
		sched_yield();
	gate(false);
	return NULL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* What tick_until waits for: `n` cleanings ended, or begun, or the
 * cleaning in flight at the gate. */
enum until { ENDED, BEGUN, GATED };

/* Ticks every 5 ms (the host ticks every tick_ms) until `what` has
 * happened, for at most `ms`. True when it did. */
static bool tick_until(vsrh_sm *sm, uint64_t n, enum until what, uint64_t ms)
{
	uint64_t until = mono_ms() + ms;
	for (;;) {
		vsrh_sm_tick(sm);
		vsrh_sm_stats st;
		vsrh_sm_stats_get(sm, &st);
		pthread_mutex_lock(&gate_mu);
		bool there = at_gate;
		pthread_mutex_unlock(&gate_mu);
		if (what == GATED ? there
		    : what == BEGUN ? st.store_cleanings_begun >= n
				    : st.store_cleanings >= n)
			return true;
		if (mono_ms() >= until)
			return false;
		nanosleep(&(struct timespec){0, 5000000}, NULL);
	}
}

/* The cleanings off: ticks for three times the period bring none. */
static long thread_faults(void)
{
	struct rusage r;
	getrusage(RUSAGE_THREAD, &r);
	return r.ru_minflt;
}

/* The commit after a cleaning takes no write fault on the pages it wrote
 * back: the warm-up before the checkpoint made them writable again. The
 * interval's puts, a cleaning, then operations on a few keys of their own
 * up to the checkpoint (the warm-up's VSRH_WARM_OPS among them), and the
 * take's commit counted in minor faults of this thread. */
#define FAULT_KEYS 20000
#define INTERVAL 4096 /* config/kv.lua's checkpoint_interval */
#define WARM_LEFT 250 /* operations left at the check for cleanings: within VSRH_WARM_OPS */

/* Puts of keys from, from + step, ... at ops *op + 1 ... until op `to`
 * (keys wrap below FAULT_KEYS), values of round `round`. */
static void puts_until(const vsr_state_machine *m, int from, int step, int round, uint64_t to,
		       uint64_t *op)
{
	vsr_buf b = {0}, reply = {0};
	for (int k = from; *op < to; k = (k + step) % FAULT_KEYS) {
		kv_put_op(&b, k, 100, round);
		vsr_apply_ctx a = {.op = ++*op, .session = 1, .request = *op};
		reply.len = 0;
		CHECK(m->apply(m->ctx, &a, b.data, b.len, &reply) == VSR_REPLY_OK, "put at op %llu",
		      (unsigned long long)*op);
	}
	free(b.data);
	free(reply.data);
}

static void commit_after_cleaning(vsrh_config *cfg)
{
	char dir[] = "/tmp/vsr-store-cleanfault-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return;
	char data[800];
	snprintf(data, sizeof data, "%s/db/data.mdb", dir);
	setenv("VSRH_CLEAN_AFTER_MS", "100", 1);
	vsrh_sm *sm = st_create(cfg, dir, true, true);
	if (sm == NULL) {
		st_remove(dir);
		return;
	}
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	/* FAULT_KEYS keys and a checkpoint at op 5 x INTERVAL, as a replica
	 * takes them (the touch notes the interval's pages from there). */
	uint64_t op = 0, first = 5 * INTERVAL;
	vsr_checkpoint cp;
	puts_until(&m, 0, 1, 0, first, &op);
	int rc = st_take(sm, op, NULL, NULL, &cp);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "the first checkpoint: %d", rc);
	/* The interval: 3,000 puts over every leaf, short of the warm-up. */
	puts_until(&m, 0, 6, 1, first + 3000, &op);
	long dirty = dirty_pages(data);
	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	CHECK(tick_until(sm, st.store_cleanings + 1, ENDED, 10000), "no cleaning within 10 s");
	/* Then up to the next checkpoint, puts of the first keys (a few
	 * leaves; the warm-up runs in the last VSRH_WARM_OPS of them), and
	 * its commit. */
	puts_until(&m, 1, 1, 2, first + INTERVAL - WARM_LEFT, &op);
	/* No cleaning this close to the checkpoint: it would write-protect
	 * what the warm-up has read. (Checked before the warm-up has made
	 * most pages dirty again: 300 ms of ticks in its middle left them
	 * dirty for the kernel's own write-back to clean, when other programs
	 * had dirtied much, and the commit faulted on ~370 of them.) */
	vsrh_sm_stats_get(sm, &st);
	CHECK(!tick_until(sm, st.store_cleanings_begun + 1, BEGUN, 3 * 100),
	      "a cleaning %d operations before a checkpoint", WARM_LEFT);
	puts_until(&m, 1, 1, 2, first + INTERVAL, &op);
	static const uint8_t meta[8];
	cp = (vsr_checkpoint){.op = op, .checksum = op * 31, .timestamp = op};
	long before = dirty_pages(data); /* the warm-up made them dirty again */
	long f0 = thread_faults();
	rc = m.checkpoint_take(m.ctx, &cp, meta, sizeof meta);
	long faults = thread_faults() - f0;
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "the checkpoint after the cleaning: %d", rc);
	vsrh_sm_stats_get(sm, &st);
	printf("commit after a cleaning: %ld pages were dirty before the cleaning, %ld just "
	       "before the commit, %ld write faults in the commit, which took %.2f ms\n",
	       dirty, before, faults, (double)st.checkpoint_step_last_ns / 1e6);
	CHECK(dirty > 100, "only %ld dirty pages: the check below proves nothing", dirty);
	/* A page the kernel's own write-back cleans between the warm-up and
	 * the commit faults again; the pages dirty just before the commit
	 * (printed) tell that apart from a warm-up that did not run. Without
	 * the warm-up nearly every page faults (534 of 568); alone this takes
	 * 6-11, but beside the rest of ctest -j2 it once took 94 of 605 (with
	 * 600 dirty just before the commit), so the bound is a third. */
	CHECK(faults * 3 < dirty,
	      "the commit after a cleaning took %ld faults (%ld pages were dirty before the "
	      "cleaning, %ld just before the commit): its pages were not made writable before "
	      "the commit",
	      faults, dirty, before);
	vsrh_sm_destroy(sm);
	st_remove(dir);
}

static void without_cleanings(vsrh_config *cfg)
{
	char dir[] = "/tmp/vsr-store-noclean-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return;
	setenv("VSRH_CLEAN_AFTER_MS", "0", 1);
	vsrh_sm *sm = st_create(cfg, dir, true, true);
	if (sm != NULL) {
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		uint64_t op = 0;
		CHECK(kv_put_round(&m, KEYS, 0, &op) == 0, "the puts (cleanings off)");
		CHECK(!tick_until(sm, 1, BEGUN, 3 * AFTER_MS), "a cleaning with VSRH_CLEAN_AFTER_MS=0");
		vsrh_sm_destroy(sm);
	}
	st_remove(dir);
}

/* A short checkpoint_interval (40 ops, as `make powercut-soak` runs): a
 * cleaning comes in the first half of an interval, none in the second.
 * Counted over the last VSRH_WARM_OPS (256) operations, every operation
 * of such an interval was near a checkpoint, and no cleaning ever came. */
static void short_interval(const vsrh_config *cfg)
{
	char dir[] = "/tmp/vsr-store-shortclean-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return;
	setenv("VSRH_CLEAN_AFTER_MS", "100", 1);
	vsrh_config c = *cfg; /* (shares cfg's strings: not freed) */
	c.checkpoint_interval = 40;
	vsrh_sm *sm = st_create(&c, dir, true, true);
	if (sm != NULL) {
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		uint64_t op = 0;
		puts_until(&m, 0, 1, 0, 40 * 20 + 5, &op); /* 35 ops before the next */
		CHECK(tick_until(sm, 1, BEGUN, 10000),
		      "no cleaning 35 operations before a checkpoint every 40 within 10 s");
		CHECK(tick_until(sm, 1, ENDED, 10000), "the cleaning did not end within 10 s");
		vsrh_sm_stats st;
		vsrh_sm_stats_get(sm, &st);
		puts_until(&m, 0, 1, 1, 40 * 21 + 30, &op); /* 10 ops before the next */
		CHECK(!tick_until(sm, st.store_cleanings_begun + 1, BEGUN, 3 * AFTER_MS),
		      "a cleaning 10 operations before a checkpoint every 40");
		vsrh_sm_destroy(sm);
	}
	st_remove(dir);
}

/* The child of a failed cleaning: a checkpoint synced, more puts, then
 * every write-back fails and ticks bring a cleaning. Exits 74 (the store
 * stops it), or 3 when ticks for 10 s bring no stop. */
static void failing_child(const vsrh_config *cfg, const char *dir, uint64_t *op)
{
	vsrh_sm *sm = st_create(cfg, dir, true, true);
	if (sm == NULL)
		_exit(6);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	if (kv_put_round(&m, KEYS, 0, op) != 0)
		_exit(5);
	vsr_checkpoint cp;
	int rc = st_take(sm, *op, NULL, NULL, &cp); /* waits for its sync */
	if ((rc != VSR_OK && rc != VSR_PENDING) || st_synced_op(dir) != *op)
		_exit(7);
	/* Failing from here, before the puts tick the store: a sync slower
	 * than VSRH_CLEAN_AFTER_MS (a busy disk) let the first put start a
	 * cleaning that then ended well, and the ticks below found it counted
	 * (exit 3). Now the first cleaning after the checkpoint fails. */
	atomic_store(&failing, true);
	uint64_t more = *op;
	if (kv_put_round(&m, HELD, 2, &more) != 0)
		_exit(5);
	tick_until(sm, 1, ENDED, 10000);
	_exit(3);
}

/* The boot id `synced` records (40 bytes at 24) is empty. */
static bool synced_boot_empty(const char *store)
{
	uint8_t b[72];
	if (!st_synced_bytes(store, b, sizeof b))
		return false;
	for (int i = 24; i < 64; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static void failed_cleaning(vsrh_config *cfg, const char *dir)
{
	char store[700];
	snprintf(store, sizeof store, "%s/failing", dir);
	setenv("VSRH_CLEAN_AFTER_MS", "50", 1);
	int errp[2];
	if (pipe(errp) != 0)
		return;
	uint64_t op = 0;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(errp[1], 2);
		close(errp[0]);
		failing_child(cfg, store, &op);
	}
	close(errp[1]);
	char e[2048];
	int status = st_child_wait(pid, errp[0], e, sizeof e);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	CHECK(code == 74, "a failed cleaning: the replica stops with exit 74, got %d (3: it went "
	      "on; stderr: %s)", code, e);
	CHECK(strstr(e, "write-back of the map") != NULL && strstr(e, "EIO") != NULL,
	      "a failed cleaning says why: %s", e);
	CHECK(st_synced_op(store) == KEYS, "after a failed cleaning `synced` names op %llu, not "
	      "the checkpoint at %d", (unsigned long long)st_synced_op(store), KEYS);
	CHECK(synced_boot_empty(store), "after a failed cleaning `synced` keeps its boot id: the "
	      "next start would trust the page cache");
	vsr_checkpoint back;
	if (st_open(cfg, store, &back, NULL) == 0)
		CHECK(back.op == KEYS, "the start after a failed cleaning opens op %llu, not %d",
		      (unsigned long long)back.op, KEYS);
	printf("a failed cleaning: exit %d, %s", code, e);
}

int main(void)
{
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-store-clean-XXXXXX";
	if (st_begin(&cfg, dir) != 0)
		return 1;
	const char *store = dir;
	char data[800];
	snprintf(data, sizeof data, "%s/db/data.mdb", store);
	setenv("VSRH_CLEAN_AFTER_MS", "100", 1);
	vsrh_sm *sm = st_create(&cfg, dir, true, true);
	if (sm == NULL)
		return st_end(dir, &cfg, NULL);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	uint64_t op = 0, synced_before = 0;
	CHECK(kv_put_round(&m, KEYS, 0, &op) == 0, "the first puts");
	long dirty = dirty_pages(data);
	if (dirty < 0) {
		printf("SKIP: cachestat(2) on %s: %s\n", data, strerror(errno));
		vsrh_sm_destroy(sm);
		st_end(dir, &cfg, NULL);
		return 77;
	}
	CHECK(dirty > 0, "no dirty page in %s after %d puts", data, KEYS);
	synced_before = st_synced_op(store);

	/* The cleaning comes, and holds at the gate: puts meanwhile are held. */
	gate(true);
	CHECK(tick_until(sm, 0, GATED, 10000), "no cleaning reached the write-back within 10 s");
	vsrh_sm_stats st;
	vsrh_sm_stats_get(sm, &st);
	uint64_t held = st.checkpoint_held_writes;
	CHECK(kv_put_round(&m, HELD, 1, &op) == 0, "the puts during the cleaning");
	vsrh_sm_stats_get(sm, &st);
	CHECK(st.checkpoint_held_writes - held == HELD,
	      "%llu of %d puts during the cleaning were held (the map was written while it was "
	      "written back)",
	      (unsigned long long)(st.checkpoint_held_writes - held), HELD);
	gate(false);
	CHECK(tick_until(sm, 1, ENDED, 10000), "the cleaning did not end within 10 s");
	dirty = dirty_pages(data);
	CHECK(dirty == 0, "%ld pages of %s still dirty after the cleaning", dirty, data);
	vsrh_sm_stats_get(sm, &st);
	CHECK(st.checkpoint_syncs == 0, "a cleaning counted as a checkpoint's sync");
	CHECK(st_synced_op(store) == synced_before, "a cleaning wrote the `synced` record");

	/* A checkpoint taken during a second cleaning (held at the gate until
	 * the take is under way): the take ends it rather than wait for it,
	 * and that wait is no sync's (vsr_checkpoint_sync_waits_total and the
	 * host's warning count takes that waited for the previous sync). The
	 * held writes go in, and it is durable. */
	CHECK(kv_put_round(&m, KEYS, 3, &op) == 0, "the puts before the second cleaning");
	gate(true);
	CHECK(tick_until(sm, 0, GATED, 10000), "no second cleaning reached the write-back");
	/* The one at the gate is the last begun (on a busy machine the puts
	 * above can outlast VSRH_CLEAN_AFTER_MS and bring one more first). */
	vsrh_sm_stats_get(sm, &st);
	uint64_t begun = st.store_cleanings_begun;
	pthread_t opener;
	bool opening = pthread_create(&opener, NULL, open_gate_when_taking, NULL) == 0;
	CHECK(opening, "thread");
	vsr_checkpoint cp = {.op = op, .checksum = op * 31, .timestamp = op};
	static const uint8_t meta[8];
	uint64_t before = m.digest(m.ctx);
	atomic_store(&taking, true);
	int rc = m.checkpoint_take(m.ctx, &cp, meta, sizeof meta);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take after a cleaning: %d", rc);
	if (opening)
		pthread_join(opener, NULL);
	else
		gate(false);
	vsrh_sm_stats_get(sm, &st); /* (before anything waits for the sync) */
	CHECK(begun >= 2 && st.store_cleanings == begun,
	      "%llu of %llu cleanings ended once the take was done",
	      (unsigned long long)st.store_cleanings, (unsigned long long)begun);
	CHECK(st.checkpoint_sync_waits == 0,
	      "a take that ended a cleaning counted %llu wait(s) for a checkpoint's sync",
	      (unsigned long long)st.checkpoint_sync_waits);
	vsrh_sm_destroy(sm); /* waits for its sync */
	CHECK(st_synced_op(store) == op, "the checkpoint after the cleaning is not recorded synced");
	vsr_checkpoint back;
	uint64_t digest = 0;
	if (st_open(&cfg, dir, &back, &digest) == 0)
		CHECK(back.op == op && digest == before,
		      "reopened at op %llu digest %016llx, expected op %llu digest %016llx",
		      (unsigned long long)back.op, (unsigned long long)digest,
		      (unsigned long long)op, (unsigned long long)before);

	failed_cleaning(&cfg, dir);
	commit_after_cleaning(&cfg);
	without_cleanings(&cfg);
	short_interval(&cfg);
	return st_end(dir, &cfg, "store clean: a map unsynced for VSRH_CLEAN_AFTER_MS written back "
				 "paced, writes held meanwhile, nothing recorded durable");
}
