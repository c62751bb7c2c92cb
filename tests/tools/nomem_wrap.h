/* nomem_wrap.h - allocation failure at the Nth call, for the nomem tests.
 *
 * Include it in exactly one file of a test linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc: every allocation of the
 * code under test then goes through these wrappers. nomem_countdown = N
 * arms them (the call after N more fails; -1 disarms); nomem_failed counts
 * the failures injected. A realloc to size 0 (a free) never fails; Lua
 * assumes that much. */
#ifndef NOMEM_WRAP_H
#define NOMEM_WRAP_H

#include <stdbool.h>
#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static long nomem_countdown = -1; /* -1: disarmed; 0: the next call fails */
static unsigned long nomem_failed;

static bool nomem_fail_now(void)
{
	if (nomem_countdown < 0)
		return false;
	if (nomem_countdown-- == 0) {
		nomem_failed++;
		return true;
	}
	return false;
}

void *__wrap_malloc(size_t n) { return nomem_fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size)
{
	return nomem_fail_now() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
	return n > 0 && nomem_fail_now() ? NULL : __real_realloc(p, n);
}

#endif
