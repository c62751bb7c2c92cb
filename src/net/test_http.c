/* test_http.c - the metrics listener answers GET, refuses the rest, and sheds slow or excess connections. */
#include "vsr_http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

#define BIG_BODY (16u << 20)

static uv_loop_t loop;
static vsr_http *server;
static uv_async_t stop_async;
static uint16_t port;

static int handler(void *data, const char *path, vsr_http_body *body, const char **ct)
{
	(void)data;
	if (strcmp(path, "/metrics") == 0) {
		*ct = "text/plain; version=0.0.4; charset=utf-8";
		vsr_http_body_printf(body, "# TYPE test_total counter\ntest_total %d\n", 42);
		return 200;
	}
	if (strcmp(path, "/big") == 0) {
		/* More than any socket buffers hold: a reader that stops
		 * reading leaves the write unfinished. */
		static char chunk[65536];
		memset(chunk, 'b', sizeof chunk);
		for (unsigned i = 0; i < BIG_BODY / sizeof chunk; i++)
			vsr_http_body_append(body, chunk, sizeof chunk);
		return 200;
	}
	if (strcmp(path, "/health") == 0) {
		vsr_http_body_append(body, "ok\n", 3);
		return 200;
	}
	vsr_http_body_append(body, "no such path\n", 13);
	return 404;
}

static void stop_cb(uv_async_t *a)
{
	vsr_http_close(server, NULL);
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg)
{
	(void)arg;
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	struct timeval tv = {.tv_sec = 20};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
	return fd;
}

/* Reads until the server closes; returns the bytes read (NUL-terminated). */
static size_t read_all(int fd, char *out, size_t cap)
{
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, out + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	return len;
}

static void ask(const char *request, char *out, size_t cap)
{
	int fd = dial();
	CHECK(write(fd, request, strlen(request)) == (ssize_t)strlen(request));
	read_all(fd, out, cap);
	close(fd);
}

int main(void)
{
	static char resp[65536];
	CHECK(uv_loop_init(&loop) == 0);
	char err[256];
	vsr_http_options o = {.loop = &loop, .host = "127.0.0.1", .port = 0,
			      .request_timeout_ms = 300, .handler = handler};
	CHECK(vsr_http_start(&o, &server, err, sizeof err) == 0);
	port = vsr_http_port(server);
	CHECK(port != 0);
	uv_async_init(&loop, &stop_async, stop_cb);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, loop_thread, NULL) == 0);

	ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof resp);
	CHECK(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(strstr(resp, "Content-Type: text/plain; version=0.0.4") != NULL);
	CHECK(strstr(resp, "Content-Length: 40\r\n") != NULL);
	CHECK(strstr(resp, "\r\n\r\n# TYPE test_total counter\ntest_total 42\n") != NULL);

	ask("GET /health?verbose=1 HTTP/1.0\r\n\r\n", resp, sizeof resp);
	CHECK(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(resp, "\r\n\r\nok\n"));

	ask("HEAD /metrics HTTP/1.1\r\n\r\n", resp, sizeof resp);
	CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0 && strstr(resp, "test_total") == NULL);

	ask("GET /nope HTTP/1.1\r\n\r\n", resp, sizeof resp);
	CHECK(strncmp(resp, "HTTP/1.1 404", 12) == 0);
	ask("POST /metrics HTTP/1.1\r\n\r\n", resp, sizeof resp);
	CHECK(strncmp(resp, "HTTP/1.1 405", 12) == 0);
	ask("garbage\r\n\r\n", resp, sizeof resp);
	CHECK(strncmp(resp, "HTTP/1.1 400", 12) == 0);

	/* Headers that never end within the buffer: 431. */
	{
		int fd = dial();
		char big[VSR_HTTP_REQUEST_BYTES_MAX + 100];
		memset(big, 'a', sizeof big);
		memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
		(void)!write(fd, big, sizeof big);
		read_all(fd, resp, sizeof resp);
		CHECK(strncmp(resp, "HTTP/1.1 431", 12) == 0);
		close(fd);
	}
	/* A slow sender is cut at the deadline with no answer. */
	{
		int fd = dial();
		(void)!write(fd, "GET /met", 8);
		CHECK(read_all(fd, resp, sizeof resp) == 0);
		close(fd);
	}
	/* A reader that asks for a large answer and stops reading is cut at
	 * the deadline too: it must not hold a connection (and the answer's
	 * memory) for ever. */
	{
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(fd >= 0);
		int small = 4096;
		CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
		uint64_t timeouts = __atomic_load_n(&vsr_http_stats_get(server)->timeouts,
						    __ATOMIC_RELAXED);
		const char *req = "GET /big HTTP/1.1\r\n\r\n";
		CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
		/* The event: the listener counts the connection as timed out
		 * (bounded: 200 polls of 50 ms against a 300 ms deadline). */
		for (int i = 0; i < 200 && __atomic_load_n(&vsr_http_stats_get(server)->timeouts,
							    __ATOMIC_RELAXED) == timeouts; i++)
			poll(NULL, 0, 50);
		CHECK(__atomic_load_n(&vsr_http_stats_get(server)->timeouts, __ATOMIC_RELAXED) ==
		      timeouts + 1);
		size_t got = 0;
		for (;;) {
			ssize_t n = read(fd, resp, sizeof resp);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		CHECK(got < BIG_BODY); /* cut short: what the kernel had buffered */
		close(fd);
	}
	/* Excess connections are closed at once; the held ones then time out
	 * and the listener serves again. */
	{
		int held[VSR_HTTP_CONNECTIONS_MAX];
		for (unsigned i = 0; i < VSR_HTTP_CONNECTIONS_MAX; i++)
			held[i] = dial();
		int extra = dial();
		CHECK(read_all(extra, resp, sizeof resp) == 0); /* closed without answer */
		close(extra);
		for (unsigned i = 0; i < VSR_HTTP_CONNECTIONS_MAX; i++) {
			CHECK(read_all(held[i], resp, sizeof resp) == 0);
			close(held[i]);
		}
		ask("GET /health HTTP/1.1\r\n\r\n", resp, sizeof resp);
		CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
	}

	uv_async_send(&stop_async);
	pthread_join(th, NULL);
	CHECK(uv_loop_close(&loop) == 0);
	printf("test_http: ok\n");
	return 0;
}
