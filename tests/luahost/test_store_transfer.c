/* test_store_transfer.c - a checkpoint fetched by another store (a state
 * transfer) ends as a store whose every record passes its check and reads
 * back: records of format 2 (docs/storage.md, "vsr.store's records") made
 * from the image's plain values on every install path.
 *
 * A runs spec/fixtures/storeops.lua on a durable store: keys of 1 to 511
 * bytes, values from empty to 100,000 bytes (around the sizes where the 8
 * bytes of a check take a big value to one more overflow page), some
 * overwritten, some deleted; its checkpoint's image is read and written to
 * B, which had a state of its own, in each way a replica fetches it:
 *   - in order, built into next/ as the chunks come (build_note);
 *   - in chunks of random sizes in a random order (joined ranges);
 *   - a chunk written twice: the build is dropped, and the install builds
 *     next/ from the whole staging file;
 *   - into a memory store (durability "memory": LMDB in a scratch dir);
 *   - a whole-state snapshot of A restored into B (vsrh_store_read: B's
 *     records dropped and written again in its open transaction);
 *   - and the image of a store whose keys were all deleted.
 * Then B's digest must be A's, a get of every key (deleted ones too) and a
 * count must answer as A does (a record failing its check stops the
 * process with exit 74: the test dies), B takes a checkpoint of its own,
 * and, durable, B's environment must pass the restart's store check
 * (vsrh_store_verify_dir: every record's check, the free list against the
 * trees) and reopen with that checkpoint's digest. A's environment, and
 * one whose records were all deleted, must pass it too. The seed is
 * printed; VSR_SEED=N replays.
 *
 * --nowritemap (ctest luahost_store_transfer_nowritemap): the same in a
 * tmpfs of 100 MiB, too small for the map's first reservation: every
 * environment (A's, B's, next/) writes its pages with pwrite instead of
 * through the map (a nearly full disk), whose free list and pages the
 * store check must pass as well (no memory store: its scratch directory
 * is not on the tmpfs). 77 (skip) when a tmpfs cannot be mounted. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>

#include "store_test.h"
#include "vsrh_store.h"

#define KEYS 1500
#define GETS_PER_OP 64

static uint64_t rng;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---------------------------------------------------------------- msgpack */

static void mp_array(vsr_buf *b, uint32_t n)
{
	uint8_t h[5] = {0xdd, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
	vsr_buf_append(b, h, 5);
}

static void mp_str(vsr_buf *b, const char *p, size_t n)
{
	uint8_t h[5] = {0xdb, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
	vsr_buf_append(b, h, 5);
	if (n)
		vsr_buf_append(b, p, n);
}

static void mp_cstr(vsr_buf *b, const char *s)
{
	mp_str(b, s, strlen(s));
}

/* ---------------------------------------------------------------- the keys */

/* Key i: 1 byte for i < 26, 511 bytes for every 13th, else 6 to 300. */
static size_t key_of(int i, char *k)
{
	if (i < 26) {
		k[0] = (char)('A' + i);
		return 1;
	}
	size_t n = (size_t)snprintf(k, 16, "k%06d", i);
	size_t want = i % 13 == 0 ? 511 : i % 3 == 0 ? 6 + (size_t)(i % 295) : n;
	for (; n < want; n++)
		k[n] = (char)('a' + (i + (int)n) % 26);
	return n;
}

/* A value's length: mostly small, some around one and two overflow pages
 * with and without the check's 8 bytes, a few large. */
static size_t value_len(void)
{
	static const size_t big[] = {4050, 4064, 4072, 4073, 4080, 4081, 4088, 4096, 8160, 8168,
				     8169, 8176, 8192, 20000, 100000};
	uint64_t r = rnd() % 20;
	if (r == 0)
		return big[rnd() % (sizeof big / sizeof big[0])];
	if (r == 1)
		return 0;
	return (size_t)(rnd() % 300);
}

static char *value_bytes(size_t n, int salt)
{
	static char *v;
	static size_t cap;
	if (n > cap) {
		v = realloc(v, n);
		cap = n;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = (char)('a' + (int)((i * 7 + (size_t)salt) % 26));
	return v;
}

/* ---------------------------------------------------------------- sides */

typedef struct side {
	vsrh_sm *sm;
	vsr_state_machine m;
	uint64_t op;
} side;

static int open_side(side *s, const vsrh_config *cfg, const char *dir, bool fresh)
{
	memset(s, 0, sizeof *s);
	s->sm = st_open_script(cfg, "spec/fixtures/storeops.lua", dir, dir != NULL, fresh);
	if (s->sm == NULL)
		return -1;
	vsrh_sm_bind(s->sm, &s->m);
	return 0;
}

/* Applies op at s's next op number; its reply into *reply (emptied first).
 * Returns whether it was applied without error. */
static bool apply(side *s, const vsr_buf *op, vsr_buf *reply)
{
	s->op++;
	vsr_apply_ctx a = {.op = s->op, .session = 1, .request = s->op};
	reply->len = 0;
	return s->m.apply(s->m.ctx, &a, op->data, op->len, reply) == VSR_REPLY_OK;
}

/* Puts of keys [from, to) with values of random lengths (salted), a few
 * per operation (at most about 1 MB). */
static bool put_keys(side *s, int from, int to, int salt)
{
	vsr_buf op = {0}, reply = {0};
	bool ok = true;
	char k[600];
	for (int i = from; ok && i < to;) {
		int n = 0;
		size_t bytes = 0;
		vsr_buf body = {0};
		while (i < to && n < 32 && bytes < (1u << 20)) {
			size_t kl = key_of(i, k), vl = value_len();
			mp_array(&body, 3);
			mp_cstr(&body, "put");
			mp_str(&body, k, kl);
			mp_str(&body, value_bytes(vl, i + salt), vl);
			bytes += vl;
			n++;
			i++;
		}
		op.len = 0;
		mp_array(&op, (uint32_t)n);
		vsr_buf_append(&op, body.data, body.len);
		free(body.data);
		ok = apply(s, &op, &reply);
	}
	CHECK(ok, "puts of keys %d..%d refused: %.*s", from, to, (int)reply.len,
	      (const char *)reply.data);
	free(op.data);
	free(reply.data);
	return ok;
}

/* Deletes of the keys i in [from, to) with i % every == 0. */
static bool delete_keys(side *s, int from, int to, int every)
{
	vsr_buf op = {0}, reply = {0}, body = {0};
	bool ok = true;
	char k[600];
	int n = 0;
	for (int i = from; ok && i < to; i++) {
		if (i % every == 0) {
			size_t kl = key_of(i, k);
			mp_array(&body, 2);
			mp_cstr(&body, "delete");
			mp_str(&body, k, kl);
			n++;
		}
		if (n == 64 || (i == to - 1 && n > 0)) {
			op.len = 0;
			mp_array(&op, (uint32_t)n);
			vsr_buf_append(&op, body.data, body.len);
			body.len = 0;
			n = 0;
			ok = apply(s, &op, &reply);
		}
	}
	CHECK(ok, "deletes refused");
	free(op.data);
	free(body.data);
	free(reply.data);
	return ok;
}

/* A get of every key (deleted ones too) and a count, on a and b: the same
 * replies. A record that fails its check stops the process (exit 74). */
static bool reads_equal(side *a, side *b, const char *what)
{
	vsr_buf op = {0}, ra = {0}, rb = {0};
	char k[600];
	bool ok = true;
	for (int i = 0; ok && i <= KEYS; i += GETS_PER_OP) {
		int n = i + GETS_PER_OP <= KEYS ? GETS_PER_OP : KEYS - i;
		op.len = 0;
		mp_array(&op, (uint32_t)n + 1);
		for (int j = i; j < i + n; j++) {
			size_t kl = key_of(j, k);
			mp_array(&op, 2);
			mp_cstr(&op, "get");
			mp_str(&op, k, kl);
		}
		mp_array(&op, 1);
		mp_cstr(&op, "count");
		bool oka = apply(a, &op, &ra), okb = apply(b, &op, &rb);
		ok = oka && okb && ra.len == rb.len && memcmp(ra.data, rb.data, ra.len) == 0;
		CHECK(ok, "%s: the gets of keys %d..%d answer differently (%zu and %zu bytes)", what, i,
		      i + n, ra.len, rb.len);
	}
	free(op.data);
	free(ra.data);
	free(rb.data);
	return ok;
}

static int accept_any(void *arg, const uint8_t *meta, size_t len)
{
	(void)arg;
	(void)meta;
	(void)len;
	return VSR_OK;
}

enum way { IN_ORDER, SHUFFLED, TWICE, MEMORY, SNAPSHOT, WAYS };
static const char *const way_name[] = {"in order", "shuffled chunks", "a chunk written twice",
				       "into a memory store", "a whole-state snapshot restored"};

/* img (A's checkpoint cp) written to b as `way` says, then installed. */
static int transfer(side *b, const vsr_checkpoint *cp, const vsr_buf *img, enum way way)
{
	uint64_t size = img->len;
	uint64_t(*chunks)[2] = NULL;
	size_t n = 0, cap = 0;
	for (uint64_t at = 0; at < size;) {
		uint64_t len = way == SHUFFLED ? 1 + rnd() % 20000 : 65536;
		if (len > size - at)
			len = size - at;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			chunks = realloc(chunks, cap * sizeof *chunks);
		}
		chunks[n][0] = at;
		chunks[n][1] = len;
		n++;
		at += len;
	}
	if (way == SHUFFLED)
		for (size_t i = n; i > 1; i--) {
			size_t j = rnd() % i;
			uint64_t t0 = chunks[i - 1][0], t1 = chunks[i - 1][1];
			chunks[i - 1][0] = chunks[j][0];
			chunks[i - 1][1] = chunks[j][1];
			chunks[j][0] = t0;
			chunks[j][1] = t1;
		}
	int rc = VSR_OK;
	for (size_t i = 0; rc == VSR_OK && i < n; i++) {
		rc = b->m.checkpoint_write(b->m.ctx, cp, chunks[i][0], img->data + chunks[i][0],
					   (uint32_t)chunks[i][1]);
		if (rc == VSR_OK && way == TWICE && i == 0) /* once more: the build is dropped */
			rc = b->m.checkpoint_write(b->m.ctx, cp, 0, img->data, (uint32_t)chunks[0][1]);
	}
	free(chunks);
	if (rc == VSR_OK)
		rc = b->m.checkpoint_install(b->m.ctx, cp, accept_any, NULL);
	return rc;
}

/* The checkpoint of s at its op into *cp and its image into *img. */
static bool take_image(side *s, vsr_checkpoint *cp, vsr_buf *img)
{
	int rc = st_take(s->sm, s->op, NULL, NULL, cp);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take at op %llu: %d",
	      (unsigned long long)s->op, rc);
	if (rc == VSR_PENDING) /* durable: its sync was waited for (st_take) */
		rc = VSR_OK;
	img->len = 0;
	for (uint64_t at = 0; rc == VSR_OK && at < cp->size; at += 1u << 20) {
		uint64_t len = cp->size - at < (1u << 20) ? cp->size - at : (1u << 20);
		rc = s->m.checkpoint_read(s->m.ctx, cp, at, (uint32_t)len, img);
	}
	CHECK(rc == VSR_OK && img->len == cp->size, "read of the image at op %llu: %d (%zu of %llu)",
	      (unsigned long long)cp->op, rc, img->len, (unsigned long long)cp->size);
	return rc == VSR_OK && img->len == cp->size;
}

/* Closes s (a durable store at dir, its checkpoint cp) and runs the
 * restart's store check on it, then reopens it: its digest must be want. */
static void close_and_check(side *s, const vsrh_config *cfg, const char *dir,
			    const vsr_checkpoint *cp, uint64_t want, const char *what)
{
	vsrh_sm_destroy(s->sm);
	s->sm = NULL;
	char why[600] = "";
	int rc = vsrh_store_verify_dir(dir, cp->op, cp->checksum, why, sizeof why);
	CHECK(rc == 0, "%s: the store check finds %s damaged (%d): %s", what, dir, rc, why);
	side r;
	if (open_side(&r, cfg, dir, false) != 0)
		return;
	vsr_checkpoint got;
	vsr_buf meta = {0};
	rc = r.m.checkpoint_open(r.m.ctx, &got, &meta);
	CHECK(rc == VSR_OK && got.op == cp->op, "%s: reopened at op %llu (%d), not %llu", what,
	      (unsigned long long)got.op, rc, (unsigned long long)cp->op);
	CHECK(r.m.digest(r.m.ctx) == want, "%s: reopened with another digest", what);
	free(meta.data);
	vsrh_sm_destroy(r.sm);
}

/* A's checkpoint fetched by a new B (with a state of its own first). */
static void fetch_into(const vsrh_config *cfg, const char *dir, side *a, const vsr_checkpoint *cp,
		       const vsr_buf *img, enum way way)
{
	char bdir[600];
	snprintf(bdir, sizeof bdir, "%s/b%d", dir, (int)way);
	side b;
	if (open_side(&b, cfg, way == MEMORY ? NULL : bdir, true) != 0)
		return;
	if (!put_keys(&b, KEYS / 2, KEYS / 2 + 200, 99)) /* B's own, replaced */
		return;
	int rc;
	if (way == SNAPSHOT) { /* vsrh_store_read: the records replaced in place */
		vsr_buf snap = {0};
		rc = a->m.snapshot(a->m.ctx, &snap);
		if (rc == VSR_OK)
			rc = b.m.restore(b.m.ctx, snap.data, snap.len);
		free(snap.data);
		b.op = a->op;
	} else {
		rc = transfer(&b, cp, img, way);
		b.op = cp->op;
	}
	CHECK(rc == VSR_OK, "%s: install: %d", way_name[way], rc);
	if (rc != VSR_OK)
		return;
	uint64_t digest = b.m.digest(b.m.ctx);
	CHECK(digest == a->m.digest(a->m.ctx), "%s: B's digest is not A's", way_name[way]);
	if (!reads_equal(a, &b, way_name[way]))
		return;
	/* B goes on and takes a checkpoint of its own from the installed state. */
	vsr_checkpoint own;
	vsr_buf own_img = {0};
	if (take_image(&b, &own, &own_img))
		CHECK(b.m.digest(b.m.ctx) == digest, "%s: the gets changed the digest", way_name[way]);
	free(own_img.data);
	printf("%s: installed %llu bytes, every key read back, digest %016llx\n", way_name[way],
	       (unsigned long long)cp->size, (unsigned long long)digest);
	if (way == MEMORY)
		vsrh_sm_destroy(b.sm);
	else
		close_and_check(&b, cfg, bdir, &own, digest, way_name[way]);
}

int main(int argc, char **argv)
{
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-transfer-XXXXXX";
	bool nowritemap = argc > 1 && strcmp(argv[1], "--nowritemap") == 0;
	if (nowritemap) {
		if (st_config(&cfg) != 0)
			return 1;
		int mounted = st_tmpfs(dir, "100m");
		if (mounted != 0) {
			vsrh_config_free(&cfg);
			return mounted;
		}
	} else if (st_begin(&cfg, dir) != 0) {
		return 1;
	}
	rng = st_seed() * 2654435761u + 1;

	char adir[600];
	snprintf(adir, sizeof adir, "%s/a", dir);
	side a;
	if (open_side(&a, &cfg, adir, true) != 0)
		return st_end(dir, &cfg, NULL);
	vsr_checkpoint cp;
	vsr_buf img = {0};
	bool ok = put_keys(&a, 0, KEYS, 0) && delete_keys(&a, 0, KEYS, 3) &&
		  put_keys(&a, 0, KEYS / 4, 7) && take_image(&a, &cp, &img);
	for (int way = IN_ORDER; ok && way < WAYS && failures == 0; way++)
		if (way != MEMORY || !nowritemap)
			fetch_into(&cfg, dir, &a, &cp, &img, (enum way)way);

	/* Every key deleted: an empty store's checkpoint, fetched and checked. */
	if (ok && failures == 0) {
		ok = delete_keys(&a, 0, KEYS, 1) && take_image(&a, &cp, &img);
		if (ok)
			fetch_into(&cfg, dir, &a, &cp, &img, SHUFFLED);
	}
	if (ok && failures == 0)
		close_and_check(&a, &cfg, adir, &cp, a.m.digest(a.m.ctx), "A, every key deleted");
	else
		vsrh_sm_destroy(a.sm);
	free(img.data);
	if (nowritemap) {
		char cmd[700];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", dir);
		if (system(cmd) != 0)
			printf("could not empty %s\n", dir);
		umount2(dir, MNT_DETACH);
	}
	return st_end(dir, &cfg,
		      "a fetched checkpoint, by every install path, reads back whole and passes the "
		      "store check");
}
