/* test_store_syncfail.c - vsr.store on a disk whose sync fails (issue 8:
 * never continue after a failed fsync).
 *
 * Each case runs this program again as a child under the fail_io.c shim
 * (LD_PRELOAD, tests/process/fail_io.c), which fails one kind of call on
 * one of the store's files from its N-th occurrence on:
 *   - a checkpoint's sync on the syncer thread: msync or sync_file_range of
 *     db/data.mdb, the pwrite (ENOSPC) or fdatasync of `synced`;
 *     the child takes checkpoints until it dies;
 *   - the sync at open of a store whose newest commit was never synced;
 *   - the sync of a fetched checkpoint built in next/ (an install).
 * Each child must exit 74 with a sentence naming vsr.store and the error;
 * the checkpoint whose sync failed is never reported durable (the callback
 * the host steps VSR_EVENT_CHECKPOINT_DURABLE from), `synced` names the
 * last durable one, and nothing is synced or recorded after the failure
 * (the shim's report). The store directories are under <tmp>/store, the
 * name the shim looks for.
 *
 * usage: test_store_syncfail SHIM    (run from the source directory) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#define KEYS 300
#define ROUNDS 8

/* ------------------------------------------------------------ the child */

static void on_durable(void *arg, uint64_t op)
{
	(void)arg;
	dprintf(1, "durable %" PRIu64 "\n", op);
}

static vsrh_sm *child_open(const char *store, bool fresh)
{
	vsrh_config cfg;
	if (st_config(&cfg) != 0)
		_exit(2);
	char err[512];
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create_at(&sm, &cfg, store, true, fresh, err, sizeof err) != VSR_OK) {
		fprintf(stderr, "open %s: %s\n", store, err);
		_exit(3);
	}
	vsrh_config_free(&cfg);
	return sm;
}

/* KEYS puts, then a checkpoint taken (pending) and waited for. */
static vsr_checkpoint child_round(vsrh_sm *sm, int round, uint64_t *op)
{
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	if (kv_put_round(&m, KEYS, round, op) != 0)
		_exit(4);
	dprintf(1, "take %" PRIu64 "\n", *op);
	vsr_checkpoint cp;
	if (st_take(sm, *op, on_durable, NULL, &cp) != VSR_PENDING) /* waits for the sync */
		_exit(5);
	return cp;
}

static int accept_all(void *arg, const uint8_t *meta, size_t len)
{
	(void)arg, (void)meta, (void)len;
	return VSR_OK;
}

static int child(const char *what, const char *dir)
{
	char store[600], src[600];
	snprintf(store, sizeof store, "%s/store", dir);
	uint64_t op = 0;
	if (strcmp(what, "checkpoint") == 0) {
		vsrh_sm *sm = child_open(store, true);
		vsrh_sm_on_checkpoint_durable(sm, on_durable, NULL);
		for (int r = 1; r <= ROUNDS; r++)
			child_round(sm, r, &op);
		dprintf(1, "survived\n");
		vsrh_sm_destroy(sm);
		return 0;
	}
	if (strcmp(what, "open") == 0) {
		vsrh_sm *sm = child_open(store, false);
		dprintf(1, "opened\n");
		vsrh_sm_destroy(sm);
		return 0;
	}
	/* install: a checkpoint of another store, fetched chunk by chunk. */
	snprintf(src, sizeof src, "%s/src/store", dir);
	vsrh_sm *from = child_open(src, true), *to = child_open(store, true);
	vsr_checkpoint cp = child_round(from, 1, &op);
	vsr_state_machine a, b;
	vsrh_sm_bind(from, &a);
	vsrh_sm_bind(to, &b);
	vsr_buf chunk = {0};
	for (uint64_t at = 0; at < cp.size; at += 65536) {
		chunk.len = 0;
		if (a.checkpoint_read(a.ctx, &cp, at, 65536, &chunk) != VSR_OK ||
		    b.checkpoint_write(b.ctx, &cp, at, chunk.data, (uint32_t)chunk.len) != VSR_OK)
			_exit(6);
	}
	int rc = b.checkpoint_install(b.ctx, &cp, accept_all, NULL);
	dprintf(1, "install returned %d\n", rc);
	return 0;
}

/* ------------------------------------------------------------ the parent */

static const char *g_shim;

/* Runs the child `what` on dir under VSR_FAIL_IO=spec (NULL: without the
 * shim); its stdout and
 * stderr into out and err; returns its wait status. */
static int run(const char *self, const char *what, const char *dir, const char *spec, char *out,
	       size_t out_len, char *err, size_t err_len)
{
	char fo[700], fe[700], report[700], note[700];
	snprintf(fo, sizeof fo, "%s/out.txt", dir);
	snprintf(fe, sizeof fe, "%s/err.txt", dir);
	snprintf(report, sizeof report, "%s/report.txt", dir);
	snprintf(note, sizeof note, "%s/note.txt", dir);
	unlink(report);
	unlink(note);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int o = open(fo, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(fe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(9);
		if (spec != NULL) {
			setenv("LD_PRELOAD", g_shim, 1);
			setenv("VSR_FAIL_IO", spec, 1);
			setenv("VSR_FAIL_IO_REPORT", report, 1);
			setenv("VSR_FAIL_IO_NOTE", note, 1);
		}
		execl(self, self, "--child", what, dir, (char *)NULL);
		_exit(10);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	for (int k = 0; k < 2; k++) {
		char *buf = k ? err : out;
		size_t len = k ? err_len : out_len;
		int fd = open(k ? fe : fo, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : 0;
		buf[n > 0 ? n : 0] = '\0';
		if (fd >= 0)
			close(fd);
	}
	if (spec == NULL)
		return status;
	struct stat st;
	CHECK(stat(note, &st) == 0, "%s: the shim injected no failure", spec);
	if (stat(report, &st) == 0) {
		char line[300] = "";
		FILE *f = fopen(report, "r");
		if (f != NULL && fgets(line, sizeof line, f) == NULL)
			line[0] = '\0';
		if (f != NULL)
			fclose(f);
		CHECK(0, "%s: went on after the failure: %s", spec, line);
	}
	return status;
}

/* The op of the last "KEY op" line of out, or 0. */
static uint64_t last_op(const char *out, const char *key)
{
	uint64_t v = 0;
	size_t kl = strlen(key);
	for (const char *p = out; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
			v = strtoull(p + kl + 1, NULL, 10);
	return v;
}

static void expect_stop(const char *spec, int status, const char *err, const char *what,
			const char *error, const char *dir)
{
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 74, "%s: status 0x%x, not exit 74", spec,
	      status);
	CHECK(strstr(err, "vsr.store: LMDB ") && strstr(err, what) && strstr(err, error) &&
		      strstr(err, "this replica stops (exit 74)"),
	      "%s: no sentence naming vsr.store, \"%s\" and \"%s\": %s", spec, what, error, err);
	/* Which store: under a supervisor three replicas share one stderr. */
	char where[700];
	snprintf(where, sizeof where, "(vsr.store in %s/store)", dir);
	CHECK(strstr(err, where) != NULL, "%s: the sentence does not say %s: %s", spec, where, err);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--child") == 0)
		return child(argv[2], argv[3]);
	if (argc != 2) {
		fprintf(stderr, "usage: test_store_syncfail SHIM\n");
		return 64;
	}
	g_shim = argv[1];
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
	if (sl <= 0)
		return 1;
	self[sl] = '\0';
	static const struct {
		const char *spec, *error;
		bool synced_written; /* the record of the failed checkpoint was written (not synced) */
	} cases[] = {
		{"data.msync:EIO:3", "(EIO)", false},
		{"data.sync_file_range:EIO:3", "(EIO)", false},
		{"synced.pwrite:ENOSPC:3", "the disk is full", false},
		{"synced.fdatasync:EIO:3", "(EIO)", true},
	};
	char out[8192], err[8192];
	char opened[600] = "";
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		char dir[] = "/tmp/vsr-syncfail-XXXXXX";
		if (mkdtemp(dir) == NULL)
			return 1;
		const char *spec = cases[c].spec;
		int status = run(self, "checkpoint", dir, spec, out, sizeof out, err, sizeof err);
		expect_stop(spec, status, err, "sync of a checkpoint failed", cases[c].error, dir);
		uint64_t taken = last_op(out, "take"), durable = last_op(out, "durable");
		CHECK(taken > 0 && durable < taken,
		      "%s: the checkpoint at op %" PRIu64 " was reported durable though its sync failed",
		      spec, taken);
		CHECK(strstr(out, "survived") == NULL, "%s: went on", spec);
		char store_dir[600];
		st_path(store_dir, sizeof store_dir, dir, "store");
		if (!cases[c].synced_written)
			CHECK(st_synced_op(store_dir) == durable,
			      "%s: `synced` names op %" PRIu64 ", not %" PRIu64, spec,
			      st_synced_op(store_dir), durable);
		if (durable < taken)
			printf("%s: exit 74, checkpoint at op %" PRIu64 " not durable (the last durable: "
			       "op %" PRIu64 ")\n", spec, taken, durable);
		if (c == 0) {
			snprintf(opened, sizeof opened, "%s", dir); /* its newest commit is unsynced */
			continue;
		}
		st_remove(dir);
	}
	/* The store whose last sync failed, opened on the still failing disk:
	 * its newest transaction is rolled back even on this boot (the page
	 * cache may have dropped what failed to write), and that write fails. */
	int status = run(self, "open", opened, "data.fdatasync:EIO:1", out, sizeof out, err, sizeof err);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 74, "open: status 0x%x, not exit 74", status);
	CHECK(strstr(err, "vsr.store: rolling") && strstr(err, "Input/output error") &&
		      strstr(err, "this replica stops (exit 74)"),
	      "open: no sentence naming the rollback and the error: %s", err);
	CHECK(strstr(out, "opened") == NULL, "the store opened on a failing disk");
	printf("open after a failed sync, the disk still failing: the rollback fails, exit 74\n");
	/* ... and on a good disk. */
	status = run(self, "open", opened, NULL, out, sizeof out, err, sizeof err);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(out, "opened"),
	      "the store on a good disk opens: status 0x%x, %s", status, err);
	st_remove(opened);

	/* An install whose sync of next/ fails. */
	char dir[] = "/tmp/vsr-syncfail-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	status = run(self, "install", dir, "next.msync:EIO:1", out, sizeof out, err, sizeof err);
	expect_stop("install: next.msync:EIO:1", status, err, "sync of a fetched checkpoint failed",
		    "(EIO)", dir);
	if (strstr(out, "install returned") != NULL)
		CHECK(0, "the install went on: %s", strstr(out, "install returned"));
	else
		printf("install of a fetched checkpoint whose sync fails: exit 74\n");
	st_remove(dir);
	if (failures == 0)
		printf("vsr.store stops (exit 74) on every failed sync\n");
	return failures ? 1 : 0;
}
