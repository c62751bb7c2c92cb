/* vsrc_op.h - the one place where client programs encode operations and read replies.
 *
 * State machines take one msgpack value per operation (docs/statemachines.md).
 * The kv state machine's operations are arrays whose first element names the
 * operation: ["put", key, value], ["get", key], ["cas", key, from, to],
 * ["delete", key]. Programs build them here, so a change of that shape is a
 * change of this file only. Generic calls go through vsrc_json.h instead. */
#ifndef VSRC_OP_H
#define VSRC_OP_H

#include <stddef.h>
#include <stdint.h>

#include "vsr.h"

/* Appends a msgpack array of `count` strings (name first) to `out`.
 * Returns 0 or -1 (out of memory). */
int vsrc_op_strings(vsr_buf *out, const char *const *strings,
		    const size_t *lengths, uint32_t count);

/* ["put", key, value] with byte strings. */
int vsrc_op_put(vsr_buf *out, const void *key, size_t key_len,
		const void *value, size_t value_len);
/* ["get", key] */
int vsrc_op_get(vsr_buf *out, const void *key, size_t key_len);

#endif /* VSRC_OP_H */
