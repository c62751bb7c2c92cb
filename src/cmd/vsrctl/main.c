/* vsrctl - command-line client of a vsrhost cluster: kv operations, generic calls, status. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "vsrc_client.h"
#include "vsrc_json.h"
#include "vsrc_op.h"

#ifndef VSR_VERSION
#define VSR_VERSION "0.0.0"
#endif

/* Exit status when the request was certainly not applied but the cluster
 * could not be used (unreachable, refused); and when it may have been. */
#define EXIT_FAILED EX_UNAVAILABLE
#define EXIT_UNKNOWN EX_TEMPFAIL
/* The state machine refused the operation (applied as an error). */
#define EXIT_REFUSED 1
/* status: the replicas that answered report different configuration
 * fingerprints, so they refuse each other at HELLO. Not EX_CONFIG: that
 * says vsrctl's own command line or config file is wrong, and a script
 * must tell "fix my invocation" from "the cluster disagrees with itself".
 * EX_PROTOCOL (76, "remote error in protocol") is the sysexits code for a
 * fault on the remote side of an exchange, which this is: the replicas
 * answered, and what they answered cannot hold in one cluster. */
#define EXIT_CONFIG_DIFFERS EX_PROTOCOL
_Static_assert(EXIT_CONFIG_DIFFERS != EX_CONFIG && EXIT_CONFIG_DIFFERS != EXIT_FAILED &&
		       EXIT_CONFIG_DIFFERS != EXIT_UNKNOWN && EXIT_CONFIG_DIFFERS != EXIT_REFUSED &&
		       EXIT_CONFIG_DIFFERS != EX_USAGE && EXIT_CONFIG_DIFFERS != EX_DATAERR &&
		       EXIT_CONFIG_DIFFERS != EX_SOFTWARE && EXIT_CONFIG_DIFFERS != EX_OSERR,
	       "a configuration mismatch among the replicas has an exit status of its own");

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vsrctl -c CONFIG [options] COMMAND [ARGS]\n"
		"\n"
		"Commands:\n"
		"  put KEY VALUE        store VALUE under KEY\n"
		"  get KEY              print the value of KEY (a read outside the log:\n"
		"                       linearizable unless --stale, --lease or --via-log)\n"
		"  cas KEY FROM TO      set KEY to TO if its value is FROM\n"
		"  delete KEY           remove KEY\n"
		"  call JSON            apply any state-machine operation given as JSON,\n"
		"                       e.g. vsrctl -c config/kv.lua call '{\"op\":\"get\",\"key\":\"k\"}'\n"
		"  query JSON           run a read-only operation given as JSON through the\n"
		"                       state machine's query hook, outside the log\n"
		"  status               every replica's id, status, view, op, commit, primary,\n"
		"                       lag (ops its executed state trails the highest commit),\n"
		"                       time since its last protocol step and its last progress,\n"
		"                       its cluster history and configuration fingerprint\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE    cluster configuration (required)\n"
		"  -t, --timeout MS     give up on a call after MS milliseconds (default 10000)\n"
		"      --attempt MS     try another replica after MS without reply (default 500)\n"
		"  -r, --raw            print a string reply as raw bytes, not JSON\n"
		"      --stale          get/query: any replica answers at once from its own\n"
		"                       state, which may miss recent writes (says so on stderr)\n"
		"      --lease          get/query: a lease read (the cluster must configure\n"
		"                       reads.lease_drift_ppm; else answered linearizably)\n"
		"      --via-log        get: through the log as an ordinary operation\n"
		"  -h, --help           show this help\n"
		"  -V, --version        show the version\n"
		"\n"
		"Replies are printed as JSON. Exit status: 0 done; 1 the state machine\n"
		"refused the operation; %d failed (certainly not applied); %d unknown (the\n"
		"request may have been applied); %d usage; %d bad JSON; %d config error.\n"
		"status: 0 every replica answered, all with one configuration fingerprint;\n"
		"%d the replicas that answered report different fingerprints (stderr says\n"
		"which; this comes first); %d a replica did not answer.\n",
		EXIT_FAILED, EXIT_UNKNOWN, EX_USAGE, EX_DATAERR, EX_CONFIG, EXIT_CONFIG_DIFFERS,
		EXIT_FAILED);
}

static int print_reply(const vsrc_sync_result *r, int raw)
{
	if (r->reply_len == 0) {
		printf("null\n");
		return 0;
	}
	/* A string reply in raw mode: print its bytes (msgpack str or bin). */
	if (raw) {
		const uint8_t *p = r->reply;
		size_t n = r->reply_len, hdr = 0, len = 0;
		if ((p[0] & 0xe0) == 0xa0) {
			hdr = 1;
			len = p[0] & 0x1f;
		} else if ((p[0] == 0xd9 || p[0] == 0xc4) && n >= 2) {
			hdr = 2;
			len = p[1];
		} else if ((p[0] == 0xda || p[0] == 0xc5) && n >= 3) {
			hdr = 3;
			len = (size_t)p[1] << 8 | p[2];
		} else if ((p[0] == 0xdb || p[0] == 0xc6) && n >= 5) {
			hdr = 5;
			len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
		}
		if (hdr && hdr + len == n) {
			fwrite(p + hdr, 1, len, stdout);
			fputc('\n', stdout);
			return 0;
		}
	}
	char err[256];
	char *json = vsrc_msgpack_to_json(r->reply, r->reply_len, err, sizeof(err));
	if (!json) {
		fprintf(stderr, "vsrctl: done, but the reply cannot be shown: %s\n", err);
		return EX_SOFTWARE;
	}
	printf("%s\n", json);
	free(json);
	return 0;
}

/* query < 0: an operation through the log; else a query in that read mode. */
static int run_call(const vsrc_options *o, const vsr_buf *op, int raw, int query)
{
	vsrc_sync *s;
	if (vsrc_sync_open(o, &s) != 0) {
		fprintf(stderr, "vsrctl: out of memory\n");
		return EX_OSERR;
	}
	const vsrc_sync_result *r;
	int outcome = query < 0 ? vsrc_sync_call(s, op->data, op->len, &r)
				: vsrc_sync_query(s, (uint8_t)query, op->data, op->len, &r);
	int code;
	if (outcome == VSRC_DONE) {
		if (query >= 0 && r->read_mode == VSR_READ_STALE)
			fprintf(stderr, "vsrctl: stale read: the state as of op %llu, which may "
				"miss writes committed since\n", (unsigned long long)r->op);
		code = print_reply(r, raw);
	} else if (vsr_reply_is_error(r->status)) {
		/* The state machine's message: a msgpack string, or plain text. */
		char err[256];
		char *msg = r->reply_len ? vsrc_msgpack_to_json(r->reply, r->reply_len, err,
								  sizeof(err))
					 : NULL;
		const char *what = r->status == VSR_REPLY_SCRIPT_ERROR
					   ? "the state machine's script raised an error"
					   : "the state machine refused the operation";
		if (msg)
			fprintf(stderr, "vsrctl: %s: %s\n", what, msg);
		else
			fprintf(stderr, "vsrctl: %s: %.*s\n", what,
				(int)r->reply_len, (const char *)r->reply);
		free(msg);
		code = EXIT_REFUSED;
	} else {
		fprintf(stderr, "vsrctl: %s\n", r->reason);
		code = outcome == VSRC_UNKNOWN ? EXIT_UNKNOWN : EXIT_FAILED;
	}
	vsrc_sync_close(s);
	return code;
}

static int run_status(const vsrc_options *o, uint32_t timeout_ms)
{
	vsrc_status_entry e[VSR_REPLICAS_MAX];
	/* A status answer is immediate when the replica is up: do not wait the
	 * whole call timeout for a dead one. */
	vsrc_status_query(o, timeout_ms < 2000 ? timeout_ms : 2000, e);
	int missing = 0;
	/* Lag: how far a replica's executed op trails the highest commit any
	 * replica reported. */
	uint64_t commit_max = 0;
	for (uint32_t i = 0; i < o->replica_count; i++)
		if (e[i].ok && e[i].status.commit > commit_max)
			commit_max = e[i].status.commit;
	printf("%-3s %-22s %-15s %8s %10s %10s %8s %8s %9s %12s  %-16s  %-8s\n", "id", "address",
	       "status", "view", "op", "commit", "primary", "lag", "step_ago", "progress_ago",
	       "history", "config");
	/* Replicas whose configuration fingerprints differ refuse each other:
	 * the column shows its first 8 hex digits, the note below who differs.
	 * A replica of a build without fingerprints reports 0: not compared. */
	bool config_differs = false;
	uint64_t config_first = 0;
	for (uint32_t i = 0; i < o->replica_count; i++) {
		if (!e[i].ok || e[i].config == 0)
			continue;
		if (config_first == 0)
			config_first = e[i].config;
		else if (e[i].config != config_first)
			config_differs = true;
	}
	for (uint32_t i = 0; i < o->replica_count; i++) {
		if (!e[i].ok) {
			printf("%-3u %-22s %-15s %s\n", i + 1, o->names[i], "unreachable", e[i].error);
			missing++;
			continue;
		}
		const vsr_wire_status *s = &e[i].status;
		printf("%-3u %-22s %-15s %8llu %10llu %10llu %8u %8llu %7llums %10llums  %016llx  "
		       "%08llx\n",
		       i + 1, o->names[i],
		       s->status < VSR_STATUS_COUNT ? vsr_status_name(s->status) : "?",
		       (unsigned long long)s->view, (unsigned long long)s->op,
		       (unsigned long long)s->commit, (unsigned)s->primary + 1u,
		       (unsigned long long)(commit_max > s->executed ? commit_max - s->executed : 0),
		       (unsigned long long)s->step_age_ms, (unsigned long long)s->progress_age_ms,
		       (unsigned long long)s->history, (unsigned long long)(e[i].config >> 32));
	}
	if (config_differs) {
		printf("configuration fingerprints differ: a replica whose config differs from "
		       "the others' is refused by them (its log and theirs name what differs)\n");
		/* Who runs which: "replicas 1, 2 run 1a2b...; replica 3 runs 3c4d...". */
		char who[1024];
		size_t used = 0;
		bool listed[VSR_REPLICAS_MAX] = {false};
		for (uint32_t i = 0; i < o->replica_count && used < sizeof who; i++) {
			if (!e[i].ok || e[i].config == 0 || listed[i])
				continue;
			uint32_t n = 0;
			for (uint32_t j = i; j < o->replica_count; j++)
				n += e[j].ok && e[j].config == e[i].config;
			int w = snprintf(who + used, sizeof who - used, "%sreplica%s", used ? "; " : "",
					 n > 1 ? "s" : "");
			used = w < 0 ? sizeof who : used + (size_t)w;
			for (uint32_t j = i, k = 0; j < o->replica_count && used < sizeof who; j++) {
				if (!e[j].ok || e[j].config != e[i].config)
					continue;
				listed[j] = true;
				w = snprintf(who + used, sizeof who - used, "%s %u", k++ ? "," : "", j + 1);
				used = w < 0 ? sizeof who : used + (size_t)w;
			}
			if (used < sizeof who) {
				w = snprintf(who + used, sizeof who - used, " run%s %016llx", n > 1 ? "" : "s",
					     (unsigned long long)e[i].config);
				used = w < 0 ? sizeof who : used + (size_t)w;
			}
		}
		fprintf(stderr, "vsrctl: status: the replicas report different configuration "
			"fingerprints (%s): those that differ from the others are refused by them; "
			"`vsrhost fingerprint CONFIG` on each machine shows which file differs\n", who);
		return EXIT_CONFIG_DIFFERS;
	}
	return missing ? EXIT_FAILED : 0;
}

static int parse_ms(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v == 0 || v > 3600000)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	/* A replica that closes a connection must not kill this program. */
	signal(SIGPIPE, SIG_IGN);
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "attempt", required_argument, NULL, 'a' },
		{ "raw", no_argument, NULL, 'r' },
		{ "stale", no_argument, NULL, 'S' },
		{ "lease", no_argument, NULL, 'L' },
		{ "via-log", no_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	uint32_t timeout_ms = 10000, attempt_ms = 500;
	int raw = 0, ch, mode = VSR_READ_LINEARIZABLE, via_log = 0;
	while ((ch = getopt_long(argc, argv, "+c:t:rhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 't':
			if (parse_ms(optarg, &timeout_ms) < 0) {
				fprintf(stderr, "vsrctl: --timeout: expected 1 to 3600000 ms, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			break;
		case 'a':
			if (parse_ms(optarg, &attempt_ms) < 0) {
				fprintf(stderr, "vsrctl: --attempt: expected 1 to 3600000 ms, got \"%s\"\n",
					optarg);
				return EX_USAGE;
			}
			break;
		case 'r':
			raw = 1;
			break;
		case 'S':
			mode = VSR_READ_STALE;
			break;
		case 'L':
			mode = VSR_READ_LEASE;
			break;
		case 'G':
			via_log = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("vsrctl %s\n", VSR_VERSION);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (!config) {
		fprintf(stderr, "vsrctl: -c CONFIG is required (try --help)\n");
		return EX_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, "vsrctl: a command is required (try --help)\n");
		return EX_USAGE;
	}
	const char *cmd = argv[optind];
	int nargs = argc - optind - 1;
	char **args = argv + optind + 1;
	static const struct {
		const char *name;
		int nargs;
	} commands[] = { { "put", 2 }, { "get", 1 }, { "cas", 3 }, { "delete", 1 },
			 { "call", 1 }, { "query", 1 }, { "status", 0 } };
	int known = -1;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i].name) == 0)
			known = (int)i;
	if (known < 0) {
		fprintf(stderr, "vsrctl: unknown command \"%s\" (try --help)\n", cmd);
		return EX_USAGE;
	}
	if (nargs != commands[known].nargs) {
		fprintf(stderr, "vsrctl: %s takes %d argument%s, got %d\n", cmd,
			commands[known].nargs, commands[known].nargs == 1 ? "" : "s", nargs);
		return EX_USAGE;
	}

	vsrc_options o;
	char err[512];
	if (vsrc_options_from_config(&o, config, err, sizeof(err)) < 0) {
		fprintf(stderr, "vsrctl: %s\n", err);
		return EX_CONFIG;
	}
	o.timing.call_ms = timeout_ms;
	o.timing.attempt_ms = attempt_ms < timeout_ms ? attempt_ms : timeout_ms;

	if (strcmp(cmd, "status") == 0)
		return run_status(&o, timeout_ms);

	vsr_buf op = { 0 };
	int rc;
	bool json = strcmp(cmd, "call") == 0 || strcmp(cmd, "query") == 0;
	if (json) {
		rc = vsrc_json_to_msgpack(args[0], &op, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "vsrctl: %s: the operation is not valid JSON: %s\n", cmd, err);
			return EX_DATAERR;
		}
	} else {
		/* The kv commands (statemachines/kv.lua), built in vsrc_op.c. */
		if (vsrc_op_kv(&op, cmd, (const char *const *)args, (uint32_t)nargs) < 0) {
			fprintf(stderr, "vsrctl: out of memory\n");
			return EX_OSERR;
		}
	}
	/* get and query are reads outside the log, unless --via-log. */
	bool read = strcmp(cmd, "query") == 0 || (strcmp(cmd, "get") == 0 && !via_log);
	rc = run_call(&o, &op, raw, read ? mode : -1);
	vsr_buf_free(&op);
	return rc;
}
