/* vsrh_overlay.h - an ordered in-memory map of byte strings (a skip list),
 * each key holding a value or a deletion: the writes vsr.store holds back
 * from LMDB's map while a checkpoint's sync runs (vsrh_store.c, "Held
 * writes").
 *
 * Why: with MDB_WRITEMAP the transaction after a checkpoint writes into the
 * same file the syncer is making durable. Every page it dirtied before the
 * sync's final fdatasync is written by that fdatasync in one unpaced burst
 * (the replicas' log fdatasyncs queue behind it), and written again at the
 * next checkpoint; and a file that is never clean is written whole by the
 * kernel's periodic flusher once its first dirty page is 30 s old. Holding
 * the writes here until the sync has ended keeps the file untouched while
 * it is written back: the sync writes each page of the checkpoint once,
 * paced, and leaves the file clean.
 *
 * Keys are compared bytewise (as LMDB's default order); a later put of a
 * key replaces its entry. Not thread-safe: the event loop's alone. */
#ifndef VSRH_OVERLAY_H
#define VSRH_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSRH_OVERLAY_HEIGHT 20

typedef struct vsrh_overlay_node {
	char *key, *val;   /* val: NULL for a deletion */
	uint32_t kl, vl;
	uint8_t height;
	struct vsrh_overlay_node *next[]; /* height links, then the key's bytes */
} vsrh_overlay_node;

typedef struct vsrh_overlay {
	vsrh_overlay_node *head; /* VSRH_OVERLAY_HEIGHT links, no key */
	size_t count;            /* entries (deletions included) */
	size_t bytes;            /* their keys and values */
	uint64_t rng;            /* heights */
} vsrh_overlay;

/* 0, or -1 when out of memory. */
int vsrh_overlay_init(vsrh_overlay *o);
void vsrh_overlay_free(vsrh_overlay *o);
/* Every entry removed. */
void vsrh_overlay_clear(vsrh_overlay *o);

/* Key k -> value v of vl bytes, or a deletion when v is NULL. Returns 0,
 * or -1 when out of memory (the map is unchanged). */
int vsrh_overlay_put(vsrh_overlay *o, const char *k, size_t kl, const char *v, size_t vl);
/* The entry of key k, or NULL. */
const vsrh_overlay_node *vsrh_overlay_find(const vsrh_overlay *o, const char *k, size_t kl);
/* The first entry whose key is >= k (k NULL: the first entry), or NULL. */
const vsrh_overlay_node *vsrh_overlay_seek(const vsrh_overlay *o, const char *k, size_t kl);
static inline const vsrh_overlay_node *vsrh_overlay_next(const vsrh_overlay_node *n)
{
	return n->next[0];
}
/* The first entry (smallest key), to be passed to vsrh_overlay_pop, or NULL. */
static inline vsrh_overlay_node *vsrh_overlay_first(vsrh_overlay *o)
{
	return o->head->next[0];
}
/* Removes and frees the first entry. */
void vsrh_overlay_pop(vsrh_overlay *o);

/* A map of the same nodes by key alone, unordered (a hash table, chained
 * through next[0]): the store's shadow, every write its LMDB transaction
 * has, looked up by key only while the syncer's thread commits that
 * transaction (vsrh_store.c, "the commit off the loop"). A skip list's
 * descent per write cost the primary about 6% of its CPU there. */
typedef struct vsrh_keymap {
	vsrh_overlay_node **slots; /* a power of two of them; NULL: none yet */
	size_t mask;
	size_t count;              /* entries (deletions included) */
	size_t bytes;              /* their keys and values */
	size_t trim_at;            /* the next slot vsrh_keymap_trim frees */
} vsrh_keymap;

/* Key k -> value v (NULL: a deletion), copied. 0, or -1 when out of memory
 * (the map unchanged). */
int vsrh_keymap_put(vsrh_keymap *m, const char *k, size_t kl, const char *v, size_t vl);
/* Moves src's first entry into m (replacing m's entry of that key), without
 * a copy. 0, or -1 when out of memory (src unchanged). */
int vsrh_keymap_take_first(vsrh_keymap *m, vsrh_overlay *src);
/* The entry of key k, or NULL. */
const vsrh_overlay_node *vsrh_keymap_find(const vsrh_keymap *m, const char *k, size_t kl);
/* Frees up to max entries (any of them); the map keeps its slots. */
void vsrh_keymap_trim(vsrh_keymap *m, size_t max);
/* Frees every entry and the slots. */
void vsrh_keymap_free(vsrh_keymap *m);

#endif
