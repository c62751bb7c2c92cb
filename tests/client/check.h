/* check.h - the one-macro harness of the client tests: CHECK counts failures and goes on. */
#ifndef VSRC_TEST_CHECK_H
#define VSRC_TEST_CHECK_H

#include <stdio.h>

/* Checks that failed so far; each test's main turns a non-zero count into
 * exit status 1. One copy per test program (each includes this once). */
static int failures;

/* Reports a false condition with its place and text, and keeps going, so one
 * run shows every broken check rather than only the first. */
#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                          \
			failures++;                                              \
		}                                                                \
	} while (0)

#endif
