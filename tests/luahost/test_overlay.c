/* test_overlay.c - the skip list of held writes (vsrh_overlay.h) against a
 * sorted array: puts (values and deletions) replacing earlier ones, find,
 * seek (first key >= k), walks in order, pops of the first entry, counts and
 * byte totals; and the keymap (the store's shadow, a hash table of the
 * same nodes): the first entry moved into it, and puts of its own,
 * checked against a second model, whole, at the end, then trimmed. Keys are short strings over {0x00, 'a', 0xff}, so that
 * prefixes, zero bytes and bytes above 0x7f (signed char!) meet often: the
 * order must be LMDB's default, memcmp then the shorter first. The seed is
 * printed; VSR_SEED=N replays. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vsrh_overlay.h"

#define FAIL(...)                                                                  \
	do {                                                                       \
		fprintf(stderr, "test_overlay: " __VA_ARGS__);                     \
		fprintf(stderr, " (seed %llu)\n", (unsigned long long)seed);       \
		exit(1);                                                           \
	} while (0)

static uint64_t seed, rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

typedef struct ref {
	char k[8];
	size_t kl;
	bool del;
	char v[8];
	size_t vl;
} ref;

static ref model[400];
static size_t nmodel;
/* The second skip list's model: keys and their latest entry, any order. */
static ref moved[400];
static size_t nmoved;

static int cmp(const char *a, size_t al, const char *b, size_t bl)
{
	/* LMDB's default order, written out byte by byte (unsigned). */
	for (size_t i = 0; i < al && i < bl; i++)
		if ((unsigned char)a[i] != (unsigned char)b[i])
			return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
	return al < bl ? -1 : al > bl;
}

/* Index of the first model entry >= k. */
static size_t lower(const char *k, size_t kl)
{
	size_t i = 0;
	while (i < nmodel && cmp(model[i].k, model[i].kl, k, kl) < 0)
		i++;
	return i;
}

static void random_key(char *k, size_t *kl)
{
	static const char alpha[3] = {0x00, 'a', (char)0xff};
	*kl = rnd(5);
	for (size_t i = 0; i < *kl; i++)
		k[i] = alpha[rnd(3)];
}

static void same_node(const vsrh_overlay_node *n, size_t i, const char *what)
{
	if (i == nmodel) {
		if (n != NULL)
			FAIL("%s: an entry past the end", what);
		return;
	}
	const ref *r = &model[i];
	if (n == NULL || n->kl != r->kl || memcmp(n->key, r->k, r->kl) != 0)
		FAIL("%s: entry %zu is not the model's", what, i);
	if (r->del ? n->val != NULL : (n->val == NULL || n->vl != r->vl || memcmp(n->val, r->v, r->vl)))
		FAIL("%s: the value of entry %zu is not the model's", what, i);
}

int main(void)
{
	const char *env = getenv("VSR_SEED");
	seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	printf("seed %llu (VSR_SEED=%llu replays)\n", (unsigned long long)seed,
	       (unsigned long long)seed);
	rng = seed * 2654435761u + 1;
	vsrh_overlay o;
	vsrh_keymap d = {0};
	if (vsrh_overlay_init(&o) != 0)
		FAIL("init");
	for (int step = 0; step < 200000; step++) {
		char k[8];
		size_t kl;
		random_key(k, &kl);
		uint32_t what = rnd(100);
		if (what < 40) {
			bool del = rnd(4) == 0;
			char v[8];
			size_t vl = rnd(6);
			for (size_t i = 0; i < vl; i++)
				v[i] = (char)rnd(256);
			if (vsrh_overlay_put(&o, k, kl, del ? NULL : v, vl) != 0)
				FAIL("put: out of memory");
			size_t i = lower(k, kl);
			if (i == nmodel || cmp(model[i].k, model[i].kl, k, kl) != 0) {
				memmove(&model[i + 1], &model[i], (nmodel - i) * sizeof model[0]);
				nmodel++;
				memcpy(model[i].k, k, kl);
				model[i].kl = kl;
			}
			model[i].del = del;
			model[i].vl = del ? 0 : vl;
			memcpy(model[i].v, v, model[i].vl);
			if (rnd(4) == 0) { /* the keymap's own put of the same */
				if (vsrh_keymap_put(&d, k, kl, del ? NULL : v, vl) != 0)
					FAIL("keymap put: out of memory");
				size_t j = 0;
				while (j < nmoved && cmp(moved[j].k, moved[j].kl, k, kl))
					j++;
				moved[j] = model[i];
				nmoved += j == nmoved;
			}
		} else if (what < 60) {
			size_t i = lower(k, kl);
			bool there = i < nmodel && cmp(model[i].k, model[i].kl, k, kl) == 0;
			const vsrh_overlay_node *n = vsrh_overlay_find(&o, k, kl);
			if (!there && n != NULL)
				FAIL("step %d: find of an absent key found one", step);
			if (there)
				same_node(n, i, "find");
		} else if (what < 85) {
			bool from_start = rnd(8) == 0;
			size_t i = from_start ? 0 : lower(k, kl);
			const vsrh_overlay_node *n = vsrh_overlay_seek(&o, from_start ? NULL : k, kl);
			for (unsigned walk = rnd(6); ; walk--) {
				same_node(n, i, "seek and walk");
				if (n == NULL || walk == 0)
					break;
				n = vsrh_overlay_next(n);
				i++;
			}
		} else if (what < 95) {
			same_node(vsrh_overlay_first(&o), 0, "first");
			if (rnd(2) && nmodel) {
				if (vsrh_keymap_take_first(&d, &o) != 0)
					FAIL("keymap take: out of memory");
				size_t j = 0;
				while (j < nmoved && cmp(moved[j].k, moved[j].kl, model[0].k, model[0].kl))
					j++;
				moved[j] = model[0];
				nmoved += j == nmoved;
			} else {
				vsrh_overlay_pop(&o);
			}
			if (nmodel) {
				memmove(&model[0], &model[1], (nmodel - 1) * sizeof model[0]);
				nmodel--;
			}
		} else if (rnd(50) == 0) {
			vsrh_overlay_clear(&o);
			nmodel = 0;
		}
		size_t bytes = 0;
		for (size_t i = 0; i < nmodel; i++)
			bytes += model[i].kl + model[i].vl;
		if (o.count != nmodel || o.bytes != bytes)
			FAIL("step %d: %zu entries of %zu bytes, the model %zu of %zu", step, o.count,
			     o.bytes, nmodel, bytes);
	}
	/* The whole walk, then everything popped in order. */
	const vsrh_overlay_node *n = vsrh_overlay_seek(&o, NULL, 0);
	for (size_t i = 0; i <= nmodel; i++, n = n ? vsrh_overlay_next(n) : NULL)
		same_node(n, i, "final walk");
	while (nmodel) {
		same_node(vsrh_overlay_first(&o), 0, "final pops");
		vsrh_overlay_pop(&o);
		memmove(&model[0], &model[1], (nmodel - 1) * sizeof model[0]);
		nmodel--;
	}
	if (o.count != 0 || o.bytes != 0 || vsrh_overlay_first(&o) != NULL)
		FAIL("not empty after popping everything");
	vsrh_overlay_free(&o);
	/* The moved entries: each key once, its last move's value, in order. */
	size_t bytes = 0;
	for (size_t j = 0; j < nmoved; j++) {
		const vsrh_overlay_node *m = vsrh_keymap_find(&d, moved[j].k, moved[j].kl);
		model[0] = moved[j];
		nmodel = 1;
		same_node(m, 0, "moved");
		bytes += moved[j].kl + moved[j].vl;
	}
	if (d.count != nmoved || d.bytes != bytes)
		FAIL("keymap: %zu entries of %zu bytes, the model %zu of %zu", d.count, d.bytes,
		     nmoved, bytes);
	vsrh_keymap_trim(&d, nmoved / 2);
	if (d.count != nmoved - nmoved / 2)
		FAIL("keymap: %zu entries after trimming %zu of %zu", d.count, nmoved / 2, nmoved);
	vsrh_keymap_free(&d);
	/* Growth: 20,000 keys (the slots double from 4096 three times), each
	 * found with its value after every rehash, then replaced, then freed. */
	vsrh_keymap g = {0};
	char gk[16];
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < 20000; i++) {
			int gl = snprintf(gk, sizeof gk, "g%05d", i);
			if (vsrh_keymap_put(&g, gk, (size_t)gl, gk, (size_t)gl - pass) != 0)
				FAIL("keymap growth: out of memory");
		}
		for (int i = 0; i < 20000; i++) {
			int gl = snprintf(gk, sizeof gk, "g%05d", i);
			const vsrh_overlay_node *x = vsrh_keymap_find(&g, gk, (size_t)gl);
			if (x == NULL || x->vl != (uint32_t)(gl - pass) || memcmp(x->val, gk, x->vl) != 0)
				FAIL("keymap growth: key %d lost or wrong in pass %d", i, pass);
		}
		if (g.count != 20000 || g.bytes != 20000 * (size_t)(12 - pass))
			FAIL("keymap growth: %zu entries of %zu bytes", g.count, g.bytes);
	}
	vsrh_keymap_free(&g);
	printf("ok: 200000 steps\n");
	return 0;
}
