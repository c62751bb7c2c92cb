/* host_fingerprint.c - the configuration fingerprint's parts, from a loaded configuration.
 *
 * Every part but the replica count (the number itself) is XXH3-64 of a
 * labelled, fixed-layout encoding (little-endian u64 integers; strings
 * followed by a NUL), so that two configuration files that mean the same
 * thing give the same part however they are written (`16 * 1024 * 1024` or
 * `16777216`, a default left out or spelled out), and no two parts can
 * collide by construction. The scripts' parts come from the state machine
 * host: digests of the bytes it actually loaded. */
#include "host_fingerprint.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "vsrh_lua.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct fp_hash {
	XXH3_state_t st;
} fp_hash;

static void fp_begin(fp_hash *h, const char *label)
{
	XXH3_64bits_reset(&h->st);
	XXH3_64bits_update(&h->st, label, strlen(label) + 1);
}

static void fp_u64(fp_hash *h, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	XXH3_64bits_update(&h->st, b, sizeof b);
}

static void fp_str(fp_hash *h, const char *s)
{
	XXH3_64bits_update(&h->st, s, strlen(s) + 1);
}

static uint64_t fp_end(fp_hash *h)
{
	return XXH3_64bits_digest(&h->st);
}

void host_fingerprint_parts(const vsrh_config *cfg, uint64_t statemachine_sources,
			    uint64_t dedup_sources, uint64_t parts[VSR_WIRE_CONFIG_PARTS])
{
	fp_hash h;
	parts[VSR_WIRE_CONFIG_STATEMACHINE] = statemachine_sources;
	parts[VSR_WIRE_CONFIG_DEDUP] = dedup_sources;

	/* Every key of `limits`: the budgets decide whether an operation
	 * fails (instructions, memory_bytes); clients, when sessions are
	 * evicted; checkpoint_interval, at which ops checkpoints are taken and
	 * compared; message_bytes, the frames a replica accepts and the
	 * checkpoint chunk size (state transfer checks chunk offsets against
	 * its own); pipeline, how far a primary runs ahead, which each replica's
	 * log and view-change messages are sized for. batch_requests only
	 * shapes the primary's batches; it is kept with the others so that the
	 * rule stays "all of `limits`" and throughput does not change with
	 * whoever leads. */
	fp_begin(&h, "vsrhost limits v1");
	fp_u64(&h, cfg->pipeline_max);
	fp_u64(&h, cfg->batch_requests_max);
	fp_u64(&h, cfg->clients_max);
	fp_u64(&h, cfg->message_bytes_max);
	fp_u64(&h, cfg->checkpoint_interval);
	fp_u64(&h, cfg->instructions_max);
	fp_u64(&h, cfg->memory_bytes_max);
	parts[VSR_WIRE_CONFIG_LIMITS] = fp_end(&h);

	/* Who the members are: the primary of view v is replica v mod n, and
	 * each replica dials the others at these addresses, as written. */
	fp_begin(&h, "vsrhost members v1");
	fp_u64(&h, cfg->cluster);
	fp_u64(&h, cfg->replica_count);
	for (uint32_t i = 0; i < cfg->replica_count && i < VSR_REPLICAS_MAX; i++) {
		fp_str(&h, cfg->replicas[i].host);
		fp_u64(&h, cfg->replicas[i].port);
	}
	parts[VSR_WIRE_CONFIG_MEMBERS] = fp_end(&h);

	fp_begin(&h, "vsrhost durability v1");
	fp_u64(&h, (uint64_t)cfg->durability);
	parts[VSR_WIRE_CONFIG_DURABILITY] = fp_end(&h);

	/* A lease is safe only if no backup suspects the primary sooner than
	 * the primary assumes: with leases on, the drift bound and the timeouts
	 * the lease is computed from must agree. Off, timeouts may differ. */
	fp_begin(&h, "vsrhost reads v1");
	fp_u64(&h, cfg->lease_drift_ppm);
	if (cfg->lease_drift_ppm != 0) {
		fp_u64(&h, cfg->primary_ms);
		fp_u64(&h, cfg->tick_ms);
	}
	parts[VSR_WIRE_CONFIG_READS] = fp_end(&h);

	/* The count again, as a number: membership above is a digest, and a
	 * data directory records the parts, so this is how a restart learns
	 * the replica count its directory was written under (another count is
	 * refused, flag or not: host_config_disk.c). */
	parts[VSR_WIRE_CONFIG_REPLICAS] = cfg->replica_count;
}

void host_fingerprint_describe(const uint64_t parts[VSR_WIRE_CONFIG_PARTS], char *buf,
			       size_t len)
{
	int w = snprintf(buf, len, "%016" PRIx64 " (",
			 vsr_wire_config_fingerprint(parts, VSR_WIRE_CONFIG_PARTS));
	size_t used = w < 0 ? len : (size_t)w;
	for (unsigned i = 0; i < VSR_WIRE_CONFIG_PARTS && used < len; i++) {
		w = snprintf(buf + used, len - used, "%s%s %016" PRIx64, i > 0 ? ", " : "",
			     vsr_wire_config_part_name(i), parts[i]);
		used = w < 0 ? len : used + (size_t)w;
	}
	if (used < len)
		snprintf(buf + used, len - used, ")");
}

int host_fingerprint_main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "vsrhost: usage: vsrhost fingerprint CONFIG\n");
		return EX_USAGE;
	}
	vsrh_config cfg;
	char err[1024];
	if (vsrh_config_load(argv[1], &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "vsrhost: %s\n", err);
		return EX_CONFIG;
	}
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create(&sm, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "vsrhost: %s: %s\n", cfg.path, err);
		vsrh_config_free(&cfg);
		return EX_CONFIG;
	}
	uint64_t sources, dedup, parts[VSR_WIRE_CONFIG_PARTS];
	vsrh_sm_sources(sm, &sources, &dedup);
	host_fingerprint_parts(&cfg, sources, dedup, parts);
	vsrh_sm_destroy(sm);
	vsrh_config_free(&cfg);
	printf("%016" PRIx64 "\n", vsr_wire_config_fingerprint(parts, VSR_WIRE_CONFIG_PARTS));
	for (unsigned i = 0; i < VSR_WIRE_CONFIG_PARTS; i++)
		printf("  %016" PRIx64 "  %s\n", parts[i], vsr_wire_config_part_name(i));
	return 0;
}
