/* vsrbench - closed-loop load generator: N client sessions over real sockets, latency percentiles.
 *
 * Each session sends one operation, waits for its outcome, and sends the
 * next (closed loop), all on one libuv loop. Every session first completes
 * one unmeasured call (which also registers it); the measured window starts
 * once all have, and lasts --duration seconds. Latency is measured from the
 * call to its callback with the monotonic clock, in nanoseconds, into a
 * log-linear histogram (vsrc_hist.h). Calls the state machine answered
 * (done, or refused such as a get of a missing key) make the throughput and
 * the latency figures; failed and unknown calls are only counted.
 *
 * Gets are reads outside the log (docs/protocol.md "Reads") in --read-mode
 * (linearizable by default); --gets-via-log sends them through the log as
 * ordinary operations, as before the read path existed. Latency is also
 * reported per kind. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <uv.h>

#include "vsrc_client.h"
#include "vsrc_hist.h"
#include "vsrc_op.h"

#ifndef VSR_VERSION
#define VSR_VERSION "0.0.0"
#endif

#define BENCH_CLIENTS_MAX 4096u
#define BENCH_KEY_BYTES 16u
#define BENCH_VALUE_BYTES_MAX (1u << 20)

enum bench_kind { BENCH_PUT = 0, BENCH_GET, BENCH_KIND_COUNT };
static const char *const bench_kind_names[BENCH_KIND_COUNT] = { "put", "get" };

typedef struct bench bench;

typedef struct bench_client {
	bench *b;
	vsrc_client *client;
	uint64_t started_ns;
	bool measured;     /* the call in progress started inside the window */
	int kind;          /* of the call in progress */
	bool warm;         /* completed its first (unmeasured) call */
	uint64_t rng;
	vsr_buf op;
} bench_client;

struct bench {
	uv_loop_t *loop;
	vsrc_options opt;
	uint32_t clients;
	double duration_s;
	uint32_t value_size;
	uint32_t keys;
	bool preload;          /* first put every key once, unmeasured */
	uint64_t preload_next; /* next key to preload */
	uint64_t preload_start_ns;
	uint32_t mix[BENCH_KIND_COUNT]; /* weights */
	uint32_t mix_total;
	bool json;
	uint64_t slow_ns;      /* print each measured call at least this slow (0: none) */
	bool gets_via_log;     /* gets as operations through the log */
	uint8_t read_mode;     /* gets as queries in this mode */
	char *value;
	bench_client *c;
	uint32_t warm;
	uint32_t running;      /* sessions with a call in progress */
	bool window_open;
	bool stopping;
	uint64_t window_start_ns;
	uint64_t window_end_ns;
	uv_timer_t stop_timer;
	vsrc_hist hist;
	vsrc_hist kind_hist[BENCH_KIND_COUNT];
	uint64_t stale;        /* gets answered as stale */
	uint64_t done;
	uint64_t refused;      /* state machine refused (applied as error) */
	uint64_t failed;
	uint64_t unknown;
	char last_error[256];
};

static uint64_t bench_rand(uint64_t *s)
{
	/* xorshift64*: fast, good enough to pick keys and operations. */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static void bench_call(bench_client *bc);

/* One line per slow call, stamped with the wall-clock time it ended, in the
 * replicas' log format (UTC, milliseconds), to line up with their logs. */
static void bench_print_slow(int kind, uint64_t took_ns)
{
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ slow %s: %.3f ms\n", when, ts.tv_nsec / 1000000,
		bench_kind_names[kind], (double)took_ns / 1e6);
}

static void bench_stop_cb(uv_timer_t *t)
{
	bench *b = t->data;
	b->stopping = true;
	b->window_end_ns = uv_hrtime();
}

static void bench_call_cb(vsrc_client *c, const vsrc_result *r, void *arg)
{
	bench_client *bc = arg;
	bench *b = bc->b;
	uint64_t now = uv_hrtime();
	(void)c;
	b->running--;
	/* A refusal by the state machine (a get of a missing key, a failed
	 * cas) went through the whole protocol like a success: it counts in
	 * the latency and the throughput, and separately in the totals. */
	bool answered = r->outcome == VSRC_DONE || vsr_reply_is_error(r->status);
	if (bc->measured && !b->stopping) {
		if (answered && b->slow_ns && now - bc->started_ns >= b->slow_ns)
			bench_print_slow(bc->kind, now - bc->started_ns);
		if (answered) {
			vsrc_hist_record(&b->hist, now - bc->started_ns);
			vsrc_hist_record(&b->kind_hist[bc->kind], now - bc->started_ns);
		}
		if (r->outcome == VSRC_DONE && bc->kind == BENCH_GET && !b->gets_via_log &&
		    r->read_mode == VSR_READ_STALE)
			b->stale++;
		if (r->outcome == VSRC_DONE) {
			b->done++;
		} else if (vsr_reply_is_error(r->status)) {
			b->refused++;
		} else if (r->outcome == VSRC_UNKNOWN) {
			b->unknown++;
		} else {
			b->failed++;
		}
	}
	if (!answered && r->reason)
		snprintf(b->last_error, sizeof(b->last_error), "%s", r->reason);
	if (!bc->warm && b->preload && b->preload_next < b->keys && answered) {
		/* Still preloading: every session keeps putting keys. */
		bench_call(bc);
		return;
	}
	if (!bc->warm) {
		if (!answered) {
			/* A session that cannot complete one call would only
			 * measure timeouts: stop and say why. */
			b->stopping = true;
			return;
		}
		bc->warm = true;
		if (++b->warm == b->clients) {
			if (b->preload)
				printf("vsrbench: preloaded %u keys in %.1f s\n", b->keys,
				       (double)(uv_hrtime() - b->preload_start_ns) / 1e9);
			b->window_open = true;
			b->window_start_ns = uv_hrtime();
			uv_timer_start(&b->stop_timer, bench_stop_cb,
				       (uint64_t)(b->duration_s * 1000.0 + 0.5), 0);
		}
	}
	if (b->stopping)
		return;
	bench_call(bc);
}

/* "k%015" PRIu64 into key[BENCH_KEY_BYTES + 1], without printf's cost on
 * every call (it was a tenth of the benchmark's own instructions). */
static void bench_key(char *key, uint64_t n)
{
	if (n >= UINT64_C(1000000000000000)) {
		snprintf(key, BENCH_KEY_BYTES + 1, "k%015" PRIu64, n);
		return;
	}
	key[0] = 'k';
	for (unsigned i = BENCH_KEY_BYTES - 1; i >= 1; i--) {
		key[i] = (char)('0' + n % 10);
		n /= 10;
	}
	key[BENCH_KEY_BYTES] = '\0';
}

static void bench_call(bench_client *bc)
{
	bench *b = bc->b;
	uint64_t pick = bench_rand(&bc->rng) % b->mix_total;
	int kind = pick < b->mix[BENCH_PUT] ? BENCH_PUT : BENCH_GET;
	char key[BENCH_KEY_BYTES + 1];
	if (!bc->warm && b->preload && b->preload_next < b->keys) {
		kind = BENCH_PUT;
		bench_key(key, b->preload_next++);
	} else {
		/* The unmeasured first call registers the session. */
		if (!bc->warm)
			kind = BENCH_PUT;
		bench_key(key, bench_rand(&bc->rng) % b->keys);
	}
	vsr_buf_reset(&bc->op);
	int rc = kind == BENCH_PUT
			 ? vsrc_op_put(&bc->op, key, BENCH_KEY_BYTES, b->value, b->value_size)
			 : vsrc_op_get(&bc->op, key, BENCH_KEY_BYTES);
	if (rc != 0) {
		snprintf(b->last_error, sizeof(b->last_error), "out of memory");
		b->stopping = true;
		return;
	}
	bc->measured = b->window_open;
	bc->kind = kind;
	bc->started_ns = uv_hrtime();
	rc = kind == BENCH_GET && !b->gets_via_log
		     ? vsrc_client_query(bc->client, b->read_mode, bc->op.data, bc->op.len,
					 bench_call_cb, bc)
		     : vsrc_client_call(bc->client, bc->op.data, bc->op.len, bench_call_cb, bc);
	if (rc != 0) {
		snprintf(b->last_error, sizeof(b->last_error), "cannot start a call");
		b->stopping = true;
		return;
	}
	b->running++;
}

static int parse_mix(bench *b, const char *s)
{
	memset(b->mix, 0, sizeof(b->mix));
	char *copy = strdup(s);
	if (!copy)
		return -1;
	int rc = 0;
	for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		if (!colon) {
			rc = -1;
			break;
		}
		*colon = '\0';
		char *end;
		unsigned long w = strtoul(colon + 1, &end, 10);
		int k = -1;
		for (int i = 0; i < BENCH_KIND_COUNT; i++)
			if (strcmp(tok, bench_kind_names[i]) == 0)
				k = i;
		if (k < 0 || *end != '\0' || end == colon + 1 || w > 1000000) {
			rc = -1;
			break;
		}
		b->mix[k] = (uint32_t)w;
	}
	free(copy);
	b->mix_total = b->mix[BENCH_PUT] + b->mix[BENCH_GET];
	return rc == 0 && b->mix_total > 0 ? 0 : -1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vsrbench -c CONFIG [options]\n"
		"\n"
		"Closed-loop clients over real sockets against a running cluster; prints\n"
		"throughput and latency percentiles.\n"
		"\n"
		"  -c, --config FILE     cluster configuration (required)\n"
		"  -n, --clients N       concurrent sessions (default 1, at most %u)\n"
		"  -d, --duration S      measured seconds (default 10; fractions allowed)\n"
		"  -s, --value-size B    bytes per value (default 100)\n"
		"  -k, --keys K          distinct 16-byte keys (default 100000)\n"
		"  -p, --preload         first put every one of the K keys once (not\n"
		"                        measured): a state of K keys from the start\n"
		"  -m, --mix SPEC        operation weights, e.g. put:90,get:10 (default put:100)\n"
		"  -j, --json            also print one JSON line with the same figures\n"
		"      --read-mode M     gets as reads outside the log: linearizable\n"
		"                        (default), lease or stale\n"
		"      --gets-via-log    gets as operations through the log (the path\n"
		"                        before reads skipped it)\n"
		"      --attempt MS      resend to another replica after MS without a reply\n"
		"                        (default 500)\n"
		"      --slow MS         print each measured call slower than MS to stderr,\n"
		"                        with the UTC time it ended (as the replicas log)\n"
		"  -h, --help            show this help\n"
		"  -V, --version         show the version\n",
		BENCH_CLIENTS_MAX);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void bench_report(const bench *b)
{
	double secs = (double)(b->window_end_ns - b->window_start_ns) / 1e9;
	double tput = secs > 0 ? (double)(b->done + b->refused) / secs : 0;
	const vsrc_hist *h = &b->hist;
	const char *gets = b->gets_via_log ? "via-log" : vsr_read_mode_name(b->read_mode);
	printf("vsrbench: %u clients, %.1f s, put:%u get:%u (gets %s), %u-byte values, %u keys\n",
	       b->clients, secs, b->mix[BENCH_PUT], b->mix[BENCH_GET], gets, b->value_size, b->keys);
	printf("  ops         %" PRIu64 " done, %" PRIu64 " refused, %" PRIu64 " failed, %" PRIu64
	       " unknown\n",
	       b->done, b->refused, b->failed, b->unknown);
	printf("  throughput  %.0f ops/s\n", tput);
	printf("  latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
	       ms(vsrc_hist_quantile(h, 0.5)), ms(vsrc_hist_quantile(h, 0.9)),
	       ms(vsrc_hist_quantile(h, 0.99)), ms(vsrc_hist_quantile(h, 0.999)), ms(h->max),
	       vsrc_hist_mean(h) / 1e6);
	for (int k = 0; k < BENCH_KIND_COUNT; k++) {
		const vsrc_hist *kh = &b->kind_hist[k];
		if (kh->count == 0)
			continue;
		printf("  %-4s ms    p50 %.3f  p90 %.3f  p99 %.3f  (%" PRIu64 " answered)\n",
		       bench_kind_names[k], ms(vsrc_hist_quantile(kh, 0.5)),
		       ms(vsrc_hist_quantile(kh, 0.9)), ms(vsrc_hist_quantile(kh, 0.99)), kh->count);
	}
	if (b->stale)
		printf("  stale gets  %" PRIu64 "\n", b->stale);
	if (b->last_error[0])
		printf("  last error  %s\n", b->last_error);
	if (b->json) {
		printf("{\"clients\":%u,\"duration_s\":%.3f,\"value_size\":%u,\"keys\":%u,"
		       "\"mix\":{\"put\":%u,\"get\":%u},\"done\":%" PRIu64 ",\"refused\":%" PRIu64
		       ",\"failed\":%" PRIu64 ",\"unknown\":%" PRIu64 ",\"throughput_ops_s\":%.1f,"
		       "\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,"
		       "\"max\":%.4f,\"mean\":%.4f},\"gets\":\"%s\","
		       "\"get_p50_ms\":%.4f,\"put_p50_ms\":%.4f}\n",
		       b->clients, secs, b->value_size, b->keys, b->mix[BENCH_PUT], b->mix[BENCH_GET],
		       b->done, b->refused, b->failed, b->unknown, tput,
		       ms(vsrc_hist_quantile(h, 0.5)), ms(vsrc_hist_quantile(h, 0.9)),
		       ms(vsrc_hist_quantile(h, 0.99)), ms(vsrc_hist_quantile(h, 0.999)), ms(h->max),
		       vsrc_hist_mean(h) / 1e6, gets,
		       ms(vsrc_hist_quantile(&b->kind_hist[BENCH_GET], 0.5)),
		       ms(vsrc_hist_quantile(&b->kind_hist[BENCH_PUT], 0.5)));
	}
	fflush(stdout);
}

static void bench_closed_cb(void *arg)
{
	(void)arg;
}

static void bench_idle_check(uv_timer_t *t)
{
	/* After the window: wait for calls in flight to finish (their outcomes
	 * are not counted), then close every session. */
	bench *b = t->data;
	if (!b->stopping || b->running > 0)
		return;
	uv_timer_stop(t);
	for (uint32_t i = 0; i < b->clients; i++)
		if (b->c[i].client)
			vsrc_client_close(b->c[i].client, bench_closed_cb, NULL);
	uv_close((uv_handle_t *)&b->stop_timer, NULL);
	uv_close((uv_handle_t *)t, NULL);
}

int main(int argc, char **argv)
{
	/* A replica that closes a connection must not kill this program. */
	signal(SIGPIPE, SIG_IGN);
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "clients", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "value-size", required_argument, NULL, 's' },
		{ "keys", required_argument, NULL, 'k' },
		{ "preload", no_argument, NULL, 'p' },
		{ "mix", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "attempt", required_argument, NULL, 'a' },
		{ "read-mode", required_argument, NULL, 'R' },
		{ "gets-via-log", no_argument, NULL, 'G' },
		{ "slow", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static bench b;
	const char *config = NULL;
	b.clients = 1;
	b.duration_s = 10;
	b.value_size = 100;
	b.keys = 100000;
	b.mix[BENCH_PUT] = 100;
	b.mix_total = 100;
	int ch;
	char *end;
	uint32_t attempt_ms = 0;
	while ((ch = getopt_long(argc, argv, "c:n:d:s:k:pm:jhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 'n': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v < 1 || v > BENCH_CLIENTS_MAX) {
				fprintf(stderr, "vsrbench: --clients: expected 1 to %u, got \"%s\"\n",
					BENCH_CLIENTS_MAX, optarg);
				return EX_USAGE;
			}
			b.clients = (uint32_t)v;
			break;
		}
		case 'd':
			b.duration_s = strtod(optarg, &end);
			if (*end || !(b.duration_s > 0) || b.duration_s > 86400) {
				fprintf(stderr, "vsrbench: --duration: expected seconds, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			break;
		case 's': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v > BENCH_VALUE_BYTES_MAX) {
				fprintf(stderr, "vsrbench: --value-size: expected 0 to %u, got \"%s\"\n",
					BENCH_VALUE_BYTES_MAX, optarg);
				return EX_USAGE;
			}
			b.value_size = (uint32_t)v;
			break;
		}
		case 'p':
			b.preload = true;
			break;
		case 'k': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v < 1 || v > 1000000000ul) {
				fprintf(stderr, "vsrbench: --keys: expected 1 to 1000000000, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			b.keys = (uint32_t)v;
			break;
		}
		case 'm':
			if (parse_mix(&b, optarg) < 0) {
				fprintf(stderr,
					"vsrbench: --mix: expected e.g. put:90,get:10 (kinds put, get), got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			break;
		case 'j':
			b.json = true;
			break;
		case 'S': {
			double v = strtod(optarg, &end);
			if (*end || !(v > 0) || v > 600000) {
				fprintf(stderr, "vsrbench: --slow: expected milliseconds, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			b.slow_ns = (uint64_t)(v * 1e6);
			break;
		}
		case 'a': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v < 1 || v > 600000) {
				fprintf(stderr, "vsrbench: --attempt: expected 1 to 600000 ms, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			attempt_ms = (uint32_t)v;
			break;
		}
		case 'R': {
			int m = -1;
			for (unsigned i = 0; i < VSR_READ_MODE_COUNT; i++)
				if (strcmp(optarg, vsr_read_mode_name(i)) == 0)
					m = (int)i;
			if (m < 0) {
				fprintf(stderr, "vsrbench: --read-mode: expected linearizable, lease or "
						"stale, got \"%s\"\n", optarg);
				return EX_USAGE;
			}
			b.read_mode = (uint8_t)m;
			break;
		}
		case 'G':
			b.gets_via_log = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("vsrbench %s\n", VSR_VERSION);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (!config || optind != argc) {
		fprintf(stderr, "vsrbench: %s (try --help)\n",
			config ? "unexpected arguments" : "-c CONFIG is required");
		return EX_USAGE;
	}
	char err[512];
	if (vsrc_options_from_config(&b.opt, config, err, sizeof(err)) < 0) {
		fprintf(stderr, "vsrbench: %s\n", err);
		return EX_CONFIG;
	}
	if (attempt_ms)
		b.opt.timing.attempt_ms = attempt_ms;
	b.value = malloc(b.value_size + 1u);
	b.c = calloc(b.clients, sizeof(*b.c));
	if (!b.value || !b.c) {
		fprintf(stderr, "vsrbench: out of memory\n");
		return EX_OSERR;
	}
	for (uint32_t i = 0; i < b.value_size; i++)
		b.value[i] = (char)('a' + i % 26);
	vsrc_hist_init(&b.hist);
	for (int k = 0; k < BENCH_KIND_COUNT; k++)
		vsrc_hist_init(&b.kind_hist[k]);
	b.loop = uv_default_loop();
	uv_timer_init(b.loop, &b.stop_timer);
	b.stop_timer.data = &b;
	uv_timer_t idle;
	uv_timer_init(b.loop, &idle);
	idle.data = &b;
	uv_timer_start(&idle, bench_idle_check, 10, 10);
	uint64_t seed = uv_hrtime();
	b.preload_start_ns = uv_hrtime();
	for (uint32_t i = 0; i < b.clients; i++) {
		bench_client *bc = &b.c[i];
		bc->b = &b;
		bc->rng = (seed + i) * 0x9e3779b97f4a7c15ull | 1u;
		if (vsrc_client_create(b.loop, &b.opt, &bc->client) != 0) {
			fprintf(stderr, "vsrbench: out of memory\n");
			return EX_OSERR;
		}
		bench_call(bc);
	}
	uv_run(b.loop, UV_RUN_DEFAULT);
	if (b.warm < b.clients) {
		fprintf(stderr, "vsrbench: only %u of %u sessions could start: %s\n", b.warm,
			b.clients, b.last_error[0] ? b.last_error : "unknown reason");
		return EX_UNAVAILABLE;
	}
	bench_report(&b);
	for (uint32_t i = 0; i < b.clients; i++)
		vsr_buf_free(&b.c[i].op);
	free(b.c);
	free(b.value);
	int rc = uv_loop_close(b.loop);
	if (rc != 0)
		fprintf(stderr, "vsrbench: a handle was left open\n");
	return 0;
}
