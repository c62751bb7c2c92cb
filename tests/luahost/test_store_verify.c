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
 * check's own child) and fails the test. */
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

#include "host_verify.h"
#include "kv_op.h"
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

int main(void)
{
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
