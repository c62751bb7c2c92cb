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
 * And a byte flipped in the key: a get of the key then finds nothing, and
 * the put inserted it afresh beside the damaged record (the replica's count
 * and digest then differ from the others'). The get checks the records on
 * either side of where the key belongs.
 *
 * Each round: a store gets one key and a durable checkpoint and is closed;
 * in every copy in data.mdb, the value's msgpack length byte is set past
 * the end (round 1), one 'a' of the string becomes 'b' (round 2), or the
 * key's last byte moves up (round 3: the damaged key sorts after the key)
 * or down (round 4: before it); a child opens the store as a restart does
 * and applies a put of that key. It must exit 74 naming the damage. Exit 3
 * is the first old behaviour (the put refused as a script error), exit 4
 * the others (the put applied over the damaged value, or beside it).
 *
 * Rounds 5 to 8 damage the key as rounds 3 and 4 do, but the operation
 * reads nothing first (spec/fixtures/storeops.lua): a blind put of the key
 * inserted it afresh beside the damaged record, and a blind delete found
 * nothing to delete, while the others replaced or deleted the record (exit
 * 4 on the old code: the count and digest then differ from the others'). A
 * write that finds no record checks the records on either side too. */
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

enum rot {
	ROT_LENGTH,
	ROT_INSIDE,
	ROT_KEY_UP,
	ROT_KEY_DOWN,
	ROT_PUT_UP,   /* a blind put (storeops.lua) of the key damaged up */
	ROT_PUT_DOWN,
	ROT_DEL_UP,   /* a blind delete of it */
	ROT_DEL_DOWN,
	ROT_LATER,    /* key 2 inserted after a clean miss, damaged, then put blind */
	ROT_END
};

static const char *const rot_name[] = {"the value's length byte", "a byte inside the value",
				       "the key's last byte, up", "the key's last byte, down",
				       "the key's last byte, up (a blind put)",
				       "the key's last byte, down (a blind put)",
				       "the key's last byte, up (a blind delete)",
				       "the key's last byte, down (a blind delete)",
				       "the key's last byte, up, after an insert (a blind put)"};

static bool rot_blind(enum rot how)
{
	return how >= ROT_PUT_UP;
}

static bool rot_key_up(enum rot how)
{
	return how == ROT_KEY_UP || how == ROT_PUT_UP || how == ROT_DEL_UP || how == ROT_LATER;
}

/* storeops.lua's operation [[name, "sk00000N", value]] (value NULL: none),
 * in msgpack, one call. */
static void ops_op(vsr_buf *b, const char *name, int key, size_t value_len)
{
	char k[16];
	int kl = snprintf(k, sizeof k, "sk%06d", key);
	size_t nl = strlen(name);
	b->len = 0;
	uint8_t h[3] = {0x91, (uint8_t)(value_len ? 0x93 : 0x92), (uint8_t)(0xa0 | nl)};
	vsr_buf_append(b, h, 3);
	vsr_buf_append(b, name, nl);
	uint8_t kh = (uint8_t)(0xa0 | kl);
	vsr_buf_append(b, &kh, 1);
	vsr_buf_append(b, k, (size_t)kl);
	if (value_len) { /* a str8 of value_len 'a's (< 256) */
		uint8_t vh[2] = {0xd9, (uint8_t)value_len};
		vsr_buf_append(b, vh, 2);
		for (size_t i = 0; i < value_len; i++)
			vsr_buf_append(b, "a", 1);
	}
}

/* In every str8 holding the 100 'a's of key 0's value (0xd9 0x64 'a' x
 * 100), sets the length byte to 0xff (the string then runs past the
 * value's end), or its 50th 'a' to 'b' (still msgpack); or in every copy
 * of key 0 (sk000000), its last byte to '1' or '/'. Returns how many
 * copies it changed. */
static int damage(const char *file, enum rot how)
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
	size_t wl = sizeof want, off = 1;
	uint8_t b = 0xff;
	want[0] = 0xd9;
	want[1] = 100;
	memset(want + 2, 'a', 100);
	if (how == ROT_INSIDE) {
		off = 2 + 49;
		b = 'b';
	} else if (how != ROT_LENGTH) {
		wl = 8;
		memcpy(want, how == ROT_LATER ? "sk000002" : "sk000000", wl);
		off = 7;
		b = how == ROT_LATER ? '3' : rot_key_up(how) ? '1' : '/';
	}
	int n = 0;
	static uint8_t buf[1 << 20];
	off_t pos = 0;
	for (;;) {
		off_t s = lseek(fd, pos, SEEK_DATA);
		if (s < 0)
			break;
		off_t e = lseek(fd, s, SEEK_HOLE);
		for (off_t at = s; at < e; at += (off_t)sizeof buf - (off_t)wl) {
			ssize_t r = pread(fd, buf, sizeof buf, at);
			if (r < (ssize_t)wl)
				break;
			for (ssize_t i = 0; i + (ssize_t)wl <= r; i++) {
				if (buf[i] == want[0] && memcmp(buf + i, want, wl) == 0) {
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

static int child(const vsrh_config *cfg, const char *store, enum rot how)
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
	if (how == ROT_LATER) {
		/* A get of key 2 misses (nothing damaged around it) and the
		 * put inserts it; then its record is damaged in the file (the
		 * map is shared) and an operation puts it blind. */
		vsr_buf both = {0};
		ops_op(&op, "get", 2, 0);
		ops_op(&both, "put", 2, 10);
		op.data[0] = 0x92; /* two calls: the get's, then the put's */
		vsr_buf_append(&op, both.data + 1, both.len - 1);
		free(both.data);
		vsr_apply_ctx a = {.op = cp.op + 1, .session = 1, .request = cp.op + 1};
		if (m.apply(m.ctx, &a, op.data, op.len, &reply) != VSR_REPLY_OK) {
			fprintf(stderr, "the get and put of key 2 failed\n");
			return 2;
		}
		char file[500];
		snprintf(file, sizeof file, "%s/db/data.mdb", store);
		if (damage(file, how) <= 0) {
			fprintf(stderr, "key 2 not found in %s\n", file);
			return 2;
		}
		cp.op++;
		ops_op(&op, "put", 2, 10);
	} else if (how == ROT_PUT_UP || how == ROT_PUT_DOWN)
		ops_op(&op, "put", 0, 10);
	else if (how == ROT_DEL_UP || how == ROT_DEL_DOWN)
		ops_op(&op, "delete", 0, 0);
	else
		kv_put_op(&op, 0, 100, 1);
	vsr_apply_ctx a = {.op = cp.op + 1, .session = 1, .request = cp.op + 1};
	int rc = m.apply(m.ctx, &a, op.data, op.len, &reply);
	fprintf(stderr, "the write returned %d: %.*s\n", rc, (int)reply.len, (const char *)reply.data);
	return rc == VSR_REPLY_OK ? 4 : 3;
}

static void round_of(const vsrh_config *kv_cfg, const char *dir, enum rot how)
{
	vsrh_config ops_cfg = *kv_cfg;
	ops_cfg.statemachine = (char *)"spec/fixtures/storeops.lua";
	const vsrh_config *cfg = rot_blind(how) ? &ops_cfg : kv_cfg;
	const char *what = rot_name[how];
	char store[400], file[500], log[500], name[32];
	snprintf(name, sizeof name, "store-%d", (int)how);
	st_path(store, sizeof store, dir, name);
	snprintf(file, sizeof file, "%s/db/data.mdb", store);
	snprintf(log, sizeof log, "%s/child-%d.log", dir, (int)how);

	vsrh_sm *sm = st_create(cfg, store, true, true);
	if (sm != NULL) {
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		uint64_t op = 0;
		vsr_buf b = {0}, reply = {0};
		if (rot_blind(how))
			ops_op(&b, "put", 0, 100); /* the same records, by storeops.lua */
		else
			kv_put_op(&b, 0, 100, 0); /* key k000000, 100 x 'a' */
		vsr_apply_ctx a = {.op = ++op, .session = 1, .request = op};
		CHECK(m.apply(m.ctx, &a, b.data, b.len, &reply) == VSR_REPLY_OK, "the first put");
		/* And k000001 after it (50 x 'a': not the pattern damaged), so
		 * that a key damaged downwards has a record after it too. */
		if (rot_blind(how))
			ops_op(&b, "put", 1, 50);
		else
			kv_put_op(&b, 1, 50, 0);
		a = (vsr_apply_ctx){.op = ++op, .session = 1, .request = op};
		reply.len = 0;
		CHECK(m.apply(m.ctx, &a, b.data, b.len, &reply) == VSR_REPLY_OK, "the second put");
		free(b.data);
		free(reply.data);
		vsr_checkpoint cp;
		int rc = st_take(sm, op, NULL, NULL, &cp);
		CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
		vsrh_sm_destroy(sm); /* waits for the checkpoint's sync */
	}
	int n = how == ROT_LATER ? 1 : damage(file, how); /* ROT_LATER: by the child */
	CHECK(n > 0, "no copy of the value found in %s (%d)", file, n);
	printf("%s damaged in %d copies in %s\n", what, n, file);

	pid_t pid = st_child_fork(log);
	if (pid == 0) {
		int rc = child(cfg, store, how);
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
	for (int how = ROT_LENGTH; how < ROT_END; how++)
		round_of(&cfg, dir, (enum rot)how);
	return st_end(dir, &cfg, "a value damaged on disk stops the replica (exit 74)");
}
