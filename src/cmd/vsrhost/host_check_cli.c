/* host_check_cli.c - vsrhost --check-store DIR: the store check a restart
 * runs (host_check_store), run by hand on a stopped replica's data
 * directory (data_dir/replica-N). The checkpoint it checks the store
 * against comes from the directory's superblock, read as a load would read
 * it. Nothing in DIR is written: an operator checks a stopped replica's
 * directory, a copy of one or a read-only mount and expects it unchanged,
 * so what a start settles first (an install stopped between its renames, a
 * newest LMDB transaction rolled back after a reboot) is judged, said, and
 * checked as the start will find it, not done (host_check_store_judge).
 * The directory's lock is held for reading meanwhile, so that a running
 * replica's directory is refused and a replica started meanwhile is
 * refused. */
#include "host_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vsr_storage.h"
#include "vsrh_store.h"

/* Prints the verdict, one line, on stdout; 0 intact, 1 damaged (a start
 * would reset the directory and repair it from the others), 2 could not
 * check. */
int host_check_store_main(const char *dir)
{
	char path[4200], why[1024];
	struct stat st;
	snprintf(path, sizeof path, "%s/superblock", dir);
	if (stat(path, &st) != 0) {
		printf("%s: could not check: %s: %s (not a replica's data directory, or one that "
		       "never wrote state)\n",
		       dir, path, strerror(errno));
		return 2;
	}
	/* The lock storage takes at open (storage_durable.c): a POSIX record
	 * lock on `lock`, here a read lock, which needs the file open for
	 * reading only, held for as long as this runs. A running replica holds
	 * the write lock. No `lock` file: no replica ever ran here (or this is
	 * a copy without it), and none is created. A file system without
	 * locks leaves the directory unguarded, as it does a start. */
	snprintf(path, sizeof path, "%s/lock", dir);
	int lock = open(path, O_RDONLY | O_CLOEXEC);
	if (lock < 0 && errno != ENOENT) {
		printf("%s: could not check: %s: %s\n", dir, path, strerror(errno));
		return 2;
	}
	struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
	if (lock >= 0 && fcntl(lock, F_SETLK, &fl) != 0 && (errno == EACCES || errno == EAGAIN)) {
		printf("%s: could not check: the directory is in use by another process (is this "
		       "replica running? stop it first)\n",
		       dir);
		close(lock);
		return 2;
	}
	vsr_superblock sb;
	bool unrecovered = false;
	int rc = 2;
	if (vsr_storage_read_superblock(dir, &sb, &unrecovered, why, sizeof why) != 0) {
		printf("%s: could not check: %s\n", dir, why);
	} else if (unrecovered) {
		printf("%s: damaged: the directory is marked unrecovered (it was being repaired "
		       "from the other replicas when it stopped); a start resets it and repairs it "
		       "again\n",
		       dir);
		rc = 1;
	} else if (sb.history == 0) {
		printf("%s: intact: it holds no state of a history yet (unjoined); there is no "
		       "store to check\n",
		       dir);
		rc = 0;
	} else {
		char store[4200], db[4300], start[2048];
		snprintf(store, sizeof store, "%s/store", dir);
		snprintf(db, sizeof db, "%s/%s/data.mdb", store, vsrh_store_env_name(store));
		bool plain = access(db, F_OK) != 0 && errno == ENOENT;
		fflush(stdout);
		rc = host_check_store_judge(store, &sb, start, sizeof start, why, sizeof why);
		/* What the start settles first, said after the verdict: the
		 * check read the store as that start will find it. */
		char then[2200] = "";
		if (start[0])
			snprintf(then, sizeof then, " (as the next start will open it: %s; this check "
						    "changed nothing)", start);
		if (rc == 0 && plain)
			printf("%s: intact: there is no vsr.store environment (%s): the state machine "
			       "keeps plain Lua state (store/checkpoint.img), which this check does not "
			       "read\n",
			       dir, db);
		else if (rc == 0)
			printf("%s: intact: vsr.store %s matches the checkpoint at op %" PRIu64
			       " that the superblock names%s\n",
			       dir, store, sb.checkpoint_op, then);
		else if (rc == 1)
			printf("%s: damaged: %s%s; a start resets the directory and repairs it from the "
			       "other replicas\n",
			       dir, why, then);
		else
			printf("%s: could not check: %s%s\n", dir, why, then);
		rc = rc == 0 ? 0 : rc == 1 ? 1 : 2;
	}
	if (lock >= 0)
		close(lock);
	return rc;
}
