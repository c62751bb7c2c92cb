/* vsrc_op.h - the one place where client programs encode kv operations.
 *
 * State machines take one msgpack value per operation (docs/statemachines.md).
 * The kv state machine (statemachines/kv.lua) takes maps whose `op` field
 * names the operation:
 *   {op = "put", key = K, value = V}      -> {version = N}
 *   {op = "get", key = K}                 -> {value = V, version = N}
 *   {op = "cas", key = K, from = A, to = B} -> {version = N}
 *   {op = "delete", key = K}              -> {version = N}
 * Programs build them here, so a change of that shape is a change of this
 * file only. Generic calls go through vsrc_json.h instead. */
#ifndef VSRC_OP_H
#define VSRC_OP_H

#include <stddef.h>
#include <stdint.h>

#include "vsr.h"

/* Appends the msgpack map {op = name, fields[i] = values[i]...} (all byte
 * strings) to `out`; fields are written in the order given. Returns 0 or -1
 * (out of memory; `out` is then as before). */
int vsrc_op_map(vsr_buf *out, const char *name, const char *const *fields,
		const char *const *values, const size_t *value_lens, uint32_t count);

/* The kv command `name` with its positional arguments, as vsrctl takes
 * them: put KEY VALUE, get KEY, cas KEY FROM TO, delete KEY. Returns 0, or
 * -1 when name is not a kv command or the argument count is wrong. */
int vsrc_op_kv(vsr_buf *out, const char *name, const char *const *args, uint32_t nargs);

/* {op = "put", key = key, value = value} with byte strings. */
int vsrc_op_put(vsr_buf *out, const void *key, size_t key_len,
		const void *value, size_t value_len);
/* {op = "get", key = key} */
int vsrc_op_get(vsr_buf *out, const void *key, size_t key_len);

#endif /* VSRC_OP_H */
