/* vsr_http.c - a minimal HTTP/1.x listener for /metrics and /health (libuv).
 *
 * Happy path: accept, start the request deadline, read until the blank line
 * that ends the headers, parse the request line, ask the handler for the
 * body, write status line + headers + body in one write, close.
 *
 * Failure modes: over the connection limit -> accepted and closed at once;
 * headers larger than the buffer -> 431; a request line that is not
 * "METHOD PATH HTTP/x" -> 400; a method other than GET/HEAD -> 405; the
 * deadline passes -> closed without an answer; an answer not written
 * within the deadline again (a reader that stopped reading) -> closed; the
 * peer goes away or a write fails -> closed. Every handle of a connection is freed only in its
 * close callback, after both of them (socket, timer) have closed. */
#include "vsr_http.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_conn http_conn;

struct vsr_http {
	vsr_http_options opts;
	uv_tcp_t listener;
	http_conn *conns;      /* open connections, a doubly linked list */
	vsr_http_stats stats;
	bool closing;
	int handles_open;      /* the listener and every connection's handles */
	void (*close_cb)(void *data);
};

struct http_conn {
	vsr_http *server;
	http_conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t write;
	int handles_open;
	bool closing;
	bool answered;         /* a response is being written */
	size_t len;
	char buf[VSR_HTTP_REQUEST_BYTES_MAX + 1];
	char *response;
};

/* ------------------------------------------------------------------------ */
/* Bodies.                                                                  */

static bool http_body_reserve(vsr_http_body *b, size_t more)
{
	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (p == NULL) {
		b->failed = 1;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void vsr_http_body_append(vsr_http_body *b, const char *s, size_t len)
{
	if (!http_body_reserve(b, len))
		return;
	memcpy(b->data + b->len, s, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void vsr_http_body_printf(vsr_http_body *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !http_body_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Connections.                                                             */

static void http_server_maybe_done(vsr_http *s)
{
	if (s->closing && s->handles_open == 0 && s->close_cb != NULL) {
		void (*cb)(void *) = s->close_cb;
		s->close_cb = NULL;
		cb(s->opts.data);
	}
	if (s->closing && s->handles_open == 0)
		free(s);
}

static void http_conn_handle_closed_cb(uv_handle_t *h)
{
	http_conn *c = h->data;
	vsr_http *s = c->server;
	if (--c->handles_open > 0)
		return;
	free(c->response);
	free(c);
	s->handles_open--;
	http_server_maybe_done(s);
}

static void http_conn_close(http_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	vsr_http *s = c->server;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->stats.connections--;
	uv_close((uv_handle_t *)&c->timer, http_conn_handle_closed_cb);
	uv_close((uv_handle_t *)&c->tcp, http_conn_handle_closed_cb);
}

static void http_write_cb(uv_write_t *w, int status)
{
	(void)status; /* closed either way: one request per connection */
	http_conn_close(w->data);
}

static const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* Writes the whole response in one write and closes afterwards. */
static void http_respond(http_conn *c, int status, const char *content_type, const char *body,
			 size_t body_len, bool head_only)
{
	assert(!c->answered);
	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	/* The deadline keeps running (restarted for the write): a reader that
	 * stops reading must not hold the connection and the answer for ever. */
	uv_timer_again(&c->timer);
	char head[256];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, http_reason(status), content_type, body_len);
	assert(n > 0 && (size_t)n < sizeof head);
	size_t send_body = head_only ? 0 : body_len;
	c->response = malloc((size_t)n + send_body);
	if (c->response == NULL) {
		http_conn_close(c);
		return;
	}
	memcpy(c->response, head, (size_t)n);
	if (send_body > 0)
		memcpy(c->response + n, body, send_body);
	uv_buf_t b = uv_buf_init(c->response, (unsigned)((size_t)n + send_body));
	c->write.data = c;
	if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, http_write_cb) != 0)
		http_conn_close(c);
}

static void http_respond_error(http_conn *c, int status)
{
	c->server->stats.bad_requests++;
	const char *text = http_reason(status);
	http_respond(c, status, "text/plain; charset=utf-8", text, strlen(text), false);
}

/* The headers are complete in c->buf: parse the request line and answer. */
static void http_handle_request(http_conn *c)
{
	char *eol = strstr(c->buf, "\r\n");
	if (eol == NULL)
		eol = strchr(c->buf, '\n');
	assert(eol != NULL); /* the caller saw the end of the headers */
	*eol = '\0';
	char *method = c->buf;
	char *sp1 = strchr(method, ' ');
	char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp1[1] != '/') {
		http_respond_error(c, 400);
		return;
	}
	*sp1 = '\0';
	*sp2 = '\0';
	char *path = sp1 + 1;
	bool head_only = strcmp(method, "HEAD") == 0;
	if (!head_only && strcmp(method, "GET") != 0) {
		http_respond_error(c, 405);
		return;
	}
	char *query = strchr(path, '?');
	if (query != NULL)
		*query = '\0';
	vsr_http *s = c->server;
	vsr_http_body body = {0};
	const char *content_type = "text/plain; charset=utf-8";
	int status = s->opts.handler(s->opts.data, path, &body, &content_type);
	s->stats.requests++;
	if (body.failed) {
		free(body.data);
		http_respond_error(c, 500);
		return;
	}
	http_respond(c, status, content_type, body.data != NULL ? body.data : "", body.len,
		     head_only);
	free(body.data);
}

static void http_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	http_conn *c = h->data;
	size_t room = VSR_HTTP_REQUEST_BYTES_MAX - c->len;
	*buf = uv_buf_init(c->buf + c->len, (unsigned)room);
}

static void http_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	http_conn *c = stream->data;
	if (c->closing || c->answered)
		return;
	if (nread < 0) {
		http_conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->buf[c->len] = '\0';
	if (strstr(c->buf, "\r\n\r\n") != NULL || strstr(c->buf, "\n\n") != NULL) {
		http_handle_request(c);
		return;
	}
	if (c->len == VSR_HTTP_REQUEST_BYTES_MAX)
		http_respond_error(c, 431);
}

/* The request, or the answer's write, took longer than the deadline.
 * Closing cancels a pending write (its callback sees the close). */
static void http_timeout_cb(uv_timer_t *t)
{
	http_conn *c = t->data;
	c->server->stats.timeouts++;
	http_conn_close(c);
}

static void http_refused_closed_cb(uv_handle_t *h)
{
	vsr_http *s = h->data;
	free(h);
	s->handles_open--;
	http_server_maybe_done(s);
}

static void http_connection_cb(uv_stream_t *listener, int status)
{
	vsr_http *s = listener->data;
	if (status < 0 || s->closing)
		return;
	if (s->stats.connections >= VSR_HTTP_CONNECTIONS_MAX) {
		/* Accept to take it off the backlog, then close it at once. */
		uv_tcp_t *t = malloc(sizeof *t);
		if (t == NULL)
			return;
		uv_tcp_init(s->opts.loop, t);
		t->data = s;
		s->handles_open++;
		(void)uv_accept(listener, (uv_stream_t *)t);
		s->stats.refused++;
		uv_close((uv_handle_t *)t, http_refused_closed_cb);
		return;
	}
	http_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return;
	c->server = s;
	uv_tcp_init(s->opts.loop, &c->tcp);
	uv_timer_init(s->opts.loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles_open = 2;
	s->handles_open++;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->stats.connections++;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, http_alloc_cb, http_read_cb) != 0) {
		http_conn_close(c);
		return;
	}
	uint64_t deadline_ms = s->opts.request_timeout_ms ? s->opts.request_timeout_ms
							    : VSR_HTTP_REQUEST_TIMEOUT_MS;
	/* Repeat set for uv_timer_again when the answer goes out. */
	uv_timer_start(&c->timer, http_timeout_cb, deadline_ms, deadline_ms);
}

/* ------------------------------------------------------------------------ */
/* The listener.                                                            */

int vsr_http_start(const vsr_http_options *opts, vsr_http **out, char *err, size_t err_len)
{
	assert(opts->handler != NULL);
	struct sockaddr_storage addr;
	int rc = uv_ip4_addr(opts->host, opts->port, (struct sockaddr_in *)&addr);
	if (rc != 0)
		rc = uv_ip6_addr(opts->host, opts->port, (struct sockaddr_in6 *)&addr);
	if (rc != 0) {
		snprintf(err, err_len, "metrics: %s is not a numeric address", opts->host);
		return rc;
	}
	vsr_http *s = calloc(1, sizeof *s);
	if (s == NULL) {
		snprintf(err, err_len, "metrics: out of memory");
		return UV_ENOMEM;
	}
	s->opts = *opts;
	uv_tcp_init(opts->loop, &s->listener);
	s->listener.data = s;
	s->handles_open = 1;
	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 64, http_connection_cb);
	if (rc != 0) {
		snprintf(err, err_len, "metrics: cannot listen on %s:%u: %s", opts->host,
			 (unsigned)opts->port, uv_strerror(rc));
		vsr_http_close(s, NULL);
		return rc;
	}
	*out = s;
	return 0;
}

static void http_listener_closed_cb(uv_handle_t *h)
{
	vsr_http *s = h->data;
	s->handles_open--;
	http_server_maybe_done(s);
}

void vsr_http_close(vsr_http *s, void (*cb)(void *data))
{
	assert(!s->closing);
	s->closing = true;
	s->close_cb = cb;
	while (s->conns != NULL)
		http_conn_close(s->conns);
	uv_close((uv_handle_t *)&s->listener, http_listener_closed_cb);
}

const vsr_http_stats *vsr_http_stats_get(const vsr_http *s)
{
	return &s->stats;
}

uint16_t vsr_http_port(const vsr_http *s)
{
	struct sockaddr_storage a;
	int len = sizeof a;
	if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&a, &len) != 0)
		return 0;
	if (a.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
}
