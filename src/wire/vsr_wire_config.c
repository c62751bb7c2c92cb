/* vsr_wire_config.c - configuration fingerprints carried in HELLO: the overall value, part names, comparison.
 *
 * What goes into each part is computed by the host (it knows the
 * configuration and the loaded scripts); the wire layer only carries the
 * parts and says which differ, so that both ends of a refused connection
 * can name the difference in their logs. */
#include "vsr_wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

uint64_t vsr_wire_config_fingerprint(const uint64_t *parts, uint8_t count)
{
	if (count == 0)
		return 0;
	uint8_t bytes[VSR_WIRE_CONFIG_PARTS_MAX * 8];
	if (count > VSR_WIRE_CONFIG_PARTS_MAX)
		count = VSR_WIRE_CONFIG_PARTS_MAX;
	for (uint8_t i = 0; i < count; i++)
		for (int b = 0; b < 8; b++)
			bytes[8 * i + b] = (uint8_t)(parts[i] >> (8 * b));
	return XXH3_64bits(bytes, 8u * count);
}

const char *vsr_wire_config_part_name(unsigned part)
{
	static const char *const names[VSR_WIRE_CONFIG_PARTS] = {
		[VSR_WIRE_CONFIG_STATEMACHINE] = "state machine script",
		[VSR_WIRE_CONFIG_DEDUP] = "dedup policy script",
		[VSR_WIRE_CONFIG_LIMITS] = "limits",
		[VSR_WIRE_CONFIG_MEMBERS] = "membership (cluster id, replica count or addresses)",
		[VSR_WIRE_CONFIG_DURABILITY] = "durability",
		[VSR_WIRE_CONFIG_READS] = "lease read settings (reads, timeouts.primary_ms, tick_ms)",
		[VSR_WIRE_CONFIG_REPLICAS] = "replica count",
	};
	return part < VSR_WIRE_CONFIG_PARTS ? names[part] : "a part this build does not know";
}

uint32_t vsr_wire_config_compare(const uint64_t *ours, uint8_t ours_count,
				 const uint64_t *theirs, uint8_t theirs_count, char *why,
				 size_t why_len)
{
	_Static_assert(VSR_WIRE_CONFIG_PARTS_MAX <= 32, "a mask bit per part");
	unsigned n = ours_count < theirs_count ? ours_count : theirs_count;
	unsigned differ = 0;
	uint32_t mask = 0;
	size_t used = 0;
	if (why_len > 0)
		why[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		if (ours[i] == theirs[i])
			continue;
		differ++;
		mask |= 1u << i;
		if (used < why_len) {
			int w = snprintf(why + used, why_len - used,
					 "%s%s %s (ours %016" PRIx64 ", theirs %016" PRIx64 ")",
					 differ > 1 ? "; " : "", vsr_wire_config_part_name(i),
					 i == VSR_WIRE_CONFIG_LIMITS || i == VSR_WIRE_CONFIG_READS
						 ? "differ" : "differs",
					 ours[i], theirs[i]);
			used = w < 0 ? why_len : used + (size_t)w;
		}
	}
	return mask;
}
