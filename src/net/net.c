/* net.c - libuv transport: listeners, peer dialling with backoff, framed reads, bounded writes.
 *
 * Happy path: vsr_net_start binds the replica and client listeners and dials
 * every peer. A dial that connects sends HELLO and becomes the peer's send
 * path. Every accepted connection sends HELLO, reads frames through the wire
 * layer's streaming reader, and hands core messages to the host's callbacks.
 *
 * Failure modes: a dial that fails or a connection that drops is retried by
 * the peer's timer after a backoff that doubles up to a ceiling; writes to a
 * disconnected peer or beyond a queue bound are dropped and counted (the
 * protocol retransmits); a malformed frame, a frame before HELLO, a frame the
 * sender's role may not send, or a sender that lies about its index closes
 * that one connection and is counted; connections over a limit are accepted
 * and closed at once.
 *
 * Authentication (when the port has a key, docs/wire.md section 6): after
 * both HELLOs each end sends AUTH, its proof of the key bound to both
 * nonces, and seals every later frame with a MAC. Until the other end's
 * AUTH checked out, a connection carries nothing but HELLO, AUTH and CLOSE:
 * a peer without the key is closed having delivered nothing, and an
 * outgoing peer connection takes no message until it is authenticated.
 *
 * Ownership: each connection is a malloc'd net_conn holding its uv_tcp_t; it
 * is freed only in the tcp close callback. A write request owns its encoded
 * buffer until its callback. Every handle is counted in net->handles; the
 * net itself is freed when the last one has closed after vsr_net_close.
 *
 * Writes are coalesced: a frame is encoded straight into its connection's
 * output buffer, and a prepare handle (which runs just before the loop
 * blocks for I/O) hands each non-empty buffer to one uv_write. One loop
 * iteration may produce dozens of frames for one peer (a PREPARE per
 * batch, a REPLY per client request): one write system call instead of
 * one each, and no allocation per frame once the buffers have grown. */
#include "vsr_net.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* A peer whose machine vanished sends no reset: without a bound, data would
 * sit unacknowledged for the kernel's full retransmission time (many
 * minutes) while the connection still looks open. After this long without
 * an acknowledgement the connection fails and is redialled. */
#define NET_PEER_USER_TIMEOUT_MS 10000u
#define NET_PEER_KEEPALIVE_S 5u

/* The longest wait between two retransmissions on a replica link. The
 * kernel doubles the retransmission timeout up to 120 s: after a partition
 * of a few seconds, the first retransmission after the heal came 2-3 s
 * later (a 4 s partition: retransmissions at 0.2, 0.6, 1.4, 3.0, 6.2 s),
 * and the cluster, whose view change needed those very messages, stayed
 * unavailable that long (issue 7, Jepsen-style runs). Capped, a healed link
 * carries data again within this much. The kernel's floor is 1 s; the
 * option exists since Linux 6.11 (older kernels refuse it: best effort). */
#define NET_PEER_RTO_MAX_MS 1000u

/* Faster still: a replica link whose data the kernel retransmits without an
 * acknowledgement NET_PEER_STALL_RETRANSMITS times in a row (a partition, a
 * vanished machine) is closed and redialled, and a dial that gets no answer
 * within NET_PEER_DIAL_TIMEOUT_MS is given up and tried again (the kernel
 * would retry its SYN only after 1, 3, 7 s). While the path is cut this
 * sends one SYN every ~NET_PEER_DIAL_TIMEOUT_MS; once it heals, the next one
 * connects. A paused peer (SIGSTOP) is not taken for a lost one: its kernel
 * still acknowledges, and a full window shows as probes, not
 * retransmissions. Checked every NET_PEER_LINK_CHECK_MS. */
#define NET_PEER_STALL_RETRANSMITS 2u
#define NET_PEER_DIAL_TIMEOUT_MS 300u
#define NET_PEER_LINK_CHECK_MS 100u
#ifndef TCP_RTO_MAX_MS
#define TCP_RTO_MAX_MS 44
#endif

enum net_conn_kind {
	NET_CONN_PEER_OUT = 1, /* we dialled replica `peer`: our send path */
	NET_CONN_PEER_IN,      /* accepted on the replica listener */
	NET_CONN_CLIENT,       /* accepted on the client listener */
};

typedef struct net_conn {
	uv_tcp_t tcp;
	vsr_net *net;
	uint8_t kind;
	bool closing;
	bool hello_seen;        /* the other end's HELLO arrived */
	bool connected;         /* PEER_OUT: the dial completed */
	bool open;              /* established: reads may run (accepted, or dial completed) */
	bool reading;           /* uv_read_start in effect */
	bool accepted;          /* a replica connection whose peer passed every check (HELLO,
				   AUTH, configuration): messages may flow */
	uint8_t role;           /* from HELLO */
	uint8_t peer;           /* PEER_OUT: target; PEER_IN: from HELLO */
	uint64_t id;            /* CLIENT: the opaque connection id */
	uint64_t opened_ms;     /* accepted or dialled at (loop time), for the HELLO/AUTH deadline */
	uint64_t frame_started_ms; /* a frame is partly read since (0: none) */
	uint32_t writes;        /* frames in submitted, unfinished writes */
	uint64_t write_bytes;   /* bytes in submitted, unfinished writes */
	vsr_buf out;            /* frames queued, not yet submitted (flushed before poll) */
	uint32_t out_frames;    /* frames in `out` */
	bool dirty;             /* on net->dirty: `out` holds frames */
	struct net_conn *dirty_next;
	struct net_write *spare; /* a finished write request kept for the next flush */
	uv_connect_t connect_req;
	vsr_wire_reader reader;
	vsr_wire_decoded decoded;
	vsr_wire_conn_auth auth; /* this connection's HELLO/AUTH state */
	struct net_conn *next;  /* in net->conns */
	struct net_conn *prev;
	/* PEER_IN and CLIENT, from accept until identified or closed: in the
	 * accept-ordered list of its kind's unidentified connections. */
	bool unidentified;
	struct net_conn *unid_next;
	struct net_conn *unid_prev;
} net_conn;

typedef struct net_write {
	uv_write_t req;
	net_conn *conn;
	uint32_t frames; /* frames in buf */
	vsr_buf buf;     /* owned: freed or recycled in the write callback */
} net_write;

/* A connection's output buffer is kept between writes to avoid an
 * allocation per flush, unless a large message grew it beyond this. */
#define NET_OUT_KEEP_BYTES (256u * 1024u)

typedef struct net_peer {
	vsr_net *net;
	uint8_t index;
	struct sockaddr_storage addr;
	net_conn *out;          /* the outgoing connection, or NULL */
	uv_timer_t timer;       /* reconnect */
	uint32_t backoff_ms;
	/* The fingerprint (overall) this peer was last refused for, logged
	 * once as an error: the redials that follow log at debug. 0: none. */
	uint64_t refused_config;
	uint64_t unchecked_instance; /* last instance logged as sending no fingerprint */
} net_peer;

struct vsr_net {
	vsr_net_options opts;
	vsr_wire_config wire;
	bool closing;
	bool paused;            /* reads stopped on every connection (vsr_net_pause) */
	uint64_t history;       /* sent in HELLO (vsr_net_set_history) */
	uint32_t handles;       /* initialised and not yet closed */
	vsr_net_close_cb close_cb;
	uv_tcp_t replica_listener;
	uv_tcp_t client_listener;
	uv_timer_t sweep_timer; /* closes accepted connections that never said HELLO */
	uv_timer_t link_timer;  /* redials stalled replica links */
	uv_prepare_t flush;     /* submits every dirty connection's output before poll */
	net_conn *dirty;        /* connections whose `out` holds frames */
	net_peer peers[VSR_REPLICAS_MAX];
	net_conn *peer_in[VSR_REPLICAS_MAX]; /* each replica's identified inbound connection */
	net_conn *conns;        /* every open connection */
	uint32_t peer_inbound;  /* PEER_IN connections open */
	uint32_t config_confirmed; /* peers whose fingerprint matched since start (a bit each) */
	uint32_t clients;       /* CLIENT connections open */
	net_conn **client_slots; /* [clients_max], indexed by id's slot */
	uint32_t *client_gen;    /* generation per slot */
	uint32_t *free_slots;    /* stack of the slots client_slots has free */
	uint32_t free_count;
	/* Accepted connections not yet identified, oldest first, per kind
	 * (index: net_unid_index): what an accept evicts, found in O(1). */
	net_conn *unid_head[2];
	net_conn *unid_tail[2];
	uint32_t unid_count[2];
	/* Per kind (net_unid_index): an accept found no memory for its
	 * connection, which waits in the listener; the sweep tries again. */
	bool accept_deferred[2];
	vsr_net_stats stats;
	char read_buf[64 * 1024]; /* shared: a read is consumed before the next */
};

#define NET_SLOT_BITS 20u
#define NET_SLOT_MASK ((1u << NET_SLOT_BITS) - 1)
_Static_assert(VSR_NET_CLIENTS_MAX <= NET_SLOT_MASK, "slot index must fit its bits");

static void net_logf(vsr_net *net, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void net_logf(vsr_net *net, int level, const char *fmt, ...)
{
	if (net->opts.log == NULL)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	net->opts.log(net->opts.data, level, msg);
}

static const char *net_conn_name(const net_conn *c, char *buf, size_t len)
{
	switch (c->kind) {
	case NET_CONN_PEER_OUT: snprintf(buf, len, "to replica %u", c->peer + 1u); break;
	case NET_CONN_PEER_IN:
		if (c->hello_seen)
			snprintf(buf, len, "from replica %u", c->peer + 1u);
		else
			snprintf(buf, len, "unidentified on the replica port");
		break;
	default:
		snprintf(buf, len, "client %llu", (unsigned long long)c->id);
		break;
	}
	return buf;
}

static void net_maybe_finish(vsr_net *net)
{
	if (!net->closing || net->handles > 0)
		return;
	vsr_net_close_cb cb = net->close_cb;
	void *data = net->opts.data;
	free(net->client_slots);
	free(net->client_gen);
	free(net->free_slots);
	free(net);
	if (cb != NULL)
		cb(data);
}

static void net_handle_closed_cb(uv_handle_t *h)
{
	vsr_net *net = h->data;
	assert(net->handles > 0);
	net->handles--;
	net_maybe_finish(net);
}

/* ------------------------------------------------------------------------ */
/* Connections.                                                             */

static unsigned net_unid_index(uint8_t kind)
{
	return kind == NET_CONN_CLIENT ? 1u : 0u;
}

/* An accepted connection joins its kind's unidentified list (newest last). */
static void net_unid_add(net_conn *c)
{
	vsr_net *net = c->net;
	unsigned k = net_unid_index(c->kind);
	c->unidentified = true;
	c->unid_next = NULL;
	c->unid_prev = net->unid_tail[k];
	if (net->unid_tail[k] != NULL)
		net->unid_tail[k]->unid_next = c;
	else
		net->unid_head[k] = c;
	net->unid_tail[k] = c;
	net->unid_count[k]++;
}

/* ... and leaves it once identified or closing. */
static void net_unid_remove(net_conn *c)
{
	if (!c->unidentified)
		return;
	vsr_net *net = c->net;
	unsigned k = net_unid_index(c->kind);
	if (c->unid_prev != NULL)
		c->unid_prev->unid_next = c->unid_next;
	else
		net->unid_head[k] = c->unid_next;
	if (c->unid_next != NULL)
		c->unid_next->unid_prev = c->unid_prev;
	else
		net->unid_tail[k] = c->unid_prev;
	c->unid_next = c->unid_prev = NULL;
	c->unidentified = false;
	assert(net->unid_count[k] > 0);
	net->unid_count[k]--;
}

static void net_peer_schedule(vsr_net *net, uint8_t i);
static void net_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void net_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Starts or stops reading on an established connection, following
 * net->paused. Returns 0 or a libuv error. */
static int net_conn_follow_pause(net_conn *c)
{
	if (c->closing || !c->open)
		return 0;
	bool want = !c->net->paused;
	if (want == c->reading)
		return 0;
	int rc = want ? uv_read_start((uv_stream_t *)&c->tcp, net_alloc_cb, net_read_cb)
		      : uv_read_stop((uv_stream_t *)&c->tcp);
	if (rc == 0)
		c->reading = want;
	return rc;
}

static void net_conn_closed_cb(uv_handle_t *h)
{
	net_conn *c = h->data;
	vsr_net *net = c->net;
	assert(c->writes == 0); /* write callbacks run before the close callback */
	assert(!c->dirty);
	vsr_buf_free(&c->out);
	if (c->spare != NULL) {
		vsr_buf_free(&c->spare->buf);
		free(c->spare);
	}
	vsr_wire_reader_free(&c->reader);
	vsr_wire_decoded_free(&c->decoded);
	free(c);
	assert(net->handles > 0);
	net->handles--;
	net_maybe_finish(net);
}

static net_conn *net_conn_new(vsr_net *net, uint8_t kind)
{
	net_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->net = net;
	c->kind = kind;
	int rc = uv_tcp_init(net->opts.loop, &c->tcp);
	assert(rc == 0);
	(void)rc;
	c->tcp.data = c;
	vsr_wire_reader_init(&c->reader, &net->wire, &net->stats.wire);
	vsr_wire_decoded_init(&c->decoded);
	vsr_wire_conn_auth_init(&c->auth,
				kind == NET_CONN_CLIENT ? net->opts.client_key : net->opts.replica_key,
				net->opts.cluster, VSR_WIRE_ROLE_REPLICA, net->opts.replica);
	net->handles++;
	c->next = net->conns;
	if (net->conns != NULL)
		net->conns->prev = c;
	net->conns = c;
	net->stats.connections++;
	return c;
}

/* Closes one connection; its owner forgets it now, the memory goes in the
 * close callback. */
static void net_conn_close(net_conn *c, int level, const char *why)
{
	if (c->closing)
		return;
	vsr_net *net = c->net;
	c->closing = true;
	char name[64];
	if (why != NULL)
		net_logf(net, level, "connection %s closed: %s",
			 net_conn_name(c, name, sizeof name), why);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		net->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	net_unid_remove(c);
	if (c->dirty) {
		/* Rare (a connection closing with unsent frames): a walk. */
		net_conn **pp = &net->dirty;
		while (*pp != NULL && *pp != c)
			pp = &(*pp)->dirty_next;
		if (*pp == c)
			*pp = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
	}
	c->out_frames = 0;
	vsr_buf_reset(&c->out);
	net->stats.connections--;
	switch (c->kind) {
	case NET_CONN_PEER_OUT:
		if (net->peers[c->peer].out == c) {
			net->peers[c->peer].out = NULL;
			if (c->connected)
				net->stats.peer_disconnects++;
			net_peer_schedule(net, c->peer);
		}
		break;
	case NET_CONN_PEER_IN:
		net->peer_inbound--;
		if (net->peer_in[c->peer] == c)
			net->peer_in[c->peer] = NULL;
		break;
	case NET_CONN_CLIENT: {
		uint32_t slot = (uint32_t)(c->id & NET_SLOT_MASK);
		if (slot < net->opts.clients_max && net->client_slots[slot] == c) {
			net->client_slots[slot] = NULL;
			net->free_slots[net->free_count++] = slot;
		}
		net->clients--;
		break;
	}
	}
	uv_close((uv_handle_t *)&c->tcp, net_conn_closed_cb);
}

static void net_write_cb(uv_write_t *req, int status)
{
	net_write *w = req->data;
	net_conn *c = w->conn;
	assert(c->writes >= w->frames && c->write_bytes >= w->buf.len);
	c->writes -= w->frames;
	c->write_bytes -= w->buf.len;
	/* Recycle the buffer as the connection's next output buffer when that
	 * is still unallocated (the common case: nothing was queued since the
	 * flush), and the request for the next flush. */
	if (!c->closing && c->out.data == NULL && w->buf.cap <= NET_OUT_KEEP_BYTES) {
		c->out = w->buf;
		c->out.len = 0;
	} else {
		vsr_buf_free(&w->buf);
	}
	memset(&w->buf, 0, sizeof w->buf);
	if (c->spare == NULL)
		c->spare = w;
	else
		free(w);
	if (status < 0 && status != UV_ECANCELED && !c->closing)
		net_conn_close(c, 1, uv_strerror(status));
}

/* Room check before queueing a frame on c: the frame count bound (frames
 * submitted and frames still in `out`). The byte bound is checked once the
 * frame is encoded and its size known. */
static bool net_conn_has_room(const net_conn *c)
{
	return !c->closing && (uint64_t)c->writes + c->out_frames < c->net->opts.queue_messages_max;
}

/* Accepts the frame that was just appended to c->out (whose length was
 * `before`) as it is, or takes it back out when it breaks the byte bound.
 * Returns false when it was dropped. */
static bool net_conn_account(net_conn *c, size_t before)
{
	vsr_net *net = c->net;
	if (c->write_bytes + c->out.len > net->opts.queue_bytes_max) {
		c->out.len = before;
		return false;
	}
	c->out_frames++;
	net->stats.wire.frames_out++;
	net->stats.wire.bytes_out += c->out.len - before;
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_next = net->dirty;
		net->dirty = c;
	}
	return true;
}

/* net_conn_account, after sealing the frame when the connection is
 * authenticated: the path of every frame but HELLO and AUTH. The byte
 * bound is checked before sealing: sealing uses up the frame's sequence
 * number, so a sealed frame dropped afterwards would make every later
 * frame fail its MAC at the other end. */
static bool net_conn_commit(net_conn *c, size_t before)
{
	size_t mac = c->auth.sealing ? VSR_WIRE_MAC_SIZE : 0;
	if (c->write_bytes + c->out.len + mac > c->net->opts.queue_bytes_max) {
		c->out.len = before;
		return false;
	}
	if (vsr_wire_conn_auth_seal(&c->auth, &c->out, before) != 0) {
		c->out.len = before;
		return false;
	}
	return net_conn_account(c, before);
}

/* Submits c's queued frames as one write. */
static void net_conn_flush(net_conn *c)
{
	if (c->closing || c->out.len == 0)
		return;
	/* Most flushes fit the socket buffer: a direct write finishes them
	 * with no request and no callback. uv_write would also write at once,
	 * but it re-arms the poll watcher, one epoll_ctl per write. */
	if (c->writes == 0) {
		uv_buf_t direct = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
		int n = uv_try_write((uv_stream_t *)&c->tcp, &direct, 1);
		if (n == (int)c->out.len) {
			c->out.len = 0;
			c->out_frames = 0;
			return;
		}
		if (n > 0) {
			/* The rest goes through uv_write, in order. */
			memmove(c->out.data, c->out.data + n, c->out.len - (size_t)n);
			c->out.len -= (size_t)n;
		} else if (n != UV_EAGAIN) {
			net_conn_close(c, 1, uv_strerror(n));
			return;
		}
	}
	net_write *w = c->spare;
	c->spare = NULL;
	if (w == NULL && (w = malloc(sizeof *w)) == NULL) {
		/* Keep the frames: the next flush tries again. */
		return;
	}
	w->conn = c;
	w->frames = c->out_frames;
	w->buf = c->out;
	memset(&c->out, 0, sizeof c->out);
	c->out_frames = 0;
	w->req.data = w;
	uv_buf_t ub = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, net_write_cb);
	if (rc != 0) {
		vsr_buf_free(&w->buf);
		free(w);
		net_conn_close(c, 1, uv_strerror(rc));
		return;
	}
	c->writes += w->frames;
	c->write_bytes += w->buf.len;
}

/* The prepare handle: runs once per loop iteration, before it waits. */
static void net_flush_cb(uv_prepare_t *h)
{
	vsr_net_flush(h->data);
}

void vsr_net_flush(vsr_net *net)
{
	net_conn *c = net->dirty;
	net->dirty = NULL;
	while (c != NULL) {
		net_conn *next = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
		net_conn_flush(c);
		if (c->out.len != 0 && !c->closing) {
			/* The flush could not allocate: leave it dirty. */
			c->dirty = true;
			c->dirty_next = net->dirty;
			net->dirty = c;
		}
		c = next;
	}
}

/* Socket options of a replica-to-replica connection (either direction). */
static void net_peer_socket_options(net_conn *c)
{
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, NET_PEER_KEEPALIVE_S);
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
		unsigned timeout_ms = NET_PEER_USER_TIMEOUT_MS;
		/* Best effort: only Linux has it, and nothing depends on it. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof timeout_ms);
		int rto_max_ms = (int)NET_PEER_RTO_MAX_MS;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_RTO_MAX_MS, &rto_max_ms, sizeof rto_max_ms);
	}
}

static void net_send_hello(net_conn *c)
{
	vsr_net *net = c->net;
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = net->opts.replica,
			    .instance = net->opts.instance, .history = net->history,
			    .config_count = net->opts.config_count};
	if (net->opts.config_count > 0)
		memcpy(h.config, net->opts.config, sizeof(uint64_t) * net->opts.config_count);
	if (!net_conn_has_room(c))
		return;
	size_t before = c->out.len;
	if (vsr_wire_conn_auth_send_hello(&c->auth, &c->out, h) != 0) {
		net_conn_close(c, 3, "cannot encode HELLO");
		return;
	}
	net_conn_account(c, before);
}

static void net_protocol_error(net_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void net_protocol_error(net_conn *c, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	c->net->stats.protocol_errors++;
	net_conn_close(c, 2, why);
}

/* Authentication failed: the other end is told why in a CLOSE frame (best
 * effort: written at once if the socket takes it, after whatever this end
 * still had queued), then the connection is closed. A client with no key or
 * a wrong one then reads a sentence instead of a bare end of stream. */
/* Has the other end identified itself (HELLO) and, with a key, proven it? */
static bool net_conn_identified(const net_conn *c)
{
	return c->hello_seen && vsr_wire_conn_auth_ready(&c->auth);
}

/* Tells the other end why it is closed, in a CLOSE frame, if the socket
 * takes it now (after whatever this end still had queued); best effort. */
static void net_conn_say_close(net_conn *c, uint8_t reason, const char *why)
{
	vsr_net *net = c->net;
	if (c->writes != 0 || c->closing)
		return;
	size_t before = c->out.len;
	if (vsr_wire_encode_close(&c->out, net->opts.cluster, reason, why) == 0 &&
	    vsr_wire_conn_auth_seal(&c->auth, &c->out, before) == 0) {
		uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
		(void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	}
}

/* The identified replica at the other end of c runs with this replica's
 * configuration (the fingerprint parts both know are equal)? Otherwise c is
 * refused: logged (an error once per peer and fingerprint), counted, the
 * other end told in a CLOSE (a build that does not check logs it), closed. */
static bool net_conn_config_ok(net_conn *c)
{
	vsr_net *net = c->net;
	const vsr_wire_hello *h = &c->auth.peer_hello;
	net_peer *p = &net->peers[c->peer];
	if (net->opts.config_count == 0)
		return true;
	if (h->config_count == 0) {
		/* An older build: nothing to compare, the certified checkpoints
		 * still catch a divergence after the fact. */
		if (p->unchecked_instance != h->instance) {
			p->unchecked_instance = h->instance;
			net_logf(net, 2, "replica %u sent no configuration fingerprint (an older "
					 "vsrhost?): its configuration is not checked", c->peer + 1u);
		}
		net->config_confirmed |= 1u << c->peer;
		return true;
	}
	char what[384];
	uint32_t differ = vsr_wire_config_compare(net->opts.config, net->opts.config_count,
						  h->config, h->config_count, what, sizeof what);
	uint64_t ours = vsr_wire_config_fingerprint(net->opts.config, net->opts.config_count);
	uint64_t theirs = vsr_wire_config_fingerprint(h->config, h->config_count);
	if (differ == 0) {
		if (p->refused_config != 0)
			net_logf(net, 1, "replica %u now runs with the same configuration "
					 "(fingerprint %016" PRIx64 ")", c->peer + 1u, theirs);
		p->refused_config = 0;
		net->config_confirmed |= 1u << c->peer;
		return true;
	}
	net->stats.config_mismatches++;
	net_logf(net, p->refused_config == theirs ? 0 : 3,
		 "replica %u refused: its configuration differs from this replica's: %s; "
		 "fingerprint ours %016" PRIx64 ", theirs %016" PRIx64 ". It takes no part in the "
		 "cluster until it runs with the same configuration (docs/config.md)",
		 c->peer + 1u, what, ours, theirs);
	p->refused_config = theirs;
	/* Redialled at the slowest pace: it stays refused until restarted. */
	p->backoff_ms = net->opts.reconnect_max_ms;
	char names[200] = "";
	size_t used = 0;
	for (unsigned i = 0; i < 32 && used < sizeof names; i++)
		if (differ & (1u << i))
			used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
						 used > 0 ? ", " : "", vsr_wire_config_part_name(i));
	char why[VSR_WIRE_REASON_MAX + 1];
	snprintf(why, sizeof why, "replica %u refuses replica %u: configuration differs (%s); "
		 "fingerprint %016" PRIx64 " there, %016" PRIx64 " here",
		 net->opts.replica + 1u, c->peer + 1u, names, ours, theirs);
	net_conn_say_close(c, 0, why);
	net_conn_close(c, 0, "configuration differs");
	return false;
}

/* c just became identified. A replica has one live inbound connection:
 * an older one from the same replica (a connection its restart left
 * half-open, or one an impostor opened first) gives way. */
static void net_conn_now_identified(net_conn *c)
{
	net_unid_remove(c);
	if (c->kind == NET_CONN_CLIENT)
		return;
	if (!net_conn_config_ok(c))
		return;
	c->accepted = true;
	if (c->kind != NET_CONN_PEER_IN)
		return;
	vsr_net *net = c->net;
	net_conn *o = net->peer_in[c->peer];
	net->peer_in[c->peer] = c;
	if (o != NULL && o != c && !o->closing) {
		net->stats.connections_replaced++;
		char why[96];
		snprintf(why, sizeof why, "replaced by a newer connection from replica %u",
			 c->peer + 1u);
		net_conn_close(o, 1, why);
	}
}

static void net_auth_failure(net_conn *c, const char *why)
{
	c->net->stats.auth_failures++;
	net_conn_say_close(c, VSR_WIRE_EMAC, why);
	net_protocol_error(c, "%s", why);
}

/* The other end's HELLO passed the role checks: answer it with AUTH when
 * this port requires authentication. */
static void net_conn_hello_done(net_conn *c, const vsr_wire_hello *h)
{
	char err[256];
	size_t before = c->out.len;
	int rc = vsr_wire_conn_auth_peer_hello(&c->auth, h, &c->out, err, sizeof err);
	if (rc != 0) {
		c->out.len = before;
		net_auth_failure(c, err);
		return;
	}
	if (c->out.len > before)
		net_conn_account(c, before);
	if (net_conn_identified(c))
		net_conn_now_identified(c);
}

/* One decoded frame from c. May close c. */
static void net_conn_frame(net_conn *c, const vsr_wire_decoded *d)
{
	vsr_net *net = c->net;
	if (d->type == VSR_WIRE_CLOSE) {
		char why[VSR_WIRE_REASON_MAX + 32];
		snprintf(why, sizeof why, "the other end said: %s", d->close.text);
		net_conn_close(c, 1, why);
		return;
	}
	if (!c->hello_seen) {
		if (d->type != VSR_WIRE_HELLO) {
			net_protocol_error(c, "%s before HELLO", vsr_wire_type_name(d->type));
			return;
		}
		c->hello_seen = true;
		c->role = d->hello.role;
		switch (c->kind) {
		case NET_CONN_PEER_OUT:
			if (d->hello.role != VSR_WIRE_ROLE_REPLICA || d->hello.replica != c->peer) {
				net_protocol_error(c, "the listener of replica %u says it is role %u replica %u",
						   c->peer + 1u, d->hello.role, d->hello.replica + 1u);
				return;
			}
			break;
		case NET_CONN_PEER_IN:
			if (d->hello.role != VSR_WIRE_ROLE_REPLICA ||
			    d->hello.replica >= net->opts.replica_count ||
			    d->hello.replica == net->opts.replica) {
				net_protocol_error(c, "HELLO on the replica port from role %u replica %u",
						   d->hello.role, d->hello.replica + 1u);
				return;
			}
			c->peer = d->hello.replica;
			net_logf(net, 0, "replica %u connected (instance %016llx, history %016llx)",
				 c->peer + 1u, (unsigned long long)d->hello.instance,
				 (unsigned long long)d->hello.history);
			break;
		default:
			if (d->hello.role != VSR_WIRE_ROLE_CLIENT &&
			    d->hello.role != VSR_WIRE_ROLE_CONTROL) {
				net_protocol_error(c, "HELLO on the client port from role %u", d->hello.role);
				return;
			}
			break;
		}
		net_conn_hello_done(c, &d->hello);
		return;
	}
	if (d->type == VSR_WIRE_AUTH) {
		char err[256];
		if (vsr_wire_conn_auth_peer_auth(&c->auth, &d->auth, &c->reader, err, sizeof err) != 0)
			net_auth_failure(c, err);
		else if (net_conn_identified(c))
			net_conn_now_identified(c);
		return;
	}
	if (!vsr_wire_conn_auth_ready(&c->auth)) {
		net_auth_failure(c, c->kind == NET_CONN_CLIENT
					    ? "a request before authentication"
					    : "a message before authentication");
		return;
	}
	switch (d->type) {
	case VSR_WIRE_HELLO:
		net_protocol_error(c, "second HELLO");
		return;
	case VSR_WIRE_PING: {
		vsr_wire_ping p = d->ping;
		size_t before = c->out.len;
		if (net_conn_has_room(c) &&
		    vsr_wire_encode_ping(&c->out, net->opts.cluster, VSR_WIRE_PONG, &p) == 0)
			net_conn_commit(c, before);
		return;
	}
	case VSR_WIRE_PONG:
		return;
	default:
		break;
	}
	if (c->kind == NET_CONN_CLIENT) {
		if (d->type == VSR_WIRE_STATUS_REQUEST) {
			if (net->opts.status_cb != NULL)
				net->opts.status_cb(net, c->id, d->status_request.nonce);
			return;
		}
		if (d->type == VSR_MSG_REQUEST && c->role == VSR_WIRE_ROLE_CLIENT) {
			if (net->opts.request_cb != NULL)
				net->opts.request_cb(net, c->id, &d->message);
			return;
		}
		net_protocol_error(c, "%s may not be sent by a %s", vsr_wire_type_name(d->type),
				   c->role == VSR_WIRE_ROLE_CLIENT ? "client" : "control tool");
		return;
	}
	/* A replica connection, either direction. */
	if (d->type >= VSR_MSG_TYPE_COUNT || d->type == VSR_MSG_REQUEST ||
	    d->type == VSR_MSG_REPLY) {
		net_protocol_error(c, "%s on a replica connection", vsr_wire_type_name(d->type));
		return;
	}
	if (!c->accepted) {
		net_protocol_error(c, "%s before the connection was accepted",
				   vsr_wire_type_name(d->type));
		return;
	}
	if (d->message.replica != c->peer) {
		net_protocol_error(c, "%s claims to come from replica %u", vsr_wire_type_name(d->type),
				   d->message.replica + 1u);
		return;
	}
	if (net->opts.peer_message_cb != NULL)
		net->opts.peer_message_cb(net, &d->message);
}

static void net_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	net_conn *c = h->data;
	buf->base = c->net->read_buf;
	buf->len = sizeof c->net->read_buf;
}

static void net_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	net_conn *c = s->data;
	vsr_net *net = c->net;
	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		net_conn_close(c, nread == UV_EOF ? 0 : 1,
			       nread == UV_EOF ? "end of stream" : uv_strerror((int)nread));
		return;
	}
	const uint8_t *p = (const uint8_t *)buf->base;
	size_t off = 0;
	while (off < (size_t)nread && !c->closing) {
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&c->reader, p + off, (size_t)nread - off, &used);
		off += used;
		if (rc == 1)
			rc = vsr_wire_reader_decode(&c->reader, &c->decoded);
		else if (rc == 0)
			break;
		if (rc < 0) {
			char why[256];
			snprintf(why, sizeof why, "malformed frame: %s (%s)", vsr_wire_strerror(rc),
				 c->reader.err);
			net->stats.frames_malformed++;
			if (rc == -VSR_WIRE_EMAC)
				net->stats.auth_failures++;
			net_conn_close(c, 2, why);
			return;
		}
		net_conn_frame(c, &c->decoded);
		if (net->closing)
			return;
		/* Paused by a callback: the rest of this chunk is still
		 * handled (it cannot be put back), nothing more is read. */
	}
	if (c->closing)
		return;
	if (!vsr_wire_reader_partial(&c->reader))
		c->frame_started_ms = 0;
	else if (c->frame_started_ms == 0)
		c->frame_started_ms = uv_now(net->opts.loop);
}

/* ------------------------------------------------------------------------ */
/* Peers: dial, reconnect.                                                  */

static void net_connect_cb(uv_connect_t *req, int status)
{
	net_conn *c = req->data;
	vsr_net *net = c->net;
	if (c->closing)
		return;
	net_peer *p = &net->peers[c->peer];
	if (status < 0) {
		net->stats.peer_connect_failures++;
		/* Refused dials are routine while a peer is down: debug only. */
		char why[128];
		snprintf(why, sizeof why, "dial failed: %s", uv_strerror(status));
		net_conn_close(c, 0, why);
		return;
	}
	c->connected = true;
	c->opened_ms = uv_now(net->opts.loop);
	/* A peer refused for its configuration keeps the slowest pace. */
	if (p->refused_config == 0)
		p->backoff_ms = net->opts.reconnect_min_ms;
	net->stats.peer_connects++;
	net_peer_socket_options(c);
	c->open = true;
	int rc = net_conn_follow_pause(c);
	if (rc != 0) {
		net_conn_close(c, 1, uv_strerror(rc));
		return;
	}
	net_logf(net, p->refused_config == 0 ? 1 : 0, "connected to replica %u", c->peer + 1u);
	net_send_hello(c);
}

static void net_peer_dial(vsr_net *net, uint8_t i)
{
	net_peer *p = &net->peers[i];
	assert(p->out == NULL);
	net_conn *c = net_conn_new(net, NET_CONN_PEER_OUT);
	if (c == NULL) {
		net_peer_schedule(net, i);
		return;
	}
	c->peer = i;
	p->out = c;
	c->opened_ms = uv_now(net->opts.loop); /* the dial's deadline counts from here */
	c->connect_req.data = c;
	int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->addr,
				net_connect_cb);
	if (rc != 0) {
		net->stats.peer_connect_failures++;
		char why[128];
		snprintf(why, sizeof why, "dial failed: %s", uv_strerror(rc));
		net_conn_close(c, 1, why);
	}
}

static void net_peer_timer_cb(uv_timer_t *t)
{
	net_peer *p = t->data;
	vsr_net *net = p->net;
	uint8_t i = p->index;
	if (net->closing || net->peers[i].out != NULL)
		return;
	net_peer_dial(net, i);
}

/* Arms peer i's reconnect timer with the current backoff, then doubles it. */
static void net_peer_schedule(vsr_net *net, uint8_t i)
{
	if (net->closing)
		return;
	net_peer *p = &net->peers[i];
	uint32_t wait_ms = p->backoff_ms;
	p->backoff_ms = wait_ms * 2 > net->opts.reconnect_max_ms ? net->opts.reconnect_max_ms
								  : wait_ms * 2;
	uv_timer_start(&p->timer, net_peer_timer_cb, wait_ms, 0);
}

/* ------------------------------------------------------------------------ */
/* Listeners.                                                               */

/* The oldest connection of `kind` that has not identified itself, other
 * than `except`, and how many there are; the oldest only when it has been
 * silent for evict_silent_ms. */
static net_conn *net_oldest_unidentified(vsr_net *net, uint8_t kind, const net_conn *except,
					 uint32_t *count)
{
	unsigned k = net_unid_index(kind);
	net_conn *oldest = net->unid_head[k];
	*count = net->unid_count[k];
	if (except != NULL && except->unidentified) {
		(*count)--;
		if (oldest == except)
			oldest = except->unid_next;
	}
	uint64_t now = uv_now(net->opts.loop);
	return oldest != NULL && now - oldest->opened_ms >= net->opts.evict_silent_ms ? oldest : NULL;
}

/* The connection of `kind` that began a frame longest ago (at least
 * evict_silent_ms ago) and has not finished it: a real client writes a
 * request in one go. */
static net_conn *net_slowest_sender(vsr_net *net, uint8_t kind, const net_conn *except)
{
	uint64_t now = uv_now(net->opts.loop);
	net_conn *slowest = NULL;
	for (net_conn *c = net->conns; c != NULL; c = c->next) {
		if (c == except || c->kind != kind || c->closing || c->frame_started_ms == 0 ||
		    now - c->frame_started_ms < net->opts.evict_silent_ms)
			continue;
		if (slowest == NULL || c->frame_started_ms < slowest->frame_started_ms)
			slowest = c;
	}
	return slowest;
}

static void net_evict(vsr_net *net, net_conn *victim)
{
	net->stats.connections_evicted++;
	net_conn_close(victim, 1, net_conn_identified(victim)
					  ? "evicted: stuck in the middle of a frame, and a newer "
					    "connection needed its place"
					  : "evicted: it did not identify itself, and a newer "
					    "connection needed its place");
}

static void net_accept(uv_stream_t *server, uint8_t kind)
{
	vsr_net *net = server->data;
	if (net->closing)
		return;
	unsigned k = net_unid_index(kind);
	net_conn *c = net_conn_new(net, kind);
	if (c == NULL) {
		/* No memory for it: the connection stays queued in the listener,
		 * which libuv stops watching until it is accepted. Returning for
		 * good would leave the port deaf for ever; the sweep tries again. */
		net->stats.accepts_deferred++;
		if (!net->accept_deferred[k])
			net_logf(net, 2, "out of memory accepting a connection on the %s port: "
					 "trying again at the next sweep",
				 kind == NET_CONN_CLIENT ? "client" : "replica");
		net->accept_deferred[k] = true;
		return;
	}
	net->accept_deferred[k] = false;
	c->opened_ms = uv_now(net->opts.loop);
	/* Counted at once: net_conn_close uncounts, whatever path closes it. */
	if (kind == NET_CONN_PEER_IN)
		net->peer_inbound++;
	else
		net->clients++;
	net_unid_add(c);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		net_conn_close(c, 1, "accept failed");
		return;
	}
	uint32_t unidentified = 0;
	net_conn *oldest = net_oldest_unidentified(net, kind, c, &unidentified);
	if (oldest != NULL && unidentified >= VSR_NET_UNIDENTIFIED_MAX)
		net_evict(net, oldest);
	if (kind == NET_CONN_PEER_IN) {
		if (net->peer_inbound > VSR_NET_PEER_INBOUND_MAX) {
			net->stats.connections_refused++;
			net_conn_close(c, 2, "too many connections on the replica port");
			return;
		}
	} else {
		uint32_t slot = UINT32_MAX;
		if (net->clients > net->opts.clients_max) {
			/* Full: a connection still silent, or else one stuck in
			 * the middle of a frame (a slow sender), gives way. */
			oldest = net_oldest_unidentified(net, kind, c, &unidentified);
			if (oldest == NULL)
				oldest = net_slowest_sender(net, kind, c);
			if (oldest != NULL)
				net_evict(net, oldest);
		}
		if (net->clients <= net->opts.clients_max && net->free_count > 0)
			slot = net->free_slots[--net->free_count];
		if (slot == UINT32_MAX) {
			/* An id is still needed so that close can find no slot. */
			c->id = NET_SLOT_MASK;
			net->stats.connections_refused++;
			net_conn_close(c, 2, "too many client connections");
			return;
		}
		net->client_gen[slot]++;
		c->id = ((uint64_t)net->client_gen[slot] << NET_SLOT_BITS) | slot;
		net->client_slots[slot] = c;
		net->stats.clients_accepted++;
	}
	if (kind == NET_CONN_PEER_IN)
		net_peer_socket_options(c);
	else
		uv_tcp_nodelay(&c->tcp, 1);
	c->open = true;
	int rc = net_conn_follow_pause(c);
	if (rc != 0) {
		net_conn_close(c, 1, uv_strerror(rc));
		return;
	}
	net_send_hello(c);
}

/* Replica links: a dial without an answer, or an established link whose
 * retransmissions go unanswered, is closed; its peer is redialled at once
 * (see NET_PEER_STALL_RETRANSMITS). */
static void net_link_cb(uv_timer_t *t)
{
	vsr_net *net = t->data;
	uint64_t now = uv_now(net->opts.loop);
	for (uint8_t i = 0; i < net->opts.replica_count; i++) {
		net_peer *p = &net->peers[i];
		net_conn *c = p->out;
		if (i == net->opts.replica || c == NULL || c->closing)
			continue;
		if (!c->connected) {
			if (now - c->opened_ms >= NET_PEER_DIAL_TIMEOUT_MS) {
				net->stats.peer_dial_timeouts++;
				p->backoff_ms = net->opts.reconnect_min_ms;
				net_conn_close(c, 0, "dial not answered: trying again");
			}
			continue;
		}
		uv_os_fd_t fd;
		struct tcp_info ti;
		socklen_t len = sizeof ti;
		memset(&ti, 0, sizeof ti);
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
		    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
			continue;
		if (ti.tcpi_retransmits >= NET_PEER_STALL_RETRANSMITS) {
			net->stats.peer_link_stalls++;
			p->backoff_ms = net->opts.reconnect_min_ms;
			char why[96];
			snprintf(why, sizeof why, "%u retransmissions unacknowledged: redialling",
				 (unsigned)ti.tcpi_retransmits);
			net_conn_close(c, 1, why);
		}
	}
}

/* An accepted connection holds a slot; one that never identifies itself
 * must not hold it forever (nor its reader's buffer). */
static void net_sweep_cb(uv_timer_t *t)
{
	vsr_net *net = t->data;
	/* An accept put off for want of memory (net_accept). */
	if (net->accept_deferred[net_unid_index(NET_CONN_PEER_IN)])
		net_accept((uv_stream_t *)&net->replica_listener, NET_CONN_PEER_IN);
	if (net->accept_deferred[net_unid_index(NET_CONN_CLIENT)])
		net_accept((uv_stream_t *)&net->client_listener, NET_CONN_CLIENT);
	uint64_t now = uv_now(net->opts.loop);
	net_conn *next;
	for (net_conn *c = net->conns; c != NULL; c = next) {
		next = c->next; /* closing unlinks c */
		if (c->closing)
			continue;
		/* A slow sender (a frame begun, never finished) holds a slot and a
		 * buffer: cut it, unless this end stopped reading itself. */
		if (c->frame_started_ms != 0 && !net->paused &&
		    now - c->frame_started_ms >= net->opts.frame_timeout_ms) {
			net->stats.frame_timeouts++;
			net_protocol_error(c, "a frame begun %" PRIu64 " ms ago is still not whole",
					   now - c->frame_started_ms);
			continue;
		}
		if ((c->kind == NET_CONN_PEER_OUT && !c->connected) || net_conn_identified(c))
			continue;
		/* Nor is a HELLO (or AUTH) late that this end did not read. */
		if (!net->paused && now - c->opened_ms >= net->opts.hello_timeout_ms) {
			if (c->hello_seen) {
				net->stats.auth_timeouts++;
				net_protocol_error(c, "not authenticated within %u ms",
						   net->opts.hello_timeout_ms);
			} else {
				net_protocol_error(c, "no HELLO within %u ms", net->opts.hello_timeout_ms);
			}
		}
	}
}

static void net_replica_connection_cb(uv_stream_t *server, int status)
{
	if (status == 0)
		net_accept(server, NET_CONN_PEER_IN);
}

static void net_client_connection_cb(uv_stream_t *server, int status)
{
	if (status == 0)
		net_accept(server, NET_CONN_CLIENT);
}

/* Resolves host:port once, at start (a blocking lookup is fine then). */
static int net_resolve(const vsr_net_address *a, struct sockaddr_storage *out,
		       char *err, size_t err_len)
{
	memset(out, 0, sizeof *out);
	if (uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)out) == 0)
		return 0;
	if (uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)out) == 0)
		return 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char port[8];
	snprintf(port, sizeof port, "%u", a->port);
	int rc = getaddrinfo(a->host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, err_len, "cannot resolve %s: %s", a->host, gai_strerror(rc));
		return UV_EINVAL;
	}
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static int net_listen(uv_tcp_t *t, const vsr_net_address *a,
		      uv_connection_cb cb, const char *what, char *err, size_t err_len)
{
	struct sockaddr_storage addr;
	int rc = net_resolve(a, &addr, err, err_len);
	if (rc != 0)
		return rc;
	rc = uv_tcp_bind(t, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)t, 128, cb);
	if (rc != 0) {
		snprintf(err, err_len, "cannot listen for %s on %s:%u: %s", what, a->host,
			 a->port, uv_strerror(rc));
		return rc;
	}
	return 0;
}

int vsr_net_start(const vsr_net_options *opts, vsr_net **out, char *err, size_t err_len)
{
	*out = NULL;
	assert(opts->replica < opts->replica_count);
	assert(opts->replica_count <= VSR_REPLICAS_MAX);
	assert(opts->config_count <= VSR_WIRE_CONFIG_PARTS_MAX &&
	       (opts->config_count == 0 || opts->config != NULL));
	vsr_net *net = calloc(1, sizeof *net);
	if (net == NULL)
		return UV_ENOMEM;
	net->opts = *opts;
	vsr_net_options *o = &net->opts;
	if (o->queue_messages_max == 0)
		o->queue_messages_max = 16384;
	if (o->queue_bytes_max == 0)
		o->queue_bytes_max = 64u << 20;
	if (o->clients_max == 0)
		o->clients_max = 1024;
	if (o->clients_max > VSR_NET_CLIENTS_MAX)
		o->clients_max = VSR_NET_CLIENTS_MAX;
	if (o->hello_timeout_ms == 0)
		o->hello_timeout_ms = 10000;
	if (o->frame_timeout_ms == 0)
		o->frame_timeout_ms = 10000;
	if (o->evict_silent_ms == 0)
		o->evict_silent_ms = 1000;
	if (o->reconnect_min_ms == 0)
		o->reconnect_min_ms = 50;
	if (o->reconnect_max_ms < o->reconnect_min_ms)
		o->reconnect_max_ms = o->reconnect_min_ms > 1000 ? o->reconnect_min_ms : 1000;
	vsr_wire_config_default(&net->wire, o->cluster, o->replica_count);
	if (o->body_bytes_max != 0 && o->body_bytes_max < net->wire.body_bytes_max)
		net->wire.body_bytes_max = o->body_bytes_max;
	net->client_slots = calloc(o->clients_max, sizeof *net->client_slots);
	net->client_gen = calloc(o->clients_max, sizeof *net->client_gen);
	net->free_slots = calloc(o->clients_max, sizeof *net->free_slots);
	if (net->client_slots == NULL || net->client_gen == NULL || net->free_slots == NULL) {
		free(net->client_slots);
		free(net->client_gen);
		free(net->free_slots);
		free(net);
		return UV_ENOMEM;
	}
	/* Popped lowest first. */
	for (uint32_t k = 0; k < o->clients_max; k++)
		net->free_slots[net->free_count++] = o->clients_max - 1 - k;
	*out = net;

	uv_tcp_init(o->loop, &net->replica_listener);
	uv_tcp_init(o->loop, &net->client_listener);
	net->replica_listener.data = net->client_listener.data = net;
	uv_timer_init(o->loop, &net->sweep_timer);
	net->sweep_timer.data = net;
	net->handles += 3;
	uint32_t shortest = o->hello_timeout_ms < o->frame_timeout_ms ? o->hello_timeout_ms
								       : o->frame_timeout_ms;
	uint64_t sweep_ms = shortest / 2 < 1000 ? shortest / 2 + 1 : 1000;
	uv_timer_start(&net->sweep_timer, net_sweep_cb, sweep_ms, sweep_ms);
	uv_timer_init(o->loop, &net->link_timer);
	net->link_timer.data = net;
	net->handles++;
	uv_timer_start(&net->link_timer, net_link_cb, NET_PEER_LINK_CHECK_MS, NET_PEER_LINK_CHECK_MS);
	uv_prepare_init(o->loop, &net->flush);
	net->flush.data = net;
	net->handles++;
	uv_prepare_start(&net->flush, net_flush_cb);
	/* Flushing is work only while something else keeps the loop alive. */
	uv_unref((uv_handle_t *)&net->flush);
	for (uint8_t i = 0; i < o->replica_count; i++) {
		uv_timer_init(o->loop, &net->peers[i].timer);
		net->peers[i].net = net;
		net->peers[i].index = i;
		net->peers[i].timer.data = &net->peers[i];
		net->handles++;
		net->peers[i].backoff_ms = o->reconnect_min_ms;
		if (i == o->replica)
			continue;
		int rc = net_resolve(&o->replicas[i], &net->peers[i].addr, err, err_len);
		if (rc != 0)
			return rc;
	}
	int rc = net_listen(&net->replica_listener, &o->replicas[o->replica],
			    net_replica_connection_cb, "replicas", err, err_len);
	if (rc != 0)
		return rc;
	rc = net_listen(&net->client_listener, &o->client, net_client_connection_cb,
			"clients", err, err_len);
	if (rc != 0)
		return rc;
	for (uint8_t i = 0; i < o->replica_count; i++)
		if (i != o->replica)
			net_peer_dial(net, i);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Sending.                                                                 */

void vsr_net_send(vsr_net *net, uint8_t to, const vsr_message *m)
{
	assert(to < net->opts.replica_count && to != net->opts.replica);
	net_conn *c = net->peers[to].out;
	if (c == NULL || !c->connected || c->closing || !c->accepted) {
		net->stats.sends_dropped_disconnected++;
		return;
	}
	/* Dropped, not closed: a full queue is usually a peer that stalls
	 * for a moment (a checkpoint, a burst), and closing would throw away
	 * everything queued behind it. A peer that is truly gone is caught by
	 * TCP_USER_TIMEOUT instead. */
	if (!net_conn_has_room(c)) {
		net->stats.sends_dropped_full++;
		return;
	}
	size_t before = c->out.len;
	int rc = vsr_wire_encode_message(&c->out, net->opts.cluster, m);
	if (rc != 0) {
		/* The core produced something the wire cannot carry: a bug to see. */
		net_logf(net, 3, "cannot encode %s for replica %u: %s",
			 vsr_message_type_name(m->type), to + 1u, vsr_wire_strerror(rc));
		return;
	}
	if (!net_conn_commit(c, before))
		net->stats.sends_dropped_full++;
}

static net_conn *net_client(vsr_net *net, uint64_t conn)
{
	uint32_t slot = (uint32_t)(conn & NET_SLOT_MASK);
	if (slot >= net->opts.clients_max)
		return NULL;
	net_conn *c = net->client_slots[slot];
	return c != NULL && c->id == conn && !c->closing ? c : NULL;
}

void vsr_net_reply(vsr_net *net, uint64_t conn, const vsr_message *m)
{
	net_conn *c = net_client(net, conn);
	if (c == NULL) {
		net->stats.replies_dropped++;
		return;
	}
	if (!net_conn_has_room(c)) {
		net->stats.replies_dropped++;
		return;
	}
	size_t before = c->out.len;
	int rc = vsr_wire_encode_message(&c->out, net->opts.cluster, m);
	if (rc != 0) {
		net_logf(net, 3, "cannot encode a reply: %s", vsr_wire_strerror(rc));
		return;
	}
	if (!net_conn_commit(c, before))
		net->stats.replies_dropped++;
}

void vsr_net_reply_status(vsr_net *net, uint64_t conn, const vsr_wire_status *s)
{
	net_conn *c = net_client(net, conn);
	if (c == NULL)
		return;
	size_t before = c->out.len;
	if (net_conn_has_room(c) && vsr_wire_encode_status(&c->out, net->opts.cluster, s) == 0)
		net_conn_commit(c, before);
}

static void net_peer_timer_closed_cb(uv_handle_t *h)
{
	net_peer *p = h->data;
	vsr_net *net = p->net;
	assert(net->handles > 0);
	net->handles--;
	net_maybe_finish(net);
}

/* ------------------------------------------------------------------------ */
/* Shutdown and inspection.                                                 */

void vsr_net_close(vsr_net *net, vsr_net_close_cb cb)
{
	assert(!net->closing);
	net->closing = true;
	net->close_cb = cb;
	while (net->conns != NULL)
		net_conn_close(net->conns, 0, NULL);
	uv_close((uv_handle_t *)&net->replica_listener, net_handle_closed_cb);
	uv_close((uv_handle_t *)&net->client_listener, net_handle_closed_cb);
	uv_close((uv_handle_t *)&net->sweep_timer, net_handle_closed_cb);
	uv_close((uv_handle_t *)&net->link_timer, net_handle_closed_cb);
	uv_close((uv_handle_t *)&net->flush, net_handle_closed_cb);
	for (uint8_t i = 0; i < net->opts.replica_count; i++)
		uv_close((uv_handle_t *)&net->peers[i].timer, net_peer_timer_closed_cb);
}

void vsr_net_set_history(vsr_net *net, uint64_t history) { net->history = history; }

void vsr_net_pause(vsr_net *net, bool paused)
{
	if (net->closing || net->paused == paused)
		return;
	net->paused = paused;
	uint64_t now = uv_now(net->opts.loop);
	net_conn *next;
	for (net_conn *c = net->conns; c != NULL; c = next) {
		next = c->next; /* a failing connection unlinks itself */
		/* The time this end did not read is not the sender's. */
		if (!paused && c->frame_started_ms != 0)
			c->frame_started_ms = now;
		if (!paused && !net_conn_identified(c))
			c->opened_ms = now;
		int rc = net_conn_follow_pause(c);
		if (rc != 0)
			net_conn_close(c, 1, uv_strerror(rc));
	}
}

bool vsr_net_paused(const vsr_net *net)
{
	return net->paused;
}

void *vsr_net_data(const vsr_net *net)
{
	return net->opts.data;
}

const vsr_net_stats *vsr_net_stats_get(const vsr_net *net)
{
	return &net->stats;
}

bool vsr_net_peer_connected(const vsr_net *net, uint8_t to)
{
	const net_conn *c = net->peers[to].out;
	return c != NULL && c->connected && !c->closing && c->accepted;
}

unsigned vsr_net_config_confirmed(const vsr_net *net)
{
	if (net->opts.config_count == 0)
		return net->opts.replica_count - 1u;
	return (unsigned)__builtin_popcount(net->config_confirmed);
}
