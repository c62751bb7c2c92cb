/* jepsen.h - vsrjepsen's parts: the cluster in namespaces, the nemesis, the clients, the report.
 *
 * One run: the controller (main thread) builds a bridge and one network
 * namespace per replica, starts real vsrhost processes in them, starts the
 * client thread (a libuv loop of concurrent kv sessions recording every
 * operation), and drives the nemesis schedule drawn from the seed. After the
 * schedule it heals everything, stops the clients, reads every key, compares
 * the replicas' state digests, runs the linearizability checker and writes
 * the results folder. Every exit path (success, failure, SIGINT/SIGTERM)
 * goes through jp_cluster_destroy, which kills the replicas and removes the
 * namespaces, veths and bridge (iptables rules live inside the namespaces
 * and go with them). Replicas also die with the controller (PDEATHSIG). */
#ifndef JEPSEN_H
#define JEPSEN_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "lincheck.h"
#include "vsrc_client.h"

#define JP_REPLICAS_MAX 5
#define JP_EVENTS_MAX 4096

/* Set by SIGINT/SIGTERM; every wait checks it. */
extern volatile sig_atomic_t jp_interrupted;

/* Nanoseconds on the monotonic clock (the clients' and the nemesis' clock). */
int64_t jp_now_ns(void);
/* Sleeps up to ms; false when interrupted. */
bool jp_sleep_ms(uint32_t ms);
uint64_t jp_rand(uint64_t *s);
void jp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------------ */
typedef struct jp_cluster {
	int n;
	bool netns;                 /* false: loopback, no partitions */
	bool faketime;              /* replicas run under libfaketime (clock nemesis) */
	/* Clock faults of this run (from the seed): wall clock only, jumps both
	 * ways (the monotonic clock untouched, as with an NTP step); or wall and
	 * monotonic clocks together, forward jumps only (a monotonic clock never
	 * goes back; a forward leap is what a VM resumed after a pause sees). */
	bool clock_wall_only;
	int clock_offset_s[JP_REPLICAS_MAX]; /* monotonic mode: only ever grows */
	bool durable;               /* durability = "durable" (kill-all, wipe, flip allowed) */
	uint32_t lease_ppm;         /* reads.lease_drift_ppm (0: no lease reads) */
	uint32_t checkpoint_interval; /* limits.checkpoint_interval (0: the default) */
	/* --clock-rate: how many ppm replica i's monotonic clocks run fast for
	 * the whole run (0: true rate), through the clock-rate shim
	 * (clockrate.c) named by clockrate_lib and the control file ratefile[i]. */
	int64_t rate_ppm[JP_REPLICAS_MAX];
	const char *clockrate_lib;
	char ratefile[JP_REPLICAS_MAX][PATH_MAX];
	char tag[24];               /* "vj<pid>": prefix of every name we create */
	char bridge[32];
	char bridge_ip[20];
	char ns[JP_REPLICAS_MAX][32];
	char ip[JP_REPLICAS_MAX][20];
	uint16_t rport[JP_REPLICAS_MAX], cport[JP_REPLICAS_MAX];
	bool ns_made[JP_REPLICAS_MAX];
	bool bridge_made;
	pid_t pid[JP_REPLICAS_MAX]; /* 0: not running */
	bool paused[JP_REPLICAS_MAX];
	int starts[JP_REPLICAS_MAX];
	char dir[2048];             /* this run's results folder */
	char config[PATH_MAX];
	char clockfile[JP_REPLICAS_MAX][PATH_MAX];
	const char *vsrhost;
	const char *root;           /* source tree (statemachines/) */
	uint64_t cluster_id;
	vsrc_options copt;          /* client options for this cluster */
} jp_cluster;

/* Builds the network (or picks loopback ports) and writes config.lua.
 * checkpoint_interval: 0 for the default. rate_ppm (NULL: every clock
 * true) and clockrate_lib: --clock-rate. */
int jp_cluster_create(jp_cluster *c, int n, bool want_netns, bool faketime, bool durable,
		      uint32_t lease_ppm, uint32_t checkpoint_interval, const int64_t *rate_ppm,
		      const char *clockrate_lib, const char *vsrhost, const char *root,
		      const char *dir, uint64_t seed);
/* Starts replica i (0-based); fresh: a brand-new cluster. */
int jp_cluster_start(jp_cluster *c, int i, bool fresh);
/* kill -9 and reap. */
void jp_cluster_kill(jp_cluster *c, int i);
void jp_cluster_pause(jp_cluster *c, int i, bool pause);
/* Drops packets that i receives from j (one direction). */
int jp_cluster_block(jp_cluster *c, int i, int j);
/* Removes every drop rule in every namespace. */
int jp_cluster_heal_net(jp_cluster *c);
/* Writes replica i's libfaketime spec ("+0", "+30s", "-5s", "+0 x2"). */
int jp_cluster_clock(jp_cluster *c, int i, const char *spec);
/* True when replica i's process is still alive (reaps it if it died). */
bool jp_cluster_alive(jp_cluster *c, int i);
/* Kills every replica, removes namespaces, veths, bridge. Idempotent. */
void jp_cluster_destroy(jp_cluster *c);
/* Removes what a controller that died left behind (its pid is gone). */
void jp_cluster_sweep_stale(void);
/* Removes a directory and everything under it (`rm -rf`); 0 on success. */
int jp_remove_tree(const char *path);
/* Waits until every replica answers status as normal in one view with the
 * same commit; false after timeout_ms. *primary gets the primary (or -1). */
bool jp_cluster_settled(jp_cluster *c, uint32_t timeout_ms, int *primary);
int jp_cluster_primary(jp_cluster *c);

/* ------------------------------------------------------------------------ */
/* Nemesis. */

enum jp_fault {
	JP_KILL_ONE = 0,
	JP_KILL_MINORITY,
	JP_KILL_PRIMARY,
	JP_PAUSE_ONE,
	JP_PAUSE_PRIMARY,
	JP_PART_HALVES,
	JP_PART_PRIMARY,
	JP_PART_BRIDGE,
	JP_PART_ONEWAY,
	JP_CLOCK,
	JP_KILL_ALL,   /* needs durable storage */
	JP_WIPE,       /* needs durable storage */
	JP_FLIP,       /* needs durable storage */
	JP_KILL_MAJORITY, /* needs durable storage: a majority, not all */
	JP_WIPE_MINORITY, /* needs durable storage: f replicas' data at once */
	/* The primary's links fail one after another: to one backup, then (half
	 * a hold later) to the rest. Only by name: in none of the groups, so
	 * that the seeds of earlier runs draw the schedules they drew. */
	JP_PART_CREEP,
	JP_FAULT_COUNT,
};

/* The faults that need durable storage (docs/jepsen.md). */
#define JP_DISK_FAULTS                                                                     \
	((1u << JP_KILL_ALL) | (1u << JP_WIPE) | (1u << JP_FLIP) | (1u << JP_KILL_MAJORITY) | \
	 (1u << JP_WIPE_MINORITY))

extern const char *const jp_fault_names[JP_FAULT_COUNT];

typedef struct jp_event {
	int64_t start_ns, end_ns; /* relative to the run's start; end 0: not healed */
	int fault;
	char what[120];
} jp_event;

/* Majority connectivity over time: a new entry at every change. */
typedef struct jp_conn_change {
	int64_t t_ns;
	bool majority;
} jp_conn_change;

typedef struct jp_nemesis {
	jp_cluster *c;
	uint64_t rng;
	uint32_t enabled;           /* bit per enum jp_fault */
	bool unsettled_kills;       /* durable: kills need no settled cluster */
	int64_t t0_ns;
	uint32_t quiet_ms_min, quiet_ms_max, hold_ms_min, hold_ms_max;
	jp_event events[JP_EVENTS_MAX];
	uint32_t event_count;
	jp_conn_change conn[2 * JP_EVENTS_MAX];
	uint32_t conn_count;
	/* Current faults, for the majority computation. */
	bool down[JP_REPLICAS_MAX];
	bool cut[JP_REPLICAS_MAX][JP_REPLICAS_MAX]; /* cut[i][j]: i does not hear j */
	uint32_t unsettled;         /* times the cluster did not settle between faults */
} jp_nemesis;

/* Parses "kill,pause,partition,clock,all,none" names into bits. */
int jp_nemesis_parse(const char *list, uint32_t *bits, char *err, size_t err_len);
/* Runs faults until duration_ms from t0 has passed; then heals everything. */
void jp_nemesis_run(jp_nemesis *nm, uint32_t duration_ms);
void jp_nemesis_heal_all(jp_nemesis *nm);

/* ------------------------------------------------------------------------ */
/* Workload. */

typedef struct jp_op {
	lincheck_op op;
	char note[80];              /* why it failed or is unknown */
} jp_op;

typedef struct jp_work_opts {
	uint32_t clients;
	uint32_t readers;           /* of the clients, how many only read */
	uint32_t keys;              /* keys in use at once */
	uint32_t ops_per_key;       /* a key is retired after this many ops */
	uint32_t rate;              /* total ops per second (0: closed loop) */
	bool reads_via_log;         /* reads as operations through the log, not as
	                               linearizable queries (docs/protocol.md "Reads") */
	bool lease_reads;           /* reads as lease queries (--lease-reads) */
	vsrc_timing timing;
} jp_work_opts;

typedef struct jp_work jp_work;

/* Starts the client thread; operations are recorded from now on. */
jp_work *jp_work_start(const vsrc_options *o, const jp_work_opts *wo, uint64_t seed,
		       int64_t t0_ns);
/* Stops new calls, waits for the calls in progress, joins the thread.
 * Returns the history (owned by the caller) and its length. */
jp_op *jp_work_stop(jp_work *w, size_t *count, uint32_t *keys_used);

/* Reads every key 0..keys-1 after healing (ops appended to *h). Returns the
 * number of keys that could not be read. */
uint32_t jp_final_reads(const vsrc_options *o, uint32_t keys, int64_t t0_ns, jp_op **h,
			size_t *count, uint32_t client_id);

/* ------------------------------------------------------------------------ */
/* Report. */

typedef struct jp_verdict {
	lincheck_result lin;
	uint32_t lost_writes;
	char lost_example[200];
	uint32_t unread_keys;
	bool digests_agree;
	char digest_note[300];
	uint64_t ops, ok, fail, info;
	double availability;        /* ok share of ops called while a majority was connected */
	uint64_t majority_ops;
	int64_t gap_ns[JP_FAULT_COUNT]; /* longest stretch without an ok completion per fault */
	int64_t gap_alone_ns[JP_FAULT_COUNT]; /* the same, faults that overlapped no other */
	uint32_t fault_count[JP_FAULT_COUNT];
	uint32_t alone_count[JP_FAULT_COUNT];
	int64_t recovery_ns[JP_FAULT_COUNT]; /* heal to the first completed op, longest */
	bool valid;
} jp_verdict;

void jp_report_lost(const jp_op *h, size_t n, uint32_t first_final, jp_verdict *v);
void jp_report_availability(const jp_op *h, size_t n, const jp_nemesis *nm, int64_t end_ns,
			    jp_verdict *v);
int jp_report_write(const char *dir, const jp_op *h, size_t n, const jp_nemesis *nm,
		    const jp_verdict *v, uint32_t clients, int64_t end_ns, uint64_t seed);
int jp_history_write(const char *path, const jp_op *h, size_t n);
/* Reads a history.jsonl back (vsrjepsen --check FILE). */
jp_op *jp_history_read(const char *path, size_t *count, char *err, size_t err_len);

/* ------------------------------------------------------------------------ */
/* vsrjepsen --maelstrom: one run against vsrhost --maelstrom nodes. Returns
 * 0 valid, 1 violation, 2 undecided, 130 interrupted. */
int jp_maelstrom_run(const char *vsrhost, const char *root, const char *out, uint64_t seed,
		     int n, uint32_t seconds, uint32_t clients, uint32_t call_ms);

#endif /* JEPSEN_H */
