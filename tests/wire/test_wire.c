/* test_wire.c - wire format tests: round trips, every malformation, the streaming reader.
 *
 * Usage: test_wire roundtrip|malformed|reader|oversize|encode-errors|doc-example|auth [seed]
 *        test_wire write-corpus DIR   (regenerates tests/wire/corpus)
 * The seed (argument, else VSR_SEED, else the clock) is printed first so
 * any failure can be replayed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "vsr_wire.h"
#include "wire_testutil.h"

static unsigned wt_failures;
static unsigned wt_checks;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		wt_checks++;                                                 \
		if (!(cond)) {                                               \
			wt_failures++;                                       \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
		}                                                            \
	} while (0)

static const uint8_t wt_core_types[] = {
	VSR_MSG_REQUEST, VSR_MSG_REPLY, VSR_MSG_PREPARE, VSR_MSG_PREPARE_OK,
	VSR_MSG_COMMIT, VSR_MSG_START_VIEW_CHANGE, VSR_MSG_DO_VIEW_CHANGE,
	VSR_MSG_START_VIEW, VSR_MSG_GET_STATE, VSR_MSG_NEW_STATE,
	VSR_MSG_GET_CHECKPOINT, VSR_MSG_CHECKPOINT_CHUNK, VSR_MSG_RECOVERY,
	VSR_MSG_RECOVERY_RESPONSE, VSR_MSG_PRIMARY_LOST,
};
static const uint8_t wt_host_types[] = {
	VSR_WIRE_HELLO, VSR_WIRE_PING, VSR_WIRE_PONG, VSR_WIRE_STATUS_REQUEST,
	VSR_WIRE_STATUS_REPLY, VSR_WIRE_CLOSE, VSR_WIRE_AUTH,
};
#define WT_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Round trip of every type, through vsr_wire_decode.                       */

static void test_roundtrip(uint64_t seed)
{
	uint64_t st = seed;
	vsr_wire_config cfg;
	wt_config(&cfg);
	vsr_wire_stats stats = {0};
	char err[200], why[200];
	for (int iter = 0; iter < 400; iter++) {
		for (size_t t = 0; t < WT_COUNT(wt_core_types); t++) {
			wt_arena arena = {0};
			vsr_message m;
			wt_gen_message(&st, wt_core_types[t], iter % 16 == 0, &arena, &m);
			CHECK(vsr_message_invalid(&m, WT_REPLICAS) == NULL,
			      "generator made an invalid %s: %s",
			      vsr_wire_type_name(m.type), vsr_message_invalid(&m, WT_REPLICAS));
			vsr_buf buf = {0};
			int rc = vsr_wire_encode_message(&buf, WT_CLUSTER, &m);
			CHECK(rc == 0, "encode %s: %s", vsr_wire_type_name(m.type),
			      vsr_wire_strerror(rc));
			vsr_wire_decoded d;
			vsr_wire_decoded_init(&d);
			size_t flen = 0;
			rc = vsr_wire_decode(buf.data, buf.len, &cfg, &d, &flen, &stats,
					     err, sizeof(err));
			CHECK(rc == 0, "decode %s: %s", vsr_wire_type_name(m.type), err);
			if (rc == 0) {
				CHECK(flen == buf.len, "frame length %zu of %zu", flen, buf.len);
				CHECK(d.type == m.type, "type %u", d.type);
				CHECK(d.message.cluster == WT_CLUSTER, "cluster");
				m.cluster = WT_CLUSTER;
				CHECK(wt_message_equal(&m, &d.message, why, sizeof(why)),
				      "%s: %s", vsr_wire_type_name(m.type), why);
				/* Pointers reference the decoded object, not the input. */
				if (d.message.body_len > 0)
					CHECK(d.message.body < buf.data ||
						      d.message.body >= buf.data + buf.len,
					      "body points into the input buffer");
				/* Re-encoding the decoded message gives the same bytes. */
				vsr_buf again = {0};
				CHECK(wt_encode_decoded(&d, &again) == 0, "re-encode");
				CHECK(again.len == buf.len &&
					      memcmp(again.data, buf.data, buf.len) == 0,
				      "re-encoding of %s differs", vsr_wire_type_name(m.type));
				free(again.data);
			}
			vsr_wire_decoded_free(&d);
			free(buf.data);
			wt_arena_free(&arena);
		}
		for (size_t t = 0; t < WT_COUNT(wt_host_types); t++) {
			vsr_wire_decoded expect, d;
			vsr_buf buf = {0};
			int rc = wt_gen_host(&st, wt_host_types[t], &buf, &expect);
			CHECK(rc == 0, "encode %s: %s", vsr_wire_type_name(wt_host_types[t]),
			      vsr_wire_strerror(rc));
			vsr_wire_decoded_init(&d);
			rc = vsr_wire_decode(buf.data, buf.len, &cfg, &d, NULL, &stats, err,
					     sizeof(err));
			CHECK(rc == 0, "decode %s: %s", vsr_wire_type_name(wt_host_types[t]), err);
			if (rc == 0)
				CHECK(wt_host_equal(&expect, &d, why, sizeof(why)), "%s: %s",
				      vsr_wire_type_name(d.type), why);
			vsr_wire_decoded_free(&d);
			free(buf.data);
		}
	}
	CHECK(stats.frames_in == 400 * (WT_COUNT(wt_core_types) + WT_COUNT(wt_host_types)),
	      "frames_in %" PRIu64, stats.frames_in);
	CHECK(vsr_wire_stats_dropped(&stats) == 0, "dropped %" PRIu64,
	      vsr_wire_stats_dropped(&stats));
}

/* ------------------------------------------------------------------------ */
/* Malformations: each must give its own reason and be counted.             */

/* Decodes `frame` and checks the reason; counts into `stats`. */
static void expect_reason(const char *what, const uint8_t *frame, size_t len,
			  const vsr_wire_config *cfg, int reason, vsr_wire_stats *stats)
{
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	char err[200] = "";
	uint64_t before = stats->dropped[reason];
	int rc = vsr_wire_decode(frame, len, cfg, &d, NULL, stats, err, sizeof(err));
	CHECK(rc == -reason, "%s: got %d (%s), want %s [%s]", what, rc,
	      rc ? vsr_wire_strerror(rc) : "accepted", vsr_wire_strerror(reason), err);
	CHECK(stats->dropped[reason] == before + 1, "%s: not counted", what);
	CHECK(rc == 0 || err[0] != '\0', "%s: no detail", what);
	CHECK(d.owned_body == NULL && d.owned_entries == NULL && d.type == 0,
	      "%s: failed decode left memory", what);
	/* The streaming reader must refuse it with the same reason. */
	vsr_wire_reader r;
	vsr_wire_reader_init(&r, cfg, NULL);
	size_t used = 0;
	rc = vsr_wire_reader_feed(&r, frame, len, &used);
	if (rc == 1)
		rc = vsr_wire_reader_decode(&r, &d);
	else if (rc == 0)
		rc = -VSR_WIRE_ETRUNCATED; /* the reader waits for more bytes */
	CHECK(rc == -reason, "%s via reader: got %d, want %s [%s]", what, rc,
	      vsr_wire_strerror(reason), r.err);
	vsr_wire_decoded_free(&d);
	vsr_wire_reader_free(&r);
}

/* Packs a body with msgpack-c through `fill`, frames it as `type`. */
typedef void (*wt_fill_fn)(msgpack_packer *pk);
static vsr_buf frame_of(uint8_t type, wt_fill_fn fill)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	fill(&pk);
	vsr_buf out = {0};
	wt_frame_raw(&out, type, WT_CLUSTER, (const uint8_t *)sb.data, (uint32_t)sb.size);
	msgpack_sbuffer_destroy(&sb);
	return out;
}

/* A core body with every field zero, except what `patch` changes: index
 * of the element to replace and a callback that packs the replacement. */
static int wt_patch_index;
static wt_fill_fn wt_patch_fill;
static void fill_core(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 22);
	for (int i = 0; i < 22; i++) {
		if (i == wt_patch_index && wt_patch_fill != NULL) {
			wt_patch_fill(pk);
			continue;
		}
		if (i == 13 || i == 15)
			msgpack_pack_bin(pk, 0);
		else if (i == 16)
			msgpack_pack_array(pk, 0);
		else
			msgpack_pack_uint64(pk, 0);
	}
}
static vsr_buf core_frame(uint8_t type, int index, wt_fill_fn fill)
{
	wt_patch_index = index;
	wt_patch_fill = fill;
	return frame_of(type, fill_core);
}

static void fill_str(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "x", 1); }
static void fill_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void fill_neg(msgpack_packer *pk) { msgpack_pack_int64(pk, -1); }
static void fill_neg100(msgpack_packer *pk) { msgpack_pack_int64(pk, -100); }
static void fill_neg_big(msgpack_packer *pk) { msgpack_pack_int64(pk, -(1LL << 40)); }
/* A non-negative value in the signed int8 format (0xd0 0x05). */
static void fill_int8_5(msgpack_packer *pk)
{
	static const char raw[2] = {(char)0xd0, 0x05};
	msgpack_pack_str_body(pk, raw, 2); /* raw bytes: the packer appends them */
}
static void fill_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void fill_float(msgpack_packer *pk) { msgpack_pack_double(pk, 1.5); }
static void fill_array1(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_uint64(pk, 1);
}
static void fill_9(msgpack_packer *pk) { msgpack_pack_uint64(pk, 9); }
static void fill_256(msgpack_packer *pk) { msgpack_pack_uint64(pk, 256); }
static void fill_bin3(msgpack_packer *pk) { msgpack_pack_bin_with_body(pk, "abc", 3); }
static void fill_short_array(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 19);
	for (int i = 0; i < 19; i++)
		msgpack_pack_uint64(pk, 0);
}
static void fill_deep(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 0);
}
/* Two valid but unchained entries: rejected by vsr_message_invalid. */
static void fill_unchained(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_array(pk, 7);
		msgpack_pack_uint64(pk, 100 + (uint64_t)i); /* checksum */
		msgpack_pack_uint64(pk, 7);                 /* parent: never 100 */
		msgpack_pack_uint64(pk, 1 + (uint64_t)i);   /* op */
		msgpack_pack_uint64(pk, 0);
		msgpack_pack_uint64(pk, 0);
		msgpack_pack_uint64(pk, 0);
		msgpack_pack_bin(pk, 0);
	}
}
/* An entry whose body is not a batch of request_count requests. */
static void fill_bad_batch(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 7);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint64(pk, 2);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_bin_with_body(pk, "short", 5);
}
static void fill_entries_65(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 65);
	for (int i = 0; i < 65; i++) {
		msgpack_pack_array(pk, 7);
		for (int j = 0; j < 6; j++)
			msgpack_pack_uint64(pk, (uint64_t)(j == 2 ? i + 1 : 0));
		msgpack_pack_bin(pk, 0);
	}
}
static void fill_hello_role9(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 5);
	msgpack_pack_uint64(pk, 9);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_bin(pk, 0);
}
static void fill_hello_client_replica(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 5);
	msgpack_pack_uint64(pk, VSR_WIRE_ROLE_CLIENT);
	msgpack_pack_uint64(pk, 2);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_bin(pk, 0);
}
static void fill_hello_short_nonce(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 5);
	msgpack_pack_uint64(pk, VSR_WIRE_ROLE_CLIENT);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_bin_with_body(pk, "0123456789", 10);
}
/* A replica's HELLO of n fields, up to the configuration (field 5), which
 * the caller packs. */
static void hello_head(msgpack_packer *pk, uint32_t n)
{
	msgpack_pack_array(pk, n);
	msgpack_pack_uint64(pk, VSR_WIRE_ROLE_REPLICA);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint64(pk, 7);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_bin(pk, 0);
}
/* A replica's HELLO with `parts` configuration parts and `extra`
 * appended fields after them. */
static void hello_config(msgpack_packer *pk, uint32_t parts, uint32_t extra)
{
	hello_head(pk, 6 + extra);
	msgpack_pack_array(pk, parts);
	for (uint32_t i = 0; i < parts; i++)
		msgpack_pack_uint64(pk, 0x1000 + i);
	for (uint32_t i = 0; i < extra; i++)
		msgpack_pack_uint64(pk, 42);
}
static void fill_hello_config_17(msgpack_packer *pk) { hello_config(pk, 17, 0); }
static void fill_hello_config_appended(msgpack_packer *pk) { hello_config(pk, 6, 2); }
static void fill_hello_config_uint(msgpack_packer *pk)
{
	hello_head(pk, 6);
	msgpack_pack_uint64(pk, 5);
}
static void fill_hello_config_str(msgpack_packer *pk)
{
	hello_head(pk, 6);
	msgpack_pack_array(pk, 1);
	msgpack_pack_str_with_body(pk, "x", 1);
}
static void fill_auth_short_proof(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_bin_with_body(pk, "0123456789", 10);
}
static void fill_close_nul(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 2);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_str_with_body(pk, "a\0b", 3);
}
static void fill_close_long(msgpack_packer *pk)
{
	char text[300];
	memset(text, 'x', sizeof(text));
	msgpack_pack_array(pk, 2);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_str_with_body(pk, text, sizeof(text));
}
static void fill_ping_ok(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 2);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint64(pk, 2);
}

static void test_malformed(uint64_t seed)
{
	(void)seed;
	vsr_wire_config cfg;
	wt_config(&cfg);
	cfg.entries_max = 64;
	vsr_wire_stats stats = {0};

	/* A valid frame to damage. */
	vsr_wire_ping ping = {.nonce = 42, .time_ns = 7};
	vsr_buf good = {0};
	CHECK(vsr_wire_encode_ping(&good, WT_CLUSTER, VSR_WIRE_PING, &ping) == 0, "encode");
	uint8_t f[256];
	size_t n = good.len;
	CHECK(n < sizeof(f), "frame size %zu", n);

#define DAMAGE(what, edit, fix, reason)                                      \
	do {                                                                 \
		memcpy(f, good.data, n);                                     \
		edit;                                                        \
		if (fix)                                                     \
			wt_fix_header(f);                                    \
		expect_reason(what, f, n, &cfg, reason, &stats);             \
	} while (0)

	DAMAGE("magic", f[0] = 'X', true, VSR_WIRE_EMAGIC);
	DAMAGE("header byte flipped", f[20] ^= 1, false, VSR_WIRE_EHEADER_CHECKSUM);
	DAMAGE("header checksum flipped", f[39] ^= 0x80, false, VSR_WIRE_EHEADER_CHECKSUM);
	DAMAGE("version 1", f[4] = 1, true, VSR_WIRE_EVERSION);
	DAMAGE("version 3", f[4] = 3, true, VSR_WIRE_EVERSION);
	DAMAGE("version 0", f[4] = 0, true, VSR_WIRE_EVERSION);
	DAMAGE("flags", f[5] = 2, true, VSR_WIRE_EFLAGS);
	DAMAGE("MAC flag without a connection key", f[5] = VSR_WIRE_FLAG_MAC, true, VSR_WIRE_EMAC);
	DAMAGE("reserved byte 7", f[7] = 1, true, VSR_WIRE_EFLAGS);
	DAMAGE("reserved bytes 12..15", f[14] = 1, true, VSR_WIRE_EFLAGS);
	DAMAGE("foreign cluster", f[16] ^= 1, true, VSR_WIRE_ECLUSTER);
	DAMAGE("type 0", f[6] = 0, true, VSR_WIRE_ETYPE);
	DAMAGE("type 16", f[6] = 16, true, VSR_WIRE_ETYPE);
	DAMAGE("type 63", f[6] = 63, true, VSR_WIRE_ETYPE);
	DAMAGE("type 71", f[6] = 71, true, VSR_WIRE_ETYPE);
	DAMAGE("type 255", f[6] = 255, true, VSR_WIRE_ETYPE);
	DAMAGE("body length zero", (f[8] = 0, f[9] = 0, f[10] = 0, f[11] = 0), true,
	       VSR_WIRE_ETRUNCATED);
	DAMAGE("body length 4 GiB - 1", (f[8] = 0xff, f[9] = 0xff, f[10] = 0xff, f[11] = 0xff),
	       true, VSR_WIRE_ETOOBIG);
	DAMAGE("body byte flipped", f[n - 1] ^= 1, false, VSR_WIRE_EBODY_CHECKSUM);
	DAMAGE("body checksum flipped", f[24] ^= 1, true, VSR_WIRE_EBODY_CHECKSUM);
	/* Another type with a ping's body: its shape is wrong. */
	DAMAGE("type STATUS_REPLY with a PING body", f[6] = VSR_WIRE_STATUS_REPLY, true,
	       VSR_WIRE_ESHAPE);
	DAMAGE("type COMMIT with a PING body", f[6] = VSR_MSG_COMMIT, true, VSR_WIRE_ESHAPE);

	/* Truncations: every shorter prefix of a valid frame. */
	for (size_t len = 0; len < n; len++) {
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		int rc = vsr_wire_decode(good.data, len, &cfg, &d, NULL, &stats, NULL, 0);
		CHECK(rc == -VSR_WIRE_ETRUNCATED, "prefix of %zu bytes: %d", len, rc);
	}
	/* Trailing bytes inside the body, after the msgpack value. */
	{
		uint8_t body[8] = {0x92, 0x01, 0x02, 0x00};
		vsr_buf b = {0};
		wt_frame_raw(&b, VSR_WIRE_PING, WT_CLUSTER, body, 4);
		expect_reason("trailing byte", b.data, b.len, &cfg, VSR_WIRE_ETRAILING, &stats);
		free(b.data);
		/* Truncated msgpack inside a body whose checksum is right. */
		uint8_t cut[3] = {0x92, 0x01, 0xcf};
		b = (vsr_buf){0};
		wt_frame_raw(&b, VSR_WIRE_PING, WT_CLUSTER, cut, 3);
		expect_reason("msgpack cut short", b.data, b.len, &cfg, VSR_WIRE_ETRUNCATED, &stats);
		free(b.data);
		/* An array32 header claiming 4 billion elements in 5 bytes. */
		uint8_t huge[5] = {0xdd, 0xff, 0xff, 0xff, 0xff};
		b = (vsr_buf){0};
		wt_frame_raw(&b, VSR_MSG_PREPARE, WT_CLUSTER, huge, 5);
		expect_reason("array32 of 2^32-1", b.data, b.len, &cfg, VSR_WIRE_ETRUNCATED, &stats);
		free(b.data);
		/* A bin32 claiming more bytes than the body holds. */
		uint8_t bin[8] = {0x91, 0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00};
		b = (vsr_buf){0};
		wt_frame_raw(&b, VSR_WIRE_STATUS_REQUEST, WT_CLUSTER, bin, 8);
		expect_reason("bin32 overlong", b.data, b.len, &cfg, VSR_WIRE_ETRUNCATED, &stats);
		free(b.data);
		/* A scalar where the body's array belongs. */
		uint8_t scalar[1] = {0x05};
		b = (vsr_buf){0};
		wt_frame_raw(&b, VSR_WIRE_PING, WT_CLUSTER, scalar, 1);
		expect_reason("scalar body", b.data, b.len, &cfg, VSR_WIRE_ESHAPE, &stats);
		free(b.data);
		/* The never-used byte 0xc1. */
		uint8_t c1[3] = {0x92, 0xc1, 0x01};
		b = (vsr_buf){0};
		wt_frame_raw(&b, VSR_WIRE_PING, WT_CLUSTER, c1, 3);
		expect_reason("byte c1", b.data, b.len, &cfg, VSR_WIRE_EMSGPACK, &stats);
		free(b.data);
	}

	/* Wrong msgpack types and shapes in a core body (COMMIT unless noted). */
	struct {
		const char *what;
		uint8_t type;
		int index;
		wt_fill_fn fill;
		int reason;
	} cases[] = {
		{"valid zero COMMIT", VSR_MSG_COMMIT, -1, NULL, 0},
		{"str for view", VSR_MSG_COMMIT, 3, fill_str, VSR_WIRE_ESHAPE},
		{"nil for view", VSR_MSG_COMMIT, 3, fill_nil, VSR_WIRE_EMSGPACK},
		{"negative view", VSR_MSG_COMMIT, 3, fill_neg, VSR_WIRE_ESHAPE},
		{"int8 -100 for view", VSR_MSG_COMMIT, 3, fill_neg100, VSR_WIRE_ESHAPE},
		{"int64 -2^40 for op", VSR_MSG_COMMIT, 5, fill_neg_big, VSR_WIRE_ESHAPE},
		{"signed int8 5 for view", VSR_MSG_COMMIT, 3, fill_int8_5, 0},
		{"map for op", VSR_MSG_COMMIT, 5, fill_map, VSR_WIRE_EMSGPACK},
		{"float for commit", VSR_MSG_COMMIT, 6, fill_float, VSR_WIRE_EMSGPACK},
		{"array for nonce", VSR_MSG_COMMIT, 8, fill_array1, VSR_WIRE_ESHAPE},
		{"uint for op bytes", VSR_MSG_COMMIT, 13, fill_9, VSR_WIRE_ESHAPE},
		{"uint for entries", VSR_MSG_COMMIT, 16, fill_9, VSR_WIRE_ESHAPE},
		{"replica 9 of 5", VSR_MSG_COMMIT, 0, fill_9, VSR_WIRE_ERANGE},
		{"replica 256", VSR_MSG_COMMIT, 0, fill_256, VSR_WIRE_ERANGE},
		{"status 9", VSR_MSG_COMMIT, 1, fill_9, VSR_WIRE_ERANGE},
		{"reply status 9", VSR_MSG_REPLY, 1, fill_9, VSR_WIRE_ERANGE},
		{"kind 9", VSR_MSG_COMMIT, 12, fill_9, VSR_WIRE_ERANGE},
		{"request kind 0", VSR_MSG_REQUEST, -1, NULL, VSR_WIRE_ERANGE},
		{"request from replica 9", VSR_MSG_REQUEST, 0, fill_9, VSR_WIRE_ERANGE},
		{"op bytes on COMMIT", VSR_MSG_COMMIT, 13, fill_bin3, VSR_WIRE_ELIMIT},
		{"body on PREPARE_OK", VSR_MSG_PREPARE_OK, 15, fill_bin3, VSR_WIRE_ELIMIT},
		{"entries on COMMIT", VSR_MSG_COMMIT, 16, fill_unchained, VSR_WIRE_ELIMIT},
		{"PREPARE without entry", VSR_MSG_PREPARE, -1, NULL, VSR_WIRE_ESHAPE},
		{"PREPARE with two entries", VSR_MSG_PREPARE, 16, fill_unchained, VSR_WIRE_ELIMIT},
		{"65 entries, limit 64", VSR_MSG_START_VIEW, 16, fill_entries_65, VSR_WIRE_ELIMIT},
		{"unchained entries", VSR_MSG_START_VIEW, 16, fill_unchained, VSR_WIRE_EINVALID},
		{"entry body not a batch", VSR_MSG_START_VIEW, 16, fill_bad_batch, VSR_WIRE_ERANGE},
		{"array nested 4 deep", VSR_MSG_COMMIT, 16, fill_deep, VSR_WIRE_ESHAPE},
		{"body of 19 elements", VSR_MSG_COMMIT, -2, NULL, VSR_WIRE_ESHAPE},
	};
	for (size_t i = 0; i < WT_COUNT(cases); i++) {
		vsr_buf b;
		if (cases[i].index == -2)
			b = frame_of(cases[i].type, fill_short_array);
		else
			b = core_frame(cases[i].type, cases[i].index, cases[i].fill);
		if (cases[i].reason == 0) {
			vsr_wire_decoded d;
			vsr_wire_decoded_init(&d);
			char err[200] = "";
			int rc = vsr_wire_decode(b.data, b.len, &cfg, &d, NULL, NULL, err, sizeof(err));
			CHECK(rc == 0, "%s: %s", cases[i].what, err);
			vsr_wire_decoded_free(&d);
		} else {
			expect_reason(cases[i].what, b.data, b.len, &cfg, cases[i].reason, &stats);
		}
		free(b.data);
	}
	/* DO_VIEW_CHANGE whose log_view is above its view: the core refuses. */
	{
		vsr_buf b = core_frame(VSR_MSG_DO_VIEW_CHANGE, 4, fill_9);
		expect_reason("log_view above view", b.data, b.len, &cfg, VSR_WIRE_EINVALID, &stats);
		free(b.data);
	}
	/* Host bodies. */
	struct {
		const char *what;
		uint8_t type;
		wt_fill_fn fill;
		int reason;
	} host[] = {
		{"HELLO role 9", VSR_WIRE_HELLO, fill_hello_role9, VSR_WIRE_ERANGE},
		{"HELLO client with replica", VSR_WIRE_HELLO, fill_hello_client_replica, VSR_WIRE_ERANGE},
		{"HELLO nonce of 10 bytes", VSR_WIRE_HELLO, fill_hello_short_nonce, VSR_WIRE_ERANGE},
		{"AUTH proof of 10 bytes", VSR_WIRE_AUTH, fill_auth_short_proof, VSR_WIRE_ERANGE},
		{"CLOSE text with NUL", VSR_WIRE_CLOSE, fill_close_nul, VSR_WIRE_ERANGE},
		{"CLOSE text of 300", VSR_WIRE_CLOSE, fill_close_long, VSR_WIRE_ELIMIT},
		{"HELLO with PING body", VSR_WIRE_HELLO, fill_ping_ok, VSR_WIRE_ESHAPE},
		{"HELLO with 17 config parts", VSR_WIRE_HELLO, fill_hello_config_17, VSR_WIRE_ELIMIT},
		{"HELLO config a uint", VSR_WIRE_HELLO, fill_hello_config_uint, VSR_WIRE_ESHAPE},
		{"HELLO config part a str", VSR_WIRE_HELLO, fill_hello_config_str, VSR_WIRE_ESHAPE},
		{"STATUS_REQUEST with PING body", VSR_WIRE_STATUS_REQUEST, fill_ping_ok, VSR_WIRE_ESHAPE},
	};
	for (size_t i = 0; i < WT_COUNT(host); i++) {
		vsr_buf b = frame_of(host[i].type, host[i].fill);
		expect_reason(host[i].what, b.data, b.len, &cfg, host[i].reason, &stats);
		free(b.data);
	}
	/* A HELLO with fields appended after the configuration (a newer
	 * encoder's) is accepted, the fields skipped. */
	{
		vsr_buf b = frame_of(VSR_WIRE_HELLO, fill_hello_config_appended);
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		char err[256] = "";
		int rc = vsr_wire_decode(b.data, b.len, &cfg, &d, NULL, NULL, err, sizeof err);
		CHECK(rc == 0 && d.hello.config_count == 6 && d.hello.config[5] == 0x1005 &&
			      d.hello.replica == 1,
		      "HELLO with appended fields: rc %d (%s), %u parts", rc, err,
		      d.hello.config_count);
		vsr_wire_decoded_free(&d);
		free(b.data);
	}
	/* A frame for another cluster is refused even when otherwise perfect. */
	{
		vsr_wire_config other = cfg;
		other.cluster = WT_CLUSTER + 1;
		expect_reason("foreign cluster config", good.data, good.len, &other,
			      VSR_WIRE_ECLUSTER, &stats);
	}
	uint64_t total = vsr_wire_stats_dropped(&stats);
	CHECK(total > 40, "drops counted: %" PRIu64, total);
	for (int r = 1; r < VSR_WIRE_REASON_COUNT; r++) {
		if (r == VSR_WIRE_ENOMEM)
			continue; /* not reachable without failing malloc */
		CHECK(stats.dropped[r] > 0, "reason %s never produced", vsr_wire_reason_label(r));
	}
	free(good.data);
}

/* ------------------------------------------------------------------------ */
/* Encoder refuses what no decoder would accept.                            */

static void test_encode_errors(uint64_t seed)
{
	(void)seed;
	vsr_buf b = {0};
	vsr_message m = {.type = VSR_MSG_PREPARE};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == -VSR_WIRE_ESHAPE, "PREPARE without entry");
	vsr_entry e = {.op = 1};
	m = (vsr_message){.type = VSR_MSG_COMMIT, .entry_count = 1, .entries = &e};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == -VSR_WIRE_ESHAPE, "entries on COMMIT");
	uint8_t byte = 0;
	m = (vsr_message){.type = VSR_MSG_COMMIT, .body_len = 1, .body = &byte};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == -VSR_WIRE_ELIMIT, "body on COMMIT");
	m = (vsr_message){.type = 0};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == -VSR_WIRE_ETYPE, "type 0");
	m = (vsr_message){.type = VSR_MSG_COMMIT, .cluster = 2};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == -VSR_WIRE_ECLUSTER, "cluster mismatch");
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_CLIENT, .replica = 1};
	CHECK(vsr_wire_encode_hello(&b, 1, &h) == -VSR_WIRE_ERANGE, "client hello with replica");
	vsr_wire_hello hc = {.role = VSR_WIRE_ROLE_REPLICA, .config_count = VSR_WIRE_CONFIG_PARTS_MAX + 1};
	CHECK(vsr_wire_encode_hello(&b, 1, &hc) == -VSR_WIRE_ELIMIT, "hello with 17 config parts");
	vsr_wire_status s = {.replica_count = 3, .replica = 3};
	CHECK(vsr_wire_encode_status(&b, 1, &s) == -VSR_WIRE_ERANGE, "status replica 3 of 3");
	vsr_wire_ping p = {0};
	CHECK(vsr_wire_encode_ping(&b, 1, VSR_WIRE_HELLO, &p) == -VSR_WIRE_ETYPE, "ping as HELLO");
	CHECK(b.len == 0, "failed encodes appended %zu bytes", b.len);
	/* A long CLOSE text is cut, not refused. */
	char text[400];
	memset(text, 'y', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	CHECK(vsr_wire_encode_close(&b, 1, VSR_WIRE_ECLUSTER, text) == 0, "long close");
	vsr_wire_config cfg;
	vsr_wire_config_default(&cfg, 1, 3);
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	CHECK(vsr_wire_decode(b.data, b.len, &cfg, &d, NULL, NULL, NULL, 0) == 0, "decode close");
	CHECK(strlen(d.close.text) == VSR_WIRE_REASON_MAX, "close text %zu", strlen(d.close.text));
	vsr_wire_decoded_free(&d);
	free(b.data);
}

/* ------------------------------------------------------------------------ */
/* Streaming reader.                                                         */

/* Feeds `data` to a reader in pieces chosen by `split` and checks that the
 * frames come out in order and equal to the originals. */
static void reader_run(const char *what, const uint8_t *data, size_t len,
		       const size_t *frame_ends, size_t frames, uint64_t *st,
		       int split, const vsr_wire_config *cfg)
{
	vsr_wire_stats stats = {0};
	vsr_wire_reader r;
	vsr_wire_reader_init(&r, cfg, &stats);
	size_t off = 0, got = 0;
	size_t max_buffered = 0;
	while (off < len) {
		size_t piece = split == 0   ? 1
			       : split == 3 ? len
					    : 1 + (size_t)(wt_rand(st) % (split == 1 ? 64 : 70000));
		if (piece > len - off)
			piece = len - off;
		size_t pos = 0;
		while (pos < piece) {
			size_t used = 0;
			int rc = vsr_wire_reader_feed(&r, data + off + pos, piece - pos, &used);
			pos += used;
			if (vsr_wire_reader_buffered(&r) > max_buffered)
				max_buffered = vsr_wire_reader_buffered(&r);
			if (rc == 1) {
				vsr_wire_decoded d;
				vsr_wire_decoded_init(&d);
				rc = vsr_wire_reader_decode(&r, &d);
				CHECK(rc == 0, "%s: frame %zu: %s", what, got, r.err);
				/* The frame must end exactly where the original did. */
				CHECK(got < frames && off + pos == frame_ends[got],
				      "%s: frame %zu ended at %zu", what, got, off + pos);
				vsr_buf again = {0};
				CHECK(rc != 0 || wt_encode_decoded(&d, &again) == 0, "re-encode");
				size_t start = got == 0 ? 0 : frame_ends[got - 1];
				CHECK(rc != 0 || (again.len == frame_ends[got] - start &&
						  memcmp(again.data, data + start, again.len) == 0),
				      "%s: frame %zu differs after the reader", what, got);
				free(again.data);
				vsr_wire_decoded_free(&d);
				got++;
				if (rc != 0)
					break;
			} else {
				CHECK(rc == 0, "%s: %s", what, r.err);
				if (rc != 0)
					break;
				CHECK(pos == piece, "%s: 0 without consuming all", what);
			}
		}
		off += piece;
		if (r.error)
			break;
	}
	CHECK(got == frames, "%s: %zu frames of %zu", what, got, frames);
	CHECK(stats.frames_in == frames, "%s: counted %" PRIu64, what, stats.frames_in);
	CHECK(stats.bytes_in == len, "%s: bytes %" PRIu64 " of %zu", what, stats.bytes_in, len);
	CHECK(vsr_wire_reader_buffered(&r) == 0, "%s: left %zu buffered", what,
	      vsr_wire_reader_buffered(&r));
	/* Bounded buffering: never more than one frame. */
	size_t biggest = 0;
	for (size_t i = 0; i < frames; i++) {
		size_t fl = frame_ends[i] - (i ? frame_ends[i - 1] : 0);
		if (fl > biggest)
			biggest = fl;
	}
	CHECK(max_buffered <= biggest, "%s: buffered %zu > largest frame %zu", what,
	      max_buffered, biggest);
	vsr_wire_reader_free(&r);
}

static void test_reader(uint64_t seed)
{
	uint64_t st = seed;
	vsr_wire_config cfg;
	wt_config(&cfg);
	for (int round = 0; round < 6; round++) {
		vsr_buf stream = {0};
		size_t ends[64];
		size_t frames = 0;
		for (int i = 0; i < 40; i++) {
			uint8_t type;
			int rc;
			if (wt_rand(&st) % 4 == 0) {
				type = wt_host_types[wt_rand(&st) % WT_COUNT(wt_host_types)];
				vsr_wire_decoded expect;
				rc = wt_gen_host(&st, type, &stream, &expect);
			} else {
				wt_arena arena = {0};
				vsr_message m;
				type = wt_core_types[wt_rand(&st) % WT_COUNT(wt_core_types)];
				wt_gen_message(&st, type, round == 5 && i % 8 == 0, &arena, &m);
				rc = vsr_wire_encode_message(&stream, WT_CLUSTER, &m);
				wt_arena_free(&arena);
			}
			CHECK(rc == 0, "encode %s", vsr_wire_type_name(type));
			ends[frames++] = stream.len;
		}
		reader_run("byte by byte", stream.data, stream.len, ends, frames, &st, 0, &cfg);
		reader_run("small splits", stream.data, stream.len, ends, frames, &st, 1, &cfg);
		reader_run("large splits", stream.data, stream.len, ends, frames, &st, 2, &cfg);
		reader_run("one chunk", stream.data, stream.len, ends, frames, &st, 3, &cfg);

		/* A damaged byte anywhere stops the reader with an error, never a
		 * crash; the frames before it still come out. */
		size_t at = (size_t)(wt_rand(&st) % stream.len);
		stream.data[at] ^= (uint8_t)(1 + wt_rand(&st) % 255);
		vsr_wire_reader r;
		vsr_wire_reader_init(&r, &cfg, NULL);
		size_t off = 0, good = 0;
		int rc = 0;
		while (off < stream.len) {
			size_t used;
			rc = vsr_wire_reader_feed(&r, stream.data + off, stream.len - off, &used);
			off += used;
			if (rc == 1) {
				vsr_wire_decoded d;
				vsr_wire_decoded_init(&d);
				rc = vsr_wire_reader_decode(&r, &d);
				vsr_wire_decoded_free(&d);
				if (rc == 0)
					good++;
			}
			if (rc < 0)
				break;
		}
		size_t frame_of_damage = 0;
		while (ends[frame_of_damage] <= at)
			frame_of_damage++;
		CHECK(rc < 0, "damage at byte %zu not detected", at);
		CHECK(good == frame_of_damage, "damage in frame %zu, %zu frames decoded",
		      frame_of_damage, good);
		/* Dead readers stay dead. */
		size_t used = 99;
		CHECK(vsr_wire_reader_feed(&r, stream.data, 1, &used) == rc && used == 0,
		      "reader accepted bytes after an error");
		vsr_wire_reader_free(&r);
		free(stream.data);
	}
}

/* ------------------------------------------------------------------------ */
/* Oversize: refused from the header alone, before any body allocation.     */

static void test_oversize(uint64_t seed)
{
	(void)seed;
	vsr_wire_config cfg;
	wt_config(&cfg);
	cfg.body_bytes_max = 1024;
	const uint32_t lens[] = {1025, 1u << 20, VSR_WIRE_BODY_BYTES_MAX + 1, UINT32_MAX};
	for (size_t i = 0; i < WT_COUNT(lens); i++) {
		uint8_t h[VSR_WIRE_HEADER_SIZE];
		vsr_buf b = {0};
		uint8_t body[1] = {0x90};
		wt_frame_raw(&b, VSR_WIRE_PING, WT_CLUSTER, body, 1);
		memcpy(h, b.data, sizeof(h));
		free(b.data);
		for (int k = 0; k < 4; k++)
			h[8 + k] = (uint8_t)(lens[i] >> (8 * k));
		wt_fix_header(h);
		vsr_wire_stats stats = {0};
		vsr_wire_reader r;
		vsr_wire_reader_init(&r, &cfg, &stats);
		/* Only the header is sent: the reader must decide from it. */
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&r, h, sizeof(h), &used);
		CHECK(rc == -VSR_WIRE_ETOOBIG, "length %" PRIu32 ": %d %s", lens[i], rc, r.err);
		CHECK(r.body == NULL, "length %" PRIu32 ": a body buffer was allocated", lens[i]);
		CHECK(used == sizeof(h), "used %zu", used);
		CHECK(stats.dropped[VSR_WIRE_ETOOBIG] == 1, "not counted");
		CHECK(strstr(r.err, "maximum 1024") != NULL, "detail: %s", r.err);
		vsr_wire_reader_free(&r);
		/* The whole-buffer decoder likewise, from 40 bytes. */
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		rc = vsr_wire_decode(h, sizeof(h), &cfg, &d, NULL, NULL, NULL, 0);
		CHECK(rc == -VSR_WIRE_ETOOBIG, "decode length %" PRIu32 ": %d", lens[i], rc);
	}
	/* A large announced body is allocated as it arrives, not up front. */
	{
		vsr_wire_config big;
		wt_config(&big);
		uint8_t *op = malloc(1000000);
		CHECK(op != NULL, "malloc");
		for (size_t i = 0; op != NULL && i < 1000000; i++)
			op[i] = (uint8_t)(i * 7);
		vsr_message m = {.type = VSR_MSG_REQUEST, .request = {.session = 1, .request = 1,
				  .kind = VSR_REQUEST_OP, .op = op, .op_len = 1000000}};
		vsr_buf b = {0};
		CHECK(op != NULL && vsr_wire_encode_message(&b, WT_CLUSTER, &m) == 0, "encode 1 MB");
		vsr_wire_reader r;
		vsr_wire_reader_init(&r, &big, NULL);
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&r, b.data, VSR_WIRE_HEADER_SIZE + 10, &used);
		CHECK(rc == 0 && used == VSR_WIRE_HEADER_SIZE + 10, "partial feed: %d", rc);
		CHECK(r.body_cap <= 64 * 1024, "allocated %" PRIu32 " for 10 bytes", r.body_cap);
		size_t off = used;
		while (off < b.len && rc == 0) {
			size_t piece = b.len - off < 4096 ? b.len - off : 4096;
			rc = vsr_wire_reader_feed(&r, b.data + off, piece, &used);
			off += used;
			CHECK(r.body_cap <= 2 * (off - VSR_WIRE_HEADER_SIZE) + 64 * 1024 ||
				      r.body_cap == b.len - VSR_WIRE_HEADER_SIZE,
			      "allocated %" PRIu32 " after %zu bytes", r.body_cap, off);
		}
		CHECK(rc == 1 && off == b.len, "frame not complete: %d at %zu", rc, off);
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		CHECK(vsr_wire_reader_decode(&r, &d) == 0, "decode: %s", r.err);
		CHECK(d.message.request.op_len == 1000000 && op != NULL &&
			      memcmp(d.message.request.op, op, 1000000) == 0, "1 MB op differs");
		vsr_wire_decoded_free(&d);
		vsr_wire_reader_free(&r);
		free(b.data);
		free(op);
	}
	/* A body of exactly the maximum is fine. */
	{
		cfg.body_bytes_max = 4096;
		uint8_t op[4096];
		memset(op, 0xab, sizeof(op));
		vsr_message m = {.type = VSR_MSG_REQUEST, .request = {.session = 1, .request = 1,
				  .kind = VSR_REQUEST_OP, .op = op, .op_len = 0}};
		vsr_buf b = {0};
		CHECK(vsr_wire_encode_message(&b, WT_CLUSTER, &m) == 0, "encode");
		uint32_t fixed = (uint32_t)(b.len - VSR_WIRE_HEADER_SIZE);
		free(b.data);
		/* bin16 header is 3 bytes; an empty bin8 was 2: one extra byte. */
		m.request.op_len = 4096 - fixed - 1;
		b = (vsr_buf){0};
		CHECK(vsr_wire_encode_message(&b, WT_CLUSTER, &m) == 0, "encode max");
		CHECK(b.len - VSR_WIRE_HEADER_SIZE == 4096, "body %zu", b.len - VSR_WIRE_HEADER_SIZE);
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		char err[200] = "";
		CHECK(vsr_wire_decode(b.data, b.len, &cfg, &d, NULL, NULL, err, sizeof(err)) == 0,
		      "body at the maximum: %s", err);
		vsr_wire_decoded_free(&d);
		cfg.body_bytes_max = 4095;
		CHECK(vsr_wire_decode(b.data, b.len, &cfg, &d, NULL, NULL, NULL, 0) ==
			      -VSR_WIRE_ETOOBIG, "one byte over");
		free(b.data);
	}
}

/* ------------------------------------------------------------------------ */
/* The worked example of docs/wire.md, byte for byte: if this fails, the
 * document and the code disagree.                                           */

static const uint8_t doc_request_frame[] = {
	0x56, 0x53, 0x52, 0x57, 0x02, 0x00, 0x01, 0x00, 0x1e, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x26, 0xee, 0xf3, 0x2b, 0x34, 0x4e, 0x88, 0xac, 0x20, 0x7d, 0xb2, 0xa8,
	0x91, 0x00, 0xe7, 0x9a, 0xdc, 0x00, 0x17, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x03, 0x02, 0xc4, 0x02, 0x68, 0x69,
	0x00, 0xc4, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

/* The same request as an encoder from before field 22 (read_mode) sends it,
 * an array of 22: still accepted. */
static const uint8_t doc_request_frame_22[] = {
	0x56, 0x53, 0x52, 0x57, 0x02, 0x00, 0x01, 0x00, 0x1d, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x20, 0xa1, 0x74, 0x8f, 0x06, 0x7e, 0xf0, 0x2f, 0xde, 0xf2, 0x87, 0x8f,
	0x16, 0xb8, 0xf4, 0xa9, 0xdc, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x03, 0x02, 0xc4, 0x02, 0x68, 0x69,
	0x00, 0xc4, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void test_doc_example(uint64_t seed)
{
	(void)seed;
	vsr_message m = {.type = VSR_MSG_REQUEST,
			 .request = {.session = 5, .request = 3, .kind = VSR_REQUEST_OP,
				     .op = (const uint8_t *)"hi", .op_len = 2}};
	vsr_buf b = {0};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == 0, "encode");
	CHECK(b.len == sizeof(doc_request_frame) &&
		      memcmp(b.data, doc_request_frame, b.len) == 0,
	      "encoding differs from docs/wire.md (%zu bytes)", b.len);
	free(b.data);
	vsr_wire_config cfg;
	vsr_wire_config_default(&cfg, 1, 3);
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	char err[200] = "";
	CHECK(vsr_wire_decode(doc_request_frame, sizeof(doc_request_frame), &cfg, &d, NULL,
			      NULL, err, sizeof(err)) == 0, "decode: %s", err);
	CHECK(d.type == VSR_MSG_REQUEST && d.message.request.session == 5 &&
		      d.message.request.request == 3 && d.message.request.op_len == 2 &&
		      memcmp(d.message.request.op, "hi", 2) == 0,
	      "decoded fields");
	vsr_wire_decoded_free(&d);
	vsr_wire_decoded_init(&d);
	CHECK(vsr_wire_decode(doc_request_frame_22, sizeof(doc_request_frame_22), &cfg, &d,
			      NULL, NULL, err, sizeof(err)) == 0, "decode 22 fields: %s", err);
	CHECK(d.message.request.session == 5 && d.message.read_mode == 0, "22-field fields");
	vsr_wire_decoded_free(&d);
	/* A newer encoder's appended fields (here two: a uint and an array)
	 * are skipped; 33 elements are refused. */
	for (int extra = 2; extra <= 10; extra += 8) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, 23 + (uint32_t)extra);
		for (int i = 0; i < 23 + extra; i++) {
			if (i == 13 || i == 15)
				msgpack_pack_bin(&pk, 0);
			else if (i == 16 || i == 24)
				msgpack_pack_array(&pk, 0);
			else if (i == 10)
				msgpack_pack_uint64(&pk, 77); /* session */
			else if (i == 11)
				msgpack_pack_uint64(&pk, 1); /* request */
			else if (i == 12)
				msgpack_pack_uint64(&pk, VSR_REQUEST_OP);
			else
				msgpack_pack_uint64(&pk, 0);
		}
		vsr_buf f = {0};
		wt_frame_raw(&f, VSR_MSG_REQUEST, 1, (const uint8_t *)sb.data,
			     (uint32_t)sb.size);
		msgpack_sbuffer_destroy(&sb);
		vsr_wire_decoded dx;
		vsr_wire_decoded_init(&dx);
		int rc = vsr_wire_decode(f.data, f.len, &cfg, &dx, NULL, NULL, err, sizeof(err));
		if (extra == 2) {
			CHECK(rc == 0, "decode 25 fields: %s", err);
			CHECK(dx.message.request.session == 77, "25-field fields");
			vsr_wire_decoded_free(&dx);
		} else {
			CHECK(rc != 0, "33 fields accepted");
			vsr_wire_decoded_free(&dx);
		}
		vsr_buf_free(&f);
	}

	/* A QUERY carries its read mode in field 22, and round trips. */
	m.request.kind = VSR_REQUEST_QUERY;
	m.read_mode = VSR_READ_STALE;
	b = (vsr_buf){0};
	CHECK(vsr_wire_encode_message(&b, 1, &m) == 0, "encode query");
	vsr_wire_decoded_init(&d);
	CHECK(vsr_wire_decode(b.data, b.len, &cfg, &d, NULL, NULL, err, sizeof(err)) == 0,
	      "decode query: %s", err);
	CHECK(d.message.request.kind == VSR_REQUEST_QUERY && d.message.read_mode == VSR_READ_STALE,
	      "query fields");
	vsr_wire_decoded_free(&d);
	free(b.data);
}

/* ------------------------------------------------------------------------ */
/* Corpus: one valid frame of every type, fixed seed, for the fuzzer.       */

static int write_corpus(const char *dir)
{
	uint64_t st = 20261122;
	for (size_t t = 0; t < WT_COUNT(wt_core_types) + WT_COUNT(wt_host_types); t++) {
		vsr_buf b = {0};
		uint8_t type;
		if (t < WT_COUNT(wt_core_types)) {
			wt_arena arena = {0};
			vsr_message m;
			type = wt_core_types[t];
			wt_gen_message(&st, type, false, &arena, &m);
			/* Keep the corpus small: cap bodies. */
			if (m.body_len > 64)
				m.body_len = 64;
			if (m.request.op_len > 64)
				m.request.op_len = 64;
			if (vsr_wire_encode_message(&b, WT_CLUSTER, &m) != 0)
				return 1;
			wt_arena_free(&arena);
		} else {
			vsr_wire_decoded expect;
			type = wt_host_types[t - WT_COUNT(wt_core_types)];
			if (wt_gen_host(&st, type, &b, &expect) != 0)
				return 1;
		}
		char path[512];
		snprintf(path, sizeof(path), "%s/valid-%02u-%s", dir, type,
			 vsr_wire_type_name(type));
		FILE *f = fopen(path, "wb");
		if (f == NULL || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			return 1;
		}
		printf("wrote %s (%zu bytes)\n", path, b.len);
		free(b.data);
	}
	/* A replica's HELLO, with its configuration fingerprint (field 5). */
	vsr_wire_hello h = {.role = VSR_WIRE_ROLE_REPLICA, .replica = 2, .instance = 0x1234,
			    .history = 0x5678, .config_count = VSR_WIRE_CONFIG_PARTS};
	for (unsigned i = 0; i < VSR_WIRE_CONFIG_PARTS; i++)
		h.config[i] = 0x0101010101010101ull * (i + 1);
	vsr_buf b = {0};
	char path[512];
	snprintf(path, sizeof(path), "%s/valid-64-HELLO-replica", dir);
	FILE *f = NULL;
	if (vsr_wire_encode_hello(&b, WT_CLUSTER, &h) != 0 || (f = fopen(path, "wb")) == NULL ||
	    fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
		fprintf(stderr, "%s: cannot write\n", path);
		return 1;
	}
	printf("wrote %s (%zu bytes)\n", path, b.len);
	free(b.data);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Authentication: HELLO nonces, AUTH proofs, sealed frames.               */

/* Feeds `data` to `r` in one piece and decodes: 0 or -reason. */
static int auth_feed(vsr_wire_reader *r, const uint8_t *data, size_t len, vsr_wire_decoded *d)
{
	size_t used = 0;
	int rc = vsr_wire_reader_feed(r, data, len, &used);
	if (rc == 1)
		rc = vsr_wire_reader_decode(r, d);
	else if (rc == 0)
		rc = -VSR_WIRE_ETRUNCATED;
	return rc;
}

/* A PING sealed under `key` as frame `seq`. */
static vsr_buf auth_sealed_ping(const uint8_t *key, uint64_t seq, uint64_t nonce)
{
	vsr_buf b = {0};
	vsr_wire_ping p = {.nonce = nonce, .time_ns = 7};
	CHECK(vsr_wire_encode_ping(&b, WT_CLUSTER, VSR_WIRE_PING, &p) == 0, "encode ping");
	CHECK(vsr_wire_seal(&b, 0, key, seq) == 0, "seal");
	return b;
}

static void test_auth(uint64_t seed)
{
	vsr_wire_config cfg;
	wt_config(&cfg);
	uint8_t key[VSR_WIRE_KEY_SIZE], other[VSR_WIRE_KEY_SIZE];
	for (size_t i = 0; i < sizeof key; i++) {
		key[i] = (uint8_t)(seed >> (i % 8) * 8) ^ (uint8_t)i;
		other[i] = key[i] ^ 0x5a;
	}
	/* Two ends: a (replica 1 dialling) and b (replica 2's listener). */
	vsr_wire_handshake a, b, forger;
	vsr_wire_handshake_init(&a, key, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 0);
	vsr_wire_handshake_init(&b, key, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 1);
	vsr_wire_handshake_init(&forger, other, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 0);
	CHECK(memcmp(a.my_nonce, b.my_nonce, VSR_WIRE_NONCE_SIZE) != 0, "nonces are random");
	vsr_wire_hello ha = {.role = VSR_WIRE_ROLE_REPLICA, .replica = 0, .has_nonce = true};
	vsr_wire_hello hb = {.role = VSR_WIRE_ROLE_REPLICA, .replica = 1, .has_nonce = true};
	vsr_wire_hello hf = ha;
	memcpy(ha.nonce, a.my_nonce, sizeof ha.nonce);
	memcpy(hb.nonce, b.my_nonce, sizeof hb.nonce);
	memcpy(hf.nonce, forger.my_nonce, sizeof hf.nonce);
	vsr_wire_auth pa, pb, pf;
	CHECK(vsr_wire_handshake_peer_hello(&a, &hb, &pa) == 0, "a got b's hello");
	CHECK(vsr_wire_handshake_peer_hello(&b, &ha, &pb) == 0, "b got a's hello");
	CHECK(vsr_wire_handshake_check(&b, &ha, &pa) == 0, "b accepts a's proof");
	CHECK(vsr_wire_handshake_check(&a, &hb, &pb) == 0, "a accepts b's proof");
	CHECK(memcmp(a.send_key, b.recv_key, VSR_WIRE_KEY_SIZE) == 0, "a->b key agreed");
	CHECK(memcmp(a.recv_key, b.send_key, VSR_WIRE_KEY_SIZE) == 0, "b->a key agreed");
	CHECK(memcmp(a.send_key, a.recv_key, VSR_WIRE_KEY_SIZE) != 0, "directions differ");
	/* A proof is bound to the sender's identity, to the key and to this
	 * connection's nonces. */
	vsr_wire_hello ha_lie = ha;
	ha_lie.replica = 2;
	CHECK(vsr_wire_handshake_check(&b, &ha_lie, &pa) == -VSR_WIRE_EMAC, "proof names its sender");
	vsr_wire_handshake b2;
	vsr_wire_handshake_init(&b2, key, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 1);
	vsr_wire_auth unused;
	CHECK(vsr_wire_handshake_peer_hello(&b2, &ha, &unused) == 0, "b2 hello");
	CHECK(vsr_wire_handshake_check(&b2, &ha, &pa) == -VSR_WIRE_EMAC,
	      "a proof recorded on one connection fails on the next");
	vsr_wire_handshake b3;
	vsr_wire_handshake_init(&b3, key, WT_CLUSTER, VSR_WIRE_ROLE_REPLICA, 1);
	CHECK(vsr_wire_handshake_peer_hello(&b3, &hf, &unused) == 0, "b3 hello");
	CHECK(vsr_wire_handshake_peer_hello(&forger, &hb, &pf) == 0, "forger hello");
	CHECK(vsr_wire_handshake_check(&b3, &hf, &pf) == -VSR_WIRE_EMAC, "a wrong key fails");
	vsr_wire_hello no_nonce = {.role = VSR_WIRE_ROLE_CLIENT};
	CHECK(vsr_wire_handshake_peer_hello(&b3, &no_nonce, &unused) == -VSR_WIRE_EMAC,
	      "a HELLO without a nonce cannot authenticate");

	/* Sealed frames: in order they pass; damaged, replayed, reordered,
	 * unsealed or under another key they fail with reason mac. */
	vsr_wire_stats stats = {0};
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	vsr_wire_reader r;
	vsr_wire_reader_init(&r, &cfg, &stats);
	vsr_wire_reader_expect_mac(&r, b.recv_key);
	for (uint64_t seq = 0; seq < 5; seq++) {
		vsr_buf f = auth_sealed_ping(a.send_key, seq, 100 + seq);
		/* Byte by byte: the MAC may arrive in pieces. */
		int rc = 0;
		size_t used;
		for (size_t i = 0; i < f.len && rc == 0; i++)
			rc = vsr_wire_reader_feed(&r, f.data + i, 1, &used);
		CHECK(rc == 1, "sealed frame %" PRIu64 " complete: %d", seq, rc);
		CHECK(vsr_wire_reader_decode(&r, &d) == 0 && d.type == VSR_WIRE_PING &&
			      d.ping.nonce == 100 + seq,
		      "sealed frame %" PRIu64 " decodes", seq);
		free(f.data);
	}
	vsr_wire_reader_free(&r);
	struct {
		const char *what;
		uint64_t seq;
		const uint8_t *key;
		int damage; /* 0 none, 1 body byte, 2 MAC byte, 3 unseal */
	} bad[] = {
		{"replayed frame 0", 0, a.send_key, 0},
		{"skipped frame 1", 2, a.send_key, 0},
		{"another direction's key", 0, a.recv_key, 0},
		{"body byte flipped", 0, a.send_key, 1},
		{"MAC byte flipped", 0, a.send_key, 2},
		{"unsealed frame", 0, a.send_key, 3},
	};
	for (size_t k = 0; k < WT_COUNT(bad); k++) {
		vsr_wire_reader_init(&r, &cfg, &stats);
		vsr_wire_reader_expect_mac(&r, b.recv_key);
		if (bad[k].seq > 0 || k == 0) {
			/* Frame 0 goes through first: the bad one comes second. */
			vsr_buf f0 = auth_sealed_ping(a.send_key, 0, 1);
			CHECK(auth_feed(&r, f0.data, f0.len, &d) == 0, "%s: frame 0", bad[k].what);
			free(f0.data);
		}
		vsr_buf f = auth_sealed_ping(bad[k].key, bad[k].seq, 2);
		if (bad[k].damage == 1)
			f.data[VSR_WIRE_HEADER_SIZE + 2] ^= 1;
		if (bad[k].damage == 2)
			f.data[f.len - 1] ^= 1;
		if (bad[k].damage == 3) {
			free(f.data);
			memset(&f, 0, sizeof f);
			vsr_wire_ping p = {.nonce = 2};
			CHECK(vsr_wire_encode_ping(&f, WT_CLUSTER, VSR_WIRE_PING, &p) == 0, "unsealed");
		}
		uint64_t before = stats.dropped[VSR_WIRE_EMAC];
		int rc = auth_feed(&r, f.data, f.len, &d);
		CHECK(rc == -VSR_WIRE_EMAC, "%s: got %d (%s)", bad[k].what, rc, r.err);
		CHECK(stats.dropped[VSR_WIRE_EMAC] == before + 1, "%s: counted as mac", bad[k].what);
		free(f.data);
		vsr_wire_reader_free(&r);
	}
	/* A sealed frame to a reader that expects none. */
	vsr_wire_reader_init(&r, &cfg, &stats);
	vsr_buf f = auth_sealed_ping(a.send_key, 0, 3);
	CHECK(auth_feed(&r, f.data, f.len, &d) == -VSR_WIRE_EMAC, "sealed before authentication");
	free(f.data);
	vsr_wire_reader_free(&r);
	vsr_wire_decoded_free(&d);

	/* Key files: generated, loaded back, refused when readable by others
	 * or malformed. */
	char dir[] = "/tmp/vsr-wire-auth-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	char path[128], err[256];
	snprintf(path, sizeof path, "%s/cluster.key", dir);
	uint8_t k1[VSR_WIRE_KEY_SIZE], k2[VSR_WIRE_KEY_SIZE];
	CHECK(vsr_wire_key_generate(path, err, sizeof err) == 0, "keygen: %s", err);
	CHECK(vsr_wire_key_generate(path, err, sizeof err) == -1 && strstr(err, "exists"),
	      "keygen refuses to overwrite: %s", err);
	CHECK(vsr_wire_key_load(path, k1, err, sizeof err) == 0, "load: %s", err);
	CHECK(vsr_wire_key_load(path, k2, err, sizeof err) == 0 && memcmp(k1, k2, sizeof k1) == 0,
	      "load is stable");
	chmod(path, 0644);
	CHECK(vsr_wire_key_load(path, k2, err, sizeof err) == -1 && strstr(err, "chmod 600"),
	      "a world-readable key is refused: %s", err);
	FILE *kf = fopen(path, "w");
	fputs("not hex at all\n", kf);
	fclose(kf);
	chmod(path, 0600);
	CHECK(vsr_wire_key_load(path, k2, err, sizeof err) == -1 && strstr(err, "64 hexadecimal"),
	      "a malformed key is refused: %s", err);
	unlink(path);
	rmdir(dir);
}

/* A CLOSE's text reaches logs and terminals: control characters arrive as
 * '?', everything else as sent. */
static void test_close_text(uint64_t seed)
{
	(void)seed;
	vsr_wire_config c;
	wt_config(&c);
	vsr_buf b = {0};
	static const char sent[] = "bye\nINJECTED\r\x1b[2J\x7f\tok \xc3\xa9";
	static const char want[] = "bye?INJECTED??[2J??ok \xc3\xa9";
	CHECK(vsr_wire_encode_close(&b, WT_CLUSTER, 0, sent) == 0, "encode");
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	char err[200] = "";
	CHECK(vsr_wire_decode(b.data, b.len, &c, &d, NULL, NULL, err, sizeof err) == 0, "%s", err);
	CHECK(d.type == VSR_WIRE_CLOSE && strcmp(d.close.text, want) == 0, "got %s", d.close.text);
	vsr_wire_decoded_free(&d);
	vsr_buf_free(&b);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "write-corpus") == 0)
		return write_corpus(argv[2]);
	if (argc < 2) {
		fprintf(stderr, "usage: %s roundtrip|malformed|reader|oversize|encode-errors|doc-example [seed]\n",
			argv[0]);
		return 2;
	}
	uint64_t seed;
	if (argc >= 3)
		seed = strtoull(argv[2], NULL, 0);
	else if (getenv("VSR_SEED") != NULL)
		seed = strtoull(getenv("VSR_SEED"), NULL, 0);
	else
		seed = (uint64_t)time(NULL);
	printf("test_wire %s: seed %" PRIu64 " (replay: test_wire %s %" PRIu64 ")\n",
	       argv[1], seed, argv[1], seed);
	if (strcmp(argv[1], "roundtrip") == 0)
		test_roundtrip(seed);
	else if (strcmp(argv[1], "malformed") == 0)
		test_malformed(seed);
	else if (strcmp(argv[1], "reader") == 0)
		test_reader(seed);
	else if (strcmp(argv[1], "oversize") == 0)
		test_oversize(seed);
	else if (strcmp(argv[1], "encode-errors") == 0)
		test_encode_errors(seed);
	else if (strcmp(argv[1], "doc-example") == 0)
		test_doc_example(seed);
	else if (strcmp(argv[1], "auth") == 0)
		test_auth(seed);
	else if (strcmp(argv[1], "close-text") == 0)
		test_close_text(seed);
	else {
		fprintf(stderr, "unknown test %s\n", argv[1]);
		return 2;
	}
	printf("%u passed, %u failed\n", wt_checks - wt_failures, wt_failures);
	return wt_failures == 0 ? 0 : 1;
}
