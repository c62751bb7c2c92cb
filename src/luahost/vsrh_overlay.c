/* vsrh_overlay.c - the skip list of held-back writes (vsrh_overlay.h). */
#include "vsrh_overlay.h"

#include <stdlib.h>
#include <string.h>

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

static int set_value(vsrh_overlay *o, vsrh_overlay_node *n, const char *v, size_t vl)
{
	char *copy = NULL;
	if (v != NULL) {
		copy = malloc(vl ? vl : 1);
		if (copy == NULL)
			return -1;
		if (vl)
			memcpy(copy, v, vl);
	}
	o->bytes -= n->vl;
	free(n->val);
	n->val = copy;
	n->vl = v ? (uint32_t)vl : 0;
	o->bytes += n->vl;
	return 0;
}

int vsrh_overlay_put(vsrh_overlay *o, const char *k, size_t kl, const char *v, size_t vl)
{
	vsrh_overlay_node *before[VSRH_OVERLAY_HEIGHT];
	vsrh_overlay_node *n = descend(o, k, kl, before);
	if (n && key_cmp(n->key, n->kl, k, kl) == 0)
		return set_value(o, n, v, vl);
	unsigned h = random_height(o);
	n = node_new(h, k, kl);
	if (n == NULL || set_value(o, n, v, vl) != 0) {
		free(n);
		return -1;
	}
	for (unsigned lv = 0; lv < h; lv++) {
		n->next[lv] = before[lv]->next[lv];
		before[lv]->next[lv] = n;
	}
	o->count++;
	o->bytes += kl;
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

void vsrh_overlay_move_first(vsrh_overlay *src, vsrh_overlay *dst)
{
	vsrh_overlay_node *n = unlink_first(src);
	if (n == NULL)
		return;
	vsrh_overlay_node *before[VSRH_OVERLAY_HEIGHT];
	vsrh_overlay_node *x = descend(dst, n->key, n->kl, before);
	if (x && key_cmp(x->key, x->kl, n->key, n->kl) == 0) {
		/* The key is there: its value is replaced by n's. */
		dst->bytes -= x->vl;
		free(x->val);
		x->val = n->val;
		x->vl = n->vl;
		dst->bytes += x->vl;
		free(n);
		return;
	}
	for (unsigned lv = 0; lv < n->height; lv++) {
		n->next[lv] = before[lv]->next[lv];
		before[lv]->next[lv] = n;
	}
	dst->count++;
	dst->bytes += n->kl + n->vl;
}
