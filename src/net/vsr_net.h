/* vsr_net.h - the libuv transport of one replica: peer connections, client listener, bounded queues.
 *
 * Topology (chosen for simplicity, documented in docs/operations.md): every
 * replica dials every other replica and uses that OUTGOING connection only
 * to send; what it receives arrives on connections the others dialled to its
 * replica listener. Two one-way connections per pair, so there is nothing to
 * deduplicate and no race between two dials. Both ends send HELLO first
 * (vsr_wire.h); an inbound replica connection is attributed to the replica
 * its HELLO names, and a message whose sender field differs is refused.
 *
 * Outgoing connections reconnect on a timer with exponential backoff. Each
 * connection's pending writes are bounded (messages and bytes): a message
 * that does not fit, or that finds its peer disconnected, is dropped and
 * counted, because the protocol retransmits whatever matters. A peer that
 * vanished without a reset is detected by TCP_USER_TIMEOUT (10 s), not by
 * its queue filling: a full queue is more often a peer that stalled briefly.
 *
 * Clients connect to a separate listener. Each accepted connection gets an
 * opaque u64 id (slot and generation, never reused while the process runs)
 * that the host passes to the core as VSR_EVENT_REQUEST.conn and gets back
 * in VSR_ACTION_REPLY; a reply for a connection that has gone is dropped.
 *
 * Any malformed frame, a frame before HELLO, or a frame the role may not
 * send closes that connection and is counted; the replica keeps serving. */
#ifndef VSR_NET_H
#define VSR_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "vsr.h"
#include "vsr_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Client connections open at once (each holds a slot of the id table). */
#define VSR_NET_CLIENTS_MAX 4096u
/* Inbound replica-port connections open at once, identified or not. */
#define VSR_NET_PEER_INBOUND_MAX 64u
/* Connections per port that have not yet identified (and, with a key,
 * authenticated) themselves. One more evicts the oldest of them if it has
 * been silent for a second, so that connections opened and left silent
 * cannot keep a replica (or a client) out: a real peer finishes its
 * handshake in a round trip. */
#define VSR_NET_UNIDENTIFIED_MAX 8u

typedef struct vsr_net vsr_net;

typedef struct vsr_net_address {
	const char *host; /* numeric address or a name (resolved once, at start) */
	uint16_t port;
} vsr_net_address;

/* Log levels as in vsrh_config.h: 0 debug, 1 info, 2 warn, 3 error. */
typedef void (*vsr_net_log_fn)(void *data, int level, const char *msg);
/* A core message from replica `m->replica` (already checked against HELLO). */
typedef void (*vsr_net_peer_message_fn)(vsr_net *net, const vsr_message *m);
/* A client REQUEST on connection `conn`. */
typedef void (*vsr_net_request_fn)(vsr_net *net, uint64_t conn, const vsr_message *m);
/* A STATUS_REQUEST on connection `conn`: answer with vsr_net_reply_status. */
typedef void (*vsr_net_status_fn)(vsr_net *net, uint64_t conn, uint64_t nonce);

typedef struct vsr_net_options {
	uv_loop_t *loop;
	uint64_t cluster;
	uint8_t replica;
	uint8_t replica_count;
	vsr_net_address replicas[VSR_REPLICAS_MAX]; /* listener of each replica */
	vsr_net_address client;                     /* this replica's client listener */
	uint32_t body_bytes_max;       /* largest frame body accepted (0: wire maximum) */
	uint32_t queue_messages_max;   /* pending writes per connection (0: 16384) */
	uint64_t queue_bytes_max;      /* pending bytes per connection (0: 64 MiB) */
	uint32_t clients_max;          /* client connections (0: 1024, <= VSR_NET_CLIENTS_MAX) */
	uint32_t reconnect_min_ms;     /* first retry after a failed dial (0: 50) */
	uint32_t reconnect_max_ms;     /* backoff ceiling (0: 1000) */
	uint32_t hello_timeout_ms;     /* an accepted connection silent this long is closed (0: 10000) */
	uint32_t frame_timeout_ms;     /* a frame begun must be whole within this (0: 10000) */
	/* A connection silent (or stuck in a frame) this long may be evicted
	 * for a newer one; younger ones never are, since a burst of clients
	 * connecting at once is no attack (0: 1000). */
	uint32_t evict_silent_ms;
	uint64_t instance;             /* random per process start, sent in HELLO */
	/* Authentication (docs/wire.md section 6): when set, every connection
	 * of that port must prove it holds the key before anything else is
	 * accepted from it, and every frame after that is sealed. The replica
	 * key also authenticates this replica's own dials. NULL: no
	 * authentication on that port. */
	const uint8_t *replica_key;    /* VSR_WIRE_KEY_SIZE bytes, or NULL */
	const uint8_t *client_key;     /* VSR_WIRE_KEY_SIZE bytes, or NULL */
	/* The configuration fingerprint (docs/config.md, "Identical on every
	 * replica"), sent in every HELLO: a replica whose fingerprint differs
	 * in a part both know is refused on either connection, logged (once
	 * per peer and fingerprint, naming the parts that differ) and counted
	 * (config_mismatches); nothing is sent to or accepted from it. NULL /
	 * 0: no fingerprint, nothing checked. */
	const uint64_t *config;
	uint8_t config_count;
	vsr_net_peer_message_fn peer_message_cb;
	vsr_net_request_fn request_cb;
	vsr_net_status_fn status_cb;
	vsr_net_log_fn log;
	void *data;                    /* for the callbacks: vsr_net_data() */
} vsr_net_options;

typedef struct vsr_net_stats {
	uint64_t peer_connects;          /* outgoing dials that succeeded */
	uint64_t peer_connect_failures;
	uint64_t peer_disconnects;
	uint64_t sends_dropped_disconnected; /* peer not connected */
	uint64_t sends_dropped_full;         /* queue bound reached */
	uint64_t replies_dropped;            /* client gone or its queue full */
	uint64_t connections_refused;        /* over a connection limit */
	uint64_t protocol_errors;            /* frames before HELLO, wrong role, spoofed sender */
	uint64_t frames_malformed;           /* wire layer refused a frame */
	uint64_t auth_failures;              /* no key, a wrong key or a forged frame */
	uint64_t auth_timeouts;              /* not authenticated within hello_timeout_ms */
	uint64_t frame_timeouts;             /* a frame begun and not finished in time */
	uint64_t connections_evicted;        /* unidentified, closed for a newer connection */
	uint64_t connections_replaced;       /* a replica's older inbound connection */
	uint64_t clients_accepted;
	uint64_t peer_link_stalls;           /* replica links redialled: retransmissions unanswered */
	uint64_t peer_dial_timeouts;         /* dials given up unanswered, tried again */
	uint64_t config_mismatches;          /* replica connections refused: fingerprint differs */
	uint64_t accepts_deferred;           /* accepts put off for want of memory (tried again) */
	uint32_t connections;                /* open now, all kinds */
	vsr_wire_stats wire;                 /* frames and bytes, drops per reason */
} vsr_net_stats;

/* Binds both listeners, starts dialling the peers. Returns 0 or a negative
 * libuv / vsr error with a sentence in err. On failure nothing is left open
 * except what vsr_net_close() must still release (*out is then set). */
int vsr_net_start(const vsr_net_options *opts, vsr_net **out, char *err, size_t err_len);

/* Encodes `m` and queues it on the outgoing connection to replica `to`. */
void vsr_net_send(vsr_net *net, uint8_t to, const vsr_message *m);
/* Encodes a REPLY and queues it on client connection `conn`. */
void vsr_net_reply(vsr_net *net, uint64_t conn, const vsr_message *m);
void vsr_net_reply_status(vsr_net *net, uint64_t conn, const vsr_wire_status *s);

/* Submits every queued frame now. The net does this itself once per loop
 * iteration, right before the loop waits (a prepare handle); a caller that
 * has more to do in that phase calls it first, so that nothing it does
 * delays what was queued. */
void vsr_net_flush(vsr_net *net);

/* Closes every connection, listener and timer; cb runs once all handles
 * are closed and the net is freed. */
typedef void (*vsr_net_close_cb)(void *data);
void vsr_net_close(vsr_net *net, vsr_net_close_cb cb);

/* Stops (paused) or resumes reading on every connection, present and
 * future: the host's backpressure when storage falls behind. Frames already
 * read keep arriving until the current read is consumed (at most one read
 * buffer, 64 KiB, per connection). Sends and accepts go on. */
void vsr_net_pause(vsr_net *net, bool paused);
/* The replica's cluster history, sent in the HELLO of every new connection
 * (0 until it joins one). */
void vsr_net_set_history(vsr_net *net, uint64_t history);
bool vsr_net_paused(const vsr_net *net);

void *vsr_net_data(const vsr_net *net);
const vsr_net_stats *vsr_net_stats_get(const vsr_net *net);
/* Is the outgoing connection to replica `to` up and accepted (its HELLO, key and
 * configuration checked)? */
bool vsr_net_peer_connected(const vsr_net *net, uint8_t to);
/* Peers whose configuration fingerprint was found equal to this replica's
 * since it started (all of them when no fingerprint is configured): with
 * itself, a quorum of them confirms that this replica runs the cluster's
 * configuration. */
unsigned vsr_net_config_confirmed(const vsr_net *net);

#ifdef __cplusplus
}
#endif

#endif /* VSR_NET_H */
