/* accept_bench.c - the transport's cost per accepted client connection with many open.
 *
 * Usage: accept_bench K   opens K + 200 client connections to one transport
 * on loopback, each identified by its HELLO, one after the other, all kept
 * open. Not a test: a figure for callgrind, which counts instructions (noise
 * free) in the accept callback only:
 *   valgrind --tool=callgrind --toggle-collect=net_client_connection_cb \
 *       build/accept_bench 2000
 * Before net_accept kept its own indexes it walked every connection per
 * accept (67.7 M instructions for K = 2000, about 30 k per accept); after,
 * 4.8 M (about 2.2 k). */
#include "vsr_net.h"

#include <stdio.h>
#include <stdlib.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		abort();
	close(fd);
	return ntohs(a.sin_port);
}

static int dial(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("accept_bench: connect");
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	int k = argc == 2 ? atoi(argv[1]) : -1;
	if (k < 0 || k + 200 > (int)VSR_NET_CLIENTS_MAX) {
		fprintf(stderr, "usage: accept_bench K   (0 <= K <= %u)\n", VSR_NET_CLIENTS_MAX - 200);
		return 64;
	}
	uv_loop_t l;
	uv_loop_init(&l);
	vsr_net_options o = {
		.loop = &l, .cluster = 5, .replica = 0, .replica_count = 1,
		.client = {"127.0.0.1", free_port()}, .clients_max = VSR_NET_CLIENTS_MAX,
		.hello_timeout_ms = 600000, .frame_timeout_ms = 600000,
	};
	o.replicas[0] = (vsr_net_address){"127.0.0.1", free_port()};
	vsr_net *net;
	char err[256];
	if (vsr_net_start(&o, &net, err, sizeof err) != 0) {
		fprintf(stderr, "accept_bench: %s\n", err);
		return 1;
	}
	vsr_buf hello = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
	vsr_wire_encode_hello(&hello, 5, &h);
	for (int i = 0; i < k + 200; i++) {
		int fd = dial(o.client.port);
		while (vsr_net_stats_get(net)->clients_accepted < (uint64_t)i + 1)
			uv_run(&l, UV_RUN_NOWAIT);
		if (send(fd, hello.data, hello.len, 0) != (ssize_t)hello.len)
			return 1;
		while (vsr_net_stats_get(net)->wire.frames_in < (uint64_t)i + 1)
			uv_run(&l, UV_RUN_NOWAIT);
	}
	printf("accept_bench: %u connections open\n", vsr_net_stats_get(net)->connections);
	return 0;
}
