/* sc_storage.c - process-test scenarios. Durable storage: crashes, corruption, a full disk. */
#include "harness.h"

#include <sys/mman.h>

/* ------------------------------------------------------------------------ */
/* Durable storage: crashes and corruption under write load.                */

#define WRITERS 4
#define WRITER_QUOTA 60    /* puts per writer per round */

static volatile sig_atomic_t g_writer_stop;

static void writer_on_term(int sig)
{
	(void)sig;
	g_writer_stop = 1;
}

static void writer_key(int w, uint32_t seq, char key[32], char val[64])
{
	snprintf(key, 32, "w%d-%u", w, seq);
	snprintf(val, 64, "v%d-%u-%" PRIu64, w, seq, g_seed);
}

/* A writer process: its own session, puts w<w>-<seq> from `first` for
 * `quota` keys, each retried with the same request number until answered (a
 * crash of the whole cluster only delays it), and reports every
 * acknowledgement on `fd` as "w seq op". SIGTERM: finish the put in flight,
 * then exit. */
static void writer_main(int w, int fd, uint32_t first, uint32_t quota)
{
	memset(g_pid, 0, sizeof g_pid); /* the driver's children, not ours */
	g_keep = true;
	signal(SIGTERM, writer_on_term);
	mclient m;
	mc_init(&m);
	m.target = (uint8_t)(w % N);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	mresult r;
	uint64_t nonce = g_seed ^ ((uint64_t)w << 40) ^ ((uint64_t)first << 8) ^ 0x77;
	while (!mc_call_number(&m, VSR_REQUEST_REGISTER, nonce, NULL, 0, 300, &r) ||
	       r.status != VSR_REPLY_OK || m.session == 0) {
		if (g_writer_stop) _exit(0);
	}
	for (uint32_t seq = first; seq < first + quota && !g_writer_stop; seq++) {
		char key[32], val[64];
		writer_key(w, seq, key, val);
		op_kv(&sb, "put", key, val);
		m.request++;
		while (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				       300, &r)) {
		}
		if (r.status != VSR_REPLY_OK) _exit(4);
		dprintf(fd, "%d %u %" PRIu64 "\n", w, seq, r.op);
	}
	while (!g_writer_stop) pause();
	_exit(0);
}

typedef struct writers {
	pid_t pid[WRITERS];
	int fd;                  /* read end of the acknowledgement pipe */
	uint32_t next[WRITERS];  /* first seq not yet acknowledged */
	uint64_t max_op;
	uint32_t acks;           /* acknowledgements read this round */
	char buf[4096];
	size_t len;
} writers;

static void writers_start_quota(writers *ws, uint32_t quota);

static void writers_start(writers *ws)
{
	writers_start_quota(ws, WRITER_QUOTA);
}

static void writers_start_quota(writers *ws, uint32_t quota)
{
	int p[2];
	if (pipe(p) != 0) fail("pipe: %s", strerror(errno));
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ws->fd = p[0];
	ws->acks = 0;
	ws->len = 0;
	fflush(NULL);
	for (int w = 0; w < WRITERS; w++) {
		pid_t pid = fork();
		if (pid < 0) fail("fork: %s", strerror(errno));
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(p[0]);
			writer_main(w, p[1], ws->next[w], quota);
		}
		ws->pid[w] = pid;
	}
	close(p[1]);
}

/* Reads what the writers reported; returns false at end of file. */
static bool writers_drain(writers *ws, int timeout_ms)
{
	struct pollfd pfd = {.fd = ws->fd, .events = POLLIN};
	if (poll(&pfd, 1, timeout_ms) <= 0) return true;
	ssize_t n = read(ws->fd, ws->buf + ws->len, sizeof ws->buf - ws->len - 1);
	if (n == 0) return false;
	if (n < 0) return true;
	ws->len += (size_t)n;
	ws->buf[ws->len] = '\0';
	char *line = ws->buf, *nl;
	while ((nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		int w;
		unsigned seq;
		uint64_t op;
		if (sscanf(line, "%d %u %" SCNu64, &w, &seq, &op) != 3 || w < 0 || w >= WRITERS ||
		    seq != ws->next[w])
			fail("writer report out of order: %s", line);
		ws->next[w] = seq + 1;
		if (op > ws->max_op) ws->max_op = op;
		ws->acks++;
		line = nl + 1;
	}
	ws->len = strlen(line);
	memmove(ws->buf, line, ws->len);
	return true;
}

static void writers_wait_acks(writers *ws, uint32_t acks, const char *what)
{
	uint64_t deadline = now_ms() + 3 * CALL_MS;
	while (ws->acks < acks) {
		check_alive();
		if (now_ms() > deadline)
			fail("%s: only %u of %u writes acknowledged within %d ms", what, ws->acks, acks,
			     3 * CALL_MS);
		writers_drain(ws, 50);
	}
}

static void writers_stop(writers *ws)
{
	for (int w = 0; w < WRITERS; w++) kill(ws->pid[w], SIGTERM);
	uint64_t deadline = now_ms() + 3 * CALL_MS;
	for (int w = 0; w < WRITERS; w++) {
		for (;;) {
			int status;
			pid_t r = waitpid(ws->pid[w], &status, WNOHANG);
			if (r == ws->pid[w]) {
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					fail("writer %d failed (status 0x%x)", w, status);
				break;
			}
			if (now_ms() > deadline) {
				kill(ws->pid[w], SIGKILL);
				fail("writer %d did not finish its last put within %d ms", w, 3 * CALL_MS);
			}
			writers_drain(ws, 20);
		}
	}
	while (writers_drain(ws, 0)) {
	}
	close(ws->fd);
}

/* Every acknowledged write of every writer, read back; the replicas agree. */
static uint32_t verify_writes(mclient *m, msgpack_sbuffer *sb, const writers *ws, const char *what)
{
	wait_converged(ws->max_op, CATCHUP_MS, what);
	uint32_t n = 0;
	for (int w = 0; w < WRITERS; w++) {
		for (uint32_t seq = 0; seq < ws->next[w]; seq++) {
			char key[32], val[64];
			writer_key(w, seq, key, val);
			op_kv(sb, "get", key, NULL);
			mresult r;
			mc_op(m, sb, &r, key);
			if (!body_contains(&r, val))
				fail("%s: acknowledged write %s=%s is missing", what, key, val);
			n++;
		}
	}
	return n;
}

static void wait_started(int i)
{
	wait_ports(i);
}

int scenario_crash(int rounds)
{
	g_durability = "durable";
	/* Checkpoints every few writes: kills land between a checkpoint's
	 * commit and its sync, and restarts find the store newer than the
	 * superblock (docs/storage.md, "Checkpoints without a stall"). */
	g_checkpoint_interval = 8;
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	for (int round = 1; round <= rounds; round++) {
		writers_start(&ws);
		writers_wait_acks(&ws, 20, "before the crash");
		bool all = round % 2 == 1;
		if (all) {
			for (int i = 0; i < N; i++) kill_replica(i);
			for (int i = 0; i < N; i++) start_replica(i);
			wait_ports(-1);
		} else {
			for (int i = 0; i < N; i++) {
				kill_replica(i);
				start_replica(i);
				wait_started(i);
			}
		}
		uint32_t before = ws.acks;
		writers_wait_acks(&ws, before + 20, "after the restart");
		writers_stop(&ws);
		uint32_t n = verify_writes(&m, &sb, &ws, all ? "after kill -9 of every replica"
							    : "after kill -9 of each replica in turn");
		note("round %d: kill -9 of %s under load (%u writes acknowledged before); all %u "
		     "acknowledged writes present, digests equal at op %" PRIu64,
		     round, all ? "all replicas at once" : "each replica in turn", before, n, ws.max_op);
	}
	scenario_close(&m, &sb);
	return 0;
}

static void flip_byte(int replica, const char *name, long off)
{
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/%s", g_dir, replica + 1, name);
	int fd = open(path, O_RDWR);
	uint8_t b;
	if (fd < 0 || pread(fd, &b, 1, off) != 1)
		fail("cannot read %s: %s", path, strerror(errno));
	b ^= 0x40;
	if (pwrite(fd, &b, 1, off) != 1) fail("cannot write %s: %s", path, strerror(errno));
	close(fd);
}

static void corrupt_round(mclient *m, msgpack_sbuffer *sb, writers *ws, const char *what,
			  int victim, void (*damage)(int), uint32_t warmup)
{
	writers_start(ws);
	writers_wait_acks(ws, warmup, what);
	damage(victim);
	if (g_pid[victim] > 0)
		kill_replica(victim);
	start_replica(victim);
	wait_ports(victim);
	uint32_t before = ws->acks;
	writers_wait_acks(ws, before + 20, what);
	writers_stop(ws);
	uint32_t n = verify_writes(m, sb, ws, what);
	note("%s (replica %d): back, all %u acknowledged writes present, digests equal at op %" PRIu64,
	     what, victim + 1, n, ws->max_op);
}

static void damage_log_and_superblock(int r)
{
	flip_byte(r, "log-0000000000000001", 64 + 4); /* the first entry's body */
	flip_byte(r, "superblock", 72);                /* copy 0: the epoch word */
}

static void damage_superblock_copy(int r)
{
	flip_byte(r, "superblock", 4096 + 72); /* copy 1: the epoch word */
}

/* vsr.store's LMDB file: every copy of the first writer's first value (live
 * pages and freed ones alike; LMDB copies pages on write) gets a flipped
 * byte, so the live record surely differs from what the checkpoint says. */
static void damage_store_value(int r)
{
	char path[600], key[32], val[64];
	snprintf(path, sizeof path, "%s/data/replica-%d/store/db/data.mdb", g_dir, r + 1);
	writer_key(0, 0, key, val);
	size_t vl = strlen(val);
	int fd = open(path, O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) fail("cannot open %s: %s", path, strerror(errno));
	uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) fail("cannot map %s: %s", path, strerror(errno));
	/* LMDB allocates pages from the front of its sparse, reserved file; this
	 * store's few thousand records lie in the first 64 MiB. */
	off_t used = st.st_size < ((off_t)64 << 20) ? st.st_size : ((off_t)64 << 20);
	unsigned flipped = 0;
	for (off_t i = 0; i + (off_t)vl <= used; i++) {
		if (map[i] != (uint8_t)val[0] || memcmp(map + i, val, vl) != 0) continue;
		map[i + vl - 1] ^= 0x01; /* the seed's last digit: still a valid msgpack string */
		flipped++;
	}
	msync(map, (size_t)st.st_size, MS_SYNC);
	munmap(map, (size_t)st.st_size);
	close(fd);
	if (flipped == 0) fail("replica %d's store holds no copy of %s=%s: no checkpoint yet?", r + 1, key, val);
	note("flipped a byte in %u cop%s of %s's value in replica %d's data.mdb", flipped,
	     flipped == 1 ? "y" : "ies", key, r + 1);
}

/* vsr.store's LMDB file, while the replica is down (the file is mapped
 * into a running one): the pages after the two meta pages, up to 1 MiB,
 * overwritten with noise (the tree's pages of this small store all lie
 * there). Reading it may crash LMDB, which the check survives. */
static void damage_store_pages(int r)
{
	kill_replica(r);
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/store/db/data.mdb", g_dir, r + 1);
	int fd = open(path, O_RDWR);
	if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
	uint8_t noise[4096];
	uint64_t x = g_seed | 1;
	for (off_t off = 2 * 4096; off < (1 << 20); off += sizeof noise) {
		for (size_t i = 0; i < sizeof noise; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			noise[i] = (uint8_t)x;
		}
		if (pwrite(fd, noise, sizeof noise, off) != (ssize_t)sizeof noise)
			fail("cannot write %s: %s", path, strerror(errno));
	}
	fsync(fd);
	close(fd);
}

/* Deleted while it runs; what it writes until kill -9 goes as well. */
static void damage_delete_dir(int r)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/data/replica-%d' 2>/dev/null", g_dir, r + 1);
	if (system(cmd) != 0) {
		/* It was creating a file meanwhile. */
	}
	kill_replica(r);
	if (system(cmd) != 0) fail("cannot delete replica %d's directory", r + 1);
}

int scenario_corrupt(void)
{
	g_durability = "durable";
	g_checkpoint_interval = 64; /* vsr.store's file holds the values early */
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	corrupt_round(&m, &sb, &ws, "byte flipped in the log and the superblock of the primary", p,
		      damage_log_and_superblock, 20);
	if (!log_contains(p, "cannot be trusted"))
		fail("replica %d did not report its corrupt log", p + 1);
	int b = (p + 1) % N;
	corrupt_round(&m, &sb, &ws, "byte flipped in one superblock copy of a backup", b,
		      damage_superblock_copy, 20);
	/* Past two checkpoints of this round (interval 64): w0-0 is in every
	 * replica's data.mdb. */
	int s = (p + 2) % N;
	corrupt_round(&m, &sb, &ws, "byte flipped in a value in vsr.store's LMDB file", s,
		      damage_store_value, 160);
	if (!log_contains(s, "do not match the checkpoint"))
		fail("replica %d did not report its damaged store", s + 1);
	corrupt_round(&m, &sb, &ws, "vsr.store's LMDB pages overwritten with noise", b,
		      damage_store_pages, 20);
	if (!log_contains(b, "cannot be trusted"))
		fail("replica %d did not report its damaged store", b + 1);
	corrupt_round(&m, &sb, &ws, "data directory deleted", s, damage_delete_dir, 20);
	scenario_close(&m, &sb);
	return 0;
}

/* A full disk: replica `victim`'s directory is a tmpfs with room for its
 * first log segment (64 MiB, preallocated) and little more, so its first
 * checkpoint file (at entry 1024) does not fit. It must stop with exit status 74 and say
 * why; the others go on, and no acknowledged write is lost. */
static void unmount_scratch(void)
{
	if (g_mounted[0] != '\0') {
		umount2(g_mounted, MNT_DETACH);
		g_mounted[0] = '\0';
	}
}

int scenario_disk_full(void)
{
	g_durability = "durable";
	g_checkpoint_interval = 1024; /* >= 1024 keys in the first one */
	int victim = 1;
	snprintf(g_mounted, sizeof g_mounted, "%s/data/replica-%d", g_dir, victim + 1);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_mounted);
	if (system(cmd) != 0) fail("cannot create %s", g_mounted);
	/* Its first segment, the superblock and 24 KiB: the superblock always
	 * fits (exact sizing is at the mercy of tmpfs's page accounting), the
	 * first checkpoint (1024 keys or more) never does. */
	if (mount("tmpfs", g_mounted, "tmpfs", 0, "size=65568k") != 0) {
		note("SKIP: cannot mount a small tmpfs at %s: %s", g_mounted, strerror(errno));
		g_mounted[0] = '\0';
		return 77;
	}
	atexit(unmount_scratch);
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	/* Enough for 1024 entries even if every entry held all 4 writers' puts. */
	writers_start_quota(&ws, 1500);
	/* Until the victim stops: only its exit is expected. */
	uint64_t deadline = now_ms() + 6 * CALL_MS;
	int status = 0;
	for (;;) {
		if (waitpid(g_pid[victim], &status, WNOHANG) == g_pid[victim]) {
			g_pid[victim] = 0;
			break;
		}
		if (now_ms() > deadline)
			fail("replica %d never ran out of disk (%u writes acknowledged)", victim + 1,
			     ws.acks);
		writers_drain(&ws, 20);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
		fail("replica %d stopped with status 0x%x, not exit 74", victim + 1, status);
	if (!log_contains(victim, "disk is full"))
		fail("replica %d's log does not say its disk is full", victim + 1);
	uint32_t before = ws.acks;
	note("replica %d stopped with exit 74 after %u acknowledged writes: disk full", victim + 1,
	     before);
	writers_wait_acks(&ws, before + 20, "after the disk filled up");
	writers_stop(&ws);
	uint32_t n = verify_writes(&m, &sb, &ws, "after the disk filled up");
	note("the other replicas go on: all %u acknowledged writes present, digests equal at op %" PRIu64,
	     n, ws.max_op);
	scenario_close(&m, &sb);
	unmount_scratch();
	return 0;
}

