/* host_config_disk.h - the configuration fingerprint recorded in a durable data directory, checked at start.
 *
 * A replica whose disk was written under another configuration (a script
 * or a limit changed on one machine, then a restart on the old data
 * directory) would replay its log after the checkpoint under the new one
 * and could end in a state the cluster never committed. So the superblock
 * records the fingerprint (docs/storage.md) and vsrhost refuses to start
 * on a directory that recorded another, unless the operator names the new
 * fingerprint with --accept-config (docs/config.md, "Changing the
 * configuration"); another replica count is a membership change, which
 * it refuses with the flag too. */
#ifndef HOST_CONFIG_DISK_H
#define HOST_CONFIG_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "vsr_storage.h"
#include "vsr_wire.h"

/* Parses --accept-config's value: exactly 16 hex digits. */
bool host_config_parse_fingerprint(const char *s, uint64_t *out);

/* Compares what storage `s` (loaded from `dir`, returning `durable`)
 * recorded with `parts`, this start's fingerprint, and then records
 * `parts`. `accept`: --accept-config was given, with `accept_fp`. Returns
 * 0 to go on, or the exit code after logging why: EX_CONFIG (another
 * configuration recorded and not accepted; another replica count, which
 * nothing accepts; or --accept-config names a fingerprint other than this
 * configuration's), EX_IOERR (the record could not be written). */
int host_config_disk_check(vsr_storage *s, const char *dir, const vsr_durable *durable,
			   const uint64_t parts[VSR_WIRE_CONFIG_PARTS], bool accept,
			   uint64_t accept_fp);

#endif /* HOST_CONFIG_DISK_H */
