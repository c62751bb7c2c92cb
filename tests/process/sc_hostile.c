/* sc_hostile.c - process-test scenarios. Hostile peers: garbage on every port, slowloris, idle connections,
 * START_VIEW_CHANGE storms and view inflation. */
#include "harness.h"

/* Sends `len` bytes on a fresh connection to port and requires the replica
 * to close it (EOF or reset) within a deadline. */
static void garbage_send(uint16_t port, const void *data, size_t len, const char *what)
{
	int fd = tcp_connect(port);
	if (fd < 0)
		fail("%s: port %u refused the connection", what, port);
	(void)write_all(fd, data, len); /* a reset mid-way is an acceptable answer */
	uint64_t deadline = now_ms() + 5000;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint64_t now = now_ms();
		if (now > deadline)
			fail("%s: port %u kept a connection that sent garbage", what, port);
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		uint8_t buf[4096];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break; /* closed by the replica */
		/* Its HELLO arrives first; keep reading until the close. */
	}
	close(fd);
}

int scenario_garbage(void)
{
	mclient m;
	msgpack_sbuffer sb;
	scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, 5, &last);

	srandom((unsigned)g_seed);
	uint8_t noise[8192];
	for (size_t i = 0; i < sizeof noise; i++)
		noise[i] = (uint8_t)random();
	/* A valid header announcing a body beyond any limit. */
	uint8_t huge[VSR_WIRE_HEADER_SIZE];
	{
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		memcpy(huge, b.data, sizeof huge);
		vsr_buf_free(&b);
		huge[8] = huge[9] = huge[10] = huge[11] = 0xff; /* header checksum now wrong too */
	}
	/* A HELLO followed by a frame whose body checksum is wrong. */
	vsr_buf corrupt = {0};
	{
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT};
		vsr_wire_encode_hello(&corrupt, g_cluster, &h);
		size_t at = corrupt.len;
		vsr_message q = {.type = VSR_MSG_REQUEST};
		q.request.kind = VSR_REQUEST_OP;
		q.request.session = m.session;
		q.request.request = 1;
		q.request.op = (const uint8_t *)"xxxx";
		q.request.op_len = 4;
		vsr_wire_encode_message(&corrupt, g_cluster, &q);
		corrupt.data[corrupt.len - 1] ^= 0x55;
		(void)at;
	}
	/* A well-formed REQUEST before any HELLO. */
	vsr_buf early = {0};
	{
		vsr_message q = {.type = VSR_MSG_REQUEST};
		q.request.kind = VSR_REQUEST_REGISTER;
		q.request.request = 7;
		vsr_wire_encode_message(&early, g_cluster, &q);
	}
	/* On the replica port: a HELLO claiming to be the replica itself. */
	for (int i = 0; i < N; i++) {
		uint16_t ports[2] = {g_replica_port[i], g_client_port[i]};
		for (int k = 0; k < 2; k++) {
			garbage_send(ports[k], noise, sizeof noise, "random bytes");
			garbage_send(ports[k], huge, sizeof huge, "bad header");
			garbage_send(ports[k], corrupt.data, corrupt.len, "corrupt body");
			garbage_send(ports[k], early.data, early.len, "frame before HELLO");
		}
		/* A CLOSE (accepted before HELLO) whose reason forges a log
		 * line: the replica logs the reason, on one line. */
		vsr_buf forged = {0};
		vsr_wire_encode_close(&forged, g_cluster, 0,
				      "bye\nINJECTED ERROR r1 a line the peer wrote\r\x1b[2J");
		garbage_send(g_client_port[i], forged.data, forged.len, "CLOSE forging a log line");
		vsr_buf_free(&forged);
		vsr_buf self = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = (uint8_t)i};
		vsr_wire_encode_hello(&self, g_cluster, &h);
		garbage_send(g_replica_port[i], self.data, self.len, "HELLO impersonating the replica");
		vsr_buf_free(&self);
	}
	vsr_buf_free(&corrupt);
	vsr_buf_free(&early);
	note("every port of every replica closed each garbage connection");
	for (int i = 0; i < N; i++) {
		if (log_line_starts(i, "INJECTED"))
			fail("replica %d: a peer's CLOSE reason wrote a line of its own into the log",
			     i + 1);
		if (!log_contains(i, "the other end said: bye?INJECTED"))
			fail("replica %d: the forged CLOSE reason is not logged, defused", i + 1);
	}
	note("a CLOSE reason with a newline and escapes stays on its line ('?' for each)");

	put_keys(&m, &sb, 5, KEYS, &last);
	get_keys(&m, &sb, 0, KEYS);
	wait_converged(last, CATCHUP_MS, "after garbage");
	cluster_view v;
	status_all(&v);
	for (int i = 0; i < N; i++) {
		if (!v.up[i] || v.s[i].frames_dropped == 0)
			fail("replica %d does not count the refused frames", i + 1);
		note("replica %d: %" PRIu64 " frames refused, still serving", i + 1, v.s[i].frames_dropped);
	}
	scenario_close(&m, &sb);
	return 0;
}


/* ------------------------------------------------------------------------ */
/* Hostile peers (no authentication: what the transport and the core must
 * withstand on their own).                                                 */

/* Writes keys from *next for `ms` milliseconds; returns the rate in writes
 * per second (a figure to report: nothing is asserted on it). */
static double puts_for(mclient *m, msgpack_sbuffer *sb, int *next, uint32_t ms, uint64_t *last)
{
	uint64_t t0 = now_ms();
	int n = 0;
	while (now_ms() < t0 + ms) {
		put_keys(m, sb, *next, *next + 10, last);
		*next += 10;
		n += 10;
	}
	return n * 1000.0 / (double)(now_ms() - t0);
}

/* An impostor on replica `target`'s replica port claiming to be replica
 * `claimed`: reads the target's HELLO for the cluster history (as a real
 * attacker on the network would), then sends `svc_view` START_VIEW_CHANGEs.
 * Returns the socket, or -1 when the target closed it (it was replaced by
 * the real replica, or refused). */
static int impostor_svc(int target, int claimed, uint64_t svc_view)
{
	int fd = tcp_connect(g_replica_port[target]);
	if (fd < 0)
		return -1;
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, g_cluster, N);
	vsr_wire_reader rd;
	vsr_wire_reader_init(&rd, &wc, NULL);
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	uint64_t history = 0;
	bool got = false;
	uint64_t deadline = now_ms() + 2000;
	while (!got && now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		uint8_t buf[512];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		size_t used = 0;
		if (vsr_wire_reader_feed(&rd, buf, (size_t)n, &used) == 1 &&
		    vsr_wire_reader_decode(&rd, &d) == 0 && d.type == VSR_WIRE_HELLO) {
			history = d.hello.history;
			got = true;
		}
	}
	vsr_wire_decoded_free(&d);
	vsr_wire_reader_free(&rd);
	vsr_buf b = {0};
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = (uint8_t)claimed,
			    .instance = 0xbad, .history = history};
	vsr_wire_encode_hello(&b, g_cluster, &h);
	vsr_message svc = {.type = VSR_MSG_START_VIEW_CHANGE, .cluster = g_cluster,
			   .replica = (uint8_t)claimed, .view = svc_view, .history = history};
	vsr_wire_encode_message(&b, g_cluster, &svc);
	bool ok = got && write_all(fd, b.data, b.len);
	vsr_buf_free(&b);
	if (!ok) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint64_t max_view(void)
{
	cluster_view v;
	status_all(&v);
	uint64_t m = 0;
	for (int i = 0; i < N; i++)
		if (v.up[i] && v.s[i].view > m)
			m = v.s[i].view;
	return m;
}

int scenario_attacks(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	int next_key = 0;
	double base = puts_for(&m, &sb, &next_key, 3000, &last);
	note("no attack: %.0f writes/s through primary %d (one client, sequential)", base, p + 1);

	/* 1. Slowloris: more client connections than the replica takes, each
	 * a HELLO and half a frame header, then silence. */
	enum { SLOW = 1100 };
	static int slow[SLOW];
	int opened = 0;
	for (int i = 0; i < SLOW; i++) {
		slow[i] = tcp_connect(g_client_port[p]);
		if (slow[i] < 0)
			break;
		opened++;
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .instance = (uint64_t)i};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		size_t hello_len = b.len;
		vsr_wire_status_request q = {.nonce = 1};
		vsr_wire_encode_status_request(&b, g_cluster, &q);
		/* The HELLO and 20 bytes of the next frame's 40-byte header. */
		(void)write_all(slow[i], b.data, hello_len + 20);
		vsr_buf_free(&b);
	}
	mclient fresh;
	mc_init(&fresh);
	msgpack_sbuffer fsb;
	msgpack_sbuffer_init(&fsb);
	mc_register(&fresh);
	double slowloris = puts_for(&fresh, &fsb, &next_key, 3000, &last);
	note("slowloris (%d connections holding half a frame): a new client registers and "
	     "writes at %.0f/s (%.2fx of no attack)", opened, slowloris, slowloris / base);
	for (int i = 0; i < opened; i++)
		close(slow[i]);
	mc_free(&fresh);
	msgpack_sbuffer_destroy(&fsb);

	/* 2. Every replica port filled with idle connections while a backup
	 * restarts: it must still reach the others. */
	enum { IDLE = 70 };
	static int idle[N][IDLE];
	for (int r = 0; r < N; r++)
		for (int i = 0; i < IDLE; i++)
			idle[r][i] = tcp_connect(g_replica_port[r]);
	int b = (p + 1) % N;
	kill_replica(b);
	put_keys(&m, &sb, next_key, next_key + 50, &last);
	next_key += 50;
	uint64_t t0 = now_ms();
	start_replica(b);
	wait_ports(b);
	wait_converged(last, CATCHUP_MS, "rejoin with the replica ports full of idle connections");
	note("idle connections on every replica port (%d each): restarted replica %d rejoined "
	     "in %" PRIu64 " ms", IDLE, b + 1, now_ms() - t0);
	for (int r = 0; r < N; r++)
		for (int i = 0; i < IDLE; i++)
			if (idle[r][i] >= 0)
				close(idle[r][i]);

	/* 3. A START_VIEW_CHANGE storm: an impostor of backup b (a child
	 * process) sends one for the next view to the two others every 100 ms
	 * for 3 s, reconnecting whenever it is cut off, while a client writes.
	 * Without auth one forged vote and one genuine (a replica stalled past
	 * primary_ms on a loaded machine) are a quorum, so a moved view is
	 * tried once more: a storm that moves it by itself moves it every time. */
	uint64_t view0 = 0, view1 = 0;
	double storm = 0;
	for (int attempt = 1;; attempt++) {
		view0 = max_view();
		fflush(NULL);
		pid_t forger = fork();
		if (forger < 0)
			fail("fork: %s", strerror(errno));
		if (forger == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			uint64_t end = now_ms() + 3000;
			while (now_ms() < end) {
				for (int r = 0; r < N; r++) {
					if (r == b)
						continue;
					int fd = impostor_svc(r, b, view0 + 1);
					if (fd >= 0)
						close(fd);
				}
				poll(NULL, 0, 100); /* the storm's own pace, not a wait for an event */
			}
			_exit(0);
		}
		storm = puts_for(&m, &sb, &next_key, 3000, &last);
		waitpid(forger, NULL, 0);
		view1 = max_view();
		if (view1 == view0)
			break;
		if (attempt == 2)
			fail("a START_VIEW_CHANGE storm from one impostor moved the view %" PRIu64
			     " -> %" PRIu64 " (and in the attempt before)", view0, view1);
		note("the view moved %" PRIu64 " -> %" PRIu64 " during the storm; once more",
		     view0, view1);
		p = wait_primary(STARTUP_MS, "after a view change during the storm");
		b = (p + 1) % N;
	}
	note("START_VIEW_CHANGE storm (every 100 ms for 3 s) from an impostor of replica %d: "
	     "view stays %" PRIu64 ", writes at %.0f/s (%.2fx of no attack)",
	     b + 1, view1, storm, storm / base);

	/* 4. View inflation: one forged START_VIEW_CHANGE for view 2^48 to
	 * each other replica; then the primary dies and the rest must still
	 * agree on a new view. */
	for (int r = 0; r < N; r++) {
		if (r == b)
			continue;
		int fd = impostor_svc(r, b, 1ull << 48);
		if (fd >= 0)
			close(fd);
	}
	put_keys(&m, &sb, next_key, next_key + 10, &last);
	next_key += 10;
	uint64_t inflated = max_view();
	if (inflated >= 1000)
		fail("a forged START_VIEW_CHANGE inflated the view to %" PRIu64, inflated);
	int q = wait_primary(STARTUP_MS, "after the forgeries");
	t0 = now_ms();
	kill_replica(q);
	put_keys(&m, &sb, next_key, next_key + 10, &last);
	next_key += 10;
	int q2 = wait_primary(STARTUP_MS, "failover after the forgeries");
	note("view inflation to 2^48 refused (highest view %" PRIu64 "); after kill -9 of primary "
	     "%d, primary %d took over and writes went on within %" PRIu64 " ms",
	     inflated, q + 1, q2 + 1, now_ms() - t0);
	get_keys(&m, &sb, 0, next_key);
	scenario_close(&m, &sb);
	return 0;
}

