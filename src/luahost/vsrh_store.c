/* vsrh_store.c - vsr.store: committed and buffered tables, C accessors, snapshot encoding. */
#define _GNU_SOURCE /* sync_file_range */
#include "vsrh_store.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lmdb.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "vsrh_codec.h"
#include "vsrh_sandbox.h"
#include "vsrh_le.h"
#include "vsrh_store_pages.h"
#include "vsrh_store_sync.h"
#include "vsrh_store_touch.h"
#include "vsrh_overlay.h"

/* The delete marker in the write buffer: a light userdata no script can
 * forge (scripts cannot create light userdata). */
static const char store_del_marker;
#define STORE_DEL ((void *)&store_del_marker)

/* scan and pairs, in Lua on top of the C accessors. They run inside the
 * caller's budget; the sorted key cache and the merge with buffered writes
 * are C helpers, so their cost does not depend on the cache's history. */
static const char store_lua[] =
"local get, has, put, delete, count, state, range, unpack, keyless, lower_bound, sorted_keys = ...\n"
"local type, error, maxinteger = type, error, math.maxinteger\n"
"local store = {get = get, has = has, put = put, delete = delete, count = count}\n"
"-- Keys in [first, last] (nil: unbounded) in byte order, at most limit:\n"
"-- two arrays, keys and values.\n"
"function store.scan(first, last, limit)\n"
"  if first ~= nil and type(first) ~= 'string' then\n"
"    error('vsr.store.scan: first must be a string or nil', 2)\n"
"  end\n"
"  if last ~= nil and type(last) ~= 'string' then\n"
"    error('vsr.store.scan: last must be a string or nil', 2)\n"
"  end\n"
"  if limit ~= nil and (type(limit) ~= 'number' or limit < 0) then\n"
"    error('vsr.store.scan: limit must be a non-negative number', 2)\n"
"  end\n"
"  limit = limit or maxinteger\n"
"  local writes, DEL, nwrites = state()\n"
"  local bkeys = nwrites > 0 and sorted_keys(writes) or nil\n"
"  -- committed entries in [first, last]: enough that buffered deletes\n"
"  -- cannot leave fewer than limit\n"
"  local ckeys, cvals = range(first, last, limit, nwrites)\n"
"  local i = 1\n"
"  local j = bkeys and (first and lower_bound(bkeys, first) or 1)\n"
"  local keys, values, n = {}, {}, 0\n"
"  while n < limit do\n"
"    local a, b = ckeys[i], bkeys and bkeys[j]\n"
"    local k, v\n"
"    if a == nil and b == nil then break end\n"
"    if b == nil or (a ~= nil and keyless(a, b)) then k = a; v = cvals[i]; i = i + 1\n"
"    elseif a == nil or keyless(b, a) then k = b; j = j + 1\n"
"    else k = a; v = cvals[i]; i = i + 1; j = j + 1 end\n"
"    if last ~= nil and keyless(last, k) then break end\n"
"    local w = writes[k]\n"
"    if w ~= DEL then\n"
"      n = n + 1\n"
"      keys[n] = k\n"
"      values[n] = unpack(w or v)\n"
"    end\n"
"  end\n"
"  return keys, values\n"
"end\n"
"-- for k, v in vsr.store.pairs(first, last) do ... end, in byte order\n"
"function store.pairs(first, last)\n"
"  local keys, values = store.scan(first, last)\n"
"  local i = 0\n"
"  return function()\n"
"    i = i + 1\n"
"    return keys[i], values[i]\n"
"  end\n"
"end\n"
"return store\n";

static uint64_t entry_hash(const char *k, size_t kl, const char *v, size_t vl)
{
	return XXH3_64bits_withSeed(v, vl, XXH3_64bits(k, kl));
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al > bl) - (al < bl);
}

/* ------------------------------------------------------- stored records */

/* A value in LMDB follows its check: entry_hash(key, value), 8 bytes
 * little-endian (docs/storage.md, "vsr.store's records"). LMDB keeps no
 * checksums, and a flipped byte inside a string value still decodes: a
 * primary served it to clients as the value, and the backups applied the
 * next write against the good one. Every read of a record checks it; a
 * mismatch is this replica's file damaged, as a value that does not decode
 * is (push_decoded): the replica stops, the restart's check finds the
 * damage and the others repair it. The check is the record's share of the
 * store digest, so the digest costs no second hash. */
#define REC_CHECK 8u

/* The records' database: "kvc" since records have checks (format 2); a
 * store of format 1 has "kv", whose values have none. */
#define KV_DB "kvc"
#define KV_DB_OLD "kv"
#define OLD_FORMAT_WHY                                                                          \
	"its records are of format 1 (written by a vsrhost from before records had checks); "  \
	"this vsrhost reads format 2 only: started with an empty data directory, this "        \
	"replica fetches the state from replicas that run this version"

/* The value of the stored record (k, raw) into *v and its check into
 * *check: false when the check does not match. */
static bool rec_open(const void *k, size_t kl, const MDB_val *raw, MDB_val *v, uint64_t *check)
{
	if (raw->mv_size < REC_CHECK)
		return false;
	*v = (MDB_val){.mv_size = raw->mv_size - REC_CHECK,
		       .mv_data = (char *)raw->mv_data + REC_CHECK};
	*check = entry_hash(k, kl, v->mv_data, v->mv_size);
	return vsrh_get_u64le(raw->mv_data) == *check;
}

/* Whether the environment holds format 1's records' database. */
static bool rec_old_format(MDB_txn *txn)
{
	MDB_dbi main_db;
	MDB_val k = {.mv_size = sizeof KV_DB_OLD - 1, .mv_data = (void *)KV_DB_OLD}, v;
	return mdb_dbi_open(txn, NULL, 0, &main_db) == 0 && mdb_get(txn, main_db, &k, &v) == 0;
}

/* A record that fails its check (order false), or a search for key k that
 * reached the wrong leaf (order: the records beside where k belongs are
 * not below and above it, a branch page's key damaged): the replica
 * stops. */
static _Noreturn void store_damaged(const void *k, size_t kl, bool order)
{
	/* The key as text, at most 64 of its bytes, any byte that is not
	 * printable as \xHH (keys are any bytes; one line per message). */
	char shown[64 * 4 + 4];
	size_t n = 0;
	for (size_t i = 0; i < kl && i < 64; i++) {
		unsigned char ch = ((const unsigned char *)k)[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			shown[n++] = (char)ch;
		else
			n += (size_t)snprintf(shown + n, sizeof shown - n, "\\x%02x", ch);
	}
	if (kl > 64)
		n += (size_t)snprintf(shown + n, sizeof shown - n, "...");
	shown[n] = '\0';
	const char *where = vsrh_store_fatal_dir();
	if (order)
		fprintf(stderr,
			"vsr.store: the records beside key \"%s\" are out of order (a search for it "
			"went to the wrong leaf): the store's file is damaged (vsr.store in %s); this "
			"replica stops (exit 74)\n",
			shown, where[0] ? where : "memory");
	else
		fprintf(stderr,
			"vsr.store: the record of key \"%s\" fails its check: the store's file is "
			"damaged (vsr.store in %s); this replica stops (exit 74)\n",
			shown, where[0] ? where : "memory");
	fflush(NULL);
	_exit(74);
}

static _Noreturn void rec_damaged(const void *k, size_t kl)
{
	store_damaged(k, kl, false);
}


/* The value of a record read from LMDB, checked (or the replica stops). */
static MDB_val rec_value(const void *k, size_t kl, const MDB_val *raw, uint64_t *check)
{
	MDB_val v;
	uint64_t c;
	if (!rec_open(k, kl, raw, &v, &c))
		rec_damaged(k, kl);
	if (check)
		*check = c;
	return v;
}

/* The record (key, raw) beside where k belongs checked, and that it lies
 * on the side it should: above k (above true) or below. */
static void rec_beside(const MDB_val *key, const MDB_val *raw, const char *k, size_t kl,
		       bool above)
{
	rec_value(key->mv_data, key->mv_size, raw, NULL);
	int c = bytes_cmp(key->mv_data, key->mv_size, k, kl);
	if (above ? c <= 0 : c >= 0)
		store_damaged(k, kl, true);
}

/* The stored form of (k, v): its check, then v, in *buf (grown as needed).
 * Returns it, or a NULL mv_data when out of memory. */
static MDB_val rec_make(vsr_buf *buf, const void *v, size_t vl, uint64_t check)
{
	buf->len = 0;
	uint8_t c[REC_CHECK];
	vsrh_put_u64le(c, check);
	if (vsrh_buf_put(buf, c, REC_CHECK) || (vl && vsrh_buf_put(buf, v, vl)))
		return (MDB_val){0};
	return (MDB_val){.mv_size = buf->len, .mv_data = buf->data};
}

/* After a record made by rec_make is in LMDB (which copied it): a buffer
 * grown past 64 KiB by a large value is freed rather than kept for the
 * process's life (up to a whole operation's 16 MiB, per store). */
static void rec_done(vsr_buf *buf)
{
	if (buf->cap > ((size_t)64 << 10)) {
		free(buf->data);
		memset(buf, 0, sizeof *buf);
	}
}

/* ---------------------------------------------------------------- LMDB */

#define CKPT_MAGIC "VSRHCKP1"
#define STORE_MAP_MIN ((size_t)64 << 20)    /* the first reservation on disk (MDB_WRITEMAP) */
#define STORE_MAP_RESERVE ((size_t)8 << 30) /* the map's address space (valgrind maps 16 GiB) */
#define IMAGE_INDEX_EVERY 256u /* records between two seek points of a reader */

/* A checkpoint kept readable: a read transaction on the commit that made it,
 * a cursor, and seek points (offset -> key) noted as the cursor moves, so a
 * chunk anywhere is found without reading the image from its start. */
typedef struct ckpt_held {
	vsr_checkpoint cp;
	MDB_txn *rtxn;
	MDB_cursor *cur;
	uint8_t *prefix;      /* image bytes before the records */
	size_t prefix_len;
	bool at_valid;        /* the cursor is on the record starting at `at` */
	uint64_t at;
	uint64_t seen;        /* records stepped over since the last seek point */
	uint64_t *seek_off;   /* seek points, increasing */
	vsr_buf seek_keys;    /* their keys: u32 len | bytes, back to back */
	size_t *seek_key_pos;
	uint32_t seek_count, seek_cap;
} ckpt_held;

/* A transfer image turned into next/ as its chunks arrive (build_note), so
 * that installing it costs a commit, not a pass over the whole state. */
typedef struct ckpt_build {
	struct vsrh_lmdb *env;  /* next/, with its write transaction; NULL: none */
	MDB_cursor *cur;
	uint64_t contiguous;    /* every byte of the image before this has arrived */
	uint64_t parsed;        /* the prefix and whole records before this are in env */
	uint64_t plen;          /* prefix length (magic, head length, head, count); 0: unknown */
	uint64_t count, n, sum; /* records announced, appended, their digest */
	vsr_buf last;           /* the last key appended */
	uint64_t (*ranges)[2];  /* chunks arrived beyond `contiguous`, unsorted */
	uint32_t nranges, cap;
	bool bad;               /* not usable: install takes the whole-image path */
	bool corrupt;           /* ... because the image is corrupt (else: resources) */
} ckpt_build;

struct vsrh_lmdb {
	MDB_env *env;
	MDB_dbi kv, meta;
	size_t mapsize;       /* the map: address space, LMDB's limit (see map_reserve) */
	size_t reserved;      /* allocated on disk (fallocate) when writemap */
	uintptr_t watched;    /* the map's address, as given to store_sigbus */
	bool writemap;        /* pages written through the map (see map_reserve) */
	bool (*disk_full)(void *arg); /* frees space the disk gets back soon (map_reserve) */
	void *disk_full_arg;
	MDB_txn *wtxn;        /* long-lived: everything since the last checkpoint */
	MDB_cursor *wcur;     /* on kv in wtxn, opened on first use (LMDB frees it
			       * when wtxn ends: reset to NULL there) */
	char dir[4096];       /* holds db/ (the environment), next/, staging */
	bool scratch;         /* remove dir at close */
	bool durable;
	uint64_t kv_bytes;    /* sum over records of 8 + key + value */
	vsr_buf rec;          /* a stored record being made (rec_make) */
	/* The key a look-up of this operation missed last, the records on
	 * either side checked then (lmdb_seek): its insert by the operation's
	 * writes needs no second look. Forgotten at the operation's end. */
	char missed[511];
	size_t missed_len;
	ckpt_held held[2];    /* current, previous checkpoint */
	vsr_checkpoint staged; /* the one whose bytes go to the staging file */
	int staged_fd;
	ckpt_build build;     /* next/, from the staged chunks so far */
	vsrh_syncer syncer;   /* durable: syncs each checkpoint off the step */
	vsrh_touch touch;     /* pages the write-back cleaned, made writable before the commit */
	/* Held writes: from a checkpoint's commit until its sync has ended,
	 * committed writes go to `held` instead of wtxn (vsrh_overlay.h), and
	 * then move into wtxn a few per operation (held_drain). */
	vsrh_overlay held_w;
	bool holding;         /* the sync of the last checkpoint runs, or a cleaning */
	uint64_t hold_ended;  /* the syncer's count of jobs ended before it */
	uint64_t wb_last_ns;  /* when the last sync or cleaning began (mono ns) */
	uint64_t clean_after_ns; /* a cleaning after this long without either (0: none) */
	uint64_t held_total;  /* writes held, in all (figures) */
	/* The step's turn: a checkpoint taken whose commit waits for this
	 * replica's turn (step_due, until step_taken + turn_ns), its state in wtxn and the
	 * writes after it held meanwhile (vsrh_store_stagger sets turn_ns). */
	bool step_due;
	uint64_t step_taken;  /* CLOCK_MONOTONIC ns when it was taken (its sync's
			       * turn counts from there too) */
	vsr_checkpoint step_cp;
	uint8_t *step_prefix; /* its image prefix, for held[0] */
	size_t step_plen;
	uint64_t turn_ns;     /* this replica's wait: its slot times the turn */
	uint64_t steps_deferred; /* figures */
	uint64_t step_last_ns;
	uint64_t turn_commits, turn_op; /* commits in a turn, the last one's op */
	/* The commit off the loop (durable, map written in place): at the step
	 * the write transaction is handed to the syncer's thread, which commits
	 * it and then syncs that commit. Meanwhile the loop holds its writes
	 * (as during a sync) and reads below them from `frozen`, every write
	 * the transaction had (its difference from the commit before), over
	 * `win`, a read transaction on the commit before. The first operation
	 * or tick after the syncer has counted the commit picks it up
	 * (commit_pickup): the next write transaction begins, on the loop. */
	bool offload;         /* allowed (VSRH_COMMIT_ON_LOOP=1: never, to compare) */
	vsrh_keymap shadow;   /* every write placed in wtxn since it began ... */
	bool shadow_whole;    /* ... all of them (else: too large, no memory, a restore) */
	size_t shadow_max;    /* bytes, nodes counted at 64 */
	vsrh_keymap frozen;   /* the shadow of the transaction being committed;
			       * freed a few nodes per operation after */
	bool committing;      /* the syncer has wtxn */
	uint64_t commit_seq;  /* the syncer's count of commits once it is made */
	MDB_txn *win;         /* read transaction on the commit before */
	MDB_cursor *win_cur;
	vsr_checkpoint commit_cp; /* its checkpoint, and image prefix for held[0] */
	uint8_t *commit_prefix;
	size_t commit_plen;
	uint64_t commit_syncs; /* the syncer's syncs before it (the touch) */
	uint64_t handoff_ns;  /* how long the last hand-over held the loop */
	bool last_off_loop;   /* the last checkpoint's commit was made there */
};

#define lmdb_fatal vsrh_store_fatal

static void step_now(vsrh_lmdb *db);
static bool commit_pickup(vsrh_lmdb *db, bool wait);
static uint64_t store_mono_ns(void);
static uint64_t clean_after_ns(void);

static MDB_val mval(const void *p, size_t n)
{
	return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

/* The write transaction's cursor on kv. */
static MDB_cursor *lmdb_wcursor(vsrh_lmdb *db)
{
	commit_pickup(db, true); /* (the syncer may have it) */
	if (db->wcur == NULL) {
		int rc = mdb_cursor_open(db->wtxn, db->kv, &db->wcur);
		if (rc)
			lmdb_fatal("cursor", rc);
	}
	return db->wcur;
}

/* The cursor on key k (MDB_SET_RANGE): true with its stored record in
 * *raw (not yet checked), or false, a miss. A byte flipped in this key's
 * record would make it one too (the key is absent: a get finds nothing, a
 * put inserts it afresh beside the record, a delete deletes nothing): that
 * record sits where the key belongs, so it is the first one after the key
 * or the one before, and its check (made with the right key) fails. A miss
 * checks both (the cursor is then anywhere). */
static bool lmdb_seek(vsrh_lmdb *db, MDB_cursor *c, const char *k, size_t kl, MDB_val *raw)
{
	MDB_val key = mval(k, kl);
	int rc = mdb_cursor_get(c, &key, raw, MDB_SET_RANGE);
	if (rc && rc != MDB_NOTFOUND)
		lmdb_fatal("get", rc);
	if (rc == 0 && key.mv_size == kl && memcmp(key.mv_data, k, kl) == 0)
		return true;
	if (rc == 0)
		rec_beside(&key, raw, k, kl, true);
	rc = mdb_cursor_get(c, &key, raw, rc == 0 ? MDB_PREV : MDB_LAST);
	if (rc == 0)
		rec_beside(&key, raw, k, kl, false);
	else if (rc != MDB_NOTFOUND)
		lmdb_fatal("get", rc);
	/* A put of the key inserting it next needs no second look (a get
	 * before a put, as kv.lua's). */
	if (kl <= sizeof db->missed) {
		memcpy(db->missed, k, kl);
		db->missed_len = kl;
	}
	return false;
}

/* After a put inserted key k (the cursor on it): the records on either
 * side checked, as a miss checks them (lmdb_seek), unless the last miss
 * was of k and checked them already. The cursor is then anywhere. */
static void lmdb_check_beside(vsrh_lmdb *db, MDB_cursor *c, const char *k, size_t kl)
{
	if (db->missed_len == kl && memcmp(db->missed, k, kl) == 0) {
		db->missed_len = 0; /* no longer a miss */
		return;
	}
	MDB_val key, val;
	int rc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
	if (rc == 0)
		rec_beside(&key, &val, k, kl, true);
	else if (rc != MDB_NOTFOUND)
		lmdb_fatal("get", rc);
	/* Back over k (where NEXT moved on; at the end it stays on k). */
	rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
	if (rc == 0 && key.mv_size == kl && memcmp(key.mv_data, k, kl) == 0)
		rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
	if (rc == 0)
		rec_beside(&key, &val, k, kl, false);
	else if (rc != MDB_NOTFOUND)
		lmdb_fatal("get", rc);
}

/* The value of key k below the held writes into *v, checked (its hash in
 * *check unless NULL): from the write transaction, or while the syncer
 * commits it, from the writes it had (frozen) over the commit before
 * (win). Returns false when there is none. */
static bool base_get(vsrh_lmdb *db, const char *k, size_t kl, MDB_val *v, uint64_t *check)
{
	/* (No pick-up here: it may reserve room on disk or wait for a sync,
	 * not something to do in the middle of an operation for a read.) */
	if (db->committing) {
		const vsrh_overlay_node *n = vsrh_keymap_find(&db->frozen, k, kl);
		if (n) {
			if (n->val == NULL)
				return false;
			*v = mval(n->val, n->vl);
			if (check)
				*check = entry_hash(k, kl, n->val, n->vl);
			return true;
		}
		if (!lmdb_seek(db, db->win_cur, k, kl, v))
			return false;
	} else if (!lmdb_seek(db, lmdb_wcursor(db), k, kl, v)) {
		return false;
	}
	*v = rec_value(k, kl, v, check);
	return true;
}

/* The committed value of key (Lua string at idx) pushed, or nothing: returns
 * whether it pushed. Through the write cursor, which stays on the key: a
 * write of the same key at commit then needs no second search. */
static bool lmdb_push_get(lua_State *L, vsrh_lmdb *db, int idx)
{
	size_t kl;
	const char *k = lua_tolstring(L, idx, &kl);
	MDB_val val;
	if (kl == 0 || kl > 511) /* LMDB's key limit: such keys are never stored */
		return false;
	if (db->held_w.count) {
		const vsrh_overlay_node *h = vsrh_overlay_find(&db->held_w, k, kl);
		if (h) {
			if (h->val)
				lua_pushlstring(L, h->val, h->vl);
			return h->val != NULL;
		}
	}
	if (!base_get(db, k, kl, &val, NULL))
		return false;
	lua_pushlstring(L, val.mv_data, val.mv_size);
	return true;
}

static vsrh_store *store_of(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

static void check_key(lua_State *L, const char *fn)
{
	if (lua_type(L, 1) != LUA_TSTRING)
		luaL_error(L, "vsr.store.%s: key must be a string, got %s", fn, luaL_typename(L, 1));
}

static void check_writable(lua_State *L, vsrh_store *s, const char *fn)
{
	if (s->mode == VSRH_STORE_APPLY || s->mode == VSRH_STORE_DRY)
		return;
	if (s->mode == VSRH_STORE_QUERY)
		luaL_error(L, "vsr.store.%s: the store is read-only in query()", fn);
	luaL_error(L, "vsr.store.%s: the store can only change inside apply()", fn);
}

/* Pushes the value of key 1: buffered first, then committed. Returns the
 * type pushed: nil (absent), string (encoded) or light userdata (deleted). */
static int lookup(lua_State *L, vsrh_store *s)
{
	int t;
	if (s->nwrites > 0) { /* (none yet: the usual first get of an apply) */
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
		lua_pushvalue(L, 1);
		t = lua_rawget(L, -2);
		lua_remove(L, -2);
		if (t != LUA_TNIL)
			return t;
		lua_pop(L, 1);
	}
	if (s->db) {
		if (lmdb_push_get(L, s->db, 1))
			return LUA_TSTRING;
		lua_pushnil(L);
		return LUA_TNIL;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	lua_pushvalue(L, 1);
	t = lua_rawget(L, -2);
	lua_remove(L, -2);
	return t;
}

static void push_decoded(lua_State *L, int idx)
{
	size_t len;
	const char *v = lua_tolstring(L, idx, &len);
	char err[256];
	if (vsrh_decode(L, (const uint8_t *)v, len, err, sizeof err)) {
		/* Every stored value was encoded by put (or verified against the
		 * checkpoint's digest when fetched): one that is not msgpack is
		 * this replica's file damaged, not the script's error. As a
		 * script error it would fail the operation here and nowhere
		 * else: the client told "no effect" of a write the other
		 * replicas applied. So it is a disk error: stop (the restart's
		 * check finds the damage and the others repair it). What still
		 * walks as msgpack failed for the budget or the stack, which
		 * every replica meets alike: a script error as before. */
		size_t pos = 0;
		if (vsrh_skip((const uint8_t *)v, len, &pos) != 0 || pos != len) {
			const char *where = vsrh_store_fatal_dir();
			fprintf(stderr,
				"vsr.store: a stored value does not decode (%s): the store's file is "
				"damaged (vsr.store in %s); this replica stops (exit 74)\n",
				err, where[0] ? where : "memory");
			fflush(NULL);
			_exit(74);
		}
		luaL_error(L, "vsr.store: a stored value does not decode: %s", err);
	}
}

static int store_get(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "get");
	lua_settop(L, 1);
	if (lookup(L, s) != LUA_TSTRING) {
		lua_pushnil(L);
		return 1;
	}
	push_decoded(L, -1);
	return 1;
}

static int store_has(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "has");
	lua_settop(L, 1);
	lua_pushboolean(L, lookup(L, s) == LUA_TSTRING);
	return 1;
}

/* Buffers key 1 -> the value on top of the stack (popped). */
static void buffer_write(lua_State *L, vsrh_store *s)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, -2) == LUA_TNIL)
		s->nwrites++;
	lua_pop(L, 1);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, -3);
	lua_rawset(L, -3);
	lua_pop(L, 2);
}

static int store_put(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "put");
	check_writable(L, s, "put");
	if (s->db && (lua_rawlen(L, 1) == 0 || lua_rawlen(L, 1) > 511))
		return luaL_error(L, "vsr.store.put: a key must be 1 to 511 bytes");
	if (lua_isnoneornil(L, 2))
		return luaL_error(L, "vsr.store.put: value is nil (use vsr.store.delete)");
	lua_settop(L, 2);
	vsr_buf *b = &vsrh_box_of(L)->scratch; /* reused: no allocation per write */
	char err[256];
	b->len = 0;
	if (vsrh_encode(L, 2, b, VSR_OP_BYTES_MAX, err, sizeof err))
		return luaL_error(L, "vsr.store.put: %s", err);
	lua_pushlstring(L, (const char *)b->data, b->len);
	if (b->cap > (64u << 10)) { /* do not keep a large one around */
		free(b->data);
		memset(b, 0, sizeof *b);
	}
	buffer_write(L, s);
	return 0;
}

static int store_delete(lua_State *L)
{
	vsrh_store *s = store_of(L);
	check_key(L, "delete");
	check_writable(L, s, "delete");
	lua_settop(L, 1);
	lua_pushlightuserdata(L, STORE_DEL);
	buffer_write(L, s);
	return 0;
}

static int store_count(lua_State *L)
{
	vsrh_store *s = store_of(L);
	lua_Integer n = (lua_Integer)s->count;
	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);    /* 1 */
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);  /* 2 */
	lua_pushnil(L);
	while (lua_next(L, 2)) {
		int deleted = lua_type(L, -1) == LUA_TLIGHTUSERDATA;
		lua_pop(L, 1);
		int existed;
		if (s->db) {
			existed = lmdb_push_get(L, s->db, -1);
			if (existed)
				lua_pop(L, 1);
		} else {
			lua_pushvalue(L, -1);
			existed = lua_rawget(L, 1) != LUA_TNIL;
			lua_pop(L, 1);
		}
		if (deleted && existed)
			n--;
		else if (!deleted && !existed)
			n++;
	}
	lua_pushinteger(L, n);
	return 1;
}

/* state() -> writes, DEL, buffered count */
static int store_state(lua_State *L)
{
	vsrh_store *s = store_of(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	lua_pushlightuserdata(L, STORE_DEL);
	lua_pushinteger(L, (lua_Integer)s->nwrites);
	return 3;
}

/* The committed entries in key order from `first` (NULL: the start): the
 * write transaction's, with the held writes over them (vsrh_overlay.h). */
typedef struct merged_iter {
	MDB_cursor *c;
	int rc;                     /* of the cursor's last move: 0, on (k, v) */
	MDB_val k, v;
	const vsrh_overlay_node *h; /* the next held entry, or NULL */
} merged_iter;

static void merged_start(merged_iter *m, vsrh_lmdb *db, const char *first, size_t fl)
{
	commit_pickup(db, true); /* a scan waits for a commit the syncer makes */
	int rc = mdb_cursor_open(db->wtxn, db->kv, &m->c);
	if (rc)
		lmdb_fatal("cursor", rc);
	m->k = mval(first, fl);
	m->rc = first && fl ? mdb_cursor_get(m->c, &m->k, &m->v, MDB_SET_RANGE)
			    : mdb_cursor_get(m->c, &m->k, &m->v, MDB_FIRST);
	m->h = db->held_w.count ? vsrh_overlay_seek(&db->held_w, first && fl ? first : NULL, fl) : NULL;
}

/* The next entry into (k, v); false at the end. */
static bool merged_next(merged_iter *m, MDB_val *k, MDB_val *v)
{
	for (;;) {
		if (m->rc && m->rc != MDB_NOTFOUND)
			lmdb_fatal("scan", m->rc);
		bool on = m->rc == 0;
		if (!on && m->h == NULL)
			return false;
		int c = !on ? 1 : m->h == NULL ? -1 : bytes_cmp(m->k.mv_data, m->k.mv_size, m->h->key, m->h->kl);
		if (c < 0) {
			*k = m->k;
			*v = rec_value(m->k.mv_data, m->k.mv_size, &m->v, NULL);
			m->rc = mdb_cursor_get(m->c, &m->k, &m->v, MDB_NEXT);
			return true;
		}
		const vsrh_overlay_node *h = m->h; /* held: it replaces the committed entry */
		m->h = vsrh_overlay_next(h);
		if (c == 0)
			m->rc = mdb_cursor_get(m->c, &m->k, &m->v, MDB_NEXT);
		if (h->val) {
			*k = mval(h->key, h->kl);
			*v = mval(h->val, h->vl);
			return true;
		}
	}
}

static void merged_end(merged_iter *m)
{
	mdb_cursor_close(m->c);
}

static void push_range_result(lua_State *L, int keys, int vals, lua_Integer n, const char *k,
			      size_t kl, const char *v, size_t vl)
{
	lua_pushlstring(L, k, kl);
	lua_rawseti(L, keys, n);
	lua_pushlstring(L, v, vl);
	lua_rawseti(L, vals, n);
}

/* range(first, last, limit, extra) -> keys, encoded values: committed
 * entries in [first, last] in byte order, at most limit + extra. */
static int store_range(lua_State *L)
{
	vsrh_store *s = store_of(L);
	size_t fl = 0, ll = 0;
	const char *first = lua_isnil(L, 1) ? NULL : luaL_checklstring(L, 1, &fl);
	const char *last = lua_isnil(L, 2) ? NULL : luaL_checklstring(L, 2, &ll);
	lua_Number lim = luaL_checknumber(L, 3) + (lua_Number)luaL_checkinteger(L, 4);
	lua_Integer max = lim >= 9.0e15 ? (lua_Integer)9e15 : (lua_Integer)lim + (lim > (lua_Integer)lim);
	lua_settop(L, 2);
	lua_newtable(L);
	lua_newtable(L);
	int keys = 3, vals = 4;
	lua_Integer n = 0;
	if (s->db) {
		merged_iter m;
		MDB_val k, v;
		merged_start(&m, s->db, first, fl);
		while (n < max && merged_next(&m, &k, &v)) {
			if (last && bytes_cmp(k.mv_data, k.mv_size, last, ll) > 0)
				break;
			push_range_result(L, keys, vals, ++n, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
		}
		merged_end(&m);
		return 2;
	}
	/* The table: the sorted key cache, rebuilt after a change. */
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	int data = 5;
	if (s->ref_sorted == LUA_NOREF) {
		vsrh_push_sorted_keys(L, data);
		s->ref_sorted = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_sorted);
	int sorted = 6;
	lua_Integer lo = 1, hi = (lua_Integer)lua_rawlen(L, sorted) + 1, end = hi;
	while (first && lo < hi) {
		lua_Integer mid = lo + (hi - lo) / 2;
		size_t ml;
		lua_rawgeti(L, sorted, mid);
		const char *m = lua_tolstring(L, -1, &ml);
		int c = bytes_cmp(m, ml, first, fl);
		lua_pop(L, 1);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (lua_Integer i = lo; i < end && n < max; i++) {
		size_t kl, vl;
		lua_rawgeti(L, sorted, i);
		const char *k = lua_tolstring(L, -1, &kl);
		if (last && bytes_cmp(k, kl, last, ll) > 0) {
			lua_pop(L, 1);
			break;
		}
		lua_pushvalue(L, -1);
		lua_rawget(L, data);
		const char *v = lua_tolstring(L, -1, &vl);
		push_range_result(L, keys, vals, ++n, k, kl, v, vl);
		lua_pop(L, 2);
	}
	lua_settop(L, 4);
	return 2;
}

static int store_unpack(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TSTRING);
	push_decoded(L, 1);
	return 1;
}

static int store_keyless(lua_State *L)
{
	size_t al, bl;
	const char *a = luaL_checklstring(L, 1, &al);
	const char *b = luaL_checklstring(L, 2, &bl);
	lua_pushboolean(L, bytes_cmp(a, al, b, bl) < 0);
	return 1;
}

/* lower_bound(arr, key): first index whose key is >= key, bytewise */
static int store_lower_bound(lua_State *L)
{
	size_t kl;
	const char *k = luaL_checklstring(L, 2, &kl);
	lua_Integer lo = 1, hi = (lua_Integer)lua_rawlen(L, 1) + 1;
	while (lo < hi) {
		lua_Integer mid = lo + (hi - lo) / 2;
		size_t ml;
		lua_rawgeti(L, 1, mid);
		const char *m = lua_tolstring(L, -1, &ml);
		int c = bytes_cmp(m, ml, k, kl);
		lua_pop(L, 1);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	lua_pushinteger(L, lo);
	return 1;
}

static int store_sorted_keys(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	vsrh_push_sorted_keys(L, 1);
	return 1;
}

void vsrh_store_open(lua_State *L, vsrh_store *s)
{
	memset(s, 0, sizeof *s);
	lua_newtable(L);
	s->ref_data = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_newtable(L);
	s->ref_writes = luaL_ref(L, LUA_REGISTRYINDEX);
	s->ref_sorted = LUA_NOREF;
	s->mode = VSRH_STORE_CLOSED;
	vsrh_box_push_env(vsrh_box_of(L));
	if (luaL_loadbufferx(L, store_lua, sizeof store_lua - 1, "=vsr.store", "t") != LUA_OK)
		lua_error(L); /* a host bug: the source is compiled in */
	lua_insert(L, -2);
	lua_setupvalue(L, -2, 1);
	static const lua_CFunction with_store[] = {store_get, store_has, store_put, store_delete,
						   store_count, store_state, store_range};
	for (size_t i = 0; i < sizeof with_store / sizeof with_store[0]; i++) {
		lua_pushlightuserdata(L, s);
		lua_pushcclosure(L, with_store[i], 1);
	}
	lua_pushcfunction(L, store_unpack);
	lua_pushcfunction(L, store_keyless);
	lua_pushcfunction(L, store_lower_bound);
	lua_pushcfunction(L, store_sorted_keys);
	lua_call(L, 11, 1);
}

static void invalidate_sorted(lua_State *L, vsrh_store *s)
{
	luaL_unref(L, LUA_REGISTRYINDEX, s->ref_sorted);
	s->ref_sorted = LUA_NOREF;
}

/* The page the cursor is on, dirty in the write transaction: noted for
 * the commit (vsrh_store_touch.h). */
static void touch_note(vsrh_lmdb *db, MDB_cursor *c)
{
	MDB_val k, v;
	if (db->touch.npages && mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT) == 0)
		vsrh_touch_note(&db->touch, v.mv_data);
}

static void touch_step(vsrh_lmdb *db)
{
	vsrh_touch_step(&db->touch, vsrh_syncer_syncs(&db->syncer), VSRH_TOUCH_PER_OP);
}

/* Whether the cursor is on key k: then its value is in *old. */
static bool lmdb_cursor_on(MDB_cursor *c, const char *k, size_t kl, MDB_val *old)
{
	MDB_val ck;
	return mdb_cursor_get(c, &ck, old, MDB_GET_CURRENT) == 0 && ck.mv_size == kl &&
	       memcmp(ck.mv_data, k, kl) == 0;
}

/* Key -> val (NULL: a delete) in the long-lived write transaction, at
 * most one B-tree search, none when the cursor is still on the key the
 * operation last read (a read-modify-write such as kv's put): a put tries
 * to insert (MDB_NOOVERWRITE), which on an existing key leaves the cursor
 * on it with the old value, then overwrites it in place (MDB_CURRENT); a
 * delete positions the cursor and deletes there. The record replaced or
 * deleted is checked first, and when there is none the records beside
 * where the key belongs (lmdb_seek): a damaged one stops the replica
 * rather than be written over, or left beside under a damaged key.
 * Returns whether there was a record, its check in *old_check and its
 * value's size in *old_len. */
static bool lmdb_place(vsrh_lmdb *db, MDB_cursor *c, const char *key, size_t kl, const char *val,
		       size_t vl, uint64_t new_check, uint64_t *old_check, size_t *old_len)
{
	MDB_val k = mval(key, kl);
	MDB_val old;
	bool on = lmdb_cursor_on(c, key, kl, &old);
	int rc;
	if (val == NULL) {
		if (!on && !lmdb_seek(db, c, key, kl, &old))
			return false;
		old = rec_value(key, kl, &old, old_check);
		*old_len = old.mv_size;
		if ((rc = mdb_cursor_del(c, 0)))
			lmdb_fatal("delete", rc);
		touch_note(db, c);
		return true;
	}
	MDB_val v = rec_make(&db->rec, val, vl, new_check);
	if (v.mv_data == NULL)
		lmdb_fatal("put", ENOMEM);
	if (on) {
		rc = MDB_KEYEXIST;
	} else {
		old = v;
		rc = mdb_cursor_put(c, &k, &old, MDB_NOOVERWRITE);
	}
	bool had = rc == MDB_KEYEXIST;
	if (had) {
		/* old now holds the old record, in the page */
		old = rec_value(key, kl, &old, old_check);
		*old_len = old.mv_size;
		rc = mdb_cursor_put(c, &k, &v, MDB_CURRENT);
	}
	if (rc)
		lmdb_fatal("put", rc);
	rec_done(&db->rec);
	touch_note(db, c);
	if (!had)
		lmdb_check_beside(db, c, key, kl); /* inserted: see lmdb_seek */
	return had;
}

/* ---------------------------------------------------------------- the shadow */

/* The shadow's size beyond which a transaction's commit stays on the loop
 * (a bulk load): VSRH_SHADOW_MAX_MB, else 64 MiB. Nodes count 64 bytes
 * each on top of their keys and values. */
#define SHADOW_MAX_BYTES ((size_t)64 << 20)

static size_t shadow_max_bytes(void)
{
	const char *v = getenv("VSRH_SHADOW_MAX_MB");
	return v != NULL && *v ? (size_t)strtoull(v, NULL, 10) << 20 : SHADOW_MAX_BYTES;
}

static bool hold_allowed(const vsrh_lmdb *db);

/* The shadow is kept only where the commit can leave the loop: a durable
 * store that holds writes while a sync runs. */
static bool shadow_wanted(const vsrh_lmdb *db)
{
	return db->offload && db->durable && hold_allowed(db);
}

/* A new write transaction: its shadow starts empty and whole. What is
 * left of the last one's is freed here (normally nothing: trimmed). */
static void shadow_reset(vsrh_lmdb *db)
{
	vsrh_keymap_trim(&db->shadow, SIZE_MAX);
	db->shadow_whole = shadow_wanted(db);
}

/* The shadow given up for this transaction (its commit stays on the loop):
 * its nodes are freed a few per operation (shadow_trim). */
static void shadow_lose(vsrh_lmdb *db)
{
	db->shadow_whole = false;
}

static bool shadow_full(const vsrh_lmdb *db)
{
	return db->shadow.bytes + db->shadow.count * 64 > db->shadow_max;
}

/* Key -> val (NULL: deleted), just placed in wtxn. */
static void shadow_note(vsrh_lmdb *db, const char *k, size_t kl, const char *v, size_t vl)
{
	if (db->shadow_whole && (vsrh_keymap_put(&db->shadow, k, kl, v, vl) != 0 || shadow_full(db)))
		shadow_lose(db);
}

/* Nodes freed after an operation: the frozen shadow's once the commit is
 * picked up, and a shadow given up. Freeing an interval's writes at once
 * (thousands of nodes) would be a step of its own. */
#define SHADOW_TRIM_PER_OP 64u

static void shadow_trim(vsrh_lmdb *db)
{
	if (!db->committing && db->frozen.count)
		vsrh_keymap_trim(&db->frozen, SHADOW_TRIM_PER_OP);
	if (!db->shadow_whole && db->shadow.count)
		vsrh_keymap_trim(&db->shadow, SHADOW_TRIM_PER_OP);
}

/* One buffered write into the long-lived write transaction (v NULL: a
 * delete), keeping the count, digest and byte total. */
static void lmdb_write_one(vsrh_store *s, MDB_cursor *c, const char *key, size_t kl,
			   const char *val, size_t vl)
{
	vsrh_lmdb *db = s->db;
	uint64_t new_check = val ? entry_hash(key, kl, val, vl) : 0, check = 0;
	size_t old_len = 0;
	bool had = lmdb_place(db, c, key, kl, val, vl, new_check, &check, &old_len);
	shadow_note(db, key, kl, val, vl);
	if (had) {
		s->digest -= check;
		db->kv_bytes -= 8 + kl + old_len;
	}
	if (val == NULL) {
		s->count -= had;
		return;
	}
	s->count += !had;
	s->digest += new_check;
	db->kv_bytes += 8 + kl + vl;
}

/* ---------------------------------------------------------------- held writes */

/* Entries moved into the write transaction after an operation, at least;
 * and per write the operation held, on top: with a sync that took half an
 * interval, what it held drains in about a third of the rest, so the next
 * checkpoint's step finds little or nothing left (1,000,000 keys, 16
 * clients: worst latency 9-11 ms at 2 per write, 7.6 ms at 4). */
#define HELD_DRAIN_PER_OP 8u
#define HELD_DRAIN_PER_WRITE 4u

/* Whether writes may be held at all: only in a map written in place
 * (VSRH_NO_HOLD=1 turns holding off, for comparisons). */
static bool hold_allowed(const vsrh_lmdb *db)
{
	return db->writemap && !getenv("VSRH_NO_HOLD");
}

/* Whether writes are held: from a checkpoint's commit until its sync ends,
 * and while a cleaning runs (the syncer's count of jobs moves at either's
 * end). */
static bool held_holding(vsrh_lmdb *db)
{
	if (db->holding && vsrh_syncer_ended(&db->syncer) != db->hold_ended)
		db->holding = false;
	return db->holding;
}

/* Moves up to max held writes, smallest keys first, into the write
 * transaction. Their count, digest and bytes were kept when they were held. */
static void held_drain(vsrh_lmdb *db, size_t max)
{
	MDB_cursor *c = db->held_w.count ? lmdb_wcursor(db) : NULL;
	vsrh_overlay_node *n;
	while (max-- > 0 && (n = vsrh_overlay_first(&db->held_w)) != NULL) {
		/* Placed as any write is, its old record checked: damaged
		 * while the write was held (a read of the key came from here,
		 * not from it), it stops the replica. A blind put and a
		 * delete by key wrote over it, or inserted the key beside a
		 * record whose key was damaged, which then stayed, under
		 * that key, outside the count and digest (ctest
		 * luahost_store_heldrot). */
		uint64_t check = 0;
		size_t old_len = 0;
		lmdb_place(db, c, n->key, n->kl, n->val, n->vl,
			   n->val ? entry_hash(n->key, n->kl, n->val, n->vl) : 0, &check, &old_len);
		if (db->shadow_whole && vsrh_keymap_take_first(&db->shadow, &db->held_w) == 0) {
			/* (moved, no copy) */
			if (shadow_full(db))
				shadow_lose(db);
		} else {
			if (db->shadow_whole)
				shadow_lose(db); /* out of memory for its slots */
			vsrh_overlay_pop(&db->held_w);
		}
	}
}

/* One buffered write held (v NULL: a delete), keeping the count, digest and
 * byte total against what a read sees now (held, else committed). Returns
 * 0, or -1 when out of memory (nothing changed). */
static int held_write_one(vsrh_store *s, const char *key, size_t kl, const char *val, size_t vl)
{
	vsrh_lmdb *db = s->db;
	const vsrh_overlay_node *h = vsrh_overlay_find(&db->held_w, key, kl);
	bool had;
	MDB_val old;
	uint64_t old_hash = 0;
	if (h) {
		had = h->val != NULL;
		old = mval(h->val, h->vl);
		/* (its bytes are the held entry's, which the put below frees) */
		if (had)
			old_hash = entry_hash(key, kl, old.mv_data, old.mv_size);
	} else {
		had = base_get(db, key, kl, &old, &old_hash);
	}
	if (val == NULL && !had)
		return 0; /* nothing to delete */
	size_t old_len = had ? old.mv_size : 0;
	if (vsrh_overlay_put(&db->held_w, key, kl, val, vl) != 0)
		return -1;
	db->held_total++;
	if (had) {
		s->digest -= old_hash;
		db->kv_bytes -= 8 + kl + old_len;
	}
	if (val == NULL) {
		s->count--;
		return 0;
	}
	if (!had)
		s->count++;
	s->digest += entry_hash(key, kl, val, vl);
	db->kv_bytes += 8 + kl + vl;
	return 0;
}

/* The buffered writes of an operation into the write transaction, or held
 * while a checkpoint's sync runs, and after it until the held ones have
 * drained (a key's held entry would otherwise overwrite a later write). */
static void lmdb_commit_writes(lua_State *L, vsrh_store *s)
{
	vsrh_lmdb *db = s->db;
	int top = lua_gettop(L);
	bool hold = held_holding(db) || db->held_w.count > 0;
	/* (Held, the transaction is not needed: the syncer may have it.) */
	MDB_cursor *c = hold ? NULL : lmdb_wcursor(db);
	size_t writes = 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	int w = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, w)) {
		size_t kl, vl = 0;
		const char *key = lua_tolstring(L, -2, &kl);
		const char *val = lua_type(L, -1) == LUA_TLIGHTUSERDATA ? NULL : lua_tolstring(L, -1, &vl);
		if (kl == 0 || kl > 511) {
			/* A delete (puts of such keys are refused) of a key LMDB
			 * never stores: nothing to do. LMDB would fail the
			 * search of an empty key (MDB_BAD_VALSIZE), which stopped
			 * every replica. */
		} else if (hold && held_write_one(s, key, kl, val, vl) != 0) {
			/* Out of memory for the held entry: everything held goes
			 * into the transaction now, and this write after it (after
			 * the commit of a checkpoint waiting for its turn, whose
			 * state the transaction is). */
			step_now(db);
			held_drain(db, SIZE_MAX);
			db->holding = false;
			hold = false;
			c = lmdb_wcursor(db); /* a commit freed the old one with its transaction */
		}
		if (!hold && kl > 0 && kl <= 511)
			lmdb_write_one(s, c, key, kl, val, vl);
		writes++;
		lua_pop(L, 1);
		/* clearing a field during the traversal is allowed */
		lua_pushvalue(L, -1);
		lua_pushnil(L);
		lua_rawset(L, w);
	}
	s->nwrites = 0;
	lua_settop(L, top);
	/* (The touch first: once the sync has ended it stops noting, and the
	 * pages the drain writes need no touch.) */
	if (db->touch.noting || db->touch.pending)
		touch_step(db);
	if (db->held_w.count && !db->holding)
		held_drain(db, HELD_DRAIN_PER_OP + HELD_DRAIN_PER_WRITE * writes);
	shadow_trim(db);
	if (db->touch.warm_pending && s->checkpoint_interval && !(db->touch.cleaned && db->holding)) {
		/* Operations left until the next checkpoint, this one included. */
		uint64_t r = s->op % s->checkpoint_interval;
		vsrh_touch_warm(&db->touch, r == 0 ? 1 : s->checkpoint_interval - r + 1);
	}
}

void vsrh_store_commit(lua_State *L, vsrh_store *s)
{
	vsrh_store_tick(s); /* this replica's turn to commit a checkpoint? */
	if (s->db) {
		/* A miss tells of the store as it was before this operation's
		 * writes (lmdb_check_beside), not after. */
		if (s->nwrites)
			lmdb_commit_writes(L, s);
		s->db->missed_len = 0;
		return;
	}
	if (s->nwrites == 0)
		return;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	int d = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	int w = lua_gettop(L);
	int changed = 0;
	lua_pushnil(L);
	while (lua_next(L, w)) {
		int k = lua_gettop(L) - 1, v = k + 1;
		size_t kl, vl, ol;
		const char *key = lua_tolstring(L, k, &kl);
		lua_pushvalue(L, k);
		int had = lua_rawget(L, d) != LUA_TNIL; /* the old value at v + 1 */
		const char *old = had ? lua_tolstring(L, v + 1, &ol) : NULL;
		if (lua_type(L, v) == LUA_TLIGHTUSERDATA) {
			if (had) {
				s->digest -= entry_hash(key, kl, old, ol);
				s->count--;
				changed = 1;
				lua_pushvalue(L, k);
				lua_pushnil(L);
				lua_rawset(L, d);
			}
		} else {
			const char *val = lua_tolstring(L, v, &vl);
			if (had) {
				s->digest -= entry_hash(key, kl, old, ol);
			} else {
				s->count++;
				changed = 1;
			}
			s->digest += entry_hash(key, kl, val, vl);
			lua_pushvalue(L, k);
			lua_pushvalue(L, v);
			lua_rawset(L, d);
		}
		lua_settop(L, k);
		/* clearing a field during the traversal is allowed */
		lua_pushvalue(L, k);
		lua_pushnil(L);
		lua_rawset(L, w);
	}
	s->nwrites = 0;
	if (changed)
		invalidate_sorted(L, s);
	lua_settop(L, top);
}

void vsrh_store_abort(lua_State *L, vsrh_store *s)
{
	if (s->db)
		s->db->missed_len = 0;
	if (s->nwrites == 0)
		return;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_writes);
	int w = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, w)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushnil(L);
		lua_rawset(L, w);
	}
	s->nwrites = 0;
	lua_settop(L, top);
}

typedef struct kv_ref {
	const char *k;
	size_t kl;
	const char *v;
	size_t vl;
} kv_ref;

static int kv_cmp(const void *pa, const void *pb)
{
	const kv_ref *a = pa, *b = pb;
	return bytes_cmp(a->k, a->kl, b->k, b->kl);
}

int vsrh_store_write(lua_State *L, vsrh_store *s, vsr_buf *out)
{
	if (s->db) {
		merged_iter m;
		MDB_val k, v;
		int fail = vsrh_put_map_header(out, (uint32_t)s->count);
		merged_start(&m, s->db, NULL, 0);
		while (!fail && merged_next(&m, &k, &v)) {
			fail |= vsrh_put_str(out, k.mv_data, k.mv_size);
			fail |= vsrh_buf_put(out, v.mv_data, v.mv_size);
		}
		merged_end(&m);
		return fail ? -1 : 0;
	}
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_data);
	int t = lua_gettop(L);
	size_t n = (size_t)s->count;
	kv_ref *kv = lua_newuserdatauv(L, (n ? n : 1) * sizeof *kv, 0);
	size_t i = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (i < n) {
			kv[i].k = lua_tolstring(L, -2, &kv[i].kl);
			kv[i].v = lua_tolstring(L, -1, &kv[i].vl);
		}
		i++;
		lua_pop(L, 1);
	}
	if (i != n) { /* the count is kept in step with the table: a host bug */
		lua_settop(L, top);
		return -1;
	}
	qsort(kv, n, sizeof *kv, kv_cmp);
	int fail = vsrh_put_map_header(out, (uint32_t)n);
	for (i = 0; i < n && !fail; i++) {
		fail |= vsrh_put_str(out, kv[i].k, kv[i].kl);
		fail |= vsrh_buf_put(out, kv[i].v, kv[i].vl);
	}
	lua_settop(L, top);
	return fail ? -1 : 0;
}

int vsrh_store_read(lua_State *L, vsrh_store *s, const uint8_t *d, size_t len, size_t *pos,
		    char *err, size_t err_len)
{
	uint32_t n;
	int top = lua_gettop(L);
	if (vsrh_get_map_header(d, len, pos, &n)) {
		snprintf(err, err_len, "corrupt snapshot: the store is not a map");
		return -1;
	}
	lua_createtable(L, 0, (int)(n < (1u << 24) ? n : 0));
	uint64_t digest = 0;
	const char *prev = NULL;
	size_t prev_len = 0;
	for (uint32_t i = 0; i < n; i++) {
		const char *k;
		size_t kl;
		if (vsrh_get_str(d, len, pos, &k, &kl)) {
			snprintf(err, err_len, "corrupt snapshot: store key %u", i + 1);
			lua_settop(L, top);
			return -1;
		}
		/* written in strictly increasing order: no duplicates */
		if (prev && bytes_cmp(prev, prev_len, k, kl) >= 0) {
			snprintf(err, err_len, "corrupt snapshot: store key %u out of order", i + 1);
			lua_settop(L, top);
			return -1;
		}
		if (s->db && (kl == 0 || kl > 511)) {
			snprintf(err, err_len, "corrupt snapshot: store key %u has %zu bytes", i + 1, kl);
			lua_settop(L, top);
			return -1;
		}
		prev = k;
		prev_len = kl;
		size_t vstart = *pos;
		if (vsrh_skip(d, len, pos)) {
			snprintf(err, err_len, "corrupt snapshot: store value %u", i + 1);
			lua_settop(L, top);
			return -1;
		}
		lua_pushlstring(L, k, kl);
		lua_pushlstring(L, (const char *)d + vstart, *pos - vstart);
		lua_rawset(L, -3);
		digest += entry_hash(k, kl, (const char *)d + vstart, *pos - vstart);
	}
	vsrh_store_abort(L, s);
	if (s->db) {
		/* Validated above (into a table, then dropped): now replace. */
		vsrh_lmdb *db = s->db;
		step_now(db); /* its state is wtxn's: committed before it is replaced */
		vsrh_overlay_clear(&db->held_w); /* all replaced */
		int rc = mdb_drop(db->wtxn, db->kv, 0);
		if (rc)
			lmdb_fatal("drop", rc);
		shadow_lose(db); /* (its writes do not go through lmdb_place) */
		db->missed_len = 0;
		db->kv_bytes = 0;
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			size_t kl, vl;
			const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
			MDB_val mk = mval(k, kl), mv = rec_make(&db->rec, v, vl, entry_hash(k, kl, v, vl));
			if (mv.mv_data == NULL)
				lmdb_fatal("put", ENOMEM);
			if ((rc = mdb_put(db->wtxn, db->kv, &mk, &mv, 0)))
				lmdb_fatal("put", rc);
			rec_done(&db->rec);
			db->kv_bytes += 8 + kl + vl;
			lua_pop(L, 1);
		}
		s->count = n;
		s->digest = digest;
		lua_settop(L, top);
		return 0;
	}
	luaL_unref(L, LUA_REGISTRYINDEX, s->ref_data);
	s->ref_data = luaL_ref(L, LUA_REGISTRYINDEX);
	s->count = n;
	s->digest = digest;
	invalidate_sorted(L, s);
	lua_settop(L, top);
	return 0;
}

/* ---------------------------------------------------------------- LMDB environment */


static void path_join(char *out, size_t n, const char *dir, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* fsync of a directory: the entries made in it are durable. 0 or an errno. */
static int dir_sync(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = fd >= 0 && fsync(fd) == 0 ? 0 : errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Removes an environment directory (its two files) and the directory. */
static void env_dir_remove(const char *dir)
{
	char p[4200];
	path_join(p, sizeof p, dir, "data.mdb");
	unlink(p);
	path_join(p, sizeof p, dir, "lock.mdb");
	unlink(p);
	rmdir(dir);
}

static void held_drop(ckpt_held *h)
{
	if (h->cur)
		mdb_cursor_close(h->cur);
	if (h->rtxn)
		mdb_txn_abort(h->rtxn);
	free(h->prefix);
	free(h->seek_off);
	free(h->seek_key_pos);
	free(h->seek_keys.data);
	memset(h, 0, sizeof *h);
}

/* Pages are written through the map (MDB_WRITEMAP): a commit, hence a
 * checkpoint, writes only the meta page. The map (address space, LMDB's
 * limit) is reserved large from the start, STORE_MAP_RESERVE, so that it
 * is never resized in a step: a resize unmaps the whole map, needs every
 * transaction closed and faults every page in again (hundreds of ms with
 * 1,000,000 keys). With MDB_WRITEMAP the file is as long as the map but
 * sparse; what a page needs on disk is allocated (posix_fallocate) ahead of
 * use, `reserved` bytes from the start, at open and at each checkpoint
 * (map_reserve): a full disk is an error there. A page written past it
 * when the disk is full would be a SIGBUS: store_sigbus turns that into
 * exit 74 with a sentence. Returns 0 or an errno. */
static int map_reserve_once(vsrh_lmdb *db, size_t size)
{
	int fd;
	struct stat st;
	struct statvfs vfs;
	int rc = mdb_env_get_fd(db->env, &fd);
	if (rc == 0 && (fstat(fd, &st) != 0 || fstatvfs(fd, &vfs) != 0))
		rc = errno;
	/* Not even trying when the room is plainly not there: a fallocate
	 * that fails half way may keep what it took on some filesystems. */
	if (rc == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize + (uint64_t)st.st_blocks * 512 <
			       (uint64_t)size + STORE_MAP_MIN)
		rc = ENOSPC; /* and leave the log room for a segment */
	/* Only the part not yet allocated: [0, reserved) was (nothing gives
	 * blocks back), and walking it again costs a step milliseconds. */
	size_t from = db->reserved < size ? db->reserved : 0;
	if (rc == 0)
		rc = posix_fallocate(fd, (off_t)from, (off_t)(size - from));
	if (rc == 0)
		db->reserved = size;
	return rc;
}

/* ... and when the disk is full, once more after the space it is about to
 * get back has been freed: the log's pruned segments, which its reaper
 * shrinks a slice at a time with pauses (seconds for a 4 GiB leftover),
 * would otherwise make a nearly full disk stop the replica while the room
 * is on its way (vsrh_sm_on_disk_full). */
static int map_reserve(vsrh_lmdb *db, size_t size)
{
	int rc = map_reserve_once(db, size);
	if (rc == ENOSPC && db->disk_full != NULL && db->disk_full(db->disk_full_arg))
		rc = map_reserve_once(db, size);
	return rc;
}

/* Bytes of the map in use: pages up to the last committed one. */
static size_t map_used(vsrh_lmdb *db)
{
	return vsrh_env_used(db->env);
}

/* Room on disk ahead of use: what is in use now, a quarter more and
 * 16 MiB (an interval that writes more takes the sparse rest of the file,
 * see store_sigbus). Returns the size to reserve, or 0 when there is room. */
static size_t map_wanted(vsrh_lmdb *db)
{
	if (!db->writemap)
		return 0;
	size_t used = map_used(db), want = used + used / 4 + STORE_MAP_MIN / 4;
	if (want > db->mapsize)
		want = db->mapsize;
	return want > db->reserved ? want : 0;
}

/* The address space to map: the reserve, or twice what the file holds
 * when that is more. */
static size_t map_size_for(size_t file_bytes)
{
	size_t m = STORE_MAP_RESERVE;
	while (m < 2 * file_bytes)
		m *= 2;
	return m;
}

/* A SIGBUS inside a store's map is a page the disk had no room for (the
 * reservation above makes that rare): stop as for any disk error. Any other
 * SIGBUS keeps its default action. */
#define STORE_MAPS_MAX 8
static struct {
	_Atomic(uintptr_t) lo, hi;
} store_maps[STORE_MAPS_MAX];

static void store_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	uintptr_t a = (uintptr_t)si->si_addr;
	for (int i = 0; i < STORE_MAPS_MAX; i++) {
		if (a >= store_maps[i].lo && a < store_maps[i].hi) {
			static const char msg[] =
				"vsr.store: a page of the LMDB map could not be written (SIGBUS: the disk is "
				"full or failed)";
			static const char in[] = " (vsr.store in ", end[] = "); this replica stops (exit 74)\n";
			const char *where = vsrh_store_fatal_dir();
			ssize_t n = write(2, msg, sizeof msg - 1);
			if (where[0] != '\0') {
				n = write(2, in, sizeof in - 1);
				n = write(2, where, strlen(where));
				n = write(2, end, sizeof end - 1);
			} else {
				n = write(2, end + 1, sizeof end - 2);
			}
			(void)n;
			_exit(74);
		}
	}
	signal(sig, SIG_DFL); /* the fault happens again, with the default action */
}

/* Where the map of an environment is: LMDB does not say (me_mapaddr is
 * only a fixed address), so the mapping of its data file, at least half of
 * `mapsize` long, is looked up in /proc/self/maps by device and inode.
 * Returns false when not found. */
static bool env_map_range(MDB_env *env, size_t mapsize, uintptr_t *lo, uintptr_t *hi)
{
	int fd;
	struct stat st;
	if (mdb_env_get_fd(env, &fd) || fstat(fd, &st) != 0)
		return false;
	FILE *f = fopen("/proc/self/maps", "r");
	if (f == NULL)
		return false;
	char line[4400];
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		unsigned long a, b, ino, maj, min;
		if (sscanf(line, "%lx-%lx %*s %*s %lx:%lx %lu", &a, &b, &maj, &min, &ino) == 5 &&
		    ino == (unsigned long)st.st_ino && maj == major(st.st_dev) &&
		    min == minor(st.st_dev) && b - a >= mapsize / 2) {
			*lo = a;
			*hi = b;
			found = true;
		}
	}
	fclose(f);
	return found;
}

static void map_watch(vsrh_lmdb *db, bool on)
{
	static bool installed;
	if (!installed && on) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = store_sigbus;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGBUS, &sa, NULL);
		installed = true;
	}
	uintptr_t lo = 0, hi = 0;
	if (on && (db->env == NULL || !env_map_range(db->env, db->mapsize, &lo, &hi)))
		return; /* not watched: a SIGBUS there keeps its default action */
	if (!on && db->watched == 0)
		return;
	for (int i = 0; i < STORE_MAPS_MAX; i++) {
		if (on ? store_maps[i].lo == 0 : store_maps[i].lo == db->watched) {
			store_maps[i].hi = hi;
			store_maps[i].lo = lo;
			break;
		}
	}
	db->watched = lo;
}

static int env_try_open(vsrh_lmdb *db, const char *path, size_t map, size_t reserve)
{
	db->reserved = 0; /* a file of its own (an install renames another in) */
	int rc = mdb_env_create(&db->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(db->env, 2);
	if (rc == 0)
		rc = mdb_env_set_mapsize(db->env, map);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(db->env, 16);
	/* No commit syncs inside LMDB: a durable store syncs after it, on the
	 * syncer's thread for a checkpoint (vsrh_store_sync.h). */
	/* No lock file either (MDB_NOLOCK): one process writes, and the
	 * checkpoint's write transaction is committed on the syncer's thread,
	 * which LMDB's writer mutex (owned by the thread that began it) would
	 * not allow. Without the reader table a write transaction takes pages
	 * freed by commits up to the newest one's predecessor only, so the read
	 * transactions kept open (the newest checkpoint and the one before,
	 * held[]; win, on the commit before the one being made) stay intact.
	 * Another process opens the environment only read-only and only with
	 * the replica stopped (vsrhost --check-store). */
	unsigned flags = MDB_NOLOCK | MDB_NOTLS | MDB_NORDAHEAD | MDB_NOSYNC | MDB_NOMETASYNC |
			 (db->writemap ? MDB_WRITEMAP : 0);
	if (rc == 0)
		rc = mdb_env_open(db->env, path, flags, 0600);
	if (rc == 0)
		db->mapsize = map;
	if (rc == 0 && db->writemap) {
		rc = map_reserve(db, reserve);
		size_t more = rc == 0 ? map_wanted(db) : 0;
		if (more)
			rc = map_reserve(db, more);
		if (rc == 0)
			map_watch(db, true);
	}
	if (rc && db->env) {
		mdb_env_close(db->env);
		db->env = NULL;
	}
	return rc;
}

/* Closes the environment alone (no transaction is open). */
static void env_shut(vsrh_lmdb *db)
{
	map_watch(db, false);
	vsrh_touch_disarm(&db->touch); /* its pages are unmapped */
	if (db->env)
		mdb_env_close(db->env);
	db->env = NULL;
}

static int env_open(vsrh_lmdb *db, const char *path, size_t min_map, char *err, size_t err_len)
{
	/* The map: room for at least twice what the file holds (it is sparse:
	 * its length is the map of its last run). */
	char file[4200];
	struct stat fst;
	snprintf(file, sizeof file, "%s/data.mdb", path);
	size_t reserve = min_map > STORE_MAP_MIN ? min_map : STORE_MAP_MIN, held = 0;
	off_t before = 0;
	if (stat(file, &fst) == 0) {
		held = (size_t)fst.st_blocks * 512;
		before = fst.st_size;
	}
	size_t map = map_size_for(held > reserve ? held : reserve);
	db->writemap = true;
	int rc = env_try_open(db, path, map, reserve);
	if (rc == ENOSPC) {
		/* No room to reserve the map: pages are written with pwrite, and a
		 * full disk is an error at a commit. Only slower checkpoints. The
		 * file goes back to its size before (LMDB extended it to the map). */
		if (truncate(file, before) != 0 && errno != ENOENT)
			rc = errno;
		db->writemap = false;
		if (rc == ENOSPC)
			rc = env_try_open(db, path, map, 0);
		if (rc == 0) /* said, since it lasts until the next start */
			fprintf(stderr, "vsr.store: %s: no room on disk to reserve %zu MiB for the map; "
				"its pages are written at each commit instead (slower checkpoints)\n",
				path, reserve >> 20);
	}
	/* The handles, in a transaction of their own: read transactions can
	 * use them only once it has committed. */
	if (rc == 0)
		rc = mdb_txn_begin(db->env, NULL, 0, &db->wtxn);
	if (rc == 0 && rec_old_format(db->wtxn)) {
		snprintf(err, err_len, "vsr.store: LMDB environment %s: " OLD_FORMAT_WHY, path);
		mdb_txn_abort(db->wtxn);
		db->wtxn = NULL;
		env_shut(db);
		return -1;
	}
	if (rc == 0)
		rc = mdb_dbi_open(db->wtxn, KV_DB, MDB_CREATE, &db->kv);
	if (rc == 0)
		rc = mdb_dbi_open(db->wtxn, "meta", MDB_CREATE, &db->meta);
	db->wcur = NULL;
	db->missed_len = 0; /* another environment's */
	if (rc == 0) {
		rc = mdb_txn_commit(db->wtxn);
		db->wtxn = NULL;
	}
	if (rc == 0)
		rc = mdb_txn_begin(db->env, NULL, 0, &db->wtxn);
	if (rc == 0)
		shadow_reset(db);
	if (rc) {
		snprintf(err, err_len, "vsr.store: LMDB environment %s (%zu MiB): %s", path,
			 map >> 20, rc == ENOSPC ? "the disk is full" : mdb_strerror(rc));
		if (db->wtxn)
			mdb_txn_abort(db->wtxn);
		db->wtxn = NULL;
		env_shut(db);
		return -1;
	}
	return 0;
}

static void env_close(vsrh_lmdb *db)
{
	held_drop(&db->held[0]);
	held_drop(&db->held[1]);
	if (db->wtxn)
		mdb_txn_abort(db->wtxn);
	db->wtxn = NULL;
	db->wcur = NULL;
	env_shut(db);
}

const char *vsrh_store_env_name(const char *dir)
{
	/* An install that stopped between its two renames (db/ moved to old/)
	 * left next/, complete and synced: it is finished; without next/ (its
	 * rename failed), old/ is put back: the install never happened. Any
	 * other next/ is a fetch that stopped half way, and old/ what an
	 * install replaced. */
	char path[4200], next[4200], old[4200];
	path_join(path, sizeof path, dir, "db");
	path_join(next, sizeof next, dir, "next");
	path_join(old, sizeof old, dir, "old");
	struct stat st;
	if (stat(path, &st) != 0 && stat(old, &st) == 0)
		return stat(next, &st) == 0 ? "next" : "old";
	return "db";
}

void vsrh_store_settle_install(const char *dir)
{
	char path[4200], next[4200], old[4200];
	path_join(path, sizeof path, dir, "db");
	path_join(next, sizeof next, dir, "next");
	path_join(old, sizeof old, dir, "old");
	const char *env = vsrh_store_env_name(dir);
	if (strcmp(env, "db") != 0)
		rename(strcmp(env, "next") == 0 ? next : old, path);
	env_dir_remove(next);
	env_dir_remove(old);
}

int vsrh_store_use_lmdb(vsrh_store *s, const char *dir, bool durable, bool fresh,
			bool (*disk_full)(void *arg), void *disk_full_arg, char *err, size_t err_len)
{
	vsrh_lmdb *db = calloc(1, sizeof *db);
	if (db == NULL) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	/* Before the first reservation (env_open): the room the log's reaper
	 * is about to give back counts at open too. */
	db->disk_full = disk_full;
	db->disk_full_arg = disk_full_arg;
	db->staged_fd = -1;
	db->syncer.synced_fd = -1;
	db->durable = durable;
	const char *on_loop = getenv("VSRH_COMMIT_ON_LOOP");
	db->offload = on_loop == NULL || *on_loop == 0 || strcmp(on_loop, "0") == 0;
	db->shadow_max = shadow_max_bytes();
	if (vsrh_overlay_init(&db->held_w) != 0) {
		snprintf(err, err_len, "out of memory");
		free(db);
		return -1;
	}
	if (dir == NULL) {
		const char *tmp = getenv("TMPDIR");
		snprintf(db->dir, sizeof db->dir, "%s/vsrh-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (mkdtemp(db->dir) == NULL) {
			snprintf(err, err_len, "vsr.store: scratch directory %s: %s", db->dir,
				 strerror(errno));
			vsrh_overlay_free(&db->held_w);
			free(db);
			return -1;
		}
		db->scratch = true;
	} else {
		snprintf(db->dir, sizeof db->dir, "%s", dir);
		for (char *p = db->dir + 1; *p; p++) { /* parents first */
			if (*p != '/')
				continue;
			*p = 0;
			mkdir(db->dir, 0700);
			*p = '/';
		}
		if (mkdir(db->dir, 0700) != 0 && errno != EEXIST) {
			snprintf(err, err_len, "vsr.store: %s: %s", db->dir, strerror(errno));
			vsrh_overlay_free(&db->held_w);
			free(db);
			return -1;
		}
	}
	vsrh_store_fatal_names(db->dir); /* a stop for a disk error names it */
	char path[4200], next[4200], old[4200];
	path_join(path, sizeof path, db->dir, "db");
	path_join(next, sizeof next, db->dir, "next");
	path_join(old, sizeof old, db->dir, "old");
	if (fresh || !durable) {
		env_dir_remove(path); /* nothing in it can be trusted (or wanted) */
		/* Nor in next/: a fetch killed half way leaves records there,
		 * which below would pass for an install stopped between its
		 * renames. */
		env_dir_remove(next);
		env_dir_remove(old);
		char synced[4200];
		path_join(synced, sizeof synced, db->dir, "synced"); /* it named that one */
		unlink(synced);
	}
	vsrh_store_settle_install(db->dir);
	bool rolled = false;
	char why[512] = "";
	if (durable && vsrh_store_settle_dir(db->dir, &rolled, why, sizeof why) != 0) {
		/* A storage failure (exit 74), not a configuration error. */
		fprintf(stderr, "vsr.store: %s; this replica stops (exit 74)\n", why);
		fflush(NULL);
		_exit(74);
	}
	if (rolled)
		fprintf(stderr, "vsr.store: %s\n", why);
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(err, err_len, "vsr.store: %s: %s", path, strerror(errno));
		vsrh_overlay_free(&db->held_w);
		free(db);
		return -1;
	}
	int rc = durable ? vsrh_syncer_init(&db->syncer, db->dir) : 0;
	if (rc) {
		snprintf(err, err_len, "vsr.store: %s/synced: %s", db->dir, strerror(rc));
		vsrh_overlay_free(&db->held_w);
		free(db);
		return -1;
	}
	if (env_open(db, path, 0, err, err_len)) {
		vsrh_syncer_close(&db->syncer);
		vsrh_overlay_free(&db->held_w);
		free(db);
		return -1;
	}
	/* What an earlier process committed may still be only in the page
	 * cache (it was killed before its sync): durable from here on. */
	/* Then the entries of db/, data.mdb and synced, which LMDB and the
	 * syncer created without a directory sync: a `synced` lost in a power
	 * cut would leave a torn newest transaction unrolled. A failed sync is
	 * a storage failure (exit 74), not a configuration error: the disk may
	 * be failing, and a retry proves nothing. */
	if (durable && (rc = vsrh_syncer_open_sync(&db->syncer, db->dir, db->env)))
		lmdb_fatal("sync at open", rc);
	if (durable && ((rc = dir_sync(path)) != 0 || (rc = dir_sync(db->dir)) != 0))
		lmdb_fatal("sync of the store's directories at open", rc);
	db->clean_after_ns = clean_after_ns();
	db->wb_last_ns = store_mono_ns();
	s->db = db;
	return 0;
}

vsrh_sync_figures vsrh_store_sync_figures(vsrh_store *s)
{
	if (s->db == NULL || !s->db->durable)
		return (vsrh_sync_figures){0};
	vsrh_sync_figures f = vsrh_syncer_figures(&s->db->syncer);
	f.held = s->db->held_total;
	f.deferred = s->db->steps_deferred;
	f.step_last_ns = s->db->step_last_ns;
	f.last_off_loop = s->db->last_off_loop;
	return f;
}

uint64_t vsrh_store_on_durable(vsrh_store *s, vsrh_store_durable_fn fn, void *arg)
{
	if (s->db == NULL)
		return 0;
	commit_pickup(s->db, true);
	vsrh_syncer_wait(&s->db->syncer);
	s->db->syncer.notify = fn;
	s->db->syncer.notify_arg = arg;
	return s->db->syncer.synced_op;
}

void vsrh_store_on_disk_full(vsrh_store *s, bool (*fn)(void *arg), void *arg)
{
	if (s->db == NULL)
		return;
	s->db->disk_full = fn;
	s->db->disk_full_arg = arg;
}

void vsrh_store_stagger(vsrh_store *s, unsigned slot, unsigned slots, uint64_t turn_ns)
{
	if (s->db == NULL || !s->db->durable)
		return;
	vsrh_syncer_stagger(&s->db->syncer, slot, slots);
	s->db->turn_ns = slots > 1 ? (uint64_t)(slot % slots) * turn_ns : 0;
}

static void build_reset(vsrh_lmdb *db);

void vsrh_store_close(lua_State *L, vsrh_store *s)
{
	(void)L;
	vsrh_lmdb *db = s->db;
	if (db == NULL)
		return;
	build_reset(db);
	step_now(db); /* committed, and synced by the close below */
	vsrh_syncer_close(&db->syncer); /* the checkpoint being synced is durable */
	vsrh_touch_free(&db->touch);
	vsrh_overlay_free(&db->held_w);
	vsrh_keymap_free(&db->shadow);
	vsrh_keymap_free(&db->frozen);
	free(db->rec.data);
	env_close(db);
	if (db->staged_fd >= 0)
		close(db->staged_fd);
	char p[4200];
	path_join(p, sizeof p, db->dir, "staging");
	unlink(p);
	/* A scratch store, or a memory one (the next start removes it anyway):
	 * nothing left behind, not 64 MiB on disk and 8 GiB sparse. */
	if (db->scratch || !db->durable) {
		path_join(p, sizeof p, db->dir, "db");
		env_dir_remove(p);
		path_join(p, sizeof p, db->dir, "next");
		env_dir_remove(p);
		rmdir(db->dir);
	}
	free(db);
	s->db = NULL;
}

/* ---------------------------------------------------------------- checkpoint images */

/* The meta record of a checkpoint: op, checksum, timestamp, size, digest,
 * count, kv_bytes, store digest; then the head. */
#define META_FIXED (8 * 8)

static uint64_t image_digest(const uint8_t *prefix, size_t len, uint64_t store_digest)
{
	return XXH3_64bits_withSeed(prefix, len, store_digest);
}

/* The prefix: magic | head_len | head | count. */
static uint8_t *image_prefix(const uint8_t *head, size_t head_len, uint64_t count, size_t *len)
{
	*len = 8 + 8 + head_len + 8;
	uint8_t *p = malloc(*len);
	if (p == NULL)
		return NULL;
	memcpy(p, CKPT_MAGIC, 8);
	vsrh_put_u64le(p + 8, head_len);
	if (head_len)
		memcpy(p + 16, head, head_len);
	vsrh_put_u64le(p + 16 + head_len, count);
	return p;
}

static int held_open(vsrh_lmdb *db, ckpt_held *h, const vsr_checkpoint *cp, uint8_t *prefix,
		     size_t prefix_len)
{
	memset(h, 0, sizeof *h);
	h->cp = *cp;
	h->prefix = prefix;
	h->prefix_len = prefix_len;
	int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &h->rtxn);
	if (rc == 0)
		rc = mdb_cursor_open(h->rtxn, db->kv, &h->cur);
	if (rc)
		held_drop(h);
	return rc;
}

/* After the commit of checkpoint cp: room on disk for the next interval,
 * the map grown if the data outgrew it, cp kept readable (held[0], the one
 * before in held[1]) and the next write transaction begun. held[1] was
 * dropped before the commit. */
static void commit_after(vsrh_lmdb *db, const vsr_checkpoint *cp, uint8_t *prefix, size_t plen)
{
	int rc;
	size_t more = map_wanted(db);
	if (more && (rc = map_reserve(db, more))) /* room on disk for the next interval */
		lmdb_fatal("reserving room on disk", rc);
	size_t used = map_used(db);
	if (map_size_for(used) > db->mapsize) {
		/* The data grew past half the map (gigabytes): a larger map, once.
		 * Resizing needs no transaction open in this process: the
		 * previous checkpoint is no longer served; nor the syncer on
		 * the map (after a commit it made, its sync is waited for). */
		vsrh_syncer_wait(&db->syncer);
		held_drop(&db->held[0]);
		map_watch(db, false);
		vsrh_touch_disarm(&db->touch);
		size_t map = map_size_for(used);
		if ((rc = mdb_env_set_mapsize(db->env, map)))
			lmdb_fatal("growing the map", rc);
		db->mapsize = map;
		if (db->writemap)
			map_watch(db, true);
	}
	db->held[1] = db->held[0];
	memset(&db->held[0], 0, sizeof db->held[0]);
	if ((rc = held_open(db, &db->held[0], cp, prefix, plen)))
		lmdb_fatal("read transaction", rc);
	if ((rc = mdb_txn_begin(db->env, NULL, 0, &db->wtxn)))
		lmdb_fatal("write transaction", rc);
	shadow_reset(db);
	/* Without a reader table (MDB_NOLOCK) a write transaction reuses the
	 * pages freed by any commit before the newest one: a snapshot older
	 * than the newest two is not intact. The environment commits once per
	 * checkpoint, so held[1] is the one before; were it ever older, it is
	 * no longer served (a state transfer then asks for the newer one). */
	for (int i = 0; i < 2; i++)
		if (db->held[i].rtxn && mdb_txn_id(db->held[i].rtxn) + 2 < mdb_txn_id(db->wtxn))
			held_drop(&db->held[i]);
}

/* The write-back ends with a sync of the whole map: pages the transaction
 * takes past `used` (the file growing) are cleaned too; those up to the
 * reservation are noted as well (vsrh_store_touch.h). */
static void touch_arm(vsrh_lmdb *db, uint64_t syncs)
{
	if (!db->writemap)
		return;
	size_t used = map_used(db);
	vsrh_touch_arm(&db->touch, db->watched, used > db->reserved ? used : db->reserved,
		       (size_t)sysconf(_SC_PAGESIZE), syncs);
}

/* The step handed to the syncer: it commits wtxn, then syncs the commit.
 * Reads go to frozen over win until commit_pickup. */
static int ckpt_hand_off(vsrh_lmdb *db, const vsr_checkpoint *cp, uint8_t *prefix, size_t plen,
			 uint64_t late_ns)
{
	uint64_t t0 = store_mono_ns();
	int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->win);
	if (rc == 0)
		rc = mdb_cursor_open(db->win, db->kv, &db->win_cur);
	if (rc)
		lmdb_fatal("read transaction", rc);
	vsrh_keymap_trim(&db->frozen, SIZE_MAX); /* what the trim left of the last one */
	vsrh_keymap t = db->frozen;
	db->frozen = db->shadow;
	db->shadow = t;
	db->shadow_whole = false; /* until the next transaction (shadow_reset) */
	MDB_txn *txn = db->wtxn;
	db->wtxn = NULL;
	db->wcur = NULL; /* freed with the transaction */
	db->commit_cp = *cp;
	db->commit_prefix = prefix;
	db->commit_plen = plen;
	db->commit_syncs = vsrh_syncer_figures(&db->syncer).syncs;
	db->commit_seq = vsrh_syncer_commits(&db->syncer) + 1;
	db->committing = true;
	db->wb_last_ns = store_mono_ns();
	uint64_t ended;
	if ((rc = vsrh_syncer_start(&db->syncer, db->env, cp->op, 0, late_ns, &ended, txn)))
		lmdb_fatal("starting the syncer thread", rc);
	db->last_off_loop = true;
	db->handoff_ns = store_mono_ns() - t0;
	/* The loop's part so far, for whoever reads the figure before the
	 * pick-up adds its own (the host logs a turn's commit right after its
	 * step): never the previous commit's. */
	db->step_last_ns = db->handoff_ns;
	/* Until the sync ends, the writes of the next operations are held
	 * (vsrh_overlay.h); until the commit is picked up there is no
	 * transaction to put them in anyway. */
	db->holding = true;
	db->hold_ended = ended;
	return VSR_PENDING;
}

/* The commit the syncer made, picked up: the loop's reads go to the
 * next write transaction. Without `wait`, only if it is made; returns
 * whether none is pending now. */
static bool commit_pickup(vsrh_lmdb *db, bool wait)
{
	if (!db->committing)
		return true;
	if (vsrh_syncer_commits(&db->syncer) < db->commit_seq) {
		if (!wait)
			return false;
		vsrh_syncer_commit_wait(&db->syncer, db->commit_seq);
	}
	uint64_t t0 = store_mono_ns();
	db->committing = false;
	mdb_cursor_close(db->win_cur);
	mdb_txn_abort(db->win);
	db->win = NULL;
	db->win_cur = NULL;
	db->missed_len = 0; /* a miss seen in win, not in the transaction */
	uint8_t *prefix = db->commit_prefix;
	db->commit_prefix = NULL;
	commit_after(db, &db->commit_cp, prefix, db->commit_plen);
	touch_arm(db, db->commit_syncs);
	db->step_last_ns = db->handoff_ns + (store_mono_ns() - t0);
	return true;
}

/* The commit of checkpoint cp (its records already in wtxn): the step,
 * late_ns after the take. Returns VSR_OK, or VSR_PENDING when durable (the
 * syncer reports it). */
static int ckpt_commit(vsrh_lmdb *db, const vsr_checkpoint *cp, uint8_t *prefix, size_t plen,
		       uint64_t late_ns)
{
	uint64_t t0 = store_mono_ns();
	held_drop(&db->held[1]);
	if (db->shadow_whole) /* (only ever so where shadow_wanted) */
		return ckpt_hand_off(db, cp, prefix, plen, late_ns);
	int rc = mdb_txn_commit(db->wtxn);
	db->wtxn = NULL;
	db->wcur = NULL; /* freed with the transaction */
	if (rc)
		lmdb_fatal("checkpoint commit", rc);
	db->last_off_loop = false;
	commit_after(db, cp, prefix, plen);
	db->step_last_ns = store_mono_ns() - t0;
	if (!db->durable)
		return VSR_OK;
	/* Durable once the syncer says so (vsr.h: checkpoint_take). */
	uint64_t syncs = vsrh_syncer_figures(&db->syncer).syncs, ended;
	db->wb_last_ns = store_mono_ns();
	if ((rc = vsrh_syncer_start(&db->syncer, db->env, cp->op, map_used(db), late_ns, &ended,
				    NULL)))
		lmdb_fatal("starting the syncer thread", rc);
	touch_arm(db, syncs);
	/* Until the sync ends, the writes of the next operations are held
	 * (vsrh_overlay.h): the map is not written while it is written back. */
	db->holding = hold_allowed(db);
	db->hold_ended = ended;
	return VSR_PENDING;
}

static uint64_t store_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The checkpoint waiting for its turn, committed now (its time has come, or
 * something needs it: a read of it, the next take, a restore, close). */
static void step_go(vsrh_lmdb *db)
{
	if (!db->step_due)
		return;
	db->step_due = false;
	uint8_t *prefix = db->step_prefix;
	db->step_prefix = NULL;
	uint64_t now = store_mono_ns();
	(void)ckpt_commit(db, &db->step_cp, prefix, db->step_plen,
			  now > db->step_taken ? now - db->step_taken : 0);
	db->turn_commits++;
	db->turn_op = db->step_cp.op;
}

/* The checkpoint waiting for its turn committed, and a commit the syncer
 * makes picked up: the write transaction is the loop's again. */
static void step_now(vsrh_lmdb *db)
{
	step_go(db);
	commit_pickup(db, true);
}

void vsrh_store_settle(vsrh_store *s)
{
	if (s->db)
		step_now(s->db);
}

uint64_t vsrh_store_turn_commits(const vsrh_store *s, uint64_t *op, uint64_t *ns)
{
	if (s->db == NULL)
		return 0;
	*op = s->db->turn_op;
	*ns = s->db->step_last_ns;
	return s->db->turn_commits;
}

/* Drops the checkpoint waiting for its turn (its environment is replaced). */
static void step_forget(vsrh_lmdb *db)
{
	db->step_due = false;
	free(db->step_prefix);
	db->step_prefix = NULL;
}

/* Cleanings (vsrh_syncer_clean): a durable map with no sync or cleaning
 * begun for this long gets one. The kernel's flusher writes a file whose
 * first dirty page is 30 s old (vm.dirty_expire_centisecs) whole, in one
 * unpaced burst; a cleaning every 10 s leaves it nothing to write.
 * VSRH_CLEAN_AFTER_MS sets it (tests), 0 turns cleanings off. */
#define STORE_CLEAN_AFTER_NS ((uint64_t)10 * 1000000000u)

static uint64_t clean_after_ns(void)
{
	const char *v = getenv("VSRH_CLEAN_AFTER_MS");
	return v != NULL && *v ? (uint64_t)strtoull(v, NULL, 10) * 1000000u : STORE_CLEAN_AFTER_NS;
}

/* A cleaning, when one is due. Like a sync, it holds the writes until it
 * has ended: the map is not written while it is written back, so that it
 * ends clean. None within the last VSRH_WARM_OPS operations before a
 * checkpoint (near): the checkpoint's sync comes soon, and a cleaning then
 * would write-protect the pages the warm-up has already read, for the
 * commit to fault on (vsrh_store_touch.h). With a checkpoint_interval of
 * 2 x VSRH_WARM_OPS or less, only within its second half: counted whole,
 * every operation was near, and no store with a short interval was ever
 * cleaned (the kernel's flusher then wrote its map whole, unpaced, when
 * checkpoints came more than 30 s apart; `make powercut-soak`'s cleanings
 * with checkpoints every 40 ops never happened). */
static void clean_maybe(vsrh_lmdb *db, bool near)
{
	if (!db->durable || !db->writemap || db->holding || db->step_due || db->wtxn == NULL ||
	    near)
		return;
	uint64_t now = store_mono_ns(), after = db->clean_after_ns;
	if (after == 0 || now - db->wb_last_ns < after)
		return;
	db->wb_last_ns = now;
	/* What the commits use, then what the transaction in progress added
	 * past it (appended pages: data up to the next hole of the sparse
	 * file, unwritten pages of the reservation included). */
	size_t used = map_used(db);
	int fd;
	off_t hole;
	if (mdb_env_get_fd(db->env, &fd) == 0 && (hole = lseek(fd, (off_t)used, SEEK_HOLE)) > 0 &&
	    (size_t)hole > used)
		used = (size_t)hole;
	uint64_t e;
	int rc = vsrh_syncer_clean(&db->syncer, db->env, used, after / 2, &e);
	if (rc == EBUSY)
		return; /* a sync still runs: it cleans */
	if (rc)
		lmdb_fatal("starting the syncer thread", rc);
	db->holding = hold_allowed(db);
	db->hold_ended = e;
	db->touch.cleaned = true; /* its pages write-protected: warmed by writing */
}

void vsrh_store_tick(vsrh_store *s)
{
	if (s->db == NULL)
		return;
	if (s->db->committing) {
		commit_pickup(s->db, false);
	} else if (s->db->step_due) {
		if (store_mono_ns() >= s->db->step_taken + s->db->turn_ns)
			step_go(s->db);
	} else {
		uint64_t left = s->checkpoint_interval
					? s->checkpoint_interval - s->op % s->checkpoint_interval
					: UINT64_MAX;
		uint64_t window = s->checkpoint_interval / 2 < VSRH_WARM_OPS
					  ? s->checkpoint_interval / 2
					  : VSRH_WARM_OPS;
		clean_maybe(s->db, left < window);
	}
}

int vsrh_store_ckpt_take(vsrh_store *s, vsr_checkpoint *cp, const uint8_t *head, size_t head_len)
{
	vsrh_lmdb *db = s->db;
	step_now(db); /* the last one, still waiting for its turn: committed first */
	size_t plen;
	uint8_t *prefix = image_prefix(head, head_len, (uint64_t)s->count, &plen);
	if (prefix == NULL)
		return VSR_ENOMEM;
	cp->size = plen + db->kv_bytes;
	cp->digest = image_digest(prefix, plen, s->digest);
	/* The checkpoint's own record, in the same transaction as its state. */
	uint8_t fixed[META_FIXED];
	uint64_t f[8] = {cp->op, cp->checksum, cp->timestamp, cp->size, cp->digest,
			 (uint64_t)s->count, db->kv_bytes, s->digest};
	for (int i = 0; i < 8; i++)
		vsrh_put_u64le(fixed + 8 * i, f[i]);
	MDB_val k1 = mval("checkpoint", 10), v1 = mval(fixed, sizeof fixed);
	MDB_val k2 = mval("head", 4), v2 = mval(head, head_len);
	/* The previous checkpoint must be durable before this commit: LMDB's
	 * older meta page then always names a durable transaction, the one a
	 * restart after a power cut can fall back to (vsrh_store_sync.h). Its
	 * sync began an interval ago. Then the writes still held go in (a
	 * sync that took most of the interval leaves some). */
	vsrh_syncer_wait(&db->syncer);
	db->holding = false;
	held_drain(db, SIZE_MAX);
	int rc = mdb_put(db->wtxn, db->meta, &k1, &v1, 0);
	if (rc == 0)
		rc = mdb_put(db->wtxn, db->meta, &k2, &v2, 0);
	if (rc)
		lmdb_fatal("checkpoint commit", rc);
	if (db->turn_ns == 0 || !db->durable || !hold_allowed(db))
		return ckpt_commit(db, cp, prefix, plen, 0);
	/* Not this replica's turn yet: wtxn holds the checkpoint's state, and
	 * the writes of the operations until the turn are held. */
	db->step_due = true;
	db->step_taken = store_mono_ns();
	db->step_cp = *cp;
	db->step_prefix = prefix;
	db->step_plen = plen;
	db->steps_deferred++;
	db->holding = true;
	db->hold_ended = vsrh_syncer_ended(&db->syncer); /* idle: waited for */
	return VSR_PENDING;
}

static ckpt_held *held_find(vsrh_lmdb *db, const vsr_checkpoint *cp)
{
	for (int i = 0; i < 2; i++) {
		ckpt_held *h = &db->held[i];
		if (h->rtxn && h->cp.op == cp->op && h->cp.digest == cp->digest && h->cp.size == cp->size)
			return h;
	}
	return NULL;
}

static void seek_note(ckpt_held *h, const MDB_val *k)
{
	if (h->seek_count == h->seek_cap) {
		uint32_t cap = h->seek_cap ? 2 * h->seek_cap : 64;
		uint64_t *o = realloc(h->seek_off, cap * sizeof *o);
		size_t *p = o ? realloc(h->seek_key_pos, cap * sizeof *p) : NULL;
		if (o)
			h->seek_off = o;
		if (!o || !p)
			return; /* fewer seek points: slower, still right */
		h->seek_key_pos = p;
		h->seek_cap = cap;
	}
	if (h->seek_count && h->seek_off[h->seek_count - 1] >= h->at)
		return;
	size_t pos = h->seek_keys.len;
	uint8_t l[4] = {(uint8_t)k->mv_size, (uint8_t)(k->mv_size >> 8), 0, 0};
	if (vsrh_buf_put(&h->seek_keys, l, 4) || vsrh_buf_put(&h->seek_keys, k->mv_data, k->mv_size))
		return;
	h->seek_off[h->seek_count] = h->at;
	h->seek_key_pos[h->seek_count] = pos;
	h->seek_count++;
}

/* A cursor move of a checkpoint's reader: the record's value checked (the
 * image carries values without their checks, docs/storage.md). */
static int held_get(MDB_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	int rc = mdb_cursor_get(c, k, v, op);
	if (rc == 0)
		*v = rec_value(k->mv_data, k->mv_size, v, NULL);
	return rc;
}

/* Puts the cursor on the record containing image byte `off` (>= prefix).
 * Returns 0, or an LMDB error. */
static int held_seek(ckpt_held *h, uint64_t off, MDB_val *k, MDB_val *v)
{
	int rc;
	if (h->at_valid && h->at <= off) {
		rc = held_get(h->cur, k, v, MDB_GET_CURRENT);
	} else {
		/* the last seek point at or before off, or the first record */
		uint32_t lo = 0, hi = h->seek_count;
		while (lo < hi) {
			uint32_t mid = (lo + hi) / 2;
			if (h->seek_off[mid] <= off)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == 0) {
			rc = held_get(h->cur, k, v, MDB_FIRST);
			h->at = h->prefix_len;
		} else {
			const uint8_t *p = h->seek_keys.data + h->seek_key_pos[lo - 1];
			*k = mval(p + 4, (size_t)p[0] | (size_t)p[1] << 8);
			rc = held_get(h->cur, k, v, MDB_SET_KEY);
			h->at = h->seek_off[lo - 1];
		}
		h->seen = 0;
		h->at_valid = rc == 0;
	}
	while (rc == 0 && h->at + 8 + k->mv_size + v->mv_size <= off) {
		h->at += 8 + k->mv_size + v->mv_size;
		rc = held_get(h->cur, k, v, MDB_NEXT);
		if (rc == 0 && ++h->seen % IMAGE_INDEX_EVERY == 0)
			seek_note(h, k);
	}
	h->at_valid = rc == 0;
	return rc;
}

int vsrh_store_ckpt_read(vsrh_store *s, const vsr_checkpoint *cp, uint64_t offset, uint32_t len,
			 vsr_buf *out)
{
	ckpt_held *h = s->db ? held_find(s->db, cp) : NULL;
	if (h == NULL && s->db &&
	    ((s->db->step_due && s->db->step_cp.op == cp->op) ||
	     (s->db->committing && s->db->commit_cp.op == cp->op))) {
		step_now(s->db); /* asked for before its turn, or its commit: made now */
		h = held_find(s->db, cp);
	}
	if (h == NULL || offset > cp->size)
		return VSR_EINVAL;
	uint64_t end = offset + len < cp->size ? offset + len : cp->size;
	while (offset < end && offset < h->prefix_len) {
		uint64_t n = (end < h->prefix_len ? end : h->prefix_len) - offset;
		if (vsrh_buf_put(out, h->prefix + offset, (size_t)n))
			return VSR_ENOMEM;
		offset += n;
	}
	while (offset < end) {
		MDB_val k, v;
		if (held_seek(h, offset, &k, &v))
			return VSR_ECORRUPT;
		uint8_t rec_head[8];
		uint32_t kl = (uint32_t)k.mv_size, vl = (uint32_t)v.mv_size;
		for (int i = 0; i < 4; i++) {
			rec_head[i] = (uint8_t)(kl >> (8 * i));
			rec_head[4 + i] = (uint8_t)(vl >> (8 * i));
		}
		/* the part of this record inside [offset, end) */
		const struct {
			const void *p;
			uint64_t n;
		} parts[3] = {{rec_head, 8}, {k.mv_data, kl}, {v.mv_data, vl}};
		uint64_t at = h->at;
		for (int i = 0; i < 3 && offset < end; i++) {
			uint64_t a = at, b = at + parts[i].n;
			at = b;
			if (b <= offset)
				continue;
			uint64_t from = offset - a, to = (b < end ? b : end) - a;
			if (vsrh_buf_put(out, (const uint8_t *)parts[i].p + from, (size_t)(to - from)))
				return VSR_ENOMEM;
			offset = a + to;
		}
	}
	return VSR_OK;
}

/* ------------------------------------------------------------ installing an image */

/* Drops what was built for the staged image (next/ too). */
static void build_reset(vsrh_lmdb *db)
{
	ckpt_build *b = &db->build;
	if (b->env != NULL) {
		if (b->cur)
			mdb_cursor_close(b->cur);
		if (b->env->wtxn)
			mdb_txn_abort(b->env->wtxn);
		b->env->wtxn = NULL;
		env_shut(b->env);
		free(b->env);
		char next[4200];
		path_join(next, sizeof next, db->dir, "next");
		env_dir_remove(next);
	}
	free(b->last.data);
	free(b->ranges);
	memset(b, 0, sizeof *b);
}

/* A fresh environment in next/ for the staged image, its records appended
 * in key order as they come. Its commits are not synced until the last
 * (build_finish): next/ is trusted only once renamed over db/. */
static int build_start(vsrh_lmdb *db, const vsr_checkpoint *cp)
{
	ckpt_build *b = &db->build;
	char next[4200], err[256];
	path_join(next, sizeof next, db->dir, "next");
	env_dir_remove(next);
	b->env = calloc(1, sizeof *b->env);
	if (b->env == NULL)
		return -1;
	b->env->durable = db->durable;
	b->env->staged_fd = -1;
	/* Room for the records, their pages' slack and what follows. */
	if (mkdir(next, 0700) != 0 || env_open(b->env, next, (size_t)cp->size * 2, err, sizeof err)) {
		free(b->env);
		b->env = NULL;
		return -1;
	}
	if (mdb_cursor_open(b->env->wtxn, b->env->kv, &b->cur)) {
		build_reset(db);
		return -1;
	}
	return 0;
}

/* Appends the whole records in p[0..len) (image bytes from `parsed` on):
 * each whole, keys strictly increasing, summed into the digest. Returns
 * the bytes used; sets `bad` on a corrupt image or an LMDB failure. */
static uint64_t build_records(vsrh_lmdb *db, const vsr_checkpoint *cp, const uint8_t *p,
			      uint64_t len)
{
	ckpt_build *b = &db->build;
	uint64_t at = 0;
	while (!b->bad && len - at >= 8) {
		uint64_t abs = b->parsed + at;
		uint32_t kl = vsrh_get_u32le(p + at), vl = vsrh_get_u32le(p + at + 4);
		if (kl == 0 || kl > 511 || cp->size - abs - 8 < (uint64_t)kl + vl) {
			b->bad = b->corrupt = true;
			break;
		}
		if (len - at - 8 < (uint64_t)kl + vl)
			break; /* the rest has not arrived (or was not read) yet */
		const uint8_t *k = p + at + 8;
		if (b->n > 0 && bytes_cmp((const char *)b->last.data, b->last.len, (const char *)k, kl) >= 0) {
			b->bad = b->corrupt = true;
			break;
		}
		uint64_t check = entry_hash((const char *)k, kl, (const char *)k + kl, vl);
		MDB_val mk = mval(k, kl), mv = rec_make(&db->rec, k + kl, vl, check);
		b->last.len = 0;
		if (mv.mv_data == NULL || mdb_cursor_put(b->cur, &mk, &mv, MDB_APPEND) ||
		    vsrh_buf_put(&b->last, k, kl)) {
			b->bad = true;
			break;
		}
		rec_done(&db->rec);
		b->sum += check;
		b->n++;
		at += 8 + (uint64_t)kl + vl;
	}
	return at;
}

/* Consumes what has arrived contiguously, from the staging file (the page
 * cache): the prefix first, then whole records, at most a few MiB per read. */
static void build_feed(vsrh_lmdb *db, const vsr_checkpoint *cp)
{
	ckpt_build *b = &db->build;
	uint8_t *buf = NULL;
	while (!b->bad && b->contiguous > b->parsed) {
		if (b->parsed == 0) { /* the prefix: magic, head length, head, count */
			uint8_t h[16];
			if (b->contiguous < 24 || pread(db->staged_fd, h, 16, 0) != 16)
				break;
			uint64_t head_len = vsrh_get_u64le(h + 8);
			if (memcmp(h, CKPT_MAGIC, 8) != 0 || head_len > cp->size - 24) {
				b->bad = b->corrupt = true;
				break;
			}
			b->plen = 24 + head_len;
			if (b->contiguous < b->plen ||
			    pread(db->staged_fd, h, 8, (off_t)(b->plen - 8)) != 8)
				break;
			b->count = vsrh_get_u64le(h);
			b->parsed = b->plen;
			continue;
		}
		uint64_t avail = b->contiguous - b->parsed, want = avail < (4u << 20) ? avail : (4u << 20);
		uint8_t *nb = realloc(buf, (size_t)want);
		if (nb == NULL) {
			b->bad = true;
			break;
		}
		buf = nb;
		if (pread(db->staged_fd, buf, (size_t)want, (off_t)b->parsed) != (ssize_t)want) {
			b->bad = true;
			break;
		}
		uint64_t used = build_records(db, cp, buf, want);
		if (used == 0 && !b->bad && want < avail && want >= 8) {
			/* one record larger than a read: read it whole */
			want = 8 + (uint64_t)vsrh_get_u32le(buf) + vsrh_get_u32le(buf + 4);
			if (want > avail)
				break;
			if ((nb = realloc(buf, (size_t)want)) == NULL) {
				b->bad = true;
				break;
			}
			buf = nb;
			if (pread(db->staged_fd, buf, (size_t)want, (off_t)b->parsed) != (ssize_t)want) {
				b->bad = true;
				break;
			}
			used = build_records(db, cp, buf, want);
		}
		b->parsed += used;
		if (used == 0)
			break;
	}
	free(buf);
}

/* A chunk at [offset, offset + len) arrived: moves the contiguous end on,
 * appends what it completes, and commits it (unsynced) so that its pages
 * need not be kept dirty in one huge transaction. */
static void build_note(vsrh_lmdb *db, const vsr_checkpoint *cp, uint64_t offset, uint32_t len)
{
	ckpt_build *b = &db->build;
	if (b->bad || (b->env == NULL && build_start(db, cp) != 0)) {
		b->bad = true;
		return;
	}
	if (offset < b->contiguous) {
		/* Bytes written again (the core asks each chunk once): what was
		 * built may not be what the staging file now holds. */
		b->bad = true;
		return;
	}
	if (offset > b->contiguous) {
		if (b->nranges == b->cap) {
			uint32_t cap = b->cap ? 2 * b->cap : 16;
			uint64_t(*r)[2] = realloc(b->ranges, cap * sizeof *r);
			if (r == NULL) {
				b->bad = true;
				return;
			}
			b->ranges = r;
			b->cap = cap;
		}
		b->ranges[b->nranges][0] = offset;
		b->ranges[b->nranges][1] = offset + len;
		b->nranges++;
		return;
	}
	if (offset + len > b->contiguous)
		b->contiguous = offset + len;
	for (uint32_t i = 0; i < b->nranges;) { /* the chunks this one joined up */
		if (b->ranges[i][0] <= b->contiguous) {
			if (b->ranges[i][1] > b->contiguous)
				b->contiguous = b->ranges[i][1];
			b->ranges[i][0] = b->ranges[b->nranges - 1][0];
			b->ranges[i][1] = b->ranges[b->nranges - 1][1];
			b->nranges--;
			i = 0;
			continue;
		}
		i++;
	}
	uint64_t before = b->parsed;
	build_feed(db, cp);
	if (b->bad || b->parsed == before)
		return;
	vsrh_lmdb *e = b->env;
	mdb_cursor_close(b->cur);
	b->cur = NULL;
	int rc = mdb_txn_commit(e->wtxn);
	e->wtxn = NULL;
	if (rc == 0)
		rc = mdb_txn_begin(e->env, NULL, 0, &e->wtxn);
	if (rc == 0)
		rc = mdb_cursor_open(e->wtxn, e->kv, &b->cur);
	if (rc) {
		b->bad = true;
		return;
	}
	int fd;
	if (db->durable && mdb_env_get_fd(e->env, &fd) == 0) /* writeback starts now */
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int vsrh_store_ckpt_write(vsrh_store *s, const vsr_checkpoint *cp, uint64_t offset,
			  const uint8_t *data, uint32_t len)
{
	vsrh_lmdb *db = s->db;
	char p[4200];
	path_join(p, sizeof p, db->dir, "staging");
	if (db->staged_fd < 0 || memcmp(&db->staged, cp, sizeof *cp) != 0) {
		if (db->staged_fd >= 0)
			close(db->staged_fd);
		build_reset(db);
		db->staged_fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (db->staged_fd < 0)
			return VSR_EINVAL;
		db->staged = *cp;
	}
	if (offset > cp->size || len > cp->size - offset)
		return VSR_EINVAL;
	ssize_t n = pwrite(db->staged_fd, data, len, (off_t)offset);
	if (n != (ssize_t)len)
		return VSR_EINVAL;
	build_note(db, cp, offset, len);
	return VSR_OK;
}

/* The last commit of next/, with the checkpoint's records, synced. */
static int build_finish(vsrh_lmdb *db, const uint8_t *fixed, const uint8_t *head, size_t head_len)
{
	ckpt_build *b = &db->build;
	vsrh_lmdb *e = b->env;
	mdb_cursor_close(b->cur);
	b->cur = NULL;
	MDB_val k1 = mval("checkpoint", 10), v1 = mval(fixed, META_FIXED);
	MDB_val k2 = mval("head", 4), v2 = mval(head, head_len);
	int rc = mdb_put(e->wtxn, e->meta, &k1, &v1, 0);
	if (rc == 0)
		rc = mdb_put(e->wtxn, e->meta, &k2, &v2, 0);
	if (rc == 0)
		rc = mdb_txn_commit(e->wtxn);
	else
		mdb_txn_abort(e->wtxn);
	e->wtxn = NULL;
	/* Once more, the record alone: both meta pages then name the whole
	 * checkpoint, so the rule that the older one is a durable checkpoint
	 * (vsrh_store_settle_dir) holds from the start. */
	if (rc == 0)
		rc = mdb_txn_begin(e->env, NULL, 0, &e->wtxn);
	if (rc == 0 && (rc = mdb_put(e->wtxn, e->meta, &k1, &v1, 0)) == 0)
		rc = mdb_txn_commit(e->wtxn);
	else if (e->wtxn)
		mdb_txn_abort(e->wtxn);
	e->wtxn = NULL;
	/* next/ durable as a whole before the install renames it into place:
	 * its data, then its entries (data.mdb, made by LMDB in a directory
	 * never synced). A rename made durable before them (a journal commit
	 * for anyone's fsync, or any order POSIX allows) would otherwise put a
	 * torn or empty environment where db/ was. A failed sync stops the
	 * replica (never continue after one: the disk is failing); it used to
	 * fail the install, which the core retries. */
	if (rc == 0 && db->durable && (rc = mdb_env_sync(e->env, 1)) != 0)
		lmdb_fatal("sync of a fetched checkpoint", rc);
	char next[4200];
	path_join(next, sizeof next, db->dir, "next");
	if (rc == 0 && db->durable && (rc = dir_sync(next)) != 0)
		lmdb_fatal("sync of a fetched checkpoint's directory", rc);
	env_shut(e);
	free(e);
	b->env = NULL;
	return rc;
}

int vsrh_store_ckpt_install(lua_State *L, vsrh_store *s, const vsr_checkpoint *cp,
			    int (*accept)(void *arg, const uint8_t *head, size_t len), void *arg)
{
	vsrh_lmdb *db = s->db;
	if (db->staged_fd < 0 || memcmp(&db->staged, cp, sizeof *cp) != 0 || cp->size < 24)
		return VSR_EINVAL;
	ckpt_build *b = &db->build;
	if (b->env == NULL || b->bad || b->parsed != cp->size) {
		/* Not built as the chunks came (a build that failed, or chunks
		 * written before a restart): from the staging file, now. */
		build_reset(db);
		if (build_start(db, cp) == 0) {
			b->contiguous = cp->size;
			build_feed(db, cp);
		} else {
			b->bad = true;
		}
	}
	char path[4200], next[4200], old[4200];
	path_join(path, sizeof path, db->dir, "db");
	path_join(next, sizeof next, db->dir, "next");
	path_join(old, sizeof old, db->dir, "old");
	int result = b->bad && !b->corrupt ? VSR_ENOMEM : VSR_ECORRUPT;
	uint8_t *prefix = NULL;
	/* Every record whole, keys strictly increasing (build_records), all
	 * of them, and the digest. */
	if (b->bad || b->parsed != cp->size || b->n != b->count)
		goto out;
	size_t plen = (size_t)b->plen;
	if ((prefix = malloc(plen)) == NULL ||
	    pread(db->staged_fd, prefix, plen, 0) != (ssize_t)plen ||
	    image_digest(prefix, plen, b->sum) != cp->digest)
		goto out;
	const uint8_t *head = prefix + 16;
	size_t head_len = plen - 24;
	uint64_t count = b->count, sum = b->sum, kv_bytes = cp->size - plen;
	uint8_t fixed[META_FIXED];
	uint64_t f[8] = {cp->op, cp->checksum, cp->timestamp, cp->size, cp->digest, count, kv_bytes, sum};
	for (int i = 0; i < 8; i++)
		vsrh_put_u64le(fixed + 8 * i, f[i]);
	result = VSR_ENOMEM;
	if (build_finish(db, fixed, head, head_len))
		goto out;
	/* The host's half (client table, plain state): nothing is replaced
	 * unless it accepts. Nothing after it may fail for want of memory
	 * (the prefix is held already): the install then succeeds or stops
	 * the replica, never returns with the plain state replaced and the
	 * store not. */
	result = accept(arg, head, head_len);
	if (result != VSR_OK)
		goto out;
	vsrh_store_abort(L, s);
	commit_pickup(db, true);
	vsrh_syncer_wait(&db->syncer); /* its environment is about to close */
	vsrh_overlay_clear(&db->held_w); /* writes after the state replaced */
	db->holding = false;
	step_forget(db); /* a checkpoint of the state replaced */
	env_close(db);
	env_dir_remove(old);
	char err[256] = "";
	if (rename(path, old) != 0 || rename(next, path) != 0) {
		/* The old store is closed: never run on without one. At the next
		 * start vsrh_store_use_lmdb finishes an interrupted rename. */
		fprintf(stderr, "vsr.store: installing a checkpoint in %s: %s; this replica stops "
			"(exit 74)\n", db->dir, strerror(errno));
		fflush(NULL);
		_exit(74);
	}
	/* The renames durable before old/ goes: removed while they may not
	 * be, db/ could come back emptied by a power cut. */
	int src = db->durable ? dir_sync(db->dir) : 0;
	if (src)
		lmdb_fatal("sync of an installed checkpoint's directory", src);
	if (env_open(db, path, 0, err, sizeof err)) {
		fprintf(stderr, "vsr.store: installing a checkpoint in %s: %s; this replica stops "
			"(exit 74)\n", db->dir, err);
		fflush(NULL);
		_exit(74);
	}
	env_dir_remove(old);
	/* Then the environment (durable since build_finish: this records its
	 * transaction in `synced`, which still names the replaced store's),
	 * before the superblock can name its checkpoint. */
	if (db->durable && (src = vsrh_syncer_sync_now(&db->syncer, db->env, cp->op)) != 0)
		lmdb_fatal("sync of an installed checkpoint", src);
	s->count = (int64_t)count;
	s->digest = sum;
	db->kv_bytes = kv_bytes;
	int rc = held_open(db, &db->held[0], cp, prefix, plen);
	prefix = NULL; /* held by held[0] */
	if (rc)
		lmdb_fatal("read transaction", rc);
	result = VSR_OK;
out:
	free(prefix);
	build_reset(db);
	if (result != VSR_OK)
		env_dir_remove(next); /* not wanted (when it was, it is db/ now) */
	if (result == VSR_OK || result == VSR_ECORRUPT) {
		close(db->staged_fd);
		db->staged_fd = -1;
		memset(&db->staged, 0, sizeof db->staged);
	}
	return result;
}

int vsrh_store_ckpt_open(vsrh_store *s, vsr_checkpoint *cp, vsr_buf *head)
{
	vsrh_lmdb *db = s->db;
	memset(cp, 0, sizeof *cp);
	MDB_val k1 = mval("checkpoint", 10), v1, k2 = mval("head", 4), v2;
	int rc = mdb_get(db->wtxn, db->meta, &k1, &v1);
	if (rc == MDB_NOTFOUND)
		return VSR_OK;
	if (rc == 0)
		rc = mdb_get(db->wtxn, db->meta, &k2, &v2);
	if (rc || v1.mv_size != META_FIXED)
		return VSR_ECORRUPT;
	uint64_t f[8];
	for (int i = 0; i < 8; i++)
		f[i] = vsrh_get_u64le((const uint8_t *)v1.mv_data + 8 * i);
	*cp = (vsr_checkpoint){.op = f[0], .checksum = f[1], .timestamp = f[2], .size = f[3],
			       .digest = f[4]};
	s->count = (int64_t)f[5];
	db->kv_bytes = f[6];
	s->digest = f[7];
	if (vsrh_buf_put(head, v2.mv_data, v2.mv_size))
		return VSR_ENOMEM;
	size_t plen;
	uint8_t *prefix = image_prefix(v2.mv_data, v2.mv_size, f[5], &plen);
	if (prefix == NULL)
		return VSR_ENOMEM;
	if (plen + db->kv_bytes != cp->size || image_digest(prefix, plen, s->digest) != cp->digest) {
		free(prefix);
		return VSR_ECORRUPT;
	}
	rc = held_open(db, &db->held[0], cp, prefix, plen);
	return rc ? VSR_ECORRUPT : VSR_OK;
}

/* ------------------------------------------------------- verification */

/* The bytes an environment's records can take at most: its pages up to the
 * last one its newest meta page counts, and no more than its file. */
static uint64_t verify_room(MDB_env *env, uint64_t file_bytes)
{
	MDB_envinfo info;
	MDB_stat ms;
	if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &ms) != 0 || ms.ms_psize == 0)
		return file_bytes;
	uint64_t pages = (uint64_t)info.me_last_pgno + 1;
	return pages > file_bytes / ms.ms_psize ? file_bytes : pages * ms.ms_psize;
}

uint64_t vsrh_store_used_bytes(const char *dir, const char *env_name)
{
	char path[4200], file[4300];
	path_join(path, sizeof path, dir, env_name);
	snprintf(file, sizeof file, "%s/data.mdb", path);
	struct stat st;
	if (stat(file, &st) != 0)
		return 0;
	MDB_env *env = NULL;
	uint64_t used = (uint64_t)st.st_blocks * 512;
	if (mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 2) == 0 &&
	    mdb_env_set_mapsize(env, (size_t)st.st_size > STORE_MAP_MIN ? (size_t)st.st_size
									: STORE_MAP_MIN) == 0 &&
	    mdb_env_open(env, path, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600) == 0)
		used = verify_room(env, (uint64_t)st.st_size);
	if (env)
		mdb_env_close(env);
	return used;
}

/* Reads every record of the environment under `dir` (as vsrh_store_use_lmdb
 * names it) and checks it against the checkpoint record: the count, the
 * bytes, the store digest and the image digest. LMDB keeps no checksums of
 * its own, so this is what tells a flipped byte in data.mdb from the state
 * the checkpoint promised. Then its pages: the free list against the trees
 * (vsrh_store_pages.h), which no record shows. */
int vsrh_store_verify_dir(const char *dir, uint64_t min_op, uint64_t checksum, char *why,
			  size_t why_len)
{
	return vsrh_store_verify_env(dir, "db", NULL, min_op, checksum, why, why_len);
}

int vsrh_store_verify_env(const char *dir, const char *env_name, const vsrh_store_rollback *rb,
			  uint64_t min_op, uint64_t checksum, char *why, size_t why_len)
{
	char path[4200], file[4300];
	path_join(path, sizeof path, dir, env_name);
	snprintf(file, sizeof file, "%s/data.mdb", path);
	struct stat st;
	if (stat(file, &st) != 0)
		return 0; /* no environment: the state is in plain Lua (checkpoint.img) */
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_dbi kv, meta;
	const char *what = "opening it";
	int rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env, 2);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env, (size_t)st.st_size > STORE_MAP_MIN ? (size_t)st.st_size
										   : STORE_MAP_MIN);
	if (rc == 0)
		rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
	if (rc == 0 && rb != NULL && rb->due) {
		MDB_envinfo info;
		uintptr_t lo = 0, hi = 0;
		if (mdb_env_info(env, &info) != 0 || !env_map_range(env, info.me_mapsize, &lo, &hi)) {
			snprintf(why, why_len, "%s: its map is not in /proc/self/maps", file);
			rc = -3;
		} else if (vsrh_store_rollback_map((uint8_t *)lo, hi - lo, file, rb, why, why_len) !=
			   0) {
			rc = -3;
		}
		if (rc == -3) {
			mdb_env_close(env);
			return -1; /* not checked: the view the next start opens could not be made */
		}
	}
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc == 0 && rb != NULL && rb->due && (uint64_t)mdb_txn_id(txn) != rb->to_txn) {
		snprintf(why, why_len, "%s: LMDB read transaction %zu, not %" PRIu64
			 " that the next start rolls back to", file, mdb_txn_id(txn), rb->to_txn);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return -1;
	}
	if (rc == 0) {
		/* Both are created at the first open, before anything is kept; a
		 * main database holding anything else has lost them. */
		what = "opening its databases";
		rc = mdb_dbi_open(txn, "meta", 0, &meta);
		if (rc == 0 && rec_old_format(txn)) {
			snprintf(why, why_len, OLD_FORMAT_WHY);
			rc = -2; /* no verdict: not damage */
		}
		if (rc == 0)
			rc = mdb_dbi_open(txn, KV_DB, 0, &kv);
		MDB_stat ms;
		MDB_dbi main_db;
		if (rc == MDB_NOTFOUND && min_op == 0 && mdb_dbi_open(txn, NULL, 0, &main_db) == 0 &&
		    mdb_stat(txn, main_db, &ms) == 0 && ms.ms_entries == 0) {
			mdb_txn_abort(txn);
			mdb_env_close(env);
			return 0;
		}
	}
	MDB_val k1 = mval("checkpoint", 10), v1 = {0}, k2 = mval("head", 4), v2 = {0};
	bool have_cp = false;
	if (rc == 0) {
		what = "reading its checkpoint record";
		rc = mdb_get(txn, meta, &k1, &v1);
		if (rc == MDB_NOTFOUND)
			rc = 0;
		else if (rc == 0 && (rc = mdb_get(txn, meta, &k2, &v2)) == 0)
			have_cp = true;
	}
	if (rc == 0 && have_cp && v1.mv_size != META_FIXED) {
		snprintf(why, why_len, "its checkpoint record has %zu bytes, not %d", v1.mv_size,
			 META_FIXED);
		rc = -1;
	}
	uint64_t f[8] = {0};
	for (int i = 0; rc == 0 && have_cp && i < 8; i++)
		f[i] = vsrh_get_u64le((const uint8_t *)v1.mv_data + 8 * i);
	/* What a record claims is held to what the environment and the
	 * checkpoint can hold before it is read: a damaged leaf can claim a
	 * value of up to 4 GiB anywhere in the map, a sparse reservation of
	 * 8 GiB, and reading that took seconds a record (a replica's start
	 * silent for 15 s in process_corrupt's noise round). Every record's
	 * node takes 10 bytes of a page besides its key and value, shared with
	 * no other record, so all of them fit in the pages the newest meta page
	 * counts (and in the file); and they can match the checkpoint only while
	 * they stay within its count and bytes. The walk therefore reads no
	 * more than the store holds, and ends. */
	uint64_t room = verify_room(env, (uint64_t)st.st_size);
	if (rc == 0 && have_cp && 10 + 4 + (uint64_t)v2.mv_size > room) {
		snprintf(why, why_len, "its checkpoint record claims %zu bytes, more than the %" PRIu64
			 " its environment uses", v2.mv_size, room);
		rc = -1;
	}
	if (rc == 0 && have_cp)
		room -= 10 + 4 + v2.mv_size;
	uint64_t count = 0, bytes = 0, sum = 0;
	if (rc == 0) {
		what = "reading its records";
		rc = mdb_cursor_open(txn, kv, &cur);
	}
	MDB_val k, v, prev = {0};
	int step = MDB_FIRST;
	bool scanning = rc == 0;
	vsrh_store_walked seen; /* for the page check below */
	vsrh_store_walked_init(&seen, env);
	while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, step)) == 0) {
		step = MDB_NEXT;
		if (count > 0 && bytes_cmp(prev.mv_data, prev.mv_size, k.mv_data, k.mv_size) >= 0) {
			snprintf(why, why_len, "its records are out of order after %" PRIu64, count);
			rc = -1;
			break;
		}
		uint64_t claim = (uint64_t)k.mv_size + v.mv_size;
		if (claim + 10 > room) {
			snprintf(why, why_len,
				 "its record %" PRIu64 " claims %" PRIu64 " bytes, more than the %" PRIu64
				 " left in the pages its environment uses (damaged pages: not read)",
				 count + 1, claim, room);
			rc = -1;
			break;
		}
		/* (A stored record is its value's check and the value: the
		 * image's 8 + key + value bytes, as many as its key and stored
		 * value.) */
		if (count == f[5] || claim > f[6] - bytes) {
			snprintf(why, why_len,
				 "its records go past the checkpoint at op %" PRIu64 " (%" PRIu64
				 " records, %" PRIu64 " bytes): record %" PRIu64 " claims %" PRIu64
				 " bytes after %" PRIu64, f[0], f[5], f[6], count + 1, claim, bytes);
			rc = -1;
			break;
		}
		MDB_val val;
		uint64_t check;
		if (!rec_open(k.mv_data, k.mv_size, &v, &val, &check)) {
			snprintf(why, why_len, "its record %" PRIu64 " (key of %zu bytes) fails its check",
				 count + 1, k.mv_size);
			rc = -1;
			break;
		}
		room -= claim + 10;
		prev = k;
		count++;
		bytes += claim;
		sum += check;
		vsrh_store_walked_note(&seen, &k, &v);
	}
	if (scanning && rc == MDB_NOTFOUND)
		rc = 0; /* the end of the records */
	if (rc == 0) {
		size_t plen = 0;
		uint8_t *prefix = have_cp ? image_prefix(v2.mv_data, v2.mv_size, count, &plen) : NULL;
		if (have_cp && prefix == NULL) {
			snprintf(why, why_len, "out of memory");
			rc = -2;
		} else if (count != f[5] || bytes != f[6] || sum != f[7]) {
			snprintf(why, why_len,
				 "its records do not match the checkpoint at op %" PRIu64 " (%" PRIu64
				 " records, %" PRIu64 " bytes, digest %016" PRIx64 "; the checkpoint "
				 "says %" PRIu64 ", %" PRIu64 ", %016" PRIx64 ")",
				 f[0], count, bytes, sum, f[5], f[6], f[7]);
			rc = -1;
		} else if (have_cp && (plen + bytes != f[3] || image_digest(prefix, plen, sum) != f[4])) {
			snprintf(why, why_len, "its checkpoint record at op %" PRIu64 " is damaged", f[0]);
			rc = -1;
		} else if (f[0] < min_op || (f[0] == min_op && min_op > 0 && f[1] != checksum)) {
			snprintf(why, why_len,
				 "it holds the checkpoint at op %" PRIu64 " (checksum %016" PRIx64
				 "), the superblock names op %" PRIu64 " (checksum %016" PRIx64 ")",
				 f[0], f[1], min_op, checksum);
			rc = -1;
		} else {
			/* The records match; LMDB's free list must too, or the next
			 * commit writes over them (vsrh_store_pages.h). */
			MDB_dbi main_db;
			int pc = mdb_dbi_open(txn, NULL, 0, &main_db);
			if (pc == 0)
				pc = vsrh_store_pages_check(env, txn, main_db, (uint64_t)st.st_size,
							    KV_DB, &seen, why, why_len);
			else
				snprintf(why, why_len, "LMDB failed opening its main database: %s",
					 mdb_strerror(pc));
			rc = pc == 0 ? 0 : pc == -1 ? -2 : -1;
		}
		free(prefix);
	} else if (rc > 0 || rc < -2) {
		snprintf(why, why_len, "LMDB failed %s: %s", what, mdb_strerror(rc));
		rc = -1;
	}
	vsrh_store_walked_free(&seen);
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	return rc == 0 ? 0 : rc == -2 ? -1 : 1;
}
