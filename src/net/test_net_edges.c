/* test_net_edges.c - the transport at its edges: what a review found.
 *
 * Each case is a regression test for one finding; its name says which:
 *   auth-drop-seq     an authenticated connection whose reply is dropped by
 *                     the byte bound still delivers the next reply: a
 *                     dropped frame must not use up a MAC sequence number
 *   peer-replace      a replica has one identified inbound connection: each
 *                     newer one from the same replica closes the older
 *                     (found through a per-replica index, not a walk)
 *   pause-hello       a connection accepted while this end does not read
 *                     (storage backpressure) is not closed for a HELLO it
 *                     could not have been read; once reading resumes it
 *                     gets the whole HELLO deadline
 *   accept-many       many silent connections, then more: eviction still
 *                     takes the oldest silent one and the slots stay
 *                     consistent (the accept path keeps its own index of
 *                     unidentified connections and free slots)
 *   config-mismatch   a replica whose configuration fingerprint differs is
 *                     refused in both directions: inbound, its HELLO is
 *                     answered with a CLOSE naming the part and nothing it
 *                     sent after the HELLO is delivered; outbound, nothing
 *                     is sent before its HELLO arrived and nothing after it
 *                     but a CLOSE; counted, logged with both values; with
 *                     an equal fingerprint it is accepted
 *   accept-nomem      an accept that finds no memory for its connection
 *                     leaves it queued in the listener (libuv then stops
 *                     watching the port): it is accepted once memory is
 *                     back, and the port accepts again (before, the port
 *                     stayed deaf for good)
 *
 * One transport on loopback, a raw blocking client on this side; the
 * transport's loop is turned by hand until the outcome shows, against a
 * bounded number of turns (never a sleep). */
#include "vsr_net.h"
#include "nomem_wrap.h" /* linked with --wrap=malloc,calloc,realloc */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			exit(1);                                               \
		}                                                              \
	} while (0)

#define CLUSTER 78

static const uint8_t test_key[VSR_WIRE_KEY_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* A listener on a kernel-chosen port, released for the transport to bind. */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
	socklen_t len = sizeof a;
	CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void quiet_log(void *data, int level, const char *msg)
{
	(void)data;
	if (level >= 2)
		fprintf(stderr, "  net [%d] %s\n", level, msg);
}

/* Starts the transport under test, replica 0, on loop l (initialised
 * here) with the options the case set in *o, and what every case shares:
 * the cluster, one replica unless o says more, kernel-chosen ports for the
 * client port and replica 0 unless o names them, quiet_log unless o has a
 * log of its own. */
static vsr_net *edges_start(uv_loop_t *l, vsr_net_options *o)
{
	CHECK(uv_loop_init(l) == 0);
	o->loop = l;
	o->cluster = CLUSTER;
	if (o->replica_count == 0)
		o->replica_count = 1;
	if (o->client.host == NULL)
		o->client = (vsr_net_address){"127.0.0.1", free_port()};
	if (o->replicas[0].host == NULL)
		o->replicas[0] = (vsr_net_address){"127.0.0.1", free_port()};
	if (o->log == NULL)
		o->log = quiet_log;
	vsr_net *net = NULL;
	char err[256];
	if (vsr_net_start(o, &net, err, sizeof err) != 0) {
		fprintf(stderr, "vsr_net_start: %s\n", err);
		exit(1);
	}
	return net;
}

/* Closes the transport and runs its loop until every handle is gone. */
static void edges_stop(uv_loop_t *l, vsr_net *net)
{
	vsr_net_close(net, NULL);
	CHECK(uv_run(l, UV_RUN_DEFAULT) == 0);
	CHECK(uv_loop_close(l) == 0);
}

static int dial(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
	return fd;
}

/* A raw client: its socket, reader and authentication state. */
typedef struct rclient {
	int fd;
	vsr_wire_reader rd;
	vsr_wire_decoded d;
	vsr_wire_conn_auth auth;
} rclient;

/* Turns the loop until a whole frame arrives on c (decoded into c->d):
 * returns 0, -1 at the end of the stream, or a wire error. */
static int rclient_next(uv_loop_t *l, rclient *c)
{
	for (int spin = 0; spin < 20000; spin++) {
		uint8_t b;
		/* One byte at a time: the reader must never be fed past a frame. */
		ssize_t n = recv(c->fd, &b, 1, MSG_DONTWAIT);
		if (n == 0)
			return -1;
		if (n < 0) {
			CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
			uv_run(l, UV_RUN_NOWAIT);
			struct pollfd p = {.fd = c->fd, .events = POLLIN};
			(void)poll(&p, 1, 1);
			continue;
		}
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&c->rd, &b, 1, &used);
		if (rc == 1)
			return vsr_wire_reader_decode(&c->rd, &c->d);
		if (rc < 0)
			return rc;
	}
	CHECK(!"no frame within the turns allowed");
	return -1;
}

/* A raw client on socket fd, ready to read frames (no authentication). */
static void rclient_init(rclient *c, int fd, const vsr_wire_config *wc)
{
	c->fd = fd;
	vsr_wire_reader_init(&c->rd, wc, NULL);
	vsr_wire_decoded_init(&c->d);
}

static void rclient_free(rclient *c)
{
	vsr_wire_reader_free(&c->rd);
	vsr_wire_decoded_free(&c->d);
	close(c->fd);
}

static void rclient_send(rclient *c, vsr_buf *b)
{
	CHECK(send(c->fd, b->data, b->len, MSG_NOSIGNAL) == (ssize_t)b->len);
	b->len = 0;
}

/* ------------------------------------------------------------------------ */
/* auth-drop-seq                                                            */

static unsigned drop_requests;

/* Each request gets a reply too large for the byte bound (dropped), then a
 * small one (queued). */
static void drop_request_cb(vsr_net *net, uint64_t conn, const vsr_message *m)
{
	static uint8_t big[8192];
	vsr_message r = {.type = VSR_MSG_REPLY, .status = VSR_REPLY_OK};
	r.request = m->request;
	r.request.op = NULL;
	r.request.op_len = 0;
	r.body = big;
	r.body_len = sizeof big;
	uint64_t dropped = vsr_net_stats_get(net)->replies_dropped;
	vsr_net_reply(net, conn, &r);
	CHECK(vsr_net_stats_get(net)->replies_dropped == dropped + 1);
	r.body = (const uint8_t *)"ok";
	r.body_len = 2;
	vsr_net_reply(net, conn, &r);
	CHECK(vsr_net_stats_get(net)->replies_dropped == dropped + 1);
	drop_requests++;
}

static void test_auth_drop_seq(void)
{
	uv_loop_t l;
	vsr_net_options o = {
		.queue_bytes_max = 4096, .client_key = test_key, .request_cb = drop_request_cb,
	};
	vsr_net *net = edges_start(&l, &o);
	char err[256];

	rclient c = {.fd = dial(o.client.port)};
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, CLUSTER, 1);
	vsr_wire_reader_init(&c.rd, &wc, NULL);
	vsr_wire_decoded_init(&c.d);
	vsr_wire_conn_auth_init(&c.auth, test_key, CLUSTER, VSR_WIRE_ROLE_CLIENT, 0);
	vsr_buf out = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .instance = 9};
	CHECK(vsr_wire_conn_auth_send_hello(&c.auth, &out, h) == 0);
	rclient_send(&c, &out);
	CHECK(rclient_next(&l, &c) == 0 && c.d.type == VSR_WIRE_HELLO);
	vsr_wire_hello server_hello = c.d.hello;
	CHECK(vsr_wire_conn_auth_peer_hello(&c.auth, &server_hello, &out, err, sizeof err) == 0);
	rclient_send(&c, &out);
	CHECK(rclient_next(&l, &c) == 0 && c.d.type == VSR_WIRE_AUTH);
	vsr_wire_auth server_auth = c.d.auth;
	CHECK(vsr_wire_conn_auth_peer_auth(&c.auth, &server_auth, &c.rd, err, sizeof err) == 0);

	for (uint64_t k = 1; k <= 3; k++) {
		vsr_message m = {.type = VSR_MSG_REQUEST};
		m.request.session = 3;
		m.request.request = k;
		m.request.kind = VSR_REQUEST_OP;
		m.request.op = (const uint8_t *)"x";
		m.request.op_len = 1;
		CHECK(vsr_wire_encode_message(&out, CLUSTER, &m) == 0);
		CHECK(vsr_wire_conn_auth_seal(&c.auth, &out, 0) == 0);
		rclient_send(&c, &out);
		int rc = rclient_next(&l, &c);
		if (rc != 0)
			fprintf(stderr, "auth-drop-seq: reply %llu: %s (%s)\n", (unsigned long long)k,
				rc == -1 ? "end of stream" : vsr_wire_strerror(rc), c.rd.err);
		CHECK(rc == 0);
		CHECK(c.d.type == VSR_MSG_REPLY && c.d.message.request.request == k &&
		      c.d.message.body_len == 2);
	}
	CHECK(drop_requests == 3);
	CHECK(vsr_net_stats_get(net)->replies_dropped == 3);
	CHECK(vsr_net_stats_get(net)->auth_failures == 0);
	vsr_buf_free(&out);
	vsr_wire_reader_free(&c.rd);
	vsr_wire_decoded_free(&c.d);
	close(c.fd);
	edges_stop(&l, net);
	printf("auth-drop-seq: ok (3 replies dropped by the byte bound, 3 delivered)\n");
}

/* ------------------------------------------------------------------------ */
/* accept-many                                                              */

static void accept_wait(uv_loop_t *l, vsr_net *net, uint64_t total)
{
	for (int spin = 0; spin < 20000; spin++) {
		const vsr_net_stats *s = vsr_net_stats_get(net);
		if (s->clients_accepted + s->connections_refused >= total)
			return;
		uv_run(l, UV_RUN_NOWAIT);
		/* The accept is the kernel's: give it a moment. */
		poll(NULL, 0, 0);
	}
	CHECK(!"accepts did not show");
}

static void test_accept_many(void)
{
	enum { MAX = 40 };
	uv_loop_t l;
	vsr_net_options o = {.clients_max = MAX, .hello_timeout_ms = 60000, .evict_silent_ms = 1};
	vsr_net *net = edges_start(&l, &o);
	vsr_buf hello = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
	CHECK(vsr_wire_encode_hello(&hello, CLUSTER, &h) == 0);

	/* MAX - 12 identified clients, then 20 silent ones: at most
	 * VSR_NET_UNIDENTIFIED_MAX silent ones stay, each newer one evicting
	 * the oldest. */
	int fds[MAX + 40];
	int nfd = 0;
	uint64_t total = 0;
	for (int i = 0; i < MAX - 12; i++) {
		fds[nfd++] = dial(o.client.port);
		accept_wait(&l, net, ++total);
		CHECK(send(fds[nfd - 1], hello.data, hello.len, 0) == (ssize_t)hello.len);
	}
	for (int spin = 0; spin < 20000 &&
			   vsr_net_stats_get(net)->wire.frames_in < (uint64_t)(MAX - 12);
	     spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 0);
	}
	CHECK(vsr_net_stats_get(net)->wire.frames_in == (uint64_t)(MAX - 12));
	int first_silent = nfd;
	for (int i = 0; i < 20; i++) {
		fds[nfd++] = dial(o.client.port);
		accept_wait(&l, net, ++total);
		/* evict_silent_ms is 1: the next accept may evict this one. */
		uv_sleep(2);
		uv_update_time(&l);
	}
	const vsr_net_stats *s = vsr_net_stats_get(net);
	/* 12 slots were free: silent connections over the unidentified cap
	 * (8) evict the oldest silent one, never an identified one. */
	fprintf(stderr, "accept-many: %u open, %llu evicted, %llu refused\n", s->connections,
		(unsigned long long)s->connections_evicted,
		(unsigned long long)s->connections_refused);
	CHECK(s->connections_refused == 0);
	CHECK(s->connections_evicted == 20 - VSR_NET_UNIDENTIFIED_MAX);
	CHECK(s->connections == (uint32_t)(MAX - 12 + VSR_NET_UNIDENTIFIED_MAX));
	/* The oldest silent ones are the ones closed, in order. */
	for (int i = first_silent; i < nfd; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		bool evicted = i < first_silent + 20 - (int)VSR_NET_UNIDENTIFIED_MAX;
		char buf[512];
		ssize_t n = -2, got; /* -2: nothing read */
		/* The HELLO arrives first; an evicted one then ends. */
		for (int spin = 0; spin < 2000; spin++) {
			uv_run(&l, UV_RUN_NOWAIT);
			if (poll(&p, 1, 1) <= 0)
				continue;
			got = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
			n = got;
			if (got <= 0)
				break;
			if (!evicted)
				break; /* got its HELLO; stays open */
		}
		CHECK(evicted == (n == 0));
	}
	/* Everything closed from this side: all slots come back and a new
	 * identified client fits again. */
	for (int i = 0; i < nfd; i++)
		close(fds[i]);
	for (int spin = 0; spin < 20000 && vsr_net_stats_get(net)->connections > 0; spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 0);
	}
	CHECK(vsr_net_stats_get(net)->connections == 0);
	/* Every slot is free again: MAX identified clients fit, one more is
	 * refused. */
	nfd = 0;
	uint64_t frames = vsr_net_stats_get(net)->wire.frames_in;
	for (int i = 0; i < MAX + 1; i++) {
		fds[nfd++] = dial(o.client.port);
		accept_wait(&l, net, ++total);
		if (i < MAX)
			CHECK(send(fds[i], hello.data, hello.len, 0) == (ssize_t)hello.len);
		for (int spin = 0; spin < 20000 && i < MAX &&
				   vsr_net_stats_get(net)->wire.frames_in < frames + (uint64_t)i + 1;
		     spin++) {
			uv_run(&l, UV_RUN_NOWAIT);
			poll(NULL, 0, 0);
		}
	}
	CHECK(vsr_net_stats_get(net)->connections == (uint32_t)MAX);
	CHECK(vsr_net_stats_get(net)->connections_refused == 1);
	for (int i = 0; i < nfd; i++)
		close(fds[i]);
	vsr_buf_free(&hello);
	edges_stop(&l, net);
	printf("accept-many: ok\n");
}

/* ------------------------------------------------------------------------ */
/* accept-nomem                                                             */

static void test_accept_nomem(void)
{
	uv_loop_t l;
	/* A short HELLO deadline: the sweep, which tries a put-off accept
	 * again, runs every 201 ms. */
	vsr_net_options o = {.hello_timeout_ms = 400};
	vsr_net *net = edges_start(&l, &o);
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, CLUSTER, 1);

	/* The accept's first allocation (its connection) fails. */
	rclient a, b;
	rclient_init(&a, dial(o.client.port), &wc);
	nomem_countdown = 0;
	for (int spin = 0; spin < 20000 && nomem_failed == 0; spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 0);
	}
	CHECK(nomem_failed == 1 && nomem_countdown == -1);
	CHECK(vsr_net_stats_get(net)->accepts_deferred == 1);
	CHECK(vsr_net_stats_get(net)->clients_accepted == 0);
	/* Memory is back: that connection is accepted (the transport's HELLO
	 * reaches it) without a new dial, and so is the next one. */
	CHECK(rclient_next(&l, &a) == 0 && a.d.type == VSR_WIRE_HELLO);
	rclient_init(&b, dial(o.client.port), &wc);
	CHECK(rclient_next(&l, &b) == 0 && b.d.type == VSR_WIRE_HELLO);
	CHECK(vsr_net_stats_get(net)->clients_accepted == 2);
	CHECK(vsr_net_stats_get(net)->accepts_deferred == 1);
	rclient_free(&a);
	rclient_free(&b);
	edges_stop(&l, net);
	printf("accept-nomem: ok (an accept without memory was put off, then taken)\n");
}

/* ------------------------------------------------------------------------ */
/* peer-replace                                                             */

/* Turns the loop until fd reaches its end of stream (true) or `turns`
 * turns of at most 1 ms have passed. */
static bool wait_eof(uv_loop_t *l, int fd, int turns)
{
	for (int spin = 0; spin < turns; spin++) {
		uv_run(l, UV_RUN_NOWAIT);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1) <= 0)
			continue;
		char buf[512];
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0)
			return true;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return true; /* reset */
	}
	return false;
}

static void test_peer_replace(void)
{
	uv_loop_t l;
	vsr_net_options o = {.replica_count = 3, .reconnect_min_ms = 1000};
	o.replicas[1] = (vsr_net_address){"127.0.0.1", free_port()}; /* nobody: dials fail */
	o.replicas[2] = (vsr_net_address){"127.0.0.1", free_port()};
	vsr_net *net = edges_start(&l, &o);
	vsr_buf hello1 = {0}, hello2 = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = 1};
	CHECK(vsr_wire_encode_hello(&hello1, CLUSTER, &h) == 0);
	h.replica = 2;
	CHECK(vsr_wire_encode_hello(&hello2, CLUSTER, &h) == 0);
	/* Replica 3 (index 2) connects once; replica 2 (index 1) three times. */
	int other = dial(o.replicas[0].port);
	CHECK(send(other, hello2.data, hello2.len, 0) == (ssize_t)hello2.len);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = dial(o.replicas[0].port);
		CHECK(send(fds[i], hello1.data, hello1.len, 0) == (ssize_t)hello1.len);
		/* Identified in order: wait for this HELLO to be read. */
		for (int spin = 0; spin < 20000 && vsr_net_stats_get(net)->wire.frames_in <
							     (uint64_t)i + 2;
		     spin++) {
			uv_run(&l, UV_RUN_NOWAIT);
			poll(NULL, 0, 0);
		}
		CHECK(vsr_net_stats_get(net)->wire.frames_in == (uint64_t)i + 2);
		if (i > 0)
			CHECK(wait_eof(&l, fds[i - 1], 5000)); /* the older one is closed */
	}
	CHECK(vsr_net_stats_get(net)->connections_replaced == 2);
	/* The newest from replica 2 and the one from replica 3 stay open. */
	CHECK(!wait_eof(&l, fds[2], 100));
	CHECK(!wait_eof(&l, other, 100));
	/* Once the newest closes, a new connection from replica 2 replaces
	 * nothing. */
	close(fds[2]);
	for (int spin = 0; spin < 2000; spin++)
		uv_run(&l, UV_RUN_NOWAIT);
	int again = dial(o.replicas[0].port);
	CHECK(send(again, hello1.data, hello1.len, 0) == (ssize_t)hello1.len);
	for (int spin = 0; spin < 20000 && vsr_net_stats_get(net)->wire.frames_in < 5; spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 0);
	}
	CHECK(vsr_net_stats_get(net)->wire.frames_in == 5);
	CHECK(vsr_net_stats_get(net)->connections_replaced == 2);
	CHECK(!wait_eof(&l, again, 100));
	for (int i = 0; i < 2; i++)
		close(fds[i]);
	close(again);
	close(other);
	vsr_buf_free(&hello1);
	vsr_buf_free(&hello2);
	edges_stop(&l, net);
	printf("peer-replace: ok (2 replaced)\n");
}

/* ------------------------------------------------------------------------ */
/* pause-hello                                                              */

static void test_pause_hello(void)
{
	uv_loop_t l;
	vsr_net_options o = {.hello_timeout_ms = 100};
	vsr_net *net = edges_start(&l, &o);
	vsr_net_pause(net, true);
	int fd = dial(o.client.port);
	accept_wait(&l, net, 1);
	vsr_buf hello = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
	CHECK(vsr_wire_encode_hello(&hello, CLUSTER, &h) == 0);
	CHECK(send(fd, hello.data, hello.len, 0) == (ssize_t)hello.len);
	/* Three HELLO deadlines pass while this end does not read. */
	uv_update_time(&l);
	uint64_t until = uv_now(&l) + 300;
	while (uv_now(&l) < until) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 5);
		uv_update_time(&l);
	}
	CHECK(vsr_net_stats_get(net)->protocol_errors == 0);
	CHECK(vsr_net_stats_get(net)->connections == 1);
	vsr_net_pause(net, false);
	for (int spin = 0; spin < 20000 && vsr_net_stats_get(net)->wire.frames_in < 1; spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 0);
	}
	CHECK(vsr_net_stats_get(net)->wire.frames_in == 1); /* its HELLO, now read */
	CHECK(vsr_net_stats_get(net)->connections == 1);
	CHECK(vsr_net_stats_get(net)->protocol_errors == 0);
	close(fd);
	vsr_buf_free(&hello);
	edges_stop(&l, net);
	printf("pause-hello: ok\n");
}

/* ------------------------------------------------------------------------ */
/* config-mismatch                                                          */

static unsigned cfg_messages;
static char cfg_error[512];
static bool cfg_back;

static void cfg_peer_cb(vsr_net *net, const vsr_message *m)
{
	(void)net;
	CHECK(m->type == VSR_MSG_COMMIT && m->replica == 1);
	cfg_messages++;
}

static void cfg_log(void *data, int level, const char *msg)
{
	(void)data;
	if (level == 3)
		snprintf(cfg_error, sizeof cfg_error, "%s", msg);
	if (strstr(msg, "replica 2 now runs with the same configuration") != NULL)
		cfg_back = true;
}

/* HELLO of replica index 1 with `config` (6 parts), then a COMMIT from it. */
static void cfg_hello_commit(vsr_buf *out, const uint64_t *config)
{
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = 1, .instance = 5,
			    .config_count = 6};
	memcpy(h.config, config, sizeof h.config[0] * 6);
	CHECK(vsr_wire_encode_hello(out, CLUSTER, &h) == 0);
	vsr_message m = {.type = VSR_MSG_COMMIT, .replica = 1};
	CHECK(vsr_wire_encode_message(out, CLUSTER, &m) == 0);
}

static void test_config_mismatch(void)
{
	uv_loop_t l;
	const uint64_t ours[6] = {1, 2, 3, 4, 5, 6};
	const uint64_t limits_differ[6] = {1, 2, 9, 4, 5, 6};
	/* Replica 2 (index 1) is this test: a listener the transport dials. */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(lfd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 4) == 0);
	socklen_t alen = sizeof a;
	CHECK(getsockname(lfd, (struct sockaddr *)&a, &alen) == 0);
	vsr_net_options o = {
		.replica_count = 2, .reconnect_min_ms = 10, .reconnect_max_ms = 50,
		.config = ours, .config_count = 6, .peer_message_cb = cfg_peer_cb, .log = cfg_log,
	};
	o.replicas[1] = (vsr_net_address){"127.0.0.1", ntohs(a.sin_port)};
	vsr_net *net = edges_start(&l, &o);
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, CLUSTER, 2);
	vsr_buf out = {0};
	vsr_message commit = {.type = VSR_MSG_COMMIT, .replica = 0};

	/* Outbound: the transport dials; until the HELLO from here arrives it
	 * sends nothing but its own HELLO. */
	int ofd = -1;
	for (int spin = 0; spin < 20000 && ofd < 0; spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 1);
		ofd = accept(lfd, NULL, NULL);
	}
	CHECK(ofd >= 0);
	CHECK(fcntl(ofd, F_SETFL, 0) == 0); /* accepted sockets inherit nothing, but be sure */
	rclient oc;
	rclient_init(&oc, ofd, &wc);
	CHECK(rclient_next(&l, &oc) == 0 && oc.d.type == VSR_WIRE_HELLO);
	CHECK(oc.d.hello.config_count == 6 && memcmp(oc.d.hello.config, ours, sizeof ours) == 0);
	uint64_t dropped = vsr_net_stats_get(net)->sends_dropped_disconnected;
	vsr_net_send(net, 1, &commit);
	CHECK(vsr_net_stats_get(net)->sends_dropped_disconnected == dropped + 1);
	CHECK(!vsr_net_peer_connected(net, 1));
	cfg_hello_commit(&out, limits_differ);
	rclient_send(&oc, &out);
	int rc = rclient_next(&l, &oc);
	CHECK(rc == 0 && oc.d.type == VSR_WIRE_CLOSE);
	CHECK(strstr(oc.d.close.text, "configuration differs (limits)") != NULL);
	CHECK(rclient_next(&l, &oc) == -1);
	CHECK(vsr_net_stats_get(net)->config_mismatches == 1);
	CHECK(strstr(cfg_error, "replica 2 refused: its configuration differs from this "
				"replica's: limits differ (ours 0000000000000003, theirs "
				"0000000000000009)") != NULL);
	cfg_error[0] = '\0';
	rclient_free(&oc);

	/* Inbound: its COMMIT, sent right after the HELLO, is not delivered. */
	rclient ic;
	rclient_init(&ic, dial(o.replicas[0].port), &wc);
	cfg_hello_commit(&out, limits_differ);
	rclient_send(&ic, &out);
	CHECK(rclient_next(&l, &ic) == 0 && ic.d.type == VSR_WIRE_HELLO);
	CHECK(rclient_next(&l, &ic) == 0 && ic.d.type == VSR_WIRE_CLOSE);
	CHECK(rclient_next(&l, &ic) == -1);
	CHECK(vsr_net_stats_get(net)->config_mismatches == 2);
	CHECK(cfg_messages == 0);
	CHECK(cfg_error[0] == '\0'); /* the same peer and fingerprint: logged once */
	rclient_free(&ic);

	/* The same fingerprint: accepted, its COMMIT delivered. */
	rclient_init(&ic, dial(o.replicas[0].port), &wc);
	cfg_hello_commit(&out, ours);
	rclient_send(&ic, &out);
	CHECK(rclient_next(&l, &ic) == 0 && ic.d.type == VSR_WIRE_HELLO);
	for (int spin = 0; spin < 20000 && cfg_messages == 0; spin++) {
		uv_run(&l, UV_RUN_NOWAIT);
		poll(NULL, 0, 0);
	}
	CHECK(cfg_messages == 1 && cfg_back);
	CHECK(vsr_net_stats_get(net)->config_mismatches == 2);
	rclient_free(&ic);

	vsr_buf_free(&out);
	close(lfd);
	edges_stop(&l, net);
	printf("config-mismatch: ok (refused both ways, nothing delivered, accepted when equal)\n");
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	if (only == NULL || strcmp(only, "auth-drop-seq") == 0)
		test_auth_drop_seq();
	if (only == NULL || strcmp(only, "peer-replace") == 0)
		test_peer_replace();
	if (only == NULL || strcmp(only, "pause-hello") == 0)
		test_pause_hello();
	if (only == NULL || strcmp(only, "accept-many") == 0)
		test_accept_many();
	if (only == NULL || strcmp(only, "config-mismatch") == 0)
		test_config_mismatch();
	if (only == NULL || strcmp(only, "accept-nomem") == 0)
		test_accept_nomem();
	return 0;
}
