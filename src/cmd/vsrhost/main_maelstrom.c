/* main_maelstrom.c - vsrhost-maelstrom: one replica as a Maelstrom node (lin-kv), its messages on stdin/stdout.
 *
 * `vsrhost --maelstrom [CONFIG]` runs this program. It waits for Maelstrom's
 * init message, takes its position in node_ids as the replica index and the
 * number of nodes as the replica count (CONFIG's addresses are not used;
 * its state machine, timeouts and limits are), answers init_ok, and runs the
 * same replica host as a networked vsrhost with net_maelstrom.c as its
 * transport. The state machine must speak lin-kv's read/write/cas through
 * kv.lua's get/put/cas (the default config/maelstrom.lua does).
 * Logs go to stderr; stdout carries Maelstrom messages only. */
#include "host.h"
#include "host_log.h"
#include "host_maelstrom.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "vsrh_config.h"

/* Reads one line from fd 0 a byte at a time, so that nothing after it is
 * taken from the pipe the transport reads next. */
static char *maelstrom_read_line(void)
{
	size_t cap = 4096, len = 0;
	char *line = malloc(cap);
	while (line != NULL) {
		char c;
		ssize_t n = read(0, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(line);
			return NULL;
		}
		if (c == '\n') {
			line[len] = '\0';
			return line;
		}
		if (len + 2 > cap) {
			char *l = realloc(line, cap *= 2);
			if (l == NULL)
				free(line);
			line = l;
			if (line == NULL)
				return NULL;
		}
		line[len++] = c;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *config = argc > 1 ? argv[1] : VSRHOST_MAELSTROM_CONFIG;
	if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
		fprintf(stderr, "usage: vsrhost --maelstrom [CONFIG]   (default %s)\n"
				"Speaks Maelstrom's node protocol on stdin/stdout (lin-kv).\n",
			VSRHOST_MAELSTROM_CONFIG);
		return argc > 2 ? EX_USAGE : 0;
	}
	host_log_set_tag("maelstrom");
	char *line = maelstrom_read_line();
	json_error_t je;
	json_t *msg = line ? json_loads(line, 0, &je) : NULL;
	free(line);
	json_t *body = msg ? json_object_get(msg, "body") : NULL;
	const char *type = body ? json_string_value(json_object_get(body, "type")) : NULL;
	const char *me = body ? json_string_value(json_object_get(body, "node_id")) : NULL;
	json_t *ids = body ? json_object_get(body, "node_ids") : NULL;
	if (type == NULL || strcmp(type, "init") != 0 || me == NULL || !json_is_array(ids) ||
	    json_array_size(ids) == 0 || json_array_size(ids) > VSR_REPLICAS_MAX) {
		host_error("expected Maelstrom's init message with node_id and 1 to %u node_ids first",
			   VSR_REPLICAS_MAX);
		json_decref(msg);
		return EX_PROTOCOL;
	}
	snprintf(maelstrom_node_id, sizeof maelstrom_node_id, "%s", me);
	int replica = -1;
	maelstrom_node_count = (uint32_t)json_array_size(ids);
	for (uint32_t i = 0; i < maelstrom_node_count; i++) {
		const char *id = json_string_value(json_array_get(ids, i));
		snprintf(maelstrom_node_ids[i], sizeof maelstrom_node_ids[i], "%s", id ? id : "");
		if (id && strcmp(id, me) == 0)
			replica = (int)i;
	}
	if (replica < 0) {
		host_error("init: node_id %s is not among node_ids", me);
		json_decref(msg);
		return EX_PROTOCOL;
	}
	const char *src = json_string_value(json_object_get(msg, "src"));

	vsrh_config cfg;
	char err[1024];
	if (vsrh_config_load(config, &cfg, err, sizeof err) != 0) {
		host_error("%s", err);
		json_decref(msg);
		return EX_CONFIG;
	}
	if (cfg.replica_count < maelstrom_node_count) {
		host_error("%s lists %u replicas; Maelstrom runs %u nodes (list at least as many; "
			   "their addresses are not used)",
			   config, cfg.replica_count, maelstrom_node_count);
		vsrh_config_free(&cfg);
		json_decref(msg);
		return EX_CONFIG;
	}
	cfg.replica_count = maelstrom_node_count;
	host_log_set_level(cfg.log_level);
	maelstrom_emit(src ? src : "c0", json_pack("{s:s, s:O}", "type", "init_ok", "in_reply_to",
						   json_object_get(body, "msg_id")));
	fflush(stdout);
	json_decref(msg);

	host_options opts = {.config_path = config, .replica = replica, .fresh = true,
			     .log_level = -1};
	int rc = host_replica_main(&opts, &cfg);
	vsrh_config_free(&cfg);
	return rc;
}
