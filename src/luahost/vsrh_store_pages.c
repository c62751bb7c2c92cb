/* vsrh_store_pages.c - the store check's walk of an LMDB environment's
 * pages (vsrh_store_pages.h says what it requires and why).
 *
 * Every page is read through the map of the read-only environment the
 * check opened, after its number was checked against the file: a damaged
 * node can name any page, and one past the file's end is a SIGBUS. Every
 * page gets one mark (free, or used as a kind of page of a database), so a
 * page reached twice, by the free list or by a tree, is found at its second
 * mark, and no walk goes round a cycle. */
#include "vsrh_store_pages.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vsrh_le.h"

/* LMDB 0.9's layout (mdb.c; lmdb.h does not publish it). A page: its
 * number (u64), 2 bytes of padding, its flags (u16), then the lower and
 * upper bounds of its free space (u16 each) or, for an overflow page, how
 * many pages it spans (u32); then the offsets of its nodes (u16 each). A
 * node: the data's size (a branch node: the child's page number, with the
 * flags as its top 16 bits), its flags, its key's size (u16 each), the key,
 * the data (a big one: the number of its first overflow page instead). */
#define PG_HDR 16
#define PG_BRANCH 0x01
#define PG_LEAF 0x02
#define PG_OVERFLOW 0x04
#define PG_META 0x08
#define PG_TRANSIENT 0xc010 /* P_DIRTY, P_LOOSE, P_KEEP: a commit clears P_DIRTY */
#define NODE_HDR 8
#define N_BIGDATA 0x01
#define N_SUBDATA 0x02
#define N_DUPDATA 0x04
/* A database record (MDB_db, 48 bytes): pad (u32), flags, depth (u16 each),
 * branch, leaf and overflow pages, entries, root (u64 each). */
#define DB_LEN 48
#define DB_BRANCH 8
#define DB_ENTRIES 32
#define DB_ROOT 40
#define NO_PAGE UINT64_MAX
/* A meta page, after the header: magic, version (u32 each), address,
 * map size (u64 each), the free list's and the main database's records,
 * the last page, the transaction. */
#define META_MAGIC 0xBEEFC0DEu
#define META_DBS (PG_HDR + 24)
#define META_LAST (PG_HDR + 120)
#define META_TXNID (PG_HDR + 128)
#define MAX_DEPTH 32 /* LMDB's cursor stack */
#define MAX_TREES 16

enum { PAGE_BRANCH, PAGE_LEAF, PAGE_OVERFLOW };
static const char *const page_kinds[] = {"branch", "leaf", "overflow"};
static const char *const page_articles[] = {"a", "a", "an"};

/* A page's mark: 0 none yet, MARK_FREE, MARK_USED + 3 * tree + kind, or
 * MARK_NOTED (a leaf of the walked database, WALKED, where its records lie,
 * not yet reached from its root). */
enum { MARK_FREE = 1, MARK_USED = 2, MARK_NOTED = 255, WALKED = 2 };

typedef struct tree {
	char name[40];
	const uint8_t *db; /* its database record */
	uint64_t pages[3]; /* found, by kind */
	uint64_t entries;  /* found: the nodes of its leaves */
} tree;

typedef struct walk {
	const uint8_t *map;
	uint64_t psize;
	uint64_t last;	   /* the last page the newest meta page counts */
	uint64_t in_file;  /* pages the file holds */
	uint8_t *mark;	   /* per page below nmark = min(last + 1, in_file) */
	uint64_t nmark;
	uint64_t used, free;
	tree trees[MAX_TREES];
	int ntrees;
	const char *walked; /* the name of the database the caller read (NULL: none) */
	const vsrh_store_walked *seen; /* what it noted */
	uint64_t noted;	    /* its leaves noted, not yet reached from its root */
	size_t leaf_next;   /* the noted leaf its tree's walk reaches next */
	const uint8_t *sep; /* the branch key passed since the last leaf (NULL: none) */
	size_t sep_len;
	const void *leaf_last; /* the last key of the last leaf reached (NULL: none) */
	size_t leaf_last_len;
	uint64_t txnid;	    /* the transaction read */
	uint64_t free_key;  /* the last free-list record's (0: none yet) */
	char *why;
	size_t why_len;
} walk;

static uint16_t u16le(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* What a page's mark m (used) says: "a leaf page of its kv database". */
static const char *used_as(const walk *w, uint8_t m, char *out, size_t len)
{
	int t = m == MARK_NOTED ? WALKED : (m - MARK_USED) / 3;
	int kind = m == MARK_NOTED ? PAGE_LEAF : (m - MARK_USED) % 3;
	snprintf(out, len, "%s %s page of its %s database", page_articles[kind], page_kinds[kind],
		 t < w->ntrees ? w->trees[t].name : "another");
	return out;
}

/* Page pg listed free. */
static int page_free(walk *w, uint64_t pg)
{
	if (pg < 2 || pg > w->last) {
		snprintf(w->why, w->why_len,
			 "its free list names page %" PRIu64 ", not one of its pages 2..%" PRIu64, pg,
			 w->last);
		return 1;
	}
	if (pg < w->nmark && w->mark[pg] == MARK_FREE) {
		snprintf(w->why, w->why_len, "its free list names page %" PRIu64 " twice", pg);
		return 1;
	}
	if (pg < w->nmark && w->mark[pg] != 0) {
		char as[80];
		snprintf(w->why, w->why_len,
			 "page %" PRIu64 " is in use (%s) and in its free list: the next commit would "
			 "write over it",
			 pg, used_as(w, w->mark[pg], as, sizeof as));
		return 1;
	}
	if (pg < w->nmark)
		w->mark[pg] = MARK_FREE;
	w->free++;
	return 0;
}

/* Whether pages pg .. pg + n - 1 can be read as a `what` page of tree t:
 * pages of the environment, in its file. */
static int page_in(walk *w, int t, const char *what, uint64_t pg, uint64_t n)
{
	const char *name = w->trees[t].name;
	if (pg < 2 || pg > w->last || n - 1 > w->last - pg) {
		snprintf(w->why, w->why_len,
			 "its %s database's %s page %" PRIu64 " is not one of its pages 2..%" PRIu64,
			 name, what, pg, w->last);
		return 1;
	}
	if (n > w->in_file || pg > w->in_file - n) {
		snprintf(w->why, w->why_len,
			 "its %s database's %s page %" PRIu64 " lies past the end of its file (%" PRIu64
			 " pages)",
			 name, what, pg, w->in_file);
		return 1;
	}
	return 0;
}

/* Pages pg .. pg + n - 1 used by tree t as pages of `kind`. */
static int page_use(walk *w, int t, int kind, uint64_t pg, uint64_t n)
{
	const char *name = w->trees[t].name, *what = page_kinds[kind];
	if (page_in(w, t, what, pg, n) != 0)
		return 1;
	for (uint64_t p = pg; p < pg + n; p++) {
		uint8_t m = w->mark[p];
		if (m == MARK_FREE) {
			snprintf(w->why, w->why_len,
				 "page %" PRIu64 " is in use (%s %s page of its %s database) and in its "
				 "free list: the next commit would write over it",
				 p, page_articles[kind], what, name);
			return 1;
		}
		if (m == MARK_NOTED && t == WALKED && kind == PAGE_LEAF && n == 1) {
			w->noted--; /* reached from its root at last */
		} else if (m != 0) {
			char as[80];
			snprintf(w->why, w->why_len,
				 "page %" PRIu64 " is used twice: as %s and as %s %s page of its %s "
				 "database",
				 p, used_as(w, m, as, sizeof as), page_articles[kind], what, name);
			return 1;
		}
		w->mark[p] = (uint8_t)(MARK_USED + 3 * t + kind);
	}
	w->used += n;
	w->trees[t].pages[kind] += n;
	return 0;
}

/* The page pg, checked to carry its own number and one of `flags`; its
 * flags in *kind. NULL (said) when it does not. */
static const uint8_t *page_at(walk *w, int t, uint64_t pg, unsigned flags, unsigned *kind)
{
	const uint8_t *p = w->map + pg * w->psize;
	unsigned f = u16le(p + 10) & ~PG_TRANSIENT;
	if (vsrh_get_u64le(p) != pg || (f != PG_BRANCH && f != PG_LEAF && f != PG_OVERFLOW) ||
	    !(f & flags)) {
		snprintf(w->why, w->why_len,
			 "its %s database's page %" PRIu64 " is not one of its pages (it says page %" PRIu64
			 ", flags 0x%x)",
			 w->trees[t].name, pg, vsrh_get_u64le(p), u16le(p + 10));
		return NULL;
	}
	*kind = f;
	return p;
}

static int tree_walk(walk *w, int t, const uint8_t *db, bool free_list, bool main);

static int keys_cmp(const void *a, size_t al, const void *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al > bl) - (al < bl);
}

/* The walked tree's branch key of node i on page pg: above the last key
 * of the leaves before it. */
static int branch_key(walk *w, uint64_t pg, unsigned i, const uint8_t *k, size_t kl)
{
	if (w->leaf_last != NULL && keys_cmp(k, kl, w->leaf_last, w->leaf_last_len) <= 0) {
		snprintf(w->why, w->why_len,
			 "its %s database's branch page %" PRIu64 " has a key (node %u) at or below "
			 "a key of the leaves before it: a search goes to the wrong leaf",
			 w->walked, pg, i);
		return 1;
	}
	w->sep = k;
	w->sep_len = kl;
	return 0;
}

/* The walked tree's noted leaf pg, reached from its root: the next one the
 * record walk read, its first key at or above the branch key before it. */
static int leaf_ends(walk *w, uint64_t pg)
{
	const vsrh_store_walked *s = w->seen;
	size_t j = w->leaf_next++;
	if (j >= s->nleaves || (s->leaves[j] - (uintptr_t)w->map) / w->psize != pg) {
		snprintf(w->why, w->why_len,
			 "its %s database's tree reaches its leaf page %" PRIu64 " out of the order "
			 "its records lie in",
			 w->walked, pg);
		return 1;
	}
	const vsrh_store_ends *e = &s->ends[j];
	if (w->sep != NULL && keys_cmp(w->sep, w->sep_len, s->keys + e->first, e->first_len) > 0) {
		snprintf(w->why, w->why_len,
			 "its %s database's leaf page %" PRIu64 " begins below the branch key "
			 "before it: a search goes to the wrong leaf",
			 w->walked, pg);
		return 1;
	}
	w->sep = NULL;
	w->leaf_last = j + 1 < s->nleaves ? s->keys + e->last : s->key;
	w->leaf_last_len = j + 1 < s->nleaves ? e->last_len : s->key_len;
	return 0;
}

/* A value of `size` bytes whose first overflow page is pg, in tree t; *out:
 * where its bytes are. */
static int overflow_use(walk *w, int t, uint64_t pg, uint64_t size, const uint8_t **out)
{
	unsigned kind;
	const uint8_t *p = page_in(w, t, "overflow", pg, 1) == 0
				   ? page_at(w, t, pg, PG_OVERFLOW, &kind)
				   : NULL;
	if (p == NULL)
		return 1;
	uint64_t spans = vsrh_get_u32le(p + 12), needs = (PG_HDR - 1 + size) / w->psize + 1;
	/* A value written again in place keeps its pages when it shrinks. */
	if (spans < needs) {
		snprintf(w->why, w->why_len,
			 "its %s database's value of %" PRIu64 " bytes on overflow page %" PRIu64
			 " spans %" PRIu64 " pages, not the %" PRIu64 " it needs",
			 w->trees[t].name, size, pg, spans, needs);
		return 1;
	}
	if (page_use(w, t, PAGE_OVERFLOW, pg, spans) != 0)
		return 1;
	*out = p + PG_HDR;
	return 0;
}

/* A leaf node's data of `size` bytes at data (the page number of its first
 * overflow page when big) in tree t; *out: where its bytes are. */
static int node_data(walk *w, int t, const uint8_t *data, unsigned nflags, uint64_t size,
		     const uint8_t **out)
{
	*out = data;
	if (!(nflags & N_BIGDATA))
		return 0;
	return overflow_use(w, t, vsrh_get_u64le(data), size, out);
}

/* The page pg of tree t, at `level` (1: the root), and every page below. */
static int page_walk(walk *w, int t, uint64_t pg, unsigned level, bool free_list, bool main)
{
	const char *name = w->trees[t].name;
	if (level > MAX_DEPTH) {
		snprintf(w->why, w->why_len, "its %s database is deeper than %d pages", name,
			 MAX_DEPTH);
		return 1;
	}
	if (t == WALKED && pg < w->nmark && w->mark[pg] == MARK_NOTED)
		return page_use(w, t, PAGE_LEAF, pg, 1) || leaf_ends(w, pg); /* read by the caller */
	unsigned kind;
	const uint8_t *p = page_in(w, t, "tree", pg, 1) == 0
				   ? page_at(w, t, pg, PG_BRANCH | PG_LEAF, &kind)
				   : NULL;
	if (p == NULL ||
	    page_use(w, t, kind == PG_BRANCH ? PAGE_BRANCH : PAGE_LEAF, pg, 1) != 0)
		return 1;
	unsigned lower = u16le(p + 12), upper = u16le(p + 14);
	if (lower < PG_HDR || lower > upper || upper > w->psize || (lower - PG_HDR) % 2) {
		snprintf(w->why, w->why_len,
			 "its %s database's page %" PRIu64 " has bounds %u and %u, not a page's", name,
			 pg, lower, upper);
		return 1;
	}
	unsigned nodes = (lower - PG_HDR) / 2;
	if (kind == PG_LEAF)
		w->trees[t].entries += nodes;
	if (kind == PG_LEAF && t == WALKED && w->walked != NULL)
		return 0; /* a leaf the caller's walk did not note: one without records */
	for (unsigned i = 0; i < nodes; i++) {
		unsigned at = u16le(p + PG_HDR + 2 * i);
		const uint8_t *n = p + at;
		if (at < upper || at + NODE_HDR > w->psize ||
		    at + NODE_HDR + u16le(n + 6) > w->psize) {
			snprintf(w->why, w->why_len,
				 "its %s database's page %" PRIu64 " has its node %u outside it", name, pg,
				 i);
			return 1;
		}
		const uint8_t *data = n + NODE_HDR + u16le(n + 6);
		if (kind == PG_BRANCH) {
			if (i > 0 && t == WALKED && w->walked != NULL &&
			    branch_key(w, pg, i, n + NODE_HDR, u16le(n + 6)) != 0)
				return 1;
			uint64_t child = (uint64_t)u16le(n) | (uint64_t)u16le(n + 2) << 16 |
					 (uint64_t)u16le(n + 4) << 32;
			if (page_walk(w, t, child, level + 1, free_list, main) != 0)
				return 1;
			continue;
		}
		unsigned nflags = u16le(n + 4);
		uint64_t size = (uint64_t)u16le(n) | (uint64_t)u16le(n + 2) << 16;
		uint64_t inline_size = nflags & N_BIGDATA ? 8 : size;
		if ((uint64_t)(data - p) + inline_size > w->psize ||
		    (nflags & ~(unsigned)(N_BIGDATA | N_SUBDATA)) ||
		    (nflags & N_SUBDATA && (!main || nflags & N_BIGDATA || size != DB_LEN))) {
			snprintf(w->why, w->why_len,
				 "its %s database's page %" PRIu64 " has a node (%u) that is not one of "
				 "its records (flags 0x%x, %" PRIu64 " bytes)",
				 name, pg, i, nflags, size);
			return 1;
		}
		const uint8_t *bytes;
		if (node_data(w, t, data, nflags, size, &bytes) != 0)
			return 1;
		if (free_list) {
			uint64_t count = size >= 8 ? vsrh_get_u64le(bytes) : 0;
			if (u16le(n + 6) != 8 || size < 8 || count > size / 8 - 1) {
				snprintf(w->why, w->why_len,
					 "its free list's record on page %" PRIu64 " lists %" PRIu64
					 " pages in %" PRIu64 " bytes",
					 pg, count, size);
				return 1;
			}
			/* Keyed by the transaction that freed the pages, in order:
			 * none newer than the one read. */
			uint64_t txn = vsrh_get_u64le(n + NODE_HDR);
			if (txn > w->txnid) {
				snprintf(w->why, w->why_len,
					 "its free list has a record of transaction %" PRIu64
					 ", newer than its newest, %" PRIu64,
					 txn, w->txnid);
				return 1;
			}
			if (txn <= w->free_key) {
				snprintf(w->why, w->why_len,
					 "its free list's records are out of order: transaction %" PRIu64
					 " after %" PRIu64,
					 txn, w->free_key);
				return 1;
			}
			w->free_key = txn;
			for (uint64_t j = 1; j <= count; j++)
				if (page_free(w, vsrh_get_u64le(bytes + 8 * j)) != 0)
					return 1;
		}
		if (nflags & N_SUBDATA) {
			if (w->ntrees == MAX_TREES) {
				snprintf(w->why, w->why_len,
					 "its main database names more than %d databases", MAX_TREES - 2);
				return 1;
			}
			unsigned klen = u16le(n + 6);
			bool walked = w->walked != NULL && strlen(w->walked) == klen &&
				      memcmp(w->walked, n + NODE_HDR, klen) == 0;
			if (walked && w->trees[WALKED].db != NULL) {
				snprintf(w->why, w->why_len, "its main database names %s twice",
					 w->walked);
				return 1;
			}
			int s = walked ? WALKED : w->ntrees++;
			if (!walked)
				snprintf(w->trees[s].name, sizeof w->trees[s].name, "%.*s",
					 (int)(klen < 30 ? klen : 30), (const char *)n + NODE_HDR);
			if (tree_walk(w, s, bytes, false, false) != 0)
				return 1;
		}
	}
	return 0;
}

/* Tree t, whose database record is db: its pages. */
static int tree_walk(walk *w, int t, const uint8_t *db, bool free_list, bool main)
{
	w->trees[t].db = db;
	uint64_t root = vsrh_get_u64le(db + DB_ROOT);
	return root == NO_PAGE ? 0 : page_walk(w, t, root, 1, free_list, main);
}

/* Tree t's pages and records as found against its database record's. */
static int tree_counts(walk *w, int t)
{
	tree *tr = &w->trees[t];
	if (tr->db == NULL)
		return 0; /* the walked database, when the main one does not name it */
	uint64_t says[3], entries = vsrh_get_u64le(tr->db + DB_ENTRIES);
	if (t == WALKED && w->walked != NULL)
		tr->entries = entries; /* its leaves were not read: the caller counted */
	for (int k = 0; k < 3; k++)
		says[k] = vsrh_get_u64le(tr->db + DB_BRANCH + 8 * k);
	if (memcmp(says, tr->pages, sizeof says) != 0 || entries != tr->entries) {
		snprintf(w->why, w->why_len,
			 "its %s database counts %" PRIu64 " branch, %" PRIu64 " leaf and %" PRIu64
			 " overflow pages and %" PRIu64 " records; its pages are %" PRIu64 ", %" PRIu64
			 " and %" PRIu64 ", with %" PRIu64 " records",
			 tr->name, says[0], says[1], says[2], entries, tr->pages[0], tr->pages[1],
			 tr->pages[2], tr->entries);
		return 1;
	}
	return 0;
}

/* The leaves the caller noted, marked before any tree is walked, so that
 * a page listed free or reached from another tree is found for what it is,
 * and the walked tree does not read them again. */
static int seen_leaves(walk *w, const vsrh_store_walked *seen)
{
	for (size_t i = 0; i < seen->nleaves; i++) {
		uint64_t pg = (seen->leaves[i] - (uintptr_t)w->map) / w->psize;
		if (page_in(w, WALKED, "leaf", pg, 1) != 0)
			return 1;
		if (w->mark[pg] != 0) {
			snprintf(w->why, w->why_len,
				 "its %s database's records lie on leaf page %" PRIu64 " twice",
				 w->walked, pg);
			return 1;
		}
		w->mark[pg] = MARK_NOTED;
		w->noted++;
	}
	return 0;
}

/* The big values the caller noted in the walked tree. */
static int seen_bigs(walk *w, const vsrh_store_walked *seen)
{
	for (size_t i = 0; i < seen->nbigs; i++) {
		uintptr_t at = (uintptr_t)seen->bigs[i].data - PG_HDR - (uintptr_t)w->map;
		const uint8_t *out;
		if (at % w->psize != 0) {
			snprintf(w->why, w->why_len,
				 "its %s database's value of %" PRIu64 " bytes lies neither on its key's "
				 "page nor on overflow pages",
				 w->walked, seen->bigs[i].size);
			return 1;
		}
		if (overflow_use(w, WALKED, at / w->psize, seen->bigs[i].size, &out) != 0)
			return 1;
	}
	return 0;
}

/* Where LMDB maps page 0: a page of the map begins with its own number,
 * and a key of the main database lies in one. The map starts on a page of
 * the system's, which is smaller than LMDB's when the environment was made
 * on another machine: each such start is tried. NULL when none leads to
 * the two meta pages. */
static const uint8_t *map_start(MDB_txn *txn, MDB_dbi main_db, uint64_t psize, uint64_t pages)
{
	MDB_cursor *cur;
	MDB_val k, v;
	if (pages < 2 || mdb_cursor_open(txn, main_db, &cur) != 0)
		return NULL;
	int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	mdb_cursor_close(cur);
	if (rc != 0)
		return NULL;
	long sys = sysconf(_SC_PAGESIZE);
	uint64_t step = sys > 0 && (uint64_t)sys < psize ? (uint64_t)sys : psize;
	uintptr_t at = (uintptr_t)k.mv_data;
	for (uintptr_t page = at - at % step; page + psize > at; page -= step) {
		uint64_t pg = vsrh_get_u64le((const uint8_t *)page);
		if (pg >= pages || pg * psize > page)
			continue;
		const uint8_t *map = (const uint8_t *)(page - pg * psize);
		bool metas = true;
		for (uint64_t m = 0; m < 2; m++) {
			const uint8_t *p = map + m * psize;
			metas = metas && vsrh_get_u64le(p) == m && (u16le(p + 10) & PG_META) &&
				vsrh_get_u32le(p + PG_HDR) == META_MAGIC;
		}
		if (metas)
			return map;
	}
	return NULL;
}

void vsrh_store_walked_init(vsrh_store_walked *s, MDB_env *env)
{
	MDB_stat st;
	memset(s, 0, sizeof *s);
	if (mdb_env_stat(env, &st) == 0 && st.ms_psize >= 512 && !(st.ms_psize & (st.ms_psize - 1)))
		s->mask = ~(uintptr_t)(st.ms_psize - 1);
}

/* Grows *v (of *cap elements of `size` bytes) to hold one more than n. */
static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t cap2 = *cap ? 2 * *cap : 1024;
	void *nv = realloc(*v, cap2 * size);
	if (nv == NULL)
		return false;
	*v = nv;
	*cap = cap2;
	return true;
}

/* Room in s->keys for n more bytes. */
static bool keys_room(vsrh_store_walked *s, size_t n)
{
	if (s->keys_len + n <= s->keys_cap)
		return true;
	size_t cap = s->keys_cap ? 2 * s->keys_cap : 65536;
	while (cap < s->keys_len + n)
		cap *= 2;
	uint8_t *nk = realloc(s->keys, cap);
	if (nk == NULL)
		return false;
	s->keys = nk;
	s->keys_cap = cap;
	return true;
}

void vsrh_store_walked_add(vsrh_store_walked *s, const MDB_val *k, const MDB_val *v)
{
	uintptr_t leaf = (uintptr_t)k->mv_data & s->mask;
	if (leaf != s->leaf) {
		size_t cap = s->cap_leaves;
		if (!grow((void **)&s->leaves, &s->cap_leaves, s->nleaves, sizeof *s->leaves) ||
		    (s->cap_leaves != cap &&
		     !grow((void **)&s->ends, &cap, s->nleaves, sizeof *s->ends)) ||
		    !keys_room(s, s->key_len + k->mv_size)) {
			s->nomem = true;
			return;
		}
		if (s->nleaves > 0) { /* the last key before this one: its leaf's last */
			vsrh_store_ends *e = &s->ends[s->nleaves - 1];
			e->last = s->keys_len;
			e->last_len = (uint32_t)s->key_len;
			memcpy(s->keys + s->keys_len, s->key, s->key_len);
			s->keys_len += s->key_len;
		}
		s->ends[s->nleaves] = (vsrh_store_ends){.first = s->keys_len,
							.first_len = (uint32_t)k->mv_size};
		memcpy(s->keys + s->keys_len, k->mv_data, k->mv_size);
		s->keys_len += k->mv_size;
		s->leaves[s->nleaves++] = s->leaf = leaf;
	}
	if (((uintptr_t)v->mv_data & s->mask) != leaf) {
		if (!grow((void **)&s->bigs, &s->cap_bigs, s->nbigs, sizeof *s->bigs)) {
			s->nomem = true;
			return;
		}
		s->bigs[s->nbigs++] = (vsrh_store_big){v->mv_data, v->mv_size};
	}
}

void vsrh_store_walked_free(vsrh_store_walked *s)
{
	free(s->leaves);
	free(s->ends);
	free(s->keys);
	free(s->bigs);
	memset(s, 0, sizeof *s);
}

int vsrh_store_pages_check(MDB_env *env, MDB_txn *txn, MDB_dbi main_db, uint64_t file_bytes,
			   const char *walked, const vsrh_store_walked *seen, char *why,
			   size_t why_len)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0 || st.ms_psize < 512) {
		snprintf(why, why_len, "LMDB does not tell its page size");
		return 1;
	}
	walk w = {.psize = st.ms_psize, .last = info.me_last_pgno, .why = why, .why_len = why_len};
	w.in_file = file_bytes / w.psize;
	w.map = map_start(txn, main_db, w.psize, w.in_file);
	if (w.map == NULL) {
		snprintf(why, why_len, "its pages do not carry their numbers (the main database's "
				       "page, or the meta pages)");
		return 1;
	}
	/* The meta page LMDB reads (the newest): the two databases' records. */
	const uint8_t *meta = NULL;
	for (uint64_t m = 0; m < 2; m++) {
		const uint8_t *p = w.map + m * w.psize;
		if (vsrh_get_u64le(p + META_TXNID) == (uint64_t)mdb_txn_id(txn) &&
		    vsrh_get_u64le(p + META_LAST) == w.last)
			meta = p;
	}
	if (meta == NULL) {
		snprintf(why, why_len, "neither meta page holds transaction %zu, which LMDB reads",
			 mdb_txn_id(txn));
		return 1;
	}
	if (seen != NULL && seen->nomem) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	/* What was noted is where it is only when the map starts on a page of
	 * LMDB's (the mask tells its pages apart from there). */
	if (walked != NULL && seen != NULL && seen->mask == ~(uintptr_t)(w.psize - 1) &&
	    (uintptr_t)w.map % w.psize == 0) {
		w.walked = walked;
		w.seen = seen;
	}
	w.txnid = (uint64_t)mdb_txn_id(txn);
	w.nmark = w.last + 1 < w.in_file ? w.last + 1 : w.in_file;
	w.mark = calloc(w.nmark, 1);
	if (w.mark == NULL) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	w.ntrees = 3;
	snprintf(w.trees[0].name, sizeof w.trees[0].name, "free list");
	snprintf(w.trees[1].name, sizeof w.trees[1].name, "main");
	snprintf(w.trees[WALKED].name, sizeof w.trees[WALKED].name, "%.30s",
		 walked ? walked : "(none)");
	int rc = w.walked ? seen_leaves(&w, seen) : 0;
	if (rc == 0)
		rc = tree_walk(&w, 0, meta + META_DBS, true, false);
	if (rc == 0)
		rc = tree_walk(&w, 1, meta + META_DBS + DB_LEN, false, true);
	if (rc == 0 && w.noted > 0) {
		snprintf(why, why_len,
			 "its %s database's records lie on %" PRIu64 " leaf pages its tree does not "
			 "reach",
			 walked, w.noted);
		rc = 1;
	}
	if (rc == 0 && w.walked)
		rc = seen_bigs(&w, seen);
	for (int t = 0; rc == 0 && t < w.ntrees; t++)
		rc = tree_counts(&w, t);
	if (rc == 0 && 2 + w.used + w.free != w.last + 1) {
		snprintf(why, why_len,
			 "its pages do not add up: %" PRIu64 " in use, %" PRIu64
			 " free and 2 meta pages, but its meta page counts %" PRIu64,
			 w.used, w.free, w.last + 1);
		rc = 1;
	}
	free(w.mark);
	return rc;
}
