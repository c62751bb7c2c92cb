/* test_storage_memory.c - the memory backend completes asynchronously, in order, and marks restarts. */
#include "vsr_storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			exit(1);                                               \
		}                                                              \
	} while (0)

static uint64_t seen[16];
static unsigned seen_count;
static bool in_submit;
static unsigned closed;
static uint64_t iteration; /* bumped by a check handle once per loop iteration */
static uint64_t seen_iteration[16];

static void test_persisted_cb(vsr_storage *s, uint64_t id, int status)
{
	CHECK(!in_submit); /* never synchronously inside submit */
	CHECK(status == VSR_OK);
	CHECK(seen_count < 16);
	seen_iteration[seen_count] = iteration;
	seen[seen_count++] = id;
	if (id == 3) {
		/* A persist submitted from a completion must wait an iteration. */
		vsr_persist p = {.id = 4};
		in_submit = true;
		CHECK(vsr_storage_submit(s, &p) == VSR_OK);
		in_submit = false;
	}
}

static void test_check_cb(uv_check_t *h)
{
	(void)h;
	iteration++;
}

static void test_close_cb(vsr_storage *s)
{
	CHECK(*(int *)vsr_storage_data(s) == 42);
	closed++;
}

static vsr_storage *test_open(uv_loop_t *loop, const char *dir, bool fresh, int *data)
{
	vsr_storage_options o = {.loop = loop, .kind = VSR_STORAGE_MEMORY, .dir = dir,
				 .cluster = 7, .replica = 1, .fresh = fresh,
				 .persisted_cb = test_persisted_cb, .data = data};
	vsr_storage *s = NULL;
	char err[256];
	CHECK(vsr_storage_open(&o, &s, err, sizeof err) == VSR_OK);
	return s;
}

int main(void)
{
	char dir[] = "/tmp/vsr-storage-test-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char sub[512];
	snprintf(sub, sizeof sub, "%s/a/replica-1", dir);
	uv_loop_t loop;
	CHECK(uv_loop_init(&loop) == 0);
	uv_check_t check;
	uv_check_init(&loop, &check);
	uv_check_start(&check, test_check_cb);
	uv_unref((uv_handle_t *)&check);
	int data = 42;

	/* First start: no durable state, so a brand-new member. */
	vsr_storage *s = test_open(&loop, sub, false, &data);
	const vsr_durable *d = (const vsr_durable *)1;
	char err[256];
	CHECK(vsr_storage_load(s, &d, err, sizeof err) == VSR_OK);
	CHECK(d == NULL);

	vsr_entry e = {.op = 1, .body_len = 5};
	for (uint64_t id = 1; id <= 3; id++) {
		vsr_persist p = {.id = id, .entry_count = 1, .entries = &e};
		p.superblock.cluster = 7;
		p.superblock.view = id;
		in_submit = true;
		CHECK(vsr_storage_submit(s, &p) == VSR_OK);
		in_submit = false;
	}
	CHECK(seen_count == 0);
	CHECK(vsr_storage_superblock(s)->view == 3);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
	CHECK(seen_count == 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK(seen[i] == i + 1);
	CHECK(seen_iteration[3] > seen_iteration[2]);
	CHECK(vsr_storage_stats_get(s)->persists == 4);
	CHECK(vsr_storage_stats_get(s)->entry_bytes == 15);

	/* Close with a pending persist: dropped, like a crash, never reported. */
	vsr_persist p = {.id = 9};
	CHECK(vsr_storage_submit(s, &p) == VSR_OK);
	vsr_storage_close(s, test_close_cb);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
	CHECK(closed == 1);
	CHECK(seen_count == 4);

	/* Second start in the same directory: nothing survived, so no state
	 * (the core starts unjoined), and no marker file was left behind. */
	s = test_open(&loop, sub, false, &data);
	CHECK(vsr_storage_load(s, &d, err, sizeof err) == VSR_OK);
	CHECK(d == NULL);
	char marker[600];
	snprintf(marker, sizeof marker, "%s/memory-incarnation", sub);
	CHECK(access(marker, F_OK) != 0);
	vsr_storage_close(s, test_close_cb);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);

	/* fresh: the same. */
	s = test_open(&loop, sub, true, &data);
	CHECK(vsr_storage_load(s, &d, err, sizeof err) == VSR_OK);
	CHECK(d == NULL);
	vsr_storage_close(s, test_close_cb);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
	CHECK(closed == 3);

	uv_close((uv_handle_t *)&check, NULL);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
	CHECK(uv_loop_close(&loop) == 0);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	printf("storage memory: ok\n");
	return 0;
}
