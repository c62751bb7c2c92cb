/* lmdb_places.h - for tests that damage vsr.store's LMDB file on purpose:
 * where a tree's pages and the free list's page numbers lie in data.mdb.
 *
 * Found through LMDB's own API in a read-only environment (no lock file, so
 * a stopped replica's store as it was left): a value LMDB returns points
 * into the map, and the page it lies in starts with its page number (the
 * first 8 bytes of every page header, also of an overflow page), so the
 * value's offset in the file follows without knowing where the map lies.
 * LMDB's free list is its database 0: a record per transaction that freed
 * pages, its value a count and the page numbers (u64 each).
 *
 * Header-only (static functions): tests/luahost/test_store_verify.c and
 * tests/process/sc_storage.c; the test links LMDB. */
#ifndef LMDB_PLACES_H
#define LMDB_PLACES_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <lmdb.h>

#define LP_PAGE 4096

/* The file offset of p, a pointer into the map. */
static inline off_t lp_off(const void *p)
{
	uintptr_t at = (uintptr_t)p, start = at & ~(uintptr_t)(LP_PAGE - 1);
	return (off_t)(*(const uint64_t *)start * LP_PAGE + (at - start));
}

/* The page number of the page p lies in. */
static inline uint64_t lp_page(const void *p)
{
	return (uint64_t)lp_off(p) / LP_PAGE;
}

/* The LMDB environment in directory `db` (a store's db/), read-only, and a
 * read transaction on its newest state; 0, or LMDB's error (then nothing is
 * left open). */
static inline int lp_open(const char *db, MDB_env **env, MDB_txn **txn)
{
	*env = NULL;
	*txn = NULL;
	int rc = mdb_env_create(env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(*env, 2);
	if (rc == 0)
		rc = mdb_env_set_mapsize(*env, (size_t)64 << 20); /* the file's own if larger */
	if (rc == 0)
		rc = mdb_env_open(*env, db, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(*env, NULL, MDB_RDONLY, txn);
	if (rc != 0 && *env != NULL) {
		mdb_env_close(*env);
		*env = NULL;
	}
	return rc;
}

static inline void lp_close(MDB_env *env, MDB_txn *txn)
{
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (env != NULL)
		mdb_env_close(env);
}

/* The oldest free-list record that lists a page: the offset in the file of
 * its value (the count; page i, from 1, at 8 * i after it) in *at and its
 * count in *n. LMDB's next commit takes its pages from this record first. 0,
 * or LMDB's error (MDB_NOTFOUND: the free list lists no page). */
static inline int lp_oldest_free(MDB_txn *txn, off_t *at, uint64_t *n)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, 0, &cur);
	for (int step = MDB_FIRST; rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, step)) == 0;
	     step = MDB_NEXT) {
		const uint64_t *idl = v.mv_data;
		if (v.mv_size >= 2 * 8 && idl[0] >= 1 && idl[0] <= v.mv_size / 8 - 1) {
			*at = lp_off(v.mv_data);
			*n = idl[0];
			break;
		}
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	return rc;
}

/* The page in use by database `name` that holds the value of `key` (NULL:
 * its first record): a leaf page for a value in its node, else the value's
 * first overflow page. 0 and *page, or LMDB's error. */
static inline int lp_value_page(MDB_txn *txn, const char *name, const char *key, uint64_t *page)
{
	MDB_dbi dbi;
	MDB_cursor *cur = NULL;
	MDB_val k = {key ? strlen(key) : 0, (void *)key}, v;
	int rc = mdb_dbi_open(txn, name, 0, &dbi);
	if (rc == 0)
		rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc == 0)
		rc = mdb_cursor_get(cur, &k, &v, key ? MDB_SET_KEY : MDB_FIRST);
	if (rc == 0)
		*page = lp_page(v.mv_data);
	if (cur != NULL)
		mdb_cursor_close(cur);
	return rc;
}

#endif
