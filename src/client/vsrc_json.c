/* vsrc_json.c - JSON (jansson) <-> msgpack (msgpack-c) conversion. */
#include "vsrc_json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

/* Bounds recursion on hostile input either way. */
#define JSON_DEPTH_MAX 64

static int json_write(void *data, const char *buf, size_t len)
{
	return vsr_buf_append(data, buf, len) == VSR_OK ? 0 : -1;
}

static int json_cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int jsonc_pack(msgpack_packer *pk, json_t *v, int depth, char *err, size_t err_len)
{
	if (depth > JSON_DEPTH_MAX) {
		snprintf(err, err_len, "nested deeper than %d levels", JSON_DEPTH_MAX);
		return -1;
	}
	switch (json_typeof(v)) {
	case JSON_NULL:
		return msgpack_pack_nil(pk);
	case JSON_TRUE:
		return msgpack_pack_true(pk);
	case JSON_FALSE:
		return msgpack_pack_false(pk);
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(v));
	case JSON_STRING: {
		size_t n = json_string_length(v);
		if (msgpack_pack_str(pk, n) != 0)
			return -1;
		return msgpack_pack_str_body(pk, json_string_value(v), n);
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		if (msgpack_pack_array(pk, n) != 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			if (jsonc_pack(pk, json_array_get(v, i), depth + 1, err, err_len) != 0)
				return -1;
		return 0;
	}
	case JSON_OBJECT: {
		size_t n = json_object_size(v);
		const char **keys = malloc((n ? n : 1) * sizeof(*keys));
		if (!keys) {
			snprintf(err, err_len, "out of memory");
			return -1;
		}
		size_t i = 0;
		const char *key;
		json_t *val;
		json_object_foreach(v, key, val)
			keys[i++] = key;
		qsort(keys, n, sizeof(*keys), json_cmp_keys);
		int rc = msgpack_pack_map(pk, n);
		for (i = 0; rc == 0 && i < n; i++) {
			size_t kl = strlen(keys[i]);
			rc = msgpack_pack_str(pk, kl);
			if (rc == 0)
				rc = msgpack_pack_str_body(pk, keys[i], kl);
			if (rc == 0)
				rc = jsonc_pack(pk, json_object_get(v, keys[i]), depth + 1, err,
					       err_len);
		}
		free(keys);
		return rc;
	}
	}
	snprintf(err, err_len, "unsupported JSON value");
	return -1;
}

int vsrc_json_to_msgpack(const char *json, vsr_buf *out, char *err, size_t err_len)
{
	json_error_t jerr;
	/* Any JSON value may be an op, not only objects and arrays. */
	json_t *root = json_loads(json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, err_len, "line %d, column %d: %s", jerr.line, jerr.column,
			 jerr.text);
		return -1;
	}
	size_t before = out->len;
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, json_write);
	err[0] = '\0';
	int rc = jsonc_pack(&pk, root, 0, err, err_len);
	json_decref(root);
	if (rc != 0) {
		out->len = before;
		if (!err[0])
			snprintf(err, err_len, "out of memory");
		return -1;
	}
	return 0;
}

static json_t *json_bytes(const char *p, size_t n)
{
	json_t *s = json_stringn(p, n); /* NULL when not valid UTF-8 */
	if (s)
		return s;
	static const char hex[] = "0123456789abcdef";
	char *h = malloc(2 * n + 1);
	if (!h)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		h[2 * i] = hex[(unsigned char)p[i] >> 4];
		h[2 * i + 1] = hex[(unsigned char)p[i] & 15];
	}
	h[2 * n] = '\0';
	json_t *o = json_pack("{s:s}", "$bytes", h);
	free(h);
	return o;
}

static json_t *json_from(const msgpack_object *o, int depth, char *err, size_t err_len);

/* A JSON object key for a msgpack map key. Returns malloc'd text. */
static char *json_key(const msgpack_object *k, char *err, size_t err_len)
{
	if (k->type == MSGPACK_OBJECT_STR) {
		char *s = malloc(k->via.str.size + 1);
		if (s) {
			memcpy(s, k->via.str.ptr, k->via.str.size);
			s[k->via.str.size] = '\0';
		}
		return s;
	}
	json_t *j = json_from(k, JSON_DEPTH_MAX, err, err_len);
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return s;
}

static json_t *json_from(const msgpack_object *o, int depth, char *err, size_t err_len)
{
	if (depth > JSON_DEPTH_MAX) {
		snprintf(err, err_len, "nested deeper than %d levels", JSON_DEPTH_MAX);
		return NULL;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return json_real((double)o->via.u64);
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR:
		return json_bytes(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return json_bytes(o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; a && i < o->via.array.size; i++) {
			json_t *e = json_from(&o->via.array.ptr[i], depth + 1, err, err_len);
			if (!e || json_array_append_new(a, e) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; m && i < o->via.map.size; i++) {
			char *k = json_key(&o->via.map.ptr[i].key, err, err_len);
			json_t *v = k ? json_from(&o->via.map.ptr[i].val, depth + 1, err, err_len)
				      : NULL;
			/* json_object_setn_new accepts any bytes as a key. */
			int rc = (k && v) ? json_object_setn_new(m, k, strlen(k), v) : -1;
			free(k);
			if (rc != 0) {
				if (!err[0])
					snprintf(err, err_len, "map key is not valid UTF-8");
				json_decref(m);
				return NULL;
			}
		}
		return m;
	}
	default:
		snprintf(err, err_len, "msgpack extension types have no JSON form");
		return NULL;
	}
}

char *vsrc_msgpack_to_json(const uint8_t *data, size_t len, char *err, size_t err_len)
{
	msgpack_unpacked up;
	size_t off = 0;
	err[0] = '\0';
	msgpack_unpacked_init(&up);
	int rc = msgpack_unpack_next(&up, (const char *)data, len, &off);
	if (rc != MSGPACK_UNPACK_SUCCESS) {
		msgpack_unpacked_destroy(&up);
		snprintf(err, err_len, "reply is not one msgpack value (%s)",
			 rc == MSGPACK_UNPACK_CONTINUE ? "truncated"
			 : rc == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory" : "malformed");
		return NULL;
	}
	if (off != len) {
		msgpack_unpacked_destroy(&up);
		snprintf(err, err_len, "reply has %zu bytes after its msgpack value", len - off);
		return NULL;
	}
	json_t *j = json_from(&up.data, 0, err, err_len);
	msgpack_unpacked_destroy(&up);
	if (!j) {
		if (!err[0])
			snprintf(err, err_len, "out of memory");
		return NULL;
	}
	/* Sorted keys: the same reply always prints the same way. */
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	json_decref(j);
	if (!s)
		snprintf(err, err_len, "out of memory");
	return s;
}

int vsrc_refusal_code(const uint8_t *p, size_t len, const char **text, size_t *text_len)
{
	size_t i = 0, n = len;
	if (len > 0 && (p[0] & 0xe0) == 0xa0) {
		i = 1;
		n = p[0] & 0x1fu;
	} else if (len > 1 && p[0] == 0xd9) {
		i = 2;
		n = p[1];
	} else if (len > 2 && p[0] == 0xda) {
		i = 3;
		n = (size_t)p[1] << 8 | p[2];
	} else if (len > 4 && p[0] == 0xdb) {
		i = 5;
		n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
	}
	if (n > len - i)
		n = len - i;
	if (text != NULL)
		*text = (const char *)p + i;
	if (text_len != NULL)
		*text_len = n;
	int code = -1;
	for (size_t k = i; k < i + n && p[k] >= '0' && p[k] <= '9'; k++) {
		if (code >= 100000)
			return -1; /* no code is that long */
		code = (code < 0 ? 0 : code * 10) + (p[k] - '0');
	}
	return code;
}
