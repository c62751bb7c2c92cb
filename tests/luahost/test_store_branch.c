/* test_store_branch.c - a key changed in a branch page of vsr.store's
 * records' tree (LMDB's kvc database).
 *
 * A branch page's keys send a search to a leaf; a key changed there sends
 * a search for the keys between its old and new value to the leaf beside
 * the one that holds them, while every record stays intact and in order.
 * Found in review: the restart's store check passed such a store (it reads
 * the records in order and walks the pages, but held no branch key to its
 * leaves), a get of an existing key answered nil and count unchanged, and
 * a put then inserted the key a second time in the other leaf (count and
 * digest then differ from the other replicas'; only the next restart's
 * check saw the records out of order).
 *
 * Each round: 300 records (sk000000 .. sk000299, 100-byte values) and a
 * checkpoint; in the root branch page, the key of its third child is moved
 * up by 8 (keys just above the old value go to the leaf before) or down by
 * 8 (keys just below it go to the leaf after), staying between its
 * neighbours. Then the restart's check must find the store damaged, naming
 * the branch key, and a child that opens it and gets a key so misrouted
 * must stop with exit 74 naming the records out of order (exit 4: the get
 * answered). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_test.h"
#include "vsrh_store.h"

#define RECORDS 300
#define PAGE 4096

static void mp_arr(vsr_buf *b, uint8_t n)
{
	uint8_t h = (uint8_t)(0x90 | n);
	vsr_buf_append(b, &h, 1);
}

static void mp_s(vsr_buf *b, const char *s, size_t n)
{
	uint8_t h[2] = {0xd9, (uint8_t)n};
	vsr_buf_append(b, h, 2);
	vsr_buf_append(b, s, n);
}

static vsrh_sm *open_ops(const vsrh_config *cfg, const char *dir, bool fresh,
			 vsr_state_machine *m)
{
	vsrh_sm *sm = st_open_script(cfg, "spec/fixtures/storeops.lua", dir, true, fresh);
	if (sm != NULL)
		vsrh_sm_bind(sm, m);
	return sm;
}

/* storeops.lua's [[name, "skNNNNNN"(, 100 'a's)]] applied at op. */
static int call(vsr_state_machine *m, uint64_t op, const char *name, int key, vsr_buf *reply)
{
	vsr_buf b = {0};
	char k[16], v[100];
	snprintf(k, sizeof k, "sk%06d", key);
	bool put = strcmp(name, "put") == 0;
	mp_arr(&b, 1);
	mp_arr(&b, put ? 3 : 2);
	mp_s(&b, name, strlen(name));
	mp_s(&b, k, 8);
	if (put) {
		memset(v, 'a', sizeof v);
		mp_s(&b, v, sizeof v);
	}
	vsr_apply_ctx a = {.op = op, .session = 1, .request = op};
	reply->len = 0;
	int rc = m->apply(m->ctx, &a, b.data, b.len, reply);
	free(b.data);
	return rc;
}

/* In data.mdb, the first branch page whose third key is one of ours: that
 * key moved by `by` (it stays between its neighbours). Returns the key's
 * old number, or -1. */
static int move_branch_key(const char *file, int by)
{
	int fd = open(file, O_RDWR);
	if (fd < 0)
		return -1;
	uint8_t pg[PAGE];
	int old = -1;
	for (uint64_t p = 2; old < 0 && pread(fd, pg, PAGE, (off_t)(p * PAGE)) == PAGE; p++) {
		uint64_t no;
		memcpy(&no, pg, 8);
		unsigned flags = pg[10] | pg[11] << 8, lower = pg[12] | pg[13] << 8;
		if (no != p || !(flags & 0x01) || lower < 16 + 2 * 4)
			continue;
		unsigned at = pg[16 + 4] | pg[16 + 5] << 8; /* node 2 */
		if (at + 16 > PAGE || pg[at + 6] != 8 || pg[at + 7] != 0 ||
		    memcmp(pg + at + 8, "sk", 2) != 0)
			continue;
		char k[9];
		memcpy(k, pg + at + 8, 8);
		k[8] = '\0';
		old = atoi(k + 2);
		snprintf(k, sizeof k, "sk%06d", old + by);
		memcpy(pg + at + 8, k, 8);
		if (pwrite(fd, pg, PAGE, (off_t)(p * PAGE)) != PAGE)
			old = -1;
		printf("branch page %llu: its third key sk%06d now %s\n", (unsigned long long)p,
		       old, k);
	}
	close(fd);
	return old;
}

/* A restart's open of store, then a get of key: the child's exit status
 * (74: stopped; 4: the get answered). */
static int child(const vsrh_config *cfg, const char *store, int key)
{
	vsr_state_machine m;
	vsrh_sm *sm = open_ops(cfg, store, false, &m);
	if (sm == NULL)
		return 2;
	vsr_buf meta = {0}, reply = {0};
	vsr_checkpoint cp;
	if (m.checkpoint_open(m.ctx, &cp, &meta) != VSR_OK)
		return 2;
	int rc = call(&m, cp.op + 1, "get", key, &reply);
	fprintf(stderr, "the get of sk%06d returned %d (%zu bytes)\n", key, rc, reply.len);
	return 4;
}

static void round_of(const vsrh_config *cfg, const char *dir, int by)
{
	const char *what = by > 0 ? "a branch key moved up" : "a branch key moved down";
	char store[400], file[500], log[500];
	snprintf(store, sizeof store, "%s/store%+d", dir, by);
	snprintf(file, sizeof file, "%s/db/data.mdb", store);
	snprintf(log, sizeof log, "%s/child%+d.log", dir, by);
	vsr_state_machine m;
	vsrh_sm *sm = open_ops(cfg, store, true, &m);
	if (sm == NULL)
		return;
	vsr_buf reply = {0};
	uint64_t op = 0;
	for (int i = 0; i < RECORDS; i++)
		CHECK(call(&m, ++op, "put", i, &reply) == VSR_REPLY_OK, "put %d", i);
	free(reply.data);
	vsr_checkpoint cp;
	int rc = st_take(sm, op, NULL, NULL, &cp);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint: %d", rc);
	vsrh_sm_destroy(sm);
	char why[600] = "";
	CHECK(vsrh_store_verify_dir(store, cp.op, cp.checksum, why, sizeof why) == 0,
	      "the intact store fails the check: %s", why);

	int old = move_branch_key(file, by);
	CHECK(old > 0, "no branch page with our keys in %s", file);
	if (old <= 0)
		return;
	/* Keys between the old and the new value go to the wrong leaf. */
	int victim = old + by / 2;
	rc = vsrh_store_verify_dir(store, cp.op, cp.checksum, why, sizeof why);
	CHECK(rc == 1 && strstr(why, "branch") != NULL && strstr(why, "wrong leaf") != NULL,
	      "%s: the restart's check returns %d (1: damaged, naming the branch key): %s", what, rc,
	      why);
	printf("%s: the restart's check: %s\n", what, why);

	pid_t pid = st_child_fork(log);
	if (pid == 0) {
		int c = child(cfg, store, victim);
		fflush(NULL);
		_exit(c);
	}
	char text[2048];
	int status = st_child_log(pid, log, text, sizeof text);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 74 && strstr(text, "out of order") &&
		      strstr(text, "this replica stops (exit 74)"),
	      "%s: a get of sk%06d: status 0x%x, not exit 74 naming the records out of order (4: "
	      "the get answered); its stderr: %s",
	      what, victim, status, text);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 74)
		printf("%s: a get of sk%06d: exit 74: %s", what, victim, text);
}

int main(void)
{
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-store-branch-XXXXXX";
	if (st_begin(&cfg, dir) != 0)
		return 1;
	round_of(&cfg, dir, 8);
	round_of(&cfg, dir, -8);
	return st_end(dir, &cfg,
		      "a branch key moved between its neighbours: the restart's check and a get "
		      "both find it");
}
