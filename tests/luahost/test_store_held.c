/* test_store_held.c - the writes a durable vsr.store holds in memory while
 * a checkpoint's sync runs (vsrh_overlay.h) read, scan, count and digest as
 * if they had gone into LMDB, and reach the next checkpoint whole.
 *
 * Two state machines run spec/fixtures/storeops.lua: A on a durable store
 * whose syncs block in LMDB's sync (-Wl,--wrap=mdb_env_sync) until the test
 * opens a gate, B on a store that is not durable (no syncer, nothing held). The same
 * random operations (puts, deletes, gets, scans, counts over 300 keys) go to
 * both: while A's sync is held back (its writes held), after the gate
 * opens (held writes draining a few per operation), and across checkpoints.
 * Every reply and digest must be equal, every checkpoint image byte for
 * byte, and A must have held writes (its figures). A write that cannot be
 * held (malloc fails, -Wl,--wrap=malloc) while a checkpoint waits for A's
 * turn commits it and goes into LMDB; an install drops a checkpoint still
 * waiting (it is never committed nor served). Then A reopens at its last
 * checkpoint with that digest. The seed is printed; VSR_SEED=N replays.
 *
 * --nomem (ctest luahost_store_held_nomem): the out-of-memory fallback of
 * lmdb_commit_writes. vsrh_overlay_put is wrapped at link time
 * (-Wl,--wrap, so the release build carries no hook) and fails, as when
 * out of memory (nothing changed), at one chosen call of each round: while
 * the sync is held back, while a checkpoint waits for its turn, and while
 * held writes drain after it, at any write of an operation of several.
 * Replies, digests and images must still equal B's, and the store must
 * stop holding until the next checkpoint's commit (no put reaches the skip
 * list after the failure before an LMDB commit, also wrapped). LMDB's
 * cursor calls are wrapped as well: a cursor used after its write
 * transaction committed (LMDB freed it) fails the test every time, not
 * only when the freed memory happens to mislead. */
#define _GNU_SOURCE
#include <errno.h>
#include <lmdb.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_test.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"
#include "vsrh_overlay.h"
#include "vsrh_store_sync.h"

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_closed;
static _Atomic int blocked; /* syncs waiting at the gate */

int __real_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force)
{
	pthread_mutex_lock(&gate_mu);
	if (gate_closed) {
		atomic_fetch_add(&blocked, 1);
		pthread_cond_broadcast(&gate_cv);
		while (gate_closed)
			pthread_cond_wait(&gate_cv, &gate_mu);
		atomic_fetch_sub(&blocked, 1);
	}
	pthread_mutex_unlock(&gate_mu);
	return __real_mdb_env_sync(env, force);
}

/* One malloc of nomem_size bytes fails (0: none): a held write's value
 * (vsrh_overlay.c) of a size nothing else allocates in that operation. */
static _Atomic size_t nomem_size;
static _Atomic int nomem_hits;

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_malloc(size_t n)
{
	size_t want = atomic_load(&nomem_size);
	if (want != 0 && n == want && atomic_compare_exchange_strong(&nomem_size, &want, 0)) {
		atomic_fetch_add(&nomem_hits, 1);
		return NULL;
	}
	return __real_malloc(n);
}

/* Waits (10 s at most) until a sync waits at the gate; returns whether one does. */
static bool gate_reached(void)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&gate_mu);
	while (atomic_load(&blocked) == 0 &&
	       pthread_cond_timedwait(&gate_cv, &gate_mu, &until) == 0)
		;
	bool reached = atomic_load(&blocked) > 0;
	pthread_mutex_unlock(&gate_mu);
	return reached;
}

static void gate(bool closed)
{
	pthread_mutex_lock(&gate_mu);
	gate_closed = closed;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* --nomem: the fail_at-th put of a round fails (-1: none), as out of memory.
 * The skip list whose put failed (the held writes: the shadow, the record
 * of what the write transaction has, is a vsrh_keymap and not counted
 * here) must get no more puts until the next commit: the writes are no
 * longer held. Counted on the loop's thread only (the commit may run on
 * the syncer's: the rule's end is marked at its start, vsrh_syncer_start,
 * on the loop's thread). */
static bool nomem;
static long put_calls, fail_at = -1, puts_after_failure;
static const vsrh_overlay *failed_o; /* the skip list whose put failed (this round) */
static unsigned oom_failures;
static pthread_t main_thread;

int __real_vsrh_overlay_put(vsrh_overlay *o, const char *k, size_t kl, const char *v, size_t vl);
int __wrap_vsrh_overlay_put(vsrh_overlay *o, const char *k, size_t kl, const char *v, size_t vl);
int __wrap_vsrh_overlay_put(vsrh_overlay *o, const char *k, size_t kl, const char *v, size_t vl)
{
	if (failed_o == o)
		puts_after_failure++;
	if (++put_calls == fail_at) {
		oom_failures++;
		failed_o = o;
		return -1; /* the map unchanged, as vsrh_overlay_put out of memory */
	}
	return __real_vsrh_overlay_put(o, k, kl, v, vl);
}

/* The commit gate: a checkpoint's commit made on the syncer's thread
 * waits there while it is closed, so that the operations after the take
 * run in the window (their reads from the writes the transaction had, over
 * the commit before: vsrh_store.c, "the commit off the loop"). The loop's
 * first wait for the commit (a scan, an image read, the next take) opens
 * it. */
static pthread_mutex_t cgate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cgate_cv = PTHREAD_COND_INITIALIZER;
static bool cgate_closed;
static long window_gets, commits_gated; /* (commits_gated: under cgate_mu) */

static void commit_gate(bool closed)
{
	pthread_mutex_lock(&cgate_mu);
	cgate_closed = closed;
	pthread_cond_broadcast(&cgate_cv);
	pthread_mutex_unlock(&cgate_mu);
}

/* Waits (10 s at most) until a commit waits at the closed commit gate. */
static bool cgate_reached(long before)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&cgate_mu);
	while (commits_gated == before &&
	       pthread_cond_timedwait(&cgate_cv, &cgate_mu, &until) == 0)
		;
	bool reached = commits_gated > before;
	pthread_mutex_unlock(&cgate_mu);
	return reached;
}

void __real_vsrh_syncer_commit_wait(vsrh_syncer *s, uint64_t n);
void __wrap_vsrh_syncer_commit_wait(vsrh_syncer *s, uint64_t n);
void __wrap_vsrh_syncer_commit_wait(vsrh_syncer *s, uint64_t n)
{
	commit_gate(false);
	__real_vsrh_syncer_commit_wait(s, n);
}

int __real_vsrh_syncer_start(vsrh_syncer *s, MDB_env *env, uint64_t op, uint64_t used,
			     uint64_t late_ns, uint64_t *ended, MDB_txn *commit);
int __wrap_vsrh_syncer_start(vsrh_syncer *s, MDB_env *env, uint64_t op, uint64_t used,
			     uint64_t late_ns, uint64_t *ended, MDB_txn *commit);
int __wrap_vsrh_syncer_start(vsrh_syncer *s, MDB_env *env, uint64_t op, uint64_t used,
			     uint64_t late_ns, uint64_t *ended, MDB_txn *commit)
{
	failed_o = NULL; /* a checkpoint's commit: holding starts again */
	return __real_vsrh_syncer_start(s, env, op, used, late_ns, ended, commit);
}

/* Cursors in use (wrapped LMDB calls): LMDB frees a write transaction's
 * cursors when it commits, so a cursor used after its transaction
 * committed is a use after free, which corrupts the store only now and
 * then; here every such use is caught and counted. */
#define CURSORS_MAX 64
static struct {
	MDB_cursor *c;
	MDB_txn *txn;
	size_t size;   /* its allocation's (malloc_usable_size) */
	bool dead;
} cursors[CURSORS_MAX];
static long stale_uses;
/* Blocks of the freed cursors' size, taken right after each commit: malloc
 * would otherwise hand a freed cursor's block to the next cursor, and a
 * stale pointer would then work by accident. Freed at the next commit.
 * A checkpoint's commit runs on the syncer's thread while the loop reads
 * through its own cursors: the table is under cursors_mu. */
static void *quarantine[CURSORS_MAX];
static pthread_mutex_t cursors_mu = PTHREAD_MUTEX_INITIALIZER;

static int cursor_slot(MDB_cursor *c)
{
	for (int i = 0; i < CURSORS_MAX; i++)
		if (cursors[i].c == c)
			return i;
	return -1;
}

/* Whether c is a cursor its transaction's commit freed (counted). */
static bool cursor_stale(MDB_cursor *c, const char *call)
{
	pthread_mutex_lock(&cursors_mu);
	int i = cursor_slot(c);
	bool stale = i >= 0 && cursors[i].dead;
	pthread_mutex_unlock(&cursors_mu);
	if (!stale)
		return false;
	if (stale_uses++ == 0)
		fprintf(stderr, "FAIL %s on a cursor whose write transaction committed (LMDB freed it): "
			"the store goes on with a stale cursor\n", call);
	return true;
}

int __real_mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **c);
int __wrap_mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **c);
int __wrap_mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **c)
{
	int rc = __real_mdb_cursor_open(txn, dbi, c);
	pthread_mutex_lock(&cursors_mu);
	if (rc == 0) {
		int i = cursor_slot(*c); /* an address freed before, now reused */
		if (i < 0)
			i = cursor_slot(NULL);
		if (i >= 0) {
			cursors[i].c = *c;
			cursors[i].txn = txn;
			cursors[i].size = malloc_usable_size(*c);
			cursors[i].dead = false;
		}
	}
	pthread_mutex_unlock(&cursors_mu);
	return rc;
}

void __real_mdb_cursor_close(MDB_cursor *c);
void __wrap_mdb_cursor_close(MDB_cursor *c);
void __wrap_mdb_cursor_close(MDB_cursor *c)
{
	pthread_mutex_lock(&cursors_mu);
	int i = cursor_slot(c);
	if (i >= 0)
		cursors[i].c = NULL;
	pthread_mutex_unlock(&cursors_mu);
	__real_mdb_cursor_close(c);
}

int __real_mdb_cursor_get(MDB_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op);
int __wrap_mdb_cursor_get(MDB_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op);
int __wrap_mdb_cursor_get(MDB_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	if (cgate_closed && pthread_equal(pthread_self(), main_thread))
		window_gets++; /* (the loop's thread alone sets cgate_closed) */
	if (cursor_stale(c, "mdb_cursor_get"))
		return EINVAL; /* (a freed block: calling LMDB would read garbage) */
	return __real_mdb_cursor_get(c, k, v, op);
}

int __real_mdb_cursor_put(MDB_cursor *c, MDB_val *k, MDB_val *v, unsigned flags);
int __wrap_mdb_cursor_put(MDB_cursor *c, MDB_val *k, MDB_val *v, unsigned flags);
int __wrap_mdb_cursor_put(MDB_cursor *c, MDB_val *k, MDB_val *v, unsigned flags)
{
	if (cursor_stale(c, "mdb_cursor_put"))
		return EINVAL;
	return __real_mdb_cursor_put(c, k, v, flags);
}

int __real_mdb_cursor_del(MDB_cursor *c, unsigned flags);
int __wrap_mdb_cursor_del(MDB_cursor *c, unsigned flags);
int __wrap_mdb_cursor_del(MDB_cursor *c, unsigned flags)
{
	if (cursor_stale(c, "mdb_cursor_del"))
		return EINVAL;
	return __real_mdb_cursor_del(c, flags);
}

/* A commit frees the write transaction's cursors; and a checkpoint's
 * commit starts holding again: the rule "nothing held after a failed
 * hold" runs until the next commit (with turns, a commit can come a few
 * operations after its take). */
int __real_mdb_txn_commit(MDB_txn *txn);
int __wrap_mdb_txn_commit(MDB_txn *txn);
int __wrap_mdb_txn_commit(MDB_txn *txn)
{
	if (pthread_equal(pthread_self(), main_thread)) {
		failed_o = NULL;
	} else {
		pthread_mutex_lock(&cgate_mu);
		if (cgate_closed)
			commits_gated++;
		pthread_cond_broadcast(&cgate_cv); /* (cgate_reached) */
		while (cgate_closed)
			pthread_cond_wait(&cgate_cv, &cgate_mu);
		pthread_mutex_unlock(&cgate_mu);
	}
	pthread_mutex_lock(&cursors_mu);
	for (int i = 0; i < CURSORS_MAX; i++) {
		free(quarantine[i]);
		quarantine[i] = NULL;
		if (cursors[i].c != NULL && cursors[i].txn == txn)
			cursors[i].dead = true;
	}
	pthread_mutex_unlock(&cursors_mu);
	int rc = __real_mdb_txn_commit(txn);
	pthread_mutex_lock(&cursors_mu);
	for (int i = 0; i < CURSORS_MAX; i++)
		if (cursors[i].c != NULL && cursors[i].dead && quarantine[i] == NULL)
			quarantine[i] = malloc(cursors[i].size);
	pthread_mutex_unlock(&cursors_mu);
	return rc;
}

/* ------------------------------------------------------------ msgpack */

static void mp_byte(vsr_buf *b, uint8_t c)
{
	vsr_buf_append(b, &c, 1);
}

static void mp_array(vsr_buf *b, unsigned n) /* n < 16 */
{
	mp_byte(b, (uint8_t)(0x90 | n));
}

static void mp_str(vsr_buf *b, const char *s, size_t n) /* n < 256 */
{
	if (n < 32) {
		mp_byte(b, (uint8_t)(0xa0 | n));
	} else {
		mp_byte(b, 0xd9);
		mp_byte(b, (uint8_t)n);
	}
	vsr_buf_append(b, s, n);
}

static void mp_cstr(vsr_buf *b, const char *s)
{
	mp_str(b, s, strlen(s));
}

static void mp_int(vsr_buf *b, unsigned v) /* v < 128 */
{
	mp_byte(b, (uint8_t)v);
}

/* ------------------------------------------------------------ operations */

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

#define KEYS 300

static void key(char *out, uint32_t i)
{
	snprintf(out, 16, "k%03u", i);
}

/* One storeops operation of 1 to 6 calls. */
static void random_op(vsr_buf *b)
{
	unsigned calls = 1 + rnd(6);
	b->len = 0;
	mp_array(b, calls);
	char k[16], k2[16], v[64];
	for (unsigned i = 0; i < calls; i++) {
		uint32_t what = rnd(100);
		key(k, rnd(KEYS));
		if (what < 45) {
			int vl = snprintf(v, sizeof v, "v%u-%.*s", rnd(1000), (int)rnd(40),
					  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
			mp_array(b, 3);
			mp_cstr(b, "put");
			mp_cstr(b, k);
			mp_str(b, v, (size_t)vl);
		} else if (what < 65) {
			mp_array(b, 2);
			mp_cstr(b, "delete");
			mp_cstr(b, k);
		} else if (what < 80) {
			mp_array(b, 2);
			mp_cstr(b, "get");
			mp_cstr(b, k);
		} else if (what < 95) {
			/* [first, last] with a limit; nil bounds now and then */
			uint32_t a = rnd(KEYS), z = a + rnd(60);
			key(k2, z);
			mp_array(b, 4);
			mp_cstr(b, "scan");
			if (rnd(8) == 0)
				mp_byte(b, 0xc0);
			else
				mp_cstr(b, k);
			if (rnd(8) == 0)
				mp_byte(b, 0xc0);
			else
				mp_cstr(b, k2);
			mp_int(b, 1 + rnd(100));
		} else {
			mp_array(b, 1);
			mp_cstr(b, "count");
		}
	}
}

typedef struct side {
	vsrh_sm *sm;
	vsr_state_machine m;
	vsr_buf reply;
} side;

static uint64_t op;

/* Operation opb applied to a and b at the next op: replies and digests equal.
 * Returns whether they were. */
static bool apply_both(side *a, side *b, vsr_buf *opb)
{
	op++;
	vsr_apply_ctx ctx = {.op = op, .session = 1, .request = op};
	a->reply.len = b->reply.len = 0;
	int ra = a->m.apply(a->m.ctx, &ctx, opb->data, opb->len, &a->reply);
	int rb = b->m.apply(b->m.ctx, &ctx, opb->data, opb->len, &b->reply);
	bool same = ra == rb && a->reply.len == b->reply.len &&
		    memcmp(a->reply.data, b->reply.data, a->reply.len) == 0;
	CHECK(same, "op %llu: replies differ (%d, %zu bytes; %d, %zu bytes)",
	      (unsigned long long)op, ra, a->reply.len, rb, b->reply.len);
	uint64_t da = a->m.digest(a->m.ctx), db = b->m.digest(b->m.ctx);
	CHECK(da == db, "op %llu: digests differ (%016llx, %016llx)", (unsigned long long)op,
	      (unsigned long long)da, (unsigned long long)db);
	return same && da == db;
}

static bool step_both(side *a, side *b, vsr_buf *opb)
{
	random_op(opb);
	return apply_both(a, b, opb);
}

static bool steps(side *a, side *b, vsr_buf *opb, int n)
{
	for (int i = 0; i < n; i++)
		if (!step_both(a, b, opb))
			return false;
	return true;
}

/* A checkpoint at `op` on both: the same digest and size. B's image is read
 * now into *imgb, A's later (images_equal): A's commit may wait for its
 * turn, and reading the image commits it. */
static void take_both(side *a, side *b, vsr_checkpoint *cpa, vsr_checkpoint *cpb, vsr_buf *imgb)
{
	static const uint8_t meta[8] = "held-cp";
	*cpb = (vsr_checkpoint){.op = op, .checksum = op * 31, .timestamp = op};
	*cpa = *cpb;
	int rc = a->m.checkpoint_take(a->m.ctx, cpa, meta, sizeof meta);
	CHECK(rc == VSR_PENDING, "durable take at op %llu: %d", (unsigned long long)op, rc);
	rc = b->m.checkpoint_take(b->m.ctx, cpb, meta, sizeof meta);
	CHECK(rc == VSR_OK, "memory take at op %llu: %d", (unsigned long long)op, rc);
	CHECK(cpa->digest == cpb->digest && cpa->size == cpb->size,
	      "checkpoint at op %llu: digest %016llx/%016llx size %llu/%llu",
	      (unsigned long long)op, (unsigned long long)cpa->digest,
	      (unsigned long long)cpb->digest, (unsigned long long)cpa->size,
	      (unsigned long long)cpb->size);
	imgb->len = 0;
	rc = b->m.checkpoint_read(b->m.ctx, cpb, 0, (uint32_t)cpb->size, imgb);
	CHECK(rc == VSR_OK, "memory image at op %llu: %d", (unsigned long long)op, rc);
}

/* A's image of checkpoint cpa, read now, is byte for byte B's. */
static void images_equal(side *a, const vsr_checkpoint *cpa, const vsr_buf *imgb)
{
	vsr_buf ia = {0};
	int ra = a->m.checkpoint_read(a->m.ctx, cpa, 0, (uint32_t)cpa->size, &ia);
	CHECK(ra == VSR_OK && ia.len == imgb->len && memcmp(ia.data, imgb->data, ia.len) == 0,
	      "checkpoint at op %llu: images differ (read at op %llu)",
	      (unsigned long long)cpa->op, (unsigned long long)op);
	free(ia.data);
}

static uint64_t syncs_of(side *s)
{
	vsrh_sm_stats st;
	vsrh_sm_stats_get(s->sm, &st);
	return st.checkpoint_syncs;
}

/* Deletes of keys LMDB never stores (empty, over 511 bytes; puts of them
 * are refused): nothing to delete, on both, held or not. */
static bool odd_keys_both(side *a, side *b, vsr_buf *opb)
{
	char longk[600];
	memset(longk, 'z', sizeof longk); /* k1zzz...: between k199 and k200 */
	memcpy(longk, "k1", 2);
	opb->len = 0;
	mp_array(opb, 5);
	mp_array(opb, 2);
	mp_cstr(opb, "delete");
	mp_str(opb, "", 0);
	mp_array(opb, 2);
	mp_cstr(opb, "delete");
	mp_byte(opb, 0xda); /* str 16 */
	mp_byte(opb, (uint8_t)(sizeof longk >> 8));
	mp_byte(opb, (uint8_t)(sizeof longk & 0xff));
	vsr_buf_append(opb, longk, sizeof longk);
	mp_array(opb, 2);
	mp_cstr(opb, "get");
	mp_str(opb, "", 0);
	mp_array(opb, 1);
	mp_cstr(opb, "count");
	mp_array(opb, 4); /* a scan from a key longer than any stored */
	mp_cstr(opb, "scan");
	mp_byte(opb, 0xda);
	mp_byte(opb, (uint8_t)(sizeof longk >> 8));
	mp_byte(opb, (uint8_t)(sizeof longk & 0xff));
	vsr_buf_append(opb, longk, sizeof longk);
	mp_byte(opb, 0xc0);
	mp_int(opb, 5);
	return apply_both(a, b, opb);
}

/* A checkpoint whose commit waits for A's turn (an hour), and operations
 * after it (held); *synced: A's syncs before. */
static bool take_waiting(side *a, side *b, vsr_buf *opb, vsr_checkpoint *cpa,
			 vsr_checkpoint *cpb, vsr_buf *imgb, uint64_t *synced)
{
	vsrh_sm_stagger(a->sm, 1, 2, 3600000000000u);
	*synced = syncs_of(a);
	take_both(a, b, cpa, cpb, imgb);
	return steps(a, b, opb, 30);
}

/* A checkpoint waits for A's turn (an hour) when a write cannot be held:
 * the checkpoint is committed then, everything held moves into LMDB and
 * the write after it (vsrh_store.c, lmdb_commit_writes). The writes after
 * that one go through the new transaction's cursor: the old one was freed
 * with the commit. */
static bool nomem_in_turn(side *a, side *b, vsr_buf *opb, vsr_checkpoint *cpa,
			  vsr_checkpoint *cpb, vsr_buf *imgb)
{
	uint64_t synced;
	if (!take_waiting(a, b, opb, cpa, cpb, imgb, &synced))
		return false;
	char big[221], k[16];
	memset(big, 'n', sizeof big);
	opb->len = 0;
	mp_array(opb, 5);
	for (unsigned i = 0; i < 4; i++) { /* the first one's value is not held */
		key(k, 150 + i);
		mp_array(opb, 3);
		mp_cstr(opb, "put");
		mp_cstr(opb, k);
		if (i == 0)
			mp_str(opb, big, sizeof big); /* 223 bytes encoded */
		else
			mp_cstr(opb, "after");
	}
	mp_array(opb, 1);
	mp_cstr(opb, "count");
	atomic_store(&nomem_size, 2 + sizeof big);
	bool ok = apply_both(a, b, opb);
	atomic_store(&nomem_size, 0);
	CHECK(atomic_load(&nomem_hits) == 1, "the held write's malloc failed %d times, not once",
	      atomic_load(&nomem_hits));
	vsrh_sm_on_checkpoint_durable(a->sm, NULL, NULL); /* its sync, if it began */
	CHECK(syncs_of(a) == synced + 1, "a write not held left the checkpoint waiting");
	images_equal(a, cpa, imgb);
	return ok && steps(a, b, opb, 100);
}

static int accept_meta(void *arg, const uint8_t *meta, size_t len)
{
	(void)arg;
	return len == 8 && memcmp(meta, "held-cp", 8) == 0 ? VSR_OK : VSR_EINVAL;
}

/* B takes a checkpoint at the current op and A installs it, as a state
 * transfer would (its image in chunks of 1000 bytes). */
static int install_from_b(side *a, side *b, vsr_checkpoint *later, vsr_buf *imgb)
{
	*later = (vsr_checkpoint){.op = op, .checksum = op * 31, .timestamp = op};
	static const uint8_t meta[8] = "held-cp";
	int rc = b->m.checkpoint_take(b->m.ctx, later, meta, sizeof meta);
	imgb->len = 0;
	if (rc == VSR_OK)
		rc = b->m.checkpoint_read(b->m.ctx, later, 0, (uint32_t)later->size, imgb);
	for (uint64_t at = 0; rc == VSR_OK && at < imgb->len; at += 1000) {
		uint32_t n = imgb->len - at < 1000 ? (uint32_t)(imgb->len - at) : 1000;
		rc = a->m.checkpoint_write(a->m.ctx, later, at, imgb->data + at, n);
	}
	if (rc == VSR_OK)
		rc = a->m.checkpoint_install(a->m.ctx, later, accept_meta, NULL);
	return rc;
}

/* A checkpoint waits for A's turn (an hour), its writes held, when A
 * installs B's checkpoint of a later op (a state transfer): the waiting
 * commit is dropped with the state it belonged to, never made, and A goes
 * on from B's state. */
static bool install_in_turn(side *a, side *b, vsr_buf *opb, vsr_checkpoint *cpa,
			    vsr_checkpoint *cpb, vsr_buf *imgb)
{
	uint64_t synced;
	if (!take_waiting(a, b, opb, cpa, cpb, imgb, &synced))
		return false;
	vsr_checkpoint later;
	int rc = install_from_b(a, b, &later, imgb);
	CHECK(rc == VSR_OK, "install of B's checkpoint at op %llu into A: %d",
	      (unsigned long long)later.op, rc);
	CHECK(a->m.digest(a->m.ctx) == b->m.digest(b->m.ctx), "digests differ after the install");
	/* Nor can a read of the dropped one commit it (with the state after
	 * the install under its name). */
	vsr_buf gone = {0};
	rc = a->m.checkpoint_read(a->m.ctx, cpa, 0, 16, &gone);
	free(gone.data);
	CHECK(rc == VSR_EINVAL, "the dropped checkpoint at op %llu is served (%d)",
	      (unsigned long long)cpa->op, rc);
	vsrh_sm_on_checkpoint_durable(a->sm, NULL, NULL);
	CHECK(syncs_of(a) == synced, "the dropped checkpoint at op %llu was committed and synced",
	      (unsigned long long)cpa->op);
	*cpa = *cpb = later;
	images_equal(a, cpa, imgb); /* the installed one is served */
	return rc == VSR_OK && steps(a, b, opb, 100);
}

/* A's checkpoint is being committed on the syncer's thread (held at the
 * commit gate) when A installs B's checkpoint
 * of a later op: the install first waits for that commit (which opens the
 * gate) and picks it up, then replaces the environment; without the wait
 * it closed the environment under the thread's commit. */
static bool install_while_committing(side *a, side *b, vsr_buf *opb, vsr_checkpoint *cpa,
				     vsr_checkpoint *cpb, vsr_buf *imgb)
{
	vsrh_sm_stagger(a->sm, 1, 2, 0); /* the commit at the take */
	long before = commits_gated;
	commit_gate(true);
	take_both(a, b, cpa, cpb, imgb);
	CHECK(cgate_reached(before), "the checkpoint's commit never reached the syncer's thread");
	/* (No operations first: a scan among them would wait for the commit.) */
	vsr_checkpoint later;
	int rc = install_from_b(a, b, &later, imgb);
	CHECK(rc == VSR_OK, "install of B's checkpoint at op %llu into A while A commits: %d",
	      (unsigned long long)later.op, rc);
	CHECK(a->m.digest(a->m.ctx) == b->m.digest(b->m.ctx),
	      "digests differ after an install during a commit");
	commit_gate(false);
	*cpa = *cpb = later;
	images_equal(a, cpa, imgb);
	return rc == VSR_OK && steps(a, b, opb, 100);
}

static int open_side(side *s, const vsrh_config *cfg, const char *dir, bool durable)
{
	memset(s, 0, sizeof *s);
	s->sm = st_open_script(cfg, "spec/fixtures/storeops.lua", dir, durable, true);
	if (s->sm == NULL)
		return -1;
	vsrh_sm_bind(s->sm, &s->m);
	return 0;
}

int main(int argc, char **argv)
{
	main_thread = pthread_self();
	nomem = argc > 1 && strcmp(argv[1], "--nomem") == 0;
	char dir[] = "/tmp/vsr-held-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	rng = st_seed() * 2654435761u + 1;
	char store[600], plain[600];
	st_path(store, sizeof store, dir, "a");
	st_path(plain, sizeof plain, dir, "b");
	side a, b;
	if (open_side(&a, &cfg, store, true) != 0 || open_side(&b, &cfg, plain, false) != 0)
		return st_end(dir, &cfg, NULL);
	vsr_buf opb = {0}, imgb = {0};
	vsr_checkpoint cp = {0}, cpb;
	bool ok = odd_keys_both(&a, &b, &opb) && steps(&a, &b, &opb, 400);
	/* A's turn (vsrh_sm_stagger, as replica 1 of 2), by round: none (the
	 * commit at the take), 1 ns (at the next operation) or an hour (when
	 * the image is read, after some operations). */
	const uint64_t turns[3] = {0, 1, 3600000000000u};
	for (int round = 0; ok && round < 9; round++) {
		uint64_t turn = turns[round % 3];
		vsrh_sm_stagger(a.sm, 1, 2, turn);
		/* --nomem: a put of this round fails: with a turn of an hour,
		 * within the first 20 (the checkpoint waits for its turn, its
		 * state in the write transaction); otherwise early in even rounds
		 * (while held), anywhere in odd ones (held or draining, or none). */
		put_calls = puts_after_failure = 0;
		failed_o = NULL;
		fail_at = nomem ? 1 + (long)rnd(turn > 1 ? 20 : round % 2 ? 900 : 150) : -1;
		/* The sync waits at the gate: the next operations are held. */
		gate(true);
		uint64_t synced = syncs_of(&a);
		/* Rounds with the commit at the take: operations run while the
		 * syncer's thread makes it (held at the commit gate until the
		 * loop needs it). Not with --nomem: a failed hold needs it. */
		bool gated = !nomem && turn == 0;
		long gated_before = commits_gated;
		if (gated)
			commit_gate(true);
		take_both(&a, &b, &cp, &cpb, &imgb);
		if (gated) {
			CHECK(cgate_reached(gated_before),
			      "round %d: the checkpoint's commit never reached the syncer's thread",
			      round);
			ok = steps(&a, &b, &opb, 10 + (int)rnd(40));
		}
		if (turn == 0)
			images_equal(&a, &cp, &imgb); /* (opens the commit gate) */
		ok = steps(&a, &b, &opb, 20 + (int)rnd(100));
		if (turn > 1) {
			/* Not committed yet, its writes held: then the read commits. */
			CHECK(syncs_of(&a) == synced, "round %d: committed before its turn", round);
			images_equal(&a, &cp, &imgb);
		}
		CHECK(gate_reached(), "round %d: the sync never reached LMDB's sync", round);
		if (turn == 1)
			images_equal(&a, &cp, &imgb);
		ok = ok && steps(&a, &b, &opb, 130 + (int)rnd(150)) &&
		     (round || odd_keys_both(&a, &b, &opb));
		/* The sync ends; the held writes drain a few per operation,
		 * some rounds before the next checkpoint, some at it. */
		gate(false);
		vsrh_sm_on_checkpoint_durable(a.sm, NULL, NULL); /* waits for it */
		if (ok)
			ok = steps(&a, &b, &opb, round % 2 ? 3 : 150);
		CHECK(puts_after_failure == 0,
		      "round %d: %ld writes went to the skip list after a failed one (call %ld): the "
		      "store must hold nothing more until the next checkpoint", round,
		      puts_after_failure, fail_at);
	}
	gate(false);
	vsrh_sm_stats st;
	vsrh_sm_stats_get(a.sm, &st);
	CHECK(st.checkpoint_held_writes > (nomem ? 100u : 500u), "only %llu writes were held",
	      (unsigned long long)st.checkpoint_held_writes);
	CHECK(!nomem || oom_failures >= 4, "only %u of 9 rounds had a failed hold", oom_failures);
	CHECK(stale_uses == 0,
	      "%ld LMDB calls used a cursor of a write transaction that had committed (freed): "
	      "lmdb_commit_writes keeps its cursor across the commit of a checkpoint waiting for "
	      "its turn (step_now in the out-of-memory fallback)", stale_uses);
	CHECK(st.checkpoint_turns == 6, "%llu commits waited for their turn, not 6",
	      (unsigned long long)st.checkpoint_turns);
	/* The commits left the loop, and operations ran while one was made. */
	CHECK(st.checkpoint_commits_off_loop >= (nomem ? 1u : 6u),
	      "only %llu checkpoint commits were made on the syncer's thread",
	      (unsigned long long)st.checkpoint_commits_off_loop);
	CHECK(nomem || (commits_gated == 3 && window_gets > 0),
	      "%ld commits held at the commit gate (want 3), %ld reads while one was", commits_gated,
	      window_gets);
	fail_at = -1; /* (--nomem's failures are over) */
	ok = ok && nomem_in_turn(&a, &b, &opb, &cp, &cpb, &imgb) &&
	     install_in_turn(&a, &b, &opb, &cp, &cpb, &imgb) &&
	     (nomem || install_while_committing(&a, &b, &opb, &cp, &cpb, &imgb));
	/* A last checkpoint waits for its turn, an hour: closing commits it. */
	vsrh_sm_stagger(a.sm, 1, 2, turns[2]);
	if (ok) {
		take_both(&a, &b, &cp, &cpb, &imgb);
		ok = steps(&a, &b, &opb, 50);
	}
	printf("%llu operations, %llu writes held in 10 rounds, 9 takes in their turn (one dropped by an install), "
	       "%llu commits on the syncer's thread, %ld reads while one was held back",
	       (unsigned long long)op, (unsigned long long)st.checkpoint_held_writes,
	       (unsigned long long)st.checkpoint_commits_off_loop, window_gets);
	if (nomem)
		printf(", %u holds failed as out of memory (then written to LMDB at once)",
		       oom_failures);
	printf("\n");
	/* The last checkpoint is what a restart finds. */
	vsrh_sm_on_checkpoint_durable(a.sm, NULL, NULL);
	uint64_t digest = 0;
	vsrh_sm_destroy(a.sm);
	vsrh_sm_destroy(b.sm);
	vsr_checkpoint reopened;
	if (st_open(&cfg, store, &reopened, &digest) == 0)
		CHECK(reopened.op == cp.op && reopened.digest == cp.digest,
		      "reopened at op %llu (digest %016llx), the last checkpoint is op %llu (%016llx)",
		      (unsigned long long)reopened.op, (unsigned long long)reopened.digest,
		      (unsigned long long)cp.op, (unsigned long long)cp.digest);
	free(opb.data);
	free(imgb.data);
	free(a.reply.data);
	free(b.reply.data);
	return st_end(dir, &cfg, nomem ? "held writes out of memory: same replies, digests and "
					 "checkpoints as memory"
				       : "held writes: same replies, digests and checkpoints as memory");
}
