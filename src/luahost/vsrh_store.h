/* vsrh_store.h - the host's ordered key-value store (vsr.store) inside one Lua state.
 *
 * Committed entries live in a Lua table (key -> msgpack-encoded value);
 * writes of the running operation go to a second table (key -> encoded
 * value, or a delete marker) that the host commits when apply returns and
 * drops when it fails. get/has/put/delete are C functions, so the hot path
 * runs no Lua instructions of the host's own; scan and pairs are Lua on top
 * of them. The digest is a sum of per-entry hashes: independent of the
 * order entries were written, O(1) to keep up to date. Every function here
 * may raise Lua errors (allocation): call them in protected mode. */
#ifndef VSRH_STORE_H
#define VSRH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "vsr.h"

/* Store modes, set by the host around each call into the script. */
enum vsrh_store_mode {
	VSRH_STORE_CLOSED = 0, /* load time, snapshot hooks, policy: read-only */
	VSRH_STORE_APPLY = 1,  /* writes buffered, committed by the host */
	VSRH_STORE_QUERY = 2,  /* read-only */
	VSRH_STORE_DRY = 3,    /* apply run as a query: writes buffered, dropped */
};

typedef struct vsrh_store {
	int ref_data;     /* committed entries */
	int ref_writes;   /* buffered writes */
	int ref_sorted;   /* committed keys in byte order, or LUA_NOREF */
	uint32_t nwrites; /* keys in the buffer */
	int64_t count;    /* committed keys */
	uint64_t digest;  /* sum of entry hashes */
	int mode;         /* enum vsrh_store_mode */
} vsrh_store;

/* Creates the store in L and pushes the table of functions scripts see. */
void vsrh_store_open(lua_State *L, vsrh_store *s);
void vsrh_store_commit(lua_State *L, vsrh_store *s);
void vsrh_store_abort(lua_State *L, vsrh_store *s);

/* Appends the committed entries as a msgpack map in key byte order. */
int vsrh_store_write(lua_State *L, vsrh_store *s, vsr_buf *out);
/* Reads such a map at *pos and makes it the committed state. Returns 0, or
 * -1 with err filled and the store unchanged. */
int vsrh_store_read(lua_State *L, vsrh_store *s, const uint8_t *d, size_t len, size_t *pos,
		    char *err, size_t err_len);

#endif /* VSRH_STORE_H */
