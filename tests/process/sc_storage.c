/* sc_storage.c - process-test scenarios. Durable storage: crashes, corruption, a full disk. */
#include "harness.h"
#include "writers.h"

#include <sys/mman.h>

#include "lmdb_places.h"

/* ------------------------------------------------------------------------ */
/* Durable storage: crashes and corruption under write load.                */

static volatile sig_atomic_t g_writer_stop;

static void writer_on_term(int sig)
{
	(void)sig;
	g_writer_stop = 1;
}

void writer_key(int w, uint32_t seq, char key[32], char val[64])
{
	snprintf(key, 32, "w%d-%u", w, seq);
	snprintf(val, 64, "v%d-%u-%" PRIu64, w, seq, g_seed);
}

/* A writer process: its own session, puts w<w>-<seq> from `first` for
 * `quota` keys, each retried with the same request number until answered (a
 * crash of the whole cluster only delays it), and reports every
 * acknowledgement on `fd` as "w seq op". SIGTERM: finish the put in flight,
 * then exit. What it is doing goes to `live` (writers_explain). */
static void writer_main(int w, int fd, uint32_t first, uint32_t quota, volatile writer_live *live)
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
	live->since_ms = now_ms();
	live->phase = WRITER_REGISTERING;
	while (!mc_call_number(&m, VSR_REQUEST_REGISTER, nonce, NULL, 0, 300, &r) ||
	       r.status != VSR_REPLY_OK || m.session == 0) {
		live->timeouts++;
		live->target = m.target;
		if (g_writer_stop) _exit(0);
	}
	live->session = m.session;
	for (uint32_t seq = first; seq < first + quota && !g_writer_stop; seq++) {
		char key[32], val[64];
		writer_key(w, seq, key, val);
		op_kv(&sb, "put", key, val);
		m.request++;
		live->seq = seq;
		live->request = m.request;
		live->timeouts = 0;
		live->target = m.target;
		live->since_ms = now_ms();
		live->phase = WRITER_PUTTING;
		while (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				       300, &r)) {
			live->timeouts++;
			live->target = m.target;
		}
		if (r.status != VSR_REPLY_OK) _exit(4);
		dprintf(fd, "%d %u %" PRIu64 "\n", w, seq, r.op);
	}
	live->since_ms = now_ms();
	live->phase = WRITER_QUOTA_SPENT;
	while (!g_writer_stop) pause();
	_exit(0);
}

void writers_start(writers *ws)
{
	writers_start_quota(ws, WRITER_QUOTA);
}

void writers_start_quota(writers *ws, uint32_t quota)
{
	int p[2];
	if (pipe(p) != 0) fail("pipe: %s", strerror(errno));
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ws->fd = p[0];
	ws->acks = 0;
	ws->len = 0;
	ws->quota = quota;
	if (ws->live == NULL) {
		/* Shared with every round's writers; lives as long as the driver. */
		void *live = mmap(NULL, sizeof(writer_live) * WRITERS, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (live == MAP_FAILED) fail("mmap: %s", strerror(errno));
		ws->live = live;
	}
	memset((void *)ws->live, 0, sizeof(writer_live) * WRITERS);
	fflush(NULL);
	for (int w = 0; w < WRITERS; w++) {
		pid_t pid = fork();
		if (pid < 0) fail("fork: %s", strerror(errno));
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(p[0]);
			writer_main(w, p[1], ws->next[w], quota, &ws->live[w]);
		}
		ws->pid[w] = pid;
	}
	close(p[1]);
}

/* Reads what the writers reported; returns false at end of file. */
bool writers_drain(writers *ws, int timeout_ms)
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

/* A writer that stopped on its own (its put refused: the session it
 * registered is gone, i.e. acknowledged state was lost) fails the test at
 * once; the writer stays unreaped for writers_stop. */
void writers_check(const writers *ws, const char *what)
{
	for (int w = 0; w < WRITERS; w++) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		if (waitid(P_PID, (id_t)ws->pid[w], &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
		    si.si_pid != ws->pid[w] || (si.si_code == CLD_EXITED && si.si_status == 0))
			continue;
		fail("%s: writer %d stopped (code %d, status %d)%s", what, w, si.si_code, si.si_status,
		     si.si_code == CLD_EXITED && si.si_status == 4
			     ? ": the cluster refused its put, its session is gone (lost state)"
			     : "");
	}
}

void writers_explain(const writers *ws)
{
	cluster_view v;
	status_all(&v);
	print_cluster(&v);
	uint64_t now = now_ms();
	for (int w = 0; w < WRITERS; w++) {
		volatile const writer_live *l = &ws->live[w];
		uint64_t ago = now - l->since_ms;
		fprintf(stderr, "  writer %d (pid %d): seqs below %u acknowledged and read; ", w,
			(int)ws->pid[w], ws->next[w]);
		switch (l->phase) {
		case WRITER_STARTING:
			fprintf(stderr, "not started yet\n");
			break;
		case WRITER_REGISTERING:
			fprintf(stderr, "registering a session for %" PRIu64 " ms, %u calls unanswered, "
				"sending to replica %d\n", ago, l->timeouts, l->target + 1);
			break;
		case WRITER_PUTTING:
			fprintf(stderr, "put w%d-%u (session %" PRIu64 ", request %" PRIu64 ") in flight "
				"for %" PRIu64 " ms, %u calls of %d ms unanswered, sending to replica %d\n",
				w, l->seq, l->session, l->request, ago, l->timeouts, CALL_MS, l->target + 1);
			break;
		default:
			fprintf(stderr, "its quota of %u puts spent %" PRIu64 " ms ago (session %" PRIu64
				"): it puts nothing more this round\n", ws->quota, ago, l->session);
			break;
		}
	}
}

void writers_wait_acks(writers *ws, uint32_t acks, const char *what)
{
	uint32_t cap = WRITERS * ws->quota;
	if (acks > cap)
		fail("%s: a wait for %u acknowledgements, but this round's writers put only %u "
		     "(the test's own error)", what, acks, cap);
	uint64_t deadline = now_ms() + 3 * CALL_MS;
	while (ws->acks < acks) {
		check_alive();
		writers_check(ws, what);
		if (now_ms() > deadline) {
			writers_explain(ws);
			fail("%s: only %u of %u writes acknowledged within %d ms", what, ws->acks, acks,
			     3 * CALL_MS);
		}
		writers_drain(ws, 50);
	}
}

void writers_stop(writers *ws)
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
				writers_explain(ws);
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

/* Stops (SIGSTOP) or resumes the writers. Stopped, their puts in flight are
 * answered or wait, so the replicas come to rest on one op and their digests
 * can be compared; what they reported so far is read. A resumed writer
 * retries a put whose answer it missed (same request number). */
void writers_pause(writers *ws, bool pause)
{
	for (int w = 0; w < WRITERS; w++) kill(ws->pid[w], pause ? SIGSTOP : SIGCONT);
	uint32_t seen;
	do {
		seen = ws->acks;
		writers_drain(ws, 0);
	} while (pause && ws->acks != seen);
}

/* `more` acknowledgements past the present ones, within what the writers
 * of this round will ever write. */
uint32_t writers_target(const writers *ws, uint32_t more)
{
	uint32_t cap = WRITERS * ws->quota;
	return ws->acks + more < cap ? ws->acks + more : cap;
}

/* Every acknowledged write of every writer, read back; the replicas agree. */
uint32_t verify_writes(mclient *m, msgpack_sbuffer *sb, const writers *ws, const char *what)
{
	wait_converged(ws->max_op, CATCHUP_MS, what);
	uint32_t n = 0;
	for (int w = 0; w < WRITERS; w++) {
		for (uint32_t seq = 0; seq < ws->next[w]; seq++) {
			char key[32], val[64];
			writer_key(w, seq, key, val);
			op_kv(sb, "get", key, NULL);
			mresult r;
			char about[160];
			snprintf(about, sizeof about, "%s: acknowledged write %s=%s", what, key, val);
			mc_op(m, sb, &r, about);
			if (!body_contains(&r, val))
				fail("%s: acknowledged write %s=%s is missing", what, key, val);
			n++;
		}
	}
	return n;
}

/* Every acknowledged write, read at each replica on its own: stale queries,
 * answered at once from the replica's state (no round, no log entry), a
 * window of them in flight. The writers are paused and the replicas
 * converged on one op with equal digests first; each answer must be of a
 * state at or past every acknowledged write's op (a put sent just before the
 * pause may still commit) and hold the write. Fast enough to run after every
 * restart. */
#define VERIFY_WINDOW 64
uint32_t verify_writes_each(msgpack_sbuffer *sb, const writers *ws, const char *what)
{
	return verify_writes_each_from(sb, ws, NULL, what);
}

uint32_t verify_writes_each_from(msgpack_sbuffer *sb, const writers *ws,
				 const uint32_t first[WRITERS], const char *what)
{
	wait_converged(ws->max_op, CATCHUP_MS, what);
	uint32_t total = 0;
	for (int w = 0; w < WRITERS; w++) total += ws->next[w] - (first ? first[w] : 0);
	int *owner = malloc(sizeof(int) * (total ? total : 1));
	uint32_t *seqs = malloc(sizeof(uint32_t) * (total ? total : 1));
	if (owner == NULL || seqs == NULL) fail("out of memory");
	uint32_t k = 0;
	for (int w = 0; w < WRITERS; w++)
		for (uint32_t seq = first ? first[w] : 0; seq < ws->next[w]; seq++, k++)
			owner[k] = w, seqs[k] = seq;
	for (int i = 0; i < N; i++) {
		if (g_pid[i] <= 0) continue;
		mclient q;
		mc_init(&q);
		uint64_t base = (uint64_t)now_ms() << 20; /* numbers of this pass */
		uint32_t sent = 0, answered = 0;
		uint64_t deadline = now_ms() + CALL_MS;
		while (answered < total) {
			while (sent < total && sent - answered < VERIFY_WINDOW) {
				char key[32], val[64];
				writer_key(owner[sent], seqs[sent], key, val);
				op_kv(sb, "get", key, NULL);
				if (!mc_open(&q, i, VSR_WIRE_ROLE_CLIENT))
					fail("%s: cannot reach replica %d", what, i + 1);
				vsr_message m = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
				m.request.kind = VSR_REQUEST_QUERY;
				m.request.request = base + sent;
				m.request.op = (const uint8_t *)sb->data;
				m.request.op_len = (uint32_t)sb->size;
				m.read_mode = VSR_READ_STALE;
				vsr_buf b = {0};
				if (vsr_wire_encode_message(&b, g_cluster, &m) != 0) fail("cannot encode a query");
				bool ok = mc_write_frame(&q, i, &b);
				vsr_buf_free(&b);
				if (!ok) fail("%s: replica %d closed the connection", what, i + 1);
				sent++;
			}
			int from = mc_next(&q, deadline);
			if (from < 0)
				fail("%s: replica %d answered %u of %u stale reads within %d ms", what, i + 1,
				     answered, total, CALL_MS);
			const vsr_message *r = &q.d.message;
			if (q.d.type != VSR_MSG_REPLY || r->request.kind != VSR_REQUEST_QUERY ||
			    r->request.request < base + answered || r->request.request >= base + sent)
				continue;
			uint32_t at = (uint32_t)(r->request.request - base);
			char key[32], val[64];
			writer_key(owner[at], seqs[at], key, val);
			mresult res = {.status = r->status, .op = r->reply_op};
			res.body_len = r->body_len < sizeof res.body ? r->body_len : sizeof res.body;
			memcpy(res.body, r->body, res.body_len);
			if (r->status != VSR_REPLY_OK || r->reply_op < ws->max_op ||
			    !body_contains(&res, val))
				fail("%s: replica %d: acknowledged write %s=%s is missing (status %u, "
				     "state of op %" PRIu64 ", acknowledged up to op %" PRIu64 ")",
				     what, i + 1, key, val, r->status, r->reply_op, ws->max_op);
			answered++;
		}
		mc_free(&q);
	}
	free(owner);
	free(seqs);
	return total;
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
	/* Puts per writer and round: far more than the round's waits ask for
	 * (165 at most: 60 before the first kill, 35 around each single
	 * kill, 20 after the restart), since the driver pauses and stops the
	 * writers. Only the acknowledgements that arrive between two of the
	 * driver's reads come on top, and on a loaded machine those can be
	 * many (98 in one read were seen; with the driver stopped for 3 s,
	 * over 800); should the writers still be done first, the waits ask
	 * for no more than they put (writers_target).
	 * --writer-quota sets a smaller one, to exercise just that. */
	uint32_t quota = g_writer_quota != 0 ? g_writer_quota : 4 * WRITER_QUOTA;
	uint64_t x = g_seed | 1; /* when each crash comes: from the seed */
	for (int round = 1; round <= rounds; round++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		bool all = round % 2 == 1;
		/* Replicas restarted in rounds 2, 4, 6... write log segments of
		 * 64 KiB (64 MiB by default): the log rotates, and segments
		 * behind a durable checkpoint are renamed and reaped
		 * (src/storage/reaper.c) while the kills come. */
		if (round % 2 == 0)
			setenv("VSRH_SEGMENT_BYTES", "65536", 1);
		else
			unsetenv("VSRH_SEGMENT_BYTES");
		writers_start_quota(&ws, quota);
		writers_wait_acks(&ws, writers_target(&ws, 1 + (uint32_t)(x % 60)), "before the crash");
		if (all) {
			/* All at once: every SIGKILL sent before any is reaped. */
			for (int i = 0; i < N; i++) kill(g_pid[i], SIGKILL);
			for (int i = 0; i < N; i++) kill_replica(i);
			for (int i = 0; i < N; i++) start_replica(i);
			wait_ports(-1);
		} else {
			/* One at a time, each kill under load (after a few more
			 * acknowledgements, from the seed); the writes go on while
			 * the replica starts again (for a few, then the writers
			 * pause so that a round stays small), and once it is back
			 * and a few more went through, the writers pause and every
			 * acknowledged write is read at every replica, whose
			 * digests agree: after each single restart. */
			for (int i = 0; i < N; i++) {
				char what[96];
				snprintf(what, sizeof what, "after kill -9 of replica %d (round %d)", i + 1,
					 round);
				if (i > 0)
					writers_wait_acks(&ws, writers_target(&ws, 1 + (uint32_t)((x >> (8 * i)) % 20)),
							  what);
				kill_replica(i);
				start_replica(i);
				writers_wait_acks(&ws, writers_target(&ws, 10), what);
				writers_pause(&ws, true);
				wait_started(i);
				writers_pause(&ws, false);
				writers_wait_acks(&ws, writers_target(&ws, 5), what);
				writers_pause(&ws, true);
				uint32_t n = verify_writes_each(&sb, &ws, what);
				writers_pause(&ws, false);
				note("round %d: replica %d killed under load and back; all %u acknowledged "
				     "writes present at every replica, digests equal at op %" PRIu64,
				     round, i + 1, n, ws.max_op);
			}
		}
		/* Within the quota: a wait for more than the writers put would
		 * end only at its deadline, with the cluster idle (the stall of
		 * seed 1480111390: 240 of 255, every writer done with its 60). */
		uint32_t before = ws.acks;
		writers_wait_acks(&ws, writers_target(&ws, 20), "after the restart");
		bool spent = ws.acks == WRITERS * quota;
		writers_stop(&ws);
		/* Read through the primary (ops, linearizable) after the whole
		 * cluster's kill; at every replica after the round of single
		 * kills, as after each of them. */
		uint32_t n = all ? verify_writes(&m, &sb, &ws, "after kill -9 of every replica")
				 : verify_writes_each(&sb, &ws, "after kill -9 of each replica in turn");
		note("round %d: kill -9 of %s under load (%u writes acknowledged before%s); all %u "
		     "acknowledged writes present, digests equal at op %" PRIu64,
		     round, all ? "all replicas at once" : "each replica in turn", before,
		     spent ? ", the writers' whole quota by the end" : "", n, ws.max_op);
	}
	unsetenv("VSRH_SEGMENT_BYTES");
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

/* Replica r's log from byte `from` on contains needle. */
static bool log_since_contains(int r, long from, const char *needle)
{
	char path[400], line[2048];
	snprintf(path, sizeof path, "%s/replica-%d.log", g_dir, r + 1);
	FILE *f = fopen(path, "r");
	bool found = false;
	if (f != NULL && fseek(f, from, SEEK_SET) == 0)
		while (!found && fgets(line, sizeof line, f) != NULL)
			found = strstr(line, needle) != NULL;
	if (f != NULL) fclose(f);
	return found;
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
	writers_wait_acks(ws, writers_target(ws, 20), what);
	writers_stop(ws);
	/* Through the primary, then at each replica on its own: the repaired
	 * one must serve every write too (its digest alone may come from a
	 * damaged checkpoint record). */
	uint32_t n = verify_writes(m, sb, ws, what);
	verify_writes_each(sb, ws, what);
	note("%s (replica %d): back, all %u acknowledged writes present at every replica, digests "
	     "equal at op %" PRIu64,
	     what, victim + 1, n, ws->max_op);
}

static uint64_t le64_at(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The checkpoint op that replica r's newer superblock copy names
 * (docs/storage.md, "Superblock copy": the sequence at 16, the core's
 * checkpoint_op, its seventh word, at 56 + 6 * 8). */
static uint64_t superblock_checkpoint_op(int r)
{
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/superblock", g_dir, r + 1);
	int fd = open(path, O_RDONLY);
	if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
	uint8_t c[2][112];
	bool ok = pread(fd, c[0], sizeof c[0], 0) == (ssize_t)sizeof c[0] &&
		  pread(fd, c[1], sizeof c[1], 4096) == (ssize_t)sizeof c[1];
	close(fd);
	if (!ok) fail("cannot read both copies of %s", path);
	const uint8_t *n = le64_at(c[1] + 16) > le64_at(c[0] + 16) ? c[1] : c[0];
	return le64_at(n + 56 + 6 * 8);
}

/* The offset of a byte in the body of the first entry record above the
 * checkpoint in replica r's first log segment (docs/storage.md, "Log
 * records": 64-byte headers, a mark opening every group, bodies padded to
 * 8), so that only the entry's own checksum can tell, not the header's.
 * Above the checkpoint: one at or below it is skipped, not a reset (replay
 * ignores it). */
static long first_entry_body(int r)
{
	uint64_t ckpt = superblock_checkpoint_op(r);
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/log-0000000000000001", g_dir, r + 1);
	int fd = open(path, O_RDONLY);
	if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
	long off = 0;
	for (int i = 0; i < 1000000; i++) {
		uint8_t h[64];
		if (pread(fd, h, sizeof h, off) != (ssize_t)sizeof h) break;
		uint32_t len = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 |
			       (uint32_t)h[11] << 24;
		if (h[4] == 1 && len > 4 && le64_at(h + 16) > ckpt) { /* an entry above it */
			close(fd);
			return off + 64 + 4;
		}
		if (h[4] == 1)
			off += 64 + ((len + 7) & ~7u);
		else if (h[4] == 2 || h[4] == 4) /* truncate, mark */
			off += 64;
		else
			break;
	}
	close(fd);
	fail("no entry record above the checkpoint at op %" PRIu64 " in %s", ckpt, path);
}

/* Killed first (kill -9 under load), so that no later write of the
 * replica covers the flipped byte; then restarted by corrupt_round. */
static void damage_log_and_superblock(int r)
{
	kill_replica(r);
	flip_byte(r, "log-0000000000000001", first_entry_body(r));
	flip_byte(r, "superblock", 72); /* copy 0: the epoch word */
}

/* The newer copy (a lagging update writes one copy, alternately; copy 0
 * on a tie), the one a load prefers, and its cluster word: a load that
 * took the bad copy would refuse the directory as another cluster's. */
static void damage_superblock_copy(int r)
{
	kill_replica(r);
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/superblock", g_dir, r + 1);
	int fd = open(path, O_RDONLY);
	uint64_t seq[2] = {0, 0};
	for (int c = 0; c < 2; c++) {
		uint8_t b[8];
		if (fd < 0 || pread(fd, b, 8, 4096L * c + 16) != 8)
			fail("cannot read %s: %s", path, strerror(errno));
		for (int i = 7; i >= 0; i--) seq[c] = seq[c] << 8 | b[i];
	}
	close(fd);
	int copy = seq[1] > seq[0] ? 1 : 0;
	flip_byte(r, "superblock", 4096L * copy + 56);
	note("flipped the cluster word of superblock copy %d (write %" PRIu64 "; the other copy: "
	     "write %" PRIu64 ") of replica %d",
	     copy, seq[copy], seq[1 - copy], r + 1);
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

/* `vsrhost --check-store` on replica r's data directory, by hand: it must
 * exit `want` (0 intact, 1 damaged, 2 could not check) within 30 s, its
 * line saying `says`. */
static void check_store_by_hand(int r, int want, const char *says)
{
	char dir[600], out[700], line[2048] = "";
	snprintf(dir, sizeof dir, "%s/data/replica-%d", g_dir, r + 1);
	snprintf(out, sizeof out, "%s/check-store.out", g_dir);
	int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) fail("cannot create %s: %s", out, strerror(errno));
	char *const argv[] = {"vsrhost", "--check-store", dir, NULL};
	pid_t pid = spawn(g_vsrhost, argv, fd, fd);
	int status = 0;
	if (!wait_exit(pid, 30000, &status)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail("vsrhost --check-store %s did not answer within 30 s", dir);
	}
	ssize_t n = pread(fd, line, sizeof line - 1, 0);
	close(fd);
	line[n > 0 ? n : 0] = '\0';
	line[strcspn(line, "\n")] = '\0';
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (code != want || strstr(line, says) == NULL)
		fail("vsrhost --check-store on replica %d: exit %d, not %d, or no \"%s\" in: %s", r + 1,
		     code, want, says, line);
	note("vsrhost --check-store on replica %d: exit %d: %s", r + 1, code, line);
}

/* The value round's damage, then `vsrhost --check-store` on the stopped
 * replica: damaged. */
static void damage_store_value_by_hand(int r)
{
	damage_store_value(r);
	kill_replica(r);
	check_store_by_hand(r, 1, ": damaged: ");
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

/* vsr.store's free list, while the replica is down: the page that holds
 * its kvc database's first record (a live leaf) written into the oldest
 * free-list record in place of its last page, the first the next commit
 * takes, which would then write over the leaf. Every record still passes
 * its own check; only the walk of LMDB's pages (vsrh_store_pages.c) sees
 * it. What the check must say, in g_freelist_says; the replica's log size
 * before its restart, in g_freelist_from. */
static char g_freelist_says[160];
static long g_freelist_from;

static void damage_store_freelist(int r)
{
	/* By hand first: refused while it runs, intact once stopped. */
	check_store_by_hand(r, 2, "in use by another process");
	kill_replica(r);
	check_store_by_hand(r, 0, ": intact: ");
	char db[600], path[640];
	snprintf(db, sizeof db, "%s/data/replica-%d/store/db", g_dir, r + 1);
	snprintf(path, sizeof path, "%s/data.mdb", db);
	MDB_env *env;
	MDB_txn *txn;
	off_t at = 0;
	uint64_t n = 0, leaf = 0, was = 0;
	int rc = lp_open(db, &env, &txn);
	if (rc == 0)
		rc = lp_oldest_free(txn, &at, &n);
	if (rc == 0)
		rc = lp_value_page(txn, "kvc", NULL, &leaf);
	lp_close(env, txn);
	if (rc != 0)
		fail("replica %d's store %s: no free page or no kvc record: %s", r + 1, db,
		     mdb_strerror(rc));
	int fd = open(path, O_RDWR);
	off_t slot = at + 8 * (off_t)n;
	if (fd < 0 || pread(fd, &was, 8, slot) != 8 || pwrite(fd, &leaf, 8, slot) != 8 ||
	    fsync(fd) != 0)
		fail("cannot write %s: %s", path, strerror(errno));
	close(fd);
	snprintf(g_freelist_says, sizeof g_freelist_says,
		 "page %" PRIu64 " is in use (a leaf page of its kvc database) and in its free list",
		 leaf);
	g_freelist_from = replica_log_size(r);
	note("replica %d's free list: page %" PRIu64 " (a leaf of kvc) in place of free page %" PRIu64
	     " (the last of %" PRIu64 " in its oldest record)",
	     r + 1, leaf, was, n);
	check_store_by_hand(r, 1, g_freelist_says);
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

/* Replica r's /metrics (read without promtool: polled in a loop), or NULL
 * while it does not answer (it listens once its core exists). */
static const char *metrics_now(int r)
{
	static char buf[1 << 18];
	return http_get(r, "/metrics", buf, sizeof buf) == 200 ? buf : NULL;
}

/* The sample `series` (name and labels, as /metrics writes them) in text;
 * fails when it is missing. */
static uint64_t series_in(int r, const char *text, const char *series)
{
	size_t len = strlen(series);
	for (const char *p = text; (p = strstr(p, series)) != NULL; p += len)
		if (p > text && p[-1] == '\n' && p[len] == ' ')
			return strtoull(p + len + 1, NULL, 10);
	fail("replica %d's /metrics has no %s", r + 1, series);
}

/* What replica r has sent that only a member may send: votes in a view
 * change (START_VIEW_CHANGE, DO_VIEW_CHANGE, START_VIEW) and
 * acknowledgements (PREPARE_OK); and (*answers) the RECOVERY_RESPONSEs it
 * received. False while its /metrics does not answer. */
static bool votes_out(int r, uint64_t *votes, uint64_t *answers)
{
	static const char *const types[] = {"prepare_ok", "start_view_change", "do_view_change",
					    "start_view"};
	const char *text = metrics_now(r);
	if (text == NULL)
		return false;
	*votes = 0;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		char series[128];
		snprintf(series, sizeof series,
			 "vsr_messages_total{replica=\"%d\",type=\"%s\",direction=\"out\"}", r + 1,
			 types[i]);
		*votes += series_in(r, text, series);
	}
	char series[128];
	snprintf(series, sizeof series,
		 "vsr_messages_total{replica=\"%d\",type=\"recovery_response\",direction=\"in\"}",
		 r + 1);
	*answers = series_in(r, text, series);
	return true;
}

/* The lost-directory round (issue 8: "no vote and no quorum until it has
 * caught up"): replica `victim`'s data directory is deleted under load and
 * it restarts unjoined. A second replica is then down too, so that the one
 * member left has a quorum only if the wiped replica counts: while the
 * wiped one asks to join (RECOVERY answered four times), it must stay
 * recovering, send no vote or acknowledgement, and no write may be
 * acknowledged. The second replica comes back; the wiped one catches up
 * (state transfer) and until it is normal it still sends no vote; then it
 * is in the cluster's history, and every acknowledged write is read at
 * every replica. Returns NULL, or (teeth) what the wiped replica did that
 * only a member may; without teeth that fails the test. */
static const char *lost_dir_round(mclient *m, msgpack_sbuffer *sb, writers *ws, int victim,
				  bool teeth)
{
	static char bad[300];
	const char *what = "data directory deleted";
	writers_start(ws);
	writers_wait_acks(ws, 20, what);
	damage_delete_dir(victim);
	vsr_wire_status st;
	int other = -1, member = -1;
	for (int i = 0; i < N && member < 0; i++)
		if (i != victim && status_of(i, &st))
			member = i;
	if (member < 0)
		fail("%s: no replica answers a status request", what);
	/* The other one down: a backup, so that the member left is the
	 * primary the writers reach (either way it has no quorum alone). */
	other = (victim + 1) % N == st.primary ? (victim + 2) % N : (victim + 1) % N;
	member = N - victim - other; /* 0 + 1 + 2 = 3 */
	kill_replica(other);
	if (!status_of(member, &st) || st.history == 0)
		fail("%s: replica %d has no history", what, member + 1);
	uint64_t history = st.history;
	if (teeth) {
		char h[32];
		snprintf(h, sizeof h, "%" PRIu64, history);
		setenv("VSRH_TEETH_HIDDEN_HISTORY", h, 1);
		g_odd_replica = victim;
		g_odd_vsrhost = g_vsrhost_teeth;
		write_config("kv.lua"); /* its own copy, cluster-<victim>.lua: the same */
	}
	start_replica(victim);
	wait_ports(victim);
	uint32_t acks0 = UINT32_MAX;
	uint64_t answers = 0, deadline = now_ms() + CALL_MS;
	bad[0] = '\0';
	while (bad[0] == '\0' && answers < 4) {
		if (now_ms() > deadline)
			fail("%s: replica %d heard %" PRIu64 " answer(s) to its RECOVERY in %d ms", what,
			     victim + 1, answers, CALL_MS);
		writers_drain(ws, 20);
		writers_check(ws, what);
		uint64_t votes;
		if (!votes_out(victim, &votes, &answers))
			continue; /* not listening yet */
		bool got = status_of(victim, &st);
		if (answers > 0 && acks0 == UINT32_MAX)
			acks0 = ws->acks; /* it has been heard from the member */
		if (votes > 0)
			snprintf(bad, sizeof bad, "sent %" PRIu64 " vote(s) or acknowledgement(s)", votes);
		else if (got && st.status != VSR_STATUS_RECOVERING)
			snprintf(bad, sizeof bad, "left recovering (status %s, history %016" PRIx64 ")",
				 vsr_status_name((enum vsr_status)st.status), st.history);
		else if (acks0 != UINT32_MAX && ws->acks > acks0)
			snprintf(bad, sizeof bad, "counted in a quorum: %u write(s) acknowledged",
				 ws->acks - acks0);
	}
	if (bad[0] != '\0') {
		snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
			 ", with replica %d down and only replica %d a member", other + 1, member + 1);
		if (teeth)
			return bad;
		fail("%s: the wiped replica %d %s", what, victim + 1, bad);
	}
	note("%s (replica %d), replica %d down too: the wiped replica asked to join, was answered "
	     "%" PRIu64 " times, and stayed recovering without a vote or an acknowledgement; no "
	     "write acknowledged meanwhile",
	     what, victim + 1, other + 1, answers);
	/* The quorum back: it catches up, and votes only once it has. */
	start_replica(other);
	wait_ports(other);
	uint64_t samples = 0;
	deadline = now_ms() + CALL_MS;
	for (;;) {
		if (now_ms() > deadline)
			fail("%s: replica %d never caught up", what, victim + 1);
		writers_drain(ws, 20);
		writers_check(ws, what);
		uint64_t votes, heard; /* before the status: taken while not normal */
		if (!votes_out(victim, &votes, &heard))
			fail("%s: replica %d's /metrics stopped answering", what, victim + 1);
		if (status_of(victim, &st) && st.status == VSR_STATUS_NORMAL)
			break;
		samples++;
		if (votes > 0)
			fail("%s: replica %d sent %" PRIu64 " vote(s) or acknowledgement(s) before it "
			     "caught up", what, victim + 1, votes);
	}
	if (st.history != history)
		fail("%s: replica %d caught up into history %016" PRIx64 ", not the cluster's %016" PRIx64,
		     what, victim + 1, st.history, history);
	writers_wait_acks(ws, writers_target(ws, 20), what);
	writers_stop(ws);
	uint32_t n = verify_writes(m, sb, ws, what);
	verify_writes_each(sb, ws, what);
	note("%s (replica %d): no vote in %" PRIu64 " samples while it caught up, then normal in "
	     "the cluster's history; all %u acknowledged writes present at every replica, digests "
	     "equal at op %" PRIu64,
	     what, victim + 1, samples, n, ws->max_op);
	return NULL;
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
	/* Two copies so that one bad copy loses nothing: the other serves. */
	if (log_contains(b, "cannot be trusted"))
		fail("replica %d reset its state over one bad superblock copy", b + 1);
	/* Past two checkpoints of this round (interval 64): w0-0 is in every
	 * replica's data.mdb. */
	int s = (p + 2) % N;
	corrupt_round(&m, &sb, &ws, "byte flipped in a value in vsr.store's LMDB file", s,
		      damage_store_value_by_hand, 160);
	if (!log_contains(s, "fails its check"))
		fail("replica %d did not report its damaged store", s + 1);
	corrupt_round(&m, &sb, &ws, "vsr.store's LMDB pages overwritten with noise", b,
		      damage_store_pages, 20);
	if (!log_contains(b, "cannot be trusted"))
		fail("replica %d did not report its damaged store", b + 1);
	/* Past two checkpoints of this round: the free list lists pages. */
	corrupt_round(&m, &sb, &ws, "a live kvc leaf written into vsr.store's free list", p,
		      damage_store_freelist, 160);
	if (!log_since_contains(p, g_freelist_from, g_freelist_says) ||
	    !log_since_contains(p, g_freelist_from, "cannot be trusted"))
		fail("replica %d did not report its free list naming a live page (\"%s\", then "
		     "\"cannot be trusted\") at its restart: it trusted the store",
		     p + 1, g_freelist_says);
	note("replica %d's log: \"%s\" (the store cannot be trusted)", p + 1, g_freelist_says);
	lost_dir_round(&m, &sb, &ws, s, false);
	scenario_close(&m, &sb);
	return 0;
}

/* lost-dir-teeth: the lost-directory round with the wiped replica on
 * vsrhost-teeth, whose host hands an empty disk to the core as an intact
 * one of the cluster's history (VSRH_TEETH_HIDDEN_HISTORY, as a surviving
 * marker file would; vsrsim's --amnesia-hidden). The round must catch it. */
int scenario_lost_dir_teeth(void)
{
	if (g_vsrhost_teeth == NULL)
		fail("lost-dir-teeth needs --vsrhost-teeth");
	g_durability = "durable";
	g_checkpoint_interval = 64;
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	const char *bad = lost_dir_round(&m, &sb, &ws, (p + 1) % N, true);
	if (bad == NULL)
		fail("teeth: a wiped replica that takes its empty disk for an intact one was not caught");
	note("teeth: caught: the wiped replica %s", bad);
	writers_stop(&ws);
	scenario_close(&m, &sb);
	return 0;
}

/* Feeds the writers until replica `victim` exits (only its exit is
 * expected); returns its wait status. A `report` file of the fail_io shim
 * (NULL: none) appearing meanwhile fails at once: the replica went on. */
static int writers_until_exit(writers *ws, int victim, const char *what, const char *report)
{
	uint64_t deadline = now_ms() + 6 * CALL_MS;
	int status = 0;
	struct stat st;
	while (waitpid(g_pid[victim], &status, WNOHANG) != g_pid[victim]) {
		if (now_ms() > deadline)
			fail("%s: replica %d never stopped (%u writes acknowledged)", what, victim + 1,
			     ws->acks);
		if (report != NULL && stat(report, &st) == 0) {
			char line[300] = "";
			FILE *f = fopen(report, "r");
			if (f != NULL && fgets(line, sizeof line, f) == NULL) line[0] = '\0';
			if (f != NULL) fclose(f);
			line[strcspn(line, "\n")] = '\0';
			fail("%s: replica %d went on after the failure: %s", what, victim + 1, line);
		}
		writers_drain(ws, 20);
	}
	g_pid[victim] = 0;
	return status;
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
	int status = writers_until_exit(&ws, victim, "never ran out of disk", NULL);
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


/* A failing disk under the write-ahead log, through the LD_PRELOAD shim
 * fail_io.c (--fail-io PATH; no root needed): one replica's N-th log write
 * or fdatasync fails with ENOSPC or EIO, as does every later one. It must
 * exit 74 with a sentence naming the file and the error, touch its log
 * and superblock no more after the failure (no retried fdatasync, no
 * superblock claiming what was not synced), and the others go on with
 * every acknowledged write. Restarted on a good disk, it rejoins with the
 * same state digest. */
int scenario_disk_fault(void)
{
	if (g_fail_io == NULL)
		fail("the disk-fault scenario needs --fail-io PATH (the fail_io shim)");
	g_durability = "durable";
	static const struct {
		const char *spec;     /* VSR_FAIL_IO */
		const char *expect[2];
	} faults[] = {
		{"fdatasync:EIO:30", {"fdatasync of log-", "Input/output error"}},
		{"pwrite:ENOSPC:30", {"writing log-", "No space left on device (the disk is full)"}},
		{"pwrite:EIO:30", {"writing log-", "Input/output error"}},
	};
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	for (int f = 0; f < (int)(sizeof faults / sizeof faults[0]); f++) {
		int victim = (p + f) % N; /* the first primary first */
		char report[400];
		snprintf(report, sizeof report, "%s/fail-io-%d.txt", g_dir, f);
		kill_replica(victim);
		setenv("LD_PRELOAD", g_fail_io, 1);
		setenv("VSR_FAIL_IO", faults[f].spec, 1);
		setenv("VSR_FAIL_IO_REPORT", report, 1);
		start_replica(victim);
		unsetenv("LD_PRELOAD");
		unsetenv("VSR_FAIL_IO");
		unsetenv("VSR_FAIL_IO_REPORT");
		writers_start_quota(&ws, 100000);
		int status = writers_until_exit(&ws, victim, faults[f].spec, report);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
			fail("%s: replica %d stopped with status 0x%x, not exit 74", faults[f].spec,
			     victim + 1, status);
		for (int e = 0; e < 2; e++)
			if (!log_contains(victim, faults[f].expect[e]))
				fail("%s: replica %d's log does not say \"%s\"", faults[f].spec, victim + 1,
				     faults[f].expect[e]);
		if (!log_contains(victim, "nothing more is acknowledged"))
			fail("%s: replica %d's log does not say it stops acknowledging", faults[f].spec,
			     victim + 1);
		struct stat st;
		if (stat(report, &st) == 0)
			fail("%s: replica %d wrote or synced its log or superblock after the failure (%s)",
			     faults[f].spec, victim + 1, report);
		uint32_t before = ws.acks;
		writers_wait_acks(&ws, before + 20, faults[f].spec);
		writers_stop(&ws);
		uint32_t n = verify_writes(&m, &sb, &ws, faults[f].spec);
		start_replica(victim);
		wait_ports(victim);
		wait_converged(ws.max_op, CATCHUP_MS, "the failed replica restarted on a good disk");
		note("%s at replica %d: exit 74, nothing written after the failure; all %u "
		     "acknowledged writes present; restarted, digests equal at op %" PRIu64,
		     faults[f].spec, victim + 1, n, ws.max_op);
	}
	scenario_close(&m, &sb);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* A failing disk under vsr.store's checkpoint sync.                        */

/* The checkpoint op named by the newest valid copy of replica r's
 * superblock (docs/storage.md, "Superblock copy"; the checksum is left to
 * the replica's own start). */
static uint64_t superblock_checkpoint(int r)
{
	char path[600];
	snprintf(path, sizeof path, "%s/data/replica-%d/superblock", g_dir, r + 1);
	int fd = open(path, O_RDONLY);
	if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
	uint64_t best_seq = 0, best = 0;
	bool any = false;
	for (int c = 0; c < 2; c++) {
		uint8_t b[128];
		if (pread(fd, b, sizeof b, (off_t)c * 4096) != (ssize_t)sizeof b) continue;
		uint64_t v[8];
		for (int k = 0; k < 8; k++) {
			v[k] = 0;
			for (int i = 7; i >= 0; i--) v[k] = v[k] << 8 | b[8 * k + i];
		}
		uint32_t w = (uint32_t)(v[6] & 0xffffffffu);
		if (v[0] != 0x31304253524c5356ull || w < 7 || (any && v[2] < best_seq)) continue;
		uint64_t ckpt = 0;
		for (int i = 7; i >= 0; i--) ckpt = ckpt << 8 | b[56 + 8 * 6 + i];
		best_seq = v[2];
		best = ckpt;
		any = true;
	}
	close(fd);
	if (!any) fail("replica %d's superblock has no valid copy", r + 1);
	return best;
}

/* Starts replica r under the fail_io shim with `spec`; the shim's files
 * are report and note (removed first). */
static void start_faulty(int r, const char *spec, bool no_reserve, const char *report,
			 const char *note)
{
	unlink(report);
	unlink(note);
	setenv("LD_PRELOAD", g_fail_io, 1);
	setenv("VSR_FAIL_IO", spec, 1);
	setenv("VSR_FAIL_IO_REPORT", report, 1);
	setenv("VSR_FAIL_IO_NOTE", note, 1);
	if (no_reserve) setenv("VSR_FAIL_IO_NO_RESERVE", "1", 1);
	start_replica(r);
	unsetenv("LD_PRELOAD");
	unsetenv("VSR_FAIL_IO");
	unsetenv("VSR_FAIL_IO_REPORT");
	unsetenv("VSR_FAIL_IO_NOTE");
	unsetenv("VSR_FAIL_IO_NO_RESERVE");
}

/* After replica r stopped on an injected store failure: exit 74, the
 * sentence, the fault really injected, nothing the failure forbids done
 * (the shim's report), and the superblock on disk naming at most the last
 * durable checkpoint at the failure, never the one whose sync failed.
 * Returns the checkpoint op it names. */
static uint64_t check_store_stop(int r, int status, const char *spec, long from,
				 const char *const expect[4], const char *report, const char *notef)
{
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
		fail("%s: replica %d stopped with status 0x%x, not exit 74", spec, r + 1, status);
	for (int e = 0; e < 4; e++)
		if (!log_since_contains(r, from, expect[e]))
			fail("%s: replica %d's log does not say \"%s\"", spec, r + 1, expect[e]);
	FILE *f = fopen(notef, "r");
	char line[400] = "";
	uint64_t allowed;
	const char *cut = NULL;
	if (f == NULL || fgets(line, sizeof line, f) == NULL ||
	    (cut = strstr(line, "may name up to op ")) == NULL ||
	    sscanf(cut, "may name up to op %" SCNu64, &allowed) != 1)
		fail("%s: the shim injected no failure into replica %d (%s)", spec, r + 1, notef);
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	struct stat st;
	if (stat(report, &st) == 0) {
		char cmd[600];
		snprintf(cmd, sizeof cmd, "cat '%s' >&2", report);
		if (system(cmd) != 0) {
			/* The lines are a courtesy; the failure stands. */
		}
		fail("%s: replica %d went on after its store's sync failed (%s)", spec, r + 1, report);
	}
	uint64_t on_disk = superblock_checkpoint(r);
	if (on_disk > allowed)
		fail("%s: replica %d's superblock names checkpoint op %" PRIu64 ", newer than op %" PRIu64
		     " (the last durable at the failure): it named a checkpoint whose sync failed",
		     spec, r + 1, on_disk, allowed);
	note("%s at replica %d: %s; exit 74; its superblock names checkpoint op %" PRIu64, spec,
	     r + 1, line, on_disk);
	return on_disk;
}

/* Restarted without the fault: it recovers from checkpoint `ckpt` (the one
 * before the failed sync), replays its log and reaches the others' digest. */
static void restart_clean(int r, uint64_t ckpt, uint64_t op, const char *spec)
{
	long from = replica_log_size(r);
	start_replica(r);
	wait_ports(r);
	wait_converged(op, CATCHUP_MS, "the replica whose store failed, restarted on a good disk");
	char needle[80];
	snprintf(needle, sizeof needle, "checkpoint op %" PRIu64 ", ", ckpt);
	if (!log_since_contains(r, from, needle) || !log_since_contains(r, from, "recovering"))
		fail("%s: replica %d restarted did not recover from checkpoint op %" PRIu64, spec, r + 1,
		     ckpt);
}

/* A failing disk under vsr.store, through the fail_io.c shim (--fail-io):
 * one replica's checkpoint sync fails (msync, sync_file_range or fdatasync
 * of data.mdb, the write or fdatasync of store/synced; EIO, ENOSPC) under
 * write load with a checkpoint every 16 ops. It must exit 74 with a
 * sentence naming the store and the error, never sync or record anything
 * after the failure, and its superblock must never name the checkpoint
 * whose sync failed. The others go on with every acknowledged write;
 * restarted on a good disk it recovers from the checkpoint before and
 * reaches their digest. Once, it is first restarted on the still failing
 * disk: the rollback of its unsynced newest commit fails, and it exits 74
 * too. */
int scenario_store_fault(void)
{
	if (g_fail_io == NULL)
		fail("the store-fault scenario needs --fail-io PATH (the fail_io shim)");
	g_durability = "durable";
	g_checkpoint_interval = 16;
	static const struct {
		const char *spec;   /* VSR_FAIL_IO */
		bool no_reserve;    /* no MDB_WRITEMAP: data.mdb is synced with fdatasync */
		const char *error;  /* in the sentence */
		const char *reopen; /* then restarted with this fault first (NULL: not) */
		const char *reboot; /* ... pretending a reboot (VSRH_BOOT_ID) */
		const char *reopen_says[4];
	} faults[] = {
		/* A failed sync leaves `synced` without a boot id: even on this
		 * boot the next start rolls the newest commit back (the page
		 * cache may have dropped what failed to write), with a pwrite
		 * and an fdatasync, which fail here. */
		{"data.msync:EIO:3", false, "(EIO)", "data.fdatasync:EIO:1", NULL,
		 {"storage ", "rolling ", "/store/db/data.mdb back to transaction ",
		  "Input/output error"}},
		/* ... and after a reboot it is rolled back to the older meta page
		 * (vsrh_store_settle_dir, in the store check at storage's load),
		 * with a pwrite and an fdatasync. */
		{"data.sync_file_range:EIO:3", false, "(EIO)", "data.fdatasync:EIO:1", "store-fault-reboot",
		 {"storage ", "rolling ", "/store/db/data.mdb back to transaction ",
		  "Input/output error"}},
		{"synced.pwrite:ENOSPC:3", false, "the disk is full", NULL, NULL, {NULL}},
		{"synced.fdatasync:EIO:3", false, "(EIO)", NULL, NULL, {NULL}},
		{"data.fdatasync:EIO:3", true, "(EIO)", NULL, NULL, {NULL}},
	};
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	writers ws = {0};
	char report[400], notef[400];
	snprintf(report, sizeof report, "%s/fail-io-report.txt", g_dir);
	snprintf(notef, sizeof notef, "%s/fail-io-note.txt", g_dir);
	for (int f = 0; f < (int)(sizeof faults / sizeof faults[0]); f++) {
		const char *spec = faults[f].spec;
		int victim = (p + f) % N; /* the first primary first */
		kill_replica(victim);
		long from = replica_log_size(victim);
		start_faulty(victim, spec, faults[f].no_reserve, report, notef);
		writers_start_quota(&ws, 100000);
		int status = writers_until_exit(&ws, victim, spec, report);
		const char *const says[4] = {"vsr.store: LMDB ", "sync of a checkpoint failed",
					     faults[f].error, "this replica stops (exit 74)"};
		uint64_t ckpt = check_store_stop(victim, status, spec, from, says, report, notef);
		uint32_t before = ws.acks;
		writers_wait_acks(&ws, before + 20, spec);
		writers_stop(&ws);
		uint32_t n = verify_writes(&m, &sb, &ws, spec);
		if (faults[f].reopen != NULL) {
			from = replica_log_size(victim);
			if (faults[f].reboot != NULL) setenv("VSRH_BOOT_ID", faults[f].reboot, 1);
			start_faulty(victim, faults[f].reopen, faults[f].no_reserve, report, notef);
			unsetenv("VSRH_BOOT_ID");
			uint64_t deadline = now_ms() + CALL_MS;
			while (waitpid(g_pid[victim], &status, WNOHANG) != g_pid[victim]) {
				if (now_ms() > deadline)
					fail("%s: replica %d restarted on a failing disk never stopped",
					     faults[f].reopen, victim + 1);
				poll(NULL, 0, 20);
			}
			g_pid[victim] = 0;
			uint64_t again = check_store_stop(victim, status, faults[f].reopen, from,
							  faults[f].reopen_says, report, notef);
			if (again != ckpt)
				fail("%s: replica %d's superblock moved from checkpoint op %" PRIu64
				     " to %" PRIu64, faults[f].reopen, victim + 1, ckpt, again);
		}
		restart_clean(victim, ckpt, ws.max_op, spec);
		note("%s at replica %d: the others kept all %u acknowledged writes; restarted on a good "
		     "disk it recovered from checkpoint op %" PRIu64 ", digests equal at op %" PRIu64,
		     spec, victim + 1, n, ckpt, ws.max_op);
	}
	scenario_close(&m, &sb);
	return 0;
}

/* A disk that fails while vsr.store opens (the open of store/synced or of
 * store/db/data.mdb fails with EIO, through the fail_io shim): the replica
 * must stop with exit 74, as for any disk error (docs/storage.md,
 * Failures), not 78, the status of a configuration error, which a
 * supervisor does not restart (config/systemd: RestartPreventExitStatus=64
 * 78). One replica alone: the store opens before any peer is needed.
 * process_powercut met it: a cut while a replica started. */
int scenario_store_open_fault(void)
{
	if (g_fail_io == NULL)
		fail("the store-open-fault scenario needs --fail-io PATH (the fail_io shim)");
	g_durability = "durable";
	static const char *const specs[] = {"synced.open:EIO:1", "data.open:EIO:1"};
	pick_ports();
	write_config("kv.lua");
	char report[400], notef[400];
	snprintf(report, sizeof report, "%s/fail-io-report.txt", g_dir);
	snprintf(notef, sizeof notef, "%s/fail-io-note.txt", g_dir);
	for (size_t f = 0; f < sizeof specs / sizeof specs[0]; f++) {
		long from = replica_log_size(0);
		start_faulty(0, specs[f], false, report, notef);
		int status = 0;
		uint64_t deadline = now_ms() + STARTUP_MS;
		while (waitpid(g_pid[0], &status, WNOHANG) != g_pid[0]) {
			if (now_ms() > deadline)
				fail("%s: replica 1 did not stop", specs[f]);
			poll(NULL, 0, 10); /* bounded wait for the child's exit */
		}
		g_pid[0] = 0;
		struct stat st;
		if (stat(notef, &st) != 0)
			fail("%s: the shim injected no failure (the store never opened that file?)",
			     specs[f]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 74)
			fail("%s: replica 1 stopped with status 0x%x (exit %d), not exit 74: a disk error "
			     "while vsr.store opens is reported as a configuration error", specs[f], status,
			     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		if (!log_since_contains(0, from, "Input/output error"))
			fail("%s: replica 1's log does not name the error", specs[f]);
		note("%s: replica 1 stopped with exit 74, naming the error", specs[f]);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* A checkpoint's commit at the tick, watched and timed like a step.        */

/* Puts keys from *k on until an acknowledged op is a checkpoint's
 * (a multiple of the interval), then stops: the replicas take it at that
 * op and nothing follows, so a replica whose turn comes later commits it
 * at its tick, idle. Returns that op. */
static uint64_t put_to_checkpoint(mclient *m, msgpack_sbuffer *sb, int *k)
{
	uint64_t op = 0;
	for (int n = 0; n < 4 * (int)g_checkpoint_interval; n++) {
		put_keys(m, sb, *k, *k + 1, &op);
		(*k)++;
		if (op % g_checkpoint_interval == 0)
			return op;
	}
	fail("no write landed on a checkpoint's op (last op %" PRIu64 ")", op);
}

/* tick-commit: replica 3 defers its checkpoint's commit to its turn (50 ms
 * after the take); with no operation after the take, the commit runs at
 * the host's tick, outside the core's step. It holds the loop all the same,
 * so it must be watched and timed like a step (host_tick_commit). Replica 3
 * runs under the fail_io shim with every LMDB commit stalled by what a
 * file says (VSR_FAIL_IO_STALL_COMMIT): 150 ms first, which its log must
 * report as a slow step and vsr_slow_steps_total count; then 3000 ms,
 * past its watchdog limit (1000 ms: a loaded machine may hold an
 * ordinary step for hundreds of ms), and the watchdog must stop it (exit
 * 70) naming the commit. The others go on with every write. A durable
 * store normally hands its commit to the syncer's thread (docs/storage.md,
 * "The commit leaves the loop"); the commit stays on the loop when that is
 * not possible (a bulk load, out of memory), which VSRH_COMMIT_ON_LOOP=1
 * makes every time here. */
int scenario_tick_commit(void)
{
	if (g_fail_io == NULL)
		fail("the tick-commit scenario needs --fail-io PATH (the fail_io shim)");
	g_durability = "durable";
	g_checkpoint_interval = 8;
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	const int r = 2; /* replica 3: its turn is 2 x 25 ms after the take */
	char stall[400];
	snprintf(stall, sizeof stall, "%s/stall-commit-ms", g_dir);
	FILE *f = fopen(stall, "w");
	if (f == NULL || fprintf(f, "150\n") < 0 || fclose(f) != 0)
		fail("cannot write %s", stall);
	/* Restarted under the shim before any checkpoint: its replay crosses
	 * none (a commit there would be the startup's, watched as such). */
	kill_replica(r);
	setenv("LD_PRELOAD", g_fail_io, 1);
	setenv("VSR_FAIL_IO_STALL_COMMIT", stall, 1);
	setenv("VSRHOST_WATCHDOG_MS", "1000", 1);
	setenv("VSRH_COMMIT_ON_LOOP", "1", 1);
	start_replica(r);
	unsetenv("LD_PRELOAD");
	unsetenv("VSR_FAIL_IO_STALL_COMMIT");
	unsetenv("VSRHOST_WATCHDOG_MS");
	unsetenv("VSRH_COMMIT_ON_LOOP");
	wait_ports(r);
	int k = 0;
	uint64_t op = put_to_checkpoint(&m, &sb, &k);
	uint64_t deadline = now_ms() + 10000;
	while (!log_contains(r, "slow step: a checkpoint commit at the tick took")) {
		if (now_ms() > deadline)
			fail("replica 3 took checkpoint %" PRIu64 " but logged no slow step for its "
			     "commit at the tick (stalled 150 ms): that commit is not timed as a step",
			     op);
		poll(NULL, 0, 10); /* next look at its log */
	}
	char scraped[1 << 16];
	uint64_t slow = 0;
	if (!metric_value(scrape(r, scraped, sizeof scraped), "vsr_slow_steps_total", &slow) ||
	    slow < 1)
		fail("replica 3's vsr_slow_steps_total is %" PRIu64 " after a slow commit at the tick",
		     slow);
	note("checkpoint %" PRIu64 ": replica 3's commit at the tick (stalled 150 ms) logged as a "
	     "slow step (vsr_slow_steps_total %" PRIu64 ")", op, slow);

	f = fopen(stall, "w");
	if (f == NULL || fprintf(f, "3000\n") < 0 || fclose(f) != 0)
		fail("cannot write %s", stall);
	op = put_to_checkpoint(&m, &sb, &k);
	int status = 0;
	deadline = now_ms() + 15000;
	while (waitpid(g_pid[r], &status, WNOHANG) != g_pid[r]) {
		if (now_ms() > deadline)
			fail("replica 3's commit of checkpoint %" PRIu64 " at the tick stalls 3000 ms, "
			     "past its 1000 ms watchdog limit, and it still runs: the watchdog does not "
			     "watch that commit", op);
		poll(NULL, 0, 10); /* bounded wait for the child's exit */
	}
	g_pid[r] = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 70)
		fail("replica 3 stopped with status 0x%x, not the watchdog's exit 70", status);
	if (!log_contains(r, "watchdog: a step (checkpoint commit at the tick) has run for"))
		fail("replica 3 exited 70, but its log does not name the commit at the tick");
	note("checkpoint %" PRIu64 ": replica 3's commit at the tick stalled past the watchdog "
	     "limit: stopped (exit 70), the watchdog naming it", op);
	/* The other two go on. */
	uint64_t last = 0;
	put_keys(&m, &sb, k, k + 5, &last);
	get_keys(&m, &sb, 0, k + 5);
	scenario_close(&m, &sb);
	return 0;
}

/* A replica's vsr_checkpoint_turns_total (checkpoint commits that waited
 * for its turn), polled until it reaches at least `want` (bounded). */
static uint64_t turns_at_least(int r, uint64_t want, const char *what)
{
	char scraped[1 << 16];
	uint64_t deadline = now_ms() + 10000, n = 0;
	for (;;) {
		if (!metric_value(scrape(r, scraped, sizeof scraped), "vsr_checkpoint_turns_total",
				  &n))
			fail("replica %d: no vsr_checkpoint_turns_total in its metrics", r + 1);
		if (n >= want)
			return n;
		if (now_ms() > deadline)
			fail("%s: replica %d committed %" PRIu64 " checkpoints in a turn, not %" PRIu64,
			     what, r + 1, n, want);
		poll(NULL, 0, 20); /* its turn is at most 50 ms after the take */
	}
}

/* turns: the replicas' turns at a checkpoint's commit count from the view's
 * primary (docs/storage.md, "Replicas take turns at the commit"). The
 * primary commits at the take, right after the warm-up, and never in a
 * turn; each backup waits its turn. After a failover the new primary,
 * replica 2 or 3 (whose turn by number was 25 or 50 ms), must commit at
 * the take as replica 1 did, and the remaining backup take its turn. */
int scenario_turns(void)
{
	g_durability = "durable";
	g_checkpoint_interval = 8;
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	int k = 0;
	uint64_t op = 0;
	for (int i = 0; i < 3; i++)
		op = put_to_checkpoint(&m, &sb, &k);
	for (int r = 0; r < N; r++)
		if (r != p)
			turns_at_least(r, 2, "before the failover");
	uint64_t own = turns_at_least(p, 0, "before the failover");
	if (own != 0)
		fail("primary %d committed %" PRIu64 " checkpoints in a turn: it must commit at the take",
		     p + 1, own);
	note("view's primary %d: no turn in 3 checkpoints (to op %" PRIu64 "); the backups took theirs",
	     p + 1, op);
	kill_replica(p);
	uint64_t last = 0;
	put_keys(&m, &sb, k, k + 1, &last);
	k++;
	int q = wait_primary(STARTUP_MS, "after failover");
	int b = 0;
	while (b == p || b == q)
		b++;
	uint64_t q0 = turns_at_least(q, 0, "after failover");
	uint64_t b0 = turns_at_least(b, 0, "after failover");
	for (int i = 0; i < 3; i++)
		op = put_to_checkpoint(&m, &sb, &k);
	turns_at_least(b, b0 + 2, "after failover, the backup");
	uint64_t q1 = turns_at_least(q, 0, "after failover");
	if (q1 != q0)
		fail("new primary %d committed %" PRIu64 " of 3 checkpoints in a turn (its turn by "
		     "replica number): a primary must commit at the take",
		     q + 1, q1 - q0);
	note("new primary %d: no turn in 3 checkpoints (to op %" PRIu64 "); backup %d took its turn",
	     q + 1, op, b + 1);
	scenario_close(&m, &sb);
	return 0;
}
