/* vsrh_store_sync.c - the syncer thread, the `synced` record and the
 * rollback of a torn newest LMDB transaction (vsrh_store_sync.h). */
#define _GNU_SOURCE /* sync_file_range */
#include "vsrh_store_sync.h"
#include "vsrh_le.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ------------------------------------------------------------ errors */

/* Set on the loop's thread when the store opens, before its syncer thread
 * starts; read only when the process stops. */
static char fatal_dir[4200];

void vsrh_store_fatal_names(const char *dir)
{
	snprintf(fatal_dir, sizeof fatal_dir, "%s", dir);
}

const char *vsrh_store_fatal_dir(void)
{
	return fatal_dir;
}

void vsrh_store_fatal(const char *what, int rc)
{
	/* The store cannot follow the replicated state any more (a full or
	 * failing disk): stop rather than diverge or acknowledge what is lost,
	 * with the status vsrhost uses for a storage failure (EX_IOERR). */
	/* LMDB reports a short write (a full disk) as EIO. */
	const char *why = rc == ENOSPC	     ? "the disk is full (no space left on device)"
			  : rc == EIO	       ? "a write failed: the disk is full or failing (EIO)"
			  : rc == MDB_MAP_FULL ? "the map is full (more written in one checkpoint interval than it had room for)"
					       : mdb_strerror(rc);
	if (fatal_dir[0] != '\0')
		fprintf(stderr, "vsr.store: LMDB %s failed: %s (vsr.store in %s); this replica stops "
				"(exit 74)\n", what, why, fatal_dir);
	else
		fprintf(stderr, "vsr.store: LMDB %s failed: %s; this replica stops (exit 74)\n", what,
			why);
	fflush(NULL);
	_exit(74);
}

/* ------------------------------------------------------------ boot id */

void vsrh_boot_id(char out[VSRH_BOOT_ID_LEN])
{
	memset(out, 0, VSRH_BOOT_ID_LEN);
	const char *fake = getenv("VSRH_BOOT_ID");
	if (fake != NULL && *fake) {
		snprintf(out, VSRH_BOOT_ID_LEN, "%s", fake);
		return;
	}
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (f == NULL)
		return; /* unknown: every start looks like a reboot (safe, slower) */
	if (fgets(out, VSRH_BOOT_ID_LEN, f) == NULL)
		memset(out, 0, VSRH_BOOT_ID_LEN);
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

/* ------------------------------------------------------------ `synced` */

/* "VSRHSYN1" | u64 txnid | u64 op | boot id (40 bytes) | u64 XXH3-64 of
 * the 64 bytes before: which LMDB transaction is durable, written by the
 * boot that synced it. One sector, rewritten in place. */
#define SYNCED_MAGIC "VSRHSYN1"
#define SYNCED_LEN 72

typedef struct synced_rec {
	uint64_t txnid, op;
	char boot[VSRH_BOOT_ID_LEN];
} synced_rec;


static int synced_write(int fd, const synced_rec *r)
{
	uint8_t b[SYNCED_LEN];
	memcpy(b, SYNCED_MAGIC, 8);
	vsrh_put_u64le(b + 8, r->txnid);
	vsrh_put_u64le(b + 16, r->op);
	memcpy(b + 24, r->boot, VSRH_BOOT_ID_LEN);
	vsrh_put_u64le(b + 64, XXH3_64bits(b, 64));
	if (pwrite(fd, b, sizeof b, 0) != (ssize_t)sizeof b)
		return errno ? errno : EIO;
	return fdatasync(fd) == 0 ? 0 : errno;
}

/* After a failed sync: the record keeps its transaction but loses its boot
 * id, so that the next start, even on this boot, treats the page cache as
 * lost (vsrh_store_settle_dir). Linux marks pages whose writeback failed
 * clean and may drop them: the newest transaction may be torn without a
 * reboot, and a sync at the next start would report nothing. Best effort
 * (the disk is failing): the page cache keeps the record for a start on
 * this boot even when the write does not reach the disk. */
static void synced_forget_boot(int fd)
{
	uint8_t b[SYNCED_LEN];
	if (pread(fd, b, sizeof b, 0) != (ssize_t)sizeof b || memcmp(b, SYNCED_MAGIC, 8) != 0 ||
	    vsrh_get_u64le(b + 64) != XXH3_64bits(b, 64))
		return; /* none: the next start syncs and records (open_sync) */
	synced_rec r = {.txnid = vsrh_get_u64le(b + 8), .op = vsrh_get_u64le(b + 16)};
	(void)synced_write(fd, &r);
}

/* 0 and *r; -1 when there is none (the file missing or empty: never
 * written); -2 when it is there but damaged (torn, flipped, not ours). */
static int synced_read(const char *dir, synced_rec *r)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/synced", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -1 : -2;
	uint8_t b[SYNCED_LEN];
	ssize_t n = pread(fd, b, sizeof b, 0);
	close(fd);
	if (n == 0)
		return -1;
	if (n != (ssize_t)sizeof b || memcmp(b, SYNCED_MAGIC, 8) != 0 ||
	    vsrh_get_u64le(b + 64) != XXH3_64bits(b, 64))
		return -2;
	r->txnid = vsrh_get_u64le(b + 8);
	r->op = vsrh_get_u64le(b + 16);
	memcpy(r->boot, b + 24, VSRH_BOOT_ID_LEN);
	r->boot[VSRH_BOOT_ID_LEN - 1] = '\0';
	return 0;
}

/* ------------------------------------------------------------ the syncer */

static uint64_t env_txnid(MDB_env *env)
{
	MDB_envinfo info;
	return mdb_env_info(env, &info) == 0 ? (uint64_t)info.me_last_txnid : 0;
}

/* Writes the dirty pages of data.mdb's first `used` bytes back a slice at a
 * time, each waited for: the log's own fdatasync, on the same disk, then
 * queues behind one slice instead of a whole interval's pages. */
#define TRICKLE_BYTES ((off_t)512 << 10)

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define TRICKLE_IO_NS 200000 /* a slice slower than this wrote pages */

/* CLOCK_MONOTONIC (the syncer's cv runs on it) `ns` from now. */
static struct timespec deadline_after(uint64_t ns)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	uint64_t at = (uint64_t)until.tv_nsec + ns;
	until.tv_sec += (time_t)(at / 1000000000u);
	until.tv_nsec = (long)(at % 1000000000u);
	return until;
}

/* Waits `ns` on the syncer's cv (s->mu held) unless, or until, someone
 * waits for the sync (hurry) or the syncer stops. */
static void wait_unless_hurried(vsrh_syncer *s, uint64_t ns)
{
	struct timespec until = deadline_after(ns);
	while (ns > 0 && !s->hurry && !s->stop &&
	       pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
		;
}

/* One pass over data.mdb's first `used` bytes. A slice that did I/O is
 * followed by a pause as long as it took, while the sync stays within
 * `budget_ns` (half the last interval between two checkpoints) of `start`:
 * the disk is left idle half the time for the log. `io_ns` gets the time
 * the pass spent in slices that wrote something.
 *
 * In later passes (`*slice` above 0) the slice's length adapts, from
 * 512 KiB to 4 MiB, to hold about a millisecond of I/O: a first pass finds
 * 512 KiB all dirty, a later one a few pages scattered in each 512 KiB,
 * and waiting for each slice's writes in turn made every pass take as
 * long as the first (the transaction dirtying as many pages meanwhile:
 * the passes never got quiet and the fdatasync wrote them in one burst,
 * 15-28 ms at 1,000,000 keys). The first pass keeps 512 KiB: a slice grown
 * over clean pages would write a dense region in one burst. */
#define TRICKLE_SLICE_MAX ((off_t)4 << 20)
static int trickle_pass(vsrh_syncer *s, int fd, uint64_t start, uint64_t budget_ns,
			off_t *slice, uint64_t *io_ns)
{
	uint64_t used = s->used;
	bool adapt = *slice > 0;
	if (!adapt)
		*slice = TRICKLE_BYTES;
	*io_ns = 0;
	for (off_t at = 0; at < (off_t)used; at += *slice) {
		if (s->cleaning) {
			/* Nobody waits for a cleaning: one that is waited for
			 * (the next take, close) ends here. */
			pthread_mutex_lock(&s->mu);
			bool hurry = s->hurry || s->stop;
			pthread_mutex_unlock(&s->mu);
			if (hurry)
				return 0;
		}
		uint64_t t0 = mono_ns();
		if (sync_file_range(fd, at, *slice,
				    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					    SYNC_FILE_RANGE_WAIT_AFTER) != 0)
			return errno;
		uint64_t now = mono_ns(), took = now - t0;
		if (took > TRICKLE_IO_NS)
			*io_ns += took;
		if (took > 500000 && now - start + took < budget_ns) {
			/* A pause, ended early by a waiter (a take). */
			pthread_mutex_lock(&s->mu);
			wait_unless_hurried(s, took);
			pthread_mutex_unlock(&s->mu);
		}
		if (adapt && took < 250000 && *slice < TRICKLE_SLICE_MAX)
			*slice *= 2;
		else if (adapt && took > 2000000 && *slice > TRICKLE_BYTES)
			*slice /= 2;
	}
	return 0;
}

/* Writes the checkpoint's pages back in paced slices before the fdatasync
 * that makes them durable. With MDB_WRITEMAP the transaction after the
 * checkpoint writes into the same map meanwhile, and the pages it dirtied
 * during a pass would all go out at once in the fdatasync (tens of ms of
 * unpaced I/O with 1,000,000 keys, which the log's fdatasync queues behind):
 * so passes repeat, each shorter than the last, until one writes almost
 * nothing. */
#define TRICKLE_PASSES 6
#define TRICKLE_QUIET_NS 2000000 /* a pass with less I/O than this ends it */
static int trickle(vsrh_syncer *s, MDB_env *env, uint64_t budget_ns)
{
	int fd;
	if (mdb_env_get_fd(env, &fd) != 0)
		return 0;
	uint64_t start = mono_ns(), io_ns = 0;
	off_t slice = 0; /* the first pass: fixed slices */
	for (int pass = 0; pass < TRICKLE_PASSES; pass++) {
		int rc = trickle_pass(s, fd, start, budget_ns, &slice, &io_ns);
		if (rc != 0 || io_ns < TRICKLE_QUIET_NS)
			return rc;
		/* Someone waits (the next take, close): the fdatasync now. */
		pthread_mutex_lock(&s->mu);
		bool hurry = s->hurry || s->stop;
		pthread_mutex_unlock(&s->mu);
		if (hurry)
			return 0;
	}
	return 0;
}

/* budget_ns: how long the write-back may be paced over (0: no pauses). */
static int sync_and_record(vsrh_syncer *s, MDB_env *env, uint64_t txnid, uint64_t op,
			   uint64_t budget_ns)
{
	int rc = trickle(s, env, budget_ns);
	if (rc == 0)
		rc = mdb_env_sync(env, 1);
	if (rc == 0) {
		synced_rec r = {.txnid = txnid, .op = op};
		memcpy(r.boot, s->boot, VSRH_BOOT_ID_LEN);
		rc = synced_write(s->synced_fd, &r);
	}
	if (rc) /* every caller stops the replica: the next start rolls back */
		synced_forget_boot(s->synced_fd);
	return rc;
}

static void *syncer_main(void *arg)
{
	/* Named for top -H, perf and /proc/PID/task/TID/comm. */
	pthread_setname_np(pthread_self(), "vsr-sync");
	vsrh_syncer *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->busy && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!s->busy)
			break;
		MDB_env *env = s->env;
		if (s->commit) {
			/* The checkpoint's commit, handed over by the event loop
			 * (vsrh_store.c, "the commit off the loop"): the loop
			 * serves reads meanwhile from the writes it had and the
			 * commit before, and picks the new one up once counted. */
			MDB_txn *txn = s->commit;
			pthread_mutex_unlock(&s->mu);
			uint64_t c0 = mono_ns();
			int rc = mdb_txn_commit(txn);
			uint64_t took = mono_ns() - c0;
			if (rc)
				vsrh_store_fatal("checkpoint commit", rc);
			uint64_t id = env_txnid(env);
			size_t used = vsrh_env_used(env);
			pthread_mutex_lock(&s->mu);
			s->commit = NULL;
			s->txnid = id;
			s->used = used;
			s->commit_last_ns = took;
			s->commits++; /* atomic, release: the commit is done */
			pthread_cond_broadcast(&s->cv);
		}
		uint64_t txnid = s->txnid, op = s->op, budget_ns = s->budget_ns;
		bool cleaning = s->cleaning;
		/* This replica's turn (vsrh_syncer_stagger), unless someone
		 * already waits for the sync. */
		if (!cleaning)
			wait_unless_hurried(s, s->delay_ns);
		pthread_mutex_unlock(&s->mu);
		uint64_t t0 = mono_ns();
		int rc = cleaning ? trickle(s, env, budget_ns)
				  : sync_and_record(s, env, txnid, op, budget_ns);
		uint64_t took = mono_ns() - t0;
		if (rc) {
			/* Never go on after a failed sync: what it covered may be
			 * lost while the page cache says otherwise (the next start
			 * rolls back). A failed cleaning is a failed write all the
			 * same: the pages it lost may be the next sync's. */
			if (cleaning)
				synced_forget_boot(s->synced_fd);
			vsrh_store_fatal(cleaning ? "write-back of the map" : "sync of a checkpoint", rc);
		}
		if (s->notify && !cleaning)
			s->notify(s->notify_arg, op);
		pthread_mutex_lock(&s->mu);
		if (cleaning) {
			s->cleanings++;
		} else {
			s->syncs++;
			s->last_sync_ns = took;
			s->synced_op = op;
		}
		s->ended++;
		s->busy = false;
		s->hurry = false;
		s->cleaning = false;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int vsrh_syncer_init(vsrh_syncer *s, const char *dir)
{
	memset(s, 0, sizeof *s);
	char path[4200];
	snprintf(path, sizeof path, "%s/synced", dir);
	s->synced_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->synced_fd < 0)
		return errno;
	vsrh_boot_id(s->boot);
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca; /* the turn's timed wait runs on CLOCK_MONOTONIC */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void vsrh_syncer_wait(vsrh_syncer *s)
{
	if (!s->started)
		return;
	pthread_mutex_lock(&s->mu);
	if (s->busy) {
		uint64_t t0 = mono_ns();
		bool sync = !s->cleaning; /* a cleaning stops at its next slice */
		s->hurry = true; /* no turn to wait for, no more pauses */
		pthread_cond_broadcast(&s->cv);
		while (s->busy)
			pthread_cond_wait(&s->cv, &s->mu);
		if (sync) {
			s->waits++;
			s->wait_ns += mono_ns() - t0;
		}
	}
	pthread_mutex_unlock(&s->mu);
}

vsrh_sync_figures vsrh_syncer_figures(vsrh_syncer *s)
{
	vsrh_sync_figures f = {0};
	if (!s->started)
		return f;
	pthread_mutex_lock(&s->mu);
	f.syncs = s->syncs;
	f.last_sync_ns = s->last_sync_ns;
	f.waits = s->waits;
	f.wait_ns = s->wait_ns;
	f.cleanings = s->cleanings;
	f.cleanings_begun = s->cleanings_begun;
	f.off_loop = s->commits;
	f.commit_last_ns = s->commit_last_ns;
	pthread_mutex_unlock(&s->mu);
	return f;
}

uint64_t vsrh_syncer_syncs(const vsrh_syncer *s)
{
	/* (syncer_main counts under mu with `s->syncs++`: an atomic increment.) */
	return atomic_load_explicit(&s->syncs, memory_order_acquire);
}

uint64_t vsrh_syncer_ended(const vsrh_syncer *s)
{
	/* (syncer_main counts under mu with `s->ended++`, after the job's last
	 * write: an atomic increment.) */
	return atomic_load_explicit(&s->ended, memory_order_acquire);
}

void vsrh_syncer_close(vsrh_syncer *s)
{
	if (s->started) {
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thread, NULL);
		s->started = false;
	}
	if (s->synced_fd >= 0) {
		close(s->synced_fd);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
	}
	s->synced_fd = -1;
}

void vsrh_syncer_stagger(vsrh_syncer *s, unsigned slot, unsigned slots)
{
	s->slot = slots > 0 ? slot % slots : 0;
	s->slots = slots;
}

static int thread_start(vsrh_syncer *s)
{
	if (s->started)
		return 0;
	int rc = pthread_create(&s->thread, NULL, syncer_main, s);
	if (rc == 0)
		s->started = true;
	return rc;
}

size_t vsrh_env_used(MDB_env *env)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(env, &info) || mdb_env_stat(env, &st))
		return 0;
	return ((size_t)info.me_last_pgno + 1) * st.ms_psize;
}

uint64_t vsrh_syncer_commits(const vsrh_syncer *s)
{
	return atomic_load_explicit(&s->commits, memory_order_acquire);
}

void vsrh_syncer_commit_wait(vsrh_syncer *s, uint64_t n)
{
	if (vsrh_syncer_commits(s) >= n)
		return;
	pthread_mutex_lock(&s->mu);
	while (s->commits < n)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

int vsrh_syncer_start(vsrh_syncer *s, MDB_env *env, uint64_t op, uint64_t used,
		      uint64_t late_ns, uint64_t *ended, MDB_txn *commit)
{
	int rc = thread_start(s);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	if (s->busy) {
		s->hurry = true;
		pthread_cond_broadcast(&s->cv);
	}
	while (s->busy)
		pthread_cond_wait(&s->cv, &s->mu);
	*ended = s->ended;
	s->env = env;
	s->commit = commit;
	s->txnid = commit ? 0 : env_txnid(env); /* (with a commit: set by the thread) */
	s->op = op;
	s->used = used;
	s->late_ns = late_ns;
	/* The next take waits for this sync, and comes about an interval (the
	 * time since the last take) from now. A replica starts after its turn,
	 * slot/slots of half the interval, and paces its slices over at most
	 * half the interval (2 s), ending within three quarters of it. */
	uint64_t now = mono_ns();
	uint64_t since = s->started_at ? now - s->started_at : 0;
	if (since > 4000000000u)
		since = 4000000000u;
	/* Both count from the take: a commit that waited for the replica's
	 * turn (late_ns) has spent that much of them already. Counted from
	 * the commit, a sync 50 ms late ran into the next take at 200 ms
	 * intervals, and the take drained every write held meanwhile. */
	uint64_t late = s->late_ns < since * 3 / 4 ? s->late_ns : since * 3 / 4;
	uint64_t turn = s->slots > 1 ? since / 2 * s->slot / s->slots : 0;
	s->delay_ns = turn > late ? turn - late : 0;
	uint64_t left = since * 3 / 4 - late - s->delay_ns; /* until 3/4 of the interval */
	s->budget_ns = since / 2 < left ? since / 2 : left;
	s->started_at = now;
	s->busy = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int vsrh_syncer_clean(vsrh_syncer *s, MDB_env *env, uint64_t used, uint64_t budget_ns,
		      uint64_t *ended)
{
	int rc = thread_start(s);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	if (s->busy) {
		pthread_mutex_unlock(&s->mu);
		return EBUSY;
	}
	*ended = s->ended;
	s->env = env;
	s->used = used;
	s->budget_ns = budget_ns;
	s->cleaning = true;
	s->cleanings_begun++;
	s->busy = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int vsrh_syncer_sync_now(vsrh_syncer *s, MDB_env *env, uint64_t op)
{
	vsrh_syncer_wait(s);
	/* On the caller's thread (the event loop, at open or after an
	 * install): never paced, whatever budget the last checkpoint's sync
	 * had; a pause here would only stall the replica. */
	return sync_and_record(s, env, env_txnid(env), op, 0);
}

int vsrh_syncer_open_sync(vsrh_syncer *s, const char *dir, MDB_env *env)
{
	/* The newest commit recorded as synced is durable. The pages of a write
	 * transaction the last process never committed may still be dirty in
	 * the page cache (with MDB_WRITEMAP they are written in place), but no
	 * meta page names them: writing them back buys nothing. */
	synced_rec rec;
	if (synced_read(dir, &rec) == 0 && rec.txnid == env_txnid(env))
		return 0;
	return vsrh_syncer_sync_now(s, env, 0);
}

/* ------------------------------------------------------------ rollback */

/* LMDB 0.9's meta pages (data version 1, 64-bit): pages 0 and 1, each a
 * 16-byte page header (flags at 10) and then the meta: magic, version,
 * address, map size, the free and main databases' records (48 bytes each,
 * the page size in the first one's first field), the last page and the
 * transaction id. */
#define LMDB_PAGEHDR 16
#define LMDB_P_META 0x08
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_META_LEN 136
#define LMDB_META_PSIZE 24   /* within the meta */
#define LMDB_META_TXNID 128

typedef struct lmdb_meta {
	uint8_t b[LMDB_PAGEHDR + LMDB_META_LEN];
	uint64_t txnid;
} lmdb_meta;


/* A meta page's first bytes, from p, into *m: 0, or -1 when they are not
 * one of LMDB 0.9's meta pages (data version 1). */
static int meta_parse(const uint8_t *p, lmdb_meta *m)
{
	memcpy(m->b, p, sizeof m->b);
	uint16_t flags = (uint16_t)(m->b[10] | m->b[11] << 8);
	if (!(flags & LMDB_P_META) || vsrh_get_u32le(m->b + LMDB_PAGEHDR) != LMDB_MAGIC ||
	    vsrh_get_u32le(m->b + LMDB_PAGEHDR + 4) != 1)
		return -1;
	m->txnid = vsrh_get_u64le(m->b + LMDB_PAGEHDR + LMDB_META_TXNID);
	return 0;
}

static int meta_read(int fd, off_t at, lmdb_meta *m)
{
	uint8_t b[sizeof m->b];
	if (pread(fd, b, sizeof b, at) != (ssize_t)sizeof b)
		return -1;
	return meta_parse(b, m);
}

/* Both meta pages of the LMDB file open as fd, and its page size: 0, or -1
 * when they are not LMDB's layout as we know it. */
static int metas_read(int fd, lmdb_meta m[2], uint32_t *psize)
{
	int rc = meta_read(fd, 0, &m[0]);
	*psize = rc == 0 ? vsrh_get_u32le(m[0].b + LMDB_PAGEHDR + LMDB_META_PSIZE) : 0;
	if (rc == 0 && (*psize < 512 || *psize > 65536 || (*psize & (*psize - 1))))
		rc = -1;
	if (rc == 0)
		rc = meta_read(fd, *psize, &m[1]);
	return rc;
}

void vsrh_store_rollback_judge(const char *dir, const char *env_dir, vsrh_store_rollback *rb)
{
	memset(rb, 0, sizeof *rb);
	synced_rec rec;
	int got = synced_read(dir, &rec);
	if (got == -1)
		return; /* never synced by a checkpoint: nothing was committed without a sync */
	/* A damaged record names no transaction and no boot: the newest
	 * commit may be torn as after a reboot, and is rolled back as then
	 * (the older one is whole; if the newest was durable after all, the
	 * store check finds the checkpoint older than the superblock's and
	 * the others repair it: slower, never wrong). */
	bool damaged = got == -2;
	char boot[VSRH_BOOT_ID_LEN];
	vsrh_boot_id(boot);
	if (!damaged && boot[0] && strcmp(boot, rec.boot) == 0)
		return; /* no reboot (nor failed sync) since: the page cache held every commit */
	char path[4300];
	snprintf(path, sizeof path, "%s/data.mdb", env_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* no environment */
	lmdb_meta m[2];
	uint32_t psize;
	int rc = metas_read(fd, m, &psize);
	close(fd);
	if (rc != 0)
		return; /* not LMDB's layout as we know it: the check that follows judges */
	int newest = m[1].txnid > m[0].txnid;
	if ((!damaged && m[newest].txnid == rec.txnid) || m[0].txnid == m[1].txnid)
		return;
	/* The newest commit was never recorded as synced and the machine has
	 * rebooted: its pages may not have reached the disk. The older one was
	 * synced before it was made (and LMDB did not reuse its pages). */
	rb->due = true;
	rb->synced_damaged = damaged;
	rb->from_txn = m[newest].txnid;
	rb->to_txn = m[!newest].txnid;
	rb->meta = (unsigned)newest;
	rb->psize = psize;
}

void vsrh_store_rollback_why(const vsrh_store_rollback *rb, const char *dir, const char *file,
			     char *why, size_t why_len)
{
	if (rb->synced_damaged)
		snprintf(why, why_len,
			 "%s back from transaction %" PRIu64 " to %" PRIu64 ": %s/synced, the "
			 "record of which one is durable, is damaged, so the newest may not be",
			 file, rb->from_txn, rb->to_txn, dir);
	else
		snprintf(why, why_len,
			 "%s back from transaction %" PRIu64 " (never recorded as synced, and the "
			 "machine rebooted or a sync failed) to %" PRIu64,
			 file, rb->from_txn, rb->to_txn);
}

int vsrh_store_settle_dir(const char *dir, bool *rolled, char *why, size_t why_len)
{
	*rolled = false;
	char env[4200], path[4300];
	snprintf(env, sizeof env, "%s/db", dir);
	snprintf(path, sizeof path, "%s/data.mdb", env);
	vsrh_store_rollback rb;
	vsrh_store_rollback_judge(dir, env, &rb);
	if (!rb.due)
		return 0;
	/* Make the older meta page the newest by copying it over (the page
	 * header, with the page's own number, stays). */
	int fd = open(path, O_RDWR | O_CLOEXEC);
	lmdb_meta m[2];
	uint32_t psize;
	if (fd < 0 || metas_read(fd, m, &psize) != 0 || psize != rb.psize ||
	    m[rb.meta].txnid != rb.from_txn || m[!rb.meta].txnid != rb.to_txn) {
		snprintf(why, why_len, "rolling %s back to transaction %" PRIu64 ": %s", path,
			 rb.to_txn, fd < 0 ? strerror(errno) : "its meta pages changed meanwhile");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	off_t at = rb.meta ? (off_t)psize : 0;
	if (pwrite(fd, m[!rb.meta].b + LMDB_PAGEHDR, LMDB_META_LEN, at + LMDB_PAGEHDR) !=
		    LMDB_META_LEN ||
	    fdatasync(fd) != 0) {
		snprintf(why, why_len, "rolling %s back to transaction %" PRIu64 ": %s", path,
			 rb.to_txn, strerror(errno ? errno : EIO));
		close(fd);
		return -1;
	}
	close(fd);
	*rolled = true;
	char said[9000]; /* two paths of up to 4300 bytes and the sentence */
	vsrh_store_rollback_why(&rb, dir, path, said, sizeof said);
	snprintf(why, why_len, "rolled %s", said);
	return 0;
}

int vsrh_store_rollback_map(uint8_t *map, size_t map_len, const char *file,
			    const vsrh_store_rollback *rb, char *why, size_t why_len)
{
	/* LMDB reads a read-only transaction's meta page through the map (its
	 * me_metas point into the map's first pages), picking the one with the
	 * higher transaction id at mdb_txn_begin: mapping those pages again,
	 * privately, and copying the older meta over the newest there makes
	 * it read the older transaction, and the file stays as it was. */
	long os = sysconf(_SC_PAGESIZE);
	size_t len = os > 0 ? (2 * (size_t)rb->psize + (size_t)os - 1) / (size_t)os * (size_t)os : 0;
	lmdb_meta m[2];
	if (!rb->due || len == 0 || (uintptr_t)map % (uintptr_t)os != 0 || map_len < len ||
	    vsrh_get_u64le(map) != 0 || vsrh_get_u64le(map + rb->psize) != 1 ||
	    meta_parse(map, &m[0]) != 0 || meta_parse(map + rb->psize, &m[1]) != 0) {
		snprintf(why, why_len, "%s: LMDB's map does not start with its meta pages", file);
		return -1;
	}
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	void *p = fd >= 0 ? mmap(map, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0)
			  : MAP_FAILED;
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED) {
		snprintf(why, why_len, "%s: mapping its meta pages privately: %s", file, strerror(e));
		return -1;
	}
	uint8_t *newest = map + (size_t)rb->meta * rb->psize;
	const uint8_t *older = map + (size_t)!rb->meta * rb->psize;
	if (vsrh_get_u64le(newest + LMDB_PAGEHDR + LMDB_META_TXNID) != rb->from_txn ||
	    vsrh_get_u64le(older + LMDB_PAGEHDR + LMDB_META_TXNID) != rb->to_txn) {
		snprintf(why, why_len, "%s: its meta pages changed while it was checked", file);
		return -1;
	}
	memcpy(newest + LMDB_PAGEHDR, older + LMDB_PAGEHDR, LMDB_META_LEN);
	return 0;
}
