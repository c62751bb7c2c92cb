/* sim_util.c - the simulator's generator, hashing, maps and message copies. */
#include <stdlib.h>
#include <string.h>

#include "vsr_rng.h"
#include "sim.h"

void *sim_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "vsrsim: out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

void *sim_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) {
		fprintf(stderr, "vsrsim: out of memory (%zu x %zu bytes)\n", n, size);
		abort();
	}
	return p;
}

void *sim_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "vsrsim: out of memory (%zu bytes)\n", n);
		abort();
	}
	return q;
}

/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void sim_rng_seed(sim_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

uint64_t sim_rng_next(sim_rng *r)
{
	return vsr_rng_next(r->s);
}

uint64_t sim_rng_below(sim_rng *r, uint64_t n)
{
	/* Modulo is biased by at most n / 2^64: irrelevant here, and it keeps
	 * one draw per call so runs stay easy to reason about. */
	return sim_rng_next(r) % n;
}

uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + sim_rng_below(r, hi - lo + 1);
}

bool sim_rng_ppm(sim_rng *r, uint32_t ppm)
{
	if (ppm == 0)
		return false;
	return sim_rng_below(r, 1000000) < ppm;
}

uint64_t sim_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

uint64_t sim_hash_u64(uint64_t h, uint64_t v)
{
	return sim_mix64(h ^ sim_mix64(v + 0x9e3779b97f4a7c15ull));
}

uint64_t sim_hash_bytes(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = sim_hash_u64(h, w);
		p += 8;
		len -= 8;
	}
	uint64_t w = 0;
	if (len)
		memcpy(&w, p, len);
	return sim_hash_u64(h, w ^ ((uint64_t)len << 56));
}

/* ------------------------------------------------------------------------ */

void sim_map_free(sim_map *m)
{
	free(m->keys);
	free(m->values);
	memset(m, 0, sizeof(*m));
}

uint64_t *sim_map_get(const sim_map *m, uint64_t key)
{
	if (m->cap == 0)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = sim_mix64(key) & mask;; i = (i + 1) & mask) {
		if (m->keys[i] == key)
			return &m->values[i];
		if (m->keys[i] == 0)
			return NULL;
	}
}

static void map_grow(sim_map *m)
{
	sim_map n = {0};
	n.cap = m->cap ? m->cap * 2 : 64;
	n.keys = sim_xcalloc(n.cap, sizeof(uint64_t));
	n.values = sim_xcalloc(n.cap, sizeof(uint64_t));
	for (size_t i = 0; i < m->cap; i++) {
		if (m->keys[i] == 0)
			continue;
		size_t mask = n.cap - 1;
		size_t j = sim_mix64(m->keys[i]) & mask;
		while (n.keys[j] != 0)
			j = (j + 1) & mask;
		n.keys[j] = m->keys[i];
		n.values[j] = m->values[i];
	}
	n.count = m->count;
	sim_map_free(m);
	*m = n;
}

uint64_t *sim_map_put(sim_map *m, uint64_t key, uint64_t init, bool *inserted)
{
	if (key == 0) {
		fprintf(stderr, "vsrsim: internal error: map key 0\n");
		abort();
	}
	if ((m->count + 1) * 4 > m->cap * 3)
		map_grow(m);
	size_t mask = m->cap - 1;
	size_t i = sim_mix64(key) & mask;
	for (;; i = (i + 1) & mask) {
		if (m->keys[i] == key) {
			if (inserted)
				*inserted = false;
			return &m->values[i];
		}
		if (m->keys[i] == 0)
			break;
	}
	m->keys[i] = key;
	m->values[i] = init;
	m->count++;
	if (inserted)
		*inserted = true;
	return &m->values[i];
}

/* ------------------------------------------------------------------------ */

uint64_t sim_vec_get(const sim_vec *a, uint64_t i)
{
	return i < a->cap ? a->v[i] : 0;
}

void sim_vec_set(sim_vec *a, uint64_t i, uint64_t value)
{
	if (i >= a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		while (cap <= i)
			cap *= 2;
		a->v = sim_xrealloc(a->v, cap * sizeof(uint64_t));
		memset(a->v + a->cap, 0, (cap - a->cap) * sizeof(uint64_t));
		a->cap = cap;
	}
	a->v[i] = value;
}

void sim_vec_free(sim_vec *a)
{
	free(a->v);
	a->v = NULL;
	a->cap = 0;
}

/* ------------------------------------------------------------------------ */

vsr_entry *sim_entries_clone(const vsr_entry *src, uint32_t n, uint8_t **blob)
{
	*blob = NULL;
	if (n == 0)
		return NULL;
	size_t total = 0;
	for (uint32_t i = 0; i < n; i++)
		total += src[i].body_len;
	vsr_entry *e = sim_xmalloc(n * sizeof(vsr_entry));
	uint8_t *b = sim_xmalloc(total);
	size_t at = 0;
	for (uint32_t i = 0; i < n; i++) {
		e[i] = src[i];
		if (src[i].body_len) {
			memcpy(b + at, src[i].body, src[i].body_len);
			e[i].body = b + at;
			at += src[i].body_len;
		} else {
			e[i].body = NULL;
		}
	}
	*blob = b;
	return e;
}

sim_msg *sim_msg_clone(const vsr_message *m)
{
	sim_msg *s = sim_xcalloc(1, sizeof(*s));
	s->m = *m;
	size_t total = (size_t)m->body_len + m->request.op_len;
	s->blob = sim_xmalloc(total);
	s->m.body = NULL;
	s->m.request.op = NULL;
	if (m->body_len) {
		memcpy(s->blob, m->body, m->body_len);
		s->m.body = s->blob;
	}
	if (m->request.op_len) {
		memcpy(s->blob + m->body_len, m->request.op, m->request.op_len);
		s->m.request.op = s->blob + m->body_len;
	}
	s->entries = sim_entries_clone(m->entries, m->entry_count, &s->entry_blob);
	s->m.entries = s->entries;
	return s;
}

void sim_msg_free(sim_msg *s)
{
	if (!s)
		return;
	free(s->entry_blob);
	free(s->entries);
	free(s->blob);
	free(s);
}
