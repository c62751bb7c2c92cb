/* host_data_dir.h - the replica's data directory checked before storage opens it.
 *
 * A data directory this process cannot create or write is a mistake in the
 * configuration (or in the machine's set-up), not a failing disk: it is
 * reported as a config error naming the file and the key `data_dir`, with
 * EX_CONFIG (78), which a supervisor does not restart in a loop, rather
 * than as a storage failure (74) at the first file storage creates. */
#ifndef HOST_DATA_DIR_H
#define HOST_DATA_DIR_H

#include <stddef.h>

/* Creates `dir` (and its parents) if missing and checks that it is a
 * directory this process may create files in (the effective ids: root is
 * not refused for mode bits, a read-only file system refuses everyone).
 * Returns 0, or -1 with a sentence in err:
 * "CONFIG: data_dir: expected a directory this replica can write, but DIR: WHY". */
int host_data_dir_check(const char *config_path, const char *dir, char *err, size_t err_len);

#endif
