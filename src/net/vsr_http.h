/* vsr_http.h - a minimal HTTP/1.x listener for /metrics and /health (libuv).
 *
 * Scrapers and load balancers ask one short GET and read one response. This
 * listener answers exactly that and nothing more: one request per
 * connection, read into a fixed buffer, a deadline for the whole request,
 * a bounded number of connections, and the response written with
 * Content-Length and "Connection: close". Anything else (a request line that
 * does not parse, a method other than GET or HEAD, a header block larger than
 * the buffer, a slow sender) gets a 4xx answer or the connection closed, and
 * is counted; nothing of it reaches the replica's protocol.
 *
 * The body is produced by the owner's handler at request time, on the loop
 * thread: it reads the replica's counters, it does not take part in a step. */
#ifndef VSR_HTTP_H
#define VSR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Request line and headers together. */
#define VSR_HTTP_REQUEST_BYTES_MAX 4096u
/* Connections served at once; more are accepted and closed at once. */
#define VSR_HTTP_CONNECTIONS_MAX 32u
/* A request must have arrived whole within this. */
#define VSR_HTTP_REQUEST_TIMEOUT_MS 5000u

typedef struct vsr_http vsr_http;

/* A growable response body the handler appends to. */
typedef struct vsr_http_body {
	char *data;
	size_t len, cap;
	int failed; /* an append ran out of memory: the answer is a 500 */
} vsr_http_body;

void vsr_http_body_append(vsr_http_body *b, const char *s, size_t len);
void vsr_http_body_printf(vsr_http_body *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Fills `body` for `path` (no query string) and returns the HTTP status
 * (200, 404, 503, ...); sets *content_type to a static string. */
typedef int (*vsr_http_handler)(void *data, const char *path, vsr_http_body *body,
				const char **content_type);

typedef struct vsr_http_options {
	uv_loop_t *loop;
	const char *host; /* numeric address */
	uint16_t port;
	uint32_t request_timeout_ms; /* 0: VSR_HTTP_REQUEST_TIMEOUT_MS */
	vsr_http_handler handler;
	void *data;
} vsr_http_options;

typedef struct vsr_http_stats {
	uint64_t requests;       /* answered by the handler */
	uint64_t bad_requests;   /* 400/405/431 answers */
	uint64_t timeouts;       /* closed for not sending a request, or not reading the answer, in time */
	uint64_t refused;        /* over VSR_HTTP_CONNECTIONS_MAX */
	uint32_t connections;    /* open now */
} vsr_http_stats;

/* Binds and listens. Returns 0 or a negative libuv error with a sentence in
 * err. */
int vsr_http_start(const vsr_http_options *opts, vsr_http **out, char *err, size_t err_len);
/* Closes the listener and every connection; cb runs once all handles are
 * released (cb may be NULL). */
void vsr_http_close(vsr_http *h, void (*cb)(void *data));
const vsr_http_stats *vsr_http_stats_get(const vsr_http *h);
/* The port actually bound (useful when options asked for port 0). */
uint16_t vsr_http_port(const vsr_http *h);

#ifdef __cplusplus
}
#endif

#endif /* VSR_HTTP_H */
