/* fuzz_auth.c - libFuzzer target for authenticated connections: the HELLO/AUTH handshake and sealed frames.
 *
 * Each input is used twice:
 *  1. handshake: the input is the byte stream an attacker without the key
 *     sends to one end that requires the key (A). Its frames are decoded
 *     and handed to A's vsr_wire_conn_auth in order, as net.c does: the
 *     first HELLO to peer_hello, every AUTH to peer_auth (also after a
 *     refused HELLO, which net.c would have closed). Property: A never
 *     becomes authenticated or ready, every refusal has a reason, nothing
 *     asserts.
 *  2. sealed stream: A and B complete a real handshake, then the input is a
 *     script that builds what reaches A's reader: frames B seals (PING,
 *     REQUEST, CLOSE), bytes changed in what was already built, raw bytes,
 *     frames B sealed sent again (a replay, or a dropped frame arriving
 *     late), frames dropped. The stream goes to A's reader (MAC mode) in input-chosen
 *     splits. Properties: every frame A accepts is, byte for byte, the
 *     frame B sealed with the next sequence number, beginning where the
 *     last accepted one ended (no forgery, replay, reordering or drop goes
 *     unnoticed); after the first refusal nothing more is accepted; no
 *     crash or sanitizer report.
 * libsodium's randomness is replaced by a fixed stream, so a run is a pure
 * function of its input. Built by clang with -fsanitize=fuzzer, and by the
 * main compiler into a corpus replay (corpus_replay.c --any). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vsr_wire.h"
#include "wire_testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FA_STREAM_MAX (256u * 1024u)
#define FA_FRAMES_MAX 256u

static const uint8_t fa_key[VSR_WIRE_KEY_SIZE] = {
	0x76, 0x73, 0x72, 0x68, 0x6f, 0x73, 0x74, 0x20, 0x66, 0x75, 0x7a, 0x7a,
	0x20, 0x6b, 0x65, 0x79, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void fa_fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_auth: property violated: %s (%s)\n", what, detail);
	abort();
}

/* ------------------------------------------------------------------------ */
/* Deterministic randomness for libsodium (nonces).                         */

static uint64_t fa_rng = 1;

static const char *fa_rand_name(void) { return "fuzz_auth"; }
static uint32_t fa_rand_u32(void) { return (uint32_t)wt_rand(&fa_rng); }
static void fa_rand_buf(void *buf, size_t len)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)wt_rand(&fa_rng);
}

static struct randombytes_implementation fa_rand = {
	.implementation_name = fa_rand_name,
	.random = fa_rand_u32,
	.buf = fa_rand_buf,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static bool done;
	if (done)
		return 0;
	done = true;
	/* Before sodium_init, as libsodium requires. */
	randombytes_set_implementation(&fa_rand);
	if (sodium_init() < 0)
		abort();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* 1. The handshake against an attacker without the key.                    */

static void fa_handshake(const uint8_t *data, size_t size, const vsr_wire_config *c)
{
	vsr_wire_conn_auth a;
	vsr_wire_conn_auth_init(&a, fa_key, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 0);
	vsr_wire_reader r;
	vsr_wire_reader_init(&r, c, NULL);
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	vsr_buf out = {0};
	bool hello_seen = false;
	size_t off = 0;
	while (off < size) {
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&r, data + off, size - off, &used);
		off += used;
		if (rc != 1)
			break;
		if (vsr_wire_reader_decode(&r, &d) != 0)
			break;
		char err[256] = "";
		if (d.type == VSR_WIRE_HELLO && !hello_seen) {
			hello_seen = true;
			rc = vsr_wire_conn_auth_peer_hello(&a, &d.hello, &out, err, sizeof err);
			if (rc != 0 && err[0] == '\0')
				fa_fail("a refused HELLO without a reason", "");
			/* net.c closes the connection here; a careless caller
			 * that goes on must still be refused, not crash. */
		} else if (d.type == VSR_WIRE_AUTH) {
			rc = vsr_wire_conn_auth_peer_auth(&a, &d.auth, &r, err, sizeof err);
			if (rc == 0)
				fa_fail("bytes without the key authenticated", "peer_auth accepted");
			if (err[0] == '\0')
				fa_fail("a refused AUTH without a reason", "");
			break;
		} else if (!vsr_wire_conn_auth_ready(&a)) {
			break; /* anything else before AUTH closes the connection */
		}
		if (a.authenticated || vsr_wire_conn_auth_ready(&a))
			fa_fail("bytes without the key made the connection ready", "");
	}
	if (a.authenticated || vsr_wire_conn_auth_ready(&a))
		fa_fail("bytes without the key made the connection ready", "at the end");
	vsr_buf_free(&out);
	vsr_wire_decoded_free(&d);
	vsr_wire_reader_free(&r);
}

/* ------------------------------------------------------------------------ */
/* 2. A sealed stream, tampered by the script.                              */

typedef struct fa_stream {
	vsr_buf sealed[FA_FRAMES_MAX]; /* B's frames by sequence number, delivered or not */
	uint32_t nsealed;
	vsr_buf bytes;        /* what A's reader gets */
} fa_stream;

static void fa_append(fa_stream *s, const uint8_t *p, size_t n)
{
	if (vsr_buf_append(&s->bytes, p, n) != VSR_OK)
		abort();
}

/* Reads n bytes of the script (zeros past its end). */
typedef struct fa_script {
	const uint8_t *p;
	size_t len, off;
} fa_script;

static uint64_t fa_take(fa_script *sc, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | (sc->off < sc->len ? sc->p[sc->off++] : 0);
	return v;
}

/* B encodes one frame of the script's choosing into f (unsealed). */
static void fa_encode(fa_script *sc, vsr_buf *f)
{
	unsigned kind = (unsigned)fa_take(sc, 1) % 3;
	if (kind == 0) {
		vsr_wire_ping p = {.nonce = fa_take(sc, 8), .time_ns = fa_take(sc, 2)};
		if (vsr_wire_encode_ping(f, WT_CLUSTER, VSR_WIRE_PING, &p) != 0)
			abort();
	} else if (kind == 1) {
		uint8_t op[64];
		unsigned n = (unsigned)fa_take(sc, 1) % sizeof op;
		for (unsigned i = 0; i < n; i++)
			op[i] = (uint8_t)fa_take(sc, 1);
		vsr_message m = {.type = VSR_MSG_REQUEST};
		m.request.session = fa_take(sc, 2) + 1;
		m.request.request = fa_take(sc, 2) + 1;
		m.request.kind = VSR_REQUEST_OP;
		m.request.op = n > 0 ? op : NULL;
		m.request.op_len = n;
		m.history = fa_take(sc, 1);
		if (vsr_wire_encode_message(f, WT_CLUSTER, &m) != 0)
			abort();
	} else {
		char text[32];
		snprintf(text, sizeof text, "bye %u", (unsigned)fa_take(sc, 1));
		if (vsr_wire_encode_close(f, WT_CLUSTER, VSR_WIRE_EMAC, text) != 0)
			abort();
	}
}

static void fa_sealed(const uint8_t *data, size_t size, const vsr_wire_config *c)
{
	/* A real handshake: A (replica 0) and B (a client), both with the key. */
	fa_rng = 0x5eed ^ size;
	vsr_wire_conn_auth a, b;
	vsr_wire_conn_auth_init(&a, fa_key, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 0);
	vsr_wire_conn_auth_init(&b, fa_key, WT_CLUSTER, VSR_WIRE_ROLE_CLIENT, 0);
	vsr_wire_reader r;
	vsr_wire_reader_init(&r, c, NULL);
	vsr_buf scratch = {0};
	char err[256];
	vsr_wire_hello ha = {.role = VSR_WIRE_ROLE_REPLICA, .has_nonce = true};
	vsr_wire_hello hb = {.role = VSR_WIRE_ROLE_CLIENT, .has_nonce = true};
	memcpy(ha.nonce, a.hs.my_nonce, VSR_WIRE_NONCE_SIZE);
	memcpy(hb.nonce, b.hs.my_nonce, VSR_WIRE_NONCE_SIZE);
	if (vsr_wire_conn_auth_peer_hello(&a, &hb, &scratch, err, sizeof err) != 0 ||
	    vsr_wire_conn_auth_peer_hello(&b, &ha, &scratch, err, sizeof err) != 0)
		fa_fail("the handshake with the key failed", err);
	/* The proofs: B's AUTH to A, A's to B, decoded from what they wrote. */
	vsr_wire_auth proof_a, proof_b;
	vsr_wire_handshake_peer_hello(&a.hs, &hb, &proof_a);
	vsr_wire_handshake_peer_hello(&b.hs, &ha, &proof_b);
	vsr_wire_reader dummy;
	vsr_wire_reader_init(&dummy, c, NULL);
	if (vsr_wire_conn_auth_peer_auth(&a, &proof_b, &r, err, sizeof err) != 0 ||
	    vsr_wire_conn_auth_peer_auth(&b, &proof_a, &dummy, err, sizeof err) != 0)
		fa_fail("a right proof was refused", err);
	vsr_wire_reader_free(&dummy);
	vsr_buf_free(&scratch);
	if (!vsr_wire_conn_auth_ready(&a) || !vsr_wire_conn_auth_ready(&b))
		fa_fail("the handshake did not finish", "");

	/* The script builds the stream. */
	fa_stream s = {0};
	fa_script sc = {data, size, 0};
	while (sc.off < sc.len && s.bytes.len < FA_STREAM_MAX && s.nsealed < FA_FRAMES_MAX) {
		unsigned op = (unsigned)fa_take(&sc, 1) % 6;
		vsr_buf f = {0};
		switch (op) {
		case 0: case 1: /* B seals its next frame, which arrives */
		case 5:         /* ... or never arrives */
			fa_encode(&sc, &f);
			if (vsr_wire_conn_auth_seal(&b, &f, 0) != 0)
				abort();
			if (op != 5)
				fa_append(&s, f.data, f.len);
			s.sealed[s.nsealed++] = f;
			f = (vsr_buf){0};
			break;
		case 2: { /* a byte changed (never to the same value) */
			if (s.bytes.len == 0)
				break;
			size_t at = (size_t)fa_take(&sc, 3) % s.bytes.len;
			uint8_t x = (uint8_t)fa_take(&sc, 1);
			s.bytes.data[at] ^= x != 0 ? x : 0x80;
			break;
		}
		case 3: { /* raw bytes of the attacker's */
			uint8_t raw[64];
			unsigned n = (unsigned)fa_take(&sc, 1) % sizeof raw + 1;
			for (unsigned i = 0; i < n; i++)
				raw[i] = (uint8_t)fa_take(&sc, 1);
			fa_append(&s, raw, n);
			break;
		}
		default: { /* a sealed frame again: a replay, or a dropped one late */
			if (s.nsealed == 0)
				break;
			const vsr_buf *old = &s.sealed[fa_take(&sc, 1) % s.nsealed];
			fa_append(&s, old->data, old->len);
			break;
		}
		}
		vsr_buf_free(&f);
	}

	/* A reads it in splits chosen by the input. */
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	uint64_t st = size * 0x9e3779b97f4a7c15ull;
	size_t off = 0;
	uint32_t next = 0;   /* sequence number of the frame A must accept next */
	size_t last_end = 0; /* where the last accepted frame ended */
	bool refused = false;
	while (off < s.bytes.len) {
		size_t piece = 1 + (size_t)(wt_rand(&st) % 200);
		if (piece > s.bytes.len - off)
			piece = s.bytes.len - off;
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&r, s.bytes.data + off, piece, &used);
		size_t end = off + used;
		off = end;
		if (rc == 0)
			continue;
		if (rc == 1)
			rc = vsr_wire_reader_decode(&r, &d);
		if (rc < 0) {
			refused = true;
			break;
		}
		/* A accepted a frame ending at `end`: it must be, byte for
		 * byte, the frame B sealed with the next sequence number, and
		 * begin where the last accepted one ended. */
		if (next >= s.nsealed)
			fa_fail("more frames accepted than B sealed", vsr_wire_type_name(d.type));
		const vsr_buf *want = &s.sealed[next];
		if (end < want->len || end - want->len != last_end ||
		    memcmp(s.bytes.data + end - want->len, want->data, want->len) != 0)
			fa_fail("an accepted frame is not B's frame with its sequence number",
				vsr_wire_type_name(d.type));
		last_end = end;
		next++;
	}
	/* A refused reader stays refused. */
	if (refused) {
		size_t used = 0;
		uint8_t one = 0;
		if (vsr_wire_reader_feed(&r, &one, 1, &used) >= 0 || used != 0)
			fa_fail("a refused reader took more bytes", r.err);
	}
	vsr_wire_decoded_free(&d);
	vsr_wire_reader_free(&r);
	for (uint32_t i = 0; i < s.nsealed; i++)
		vsr_buf_free(&s.sealed[i]);
	vsr_buf_free(&s.bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	LLVMFuzzerInitialize(NULL, NULL); /* the corpus replay has no libFuzzer to call it */
	vsr_wire_config c;
	wt_config(&c);
	c.body_bytes_max = 1u << 20;
	fa_rng = 0xa0 ^ size;
	fa_handshake(data, size, &c);
	fa_sealed(data, size, &c);
	return 0;
}
