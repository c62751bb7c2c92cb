/* host_log.c - formats log lines: "2026-11-22T02:40:01.123Z INFO r1 text", or one JSON object per line.
 *
 * JSON lines have four members, always in this order:
 *   {"ts":"2026-11-22T02:40:01.123Z","level":"info","who":"r1","msg":"..."}
 * The message is escaped per RFC 8259 (quotes, backslashes, control
 * characters); bytes of invalid UTF-8 are passed through as they are, since a
 * log line must never be lost for its content. In text lines, control
 * characters (but tab) are written as \xNN: a message carries text from
 * peers (a CLOSE frame's reason), which must not start a line of its own
 * or send escape sequences to a terminal. */
#include "host_log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int host_log_min = VSRH_LOG_INFO;
static int host_log_format = VSRH_LOG_TEXT;
static char host_log_tag_buf[32] = "vsrhost";

void host_log_set_level(int level)
{
	host_log_min = level;
}

int host_log_level(void)
{
	return host_log_min;
}

void host_log_set_format(int format)
{
	host_log_format = format;
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

/* Appends `s` as the body of a JSON string; stops short of `end`. */
static char *host_log_json_escape(char *p, const char *end, const char *s)
{
	for (; *s != '\0' && p + 7 < end; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			*p++ = '\\';
			*p++ = (char)ch;
		} else if (ch == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else if (ch < 0x20) {
			p += snprintf(p, (size_t)(end - p), "\\u%04x", ch);
		} else {
			*p++ = (char)ch;
		}
	}
	return p;
}

static void host_log_json(char *line, size_t cap, const struct tm *tm, long ms, const char *level,
			  const char *msg)
{
	char *end = line + cap - 3; /* room for "}\n" and the NUL */
	char *p = line + snprintf(line, cap,
				  "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
				  "\"who\":\"",
				  tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour,
				  tm->tm_min, tm->tm_sec, ms, level);
	p = host_log_json_escape(p, end, host_log_tag_buf);
	p += snprintf(p, (size_t)(end - p), "\",\"msg\":\"");
	p = host_log_json_escape(p, end - 1, msg);
	*p++ = '"';
	*p++ = '}';
	*p++ = '\n';
	*p = '\0';
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
	if (host_log_format == VSRH_LOG_JSON) {
		char msg[1536];
		vsnprintf(msg, sizeof msg, fmt, ap);
		host_log_json(line, sizeof line, &tm, ts.tv_nsec / 1000000,
			      host_log_names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
		fwrite(line, 1, strlen(line), stderr);
		return;
	}
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 upper[level < 0 ? 0 : level > 3 ? 3 : level], host_log_tag_buf);
	if (n < 0)
		return;
	char msg[1536];
	vsnprintf(msg, sizeof msg, fmt, ap);
	for (const char *s = msg; *s != '\0' && (size_t)n + 5 < sizeof line; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			n += snprintf(line + n, sizeof line - (size_t)n, "\\x%02x", ch);
		else
			line[n++] = (char)ch;
	}
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
