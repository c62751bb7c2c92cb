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
 * tree, under keys (the transactions that freed them) in order and none
 * newer than the transaction read; each tree's page counts are those its
 * database record keeps; and the meta pages, the pages in use and the pages
 * free add up to the last page plus one, as LMDB keeps them (mdb_audit in
 * LMDB's own debug build checks the same sum at each commit). And in the
 * walked database, each branch page's keys lie between the leaves they
 * part: above the last key before, at most the first after (a key changed
 * there sends a search to the wrong leaf, where an existing key reads as
 * absent, while every record is intact and in order). Page layout as of LMDB 0.9 (data
 * file version 1, which mdb_env_open checks). The store's databases have no
 * duplicates (MDB_DUPSORT): a node of one is refused as damage, so a store
 * that made such a database would have to teach this walk first. */
#ifndef VSRH_STORE_PAGES_H
#define VSRH_STORE_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

/* What a cursor walk over one database saw: a record read through a
 * read-only transaction lies in LMDB's map, its key on its leaf page, its
 * value there too unless it is big (then on overflow pages of its own,
 * after their header). Noting the leaves and the big values while the
 * records are read anyway (the lines are in the cache then) saves reading
 * every leaf a second time: that was a tenth of the check's time with
 * 1,000,000 records. */
typedef struct vsrh_store_big {
	const void *data;
	uint64_t size;
} vsrh_store_big;

/* A leaf's first and last keys, as the walk read them (copied into
 * `keys` then, while their lines are in the cache: read again from the
 * map later, they made the check 13% slower): the walk of the tree holds
 * its branch pages' keys to them. */
typedef struct vsrh_store_ends {
	size_t first, last; /* offsets in keys */
	uint32_t first_len, last_len;
} vsrh_store_ends;

typedef struct vsrh_store_walked {
	uintptr_t mask;	 /* ~(page size - 1); 0: nothing is noted */
	uintptr_t leaf;	 /* the start of the last leaf noted */
	uintptr_t *leaves;
	vsrh_store_ends *ends; /* per leaf, its keys (the last one's last: key) */
	size_t nleaves, cap_leaves;
	uint8_t *keys;
	size_t keys_len, keys_cap;
	const void *key;       /* the last record's key noted */
	size_t key_len;
	vsrh_store_big *bigs;
	size_t nbigs, cap_bigs;
	bool nomem;
} vsrh_store_walked;

void vsrh_store_walked_init(vsrh_store_walked *s, MDB_env *env);
void vsrh_store_walked_add(vsrh_store_walked *s, const MDB_val *k, const MDB_val *v);
void vsrh_store_walked_free(vsrh_store_walked *s);

/* Notes the record k, v (as a cursor read them, in order). */
static inline void vsrh_store_walked_note(vsrh_store_walked *s, const MDB_val *k,
					  const MDB_val *v)
{
	uintptr_t kp = (uintptr_t)k->mv_data;
	if (((kp ^ s->leaf) & s->mask) != 0 || ((kp ^ (uintptr_t)v->mv_data) & s->mask) != 0)
		vsrh_store_walked_add(s, k, v);
	s->key = k->mv_data;
	s->key_len = k->mv_size;
}

/* Checks the pages of the environment env, as read-only transaction txn
 * sees it (main_db: the main database's handle in txn), whose file holds
 * file_bytes. `walked` names a database whose every record the caller read
 * through a cursor of txn, noting them in *seen: its leaves are then not
 * read again (NULL: every leaf is read). Returns 0 (they add up), 1
 * (damage, said in why) or -1 (out of memory, said in why). Every page is
 * checked against the file before it is read. */
int vsrh_store_pages_check(MDB_env *env, MDB_txn *txn, MDB_dbi main_db, uint64_t file_bytes,
			   const char *walked, const vsrh_store_walked *seen, char *why,
			   size_t why_len);

#endif /* VSRH_STORE_PAGES_H */
