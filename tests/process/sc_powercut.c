/* sc_powercut.c - process-test scenario: power cuts of every replica's disk at once.
 *
 * kill -9 keeps the page cache: what a replica wrote and never synced still
 * reaches the disk. A power cut does not. Here each replica's data
 * directory is its own ext4 filesystem on a loop device (an image file in
 * the test's directory), and a cut is the filesystem's shutdown ioctl
 * without a log flush (FS_IOC_SHUTDOWN, EXT4_GOING_FLAGS_NOLOGFLUSH, as
 * xfstests' godown): from that instant nothing more reaches the image,
 * dirty pages never written back are dropped, the journal's running
 * transaction is lost, and every later write, fsync or msync fails with
 * EIO. Everything synced before is on the image, as on a disk after a power
 * cut. Before the cut the driver may write back a random part of what is
 * dirty (sync_file_range), as the kernel's flusher may at any moment: for
 * example LMDB's new meta page without the pages it names.
 *
 * What it does not model: a disk whose volatile write cache loses writes
 * the kernel already handed to it and were not flushed (the loop device's
 * backing file keeps them). dm-flakey or dm-log-writes would; this kernel
 * has no device-mapper (docs/storage.md, "Power cuts, for real").
 *
 * Happy path: a durable 3-replica cluster under write load, a checkpoint
 * every 8 ops (so cuts land while a checkpoint's sync runs and writes are
 * held in memory); every replica's disk cut at once; the replicas killed;
 * the filesystems unmounted and mounted again (journal replay); the
 * replicas started again as after a reboot (VSRH_BOOT_ID); in a quarter of
 * the cuts the power goes again while they start (replaying, checking or
 * rolling back); every acknowledged write read back and the digests equal;
 * --trials cuts in a row. Each filesystem runs in ext4's ordered or
 * writeback data mode, from the seed. Failure modes: a lost write, a replica that finds its durable state
 * damaged ("cannot be trusted") after a cut, or replicas that do not
 * converge, fail the test; no root, no loop device, no ext4 or no shutdown
 * ioctl skip it (exit 77) with the reason.
 *
 * Cleanup: the mounts live in a mount namespace of the driver's own, with
 * loop devices that detach when unmounted (mount -o loop sets autoclear),
 * so even a driver killed with SIGKILL leaves no mount and no loop device
 * behind once its children are gone; every normal and failing exit
 * unmounts first. */
#define _GNU_SOURCE /* sync_file_range, unshare */
#include "harness.h"
#include "writers.h"
#include "powercut.h"

#include <dirent.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>

#ifndef FS_IOC_SHUTDOWN
#define FS_IOC_SHUTDOWN _IOR('X', 125, uint32_t) /* ext4 and xfs: EXT4_IOC_SHUTDOWN */
#endif
#define SHUTDOWN_NOLOGFLUSH 2u                  /* EXT4_GOING_FLAGS_NOLOGFLUSH */

#define DISK_BYTES (1ull << 30) /* sparse image per replica: 2 log segments, the store */

static char g_img[N][300], g_mnt[N][300];
static bool g_is_mounted[N];
/* ext4's data mode of each replica's filesystem, from the seed: ordered
 * (the default: data before the metadata that exposes it) or writeback
 * (metadata may reach the disk first: a file may show stale blocks after a
 * cut). Both are what users run; a synced write survives either. */
static const char *g_data_mode[N];

static void pc_sh_log(char *path, size_t len)
{
	snprintf(path, len, "%s/powercut-commands.log", g_dir);
}

/* Runs a shell command, its output appended to powercut-commands.log;
 * returns its exit status (or -1). */
static int pc_sh(const char *cmd)
{
	char log[400], full[2600];
	pc_sh_log(log, sizeof log);
	snprintf(full, sizeof full, "(%s) >> '%s' 2>&1", cmd, log);
	int rc = system(full);
	return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

bool disk_mount(int i)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "mount -t ext4 -o loop,data=%s '%s' '%s'", g_data_mode[i], g_img[i],
		 g_mnt[i]);
	g_is_mounted[i] = pc_sh(cmd) == 0;
	return g_is_mounted[i];
}

/* Unmounts replica i's filesystem (its loop device goes with it). Nothing
 * of the replica may hold it: a file of a process that is gone is closed
 * by the time waitpid returned, so EBUSY can only be brief (a child of the
 * store check still exiting); bounded. */
bool disk_unmount(int i)
{
	if (!g_is_mounted[i])
		return true;
	uint64_t deadline = now_ms() + 5000;
	while (umount2(g_mnt[i], 0) != 0) {
		if (errno != EBUSY || now_ms() > deadline)
			return false;
		poll(NULL, 0, 20);
	}
	g_is_mounted[i] = false;
	return true;
}

/* On every exit path (fail() exits 1): the replicas first (their files
 * hold the filesystems), then the mounts. The images stay in a kept
 * directory, for a look at what a failed cut left. */
static void disks_release(void)
{
	kill_all();
	for (int i = 0; i < N; i++)
		if (g_is_mounted[i] && !disk_unmount(i))
			umount2(g_mnt[i], MNT_DETACH);
}

/* Cuts replica i's disk: nothing written after this reaches its image. */
int disk_cut_fd(int i)
{
	int fd = open(g_mnt[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fail("cannot open %s: %s", g_mnt[i], strerror(errno));
	return fd;
}

int disk_cut(int fd)
{
	uint32_t how = SHUTDOWN_NOLOGFLUSH;
	return ioctl(fd, FS_IOC_SHUTDOWN, &how);
}

static int disk_probe(int i);

/* A fresh filesystem for replica i, and proof that a cut drops what was
 * not synced and keeps what was: returns 0, or 77 (with the reason noted)
 * when this machine cannot do it. */
static int disk_prepare(int i)
{
	snprintf(g_img[i], sizeof g_img[i], "%s/disk-%d.img", g_dir, i + 1);
	snprintf(g_mnt[i], sizeof g_mnt[i], "%s/data/replica-%d", g_dir, i + 1);
	g_data_mode[i] = (g_seed >> (8 + i)) & 1 ? "writeback" : "ordered";
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_mnt[i]);
	if (pc_sh(cmd) != 0)
		fail("cannot create %s", g_mnt[i]);
	int fd = open(g_img[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)DISK_BYTES) != 0)
		fail("cannot create %s: %s", g_img[i], strerror(errno));
	close(fd);
	/* 4 KiB blocks (LMDB's page), no discard at mkfs, lazy init: the image
	 * stays sparse and mkfs writes little. */
	snprintf(cmd, sizeof cmd,
		 "mkfs.ext4 -q -F -b 4096 -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 '%s'",
		 g_img[i]);
	if (pc_sh(cmd) != 0) {
		note("SKIP: mkfs.ext4 failed on %s (is e2fsprogs installed? see %s/powercut-commands.log)",
		     g_img[i], g_dir);
		return 77;
	}
	if (!disk_mount(i)) {
		note("SKIP: cannot mount %s through a loop device (no loop support, or not "
		     "allowed; see %s/powercut-commands.log)", g_img[i], g_dir);
		return 77;
	}
	/* Three tries: a flusher already busy with other processes' pages
	 * could write the unsynced file back within the microseconds before
	 * the cut, which would prove nothing either way. */
	for (int attempt = 1;; attempt++) {
		int rc = disk_probe(i);
		if (rc != 1)
			return rc;
		if (attempt == 3)
			fail("three cuts of %s kept a file that was never synced: the cut drops nothing",
			     g_mnt[i]);
	}
}

/* Writes a synced and an unsynced file on replica i's filesystem, cuts it
 * and mounts it again: 0 when the synced one is there and the other is
 * not, 1 when the unsynced one survived, 77 without the shutdown ioctl. */
static int disk_probe(int i)
{
	char kept[1024], lost[1024];
	snprintf(kept, sizeof kept, "%s/probe-synced", g_mnt[i]);
	snprintf(lost, sizeof lost, "%s/probe-unsynced", g_mnt[i]);
	int k = open(kept, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (k < 0 || write(k, "kept\n", 5) != 5 || fsync(k) != 0)
		fail("cannot write %s: %s", kept, strerror(errno));
	close(k);
	int dfd = disk_cut_fd(i);
	if (fsync(dfd) != 0) /* the directory entry of probe-synced */
		fail("cannot sync %s: %s", g_mnt[i], strerror(errno));
	int l = open(lost, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (l < 0 || write(l, "lost\n", 5) != 5)
		fail("cannot write %s: %s", lost, strerror(errno));
	close(l);
	if (disk_cut(dfd) != 0) {
		int e = errno;
		close(dfd);
		note("SKIP: the filesystem shutdown ioctl (FS_IOC_SHUTDOWN) fails on %s: %s; without "
		     "it (or device-mapper's dm-flakey) no honest power cut can be made here",
		     g_mnt[i], strerror(e));
		return 77;
	}
	close(dfd);
	if (!disk_unmount(i) || !disk_mount(i))
		fail("cannot mount %s again after a cut", g_img[i]);
	char got[8] = "";
	int fd = open(kept, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, got, sizeof got) != 5 || memcmp(got, "kept\n", 5) != 0)
		fail("the cut lost %s, which was synced: the cut is not a power cut", kept);
	close(fd);
	memset(got, 0, sizeof got);
	fd = open(lost, O_RDONLY | O_CLOEXEC);
	bool survived = fd >= 0 && read(fd, got, sizeof got) == 5 && memcmp(got, "lost\n", 5) == 0;
	if (fd >= 0)
		close(fd);
	unlink(kept);
	unlink(lost);
	return survived ? 1 : 0;
}

/* As the kernel's flusher may at any time: some dirty ranges of replica
 * i's files written back before the cut (the meta pages of data.mdb at
 * times, so that LMDB's newest meta page can reach the disk without the
 * pages it names). Returns how many ranges. */
unsigned writeback_some(int i, uint64_t *x)
{
	static const char *const sub[] = {"", "/store", "/store/db"};
	unsigned ranges = 0;
	for (size_t s = 0; s < sizeof sub / sizeof sub[0]; s++) {
		char dir[1024];
		snprintf(dir, sizeof dir, "%s%s", g_mnt[i], sub[s]);
		DIR *d = opendir(dir);
		if (d == NULL)
			continue;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
			if (*x % 3 != 0)
				continue; /* a third of the files */
			char path[2048];
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			struct stat st;
			if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
				if (fd >= 0)
					close(fd);
				continue;
			}
			/* LMDB uses the front of its sparse 8 GiB file. */
			off_t span = st.st_size < ((off_t)64 << 20) ? st.st_size : ((off_t)64 << 20);
			off_t off = 0, len = 8192;
			bool meta = strcmp(de->d_name, "data.mdb") == 0 && (*x >> 8) % 2 == 0;
			if (!meta && span > 0) {
				off = (off_t)((*x >> 16) % (uint64_t)span) & ~(off_t)4095;
				len = (off_t)(1 + (*x >> 40) % 256) * 4096;
			}
			if (sync_file_range(fd, off, len,
					    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
						    SYNC_FILE_RANGE_WAIT_AFTER) == 0)
				ranges++;
			close(fd);
		}
		closedir(d);
	}
	return ranges;
}

/* Lines of replica i's log, from byte `from` on, containing needle. */
unsigned log_count_since(int i, long from, const char *needle)
{
	char path[400], line[4096];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, i + 1);
	FILE *f = fopen(path, "r");
	unsigned n = 0;
	if (f != NULL && fseek(f, from, SEEK_SET) == 0)
		while (fgets(line, sizeof line, f) != NULL)
			n += strstr(line, needle) != NULL;
	if (f != NULL)
		fclose(f);
	return n;
}

/* Replica i's checkpoint figures of this incarnation, just before a cut. */
typedef struct pc_figures {
	uint64_t taken, synced, held, cleanings;
} pc_figures;

static bool figures_of(int i, pc_figures *f)
{
	static char buf[1 << 16];
	memset(f, 0, sizeof *f);
	if (http_get(i, "/metrics", buf, sizeof buf) != 200)
		return false;
	return metric_value(buf, "vsr_checkpoints_total", &f->taken) &&
	       metric_value(buf, "vsr_checkpoint_syncs_total", &f->synced) &&
	       metric_value(buf, "vsr_checkpoint_held_writes_total", &f->held) &&
	       metric_value(buf, "vsr_store_cleanings_total", &f->cleanings);
}

/* The newest log segment's number in replica i's directory (log-<hex>). */
static uint64_t newest_segment(int i)
{
	DIR *d = opendir(g_mnt[i]);
	uint64_t top = 0;
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "log-", 4) == 0) {
			uint64_t seq = strtoull(de->d_name + 4, NULL, 16);
			top = seq > top ? seq : top;
		}
	if (d != NULL)
		closedir(d);
	return top;
}

/* What the cuts met, for the closing line. */
typedef struct pc_tally {
	unsigned with_sync, rolled_cuts, rolled, exited, flickers;
	uint64_t held, cleanings;
} pc_tally;

/* Every disk cut at once, then every replica killed; the filesystems
 * mounted again (journal replay) and the replicas started as after reboot
 * number `boot`. from[i]: where replica i's log of the new start begins. */
static void power_cycle(int cut, int boot, long from[N], pc_tally *t)
{
	int fds[N];
	for (int i = 0; i < N; i++)
		fds[i] = disk_cut_fd(i);
	for (int i = 0; i < N; i++)
		if (disk_cut(fds[i]) != 0)
			fail("cut %d: the shutdown of replica %d's filesystem failed: %s", cut, i + 1,
			     strerror(errno));
	for (int i = 0; i < N; i++)
		kill(g_pid[i], SIGKILL);
	for (int i = 0; i < N; i++) {
		int status;
		waitpid(g_pid[i], &status, 0);
		g_pid[i] = 0;
		close(fds[i]);
		/* A replica that met the dead disk before the kill must have
		 * stopped as for any disk error: exit 74 (a SIGBUS in the
		 * store's map included), never a crash or another status. */
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			continue;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
			fail("cut %d: replica %d, its disk gone, stopped with status 0x%x, not exit 74 "
			     "(see its log)", cut, i + 1, status);
		t->exited++;
	}
	/* Power back: each filesystem replays its journal. */
	for (int i = 0; i < N; i++)
		if (!disk_unmount(i) || !disk_mount(i))
			fail("cut %d: cannot mount replica %d's filesystem again: %s", cut, i + 1,
			     strerror(errno));
	char id[64];
	snprintf(id, sizeof id, "powercut-%" PRIu64 "-%d", g_seed, boot);
	setenv("VSRH_BOOT_ID", id, 1); /* a cut is a reboot: the page cache is gone */
	for (int i = 0; i < N; i++) {
		from[i] = replica_log_size(i);
		start_replica(i);
	}
}

/* Waits (bounded) until every replica has logged a line since from[i]:
 * each is starting up (loading, checking or rolling back its store). */
static void wait_logged(const long from[N], int cut)
{
	uint64_t deadline = now_ms() + STARTUP_MS;
	for (int i = 0; i < N; i++)
		while (replica_log_size(i) <= from[i]) {
			check_alive();
			if (now_ms() > deadline)
				fail("cut %d: replica %d logged nothing after its start", cut, i + 1);
			poll(NULL, 0, 1);
		}
}

int pc_cluster_open(mclient *m, msgpack_sbuffer *sb)
{
	if (geteuid() != 0) {
		note("SKIP: power cuts need root (loop devices, mounts, the shutdown ioctl)");
		return 77;
	}
	/* Mounts of this process and its children only, gone with them. */
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		note("SKIP: no mount namespace of our own: %s", strerror(errno));
		return 77;
	}
	atexit(disks_release);
	for (int i = 0; i < N; i++) {
		int rc = disk_prepare(i);
		if (rc != 0)
			return rc;
	}
	note("%d ext4 filesystems on loop devices (%s/disk-N.img; data=%s, %s, %s); a cut drops "
	     "what was not synced (checked on each)", N, g_dir, g_data_mode[0], g_data_mode[1],
	     g_data_mode[2]);
	g_durability = "durable";
	/* Cuts land while syncs run and writes are held; a longer interval
	 * (--checkpoint-interval) leaves the write-back to cleanings. */
	g_checkpoint_interval = g_pc_checkpoint_interval ? g_pc_checkpoint_interval : 8;
	/* Log segments of 64 KiB (64 MiB by default): the log rotates, and
	 * segments behind a durable checkpoint are renamed and reaped
	 * (src/storage/reaper.c), while the power goes. */
	setenv("VSRH_SEGMENT_BYTES", "65536", 1);
	scenario_open("kv.lua", m, sb);
	return 0;
}

int scenario_powercut(int cuts)
{
	mclient m;
	msgpack_sbuffer sb;
	int rc = pc_cluster_open(&m, &sb);
	if (rc != 0)
		return rc;
	writers ws = {0};
	uint64_t x = g_seed | 1; /* when each cut comes, what is written back: from the seed */
	pc_tally t = {0};
	int boot = 0;
	for (int cut = 1; cut <= cuts; cut++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		writers_start(&ws);
		writers_wait_acks(&ws, 1 + (uint32_t)(x % 60), "before the power cut");
		pc_figures fig[N];
		bool syncing = false;
		for (int i = 0; i < N; i++) {
			if (!figures_of(i, &fig[i]))
				fail("cut %d: replica %d's metrics are unreadable", cut, i + 1);
			syncing |= fig[i].taken > fig[i].synced;
			t.held += fig[i].held;
			t.cleanings += fig[i].cleanings;
		}
		t.with_sync += syncing;
		unsigned ranges = 0;
		for (int i = 0; i < N && (x >> 32) % 2 == 0; i++)
			ranges += writeback_some(i, &x);
		uint32_t before = ws.acks;
		long from[N], first[N];
		power_cycle(cut, ++boot, from, &t);
		memcpy(first, from, sizeof first);
		/* A quarter of the cuts flicker: the power goes again while the
		 * replicas start (replaying their logs, checking, syncing or
		 * rolling back their stores). */
		bool flicker = (x >> 20) % 4 == 0;
		if (flicker) {
			wait_logged(from, cut);
			power_cycle(cut, ++boot, from, &t);
			t.flickers++;
		}
		wait_ports(-1);
		writers_wait_acks(&ws, writers_target(&ws, 20), "after the power cut");
		writers_stop(&ws);
		char what[96];
		snprintf(what, sizeof what, "after power cut %d of every replica", cut);
		uint32_t n = verify_writes(&m, &sb, &ws, what);
		unsigned rolled = 0;
		for (int i = 0; i < N; i++) {
			if (log_count_since(i, first[i], "cannot be trusted") > 0)
				fail("%s: replica %d found durable state damaged (see its log): a cut must "
				     "lose only what was never synced", what, i + 1);
			rolled += log_count_since(i, first[i], "vsr.store: rolled ");
		}
		t.rolled += rolled;
		t.rolled_cuts += rolled > 0;
		note("cut %d%s: after %u acknowledged writes, %u dirty ranges written back first, a "
		     "checkpoint sync %s; %u store rollback%s to the durable checkpoint; all %u "
		     "acknowledged writes present, digests equal at op %" PRIu64,
		     cut, flicker ? " (and again while starting)" : "", before, ranges,
		     syncing ? "running" : "idle", rolled, rolled == 1 ? "" : "s", n, ws.max_op);
	}
	unsetenv("VSRH_BOOT_ID");
	/* Read at every replica on its own too, after the last cut. */
	uint32_t n = verify_writes_each(&sb, &ws, "after the last power cut");
	scenario_close(&m, &sb);
	unsetenv("VSRH_SEGMENT_BYTES");
	uint64_t seg[N];
	for (int i = 0; i < N; i++)
		seg[i] = newest_segment(i);
	note("%d power cuts (%u cut again while starting): %u with a checkpoint sync running at the "
	     "cut, %u with a store rolled back (%u rollbacks), %u replicas had stopped on their own "
	     "(exit 74) before the kill, %" PRIu64 " writes held in memory in all, %" PRIu64
	     " cleanings of a store between checkpoints (checkpoint interval %u), log segments up to "
	     "number %" PRIu64 ", %" PRIu64 ", %" PRIu64 "; all %u acknowledged writes present at "
	     "every replica", cuts, t.flickers, t.with_sync, t.rolled_cuts, t.rolled, t.exited,
	     t.held, t.cleanings, g_checkpoint_interval, seg[0], seg[1], seg[2], n);
	if (t.held == 0)
		fail("no write was ever held during a checkpoint's sync: the cuts never met held writes");
	const char *clean = getenv("VSRH_CLEAN_AFTER_MS");
	if (clean != NULL && strtoul(clean, NULL, 10) > 0 && t.cleanings == 0)
		fail("VSRH_CLEAN_AFTER_MS=%s, and no replica ever cleaned its store: the cuts never "
		     "met a cleaning", clean);
	if (cuts >= 10 && seg[0] + seg[1] + seg[2] <= N)
		fail("in %d cuts no replica's log went past its first segment: the reaper was never "
		     "reached", cuts);
	for (int i = 0; i < N; i++)
		if (!disk_unmount(i))
			fail("cannot unmount %s: %s", g_mnt[i], strerror(errno));
	return 0;
}

/* open-reclaim: vsrhost on a nearly full disk whose free space the log's
 * reaper holds gets the map's reservation at open (64 MiB) by having the
 * reaper finish at once (vsrh_sm_options.disk_full, wired before the store
 * opens; luahost_store_reclaim checks the store's half without a host).
 * A backup of the cluster on its own ext4 filesystems is stopped, its data
 * directory emptied (a lost disk: it opens a fresh store and rejoins by
 * state transfer), and the filesystem filled with a `trash-*` file of
 * 300 MiB and a ballast file up to the last 64 KiB that ext4 gives out,
 * then 8 MiB of it given back for the log's first segments (a further 64 MiB
 * proven refused), the trash a log segment whose removal a stop
 * interrupted: the start hands it to the reaper, which gives it back 4 MiB
 * per 10 ms, far too slowly for the open a few milliseconds later. The
 * replica must open without the sentence of an open that reserved nothing
 * ("no room on disk to reserve"), the trash file be gone (the reaper
 * finished at once), the replica
 * catch up and every write read back. Teeth (open-reclaim-teeth, with
 * --vsrhost-teeth): that replica runs vsrhost-teeth with the hook wired
 * after the open, as before (VSRH_TEETH_LATE_DISK_FULL), and the reaper
 * held until the store has opened (VSRH_TEETH_HOLD_REAPER, host_teeth.h; on
 * a slow machine it could free the map's room first, and the open needed no
 * hook): the sentence must be there. */

#define RECLAIM_TRASH ((uint64_t)300 << 20)
#define RECLAIM_HEADROOM ((uint64_t)8 << 20) /* given back after the fill */

/* A file at path with blocks allocated (not written): `bytes` of them, or
 * (bytes 0) as many as the filesystem gives, to the last 64 KiB. Returns
 * its size; ENOSPC for bytes 0 is the end, anything else fails. */
static uint64_t allocate_file(const char *path, uint64_t bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("cannot create %s: %s", path, strerror(errno));
	uint64_t at = 0;
	int rc = 0;
	if (bytes) {
		rc = posix_fallocate(fd, 0, (off_t)bytes);
		at = bytes;
	} else {
		for (uint64_t step = 4u << 20; step >= (64u << 10); step /= 4)
			while ((rc = posix_fallocate(fd, (off_t)at, (off_t)step)) == 0)
				at += step;
		if (rc == ENOSPC)
			rc = 0;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = errno;
	close(fd);
	if (rc != 0)
		fail("cannot allocate %" PRIu64 " MiB at %s: %s", bytes >> 20, path, strerror(rc));
	return at;
}

/* Bytes free on replica i's filesystem, as root sees them. */
static uint64_t disk_free(int i)
{
	struct statvfs v;
	if (statvfs(g_mnt[i], &v) != 0)
		fail("statvfs %s: %s", g_mnt[i], strerror(errno));
	return (uint64_t)v.f_bfree * v.f_frsize;
}

int scenario_open_reclaim(bool teeth)
{
	if (teeth && g_vsrhost_teeth == NULL)
		fail("open-reclaim-teeth needs --vsrhost-teeth");
	mclient m;
	msgpack_sbuffer sb;
	int rc = pc_cluster_open(&m, &sb);
	if (rc != 0)
		return rc;
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 40, &last);
	int p = wait_primary(STARTUP_MS, "before the lost disk");
	int victim = (p + 1 + (int)(g_seed % 2)) % N; /* a backup */
	kill_replica(victim);
	char cmd[1024], trash[600], ballast[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", g_mnt[victim]);
	if (pc_sh(cmd) != 0)
		fail("cannot empty %s", g_mnt[victim]);
	snprintf(trash, sizeof trash, "%s/trash-00000000000000ff", g_mnt[victim]);
	snprintf(ballast, sizeof ballast, "%s/ballast", g_mnt[victim]);
	allocate_file(trash, RECLAIM_TRASH);
	uint64_t filled = allocate_file(ballast, 0);
	/* Room for the log's first segments (64 KiB each here), none for the
	 * store's map: the open alone needs the trash's blocks. (Filled to
	 * the last block, the first segment found the disk full at load and
	 * had the reaper finish the trash itself, or met the room the
	 * reaper's first slice happened to free.) */
	if (truncate(ballast, (off_t)(filled - RECLAIM_HEADROOM)) != 0)
		fail("cannot shrink %s: %s", ballast, strerror(errno));
	filled -= RECLAIM_HEADROOM;
	uint64_t free1 = disk_free(victim); /* ext4's reserves included */
	/* The store's reservation at open (64 MiB) cannot be had without the
	 * trash's blocks. */
	char probe[620];
	snprintf(probe, sizeof probe, "%s/probe", g_mnt[victim]);
	int pfd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int prc = pfd < 0 ? errno : posix_fallocate(pfd, 0, (off_t)64 << 20);
	if (pfd >= 0)
		close(pfd);
	unlink(probe);
	if (prc != ENOSPC)
		fail("replica %d's filesystem, filled, still gives 64 MiB (%s)", victim + 1,
		     prc ? strerror(prc) : "allocated");
	if (teeth) {
		/* The planted bug, and the log's reaper held until the store has
		 * opened: left to free the trash in the background, it could free
		 * room for the map first on a slow machine, and the open then
		 * needed no hook (CI, seed 714570167). */
		setenv("VSRH_TEETH_LATE_DISK_FULL", "1", 1);
		setenv("VSRH_TEETH_HOLD_REAPER", "1", 1);
		g_odd_replica = victim;
		g_odd_vsrhost = g_vsrhost_teeth;
		write_config("kv.lua"); /* its own copy, cluster-<victim>.lua: the same */
	}
	long from = replica_log_size(victim);
	start_replica(victim);
	wait_ports(victim);
	put_keys(&m, &sb, 40, 80, &last);
	wait_converged(last, 30000, "the replica started on a full disk");
	bool bare = log_count_since(victim, from, "no room on disk to reserve") > 0;
	struct stat st;
	bool trash_gone = stat(trash, &st) != 0 && errno == ENOENT;
	note("replica %d (a backup) started on its emptied filesystem filled (ballast %" PRIu64
	     " MiB, %" PRIu64 " MiB left with ext4's reserves, 64 MiB refused) with a %" PRIu64
	     " MiB trash file: %s; the trash file %s; %" PRIu64 " MiB free now",
	     victim + 1, filled >> 20, free1 >> 20, RECLAIM_TRASH >> 20,
	     bare ? "its store opened without a reservation" : "its store reserved its map",
	     trash_gone ? "gone" : "still there", disk_free(victim) >> 20);
	if (teeth) {
		if (!bare)
			fail("teeth: with the disk-full hook wired after the open, the store still reserved "
			     "its map at open: the check cannot see the wiring");
		note("teeth: caught: the store opened without a reservation");
	} else if (bare) {
		fail("replica %d opened its store without a reservation on a disk whose free space "
		     "the log's reaper held (see its log): the reclaim hook is not in place before "
		     "the store opens", victim + 1);
	}
	if (!teeth && !trash_gone) /* (paced, the reaper takes 750 ms or more for it) */
		fail("the trash file %s is still there once the replica caught up", trash);
	get_keys(&m, &sb, 0, 80);
	scenario_close(&m, &sb);
	unsetenv("VSRH_SEGMENT_BYTES");
	unsetenv("VSRH_TEETH_LATE_DISK_FULL");
	unsetenv("VSRH_TEETH_HOLD_REAPER");
	for (int i = 0; i < N; i++)
		if (!disk_unmount(i))
			fail("cannot unmount %s: %s", g_mnt[i], strerror(errno));
	return 0;
}
