/* vsr_limits.h - every hard limit of the protocol core, in one place.
 *
 * Configurable limits (vsr_config) must stay within these bounds; the
 * relations between them are asserted at compile time below. Units last. */
#ifndef VSR_LIMITS_H
#define VSR_LIMITS_H

/* Members of one cluster. The wire uses one byte for a replica index. */
#define VSR_REPLICAS_MAX 9u
/* Prepares in flight at the primary (VRR 6.2 pipelining). */
#define VSR_PIPELINE_MAX 64u
/* Requests in one log entry (VRR 6.2 batching). */
#define VSR_BATCH_REQUESTS_MAX 1024u
/* Bytes of one entry's body. */
#define VSR_BATCH_BYTES_MAX (1u << 20)
/* Bytes of one operation or one reply. An operation travels inside one
 * batch, with its request header. */
#define VSR_OP_BYTES_MAX ((1u << 20) - 64u)
/* Bytes of one reply, whatever the configuration: what a checkpoint's client
 * table may hold. A configuration's own limit (vsr_reply_bytes_max) is at most
 * this and fits its messages. */
#define VSR_REPLY_BYTES_MAX VSR_OP_BYTES_MAX
/* Upper bound of a message's frame header, fields and framing beyond its
 * byte payloads (a REPLY's body, a REQUEST's op). */
#define VSR_MESSAGE_WIRE_OVERHEAD 1024u
/* Sessions in the client table. */
#define VSR_CLIENTS_MAX 65536u
/* Waiters (connections) answered for one in-flight request. */
#define VSR_WAITERS_MAX 4u
/* Entries kept in memory, a power of two. */
#define VSR_LOG_MAX (1u << 20)
/* Bytes in one encoded message on the wire (entries + header). */
#define VSR_MESSAGE_BYTES_MAX (64u << 20)
/* Views and ops a message may name. Far beyond any real cluster's life, and
 * low enough that v + 1 and session ids (op << 11) never overflow. */
#define VSR_VIEW_MAX (1ull << 48)
#define VSR_OP_MAX (1ull << 48)
/* Upper bound of what one entry adds to an encoded message beyond its body
 * (header fields and framing), used to budget messages by bytes. */
#define VSR_ENTRY_WIRE_OVERHEAD 128u
/* Bytes of one checkpoint chunk. */
#define VSR_CHUNK_BYTES_MAX (4u << 20)

_Static_assert(VSR_REPLICAS_MAX < 256, "replica index must fit one byte");
_Static_assert(VSR_OP_BYTES_MAX + 21u <= VSR_BATCH_BYTES_MAX,
	       "the largest operation must fit a batch with its request header");
_Static_assert((VSR_LOG_MAX & (VSR_LOG_MAX - 1)) == 0, "log ring is a power of two");
_Static_assert(VSR_PIPELINE_MAX * 4 < VSR_LOG_MAX, "the log must hold several pipelines");
_Static_assert(VSR_BATCH_BYTES_MAX + 4096 < VSR_MESSAGE_BYTES_MAX,
	       "a PREPARE with a full batch must fit one message");
_Static_assert(VSR_CHUNK_BYTES_MAX + 4096 < VSR_MESSAGE_BYTES_MAX,
	       "a checkpoint chunk must fit one message");

#endif /* VSR_LIMITS_H */
