/* test_store_format.c - a store of format 1 (records in the database `kv`,
 * values without their checks: a vsrhost from before records had checks)
 * is refused with a sentence, at open and by the restart's check, and
 * never read as damaged records (which would reset every replica of an
 * upgraded cluster at once) nor as an empty store.
 *
 * The test writes such an environment with LMDB itself: `kv` holding one
 * record as format 1 stored it, `meta` empty. */
#define _GNU_SOURCE
#include <lmdb.h>
#include <sys/stat.h>

#include "store_test.h"
#include "vsrh_store.h"

static int write_format1(const char *db_dir)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi kv, meta;
	MDB_val k = {.mv_size = 8, .mv_data = "sk000000"}, v = {.mv_size = 3, .mv_data = "\x92\xa1x"};
	int rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env, 2);
	if (rc == 0)
		rc = mdb_env_open(env, db_dir, MDB_NOLOCK, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "kv", MDB_CREATE, &kv);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta);
	if (rc == 0)
		rc = mdb_put(txn, kv, &k, &v, 0);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	return rc;
}

int main(void)
{
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-store-format-XXXXXX";
	if (st_begin(&cfg, dir) != 0)
		return 1;
	char store[400], db[500];
	st_path(store, sizeof store, dir, "store");
	st_path(db, sizeof db, store, "db");
	CHECK(mkdir(store, 0700) == 0 && mkdir(db, 0700) == 0, "mkdir %s", db);
	int rc = write_format1(db);
	CHECK(rc == 0, "writing a format-1 environment: %s", mdb_strerror(rc));

	char why[512] = "";
	rc = vsrh_store_verify_dir(store, 0, 0, why, sizeof why);
	CHECK(rc == -1 && strstr(why, "format 1") && strstr(why, "empty data directory"),
	      "the restart's check of a format-1 store: %d (-1: no verdict; 1: damaged, 0: intact), "
	      "\"%s\"", rc, why);
	printf("the check: %d, %s\n", rc, why);

	char err[512] = "";
	vsrh_sm *sm = NULL;
	rc = vsrh_sm_create_at(&sm, &cfg, store, true, false, err, sizeof err);
	CHECK(rc != VSR_OK && strstr(err, "format 1") && strstr(err, db),
	      "opening a format-1 store: %d, \"%s\"", rc, err);
	if (sm != NULL)
		vsrh_sm_destroy(sm);
	printf("the open: %s\n", err);
	return st_end(dir, &cfg, "a store of format 1 is refused with a sentence, not read");
}
