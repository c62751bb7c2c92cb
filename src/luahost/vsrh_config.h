/* vsrh_config.h - the cluster configuration, read from a sandboxed Lua file.
 *
 * Contract shared by the Lua host (which implements it), vsrhost, vsrctl and
 * vsrbench. A config file is a Lua chunk returning a table, for example:
 *
 *   return {
 *     cluster = 1,                      -- integer id, in every frame
 *     replicas = { "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003" },
 *     clients  = { "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103" },
 *     statemachine = "../statemachines/kv.lua", -- relative to this file
 *     dedup = "../lua/vsr/dedup/oldest.lua",    -- optional
 *     data_dir = "../data/kv",
 *     durability = "durable",           -- "durable" (default) | "memory"
 *     timeouts = { tick_ms = 10, heartbeat_ms = 50, primary_ms = 300,
 *                  view_change_ms = 300, retry_ms = 100 },
 *     limits = { pipeline = 16, batch_requests = 256, clients = 1024,
 *                message_bytes = 16777216, checkpoint_interval = 4096,
 *                instructions = 1000000, memory_bytes = 268435456 },
 *     metrics = { "127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103" }, -- optional
 *     log_level = "info",               -- "debug" | "info" | "warn" | "error"
 *     log_format = "text",              -- "text" | "json"
 *     auth = { replica_key = "cluster.key", client_key = "client.key" }, -- optional
 *     telemetry = "hooks.lua",          -- optional: event handlers outside the replicated state
 *   }
 *
 * Every error names the file, the key and what was expected, e.g.
 *   config/kv.lua: replicas[2]: expected "host:port", got 42
 * and callers exit with EX_CONFIG (78). */
#ifndef VSRH_CONFIG_H
#define VSRH_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "vsr_limits.h"

#define VSRH_HOST_MAX 256

typedef struct vsrh_address {
	char host[VSRH_HOST_MAX]; /* numeric IPv4/IPv6 or a name */
	uint16_t port;
} vsrh_address;

enum vsrh_durability { VSRH_DURABILITY_MEMORY = 0, VSRH_DURABILITY_DURABLE = 1 };
enum vsrh_log_level { VSRH_LOG_DEBUG = 0, VSRH_LOG_INFO, VSRH_LOG_WARN, VSRH_LOG_ERROR };
/* "text": one readable line per event; "json": one JSON object per line. */
enum vsrh_log_format { VSRH_LOG_TEXT = 0, VSRH_LOG_JSON = 1 };

typedef struct vsrh_config {
	char *path;               /* the config file, as given */
	uint64_t cluster;
	uint32_t replica_count;
	vsrh_address replicas[VSR_REPLICAS_MAX]; /* replica-to-replica listeners */
	vsrh_address clients[VSR_REPLICAS_MAX];  /* client listeners */
	uint32_t metrics_count;   /* 0 or replica_count */
	vsrh_address metrics[VSR_REPLICAS_MAX];
	char *statemachine;       /* absolute or cwd-relative path, resolved */
	char *dedup;              /* resolved path, or NULL for the built-in default */
	char *data_dir;           /* resolved path */
	/* auth = { replica_key = "...", client_key = "..." }: key files
	 * (resolved paths) or NULL when that port is not authenticated. */
	char *replica_key_file;
	char *telemetry;          /* resolved path of the telemetry hooks script, or NULL */
	char *client_key_file;
	int durability;           /* enum vsrh_durability */
	int log_level;            /* enum vsrh_log_level */
	int log_format;           /* enum vsrh_log_format */
	uint32_t tick_ms;
	uint32_t heartbeat_ms;
	uint32_t primary_ms;
	uint32_t view_change_ms;
	uint32_t retry_ms;
	uint32_t lease_drift_ppm;  /* reads.lease_drift_ppm: 0, leases off */
	uint32_t lease_margin_ms;  /* reads.lease_margin_ms */
	uint32_t pipeline_max;
	uint32_t batch_requests_max;
	uint32_t clients_max;
	uint32_t message_bytes_max;
	uint32_t checkpoint_interval;
	uint64_t instructions_max; /* per state-machine call */
	uint64_t memory_bytes_max; /* per state machine */
} vsrh_config;

/* Loads and validates `path`. On error returns a negative code and writes
 * "file: key: expected ..., got ..." into err. */
int vsrh_config_load(const char *path, vsrh_config *out, char *err, size_t err_len);
void vsrh_config_free(vsrh_config *c);

#endif /* VSRH_CONFIG_H */
