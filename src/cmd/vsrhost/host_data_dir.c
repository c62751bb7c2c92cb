/* host_data_dir.c - the replica's data directory checked before storage opens it (host_data_dir.h). */
#include "host_data_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int refuse(const char *config_path, const char *path, int e, char *err, size_t err_len)
{
	snprintf(err, err_len,
		 "%s: data_dir: expected a directory this replica can write, but %s: %s",
		 config_path, path, strerror(e));
	return -1;
}

int host_data_dir_check(const char *config_path, const char *dir, char *err, size_t err_len)
{
	char buf[4096];
	size_t len = strlen(dir);
	if (len == 0 || len >= sizeof buf)
		return refuse(config_path, dir, ENAMETOOLONG, err, err_len);
	memcpy(buf, dir, len + 1);
	/* mkdir -p, reporting the component that cannot be made. */
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		struct stat st;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return refuse(config_path, buf, errno, err, err_len);
		if (stat(buf, &st) != 0)
			return refuse(config_path, buf, errno, err, err_len);
		if (!S_ISDIR(st.st_mode))
			return refuse(config_path, buf, ENOTDIR, err, err_len);
		buf[i] = saved;
	}
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0)
		return refuse(config_path, dir, errno, err, err_len);
	return 0;
}
