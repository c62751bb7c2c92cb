/* vsrc_config.c - client options from a cluster config file (vsrctl, vsrbench). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vsrc_client.h"
#include "vsrh_config.h"

int vsrc_options_from_config(vsrc_options *o, const char *config_path,
			     char *err, size_t err_len)
{
	vsrh_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	if (vsrh_config_load(config_path, &cfg, err, err_len) < 0)
		return -1;
	const char *addrs[VSR_REPLICAS_MAX];
	char text[VSR_REPLICAS_MAX][VSRH_HOST_MAX + 16];
	int rc = 0;
	if (cfg.replica_count == 0 || cfg.replica_count > VSR_REPLICAS_MAX) {
		snprintf(err, err_len, "%s: clients: expected 1 to %u addresses, got %u",
			 config_path, VSR_REPLICAS_MAX, cfg.replica_count);
		rc = -1;
	}
	for (uint32_t i = 0; rc == 0 && i < cfg.replica_count; i++) {
		/* IPv6 hosts need brackets to survive the "host:port" split. */
		bool v6 = strchr(cfg.clients[i].host, ':') != NULL;
		snprintf(text[i], sizeof(text[i]), "%s%s%s:%u", v6 ? "[" : "",
			 cfg.clients[i].host, v6 ? "]" : "", (unsigned)cfg.clients[i].port);
		addrs[i] = text[i];
	}
	if (rc == 0) {
		char why[256];
		rc = vsrc_options_from_addresses(o, cfg.cluster, addrs, cfg.replica_count,
						 why, sizeof(why));
		if (rc < 0)
			snprintf(err, err_len, "%s: clients: %s", config_path, why);
	}
	if (rc == 0 && cfg.message_bytes_max)
		o->message_bytes_max = cfg.message_bytes_max;
	if (rc == 0 && cfg.client_key_file != NULL) {
		char why[512];
		rc = vsrc_options_set_key_file(o, cfg.client_key_file, why, sizeof why);
		if (rc < 0)
			snprintf(err, err_len, "%s: auth.client_key: %s", config_path, why);
	}
	vsrh_config_free(&cfg);
	return rc;
}
