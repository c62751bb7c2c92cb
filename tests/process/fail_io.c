/* fail_io.c - an LD_PRELOAD shim for the process tests disk-fault and
 * store-fault: one vsrhost's write-ahead log, or its vsr.store's checkpoint
 * sync, fails as a full or failing disk does, without root (no tmpfs, no
 * device mapper).
 *
 *   VSR_FAIL_IO=[FILE.]CALL:ERRNO:N
 *       FILE is log (log segments log-*, the default), data (the store's
 *       store/db/data.mdb), synced (the store's store/synced) or next (a
 *       fetched checkpoint's store/next/data.mdb, built to replace db/); CALL is
 *       pwrite, fdatasync, msync, sync_file_range or open; ERRNO is ENOSPC or EIO.
 *       The N-th CALL on FILE and every later one fail with ERRNO, writing
 *       or syncing nothing.
 *   VSR_FAIL_IO_REPORT=PATH
 *       after that first failure, what the replica must no longer do
 *       appends a line to PATH (the test wants none):
 *       - a log failure: any pwrite, fdatasync or fsync on a log segment or
 *         the superblock;
 *       - a store failure: any msync, fdatasync, fsync or sync_file_range
 *         of data.mdb or next/data.mdb (a retried sync), any pwrite,
 *         fdatasync or fsync of `synced`, and a superblock write naming a
 *         checkpoint newer than both the superblock on disk at the failure
 *         and the last checkpoint `synced` recorded durable (that newer one
 *         is the one whose sync failed, or later). The log may go on until
 *         the process exits.
 *   VSR_FAIL_IO_NO_RESERVE=1
 *       posix_fallocate on data.mdb fails with ENOSPC, as on a nearly full
 *       disk: the store then runs without MDB_WRITEMAP and syncs data.mdb
 *       with fdatasync instead of msync.
 *   VSR_FAIL_IO_STALL_COMMIT=PATH
 *       every LMDB commit (mdb_txn_commit: the store's checkpoint commits,
 *       and a few at open) first sleeps as many milliseconds as PATH holds
 *       (none while it is missing or says 0), as under a disk that hangs
 *       in the commit's page faults. PATH is read at each commit: a test
 *       changes the stall while the replica runs.
 *   VSR_FAIL_IO_NOTE=PATH
 *       at the first failure, one line: what failed, the checkpoint op
 *       the superblock on disk names then, the last one recorded durable,
 *       and "it may name up to op N".
 *
 * The counters are atomic: the log writer and the store's syncer are
 * threads of their own. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { CALL_PWRITE = 1, CALL_FDATASYNC, CALL_MSYNC, CALL_SYNC_FILE_RANGE, CALL_FSYNC, CALL_OPEN };
enum { KIND_NONE, KIND_LOG, KIND_SUPERBLOCK, KIND_DATA, KIND_SYNCED, KIND_NEXT, KIND_COUNT };

static const char *const call_names[] = {"", "pwrite", "fdatasync", "msync", "sync_file_range",
					 "fsync", "open"};
static const char *const kind_names[] = {"", "log", "superblock", "data", "synced", "next"};

static int g_call;       /* what fails */
static int g_kind;       /* on which file */
static int g_errno;
static long g_nth;
static long g_count;     /* CALLs on that file so far */
static int g_failed;     /* the first failure happened */
static uint64_t g_sb_ckpt; /* the newest checkpoint the superblock may name after the failure */
static uint64_t g_synced_written; /* the checkpoint op of the last record written to synced */
static uint64_t g_synced_durable; /* ... of the last one fdatasync'ed: durable */
static bool g_forgot;             /* after the failure, `synced` lost its boot id */
static const char *g_report;
static const char *g_note;
static int g_no_reserve;
static const char *g_stall_commit; /* VSR_FAIL_IO_STALL_COMMIT */

static int lookup(const char *const *names, int count, const char *s)
{
	for (int i = 1; i < count; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return 0;
}

__attribute__((constructor)) static void fail_io_init(void)
{
	const char *spec = getenv("VSR_FAIL_IO");
	g_report = getenv("VSR_FAIL_IO_REPORT");
	g_note = getenv("VSR_FAIL_IO_NOTE");
	g_no_reserve = getenv("VSR_FAIL_IO_NO_RESERVE") != NULL;
	g_stall_commit = getenv("VSR_FAIL_IO_STALL_COMMIT");
	if (spec == NULL)
		return;
	char file[16] = "log", call[24], err[16];
	long n;
	const char *dot = strchr(spec, '.');
	const char *colon = strchr(spec, ':');
	int ok;
	if (dot != NULL && (colon == NULL || dot < colon))
		ok = sscanf(spec, "%15[a-z].%23[a-z_]:%15[A-Z]:%ld", file, call, err, &n) == 4;
	else
		ok = sscanf(spec, "%23[a-z_]:%15[A-Z]:%ld", call, err, &n) == 3;
	g_kind = lookup(kind_names, KIND_COUNT, file);
	g_call = lookup(call_names, 7, call);
	if (g_call == CALL_FSYNC) /* fsync itself never fails */
		g_call = 0;
	if (!ok || n < 1 || g_kind == 0 || g_kind == KIND_SUPERBLOCK || g_call == 0 ||
	    (strcmp(err, "ENOSPC") != 0 && strcmp(err, "EIO") != 0)) {
		fprintf(stderr,
			"fail_io: VSR_FAIL_IO=%s: expected [log.|data.|synced.|next.]"
			"pwrite|fdatasync|msync|sync_file_range|open:ENOSPC|EIO:N\n",
			spec);
		_exit(64);
	}
	g_errno = strcmp(err, "EIO") == 0 ? EIO : ENOSPC;
	g_nth = n;
}

static int ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);
	return a >= b && strcmp(s + a - b, tail) == 0;
}

/* The file's kind from its path; `path` gets the path. */
static int kind_of_path(char *path, char *name, size_t len)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	snprintf(name, len, "%.200s", base);
	if (strncmp(base, "log-", 4) == 0)
		return KIND_LOG;
	if (strcmp(base, "superblock") == 0)
		return KIND_SUPERBLOCK;
	if (ends_with(path, "/store/db/data.mdb"))
		return KIND_DATA;
	if (ends_with(path, "/store/synced"))
		return KIND_SYNCED;
	if (ends_with(path, "/store/next/data.mdb"))
		return KIND_NEXT;
	return KIND_NONE;
}

static int kind_of(int fd, char *name, size_t len, char *path, size_t path_len)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, path_len - 1);
	if (n <= 0)
		return KIND_NONE;
	path[n] = '\0';
	return kind_of_path(path, name, len);
}

/* The file mapped at addr (from /proc/self/maps). */
static int kind_of_addr(const void *addr, char *name, size_t len, char *path, size_t path_len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (f == NULL)
		return KIND_NONE;
	char line[4400];
	int kind = KIND_NONE;
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof line, f) != NULL) {
		uintptr_t lo, hi;
		int at = 0;
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %*s %n", &lo, &hi, &at) < 2 ||
		    a < lo || a >= hi || at == 0)
			continue;
		snprintf(path, path_len, "%s", line + at);
		path[strcspn(path, "\n")] = '\0';
		kind = kind_of_path(path, name, len);
		break;
	}
	fclose(f);
	return kind;
}

static uint64_t get_u64le(const uint8_t *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

/* A superblock copy (docs/storage.md): its sequence number and the core
 * superblock's checkpoint_op (word 6 of W), or -1. */
#define SB_MAGIC 0x31304253524c5356ull
static int sb_parse(const uint8_t *b, size_t len, uint64_t *seq, uint64_t *ckpt)
{
	if (len < 56 + 8 * 7 || get_u64le(b) != SB_MAGIC)
		return -1;
	uint32_t w = (uint32_t)(b[48] | b[49] << 8 | b[50] << 16 | (uint32_t)b[51] << 24);
	if (w < 7)
		return -1;
	*seq = get_u64le(b + 16);
	*ckpt = get_u64le(b + 56 + 8 * 6);
	return 0;
}

/* The checkpoint op named by the newest valid copy of the superblock in the
 * replica directory holding `path` (a file of that directory or of store/). */
static uint64_t sb_on_disk(const char *path)
{
	char dir[4200];
	snprintf(dir, sizeof dir, "%s", path);
	char *cut = strstr(dir, "/store/");
	if (cut == NULL)
		cut = strrchr(dir, '/');
	if (cut == NULL)
		return 0;
	snprintf(cut, sizeof dir - (size_t)(cut - dir), "/superblock");
	int fd = open(dir, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint64_t best_seq = 0, best = 0;
	for (int c = 0; c < 2; c++) {
		uint8_t b[512];
		uint64_t seq, ckpt;
		if (pread(fd, b, sizeof b, (off_t)c * 4096) == (ssize_t)sizeof b &&
		    sb_parse(b, sizeof b, &seq, &ckpt) == 0 && seq >= best_seq) {
			best_seq = seq;
			best = ckpt;
		}
	}
	close(fd);
	return best;
}

static void append_line(const char *file, const char *line)
{
	if (file == NULL)
		return;
	int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	size_t n = strlen(line);
	if (write(fd, line, n) != (ssize_t)n) {
		/* Nothing to do: the test reads what arrived. */
	}
	close(fd);
}

static void report(const char *call, const char *name)
{
	char line[300];
	snprintf(line, sizeof line, "after the failure: %s %s\n", call, name);
	append_line(g_report, line);
}

/* After a failed sync the store rewrites `synced` once more without its
 * boot id (so that the next start rolls back even on this boot) and syncs
 * it: allowed, as long as the record names nothing newer than the last
 * one written. */
static bool forgets_boot(int call, const void *buf, size_t len)
{
	if (call == CALL_FDATASYNC)
		return __atomic_load_n(&g_forgot, __ATOMIC_SEQ_CST);
	const uint8_t *b = buf;
	if (call != CALL_PWRITE || b == NULL || len < 64 || memcmp(b, "VSRHSYN1", 8) != 0)
		return false;
	for (size_t i = 24; i < 64; i++)
		if (b[i] != 0)
			return false;
	/* Nothing newer than the last record written (when only the record's
	 * own fdatasync failed, data.mdb was synced: the store keeps it). */
	bool ok = get_u64le(b + 16) <= __atomic_load_n(&g_synced_written, __ATOMIC_SEQ_CST);
	__atomic_store_n(&g_forgot, ok, __ATOMIC_SEQ_CST);
	return ok;
}

/* After a failure: is this call one the replica must no longer make? */
static void judge(int call, int kind, const char *name, const void *buf, size_t len)
{
	if (call == CALL_OPEN)
		return; /* (a failed open is the end of a start: nothing to judge) */
	if (g_kind == KIND_LOG) {
		if (kind == KIND_LOG || kind == KIND_SUPERBLOCK)
			report(call_names[call], name);
		return;
	}
	if (kind == KIND_SYNCED && forgets_boot(call, buf, len))
		return; /* the record loses its boot id, names nothing newer */
	if (kind == KIND_DATA || kind == KIND_SYNCED || kind == KIND_NEXT) {
		report(call_names[call], name);
		return;
	}
	uint64_t seq, ckpt;
	if (kind == KIND_SUPERBLOCK && call == CALL_PWRITE && buf != NULL &&
	    sb_parse(buf, len, &seq, &ckpt) == 0 && ckpt > g_sb_ckpt) {
		char line[300];
		snprintf(line, sizeof line,
			 "after the failure: superblock write names checkpoint op %" PRIu64
			 " (up to op %" PRIu64 " allowed)\n",
			 ckpt, g_sb_ckpt);
		append_line(g_report, line);
	}
}

/* True when this call must fail (errno set). */
static int intercept(int call, int kind, const char *name, const char *path, const void *buf,
		     size_t len)
{
	if (g_call == 0 || kind == KIND_NONE)
		return 0;
	if (__atomic_load_n(&g_failed, __ATOMIC_SEQ_CST) == 1)
		judge(call, kind, name, buf, len);
	if (kind != g_kind || call != g_call)
		return 0;
	if (__atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST) < g_nth)
		return 0;
	if (__atomic_exchange_n(&g_failed, 2, __ATOMIC_SEQ_CST) == 0) {
		/* The first failure: the superblock may name what it names now or
		 * the last checkpoint recorded durable in `synced` (its event may
		 * still be on its way), never a newer one: that is the one whose
		 * sync failed, or later. */
		uint64_t on_disk = sb_on_disk(path);
		uint64_t durable = __atomic_load_n(&g_synced_durable, __ATOMIC_SEQ_CST);
		g_sb_ckpt = on_disk > durable ? on_disk : durable;
		__atomic_store_n(&g_failed, 1, __ATOMIC_SEQ_CST);
		char line[400];
		snprintf(line, sizeof line,
			 "%s.%s failed (%s) on %s; the superblock named checkpoint op %" PRIu64
			 ", the last durable was op %" PRIu64 ": it may name up to op %" PRIu64 "\n",
			 kind_names[kind], call_names[call], g_errno == EIO ? "EIO" : "ENOSPC", name,
			 on_disk, durable, g_sb_ckpt);
		append_line(g_note, line);
	}
	errno = g_errno;
	return 1;
}

static int intercept_fd(int call, int fd, const void *buf, size_t len, int *kind)
{
	*kind = KIND_NONE;
	if (g_call == 0)
		return 0;
	char name[256], path[4200];
	*kind = kind_of(fd, name, sizeof name, path, sizeof path);
	return intercept(call, *kind, name, path, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "pwrite"); /* POSIX: how a function comes out of dlsym */
	int kind;
	if (intercept_fd(CALL_PWRITE, fd, buf, len, &kind))
		return -1;
	ssize_t n = real(fd, buf, len, off);
	/* A record of `synced` (docs/storage.md): "VSRHSYN1", txnid, op. */
	if (kind == KIND_SYNCED && n == (ssize_t)len && len >= 24 && memcmp(buf, "VSRHSYN1", 8) == 0)
		__atomic_store_n(&g_synced_written, get_u64le((const uint8_t *)buf + 16),
				 __ATOMIC_SEQ_CST);
	return n;
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
	int kind;
	if (intercept_fd(CALL_FDATASYNC, fd, NULL, 0, &kind))
		return -1;
	int rc = real(fd);
	if (kind == KIND_SYNCED && rc == 0)
		__atomic_store_n(&g_synced_durable, __atomic_load_n(&g_synced_written, __ATOMIC_SEQ_CST),
				 __ATOMIC_SEQ_CST);
	return rc;
}

int fsync(int fd)
{
	static int (*real)(int);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "fsync");
	if (g_call != 0 && __atomic_load_n(&g_failed, __ATOMIC_SEQ_CST) == 1) {
		char name[256], path[4200];
		int kind = kind_of(fd, name, sizeof name, path, sizeof path);
		if (kind != KIND_NONE)
			judge(CALL_FSYNC, kind, name, NULL, 0);
	}
	return real(fd);
}

int sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
	static int (*real)(int, off_t, off_t, unsigned int);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "sync_file_range");
	int kind;
	if (intercept_fd(CALL_SYNC_FILE_RANGE, fd, NULL, 0, &kind))
		return -1;
	return real(fd, off, len, flags);
}

int msync(void *addr, size_t len, int flags)
{
	static int (*real)(void *, size_t, int);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "msync");
	if (g_call != 0) {
		char name[256], path[4200];
		int kind = kind_of_addr(addr, name, sizeof name, path, sizeof path);
		if (intercept(CALL_MSYNC, kind, name, path, NULL, 0))
			return -1;
	}
	return real(addr, len, flags);
}

int posix_fallocate(int fd, off_t off, off_t len)
{
	static int (*real)(int, off_t, off_t);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "posix_fallocate");
	if (g_no_reserve) {
		char name[256], path[4200];
		if (kind_of(fd, name, sizeof name, path, sizeof path) == KIND_DATA)
			return ENOSPC;
	}
	return real(fd, off, len);
}

int posix_fallocate64(int fd, off_t off, off_t len)
{
	return posix_fallocate(fd, off, len);
}

/* An LMDB commit, stalled first by VSR_FAIL_IO_STALL_COMMIT (declared
 * here: the shim does not build against lmdb.h). */
typedef struct MDB_txn MDB_txn;
int mdb_txn_commit(MDB_txn *txn);
int mdb_txn_commit(MDB_txn *txn)
{
	static int (*real)(MDB_txn *);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "mdb_txn_commit");
	FILE *f = g_stall_commit != NULL ? fopen(g_stall_commit, "r") : NULL;
	long ms = 0;
	if (f != NULL) {
		if (fscanf(f, "%ld", &ms) != 1)
			ms = 0;
		fclose(f);
	}
	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	return real(txn);
}

/* open(2) of a store file, for a disk that fails while vsr.store opens
 * (FILE.open: store/synced, store/db/data.mdb). */
static int open_common(const char *sym, bool at, int dirfd, const char *path, int flags, mode_t mode)
{
	if (g_call == CALL_OPEN && path != NULL) {
		char name[256], full[4200];
		snprintf(full, sizeof full, "%s", path);
		int kind = kind_of_path(full, name, sizeof name);
		if (intercept(CALL_OPEN, kind, name, full, NULL, 0))
			return -1;
	}
	if (!at) { /* open, open64 */
		static int (*real[2])(const char *, int, ...);
		int k = strcmp(sym, "open") == 0 ? 0 : 1;
		if (real[k] == NULL)
			*(void **)&real[k] = dlsym(RTLD_NEXT, sym);
		return real[k](path, flags, mode);
	}
	static int (*real_at[2])(int, const char *, int, ...);
	int k = strcmp(sym, "openat") == 0 ? 0 : 1;
	if (real_at[k] == NULL)
		*(void **)&real_at[k] = dlsym(RTLD_NEXT, sym);
	return real_at[k](dirfd, path, flags, mode);
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return open_common("open", false, 0, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return open_common("open64", false, 0, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return open_common("openat", true, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return open_common("openat64", true, dirfd, path, flags, mode);
}
