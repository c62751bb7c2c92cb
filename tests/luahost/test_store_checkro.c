/* test_store_checkro.c - `vsrhost --check-store DIR` changes nothing in DIR
 * (docs/operations.md, "Checking a stopped replica's store by hand").
 *
 * An operator runs the check on a stopped replica's directory, a copy of
 * one or a read-only mount, and expects the directory as it was. The check
 * must still judge what the next start opens: after a reboot, a newest
 * LMDB transaction that `synced` does not name is rolled back at the start
 * (vsrh_store_settle_dir), and an install stopped between its renames is
 * finished; the check says so and checks the environment as it will be,
 * without doing either. Each case below is a replica directory (a
 * superblock written by the storage, its lock file, its log, store/) whose
 * every file and directory (names, sizes, modes, mtime and ctime, and the
 * contents of every file) is recorded before and after the check, and must
 * be the same; the exit status and the verdict are the documented ones:
 *   intact (0); a torn newest transaction after a reboot (0, "rolls ...
 *   back from transaction N ... to N-1", the same N and N-1 as the start's
 *   own rollback then, and the check of the rolled-back copy agrees); a
 *   damaged `synced` (the start rolls back to the older checkpoint, which
 *   the superblock does not name: 1); an install stopped between its
 *   renames (0); a value's byte flipped (1); a live leaf in the free list
 *   (1); no lock file (0, none created); the intact and the torn directory
 *   again on a read-only bind mount (as root, in a mount namespace of the
 *   test's own; skipped otherwise); the directory in use (2), no
 *   superblock (2), no DIR (64).
 * Usage: test_store_checkro VSRHOST (the binary to run). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "lmdb_places.h"
#include "store_test.h"
#include "vsr_storage.h"
#include "vsrh_store.h"
#include "vsrh_store_sync.h"

#define KEYS 2000

static const char *vsrhost;

/* ------------------------------------------------ what a directory holds */

/* One line per entry under a root: its path, kind, mode, size, mtime and
 * ctime (ns), and for a file an XXH3 of every 4 KiB block that is not all
 * zeros with its offset (data.mdb is a sparse 8 GiB: holes and zero
 * blocks read alike, and the extents' layout is not compared). */
static char **snap_lines;
static size_t snap_n, snap_cap;
static size_t snap_root_len;

/* A slice of a file's data into the hash arg (an XXH3_state_t), block by
 * block, each with its offset, skipping blocks of zeros (st_each_data). */
static int hash_slice(void *arg, const uint8_t *buf, size_t len, off_t at)
{
	static const uint8_t zero[4096];
	XXH3_state_t *h = arg;
	for (size_t b = 0; b < len; b += 4096) {
		size_t n = len - b < 4096 ? len - b : 4096;
		if (memcmp(buf + b, zero, n) == 0)
			continue;
		uint64_t off = (uint64_t)at + b;
		XXH3_64bits_update(h, &off, sizeof off);
		XXH3_64bits_update(h, buf + b, n);
	}
	return 0;
}

static uint64_t file_hash(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	XXH3_state_t *h = XXH3_createState();
	XXH3_64bits_reset(h);
	int rc = st_each_data(fd, hash_slice, h);
	uint64_t v = rc == 0 ? XXH3_64bits_digest(h) : 0;
	XXH3_freeState(h);
	close(fd);
	return v;
}

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	char line[1200];
	snprintf(line, sizeof line,
		 "%s %c mode %o size %lld mtime %lld.%09ld ctime %lld.%09ld hash %016" PRIx64,
		 path + snap_root_len, S_ISDIR(st->st_mode) ? 'd' : S_ISREG(st->st_mode) ? 'f' : 'o',
		 (unsigned)st->st_mode, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec,
		 S_ISREG(st->st_mode) ? file_hash(path) : 0);
	if (snap_n == snap_cap) {
		snap_cap = snap_cap ? snap_cap * 2 : 64;
		snap_lines = realloc(snap_lines, snap_cap * sizeof *snap_lines);
	}
	snap_lines[snap_n++] = strdup(line);
	return 0;
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Everything under root, one sorted line per entry, as one string. */
static char *snap_take(const char *root)
{
	snap_n = 0;
	snap_root_len = strlen(root);
	CHECK(nftw(root, snap_one, 16, FTW_PHYS) == 0, "walk %s: %s", root, strerror(errno));
	qsort(snap_lines, snap_n, sizeof *snap_lines, line_cmp);
	size_t len = 1;
	for (size_t i = 0; i < snap_n; i++)
		len += strlen(snap_lines[i]) + 1;
	char *s = malloc(len), *p = s;
	for (size_t i = 0; i < snap_n; i++) {
		p = stpcpy(p, snap_lines[i]);
		*p++ = '\n';
		free(snap_lines[i]);
	}
	*p = '\0';
	snap_n = 0;
	return s;
}

/* The lines of a that b lacks, printed (a changed or gone entry). */
static void snap_diff(const char *label, const char *a, const char *b)
{
	for (const char *l = a; *l;) {
		const char *nl = strchr(l, '\n');
		size_t n = (size_t)(nl - l);
		bool found = false;
		for (const char *m = b; *m && !found;) {
			const char *ml = strchr(m, '\n');
			found = (size_t)(ml - m) == n && memcmp(m, l, n) == 0;
			m = ml + 1;
		}
		if (!found)
			printf("  %s: %.*s\n", label, (int)n, l);
		l = nl + 1;
	}
}

/* ------------------------------------------------ running the check */

/* `vsrhost --check-store dir` (no dir when NULL), its stdout and stderr
 * into out; returns its exit status (-1: killed). */
static int run_check(const char *dir, char *out, size_t out_len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		char *argv[] = {"vsrhost", "--check-store", (char *)dir, NULL};
		execv(vsrhost, argv);
		_exit(127);
	}
	close(fds[1]);
	int status = st_child_wait(pid, fds[0], out, out_len);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The check on `dir` (files under `files`, the same directory unless it
 * is a mount of it), which must change nothing there, exit `want` and
 * say `says` (NULL: anything). Its output into out. */
static void expect_unchanged(const char *what, const char *dir, const char *files, int want,
			     const char *says, char *out, size_t out_len)
{
	char *before = snap_take(files);
	int code = run_check(dir, out, out_len);
	char *after = snap_take(files);
	bool same = strcmp(before, after) == 0;
	CHECK(same, "%s: the check changed the directory %s", what, files);
	if (!same) {
		snap_diff("before", before, after);
		snap_diff("after", after, before);
	}
	CHECK(code == want && (says == NULL || strstr(out, says) != NULL),
	      "%s: exit %d (want %d), said (want \"%s\"): %s", what, code, want, says ? says : "",
	      out);
	printf("%s: exit %d, %s: %s", what, code, same ? "nothing changed" : "CHANGED", out);
	free(before);
	free(after);
}

/* ------------------------------------------------ building the cases */

static int persisted;
static void persisted_cb(vsr_storage *s, uint64_t id, int status)
{
	(void)s;
	(void)id;
	CHECK(status == VSR_OK, "the superblock's persist: %d", status);
	persisted++;
}

static int closed;
static void closed_cb(vsr_storage *s)
{
	(void)s;
	closed++;
}

/* A replica's directory `dir` whose superblock names checkpoint cp, as the
 * durable storage writes it (with its lock file and first log segment). */
static void replica_dir(const char *dir, const vsr_checkpoint *cp)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	vsr_storage_options o = {.loop = &loop, .kind = VSR_STORAGE_DURABLE, .dir = dir,
				 .cluster = 7, .replica = 0, .persisted_cb = persisted_cb,
				 .segment_size = 1u << 20};
	vsr_storage *st = NULL;
	const vsr_durable *d = NULL;
	char err[512] = "";
	if (vsr_storage_open(&o, &st, err, sizeof err) != VSR_OK ||
	    vsr_storage_load(st, &d, err, sizeof err) != VSR_OK) {
		CHECK(0, "storage in %s: %s", dir, err);
		return;
	}
	vsr_persist p = {.id = 1,
			 .superblock = {.cluster = 7, .history = 0x5eed, .view = 1, .log_view = 1,
					.commit = cp->op, .checkpoint_op = cp->op,
					.checkpoint_checksum = cp->checksum,
					.checkpoint_timestamp = cp->timestamp}};
	persisted = 0;
	CHECK(vsr_storage_submit(st, &p) == VSR_OK, "submit the superblock");
	while (persisted == 0)
		uv_run(&loop, UV_RUN_ONCE);
	closed = 0;
	vsr_storage_close(st, closed_cb);
	while (closed == 0)
		uv_run(&loop, UV_RUN_ONCE);
	uv_loop_close(&loop);
}

/* A copy of the directory a as b (holes kept, times kept). */
static void copy_tree(const char *a, const char *b)
{
	char cmd[2000];
	snprintf(cmd, sizeof cmd, "cp -a --sparse=always '%s' '%s'", a, b);
	CHECK(system(cmd) == 0, "%s", cmd);
}

/* dir/`name` as a copy of dir/`from`. */
static void copy_case(char *out, size_t n, const char *dir, const char *from, const char *name)
{
	char src[600];
	st_path(src, sizeof src, dir, from);
	st_path(out, n, dir, name);
	copy_tree(src, out);
}

/* The "from transaction N" and "to M" of a rollback sentence. */
static bool rollback_txns(const char *s, uint64_t *from, uint64_t *to)
{
	const char *f = strstr(s, "back from transaction ");
	if (f == NULL || sscanf(f, "back from transaction %" SCNu64, from) != 1)
		return false;
	/* "N (never recorded as synced, ...) to M", or "N to M: ..." */
	const char *t = strstr(f, ") to ");
	t = t ? t + 5 : strstr(f, " to ");
	return t != NULL && sscanf(t[0] == ' ' ? t + 4 : t, "%" SCNu64, to) == 1;
}

/* Flips one byte of the file at `at`. */
static void flip(const char *file, off_t at)
{
	int fd = open(file, O_RDWR);
	uint8_t b = 0;
	CHECK(fd >= 0 && pread(fd, &b, 1, at) == 1, "read %s", file);
	b ^= 0x20;
	CHECK(fd >= 0 && pwrite(fd, &b, 1, at) == 1, "flip a byte of %s", file);
	if (fd >= 0)
		close(fd);
}

/* A read-only bind mount of `dir` at `at` (made here): 0, or -1 (skip). */
static int mount_ro(const char *dir, const char *at)
{
	mkdir(at, 0700);
	if (mount(dir, at, NULL, MS_BIND, NULL) != 0) {
		printf("SKIP read-only: bind mount %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (mount(NULL, at, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
		printf("SKIP read-only: remount %s read-only: %s\n", at, strerror(errno));
		umount(at);
		return -1;
	}
	char probe[700];
	st_path(probe, sizeof probe, at, "probe");
	int fd = open(probe, O_WRONLY | O_CREAT, 0600);
	CHECK(fd < 0 && errno == EROFS, "%s is read-only (open for writing: %s)", at,
	      fd < 0 ? strerror(errno) : "it worked");
	if (fd >= 0)
		close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_store_checkro VSRHOST\n");
		return 2;
	}
	vsrhost = argv[1];
	char dir[] = "/tmp/vsr-checkro-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	/* Mounts made below stay in a mount namespace of this process's own
	 * (gone with it, even if the test is killed). */
	bool can_mount = unshare(CLONE_NEWNS) == 0 &&
			 mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
	setenv("VSRH_BOOT_ID", "boot-one", 1);
	char store[600], at_a[600], f1[900], f2[1000], out[4096], why[1024];

	/* Checkpoint A, synced, and a copy of the store then; checkpoint B. */
	st_path(store, sizeof store, dir, "store");
	st_path(at_a, sizeof at_a, dir, "store-at-a");
	vsrh_sm *sm = st_create(&cfg, store, true, true);
	if (sm == NULL)
		return st_end(dir, &cfg, NULL);
	uint64_t op = 0;
	vsr_checkpoint a, b;
	CHECK(st_round_and_take(sm, KEYS, 1, &op, &a) == VSR_PENDING, "checkpoint A");
	copy_tree(store, at_a);
	CHECK(st_round_and_take(sm, KEYS, 2, &op, &b) == VSR_PENDING, "checkpoint B");
	vsrh_sm_destroy(sm);

	/* intact: the superblock names B, the store holds B. */
	char intact[600];
	st_path(intact, sizeof intact, dir, "intact");
	replica_dir(intact, &b);
	st_path(f1, sizeof f1, intact, "store");
	CHECK(rename(store, f1) == 0, "move the store into %s", intact);

	/* torn: the power went between B's commit and its sync: the disk
	 * holds A's pages and B's meta page, `synced` names A, and so does
	 * the superblock (B was never durable). */
	char torn[600];
	st_path(torn, sizeof torn, dir, "torn");
	replica_dir(torn, &a);
	st_path(f1, sizeof f1, torn, "store");
	CHECK(rename(at_a, f1) == 0, "move the store at A into %s", torn);
	st_path(f1, sizeof f1, intact, "store/db/data.mdb");
	st_path(f2, sizeof f2, torn, "store/db/data.mdb");
	{
		int lf = open(f1, O_RDONLY), tf = open(f2, O_WRONLY);
		long ps = sysconf(_SC_PAGESIZE);
		char *page = malloc((size_t)ps * 2);
		CHECK(lf >= 0 && tf >= 0 && pread(lf, page, (size_t)ps * 2, 0) == ps * 2,
		      "read B's meta pages");
		uint64_t t0, t1;
		memcpy(&t0, page + 16 + 128, 8);
		memcpy(&t1, page + ps + 16 + 128, 8);
		int newest = t1 > t0;
		CHECK(pwrite(tf, page + newest * ps, (size_t)ps, newest * ps) == ps,
		      "write B's meta page over the store at A");
		close(lf);
		close(tf);
		free(page);
	}

	expect_unchanged("intact", intact, intact, 0, ": intact: ", out, sizeof out);
	CHECK(strstr(out, "rolls") == NULL, "intact: no rollback said: %s", out);

	/* After the reboot. */
	setenv("VSRH_BOOT_ID", "boot-two", 1);
	expect_unchanged("intact, after a reboot", intact, intact, 0, ": intact: ", out,
			 sizeof out);
	expect_unchanged("torn newest transaction, after a reboot", torn, torn, 0, ": intact: ", out,
			 sizeof out);
	uint64_t said_from = 0, said_to = 0;
	CHECK(strstr(out, "the next start rolls") != NULL && strstr(out, "changed nothing") &&
		      rollback_txns(out, &said_from, &said_to),
	      "torn: the check says the next start rolls back: %s", out);
	char want[64];
	snprintf(want, sizeof want, "checkpoint at op %" PRIu64, a.op);
	CHECK(strstr(out, want) != NULL, "torn: checked as A (%s): %s", want, out);

	/* The start then does what the check said, and the check of what it
	 * left agrees (and says no rollback is due). */
	char torn2[600];
	copy_case(torn2, sizeof torn2, dir, "torn", "torn-settled");
	st_path(f1, sizeof f1, torn2, "store");
	bool rolled = false;
	uint64_t from = 0, to = 0;
	CHECK(vsrh_store_settle_dir(f1, &rolled, why, sizeof why) == 0 && rolled &&
		      rollback_txns(why, &from, &to),
	      "the start rolls the torn store back: %s", why);
	CHECK(from == said_from && to == said_to && to + 1 == from,
	      "the check said transaction %" PRIu64 " to %" PRIu64 ", the start rolled %" PRIu64
	      " to %" PRIu64,
	      said_from, said_to, from, to);
	expect_unchanged("torn, once the start rolled it back", torn2, torn2, 0, want, out,
			 sizeof out);
	CHECK(strstr(out, "rolls") == NULL, "rolled back: no rollback due: %s", out);

	/* `synced` damaged: the start rolls B back to A, which is older than
	 * the superblock's B: damaged, as the start would find it. */
	char syncdmg[600];
	copy_case(syncdmg, sizeof syncdmg, dir, "intact", "synced-damaged");
	st_path(f1, sizeof f1, syncdmg, "store/synced");
	flip(f1, 20);
	expect_unchanged("synced damaged", syncdmg, syncdmg, 1, ": damaged: ", out, sizeof out);
	CHECK(strstr(out, "is damaged, so the newest may not be") != NULL &&
		      strstr(out, "the superblock names op") != NULL,
	      "synced damaged: the rollback said, and A found older than the superblock's B: %s",
	      out);

	/* An install stopped between its renames: db/ moved to old/, next/
	 * complete; the start finishes it. */
	char install[600];
	copy_case(install, sizeof install, dir, "intact", "install");
	st_path(f1, sizeof f1, install, "store/db");
	st_path(f2, sizeof f2, install, "store/next");
	CHECK(rename(f1, f2) == 0, "db/ to next/");
	st_path(f1, sizeof f1, install, "store/old");
	copy_tree(f2, f1);
	expect_unchanged("install stopped between its renames", install, install, 0, ": intact: ",
			 out, sizeof out);
	CHECK(strstr(out, "finishes an install") != NULL, "install: said: %s", out);

	/* A value's byte flipped (the record of key sk000100, past its check). */
	char record[600];
	copy_case(record, sizeof record, dir, "intact", "record");
	{
		st_path(f1, sizeof f1, record, "store/db");
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi kv;
		MDB_val k = {8, "sk000100"}, v; /* kv.lua's key for "k000100" */
		off_t at = -1;
		if (lp_open(f1, &env, &txn) == 0) {
			if (mdb_dbi_open(txn, "kvc", 0, &kv) == 0 && mdb_get(txn, kv, &k, &v) == 0)
				at = lp_off(v.mv_data) + 8 + 20;
			lp_close(env, txn);
		}
		CHECK(at > 0, "find sk000100 in %s", f1);
		st_path(f2, sizeof f2, f1, "data.mdb");
		if (at > 0)
			flip(f2, at);
	}
	expect_unchanged("a value's byte flipped", record, record, 1, "fails its check", out,
			 sizeof out);

	/* A live leaf of kvc in the free list, in place of the page the next
	 * commit takes. */
	char freelist[600];
	copy_case(freelist, sizeof freelist, dir, "intact", "freelist");
	{
		st_path(f1, sizeof f1, freelist, "store/db");
		MDB_env *env;
		MDB_txn *txn;
		off_t at = -1;
		uint64_t n = 0, leaf = 0;
		if (lp_open(f1, &env, &txn) == 0) {
			if (lp_oldest_free(txn, &at, &n) != 0 ||
			    lp_value_page(txn, "kvc", "sk000100", &leaf) != 0)
				at = -1;
			lp_close(env, txn);
		}
		CHECK(at > 0 && leaf >= 2, "find the free list and a leaf in %s", f1);
		st_path(f2, sizeof f2, f1, "data.mdb");
		int fd = open(f2, O_RDWR);
		CHECK(at > 0 && fd >= 0 && pwrite(fd, &leaf, 8, at + 8) == 8,
		      "write the leaf into the free list");
		if (fd >= 0)
			close(fd);
	}
	expect_unchanged("a live leaf in the free list", freelist, freelist, 1, "in its free list",
			 out, sizeof out);

	/* No lock file (a copy without it): none is created. */
	char nolock[600];
	copy_case(nolock, sizeof nolock, dir, "intact", "nolock");
	st_path(f1, sizeof f1, nolock, "lock");
	CHECK(unlink(f1) == 0, "remove %s", f1);
	expect_unchanged("no lock file", nolock, nolock, 0, ": intact: ", out, sizeof out);

	/* Read-only mounts of the intact and the torn directory. */
	if (!can_mount) {
		printf("SKIP read-only: no mount namespace of our own (%s)\n", strerror(errno));
	} else {
		char ro[600];
		st_path(ro, sizeof ro, dir, "ro-intact");
		if (mount_ro(intact, ro) == 0) {
			expect_unchanged("intact, read-only mount", ro, intact, 0, ": intact: ", out,
					 sizeof out);
			umount(ro);
		}
		st_path(ro, sizeof ro, dir, "ro-torn");
		if (mount_ro(torn, ro) == 0) {
			expect_unchanged("torn, read-only mount", ro, torn, 0, "the next start rolls",
					 out, sizeof out);
			CHECK(strstr(out, want) != NULL, "torn, read-only: checked as A: %s", out);
			umount(ro);
		}
	}

	/* The directory in use: its lock held by another process, as a
	 * running replica holds it (a child: this process's own lock would go
	 * with the first close of the file, the snapshot's). */
	st_path(f1, sizeof f1, intact, "lock");
	int hold[2], held[2];
	CHECK(pipe(hold) == 0 && pipe(held) == 0, "pipes");
	fflush(NULL);
	pid_t holder = fork();
	if (holder == 0) {
		close(hold[1]);
		close(held[0]);
		int lock = open(f1, O_RDWR);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		char c = lock >= 0 && fcntl(lock, F_SETLK, &fl) == 0 ? 'y' : 'n';
		if (write(held[1], &c, 1) != 1 || read(hold[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(hold[0]);
	close(held[1]);
	char c = 'n';
	CHECK(read(held[0], &c, 1) == 1 && c == 'y', "a child holds %s", f1);
	expect_unchanged("in use", intact, intact, 2, "in use by another process", out, sizeof out);
	close(hold[1]); /* the holder ends */
	close(held[0]);
	waitpid(holder, NULL, 0);
	/* No superblock; no DIR. */
	st_path(f1, sizeof f1, dir, "store-less");
	mkdir(f1, 0700);
	expect_unchanged("no superblock", f1, f1, 2, "could not check", out, sizeof out);
	int code = run_check(NULL, out, sizeof out);
	CHECK(code == 64, "no DIR: exit %d, not 64: %s", code, out);

	free(snap_lines);
	return st_end(dir, &cfg,
		      "vsrhost --check-store changed nothing, and judged what the next start opens");
}
