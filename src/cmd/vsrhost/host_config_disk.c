/* host_config_disk.c - the configuration fingerprint recorded in a durable data directory, checked at start.
 *
 * Runs after storage has loaded the directory and the state machine's
 * scripts are loaded (the fingerprint's parts need their digests), before
 * the core replays a single log entry. Storage only keeps the parts; what
 * they mean, and what a difference means, is decided here. */
#include "host_config_disk.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "host_log.h"

_Static_assert(VSR_WIRE_CONFIG_PARTS <= VSR_STORAGE_CONFIG_MAX,
	       "the superblock's record holds every part");

bool host_config_parse_fingerprint(const char *s, uint64_t *out)
{
	if (strlen(s) != 16 || strspn(s, "0123456789abcdefABCDEF") != 16)
		return false;
	uint64_t v = 0;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned d = *p <= '9' ? (unsigned)(*p - '0') : (unsigned)((*p | 0x20) - 'a' + 10);
		v = v << 4 | d;
	}
	*out = v;
	return true;
}

/* "state machine script (recorded 1a2b..., now 3c4d...); limits (...)":
 * the parts both know that differ. Returns how many. A build with more
 * parts than the one that wrote the directory compares the ones both
 * have, as replicas of mixed builds do (docs/wire.md 5.1). */
static unsigned config_diff(const uint64_t *rec, unsigned rec_count, const uint64_t *now,
			    char *buf, size_t len)
{
	unsigned n = rec_count < VSR_WIRE_CONFIG_PARTS ? rec_count : VSR_WIRE_CONFIG_PARTS;
	unsigned differ = 0;
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		if (rec[i] == now[i])
			continue;
		if (used < len) {
			int w = snprintf(buf + used, len - used,
					 "%s%s (recorded %016" PRIx64 ", now %016" PRIx64 ")",
					 differ > 0 ? "; " : "", vsr_wire_config_part_name(i), rec[i],
					 now[i]);
			used = w < 0 ? len : used + (size_t)w;
		}
		differ++;
	}
	return differ;
}

/* Another replica count is another membership, which no flag accepts:
 * vsrhost has no reconfiguration protocol (docs/protocol.md), and a
 * quorum of the new size need not intersect the quorum that committed an
 * operation under the old one (3 of 5 can miss both of 2 of 3), so a
 * committed operation could be lost. Addresses may change under the flag:
 * a replica is its index and its data directory, not where it listens.
 * Returns 0 or EX_CONFIG after logging why. */
static int config_members_check(const char *dir, const uint64_t *rec, unsigned rec_count,
				const uint64_t parts[VSR_WIRE_CONFIG_PARTS], bool accept)
{
	_Static_assert(VSR_WIRE_CONFIG_MEMBERS < VSR_WIRE_CONFIG_REPLICAS,
		       "a record with the count has the membership digest too");
	if (rec_count > VSR_WIRE_CONFIG_REPLICAS) {
		uint64_t was = rec[VSR_WIRE_CONFIG_REPLICAS], now = parts[VSR_WIRE_CONFIG_REPLICAS];
		if (was == now)
			return 0;
		host_error("storage %s: this data directory was written by a cluster of %" PRIu64
			   " replicas, and this configuration has %" PRIu64 ": membership changes "
			   "(another replica count) are not supported yet: vsrhost has no "
			   "reconfiguration protocol, and quorums counted among %" PRIu64 " need not "
			   "intersect those that committed operations among %" PRIu64 ", so committed "
			   "operations could be lost. It does not start, with --accept-config or "
			   "without (nothing was replayed or recorded). Run the configuration with the "
			   "cluster's %" PRIu64 " replicas; a cluster of another size starts from empty "
			   "data directories (docs/config.md, \"Changing the configuration\")",
			   dir, was, now, now, was, was);
		return EX_CONFIG;
	}
	/* A record from a build before the count part: its membership digest
	 * cannot say whether only addresses changed. */
	if (accept && rec[VSR_WIRE_CONFIG_MEMBERS] != parts[VSR_WIRE_CONFIG_MEMBERS]) {
		host_error("storage %s: the membership (cluster id, replica count or addresses) "
			   "differs from the one this data directory was written under, and its record "
			   "(written by an older vsrhost) does not say the replica count it had: "
			   "membership changes (another replica count) are not supported yet, so "
			   "--accept-config does not accept it (nothing was replayed or recorded). Start "
			   "it once under the configuration it was written with (this build then "
			   "records the count), then again with this one and --accept-config "
			   "(docs/config.md, \"Changing the configuration\")",
			   dir);
		return EX_CONFIG;
	}
	return 0;
}

int host_config_disk_check(vsr_storage *s, const char *dir, const vsr_durable *durable,
			   const uint64_t parts[VSR_WIRE_CONFIG_PARTS], bool accept,
			   uint64_t accept_fp)
{
	uint64_t now = vsr_wire_config_fingerprint(parts, VSR_WIRE_CONFIG_PARTS);
	if (accept && accept_fp != now) {
		host_error("--accept-config %016" PRIx64 " names another configuration: this one's "
			   "fingerprint is %016" PRIx64 " (`vsrhost fingerprint CONFIG` prints it); "
			   "nothing was started. Give the fingerprint of the configuration you mean "
			   "to accept, or leave the flag out",
			   accept_fp, now);
		return EX_CONFIG;
	}
	uint64_t rec[VSR_STORAGE_CONFIG_MAX];
	uint8_t rec_count = vsr_storage_config(s, rec);
	/* Only a directory with state replays a log: an empty or reset one
	 * (history 0) catches up from the others, who check the fingerprint
	 * of every replica that connects. */
	bool state = durable != NULL && durable->superblock.history != 0;
	if (state && rec_count > 0) {
		int rc = config_members_check(dir, rec, rec_count, parts, accept);
		if (rc != 0)
			return rc;
	}
	char diff[1024];
	if (state && rec_count > 0 && config_diff(rec, rec_count, parts, diff, sizeof diff) > 0) {
		uint64_t was = vsr_wire_config_fingerprint(rec, rec_count);
		if (!accept) {
			host_error("storage %s: this data directory was written under configuration "
				   "fingerprint %016" PRIx64 ", and this configuration's is %016" PRIx64
				   ": %s. Replaying its log under another configuration could give "
				   "this replica a state the cluster never committed, so it does not "
				   "start (nothing was replayed or recorded). If the change was a "
				   "mistake, run the configuration the other replicas run (`vsrhost "
				   "fingerprint CONFIG` prints a file's fingerprint). If the whole "
				   "cluster was stopped and changed deliberately, start each replica "
				   "once with --accept-config %016" PRIx64
				   " (docs/config.md, \"Changing the configuration\")",
				   dir, was, now, diff, now);
			return EX_CONFIG;
		}
		host_warn("storage %s: the configuration changed from fingerprint %016" PRIx64
			  " to %016" PRIx64 " (%s); accepted (--accept-config): the %u log entries "
			  "after the checkpoint at op %" PRIu64 " are replayed under the new one",
			  dir, was, now, diff, durable->entry_count, durable->superblock.checkpoint_op);
	} else if (state && rec_count == 0) {
		host_info("storage %s: no configuration fingerprint recorded (a directory written by "
			  "an older vsrhost); recording %016" PRIx64, dir, now);
	}
	if (vsr_storage_set_config(s, parts, VSR_WIRE_CONFIG_PARTS) != VSR_OK) {
		host_error("%s", vsr_storage_error(s));
		return EX_IOERR;
	}
	return 0;
}
