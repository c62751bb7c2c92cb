/* disk_floor.c - what the disk alone gives a log: for SECONDS, a 2 KiB
 * write then fdatasync, in a loop, on a preallocated and written file in
 * DIR; prints the fdatasync latency (p50, p99, p99.9, max). With RATE > 0
 * a second thread meanwhile dirties random 4 KiB pages of a 512 MiB file at
 * RATE MB/s and writes each 512 KiB slice back (sync_file_range), as a
 * checkpoint's write-back does. CLASS (default be) is that thread's I/O
 * class: be (the default, as the log's) or idle (docs/storage.md, "the
 * write-back at I/O class idle").
 *
 * Why: a replica acknowledges a write after an fdatasync, so no client call
 * can be faster than the slowest fdatasync the disk gives while it waits;
 * on a shared virtual disk that floor is far from the median. Run it with
 * nothing else on the machine before reading a benchmark's worst latency.
 *
 * Usage: disk_floor DIR [SECONDS [RATE [CLASS]]]   (the files are removed at exit) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/ioprio.h>
#include <sys/syscall.h>

#define LOG_BYTES (8u << 20)
#define RECORD 2048u
#define DATA_BYTES ((size_t)512 << 20)
#define SLICE ((size_t)512 << 10)

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int data_fd;
static double rate_mb;
static atomic_bool stop;
static bool writer_idle;

/* A quarter of a random slice's pages dirtied, then the slice written back,
 * as fast as RATE allows. */
static void *writer(void *arg)
{
	(void)arg;
	if (writer_idle &&
	    syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0)) != 0)
		perror("disk_floor: ioprio_set");
	static char page[4096];
	memset(page, 7, sizeof page);
	unsigned seed = 1;
	double start = now_ms();
	double written = 0;
	while (!atomic_load(&stop)) {
		if (written > rate_mb * 1e6 * (now_ms() - start) / 1e3) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
			continue;
		}
		off_t base = (off_t)((size_t)rand_r(&seed) % (DATA_BYTES / SLICE) * SLICE);
		for (size_t i = 0; i < SLICE / 4096 / 4; i++) {
			off_t at = base + (off_t)((size_t)rand_r(&seed) % (SLICE / 4096) * 4096);
			if (pwrite(data_fd, page, sizeof page, at) != (ssize_t)sizeof page)
				return NULL;
		}
		sync_file_range(data_fd, base, (off_t)SLICE,
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					SYNC_FILE_RANGE_WAIT_AFTER);
		written += SLICE / 4;
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Writes len bytes at the start of fd, then fdatasync. */
static int fill(int fd, size_t len)
{
	static char buf[1 << 16];
	memset(buf, 1, sizeof buf);
	for (size_t at = 0; at < len; at += sizeof buf)
		if (pwrite(fd, buf, sizeof buf, (off_t)at) != (ssize_t)sizeof buf)
			return -1;
	return fdatasync(fd);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: disk_floor DIR [SECONDS [RATE_MB_PER_S [be|idle]]]\n");
		return 64;
	}
	double seconds = argc > 2 ? atof(argv[2]) : 20;
	rate_mb = argc > 3 ? atof(argv[3]) : 0;
	writer_idle = argc > 4 && strcmp(argv[4], "idle") == 0;
	char logp[4200], datap[4200];
	snprintf(logp, sizeof logp, "%s/disk_floor.log", argv[1]);
	snprintf(datap, sizeof datap, "%s/disk_floor.data", argv[1]);
	int log_fd = open(logp, O_RDWR | O_CREAT | O_TRUNC, 0600);
	data_fd = rate_mb > 0 ? open(datap, O_RDWR | O_CREAT | O_TRUNC, 0600) : -1;
	if (log_fd < 0 || (rate_mb > 0 && data_fd < 0)) {
		perror("disk_floor: open");
		return 1;
	}
	/* Written, not only allocated: an overwrite needs no journal. */
	if (fill(log_fd, LOG_BYTES) != 0 || (data_fd >= 0 && fill(data_fd, DATA_BYTES) != 0)) {
		perror("disk_floor: preparing the files");
		return 1;
	}
	pthread_t th;
	if (rate_mb > 0 && pthread_create(&th, NULL, writer, NULL) != 0)
		return 1;
	size_t cap = 4u << 20, n = 0;
	double *lat = malloc(cap * sizeof *lat);
	static char rec[RECORD];
	memset(rec, 3, sizeof rec);
	double start = now_ms();
	while (now_ms() - start < seconds * 1e3 && n < cap && lat) {
		off_t at = (off_t)(n % (LOG_BYTES / RECORD) * RECORD);
		if (pwrite(log_fd, rec, sizeof rec, at) != (ssize_t)sizeof rec)
			break;
		double t0 = now_ms();
		if (fdatasync(log_fd) != 0)
			break;
		lat[n++] = now_ms() - t0;
	}
	atomic_store(&stop, true);
	if (rate_mb > 0)
		pthread_join(th, NULL);
	unlink(logp);
	if (data_fd >= 0)
		unlink(datap);
	if (n == 0) {
		fprintf(stderr, "disk_floor: no fdatasync completed\n");
		return 1;
	}
	qsort(lat, n, sizeof *lat, cmp_double);
	printf("disk_floor: %.0f s, write-back %.0f MB/s beside (I/O class %s): %zu fdatasyncs of "
	       "a %u-byte write, ms p50 %.3f p99 %.3f p99.9 %.3f max %.3f\n",
	       seconds, rate_mb, writer_idle ? "idle" : "be", n, RECORD, lat[n / 2], lat[n * 99 / 100], lat[n * 999 / 1000],
	       lat[n - 1]);
	free(lat);
	return 0;
}
