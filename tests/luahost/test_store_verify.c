/* test_store_verify.c - the store check at restart (host_check_store) on
 * LMDB files whose damaged pages make LMDB read gigabytes or loop.
 *
 * LMDB trusts its pages. A damaged leaf can claim a value of up to 4 GiB,
 * and the store's file is a sparse reservation of 8 GiB, so LMDB hands the
 * check 4 GiB of holes to hash for every such record (seconds a record); and
 * a page whose header says mp_lower 8 (below the header's 16 bytes) has
 * 2^31 - 4 keys to LMDB, whose binary search over them never ends. One CI
 * run of process_corrupt's noise round sat silent for 15 s at a replica's
 * start: noise page 20 of its seed, as the main database's root, is such a
 * page. The check must now answer "damaged" (the replica then rejoins as
 * amnesiac and is repaired from the others), naming the bound:
 *   - 16 records whose values claim 4 GiB each: "more than the N left in the
 *     pages its environment uses", at once;
 *   - one record that claims more than the whole checkpoint's bytes, but
 *     fits in the file: "its records go past the checkpoint", at once;
 *   - the checkpoint's own head record claiming 4 GiB, at once;
 *   - the main database's root page with 2^31 keys: "ran past the check's
 *     CPU limit" (2 s of CPU for this small store).
 * The intact store and the store put back must pass. Each check runs in a
 * child given DEADLINE_MS to answer; one that does not is killed (with the
 * check's own child) and fails the test.
 *
 * With --freelist (ctest luahost_store_freelist): damage to LMDB's free
 * list, which no record shows and which the check passed before: a page
 * listed free that a tree uses (a kv leaf, the kv root, the meta page of
 * the checkpoint record, the 2nd page of a big value), one listed twice,
 * past the last page, a meta page, one left out (the pages do not add up),
 * and a record keyed by a transaction to come. First a seeded soak: 40 checkpoints of random puts (up to 20,000
 * bytes) and deletes, the store reopened every 8th, each of which must pass;
 * last, what the check prevents: a commit into a store with a live leaf
 * listed free damages its records. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "host_verify.h"
#include "kv_op.h"
#include "lmdb_places.h"
#include "store_test.h"

#define KEYS 400
#define PAGE 4096
#define DEADLINE_MS 30000
#define HUGE_CLAIM 0xfffff000u

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* host_check_store on `store` with the superblock naming cp, in a child of
 * its own process group: its result (0, 1, -1; 99 when it did not answer
 * within DEADLINE_MS, 98 when it died) and its sentence in why, the time
 * taken in *ms. */
static int check_timed(const char *store, const vsr_checkpoint *cp, char *why, size_t why_len,
		       uint64_t *ms)
{
	int fds[2];
	if (pipe(fds) != 0)
		return 98;
	fflush(NULL);
	uint64_t t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		close(fds[0]);
		vsr_superblock sb = {.checkpoint_op = cp->op, .checkpoint_checksum = cp->checksum};
		char msg[600] = "";
		int rc = host_check_store((void *)store, &sb, msg + 1, sizeof msg - 1);
		msg[0] = (char)('1' + rc); /* '0', '1', '2' */
		ssize_t n = write(fds[1], msg, strlen(msg));
		_exit(n > 0 ? 0 : 1);
	}
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		return 98;
	}
	setpgid(pid, pid); /* either side may come first */
	size_t got = 0;
	char msg[600];
	bool late = false;
	for (;;) {
		uint64_t t = now_ms();
		if (t - t0 >= DEADLINE_MS) {
			late = true;
			break;
		}
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		int r = poll(&p, 1, (int)(DEADLINE_MS - (t - t0)));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(fds[0], msg + got, sizeof msg - 1 - got);
		if (n > 0 && (got += (size_t)n) < sizeof msg - 1)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	*ms = now_ms() - t0;
	close(fds[0]);
	if (late)
		kill(-pid, SIGKILL); /* the check's own child too */
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	msg[got] = '\0';
	snprintf(why, why_len, "%s", got > 1 ? msg + 1 : "");
	if (late)
		return 99;
	if (got == 0 || !WIFEXITED(status))
		return 98;
	return msg[0] - '1';
}

/* The leaf nodes of the record whose key is `key` up to page `last`: the
 * offsets in the file of their node headers (data size: 4 bytes, flags, key
 * size) into at[], at most max; returns how many. Found by the key's bytes
 * in a leaf page (P_LEAF in the page's flags) after the key's size, as LMDB
 * lays a node out; every copy (a page the last commit freed holds one too). */
static int nodes_of(int fd, uint64_t last, const char *key, off_t *at, int max)
{
	size_t klen = strlen(key);
	static uint8_t page[PAGE];
	int n = 0;
	for (uint64_t pg = 2; pg <= last && n < max; pg++) {
		if (pread(fd, page, PAGE, (off_t)(pg * PAGE)) != PAGE)
			break;
		if (!(page[10] & 0x02) || page[10] & 0x01) /* a leaf page, not a branch */
			continue;
		for (size_t i = 16 + 8; i + klen <= PAGE && n < max; i++)
			if (memcmp(page + i, key, klen) == 0 && page[i - 2] == klen && page[i - 1] == 0)
				at[n++] = (off_t)(pg * PAGE + i - 8);
	}
	return n;
}

/* The data size of the node at `at` set to size; the old one in *old. */
static bool set_size(int fd, off_t at, uint32_t size, uint32_t *old)
{
	uint8_t b[4];
	if (pread(fd, b, 4, at) != 4)
		return false;
	if (old != NULL)
		*old = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	uint8_t n[4] = {(uint8_t)size, (uint8_t)(size >> 8), (uint8_t)(size >> 16),
			(uint8_t)(size >> 24)};
	return pwrite(fd, n, 4, at) == 4;
}

/* The u64 at byte `at` of the newest meta page (by mm_txnid, at 144): its
 * last page number (mm_last_pg) at 136, the main database's root page
 * (mm_dbs[1].md_root) at 128; 0 when unreadable. */
static uint64_t meta_u64(int fd, int at)
{
	uint8_t m[2][160];
	uint64_t v[2] = {0}, txn[2] = {0};
	for (int k = 0; k < 2; k++) {
		if (pread(fd, m[k], sizeof m[k], k * PAGE) != (ssize_t)sizeof m[k])
			return 0;
		for (int i = 7; i >= 0; i--) {
			v[k] = v[k] << 8 | m[k][at + i];
			txn[k] = txn[k] << 8 | m[k][144 + i];
		}
	}
	return v[txn[1] > txn[0]];
}

/* One check, and what it must answer: `want` (0 intact, 1 damaged) with
 * `says` in its sentence (NULL: anything), within DEADLINE_MS. */
static void expect(const char *what, const char *store, const vsr_checkpoint *cp, int want,
		   const char *says)
{
	char why[600];
	uint64_t ms = 0;
	int rc = check_timed(store, cp, why, sizeof why, &ms);
	CHECK(rc != 99, "%s: the check did not answer within %d ms (killed): it loops, or reads what the "
			"damaged pages claim",
	      what, DEADLINE_MS);
	CHECK(rc == want, "%s: the check answered %d, not %d: %s", what, rc, want, why);
	CHECK(says == NULL || strstr(why, says) != NULL, "%s: the check says \"%s\", not \"%s\"",
	      what, why, says);
	printf("%s: %s in %llu ms: %s\n", what, rc == 0 ? "intact" : rc == 1 ? "damaged" : "?",
	       (unsigned long long)ms, why);
}

/* ------------------------------------------------------ the free list
 *
 * LMDB's free list (its database 0: a record per transaction that freed
 * pages, its value a count and the page numbers) is where the next commit
 * takes pages from. A page number there that names a page the tree still
 * uses makes that commit write over live records; one named twice is handed
 * out twice; one past the last page or a meta page is nothing LMDB may
 * write. None of these changes a record, so reading every record (the
 * check before) passed them all. Found through LMDB's own API in a
 * read-only environment: a value points into the map, and the page it lies
 * in starts with its page number. */

typedef struct fl_place {
	off_t idl;	   /* where the first free-list value of 3 pages or more in its node lies */
	uint64_t n;	   /* its count */
	uint64_t pg[3];	   /* its first three page numbers */
	uint64_t leaf;	   /* the (live) leaf page holding the key sk000100 */
	uint64_t kv_root;  /* the kv database's root page (a branch page) */
	uint64_t ckpt;	   /* the leaf page holding the checkpoint record (meta database) */
	uint64_t big;	   /* the first overflow page of a kv value of 3 pages or more */
	off_t oldest;	   /* where the oldest free-list value with a page lies */
	uint64_t oldest_n; /* its count */
} fl_place;

static bool fl_find(const char *store, fl_place *f)
{
	char path[400];
	st_path(path, sizeof path, store, "db");
	memset(f, 0, sizeof *f);
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_dbi main_db;
	MDB_val k, v;
	bool found = false;
	int rc = lp_open(path, &env, &txn);
	if (rc == 0)
		rc = lp_oldest_free(txn, &f->oldest, &f->oldest_n);
	if (rc == 0)
		rc = mdb_cursor_open(txn, 0, &cur);
	for (int step = MDB_FIRST; rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, step)) == 0;
	     step = MDB_NEXT) {
		const uint64_t *idl = v.mv_data;
		if (v.mv_size >= 4 * 8 && idl[0] >= 3 && v.mv_size <= PAGE / 4) { /* in its node */
			f->idl = lp_off(v.mv_data);
			f->n = idl[0];
			memcpy(f->pg, idl + 1, sizeof f->pg);
			found = true;
			break;
		}
	}
	CHECK(found, "no free-list value with 3 pages in %s (%s)", path, mdb_strerror(rc));
	rc = txn ? mdb_dbi_open(txn, NULL, 0, &main_db) : EINVAL;
	if (rc == 0) /* 100 bytes: in the leaf's node */
		rc = lp_value_page(txn, "kvc", "sk000100", &f->leaf);
	MDB_cursor *kc = NULL;
	MDB_dbi kv;
	if (rc == 0 && (rc = mdb_dbi_open(txn, "kvc", 0, &kv)) == 0 &&
	    (rc = mdb_cursor_open(txn, kv, &kc)) == 0) {
		for (int step = MDB_FIRST; (rc = mdb_cursor_get(kc, &k, &v, step)) == 0; step = MDB_NEXT)
			if (v.mv_size > 2 * PAGE) {
				f->big = lp_page(v.mv_data); /* after the overflow page's header */
				break;
			}
		mdb_cursor_close(kc);
	}
	k = (MDB_val){3, "kvc"};
	if (rc == 0 && (rc = mdb_get(txn, main_db, &k, &v)) == 0 && v.mv_size == 48)
		f->kv_root = ((const uint64_t *)v.mv_data)[5];
	if (rc == 0)
		rc = lp_value_page(txn, "meta", "checkpoint", &f->ckpt);
	CHECK(rc == 0 && f->leaf >= 2 && f->kv_root >= 2 && f->ckpt >= 2 && f->big >= 2,
	      "the pages of %s: %s (leaf %llu, kv root %llu, checkpoint %llu)", path,
	      mdb_strerror(rc), (unsigned long long)f->leaf, (unsigned long long)f->kv_root,
	      (unsigned long long)f->ckpt);
	if (cur)
		mdb_cursor_close(cur);
	lp_close(env, txn);
	return found && rc == 0;
}

static bool put_u64(int fd, off_t at, uint64_t v)
{
	return pwrite(fd, &v, 8, at) == 8;
}

/* The store under `store` opened as a restart does, at its checkpoint. */
static vsrh_sm *reopen(const vsrh_config *cfg, const char *store)
{
	vsrh_sm *sm = st_create(cfg, store, true, false);
	if (sm == NULL)
		return NULL;
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_checkpoint cp;
	vsr_buf meta = {0};
	int rc = m.checkpoint_open(m.ctx, &cp, &meta);
	free(meta.data);
	CHECK(rc == VSR_OK, "checkpoint_open %s: %d", store, rc);
	return sm;
}

/* A free-list page number (i of the value at f->idl) set to pg, checked,
 * and put back. */
static void fl_case(const char *what, int fd, const fl_place *f, int i, uint64_t pg,
		    const char *store, const vsr_checkpoint *cp, const char *says)
{
	off_t at = f->idl + 8 * (1 + i);
	CHECK(put_u64(fd, at, pg), "set a free page number");
	expect(what, store, cp, 1, says);
	CHECK(put_u64(fd, at, f->pg[i]), "put back a free page number");
}

/* {op = "delete", key = "kNNNNNN"} in msgpack. */
static void kv_delete_op(vsr_buf *b, int key)
{
	char k[16];
	int kl = snprintf(k, sizeof k, "k%06d", key);
	b->len = 0;
	uint8_t head[] = {0x82, 0xa2, 'o', 'p', 0xa6, 'd', 'e', 'l', 'e', 't', 'e', 0xa3, 'k', 'e', 'y'};
	vsr_buf_append(b, head, sizeof head);
	uint8_t kh = (uint8_t)(0xa0 | kl);
	vsr_buf_append(b, &kh, 1);
	vsr_buf_append(b, k, (size_t)kl);
}

/* Healthy stores must pass, whatever LMDB did to its pages: SOAK_ROUNDS
 * checkpoints of random puts (values of 0 to 20,000 bytes: overflow pages,
 * rewritten in place when they shrink within a transaction) and deletes
 * (pages merged and freed) over 1,000 keys, the store reopened every 8th.
 * After each checkpoint the check must pass: the free list it reads adds up
 * on every store LMDB wrote. Seeded (the seed printed). */
#define SOAK_ROUNDS 40
static void soak(const vsrh_config *cfg, const char *store, uint64_t *op)
{
	unsigned seed = (unsigned)time(NULL);
	const char *env = getenv("VSRH_TEST_SEED");
	if (env != NULL)
		seed = (unsigned)strtoul(env, NULL, 10);
	printf("soak seed %u (VSRH_TEST_SEED=%u to repeat)\n", seed, seed);
	srand(seed);
	vsrh_sm *sm = reopen(cfg, store);
	vsr_buf b = {0}, reply = {0};
	vsr_checkpoint cp;
	int passed = 0;
	for (int round = 0; sm != NULL && round < SOAK_ROUNDS; round++) {
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		for (int i = 0; i < 300; i++) {
			int key = rand() % 1000, r = rand() % 100;
			size_t len = r < 50 ? 100 : r < 80 ? (size_t)(rand() % 3000)
							   : 3000 + (size_t)(rand() % 17000);
			if (rand() % 10 < 3)
				kv_delete_op(&b, key);
			else
				kv_put_op(&b, key, len, round);
			vsr_apply_ctx a = {.op = ++*op, .session = 1, .request = *op};
			reply.len = 0;
			m.apply(m.ctx, &a, b.data, b.len, &reply); /* a missing key's delete fails */
		}
		int rc = st_take(sm, *op, NULL, NULL, &cp);
		CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
		if (round % 8 == 7) {
			vsrh_sm_destroy(sm);
			sm = reopen(cfg, store);
		}
		char why[600];
		uint64_t ms;
		rc = check_timed(store, &cp, why, sizeof why, &ms);
		CHECK(rc == 0, "soak round %d (seed %u): a healthy store fails the check (%d): %s", round,
		      seed, rc, why);
		passed += rc == 0;
	}
	printf("soak: %d of %d checkpoints of a healthy store pass\n", passed, SOAK_ROUNDS);
	free(b.data);
	free(reply.data);
	if (sm != NULL)
		vsrh_sm_destroy(sm);
}

static int freelist_cases(vsrh_config *cfg, const char *dir, const char *store, const char *file,
			  uint64_t op)
{
	/* Rounds 2 to 5, a checkpoint each: every commit frees the pages it
	 * copied, so the free list has values of several pages. */
	soak(cfg, store, &op);
	vsrh_sm *sm = reopen(cfg, store);
	if (sm == NULL)
		return st_end(dir, cfg, NULL);
	vsr_checkpoint cp;
	for (int round = 2; round <= 5; round++) {
		int rc = st_round_and_take(sm, KEYS, round, &op, &cp);
		CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
	}
	vsrh_sm_destroy(sm);
	expect("after 5 checkpoints", store, &cp, 0, NULL);
	fl_place f;
	int fd = open(file, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", file, strerror(errno));
	if (fd < 0 || !fl_find(store, &f)) {
		if (fd >= 0)
			close(fd);
		return st_end(dir, cfg, NULL);
	}
	uint64_t last = meta_u64(fd, 136);
	printf("free list: %llu pages at %lld (%llu, %llu, %llu ...); last page %llu; sk000100 on "
	       "leaf %llu, kv root %llu, checkpoint record on %llu\n",
	       (unsigned long long)f.n, (long long)f.idl, (unsigned long long)f.pg[0],
	       (unsigned long long)f.pg[1], (unsigned long long)f.pg[2], (unsigned long long)last,
	       (unsigned long long)f.leaf, (unsigned long long)f.kv_root, (unsigned long long)f.ckpt);
	fl_case("a free page that is a live leaf", fd, &f, 0, f.leaf, store, &cp,
		"a leaf page of its kvc database) and in its free list");
	fl_case("a free page that is the kv root (a branch)", fd, &f, 1, f.kv_root, store, &cp,
		"a branch page of its kvc database) and in its free list");
	fl_case("a free page that holds the checkpoint record", fd, &f, 2, f.ckpt, store, &cp,
		"a leaf page of its meta database) and in its free list");
	fl_case("a free page that is the 2nd page of a big kv value", fd, &f, 0, f.big + 1, store, &cp,
		"an overflow page of its kvc database) and in its free list");
	fl_case("a free page named twice", fd, &f, 1, f.pg[0], store, &cp, "twice");
	fl_case("a free page past the last page", fd, &f, 0, last + 3, store, &cp,
		"not one of its pages");
	fl_case("a meta page listed free", fd, &f, 0, 1, store, &cp, "not one of its pages");
	/* The free-list value's key (the transaction that freed its pages,
	 * before it in its node) naming one newer than the store's newest. */
	uint64_t key = 0;
	CHECK(pread(fd, &key, 8, f.idl - 8) == 8 && key > 0 && key < 1000000,
	      "the free-list value's key %llu", (unsigned long long)key);
	CHECK(put_u64(fd, f.idl - 8, 1000000), "set the free-list key");
	expect("a free-list record of a transaction to come", store, &cp, 1,
	       "its free list has a record of transaction 1000000, newer than its newest");
	CHECK(put_u64(fd, f.idl - 8, key), "put back the free-list key");
	/* A page left out of the free list (the count and the value's size one
	 * page less): nothing writes over it, but the pages do not add up. */
	off_t node = f.idl - 8 - 8; /* node header (size, flags, key size), key (8 bytes) */
	uint32_t size = 0;
	CHECK(set_size(fd, node, (uint32_t)(8 * f.n), &size) && size == 8 * (f.n + 1),
	      "the free-list value's node (size %u, count %llu)", size, (unsigned long long)f.n);
	CHECK(put_u64(fd, f.idl, f.n - 1), "set the free-list count");
	expect("a free page left out of the free list", store, &cp, 1, "do not add up");
	CHECK(put_u64(fd, f.idl, f.n) && set_size(fd, node, size, NULL), "put back the count");
	expect("all put back", store, &cp, 0, NULL);

	/* What the check prevents: with a live leaf listed free as the first
	 * page the next commit takes (LMDB takes the last, smallest, page of
	 * the oldest free-list value first), that commit (in a child: LMDB may
	 * crash on what it finds) writes new contents over the leaf while the
	 * tree still reads it as the old one: the records themselves are then
	 * damaged, which the check before found only at the next start, after
	 * the replica had served from them. */
	CHECK(put_u64(fd, f.oldest + 8 * (off_t)f.oldest_n, f.leaf), "list the live leaf free");
	close(fd);
	pid_t pid = fork();
	if (pid == 0) {
		vsrh_sm *w = reopen(cfg, store);
		uint64_t wop = op;
		vsr_checkpoint wcp;
		int rc = w ? st_round_and_take(w, KEYS, 60, &wop, &wcp) : -1;
		if (w)
			vsrh_sm_destroy(w);
		_exit(rc == VSR_OK || rc == VSR_PENDING ? 0 : 1);
	}
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	printf("writing into the store with a live leaf listed free: the writer %s (status %d)\n",
	       WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "committed" : "failed", status);
	char why[600];
	uint64_t ms;
	int rc = check_timed(store, &cp, why, sizeof why, &ms);
	printf("after writing into it: %s\n", why);
	CHECK(rc == 1 && strstr(why, "free list") == NULL,
	      "after a commit into a store with a live leaf listed free, its records are not "
	      "damaged (%d): %s",
	      rc, why);
	return st_end(dir, cfg,
		      "the store check reads LMDB's free list: a page listed free that a tree uses, "
		      "one listed twice or past the end, or pages that do not add up are damage");
}

int main(int argc, char **argv)
{
	bool freelist = argc > 1 && strcmp(argv[1], "--freelist") == 0;
	char dir[] = "/tmp/vsr-verify-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	char store[300], file[400];
	st_path(store, sizeof store, dir, "store");
	st_path(file, sizeof file, store, "db/data.mdb");
	vsrh_sm *sm = st_create(&cfg, store, true, true);
	if (sm == NULL)
		return st_end(dir, &cfg, NULL);
	uint64_t op = 0;
	vsr_checkpoint cp;
	int rc = st_round_and_take(sm, KEYS, 1, &op, &cp);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
	vsrh_sm_destroy(sm);
	expect("the intact store", store, &cp, 0, NULL);
	if (freelist)
		return freelist_cases(&cfg, dir, store, file, op);

	int fd = open(file, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", file, strerror(errno));
	if (fd < 0)
		return st_end(dir, &cfg, NULL);
	/* 16 records (in key order, from the first) claiming 4 GiB each. */
	uint64_t last = meta_u64(fd, 136), room = (last + 1) * PAGE;
	off_t at[64];
	uint32_t old[64];
	int n = 0, first = 0;
	for (int i = 0; i < 16; i++) {
		char key[16];
		snprintf(key, sizeof key, "sk%06d", i + 7); /* round 1 puts keys 7.. */
		int got = nodes_of(fd, last, key, at + n, 64 - n);
		CHECK(got > 0, "no leaf node of %s in %s", key, file);
		if (i == 0)
			first = got;
		for (int j = n; j < n + got; j++)
			CHECK(set_size(fd, at[j], HUGE_CLAIM, &old[j]), "set a size at %lld",
			      (long long)at[j]);
		n += got;
	}
	expect("16 records claiming 4 GiB each", store, &cp, 1,
	       "left in the pages its environment uses");
	for (int j = 0; j < n; j++)
		CHECK(set_size(fd, at[j], old[j], NULL), "put back the size at %lld", (long long)at[j]);
	expect("the sizes put back", store, &cp, 0, NULL);

	/* The first record claiming the whole image (more than the
	 * checkpoint's records hold together), within the file's pages. */
	CHECK(cp.size + 64 < room, "the image (%llu bytes) fits in the environment's %llu",
	      (unsigned long long)cp.size, (unsigned long long)room);
	if (cp.size + 64 < room) {
		for (int j = 0; j < first; j++)
			CHECK(set_size(fd, at[j], (uint32_t)cp.size, NULL), "set a size");
		expect("a record claiming the whole image", store, &cp, 1,
		       "its records go past the checkpoint");
		for (int j = 0; j < first; j++)
			CHECK(set_size(fd, at[j], old[j], NULL), "put back a size");
	}

	/* The checkpoint's head record (meta database, key "head"). */
	n = nodes_of(fd, last, "head", at, 64);
	CHECK(n > 0, "no leaf node of the head record in %s", file);
	for (int j = 0; j < n; j++)
		CHECK(set_size(fd, at[j], HUGE_CLAIM, &old[j]), "set the head's size");
	expect("the head record claiming 4 GiB", store, &cp, 1, "its checkpoint record claims");
	for (int j = 0; j < n; j++)
		CHECK(set_size(fd, at[j], old[j], NULL), "put back the head's size");
	/* LMDB looping: the main database's root page with the flags of a
	 * leaf of fixed-size keys (P_LEAF | P_LEAF2) and mp_lower 8, below the
	 * header's 16 bytes: NUMKEYS wraps to 2^31 - 4, and mdb_dbi_open's
	 * binary search (low + high overflows) never ends. The header of noise
	 * page 20 of process_corrupt's seed 1760655174 (flags 0xe32, lower 8)
	 * did the same as the root. */
	uint64_t root = meta_u64(fd, 128);
	uint8_t hdr[4], loop[4] = {0x22, 0x00, 0x08, 0x00};
	CHECK(root >= 2 && root <= last, "the main root page %llu", (unsigned long long)root);
	if (root >= 2 && root <= last && pread(fd, hdr, 4, (off_t)(root * PAGE + 10)) == 4 &&
	    pwrite(fd, loop, 4, (off_t)(root * PAGE + 10)) == 4) {
		expect("the root page claiming 2^31 keys (LMDB loops)", store, &cp, 1,
		       "ran past the check's CPU limit");
		CHECK(pwrite(fd, hdr, 4, (off_t)(root * PAGE + 10)) == 4, "put back the root's header");
	}
	expect("all put back", store, &cp, 0, NULL);
	close(fd);
	return st_end(dir, &cfg,
		      "the store check bounds what damaged pages claim and how long LMDB may "
		      "loop: it answered \"damaged\", and the store put back passes");
}
