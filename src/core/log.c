/* log.c - the in-memory log: a ring of hash-chained entries indexed by op. */
#include "replica.h"

void log_init(vsr_log *l, uint32_t capacity, uint64_t base_op, uint64_t base_checksum)
{
	assert(capacity && (capacity & (capacity - 1)) == 0);
	memset(l, 0, sizeof *l);
	l->slots = xcalloc(capacity, sizeof *l->slots);
	l->mask = capacity - 1;
	l->start = base_op + 1;
	l->head = base_op;
	l->prev_checksum = base_checksum;
}

/* Bodies may still be referenced by the current step's actions, so they are
 * retired to a graveyard and freed by log_collect() at the next step. */
static void slot_clear(vsr_log *l, vsr_entry *s)
{
	if (s->body != NULL) {
		if (l->grave_count == l->grave_cap) {
			l->grave_cap = l->grave_cap ? 2 * l->grave_cap : 64;
			l->graveyard = xrealloc(l->graveyard, l->grave_cap * sizeof(void *));
		}
		l->graveyard[l->grave_count++] = (void *)s->body;
	}
	memset(s, 0, sizeof *s);
}

void log_collect(vsr_log *l)
{
	for (uint32_t i = 0; i < l->grave_count; i++) free(l->graveyard[i]);
	l->grave_count = 0;
}

void log_free(vsr_log *l)
{
	if (l->slots == NULL) return;
	for (uint64_t op = l->start; op <= l->head; op++) slot_clear(l, &l->slots[op & l->mask]);
	free(l->slots);
	l->slots = NULL;
	log_collect(l);
	free(l->graveyard);
	l->graveyard = NULL;
}

uint32_t log_capacity(const vsr_log *l) { return l->mask + 1; }

const vsr_entry *log_get(const vsr_log *l, uint64_t op)
{
	if (op < l->start || op > l->head) return NULL;
	const vsr_entry *e = &l->slots[op & l->mask];
	assert(e->op == op);
	return e;
}

bool log_checksum_known(const vsr_log *l, uint64_t op)
{
	return op + 1 >= l->start && op <= l->head;
}

uint64_t log_checksum_at(const vsr_log *l, uint64_t op)
{
	if (op + 1 == l->start) return l->prev_checksum;
	const vsr_entry *e = log_get(l, op);
	return e ? e->checksum : 0;
}

bool log_matches(const vsr_log *l, uint64_t op, uint64_t checksum)
{
	return log_checksum_known(l, op) && log_checksum_at(l, op) == checksum;
}

static void drop_oldest(vsr_log *l)
{
	assert(l->start <= l->head);
	vsr_entry *s = &l->slots[l->start & l->mask];
	l->prev_checksum = s->checksum;
	slot_clear(l, s);
	l->start++;
}

void log_drop_through(vsr_log *l, uint64_t op)
{
	while (l->start <= op && l->start <= l->head) drop_oldest(l);
}

bool log_append(vsr_log *l, const vsr_entry *e, uint64_t droppable_max)
{
	assert(e->op == l->head + 1);
	assert(e->parent == log_checksum_at(l, l->head));
	if (l->head - l->start + 1 >= log_capacity(l)) {
		if (l->start > droppable_max) return false;
		drop_oldest(l);
	}
	vsr_entry *s = &l->slots[e->op & l->mask];
	assert(s->body == NULL);
	*s = *e;
	if (e->body_len) {
		uint8_t *body = xmalloc(e->body_len);
		memcpy(body, e->body, e->body_len);
		s->body = body;
	} else {
		s->body = NULL;
	}
	l->head = e->op;
	return true;
}

void log_truncate_after(vsr_log *l, uint64_t op)
{
	assert(op + 1 >= l->start);
	while (l->head > op) {
		slot_clear(l, &l->slots[l->head & l->mask]);
		l->head--;
	}
}

void log_reset(vsr_log *l, uint64_t base_op, uint64_t base_checksum)
{
	for (uint64_t op = l->start; op <= l->head; op++) slot_clear(l, &l->slots[op & l->mask]);
	l->start = base_op + 1;
	l->head = base_op;
	l->prev_checksum = base_checksum;
}
