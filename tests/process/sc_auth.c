/* sc_auth.c - process-test scenarios. Authentication: keys, forged frames, a forged replica. */
#include "harness.h"

/* ------------------------------------------------------------------------ */
/* Authentication.                                                          */

/* Runs `vsrhost keygen path`; the key must then load. */
static void keygen(const char *name, uint8_t key[VSR_WIRE_KEY_SIZE])
{
	char path[400], err[256];
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	char *const argv[] = {"vsrhost", "keygen", path, NULL};
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pid_t pid = spawn(g_vsrhost, argv, devnull, -1);
	close(devnull);
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("vsrhost keygen %s failed (status 0x%x)", path, status);
	if (vsr_wire_key_load(path, key, err, sizeof err) != 0)
		fail("the key vsrhost keygen wrote does not load: %s", err);
}

/* Reads connection fd until the replica closes it (or 5 s pass) and tells
 * what came: whether any REPLY did, and the text of a CLOSE. */
static bool drain_until_closed(int fd, vsr_wire_reader *rd, bool *got_reply, char *close_text,
			       size_t close_len)
{
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	*got_reply = false;
	close_text[0] = '\0';
	uint64_t deadline = now_ms() + 5000;
	bool closed = false;
	while (!closed && now_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		uint8_t buf[4096];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0) {
			closed = true;
			break;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			size_t used = 0;
			int fr = vsr_wire_reader_feed(rd, buf + off, (size_t)n - off, &used);
			off += used;
			if (fr != 1)
				break;
			if (vsr_wire_reader_decode(rd, &d) != 0)
				break;
			if (d.type == VSR_MSG_REPLY)
				*got_reply = true;
			if (d.type == VSR_WIRE_CLOSE)
				snprintf(close_text, close_len, "%s", d.close.text);
		}
	}
	vsr_wire_decoded_free(&d);
	return closed;
}

/* Connects to `port`, sends `frames` (freed), and drains the connection
 * until the replica closes it: false when it stays open. */
static bool send_until_closed(uint16_t port, vsr_buf *frames, bool *got_reply, char *close_text,
			      size_t close_len)
{
	int fd = tcp_connect(port);
	bool ok = fd >= 0 && write_all(fd, frames->data, frames->len);
	vsr_buf_free(frames);
	if (!ok)
		fail("cannot reach port %u", port);
	vsr_wire_config wc;
	vsr_wire_config_default(&wc, g_cluster, N);
	vsr_wire_reader rd;
	vsr_wire_reader_init(&rd, &wc, NULL);
	bool closed = drain_until_closed(fd, &rd, got_reply, close_text, close_len);
	vsr_wire_reader_free(&rd);
	close(fd);
	return closed;
}

/* A REQUEST registering a session, as a client without the key would send. */
static void append_register(vsr_buf *b)
{
	vsr_message q = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
	q.request.kind = VSR_REQUEST_REGISTER;
	q.request.request = 1;
	if (vsr_wire_encode_message(b, g_cluster, &q) != 0)
		fail("cannot encode a request");
}

static uint64_t scrape_value(int i, const char *name)
{
	static char buf[1 << 20];
	uint64_t v = 0;
	if (!metric_value(scrape(i, buf, sizeof buf), name, &v))
		fail("replica %d exports no %s", i + 1, name);
	return v;
}

int scenario_auth(void)
{
	uint8_t replica_key[VSR_WIRE_KEY_SIZE], wrong[VSR_WIRE_KEY_SIZE];
	keygen("replica.key", replica_key);
	keygen("client.key", g_client_key);
	keygen("wrong.key", wrong);
	g_auth = true;
	mclient m;
	msgpack_sbuffer sb;
	int p = scenario_open("kv.lua", &m, &sb);
	uint64_t last = 0;
	put_keys(&m, &sb, 0, KEYS / 2, &last);
	wait_converged(last, CATCHUP_MS, "replication with authentication");
	note("keys from vsrhost keygen; primary %d; %d authenticated writes replicated", p + 1,
	     KEYS / 2);
	vsr_wire_status before;
	if (!status_of(p, &before))
		fail("no status from the primary");

	/* 1. No key: HELLO without a nonce, then a request. */
	{
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .instance = 1};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		append_register(&b);
		bool reply;
		char text[300];
		if (!send_until_closed(g_client_port[p], &b, &reply, text, sizeof text))
			fail("a connection without the key was not closed");
		if (reply)
			fail("a connection without the key got a reply");
		note("no key: closed, no reply; the replica said \"%s\"", text);
		if (strstr(text, "no key") == NULL)
			fail("the CLOSE does not say the key is missing");
	}
	/* 2. A wrong key: the handshake fails, nothing is accepted. */
	{
		mclient w;
		mc_init(&w);
		if (mc_open_key(&w, p, VSR_WIRE_ROLE_CLIENT, wrong))
			fail("a client with a wrong key authenticated");
		mc_free(&w);
		note("wrong key: the replica refused the handshake");
	}
	/* 3. An authenticated connection, then one forged frame (a request
	 * whose MAC was made without the key): closed, not applied. */
	{
		mclient f;
		mc_init(&f);
		if (!mc_open(&f, p, VSR_WIRE_ROLE_CLIENT))
			fail("cannot authenticate with the right key");
		msgpack_sbuffer_clear(&sb);
		op_kv(&sb, "put", "forged", "never");
		vsr_message q = {.type = VSR_MSG_REQUEST, .cluster = g_cluster};
		q.request.kind = VSR_REQUEST_OP;
		q.request.session = m.session;
		q.request.request = m.request + 100;
		q.request.op = (const uint8_t *)sb.data;
		q.request.op_len = (uint32_t)sb.size;
		vsr_buf b = {0};
		vsr_wire_encode_message(&b, g_cluster, &q);
		if (vsr_wire_conn_auth_seal(&f.c[p].auth, &b, 0) != 0)
			fail("seal");
		b.data[b.len - 1] ^= 0x01; /* the MAC no longer matches */
		if (!write_all(f.c[p].fd, b.data, b.len))
			fail("write forged frame");
		vsr_buf_free(&b);
		bool reply;
		char text[300];
		if (!drain_until_closed(f.c[p].fd, &f.c[p].rd, &reply, text, sizeof text))
			fail("a forged frame did not close its connection");
		if (reply)
			fail("a forged frame was answered");
		mc_free(&f);
		mresult r;
		op_kv(&sb, "get", "forged", NULL);
		m.request++;
		if (!mc_call_number(&m, VSR_REQUEST_OP, m.request, (const uint8_t *)sb.data, sb.size,
				    300, &r))
			fail("get forged: no answer");
		if (r.status != VSR_REPLY_ERROR || !body_contains(&r, "does not exist"))
			fail("the forged put was applied: get answered %.*s", (int)r.body_len, r.body);
		note("forged frame on an authenticated connection: closed, not applied");
	}
	/* 4. A forged replica on the replica port: HELLO as replica 2 (no key),
	 * then a START_VIEW_CHANGE for a huge view. */
	{
		int target = p;
		int claimed = (p + 1) % N;
		vsr_buf b = {0};
		vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = (uint8_t)claimed,
				    .instance = 2};
		vsr_wire_encode_hello(&b, g_cluster, &h);
		vsr_message svc = {.type = VSR_MSG_START_VIEW_CHANGE, .cluster = g_cluster,
				   .replica = (uint8_t)claimed, .view = before.view + 1000};
		vsr_wire_encode_message(&b, g_cluster, &svc);
		bool reply;
		char text[300];
		if (!send_until_closed(g_replica_port[target], &b, &reply, text, sizeof text))
			fail("a replica-port connection without the key was not closed");
		put_keys(&m, &sb, KEYS / 2, KEYS, &last);
		vsr_wire_status after;
		if (!status_of(p, &after))
			fail("no status from the primary");
		if (after.view != before.view)
			fail("a forged START_VIEW_CHANGE moved the view from %" PRIu64 " to %" PRIu64,
			     before.view, after.view);
		note("forged replica: closed; view still %" PRIu64 ", writes go on", after.view);
	}
	uint64_t failures = scrape_value(p, "vsr_auth_failures_total");
	if (failures < 3)
		fail("vsr_auth_failures_total is %" PRIu64 ", want at least 3", failures);
	note("vsr_auth_failures_total on the primary: %" PRIu64, failures);
	/* 5. vsrctl reads the client key from the config. */
	if (g_vsrctl != NULL) {
		char out[4096];
		const char *put[] = {"put", "auth-key", "works", NULL};
		const char *get[] = {"get", "auth-key", NULL};
		if (run_vsrctl(out, sizeof out, put) != 0)
			fail("vsrctl put with the config's key failed: %s", out);
		if (run_vsrctl(out, sizeof out, get) != 0 || strstr(out, "works") == NULL)
			fail("vsrctl get with the config's key failed: %s", out);
		const char *status[] = {"status", NULL};
		if (run_vsrctl(out, sizeof out, status) != 0)
			fail("vsrctl status with the config's key failed: %s", out);
		note("vsrctl put, get and status authenticate with auth.client_key");
	}
	get_keys(&m, &sb, 0, KEYS);
	scenario_close(&m, &sb);
	return 0;
}

