/* host_metrics.h - the replica's counters and latency histograms in Prometheus text format. */
#ifndef HOST_METRICS_H
#define HOST_METRICS_H

#include <stdint.h>

#include "vsr.h"
#include "vsr_http.h"
#include "vsr_net.h"
#include "vsr_storage.h"
#include "vsrh_lua.h"

/* Latency buckets, upper bounds in seconds: 50 us to 10 s, roughly x2.5
 * apart, so one histogram serves both an fdatasync and a checkpoint. */
#define HOST_HISTOGRAM_BUCKETS 14

typedef struct host_histogram {
	uint64_t counts[HOST_HISTOGRAM_BUCKETS + 1]; /* last: above every bound (+Inf only) */
	uint64_t count;
	uint64_t sum_ns;
} host_histogram;

void host_histogram_observe(host_histogram *h, uint64_t ns);

/* What the host measures itself, beside the core's, storage's, transport's
 * and state machine's own counters. */
typedef struct host_metrics {
	host_histogram step;      /* one core step, actions included */
	host_histogram persist;   /* persist submitted -> reported durable */
	uint64_t replies[8];      /* by enum vsr_reply_status */
	uint64_t slow_steps;      /* steps over the slow-step threshold */
	uint64_t storage_pauses;  /* reading paused for storage backpressure */
} host_metrics;

/* Everything one scrape reads. Pointers may be NULL while a part is not up. */
typedef struct host_metrics_source {
	uint8_t replica;          /* 0-based */
	uint8_t replica_count;
	uint64_t cluster;
	uint64_t uptime_ms;
	const vsr_replica *core;
	const vsr_storage *storage;
	const vsr_net *net;
	const vsrh_sm *sm;
	const host_metrics *host;
} host_metrics_source;

/* Appends every metric, with # HELP and # TYPE lines, to `b`. */
void host_metrics_render(const host_metrics_source *src, vsr_http_body *b);
/* /health: 200 "ok" when the replica is normal, 503 with its status otherwise. */
int host_health_render(const host_metrics_source *src, vsr_http_body *b);

#endif /* HOST_METRICS_H */
