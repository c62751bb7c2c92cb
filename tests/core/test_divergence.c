/* test_divergence.c - named scenarios for runtime divergence detection
 * (divergence.c, docs/protocol.md): a replica whose state machine computed
 * another state is found at the next checkpoint and repaired from the
 * quorum's checkpoint; a primary in the minority abdicates first; with no
 * quorum on any state nothing is repaired.
 * Usage: test_divergence [NAME]   (no name: run all; --list: names) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static int failures;

static void tune(vsr_config *c)
{
	c->checkpoint_interval = 8;
}

/* Requests first..last, each answered. */
static bool calls(fixture *f, uint64_t s, uint64_t first, uint64_t last)
{
	for (uint64_t k = first; k <= last; k++) {
		const fx_reply *r = fx_call(f, s, k, "w");
		if (r == NULL || r->status != VSR_REPLY_OK) return false;
	}
	return true;
}

static const vsr_replica_stats *stats(const fixture *f, uint8_t i)
{
	return vsr_replica_stats_get(f->node[i].r);
}

/* A planted bug: replica i's state machine computes another state. */
static void plant(fixture *f, uint8_t i, uint64_t flip)
{
	f->node[i].sm.chain ^= flip;
}

/* The cluster every scenario starts from: three replicas that checkpoint
 * every 8 ops, a session registered at replica 0 (the primary) and its
 * requests 1..last answered. Returns the session, 0 if any of it failed. */
static uint64_t start(fixture *f, uint64_t last)
{
	fx_init(f, 3, tune);
	uint64_t s = fx_register(f, 0, 1);
	return s != 0 && calls(f, s, 1, last) ? s : 0;
}

/* start(f, 3) with the primary, replica 0, planted: the scenarios where
 * the primary is the one that diverges. Returns the session, 0 if the
 * start failed or replica 0 is not the primary. */
static uint64_t start_primary_planted(fixture *f)
{
	uint64_t s = start(f, 3);
	if (s == 0 || fx_primary(f) != 0) return 0;
	plant(f, 0, 1);
	return s;
}

/* Replicas i and j executed as far and hold the same state. */
static bool same_state(const fixture *f, uint8_t i, uint8_t j)
{
	vsr_replica_info a, b;
	fx_info(f, i, &a);
	fx_info(f, j, &b);
	return a.executed == b.executed && a.digest == b.digest;
}

/* Requests *k, *k + 1, ... through `last`, each given ten ticks, until the
 * primary (replica 0) finds itself diverged; *k is left at the request
 * after the one that found it. */
static bool request_until_primary_diverged(fixture *f, uint64_t s, uint64_t *k, uint64_t last)
{
	bool found = false;
	for (; *k <= last && !found; (*k)++) {
		fx_request(f, 0, VSR_REQUEST_OP, s, *k, "w");
		for (int t = 0; t < 10 && !found; t++) {
			fx_run(f, 1);
			found = vsr_replica_diverged(f->node[0].r, NULL);
		}
	}
	return found;
}

/* For fx_run_until: replica 0, which abdicated, is repaired, another
 * replica leads and every replica caught up. */
static bool repaired_under_new_primary(fixture *f, void *arg)
{
	(void)arg;
	return fx_primary(f) > 0 && !vsr_replica_diverged(f->node[0].r, NULL) &&
	       fx_all_caught_up(f, NULL);
}

static void test_backup_repaired(void)
{
	fixture f;
	uint64_t s = start(&f, 3);
	CHECK(s != 0);
	plant(&f, 2, 1);
	CHECK(calls(&f, s, 4, 30));
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	CHECK(stats(&f, 2)->divergences == 1 && stats(&f, 2)->divergence_repairs == 1);
	CHECK(stats(&f, 0)->divergent_peers == 1);
	CHECK(stats(&f, 0)->divergences == 0 && stats(&f, 1)->divergences == 0);
	vsr_divergence d;
	CHECK(!vsr_replica_diverged(f.node[2].r, &d));
	CHECK(d.op == 8 && d.digest != d.quorum_digest && !d.as_primary);
	CHECK(same_state(&f, 0, 2));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static void test_primary_abdicates(void)
{
	fixture f;
	uint64_t s = start_primary_planted(&f);
	CHECK(s != 0);
	CHECK(calls(&f, s, 4, 40));
	CHECK(fx_run_until(&f, 2000, fx_all_caught_up, NULL));
	CHECK(stats(&f, 0)->divergence_abdications == 1);
	CHECK(stats(&f, 0)->divergence_repairs == 1);
	CHECK(fx_primary(&f) != 0);
	CHECK(stats(&f, 1)->divergences == 0 && stats(&f, 2)->divergences == 0);
	CHECK(!vsr_replica_diverged(f.node[0].r, NULL));
	CHECK(same_state(&f, 0, 1));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* Every replica different: no checkpoint is certified, nobody is repaired
 * into anybody else's state, and the cluster keeps answering. */
static void test_no_quorum_no_repair(void)
{
	fixture f;
	uint64_t s = start(&f, 3);
	CHECK(s != 0);
	plant(&f, 1, 1);
	plant(&f, 2, 2);
	CHECK(calls(&f, s, 4, 30));
	fx_run(&f, 200);
	for (uint8_t i = 0; i < 3; i++) {
		CHECK(stats(&f, i)->divergences == 0 && stats(&f, i)->divergence_repairs == 0);
		CHECK(!vsr_replica_diverged(f.node[i].r, NULL));
	}
	CHECK(fx_primary(&f) == 0);
	fx_free(&f);
}

/* A diverged replica answers no stale read until it is repaired. */
static bool hold_chunks(const fx_message *q, void *arg)
{
	(void)arg;
	return q->m.type == VSR_MSG_CHECKPOINT_CHUNK;
}

static void test_diverged_replica_refuses_reads(void)
{
	fixture f;
	uint64_t s = start(&f, 3);
	CHECK(s != 0);
	plant(&f, 2, 1);
	f.hold = hold_chunks; /* the repair waits */
	CHECK(calls(&f, s, 4, 20));
	fx_run(&f, 20);
	CHECK(vsr_replica_diverged(f.node[2].r, NULL));
	uint64_t conn = fx_query(&f, 2, VSR_READ_STALE, 1);
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_NOT_PRIMARY);
	f.hold = NULL;
	while (f.held_count > 0) fx_release(&f, 0);
	CHECK(fx_run_until(&f, 500, fx_all_caught_up, NULL));
	CHECK(!vsr_replica_diverged(f.node[2].r, NULL));
	conn = fx_query(&f, 2, VSR_READ_STALE, 2);
	r = fx_reply_for(&f, conn);
	CHECK(r && r->status == VSR_REPLY_OK);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}


/* A repair whose install fails goes back to a normal backup, still
 * diverged (counted once), and the next COMMIT carrying the certified
 * checkpoint starts another; the cluster keeps committing meanwhile. */
static void test_failed_repair_retried(void)
{
	fixture f;
	uint64_t s = start(&f, 3);
	CHECK(s != 0);
	plant(&f, 2, 1);
	f.node[2].restore_fail = 2;
	CHECK(calls(&f, s, 4, 30));
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	CHECK(f.node[2].restore_failed == 2);
	CHECK(stats(&f, 2)->divergences == 1 && stats(&f, 2)->divergence_repairs == 1);
	CHECK(!vsr_replica_diverged(f.node[2].r, NULL));
	CHECK(fx_primary(&f) == 0 && stats(&f, 0)->divergences == 0);
	CHECK(same_state(&f, 0, 2));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* The diverged backup is needed for the quorum: with the third replica
 * down nothing is certified (one report against one), the cluster goes on
 * with the diverged backup's acks, and nobody is repaired into the other's
 * state; once the third replica is back, a quorum certifies the majority
 * state and the backup is repaired. */
static void test_diverged_backup_in_minimal_quorum(void)
{
	fixture f;
	uint64_t s = start(&f, 3);
	CHECK(s != 0);
	fx_crash(&f, 1);
	plant(&f, 2, 1);
	CHECK(calls(&f, s, 4, 30));
	fx_run(&f, 50);
	CHECK(fx_primary(&f) == 0);
	CHECK(stats(&f, 0)->divergences == 0 && stats(&f, 2)->divergences == 0);
	CHECK(stats(&f, 0)->divergence_abdications == 0);
	CHECK(stats(&f, 2)->divergence_repairs == 0);
	fx_restart(&f, 1);
	CHECK(calls(&f, s, 31, 50));
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	CHECK(stats(&f, 2)->divergences == 1 && stats(&f, 2)->divergence_repairs >= 1);
	CHECK(stats(&f, 0)->divergences == 0 && stats(&f, 1)->divergences == 0);
	CHECK(!vsr_replica_diverged(f.node[2].r, NULL));
	CHECK(same_state(&f, 0, 2));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}


/* A primary that found itself in the minority stays diverged when a late
 * (reordered) ack reports an older checkpoint on which everybody agreed:
 * agreement at an op below the one it diverged at says nothing of its
 * state now, so it neither leads on nor takes its view back. */
static int stale_ack_wanted;

static bool hold_one_ack_of_2(const fx_message *q, void *arg)
{
	(void)arg;
	if (stale_ack_wanted == 0 || q->from != 2 || q->m.type != VSR_MSG_PREPARE_OK ||
	    q->m.checkpoint_op == 0)
		return false;
	stale_ack_wanted--;
	return true;
}

static void test_primary_stays_diverged_on_stale_ack(void)
{
	fixture f;
	uint64_t s = start(&f, 10); /* checkpoint 8, certified */
	CHECK(s != 0);
	CHECK(fx_primary(&f) == 0);
	stale_ack_wanted = 1;
	f.hold = hold_one_ack_of_2;
	CHECK(calls(&f, s, 11, 11));
	CHECK(f.held_count == 1 && f.held[0].m.checkpoint_op == 8);
	f.hold = NULL;
	plant(&f, 0, 1);
	uint64_t k = 12;
	CHECK(request_until_primary_diverged(&f, s, &k, 40));
	vsr_divergence d;
	vsr_replica_diverged(f.node[0].r, &d);
	CHECK(d.as_primary && d.op > 8);
	fx_release(&f, 0); /* the ack from before checkpoint 16 */
	CHECK(vsr_replica_diverged(f.node[0].r, NULL));
	fx_run_until(&f, 3000, repaired_under_new_primary, NULL); /* checked below */
	CHECK(stats(&f, 0)->divergences == 1 && stats(&f, 0)->divergence_abdications == 1);
	CHECK(!vsr_replica_diverged(f.node[0].r, NULL) && fx_primary(&f) > 0);
	CHECK(stats(&f, 0)->divergence_repairs == 1);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* vsrsim --plant-divergence seed 1499: the primary finds itself in the
 * minority at checkpoint c (both backups reported the same other digest
 * there) and abdicates; then the backup that helped certify c is cut off.
 * The two left form the next view, but its primary cannot certify
 * anything (its report against the diverged one's, one to one), so no
 * COMMIT ever names c. The diverged replica knows the quorum's checkpoint
 * from the reports that made it abdicate: it repairs from that as a backup
 * of the next view, while the replica holding c still keeps it. Without
 * that it stayed diverged, and when the new primary then went down for
 * good the cut-off replica came back behind the commit, needing a
 * transfer that a diverged replica never serves: the two stayed in view
 * changes forever. */
static bool primary_is_1(fixture *f, void *arg)
{
	(void)arg;
	return fx_primary(f) == 1;
}

static void test_abdicated_primary_repairs_without_certifier(void)
{
	fixture f;
	uint64_t s = start_primary_planted(&f);
	CHECK(s != 0);
	uint64_t k = 4;
	CHECK(request_until_primary_diverged(&f, s, &k, 40));
	vsr_divergence d;
	vsr_replica_diverged(f.node[0].r, &d);
	CHECK(d.as_primary);
	/* Replica 2's reports made replica 0 abdicate; now it is cut off. */
	fx_isolate(&f, 2);
	CHECK(fx_run_until(&f, 1000, primary_is_1, NULL));
	CHECK(calls(&f, s, k, 60));
	CHECK(fx_primary(&f) == 1);
	CHECK(stats(&f, 1)->divergences == 0 && stats(&f, 1)->divergent_peers == 0);
	CHECK(!vsr_replica_diverged(f.node[0].r, NULL));
	CHECK(stats(&f, 0)->divergences == 1 && stats(&f, 0)->divergence_repairs == 1);
	/* The new primary goes down for good; the cut-off replica comes back
	 * behind the commit and can only catch up from the repaired one. */
	fx_crash(&f, 1);
	fx_heal(&f);
	CHECK(calls(&f, s, 61, 71));
	CHECK(fx_run_until(&f, 1000, fx_all_caught_up, NULL));
	CHECK(same_state(&f, 0, 2));
	CHECK(!vsr_replica_diverged(f.node[0].r, NULL) && !vsr_replica_diverged(f.node[2].r, NULL));
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

/* A primary that finds itself in the minority stops leading in that very
 * step: no request is taken after it, not even before its next tick (a
 * host ticks only at the deadline, and a loaded primary's deadline keeps
 * moving). Before, it went on taking and answering requests from its
 * diverged state until its next TICK; in the fixture, which ticks only
 * in fx_run, for as long as requests kept coming. */
static void test_primary_stops_at_detection(void)
{
	fixture f;
	uint64_t s = start_primary_planted(&f);
	CHECK(s != 0);
	uint64_t k = 4;
	for (; k <= 40 && !vsr_replica_diverged(f.node[0].r, NULL); k++) {
		uint64_t conn = fx_request(&f, 0, VSR_REQUEST_OP, s, k, "w");
		const fx_reply *r = fx_reply_for(&f, conn);
		CHECK(r != NULL && r->status == VSR_REPLY_OK); /* no tick needed */
	}
	CHECK(vsr_replica_diverged(f.node[0].r, NULL));
	uint64_t conn = fx_request(&f, 0, VSR_REQUEST_OP, s, k, "w");
	const fx_reply *r = fx_reply_for(&f, conn);
	CHECK(r != NULL && r->status == VSR_REPLY_NOT_PRIMARY);
	CHECK(stats(&f, 0)->divergence_abdications == 1);
	fx_run_until(&f, 3000, repaired_under_new_primary, NULL); /* checked below */
	CHECK(!vsr_replica_diverged(f.node[0].r, NULL) && fx_primary(&f) > 0);
	CHECK_CLUSTER(&f);
	fx_free(&f);
}

static const fx_test tests[] = {
	{"primary_stops_at_detection", test_primary_stops_at_detection},
	{"abdicated_primary_repairs_without_certifier", test_abdicated_primary_repairs_without_certifier},
	{"primary_stays_diverged_on_stale_ack", test_primary_stays_diverged_on_stale_ack},
	{"failed_repair_retried", test_failed_repair_retried},
	{"diverged_backup_in_minimal_quorum", test_diverged_backup_in_minimal_quorum},
	{"backup_repaired", test_backup_repaired},
	{"primary_abdicates", test_primary_abdicates},
	{"no_quorum_no_repair", test_no_quorum_no_repair},
	{"diverged_replica_refuses_reads", test_diverged_replica_refuses_reads},
};

int main(int argc, char **argv)
{
	return fx_main(argc, argv, tests, sizeof tests / sizeof tests[0], &failures);
}
