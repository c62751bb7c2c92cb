/* storage_durable.c - the durable backend of vsr_storage: a checksummed,
 * hash-chained write-ahead log in preallocated segments, a superblock in two
 * checksummed copies, written and fdatasync'ed on a worker thread.
 *
 * Happy path: submit() encodes the persist's records (truncation, entries)
 * into one buffer on the loop thread and queues it. The worker takes every
 * queued persist at once (group commit), appends their records to the
 * current segment, then issues one fdatasync
 * for the whole group (a full segment ends with an end record, synced, and
 * the log goes on in the next one, made ahead by spare.c's thread). When
 * the group changed what the superblock promises
 * (view, log_view, epoch, checkpoint, a truncation) it then writes both
 * superblock copies, each followed by its own fdatasync, before reporting
 * the group's persists complete, in order, through a uv_async handle. A
 * group that only appended entries leaves the superblock to a lagging
 * update (the log end it names, the commit lower bound), written when the
 * worker idles or every SB_LAG_MAX_MS under load.
 *
 * A persist submitted while the worker is idle, which opts.inline_ok says
 * may wait, is held, and vsr_storage_flush() (the host calls it right
 * before the loop waits) writes the held group on the loop thread itself:
 * a lone persist then costs no thread wake-ups. Only one thread owns the
 * writer state at a time (writer_busy, under mu).
 *
 * Restart (load): pick the valid superblock copy with the highest sequence,
 * replay every segment's records (the checkpoint is the state machine's). Everything before the
 * superblock's `log end` was durable before that superblock was written: a
 * bad record there is corruption of something that may have been committed,
 * and the replica comes back as amnesiac (state transfer from the others)
 * rather than drop it. A bad record at or after the log end is a torn write
 * of a group whose persists were never reported complete: the log is cut
 * there. See docs/storage.md for the format and the reasoning.
 *
 * Failure modes: any failed write, fallocate or fdatasync (ENOSPC, EIO)
 * fails that persist and every later one with a sentence naming the file
 * (vsr_storage_error()); nothing is retried, since after a failed fdatasync
 * the kernel may have dropped the dirty pages. The host stops. */
#define _GNU_SOURCE
#include "storage_impl.h"
#include "reaper.h"
#include "spare.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define SB_NAME "superblock"
#define LOCK_NAME "lock" /* held while a process uses the directory */
#define TRASH_PREFIX "trash-" /* a segment being removed (reaper.h) */
#define SB_COPY_SIZE 4096u
#define SB_MAGIC UINT64_C(0x31304253524c5356) /* "VSRLRSB01" folded */
#define SB_VERSION 1u
#define SB_FLAG_UNRECOVERED 1u
#define SB_LAG_MAX_MS 100u   /* a lagging superblock update at least this often */
#define SB_IDLE_WAIT_MS 2u   /* ... or after the worker idled this long */
#define INLINE_SLOW_MS 20u   /* an inline group that took this long ... */
#define INLINE_OFF_MS 1000u  /* ... sends the groups to the worker for this long */

#define REC_MAGIC UINT32_C(0x4c525356) /* "VSRL" */
#define REC_HEADER 64u
enum { REC_ENTRY = 1, REC_TRUNCATE = 2, REC_SEGMENT_END = 3, REC_MARK = 4 };

#define SEGMENT_SIZE_DEFAULT (UINT64_C(64) << 20)
#define ZERO_AHEAD (UINT64_C(256) << 10) /* zeroed past the log end at a time */

static const uint8_t zeros[65536];

/* ------------------------------------------------------------------------ */
/* Little-endian encoding.                                                   */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
	return v;
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A place in the log: segment sequence number, byte offset. */
typedef struct log_pos {
	uint64_t seg;
	uint64_t off;
} log_pos;

static bool pos_before(log_pos a, log_pos b)
{
	return a.seg < b.seg || (a.seg == b.seg && a.off < b.off);
}

/* The superblock as stored: the core's fields plus the storage's own. */
typedef struct sb_disk {
	uint64_t seq;
	uint32_t flags;
	uint64_t replica;
	vsr_superblock core;
	log_pos end;   /* every record before this was durable when written */
	/* The configuration fingerprint the host set (vsr_storage_set_config),
	 * opaque here; 0 parts: none recorded (a copy written before they were,
	 * or before the host set one). */
	uint8_t config_count;
	uint64_t config[VSR_STORAGE_CONFIG_MAX];
} sb_disk;

/* The core's superblock is stored word by word, so that every field it has
 * is persisted (fields are added by other work: decision 2 of the design)
 * and a newer binary reads an older superblock (missing words are 0). */
#define SB_WORDS (sizeof(vsr_superblock) / 8u)
#define SB_WORDS_AT 56u
_Static_assert(sizeof(vsr_superblock) % 8u == 0 && SB_WORDS <= 64u,
	       "vsr_superblock must stay a sequence of 64-bit words (sb_encode)");

static void sb_words(const vsr_superblock *c, uint64_t w[SB_WORDS])
{
	memcpy(w, c, sizeof *c);
}

/* The configuration record, at a fixed offset past the core's words (at
 * most 64) and their checksum: a build from before it checks only the
 * bytes up to its own checksum, so it reads such a copy and writes one
 * without it (zeros: "none recorded"). Its checksum covers the whole copy
 * from byte 0, so it belongs to this write and no other. */
#define SB_CONFIG_AT 1024u
#define SB_CONFIG_MAGIC UINT64_C(0x3130474643525356) /* "VSRCFG01" */
_Static_assert(SB_WORDS_AT + 8u * 64u + 8u <= SB_CONFIG_AT &&
		       SB_CONFIG_AT + 16u + 8u * VSR_STORAGE_CONFIG_MAX + 8u <= SB_COPY_SIZE,
	       "the configuration record fits between the core's words and the copy's end");

static void sb_encode(const sb_disk *sb, uint8_t out[SB_COPY_SIZE])
{
	memset(out, 0, SB_COPY_SIZE);
	put64(out + 0, SB_MAGIC);
	put32(out + 8, SB_VERSION);
	put32(out + 12, sb->flags);
	put64(out + 16, sb->seq);
	put64(out + 24, sb->replica);
	put64(out + 32, sb->end.seg);
	put64(out + 40, sb->end.off);
	put32(out + 48, (uint32_t)SB_WORDS);
	uint64_t w[SB_WORDS];
	sb_words(&sb->core, w);
	for (size_t i = 0; i < SB_WORDS; i++) put64(out + SB_WORDS_AT + 8 * i, w[i]);
	size_t end = SB_WORDS_AT + 8 * SB_WORDS;
	put64(out + end, XXH3_64bits(out, end));
	if (sb->config_count > 0) {
		put64(out + SB_CONFIG_AT, SB_CONFIG_MAGIC);
		put32(out + SB_CONFIG_AT + 8, sb->config_count);
		for (unsigned i = 0; i < sb->config_count; i++)
			put64(out + SB_CONFIG_AT + 16 + 8 * i, sb->config[i]);
		size_t cend = SB_CONFIG_AT + 16 + 8u * sb->config_count;
		put64(out + cend, XXH3_64bits(out, cend));
	}
}

static bool sb_decode(const uint8_t *in, sb_disk *sb)
{
	if (get64(in) != SB_MAGIC || get32(in + 8) != SB_VERSION) return false;
	uint32_t words = get32(in + 48);
	if (words > 64u) return false;
	size_t end = SB_WORDS_AT + 8u * words;
	if (get64(in + end) != XXH3_64bits(in, end)) return false;
	memset(sb, 0, sizeof *sb);
	sb->flags = get32(in + 12);
	sb->seq = get64(in + 16);
	sb->replica = get64(in + 24);
	sb->end.seg = get64(in + 32);
	sb->end.off = get64(in + 40);
	uint64_t w[SB_WORDS] = {0};
	for (size_t i = 0; i < SB_WORDS && i < words; i++) w[i] = get64(in + SB_WORDS_AT + 8 * i);
	memcpy(&sb->core, w, sizeof sb->core);
	/* No record (zeros): a copy written before records existed. A record
	 * that does not verify: a torn copy, like a bad checksum above. */
	uint64_t magic = get64(in + SB_CONFIG_AT);
	if (magic == 0) return true;
	uint32_t count = get32(in + SB_CONFIG_AT + 8);
	if (magic != SB_CONFIG_MAGIC || count == 0 || count > VSR_STORAGE_CONFIG_MAX) return false;
	size_t cend = SB_CONFIG_AT + 16 + 8u * count;
	if (get64(in + cend) != XXH3_64bits(in, cend)) return false;
	sb->config_count = (uint8_t)count;
	for (unsigned i = 0; i < count; i++) sb->config[i] = get64(in + SB_CONFIG_AT + 16 + 8 * i);
	return true;
}

/* The newer of the copies in buf (len bytes) that decode, copy 0 on a tie,
 * in *sb; *bad: a copy that does not (2: none). False when neither does. */
static bool sb_pick(const uint8_t *buf, uint64_t len, sb_disk *sb, unsigned *bad)
{
	sb_disk c[2];
	bool ok[2];
	for (unsigned i = 0; i < 2; i++)
		ok[i] = len >= (i + 1) * SB_COPY_SIZE && sb_decode(buf + i * SB_COPY_SIZE, &c[i]);
	*bad = !ok[0] ? 0 : !ok[1] ? 1 : 2;
	if (!ok[0] && !ok[1])
		return false;
	*sb = ok[0] && (!ok[1] || c[0].seq >= c[1].seq) ? c[0] : c[1];
	return true;
}

/* Whether writing `next` promises more than `prev` beyond the commit number,
 * a lower bound that may lag: such a superblock must be durable before the
 * persist that carries it is reported complete. */
static bool sb_promises_more(const vsr_superblock *prev, const vsr_superblock *next)
{
	vsr_superblock a = *prev, b = *next;
	a.commit = b.commit = 0;
	return memcmp(&a, &b, sizeof a) != 0;
}

/* ------------------------------------------------------------------------ */
/* Records.                                                                  */

static uint64_t rec_size(uint32_t body_len)
{
	return REC_HEADER + (((uint64_t)body_len + 7u) & ~UINT64_C(7));
}

static void rec_header(uint8_t *h, uint8_t type, const vsr_entry *e, uint64_t op,
		       uint64_t seed)
{
	memset(h, 0, REC_HEADER);
	put32(h + 0, REC_MAGIC);
	h[4] = type;
	if (e != NULL) {
		put32(h + 8, e->body_len);
		put32(h + 12, e->request_count);
		put64(h + 24, e->view);
		put64(h + 32, e->timestamp);
		put64(h + 40, e->checksum);
		put64(h + 48, e->parent);
	}
	put64(h + 16, op);
	put64(h + 56, XXH3_64bits_withSeed(h, 56, seed));
}

/* ------------------------------------------------------------------------ */
/* The storage object.                                                       */

typedef struct job {
	struct job *next;
	uint64_t id;
	int status;
	bool truncate;
	uint8_t *recs;
	size_t recs_len;
	vsr_superblock sb;
} job;

typedef struct segment {
	uint64_t seq;
	uint64_t max_op;         /* highest entry op written into it */
} segment;

typedef struct durable {
	storage_head tag;        /* VSR_STORAGE_DURABLE */
	vsr_storage_options opts;
	vsr_storage_io io;
	char *dir;
	uint64_t segment_size;
	bool loaded, closing, thread_started;
	vsr_storage_close_cb close_cb;
	uv_async_t async;
	vsr_storage_stats stats;
	vsr_superblock submitted; /* last superblock submitted */
	vsr_durable durable;     /* what load returned */
	vsr_entry *loaded_entries;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Loop thread (opts.inline_ok): persists held for vsr_storage_flush(). */
	job *held, *held_tail;
	bool delivering;         /* in deliver(): persists submitted now are not held */
	uint64_t inline_off_until_ms; /* a slow inline group: the worker until then */
	/* Under mu: */
	job *queue, *queue_tail;
	job *done, *done_tail;
	bool stop;
	bool writer_busy;        /* the worker or the loop (inline) owns the writer state */
	bool worker_sleeping;    /* the worker waits with no deadline */
	bool want_recovered;
	char error[512];
	bool unrecovered;        /* loop thread: the disk carries the mark */

	/* Worker-owned after load: */
	int dirfd;
	bool links_known;        /* the directory showed links at open (still_linked) */
	uint64_t links_at_ms;    /* when still_linked last looked */
	int seg_fd;
	int sb_fd;               /* the superblock file, once written */
	int lock_fd;             /* `lock`, locked while this process uses the directory */
	/* Removes pruned segments (reaper.h); NULL until the first. Set by the
	 * writer's owner, read by vsr_storage_reclaim on the loop: atomic. */
	_Atomic(vsr_reaper *) reaper;
	vsr_spare *spare;        /* makes the next segment ahead (spare.h); NULL: inline */
	uint64_t rot_spare, rot_inline; /* rotations by kind (under mu: deliver() reads them) */
	log_pos pos;             /* where the next record goes */
	log_pos synced;          /* every record before this is durable */
	uint8_t *stage;          /* records appended, not yet written: they end at pos */
	size_t stage_len, stage_cap;
	uint64_t seg_cap;        /* size of the current segment */
	uint64_t zeroed;         /* the current segment is written (zeros) below this */
	segment *segs;           /* live segments, oldest first */
	uint32_t seg_count, seg_alloc;
	sb_disk sb;              /* last superblock written (or loaded) */
	bool sb_ever;            /* a superblock exists on disk */
	sb_disk lag;             /* what a lagging update would write */
	bool lag_dirty;
	uint64_t sb_written_ms;
	uint64_t group_us;       /* when the last group was written */
	bool failed;
} durable;

static durable *D(const vsr_storage *s)
{
	return (durable *)(void *)s;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------------------ */
/* I/O through the injectable layer.                                         */

static ssize_t sys_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
	(void)ctx;
	return pwrite(fd, buf, len, off);
}
static int sys_fdatasync(void *ctx, int fd)
{
	(void)ctx;
	return fdatasync(fd);
}
static int sys_fallocate(void *ctx, int fd, off_t off, off_t len)
{
	(void)ctx;
	int rc = posix_fallocate(fd, off, len);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return 0;
}

/* Records the first failure; every later persist fails with it. */
static void fail(durable *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(durable *d, const char *fmt, ...)
{
	d->failed = true;
	pthread_mutex_lock(&d->mu);
	if (d->error[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->error, sizeof d->error, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&d->mu);
}

static const char *errno_hint(int e)
{
	switch (e) {
	case ENOSPC: return " (the disk is full)";
	case EDQUOT: return " (disk quota exceeded)";
	case EIO: return " (the disk reported an I/O error)";
	default: return "";
	}
}

static int write_all(durable *d, int fd, const void *buf, size_t len, uint64_t off,
		     const char *what)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = d->io.pwrite(d->io.ctx, fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			fail(d, "storage %s: writing %s failed: %s%s; stopping: nothing more is "
				"acknowledged", d->dir, what, strerror(e), errno_hint(e));
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int sync_fd(durable *d, int fd, const char *what)
{
	if (d->io.fdatasync(d->io.ctx, fd) != 0) {
		int e = errno;
		fail(d, "storage %s: fdatasync of %s failed: %s%s; stopping: what was written "
			"since the last sync may be lost, so nothing more is acknowledged",
		     d->dir, what, strerror(e), errno_hint(e));
		return -1;
	}
	return 0;
}

static void seg_name(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, "log-%016" PRIx64, seq);
}

/* Whether the data directory, the current segment and the superblock are
 * still on disk under their names. Removed while the replica runs (an
 * operator's rm -rf, a cleanup script), the files stay open and every write
 * and sync still succeeds, but a restart does not find them: what is
 * acknowledged from them then is lost from this replica. So a group is
 * acknowledged only from files with links left; otherwise the replica
 * stops, as for a failed sync, and the next start finds the loss (an empty
 * directory, a missing segment or superblock) and is repaired from the
 * others.
 *
 * At most every STILL_LINKED_MS: in a replica an fstat took 22-29 us
 * (strace, one client; 0.3 us in a process of its own), and three per group
 * raised the one-client p50 from 0.31-0.32 to 0.37-0.40 ms. What is
 * acknowledged meanwhile is on a quorum, as everything a replica that loses
 * its disk acknowledged. */
#define STILL_LINKED_MS 100u
static int still_linked(durable *d)
{
	struct stat st;
	char name[64];
	const char *gone = NULL;
	if (!d->links_known)
		return 0; /* a file system that shows no links for a live directory */
	uint64_t now = mono_ms();
	if (now - d->links_at_ms < STILL_LINKED_MS)
		return 0;
	d->links_at_ms = now;
	if (fstat(d->dirfd, &st) == 0 && st.st_nlink == 0)
		gone = "the data directory";
	else if (d->seg_fd >= 0 && fstat(d->seg_fd, &st) == 0 && st.st_nlink == 0) {
		seg_name(name, sizeof name, d->pos.seg);
		gone = name;
	} else if (d->sb_fd >= 0 && fstat(d->sb_fd, &st) == 0 && st.st_nlink == 0)
		gone = "the superblock";
	if (gone == NULL) return 0;
	fail(d, "storage %s: %s was removed while this replica ran; stopping: what it holds "
		"would be missing at the next start, so nothing more is acknowledged (restarted, "
		"the replica finds what is missing and catches up from the others)", d->dir, gone);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Segments.                                                                 */

static int segs_push(durable *d, uint64_t seq, uint64_t max_op)
{
	if (d->seg_count == d->seg_alloc) {
		uint32_t n = d->seg_alloc ? d->seg_alloc * 2 : 8;
		segment *p = realloc(d->segs, n * sizeof *p);
		if (p == NULL) return -1;
		d->segs = p;
		d->seg_alloc = n;
	}
	d->segs[d->seg_count++] = (segment){.seq = seq, .max_op = max_op};
	return 0;
}

/* Makes segment `seq` (open as fd, `cap` bytes, its size and name durable)
 * the current one, empty. */
static int segment_use(durable *d, int fd, uint64_t seq, uint64_t cap)
{
	if (segs_push(d, seq, 0) != 0) {
		fail(d, "storage %s: out of memory", d->dir);
		close(fd);
		return -1;
	}
	if (d->seg_fd >= 0) close(d->seg_fd);
	d->seg_fd = fd;
	d->seg_cap = cap;
	d->zeroed = 0;
	d->pos = (log_pos){.seg = seq, .off = 0};
	return 0;
}

/* Creates segment `seq` of `cap` bytes, preallocated, and makes it current. */
static int segment_create(durable *d, uint64_t seq, uint64_t cap)
{
	char name[64];
	seg_name(name, sizeof name, seq);
	int fd = openat(d->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		fail(d, "storage %s: cannot create %s: %s%s", d->dir, name, strerror(e),
		     errno_hint(e));
		return -1;
	}
	int rc = d->io.fallocate(d->io.ctx, fd, 0, (off_t)cap);
	vsr_reaper *r = d->reaper;
	if (rc != 0 && errno == ENOSPC && r != NULL && !vsr_reaper_idle(r)) {
		/* Pruned segments still being shrunk hold space the disk
		 * needs now: removed at once, then tried again. */
		vsr_reaper_flush(r);
		rc = d->io.fallocate(d->io.ctx, fd, 0, (off_t)cap);
	}
	if (rc != 0) {
		int e = errno;
		fail(d, "storage %s: cannot preallocate %" PRIu64 " bytes for %s: %s%s; stopping",
		     d->dir, cap, name, strerror(e), errno_hint(e));
		close(fd);
		return -1;
	}
	/* The size and the name must survive a crash before the first record. */
	if (sync_fd(d, fd, name) != 0 || sync_fd(d, d->dirfd, "the data directory") != 0) {
		close(fd);
		return -1;
	}
	return segment_use(d, fd, seq, cap);
}

/* Whether the next segment is made ahead (spare.h): only with VSR_SPARE=1
 * in the environment. It takes a rotation's cost off the writer thread
 * (0.78 -> 0.23 ms median), but in alternated checkpoint_stall runs the
 * worst client latency was higher with it (9 runs: 11.1-93 ms, median
 * 22 ms; 10 runs off: 6.7-18.2 ms, median 9.0), seconds away from any rotation,
 * for a reason not found yet (docs/storage.md, "Rotation: the spare"). */
static bool spare_wanted(void)
{
	const char *v = getenv("VSR_SPARE");
	return v != NULL && strcmp(v, "1") == 0;
}

/* Asks the spare maker for the segment after the current one (spare.h),
 * starting it the first time. Without it every rotation creates inline. */
static void spare_ask(durable *d)
{
	if (d->spare == NULL && spare_wanted())
		d->spare = vsr_spare_start(d->dirfd, &d->io);
	if (d->spare == NULL) return;
	char name[64];
	seg_name(name, sizeof name, d->pos.seg + 1);
	vsr_spare_prepare(d->spare, name, d->segment_size);
}

/* Makes segment `seq` (at least `cap` bytes) current from the spare, or
 * creates it here when there is none of that size: an oversize record, no
 * spare thread, or a spare that found the disk full (space may have come
 * back since: pruned segments; segment_create waits for the reaper). Any
 * other failure to make the spare stops the log, as it would have inline. */
static int segment_next(durable *d, uint64_t seq, uint64_t cap)
{
	char name[64];
	seg_name(name, sizeof name, seq);
	vsr_spare_result r = {.fd = -1};
	if (d->spare != NULL) r = vsr_spare_take(d->spare, name, cap);
	bool spared = r.fd >= 0;
	int rc;
	if (spared) {
		rc = segment_use(d, r.fd, seq, cap);
	} else if (r.err != 0 && r.err != ENOSPC && r.err != EDQUOT) {
		fail(d, "storage %s: making %s ahead as the next segment failed (%s): %s%s; "
			"stopping: nothing more is acknowledged",
		     d->dir, name, r.step, strerror(r.err), errno_hint(r.err));
		return -1;
	} else {
		rc = segment_create(d, seq, cap);
	}
	if (rc != 0) return -1;
	pthread_mutex_lock(&d->mu);
	if (spared) d->rot_spare++;
	else d->rot_inline++;
	pthread_mutex_unlock(&d->mu);
	spare_ask(d);
	return 0;
}

/* Ends the current segment with an end record, syncs it, starts the next
 * one, big enough for a record of `need` bytes. */
static int segment_rotate(durable *d, uint64_t need)
{
	uint8_t h[REC_HEADER];
	rec_header(h, REC_SEGMENT_END, NULL, 0, d->opts.cluster);
	char name[64];
	seg_name(name, sizeof name, d->pos.seg);
	if (write_all(d, d->seg_fd, h, sizeof h, d->pos.off, name) != 0) return -1;
	if (sync_fd(d, d->seg_fd, name) != 0) return -1;
	uint64_t cap = d->segment_size;
	if (cap < need + REC_HEADER) cap = need + REC_HEADER;
	/* What the new segment's first acknowledged entry needs is durable now:
	 * the old segment's end record (just synced: a restart follows the log
	 * into the next segment only past it), and the new segment's name and
	 * size (synced by whoever made it). */
	if (segment_next(d, d->pos.seg + 1, cap) != 0) return -1;
	d->synced = d->pos; /* the old segment is synced up to its end record */
	return 0;
}

/* Preallocated blocks are unwritten extents (ext4, xfs): the first write
 * into each makes the next fdatasync commit the file system's journal too,
 * to mark it written, which costs a sync a third more. Zeros written
 * ZERO_AHEAD past the log end pay that once per ZERO_AHEAD bytes of log,
 * not once per block. (Zeroing whole segments up front would stall the
 * rotation or the start.) Past the log end the segment reads as zeros
 * either way: the format is unchanged. */
static int zero_ahead(durable *d, const char *name)
{
	if (d->pos.off <= d->zeroed) return 0;
	uint64_t to = (d->pos.off + ZERO_AHEAD + 4095u) & ~UINT64_C(4095);
	if (to > d->seg_cap) to = d->seg_cap;
	for (uint64_t at = d->pos.off; at < to; at += sizeof zeros) {
		uint64_t n = to - at < sizeof zeros ? to - at : sizeof zeros;
		if (write_all(d, d->seg_fd, zeros, (size_t)n, at, name) != 0) return -1;
	}
	d->zeroed = to;
	return 0;
}

/* Writes what is staged for the current segment. */
static int stage_flush(durable *d)
{
	if (d->stage_len == 0) return 0;
	char name[64];
	seg_name(name, sizeof name, d->pos.seg);
	int rc = zero_ahead(d, name);
	if (rc == 0)
		rc = write_all(d, d->seg_fd, d->stage, d->stage_len, d->pos.off - d->stage_len, name);
	d->stage_len = 0;
	return rc;
}

/* Appends whole records to the log: staged, so that a group is one write per
 * segment (stage_flush), not one per persist. Not yet synced. */
static int log_append(durable *d, const uint8_t *recs, size_t len)
{
	size_t off = 0;
	while (off < len) {
		const uint8_t *h = recs + off;
		uint64_t sz = rec_size(get32(h + 8));
		if (d->pos.off + sz + REC_HEADER > d->seg_cap) {
			/* Full, but for the room of its end record. */
			if (stage_flush(d) != 0 || segment_rotate(d, sz) != 0) return -1;
			continue;
		}
		if (d->stage_len + sz > d->stage_cap) {
			size_t cap = d->stage_cap ? d->stage_cap : 65536;
			while (cap < d->stage_len + sz) cap *= 2;
			uint8_t *p = realloc(d->stage, cap);
			if (p == NULL) {
				fail(d, "storage %s: out of memory", d->dir);
				return -1;
			}
			d->stage = p;
			d->stage_cap = cap;
		}
		memcpy(d->stage + d->stage_len, h, sz);
		d->stage_len += sz;
		d->pos.off += sz;
		segment *cur = &d->segs[d->seg_count - 1];
		if (h[4] == REC_ENTRY && get64(h + 16) > cur->max_op) cur->max_op = get64(h + 16);
		off += sz;
	}
	return 0;
}

/* Opens a group's records with a mark that says what the last sync made
 * durable: a later start then knows a bad record before it is corruption,
 * even when the superblock's log end lags behind. */
static int log_mark(durable *d)
{
	uint8_t h[REC_HEADER];
	vsr_entry claim = {.view = d->synced.seg};
	rec_header(h, REC_MARK, &claim, d->synced.off, d->opts.cluster);
	return log_append(d, h, sizeof h);
}

/* ------------------------------------------------------------------------ */
/* Superblock writes.                                                        */

static int sb_write_copy(durable *d, const sb_disk *sb, unsigned copy)
{
	uint8_t buf[SB_COPY_SIZE];
	sb_encode(sb, buf);
	/* Opened once: a lagging update costs a write and a sync, no more. */
	if (d->sb_fd < 0 &&
	    (d->sb_fd = openat(d->dirfd, SB_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		int e = errno;
		fail(d, "storage %s: cannot open the superblock: %s%s", d->dir, strerror(e),
		     errno_hint(e));
		return -1;
	}
	int rc = write_all(d, d->sb_fd, buf, sizeof buf, (uint64_t)copy * SB_COPY_SIZE,
			   "the superblock");
	if (rc == 0) rc = sync_fd(d, d->sb_fd, "the superblock");
	return rc;
}

/* Both copies, one after the other, each synced: a torn write of either
 * leaves the other whole. */
static int sb_write_both(durable *d, sb_disk *sb)
{
	sb->seq = d->sb.seq + 1;
	bool created = !d->sb_ever;
	if (sb_write_copy(d, sb, 0) != 0) return -1;
	if (created && sync_fd(d, d->dirfd, "the data directory") != 0) return -1;
	if (sb_write_copy(d, sb, 1) != 0) return -1;
	d->sb = *sb;
	d->sb_ever = true;
	d->lag_dirty = false;
	d->sb_written_ms = mono_ms();
	return 0;
}

/* A lagging update only moves the log end and the commit: one copy, the
 * older one, so that the other keeps the previous state whole. */
static int sb_write_lag(durable *d)
{
	sb_disk sb = d->lag;
	sb.seq = d->sb.seq + 1;
	if (sb_write_copy(d, &sb, (unsigned)(sb.seq & 1)) != 0) return -1;
	d->sb = sb;
	d->lag_dirty = false;
	d->sb_written_ms = mono_ms();
	return 0;
}

/* A file of ours to remove (`name`, in the directory): handed to the
 * reaper, which shrinks it a slice at a time off the writer's thread
 * (reaper.h); unlinked here when there is none. */
static void file_reap(durable *d, const char *name)
{
	vsr_reaper *r = d->reaper;
	if (r == NULL)
		d->reaper = r = vsr_reaper_start(d->dirfd);
	if (r == NULL || vsr_reaper_add(r, name) != 0)
		unlinkat(d->dirfd, name, 0);
}

/* A segment no longer needed: out of the log's names at once (a rename:
 * a restart never reads it again), then reaped. */
static void segment_remove(durable *d, uint64_t seq)
{
	char name[64], trash[64];
	seg_name(name, sizeof name, seq);
	snprintf(trash, sizeof trash, "%s%016" PRIx64, TRASH_PREFIX, seq);
	if (renameat(d->dirfd, name, d->dirfd, trash) == 0)
		file_reap(d, trash);
	else
		unlinkat(d->dirfd, name, 0);
}

/* Segments wholly at or below the durable checkpoint are no longer needed. */
static void segments_prune(durable *d, uint64_t checkpoint_op)
{
	uint32_t drop = 0;
	while (drop + 1 < d->seg_count && d->segs[drop].max_op <= checkpoint_op) {
		segment_remove(d, d->segs[drop].seq);
		drop++;
	}
	if (drop == 0) return;
	memmove(d->segs, d->segs + drop, (d->seg_count - drop) * sizeof *d->segs);
	d->seg_count -= drop;
}

/* ------------------------------------------------------------------------ */
/* The worker.                                                               */

static void group_write(durable *d, job *group, bool recovered)
{
	bool promise = !d->sb_ever || recovered;
	bool appended = false;
	const vsr_superblock *last = NULL;
	for (job *j = group; j != NULL && !d->failed; j = j->next) {
		if (j->recs_len > 0) {
			if (!appended && log_mark(d) != 0) break;
			if (log_append(d, j->recs, j->recs_len) != 0) break;
			appended = true;
		}
		if (j->truncate || sb_promises_more(last ? last : &d->sb.core, &j->sb))
			promise = true;
		last = &j->sb;
	}
	if (!d->failed && appended && stage_flush(d) == 0) {
		char name[64];
		seg_name(name, sizeof name, d->pos.seg);
		if (sync_fd(d, d->seg_fd, name) == 0) d->synced = d->pos;
	}
	if (d->failed || still_linked(d) != 0) return;
	sb_disk sb = d->sb;
	sb.core = *last;
	sb.end = d->pos;
	sb.replica = d->opts.replica;
	if (recovered) sb.flags &= ~SB_FLAG_UNRECOVERED;
	if (promise) {
		uint64_t old_checkpoint = d->sb.core.checkpoint_op;
		if (sb_write_both(d, &sb) != 0) return;
		if (sb.core.checkpoint_op != old_checkpoint) {
			/* The state machine wrote the checkpoint before this
			 * superblock named it (vsr.h): the log below is no longer needed. */
			segments_prune(d, sb.core.checkpoint_op);
		}
		return;
	}
	d->lag = sb;
	d->lag_dirty = true;
}

/* Reports a written group (or a failed one) complete: the loop delivers
 * the completions, in order, from async_cb (wake_loop: the worker's groups)
 * or from vsr_storage_flush itself (the loop's own). Called by the writer's
 * owner, mu not held. */
static void group_done(durable *d, job *group, bool wake_loop)
{
	int status = d->failed ? VSR_EINVAL : VSR_OK;
	job *tail = group;
	for (job *j = group; j != NULL; j = j->next) {
		j->status = status;
		tail = j;
	}
	d->group_us = mono_us();
	pthread_mutex_lock(&d->mu);
	if (d->done_tail) d->done_tail->next = group;
	else d->done = group;
	d->done_tail = tail;
	pthread_mutex_unlock(&d->mu);
	if (wake_loop) uv_async_send(&d->async);
}

/* When a lagging superblock update is due (microseconds): SB_IDLE_WAIT_MS
 * after the last group, or SB_LAG_MAX_MS after the last superblock,
 * whichever comes first. */
static uint64_t lag_due_us(const durable *d)
{
	uint64_t idle = d->group_us + SB_IDLE_WAIT_MS * 1000u;
	uint64_t lag = (d->sb_written_ms + SB_LAG_MAX_MS) * 1000u;
	return idle < lag ? idle : lag;
}

static void *worker_main(void *arg)
{
	/* Named for top -H, perf and /proc/PID/task/TID/comm. */
	pthread_setname_np(pthread_self(), "vsr-log");
	durable *d = arg;
	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (!d->stop && (d->queue == NULL || d->writer_busy)) {
			/* The writer state (lag_dirty, failed, the times) is read
			 * only while nobody owns it: its last owner let go under mu. */
			if (d->writer_busy || !d->lag_dirty || d->failed) {
				d->worker_sleeping = true;
				pthread_cond_wait(&d->cv, &d->mu);
				d->worker_sleeping = false;
				continue;
			}
			uint64_t due = lag_due_us(d), now = mono_us();
			if (now >= due) {
				d->writer_busy = true;
				pthread_mutex_unlock(&d->mu);
				sb_write_lag(d);
				pthread_mutex_lock(&d->mu);
				d->writer_busy = false;
				continue;
			}
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += (time_t)((due - now) / 1000000u);
			until.tv_nsec += (long)((due - now) % 1000000u) * 1000L;
			while (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&d->cv, &d->mu, &until);
		}
		if (d->stop) break;
		job *group = d->queue;
		d->queue = d->queue_tail = NULL;
		bool recovered = d->want_recovered;
		d->want_recovered = false;
		d->writer_busy = true;
		pthread_mutex_unlock(&d->mu);

		if (!d->failed) group_write(d, group, recovered);
		group_done(d, group, true);
		/* Under load the worker never idles: the lagging update goes out
		 * between groups, after the completions (it delays the next group,
		 * never this one's acknowledgements). */
		if (!d->failed && d->lag_dirty && mono_ms() - d->sb_written_ms >= SB_LAG_MAX_MS)
			sb_write_lag(d);
		pthread_mutex_lock(&d->mu);
		d->writer_busy = false;
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

static void job_free(job *j)
{
	free(j->recs);
	free(j);
}

/* Reports every completed persist, in order, on the loop. Persists
 * submitted meanwhile (by the callbacks' steps) go to the worker: an inline
 * group is written only from vsr_storage_flush(), which is running or has
 * run for this iteration. */
static void deliver(durable *d)
{
	pthread_mutex_lock(&d->mu);
	job *list = d->done;
	d->done = d->done_tail = NULL;
	d->stats.segments_spare = d->rot_spare;
	d->stats.segments_inline = d->rot_inline;
	pthread_mutex_unlock(&d->mu);
	d->delivering = true;
	while (list != NULL) {
		job *j = list;
		list = j->next;
		if (!d->closing) {
			d->stats.pending--;
			d->stats.persists++;
			d->opts.persisted_cb((vsr_storage *)(void *)d, j->id, j->status);
		}
		job_free(j);
	}
	d->delivering = false;
}

static void async_cb(uv_async_t *a)
{
	deliver(a->data);
}

/* ------------------------------------------------------------------------ */
/* Open and load.                                                            */

int storage_durable_open(const vsr_storage_options *opts, vsr_storage **out, char *err,
			 size_t err_len)
{
	durable *d = calloc(1, sizeof *d);
	if (d == NULL) return VSR_ENOMEM;
	d->tag.kind = VSR_STORAGE_DURABLE;
	d->opts = *opts;
	d->dir = strdup(opts->dir);
	d->seg_fd = -1;
	d->sb_fd = -1;
	d->dirfd = -1;
	d->lock_fd = -1;
	if (d->dir == NULL) {
		free(d);
		return VSR_ENOMEM;
	}
	d->opts.dir = d->dir;
	d->segment_size = opts->segment_size ? opts->segment_size : SEGMENT_SIZE_DEFAULT;
	if (d->segment_size < 4 * REC_HEADER) d->segment_size = 4 * REC_HEADER;
	d->io = (vsr_storage_io){sys_pwrite, sys_fdatasync, sys_fallocate, NULL};
	if (opts->io != NULL) {
		if (opts->io->pwrite) d->io.pwrite = opts->io->pwrite;
		if (opts->io->fdatasync) d->io.fdatasync = opts->io->fdatasync;
		if (opts->io->fallocate) d->io.fallocate = opts->io->fallocate;
		d->io.ctx = opts->io->ctx;
	}
	int rc = vsr_storage_mkdirs(d->dir, NULL, 0);
	if (rc == 0) {
		d->dirfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (d->dirfd < 0) rc = errno;
		struct stat st;
		d->links_known = rc == 0 && fstat(d->dirfd, &st) == 0 && st.st_nlink > 0;
	}
	/* One process at a time: a second replica started on this directory
	 * by mistake would recover from files still being written (cutting
	 * "torn" tails of the live log, or clearing it with --fresh) before
	 * failing to listen. A POSIX record lock on `lock`: held by the
	 * process (not by a child it forks, such as the store's verifier),
	 * released when it exits however it ends. Nothing else was read or
	 * written yet. */
	if (rc == 0) {
		d->lock_fd = openat(d->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (d->lock_fd >= 0 && fcntl(d->lock_fd, F_SETLK, &fl) != 0 &&
		    (errno == EACCES || errno == EAGAIN)) {
			storage_errf(err, err_len,
				     "storage: the data directory %s is in use by another process "
				     "(is this replica already running?); nothing in it was touched",
				     d->dir);
			close(d->lock_fd);
			close(d->dirfd);
			free(d->dir);
			free(d);
			return VSR_EINVAL;
		}
		/* No lock file or no locks on this file system: unguarded. */
	}
	if (rc == 0) {
		/* The directory's own name must survive a power cut too: sync the
		 * parent that holds it (a no-op cost when nothing changed). */
		char parent[4096];
		snprintf(parent, sizeof parent, "%s", d->dir);
		char *slash = strrchr(parent, '/');
		if (slash != NULL && slash != parent) *slash = '\0';
		else snprintf(parent, sizeof parent, "%s", slash == parent ? "/" : ".");
		int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd >= 0) {
			if (fsync(pfd) != 0) rc = errno;
			close(pfd);
		}
	}
	if (rc != 0) {
		storage_errf(err, err_len, "storage: cannot open the data directory %s: %s", d->dir,
			     strerror(rc));
		if (d->lock_fd >= 0) close(d->lock_fd);
		if (d->dirfd >= 0) close(d->dirfd);
		free(d->dir);
		free(d);
		return VSR_EINVAL;
	}
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = uv_async_init(opts->loop, &d->async, async_cb);
	assert(rc == 0);
	d->async.data = d;
	*out = (vsr_storage *)(void *)d;
	return VSR_OK;
}

/* What the directory holds. */
typedef struct dir_scan {
	uint64_t *segs;
	uint32_t seg_count;
	bool has_sb;
} dir_scan;

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int dir_list(durable *d, dir_scan *ds, char *err, size_t err_len)
{
	memset(ds, 0, sizeof *ds);
	DIR *dir = opendir(d->dir);
	if (dir == NULL) {
		storage_errf(err, err_len, "storage: cannot list %s: %s", d->dir, strerror(errno));
		return VSR_EINVAL;
	}
	uint32_t cap = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, SB_NAME) == 0) {
			ds->has_sb = true;
		} else if (strncmp(de->d_name, TRASH_PREFIX, strlen(TRASH_PREFIX)) == 0) {
			file_reap(d, de->d_name); /* a removal a stop interrupted */
		} else if (strncmp(de->d_name, "log-", 4) == 0 && strlen(de->d_name) == 20) {
			if (ds->seg_count == cap) {
				cap = cap ? cap * 2 : 16;
				uint64_t *p = realloc(ds->segs, cap * sizeof *p);
				if (p == NULL) {
					closedir(dir);
					return VSR_ENOMEM;
				}
				ds->segs = p;
			}
			ds->segs[ds->seg_count++] = strtoull(de->d_name + 4, NULL, 16);
		}
	}
	closedir(dir);
	if (ds->seg_count) qsort(ds->segs, ds->seg_count, sizeof *ds->segs, cmp_u64);
	return VSR_OK;
}

/* Removes every file of ours from the directory. */
static int dir_wipe(durable *d, const dir_scan *ds)
{
	for (uint32_t i = 0; i < ds->seg_count; i++) {
		char name[64];
		seg_name(name, sizeof name, ds->segs[i]);
		unlinkat(d->dirfd, name, 0);
	}
	if (d->sb_fd >= 0) close(d->sb_fd);
	d->sb_fd = -1;
	unlinkat(d->dirfd, SB_NAME, 0);
	return fsync(d->dirfd) == 0 ? 0 : -1;
}

/* The entries above the checkpoint, being replayed. */
typedef struct replay {
	uint64_t base;           /* op of entries[0] */
	vsr_entry *entries;
	uint32_t count, cap;
	bool gap;
} replay;

static void replay_cut(replay *r, uint64_t after)
{
	while (r->count > 0 && r->base + r->count - 1 > after) {
		r->count--;
		free((void *)r->entries[r->count].body);
	}
}

static int replay_entry(replay *r, const vsr_entry *e)
{
	if (e->op < r->base) return 0; /* at or below the checkpoint */
	replay_cut(r, e->op - 1);
	if (e->op != r->base + r->count) {
		r->gap = true;
		return 0;
	}
	if (r->count == r->cap) {
		uint32_t n = r->cap ? r->cap * 2 : 256;
		vsr_entry *p = realloc(r->entries, n * sizeof *p);
		if (p == NULL) return -1;
		r->entries = p;
		r->cap = n;
	}
	uint8_t *body = malloc(e->body_len ? e->body_len : 1);
	if (body == NULL) return -1;
	memcpy(body, e->body, e->body_len);
	r->entries[r->count] = *e;
	r->entries[r->count].body = body;
	r->count++;
	return 0;
}

static void replay_free(replay *r)
{
	replay_cut(r, 0);
	r->count = 0;
	free(r->entries);
	r->entries = NULL;
}

static uint8_t *read_file(int dirfd, const char *name, uint64_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return NULL;
	struct stat st;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) == 0 && (buf = malloc((size_t)st.st_size + 1)) != NULL) {
		uint64_t got = 0;
		while (got < (uint64_t)st.st_size) {
			ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
			if (n <= 0) break;
			got += (uint64_t)n;
		}
		*len = got;
	}
	close(fd);
	return buf;
}

/* The outcome of reading the log. */
typedef struct scan_result {
	log_pos cut;             /* where valid records end */
	bool corrupt;            /* a record before the durable end is bad */
	bool install_lost;       /* the log ends at an install whose superblock is not on disk */
	char why[256];
	uint64_t skipped;        /* entries at or below the checkpoint that fail their checksum */
	char skipped_first[200]; /* where the first of them is */
} scan_result;

/* Reads a segment front to back, in chunks, as far as the scan needs: a
 * 64 MiB preallocated segment costs only what its records use, and a read
 * error is an error with its errno (a mapping would die of SIGBUS). */
typedef struct seg_reader {
	int fd;
	uint8_t *buf;
	uint64_t len, cap, size;
	int err;
} seg_reader;

#define SR_CHUNK (UINT64_C(1) << 20)

static int sr_open(durable *d, uint64_t seq, seg_reader *r)
{
	char name[64];
	seg_name(name, sizeof name, seq);
	memset(r, 0, sizeof *r);
	r->fd = openat(d->dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (r->fd < 0 || fstat(r->fd, &st) != 0) {
		r->err = errno;
		if (r->fd >= 0) close(r->fd);
		r->fd = -1;
		return -1;
	}
	r->size = (uint64_t)st.st_size;
	return 0;
}

/* Bytes [off, off + n) of the segment, or NULL past its end or on a read
 * error (r->err). Valid until the next call. */
static const uint8_t *sr_at(seg_reader *r, uint64_t off, uint64_t n)
{
	if (off + n > r->size) return NULL;
	while (r->len < off + n) {
		uint64_t want = off + n - r->len;
		if (want < SR_CHUNK) want = SR_CHUNK;
		if (want > r->size - r->len) want = r->size - r->len;
		if (r->len + want > r->cap) {
			uint64_t cap = r->cap ? r->cap : SR_CHUNK;
			while (cap < r->len + want) cap *= 2;
			uint8_t *p = realloc(r->buf, cap);
			if (p == NULL) {
				r->err = ENOMEM;
				return NULL;
			}
			r->buf = p;
			r->cap = cap;
		}
		ssize_t got = pread(r->fd, r->buf + r->len, want, (off_t)r->len);
		if (got < 0 && errno == EINTR) continue;
		if (got <= 0) {
			r->err = got < 0 ? errno : EIO;
			return NULL;
		}
		r->len += (uint64_t)got;
	}
	return r->buf + off;
}

static void sr_close(seg_reader *r)
{
	if (r->fd >= 0) close(r->fd);
	free(r->buf);
	memset(r, 0, sizeof *r);
	r->fd = -1;
}

/* The furthest durable end that a mark written after (segment index i,
 * offset from) claims: the rest of the log is searched at every 8-byte
 * boundary for valid mark headers. A mark says what a completed fdatasync
 * covered, so a bad record before its claim was durable: corruption, not a
 * torn write. Only run when a bad record is found. */
static log_pos later_claim(durable *d, const dir_scan *ds, uint32_t i, uint64_t from)
{
	log_pos best = {0, 0};
	for (; i < ds->seg_count; i++) {
		seg_reader rd;
		if (sr_open(d, ds->segs[i], &rd) != 0) continue;
		const uint8_t *h;
		for (uint64_t off = from; (h = sr_at(&rd, off, REC_HEADER)) != NULL; off += 8) {
			if (get32(h) != REC_MAGIC || h[4] != REC_MARK ||
			    get64(h + 56) != XXH3_64bits_withSeed(h, 56, d->opts.cluster))
				continue;
			log_pos c = {.seg = get64(h + 24), .off = get64(h + 16)};
			if (pos_before(best, c)) best = c;
		}
		sr_close(&rd);
		from = 0;
	}
	return best;
}

/* Replays every segment's records into `r`. */
static int log_scan(durable *d, const dir_scan *ds, log_pos durable_end, replay *r,
		    scan_result *res)
{
	memset(res, 0, sizeof *res);
	res->cut = (log_pos){.seg = ds->seg_count ? ds->segs[0] : 1, .off = 0};
	for (uint32_t i = 0; i < ds->seg_count; i++) {
		uint64_t seq = ds->segs[i];
		if (i > 0 && seq != ds->segs[i - 1] + 1) {
			res->cut = (log_pos){.seg = ds->segs[i - 1] + 1, .off = 0};
			snprintf(res->why, sizeof res->why, "segment %016" PRIx64 " is missing",
				 ds->segs[i - 1] + 1);
			break;
		}
		char name[64];
		seg_name(name, sizeof name, seq);
		seg_reader rd;
		if (sr_open(d, seq, &rd) != 0) {
			errno = rd.err;
			return VSR_EINVAL;
		}
		if (segs_push(d, seq, 0) != 0) {
			sr_close(&rd);
			return VSR_ENOMEM;
		}
		uint64_t off = 0;
		bool ended = false;
		for (;;) {
			res->cut = (log_pos){.seg = seq, .off = off};
			const uint8_t *h = sr_at(&rd, off, REC_HEADER);
			if (h == NULL && rd.err != 0) break;
			if (h == NULL || get32(h) != REC_MAGIC ||
			    get64(h + 56) != XXH3_64bits_withSeed(h, 56, d->opts.cluster)) {
				snprintf(res->why, sizeof res->why, "%s offset %" PRIu64 ": bad record header",
					 name, off);
				break;
			}
			uint8_t type = h[4];
			if (type == REC_SEGMENT_END) {
				ended = true;
				break;
			}
			uint32_t body_len = get32(h + 8);
			if (type == REC_MARK) {
				off += REC_HEADER;
				continue;
			}
			if (type != REC_ENTRY && type != REC_TRUNCATE) {
				snprintf(res->why, sizeof res->why, "%s offset %" PRIu64 ": unknown record",
					 name, off);
				break;
			}
			if (type == REC_TRUNCATE) {
				uint64_t after = get64(h + 16);
				if (after >= r->base + r->count) {
					/* Above the log's head and above the superblock's
					 * checkpoint: the persist of an installed checkpoint
					 * (the log restarts after it), whose superblock, naming
					 * that checkpoint, is not the one on disk: a power cut
					 * after its records and before its superblock. It was
					 * never reported complete, nor was any persist after
					 * it (each completes in order, once its superblock is
					 * written), so nothing from here on was acknowledged:
					 * the log ends here, a torn tail whatever a later mark
					 * claims. Replayed, the entries after it left a gap
					 * above the checkpoint and reset the replica
					 * (powercut-minority seed 8092). */
					snprintf(res->why, sizeof res->why,
						 "%s offset %" PRIu64 ": a truncation after op %" PRIu64
						 ", above the log, of an installed checkpoint whose "
						 "superblock never reached the disk",
						 name, off, after);
					res->install_lost = true;
					break;
				}
				replay_cut(r, after < r->base ? 0 : after);
				off += REC_HEADER;
				continue;
			}
			h = sr_at(&rd, off, rec_size(body_len));
			if (h == NULL) {
				if (rd.err != 0) break;
				snprintf(res->why, sizeof res->why, "%s offset %" PRIu64 ": entry runs past the end",
					 name, off);
				break;
			}
			vsr_entry e = {
				.checksum = get64(h + 40),
				.parent = get64(h + 48),
				.op = get64(h + 16),
				.view = get64(h + 24),
				.timestamp = get64(h + 32),
				.request_count = get32(h + 12),
				.body_len = body_len,
				.body = h + REC_HEADER,
			};
			if (vsr_entry_checksum(&e) != e.checksum && e.op < r->base) {
				/* Its header verifies (so its op and length are
				 * true) and the checkpoint covers its op: replay
				 * would ignore it. Resetting the replica for it
				 * would cost a state transfer for nothing, and two
				 * replicas so damaged at once could not be repaired
				 * (each needs a majority of intact ones). */
				if (res->skipped++ == 0)
					snprintf(res->skipped_first, sizeof res->skipped_first,
						 "%s offset %" PRIu64 ": entry at op %" PRIu64, name, off,
						 e.op);
				off += rec_size(body_len);
				continue;
			}
			if (vsr_entry_checksum(&e) != e.checksum) {
				snprintf(res->why, sizeof res->why,
					 "%s offset %" PRIu64 ": entry at op %" PRIu64 " fails its checksum",
					 name, off, e.op);
				break;
			}
			if (replay_entry(r, &e) != 0) {
				sr_close(&rd);
				return VSR_ENOMEM;
			}
			if (e.op > d->segs[d->seg_count - 1].max_op) d->segs[d->seg_count - 1].max_op = e.op;
			off += rec_size(body_len);
		}
		int read_err = rd.err;
		sr_close(&rd);
		if (read_err != 0) {
			errno = read_err;
			return read_err == ENOMEM ? VSR_ENOMEM : VSR_EINVAL;
		}
		if (!ended) break;
		if (i + 1 == ds->seg_count) {
			/* Ended and no successor: the writer starts the next one. */
			res->cut = (log_pos){.seg = seq + 1, .off = 0};
		}
	}
	if (pos_before(res->cut, durable_end)) {
		res->corrupt = true;
	} else if (res->why[0] != '\0' && !res->install_lost) {
		uint32_t at = 0;
		while (at < ds->seg_count && ds->segs[at] != res->cut.seg) at++;
		log_pos claim = later_claim(d, ds, at, res->cut.off + 8);
		if (pos_before(res->cut, claim)) {
			res->corrupt = true;
			size_t n = strlen(res->why);
			snprintf(res->why + n, sizeof res->why - n, " (a later write's mark shows it was synced)");
		}
	}
	return VSR_OK;
}

/* Makes the directory a fresh start with the "unrecovered" mark: what a
 * replica whose disk cannot be trusted keeps until it has caught up. */
static int reset_unrecovered(durable *d, const dir_scan *ds, uint64_t old_seq, char *err,
			     size_t err_len)
{
	/* The mark first, above every earlier superblock: a crash anywhere
	 * below leaves a directory that says "unrecovered", never one that
	 * looks empty or intact. Then the old files go. */
	uint64_t next_seg = ds->seg_count ? ds->segs[ds->seg_count - 1] + 1 : 1;
	sb_disk sb = {.flags = SB_FLAG_UNRECOVERED, .replica = d->opts.replica};
	sb.core.cluster = d->opts.cluster;
	sb.end = (log_pos){.seg = next_seg, .off = 0};
	d->sb.seq = old_seq;
	d->sb_ever = true; /* the file exists: no directory sync needed for it */
	d->seg_count = 0;
	if (sb_write_both(d, &sb) != 0) goto failed;
	for (uint32_t i = 0; i < ds->seg_count; i++) {
		char name[64];
		seg_name(name, sizeof name, ds->segs[i]);
		unlinkat(d->dirfd, name, 0);
	}
	if (segment_create(d, next_seg, d->segment_size) != 0) goto failed;
	d->synced = d->pos;
	memset(&d->durable, 0, sizeof d->durable);
	d->unrecovered = true;
	/* No history: the core starts unjoined and is repaired from the others. */
	d->durable.superblock.cluster = d->opts.cluster;
	return VSR_OK;
failed:
	storage_errf(err, err_len, "%s", d->error[0] ? d->error : "storage: cannot reset");
	return VSR_EINVAL;
}

/* The end of the last non-zero byte of segment `fd` at or after `from`
 * (the whole segment when it cannot be read: then all of it is zeroed). */
static uint64_t segment_dirty_end(int fd, uint64_t from, uint64_t size)
{
	static uint8_t chunk[65536];
	uint64_t end = size;
	while (end > from) {
		uint64_t n = end - from < sizeof chunk ? end - from : sizeof chunk;
		if (pread(fd, chunk, (size_t)n, (off_t)(end - n)) != (ssize_t)n) return size;
		for (uint64_t k = n; k > 0; k--)
			if (chunk[k - 1] != 0) return end - n + k;
		end -= n;
	}
	return from;
}

/* Continues after the valid records: in the segment that holds the cut
 * (its torn tail zeroed), or, when that one is full, after a segment-end
 * record in a new one; later segments are dropped. */
static int writer_resume(durable *d, const dir_scan *ds, log_pos cut)
{
	for (uint32_t i = 0; i < ds->seg_count; i++) {
		if (ds->segs[i] <= cut.seg) continue;
		char name[64];
		seg_name(name, sizeof name, ds->segs[i]);
		unlinkat(d->dirfd, name, 0);
	}
	while (d->seg_count > 0 && d->segs[d->seg_count - 1].seq > cut.seg) d->seg_count--;
	if (d->seg_count == 0 || d->segs[d->seg_count - 1].seq != cut.seg) {
		/* The cut is at the start of a segment that does not exist yet. */
		if (fsync(d->dirfd) != 0) {
			fail(d, "storage %s: cannot sync the directory: %s", d->dir, strerror(errno));
			return -1;
		}
		return segment_create(d, cut.seg, d->segment_size);
	}
	{
		char name[64];
		seg_name(name, sizeof name, cut.seg);
		int fd = openat(d->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			fail(d, "storage %s: cannot open %s: %s", d->dir, name, strerror(errno));
			return -1;
		}
		struct stat st;
		uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		if (cut.off + 2 * REC_HEADER <= size) {
			/* Go on in this segment (a restart costs no new 64 MiB file):
			 * zero whatever a torn group left past the cut, so that no
			 * stale record can ever follow the new ones, and sync, which
			 * also makes every record before the cut durable. */
			uint64_t dirty = segment_dirty_end(fd, cut.off, size);
			int rc = 0;
			for (uint64_t at = cut.off; rc == 0 && at < dirty; at += sizeof zeros) {
				uint64_t n = dirty - at < sizeof zeros ? dirty - at : sizeof zeros;
				rc = write_all(d, fd, zeros, (size_t)n, at, name);
			}
			if (rc == 0) rc = sync_fd(d, fd, name);
			if (rc != 0) {
				close(fd);
				return -1;
			}
			d->seg_fd = fd;
			d->seg_cap = size;
			d->zeroed = dirty;
			d->pos = cut;
			return 0;
		}
		uint8_t h[REC_HEADER];
		rec_header(h, REC_SEGMENT_END, NULL, 0, d->opts.cluster);
		int rc = write_all(d, fd, h, sizeof h, cut.off, name);
		if (rc == 0) rc = sync_fd(d, fd, name);
		close(fd);
		if (rc != 0) return -1;
	}
	if (fsync(d->dirfd) != 0) {
		fail(d, "storage %s: cannot sync the directory: %s", d->dir, strerror(errno));
		return -1;
	}
	return segment_create(d, cut.seg + 1, d->segment_size);
}

static int worker_start(durable *d, char *err, size_t err_len)
{
	spare_ask(d);
	d->sb_written_ms = mono_ms();
	d->group_us = mono_us();
	if (pthread_create(&d->thread, NULL, worker_main, d) != 0) {
		storage_errf(err, err_len, "storage: cannot start the writer thread");
		return VSR_ENOMEM;
	}
	d->thread_started = true;
	d->loaded = true;
	return VSR_OK;
}

int storage_durable_load(vsr_storage *s, const vsr_durable **out, char *err, size_t err_len)
{
	durable *d = D(s);
	assert(!d->loaded);
	*out = NULL;
	if (err != NULL && err_len > 0) err[0] = '\0';
	dir_scan ds;
	int rc = dir_list(d, &ds, err, err_len);
	if (rc != VSR_OK) return rc;
	sb_disk sb = {0};
	bool have_sb = false;
	char why[300] = "";
	if (ds.has_sb && !d->opts.fresh) {
		uint64_t len = 0;
		uint8_t *buf = read_file(d->dirfd, SB_NAME, &len);
		if (buf == NULL) {
			storage_errf(err, err_len, "storage %s: cannot read the superblock: %s", d->dir,
				     strerror(errno));
			free(ds.segs);
			return VSR_EINVAL;
		}
		unsigned bad;
		bool ok = sb_pick(buf, len, &sb, &bad);
		free(buf);
		if (ok) {
			have_sb = true;
			/* One copy bad: the other serves (a torn write loses
			 * nothing), but a damaged disk is worth a line. */
			if (bad < 2 && len >= 2 * SB_COPY_SIZE)
				storage_errf(err, err_len,
					     "storage %s: superblock copy %u (bytes %u-%u) fails its "
					     "checksum (torn by a crash while it was written, or damaged "
					     "on disk); using copy %u (write %" PRIu64 "), nothing is lost",
					     d->dir, bad, bad * SB_COPY_SIZE, (bad + 1) * SB_COPY_SIZE - 1,
					     1 - bad, sb.seq);
		} else if (len >= 2 * SB_COPY_SIZE) {
			snprintf(why, sizeof why, "both superblock copies are corrupt");
		}
		/* Else the first superblock write (copy 0, then copy 1, which
		 * makes the file whole) never finished: nothing was acknowledged. */
	}
	if (have_sb && sb.core.cluster != d->opts.cluster) {
		storage_errf(err, err_len,
			     "storage %s: the data belongs to cluster %" PRIu64 ", the config names cluster "
			     "%" PRIu64 "; refusing to start",
			     d->dir, sb.core.cluster, d->opts.cluster);
		free(ds.segs);
		return VSR_EINVAL;
	}
	if (have_sb && sb.replica != d->opts.replica) {
		/* A directory copied or mounted under another index would vote
		 * with another replica's log (protocol.md: quorum intersection):
		 * committed operations could be lost. */
		storage_errf(err, err_len,
			     "storage %s: the data was written by replica %" PRIu64 ", this is replica %u "
			     "(--replica %u); each replica needs its own directory; refusing to start",
			     d->dir, sb.replica + 1, d->opts.replica + 1u, d->opts.replica + 1u);
		free(ds.segs);
		return VSR_EINVAL;
	}
	if (d->opts.fresh || (!have_sb && why[0] == '\0')) {
		/* Nothing was ever acknowledged from this directory (no
		 * superblock was ever written), or the operator starts anew. */
		d->seg_count = 0;
		if (dir_wipe(d, &ds) != 0 || segment_create(d, 1, d->segment_size) != 0) {
			storage_errf(err, err_len, "%s", d->error[0] ? d->error : "storage: cannot clear the directory");
			free(ds.segs);
			return VSR_EINVAL;
		}
		d->synced = d->pos;
		free(ds.segs);
		return worker_start(d, err, err_len);
	}
	if (have_sb && (sb.flags & SB_FLAG_UNRECOVERED))
		snprintf(why, sizeof why, "it was being repaired when it stopped");

	replay r = {.base = have_sb ? sb.core.checkpoint_op + 1 : 1};
	scan_result res = {0};
	if (why[0] == '\0') {
		rc = log_scan(d, &ds, sb.end, &r, &res);
		if (rc != VSR_OK) {
			storage_errf(err, err_len, "storage %s: cannot read the log: %s", d->dir, rc == VSR_ENOMEM ? "out of memory" : strerror(errno));
			replay_free(&r);
			free(ds.segs);
			return rc;
		}
		if (res.corrupt)
			snprintf(why, sizeof why, "%s, before the end of what was durable", res.why);
		else if (r.gap)
			snprintf(why, sizeof why, "the log has a gap above the checkpoint");
	}
	/* The chain from the checkpoint (or the root) through every entry. */
	uint64_t parent = sb.core.checkpoint_op > 0 ? sb.core.checkpoint_checksum
						    : vsr_root_checksum(d->opts.cluster);
	for (uint32_t i = 0; why[0] == '\0' && i < r.count; i++) {
		if (r.entries[i].parent != parent) {
			snprintf(why, sizeof why, "the hash chain breaks at op %" PRIu64,
				 r.entries[i].op);
			break;
		}
		parent = r.entries[i].checksum;
	}
	if (why[0] == '\0' && d->opts.check != NULL && sb.core.history != 0) {
		char note[sizeof why - 8];
		note[0] = '\0';
		rc = d->opts.check(d->opts.check_arg, &sb.core, note, sizeof note);
		if (rc < 0) {
			storage_errf(err, err_len, "storage %s: %s", d->dir, note);
			replay_free(&r);
			free(ds.segs);
			return VSR_EINVAL;
		}
		if (rc > 0)
			snprintf(why, sizeof why, "%s", note);
	}
	if (why[0] != '\0') {
		/* Something that may have been committed is unreadable: come back
		 * knowing nothing and take it from the others, never drop it. */
		storage_errf(err, err_len, "storage %s: %s: this replica's state cannot be trusted; "
			     "it rejoins as amnesiac and is repaired from the other replicas",
			     d->dir, why);
		replay_free(&r);
		char note[512];
		rc = reset_unrecovered(d, &ds, have_sb ? sb.seq : 0, note, sizeof note);
		free(ds.segs);
		if (rc != VSR_OK) storage_errf(err, err_len, "%s", note);
		if (rc != VSR_OK) return rc;
		*out = &d->durable;
		return worker_start(d, err, err_len);
	}
	if (res.skipped > 0) {
		/* Said, as a damaged superblock copy is (after it, if both). */
		size_t n = err != NULL && err_len > 0 ? strlen(err) : 0;
		if (err != NULL && n + 1 < err_len)
			snprintf(err + n, err_len - n,
				 "%sstorage %s: %s fails its checksum%s (damaged on disk); the checkpoint "
				 "at op %" PRIu64 " covers %s, so it is not needed and nothing is lost",
				 n ? "; " : "", d->dir, res.skipped_first,
				 res.skipped > 1 ? " (and more such entries)" : "",
				 sb.core.checkpoint_op, res.skipped > 1 ? "them" : "it");
	}
	d->sb = sb;
	d->sb_ever = true;
	if (writer_resume(d, &ds, res.cut) == 0) {
		/* The segment holding the cut was synced with its end record; the
		 * earlier ones at their rotation. */
		d->synced = d->pos;
	} else {
		storage_errf(err, err_len, "%s", d->error);
		replay_free(&r);
		free(ds.segs);
		return VSR_EINVAL;
	}
	free(ds.segs);
	d->loaded_entries = r.entries;
	memset(&d->durable, 0, sizeof d->durable);
	d->durable.superblock = sb.core;
	d->durable.entries = r.entries;
	d->durable.entry_count = r.count;
	d->submitted = sb.core;
	*out = &d->durable;
	return worker_start(d, err, err_len);
}

/* ------------------------------------------------------------------------ */
/* Submit, close.                                                            */

int storage_durable_submit(vsr_storage *s, const vsr_persist *p)
{
	durable *d = D(s);
	assert(d->loaded);
	if (d->closing) return VSR_EINVAL;
	if (d->stats.pending >= VSR_STORAGE_PENDING_MAX) return VSR_ETOOBIG;
	job *j = calloc(1, sizeof *j);
	if (j == NULL) return VSR_ENOMEM;
	size_t len = p->has_truncate ? REC_HEADER : 0;
	for (uint32_t i = 0; i < p->entry_count; i++) len += rec_size(p->entries[i].body_len);
	if (len > 0 && (j->recs = malloc(len)) == NULL) {
		free(j);
		return VSR_ENOMEM;
	}
	size_t off = 0;
	if (p->has_truncate) {
		rec_header(j->recs, REC_TRUNCATE, NULL, p->truncate_after, d->opts.cluster);
		off += REC_HEADER;
		d->stats.truncations++;
	}
	for (uint32_t i = 0; i < p->entry_count; i++) {
		const vsr_entry *e = &p->entries[i];
		uint8_t *rec = j->recs + off;
		rec_header(rec, REC_ENTRY, e, e->op, d->opts.cluster);
		memcpy(rec + REC_HEADER, e->body, e->body_len);
		size_t sz = rec_size(e->body_len);
		memset(rec + REC_HEADER + e->body_len, 0, sz - REC_HEADER - e->body_len);
		off += sz;
		d->stats.entry_bytes += e->body_len;
	}
	d->stats.entries += p->entry_count;
	/* Checkpoints are the state machine's: count the ones a superblock names. */
	if (p->superblock.checkpoint_op != d->submitted.checkpoint_op) {
		d->stats.checkpoints++;
		d->stats.checkpoint_bytes += p->superblock.checkpoint_size;
	}
	j->recs_len = len;
	j->id = p->id;
	j->truncate = p->has_truncate;
	j->sb = p->superblock;
	d->submitted = p->superblock;

	/* With the writer idle the group may be written on the loop itself
	 * (vsr_storage_flush), which spares the two thread wake-ups of the
	 * worker's round trip. Once one persist is held, every later one of
	 * the group is held too: they complete in order. (The caller's
	 * inline_ok is not asked under the lock.) */
	bool hold = d->held != NULL;
	if (!hold && !d->delivering && d->opts.inline_ok != NULL &&
	    mono_ms() >= d->inline_off_until_ms) {
		pthread_mutex_lock(&d->mu);
		bool writer_idle = !d->writer_busy && d->queue == NULL;
		pthread_mutex_unlock(&d->mu);
		hold = writer_idle && d->opts.inline_ok(d->opts.data, p);
	}
	pthread_mutex_lock(&d->mu);
	if (hold) {
		if (d->held_tail) d->held_tail->next = j;
		else d->held = j;
		d->held_tail = j;
	} else {
		if (d->queue_tail) d->queue_tail->next = j;
		else d->queue = j;
		d->queue_tail = j;
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	d->stats.pending++;
	if (d->stats.pending > d->stats.pending_max) d->stats.pending_max = d->stats.pending;
	return VSR_OK;
}

bool storage_durable_flush(vsr_storage *s)
{
	durable *d = D(s);
	if (d->held == NULL || d->closing) return false;
	job *group = d->held;
	d->held = d->held_tail = NULL;
	pthread_mutex_lock(&d->mu);
	if (d->writer_busy || d->queue != NULL) {
		/* The worker started writing (a lagging superblock update):
		 * it writes the group after that. */
		if (d->queue_tail) d->queue_tail->next = group;
		else d->queue = group;
		job *t = group;
		while (t->next != NULL) t = t->next;
		d->queue_tail = t;
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
		return false;
	}
	d->writer_busy = true;
	bool recovered = d->want_recovered;
	d->want_recovered = false;
	pthread_mutex_unlock(&d->mu);

	uint64_t t0 = mono_us();
	d->stats.inline_groups++;
	if (!d->failed) group_write(d, group, recovered);
	group_done(d, group, false);
	/* A slow disk must not stall the loop: its groups go to the worker
	 * for a while. */
	if (d->group_us - t0 >= INLINE_SLOW_MS * 1000u)
		d->inline_off_until_ms = d->group_us / 1000u + INLINE_OFF_MS;

	pthread_mutex_lock(&d->mu);
	d->writer_busy = false;
	/* The lagging superblock update is the worker's: it needs a deadline. */
	if (d->queue != NULL || (d->lag_dirty && d->worker_sleeping && !d->failed))
		pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	/* Delivered here, not through the async handle: that would cost an
	 * eventfd write and one more loop iteration before the PREPARE_OK or
	 * the commit this sync was holding up. Earlier groups of the worker,
	 * if any are waiting for async_cb, go first (in order). */
	deliver(d);
	return true;
}

static void close_cb(uv_handle_t *h)
{
	durable *d = h->data;
	vsr_storage_close_cb cb = d->close_cb;
	for (job *j = d->held; j != NULL;) {
		job *n = j->next;
		job_free(j);
		j = n;
	}
	for (job *j = d->queue; j != NULL;) {
		job *n = j->next;
		job_free(j);
		j = n;
	}
	for (job *j = d->done; j != NULL;) {
		job *n = j->next;
		job_free(j);
		j = n;
	}
	if (d->seg_fd >= 0) close(d->seg_fd);
	if (d->sb_fd >= 0) close(d->sb_fd);
	vsr_reaper_stop(d->reaper); /* the rest at the next start */
	vsr_spare_stop(d->spare);   /* a spare not taken: removed at the next start */
	if (d->dirfd >= 0) close(d->dirfd);
	if (d->lock_fd >= 0) close(d->lock_fd);
	for (uint32_t i = 0; i < d->durable.entry_count && d->loaded_entries; i++)
		free((void *)d->loaded_entries[i].body);
	free(d->loaded_entries);
	free(d->segs);
	free(d->stage);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	if (cb != NULL) cb((vsr_storage *)(void *)d);
	free(d->dir);
	free(d);
}

void storage_durable_close(vsr_storage *s, vsr_storage_close_cb cb)
{
	durable *d = D(s);
	assert(!d->closing);
	d->closing = true;
	d->close_cb = cb;
	if (d->thread_started) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->thread, NULL);
		/* A clean stop leaves the superblock current: the next start then
		 * trusts every record, even one corrupted later in the last group. */
		if (!d->failed && d->lag_dirty) sb_write_lag(d);
	}
	uv_close((uv_handle_t *)&d->async, close_cb);
}

bool storage_durable_reclaim(vsr_storage *s)
{
	durable *d = D(s);
	vsr_reaper *r = d->reaper;
	if (d->closing || r == NULL || vsr_reaper_idle(r))
		return false;
	vsr_reaper_flush(r);
	return true;
}

void *storage_durable_data(const vsr_storage *s)
{
	return D(s)->opts.data;
}

const vsr_storage_stats *storage_durable_stats_get(const vsr_storage *s)
{
	return &D(s)->stats;
}

const vsr_superblock *storage_durable_superblock(const vsr_storage *s)
{
	return &D(s)->submitted;
}

const char *storage_durable_error(const vsr_storage *s)
{
	durable *d = D(s);
	/* Written once under the lock, before the failed status is delivered. */
	return d->error;
}

void storage_durable_recovered(vsr_storage *s)
{
	durable *d = D(s);
	if (!d->unrecovered) return;
	d->unrecovered = false;
	pthread_mutex_lock(&d->mu);
	d->want_recovered = true;
	pthread_mutex_unlock(&d->mu);
}

uint8_t storage_durable_config(const vsr_storage *s, uint64_t parts[VSR_STORAGE_CONFIG_MAX])
{
	const durable *d = D(s);
	/* Called on the loop before the first submit: the worker is idle. */
	memcpy(parts, d->sb.config, sizeof d->sb.config);
	return d->sb.config_count;
}

int storage_durable_set_config(vsr_storage *s, const uint64_t *parts, uint8_t count)
{
	durable *d = D(s);
	assert(d->loaded && count <= VSR_STORAGE_CONFIG_MAX);
	pthread_mutex_lock(&d->mu);
	/* Before the first submit nothing is queued and no update lags: the
	 * writer state is free, and taken here as vsr_storage_flush() takes it. */
	assert(!d->writer_busy && d->queue == NULL && !d->lag_dirty);
	d->writer_busy = true;
	pthread_mutex_unlock(&d->mu);
	sb_disk sb = d->sb;
	bool same = sb.config_count == count &&
		    memcmp(sb.config, parts, count * sizeof *parts) == 0;
	sb.config_count = count;
	memset(sb.config, 0, sizeof sb.config);
	memcpy(sb.config, parts, count * sizeof *parts);
	int rc = VSR_OK;
	if (!d->sb_ever || same)
		d->sb = sb; /* the first group writes it */
	else if (d->failed || sb_write_both(d, &sb) != 0)
		rc = VSR_EINVAL;
	pthread_mutex_lock(&d->mu);
	d->writer_busy = false;
	pthread_mutex_unlock(&d->mu);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Reading a stopped replica's superblock (vsrhost --check-store).          */

int vsr_storage_read_superblock(const char *dir, vsr_superblock *out, bool *unrecovered,
				char *err, size_t err_len)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t len = 0;
	uint8_t *buf = dirfd >= 0 ? read_file(dirfd, SB_NAME, &len) : NULL;
	int e = errno;
	if (dirfd >= 0) close(dirfd);
	if (buf == NULL) {
		storage_errf(err, err_len, "cannot read %s/%s: %s", dir, SB_NAME, strerror(e));
		return -1;
	}
	sb_disk sb;
	unsigned bad;
	bool ok = sb_pick(buf, len, &sb, &bad);
	free(buf);
	if (!ok) {
		storage_errf(err, err_len, "%s/%s: %s", dir, SB_NAME,
			     len >= 2 * SB_COPY_SIZE ? "both copies fail their checksums"
						     : "never written whole (no state)");
		return -1;
	}
	*out = sb.core;
	*unrecovered = (sb.flags & SB_FLAG_UNRECOVERED) != 0;
	return 0;
}
