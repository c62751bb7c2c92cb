/* host_verify.c - the store's check at restart, in a process of its own.
 *
 * LMDB trusts its file: a flipped byte in a branch page can send a reader
 * anywhere in the map. The check therefore runs in a forked child, which
 * reports through a pipe and its exit status; a child that dies of a signal
 * has found damage as surely as one that reports a wrong digest.
 *
 * Some damage makes LMDB loop rather than crash: a noise page whose header
 * gives it 2^31 keys (mp_lower below the header's size) sent mdb_dbi_open's
 * binary search round forever, and a replica's start sat silent (one CI
 * run of process_corrupt's noise round). The child therefore has a CPU
 * limit, never a wall-clock one: a loop burns CPU, while a slow or stalled
 * disk leaves the child asleep in its page faults, so a slow disk is never
 * taken for a damaged store (which all replicas at once could take for a
 * cluster that holds nothing). The limit is CHECK_CPU_BASE_S and a second
 * per CHECK_CPU_BYTES_PER_S of the pages the store uses: a check needs
 * about half a second per GB, so that is some hundred times over, and
 * room for valgrind. Past it the kernel stops the child (SIGXCPU): damaged,
 * as for a crash. */
#include "host_verify.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vsrh_store.h"
#include "vsrh_store_sync.h"

#define CHECK_CPU_BASE_S 2
#define CHECK_CPU_BYTES_PER_S ((uint64_t)2 << 20)

/* The check, in a child, of the environment in store_dir/env_name, read
 * as after the rollback rb when one is due (NULL: none). */
static int check_child(const char *store_dir, const char *env_name, const vsrh_store_rollback *rb,
		       const vsr_superblock *sb, char *why, size_t why_len)
{
	uint64_t cpu_s = CHECK_CPU_BASE_S +
			 vsrh_store_used_bytes(store_dir, env_name) / CHECK_CPU_BYTES_PER_S;
	int fds[2];
	if (pipe(fds) != 0) {
		snprintf(why, why_len, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, why_len, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		/* SIGXCPU at the limit, SIGKILL a second later if that is caught;
		 * no core file of a child that was meant to die on damage. */
		struct rlimit cpu = {.rlim_cur = (rlim_t)cpu_s, .rlim_max = (rlim_t)cpu_s + 1};
		struct rlimit core = {0, 0};
		setrlimit(RLIMIT_CPU, &cpu);
		setrlimit(RLIMIT_CORE, &core);
		char msg[512] = "";
		int rc = vsrh_store_verify_env(store_dir, env_name, rb, sb->checkpoint_op,
					       sb->checkpoint_checksum, msg, sizeof msg);
		size_t n = strlen(msg);
		if (n > 0 && write(fds[1], msg, n) < 0) {
			/* the parent reads the exit status alone */
		}
		_exit(rc == 0 ? 0 : rc == 1 ? 3 : 4);
	}
	close(fds[1]);
	char msg[512];
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fds[0], msg + got, sizeof msg - 1 - got);
		if (r > 0 && (got += (size_t)r) < sizeof msg - 1)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	msg[got] = '\0';
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(why, why_len, "waitpid: %s", strerror(errno));
			return -1;
		}
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) {
		snprintf(why, why_len,
			 "vsr.store %s: reading its records ran past the check's CPU limit of %" PRIu64
			 " s (LMDB loops on a damaged page)",
			 store_dir, cpu_s);
		return 1;
	}
	if (WIFSIGNALED(status)) {
		snprintf(why, why_len, "vsr.store %s: reading its records crashed LMDB (signal %d: %s)",
			 store_dir, WTERMSIG(status), strsignal(WTERMSIG(status)));
		return 1;
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 4;
	snprintf(why, why_len, "vsr.store %s: %s", store_dir,
		 got ? msg : code == 0 ? "intact" : "the check failed without a reason");
	return code == 0 ? 0 : code == 3 ? 1 : -1;
}

int host_check_store(void *store_dir, const vsr_superblock *sb, char *why, size_t why_len)
{
	/* First an install a crash interrupted between its renames is
	 * finished, so that the environment checked is the one the store will
	 * open (without this, db/ was missing here and nothing was checked).
	 * Then, after a power cut, a newest transaction that may be torn is
	 * rolled back to the durable one before it (vsrh_store_sync.h). */
	vsrh_store_settle_install(store_dir);
	bool rolled = false;
	if (vsrh_store_settle_dir(store_dir, &rolled, why, why_len) != 0)
		return -1;
	if (rolled)
		fprintf(stderr, "vsr.store: %s\n", why);
	return check_child(store_dir, "db", NULL, sb, why, why_len);
}

int host_check_store_judge(const char *store_dir, const vsr_superblock *sb, char *start,
			   size_t start_len, char *why, size_t why_len)
{
	/* What host_check_store settles on disk, judged instead: which
	 * environment the start opens, and whether it rolls it back. */
	const char *env_name = vsrh_store_env_name(store_dir);
	char env[4200], file[4300];
	snprintf(env, sizeof env, "%s/%s", store_dir, env_name);
	snprintf(file, sizeof file, "%s/db/data.mdb", store_dir);
	vsrh_store_rollback rb;
	vsrh_store_rollback_judge(store_dir, env, &rb);
	size_t n = 0;
	start[0] = '\0';
	if (strcmp(env_name, "db") != 0)
		n += (size_t)snprintf(start, start_len,
				      "the next start %s an install that stopped between its renames "
				      "(%s/%s becomes %s/db)",
				      strcmp(env_name, "next") == 0 ? "finishes" : "undoes", store_dir,
				      env_name, store_dir);
	if (rb.due && n < start_len) {
		char said[1024];
		vsrh_store_rollback_why(&rb, store_dir, file, said, sizeof said);
		snprintf(start + n, start_len - n, "%sthe next start rolls %s",
			 n ? "; then " : "", said);
	}
	return check_child(store_dir, env_name, &rb, sb, why, why_len);
}
