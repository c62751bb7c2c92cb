/* test_store_powercut.c - a power cut between a checkpoint's commit and its
 * sync (docs/storage.md, "Checkpoints without a stall").
 *
 * A durable vsr.store commits a checkpoint without a sync and syncs it on a
 * thread. With MDB_WRITEMAP the kernel may write LMDB's new meta page before
 * the pages it points to, so a power cut can leave a newest transaction that
 * points at pages that never reached the disk. This test builds exactly
 * that file: data.mdb as it was once checkpoint A was synced, with the meta
 * page of the next checkpoint B written over it and none of B's pages, and
 * the `synced` record naming A. Then, as after a reboot (VSRH_BOOT_ID):
 *   1. the torn file really is damaged: the store check rejects it (or
 *      crashes, in a child) - so the test can fail;
 *   2. vsrh_store_settle_dir rolls it back to A, the check passes, and the
 *      state machine opens checkpoint A with A's digest;
 *   3. the intact directory, whose `synced` names B, is left alone after a
 *      reboot and opens B;
 *   5. the rolled-back store goes on: three checkpoints of more puts on
 *      top of A, and the store check (records and free list) still passes:
 *      a healthy store is never judged damaged after a rollback (that
 *      would reset every replica after a cluster-wide power cut). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv_op.h"
#include "store_test.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"
#include "vsrh_store.h"
#include "vsrh_store_sync.h"

#define KEYS 3000

/* Copies the data extents of `from` into a new file `to` (data.mdb is
 * sparse: its length is the 8 GiB map). */
static int copy_sparse(const char *from, const char *to)
{
	int in = open(from, O_RDONLY);
	int rc = in >= 0 ? st_copy_sparse(in, to) : -1;
	if (in >= 0)
		close(in);
	return rc;
}

static int copy_file(const char *from, const char *to)
{
	char cmd[2000];
	snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
	return system(cmd);
}


/* Applies KEYS puts (round r) and takes the checkpoint at op; waits until
 * it is durable. */
/* A copy of the store directory `from` (its db/data.mdb and `synced`) as
 * `to`, a new directory. */
static void copy_store(const char *from, const char *to)
{
	char f1[900], f2[900];
	mkdir(to, 0700);
	st_path(f1, sizeof f1, to, "db");
	mkdir(f1, 0700);
	st_path(f1, sizeof f1, from, "db/data.mdb");
	st_path(f2, sizeof f2, to, "db/data.mdb");
	CHECK(copy_sparse(f1, f2) == 0, "copy %s", f1);
	st_path(f1, sizeof f1, from, "synced");
	st_path(f2, sizeof f2, to, "synced");
	CHECK(copy_file(f1, f2) == 0, "copy %s", f1);
}

static vsr_checkpoint put_round_and_checkpoint(vsrh_sm *sm, int round, uint64_t *op)
{
	vsr_checkpoint cp;
	int rc = st_round_and_take(sm, KEYS, round, op, &cp); /* waits for the sync */
	CHECK(rc == VSR_PENDING, "a durable store's checkpoint is pending until synced, got %d", rc);
	return cp;
}

/* The store check in a child (a torn file may crash LMDB): 0 intact, 1
 * damaged, 2 crashed. */
static int check_in_child(const char *store, uint64_t min_op, uint64_t checksum, char *why,
			  size_t why_len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		char msg[512] = "";
		int rc = vsrh_store_verify_dir(store, min_op, checksum, msg, sizeof msg);
		if (write(fds[1], msg, strlen(msg)) < 0)
			_exit(9);
		_exit(rc == 0 ? 0 : 1);
	}
	close(fds[1]);
	int status = st_child_wait(pid, fds[0], why, why_len);
	if (WIFSIGNALED(status)) {
		snprintf(why, why_len, "LMDB crashed (signal %d)", WTERMSIG(status));
		return 2;
	}
	return WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(void)
{
	char dir[] = "/tmp/vsr-powercut-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	char live[600], torn[600], f1[900], f2[900];
	st_path(live, sizeof live, dir, "live");
	st_path(torn, sizeof torn, dir, "torn");
	setenv("VSRH_BOOT_ID", "boot-before-the-cut", 1);

	/* Checkpoint A, synced; a copy of the disk as it was then. */
	vsrh_sm *sm = st_create(&cfg, live, true, true);
	if (sm == NULL)
		return 1;
	uint64_t op = 0;
	vsr_checkpoint a = put_round_and_checkpoint(sm, 1, &op);
	uint64_t digest_a = vsrh_sm_digest(sm);
	copy_store(live, torn);

	/* Checkpoint B: every key rewritten, and more. */
	vsr_checkpoint b = put_round_and_checkpoint(sm, 2, &op);
	uint64_t digest_b = vsrh_sm_digest(sm);
	CHECK(digest_a != digest_b, "the two checkpoints differ");
	vsrh_sm_destroy(sm);

	/* The cut: B's meta page reached the disk, its pages did not. Meta
	 * pages are pages 0 and 1 (4 KiB here); B's is the one with the
	 * higher transaction id, which LMDB picks. */
	st_path(f1, sizeof f1, live, "db/data.mdb");
	st_path(f2, sizeof f2, torn, "db/data.mdb");
	int lf = open(f1, O_RDONLY), tf = open(f2, O_WRONLY);
	long ps = sysconf(_SC_PAGESIZE);
	char *page = malloc((size_t)ps * 2);
	CHECK(lf >= 0 && tf >= 0 && pread(lf, page, (size_t)ps * 2, 0) == ps * 2, "read metas");
	uint64_t t0, t1;
	memcpy(&t0, page + 16 + 128, 8);
	memcpy(&t1, page + ps + 16 + 128, 8);
	int newest = t1 > t0;
	CHECK(pwrite(tf, page + newest * ps, (size_t)ps, newest * ps) == ps, "write the meta");
	close(lf);
	close(tf);
	free(page);

	/* After the reboot. */
	setenv("VSRH_BOOT_ID", "boot-after-the-cut", 1);
	char why[512];
	int torn_check = check_in_child(torn, a.op, a.checksum, why, sizeof why);
	CHECK(torn_check != 0, "the torn store must not pass the check as it is");
	printf("torn newest transaction, before the rollback: %s\n", why);

	/* 4. The same torn disk with its `synced` record damaged: it names
	 * no transaction, so it cannot vouch for the newest; rolled back all
	 * the same, and said (before, a damaged record read as "never synced"
	 * and the torn transaction stayed). */
	char torn2[600];
	st_path(torn2, sizeof torn2, dir, "torn2");
	copy_store(torn, torn2);
	st_path(f2, sizeof f2, torn2, "synced");
	int sf = open(f2, O_RDWR);
	uint8_t byte = 0;
	CHECK(sf >= 0 && pread(sf, &byte, 1, 20) == 1, "read %s", f2);
	byte ^= 0x10;
	CHECK(pwrite(sf, &byte, 1, 20) == 1, "flip a byte of %s", f2);
	close(sf);
	bool rolled = false;
	CHECK(vsrh_store_settle_dir(torn2, &rolled, why, sizeof why) == 0, "settle: %s", why);
	CHECK(rolled && strstr(why, "is damaged") != NULL,
	      "a torn newest transaction with a damaged `synced` is rolled back and said: %s",
	      rolled ? why : "not rolled back");
	printf("settle, synced damaged: %s\n", why);
	CHECK(check_in_child(torn2, a.op, a.checksum, why, sizeof why) == 0,
	      "after that rollback the store is intact: %s", why);

	rolled = false;
	CHECK(vsrh_store_settle_dir(torn, &rolled, why, sizeof why) == 0, "settle: %s", why);
	CHECK(rolled, "a torn newest transaction after a reboot is rolled back");
	printf("settle: %s\n", why);
	int after = check_in_child(torn, a.op, a.checksum, why, sizeof why);
	CHECK(after == 0, "after the rollback the store is intact: %s", why);
	uint64_t d = 0;
	vsr_checkpoint got;
	st_open(&cfg, torn, &got, &d);
	CHECK(got.op == a.op && got.digest == a.digest && d == digest_a,
	      "opens checkpoint A (op %llu, got %llu)", (unsigned long long)a.op,
	      (unsigned long long)got.op);

	/* 5. The rolled-back store goes on from A. */
	sm = st_create(&cfg, torn, true, false);
	if (sm != NULL) {
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		vsr_buf meta = {0};
		CHECK(m.checkpoint_open(m.ctx, &got, &meta) == VSR_OK && got.op == a.op,
		      "reopens at A");
		free(meta.data);
		op = a.op;
		vsr_checkpoint c = a;
		for (int r = 3; r < 6; r++)
			c = put_round_and_checkpoint(sm, r, &op);
		vsrh_sm_destroy(sm);
		int on = check_in_child(torn, c.op, c.checksum, why, sizeof why);
		CHECK(on == 0, "three checkpoints after the rollback: the store check finds it "
			       "damaged: %s", why);
		if (on == 0)
			printf("three checkpoints after the rollback: the store check passes\n");
	}

	/* The intact disk: `synced` names B, nothing to roll back. */
	rolled = true;
	CHECK(vsrh_store_settle_dir(live, &rolled, why, sizeof why) == 0 && !rolled,
	      "a synced newest transaction stays");
	st_open(&cfg, live, &got, &d);
	CHECK(got.op == b.op && got.digest == b.digest && d == digest_b,
	      "opens checkpoint B (op %llu, got %llu)", (unsigned long long)b.op,
	      (unsigned long long)got.op);

	return st_end(dir, &cfg,
		      "power cut between a checkpoint's commit and its sync: rolled back, nothing lost");
}
