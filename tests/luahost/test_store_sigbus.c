/* test_store_sigbus.c - vsr.store on LMDB when the disk fills between two
 * checkpoints: pages beyond the room reserved on disk live in the sparse
 * rest of the file, and a page the full disk cannot back is a SIGBUS; the
 * store turns it into exit 74 with a sentence (docs/storage.md), never a
 * crash by signal.
 *
 * A child opens a durable store on a 160 MiB tmpfs (the store reserves
 * 64 MiB), applies puts of 16 KiB values with no checkpoint until the tmpfs
 * is full; the parent expects exit status 74 and the sentence on the
 * child's stderr. Needs the right to mount a tmpfs (root); skipped (77)
 * otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vsrh_config.h"
#include "vsrh_lua.h"
#include "kv_op.h"
#include "store_test.h"

/* The child: fills the store until the process ends. Returns only on an
 * unexpected failure. */
static int fill(const char *store_dir)
{
	char err[512];
	vsrh_config cfg;
	if (vsrh_config_load("config/kv.lua", &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "config/kv.lua: %s\n", err);
		return 1;
	}
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create_at(&sm, &cfg, store_dir, true, true, err, sizeof err) != VSR_OK) {
		fprintf(stderr, "open %s: %s\n", store_dir, err);
		return 1;
	}
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf op = {0}, reply = {0};
	/* 30,000 x 16 KiB is 480 MiB: three times the tmpfs. */
	for (int i = 0; i < 30000; i++) {
		kv_put_op(&op, i, 16384, 0);
		vsr_apply_ctx a = {.op = (uint64_t)i + 1, .session = 1, .request = (uint64_t)i + 1};
		reply.len = 0;
		if (m.apply(m.ctx, &a, op.data, op.len, &reply) != VSR_REPLY_OK) {
			fprintf(stderr, "put %d refused\n", i);
			return 1;
		}
	}
	fprintf(stderr, "wrote 480 MiB into a 160 MiB tmpfs without an error\n");
	return 1;
}

int main(void)
{
	char dir[] = "/tmp/vsr-store-sigbus-XXXXXX";
	int mounted = st_tmpfs(dir, "160m");
	if (mounted != 0)
		return mounted;
	char store[400], log[400];
	snprintf(store, sizeof store, "%s/store", dir);
	snprintf(log, sizeof log, "%s.log", dir);
	pid_t pid = st_child_fork(log);
	if (pid == 0)
		_exit(fill(store));
	int rc = 1;
	if (pid > 0) {
		char text[2048];
		int status = st_child_log(pid, log, text, sizeof text);
		if (WIFSIGNALED(status))
			printf("FAIL: the store died of signal %d (%s)\n", WTERMSIG(status),
			       strsignal(WTERMSIG(status)));
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
			printf("FAIL: exit status %d, not 74; stderr: %s\n", WEXITSTATUS(status), text);
		else if (strstr(text, "could not be written (SIGBUS") == NULL &&
			 strstr(text, "disk is full") == NULL)
			printf("FAIL: exit 74 without saying why; stderr: %s\n", text);
		else {
			printf("store on a full disk: exit 74: %s", text);
			rc = 0;
		}
	}
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	if (rc == 0) unlink(log);
	return rc;
}
