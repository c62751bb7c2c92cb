/* test_store_installcut.c - a power cut at any point of a fetched
 * checkpoint's install (docs/storage.md, "Transfer image": next/ is built,
 * synced, renamed over db/, and db/ synced again before the superblock can
 * name the checkpoint).
 *
 * The test installs checkpoint B into a durable store that holds checkpoint
 * A, and stops the world before every call that changes the disk's state
 * (rename, unlink, rmdir, mkdir, and every sync: fsync, fdatasync,
 * mdb_env_sync), all wrapped at link time. At each such moment it builds
 * every disk a power cut could leave, under POSIX's rules:
 *   - a file holds what it held at its last sync (fsync, fdatasync, or
 *     LMDB's sync of its map); a file never synced holds nothing (holes of
 *     its length: fallocated blocks read as zeros);
 *   - a directory holds its entries as at its last fsync plus any prefix
 *     of the changes made to it since (changes made by LMDB itself, the
 *     files of a new environment, only in the state "all of them"), each
 *     directory independently of the others.
 * Each distinct disk is then started as vsrhost starts after a reboot (a new
 * VSRH_BOOT_ID; host_check_store: an interrupted install settled, a torn
 * transaction rolled back, every record checked against the superblock,
 * which still names A while the install runs; then the store opened), in a
 * child (a torn LMDB file may crash it). Every one must open checkpoint A
 * whole or checkpoint B whole, with its digest; once the install has
 * returned (the superblock may name B next), every one must open B.
 *
 * --teeth: the same with the sync of the built environment left out (as if
 * build_finish's mdb_env_sync were deleted: the wrap skips it); succeeds only
 * when some disk is found that opens neither A nor B whole. The install's
 * second sync, after its renames, hides that bug from any test that cuts at
 * random. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>

#include "host_verify.h"
#include "kv_op.h"
#include "store_test.h"
#include "vsrh_store.h"

#define KEYS 2000
#define CHUNK 65536

/* ------------------------------------------------------------ the model */

#define MAX_DIRS 16
#define MAX_ENTS 16
#define MAX_OPS 16
#define MAX_FILES 64

typedef struct ent {
	char name[256];
	ino_t ino;
	bool dir;
} ent;

/* One change to a directory: an entry removed (rm, when not empty), one
 * added (add: e), or both at once (a rename within the directory is
 * atomic). */
typedef struct change {
	char rm[256];
	bool add;
	ent e;
} change;

/* A directory: its entries at its last fsync, and what changed since. */
typedef struct tdir {
	ino_t ino;
	int nbase, nops;
	ent base[MAX_ENTS];
	change ops[MAX_OPS];
} tdir;

/* A regular file: what its last sync left (a copy), and its length. */
typedef struct tfile {
	ino_t ino;
	int gen; /* syncs recorded; 0: none (holes of `size`) */
	off_t size;
	char shadow[700];
} tfile;

static struct {
	bool armed;
	bool teeth;
	char root[600];   /* the store directory */
	char work[600];   /* where shadows and disk images go */
	ino_t root_ino;
	tdir dirs[MAX_DIRS];
	int ndirs;
	tfile files[MAX_FILES];
	int nfiles;
	int shadows;
	/* what the images must open */
	const vsrh_config *cfg;
	vsr_checkpoint a, b;
	uint64_t digest_a, digest_b;
	bool after;                 /* the install returned: B only */
	/* results */
	int cuts, images, opened_a, opened_b, bad;
	char sigs[1024][256];
	int nsigs;
} M;

static tdir *dir_of(ino_t ino)
{
	for (int i = 0; i < M.ndirs; i++)
		if (M.dirs[i].ino == ino)
			return &M.dirs[i];
	return NULL;
}

static tfile *file_of(ino_t ino, bool add)
{
	for (int i = 0; i < M.nfiles; i++)
		if (M.files[i].ino == ino)
			return &M.files[i];
	if (!add || M.nfiles == MAX_FILES)
		return NULL;
	tfile *f = &M.files[M.nfiles++];
	memset(f, 0, sizeof *f);
	f->ino = ino;
	return f;
}

/* The entries of the directory open as fd (not closed), into e[]. */
static int list_fd(int fd, ent *e, int max)
{
	int d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = d >= 0 ? fdopendir(d) : NULL;
	if (dp == NULL) {
		if (d >= 0)
			close(d);
		return 0;
	}
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dp)) != NULL && n < max) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		snprintf(e[n].name, sizeof e[n].name, "%s", de->d_name);
		e[n].ino = st.st_ino;
		e[n].dir = S_ISDIR(st.st_mode);
		if (!e[n].dir) {
			tfile *f = file_of(st.st_ino, true);
			if (f != NULL)
				f->size = st.st_size;
		}
		n++;
	}
	closedir(dp);
	return n;
}

static int list_path(const char *path, ent *e, int max)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int n = list_fd(fd, e, max);
	close(fd);
	return n;
}

static int copy_path_sparse(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	int rc = st_copy_sparse(in, to);
	close(in);
	return rc;
}

/* The file open as fd has just been synced: what it holds now is what the
 * disk holds. */
static void shadow_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	tfile *f = file_of(st.st_ino, true);
	if (f == NULL)
		return;
	f->size = st.st_size;
	snprintf(f->shadow, sizeof f->shadow, "%s/shadow-%d", M.work, ++M.shadows);
	if (st_copy_sparse(fd, f->shadow) != 0)
		CHECK(0, "copy a synced file into %s", f->shadow);
	f->gen = M.shadows;
}

/* Registers the directory at path (and those below it) as durable as it is
 * now, its files too: the state when the test arms. */
static void register_tree(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0 || M.ndirs == MAX_DIRS)
		return;
	tdir *d = &M.dirs[M.ndirs++];
	memset(d, 0, sizeof *d);
	d->ino = st.st_ino;
	d->nbase = list_path(path, d->base, MAX_ENTS);
	for (int i = 0; i < d->nbase; i++) {
		char p[900];
		st_path(p, sizeof p, path, d->base[i].name);
		if (d->base[i].dir) {
			register_tree(p);
		} else {
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				shadow_fd(fd);
				close(fd);
			}
		}
	}
}

/* The tracked directory that holds `path`, and its last component. */
static tdir *parent_of(const char *path, char *name, size_t n)
{
	char a[900], b[900];
	snprintf(a, sizeof a, "%s", path);
	snprintf(b, sizeof b, "%s", path);
	snprintf(name, n, "%s", basename(b));
	struct stat st;
	return stat(dirname(a), &st) == 0 ? dir_of(st.st_ino) : NULL;
}

static void note_op(tdir *d, const char *rm, const char *add, ino_t ino, bool dir)
{
	if (d == NULL)
		return;
	CHECK(d->nops < MAX_OPS, "too many changes to one directory");
	if (d->nops == MAX_OPS)
		return;
	change *o = &d->ops[d->nops++];
	snprintf(o->rm, sizeof o->rm, "%s", rm ? rm : "");
	o->add = add != NULL;
	snprintf(o->e.name, sizeof o->e.name, "%s", add ? add : "");
	o->e.ino = ino;
	o->e.dir = dir;
}

/* Directory d's entries in its state k (0..nops: base and the first k
 * changes; nops + 1: as the live tree shows it, LMDB's own creations too). */
static int dir_state(const tdir *d, int k, const ent *live, int nlive, ent *out)
{
	if (k > d->nops) {
		memcpy(out, live, (size_t)nlive * sizeof *live);
		return nlive;
	}
	int n = d->nbase;
	memcpy(out, d->base, (size_t)n * sizeof *out);
	for (int i = 0; i < k; i++) {
		const change *o = &d->ops[i];
		for (int j = 0; j < n; j++) {
			if ((o->rm[0] && strcmp(out[j].name, o->rm) == 0) ||
			    (o->add && strcmp(out[j].name, o->e.name) == 0)) {
				out[j--] = out[--n]; /* removed, or replaced by the add */
			}
		}
		if (o->add && n < MAX_ENTS)
			out[n++] = o->e;
	}
	return n;
}

/* ------------------------------------------------------------ a cut */

typedef struct live_dir {
	int n; /* -1: not in the live tree */
	ent e[MAX_ENTS];
} live_dir;

static int pick[MAX_DIRS];
static live_dir lives[MAX_DIRS];

/* Lists the live tree under path into lives[] (by tracked directory). */
static void live_walk(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return;
	tdir *d = dir_of(st.st_ino);
	if (d == NULL)
		return;
	live_dir *l = &lives[d - M.dirs];
	l->n = list_path(path, l->e, MAX_ENTS);
	for (int i = 0; i < l->n; i++) {
		if (!l->e[i].dir)
			continue;
		char p[900];
		st_path(p, sizeof p, path, l->e[i].name);
		live_walk(p);
	}
}

/* The image of directory d (state pick[d]) at `at`, or its signature only
 * (make false). */
static void image_dir(const tdir *d, const char *at, bool make, char *sig, size_t sig_len)
{
	ent e[MAX_ENTS];
	const live_dir *l = &lives[d - M.dirs];
	int n = dir_state(d, pick[d - M.dirs], l->e, l->n < 0 ? 0 : l->n, e);
	for (int i = 0; i < n; i++) {
		char p[1200];
		if (snprintf(p, sizeof p, "%s/%s", at, e[i].name) >= (int)sizeof p)
			continue; /* not in the store's layout */
		size_t used = strlen(sig);
		if (e[i].dir) {
			const tdir *sub = dir_of(e[i].ino);
			snprintf(sig + used, sig_len - used, "%s/%d(", e[i].name,
				 sub ? pick[sub - M.dirs] : -1);
			if (make)
				mkdir(p, 0700);
			if (sub != NULL)
				image_dir(sub, p, make, sig, sig_len);
			used = strlen(sig);
			snprintf(sig + used, sig_len - used, ")");
			continue;
		}
		const tfile *f = file_of(e[i].ino, false);
		snprintf(sig + used, sig_len - used, "%s:%d,", e[i].name, f ? f->gen : 0);
		if (!make)
			continue;
		if (f != NULL && f->gen > 0) {
			CHECK(copy_path_sparse(f->shadow, p) == 0, "copy %s", f->shadow);
		} else { /* never synced: holes */
			int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			CHECK(fd >= 0 && ftruncate(fd, f ? f->size : 0) == 0, "create %s", p);
			if (fd >= 0)
				close(fd);
		}
	}
}

/* Starts the disk image at `store` as vsrhost does after a reboot, the
 * superblock naming checkpoint sb_cp; returns 'A', 'B' or 0 with why. */
static int start_image(const char *store, const vsr_checkpoint *sb_cp, char *why, size_t why_len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return 0;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		M.armed = false;
		if (freopen("/dev/null", "w", stderr) == NULL) /* the rollbacks' notes */
			_exit(9);
		setenv("VSRH_BOOT_ID", "boot-after-the-cut", 1);
		char msg[600] = "";
		int result = 0;
		vsr_superblock sb = {.checkpoint_op = sb_cp->op, .checkpoint_checksum = sb_cp->checksum};
		char cw[512] = "";
		int rc = host_check_store((void *)store, &sb, cw, sizeof cw);
		vsrh_sm *sm = NULL;
		char err[512] = "";
		if (rc != 0) {
			snprintf(msg, sizeof msg, "the store check refuses it (%d): %s", rc, cw);
		} else if (vsrh_sm_create_at(&sm, M.cfg, store, true, false, err, sizeof err) != VSR_OK) {
			snprintf(msg, sizeof msg, "it cannot be opened: %s", err);
		} else {
			vsr_state_machine m;
			vsrh_sm_bind(sm, &m);
			vsr_checkpoint cp;
			vsr_buf meta = {0};
			rc = m.checkpoint_open(m.ctx, &cp, &meta);
			uint64_t d = m.digest(m.ctx);
			if (rc != VSR_OK)
				snprintf(msg, sizeof msg, "checkpoint_open: %d", rc);
			else if (cp.op == M.a.op && cp.digest == M.a.digest && d == M.digest_a)
				result = 'A';
			else if (cp.op == M.b.op && cp.digest == M.b.digest && d == M.digest_b)
				result = 'B';
			else
				snprintf(msg, sizeof msg,
					 "it opens checkpoint op %llu, store digest %016llx: neither A "
					 "(op %llu) nor B (op %llu) whole",
					 (unsigned long long)cp.op, (unsigned long long)d,
					 (unsigned long long)M.a.op, (unsigned long long)M.b.op);
		}
		if (result == 0 && write(fds[1], msg, strlen(msg)) < 0)
			_exit(9);
		_exit(result);
	}
	close(fds[1]);
	int status = st_child_wait(pid, fds[0], why, why_len);
	if (WIFSIGNALED(status)) {
		snprintf(why, why_len, "starting it crashed (signal %d)", WTERMSIG(status));
		return 0;
	}
	int r = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
	if (r != 'A' && r != 'B' && why[0] == '\0')
		snprintf(why, why_len, "starting it exited with status %d", r);
	return r == 'A' || r == 'B' ? r : 0;
}

/* Every disk a power cut now could leave (each directory in each of its
 * states), each distinct one started. */
static void cut(const char *when)
{
	if (!M.armed)
		return;
	M.armed = false; /* the test's own calls below are not the store's */
	M.cuts++;
	for (int i = 0; i < M.ndirs; i++)
		lives[i].n = -1;
	live_walk(M.root);
	for (int i = 0; i < M.ndirs; i++)
		pick[i] = 0;
	int images = M.images, a = M.opened_a, b = M.opened_b;
	for (;;) {
		char sig[1024] = "";
		const tdir *root = dir_of(M.root_ino);
		image_dir(root, "", false, sig, sizeof sig);
		bool seen = false;
		for (int i = 0; i < M.nsigs && !seen; i++)
			seen = strcmp(M.sigs[i], sig) == 0;
		if (!seen && strlen(sig) < sizeof M.sigs[0] && M.nsigs < 1024) {
			snprintf(M.sigs[M.nsigs++], sizeof M.sigs[0], "%s", sig);
			char img[700], why[600], cmd[800];
			snprintf(img, sizeof img, "%s/image", M.work);
			snprintf(cmd, sizeof cmd, "rm -rf '%s'", img);
			if (system(cmd) != 0)
				CHECK(0, "%s", cmd);
			mkdir(img, 0700);
			char sig2[1024] = "";
			image_dir(root, img, true, sig2, sizeof sig2);
			int got = start_image(img, M.after ? &M.b : &M.a, why, sizeof why);
			M.images++;
			M.opened_a += got == 'A';
			M.opened_b += got == 'B';
			bool ok = M.after ? got == 'B' : got != 0;
			if (!ok) {
				M.bad++;
				if (!M.teeth)
					CHECK(0, "a power cut %s can leave the disk %s, and %s", when, sig,
					      got == 'A' ? "it opens checkpoint A, not the installed B"
							 : why);
				else if (M.bad == 1)
					printf("teeth: a power cut %s can leave the disk %s, and %s\n", when,
					       sig, why);
			}
		} else if (!seen) {
			CHECK(0, "a disk signature too long to keep: %s", sig);
		}
		/* the next combination of directory states */
		int i = 0;
		for (; i < M.ndirs; i++) {
			int states = M.dirs[i].nops + 2;
			if (++pick[i] < states)
				break;
			pick[i] = 0;
		}
		if (i == M.ndirs)
			break;
	}
	printf("  a cut %s: %d new disk(s), %d open A, %d open B\n", when, M.images - images,
	       M.opened_a - a, M.opened_b - b);
	M.armed = true;
}

/* ------------------------------------------------------------ the wraps */

int __real_rename(const char *from, const char *to);
int __real_unlink(const char *path);
int __real_rmdir(const char *path);
int __real_mkdir(const char *path, mode_t mode);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_mdb_env_sync(MDB_env *env, int force);
int __wrap_rename(const char *from, const char *to);
int __wrap_unlink(const char *path);
int __wrap_rmdir(const char *path);
int __wrap_mkdir(const char *path, mode_t mode);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_mdb_env_sync(MDB_env *env, int force);

int __wrap_rename(const char *from, const char *to)
{
	if (!M.armed)
		return __real_rename(from, to);
	char what[1900];
	snprintf(what, sizeof what, "before rename(%s, %s)", from + strlen(M.root) + 1, to + strlen(M.root) + 1);
	cut(what);
	struct stat st;
	char n0[256], n1[256];
	bool had = lstat(from, &st) == 0;
	tdir *d0 = parent_of(from, n0, sizeof n0), *d1 = parent_of(to, n1, sizeof n1);
	int rc = __real_rename(from, to);
	if (rc == 0 && had && d0 == d1) {
		note_op(d0, n0, n1, st.st_ino, S_ISDIR(st.st_mode));
	} else if (rc == 0 && had) { /* between directories: two changes */
		note_op(d0, n0, NULL, st.st_ino, S_ISDIR(st.st_mode));
		note_op(d1, NULL, n1, st.st_ino, S_ISDIR(st.st_mode));
	}
	return rc;
}

static int removal(int (*fn)(const char *), const char *path, const char *what)
{
	if (!M.armed)
		return fn(path);
	char w[1000];
	snprintf(w, sizeof w, "before %s(%s)", what, path + strlen(M.root) + 1);
	struct stat st;
	bool had = lstat(path, &st) == 0;
	if (had)
		cut(w);
	int rc = fn(path);
	if (rc == 0 && had) {
		char name[256];
		note_op(parent_of(path, name, sizeof name), name, NULL, st.st_ino, S_ISDIR(st.st_mode));
	}
	return rc;
}

int __wrap_unlink(const char *path)
{
	return removal(__real_unlink, path, "unlink");
}

int __wrap_rmdir(const char *path)
{
	return removal(__real_rmdir, path, "rmdir");
}

int __wrap_mkdir(const char *path, mode_t mode)
{
	if (!M.armed)
		return __real_mkdir(path, mode);
	char w[1000];
	snprintf(w, sizeof w, "before mkdir(%s)", path + strlen(M.root) + 1);
	cut(w);
	int rc = __real_mkdir(path, mode);
	struct stat st;
	if (rc == 0 && stat(path, &st) == 0 && M.ndirs < MAX_DIRS) {
		char name[256];
		note_op(parent_of(path, name, sizeof name), NULL, name, st.st_ino, true);
		tdir *d = &M.dirs[M.ndirs++]; /* new: nothing in it is durable */
		memset(d, 0, sizeof *d);
		d->ino = st.st_ino;
	}
	return rc;
}

static const char *fd_name(int fd, char *out, size_t n)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
	ssize_t r = readlink(p, out, n - 1);
	out[r > 0 ? r : 0] = '\0';
	size_t rl = strlen(M.root);
	if (strcmp(out, M.root) == 0)
		return "the store's directory";
	return strncmp(out, M.root, rl) == 0 ? out + rl + 1 : out;
}

int __wrap_fsync(int fd)
{
	if (!M.armed)
		return __real_fsync(fd);
	char name[900], w[1000];
	snprintf(w, sizeof w, "before fsync(%s)", fd_name(fd, name, sizeof name));
	cut(w);
	int rc = __real_fsync(fd);
	struct stat st;
	if (rc == 0 && fstat(fd, &st) == 0) {
		tdir *d = S_ISDIR(st.st_mode) ? dir_of(st.st_ino) : NULL;
		if (d != NULL) { /* its entries are durable as they are */
			d->nbase = list_fd(fd, d->base, MAX_ENTS);
			d->nops = 0;
		} else if (S_ISREG(st.st_mode)) {
			shadow_fd(fd);
		}
	}
	return rc;
}

int __wrap_fdatasync(int fd)
{
	if (!M.armed)
		return __real_fdatasync(fd);
	char name[900], w[1000];
	snprintf(w, sizeof w, "before fdatasync(%s)", fd_name(fd, name, sizeof name));
	cut(w);
	int rc = __real_fdatasync(fd);
	if (rc == 0)
		shadow_fd(fd);
	return rc;
}

int __wrap_mdb_env_sync(MDB_env *env, int force)
{
	if (!M.armed)
		return __real_mdb_env_sync(env, force);
	const char *path = "";
	mdb_env_get_path(env, &path);
	char w[1000];
	snprintf(w, sizeof w, "before the sync of %s", path + strlen(M.root) + 1);
	cut(w);
	size_t pl = strlen(path);
	if (M.teeth && pl >= 5 && strcmp(path + pl - 5, "/next") == 0)
		return 0; /* the planted bug: the built environment is not synced */
	int rc = __real_mdb_env_sync(env, force);
	int fd;
	if (rc == 0 && mdb_env_get_fd(env, &fd) == 0)
		shadow_fd(fd);
	return rc;
}

/* ------------------------------------------------------------ the test */

/* Flips the first byte of the value of key "k000100" in the LMDB file
 * `path` (a leaf node: 8 bytes of header, the key, the value). */
static bool flip_value(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	static char buf[1 << 20];
	bool done = false;
	for (off_t at = 0; !done; at += sizeof buf - 16) {
		ssize_t n = pread(fd, buf, sizeof buf, at);
		if (n <= 16)
			break;
		char *k = memmem(buf, (size_t)n, "k000100", 7);
		if (k != NULL && k + 7 < buf + n) {
			off_t v = at + (k - buf) + 7;
			char c = (char)(k[7] ^ 0x01);
			done = pwrite(fd, &c, 1, v) == 1;
		}
	}
	close(fd);
	return done;
}

static int accept_any(void *arg, const uint8_t *meta, size_t len)
{
	(void)arg, (void)meta, (void)len;
	return VSR_OK;
}

/* KEYS puts of round `round` and the checkpoint after them, durable. */
static vsr_checkpoint puts_and_checkpoint(vsrh_sm *sm, int round, uint64_t *op, uint64_t *digest)
{
	vsr_checkpoint cp;
	int rc = st_round_and_take(sm, KEYS, round, op, &cp); /* waits for the sync */
	CHECK(rc == VSR_OK || rc == VSR_PENDING, "checkpoint_take: %d", rc);
	vsr_state_machine m;
	vsrh_sm_bind(sm, &m);
	*digest = m.digest(m.ctx);
	return cp;
}

/* A store at A whose install of B (the source's environment) stopped
 * between its renames, a value in next/ flipped or not, started: 'A', 'B'
 * or 0 with why. */
static int interrupted(const vsrh_config *cfg, const char *dir, const char *src, bool flip,
		       char *why, size_t why_len)
{
	char t[600], p[900], q[900];
	snprintf(t, sizeof t, "%s/interrupted-%d", dir, flip);
	vsrh_sm *sm = st_create(cfg, t, true, true);
	if (sm == NULL)
		return 0;
	uint64_t op = 0, digest;
	vsr_checkpoint own = puts_and_checkpoint(sm, 2, &op, &digest);
	vsrh_sm_destroy(sm);
	st_path(p, sizeof p, t, "db");
	st_path(q, sizeof q, t, "old");
	CHECK(rename(p, q) == 0, "rename %s", p);
	st_path(p, sizeof p, t, "next");
	mkdir(p, 0700);
	st_path(p, sizeof p, src, "db/data.mdb");
	st_path(q, sizeof q, t, "next/data.mdb");
	CHECK(copy_path_sparse(p, q) == 0, "copy %s", p);
	if (flip)
		CHECK(flip_value(q), "flip a value in %s", q);
	return start_image(t, &own, why, why_len);
}

int main(int argc, char **argv)
{
	M.teeth = argc > 1 && strcmp(argv[1], "--teeth") == 0;
	char dir[] = "/tmp/vsr-installcut-XXXXXX";
	vsrh_config cfg;
	if (st_begin(&cfg, dir) != 0)
		return 1;
	M.cfg = &cfg;
	setenv("VSRH_BOOT_ID", "boot-before-the-cut", 1);
	char src[300], dst[300];
	st_path(src, sizeof src, dir, "source");
	st_path(dst, sizeof dst, dir, "store");
	st_path(M.work, sizeof M.work, dir, "work");
	mkdir(M.work, 0700);

	/* B: the source's checkpoint, and its image. */
	vsrh_sm *s = st_create(&cfg, src, true, true);
	if (s == NULL)
		return 1;
	uint64_t op = 0;
	vsr_state_machine ms;
	vsrh_sm_bind(s, &ms);
	CHECK(kv_put_round(&ms, KEYS, 3, &op) == 0, "puts refused"); /* B is ahead of A */
	M.b = puts_and_checkpoint(s, 1, &op, &M.digest_b);
	vsr_buf img = {0};
	CHECK(ms.checkpoint_read(ms.ctx, &M.b, 0, (uint32_t)M.b.size, &img) == VSR_OK &&
		      img.len == M.b.size,
	      "read the image of B");
	vsrh_sm_destroy(s);

	/* An install interrupted between its renames, whole and with a value
	 * flipped in next/: the check at start reads the environment the store
	 * will open, rather than find no db/ and pass. */
	{
		char why[600];
		int got = interrupted(&cfg, dir, src, false, why, sizeof why);
		CHECK(got == 'B', "an interrupted install is finished at start: B (got %c: %s)",
		      got ? got : '-', why);
		got = interrupted(&cfg, dir, src, true, why, sizeof why);
		CHECK(got == 0 && strstr(why, "check refuses") != NULL,
		      "a damaged environment left in next/ by an interrupted install is checked at "
		      "start and refused (got %c: %s)",
		      got ? got : '-', why);
		printf("an interrupted install, next/ damaged: %s\n", why);
	}

	/* A: the store's own checkpoint, another state at an earlier op. */
	vsrh_sm *d = st_create(&cfg, dst, true, true);
	if (d == NULL)
		return 1;
	op = 0;
	M.a = puts_and_checkpoint(d, 2, &op, &M.digest_a);
	CHECK(M.digest_a != M.digest_b && M.a.digest != M.b.digest, "A and B differ");

	/* The install, as the chunks come, cut at every step. */
	snprintf(M.root, sizeof M.root, "%s", dst);
	struct stat st;
	CHECK(stat(dst, &st) == 0, "stat %s", dst);
	M.root_ino = st.st_ino;
	register_tree(dst);
	M.armed = true;
	vsr_state_machine md;
	vsrh_sm_bind(d, &md);
	for (uint64_t at = 0; at < M.b.size; at += CHUNK) {
		uint32_t n = M.b.size - at < CHUNK ? (uint32_t)(M.b.size - at) : CHUNK;
		CHECK(md.checkpoint_write(md.ctx, &M.b, at, img.data + at, n) == VSR_OK, "chunk at %llu",
		      (unsigned long long)at);
	}
	int rc = md.checkpoint_install(md.ctx, &M.b, accept_any, NULL);
	CHECK(rc == VSR_OK, "install: %d", rc);
	CHECK(md.digest(md.ctx) == M.digest_b, "the installed store has B's digest");
	/* Returned: the superblock may name B from now on. */
	M.after = true;
	cut("once the install has returned");
	M.armed = false;
	vsrh_sm_destroy(d);
	free(img.data);

	printf("%d moments cut, %d distinct disks started: %d opened A, %d opened B, %d neither "
	       "(or A once B was due)\n",
	       M.cuts, M.images, M.opened_a, M.opened_b, M.bad);
	CHECK(M.opened_a > 0 && M.opened_b > 0,
	      "some cut leaves A and some B (else the cuts prove nothing)");
	if (M.teeth) {
		CHECK(M.bad > 0, "teeth: without the sync of the built environment, some cut must leave "
			      "a disk that opens neither A nor B whole");
		return st_end(dir, &cfg, "teeth: the missing sync of a fetched checkpoint is caught");
	}
	return st_end(dir, &cfg,
		      "a power cut anywhere in an install leaves checkpoint A or B whole, and B once "
		      "it has returned");
}
