/* storage.c - the public vsr_storage functions: dispatch to the backend
 * named by the options (memory or durable), and what the backends share. */
#include "storage_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int kind_of(const vsr_storage *s)
{
	return ((const storage_head *)(const void *)s)->kind;
}

#define DISPATCH(s, fn, ...)                                                   \
	(kind_of(s) == VSR_STORAGE_DURABLE ? storage_durable_##fn(__VA_ARGS__) \
					   : storage_memory_##fn(__VA_ARGS__))

const char *vsr_storage_kind_name(int kind)
{
	switch (kind) {
	case VSR_STORAGE_MEMORY: return "memory";
	case VSR_STORAGE_DURABLE: return "durable";
	default: return "unknown";
	}
}

void storage_errf(char *err, size_t err_len, const char *fmt, ...)
{
	if (err == NULL || err_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

int vsr_storage_mkdirs(const char *path, char *at, size_t at_len)
{
	char buf[4096];
	size_t len = strlen(path);
	if (at != NULL && at_len > 0)
		snprintf(at, at_len, "%s", path);
	if (len == 0 || len >= sizeof buf)
		return ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		struct stat st;
		int e = 0;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			e = errno;
		else if (stat(buf, &st) != 0)
			e = errno;
		else if (!S_ISDIR(st.st_mode))
			e = ENOTDIR;
		if (e != 0) {
			if (at != NULL && at_len > 0)
				snprintf(at, at_len, "%s", buf);
			return e;
		}
		buf[i] = saved;
	}
	return 0;
}

int vsr_storage_open(const vsr_storage_options *opts, vsr_storage **out, char *err,
		     size_t err_len)
{
	*out = NULL;
	if (opts == NULL || opts->loop == NULL || opts->dir == NULL ||
	    opts->persisted_cb == NULL) {
		storage_errf(err, err_len, "storage: loop, dir and persisted_cb are required");
		return VSR_EINVAL;
	}
	switch (opts->kind) {
	case VSR_STORAGE_MEMORY: return storage_memory_open(opts, out, err, err_len);
	case VSR_STORAGE_DURABLE: return storage_durable_open(opts, out, err, err_len);
	default:
		storage_errf(err, err_len, "storage: unknown durability kind %d", opts->kind);
		return VSR_EINVAL;
	}
}

int vsr_storage_load(vsr_storage *s, const vsr_durable **out, char *err, size_t err_len)
{
	return DISPATCH(s, load, s, out, err, err_len);
}

int vsr_storage_submit(vsr_storage *s, const vsr_persist *p)
{
	return DISPATCH(s, submit, s, p);
}

void vsr_storage_close(vsr_storage *s, vsr_storage_close_cb cb)
{
	DISPATCH(s, close, s, cb);
}

void *vsr_storage_data(const vsr_storage *s)
{
	return DISPATCH(s, data, s);
}

const vsr_storage_stats *vsr_storage_stats_get(const vsr_storage *s)
{
	return DISPATCH(s, stats_get, s);
}

const vsr_superblock *vsr_storage_superblock(const vsr_storage *s)
{
	return DISPATCH(s, superblock, s);
}

const char *vsr_storage_error(const vsr_storage *s)
{
	return kind_of(s) == VSR_STORAGE_DURABLE ? storage_durable_error(s) : "";
}

void vsr_storage_recovered(vsr_storage *s)
{
	if (kind_of(s) == VSR_STORAGE_DURABLE)
		storage_durable_recovered(s);
}

bool vsr_storage_flush(vsr_storage *s)
{
	return kind_of(s) == VSR_STORAGE_DURABLE && storage_durable_flush(s);
}

bool vsr_storage_reclaim(vsr_storage *s)
{
	return kind_of(s) == VSR_STORAGE_DURABLE && storage_durable_reclaim(s);
}

uint8_t vsr_storage_config(const vsr_storage *s, uint64_t parts[VSR_STORAGE_CONFIG_MAX])
{
	if (kind_of(s) == VSR_STORAGE_DURABLE)
		return storage_durable_config(s, parts);
	return 0;
}

int vsr_storage_set_config(vsr_storage *s, const uint64_t *parts, uint8_t count)
{
	if (kind_of(s) == VSR_STORAGE_DURABLE)
		return storage_durable_set_config(s, parts, count);
	return VSR_OK;
}
