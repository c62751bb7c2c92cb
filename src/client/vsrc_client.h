/* vsrc_client.h - the C client library: sessions over libuv, and a blocking wrapper.
 *
 * A vsrc_client is one client session of a vsrhost cluster, driven by a libuv
 * loop, so one thread can drive many sessions (vsrbench runs hundreds). It
 * connects lazily to each replica's client port, says HELLO, registers a
 * session on its first call (a committed REGISTER request), numbers requests
 * 1, 2, 3... with one in flight, finds the primary from NOT_PRIMARY replies,
 * retries with the same request number on timeout (to another replica), and
 * reports every call as done, failed (certainly not applied) or unknown (may
 * have been applied). The rules are in vsrc_session.h.
 *
 * Operations and replies are opaque bytes here: the state machines take and
 * return msgpack values; vsrc_op.h builds the common ones.
 *
 * Happy path: call -> (connect, HELLO, REGISTER) -> REQUEST to the primary ->
 * REPLY OK -> callback with outcome DONE.
 * Failure modes: connection refused or lost (rotate to the next replica after
 * a short backoff), no reply within attempt_ms (resend to the next replica),
 * NOT_PRIMARY (resend to the named primary), BUSY (resend after backoff),
 * EVICTED (complete; the next call registers a new session), call_ms elapsed
 * (complete as unknown if a copy may be applied, else failed), a malformed
 * frame or CLOSE from a replica (that connection is dropped). */
#ifndef VSRC_CLIENT_H
#define VSRC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "vsr.h"
#include "vsr_wire.h"
#include "vsrc_session.h"

/* Where the cluster is, and how patient to be. */
typedef struct vsrc_options {
	uint64_t cluster;
	uint8_t replica_count;
	struct sockaddr_storage addrs[VSR_REPLICAS_MAX]; /* client ports, in member order */
	char names[VSR_REPLICAS_MAX][64];                /* "host:port", for messages */
	uint32_t message_bytes_max;                      /* largest frame body accepted */
	vsrc_timing timing;
	/* The cluster's client key (config auth.client_key): connections prove
	 * they hold it and seal every frame (docs/wire.md section 6). */
	bool has_key;
	uint8_t key[VSR_WIRE_KEY_SIZE];
} vsrc_options;

/* Fills `o` from a cluster config file (vsrh_config_load): the `clients`
 * addresses, the cluster id, limits.message_bytes and auth.client_key. Returns 0, or -1 with a
 * message in err (the config's own "file: key: ..." text). */
int vsrc_options_from_config(vsrc_options *o, const char *config_path,
			     char *err, size_t err_len);
/* Reads the client key from `path` into `o` (see vsrhost keygen). Returns 0,
 * or -1 with a sentence in err. */
int vsrc_options_set_key_file(vsrc_options *o, const char *path, char *err, size_t err_len);
/* Fills `o` from a list of "host:port" client addresses. */
int vsrc_options_from_addresses(vsrc_options *o, uint64_t cluster,
				const char *const *addresses, uint32_t count,
				char *err, size_t err_len);

/* The result of one call, valid during the callback only. */
typedef struct vsrc_result {
	int outcome;            /* enum vsrc_outcome */
	int status;             /* enum vsr_reply_status of the deciding reply, or -1 */
	const char *reason;     /* NULL when DONE; else a full sentence */
	const uint8_t *reply;   /* DONE: the state machine's reply; ERROR: its message */
	size_t reply_len;
	uint64_t session;
	uint64_t request;       /* the request number used */
	uint64_t op;            /* DONE: log position that executed it */
	uint8_t replica;        /* DONE: the replica that answered */
	uint8_t read_mode;      /* a query's: the mode it was answered in
	                           (VSR_READ_STALE: may miss committed ops) */
} vsrc_result;

typedef struct vsrc_client vsrc_client;

typedef void (*vsrc_call_cb)(vsrc_client *c, const vsrc_result *r, void *arg);
typedef void (*vsrc_closed_cb)(void *arg); /* the client is already freed */

/* Creates a session on `loop`; nothing is sent until the first call. */
int vsrc_client_create(uv_loop_t *loop, const vsrc_options *o, vsrc_client **out);

/* Starts one call: `op` (copied) is sent as a state-machine operation. `cb`
 * runs exactly once, from the loop, never from inside this function; it may
 * start the next call. Returns 0, or -1 when a call is already in progress
 * or the client is closing (cb then never runs). */
int vsrc_client_call(vsrc_client *c, const uint8_t *op, size_t op_len,
		     vsrc_call_cb cb, void *arg);

/* Starts a read-only query outside the log (docs/wire.md 6.7) in read mode
 * `mode` (enum vsr_read_mode); `op` is a read operation of the state
 * machine (its query hook answers it). Needs no registered session. Same
 * contract as vsrc_client_call; r->op is the op the answer reflects and
 * r->read_mode the mode it was answered in. */
int vsrc_client_query(vsrc_client *c, uint8_t mode, const uint8_t *op, size_t op_len,
		      vsrc_call_cb cb, void *arg);

/* Changes the timeouts of the calls that start after this one. */
void vsrc_client_set_timing(vsrc_client *c, const vsrc_timing *t);

/* True while a call is in progress. */
bool vsrc_client_busy(const vsrc_client *c);
/* The session id (0 before registration). */
uint64_t vsrc_client_session(const vsrc_client *c);

/* Closes every handle; a call in progress completes first (with the outcome
 * its copies allow). `cb` runs once every handle is closed, then the memory
 * is freed. */
void vsrc_client_close(vsrc_client *c, vsrc_closed_cb cb, void *arg);

/* ------------------------------------------------------------------------ */
/* Blocking wrapper: one session on a private loop (vsrctl, the Lua module). */

typedef struct vsrc_sync vsrc_sync;

/* A blocking result: owned copies, valid until the next call or close. */
typedef struct vsrc_sync_result {
	int outcome;
	int status;
	char reason[256];
	uint8_t *reply;
	size_t reply_len;
	uint64_t session;
	uint64_t request;
	uint64_t op;
	uint8_t read_mode;      /* a query's */
} vsrc_sync_result;

int vsrc_sync_open(const vsrc_options *o, vsrc_sync **out);
/* Runs the call to completion. Returns the outcome. */
int vsrc_sync_call(vsrc_sync *s, const uint8_t *op, size_t op_len,
		   const vsrc_sync_result **out);
/* A query (vsrc_client_query), run to completion. */
int vsrc_sync_query(vsrc_sync *s, uint8_t mode, const uint8_t *op, size_t op_len,
		    const vsrc_sync_result **out);
uint64_t vsrc_sync_session(const vsrc_sync *s);
void vsrc_sync_set_timing(vsrc_sync *s, const vsrc_timing *t);
void vsrc_sync_close(vsrc_sync *s);

/* ------------------------------------------------------------------------ */
/* Status of every replica (vsrctl status), over control connections. */

typedef struct vsrc_status_entry {
	int ok;                  /* 1: `status` is valid; 0: see error */
	char error[160];
	vsr_wire_status status;
	/* The replica's configuration fingerprint, from its HELLO (0: it sent
	 * none); replicas that differ here refuse each other. */
	uint64_t config;
} vsrc_status_entry;

/* Asks every replica at once and waits up to timeout_ms for all answers. */
void vsrc_status_query(const vsrc_options *o, uint32_t timeout_ms,
		       vsrc_status_entry out[VSR_REPLICAS_MAX]);

#endif /* VSRC_CLIENT_H */
