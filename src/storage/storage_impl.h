/* storage_impl.h - what the backends share behind vsr_storage.h.
 *
 * Every backend's storage object begins with its kind, so that the public
 * functions (storage.c) can dispatch on it; the rest is the backend's own. */
#ifndef STORAGE_IMPL_H
#define STORAGE_IMPL_H

#include "vsr_storage.h"

/* The first member of every backend's storage object. */
typedef struct storage_head {
	int kind; /* enum vsr_storage_kind */
} storage_head;

void storage_errf(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define STORAGE_BACKEND_DECLARE(prefix)                                               \
	int prefix##_open(const vsr_storage_options *opts, vsr_storage **out, char *err,   \
			  size_t err_len);                                                  \
	int prefix##_load(vsr_storage *s, const vsr_durable **out, char *err,           \
			  size_t err_len);                                                  \
	int prefix##_submit(vsr_storage *s, const vsr_persist *p);                       \
	void prefix##_close(vsr_storage *s, vsr_storage_close_cb cb);                    \
	void *prefix##_data(const vsr_storage *s);                                       \
	const vsr_storage_stats *prefix##_stats_get(const vsr_storage *s);               \
	const vsr_superblock *prefix##_superblock(const vsr_storage *s);

STORAGE_BACKEND_DECLARE(storage_memory)
STORAGE_BACKEND_DECLARE(storage_durable)
const char *storage_durable_error(const vsr_storage *s);
void storage_durable_recovered(vsr_storage *s);
bool storage_durable_flush(vsr_storage *s);
bool storage_durable_reclaim(vsr_storage *s);
uint8_t storage_durable_config(const vsr_storage *s, uint64_t parts[VSR_STORAGE_CONFIG_MAX]);
int storage_durable_set_config(vsr_storage *s, const uint64_t *parts, uint8_t count);

#endif /* STORAGE_IMPL_H */
