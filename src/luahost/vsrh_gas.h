/* vsrh_gas.h - the sandbox's one deterministic cost model ("gas").
 *
 * A call into a script is given a budget of units. The Lua VM spends one
 * unit per instruction (the count hook); every C function a script can
 * reach spends units in proportion to the bytes and elements it will touch
 * or produce, charged BEFORE it does the work, so that a call whose cost is
 * known up front (string.rep("", math.maxinteger), table.move over 2^63
 * slots) is refused without running. The units depend only on the
 * arguments and the logical state (never on the heap, the string hash
 * seed or the time), so an operation costs the same on every replica,
 * replayed or restored.
 *
 * Rates: one unit per VM instruction, per element visited (table slot, key,
 * stack value), per pattern-matching step, and per VSRH_GAS_BYTES bytes
 * copied, compared, hashed or produced. A new string longer than
 * VSRH_STRING_BYTES_MAX is refused outright: VM instructions such as `==`
 * or `<` on two long strings do work the hook cannot see, and the cap
 * bounds it per instruction. */
#ifndef VSRH_GAS_H
#define VSRH_GAS_H

#include <stdint.h>

#include <lua.h>

#include "vsrh_sandbox.h"

#define VSRH_GAS_BYTES 16u
#define VSRH_STRING_BYTES_MAX ((size_t)1 << 20)

/* Units for touching n bytes (rounded up, so 0 bytes cost 0). */
static inline uint64_t vsrh_gas_bytes(uint64_t n)
{
	return n / VSRH_GAS_BYTES + (n % VSRH_GAS_BYTES != 0);
}

/* Saturating a*b and a+b, for costs computed from script arguments. */
static inline uint64_t vsrh_gas_mul(uint64_t a, uint64_t b)
{
	if (a != 0 && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

static inline uint64_t vsrh_gas_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Spends `units` of the running call's budget, or marks the budget spent
 * and returns -1 (without raising: for the allocator and the encoders). A
 * box with no armed budget (host work between calls) spends nothing. */
int vsrh_gas_try(vsrh_box *b, uint64_t units);

/* vsrh_gas_try for code that may run in a state that is not a box's
 * (the codec serves the test kit's own Lua state too): spends nothing
 * there. */
int vsrh_gas_try_state(lua_State *L, uint64_t units);

/* The box whose state L is, or NULL (a plain Lua state): for code that
 * charges many times per call (the codec), looked up once. */
vsrh_box *vsrh_gas_box(lua_State *L);

/* vsrh_gas_try on a box from vsrh_gas_box (NULL: spends nothing). */
static inline int vsrh_gas_try_box(vsrh_box *b, uint64_t units)
{
	return b ? vsrh_gas_try(b, units) : 0;
}

/* Spends `units`, or raises the budget error (which pcall cannot catch). */
void vsrh_gas(lua_State *L, uint64_t units);

/* Raises the budget error for a box whose budget vsrh_gas_try spent. */
int vsrh_gas_raise(lua_State *L);

/* Arms a budget of `units` for host-driven work (an apply and its reply's
 * encoding, a snapshot, a restore); vsrh_box_call then runs under it
 * instead of the per-call default. Disarm when the work is done. */
void vsrh_box_arm(vsrh_box *b, uint64_t units);
void vsrh_box_disarm(vsrh_box *b);

/* Units left in the armed budget (UINT64_MAX when none is armed). */
uint64_t vsrh_gas_left(const vsrh_box *b);

#endif /* VSRH_GAS_H */
