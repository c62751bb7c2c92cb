/* lincheck.h - a linearizability checker for histories of read/write/cas on registers.
 *
 * The algorithm is Wing & Gong's search with Lowe's memoisation (WGL, as in
 * Knossos and Porcupine), run per key (P-compositionality: a history of
 * independent registers is linearizable iff each key's sub-history is).
 *
 * A history is a list of operations, each with the time it was called and
 * the time it returned, and an outcome:
 *   OK    it took effect once, at some instant between call and return;
 *   FAIL  it certainly did not take effect (dropped before the search);
 *   INFO  the client does not know: it may take effect at any instant after
 *         its call, or never. A timeout is INFO, never FAIL.
 * A cas that was refused because the register held another value (kv.lua's
 * codes 20 and 22) did execute: record it as FAIL with `mismatch` set, and it
 * is checked as an observation "the register was not `from`".
 *
 * The search is bounded in time and memory; past either bound a key's verdict
 * is UNKNOWN, never a guess. Nothing here does I/O or reads anything but a
 * monotonic clock for the time bound; the library depends on no other layer. */
#ifndef LINCHECK_H
#define LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of a register that was never written (kv.lua: key does not
 * exist). Written values must differ from it. */
#define LINCHECK_NIL INT64_MIN

enum lincheck_f { LINCHECK_READ = 0, LINCHECK_WRITE, LINCHECK_CAS };
enum lincheck_outcome { LINCHECK_OK = 0, LINCHECK_FAIL, LINCHECK_INFO };
enum lincheck_verdict {
	LINCHECK_LINEARIZABLE = 0,
	LINCHECK_NOT_LINEARIZABLE,
	LINCHECK_UNKNOWN,
};

typedef struct lincheck_op {
	uint32_t client;   /* who issued it (diagnostics only) */
	uint64_t key;      /* registers are independent per key */
	uint8_t f;         /* enum lincheck_f */
	uint8_t outcome;   /* enum lincheck_outcome */
	bool mismatch;     /* cas FAIL that observed a value other than `value` */
	int64_t value;     /* read: the value returned; write: written; cas: from */
	int64_t value2;    /* cas: to */
	int64_t call_ns;
	int64_t return_ns; /* ignored for INFO (it may take effect any time after call) */
} lincheck_op;

typedef struct lincheck_limits {
	uint64_t time_ms;       /* whole check; 0: no bound */
	size_t memory_bytes;    /* per key, for the memo table; 0: no bound */
} lincheck_limits;

typedef struct lincheck_result {
	int verdict;            /* enum lincheck_verdict, over every key */
	uint32_t keys;
	uint32_t keys_bad;
	uint32_t keys_unknown;
	uint64_t ops_searched;  /* operations that entered a search (FAIL dropped) */
	uint64_t steps;         /* search steps, all keys */
	size_t memory_peak_bytes;
	/* The first key found not linearizable: its id, and the operation (index
	 * into the caller's array) at which the deepest partial linearization
	 * stopped, with the register's value there. */
	uint64_t bad_key;
	size_t bad_op;
	int64_t bad_state;
	uint32_t bad_depth;     /* ops linearized before it */
	char why[200];          /* a sentence when UNKNOWN or NOT_LINEARIZABLE */
} lincheck_result;

/* Checks `n` operations (any order, any keys). Returns 0, or -1 when the
 * input is malformed (a return before its call, a written value equal to
 * LINCHECK_NIL; `r->why` says which op) or memory runs out outside the
 * bound. */
int lincheck_check(const lincheck_op *ops, size_t n, const lincheck_limits *lim,
		   lincheck_result *r);

const char *lincheck_verdict_name(int verdict);
const char *lincheck_f_name(int f);
const char *lincheck_outcome_name(int outcome);

#endif /* LINCHECK_H */
