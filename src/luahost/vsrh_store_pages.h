/* vsrh_store_pages.h - the store check's walk of an LMDB environment's
 * pages: its free list against its trees (vsrh_store_verify_dir).
 *
 * LMDB's next commit takes pages from its free list (database 0: a record
 * per transaction that freed pages, the value a count then page numbers).
 * A page number there that a tree still uses is written over by that
 * commit while the tree reads it as before; one listed twice is handed out
 * twice. No record shows either, so reading every record cannot find them.
 * This walk reads the free list and every page of every tree (the main
 * database, the databases it names, the free list's own), and requires:
 * each page a tree uses lies in the file, carries its own number, is of
 * the kind its parent says, and is used once; each page listed free is one
 * of pages 2..last (0 and 1 are the meta pages), listed once and used by no
 * tree; each tree's page counts are those its database record keeps; and
 * the meta pages, the pages in use and the pages free add up to the last
 * page plus one, as LMDB keeps them (mdb_audit in LMDB's own debug build
 * checks the same sum at each commit). Page layout as of LMDB 0.9 (data
 * file version 1, which mdb_env_open checks). */
#ifndef VSRH_STORE_PAGES_H
#define VSRH_STORE_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

/* The values a cursor walk over one database found on overflow pages: a
 * value read through a read-only transaction lies in LMDB's map, on the
 * page of its key unless it is big (then on its own pages, after their
 * header). Noting them while the records are read anyway saves reading
 * every leaf's nodes a second time (a quarter of the check's time with
 * 1,000,000 small records). */
typedef struct vsrh_store_big {
	const void *data;
	uint64_t size;
} vsrh_store_big;

typedef struct vsrh_store_bigs {
	vsrh_store_big *v;
	size_t n, cap;
	uintptr_t mask; /* ~(page size - 1); 0: nothing noted */
	bool nomem;
} vsrh_store_bigs;

void vsrh_store_bigs_init(vsrh_store_bigs *b, MDB_env *env);
void vsrh_store_bigs_add(vsrh_store_bigs *b, const MDB_val *v);
void vsrh_store_bigs_free(vsrh_store_bigs *b);

/* Notes v (the value of key k, both as a cursor read them) when it does
 * not lie on its key's page. */
static inline void vsrh_store_bigs_note(vsrh_store_bigs *b, const MDB_val *k, const MDB_val *v)
{
	if ((((uintptr_t)k->mv_data ^ (uintptr_t)v->mv_data) & b->mask) != 0)
		vsrh_store_bigs_add(b, v);
}

/* Checks the pages of the environment env, as read-only transaction txn
 * sees it (main_db: the main database's handle in txn), whose file holds
 * file_bytes. `walked` names a database whose every record the caller read
 * through a cursor of txn, noting its big values in *bigs: its leaves'
 * nodes are then not read again (NULL: every leaf is read). Returns 0
 * (they add up), 1 (damage, said in why) or -1 (out of memory, said in
 * why). Every page is checked against the file before it is read. */
int vsrh_store_pages_check(MDB_env *env, MDB_txn *txn, MDB_dbi main_db, uint64_t file_bytes,
			   const char *walked, const vsrh_store_bigs *bigs, char *why,
			   size_t why_len);

#endif /* VSRH_STORE_PAGES_H */
