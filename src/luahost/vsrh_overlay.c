/* vsrh_overlay.c - the skip list of held-back writes (vsrh_overlay.h). */
#include "vsrh_overlay.h"

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al > bl) - (al < bl);
}

static vsrh_overlay_node *node_new(unsigned height, const char *k, size_t kl)
{
	vsrh_overlay_node *n = malloc(sizeof *n + height * sizeof n->next[0] + kl);
	if (n == NULL)
		return NULL;
	memset(n, 0, sizeof *n + height * sizeof n->next[0]);
	n->height = (uint8_t)height;
	n->key = (char *)&n->next[height];
	if (kl)
		memcpy(n->key, k, kl);
	n->kl = (uint32_t)kl;
	return n;
}

int vsrh_overlay_init(vsrh_overlay *o)
{
	memset(o, 0, sizeof *o);
	o->rng = 0x9e3779b97f4a7c15u;
	o->head = node_new(VSRH_OVERLAY_HEIGHT, NULL, 0);
	return o->head ? 0 : -1;
}

void vsrh_overlay_clear(vsrh_overlay *o)
{
	if (o->head == NULL)
		return;
	while (o->head->next[0])
		vsrh_overlay_pop(o);
}

void vsrh_overlay_free(vsrh_overlay *o)
{
	vsrh_overlay_clear(o);
	free(o->head);
	o->head = NULL;
}

/* Levels with probability 1/4 each: xorshift64, two bits per level. */
static unsigned random_height(vsrh_overlay *o)
{
	uint64_t x = o->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	o->rng = x;
	unsigned h = 1;
	while (h < VSRH_OVERLAY_HEIGHT && (x & 3) == 0) {
		h++;
		x >>= 2;
	}
	return h;
}

/* The last node before k on every level into before[]; returns the node
 * after it on level 0 (the first >= k), or NULL. */
static vsrh_overlay_node *descend(const vsrh_overlay *o, const char *k, size_t kl,
				  vsrh_overlay_node **before)
{
	vsrh_overlay_node *x = o->head;
	for (int lv = VSRH_OVERLAY_HEIGHT - 1; lv >= 0; lv--) {
		while (x->next[lv] && key_cmp(x->next[lv]->key, x->next[lv]->kl, k, kl) < 0)
			x = x->next[lv];
		if (before)
			before[lv] = x;
	}
	return x->next[0];
}

/* n's value replaced by a copy of v (NULL: a deletion). 0, or -1 when out
 * of memory (n unchanged); the caller's byte total moves by the change. */
static int set_value(vsrh_overlay_node *n, const char *v, size_t vl)
{
	char *copy = NULL;
	if (v != NULL) {
		copy = malloc(vl ? vl : 1);
		if (copy == NULL)
			return -1;
		if (vl)
			memcpy(copy, v, vl);
	}
	free(n->val);
	n->val = copy;
	n->vl = v ? (uint32_t)vl : 0;
	return 0;
}

int vsrh_overlay_put(vsrh_overlay *o, const char *k, size_t kl, const char *v, size_t vl)
{
	vsrh_overlay_node *before[VSRH_OVERLAY_HEIGHT];
	vsrh_overlay_node *n = descend(o, k, kl, before);
	if (n && key_cmp(n->key, n->kl, k, kl) == 0) {
		size_t old_vl = n->vl;
		if (set_value(n, v, vl) != 0)
			return -1;
		o->bytes = o->bytes - old_vl + n->vl;
		return 0;
	}
	unsigned h = random_height(o);
	n = node_new(h, k, kl);
	if (n == NULL || set_value(n, v, vl) != 0) {
		free(n);
		return -1;
	}
	for (unsigned lv = 0; lv < h; lv++) {
		n->next[lv] = before[lv]->next[lv];
		before[lv]->next[lv] = n;
	}
	o->count++;
	o->bytes += kl + n->vl;
	return 0;
}

const vsrh_overlay_node *vsrh_overlay_find(const vsrh_overlay *o, const char *k, size_t kl)
{
	if (o->count == 0)
		return NULL;
	const vsrh_overlay_node *n = descend(o, k, kl, NULL);
	return n && key_cmp(n->key, n->kl, k, kl) == 0 ? n : NULL;
}

const vsrh_overlay_node *vsrh_overlay_seek(const vsrh_overlay *o, const char *k, size_t kl)
{
	if (k == NULL)
		return o->head->next[0];
	return descend(o, k, kl, NULL);
}

/* The first entry taken out of o (not freed), or NULL. */
static vsrh_overlay_node *unlink_first(vsrh_overlay *o)
{
	vsrh_overlay_node *n = o->head->next[0];
	if (n == NULL)
		return NULL;
	for (unsigned lv = 0; lv < n->height; lv++)
		o->head->next[lv] = n->next[lv];
	o->count--;
	o->bytes -= n->kl + n->vl;
	return n;
}

void vsrh_overlay_pop(vsrh_overlay *o)
{
	vsrh_overlay_node *n = unlink_first(o);
	if (n == NULL)
		return;
	free(n->val);
	free(n);
}

/* ---------------------------------------------------------------- keymap */

#define KEYMAP_FIRST_SLOTS 4096u

static size_t slot_of(const vsrh_keymap *m, const char *k, size_t kl)
{
	return (size_t)XXH3_64bits(k, kl) & m->mask;
}

/* Room for one more entry: the slots doubled once there are as many
 * entries as slots. 0, or -1 when out of memory (the map unchanged). */
static int keymap_room(vsrh_keymap *m)
{
	if (m->slots != NULL && m->count < m->mask + 1)
		return 0;
	size_t n = m->slots ? 2 * (m->mask + 1) : KEYMAP_FIRST_SLOTS;
	vsrh_overlay_node **slots = calloc(n, sizeof *slots);
	if (slots == NULL)
		return m->slots != NULL && m->count < 2 * (m->mask + 1) ? 0 : -1;
	vsrh_keymap old = *m;
	m->slots = slots;
	m->mask = n - 1;
	for (size_t i = 0; old.slots != NULL && i <= old.mask; i++) {
		for (vsrh_overlay_node *x = old.slots[i], *next; x != NULL; x = next) {
			next = x->next[0];
			size_t at = slot_of(m, x->key, x->kl);
			x->next[0] = m->slots[at];
			m->slots[at] = x;
		}
	}
	free(old.slots);
	m->trim_at = 0;
	return 0;
}

static vsrh_overlay_node **keymap_link(const vsrh_keymap *m, const char *k, size_t kl)
{
	vsrh_overlay_node **at = &m->slots[slot_of(m, k, kl)];
	while (*at != NULL && key_cmp((*at)->key, (*at)->kl, k, kl) != 0)
		at = &(*at)->next[0];
	return at;
}

const vsrh_overlay_node *vsrh_keymap_find(const vsrh_keymap *m, const char *k, size_t kl)
{
	return m->count ? *keymap_link(m, k, kl) : NULL;
}

/* n (not in m) into m, replacing m's entry of its key. */
static void keymap_insert(vsrh_keymap *m, vsrh_overlay_node *n)
{
	vsrh_overlay_node **at = keymap_link(m, n->key, n->kl);
	if (*at != NULL) {
		vsrh_overlay_node *x = *at;
		n->next[0] = x->next[0];
		m->count--;
		m->bytes -= x->kl + x->vl;
		free(x->val);
		free(x);
	} else {
		n->next[0] = NULL;
	}
	*at = n;
	m->count++;
	m->bytes += n->kl + n->vl;
}

int vsrh_keymap_put(vsrh_keymap *m, const char *k, size_t kl, const char *v, size_t vl)
{
	if (keymap_room(m) != 0)
		return -1;
	vsrh_overlay_node *x = *keymap_link(m, k, kl);
	if (x != NULL) {
		size_t old_vl = x->vl;
		if (set_value(x, v, vl) != 0)
			return -1;
		m->bytes = m->bytes - old_vl + x->vl;
		return 0;
	}
	vsrh_overlay_node *n = node_new(1, k, kl);
	if (n == NULL || set_value(n, v, vl) != 0) {
		free(n);
		return -1;
	}
	keymap_insert(m, n);
	return 0;
}

int vsrh_keymap_take_first(vsrh_keymap *m, vsrh_overlay *src)
{
	if (src->head->next[0] == NULL)
		return 0;
	if (keymap_room(m) != 0)
		return -1;
	keymap_insert(m, unlink_first(src));
	return 0;
}

void vsrh_keymap_trim(vsrh_keymap *m, size_t max)
{
	while (max > 0 && m->count > 0) {
		vsrh_overlay_node *x = m->slots[m->trim_at];
		if (x == NULL) {
			m->trim_at = (m->trim_at + 1) & m->mask;
			continue;
		}
		m->slots[m->trim_at] = x->next[0];
		m->count--;
		m->bytes -= x->kl + x->vl;
		free(x->val);
		free(x);
		max--;
	}
}

void vsrh_keymap_free(vsrh_keymap *m)
{
	vsrh_keymap_trim(m, SIZE_MAX);
	free(m->slots);
	memset(m, 0, sizeof *m);
}
