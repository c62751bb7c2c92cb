/* test_fingerprint.c - what changes the configuration fingerprint (src/cmd/vsrhost/host_fingerprint.c)
 * and what does not.
 *
 * Each case is a variant of one configuration file (a text substitution),
 * loaded as vsrhost loads it: vsrh_config_load, the state machine opened
 * (vsrh_sm_create, whose digests of the sources it loaded go in), the parts
 * computed. A variant either keeps every part, or changes exactly the parts
 * it names: what docs/config.md ("Identical on every replica") promises.
 *
 * Usage: test_fingerprint SOURCE_DIR (the project root: statemachines/,
 * lua/). Works in a fresh directory under /tmp, removed at the end. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_fingerprint.h"
#include "test_check.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"

static char dir[64];
static const char *root;

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		printf("cannot read %s\n", path);
		exit(1);
	}
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strdup(buf);
}

/* The configuration every variant starts from. */
static const char base[] =
	"return {\n"
	"  cluster = 7,\n"
	"  replicas = { \"127.0.0.1:7001\", \"127.0.0.1:7002\", \"127.0.0.1:7003\" },\n"
	"  clients  = { \"127.0.0.1:7101\", \"127.0.0.1:7102\", \"127.0.0.1:7103\" },\n"
	"  metrics  = { \"127.0.0.1:9101\", \"127.0.0.1:9102\", \"127.0.0.1:9103\" },\n"
	"  statemachine = \"sm/kv.lua\",\n"
	"  dedup = \"lua/vsr/dedup/oldest.lua\",\n"
	"  data_dir = \"data\",\n"
	"  durability = \"durable\",\n"
	"  timeouts = { tick_ms = 10, heartbeat_ms = 50, primary_ms = 300,\n"
	"               view_change_ms = 300, retry_ms = 100 },\n"
	"  limits = { pipeline = 16, batch_requests = 256, clients = 1024,\n"
	"             message_bytes = 16 * 1024 * 1024, checkpoint_interval = 4096,\n"
	"             instructions = 1000000, memory_bytes = 256 * 1024 * 1024 },\n"
	"  log_level = \"info\",\n"
	"}\n";

/* base with `from` replaced by `to` (from must occur). */
static char *variant(const char *from, const char *to)
{
	const char *at = strstr(base, from);
	if (at == NULL) {
		printf("test bug: \"%s\" not in the base configuration\n", from);
		exit(1);
	}
	size_t len = strlen(base) - strlen(from) + strlen(to) + 1;
	char *s = malloc(len);
	snprintf(s, len, "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
	return s;
}

/* Loads `text` as a configuration and computes its parts; false (with a
 * failure counted) when it does not load. */
static bool parts_of(const char *text, uint64_t parts[VSR_WIRE_CONFIG_PARTS], const char *what)
{
	write_file("cluster.lua", text);
	char path[256], err[1024];
	snprintf(path, sizeof path, "%s/cluster.lua", dir);
	vsrh_config cfg;
	if (vsrh_config_load(path, &cfg, err, sizeof err) != 0) {
		CHECK(false, "%s: the configuration does not load: %s", what, err);
		return false;
	}
	vsrh_sm *sm = NULL;
	if (vsrh_sm_create(&sm, &cfg, err, sizeof err) != 0) {
		CHECK(false, "%s: the state machine does not open: %s", what, err);
		vsrh_config_free(&cfg);
		return false;
	}
	uint64_t s, d;
	vsrh_sm_sources(sm, &s, &d);
	host_fingerprint_parts(&cfg, s, d, parts);
	vsrh_sm_destroy(sm);
	vsrh_config_free(&cfg);
	return true;
}

static uint64_t want[VSR_WIRE_CONFIG_PARTS];

static bool lazy_warned;

static void lazy_log(void *arg, int level, const char *msg, size_t len)
{
	(void)arg;
	(void)len;
	if (level == VSRH_LOG_WARN && strstr(msg, "helper.lua was first loaded inside a call: it is "
						  "not in the configuration fingerprint") != NULL)
		lazy_warned = true;
}

/* `text` must differ from the base in exactly the parts of `mask` (0: in
 * none, the same fingerprint). */
static void expect(const char *what, const char *text, uint32_t mask)
{
	uint64_t got[VSR_WIRE_CONFIG_PARTS];
	if (!parts_of(text, got, what))
		return;
	char why[512];
	uint32_t differ = vsr_wire_config_compare(want, VSR_WIRE_CONFIG_PARTS, got,
						  VSR_WIRE_CONFIG_PARTS, why, sizeof why);
	CHECK(differ == mask, "%s: parts differing 0x%x, want 0x%x (%s)", what, differ, mask,
	      differ ? why : "the same");
	bool same = vsr_wire_config_fingerprint(want, VSR_WIRE_CONFIG_PARTS) ==
		    vsr_wire_config_fingerprint(got, VSR_WIRE_CONFIG_PARTS);
	CHECK(same == (mask == 0), "%s: the overall fingerprint %s", what,
	      same ? "did not change" : "changed");
	printf("%-58s %s\n", what, mask == 0 ? "same" : why);
}

#define P(part) (1u << VSR_WIRE_CONFIG_##part)

int main(int argc, char **argv)
{
	if (argc != 2) {
		printf("usage: test_fingerprint SOURCE_DIR\n");
		return 64;
	}
	root = argv[1];
	snprintf(dir, sizeof dir, "/tmp/vsr-fingerprint-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	char path[512], cmd[1024];
	/* sm/kv.lua (a copy of the project's), lua/ (a copy), a second
	 * folder with the same scripts, a module a script requires. */
	snprintf(cmd, sizeof cmd,
		 "mkdir -p '%s/sm' '%s/elsewhere' && cp '%s/statemachines/kv.lua' '%s/sm/' && "
		 "cp '%s/statemachines/kv.lua' '%s/elsewhere/' && cp -r '%s/lua' '%s/lua' && "
		 "cp '%s/statemachines/kv.lua' '%s/sm/other.lua' && : > '%s/hooks.lua'",
		 dir, dir, root, dir, root, dir, root, dir, root, dir, dir);
	if (system(cmd) != 0) {
		printf("cannot prepare %s\n", dir);
		return 1;
	}
	snprintf(path, sizeof path, "%s/sm/kv.lua", dir);
	char *kv = read_text(path);
	write_file("sm/helper.lua", "return { twice = function(x) return 2 * x end }\n");
	write_file("sm/req.lua", "local h = require 'helper'\n"
				 "return { apply = function(op) return h.twice(1) end }\n");
	if (!parts_of(base, want, "base"))
		return 1;
	uint64_t again[VSR_WIRE_CONFIG_PARTS];
	CHECK(parts_of(base, again, "base again") && memcmp(want, again, sizeof want) == 0,
	      "the same configuration twice gave two fingerprints");

	/* What may differ per replica. */
	expect("log_level", variant("log_level = \"info\"", "log_level = \"debug\""), 0);
	expect("log_format", variant("log_level = \"info\",", "log_format = \"json\","), 0);
	expect("data_dir", variant("data_dir = \"data\"", "data_dir = \"/var/lib/elsewhere\""), 0);
	expect("metrics left out", variant("  metrics  = { \"127.0.0.1:9101\", \"127.0.0.1:9102\", "
					   "\"127.0.0.1:9103\" },\n", ""), 0);
	expect("clients addresses", variant("\"127.0.0.1:7102\"", "\"127.0.0.2:7102\""), 0);
	expect("timeouts (leases off)", variant("primary_ms = 300", "primary_ms = 900"), 0);
	expect("tick_ms, heartbeat_ms, retry_ms", variant("tick_ms = 10, heartbeat_ms = 50",
							  "tick_ms = 5, heartbeat_ms = 40"), 0);
	expect("telemetry hooks", variant("log_level = \"info\",",
					  "log_level = \"info\", telemetry = \"hooks.lua\","), 0);
	expect("auth key files", variant("log_level = \"info\",",
					 "log_level = \"info\", auth = { replica_key = \"r.key\" },"), 0);
	expect("limits written as a number", variant("message_bytes = 16 * 1024 * 1024",
						     "message_bytes = 16777216"), 0);
	expect("default limits left out", variant("pipeline = 16, batch_requests = 256, ", ""), 0);
	expect("dedup left to its default", variant("  dedup = \"lua/vsr/dedup/oldest.lua\",\n", ""), 0);
	expect("the same script in another folder", variant("sm/kv.lua", "elsewhere/kv.lua"), 0);
	expect("a lease margin", variant("log_level = \"info\",",
					 "log_level = \"info\", reads = { lease_drift_ppm = 0, "
					 "lease_margin_ms = 20 },"), 0);

	/* What must be identical. */
	snprintf(path, sizeof path, "%s/sm/kv.lua", dir);
	size_t len = strlen(kv) + 64;
	char *edited = malloc(len);
	snprintf(edited, len, "-- one comment more\n%s", kv);
	write_file("sm/kv.lua", edited);
	expect("state machine: one comment line added", base, P(STATEMACHINE));
	write_file("sm/kv.lua", kv);
	expect("state machine: the same bytes, another name", variant("sm/kv.lua", "sm/other.lua"),
	       P(STATEMACHINE));
	expect("state machine: another script", variant("sm/kv.lua", "sm/req.lua"),
	       P(STATEMACHINE));
	uint64_t with_helper[VSR_WIRE_CONFIG_PARTS], helper_changed[VSR_WIRE_CONFIG_PARTS];
	char *req = variant("sm/kv.lua", "sm/req.lua");
	parts_of(req, with_helper, "req.lua");
	write_file("sm/helper.lua", "return { twice = function(x) return x + x end }\n");
	parts_of(req, helper_changed, "req.lua, helper changed");
	CHECK(with_helper[VSR_WIRE_CONFIG_STATEMACHINE] != helper_changed[VSR_WIRE_CONFIG_STATEMACHINE] &&
	      with_helper[VSR_WIRE_CONFIG_DEDUP] == helper_changed[VSR_WIRE_CONFIG_DEDUP],
	      "a module the state machine requires changed: its part did not");
	printf("%-58s state machine script differs\n", "state machine: a module it requires edited");
	expect("dedup policy", variant("oldest.lua", "fifo.lua"), P(DEDUP));
	expect("limits.pipeline", variant("pipeline = 16", "pipeline = 8"), P(LIMITS));
	expect("limits.batch_requests", variant("batch_requests = 256", "batch_requests = 64"),
	       P(LIMITS));
	expect("limits.clients", variant("clients = 1024", "clients = 512"), P(LIMITS));
	expect("limits.message_bytes", variant("message_bytes = 16 * 1024 * 1024",
					       "message_bytes = 8 * 1024 * 1024"), P(LIMITS));
	expect("limits.checkpoint_interval", variant("checkpoint_interval = 4096",
						     "checkpoint_interval = 1024"), P(LIMITS));
	expect("limits.instructions", variant("instructions = 1000000", "instructions = 50000"),
	       P(LIMITS));
	expect("limits.memory_bytes", variant("memory_bytes = 256 * 1024 * 1024",
					      "memory_bytes = 128 * 1024 * 1024"), P(LIMITS));
	expect("cluster id", variant("cluster = 7", "cluster = 8"), P(MEMBERS));
	expect("a replica's address", variant("\"127.0.0.1:7002\"", "\"127.0.0.1:7202\""),
	       P(MEMBERS));
	expect("a replica's address spelled as a name", variant("\"127.0.0.1:7002\"",
								 "\"localhost:7002\""), P(MEMBERS));
	expect("replica count", variant("\"127.0.0.1:7003\" },\n  clients  = { \"127.0.0.1:7101\", "
					"\"127.0.0.1:7102\", \"127.0.0.1:7103\" },\n  metrics  = { "
					"\"127.0.0.1:9101\", \"127.0.0.1:9102\", \"127.0.0.1:9103\" }",
					"\"127.0.0.1:7003\", \"127.0.0.1:7004\" },\n  clients  = { "
					"\"127.0.0.1:7101\", \"127.0.0.1:7102\", \"127.0.0.1:7103\", "
					"\"127.0.0.1:7104\" }"), P(MEMBERS) | P(REPLICAS));
	expect("durability", variant("durability = \"durable\"", "durability = \"memory\""),
	       P(DURABILITY));
	expect("lease reads on", variant("log_level = \"info\",",
					 "log_level = \"info\", reads = { lease_drift_ppm = 1000 },"),
	       P(READS));
	/* With leases on, primary_ms counts (compared with leases on both). */
	memcpy(want, again, sizeof want);
	char *leases = variant("log_level = \"info\",",
			       "log_level = \"info\", reads = { lease_drift_ppm = 1000 },");
	if (parts_of(leases, want, "leases on")) {
		const char *leases_at = strstr(leases, "primary_ms = 300");
		char *slower = strdup(leases);
		memcpy(slower + (leases_at - leases), "primary_ms = 900", 16);
		expect("timeouts.primary_ms, with lease reads on", slower, P(READS));
		free(slower);
	}

	/* The count part is the count itself, so that a data directory's
	 * record says how many replicas wrote it (host_config_disk.c). */
	CHECK(want[VSR_WIRE_CONFIG_REPLICAS] == 3, "the replica count part is %" PRIu64 ", want 3",
	      want[VSR_WIRE_CONFIG_REPLICAS]);

	/* A module first required inside a call is not in the fingerprint:
	 * loading it says so in the log. */
	write_file("sm/lazy.lua", "return { apply = function(op) return 1 end,\n"
				  "  query = function(op) return require('helper').twice(2) end }\n");
	{
		write_file("cluster.lua", variant("sm/kv.lua", "sm/lazy.lua"));
		char cpath[256], err[1024];
		snprintf(cpath, sizeof cpath, "%s/cluster.lua", dir);
		vsrh_config cfg;
		vsrh_sm *sm = NULL;
		CHECK(vsrh_config_load(cpath, &cfg, err, sizeof err) == 0, "lazy.lua: %s", err);
		CHECK(vsrh_sm_create(&sm, &cfg, err, sizeof err) == 0, "lazy.lua: %s", err);
		vsrh_sm_set_log(sm, lazy_log, NULL, 0);
		CHECK(!lazy_warned, "a warning before the module was required");
		vsr_buf reply = {0};
		const uint8_t op = 0x01; /* msgpack 1 */
		CHECK(vsrh_sm_query(sm, &op, 1, &reply) == VSR_REPLY_OK, "lazy.lua's query failed");
		CHECK(lazy_warned, "a module required inside a call was not logged as unfingerprinted");
		printf("%-58s logged: not in the fingerprint\n", "a module first required inside a call");
		vsr_buf_free(&reply);
		vsrh_sm_destroy(sm);
		vsrh_config_free(&cfg);
	}

	/* The overall fingerprint is the parts', in order. */
	uint64_t swapped[VSR_WIRE_CONFIG_PARTS];
	memcpy(swapped, want, sizeof want);
	swapped[0] = want[1];
	swapped[1] = want[0];
	CHECK(vsr_wire_config_fingerprint(swapped, VSR_WIRE_CONFIG_PARTS) !=
	      vsr_wire_config_fingerprint(want, VSR_WIRE_CONFIG_PARTS),
	      "two parts swapped, the same fingerprint");

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("note: could not remove %s\n", dir);
	if (failures) {
		printf("%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
