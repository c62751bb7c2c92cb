/* test_wire_nomem.c - allocation failure at every point of encode, decode and the reader.
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc: every
 * allocation made by the wire layer (and this test) goes through the
 * wrappers below, which fail the Nth call while armed. For each N the
 * operation must either succeed or return -VSR_WIRE_ENOMEM, leave its
 * outputs empty, and leak nothing (the sanitizer build checks leaks). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsr_wire.h"
#include "wire_testutil.h"

#include "nomem_wrap.h"

static unsigned failures, checks;
#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		checks++;                                                    \
		if (!(cond)) {                                               \
			failures++;                                          \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
		}                                                            \
	} while (0)

int main(void)
{
	uint64_t seed = 77;
	printf("test_wire_nomem: seed %" PRIu64 "\n", seed);
	vsr_wire_config cfg;
	wt_config(&cfg);
	unsigned ok = 0, nomem = 0;

	/* A DO_VIEW_CHANGE with entries: the most allocating decode. */
	wt_arena arena = {0};
	vsr_message m;
	uint64_t st = seed;
	do {
		wt_arena_free(&arena);
		wt_gen_message(&st, VSR_MSG_DO_VIEW_CHANGE, true, &arena, &m);
	} while (m.entry_count < 3);
	vsr_buf frame = {0};
	CHECK(vsr_wire_encode_message(&frame, WT_CLUSTER, &m) == 0, "encode");

	for (long n = 0; n < 64; n++) {
		/* Encode. */
		vsr_buf out = {0};
		nomem_countdown = n;
		int rc = vsr_wire_encode_message(&out, WT_CLUSTER, &m);
		nomem_countdown = -1;
		CHECK(rc == 0 || rc == -VSR_WIRE_ENOMEM, "encode at %ld: %d", n, rc);
		CHECK(rc != 0 || (out.len == frame.len && memcmp(out.data, frame.data, out.len) == 0),
		      "encode at %ld: wrong bytes", n);
		CHECK(rc == 0 || out.len == 0, "encode at %ld: partial output", n);
		free(out.data);
		rc == 0 ? ok++ : nomem++;

		/* Whole-frame decode. */
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		vsr_wire_stats stats = {0};
		char err[200] = "";
		nomem_countdown = n;
		rc = vsr_wire_decode(frame.data, frame.len, &cfg, &d, NULL, &stats, err, sizeof(err));
		nomem_countdown = -1;
		CHECK(rc == 0 || rc == -VSR_WIRE_ENOMEM, "decode at %ld: %s", n, err);
		CHECK(rc == 0 || stats.dropped[VSR_WIRE_ENOMEM] == 1, "decode at %ld: not counted", n);
		CHECK(rc == 0 || (d.owned_body == NULL && d.owned_entries == NULL),
		      "decode at %ld: kept memory", n);
		vsr_wire_decoded_free(&d);
		rc == 0 ? ok++ : nomem++;

		/* Reader, in 1000-byte pieces so the body buffer grows. */
		vsr_wire_reader r;
		vsr_wire_reader_init(&r, &cfg, NULL);
		nomem_countdown = n;
		size_t off = 0;
		rc = 0;
		while (off < frame.len && rc == 0) {
			size_t used;
			size_t piece = frame.len - off < 1000 ? frame.len - off : 1000;
			rc = vsr_wire_reader_feed(&r, frame.data + off, piece, &used);
			off += used;
		}
		if (rc == 1)
			rc = vsr_wire_reader_decode(&r, &d);
		nomem_countdown = -1;
		CHECK(rc == 0 || rc == -VSR_WIRE_ENOMEM, "reader at %ld: %d %s", n, rc, r.err);
		vsr_wire_decoded_free(&d);
		vsr_wire_reader_free(&r);
		rc == 0 ? ok++ : nomem++;
	}
	free(frame.data);
	wt_arena_free(&arena);
	CHECK(nomem > 0 && ok > 0, "ok %u, nomem %u", ok, nomem);
	printf("%u operations succeeded, %u failed cleanly with ENOMEM (%lu injected)\n", ok,
	       nomem, nomem_failed);
	printf("%u passed, %u failed\n", checks - failures, failures);
	return failures == 0 ? 0 : 1;
}
