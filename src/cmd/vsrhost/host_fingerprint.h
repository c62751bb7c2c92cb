/* host_fingerprint.h - the configuration fingerprint: what every replica of a cluster must share.
 *
 * Each replica computes it at start and sends it in the HELLO of every
 * connection (docs/wire.md 5.1); a replica whose fingerprint differs is
 * refused on both ends (src/net). Which settings are in it, and why the
 * others may differ per replica, is documented in docs/config.md
 * ("Identical on every replica"). */
#ifndef HOST_FINGERPRINT_H
#define HOST_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "vsr_wire.h"
#include "vsrh_config.h"

/* Fills parts[VSR_WIRE_CONFIG_PARTS] from the configuration and the digests
 * of the sources the state machine loaded (vsrh_sm_sources). */
void host_fingerprint_parts(const vsrh_config *cfg, uint64_t statemachine_sources,
			    uint64_t dedup_sources, uint64_t parts[VSR_WIRE_CONFIG_PARTS]);

/* "1a2b3c4d5e6f7081 (state machine script 0123..., dedup policy script ...,
 * ...)": the overall fingerprint and every part, for the startup log line
 * and `vsrhost check`. */
void host_fingerprint_describe(const uint64_t parts[VSR_WIRE_CONFIG_PARTS], char *buf,
			       size_t len);

/* vsrhost fingerprint CONFIG: loads the configuration and its scripts as a
 * replica would and prints the fingerprint and its parts, so that operators
 * can compare machines before starting anything. Returns an exit code. */
int host_fingerprint_main(int argc, char **argv);

#endif
