/* test_net.c - two transports and a raw client on loopback: delivery, replies, garbage, clean close. */
#include "vsr_net.h"

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

#define CLUSTER 77

static uv_loop_t loop;
static vsr_net *nets[2];
static uint16_t ports[4]; /* replica 0, replica 1, client 0, client 1 */
static unsigned commits_seen;
static uint64_t request_conn;
static unsigned nets_closed;
static uv_timer_t send_timer, deadline_timer;
static int phase; /* 0 peers, 1 garbage client, 2 good client, 3 done */

/* raw client */
static uv_tcp_t client;
static uv_connect_t client_connect;
static uv_write_t client_write;
static vsr_buf client_out;
static vsr_wire_reader client_reader;
static vsr_wire_decoded client_decoded;
static bool client_got_reply, client_eof;
static char client_buf[65536];

/* Free ports: bind several at once so they differ, then release them. */
static void pick_ports(void)
{
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(fds[i] >= 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		CHECK(bind(fds[i], (struct sockaddr *)&a, sizeof a) == 0);
		socklen_t len = sizeof a;
		CHECK(getsockname(fds[i], (struct sockaddr *)&a, &len) == 0);
		ports[i] = ntohs(a.sin_port);
	}
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}

static void test_log(void *data, int level, const char *msg)
{
	fprintf(stderr, "  net%d [%d] %s\n", (int)(intptr_t)data, level, msg);
}

static void start_client(void);

static void peer_message_cb(vsr_net *net, const vsr_message *m)
{
	CHECK(vsr_net_data(net) == (void *)(intptr_t)1);
	CHECK(m->type == VSR_MSG_COMMIT && m->replica == 0 && m->commit == 5);
	commits_seen++;
	if (phase == 0) {
		phase = 1;
		uv_timer_stop(&send_timer);
		start_client();
	}
}

static void request_cb(vsr_net *net, uint64_t conn, const vsr_message *m)
{
	CHECK(phase == 2);
	CHECK(m->type == VSR_MSG_REQUEST && m->request.request == 99);
	request_conn = conn;
	vsr_message r = {.type = VSR_MSG_REPLY, .status = VSR_REPLY_OK, .view = 0};
	r.request = m->request;
	r.request.op = NULL;
	r.request.op_len = 0;
	r.body = (const uint8_t *)"ok";
	r.body_len = 2;
	vsr_net_reply(net, conn, &r);
	/* A reply for a connection id that never existed is dropped quietly. */
	vsr_net_reply(net, conn + (1u << 20), &r);
}

static void send_timer_cb(uv_timer_t *t)
{
	(void)t;
	vsr_message m = {.type = VSR_MSG_COMMIT, .replica = 0, .cluster = CLUSTER, .commit = 5};
	vsr_net_send(nets[0], 1, &m);
}

static void net_closed_cb(void *data)
{
	(void)data;
	nets_closed++;
}

static void finish(void)
{
	phase = 3;
	uv_timer_stop(&deadline_timer);
	uv_close((uv_handle_t *)&send_timer, NULL);
	uv_close((uv_handle_t *)&deadline_timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&client))
		uv_close((uv_handle_t *)&client, NULL);
	vsr_net_close(nets[0], net_closed_cb);
	vsr_net_close(nets[1], net_closed_cb);
}

static void deadline_cb(uv_timer_t *t)
{
	(void)t;
	fprintf(stderr, "test_net: deadline passed in phase %d\n", phase);
	exit(1);
}

static void client_alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	(void)h;
	(void)s;
	b->base = client_buf;
	b->len = sizeof client_buf;
}

static void client_closed_cb(uv_handle_t *h)
{
	(void)h;
	/* Phase 1 over: the server dropped the garbage sender. Now a good one. */
	CHECK(vsr_net_stats_get(nets[1])->frames_malformed == 1);
	phase = 2;
	start_client();
}

static void client_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	(void)s;
	if (n < 0) {
		client_eof = true;
		CHECK(phase == 1); /* only the garbage client is dropped */
		uv_close((uv_handle_t *)&client, client_closed_cb);
		return;
	}
	size_t off = 0;
	while (off < (size_t)n) {
		size_t used;
		int rc = vsr_wire_reader_feed(&client_reader, (const uint8_t *)b->base + off,
					      (size_t)n - off, &used);
		off += used;
		if (rc == 0)
			break;
		CHECK(rc == 1);
		CHECK(vsr_wire_reader_decode(&client_reader, &client_decoded) == 0);
		if (client_decoded.type == VSR_MSG_REPLY) {
			CHECK(client_decoded.message.request.request == 99);
			CHECK(client_decoded.message.body_len == 2);
			client_got_reply = true;
			finish();
			return;
		}
		CHECK(client_decoded.type == VSR_WIRE_HELLO);
		CHECK(client_decoded.hello.replica == 1);
	}
}

static void client_write_cb(uv_write_t *w, int status)
{
	(void)w;
	(void)status;
	vsr_buf_free(&client_out);
}

static void client_connect_cb(uv_connect_t *req, int status)
{
	(void)req;
	CHECK(status == 0);
	CHECK(uv_read_start((uv_stream_t *)&client, client_alloc_cb, client_read_cb) == 0);
	if (phase == 1) {
		static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdefghijklmnop";
		CHECK(vsr_buf_append(&client_out, garbage, sizeof garbage) == VSR_OK);
	} else {
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .instance = 5};
		CHECK(vsr_wire_encode_hello(&client_out, CLUSTER, &h) == 0);
		vsr_message m = {.type = VSR_MSG_REQUEST};
		m.request.session = 3;
		m.request.request = 99;
		m.request.kind = VSR_REQUEST_OP;
		m.request.op = (const uint8_t *)"x";
		m.request.op_len = 1;
		CHECK(vsr_wire_encode_message(&client_out, CLUSTER, &m) == 0);
	}
	uv_buf_t b = uv_buf_init((char *)client_out.data, (unsigned)client_out.len);
	CHECK(uv_write(&client_write, (uv_stream_t *)&client, &b, 1, client_write_cb) == 0);
}

static void start_client(void)
{
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, CLUSTER, 2);
	vsr_wire_reader_free(&client_reader);
	vsr_wire_reader_init(&client_reader, &wc, NULL);
	CHECK(uv_tcp_init(&loop, &client) == 0);
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", ports[3], &a);
	CHECK(uv_tcp_connect(&client_connect, &client, (struct sockaddr *)&a, client_connect_cb) == 0);
}

/* A limit of two client connections. Connections that never identify
 * themselves give way to newer ones (the oldest is evicted), so silent
 * sockets cannot lock clients out; once both slots hold identified clients,
 * a third connection is accepted and closed at once, and counted. Blocking
 * sockets on this side; the transport's loop is turned by hand until the
 * outcome shows. */
static int client_limit_connect(uv_loop_t *l, vsr_net *net, uint16_t port, uint64_t seen_before)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
	/* Accepted in order: wait for this one before the next. */
	for (int spin = 0; spin < 1000 && vsr_net_stats_get(net)->clients_accepted +
					       vsr_net_stats_get(net)->connections_refused <
				       seen_before + 1; spin++)
		uv_run(l, UV_RUN_ONCE);
	return fd;
}

static void test_client_limit(void)
{
	uv_loop_t l;
	CHECK(uv_loop_init(&l) == 0);
	pick_ports();
	vsr_net_options o = {
		.loop = &l, .cluster = CLUSTER, .replica = 0, .replica_count = 1,
		.client = {"127.0.0.1", ports[2]}, .clients_max = 2, .hello_timeout_ms = 5000,
		.evict_silent_ms = 50, .log = test_log,
	};
	o.replicas[0] = (vsr_net_address){"127.0.0.1", ports[0]};
	vsr_net *net = NULL;
	char err[256];
	CHECK(vsr_net_start(&o, &net, err, sizeof err) == 0);
	char buf[256];
	/* Three silent connections: once the first two have been silent for
	 * evict_silent_ms, the third evicts the older. */
	int silent[3];
	for (int i = 0; i < 2; i++)
		silent[i] = client_limit_connect(&l, net, ports[2], (uint64_t)i);
	uv_update_time(&l);
	uint64_t silent_since = uv_now(&l);
	for (int spin = 0; spin < 1000 && uv_now(&l) < silent_since + 60; spin++)
		uv_run(&l, UV_RUN_ONCE); /* the sweep timer turns the loop */
	silent[2] = client_limit_connect(&l, net, ports[2], 2);
	CHECK(vsr_net_stats_get(net)->clients_accepted == 3);
	CHECK(vsr_net_stats_get(net)->connections_evicted == 1);
	CHECK(vsr_net_stats_get(net)->connections == 2);
	ssize_t n, total = 0;
	while ((n = recv(silent[0], buf, sizeof buf, 0)) > 0)
		total += n;
	CHECK(n == 0); /* the evicted one: its HELLO, then the end of stream */
	for (int i = 0; i < 3; i++)
		close(silent[i]);
	for (int spin = 0; spin < 1000 && vsr_net_stats_get(net)->connections > 0; spin++)
		uv_run(&l, UV_RUN_ONCE);
	CHECK(vsr_net_stats_get(net)->connections == 0);

	/* Two identified clients hold both slots: a third is refused. */
	int fds[3];
	vsr_buf hello = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
	CHECK(vsr_wire_encode_hello(&hello, CLUSTER, &h) == 0);
	uint64_t accepted = vsr_net_stats_get(net)->clients_accepted;
	uint64_t frames = vsr_net_stats_get(net)->wire.frames_in;
	for (int i = 0; i < 2; i++) {
		fds[i] = client_limit_connect(&l, net, ports[2], accepted + (uint64_t)i);
		CHECK(send(fds[i], hello.data, hello.len, 0) == (ssize_t)hello.len);
	}
	vsr_buf_free(&hello);
	/* Until the transport has read both HELLOs: they are identified. */
	for (int spin = 0; spin < 1000 && vsr_net_stats_get(net)->wire.frames_in < frames + 2; spin++)
		uv_run(&l, UV_RUN_ONCE);
	CHECK(vsr_net_stats_get(net)->wire.frames_in == frames + 2);
	CHECK(vsr_net_stats_get(net)->connections == 2);
	fds[2] = client_limit_connect(&l, net, ports[2], accepted + 2);
	CHECK(vsr_net_stats_get(net)->connections_refused == 1);
	CHECK(recv(fds[2], buf, sizeof buf, 0) == 0); /* refused: no HELLO at all */
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	unsigned closed = nets_closed;
	vsr_net_close(net, net_closed_cb);
	CHECK(uv_run(&l, UV_RUN_DEFAULT) == 0);
	CHECK(nets_closed == closed + 1);
	CHECK(uv_loop_close(&l) == 0);
}

/* Pausing stops delivery without losing anything: messages sent to a
 * paused transport arrive once it resumes. */
static unsigned pause_delivered;

static void pause_message_cb(vsr_net *net, const vsr_message *m)
{
	(void)net;
	CHECK(m->type == VSR_MSG_COMMIT);
	pause_delivered++;
}

static void pause_tick_cb(uv_timer_t *t)
{
	(void)t; /* only wakes the loop */
}

/* Turns the loop for `ms` of loop time (a repeating timer keeps it awake). */
static void run_for(uv_loop_t *l, uint64_t ms)
{
	uint64_t end = uv_now(l) + ms;
	while (uv_now(l) < end)
		uv_run(l, UV_RUN_ONCE);
}

static void test_pause(void)
{
	uv_loop_t l;
	CHECK(uv_loop_init(&l) == 0);
	pick_ports();
	vsr_net *n[2];
	for (int i = 0; i < 2; i++) {
		vsr_net_options o = {
			.loop = &l, .cluster = CLUSTER, .replica = (uint8_t)i, .replica_count = 2,
			.client = {"127.0.0.1", ports[2 + i]}, .reconnect_min_ms = 5,
			.reconnect_max_ms = 20, .peer_message_cb = pause_message_cb,
		};
		o.replicas[0] = (vsr_net_address){"127.0.0.1", ports[0]};
		o.replicas[1] = (vsr_net_address){"127.0.0.1", ports[1]};
		char err[256];
		CHECK(vsr_net_start(&o, &n[i], err, sizeof err) == 0);
	}
	uv_timer_t tick;
	uv_timer_init(&l, &tick);
	uv_timer_start(&tick, pause_tick_cb, 2, 2);
	vsr_message m = {.type = VSR_MSG_COMMIT, .replica = 0, .cluster = CLUSTER, .commit = 5};
	/* Connected both ways (the HELLO from 0 has reached 1) once one
	 * message gets through. */
	for (int spin = 0; spin < 5000 && pause_delivered == 0; spin++) {
		vsr_net_send(n[0], 1, &m);
		uv_run(&l, UV_RUN_ONCE);
	}
	CHECK(pause_delivered > 0);
	run_for(&l, 20); /* let stragglers arrive */
	vsr_net_pause(n[1], true);
	CHECK(vsr_net_paused(n[1]));
	unsigned before = pause_delivered;
	for (int i = 0; i < 5; i++)
		vsr_net_send(n[0], 1, &m);
	run_for(&l, 100);
	CHECK(pause_delivered == before);
	vsr_net_pause(n[1], false);
	for (int spin = 0; spin < 5000 && pause_delivered < before + 5; spin++)
		uv_run(&l, UV_RUN_ONCE);
	CHECK(pause_delivered == before + 5);
	uv_close((uv_handle_t *)&tick, NULL);
	vsr_net_close(n[0], NULL);
	vsr_net_close(n[1], NULL);
	CHECK(uv_run(&l, UV_RUN_DEFAULT) == 0);
	CHECK(uv_loop_close(&l) == 0);
}

int main(void)
{
	CHECK(uv_loop_init(&loop) == 0);
	pick_ports();
	for (int i = 0; i < 2; i++) {
		vsr_net_options o = {
			.loop = &loop, .cluster = CLUSTER, .replica = (uint8_t)i, .replica_count = 2,
			.client = {"127.0.0.1", ports[2 + i]},
			.reconnect_min_ms = 10, .reconnect_max_ms = 40, .instance = (uint64_t)i + 1,
			.peer_message_cb = peer_message_cb, .request_cb = request_cb,
			.log = test_log, .data = (void *)(intptr_t)i,
		};
		o.replicas[0] = (vsr_net_address){"127.0.0.1", ports[0]};
		o.replicas[1] = (vsr_net_address){"127.0.0.1", ports[1]};
		char err[256];
		int rc = vsr_net_start(&o, &nets[i], err, sizeof err);
		if (rc != 0)
			fprintf(stderr, "%s\n", err);
		CHECK(rc == 0);
	}
	uv_timer_init(&loop, &send_timer);
	uv_timer_init(&loop, &deadline_timer);
	uv_timer_start(&send_timer, send_timer_cb, 5, 5);
	uv_timer_start(&deadline_timer, deadline_cb, 10000, 0);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
	CHECK(phase == 3 && client_got_reply && client_eof);
	CHECK(commits_seen >= 1);
	CHECK(nets_closed == 2);
	vsr_wire_reader_free(&client_reader);
	vsr_wire_decoded_free(&client_decoded);
	CHECK(uv_loop_close(&loop) == 0);
	test_client_limit();
	test_pause();
	printf("net: ok (%u commits delivered, request conn %llu)\n", commits_seen,
	       (unsigned long long)request_conn);
	return 0;
}
