/* main.c - vsrhost: run one replica (--replica N) or, by default, a supervised cluster on this machine. */
#include "host.h"
#include "host_config_disk.h"
#include "host_fingerprint.h"
#include "host_log.h"
#include "host_verify.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "vsr_wire.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"

static void main_usage(FILE *out)
{
	fprintf(out,
		"usage: vsrhost CONFIG [--replica N] [--log-level LEVEL] [--fresh]\n"
		"                      [--accept-config FINGERPRINT]\n"
		"       vsrhost check CONFIG\n"
		"       vsrhost fingerprint CONFIG\n"
		"       vsrhost keygen FILE\n"
		"       vsrhost --check-store DIR\n"
		"       vsrhost --maelstrom [CONFIG]\n"
		"\n"
		"Runs a Viewstamped Replication cluster hosting a Lua state machine.\n"
		"\n"
		"  CONFIG               the cluster's config file (e.g. config/kv.lua)\n"
		"  -r, --replica N      run replica N only (1..n, the position in the config's\n"
		"                       replicas list; one process per replica,\n"
		"                       the production shape). Without it, every replica of\n"
		"                       CONFIG is started on this machine, one process each,\n"
		"                       and stopped together on Ctrl-C.\n"
		"  -l, --log-level L    debug, info, warn or error (default: the config's)\n"
		"  -f, --fresh          discard this replica's stored state: it starts\n"
		"                       unjoined and catches up with the cluster's history\n"
		"                       (memory storage holds nothing anyway). A new\n"
		"                       history begins only when every replica is unjoined\n"
		"                       (without --replica: every replica of CONFIG, so\n"
		"                       the cluster's data is gone).\n"
		"      --accept-config FINGERPRINT\n"
		"                       start on a data directory written under another\n"
		"                       configuration (without it: exit 78) when this\n"
		"                       configuration's fingerprint is FINGERPRINT: for a\n"
		"                       change made on every replica while the whole cluster\n"
		"                       was stopped. The log after the last checkpoint is\n"
		"                       replayed under the new configuration\n"
		"                       (docs/config.md, \"Changing the configuration\").\n"
		"  -h, --help           this text\n"
		"  -V, --version        the version\n"
		"\n"
		"check CONFIG validates the config and runs the state machine's\n"
		"determinism self-check.\n"
		"\n"
		"fingerprint CONFIG prints the configuration fingerprint (what must be the\n"
		"same on every replica: scripts, limits, membership, durability, lease\n"
		"settings) and its parts; a replica whose fingerprint differs is refused.\n"
		"\n"
		"keygen FILE writes a new random 256-bit key (mode 0600; an existing FILE\n"
		"is never overwritten) for the config's auth.replica_key or auth.client_key.\n"
		"\n"
		"--check-store DIR runs the check a restart runs on a replica's vsr.store\n"
		"(DIR/store) by hand, on a stopped replica's data directory DIR (the config's\n"
		"data_dir/replica-N), against the checkpoint DIR/superblock names: every\n"
		"record, and LMDB's pages and free list. It prints the verdict in one line\n"
		"and exits 0 intact, 1 damaged (a start would reset DIR and repair it from\n"
		"the other replicas), 2 could not check (no superblock; DIR in use: the\n"
		"replica runs). It writes nothing in DIR (a copy or a read-only mount will\n"
		"do): what a start does first (finish an interrupted install; after a reboot,\n"
		"roll back a newest commit that was never synced) it says, and checks the\n"
		"store as that start will open it. The log is not read.\n"
		"\n"
		"--maelstrom runs one replica as a node of Jepsen's Maelstrom (lin-kv):\n"
		"messages on stdin/stdout (the program vsrhost-maelstrom, next to this one).\n"
		"\n"
		"Logs go to stderr, one line per event. SIGINT or SIGTERM stops cleanly.\n"
		"Exit codes: 0 ok, 64 usage, 78 config (also: the data directory was written\n"
		"under another configuration), 69 a port cannot be bound, 70 internal error,\n"
		"74 storage error.\n");
}

/* vsrhost --maelstrom [CONFIG]: the Maelstrom node is its own program (its
 * transport replaces src/net), installed beside this one. */
static int main_exec_maelstrom(int argc, char **argv)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 32);
	if (n <= 0) {
		fprintf(stderr, "vsrhost: --maelstrom: cannot find this program's directory\n");
		return EX_OSERR;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	snprintf(slash ? slash + 1 : self, 32, "vsrhost-maelstrom");
	argv[1] = self;
	execv(self, argv + 1);
	fprintf(stderr, "vsrhost: --maelstrom: cannot run %s: %s\n", self, strerror(errno));
	(void)argc;
	return EX_UNAVAILABLE;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return vsrh_check_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "fingerprint") == 0)
		return host_fingerprint_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0) {
		if (argc != 3) {
			fprintf(stderr, "vsrhost: usage: vsrhost keygen FILE\n");
			return EX_USAGE;
		}
		char kerr[512];
		if (vsr_wire_key_generate(argv[2], kerr, sizeof kerr) != 0) {
			fprintf(stderr, "vsrhost: %s\n", kerr);
			return EX_CANTCREAT;
		}
		printf("wrote a new key to %s (keep it secret; copy it to every machine that "
		       "needs it)\n", argv[2]);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "--check-store") == 0) {
		if (argc != 3) {
			fprintf(stderr, "vsrhost: usage: vsrhost --check-store DIR (a stopped "
				"replica's data directory, e.g. data/kv/replica-1)\n");
			return EX_USAGE;
		}
		return host_check_store_main(argv[2]);
	}
	if (argc >= 2 && strcmp(argv[1], "--maelstrom") == 0)
		return main_exec_maelstrom(argc, argv);

	static const struct option longopts[] = {
		{"replica", required_argument, NULL, 'r'},
		{"log-level", required_argument, NULL, 'l'},
		{"fresh", no_argument, NULL, 'f'},
		{"accept-config", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	host_options opts = {.replica = -1, .log_level = -1};
	int ch;
	while ((ch = getopt_long(argc, argv, "r:l:fhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'r': {
			char *end = NULL;
			long v = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || v < 1 || v > (long)VSR_REPLICAS_MAX) {
				fprintf(stderr, "vsrhost: --replica: expected 1..%u, got \"%s\"\n",
					VSR_REPLICAS_MAX, optarg);
				return EX_USAGE;
			}
			/* Numbered from 1 like the config's replicas list and
			 * vsrctl; the core counts from 0. */
			opts.replica = (int)v - 1;
			break;
		}
		case 'l':
			opts.log_level = host_log_parse_level(optarg);
			if (opts.log_level < 0) {
				fprintf(stderr, "vsrhost: --log-level: expected debug, info, warn or error, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			opts.log_level_name = optarg;
			break;
		case 'f':
			opts.fresh = true;
			break;
		case 'A':
			if (!host_config_parse_fingerprint(optarg, &opts.accept_fingerprint)) {
				fprintf(stderr, "vsrhost: --accept-config: expected the 16 hex digits of "
					"the configuration's fingerprint (`vsrhost fingerprint CONFIG` "
					"prints it), got \"%s\"\n", optarg);
				return EX_USAGE;
			}
			opts.accept_config = true;
			opts.accept_config_arg = optarg;
			break;
		case 'h':
			main_usage(stdout);
			return 0;
		case 'V':
			printf("vsrhost %s (wire protocol %u)\n", VSRHOST_VERSION,
			       (unsigned)VSR_WIRE_VERSION);
			return 0;
		default:
			/* getopt_long has said what was wrong. */
			fprintf(stderr, "vsrhost: try --help\n");
			return EX_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "vsrhost: expected exactly one CONFIG file (try --help)\n");
		return EX_USAGE;
	}
	opts.config_path = argv[optind];

	vsrh_config cfg;
	char err[1024];
	if (vsrh_config_load(opts.config_path, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "vsrhost: %s\n", err);
		return EX_CONFIG;
	}
	host_log_set_level(opts.log_level >= 0 ? opts.log_level : cfg.log_level);
	host_log_set_format(cfg.log_format);
	if (opts.replica >= 0 && (uint32_t)opts.replica >= cfg.replica_count) {
		fprintf(stderr, "vsrhost: --replica %d: %s has replicas 1..%u\n", opts.replica + 1,
			opts.config_path, cfg.replica_count);
		vsrh_config_free(&cfg);
		return EX_USAGE;
	}
	int rc = opts.replica >= 0 ? host_replica_main(&opts, &cfg)
				   : host_supervisor_main(&opts, &cfg);
	vsrh_config_free(&cfg);
	return rc;
}
