/* harness.h - what every process-test scenario shares: the cluster of
 * vsrhost children, the minimal blocking client, status and key helpers.
 * harness.c has them; each sc_*.c file holds the scenarios of one area,
 * proctest.c the list of scenarios and main(). */
#ifndef PROCTEST_HARNESS_H
#define PROCTEST_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <jansson.h>
#include <msgpack.h>

#include "vsr.h"
#include "vsr_wire.h"
#include "vsrc_client.h"

#define N 3
#define STARTUP_MS 15000   /* replicas up and a primary elected */
#define CALL_MS 15000      /* one client call, failovers included */
#define CATCHUP_MS 20000   /* a restarted replica reaches the others */

#define CUTS_MAX 8
typedef struct mconn {
	int fd;
	vsr_wire_reader rd;
	vsr_wire_conn_auth auth;
} mconn;

typedef struct mclient {
	mconn c[N];
	vsr_wire_config wc;
	vsr_wire_decoded d;
	uint64_t session;
	uint64_t history;   /* of the session (its REGISTER reply's) */
	uint64_t request;   /* last request number used */
	uint8_t target;
	uint64_t view;
} mclient;

typedef struct mresult {
	uint8_t status;
	uint64_t op;
	uint8_t replica;
	uint8_t body[4096];
	uint32_t body_len;
} mresult;

typedef struct cluster_view {
	bool up[N];
	vsr_wire_status s[N];
} cluster_view;

#define KEYS 20
extern const char *g_vsrhost;
extern const char *g_vsrctl;
extern const char *g_fail_io;  /* --fail-io: the fail_io.c shim */
extern const char *g_root;
extern char g_dir[256];
/* Bytes in replica i's log file (g_dir/replica-<i+1>.log) so far, 0: none. */
long replica_log_size(int i);
extern uint64_t g_cluster;
extern uint16_t g_replica_port[N], g_client_port[N], g_metrics_port[N];
extern pid_t g_pid[N];
extern bool g_keep;
extern uint64_t g_seed;
extern const char *g_durability;
extern char g_mounted[400];
extern unsigned g_checkpoint_interval;
/* --checkpoint-interval: the power-cut scenarios' interval instead of 8
 * (0: theirs), e.g. long, so that cleanings (VSRH_CLEAN_AFTER_MS, inherited
 * by the replicas) and not syncs write the store back between cuts. */
extern unsigned g_pc_checkpoint_interval;
/* --writer-quota: puts per writer and round of the crash scenario instead
 * of its own (0), e.g. few, so that the writers are done before the
 * driver's waits are. */
extern unsigned g_writer_quota;
extern unsigned g_odd_instructions;
extern int g_odd_replica;
extern const char *g_odd_statemachine;
extern const char *g_odd_vsrhost;
extern const char *g_vsrhost_teeth;
extern const char *g_log_format;
extern bool g_auth;
extern bool g_telemetry;
extern uint8_t g_client_key[VSR_WIRE_KEY_SIZE];
extern char g_cuts[CUTS_MAX][64];
extern int g_cut_count;
extern pthread_mutex_t g_cut_lock;

uint64_t now_ms(void);
void cuts_clear(void);
void kill_all(void);
void remove_dir(void);
void dump_logs(void);
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void on_signal(int sig);
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pick_ports(void);
void write_config(const char *statemachine);
pid_t spawn(const char *path, char *const argv[], int out_fd, int err_fd);
/* The same in a process group of its own (its pid), as a shell job runs:
 * kill(-pid, sig) reaches it and every process it starts. */
pid_t spawn_group(const char *path, char *const argv[], int out_fd, int err_fd);
void start_replica(int i);
void kill_replica(int i);
void stop_all(void);
/* Waits up to ms for child pid to exit (a bounded poll, 10 ms apart): true
 * with its status in *status, false if it is still running. */
bool wait_exit(pid_t pid, uint64_t ms, int *status);
void check_alive(void);
int tcp_connect(uint16_t port);
bool write_all(int fd, const void *data, size_t len);
void mc_drop(mclient *m, int i);
bool mc_open_key(mclient *m, int i, uint8_t role, const uint8_t *key);
bool mc_open(mclient *m, int i, uint8_t role);
bool mc_write_frame(mclient *m, int i, vsr_buf *b);
void mc_init(mclient *m);
void mc_free(mclient *m);
int mc_next(mclient *m, uint64_t deadline);
bool mc_send_request(mclient *m, int i, uint8_t kind, uint64_t number,
			    const uint8_t *op, size_t op_len);
bool mc_call_number(mclient *m, uint8_t kind, uint64_t number, const uint8_t *op,
			   size_t op_len, uint32_t attempt_ms, mresult *out);
void mc_register(mclient *m);
void mc_op(mclient *m, const msgpack_sbuffer *op, mresult *r, const char *what);
void pack_cstr(msgpack_packer *pk, const char *s);
void op_kv(msgpack_sbuffer *sb, const char *name, const char *key, const char *value);
void op_counter(msgpack_sbuffer *sb, const char *name, const char *counter,
		       bool with_delta, int64_t delta);
bool body_contains(const mresult *r, const char *s);
bool body_int(const mresult *r, int64_t *out);
bool status_of(int i, vsr_wire_status *out);
void status_all(cluster_view *v);
int settled_primary(const cluster_view *v);
/* Each replica's status, view, op, commit, executed and digest (stderr);
 * one that did not answer or is not running says so. */
void print_cluster(const cluster_view *v);
int wait_primary(uint32_t timeout_ms, const char *what);
void wait_converged(uint64_t op, uint32_t timeout_ms, const char *what);
bool port_accepts(uint16_t port);
void wait_ports(int only);
bool wait_ports_or_taken(void);
void cluster_start(const char *statemachine);
void key_value(int k, char key[32], char val[64]);
void put_keys(mclient *m, msgpack_sbuffer *sb, int from, int to, uint64_t *last_op);
void get_keys(mclient *m, msgpack_sbuffer *sb, int from, int to);
int scenario_open(const char *statemachine, mclient *m, msgpack_sbuffer *sb);
void scenario_close(mclient *m, msgpack_sbuffer *sb);
int run_vsrctl(char *out, size_t out_len, const char *const *args);
int http_get(int i, const char *path, char *out, size_t cap);
bool metric_value(const char *text, const char *name, uint64_t *out);
const char *scrape(int i, char *buf, size_t cap);
/* Replica i's log (replica-<i+1>.log): a line containing `needle`, or
 * beginning with `prefix`. */
bool log_contains(int i, const char *needle);
bool log_line_starts(int i, const char *prefix);

/* Scenarios (one ctest test each). */
int scenario_replicate(void);
int failover_common(bool restart);
int scenario_quick_restart(void);
int scenario_dedup(void);
int scenario_history(void);
int scenario_failover_bench(int trials);
int scenario_watchdog(void);
int scenario_sandbox(void);
int scenario_divergence(bool primary);
int scenario_garbage(void);
int scenario_attacks(void);
int scenario_supervisor(void);
int scenario_make_run(void);
int scenario_metrics(void);
int scenario_auth(void);
int scenario_crash(int rounds);
int scenario_corrupt(void);
int scenario_disk_full(void);
int scenario_disk_fault(void);
int scenario_store_fault(void);
int scenario_powercut(int cuts);
int scenario_powercut_minority(int rounds);
int scenario_powercut_minority_teeth(int rounds);
int scenario_lost_dir_teeth(void);
int scenario_open_reclaim(bool teeth);
int scenario_store_open_fault(void);
int scenario_tick_commit(void);
int scenario_turns(void);
int scenario_review_transfer(void);
int scenario_pause_backup(void);
int scenario_one_way_cut(void);
int scenario_client_cut(void);
int scenario_read_partition(void);
int scenario_config_mismatch(void);
int scenario_config_change(void);
/* Sends one QUERY in read mode `mode` to replica i only and waits up to
 * wait_ms for its answer (sc_availability.c). False when none came. */
bool mc_query_at(mclient *m, int i, uint8_t mode, uint64_t number, const msgpack_sbuffer *op,
		 uint32_t wait_ms, mresult *out, uint8_t *mode_out);

#endif
