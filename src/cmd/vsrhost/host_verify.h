/* host_verify.h - checking a restarted replica's store before trusting it. */
#ifndef HOST_VERIFY_H
#define HOST_VERIFY_H

#include <stddef.h>

#include "vsr.h"

/* Storage's check (vsr_storage_options.check; arg: the store directory):
 * reads vsr.store's LMDB environment in a child process (a damaged page can
 * make LMDB read out of bounds, or loop: the child has a CPU limit scaled
 * to the store, and one that dies of a signal or runs past it found damage)
 * and checks every record against the checkpoint that stored it, and that
 * checkpoint against the superblock's.
 * 0: intact, or no environment (a state machine with plain Lua state);
 * 1: damaged, with a sentence in why; -1: could not be checked. Runs
 * before the storage starts its threads (fork). */
int host_check_store(void *store_dir, const vsr_superblock *sb, char *why, size_t why_len);

/* The same check with nothing written (vsrhost --check-store): what
 * host_check_store settles first (an install stopped between its renames,
 * a newest transaction a reboot may have torn) is judged instead, said in
 * `start` ("" when the next start settles nothing), and the environment is
 * read as the next start will open it (an older meta page through a
 * private view of the map: vsrh_store_rollback_map). Returns as
 * host_check_store. */
int host_check_store_judge(const char *store_dir, const vsr_superblock *sb, char *start,
			   size_t start_len, char *why, size_t why_len);

/* vsrhost --check-store DIR (host_check_cli.c): that check, by hand, on a
 * stopped replica's data directory DIR, against the checkpoint its
 * superblock names, changing nothing in DIR (also on a read-only mount).
 * Prints the verdict in a line on stdout; returns 0 intact, 1 damaged, 2
 * could not check (no superblock, DIR in use). */
int host_check_store_main(const char *dir);

#endif
