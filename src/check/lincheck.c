/* lincheck.c - Wing-Gong-Lowe linearizability search over per-key register histories.
 *
 * For one key the operations become a doubly linked list of call and return
 * entries in time order (INFO operations have a call only). The search walks
 * the list from its head: at a call it tries to linearize that operation now
 * (the register model must accept it, and the pair (set of operations
 * linearized, register value) must be new, Lowe's memo), and if so lifts the
 * operation's entries out of the list and starts again from the head; at a
 * return it has met an operation that had to be linearized already, so it
 * backtracks: the last operation linearized goes back into the list and the
 * walk goes on after its call. The key is linearizable once every operation
 * that returned is linearized (INFO operations left over never took effect);
 * it is not once backtracking finds the stack empty. */
#include "lincheck.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *lincheck_verdict_name(int verdict)
{
	switch (verdict) {
	case LINCHECK_LINEARIZABLE: return "linearizable";
	case LINCHECK_NOT_LINEARIZABLE: return "NOT linearizable";
	case LINCHECK_UNKNOWN: return "unknown";
	}
	return "?";
}

const char *lincheck_f_name(int f)
{
	switch (f) {
	case LINCHECK_READ: return "read";
	case LINCHECK_WRITE: return "write";
	case LINCHECK_CAS: return "cas";
	}
	return "?";
}

const char *lincheck_outcome_name(int outcome)
{
	switch (outcome) {
	case LINCHECK_OK: return "ok";
	case LINCHECK_FAIL: return "fail";
	case LINCHECK_INFO: return "info";
	}
	return "?";
}

static uint64_t lincheck_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The register model: may `op` happen when the register holds *state?
 * If so, *state becomes the value after it. */
static bool lincheck_step(const lincheck_op *op, int64_t *state)
{
	switch (op->f) {
	case LINCHECK_READ:
		return *state == op->value;
	case LINCHECK_WRITE:
		*state = op->value;
		return true;
	case LINCHECK_CAS:
		if (op->outcome == LINCHECK_FAIL) /* a refused cas: an observation */
			return *state != op->value;
		if (*state != op->value)
			return false;
		*state = op->value2;
		return true;
	}
	return false;
}

/* Does the search need this operation at all? Plain failures and reads
 * whose result is unknown constrain nothing. */
static bool lincheck_relevant(const lincheck_op *op)
{
	if (op->outcome == LINCHECK_FAIL)
		return op->f == LINCHECK_CAS && op->mismatch;
	if (op->outcome == LINCHECK_INFO)
		return op->f != LINCHECK_READ;
	return true;
}

/* ------------------------------------------------------------------------ */
/* Lowe's memo: a set of (linearized bitset, register value).                */

typedef struct lincheck_memo {
	uint32_t words;      /* bitset length in 64-bit words */
	uint64_t *slots;     /* open addressing: 0 empty, else 1 + arena record index */
	size_t slot_count;   /* a power of two */
	size_t used;
	uint64_t *arena;     /* records: value, then `words` bitset words */
	size_t arena_records;
	size_t arena_cap;    /* in records */
	size_t bytes;
} lincheck_memo;

static uint64_t lincheck_hash(const uint64_t *bits, uint32_t words, int64_t state)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)state;
	for (uint32_t i = 0; i < words; i++) {
		h ^= bits[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
		h *= 0xff51afd7ed558ccdull;
	}
	h ^= h >> 33;
	return h;
}

static size_t lincheck_memo_bytes(const lincheck_memo *m)
{
	return m->slot_count * sizeof(uint64_t) +
	       m->arena_cap * (1u + m->words) * sizeof(uint64_t);
}

static int lincheck_memo_init(lincheck_memo *m, uint32_t words)
{
	memset(m, 0, sizeof *m);
	m->words = words;
	m->slot_count = 1024;
	m->slots = calloc(m->slot_count, sizeof(uint64_t));
	m->arena_cap = 512;
	m->arena = malloc(m->arena_cap * (1u + words) * sizeof(uint64_t));
	if (m->slots == NULL || m->arena == NULL)
		return -1;
	m->bytes = lincheck_memo_bytes(m);
	return 0;
}

static void lincheck_memo_free(lincheck_memo *m)
{
	free(m->slots);
	free(m->arena);
}

static uint64_t *lincheck_memo_record(const lincheck_memo *m, size_t i)
{
	return m->arena + i * (1u + m->words);
}

/* Grows the slot table to twice its size, rehashing every record. */
static int lincheck_memo_grow(lincheck_memo *m)
{
	size_t count = m->slot_count * 2;
	uint64_t *slots = calloc(count, sizeof(uint64_t));
	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < m->arena_records; i++) {
		const uint64_t *rec = lincheck_memo_record(m, i);
		size_t s = lincheck_hash(rec + 1, m->words, (int64_t)rec[0]) & (count - 1);
		while (slots[s] != 0)
			s = (s + 1) & (count - 1);
		slots[s] = i + 1;
	}
	free(m->slots);
	m->slots = slots;
	m->slot_count = count;
	return 0;
}

/* Adds (bits, state). Returns 1 when it was new, 0 when already there,
 * -1 when the memory bound (or malloc) refuses to grow. */
static int lincheck_memo_add(lincheck_memo *m, const uint64_t *bits, int64_t state,
			     size_t memory_max)
{
	uint64_t h = lincheck_hash(bits, m->words, state);
	size_t s = h & (m->slot_count - 1);
	while (m->slots[s] != 0) {
		const uint64_t *rec = lincheck_memo_record(m, m->slots[s] - 1);
		if ((int64_t)rec[0] == state &&
		    memcmp(rec + 1, bits, m->words * sizeof(uint64_t)) == 0)
			return 0;
		s = (s + 1) & (m->slot_count - 1);
	}
	if (m->arena_records == m->arena_cap) {
		size_t cap = m->arena_cap * 2;
		size_t want = m->slot_count * sizeof(uint64_t) +
			      cap * (1u + m->words) * sizeof(uint64_t);
		if (memory_max != 0 && want > memory_max)
			return -1;
		uint64_t *a = realloc(m->arena, cap * (1u + m->words) * sizeof(uint64_t));
		if (a == NULL)
			return -1;
		m->arena = a;
		m->arena_cap = cap;
	}
	uint64_t *rec = lincheck_memo_record(m, m->arena_records);
	rec[0] = (uint64_t)state;
	memcpy(rec + 1, bits, m->words * sizeof(uint64_t));
	m->slots[s] = ++m->arena_records;
	m->used++;
	if (m->used * 2 > m->slot_count) {
		if (memory_max != 0 &&
		    lincheck_memo_bytes(m) + m->slot_count * sizeof(uint64_t) > memory_max)
			return -1;
		if (lincheck_memo_grow(m) != 0)
			return -1;
	}
	m->bytes = lincheck_memo_bytes(m);
	return 1;
}

/* ------------------------------------------------------------------------ */
/* One key's search.                                                          */

typedef struct lincheck_entry {
	int64_t time;
	uint32_t op;      /* index into the key's operation list */
	bool is_call;
	int32_t partner;  /* call: its return entry, or -1 (INFO); return: its call */
	int32_t prev, next; /* list links; -1 ends */
} lincheck_entry;

static int lincheck_entry_cmp(const void *a, const void *b)
{
	const lincheck_entry *x = a, *y = b;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	/* At equal times calls come first: the operations are then concurrent,
	 * the reading that accuses no one. */
	if (x->is_call != y->is_call)
		return x->is_call ? -1 : 1;
	return x->op < y->op ? -1 : (x->op > y->op);
}

typedef struct lincheck_frame {
	int32_t call;    /* entry lifted */
	int64_t state;   /* register value before it */
} lincheck_frame;

typedef struct lincheck_key {
	const lincheck_op *all; /* the caller's array */
	const size_t *idx;      /* this key's operations, indices into `all` */
	uint32_t m;
	const lincheck_limits *lim;
	uint64_t deadline_ms;   /* 0: none */
	lincheck_result *r;
} lincheck_key;

static void lincheck_lift(lincheck_entry *e, int32_t *head, int32_t i)
{
	if (e[i].prev >= 0)
		e[e[i].prev].next = e[i].next;
	else
		*head = e[i].next;
	if (e[i].next >= 0)
		e[e[i].next].prev = e[i].prev;
}

/* Undoes lincheck_lift(i); valid because lifts are undone in reverse order. */
static void lincheck_unlift(lincheck_entry *e, int32_t *head, int32_t i)
{
	if (e[i].prev >= 0)
		e[e[i].prev].next = i;
	else
		*head = i;
	if (e[i].next >= 0)
		e[e[i].next].prev = i;
}

/* Returns a verdict for one key, or -1 when out of memory outside the bound. */
static int lincheck_one_key(lincheck_key *k)
{
	uint32_t m = k->m;
	uint32_t words = (m + 63) / 64;
	int verdict = LINCHECK_UNKNOWN;
	lincheck_entry *e = calloc(2 * (size_t)m, sizeof *e);
	uint64_t *bits = calloc(words ? words : 1, sizeof(uint64_t));
	lincheck_frame *stack = calloc(m ? m : 1, sizeof *stack);
	lincheck_memo memo;
	int memo_ok = lincheck_memo_init(&memo, words);
	if (e == NULL || bits == NULL || stack == NULL || memo_ok != 0) {
		verdict = -1;
		goto out;
	}

	uint32_t n = 0, must = 0;
	for (uint32_t i = 0; i < m; i++) {
		const lincheck_op *op = &k->all[k->idx[i]];
		e[n] = (lincheck_entry){.time = op->call_ns, .op = i, .is_call = true, .partner = -1};
		n++;
		if (op->outcome != LINCHECK_INFO) {
			e[n] = (lincheck_entry){.time = op->return_ns, .op = i, .is_call = false};
			n++;
			must++;
		}
	}
	qsort(e, n, sizeof *e, lincheck_entry_cmp);
	/* Link partners after sorting: call index by op first. */
	int32_t *call_of = calloc(m ? m : 1, sizeof(int32_t));
	if (call_of == NULL) {
		verdict = -1;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		if (e[i].is_call)
			call_of[e[i].op] = (int32_t)i;
	for (uint32_t i = 0; i < n; i++) {
		e[i].prev = (int32_t)i - 1;
		e[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
		if (!e[i].is_call) {
			e[i].partner = call_of[e[i].op];
			e[call_of[e[i].op]].partner = (int32_t)i;
		}
	}
	free(call_of);

	int32_t head = n ? 0 : -1;
	int32_t cur = head;
	uint32_t depth = 0;
	int64_t state = LINCHECK_NIL;
	uint64_t steps = 0;
	uint32_t best_depth = 0;
	k->r->bad_op = (size_t)-1;
	for (;;) {
		if (must == 0) {
			verdict = LINCHECK_LINEARIZABLE;
			break;
		}
		if ((++steps & 1023u) == 0 && k->deadline_ms != 0 &&
		    lincheck_now_ms() > k->deadline_ms) {
			snprintf(k->r->why, sizeof k->r->why,
				 "key %llu: search passed the time bound of %llu ms after %llu steps",
				 (unsigned long long)k->all[k->idx[0]].key,
				 (unsigned long long)k->lim->time_ms, (unsigned long long)steps);
			verdict = LINCHECK_UNKNOWN;
			break;
		}
		/* With returns left in the list the walk always meets one. */
		if (cur < 0) {
			verdict = -1;
			break;
		}
		lincheck_entry *c = &e[cur];
		if (c->is_call) {
			const lincheck_op *op = &k->all[k->idx[c->op]];
			int64_t next = state;
			if (lincheck_step(op, &next)) {
				bits[c->op / 64] |= 1ull << (c->op % 64);
				int added = lincheck_memo_add(&memo, bits, next, k->lim->memory_bytes);
				if (added < 0) {
					snprintf(k->r->why, sizeof k->r->why,
						 "key %llu: memo table reached the memory bound of %zu bytes",
						 (unsigned long long)op->key, k->lim->memory_bytes);
					verdict = LINCHECK_UNKNOWN;
					break;
				}
				if (added == 1) {
					stack[depth++] = (lincheck_frame){.call = cur, .state = state};
					state = next;
					lincheck_lift(e, &head, cur);
					if (c->partner >= 0) {
						lincheck_lift(e, &head, c->partner);
						must--;
					}
					cur = head;
					continue;
				}
				bits[c->op / 64] &= ~(1ull << (c->op % 64));
			}
			cur = c->next;
			continue;
		}
		/* A return: its operation should have been linearized by now. */
		if (depth >= best_depth) {
			best_depth = depth;
			k->r->bad_op = k->idx[c->op];
			k->r->bad_state = state;
		}
		if (depth == 0) {
			verdict = LINCHECK_NOT_LINEARIZABLE;
			break;
		}
		lincheck_frame f = stack[--depth];
		lincheck_entry *fc = &e[f.call];
		if (fc->partner >= 0) {
			lincheck_unlift(e, &head, fc->partner);
			must++;
		}
		lincheck_unlift(e, &head, f.call);
		bits[fc->op / 64] &= ~(1ull << (fc->op % 64));
		state = f.state;
		cur = fc->next;
	}
	k->r->steps += steps;
	if (memo.bytes > k->r->memory_peak_bytes)
		k->r->memory_peak_bytes = memo.bytes;
	if (verdict == LINCHECK_NOT_LINEARIZABLE)
		k->r->bad_depth = best_depth;
out:
	lincheck_memo_free(&memo); /* also after a failed init: free(NULL) is fine */
	free(e);
	free(bits);
	free(stack);
	return verdict;
}

/* ------------------------------------------------------------------------ */

static const lincheck_op *lincheck_sort_base;

static int lincheck_idx_cmp(const void *a, const void *b)
{
	const lincheck_op *x = &lincheck_sort_base[*(const size_t *)a];
	const lincheck_op *y = &lincheck_sort_base[*(const size_t *)b];
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->call_ns != y->call_ns)
		return x->call_ns < y->call_ns ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

int lincheck_check(const lincheck_op *ops, size_t n, const lincheck_limits *lim,
		   lincheck_result *r)
{
	memset(r, 0, sizeof *r);
	r->verdict = LINCHECK_LINEARIZABLE;
	r->bad_op = (size_t)-1;
	size_t *idx = malloc((n ? n : 1) * sizeof *idx);
	if (idx == NULL) {
		snprintf(r->why, sizeof r->why, "out of memory");
		return -1;
	}
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		const lincheck_op *op = &ops[i];
		if (op->outcome != LINCHECK_INFO && op->return_ns < op->call_ns) {
			snprintf(r->why, sizeof r->why, "op %zu returns before its call", i);
			free(idx);
			return -1;
		}
		if ((op->f == LINCHECK_WRITE && op->value == LINCHECK_NIL) ||
		    (op->f == LINCHECK_CAS && op->value2 == LINCHECK_NIL)) {
			snprintf(r->why, sizeof r->why, "op %zu writes the reserved NIL value", i);
			free(idx);
			return -1;
		}
		if (op->f > LINCHECK_CAS || op->outcome > LINCHECK_INFO) {
			snprintf(r->why, sizeof r->why, "op %zu has an unknown f or outcome", i);
			free(idx);
			return -1;
		}
		if (lincheck_relevant(op))
			idx[kept++] = i;
	}
	lincheck_sort_base = ops;
	qsort(idx, kept, sizeof *idx, lincheck_idx_cmp);
	r->ops_searched = kept;

	uint64_t deadline = lim->time_ms ? lincheck_now_ms() + lim->time_ms : 0;
	int rc = 0;
	lincheck_result key_r;
	for (size_t start = 0; start < kept;) {
		size_t end = start;
		while (end < kept && ops[idx[end]].key == ops[idx[start]].key)
			end++;
		memset(&key_r, 0, sizeof key_r);
		lincheck_key k = {.all = ops, .idx = idx + start, .m = (uint32_t)(end - start),
				  .lim = lim, .deadline_ms = deadline, .r = &key_r};
		int v = lincheck_one_key(&k);
		r->keys++;
		r->steps += key_r.steps;
		if (key_r.memory_peak_bytes > r->memory_peak_bytes)
			r->memory_peak_bytes = key_r.memory_peak_bytes;
		if (v < 0) {
			snprintf(r->why, sizeof r->why, "out of memory checking key %llu",
				 (unsigned long long)ops[idx[start]].key);
			rc = -1;
			break;
		}
		if (v == LINCHECK_NOT_LINEARIZABLE) {
			if (r->keys_bad++ == 0) {
				r->bad_key = ops[idx[start]].key;
				r->bad_op = key_r.bad_op;
				r->bad_state = key_r.bad_state;
				r->bad_depth = key_r.bad_depth;
				snprintf(r->why, sizeof r->why,
					 "key %llu: no order of its %zu operations fits a register; "
					 "the longest partial order (%u ops) stops at op %zu",
					 (unsigned long long)r->bad_key, end - start, r->bad_depth,
					 r->bad_op);
			}
			r->verdict = LINCHECK_NOT_LINEARIZABLE;
		} else if (v == LINCHECK_UNKNOWN) {
			if (r->keys_unknown++ == 0 && r->keys_bad == 0)
				memcpy(r->why, key_r.why, sizeof r->why);
			if (r->verdict == LINCHECK_LINEARIZABLE)
				r->verdict = LINCHECK_UNKNOWN;
		}
		start = end;
	}
	free(idx);
	return rc;
}
