/* host_log.h - vsrhost's log: one line per event on stderr with UTC time and level. */
#ifndef HOST_LOG_H
#define HOST_LOG_H

#include <stdarg.h>

#include "vsrh_config.h"

/* Lines below `level` (enum vsrh_log_level) are dropped. */
void host_log_set_level(int level);
int host_log_level(void);
/* enum vsrh_log_format: text lines (the default) or one JSON object per line. */
void host_log_set_format(int format);
/* A short tag after the level, e.g. "r1" or "supervisor". */
void host_log_set_tag(const char *tag);
/* "debug", "info", "warn", "error" -> level, or -1. */
int host_log_parse_level(const char *name);
const char *host_log_level_name(int level);

#if defined(__GNUC__)
#define HOST_LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define HOST_LOG_PRINTF(a, b)
#endif

void host_log(int level, const char *fmt, ...) HOST_LOG_PRINTF(2, 3);
void host_logv(int level, const char *fmt, va_list ap) HOST_LOG_PRINTF(2, 0);

#define host_debug(...) host_log(VSRH_LOG_DEBUG, __VA_ARGS__)
#define host_info(...) host_log(VSRH_LOG_INFO, __VA_ARGS__)
#define host_warn(...) host_log(VSRH_LOG_WARN, __VA_ARGS__)
#define host_error(...) host_log(VSRH_LOG_ERROR, __VA_ARGS__)

#endif /* HOST_LOG_H */
