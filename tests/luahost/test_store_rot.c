/* test_store_rot.c - a value in vsr.store's data.mdb damaged on disk, read
 * by an operation: the replica stops with exit 74 (a disk error) and says
 * so; it must neither turn it into the script's error nor use the value.
 *
 * Found by hand (issue 8 review): a byte flipped in the primary's data.mdb
 * under one value, then `vsrctl put` of that key: kv.lua's put reads the old
 * value, the primary's apply raised "a stored value does not decode" and the
 * client got exit 1, "applied as an error, no effect", while both backups
 * applied the put (the key then read "ten", version 2, from them). A Lua
 * error must be identical on every replica; this one is this disk's alone.
 *
 * And a byte flipped inside the string still decodes: the primary served
 * that value to clients, and its next put wrote version 2 over it as if
 * intact. Every record now carries a check of its key and value
 * (docs/storage.md, "vsr.store's records").
 *
 * Each round: a store gets one key and a durable checkpoint and is closed;
 * in every copy of the value in data.mdb, the msgpack length byte is set
 * past the end (round 1) or one 'a' of the string becomes 'b' (round 2); a
 * child opens the store as a restart does and applies a put of that key.
 * It must exit 74 naming the damage. Exit 3 is the first old behaviour
 * (the put refused as a script error), exit 4 the second (the put applied
 * over the damaged value). */
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

/* In every str8 holding the 100 'a's of key 0's value (0xd9 0x64 'a' x
 * 100), sets the length byte to 0xff (the string then runs past the
 * value's end), or with `inside` its 50th 'a' to 'b' (still msgpack).
 * Returns how many copies it changed. */
static int damage(const char *file, bool inside)
{
	int fd = open(file, O_RDWR);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	uint8_t want[102];
	want[0] = 0xd9;
	want[1] = 100;
	memset(want + 2, 'a', 100);
	int n = 0;
	static uint8_t buf[1 << 20];
	off_t pos = 0;
	for (;;) {
		off_t s = lseek(fd, pos, SEEK_DATA);
		if (s < 0)
			break;
		off_t e = lseek(fd, s, SEEK_HOLE);
		for (off_t at = s; at < e; at += (off_t)sizeof buf - (off_t)sizeof want) {
			ssize_t r = pread(fd, buf, sizeof buf, at);
			if (r < (ssize_t)sizeof want)
				break;
			for (ssize_t i = 0; i + (ssize_t)sizeof want <= r; i++) {
				if (buf[i] == 0xd9 && memcmp(buf + i, want, sizeof want) == 0) {
					size_t off = inside ? 2 + 49 : 1;
					uint8_t b = inside ? 'b' : 0xff;
					if (pwrite(fd, &b, 1, at + (off_t)i + (off_t)off) == 1)
						n++;
					buf[i + off] = b;
				}
			}
		}
		pos = e;
	}
	close(fd);
	return n;
}

static int child(const vsrh_config *cfg, const char *store)
{
	char err[512];
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create_at(&sm, cfg, store, true, false, err, sizeof err) != VSR_OK) {
		fprintf(stderr, "open %s: %s\n", store, err);
		return 2;
	}
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf meta = {0}, op = {0}, reply = {0};
	vsr_checkpoint cp;
	if (m.checkpoint_open(m.ctx, &cp, &meta) != VSR_OK) {
		fprintf(stderr, "checkpoint_open failed\n");
		return 2;
	}
	kv_put_op(&op, 0, 100, 1);
	vsr_apply_ctx a = {.op = cp.op + 1, .session = 1, .request = cp.op + 1};
	int rc = m.apply(m.ctx, &a, op.data, op.len, &reply);
	fprintf(stderr, "the put returned %d: %.*s\n", rc, (int)reply.len, (const char *)reply.data);
	return rc == VSR_REPLY_OK ? 4 : 3;
}

static void round_of(const vsrh_config *cfg, const char *dir, bool inside)
{
	const char *what = inside ? "a byte inside the value" : "the value's length byte";
	char store[400], file[500], log[500];
	st_path(store, sizeof store, dir, inside ? "store-inside" : "store-length");
	snprintf(file, sizeof file, "%s/db/data.mdb", store);
	snprintf(log, sizeof log, "%s/child-%d.log", dir, inside);

	vsrh_sm *sm = st_create(cfg, store, true, true);
	if (sm != NULL) {
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		uint64_t op = 0;
		vsr_buf b = {0}, reply = {0};
		kv_put_op(&b, 0, 100, 0); /* key k000000, 100 x 'a' */
		vsr_apply_ctx a = {.op = ++op, .session = 1, .request = op};
		CHECK(m.apply(m.ctx, &a, b.data, b.len, &reply) == VSR_REPLY_OK, "the first put");
		free(b.data);
		free(reply.data);
		vsr_checkpoint cp;
		int rc = st_take(sm, op, NULL, NULL, &cp);
		CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
		vsrh_sm_destroy(sm); /* waits for the checkpoint's sync */
	}
	int n = damage(file, inside);
	CHECK(n > 0, "no copy of the value found in %s (%d)", file, n);
	printf("%s damaged in %d copies in %s\n", what, n, file);

	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		if (freopen(log, "w", stderr) == NULL)
			_exit(2);
		int rc = child(cfg, store);
		fflush(NULL);
		_exit(rc);
	}
	char text[2048];
	int status = st_child_log(pid, log, text, sizeof text);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 74,
	      "%s damaged: status 0x%x, not exit 74 (3: refused as a script error; 4: the put "
	      "applied over the damaged value); its stderr: %s", what, status, text);
	CHECK(strstr(text, "fails its check") && strstr(text, "damaged") && strstr(text, store) &&
		      strstr(text, "this replica stops (exit 74)"),
	      "no sentence naming the damage and the store: %s", text);
	if (failures == 0)
		printf("%s damaged: exit 74: %s", what, text);
}

int main(void)
{
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-store-rot-XXXXXX";
	if (st_begin(&cfg, dir) != 0)
		return 1;
	round_of(&cfg, dir, false);
	round_of(&cfg, dir, true);
	return st_end(dir, &cfg, "a value damaged on disk stops the replica (exit 74)");
}
