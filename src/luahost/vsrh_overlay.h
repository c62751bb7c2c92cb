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
/* Moves src's first entry into dst (replacing dst's entry of that key),
 * without a copy: a held write placed in LMDB joins the record of what the
 * transaction wrote (vsrh_store.c, "the shadow"). dst must be initialised. */
void vsrh_overlay_move_first(vsrh_overlay *src, vsrh_overlay *dst);

#endif
