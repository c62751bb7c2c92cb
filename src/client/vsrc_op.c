/* vsrc_op.c - msgpack encodings of the kv operations used by vsrctl, vsrbench and tests. */
#include "vsrc_op.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <msgpack.h>

/* msgpack-c writes through a callback: append to the vsr_buf. */
static int op_write(void *data, const char *buf, size_t len)
{
	return vsr_buf_append(data, buf, len) == VSR_OK ? 0 : -1;
}

static int op_str(msgpack_packer *pk, const char *s, size_t n)
{
	if (msgpack_pack_str(pk, n) != 0)
		return -1;
	return msgpack_pack_str_body(pk, s, n);
}

/* The common case, a small map of short strings, is written into a local
 * buffer and appended once, in the same shortest forms msgpack-c uses;
 * anything larger goes through the packer. */
#define OP_SMALL_BYTES 1024u
#define OP_SMALL_FIELDS 8u

static uint8_t *op_small_str(uint8_t *p, const char *s, size_t n)
{
	if (n < 32) {
		*p++ = (uint8_t)(0xa0 | n);
	} else {
		*p++ = 0xd9; /* str 8: the caller keeps n < 256 */
		*p++ = (uint8_t)n;
	}
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

static int op_map_small(vsr_buf *out, const char *name, size_t name_len,
			const char *const *fields, const size_t *field_lens,
			const char *const *values, const size_t *value_lens, uint32_t count)
{
	uint8_t tmp[OP_SMALL_BYTES];
	uint8_t *p = tmp;
	*p++ = (uint8_t)(0x80 | (count + 1u)); /* fixmap: count + 1 <= 15 */
	p = op_small_str(p, "op", 2);
	p = op_small_str(p, name, name_len);
	for (uint32_t i = 0; i < count; i++) {
		p = op_small_str(p, fields[i], field_lens[i]);
		p = op_small_str(p, values[i], value_lens[i]);
	}
	return vsr_buf_append(out, tmp, (size_t)(p - tmp)) == VSR_OK ? 0 : -1;
}

int vsrc_op_map(vsr_buf *out, const char *name, const char *const *fields,
		const char *const *values, const size_t *value_lens, uint32_t count)
{
	if (count < OP_SMALL_FIELDS) {
		/* Each string costs at most 2 header bytes when shorter than 256. */
		size_t name_len = strlen(name), field_lens[OP_SMALL_FIELDS];
		size_t need = 1 + 4 + 2 + name_len;
		bool small = name_len < 256;
		for (uint32_t i = 0; small && i < count; i++) {
			field_lens[i] = strlen(fields[i]);
			small = field_lens[i] < 256 && value_lens[i] < 256;
			need += 4 + field_lens[i] + value_lens[i];
		}
		if (small && need <= OP_SMALL_BYTES)
			return op_map_small(out, name, name_len, fields, field_lens, values,
					    value_lens, count);
	}
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, op_write);
	size_t before = out->len;
	int rc = msgpack_pack_map(&pk, count + 1u);
	if (rc == 0)
		rc = op_str(&pk, "op", 2);
	if (rc == 0)
		rc = op_str(&pk, name, strlen(name));
	for (uint32_t i = 0; rc == 0 && i < count; i++) {
		rc = op_str(&pk, fields[i], strlen(fields[i]));
		if (rc == 0)
			rc = op_str(&pk, values[i], value_lens[i]);
	}
	if (rc != 0)
		out->len = before;
	return rc == 0 ? 0 : -1;
}

int vsrc_op_kv(vsr_buf *out, const char *name, const char *const *args, uint32_t nargs)
{
	static const struct {
		const char *name;
		uint32_t nargs;
		const char *fields[3];
	} kinds[] = {
		{ "put", 2, { "key", "value" } },
		{ "get", 1, { "key" } },
		{ "cas", 3, { "key", "from", "to" } },
		{ "delete", 1, { "key" } },
	};
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		if (strcmp(name, kinds[k].name) != 0)
			continue;
		if (nargs != kinds[k].nargs)
			return -1;
		size_t lens[3];
		for (uint32_t i = 0; i < nargs; i++)
			lens[i] = strlen(args[i]);
		return vsrc_op_map(out, name, kinds[k].fields, args, lens, nargs);
	}
	return -1;
}

int vsrc_op_put(vsr_buf *out, const void *key, size_t key_len,
		const void *value, size_t value_len)
{
	const char *f[2] = { "key", "value" };
	const char *v[2] = { key, value };
	size_t l[2] = { key_len, value_len };
	return vsrc_op_map(out, "put", f, v, l, 2);
}

int vsrc_op_get(vsr_buf *out, const void *key, size_t key_len)
{
	const char *f[1] = { "key" };
	const char *v[1] = { key };
	size_t l[1] = { key_len };
	return vsrc_op_map(out, "get", f, v, l, 1);
}
