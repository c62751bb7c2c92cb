/* test_watchdog.c - the watchdog stops a step that hangs and lets a long
 * but metered one finish (src/cmd/vsrhost/host_watchdog.h, issue 9).
 *
 * Each case runs in a child process (the watchdog exits its process) whose
 * "step" is simulated: it bumps a progress counter, as the sandbox does
 * for every metered chunk of work; or spins without bumping it, as work
 * the cost model does not see would; or sleeps without bumping it, as a
 * thread the kernel does not schedule (a loaded machine) or host work
 * blocked in a system call would. The parent waits for the child's exit. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "host_watchdog.h"

#define LIMIT_MS 200u

static _Atomic uint64_t progress;
static bool script_running;

static uint64_t read_progress(const void *arg)
{
	(void)arg;
	return atomic_load(&progress);
}

static bool read_busy(const void *arg)
{
	(void)arg;
	return script_running;
}

static void activity(const void *arg, char *out, size_t len)
{
	(void)arg;
	snprintf(out, len, "applying a simulated op");
}

enum how { METERED, SPIN, SLEEP };

/* The simulated step's own duration, in 20 ms slices of one kind of work. */
static void work_ms(uint32_t ms, enum how how)
{
	for (uint32_t t = 0; t < ms; t += 20) {
		if (how == SPIN) {
			uint64_t end = uv_hrtime() + 20 * 1000000ull;
			while (uv_hrtime() < end) {
			}
			continue;
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
		if (how == METERED)
			atomic_fetch_add(&progress, 1);
	}
}

/* Runs one case in a child: `metered_ms` of metered work, then `stall_ms`
 * of `stall` work; `busy` says whether a script runs. Returns the child's
 * wait status and the milliseconds until it ended. */
static int run_case(bool busy, uint32_t metered_ms, uint32_t stall_ms, enum how stall,
		    uint64_t *took_ms, char *err, size_t err_len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	fflush(NULL);
	uint64_t t0 = uv_hrtime();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		script_running = busy;
		host_watchdog_source src = {.activity = activity, .progress = read_progress,
					    .busy = read_busy};
		if (host_watchdog_start_source(LIMIT_MS, &src) != 0)
			_exit(2);
		host_watchdog_enter(uv_hrtime(), "message");
		work_ms(metered_ms, METERED);
		work_ms(stall_ms, stall);
		host_watchdog_leave();
		_exit(host_watchdog_long_steps() <= 1 ? 0 : 3);
	}
	close(fds[1]);
	size_t n = 0;
	ssize_t r;
	char sink[4096];
	/* Read to EOF (a closed pipe would kill the child with SIGPIPE). */
	for (;;) {
		bool room = n + 1 < err_len;
		r = room ? read(fds[0], err + n, err_len - 1 - n) : read(fds[0], sink, sizeof sink);
		if (r <= 0)
			break;
		if (room)
			n += (size_t)r;
	}
	err[n] = '\0';
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	*took_ms = (uv_hrtime() - t0) / 1000000u;
	return status;
}

static int failures;

/* Exit code and duration bounds (a stopped child exits 70 before its stall
 * would have ended; one let run exits 0 after it). */
static void expect(const char *what, int st, int code, uint64_t took, uint64_t min_ms,
		   uint64_t max_ms, const char *said, const char *err)
{
	bool ok = WIFEXITED(st) && WEXITSTATUS(st) == code && took >= min_ms && took <= max_ms &&
		  (said == NULL || strstr(err, said) != NULL);
	if (!ok) {
		fprintf(stderr, "FAIL %s: status 0x%x after %" PRIu64 " ms, stderr: %.600s\n", what,
			st, took, err);
		failures++;
		return;
	}
	printf("ok: %s: exit %d after %" PRIu64 " ms\n", what, code, took);
}

int main(void)
{
	static char err[8192];
	uint64_t took;
	int st = run_case(true, 1500, 0, SLEEP, &took, err, sizeof err);
	expect("a 1500 ms metered script step (limit 200 ms) is let finish and reported", st, 0,
	       took, 1500, 60000, "letting it finish", err);
	st = run_case(true, 0, 5000, SPIN, &took, err, sizeof err);
	expect("a script step spinning without metered progress is stopped", st, 70, took, 200,
	       60000, "without metered progress", err);
	st = run_case(true, 600, 5000, SPIN, &took, err, sizeof err);
	expect("600 ms metered, then spinning: stopped", st, 70, took, 800, 60000,
	       "applying a simulated op", err);
	st = run_case(true, 0, 1000, SLEEP, &took, err, sizeof err);
	expect("a script step not scheduled for 1000 ms (no CPU used) is not stopped", st, 0, took,
	       1000, 60000, NULL, err);
	st = run_case(false, 0, 5000, SLEEP, &took, err, sizeof err);
	expect("host work blocked for the limit (wall time) is stopped", st, 70, took, 200, 60000,
	       "without metered progress", err);
	return failures ? 1 : 0;
}
