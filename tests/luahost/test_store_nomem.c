/* test_store_nomem.c - allocation failure at every point of a checkpoint
 * install into vsr.store on LMDB, staging included (issue 9: no abort on
 * any path a state machine or a client reaches).
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc: every
 * allocation of the Lua host (its own and the Lua heap's, which goes
 * through its allocator) fails at the Nth call while armed. For each N the
 * install must either succeed, giving the source's digest, or fail with the
 * target's state and digest unchanged and the target still usable; it must
 * never abort. LMDB's own allocations (a shared library) are not wrapped. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_test.h"
#include "vsrh_config.h"
#include "vsrh_lua.h"

#include "nomem_wrap.h"

static void put_op(vsr_buf *b, const char *key, int64_t value)
{
	/* {op = "put", key = K, value = V} in msgpack */
	b->len = 0;
	uint8_t head[] = {0x83, 0xa2, 'o', 'p', 0xa3, 'p', 'u', 't', 0xa3, 'k', 'e', 'y'};
	vsr_buf_append(b, head, sizeof head);
	uint8_t kl = (uint8_t)(0xa0 | strlen(key));
	vsr_buf_append(b, &kl, 1);
	vsr_buf_append(b, key, strlen(key));
	uint8_t vk[] = {0xa5, 'v', 'a', 'l', 'u', 'e', 0xd3};
	vsr_buf_append(b, vk, sizeof vk);
	for (int i = 7; i >= 0; i--) {
		uint8_t c = (uint8_t)((uint64_t)value >> (8 * i));
		vsr_buf_append(b, &c, 1);
	}
}

static vsrh_sm *open_sm(const vsrh_config *cfg, const char *dir)
{
	char err[512];
	vsrh_sm *sm = NULL;
	int rc = vsrh_sm_create_at(&sm, cfg, dir, false, true, err, sizeof err);
	CHECK(rc == VSR_OK && sm != NULL, "open %s: %s", dir, err);
	return sm;
}

static void apply_puts(vsr_state_machine *m, int from, int to, int64_t base)
{
	vsr_buf op = {0}, reply = {0};
	for (int i = from; i < to; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i % 50);
		put_op(&op, key, base + i);
		vsr_apply_ctx a = {.op = (uint64_t)i + 1, .session = 1, .request = (uint64_t)i + 1};
		reply.len = 0;
		CHECK(m->apply(m->ctx, &a, op.data, op.len, &reply) == VSR_REPLY_OK, "put %d", i);
	}
	free(op.data);
	free(reply.data);
}

static int accept_any(void *arg, const uint8_t *meta, size_t len)
{
	(void)arg, (void)meta, (void)len;
	return VSR_OK;
}

int main(void)
{
	vsrh_config cfg;
	char dir[] = "/tmp/vsr-store-nomem-XXXXXX";
	if (st_begin(&cfg, dir) != 0)
		return 1;
	char src_dir[300], dst_dir[300];
	snprintf(src_dir, sizeof src_dir, "%s/src", dir);
	snprintf(dst_dir, sizeof dst_dir, "%s/dst", dir);
	vsrh_sm *src = open_sm(&cfg, src_dir), *dst = open_sm(&cfg, dst_dir);
	if (src == NULL || dst == NULL)
		return 1;
	vsr_state_machine ms, md;
	vsrh_sm_bind(src, &ms);
	vsrh_sm_bind(dst, &md);
	apply_puts(&ms, 0, 200, 0);
	apply_puts(&md, 0, 120, 1000); /* another state, as a diverged replica's */
	static const uint8_t meta[] = "client table";
	vsr_checkpoint cp = {.op = 200, .checksum = 7, .timestamp = 9};
	CHECK(ms.checkpoint_take(ms.ctx, &cp, meta, sizeof meta) == VSR_OK, "take");
	vsr_buf image = {0};
	CHECK(ms.checkpoint_read(ms.ctx, &cp, 0, (uint32_t)cp.size, &image) == VSR_OK &&
		      image.len == cp.size, "read the image");
	uint64_t want = ms.digest(ms.ctx), before = md.digest(md.ctx);
	unsigned long fails = 0, successes = 0;
	for (long n = 0; n < 100000; n++) {
		/* Staged anew each round: a failed install may drop the staging.
		 * Armed from the write on: the store builds the new environment as
		 * chunks arrive, and a build that failed leaves the install to do
		 * it from the staged image. */
		unsigned long failed = nomem_failed;
		nomem_countdown = n;
		CHECK(md.checkpoint_write(md.ctx, &cp, 0, image.data, (uint32_t)image.len) == VSR_OK,
		      "stage the image");
		int rc = md.checkpoint_install(md.ctx, &cp, accept_any, NULL);
		nomem_countdown = -1;
		bool injected = nomem_failed != failed;
		if (rc == VSR_OK) {
			successes++;
			CHECK(md.digest(md.ctx) == want, "installed at N=%ld: the source's digest", n);
			if (!injected)
				break; /* every allocation point was passed */
			/* An injected failure absorbed: start again from the other state. */
			vsrh_sm_destroy(dst);
			dst = open_sm(&cfg, dst_dir);
			if (dst == NULL)
				return 1;
			vsrh_sm_bind(dst, &md);
			apply_puts(&md, 0, 120, 1000);
			CHECK(md.digest(md.ctx) == before, "the other state again");
			continue;
		}
		fails++;
		CHECK(injected, "install failed at N=%ld without an injected failure (%d)", n, rc);
		CHECK(md.digest(md.ctx) == before, "a failed install at N=%ld changed the state", n);
	}
	/* Still usable after all that: one more put. */
	apply_puts(&md, 200, 201, 0);
	printf("store install: %lu allocation points failed in turn, %lu installs refused "
	       "(state unchanged), %lu succeeded; %u checks, %d failures\n",
	       nomem_failed, fails, successes, checks, failures);
	free(image.data);
	vsrh_sm_destroy(src);
	vsrh_sm_destroy(dst);
	return st_end(dir, &cfg, NULL);
}
