/* vsr_snapckpt.c - whole-state checkpoints in memory (see vsr_snapckpt.h).
 * Self-contained (no other core symbol): the Lua host, which links no core,
 * compiles it too. */
#include "vsr_snapckpt.h"

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static int buf_append(vsr_buf *b, const void *data, size_t len)
{
	if (len > SIZE_MAX / 2 - b->len) return VSR_ENOMEM;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len) cap *= 2;
		uint8_t *p = realloc(b->data, cap);
		if (p == NULL) return VSR_ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	if (len) memcpy(b->data + b->len, data, len);
	b->len += len;
	return VSR_OK;
}

static void buf_free(vsr_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

static void image_free(vsr_snapckpt_image *im)
{
	free(im->data);
	memset(im, 0, sizeof *im);
}

void vsr_snapckpt_init(vsr_snapckpt *s, const vsr_state_machine *inner)
{
	memset(s, 0, sizeof *s);
	s->inner = *inner;
}

void vsr_snapckpt_rebind(vsr_snapckpt *s, const vsr_state_machine *inner)
{
	s->inner = *inner;
	image_free(&s->staged);
}

void vsr_snapckpt_adopt(vsr_snapckpt *s, const vsr_checkpoint *cp, uint8_t *data)
{
	image_free(&s->held[0]);
	image_free(&s->held[1]);
	s->held[0] = (vsr_snapckpt_image){.cp = *cp, .data = data};
}

void vsr_snapckpt_forget(vsr_snapckpt *s)
{
	image_free(&s->held[0]);
	image_free(&s->held[1]);
	image_free(&s->staged);
}

void vsr_snapckpt_free(vsr_snapckpt *s) { vsr_snapckpt_forget(s); }

const vsr_snapckpt_image *vsr_snapckpt_current(const vsr_snapckpt *s)
{
	return s->held[0].cp.op ? &s->held[0] : NULL;
}

static int sc_apply(void *ctx, const vsr_apply_ctx *a, const uint8_t *op, size_t len,
		    vsr_buf *reply)
{
	vsr_snapckpt *s = ctx;
	return s->inner.apply(s->inner.ctx, a, op, len, reply);
}

static uint64_t sc_digest(void *ctx)
{
	vsr_snapckpt *s = ctx;
	return s->inner.digest(s->inner.ctx);
}

static uint32_t sc_evict(void *ctx, const vsr_session_info *info, uint32_t n)
{
	vsr_snapckpt *s = ctx;
	return s->inner.evict(s->inner.ctx, info, n);
}

static int sc_snapshot(void *ctx, vsr_buf *out)
{
	vsr_snapckpt *s = ctx;
	return s->inner.snapshot(s->inner.ctx, out);
}

static int sc_restore(void *ctx, const uint8_t *data, size_t len)
{
	vsr_snapckpt *s = ctx;
	return s->inner.restore(s->inner.ctx, data, len);
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int vsr_snapckpt_sync(vsr_snapckpt *s)
{
	vsr_snapckpt_image *im = &s->held[0];
	if (!im->pending) return VSR_OK;
	if (s->persist) {
		int rc = s->persist(s->persist_arg, im);
		if (rc != VSR_OK) return rc;
	}
	im->pending = false;
	return VSR_OK;
}

uint64_t vsr_snapckpt_pending(const vsr_snapckpt *s)
{
	return s->held[0].pending ? s->held[0].cp.op : 0;
}

uint64_t vsr_snapckpt_durable_op(const vsr_snapckpt *s)
{
	/* The previous image is durable whenever the current one is pending. */
	return s->held[0].pending ? s->held[1].cp.op : s->held[0].cp.op;
}

void vsr_snapckpt_crash(vsr_snapckpt *s)
{
	image_free(&s->staged);
	if (!s->held[0].pending) return;
	image_free(&s->held[0]);
	s->held[0] = s->held[1];
	memset(&s->held[1], 0, sizeof s->held[1]);
}

static int sc_take(void *ctx, vsr_checkpoint *cp, const uint8_t *meta, size_t meta_len)
{
	vsr_snapckpt *s = ctx;
	/* One sync at a time, in take order: the previous image first. */
	if (s->held[0].pending) {
		int rc = vsr_snapckpt_sync(s);
		if (rc != VSR_OK) return rc;
		s->waits++;
	}
	vsr_buf b = {0};
	uint8_t len[8];
	put_u64(len, meta_len);
	int rc = buf_append(&b, len, 8);
	if (rc == VSR_OK) rc = buf_append(&b, meta, meta_len);
	if (rc == VSR_OK) rc = s->inner.snapshot(s->inner.ctx, &b);
	if (rc != VSR_OK) {
		buf_free(&b);
		return rc;
	}
	cp->size = b.len;
	cp->digest = XXH3_64bits(b.data, b.len);
	vsr_snapckpt_image im = {.cp = *cp, .data = b.data, .pending = s->async};
	if (!s->async && s->persist && (rc = s->persist(s->persist_arg, &im)) != VSR_OK) {
		buf_free(&b);
		return rc;
	}
	image_free(&s->held[1]);
	s->held[1] = s->held[0];
	s->held[0] = im;
	s->takes++;
	return s->async ? VSR_PENDING : VSR_OK;
}

static const vsr_snapckpt_image *held(const vsr_snapckpt *s, const vsr_checkpoint *cp)
{
	for (int i = 0; i < 2; i++)
		if (s->held[i].cp.op == cp->op && s->held[i].cp.op != 0 &&
		    s->held[i].cp.digest == cp->digest && s->held[i].cp.size == cp->size)
			return &s->held[i];
	return NULL;
}

static int sc_read(void *ctx, const vsr_checkpoint *cp, uint64_t offset, uint32_t len,
		   vsr_buf *out)
{
	const vsr_snapckpt_image *im = held(ctx, cp);
	if (im == NULL || offset > im->cp.size) return VSR_EINVAL;
	uint64_t n = im->cp.size - offset < len ? im->cp.size - offset : len;
	return buf_append(out, im->data + offset, (size_t)n);
}

static int sc_write(void *ctx, const vsr_checkpoint *cp, uint64_t offset, const uint8_t *data,
		    uint32_t len)
{
	vsr_snapckpt *s = ctx;
	vsr_snapckpt_image *st = &s->staged;
	if (st->data == NULL || memcmp(&st->cp, cp, sizeof *cp) != 0) {
		image_free(st);
		if (cp->size < 8 || cp->size > SIZE_MAX / 2) return VSR_ETOOBIG;
		st->data = calloc(1, (size_t)cp->size);
		if (st->data == NULL) return VSR_ENOMEM;
		st->cp = *cp;
	}
	if (offset > st->cp.size || len > st->cp.size - offset) return VSR_EINVAL;
	memcpy(st->data + offset, data, len);
	return VSR_OK;
}

static int sc_install(void *ctx, const vsr_checkpoint *cp, vsr_checkpoint_accept accept, void *arg)
{
	vsr_snapckpt *s = ctx;
	vsr_snapckpt_image *st = &s->staged;
	if (st->data == NULL || memcmp(&st->cp, cp, sizeof *cp) != 0) return VSR_EINVAL;
	/* The checkpoint's own checksum: a chunk missing, torn or forged shows. */
	if (XXH3_64bits(st->data, st->cp.size) != cp->digest) {
		image_free(st);
		return VSR_ECORRUPT;
	}
	uint64_t meta_len = get_u64(st->data);
	if (meta_len > st->cp.size - 8) {
		image_free(st);
		return VSR_ECORRUPT;
	}
	int rc = accept(arg, st->data + 8, (size_t)meta_len);
	if (rc != VSR_OK) {
		image_free(st);
		return rc;
	}
	/* Keep the present state to put back if restore fails half way. */
	vsr_buf undo = {0};
	if (!s->restore_atomic) rc = s->inner.snapshot(s->inner.ctx, &undo);
	if (rc == VSR_OK) {
		const uint8_t *snap = st->data + 8 + meta_len;
		rc = s->inner.restore(s->inner.ctx, snap, (size_t)(st->cp.size - 8 - meta_len));
		if (rc != VSR_OK && !s->restore_atomic &&
		    s->inner.restore(s->inner.ctx, undo.data, undo.len) != VSR_OK)
			abort(); /* the state before cannot be put back: never run on */
	}
	buf_free(&undo);
	if (rc != VSR_OK) {
		image_free(st);
		return VSR_ESM;
	}
	if (s->persist && s->persist(s->persist_arg, st) != VSR_OK)
		abort(); /* the state changed but cannot be made durable: stop */
	image_free(&s->held[1]);
	image_free(&s->held[0]);
	s->held[0] = *st;
	memset(st, 0, sizeof *st);
	return VSR_OK;
}

static int sc_open(void *ctx, vsr_checkpoint *cp, vsr_buf *meta)
{
	vsr_snapckpt *s = ctx;
	const vsr_snapckpt_image *im = &s->held[0];
	memset(cp, 0, sizeof *cp);
	if (im->cp.op == 0) return VSR_OK;
	if (XXH3_64bits(im->data, im->cp.size) != im->cp.digest) return VSR_ECORRUPT;
	uint64_t meta_len = get_u64(im->data);
	if (meta_len > im->cp.size - 8) return VSR_ECORRUPT;
	int rc = s->inner.restore(s->inner.ctx, im->data + 8 + meta_len,
				  (size_t)(im->cp.size - 8 - meta_len));
	if (rc != VSR_OK) return VSR_ESM;
	rc = buf_append(meta, im->data + 8, (size_t)meta_len);
	if (rc != VSR_OK) return rc;
	*cp = im->cp;
	return VSR_OK;
}

void vsr_snapckpt_machine(vsr_snapckpt *s, vsr_state_machine *out)
{
	memset(out, 0, sizeof *out);
	out->ctx = s;
	out->apply = sc_apply;
	out->digest = sc_digest;
	out->snapshot = sc_snapshot;
	out->restore = sc_restore;
	out->evict = s->inner.evict ? sc_evict : NULL;
	out->checkpoint_take = sc_take;
	out->checkpoint_read = sc_read;
	out->checkpoint_write = sc_write;
	out->checkpoint_install = sc_install;
	out->checkpoint_open = sc_open;
}
