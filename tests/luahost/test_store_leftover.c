/* test_store_leftover.c - what a killed checkpoint fetch or install leaves
 * in vsr.store's directory, and what the next start makes of it.
 *
 * A replica fetching a checkpoint builds it in `next/` as the chunks come
 * (unsynced commits of records, no checkpoint record until the last chunk).
 * Killed meanwhile (kill -9, no close), `next/` stays. The next start that
 * must begin with an empty store (`--fresh`, an amnesiac whose superblock
 * names no history, or `memory` durability) removes `db/`; it must then not
 * take the half-built `next/` for an install that stopped between its two
 * renames: a store that should be empty would hold the fetched records, and
 * the state machine would apply operations on top of them (a `put` of such
 * a key is an overwrite, so the digest and the key count differ from every
 * other replica's).
 *
 * An install that did stop between its renames (db/ moved to old/, next/
 * not yet renamed) is still finished at the next (not fresh) start. */
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
#include "vsrh_config.h"
#include "vsrh_lua.h"
#include "store_test.h"
#include "vsrh_store.h"

#define KEYS 500



static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* KEYS puts from op *op on; round picks the values. */
static void put_keys(vsrh_sm *sm, int round, uint64_t *op)
{
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf b = {0}, reply = {0};
	for (int i = 0; i < KEYS; i++) {
		kv_put_op(&b, i, 100, round);
		vsr_apply_ctx a = {.op = ++*op, .session = 1, .request = *op};
		reply.len = 0;
		if (m.apply(m.ctx, &a, b.data, b.len, &reply) != VSR_REPLY_OK)
			CHECK(0, "put %d of round %d refused", i, round);
	}
	free(b.data);
	free(reply.data);
}

/* KEYS puts of round `round` from op *op on, then the checkpoint at the
 * last one taken and waited for, into *cp. */
static void put_keys_and_take(vsrh_sm *sm, int round, uint64_t *op, vsr_checkpoint *cp)
{
	put_keys(sm, round, op);
	int rc = st_take(sm, *op, NULL, NULL, cp);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
}

/* A source store with KEYS keys and its checkpoint image. */
static uint8_t *source_image(const vsrh_config *cfg, const char *dir, vsr_checkpoint *cp)
{
	vsrh_sm *sm = st_create(cfg, dir, true, true);
	if (sm == NULL)
		return NULL;
	uint64_t op = 0;
	put_keys_and_take(sm, 1, &op, cp);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf img = {0};
	CHECK(m.checkpoint_read(m.ctx, cp, 0, (uint32_t)cp->size, &img) == VSR_OK &&
		      img.len == cp->size,
	      "read the image (%zu of %llu bytes)", img.len, (unsigned long long)cp->size);
	vsrh_sm_destroy(sm);
	return img.data;
}

/* In a child, as a replica fetching cp into `dir` that is killed before the
 * last chunk: the first half of the image, then _exit (no close). */
static void killed_fetch(const vsrh_config *cfg, const char *dir, bool durable,
			 const vsr_checkpoint *cp, const uint8_t *img)
{
	pid_t pid = fork();
	if (pid == 0) {
		char err[512];
		vsrh_sm *sm = NULL;
		if (vsrh_sm_create_at(&sm, cfg, dir, durable, true, err, sizeof err) != VSR_OK)
			_exit(2);
		vsr_state_machine m;
		vsrh_sm_bind(sm, &m);
		uint32_t half = (uint32_t)(cp->size / 2);
		if (m.checkpoint_write(m.ctx, cp, 0, img, half) != VSR_OK)
			_exit(3);
		_exit(0); /* kill -9: nothing closed, next/ stays */
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fetching child (status %d)", status);
}

/* The digest after KEYS puts of round 2 into a store opened at `dir`. */
static uint64_t digest_after_puts(const vsrh_config *cfg, const char *dir, bool durable,
				  bool fresh, char *why, size_t why_len)
{
	vsrh_sm *sm = st_create(cfg, dir, durable, fresh);
	if (sm == NULL)
		return 0;
	uint64_t op = 0;
	put_keys(sm, 2, &op);
	uint64_t d = vsrh_sm_digest(sm);
	vsr_checkpoint cp;
	int rc = st_take(sm, op, NULL, NULL, &cp);
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
	vsrh_sm_destroy(sm);
	/* The store's own record against its records. */
	why[0] = '\0';
	if (durable && vsrh_store_verify_dir(dir, 0, 0, why, why_len) != 0 && why[0] == '\0')
		snprintf(why, why_len, "the check failed");
	return d;
}

/* An install stopped after its first rename: db/ of the store under
 * `store` moved to old/. The next start (not fresh) must open checkpoint
 * `want` (what says which). */
static void start_after_db_moved(const vsrh_config *cfg, const char *store,
				 const vsr_checkpoint *want, const char *what)
{
	char a[900], b[900];
	st_path(a, sizeof a, store, "db");
	st_path(b, sizeof b, store, "old");
	CHECK(rename(a, b) == 0, "rename db old");
	vsr_checkpoint got;
	if (st_open(cfg, store, &got, NULL) == 0)
		CHECK(got.op == want->op && got.digest == want->digest, "%s: checkpoint op %llu, got %llu",
		      what, (unsigned long long)want->op, (unsigned long long)got.op);
}

int main(void)
{
	char dir[] = "/tmp/vsr-leftover-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	char src[600], clean[600], p[1600], why[512];
	st_path(src, sizeof src, dir, "source");
	vsr_checkpoint cp;
	uint8_t *img = source_image(&cfg, src, &cp);
	if (img == NULL)
		return 1;

	/* What a store that really starts empty holds after the same puts. */
	st_path(clean, sizeof clean, dir, "clean");
	uint64_t want = digest_after_puts(&cfg, clean, true, true, why, sizeof why);
	CHECK(why[0] == '\0', "the clean store: %s", why);

	static const struct {
		const char *name;
		bool durable;
	} modes[] = {{"durable, fresh", true}, {"memory", false}};
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		char store[600];
		snprintf(store, sizeof store, "%s/replica-%zu", dir, i);
		killed_fetch(&cfg, store, modes[i].durable, &cp, img);
		st_path(p, sizeof p, store, "next/data.mdb");
		CHECK(exists(p), "%s: the killed fetch left %s (else this test proves nothing)",
		      modes[i].name, p);
		uint64_t got = digest_after_puts(&cfg, store, modes[i].durable, true, why, sizeof why);
		CHECK(got == want,
		      "%s: a store that starts empty must not adopt a half-fetched next/: digest "
		      "%016llx after the puts, an empty store's is %016llx",
		      modes[i].name, (unsigned long long)got, (unsigned long long)want);
		CHECK(why[0] == '\0', "%s: %s", modes[i].name, why);
	}

	/* An install that stopped between its renames (db/ moved to old/, the
	 * complete next/ not yet renamed) is finished at the next start. */
	{
		char store[600], a[900];
		st_path(store, sizeof store, dir, "install");
		vsrh_sm *sm = st_create(&cfg, store, true, true);
		if (sm != NULL) {
			vsrh_sm_destroy(sm);
			/* next/: the complete source environment. */
			st_path(a, sizeof a, store, "next");
			mkdir(a, 0700);
			snprintf(p, sizeof p, "cp --sparse=always '%s/db/data.mdb' '%s/next/data.mdb'", src,
				 store);
			CHECK(system(p) == 0, "%s", p);
			start_after_db_moved(&cfg, store, &cp, "the interrupted install is finished");
			st_path(p, sizeof p, store, "old/data.mdb");
			CHECK(!exists(p), "the replaced environment (old/) is removed");
		}
	}

	/* An install whose second rename failed (db/ moved to old/, no next/;
	 * it stopped the replica): the next start puts old/ back. */
	{
		char store[600];
		st_path(store, sizeof store, dir, "undo");
		vsrh_sm *sm = st_create(&cfg, store, true, true);
		if (sm != NULL) {
			uint64_t op = 0;
			vsr_checkpoint own = {0};
			put_keys_and_take(sm, 3, &op, &own);
			vsrh_sm_destroy(sm);
			start_after_db_moved(&cfg, store, &own, "an install that never renamed next/ is undone");
		}
	}

	/* A memory store's environment is removed at a clean stop too, not
	 * left in the data directory until the next start. */
	{
		char store[600];
		st_path(store, sizeof store, dir, "memory-stop");
		vsrh_sm *sm = st_create(&cfg, store, false, true);
		if (sm != NULL) {
			uint64_t op = 0;
			put_keys(sm, 4, &op);
			st_path(p, sizeof p, store, "db/data.mdb");
			CHECK(exists(p), "memory: the store is in %s while it runs (else this proves nothing)", p);
			vsrh_sm_destroy(sm);
			CHECK(!exists(p), "memory: a clean stop leaves %s behind", p);
		}
	}

	free(img);
	return st_end(dir, &cfg,
		      "a half-fetched next/ is never adopted; an interrupted install is finished");
}
