/* vsr_wire.h - the wire format: checksummed, length-prefixed msgpack frames.
 *
 * Every message between replicas, and between clients and replicas, travels
 * as one frame: a fixed 40-byte little-endian header followed by a msgpack
 * body. docs/wire.md is the normative description (byte layout, the msgpack
 * shape of every type, the client protocol); this header is its C binding.
 *
 *   offset size field
 *        0    4 magic "VSRW" (0x56 0x53 0x52 0x57)
 *        4    1 version (VSR_WIRE_VERSION)
 *        5    1 flags (must be 0 in version 1)
 *        6    1 type (enum vsr_message_type 1..15, or enum vsr_wire_type 64..)
 *        7    1 reserved (must be 0)
 *        8    4 body_len (u32, bytes of msgpack after the header)
 *       12    4 reserved (must be 0)
 *       16    8 cluster (u64)
 *       24    8 body_checksum (u64, XXH3-64 of the body, seed 0)
 *       32    8 header_checksum (u64, XXH3-64 of bytes 0..31, seed 0)
 *
 * Safety contract (what a replica relies on when a peer is broken or hostile):
 * - The header is validated in full (magic, header checksum, version, flags,
 *   reserved bytes, cluster, type, body_len <= configured maximum) before a
 *   single byte is allocated for the body.
 * - The body is validated before any msgpack-c allocation: every array length
 *   is checked against the bytes that remain, nesting is limited, and only the
 *   msgpack types the format uses are accepted (integers, bin, str, arrays). Decoding memory is therefore
 *   bounded by a small constant times body_len.
 * - After decoding, every field's type and range is checked per message type,
 *   then vsr_message_invalid() from the core.
 * - Every failure is a negative vsr_wire reason with a detail string; the
 *   caller closes that connection and counts the reason. Nothing aborts.
 *
 * Body of a core message (types 1..15): one msgpack array of 21 elements,
 *   [replica, status, epoch, view, log_view, op, commit, checksum, nonce,
 *    timestamp, session, request, kind, op_bytes(bin), reply_op, body(bin),
 *    entries(array), checkpoint_op, checkpoint_size, offset, history]
 * i.e. every vsr_message field in struct order (request flattened), the
 * history last; fields a type does not use are 0 / empty. An entry is [checksum, parent, op, view,
 * timestamp, request_count, body(bin)]. Host types have their own shapes.
 *
 * Ownership: a decoded message's pointers (entries, entry bodies, request op,
 * reply/chunk body) point into memory owned by the vsr_wire_decoded object and
 * stay valid until vsr_wire_decoded_free().
 */
#ifndef VSR_WIRE_H
#define VSR_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Frame constants.                                                         */

#define VSR_WIRE_MAGIC0 0x56u /* 'V' */
#define VSR_WIRE_MAGIC1 0x53u /* 'S' */
#define VSR_WIRE_MAGIC2 0x52u /* 'R' */
#define VSR_WIRE_MAGIC3 0x57u /* 'W' */
#define VSR_WIRE_VERSION 2u
#define VSR_WIRE_HEADER_SIZE 40u
/* Largest body any build accepts; a host configures a smaller maximum
 * (config limits.message_bytes). */
#define VSR_WIRE_BODY_BYTES_MAX VSR_MESSAGE_BYTES_MAX
/* Bytes of a CLOSE reason (excluding the terminating NUL kept in C). */
#define VSR_WIRE_REASON_MAX 255u
/* Authentication (docs/wire.md section 6): a 32-byte shared key, 32-byte
 * HELLO nonces, a 32-byte AUTH proof, and after AUTH a 16-byte MAC behind
 * every frame, announced by the header's MAC flag. */
#define VSR_WIRE_KEY_SIZE 32u
#define VSR_WIRE_NONCE_SIZE 32u
/* Parts a HELLO's configuration fingerprint may carry (more are refused). */
#define VSR_WIRE_CONFIG_PARTS_MAX 16u
#define VSR_WIRE_PROOF_SIZE 32u
#define VSR_WIRE_MAC_SIZE 16u
#define VSR_WIRE_FLAG_MAC 0x01u
/* Nesting depth of any body: top array > entries array > entry array. */
#define VSR_WIRE_DEPTH_MAX 3u

_Static_assert(VSR_WIRE_BODY_BYTES_MAX <= UINT32_MAX, "body_len is a u32");

/* Host-level message types: not the core's. Numbers from 64 up so they can
 * never collide with enum vsr_message_type. */
enum vsr_wire_type {
	VSR_WIRE_HELLO = 64,          /* first frame on every connection, both ways */
	VSR_WIRE_PING = 65,           /* liveness / round-trip probe */
	VSR_WIRE_PONG = 66,           /* answer to PING, echoes nonce and time */
	VSR_WIRE_STATUS_REQUEST = 67, /* vsrctl status */
	VSR_WIRE_STATUS_REPLY = 68,
	VSR_WIRE_CLOSE = 69,          /* last frame before a deliberate close: why */
	VSR_WIRE_AUTH = 70,           /* proof of the shared key, after both HELLOs */
	VSR_WIRE_TYPE_END
};

/* Is `type` one the wire format knows (core 1..15 or host 64..70)? */
bool vsr_wire_type_known(uint8_t type);
/* Name of a core or host type ("PREPARE", "HELLO"), or "UNKNOWN". */
const char *vsr_wire_type_name(uint8_t type);

/* ------------------------------------------------------------------------ */
/* Host-level messages.                                                     */

enum vsr_wire_role {
	VSR_WIRE_ROLE_REPLICA = 0, /* a replica on the replica port */
	VSR_WIRE_ROLE_CLIENT = 1,  /* a client (library, vsrbench) on the client port */
	VSR_WIRE_ROLE_CONTROL = 2, /* an operator tool (vsrctl): status, ping only */
	VSR_WIRE_ROLE_COUNT
};

/* HELLO: says who the sender is. Sent first by both ends of every
 * connection; anything else before it closes the connection. */
typedef struct vsr_wire_hello {
	uint8_t role;      /* enum vsr_wire_role */
	uint8_t replica;   /* ROLE_REPLICA: sender's index; otherwise 0 */
	uint64_t instance; /* random per process start: tells a restart from a reconnect */
	uint64_t history;  /* the sender's cluster history when it sent this (0:
	                      unjoined, or a client); informational: messages
	                      and client requests carry their own */
	/* Authenticated connections (section 6 of docs/wire.md): a fresh random
	 * challenge for the other end; an empty byte string when the sender
	 * has no key. */
	bool has_nonce;
	uint8_t nonce[VSR_WIRE_NONCE_SIZE];
	/* Appended field 5: the sender's configuration fingerprint, one u64
	 * per part (enum vsr_wire_config_part; docs/wire.md 5.1). A replica
	 * sends it; a client or control tool sends none (config_count 0, the
	 * field left out), as does a replica of an older build. */
	uint8_t config_count;
	uint64_t config[VSR_WIRE_CONFIG_PARTS_MAX];
} vsr_wire_hello;

/* The parts of a configuration fingerprint, in HELLO order: what must be
 * identical on every replica of a cluster (docs/config.md, "Identical on
 * every replica"). A part is appended, never redefined: a receiver compares
 * the parts both ends know, so builds can be mixed while a cluster is
 * upgraded one replica at a time. */
enum vsr_wire_config_part {
	VSR_WIRE_CONFIG_STATEMACHINE = 0, /* the script's name and bytes, and modules it requires */
	VSR_WIRE_CONFIG_DEDUP = 1,        /* the dedup policy script */
	VSR_WIRE_CONFIG_LIMITS = 2,       /* every key of `limits` */
	VSR_WIRE_CONFIG_MEMBERS = 3,      /* cluster id, replica count, replica addresses */
	VSR_WIRE_CONFIG_DURABILITY = 4,   /* `durability` */
	VSR_WIRE_CONFIG_READS = 5,        /* lease reads: drift bound, and the timeouts it relies on */
	VSR_WIRE_CONFIG_REPLICAS = 6,     /* the replica count itself, not a digest (also in
	                                     MEMBERS): a data directory's record names the
	                                     count it was written under */
	VSR_WIRE_CONFIG_PARTS
};

/* The fingerprint shown to operators: XXH3-64 of the parts (each 8 bytes,
 * little endian). 0 when there are none. */
uint64_t vsr_wire_config_fingerprint(const uint64_t *parts, uint8_t count);
/* "state machine script", "limits", ... ("part N" past the known ones). */
const char *vsr_wire_config_part_name(unsigned part);
/* Compares the parts both ends have. Returns a mask of those that differ
 * (bit i: part i; 0: the same) and writes into `why` which ones, each with
 * both values, e.g.
 * "state machine script differs (ours 1a2b..., theirs 3c4d...)". */
uint32_t vsr_wire_config_compare(const uint64_t *ours, uint8_t ours_count,
				 const uint64_t *theirs, uint8_t theirs_count, char *why,
				 size_t why_len);

/* AUTH: the sender proves it holds the key, bound to both HELLO nonces. */
typedef struct vsr_wire_auth {
	uint8_t proof[VSR_WIRE_PROOF_SIZE];
} vsr_wire_auth;

/* PING and PONG. */
typedef struct vsr_wire_ping {
	uint64_t nonce;
	uint64_t time_ns; /* sender's clock; PONG echoes the PING's value */
} vsr_wire_ping;

/* STATUS_REQUEST. */
typedef struct vsr_wire_status_request {
	uint64_t nonce;
} vsr_wire_status_request;

/* STATUS_REPLY: one replica's view of itself (vsr_replica_info plus counters). */
typedef struct vsr_wire_status {
	uint64_t nonce;           /* echoes the request */
	uint8_t replica;
	uint8_t replica_count;
	uint8_t status;           /* enum vsr_status */
	uint8_t primary;          /* primary(view) */
	uint64_t view;
	uint64_t log_view;
	uint64_t op;
	uint64_t commit;
	uint64_t executed;
	uint64_t checkpoint_op;
	uint64_t digest;
	uint32_t pipeline;
	uint32_t queued;
	uint32_t sessions;
	uint32_t connections;     /* open connections at the host */
	uint64_t uptime_ms;
	uint64_t ops_committed;
	uint64_t view_changes;
	uint64_t messages_dropped;
	uint64_t frames_dropped;  /* sum of vsr_wire_stats.dropped */
	uint64_t state_transfers;
	uint64_t checkpoints;
	uint64_t requests_deduplicated;
	uint64_t sessions_evicted;
	uint64_t history;         /* the replica's cluster history (0: unjoined) */
	uint64_t step_age_ms;     /* since the replica's last protocol step */
	uint64_t progress_age_ms; /* since its executed op last advanced (or it started) */
} vsr_wire_status;

/* CLOSE: the sender is about to close the connection, and why. */
typedef struct vsr_wire_close {
	uint8_t reason;                       /* enum vsr_wire_reason, or 0 */
	char text[VSR_WIRE_REASON_MAX + 1];   /* NUL-terminated, UTF-8 */
} vsr_wire_close;

/* ------------------------------------------------------------------------ */
/* Errors: one reason per way a frame can be refused. Functions return 0 or
 * -reason; stats count per reason.                                          */

#define VSR_WIRE_REASONS(X)                                                    \
	X(VSR_WIRE_EMAGIC, 1, "bad magic (not a vsrhost frame)")                   \
	X(VSR_WIRE_EHEADER_CHECKSUM, 2, "header checksum mismatch")                \
	X(VSR_WIRE_EVERSION, 3, "unsupported protocol version")                    \
	X(VSR_WIRE_EFLAGS, 4, "unknown flags or non-zero reserved bytes")          \
	X(VSR_WIRE_ECLUSTER, 5, "frame from a foreign cluster")                    \
	X(VSR_WIRE_ETYPE, 6, "unknown message type")                               \
	X(VSR_WIRE_ETOOBIG, 7, "body length exceeds the configured maximum")       \
	X(VSR_WIRE_EBODY_CHECKSUM, 8, "body checksum mismatch")                    \
	X(VSR_WIRE_ETRUNCATED, 9, "truncated frame or msgpack value")              \
	X(VSR_WIRE_ETRAILING, 10, "trailing bytes after the msgpack body")         \
	X(VSR_WIRE_EMSGPACK, 11, "malformed or disallowed msgpack")                \
	X(VSR_WIRE_ESHAPE, 12, "wrong msgpack shape for the message type")         \
	X(VSR_WIRE_ERANGE, 13, "field value out of range")                         \
	X(VSR_WIRE_ELIMIT, 14, "array or bytes exceed a limit")                    \
	X(VSR_WIRE_EINVALID, 15, "message rejected by the protocol core")          \
	X(VSR_WIRE_ENOMEM, 16, "out of memory")                                    \
	X(VSR_WIRE_EMAC, 17, "message authentication failed (wrong key, tampered or replayed)")

enum vsr_wire_reason {
	VSR_WIRE_OK = 0,
#define VSR_WIRE_REASON_ENUM(name, code, text) name = code,
	VSR_WIRE_REASONS(VSR_WIRE_REASON_ENUM)
#undef VSR_WIRE_REASON_ENUM
	VSR_WIRE_REASON_COUNT
};

/* Text of a reason; accepts reason or -reason. */
const char *vsr_wire_strerror(int code);
/* Short stable identifier of a reason ("bad_magic", ...), for metric labels. */
const char *vsr_wire_reason_label(int code);

/* Counters a host exports; one struct per host (or per connection, summed). */
typedef struct vsr_wire_stats {
	uint64_t frames_in;       /* frames accepted */
	uint64_t bytes_in;        /* bytes fed to readers */
	uint64_t frames_out;      /* frames encoded */
	uint64_t bytes_out;
	uint64_t dropped[VSR_WIRE_REASON_COUNT]; /* index: reason; [0] unused */
} vsr_wire_stats;

/* Sum of stats->dropped. */
uint64_t vsr_wire_stats_dropped(const vsr_wire_stats *stats);
/* Adds every counter of `from` into `into`. */
void vsr_wire_stats_add(vsr_wire_stats *into, const vsr_wire_stats *from);

/* ------------------------------------------------------------------------ */
/* Limits a decoder enforces. One per host, from its configuration.          */

typedef struct vsr_wire_config {
	uint64_t cluster;        /* frames with another cluster id are refused */
	uint32_t body_bytes_max; /* <= VSR_WIRE_BODY_BYTES_MAX; 0 means that */
	uint32_t entries_max;    /* entries in one message; 0 means VSR_LOG_MAX */
	uint8_t replica_count;   /* for replica index ranges and vsr_message_invalid */
} vsr_wire_config;

/* Fills `c` with defaults: maxima from vsr_limits.h. */
void vsr_wire_config_default(vsr_wire_config *c, uint64_t cluster,
			     uint8_t replica_count);

/* ------------------------------------------------------------------------ */
/* Encoding: appends one whole frame to `out` (a vsr_buf; grown with
 * realloc, release it with vsr_buf_free or free(out->data)). On error `out`
 * is left as it was. Returns 0, -VSR_WIRE_ENOMEM, or -VSR_WIRE_ERANGE /
 * -VSR_WIRE_ELIMIT / -VSR_WIRE_ESHAPE when the message could not be decoded
 * by a peer (e.g. entries on a type that carries none, a body too large). */

int vsr_wire_encode_message(vsr_buf *out, uint64_t cluster, const vsr_message *m);
int vsr_wire_encode_hello(vsr_buf *out, uint64_t cluster, const vsr_wire_hello *h);
/* type: VSR_WIRE_PING or VSR_WIRE_PONG. */
int vsr_wire_encode_ping(vsr_buf *out, uint64_t cluster, uint8_t type,
			 const vsr_wire_ping *p);
int vsr_wire_encode_status_request(vsr_buf *out, uint64_t cluster,
				   const vsr_wire_status_request *s);
int vsr_wire_encode_status(vsr_buf *out, uint64_t cluster, const vsr_wire_status *s);
/* text may be NULL; it is cut at VSR_WIRE_REASON_MAX bytes. */
int vsr_wire_encode_close(vsr_buf *out, uint64_t cluster, uint8_t reason,
			  const char *text);

/* ------------------------------------------------------------------------ */
/* Decoding.                                                                */

/* The parsed, validated header of one frame. */
typedef struct vsr_wire_header {
	uint8_t version;
	uint8_t flags;
	uint8_t type;
	uint32_t body_len;
	uint64_t cluster;
	uint64_t body_checksum;
} vsr_wire_header;

/* Validates the first VSR_WIRE_HEADER_SIZE bytes of a frame against `c`.
 * Returns 0 or -reason; err (may be NULL) receives a detail. */
int vsr_wire_header_parse(const uint8_t *data, const vsr_wire_config *c,
			  vsr_wire_header *out, char *err, size_t err_len);

/* One decoded, validated frame. `type` says which member is meaningful:
 * core types fill `message` (its cluster from the header), host types their
 * struct. Zero-initialise (or vsr_wire_decoded_init) before first use;
 * decoding into an object that holds a frame frees that frame first. */
typedef struct vsr_wire_decoded {
	uint8_t type;
	vsr_wire_header header;
	vsr_message message;
	vsr_wire_hello hello;
	vsr_wire_ping ping;       /* PING and PONG */
	vsr_wire_status_request status_request;
	vsr_wire_status status;
	vsr_wire_close close;
	vsr_wire_auth auth;
	/* Owned memory: the body bytes that message pointers reference, and the
	 * entries array. Private: release with vsr_wire_decoded_free. */
	uint8_t *owned_body;
	vsr_entry *owned_entries;
} vsr_wire_decoded;

void vsr_wire_decoded_init(vsr_wire_decoded *d);
void vsr_wire_decoded_free(vsr_wire_decoded *d);

/* Decodes one whole frame at the start of data[0..len). On success returns 0
 * and sets *frame_len (may be NULL) to the bytes the frame occupies; the
 * result copies what it needs, so `data` may be released afterwards.
 * Returns -VSR_WIRE_ETRUNCATED when len is shorter than the frame.
 * Counts the outcome in `stats` when not NULL. */
int vsr_wire_decode(const uint8_t *data, size_t len, const vsr_wire_config *c,
		    vsr_wire_decoded *out, size_t *frame_len, vsr_wire_stats *stats,
		    char *err, size_t err_len);

/* Decodes a body already checked against `h` (checksum included). Takes
 * ownership of `body` (malloc'd, h->body_len bytes) whatever the outcome. */
int vsr_wire_decode_body(const vsr_wire_header *h, uint8_t *body,
			 const vsr_wire_config *c, vsr_wire_decoded *out,
			 char *err, size_t err_len);

/* ------------------------------------------------------------------------ */
/* Streaming reader: turns arbitrary byte chunks from a socket into frames.
 *
 * Buffers at most one frame: the 40 header bytes, then, only once the header
 * is valid, the body: 64 KiB first, doubling as bytes arrive, never more than
 * body_len (so memory follows what the peer actually sent). Typical use in a libuv
 * read callback:
 *
 *   size_t off = 0;
 *   while (off < nread) {
 *       size_t used;
 *       int rc = vsr_wire_reader_feed(&r, buf + off, nread - off, &used);
 *       off += used;
 *       if (rc == 0)
 *           break;                        all consumed, frame incomplete
 *       if (rc == 1)
 *           rc = vsr_wire_reader_decode(&r, &decoded);
 *       if (rc < 0) {
 *           log(r.err); close the connection; break;
 *       }
 *       handle(&decoded);                 rc == 0: one whole, valid frame
 *   }
 *
 * After an error the reader refuses every further byte with the same error. */
typedef struct vsr_wire_reader {
	vsr_wire_config config;
	vsr_wire_stats *stats;          /* may be NULL; counts frames and drops */
	uint8_t header_bytes[VSR_WIRE_HEADER_SIZE];
	uint32_t header_have;
	vsr_wire_header header;         /* valid once header_have == HEADER_SIZE */
	uint8_t *body;                  /* allocated after the header validated */
	uint32_t body_have;
	uint32_t body_cap;              /* bytes allocated at body */
	bool frame_ready;               /* a whole, checksummed frame is held */
	/* Authenticated reading (vsr_wire_reader_expect_mac): every frame must
	 * carry the MAC flag and a MAC under `mac_key` and the next sequence
	 * number; before that, a frame with the flag is refused. */
	bool mac_on;
	uint8_t mac_key[VSR_WIRE_KEY_SIZE];
	uint64_t mac_seq;               /* sequence number of the next frame */
	uint32_t mac_have;              /* MAC bytes of the current frame read */
	uint8_t mac_bytes[VSR_WIRE_MAC_SIZE];
	int error;                      /* 0, or the -reason that killed it */
	char err[160];                  /* detail of the last error */
} vsr_wire_reader;

void vsr_wire_reader_init(vsr_wire_reader *r, const vsr_wire_config *c,
			  vsr_wire_stats *stats);
void vsr_wire_reader_free(vsr_wire_reader *r);

/* Consumes bytes from data[0..len) until one frame is complete or the input
 * ends; *used receives how many were consumed. Returns 1 when a frame is
 * ready (call vsr_wire_reader_decode before feeding more; feeding discards
 * an unclaimed frame), 0 when every byte was consumed and more are
 * needed, or -reason on a malformed frame (close the connection). */
int vsr_wire_reader_feed(vsr_wire_reader *r, const uint8_t *data, size_t len,
			 size_t *used);

/* Decodes the ready frame into `out` (moving the body, no copy). Returns 0 or
 * -reason (also recorded in r->error: the connection must be closed). */
int vsr_wire_reader_decode(vsr_wire_reader *r, vsr_wire_decoded *out);

/* From the next frame on, every frame read must be sealed under `key` with
 * consecutive sequence numbers from 0 (see vsr_wire_seal). */
void vsr_wire_reader_expect_mac(vsr_wire_reader *r, const uint8_t key[VSR_WIRE_KEY_SIZE]);

/* ------------------------------------------------------------------------ */
/* Authentication (vsr_wire_auth.c, libsodium). The shared key K authenticates
 * both ends of a connection; each end then seals its frames under its own
 * direction key, derived from K and both nonces, so a frame cannot be
 * replayed into another connection, reordered or dropped unnoticed. */

/* The HELLO + AUTH exchange of one connection, from one end's side. */
typedef struct vsr_wire_handshake {
	uint8_t key[VSR_WIRE_KEY_SIZE];
	uint64_t cluster;
	uint8_t my_role, my_replica;
	uint8_t my_nonce[VSR_WIRE_NONCE_SIZE];
	uint8_t peer_nonce[VSR_WIRE_NONCE_SIZE];
	bool have_peer_nonce;
	uint8_t send_key[VSR_WIRE_KEY_SIZE]; /* valid once have_peer_nonce */
	uint8_t recv_key[VSR_WIRE_KEY_SIZE];
	uint64_t send_seq;                   /* next frame this end seals */
} vsr_wire_handshake;

/* Starts a handshake: draws this end's nonce. */
void vsr_wire_handshake_init(vsr_wire_handshake *hs, const uint8_t key[VSR_WIRE_KEY_SIZE],
			     uint64_t cluster, uint8_t role, uint8_t replica);
/* The other end's HELLO arrived: derives the direction keys and fills
 * `auth` with this end's proof, to be sent next. Returns 0, or -VSR_WIRE_EMAC
 * when the HELLO carries no nonce (the other end has no key). */
int vsr_wire_handshake_peer_hello(vsr_wire_handshake *hs, const vsr_wire_hello *peer,
				  vsr_wire_auth *auth);
/* The other end's AUTH arrived (after its HELLO): 0 when its proof is
 * right, -VSR_WIRE_EMAC otherwise. Constant time. */
int vsr_wire_handshake_check(const vsr_wire_handshake *hs, const vsr_wire_hello *peer,
			     const vsr_wire_auth *auth);
/* Seals the frame that starts at out->data + frame_start and runs to
 * out->len: sets the MAC flag (header checksum redone) and appends its MAC
 * under `key` and `seq`. Returns 0 or -VSR_WIRE_ENOMEM. */
int vsr_wire_seal(vsr_buf *out, size_t frame_start, const uint8_t key[VSR_WIRE_KEY_SIZE],
		  uint64_t seq);

int vsr_wire_encode_auth(vsr_buf *out, uint64_t cluster, const vsr_wire_auth *a);

/* The MAC of one frame (40 header bytes as sent, then the body) under a
 * direction key and the frame's sequence number on its connection. */
void vsr_wire_mac_compute(const uint8_t key[VSR_WIRE_KEY_SIZE], uint64_t seq,
			  const uint8_t *header, const uint8_t *body, uint32_t body_len,
			  uint8_t mac[VSR_WIRE_MAC_SIZE]);
/* Constant-time comparison against vsr_wire_mac_compute's result. */
bool vsr_wire_mac_verify(const uint8_t key[VSR_WIRE_KEY_SIZE], uint64_t seq,
			 const uint8_t *header, const uint8_t *body, uint32_t body_len,
			 const uint8_t mac[VSR_WIRE_MAC_SIZE]);

/* One connection's authentication, from one end, for the code that owns the
 * connection (transport, client library, tests). The order on the wire:
 *   both ends: HELLO (with a nonce when this end has a key)
 *   on the other end's HELLO: AUTH (this end's proof); every frame this end
 *     sends after AUTH is sealed
 *   on the other end's AUTH: checked; every frame read after it must be
 *     sealed
 * An end with a key accepts nothing but HELLO, AUTH and CLOSE until the
 * other end's AUTH checked out. */
typedef struct vsr_wire_conn_auth {
	bool required;          /* this end has a key: the other end must prove it has it too */
	bool sealing;           /* our AUTH is out: seal what follows */
	bool authenticated;     /* the other end's AUTH checked out */
	bool peer_hello_seen;
	vsr_wire_hello peer_hello;
	vsr_wire_handshake hs;
} vsr_wire_conn_auth;

/* key NULL: no authentication on this connection (everything passes). */
void vsr_wire_conn_auth_init(vsr_wire_conn_auth *a, const uint8_t *key, uint64_t cluster,
			     uint8_t role, uint8_t replica);
/* Encodes this end's HELLO (nonce added when a key is set) into out. */
int vsr_wire_conn_auth_send_hello(vsr_wire_conn_auth *a, vsr_buf *out, vsr_wire_hello h);
/* The other end's HELLO (already checked for role and index by the
 * caller): appends this end's AUTH to out and starts sealing. Returns 0, or
 * -VSR_WIRE_EMAC when the other end has no key, with err filled. */
int vsr_wire_conn_auth_peer_hello(vsr_wire_conn_auth *a, const vsr_wire_hello *h, vsr_buf *out,
				  char *err, size_t err_len);
/* The other end's AUTH: checks it and switches `reader` to sealed frames.
 * Returns 0 or -VSR_WIRE_EMAC (a wrong key, a replayed proof, an AUTH
 * before HELLO or a second one), with err filled. */
int vsr_wire_conn_auth_peer_auth(vsr_wire_conn_auth *a, const vsr_wire_auth *auth,
				 vsr_wire_reader *reader, char *err, size_t err_len);
/* May a frame other than HELLO, AUTH or CLOSE be accepted or sent now? */
bool vsr_wire_conn_auth_ready(const vsr_wire_conn_auth *a);
/* Seals the frame appended to out at frame_start, when sealing (no-op
 * otherwise). Returns 0 or -VSR_WIRE_ENOMEM. */
int vsr_wire_conn_auth_seal(vsr_wire_conn_auth *a, vsr_buf *out, size_t frame_start);

/* Reads a key file: 64 hexadecimal digits (surrounding white space allowed),
 * readable by its owner only. Returns 0, or -1 with a sentence in err. */
int vsr_wire_key_load(const char *path, uint8_t key[VSR_WIRE_KEY_SIZE], char *err,
		      size_t err_len);
/* Writes a new random key to `path` (mode 0600, refusing to overwrite).
 * Returns 0, or -1 with a sentence in err. */
int vsr_wire_key_generate(const char *path, char *err, size_t err_len);

/* Is a frame begun and not yet whole (a header or body byte read, the frame
 * not complete)? What a transport times out against a slow sender. */
bool vsr_wire_reader_partial(const vsr_wire_reader *r);

/* Bytes currently buffered (header + body), for tests and metrics. */
size_t vsr_wire_reader_buffered(const vsr_wire_reader *r);

#ifdef __cplusplus
}
#endif

#endif /* VSR_WIRE_H */
