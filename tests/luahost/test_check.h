/* test_check.h - CHECK(cond, fmt, ...) for the C tests of the store: counts
 * the check in `checks`; a failed one prints the place and the message and
 * is counted in `failures`. */
#ifndef TESTS_TEST_CHECK_H
#define TESTS_TEST_CHECK_H

#include <stdio.h>

static int failures;
static unsigned checks;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		checks++;                                                      \
		if (!(cond)) {                                                 \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);            \
			printf(__VA_ARGS__);                                   \
			printf("\n");                                          \
			failures++;                                            \
		}                                                              \
	} while (0)

#endif /* TESTS_TEST_CHECK_H */
