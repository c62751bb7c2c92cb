/* test_store_syncwrap.c - a checkpoint sync that fails on the syncer thread
 * stops the replica (exit 74, with a sentence) before anything is told that
 * the checkpoint is durable (docs/storage.md, "Checkpoints without a
 * stall"; issue 8: never continue after a failed fsync).
 *
 * Linked with -Wl,--wrap=sync_file_range,--wrap=mdb_env_sync,--wrap=fdatasync:
 * the calls vsrh_store_sync.c makes (the trickle, LMDB's sync of data.mdb,
 * the `synced` record's fdatasync) fail with EIO when armed. For each, in a
 * child: puts, a checkpoint (pending), then the sync fails. The child must
 * exit 74 with the storage sentence, the durable callback must never have
 * run, and `synced` must not name the checkpoint whose sync failed. Unarmed, the
 * same run reports the checkpoint durable (so the test can fail). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv_op.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"
#include "store_test.h"


/* Which call fails once armed: 1 trickle, 2 LMDB's sync, 3 the record's. */
static _Atomic int armed;

int __real_sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags);
int __wrap_sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags);
int __wrap_sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags)
{
	if (atomic_load(&armed) == 1) {
		errno = EIO;
		return -1;
	}
	return __real_sync_file_range(fd, off, n, flags);
}

int __real_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force)
{
	if (atomic_load(&armed) == 2)
		return EIO;
	return __real_mdb_env_sync(env, force);
}

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
	if (atomic_load(&armed) == 3) {
		errno = EIO;
		return -1;
	}
	return __real_fdatasync(fd);
}

static _Atomic uint64_t told; /* the op the durable callback was given */

static void on_durable(void *arg, uint64_t op)
{
	(void)arg;
	atomic_store(&told, op);
	/* What the host does: a write that a parent can read. */
	char line[64];
	int n = snprintf(line, sizeof line, "durable %llu\n", (unsigned long long)op);
	if (write(1, line, (size_t)n) < 0)
		_exit(9);
}


/* The child: checkpoint 1 synced, then checkpoint 2 with `mode` armed.
 * Exits 0 when checkpoint 2 was reported durable. */
static void child(const vsrh_config *cfg, const char *dir, int mode)
{
	char err[512];
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create_at(&sm, cfg, dir, true, true, err, sizeof err) != VSR_OK)
		_exit(6);
	vsrh_sm_on_checkpoint_durable(sm, on_durable, NULL);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	uint64_t op = 0;
	static const uint8_t meta[8];
	/* Unarmed, four checkpoints whose syncs overlap the next puts (the
	 * loop writes pages while the thread syncs: run it under helgrind). */
	int rounds = mode == 0 ? 4 : 2;
	for (int round = 1; round <= rounds; round++) {
		if (kv_put_round(&m, 300, round, &op) != 0)
			_exit(5);
		if (mode != 0 && round == 2)
			atomic_store(&armed, mode);
		vsr_checkpoint cp = {.op = op, .checksum = op, .timestamp = op};
		if (m.checkpoint_take(m.ctx, &cp, meta, sizeof meta) != VSR_PENDING)
			_exit(7);
		if (mode != 0)
			vsrh_sm_on_checkpoint_durable(sm, on_durable, NULL); /* waits for the sync */
	}
	vsrh_sm_on_checkpoint_durable(sm, NULL, NULL); /* waits for the last */
	if (atomic_load(&told) != op)
		_exit(8);
	vsrh_sm_destroy(sm);
	_exit(0);
}

int main(void)
{
	char dir[] = "/tmp/vsr-syncfail-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	static const char *what[] = {"nothing fails", "the trickle (sync_file_range)",
				     "LMDB's sync of data.mdb", "the fdatasync of `synced`"};
	for (int mode = 0; mode <= 3; mode++) {
		char store[600];
		snprintf(store, sizeof store, "%s/m%d", dir, mode);
		int out[2], errp[2];
		if (pipe(out) != 0 || pipe(errp) != 0)
			return 1;
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			dup2(out[1], 1);
			dup2(errp[1], 2);
			close(out[0]);
			close(errp[0]);
			child(&cfg, store, mode);
		}
		close(out[1]);
		close(errp[1]);
		char o[512] = "", e[1024] = "";
		size_t on = 0, en = 0;
		ssize_t r;
		while ((r = read(out[0], o + on, sizeof o - 1 - on)) > 0)
			on += (size_t)r;
		while ((r = read(errp[0], e + en, sizeof e - 1 - en)) > 0)
			en += (size_t)r;
		o[on] = e[en] = '\0';
		close(out[0]);
		close(errp[0]);
		int status = 0;
		waitpid(pid, &status, 0);
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (mode == 0) {
			CHECK(code == 0 && strstr(o, "durable 1200") != NULL,
			      "%s: the last checkpoint durable (exit %d, told: %s, stderr: %s)", what[mode],
			      code, o, e);
			CHECK(st_synced_op(store) == 1200, "%s: synced names op 1200, not %llu", what[mode],
			      (unsigned long long)st_synced_op(store));
			continue;
		}
		CHECK(code == 74, "%s: the replica stops with exit 74, got %d (stderr: %s)", what[mode],
		      code, e);
		CHECK(strstr(e, "sync of a checkpoint") != NULL && strstr(e, "EIO") != NULL,
		      "%s: it says why: %s", what[mode], e);
		CHECK(strstr(o, "durable 300") != NULL && strstr(o, "durable 600") == NULL,
		      "%s: checkpoint 300 was reported durable and 600 never: %s", what[mode], o);
		/* Never a transaction whose sync failed (when only the record's own
		 * fdatasync failed, data.mdb was synced: either op is true). */
		CHECK(st_synced_op(store) == 300 || (mode == 3 && st_synced_op(store) == 600),
		      "%s: synced names op %llu, whose sync failed", what[mode],
		      (unsigned long long)st_synced_op(store));
		printf("%s: exit %d, %s", what[mode], code, e);
		/* The next start, on the same boot: the pages whose writeback
		 * failed may be gone from the page cache (Linux marks them clean),
		 * so the newest transaction is not to be trusted unless `synced`
		 * names it; the store opens the last durable checkpoint. */
		vsr_checkpoint reopened_cp;
		st_open(&cfg, store, &reopened_cp, NULL);
		uint64_t reopened = reopened_cp.op;
		CHECK(reopened == (mode == 3 ? 600u : 300u),
		      "%s: the next start on the same boot opens checkpoint %u, got %llu", what[mode],
		      mode == 3 ? 600u : 300u, (unsigned long long)reopened);
	}
	return st_end(dir, &cfg,
		      "a failed checkpoint sync stops the replica before it is reported durable");
}
