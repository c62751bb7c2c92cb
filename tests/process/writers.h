/* writers.h - the durable-storage scenarios' write load (sc_storage.c):
 * writer processes that put keys w<w>-<seq> and report every
 * acknowledgement, and the checks that read every acknowledged write back.
 * Shared by sc_storage.c (kill -9, corruption, disk faults) and
 * sc_powercut.c (power cuts). */
#ifndef PROCTEST_WRITERS_H
#define PROCTEST_WRITERS_H

#include "harness.h"

#define WRITERS 4
#define WRITER_QUOTA 60    /* puts per writer per round */

typedef struct writers {
	pid_t pid[WRITERS];
	int fd;                  /* read end of the acknowledgement pipe */
	uint32_t next[WRITERS];  /* first seq not yet acknowledged */
	uint64_t max_op;
	uint32_t acks;           /* acknowledgements read this round */
	char buf[4096];
	size_t len;
} writers;

/* Writer w's key and value number seq (the seed in the value). */
void writer_key(int w, uint32_t seq, char key[32], char val[64]);
/* WRITERS writer processes, each putting from its next seq on, quota keys
 * (WRITER_QUOTA for writers_start). */
void writers_start(writers *ws);
void writers_start_quota(writers *ws, uint32_t quota);
/* Reads what the writers reported; false at end of file. */
bool writers_drain(writers *ws, int timeout_ms);
/* Fails when a writer stopped on its own (its put refused: lost state). */
void writers_check(const writers *ws, const char *what);
/* Waits (bounded) until `acks` acknowledgements were read this round. */
void writers_wait_acks(writers *ws, uint32_t acks, const char *what);
/* SIGTERM: each finishes its put in flight; every report read. */
void writers_stop(writers *ws);
/* SIGSTOP (pause) or SIGCONT the writers; paused, every report read. */
void writers_pause(writers *ws, bool pause);
/* `more` acknowledgements past the present ones, within this round's. */
uint32_t writers_target(const writers *ws, uint32_t more);
/* Every acknowledged write read back through the primary (ops); the
 * replicas converge with equal digests first. Returns the count. */
uint32_t verify_writes(mclient *m, msgpack_sbuffer *sb, const writers *ws, const char *what);
/* The same at each replica on its own (stale reads), writers paused. */
uint32_t verify_writes_each(msgpack_sbuffer *sb, const writers *ws, const char *what);
/* The same for writer w's writes from seq first[w] on only. */
uint32_t verify_writes_each_from(msgpack_sbuffer *sb, const writers *ws,
				 const uint32_t first[WRITERS], const char *what);

#endif
