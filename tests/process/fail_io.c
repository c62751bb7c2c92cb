/* fail_io.c - an LD_PRELOAD shim for the process test disk-fault: the
 * write-ahead log of one vsrhost fails as a full or failing disk does,
 * without root (no tmpfs, no device mapper).
 *
 *   VSR_FAIL_IO=CALL:ERRNO:N  CALL is pwrite or fdatasync, ERRNO ENOSPC or
 *                             EIO: the N-th CALL on a log segment (log-*)
 *                             and every later one fail with ERRNO, writing
 *                             or syncing nothing
 *   VSR_FAIL_IO_REPORT=PATH   after that first failure, every pwrite,
 *                             fdatasync or fsync on a log segment or the
 *                             superblock appends a line to PATH (the
 *                             replica went on writing: the test wants none)
 *
 * Only the storage writer thread touches those files, but the counters are
 * atomic anyway. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CALL_PWRITE = 1, CALL_FDATASYNC = 2 };

static int g_call;       /* what fails */
static int g_errno;
static long g_nth;
static long g_count;     /* CALLs on log segments so far */
static int g_failed;     /* the first failure happened */
static const char *g_report;

__attribute__((constructor)) static void fail_io_init(void)
{
	const char *spec = getenv("VSR_FAIL_IO");
	g_report = getenv("VSR_FAIL_IO_REPORT");
	if (spec == NULL)
		return;
	char call[16], err[16];
	long n;
	if (sscanf(spec, "%15[a-z]:%15[A-Z]:%ld", call, err, &n) != 3 || n < 1 ||
	    (strcmp(call, "pwrite") != 0 && strcmp(call, "fdatasync") != 0) ||
	    (strcmp(err, "ENOSPC") != 0 && strcmp(err, "EIO") != 0)) {
		fprintf(stderr, "fail_io: VSR_FAIL_IO=%s: expected pwrite|fdatasync:ENOSPC|EIO:N\n", spec);
		_exit(64);
	}
	g_call = strcmp(call, "pwrite") == 0 ? CALL_PWRITE : CALL_FDATASYNC;
	g_errno = strcmp(err, "EIO") == 0 ? EIO : ENOSPC;
	g_nth = n;
}

/* 1: a log segment, 2: the superblock, 0: anything else. */
static int kind_of(int fd, char *name, size_t len)
{
	char link[64], path[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	snprintf(name, len, "%.200s", base);
	if (strncmp(base, "log-", 4) == 0)
		return 1;
	return strcmp(base, "superblock") == 0 ? 2 : 0;
}

static void report(const char *call, const char *name)
{
	if (g_report == NULL)
		return;
	int fd = open(g_report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	char line[300];
	int n = snprintf(line, sizeof line, "after the failure: %s %s\n", call, name);
	if (write(fd, line, (size_t)n) != n) {
		/* Nothing to do: the test reads what arrived. */
	}
	close(fd);
}

/* True when this call must fail (errno set). */
static int intercept(int call, const char *what, int fd)
{
	if (g_call == 0)
		return 0;
	char name[256];
	int kind = kind_of(fd, name, sizeof name);
	if (kind == 0)
		return 0;
	if (__atomic_load_n(&g_failed, __ATOMIC_SEQ_CST))
		report(what, name);
	if (kind != 1 || call != g_call)
		return 0;
	if (__atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST) < g_nth)
		return 0;
	__atomic_store_n(&g_failed, 1, __ATOMIC_SEQ_CST);
	errno = g_errno;
	return 1;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "pwrite"); /* POSIX: how a function comes out of dlsym */
	if (intercept(CALL_PWRITE, "pwrite", fd))
		return -1;
	return real(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
	if (intercept(CALL_FDATASYNC, "fdatasync", fd))
		return -1;
	return real(fd);
}

int fsync(int fd)
{
	static int (*real)(int);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "fsync");
	if (__atomic_load_n(&g_failed, __ATOMIC_SEQ_CST)) {
		char name[256];
		if (kind_of(fd, name, sizeof name) != 0)
			report("fsync", name);
	}
	return real(fd);
}
