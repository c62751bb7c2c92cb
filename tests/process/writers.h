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

/* What a writer is doing, in memory it shares with the driver: printed
 * when a wait for acknowledgements times out, so that a stall says which
 * put each writer waits for and where it sends it. */
enum writer_phase { WRITER_STARTING, WRITER_REGISTERING, WRITER_PUTTING, WRITER_QUOTA_SPENT };
typedef struct writer_live {
	uint8_t phase;       /* enum writer_phase */
	uint8_t target;      /* the replica its client sends to (0-based) */
	uint32_t seq;        /* the put in flight: its key's seq */
	uint32_t timeouts;   /* calls of CALL_MS for it that went unanswered */
	uint64_t session;
	uint64_t request;    /* the put's request number in its session */
	uint64_t since_ms;   /* now_ms() when it was first sent */
} writer_live;

typedef struct writers {
	pid_t pid[WRITERS];
	int fd;                  /* read end of the acknowledgement pipe */
	uint32_t next[WRITERS];  /* first seq not yet acknowledged */
	uint32_t quota;          /* puts per writer this round */
	uint64_t max_op;
	uint32_t acks;           /* acknowledgements read this round */
	volatile writer_live *live; /* [WRITERS], shared with the writers */
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
/* Waits (bounded) until `acks` acknowledgements were read this round.
 * More than the round's writers will ever put (WRITERS x quota) fails at
 * once: such a wait could only end at its deadline, with an idle cluster.
 * At the deadline, each replica's status and each writer's put in flight
 * are printed before the failure. */
void writers_wait_acks(writers *ws, uint32_t acks, const char *what);
/* Each replica's status and what each writer is doing (stderr). */
void writers_explain(const writers *ws);
/* SIGTERM: each finishes its put in flight; every report read. */
void writers_stop(writers *ws);
/* SIGSTOP (pause) or SIGCONT the writers; paused, every report read. */
void writers_pause(writers *ws, bool pause);
/* `more` acknowledgements past the present ones, within what this
 * round's writers will ever put (WRITERS x their quota). */
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
