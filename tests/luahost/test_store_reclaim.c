/* test_store_reclaim.c - vsr.store's reservation on a disk whose free space
 * is still held by the log's reaper (issue 8): the map's room on disk is
 * checked against the free space at each checkpoint's commit (map_reserve),
 * but the log's pruned segments give their space back slowly, a slice at a
 * time with pauses (src/storage/reaper.h). A nearly full disk then stopped
 * the replica (exit 74) while the room it needed was on its way. Now the
 * store asks first for that space at once (vsrh_sm_on_disk_full, wired to
 * vsr_storage_reclaim as vsrhost does) and tries again.
 *
 * On a 200 MiB tmpfs (root; skipped with 77 otherwise), in a child each: a
 * durable store gets about 49 MiB of puts (16 KiB values) inside its first
 * reservation (64 MiB); then a trash file, as a stop half way through a
 * segment's removal leaves one, takes all but 32 MiB of the free space:
 * 4 GiB long, its first part allocated, so the reaper, which shrinks it from
 * the end, needs seconds of pauses before it frees anything. The log's
 * storage opens on the same tmpfs (its load hands the file to the reaper),
 * and the checkpoint's commit wants about 77 MiB reserved: more than the
 * free space, less than the free space and the trash together.
 *   - unwired (no on_disk_full): exit 74, "the disk is full": the disk is
 *     really too full without the reaper's space (so the test can fail);
 *   - wired: the checkpoint commits and syncs, the trash file is gone, and
 *     the reclaim ran once.
 *
 * The same at open: the trash file takes the free space before anything is
 * put, and the store opens (fresh) on the same disk; its map's first
 * reservation (64 MiB, with as much left for the log) does not fit.
 *   - unwired: the store falls back to pages written with pwrite and says
 *     so: its file has no room reserved, the trash file is still there (so
 *     the test can fail);
 *   - wired through vsrh_sm_options.disk_full (as vsrhost does): the
 *     reservation is made, the trash file is gone, one reclaim. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "kv_op.h"
#include "store_test.h"
#include "vsr_storage.h"

#define PUTS 2500            /* of 16 KiB: about 49 MiB of pages */
#define LEFT_FREE (32u << 20) /* free space left beside the trash file */
#define TRASH "trash-0000000000000001"

static int reclaims;

static bool reclaim_cb(void *arg)
{
	reclaims++;
	return vsr_storage_reclaim(arg);
}

static void persisted_cb(vsr_storage *s, uint64_t id, int status)
{
	(void)s;
	(void)id;
	(void)status;
}

static bool closed;
static void closed_cb(vsr_storage *s)
{
	(void)s;
	closed = true;
}

/* The trash file in `log` (created): all the free space of the disk at
 * root but LEFT_FREE, at its head, 4 GiB long. Returns the bytes it holds,
 * or 0 having said why. */
static uint64_t fill_with_trash(const char *root, const char *log, const char *trash)
{
	struct statvfs vfs;
	if (mkdir(log, 0755) != 0 || statvfs(root, &vfs) != 0) {
		printf("%s: %s\n", log, strerror(errno));
		return 0;
	}
	uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (free_bytes < LEFT_FREE + (64u << 20)) {
		printf("only %llu bytes free\n", (unsigned long long)free_bytes);
		return 0;
	}
	int fd = open(trash, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || posix_fallocate(fd, 0, (off_t)(free_bytes - LEFT_FREE)) != 0 ||
	    ftruncate(fd, (off_t)4 << 30) != 0) {
		printf("%s: %s\n", trash, strerror(errno));
		return 0;
	}
	close(fd);
	return free_bytes - LEFT_FREE;
}

/* The log's storage on loop in `log` (small segments: its own
 * preallocation needs little); its load hands the trash file to the
 * reaper. NULL having said why. */
static vsr_storage *open_log(uv_loop_t *loop, const char *log)
{
	vsr_storage_options o = {.loop = loop, .kind = VSR_STORAGE_DURABLE, .dir = log,
				 .cluster = 7, .replica = 0, .persisted_cb = persisted_cb,
				 .segment_size = 1u << 20};
	vsr_storage *st = NULL;
	char err[512] = "";
	const vsr_durable *d;
	if (vsr_storage_open(&o, &st, err, sizeof err) != VSR_OK ||
	    vsr_storage_load(st, &d, err, sizeof err) != VSR_OK) {
		printf("storage: %s\n", err);
		return NULL;
	}
	return st;
}

static void close_log(uv_loop_t *loop, vsr_storage *st)
{
	vsr_storage_close(st, closed_cb);
	while (!closed)
		uv_run(loop, UV_RUN_ONCE);
	uv_loop_close(loop);
}

/* A child's places under root: the store, the log, the trash file in it. */
typedef struct child_paths {
	char store[400], log[400], trash[500];
} child_paths;

static void paths_under(const char *root, child_paths *p)
{
	snprintf(p->store, sizeof p->store, "%s/store", root);
	snprintf(p->log, sizeof p->log, "%s/log", root);
	snprintf(p->trash, sizeof p->trash, "%s/%s", p->log, TRASH);
}

/* The trash file filling the disk under root (its bytes into *trash_bytes),
 * then the log's storage on the same disk, on loop. NULL: either failed. */
static vsr_storage *trash_and_log(const char *root, const child_paths *p, uv_loop_t *loop,
				  uint64_t *trash_bytes)
{
	*trash_bytes = fill_with_trash(root, p->log, p->trash);
	if (*trash_bytes == 0)
		return NULL;
	uv_loop_init(loop);
	return open_log(loop, p->log);
}

/* The child for the reservation at open: see the top. 0: reserved with
 * one reclaim; 3: not reserved, the trash file still there; 1: anything
 * else. */
static int child_open(const char *root, bool wired)
{
	child_paths p;
	paths_under(root, &p);
	const char *store = p.store, *trash = p.trash;
	char data[500];
	snprintf(data, sizeof data, "%s/db/data.mdb", store);
	vsrh_config cfg;
	uv_loop_t loop;
	uint64_t trash_bytes;
	vsr_storage *st = st_config(&cfg) == 0 ? trash_and_log(root, &p, &loop, &trash_bytes) : NULL;
	if (st == NULL)
		return 1;
	vsrh_sm_options o = vsrh_sm_options_at(&cfg, store, true, true);
	if (wired) {
		o.disk_full = reclaim_cb;
		o.disk_full_arg = st;
	}
	vsrh_sm *sm = NULL;
	char err[512] = "";
	if (vsrh_sm_open(&sm, &o, err, sizeof err) != VSR_OK) {
		printf("open: %s\n", err);
		return 1;
	}
	struct stat dst, tst;
	bool trash_gone = stat(trash, &tst) != 0;
	uint64_t held = stat(data, &dst) == 0 ? (uint64_t)dst.st_blocks * 512 : 0;
	bool reserved = held >= (64u << 20);
	printf("  open, %s: %.1f MiB on disk for the store's file (%s); %d reclaim(s); the trash "
	       "file %s\n",
	       wired ? "wired" : "unwired", (double)held / (1 << 20),
	       reserved ? "its map reserved" : "nothing reserved: pages written with pwrite",
	       reclaims, trash_gone ? "gone" : "still there");
	int status = reserved && trash_gone && reclaims == 1 ? 0
		     : !reserved && !trash_gone && reclaims == 0 ? 3
								 : 1;
	close_log(&loop, st);
	vsrh_sm_destroy(sm);
	vsrh_config_free(&cfg);
	fflush(stdout); /* the child ends with _exit */
	return status;
}

/* The child for a checkpoint's reservation: see the top. Returns its exit
 * status (a failed reservation exits 74 from inside the store). */
static int child(const char *root, bool wired)
{
	child_paths p;
	paths_under(root, &p);
	const char *store = p.store, *trash = p.trash;
	vsrh_config cfg;
	if (st_config(&cfg) != 0)
		return 1;
	vsrh_sm *sm = st_create(&cfg, store, true, true);
	if (sm == NULL)
		return 1;
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	vsr_buf b = {0}, reply = {0};
	for (int i = 0; i < PUTS; i++) {
		kv_put_op(&b, i, 16384, 0);
		vsr_apply_ctx a = {.op = (uint64_t)i + 1, .session = 1, .request = (uint64_t)i + 1};
		reply.len = 0;
		if (m.apply(m.ctx, &a, b.data, b.len, &reply) != VSR_REPLY_OK) {
			printf("put %d refused\n", i);
			return 1;
		}
	}
	/* The trash file, and the log's storage on the same disk. */
	uv_loop_t loop;
	uint64_t trash_bytes;
	vsr_storage *st = trash_and_log(root, &p, &loop, &trash_bytes);
	if (st == NULL)
		return 1;
	if (wired)
		vsrh_sm_on_disk_full(sm, reclaim_cb, st);
	struct statvfs vfs;
	statvfs(root, &vfs);
	printf("  %s: %.1f MiB free, the trash file holds %.1f MiB; checkpoint at op %d\n",
	       wired ? "wired" : "unwired", (double)vfs.f_bavail * vfs.f_frsize / (1 << 20),
	       (double)trash_bytes / (1 << 20), PUTS);
	fflush(stdout);
	vsr_checkpoint cp = {.op = PUTS, .checksum = PUTS * 31u, .timestamp = PUTS};
	static const uint8_t meta[8];
	int rc = m.checkpoint_take(m.ctx, &cp, meta, sizeof meta);
	vsrh_sm_on_checkpoint_durable(sm, NULL, NULL); /* its sync, waited for */
	struct stat sst;
	bool trash_gone = stat(trash, &sst) != 0;
	statvfs(root, &vfs);
	printf("  checkpoint %s; %d reclaim(s); the trash file %s; %.1f MiB free\n",
	       rc == VSR_PENDING || rc == VSR_OK ? "committed and synced" : "refused", reclaims,
	       trash_gone ? "gone" : "still there", (double)vfs.f_bavail * vfs.f_frsize / (1 << 20));
	int status = (rc == VSR_PENDING || rc == VSR_OK) && trash_gone && reclaims == 1 &&
				     st_synced_op(store) == PUTS
			     ? 0
			     : 1;
	close_log(&loop, st);
	vsrh_sm_destroy(sm);
	vsrh_config_free(&cfg);
	free(b.data);
	free(reply.data);
	fflush(stdout); /* the child ends with _exit */
	return status;
}

/* Runs child(root, wired), or child_open, in a process on a fresh tmpfs
 * at root; its exit status, and its stderr (the store's sentence) in text. */
static int run(const char *root, bool at_open, bool wired, char *text, size_t len)
{
	umount2(root, MNT_DETACH);
	if (mount("tmpfs", root, "tmpfs", 0, "size=200m") != 0) {
		printf("cannot mount the tmpfs again: %s\n", strerror(errno));
		return -1;
	}
	char errlog[400];
	snprintf(errlog, sizeof errlog, "%s.stderr", root);
	pid_t pid = st_child_fork(errlog);
	if (pid == 0) {
		int rc = at_open ? child_open(root, wired) : child(root, wired);
		fflush(NULL); /* stderr, a file now */
		_exit(rc);
	}
	int status = -1;
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	FILE *f = fopen(errlog, "r");
	size_t n = f ? fread(text, 1, len - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	unlink(errlog);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void)
{
	char root[] = "/tmp/vsr-store-reclaim-XXXXXX";
	int mounted = st_tmpfs(root, "200m");
	if (mounted != 0)
		return mounted;
	char text[2048];
	int st = run(root, false, false, text, sizeof text);
	CHECK(st == 74 && strstr(text, "disk is full") != NULL,
	      "unwired: exit %d, not 74 for a full disk: the test's disk is not too full without "
	      "the reaper's space; stderr: %s", st, text);
	if (st == 74)
		printf("  unwired: exit 74: %s", text);
	st = run(root, false, true, text, sizeof text);
	CHECK(st == 0, "wired: exit %d (the checkpoint must commit once the reaper's space is "
		       "freed); stderr: %s", st, text);
	st = run(root, true, false, text, sizeof text);
	CHECK(st == 3, "open, unwired: status %d, not 3: the disk is not too full for the map's "
		       "first reservation without the reaper's space; stderr: %s", st, text);
	CHECK(strstr(text, "no room on disk to reserve") != NULL,
	      "open, unwired: the store says it runs without a reservation; stderr: %s", text);
	st = run(root, true, true, text, sizeof text);
	CHECK(st == 0, "open, wired: status %d (the map's first reservation must be made once "
		       "the reaper's space is freed); stderr: %s", st, text);
	umount2(root, MNT_DETACH);
	rmdir(root);
	if (failures == 0)
		printf("store reclaim: passed\n");
	return failures ? 1 : 0;
}
