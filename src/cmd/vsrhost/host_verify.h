/* host_verify.h - checking a restarted replica's store before trusting it. */
#ifndef HOST_VERIFY_H
#define HOST_VERIFY_H

#include <stddef.h>

/* Reads vsr.store's LMDB environment under store_dir in a child process (a
 * damaged page can make LMDB read out of bounds) and checks every record
 * against the checkpoint that stored it. 0: intact or empty; 1: damaged,
 * with a sentence in why; -1: could not be checked (why says why). Call it
 * before the storage starts its threads. */
int host_verify_store(const char *store_dir, char *why, size_t why_len);

#endif
