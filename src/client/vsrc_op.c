/* vsrc_op.c - msgpack encodings of the kv operations used by vsrctl and vsrbench. */
#include "vsrc_op.h"

#include <string.h>

#include <msgpack.h>

/* msgpack-c writes through a callback: append to the vsr_buf. */
static int op_write(void *data, const char *buf, size_t len)
{
	return vsr_buf_append(data, buf, len) == VSR_OK ? 0 : -1;
}

int vsrc_op_strings(vsr_buf *out, const char *const *strings,
		    const size_t *lengths, uint32_t count)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, op_write);
	size_t before = out->len;
	int rc = msgpack_pack_array(&pk, count);
	for (uint32_t i = 0; rc == 0 && i < count; i++) {
		rc = msgpack_pack_str(&pk, lengths[i]);
		if (rc == 0)
			rc = msgpack_pack_str_body(&pk, strings[i], lengths[i]);
	}
	if (rc != 0)
		out->len = before;
	return rc == 0 ? 0 : -1;
}

int vsrc_op_put(vsr_buf *out, const void *key, size_t key_len,
		const void *value, size_t value_len)
{
	const char *s[3] = { "put", key, value };
	size_t l[3] = { 3, key_len, value_len };
	return vsrc_op_strings(out, s, l, 3);
}

int vsrc_op_get(vsr_buf *out, const void *key, size_t key_len)
{
	const char *s[2] = { "get", key };
	size_t l[2] = { 3, key_len };
	return vsrc_op_strings(out, s, l, 2);
}
