/* host_log.c - formats log lines: "2026-11-22T02:40:01.123Z INFO r1 text". */
#include "host_log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int host_log_min = VSRH_LOG_INFO;
static char host_log_tag_buf[32] = "vsrhost";

void host_log_set_level(int level)
{
	host_log_min = level;
}

int host_log_level(void)
{
	return host_log_min;
}

void host_log_set_tag(const char *tag)
{
	snprintf(host_log_tag_buf, sizeof host_log_tag_buf, "%s", tag);
}

static const char *const host_log_names[] = {"debug", "info", "warn", "error"};

int host_log_parse_level(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, host_log_names[i]) == 0)
			return i;
	return -1;
}

const char *host_log_level_name(int level)
{
	return level >= 0 && level < 4 ? host_log_names[level] : "?";
}

void host_logv(int level, const char *fmt, va_list ap)
{
	if (level < host_log_min)
		return;
	static const char *const upper[] = {"DEBUG", "INFO", "WARN", "ERROR"};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	/* Built in one buffer and written with one call so that lines from the
	 * replicas a supervisor runs do not interleave mid-line. */
	char line[2048];
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 upper[level < 0 ? 0 : level > 3 ? 3 : level], host_log_tag_buf);
	if (n < 0)
		return;
	if ((size_t)n < sizeof line)
		n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	if ((size_t)n >= sizeof line - 1)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	fwrite(line, 1, (size_t)n, stderr);
}

void host_log(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	host_logv(level, fmt, ap);
	va_end(ap);
}
