/* test_json.c - JSON <-> msgpack conversion for generic calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsrc_json.h"
#include "vsrc_op.h"
#include "check.h"

/* JSON -> msgpack -> JSON gives `want`. */
static void roundtrip(const char *in, const char *want)
{
	vsr_buf b = { 0 };
	char err[256];
	CHECK(vsrc_json_to_msgpack(in, &b, err, sizeof(err)) == 0);
	char *out = vsrc_msgpack_to_json(b.data, b.len, err, sizeof(err));
	CHECK(out != NULL);
	if (out && strcmp(out, want) != 0) {
		fprintf(stderr, "roundtrip %s: got %s, want %s\n", in, out, want);
		failures++;
	}
	free(out);
	vsr_buf_free(&b);
}

/* Refusals: "<code>: text", as msgpack str of each width or plain bytes. */
static void refusals(void)
{
	const char *t;
	size_t n;
	CHECK(vsrc_refusal_code((const uint8_t *)"\xb2" "20: key not found", 19, &t, &n) == 20);
	CHECK(n == 18 && memcmp(t, "20: key not found", 17) == 0);
	CHECK(vsrc_refusal_code((const uint8_t *)"\xd9\x03" "22:", 5, &t, &n) == 22 && n == 3);
	CHECK(vsrc_refusal_code((const uint8_t *)"\xda\x00\x02" "12", 5, NULL, NULL) == 12);
	CHECK(vsrc_refusal_code((const uint8_t *)"\xdb\x00\x00\x00\x01" "7", 6, NULL, NULL) == 7);
	CHECK(vsrc_refusal_code((const uint8_t *)"11: busy", 8, &t, &n) == 11 && n == 8);
	CHECK(vsrc_refusal_code((const uint8_t *)"no code", 7, NULL, NULL) == -1);
	CHECK(vsrc_refusal_code((const uint8_t *)"", 0, &t, &n) == -1 && n == 0);
	/* A header that claims more than the body holds reads only the body. */
	CHECK(vsrc_refusal_code((const uint8_t *)"\xbf" "42", 3, &t, &n) == 42 && n == 2);
	/* The code stops at the string's own end, not at the body's. */
	CHECK(vsrc_refusal_code((const uint8_t *)"\xa1" "3" "9", 3, NULL, NULL) == 3);
	CHECK(vsrc_refusal_code((const uint8_t *)"1234567890", 10, NULL, NULL) == -1);
}

int main(void)
{
	refusals();
	roundtrip("[\"put\",\"k\",\"v\"]", "[\"put\",\"k\",\"v\"]");
	roundtrip("{\"op\":\"put\",\"key\":\"k\",\"value\":1.5}",
		  "{\"key\":\"k\",\"op\":\"put\",\"value\":1.5}");
	roundtrip("null", "null");
	roundtrip("-9223372036854775808", "-9223372036854775808");
	roundtrip("[true,false,{},[],\"\\u00e9\"]", "[true,false,{},[],\"\xc3\xa9\"]");

	/* Object keys are sorted: equal JSON, equal bytes. */
	vsr_buf a = { 0 }, b = { 0 };
	char err[256];
	CHECK(vsrc_json_to_msgpack("{\"b\":1,\"a\":2}", &a, err, sizeof(err)) == 0);
	CHECK(vsrc_json_to_msgpack("{\"a\":2,\"b\":1}", &b, err, sizeof(err)) == 0);
	CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	vsr_buf_free(&a);
	vsr_buf_free(&b);

	/* Errors name the place. */
	CHECK(vsrc_json_to_msgpack("[1,", &a, err, sizeof(err)) == -1);
	CHECK(strstr(err, "line 1") != NULL);
	CHECK(a.len == 0);

	/* The kv op builders match the generic JSON encoding. */
	CHECK(vsrc_op_put(&a, "k", 1, "v", 1) == 0);
	CHECK(vsrc_json_to_msgpack("{\"op\":\"put\",\"key\":\"k\",\"value\":\"v\"}", &b, err,
				   sizeof(err)) == 0);
	char *ja = vsrc_msgpack_to_json(a.data, a.len, err, sizeof(err));
	char *jb = vsrc_msgpack_to_json(b.data, b.len, err, sizeof(err));
	CHECK(ja && jb && strcmp(ja, jb) == 0);
	free(ja);
	free(jb);
	vsr_buf_free(&a);
	vsr_buf_free(&b);
	const char *args[3] = { "k", "1", "2" };
	CHECK(vsrc_op_kv(&a, "cas", args, 3) == 0);
	ja = vsrc_msgpack_to_json(a.data, a.len, err, sizeof(err));
	CHECK(ja && strcmp(ja, "{\"from\":\"1\",\"key\":\"k\",\"op\":\"cas\",\"to\":\"2\"}") == 0);
	free(ja);
	vsr_buf_free(&a);
	CHECK(vsrc_op_kv(&a, "cas", args, 2) == -1);
	CHECK(vsrc_op_kv(&a, "frob", args, 1) == -1);
	CHECK(a.len == 0);

	/* msgpack that is not UTF-8, non-string keys, trailing bytes. */
	const uint8_t bin[] = { 0xc4, 0x02, 0xff, 0x00 };
	char *j = vsrc_msgpack_to_json(bin, sizeof(bin), err, sizeof(err));
	CHECK(j && strcmp(j, "{\"$bytes\":\"ff00\"}") == 0);
	free(j);
	const uint8_t map[] = { 0x81, 0x01, 0xc3 }; /* {1: true} */
	j = vsrc_msgpack_to_json(map, sizeof(map), err, sizeof(err));
	CHECK(j && strcmp(j, "{\"1\":true}") == 0);
	free(j);
	const uint8_t two[] = { 0x01, 0x02 };
	CHECK(vsrc_msgpack_to_json(two, sizeof(two), err, sizeof(err)) == NULL);
	CHECK(strstr(err, "after") != NULL);
	const uint8_t cut[] = { 0x92, 0x01 };
	CHECK(vsrc_msgpack_to_json(cut, sizeof(cut), err, sizeof(err)) == NULL);

	if (failures) {
		fprintf(stderr, "test_json: %d checks failed\n", failures);
		return 1;
	}
	printf("test_json: all checks passed\n");
	return 0;
}
