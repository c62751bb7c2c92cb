/* test_watchdog.c - the watchdog stops a step that hangs and lets a long
 * but metered one finish (src/cmd/vsrhost/host_watchdog.h, issue 9).
 *
 * Each case runs in a child process (the watchdog exits its process) whose
 * "step" is simulated: it bumps a progress counter, as the sandbox does
 * for every metered chunk of work, or stops bumping it, as a hang inside
 * one C call would. The parent waits for the child's exit. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdatomic.h>
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

static uint64_t read_progress(const void *arg)
{
	(void)arg;
	return atomic_load(&progress);
}

static void activity(const void *arg, char *out, size_t len)
{
	(void)arg;
	snprintf(out, len, "applying a simulated op");
}

static void work_ms(uint32_t ms, bool metered)
{
	/* The simulated step's own duration: 20 ms slices of "work". */
	for (uint32_t t = 0; t < ms; t += 20) {
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
		if (metered)
			atomic_fetch_add(&progress, 1);
	}
}

/* Runs one case in a child: `metered_ms` of metered work, then
 * `stalled_ms` without progress. Returns the child's wait status and the
 * milliseconds until it ended. */
static int run_case(uint32_t metered_ms, uint32_t stalled_ms, uint64_t *took_ms, char *err,
		    size_t err_len)
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
		host_watchdog_source src = {.activity = activity, .progress = read_progress};
		if (host_watchdog_start_source(LIMIT_MS, &src) != 0)
			_exit(2);
		host_watchdog_enter(uv_hrtime(), "message");
		work_ms(metered_ms, true);
		work_ms(stalled_ms, false);
		host_watchdog_leave();
		_exit(host_watchdog_long_steps() == (metered_ms > LIMIT_MS ? 1u : 0u) ? 0 : 3);
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

int main(void)
{
	int failures = 0;
	char err[2048];
	uint64_t took;

	/* A long step whose work is metered the whole time: let finish. */
	int st = run_case(1500, 0, &took, err, sizeof err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || strstr(err, "letting it finish") == NULL) {
		fprintf(stderr, "FAIL metered 1.5 s step: status 0x%x, stderr: %s\n", st, err);
		failures++;
	} else {
		printf("ok: a 1500 ms metered step (limit %u ms) was let finish and reported\n",
		       LIMIT_MS);
	}

	/* A step without any metered progress: stopped with exit 70. */
	st = run_case(0, 5000, &took, err, sizeof err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 70 || took > 2000 ||
	    strstr(err, "without metered progress") == NULL ||
	    strstr(err, "applying a simulated op") == NULL) {
		fprintf(stderr, "FAIL hung step: status 0x%x after %" PRIu64 " ms, stderr: %s\n",
			st, took, err);
		failures++;
	} else {
		printf("ok: a step without metered progress was stopped (exit 70) after %" PRIu64
		       " ms\n", took);
	}

	/* Metered for a while, then a hang: stopped about a limit after it. */
	st = run_case(600, 5000, &took, err, sizeof err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 70 || took < 600 || took > 2600) {
		fprintf(stderr, "FAIL metered then hung: status 0x%x after %" PRIu64 " ms, stderr: %s\n",
			st, took, err);
		failures++;
	} else {
		printf("ok: 600 ms metered then a hang: stopped (exit 70) after %" PRIu64 " ms\n",
		       took);
	}
	return failures ? 1 : 0;
}
