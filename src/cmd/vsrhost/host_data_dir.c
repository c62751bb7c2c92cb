/* host_data_dir.c - the replica's data directory checked before storage opens it (host_data_dir.h). */
#include "host_data_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vsr_storage.h"

static int refuse(const char *config_path, const char *path, int e, char *err, size_t err_len)
{
	snprintf(err, err_len,
		 "%s: data_dir: expected a directory this replica can write, but %s: %s",
		 config_path, path, strerror(e));
	return -1;
}

int host_data_dir_check(const char *config_path, const char *dir, char *err, size_t err_len)
{
	char at[4096];
	int e = vsr_storage_mkdirs(dir, at, sizeof at);
	if (e != 0)
		return refuse(config_path, at, e, err, err_len);
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0)
		return refuse(config_path, dir, errno, err, err_len);
	return 0;
}
