/* store_test.h - what the C tests of vsr.store on LMDB share: the start and
 * end of their main (config/kv.lua, a fresh directory, its removal), paths,
 * a checkpoint taken and waited for, a store reopened at its checkpoint, the
 * op `synced` records. */
#ifndef TESTS_STORE_TEST_H
#define TESTS_STORE_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv_op.h"
#include "test_check.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"

static inline void st_path(char *out, size_t n, const char *a, const char *b)
{
	snprintf(out, n, "%s/%s", a, b);
}

/* Loads config/kv.lua (the tests run in the source tree) into *cfg.
 * Returns 0, or -1 having said why on stderr. */
static inline int st_config(vsrh_config *cfg)
{
	char err[512];
	if (vsrh_config_load("config/kv.lua", cfg, err, sizeof err) != 0) {
		fprintf(stderr, "config/kv.lua: %s\n", err);
		return -1;
	}
	return 0;
}

/* The start of a store test's main: config/kv.lua in *cfg, and a fresh
 * directory made from tmpl (mkdtemp's "...XXXXXX", changed in place).
 * Returns 0, or -1 having said why. */
static inline int st_begin(vsrh_config *cfg, char *tmpl)
{
	if (st_config(cfg) != 0)
		return -1;
	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		vsrh_config_free(cfg);
		return -1;
	}
	/* Scratch stores (a memory store's, vsrh_store.c) inside it too: a
	 * child that stops with exit 74 never closes its own, and st_end then
	 * removes them with the rest (luahost_store_heldrot left seven of
	 * 65 MB in /tmp a run). */
	setenv("TMPDIR", tmpl, 1);
	return 0;
}

/* A new directory made from tmpl (mkdtemp's "...XXXXXX", changed in place)
 * with a fresh tmpfs of `size` (mount's size=, e.g. "160m") on it, for a
 * test that needs a disk that fills. Returns 0; 77 (skip: mounting needs
 * root), having said so and removed the directory; or 1. */
static inline int st_tmpfs(char *tmpl, const char *size)
{
	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	char opts[64];
	snprintf(opts, sizeof opts, "size=%s", size);
	if (mount("tmpfs", tmpl, "tmpfs", 0, opts) != 0) {
		printf("SKIP: cannot mount a tmpfs at %s: %s\n", tmpl, strerror(errno));
		rmdir(tmpl);
		return 77;
	}
	return 0;
}

/* Removes dir and everything below it (says so when it cannot). */
static inline void st_remove(const char *dir)
{
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
}

/* The end of a store test's main: dir removed, *cfg freed, and `passed`
 * printed when no check failed (NULL: nothing). Returns the exit status. */
static inline int st_end(const char *dir, vsrh_config *cfg, const char *passed)
{
	st_remove(dir);
	vsrh_config_free(cfg);
	if (failures == 0 && passed != NULL)
		printf("%s\n", passed);
	return failures ? 1 : 0;
}

/* The state machine on the store under dir: durable or in memory, fresh
 * or opened as a restart does. NULL (counted as a failure) if it cannot. */
static inline vsrh_sm *st_create(const vsrh_config *cfg, const char *dir, bool durable, bool fresh)
{
	char err[512];
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create_at(&sm, cfg, dir, durable, fresh, err, sizeof err) != VSR_OK) {
		CHECK(0, "open %s: %s", dir, err);
		return NULL;
	}
	return sm;
}

/* st_begin, then a fresh durable store's state machine under tmpl, bound
 * to *m. NULL (counted as a failure) when it does not open; *started says
 * whether st_begin succeeded (st_end is then due). */
static inline vsrh_sm *st_begin_durable(vsrh_config *cfg, char *tmpl, vsr_state_machine *m,
					bool *started)
{
	*started = st_begin(cfg, tmpl) == 0;
	vsrh_sm *sm = *started ? st_create(cfg, tmpl, true, true) : NULL;
	if (sm != NULL)
		vsrh_sm_bind(sm, m);
	return sm;
}

/* The seed of a test's random choices: VSR_SEED, else the time; printed
 * so that a run can be replayed. */
static inline uint64_t st_seed(void)
{
	const char *env = getenv("VSR_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	printf("seed %llu (VSR_SEED=%llu replays)\n", (unsigned long long)seed,
	       (unsigned long long)seed);
	return seed;
}

/* The state machine `script` (e.g. spec/fixtures/storeops.lua) with cfg's
 * dedup policy, budgets and checkpoint interval, on the store in dir (NULL:
 * memory), synced when durable, emptied first when fresh. NULL (counted as
 * a failure) when it does not open. */
static inline vsrh_sm *st_open_script(const vsrh_config *cfg, const char *script, const char *dir,
				      bool durable, bool fresh)
{
	vsrh_sm_options o = vsrh_sm_options_at(cfg, dir, durable, fresh);
	o.statemachine = script;
	char err[512];
	vsrh_sm *sm = NULL;
	if (vsrh_sm_open(&sm, &o, err, sizeof err) != VSR_OK) {
		CHECK(0, "open %s: %s", dir ? dir : "(memory)", err);
		return NULL;
	}
	return sm;
}

/* Takes the checkpoint at op (checksum op * 31, timestamp op) into *cp,
 * then waits for its sync and hands later ones to fn(arg) (NULL: none).
 * Returns what checkpoint_take returned. */
static inline int st_take(vsrh_sm *sm, uint64_t op, void (*fn)(void *, uint64_t), void *arg,
			  vsr_checkpoint *cp)
{
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	*cp = (vsr_checkpoint){.op = op, .checksum = op * 31, .timestamp = op};
	static const uint8_t meta[8];
	int rc = m.checkpoint_take(m.ctx, cp, meta, sizeof meta);
	vsrh_sm_on_checkpoint_durable(sm, fn, arg);
	return rc;
}

/* `keys` puts of round `round` from op *op on (kv_put_round), none refused,
 * then the checkpoint at the last one into *cp, its sync waited for
 * (st_take). Returns what checkpoint_take returned. */
static inline int st_round_and_take(vsrh_sm *sm, int keys, int round, uint64_t *op,
				    vsr_checkpoint *cp)
{
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	int refused = kv_put_round(&m, keys, round, op);
	CHECK(refused == 0, "%d puts of round %d refused", refused, round);
	return st_take(sm, *op, NULL, NULL, cp);
}

/* Opens the durable store under dir (not fresh, as a restart does) and
 * returns 0 with its checkpoint and digest, or -1 (counted as a failure). */
static inline int st_open(const vsrh_config *cfg, const char *dir, vsr_checkpoint *cp,
			  uint64_t *digest)
{
	memset(cp, 0, sizeof *cp);
	vsrh_sm *sm = st_create(cfg, dir, true, false);
	if (sm == NULL)
		return -1;
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf meta = {0};
	int rc = m.checkpoint_open(m.ctx, cp, &meta);
	CHECK(rc == VSR_OK, "checkpoint_open %s: %d", dir, rc);
	if (digest != NULL)
		*digest = m.digest(m.ctx);
	free(meta.data);
	vsrh_sm_destroy(sm);
	return rc == VSR_OK ? 0 : -1;
}

/* The parent's half of a child that writes a sentence to its end of a pipe
 * (fd is the parent's) and exits: the sentence into why (all of it that
 * fits), then the child's wait status as waitpid gives it. */
static inline int st_child_wait(pid_t pid, int fd, char *why, size_t why_len)
{
	size_t n = 0;
	ssize_t r;
	while (n + 1 < why_len && (r = read(fd, why + n, why_len - 1 - n)) > 0)
		n += (size_t)r;
	why[n] = '\0';
	close(fd);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* Forks a child whose stderr goes to the file log (the parent's buffers
 * flushed first): returns 0 in the child, which ends with _exit, and the
 * child's pid (or -1) in the parent. */
static inline pid_t st_child_fork(const char *log)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0 && freopen(log, "w", stderr) == NULL)
		_exit(2);
	return pid;
}

/* Waits for child `pid` (its stderr sent to the file `log`) and reads
 * what it wrote there into text (at most len - 1 bytes, NUL ended).
 * Returns its wait status (0 when pid is not a child). */
static inline int st_child_log(pid_t pid, const char *log, char *text, size_t len)
{
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	FILE *f = fopen(log, "r");
	size_t n = f ? fread(text, 1, len - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	return status;
}

#ifdef SEEK_DATA /* (a test that defines _GNU_SOURCE) */
/* Calls fn(arg, buf, n, at) on the bytes of the file open as fd that lie in
 * its data extents, in slices of at most 64 KiB (data.mdb is a sparse file
 * as long as the 8 GiB map: its holes are skipped). Returns 0, the first
 * nonzero fn returned, or -1 when a read fails. */
static inline int st_each_data(int fd, int (*fn)(void *arg, const uint8_t *buf, size_t n, off_t at),
			       void *arg)
{
	static uint8_t buf[1 << 16];
	off_t at = 0;
	while ((at = lseek(fd, at, SEEK_DATA)) >= 0) {
		off_t end = lseek(fd, at, SEEK_HOLE);
		while (at < end) {
			size_t n = end - at < (off_t)sizeof buf ? (size_t)(end - at) : sizeof buf;
			ssize_t r = pread(fd, buf, n, at);
			if (r <= 0)
				return -1;
			int rc = fn(arg, buf, (size_t)r, at);
			if (rc)
				return rc;
			at += r;
		}
	}
	return 0;
}

static inline int st_copy_slice(void *arg, const uint8_t *buf, size_t n, off_t at)
{
	return pwrite(*(int *)arg, buf, n, at) == (ssize_t)n ? 0 : -1;
}

/* Copies the data extents of the file open as `in` into a new file `to` as
 * long, holes left holes. 0, or -1. */
static inline int st_copy_sparse(int in, const char *to)
{
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct stat st;
	if (out < 0 || fstat(in, &st) != 0 || ftruncate(out, st.st_size) != 0) {
		if (out >= 0)
			close(out);
		return -1;
	}
	int rc = st_each_data(in, st_copy_slice, &out);
	return close(out) == 0 && rc == 0 ? 0 : -1;
}
#endif

/* The first len bytes of store_dir/synced into b: true when it has them. */
static inline bool st_synced_bytes(const char *store_dir, uint8_t *b, size_t len)
{
	char path[800];
	st_path(path, sizeof path, store_dir, "synced");
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? pread(fd, b, len, 0) : 0;
	if (fd >= 0)
		close(fd);
	return n == (ssize_t)len;
}

/* The checkpoint op store_dir/synced records ("VSRHSYN1" | txnid | op ...),
 * or 0 when it is missing or not a record. */
static inline uint64_t st_synced_op(const char *store_dir)
{
	uint8_t b[24];
	if (!st_synced_bytes(store_dir, b, sizeof b) || memcmp(b, "VSRHSYN1", 8) != 0)
		return 0;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[16 + i];
	return v;
}

#endif /* TESTS_STORE_TEST_H */
