/* fuzz_decode.c - libFuzzer target for the frame decoder and the streaming reader.
 *
 * Each input is used twice:
 *  1. raw: as bytes from a socket, through vsr_wire_decode and through a
 *     streaming reader fed in input-dependent splits (header, checksum and
 *     framing paths);
 *  2. re-framed: bytes 40.. as the body of a frame of type data[6] with
 *     correct checksums, so the fuzzer reaches the msgpack decoder without
 *     having to forge XXH3 values.
 * Properties (abort on violation): no crash or sanitizer report; a failure
 * always carries a known reason and leaves no memory in the result; an
 * accepted frame re-encodes, decodes again to an equal message, and its
 * re-encoding is stable; the reader never buffers more than one frame.
 * Built by clang with -fsanitize=fuzzer, and by gcc into the corpus replay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsr_wire.h"
#include "wire_testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bodies above this are refused by the header check: keeps each run fast. */
#define FUZZ_BODY_MAX (1u << 20)

static void fuzz_fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_decode: property violated: %s (%s)\n", what, detail);
	abort();
}

static void fuzz_config(vsr_wire_config *c)
{
	wt_config(c);
	c->body_bytes_max = FUZZ_BODY_MAX;
	c->entries_max = 64;
}

/* An accepted frame must survive encode -> decode unchanged. */
static void fuzz_roundtrip(const vsr_wire_decoded *d, const vsr_wire_config *c)
{
	vsr_buf first = {0}, second = {0};
	char err[200] = "", why[200] = "";
	int rc = wt_encode_decoded(d, &first);
	if (rc != 0)
		fuzz_fail("accepted frame does not re-encode", vsr_wire_strerror(rc));
	vsr_wire_decoded again;
	vsr_wire_decoded_init(&again);
	rc = vsr_wire_decode(first.data, first.len, c, &again, NULL, NULL, err, sizeof(err));
	if (rc != 0)
		fuzz_fail("re-encoded frame is refused", err);
	bool same = d->type < VSR_MSG_TYPE_COUNT
			    ? wt_message_equal(&d->message, &again.message, why, sizeof(why))
			    : wt_host_equal(d, &again, why, sizeof(why));
	if (!same)
		fuzz_fail("decode(encode(m)) != m", why);
	if (wt_encode_decoded(&again, &second) != 0 || second.len != first.len ||
	    memcmp(first.data, second.data, first.len) != 0)
		fuzz_fail("re-encoding is not stable", vsr_wire_type_name(d->type));
	vsr_wire_decoded_free(&again);
	free(first.data);
	free(second.data);
}

static void fuzz_decode_whole(const uint8_t *data, size_t size, const vsr_wire_config *c)
{
	vsr_wire_decoded d;
	vsr_wire_decoded_init(&d);
	char err[200] = "";
	size_t flen = 0;
	int rc = vsr_wire_decode(data, size, c, &d, &flen, NULL, err, sizeof(err));
	if (rc == 0) {
		if (flen > size || flen < VSR_WIRE_HEADER_SIZE + 1)
			fuzz_fail("frame length outside the input", err);
		fuzz_roundtrip(&d, c);
	} else {
		if (rc >= 0 || -rc >= VSR_WIRE_REASON_COUNT)
			fuzz_fail("unknown error code", err);
		if (err[0] == '\0')
			fuzz_fail("error without detail", vsr_wire_strerror(rc));
		if (d.owned_body != NULL || d.owned_entries != NULL || d.type != 0)
			fuzz_fail("failed decode kept memory", err);
	}
	vsr_wire_decoded_free(&d);
}

/* Feeds the input to a reader in pieces chosen from `split_seed`. */
static void fuzz_reader(const uint8_t *data, size_t size, const vsr_wire_config *c,
			uint64_t split_seed)
{
	vsr_wire_stats stats = {0};
	vsr_wire_reader r;
	vsr_wire_reader_init(&r, c, &stats);
	size_t off = 0;
	uint64_t st = split_seed;
	while (off < size) {
		size_t piece = 1 + (size_t)(wt_rand(&st) % 97);
		if (piece > size - off)
			piece = size - off;
		size_t used = 0;
		int rc = vsr_wire_reader_feed(&r, data + off, piece, &used);
		if (used > piece)
			fuzz_fail("reader used more than it was given", r.err);
		if (vsr_wire_reader_buffered(&r) > VSR_WIRE_HEADER_SIZE + FUZZ_BODY_MAX)
			fuzz_fail("reader buffered more than one frame", r.err);
		off += used;
		if (rc == 0 && used != piece)
			fuzz_fail("reader wants more but left bytes", r.err);
		if (rc == 1) {
			vsr_wire_decoded d;
			vsr_wire_decoded_init(&d);
			rc = vsr_wire_reader_decode(&r, &d);
			if (rc == 0)
				fuzz_roundtrip(&d, c);
			vsr_wire_decoded_free(&d);
		}
		if (rc < 0) {
			if (r.error != rc || vsr_wire_stats_dropped(&stats) != 1)
				fuzz_fail("reader error not recorded once", r.err);
			break;
		}
	}
	vsr_wire_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vsr_wire_config c;
	fuzz_config(&c);
	uint64_t seed = size;
	for (size_t i = 0; i < size && i < 64; i++)
		seed = seed * 131 + data[i];

	fuzz_decode_whole(data, size, &c);
	fuzz_reader(data, size, &c, seed);

	/* Re-framed: the fuzzer's bytes become a checksummed body. */
	if (size > VSR_WIRE_HEADER_SIZE && size - VSR_WIRE_HEADER_SIZE <= FUZZ_BODY_MAX) {
		vsr_buf frame = {0};
		wt_frame_raw(&frame, data[6], WT_CLUSTER, data + VSR_WIRE_HEADER_SIZE,
			     (uint32_t)(size - VSR_WIRE_HEADER_SIZE));
		fuzz_decode_whole(frame.data, frame.len, &c);
		fuzz_reader(frame.data, frame.len, &c, seed ^ 0x5bd1e995);
		free(frame.data);
	}
	return 0;
}
