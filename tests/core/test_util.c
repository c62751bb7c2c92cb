/* test_util.c - the core's small utilities at their limits (src/core/util.c).
 *
 *   buf_append_overflow   a length that would wrap len + n around SIZE_MAX is
 *                         refused (VSR_ENOMEM), the buffer left as it was;
 *                         ordinary appends still grow it */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsr.h"

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

static void buf_append_overflow(void)
{
	vsr_buf b = {0};
	CHECK(vsr_buf_append(&b, "0123456789abcdefghij", 20) == VSR_OK);
	CHECK(b.len == 20 && b.cap >= 20);
	uint8_t *data = b.data;
	size_t cap = b.cap;
	/* 20 + (SIZE_MAX - 10) wraps to 9: without the check it "fits" the
	 * capacity and memcpy runs off the end of everything. */
	CHECK(vsr_buf_append(&b, "x", SIZE_MAX - 10) == VSR_ENOMEM);
	CHECK(b.len == 20 && b.cap == cap && b.data == data);
	CHECK(memcmp(b.data, "0123456789abcdefghij", 20) == 0);
	/* Large but not wrapping: the capacity doubling must not overflow to
	 * 0 and spin; realloc refuses it instead. */
	CHECK(vsr_buf_append(&b, "x", SIZE_MAX / 2 + 1) == VSR_ENOMEM);
	CHECK(b.len == 20 && b.data == data);
	for (int i = 0; i < 1000; i++)
		CHECK(vsr_buf_append(&b, "y", 1) == VSR_OK);
	CHECK(b.len == 1020 && b.data[1019] == 'y');
	vsr_buf_free(&b);
	printf("buf_append_overflow: ok\n");
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	if (only == NULL || strcmp(only, "buf_append_overflow") == 0)
		buf_append_overflow();
	return 0;
}
