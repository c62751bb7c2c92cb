/* host_supervisor.c - the embedded default: one child process per replica of the config, on this machine.
 *
 * Happy path: fork/exec this same binary once per replica with
 * `--replica i` (each finds what its storage holds; with memory storage,
 * nothing: every replica starts unjoined and together they begin a new
 * history), print where clients connect, wait.
 * On SIGINT/SIGTERM forward SIGTERM to every child, wait for all of them,
 * exit 0.
 *
 * Failure modes: a child that dies is reported (pid, exit status or signal)
 * and NOT restarted: silently restarting a replica would hide the fault the
 * operator needs to see, and in memory mode a restart is a different event
 * (a recovering replica). When the last child is gone without a stop
 * request the supervisor exits with EX_SOFTWARE. Children get
 * PR_SET_PDEATHSIG so that a supervisor killed with SIGKILL leaves no
 * replica behind. */
#include "host.h"
#include "host_log.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <uv.h>

typedef struct supervisor {
	uv_loop_t *loop;
	uv_signal_t sigint, sigterm, sigchld;
	uv_timer_t stop_timer;    /* escalates to SIGKILL if children hang */
	pid_t pids[VSR_REPLICAS_MAX];
	uint32_t count;
	uint32_t running;
	bool stopping;
	int exit_code;
} supervisor;

/* Grace period between SIGTERM and SIGKILL when stopping. */
#define SUPERVISOR_STOP_GRACE_MS 5000

static pid_t supervisor_spawn(const host_options *opts, const char *self, int replica)
{
	char replica_arg[16];
	snprintf(replica_arg, sizeof replica_arg, "%d", replica + 1);
	char *argv[12];
	int argc = 0;
	argv[argc++] = (char *)"vsrhost";
	argv[argc++] = (char *)opts->config_path;
	argv[argc++] = (char *)"--replica";
	argv[argc++] = replica_arg;
	if (opts->log_level_name != NULL) {
		argv[argc++] = (char *)"--log-level";
		argv[argc++] = (char *)opts->log_level_name;
	}
	/* `vsrhost CONFIG --fresh`: every replica discards its state. */
	if (opts->fresh)
		argv[argc++] = (char *)"--fresh";
	if (opts->accept_config) {
		argv[argc++] = (char *)"--accept-config";
		argv[argc++] = (char *)opts->accept_config_arg;
	}
	argv[argc] = NULL;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* Child: die with the supervisor, whatever kills it. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(EX_SOFTWARE);
	/* The supervisor's signal handling must not leak into the replica. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(self, argv);
	fprintf(stderr, "vsrhost: cannot execute %s: %s\n", self, strerror(errno));
	_exit(EX_OSERR);
}

static void supervisor_close_all(supervisor *s)
{
	uv_close((uv_handle_t *)&s->sigint, NULL);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	uv_close((uv_handle_t *)&s->sigchld, NULL);
	uv_close((uv_handle_t *)&s->stop_timer, NULL);
}

static void supervisor_kill_timer_cb(uv_timer_t *t)
{
	supervisor *s = t->data;
	for (uint32_t i = 0; i < s->count; i++) {
		if (s->pids[i] > 0) {
			host_warn("replica %u (pid %d) did not stop within %d ms: killing it",
				  i + 1, (int)s->pids[i], SUPERVISOR_STOP_GRACE_MS);
			kill(s->pids[i], SIGKILL);
		}
	}
}

static void supervisor_stop(supervisor *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	host_info("stopping %u replica(s): %s", s->running, why);
	for (uint32_t i = 0; i < s->count; i++)
		if (s->pids[i] > 0)
			kill(s->pids[i], SIGTERM);
	if (s->running == 0) {
		supervisor_close_all(s);
		return;
	}
	uv_timer_start(&s->stop_timer, supervisor_kill_timer_cb, SUPERVISOR_STOP_GRACE_MS, 0);
}

static void supervisor_signal_cb(uv_signal_t *h, int signum)
{
	supervisor *s = h->data;
	supervisor_stop(s, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void supervisor_sigchld_cb(uv_signal_t *h, int signum)
{
	(void)signum;
	supervisor *s = h->data;
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		for (uint32_t i = 0; i < s->count; i++) {
			if (s->pids[i] != pid)
				continue;
			s->pids[i] = 0;
			s->running--;
			char how[64];
			if (WIFEXITED(status))
				snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
			else
				snprintf(how, sizeof how, "killed by signal %d (%s)", WTERMSIG(status),
					 strsignal(WTERMSIG(status)));
			if (s->stopping) {
				host_info("replica %u (pid %d) %s", i + 1, (int)pid, how);
			} else {
				/* Reported, not restarted: see the header comment. */
				host_error("replica %u (pid %d) %s; not restarted, %u replica(s) still running",
					   i + 1, (int)pid, how, s->running);
				s->exit_code = EX_SOFTWARE;
			}
		}
	}
	if (s->running == 0) {
		if (!s->stopping)
			host_error("every replica has stopped");
		s->stopping = true;
		supervisor_close_all(s);
	}
}

int host_supervisor_main(const host_options *opts, const vsrh_config *cfg)
{
	host_log_set_tag("supervisor");
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		host_error("cannot find this program's path (/proc/self/exe): %s", strerror(errno));
		return EX_OSERR;
	}
	self[n] = '\0';

	supervisor s = {.loop = uv_default_loop(), .exit_code = 0};
	/* Signal handlers before the first fork, so a Ctrl-C during startup
	 * is not lost. */
	uv_signal_init(s.loop, &s.sigint);
	uv_signal_init(s.loop, &s.sigterm);
	uv_signal_init(s.loop, &s.sigchld);
	uv_timer_init(s.loop, &s.stop_timer);
	s.sigint.data = s.sigterm.data = s.sigchld.data = s.stop_timer.data = &s;
	uv_signal_start(&s.sigint, supervisor_signal_cb, SIGINT);
	uv_signal_start(&s.sigterm, supervisor_signal_cb, SIGTERM);
	uv_signal_start(&s.sigchld, supervisor_sigchld_cb, SIGCHLD);

	for (uint32_t i = 0; i < cfg->replica_count; i++) {
		pid_t pid = supervisor_spawn(opts, self, (int)i);
		if (pid < 0) {
			host_error("cannot start replica %u: %s", i + 1, strerror(errno));
			s.exit_code = EX_OSERR;
			supervisor_stop(&s, "a replica could not be started");
			break;
		}
		s.pids[i] = pid;
		s.count = i + 1;
		s.running++;
		host_info("started replica %u (pid %d): replicas connect to %s:%u, clients to %s:%u",
			  i + 1, (int)pid, cfg->replicas[i].host, cfg->replicas[i].port,
			  cfg->clients[i].host, cfg->clients[i].port);
	}
	if (!s.stopping) {
		printf("vsrhost: cluster %llu, %u replicas, %s storage, state machine %s\n",
		       (unsigned long long)cfg->cluster, cfg->replica_count,
		       cfg->durability == VSRH_DURABILITY_MEMORY ? "memory" : "durable",
		       cfg->statemachine);
		printf("clients connect to:");
		for (uint32_t i = 0; i < cfg->replica_count; i++)
			printf(" %s:%u", cfg->clients[i].host, cfg->clients[i].port);
		/* vsrctl is built next to vsrhost: name the one that exists. */
		char ctl[4096 + 8] = "vsrctl";
		const char *slash = strrchr(self, '/');
		if (slash != NULL) {
			snprintf(ctl, sizeof ctl, "%.*s/vsrctl", (int)(slash - self), self);
			if (access(ctl, X_OK) != 0)
				snprintf(ctl, sizeof ctl, "vsrctl");
		}
		printf("\ntry, from another terminal:\n"
		       "  %s -c %s put hello world\n"
		       "  %s -c %s get hello\n"
		       "  %s -c %s status\n",
		       ctl, cfg->path, ctl, cfg->path, ctl, cfg->path);
		printf("Ctrl-C stops every replica.\n");
		fflush(stdout);
	}
	uv_run(s.loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(s.loop);
	assert(rc == 0);
	(void)rc;
	return s.exit_code;
}
