/* powercut.h - what the power-cut scenarios share (sc_powercut.c has it):
 * each replica's data directory on an ext4 filesystem of its own (a loop
 * device in a mount namespace of the driver's own), cut with the
 * filesystem's shutdown ioctl. sc_powercut.c cuts every replica at once,
 * sc_powercut_minority.c one at a time while the others serve. */
#ifndef PROCTEST_POWERCUT_H
#define PROCTEST_POWERCUT_H

#include "harness.h"

/* Root, a mount namespace, N fresh filesystems each proven to drop what
 * was not synced at a cut; every exit unmounts them. Then the cluster on
 * them, open (scenario_open, kv.lua) in the shape of the cuts: durable, a
 * checkpoint every 8 ops, log segments of 64 KiB (VSRH_SEGMENT_BYTES).
 * 0, or 77 (with the reason noted) when this machine cannot. */
int pc_cluster_open(mclient *m, msgpack_sbuffer *sb);
/* Replica i's filesystem mounted again (journal replay) / unmounted;
 * false on failure. */
bool disk_mount(int i);
bool disk_unmount(int i);
/* A descriptor of replica i's mount point, and the cut through it:
 * nothing written after disk_cut reaches the image (0, or -1 and errno). */
int disk_cut_fd(int i);
int disk_cut(int fd);
/* Some dirty ranges of replica i's files written back, as the kernel's
 * flusher may at any time (from the seed's generator *x); how many. */
unsigned writeback_some(int i, uint64_t *x);
/* Lines of replica i's log from byte `from` on containing `needle`. */
unsigned log_count_since(int i, long from, const char *needle);

#endif
