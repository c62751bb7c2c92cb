/* etcd_load.c - closed-loop put load against etcd, the workload vsrbench runs.
 *
 * usage: etcd_load --endpoints HOST:PORT[,HOST:PORT...] [--clients N]
 *                  [--duration S] [--value-size B] [--keys K]
 * N client threads, each with one keep-alive HTTP/1.1 connection to etcd's
 * JSON gateway (POST /v3/kv/put), put a random key of K ("k" + 15 digits,
 * 16 bytes, as vsrbench) with a B-byte value, wait for the reply, repeat.
 * Prints throughput and latency percentiles in vsrbench's words. A bench
 * helper built by tests/bench/apply_cluster_bench.sh, not part of vsrhost.
 * Every client talks to the leader (found with /v3/maintenance/status), as
 * vsrbench's clients talk to the primary. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAT_MAX (1u << 20) /* latencies kept per client */

static const char *host = "127.0.0.1", *port = "2379";
static unsigned clients = 1, value_size = 100, keys = 100000;
static double duration = 10;
static atomic_int stop;

typedef struct worker {
	pthread_t th;
	unsigned id;
	uint64_t done, failed;
	uint32_t *lat_us;
	uint32_t nlat;
	char err[160];
} worker;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t b64(const unsigned char *in, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = t[(v >> 18) & 63];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? t[v & 63] : '=';
	}
	return o;
}

static int dial(void)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	int fd = socket(ai->ai_family, ai->ai_socktype, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one HTTP response (Content-Length or chunked) into buf; returns the
 * status code or -1. Bytes of a next response are not expected (one request
 * in flight per connection). */
static int read_response(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	char *body = NULL;
	for (;;) {
		if (len + 1 >= cap)
			return -1;
		ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		len += (size_t)r;
		buf[len] = 0;
		if (!body) {
			char *e = strstr(buf, "\r\n\r\n");
			if (!e)
				continue;
			body = e + 4;
		}
		size_t have = len - (size_t)(body - buf);
		char *cl = strcasestr(buf, "\r\ncontent-length:");
		if (cl && cl < body) {
			size_t want = strtoul(cl + 17, NULL, 10);
			if (have < want)
				continue;
		} else if (!strstr(body, "0\r\n\r\n")) { /* chunked: the last chunk */
			continue;
		}
		return atoi(buf + 9);
	}
}

/* The "name":"value" string after `name` in a JSON text, into out. */
static int json_str(const char *text, const char *name, char *out, size_t cap)
{
	const char *p = strstr(text, name);
	if (!p || !(p = strchr(p + strlen(name), '"')))
		return -1;
	const char *e = strchr(++p, '"');
	if (!e || (size_t)(e - p) >= cap)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = 0;
	return 0;
}

/* Whether the member at host:port is the leader (-1: no answer). */
static int is_leader(void)
{
	int fd = dial();
	if (fd < 0)
		return -1;
	char req[512], resp[8192], me[64], leader[64];
	int n = snprintf(req, sizeof req,
			 "POST /v3/maintenance/status HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
			 "application/json\r\nContent-Length: 2\r\n\r\n{}",
			 host, port);
	int st = send_all(fd, req, (size_t)n) ? -1 : read_response(fd, resp, sizeof resp);
	close(fd);
	if (st != 200 || json_str(resp, "\"member_id\"", me, sizeof me) ||
	    json_str(resp, "\"leader\"", leader, sizeof leader))
		return -1;
	return strcmp(me, leader) == 0;
}

static void *run(void *arg)
{
	worker *w = arg;
	int fd = dial();
	if (fd < 0) {
		snprintf(w->err, sizeof w->err, "cannot connect to %s:%s", host, port);
		return NULL;
	}
	unsigned char *val = malloc(value_size ? value_size : 1);
	size_t cap = 256 + 2 * (size_t)value_size;
	char *req = malloc(cap + 4 * (size_t)value_size), *body = malloc(cap + 2 * (size_t)value_size);
	char resp[8192];
	memset(val, 'v', value_size);
	uint64_t x = 0x9e3779b97f4a7c15ull * (w->id + 1);
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		char key[17];
		snprintf(key, sizeof key, "k%015llu", (unsigned long long)(x % keys));
		size_t bl = (size_t)sprintf(body, "{\"key\":\"");
		bl += b64((const unsigned char *)key, 16, body + bl);
		bl += (size_t)sprintf(body + bl, "\",\"value\":\"");
		bl += b64(val, value_size, body + bl);
		bl += (size_t)sprintf(body + bl, "\"}");
		int rl = sprintf(req,
				 "POST /v3/kv/put HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
				 "application/json\r\nContent-Length: %zu\r\n\r\n",
				 host, port, bl);
		memcpy(req + rl, body, bl);
		double t0 = now_s();
		int st = send_all(fd, req, (size_t)rl + bl) ? -1 : read_response(fd, resp, sizeof resp);
		double dt = now_s() - t0;
		if (st != 200) {
			w->failed++;
			snprintf(w->err, sizeof w->err, "status %d", st);
			if (st < 0) {
				close(fd);
				if ((fd = dial()) < 0)
					break;
			}
			continue;
		}
		w->done++;
		if (w->nlat < LAT_MAX)
			w->lat_us[w->nlat++] = (uint32_t)(dt * 1e6);
	}
	if (fd >= 0)
		close(fd);
	free(val);
	free(req);
	free(body);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"endpoints", required_argument, NULL, 'e'},
		{"clients", required_argument, NULL, 'n'}, {"duration", required_argument, NULL, 'd'},
		{"value-size", required_argument, NULL, 's'}, {"keys", required_argument, NULL, 'k'},
		{NULL, 0, NULL, 0}};
	int ch;
	static char list[1024];
	const char *endpoints = "127.0.0.1:2379";
	while ((ch = getopt_long(argc, argv, "e:n:d:s:k:", lo, NULL)) != -1) {
		switch (ch) {
		case 'e': endpoints = optarg; break;
		case 'n': clients = (unsigned)atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 's': value_size = (unsigned)atoi(optarg); break;
		case 'k': keys = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: etcd_load --endpoints HOST:PORT[,...] [--clients N] "
					"[--duration S] [--value-size B] [--keys K]\n");
			return 64;
		}
	}
	if (clients < 1 || clients > 4096 || keys < 1 || duration <= 0 || value_size > (1u << 20))
		return 64;
	/* the leader's endpoint */
	snprintf(list, sizeof list, "%s", endpoints);
	int found = 0;
	for (char *save, *ep = strtok_r(list, ",", &save); ep && !found; ep = strtok_r(NULL, ",", &save)) {
		char *c = strrchr(ep, ':');
		if (!c)
			return 64;
		*c = 0;
		host = ep;
		port = c + 1;
		found = is_leader() == 1;
	}
	if (!found) {
		fprintf(stderr, "etcd_load: no leader among %s\n", endpoints);
		return 1;
	}
	worker *ws = calloc(clients, sizeof *ws);
	double t0 = now_s();
	for (unsigned i = 0; i < clients; i++) {
		ws[i].id = i;
		ws[i].lat_us = malloc(LAT_MAX * sizeof(uint32_t));
		pthread_create(&ws[i].th, NULL, run, &ws[i]);
	}
	struct timespec d = {(time_t)duration, (long)((duration - (double)(time_t)duration) * 1e9)};
	nanosleep(&d, NULL);
	atomic_store(&stop, 1);
	uint64_t done = 0, failed = 0, n = 0;
	const char *err = NULL;
	for (unsigned i = 0; i < clients; i++) {
		pthread_join(ws[i].th, NULL);
		done += ws[i].done;
		failed += ws[i].failed;
		n += ws[i].nlat;
		if (ws[i].err[0])
			err = ws[i].err;
	}
	double secs = now_s() - t0;
	uint32_t *all = malloc((n ? n : 1) * sizeof *all);
	size_t at = 0;
	for (unsigned i = 0; i < clients; i++) {
		memcpy(all + at, ws[i].lat_us, ws[i].nlat * sizeof *all);
		at += ws[i].nlat;
	}
	qsort(all, n, sizeof *all, cmp_u32);
#define PCT(p) (n ? all[(size_t)((double)(n - 1) * (p))] / 1000.0 : 0.0)
	printf("etcd_load: %u clients, %.1f s, put:100, %u-byte values, %u keys, %s:%s\n", clients,
	       duration, value_size, keys, host, port);
	printf("  ops         %llu done, %llu failed\n", (unsigned long long)done,
	       (unsigned long long)failed);
	printf("  throughput  %.0f ops/s\n", (double)done / secs);
	printf("  latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", PCT(0.5),
	       PCT(0.9), PCT(0.99), PCT(0.999), PCT(1.0));
	if (err)
		printf("  last error  %s\n", err);
	return done ? 0 : 1;
}
