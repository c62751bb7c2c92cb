/* host_divergence.h - the log lines and telemetry of runtime divergence
 * detection (docs/protocol.md "Divergence detection"): what the core found
 * (vsr_replica_diverged), said once per detection and once per repair. */
#ifndef HOST_DIVERGENCE_H
#define HOST_DIVERGENCE_H

#include <stdint.h>

#include "vsr.h"
#include "vsrh_telemetry.h"

/* The counters last reported, so each detection is logged once. */
typedef struct host_divergence_seen {
	uint64_t divergences;
	uint64_t repairs;
	uint64_t peers;
} host_divergence_seen;

/* Called after every step: logs new detections (the checkpoint op, both
 * digests, the ops just before it) and repairs. */
void host_divergence_report(const vsr_replica *core, host_divergence_seen *seen,
			    vsrh_telemetry *telemetry);

#endif /* HOST_DIVERGENCE_H */
