/* test_store_heldrot.c - a record of vsr.store damaged on disk while the
 * store holds writes in memory (between a checkpoint's commit and the end
 * of its sync: vsrh_overlay.h, docs/storage.md "Checkpoints without a
 * stall", 6).
 *
 * While writes are held, a read of a held key is answered from memory and
 * LMDB's record of it is not read; the record is read again only when the
 * held write moves into LMDB (the drain, a few per operation once the sync
 * has ended, or all at the next checkpoint's take). A record damaged
 * meanwhile must be found there, as every other write finds it (exit 74
 * naming the key), not written over or, for a damaged key, inserted beside
 * as if absent (the record then stays under its damaged key: a scan serves
 * it, and the count and digest the store keeps no longer describe its
 * records). And a damaged record no held write touches must be found by a
 * read of it, by a write held over it, and by the restart's check after the
 * next checkpoint, whose digest is the one the other replicas have.
 *
 * Each case runs in a child on a fresh durable store (storeops.lua, keys
 * sk000000, sk000010, ..., sk000390, each value "v" + key + ":" + 80 'a').
 * LMDB's sync is held at a gate (-Wl,--wrap=mdb_env_sync) so that the
 * writes after the checkpoint's commit are held; key H = sk000010 is put
 * (held), then records are damaged in data.mdb (the map is shared: the
 * store sees it): a byte inside a value ('a' to 'b', still msgpack) or a
 * key's last byte ('0' to '1', still in order). The case then reads,
 * writes, opens the gate and drains, or takes the next checkpoint, and the
 * child's exit status and stderr are checked; a child that ends (exit 0)
 * leaves its store for the restart's check. No randomness. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_test.h"
#include "vsrh_store.h"

/* ------------------------------------------------ the sync's gate */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_closed;

int __real_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force)
{
	pthread_mutex_lock(&gate_mu);
	while (gate_closed)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	return __real_mdb_env_sync(env, force);
}

static void gate(bool closed)
{
	pthread_mutex_lock(&gate_mu);
	gate_closed = closed;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* ------------------------------------------------ operations */

#define KEYS 40
#define HELD 1  /* sk000010: put while writes are held */
#define OTHER 5 /* sk000050: not held */

static void put_str(vsr_buf *b, const char *s, size_t n)
{
	uint8_t h[2] = {0xd9, (uint8_t)n};
	if (n < 32) {
		h[0] = (uint8_t)(0xa0 | n);
		vsr_buf_append(b, h, 1);
	} else {
		vsr_buf_append(b, h, 2);
	}
	vsr_buf_append(b, s, n);
}

/* An operation of n calls of storeops.lua (msgpack array16). */
static void op_begin(vsr_buf *b, unsigned n)
{
	uint8_t h[3] = {0xdc, (uint8_t)(n >> 8), (uint8_t)n};
	b->len = 0;
	vsr_buf_append(b, h, 3);
}

/* [name, key(i)] or [name, key(i), value] (value NULL: none). */
static void op_call(vsr_buf *b, const char *name, int i, const char *value)
{
	char k[16];
	int kl = snprintf(k, sizeof k, "sk%06d", i * 10);
	uint8_t h = value ? 0x93 : 0x92;
	vsr_buf_append(b, &h, 1);
	put_str(b, name, strlen(name));
	put_str(b, k, (size_t)kl);
	if (value)
		put_str(b, value, strlen(value));
}

/* ["scan", "sk", "sl", 1000]: every key. */
static void op_scan(vsr_buf *b)
{
	uint8_t h = 0x94, lim[3] = {0xcd, 0x03, 0xe8};
	vsr_buf_append(b, &h, 1);
	put_str(b, "scan", 4);
	put_str(b, "sk", 2);
	put_str(b, "sl", 2);
	vsr_buf_append(b, lim, 3);
}

/* Key i's first value: "vsk0000N0:" and 80 'a's. */
static void first_value(char *out, size_t n, int i)
{
	int l = snprintf(out, n, "vsk%06d:", i * 10);
	memset(out + l, 'a', 80);
	out[l + 80] = '\0';
}

typedef struct side {
	vsrh_sm *sm;
	vsr_state_machine m;
	uint64_t op;
	vsr_buf reply;
} side;

/* Applies b as the next op; the reply in s->reply. */
static int apply(side *s, const vsr_buf *b)
{
	vsr_apply_ctx a = {.op = ++s->op, .session = 1, .request = s->op};
	s->reply.len = 0;
	return s->m.apply(s->m.ctx, &a, b->data, b->len, &s->reply);
}

static bool reply_has(const side *s, const char *what)
{
	return memmem(s->reply.data, s->reply.len, what, strlen(what)) != NULL;
}

/* ------------------------------------------------ damage */

enum damage { DMG_VALUE, DMG_KEY };

/* In data.mdb, every copy of key i's record: a byte of its value ('a' to
 * 'b', 40 bytes into the 'a's) or its key's last byte ('0' to '1': the
 * key's bytes not preceded by the 'v' of a value). Returns the copies
 * changed. */
static int damage_of;
static enum damage damage_how;
static char damage_pat[16];
static int damage_fd;

static int damage_slice(void *arg, const uint8_t *buf, size_t n, off_t at)
{
	(void)arg;
	size_t pl = strlen(damage_pat);
	for (size_t i = 1; i + pl + 60 <= n; i++) {
		if (memcmp(buf + i, damage_pat, pl) != 0)
			continue;
		uint8_t b;
		off_t where;
		if (damage_how == DMG_VALUE && buf[i - 1] == 'v') {
			b = 'b';
			where = at + (off_t)(i + pl + 40);
		} else if (damage_how == DMG_KEY && buf[i - 1] != 'v') {
			b = '1';
			where = at + (off_t)(i + pl - 1);
		} else {
			continue;
		}
		if (pwrite(damage_fd, &b, 1, where) == 1)
			damage_of++;
	}
	return 0;
}

static int damage(const char *store, int i, enum damage how)
{
	char file[700];
	snprintf(file, sizeof file, "%s/db/data.mdb", store);
	damage_fd = open(file, O_RDWR);
	if (damage_fd < 0)
		return -1;
	snprintf(damage_pat, sizeof damage_pat, "sk%06d", i * 10);
	damage_how = how;
	damage_of = 0;
	st_each_data(damage_fd, damage_slice, NULL);
	close(damage_fd);
	return damage_of;
}

/* ------------------------------------------------ the cases */

enum act {
	ACT_READ_HELD,   /* get and scan H (held): the held value; then the drain */
	ACT_KEY_DRAIN,   /* H's key damaged; the drain of its held put */
	ACT_KEY_DELETE,  /* H's key damaged; H deleted (held), then the drain */
	ACT_TAKE,        /* H's value damaged; the next checkpoint's take drains it */
	ACT_READ_OTHER,  /* O's value damaged; a get of O */
	ACT_SCAN_OTHER,  /* O's value damaged; a scan while held */
	ACT_PUT_OTHER,   /* O's value damaged; a put of O (held) */
	ACT_UNTOUCHED,   /* O's value damaged; drain, checkpoint: the restart's check */
	ACT_END
};

static const struct {
	const char *name;
	int key;
	enum damage how;
	const char *says; /* in the 74's sentence; NULL: exits 0, the restart's check refuses */
} cases[ACT_END] = {
	{"a held key's value damaged: get and scan serve the held value, the drain finds it", HELD,
	 DMG_VALUE, "\"sk000010\" fails its check"},
	{"a held key's key damaged: the drain of its put finds it", HELD, DMG_KEY, "\"sk000011\""},
	{"a held key's key damaged, the key deleted: the drain of the delete finds it", HELD,
	 DMG_KEY, "\"sk000011\""},
	{"a held key's value damaged: the next checkpoint's take finds it", HELD, DMG_VALUE,
	 "\"sk000010\" fails its check"},
	{"another key's value damaged: a get finds it", OTHER, DMG_VALUE,
	 "\"sk000050\" fails its check"},
	{"another key's value damaged: a scan while held finds it", OTHER, DMG_VALUE,
	 "\"sk000050\" fails its check"},
	{"another key's value damaged: a put of it, held, finds it", OTHER, DMG_VALUE,
	 "\"sk000050\" fails its check"},
	{"another key's value damaged, untouched: the restart's check finds it", OTHER, DMG_VALUE,
	 NULL},
};

/* The operations after the damage that move held writes into LMDB: the
 * gate opened, the sync waited for, then puts of keys past the others
 * (also applied to ref when given). */
static void drain(side *s, side *ref, vsr_buf *b)
{
	gate(false);
	vsrh_sm_on_checkpoint_durable(s->sm, NULL, NULL);
	for (int r = 0; r < 4; r++) {
		op_begin(b, 8);
		for (int i = 0; i < 8; i++)
			op_call(b, "put", 1000 + r * 8 + i, "x");
		if (apply(s, b) != VSR_REPLY_OK || (ref && apply(ref, b) != VSR_REPLY_OK))
			fprintf(stderr, "a draining put failed\n");
	}
}

/* The child: the case's store, its damage and its operations. Returns its
 * exit status: 0 (went through), 2 (could not set up), 5 (a read served
 * the wrong value); the store itself stops with 74 on damage. */
static int child(const vsrh_config *cfg, const char *store, enum act act, uint64_t *cp_op,
		 uint64_t *cp_checksum)
{
	/* (The durable store last: a stop names the store opened last.) */
	side ref = {.sm = st_open_script(cfg, "spec/fixtures/storeops.lua", NULL, false, true)};
	side s = {.sm = st_open_script(cfg, "spec/fixtures/storeops.lua", store, true, true)};
	if (s.sm == NULL || ref.sm == NULL)
		return 2;
	vsrh_sm_bind(s.sm, &s.m);
	vsrh_sm_bind(ref.sm, &ref.m);
	vsr_buf b = {0};
	char v[128];
	op_begin(&b, KEYS);
	for (int i = 0; i < KEYS; i++) {
		first_value(v, sizeof v, i);
		op_call(&b, "put", i, v);
	}
	if (apply(&s, &b) != VSR_REPLY_OK || apply(&ref, &b) != VSR_REPLY_OK)
		return 2;
	/* The checkpoint's commit; its sync waits at the gate: writes held. */
	gate(true);
	vsr_checkpoint cp = {.op = s.op, .checksum = s.op * 31, .timestamp = s.op}, rcp = cp;
	static const uint8_t meta[8];
	if (s.m.checkpoint_take(s.m.ctx, &cp, meta, sizeof meta) != VSR_PENDING ||
	    ref.m.checkpoint_take(ref.m.ctx, &rcp, meta, sizeof meta) != VSR_OK) {
		fprintf(stderr, "the first checkpoint\n");
		return 2;
	}
	/* Its commit, made on the syncer's thread, picked up: reads of what
	 * is not held then come from LMDB's newest commit, as the cases
	 * below expect, not from the writes it had (the window while the
	 * thread commits). */
	vsrh_sm_settle(s.sm);
	op_begin(&b, 1);
	op_call(&b, "put", HELD, "new-sk000010");
	if (apply(&s, &b) != VSR_REPLY_OK || apply(&ref, &b) != VSR_REPLY_OK)
		return 2;
	vsrh_sm_stats st;
	vsrh_sm_stats_get(s.sm, &st);
	if (st.checkpoint_held_writes != 1) {
		fprintf(stderr, "the put of sk000010 was not held (%llu held)\n",
			(unsigned long long)st.checkpoint_held_writes);
		return 2;
	}
	int n = damage(store, cases[act].key, cases[act].how);
	fprintf(stderr, "damaged %d copies\n", n);
	if (n <= 0)
		return 2;
	switch (act) {
	case ACT_READ_HELD:
		op_begin(&b, 2);
		op_call(&b, "get", HELD, NULL);
		op_scan(&b);
		apply(&s, &b);
		if (!reply_has(&s, "new-sk000010") || reply_has(&s, "vsk000010:")) {
			fprintf(stderr, "get and scan of the held key: not its held value\n");
			return 5;
		}
		fprintf(stderr, "get and scan of the held key: its held value\n");
		drain(&s, NULL, &b);
		break;
	case ACT_KEY_DRAIN:
		drain(&s, NULL, &b);
		break;
	case ACT_KEY_DELETE:
		op_begin(&b, 1);
		op_call(&b, "delete", HELD, NULL);
		apply(&s, &b);
		apply(&ref, &b);
		drain(&s, NULL, &b);
		break;
	case ACT_TAKE:
		gate(false);
		vsrh_sm_on_checkpoint_durable(s.sm, NULL, NULL);
		break;
	case ACT_READ_OTHER:
		op_begin(&b, 1);
		op_call(&b, "get", OTHER, NULL);
		apply(&s, &b);
		break;
	case ACT_SCAN_OTHER:
		op_begin(&b, 1);
		op_scan(&b);
		apply(&s, &b);
		break;
	case ACT_PUT_OTHER:
		op_begin(&b, 1);
		op_call(&b, "put", OTHER, "new-sk000050");
		apply(&s, &b);
		break;
	case ACT_UNTOUCHED:
		drain(&s, &ref, &b);
		break;
	case ACT_END:
		break;
	}
	/* The next checkpoint: its take moves what is still held into LMDB;
	 * its digest is the one the other replicas (the reference) have. */
	gate(false);
	cp = (vsr_checkpoint){.op = s.op, .checksum = s.op * 31, .timestamp = s.op};
	rcp = cp;
	int rc = s.m.checkpoint_take(s.m.ctx, &cp, meta, sizeof meta);
	vsrh_sm_on_checkpoint_durable(s.sm, NULL, NULL);
	if (rc != VSR_PENDING && rc != VSR_OK) {
		fprintf(stderr, "the second checkpoint: %d\n", rc);
		return 2;
	}
	if (act == ACT_UNTOUCHED) {
		if (ref.m.checkpoint_take(ref.m.ctx, &rcp, meta, sizeof meta) != VSR_OK)
			return 2;
		fprintf(stderr, "the second checkpoint's digest %016llx, the reference's %016llx\n",
			(unsigned long long)cp.digest, (unsigned long long)rcp.digest);
		if (cp.digest != rcp.digest)
			return 6;
	}
	*cp_op = cp.op;
	*cp_checksum = cp.checksum;
	vsrh_sm_destroy(s.sm);
	vsrh_sm_destroy(ref.sm);
	free(b.data);
	free(s.reply.data);
	free(ref.reply.data);
	return 0;
}

/* The restart's check of store in a child (damage can crash LMDB): 0
 * intact, 1 damaged, 2 could not check or crashed; why says. */
static int restart_check(const char *store, uint64_t op, uint64_t checksum, const char *log,
			 char *why, size_t why_len)
{
	pid_t pid = st_child_fork(log);
	if (pid == 0) {
		char msg[512] = "";
		int rc = vsrh_store_verify_dir(store, op, checksum, msg, sizeof msg);
		fprintf(stderr, "%s", msg);
		fflush(NULL);
		_exit(rc == 0 ? 0 : rc == 1 ? 1 : 2);
	}
	int status = st_child_log(pid, log, why, why_len);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

int main(void)
{
	char dir[] = "/tmp/vsr-heldrot-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	for (int act = 0; act < ACT_END; act++) {
		char store[600], log[700], name[32], text[4096];
		snprintf(name, sizeof name, "store-%d", act);
		st_path(store, sizeof store, dir, name);
		snprintf(log, sizeof log, "%s/child-%d.log", dir, act);
		/* The checkpoint the child ends at, through a pipe-free file. */
		char cpfile[700];
		snprintf(cpfile, sizeof cpfile, "%s/cp-%d", dir, act);
		pid_t pid = st_child_fork(log);
		if (pid == 0) {
			uint64_t op = 0, sum = 0;
			int rc = child(&cfg, store, (enum act)act, &op, &sum);
			FILE *f = fopen(cpfile, "w");
			if (f) {
				fprintf(f, "%llu %llu\n", (unsigned long long)op, (unsigned long long)sum);
				fclose(f);
			}
			fflush(NULL);
			_exit(rc);
		}
		int status = st_child_log(pid, log, text, sizeof text);
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		const char *says = cases[act].says;
		if (says != NULL) {
			CHECK(code == 74 && strstr(text, says) && strstr(text, "exit 74"),
			      "%s: exit %d (want 74 saying %s); its stderr: %s", cases[act].name, code,
			      says, text);
			if (act == ACT_READ_HELD)
				CHECK(strstr(text, "its held value") != NULL,
				      "%s: a read served LMDB's damaged record: %s", cases[act].name,
				      text);
			if (code == 0) {
				/* Not found: what the restart's check says of what the
				 * store went on with (written over, or beside). */
				unsigned long long op = 0, sum = 0;
				FILE *f = fopen(cpfile, "r");
				if (f && fscanf(f, "%llu %llu", &op, &sum) == 2) {
					char why[1024], clog[700];
					snprintf(clog, sizeof clog, "%s/check-%d.log", dir, act);
					int c = restart_check(store, op, sum, clog, why, sizeof why);
					printf("  (not found while it ran; the restart's check then: %s: "
					       "%s)\n",
					       c == 0 ? "intact, the damage written over" : "damaged", why);
				}
				if (f)
					fclose(f);
			}
		} else {
			CHECK(code == 0, "%s: exit %d (want 0: nothing read it); its stderr: %s",
			      cases[act].name, code, text);
			unsigned long long op = 0, sum = 0;
			FILE *f = fopen(cpfile, "r");
			CHECK(f && fscanf(f, "%llu %llu", &op, &sum) == 2, "%s: its checkpoint",
			      cases[act].name);
			if (f)
				fclose(f);
			char why[1024], clog[700];
			snprintf(clog, sizeof clog, "%s/check-%d.log", dir, act);
			int c = restart_check(store, op, sum, clog, why, sizeof why);
			CHECK(c == 1 && strstr(why, "fails its check"),
			      "%s: the restart's check must refuse the store: %d: %s", cases[act].name, c,
			      why);
			snprintf(text + strlen(text), sizeof text - strlen(text),
				 "the restart's check: %s\n", why);
		}
		printf("%s: exit %d: %s", cases[act].name, code, text);
	}
	return st_end(dir, &cfg,
		      "records damaged while writes are held: found, never written over or served");
}
