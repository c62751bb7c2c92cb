/* vsrc_json.h - JSON <-> msgpack conversion for generic state-machine calls (vsrctl call).
 *
 * JSON to msgpack: null, true/false, integers (int64), reals (float64),
 * strings (msgpack str), arrays, objects (maps with string keys, written in
 * key order so equal JSON gives equal bytes).
 * msgpack to JSON: the reverse, object keys sorted; map keys that are not strings are written as
 * their JSON text ("1", "true"); str or bin values that are not valid UTF-8
 * become {"$bytes": "<hex>"}; unsigned integers above INT64_MAX become reals;
 * extension types are refused. */
#ifndef VSRC_JSON_H
#define VSRC_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "vsr.h"

/* Parses `json` (NUL-terminated) and appends its msgpack encoding to `out`.
 * Returns 0, or -1 with "line L, column C: ..." in err. */
int vsrc_json_to_msgpack(const char *json, vsr_buf *out, char *err, size_t err_len);

/* Converts exactly one msgpack value to compact JSON text (malloc'd, free()
 * it). Returns NULL with a message in err on malformed input. */
char *vsrc_msgpack_to_json(const uint8_t *data, size_t len, char *err, size_t err_len);

/* A state machine's refusal (vsr.fail(code, text): an ERROR reply whose
 * body is "<code>: <text>"), as a msgpack string or as plain bytes. Returns
 * the leading decimal code, or -1 when the text does not begin with one;
 * *text and *text_len (may be NULL) receive the text without the msgpack
 * header, never beyond `len`. */
int vsrc_refusal_code(const uint8_t *body, size_t len, const char **text, size_t *text_len);

#endif /* VSRC_JSON_H */
