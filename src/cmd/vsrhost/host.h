/* host.h - the two shapes of vsrhost: one replica, or a supervisor of all of them. */
#ifndef HOST_H
#define HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "vsrh_config.h"

typedef struct host_options {
	const char *config_path;
	int replica;          /* 0-based core index (the CLI says N, this is N - 1); -1: supervisor */
	bool fresh;           /* discard stored state: start unjoined */
	int log_level;        /* -1: from the config */
	const char *log_level_name; /* as given, passed on to children */
	/* --accept-config FINGERPRINT: start on a data directory written under
	 * another configuration when this one's fingerprint is this
	 * (host_config_disk.h). The argument is passed on to children. */
	bool accept_config;
	uint64_t accept_fingerprint;
	const char *accept_config_arg;
} host_options;

/* Runs replica opts->replica until SIGINT/SIGTERM. Returns an exit code. */
int host_replica_main(const host_options *opts, const vsrh_config *cfg);
/* Starts every replica of cfg as a child process, supervises them, and
 * stops them all on SIGINT/SIGTERM. Returns an exit code. */
int host_supervisor_main(const host_options *opts, const vsrh_config *cfg);

#endif /* HOST_H */
