/* kv_op.h - config/kv.lua operations encoded by hand, for C tests that
 * drive a state machine without a client. */
#ifndef TESTS_KV_OP_H
#define TESTS_KV_OP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsr.h"

/* {op = "put", key = "kNNNNNN", value = value_len bytes of one letter
 * chosen by key and round} in msgpack. */
static inline void kv_put_op(vsr_buf *b, int key, size_t value_len, int round)
{
	char k[16];
	int kl = snprintf(k, sizeof k, "k%06d", key);
	b->len = 0;
	uint8_t head[] = {0x83, 0xa2, 'o', 'p', 0xa3, 'p', 'u', 't', 0xa3, 'k', 'e', 'y'};
	vsr_buf_append(b, head, sizeof head);
	uint8_t kh = (uint8_t)(0xa0 | kl);
	vsr_buf_append(b, &kh, 1);
	vsr_buf_append(b, k, (size_t)kl);
	uint8_t vk[] = {0xa5, 'v', 'a', 'l', 'u', 'e', 0xdb, (uint8_t)(value_len >> 24),
			(uint8_t)(value_len >> 16), (uint8_t)(value_len >> 8), (uint8_t)value_len};
	vsr_buf_append(b, vk, sizeof vk);
	char chunk[256];
	for (size_t i = 0; i < value_len; i += sizeof chunk) {
		size_t n = value_len - i < sizeof chunk ? value_len - i : sizeof chunk;
		memset(chunk, 'a' + (key + round) % 26, n);
		vsr_buf_append(b, chunk, n);
	}
}

/* `keys` puts of round `round` (values of 100 bytes) applied to m at ops
 * *op + 1, ... in session 1; returns how many were refused. */
static inline int kv_put_round(const vsr_state_machine *m, int keys, int round, uint64_t *op)
{
	vsr_buf b = {0}, reply = {0};
	int refused = 0;
	for (int i = 0; i < keys; i++) {
		kv_put_op(&b, i + round * 7, 100, round);
		vsr_apply_ctx a = {.op = ++*op, .session = 1, .request = *op};
		reply.len = 0;
		if (m->apply(m->ctx, &a, b.data, b.len, &reply) != VSR_REPLY_OK)
			refused++;
	}
	free(b.data);
	free(reply.data);
	return refused;
}

#endif /* TESTS_KV_OP_H */
