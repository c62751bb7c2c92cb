/* sim_sm.c - the simulator's deterministic test state machine.
 *
 * State: a hash chain over every applied operation (so any difference in
 * order, content, timestamp or per-op seed shows in the digest), a 16-key
 * map of u64 values (SET, ADD, GET), and per session the highest request
 * number applied. The last part is the at-most-once probe: clients number
 * their requests 1, 2, 3 with one in flight, so a request number that does
 * not go up within a session means the core applied a request twice. The
 * count is part of the replicated state and is also reported at once. */
#include <string.h>

#include "sim.h"

void sim_op_encode(uint8_t out[SIM_OP_BYTES], uint8_t kind, uint8_t key,
		   uint64_t value)
{
	out[0] = kind;
	out[1] = key;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(value >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static sim_sm_session *sm_session(sim_sm *sm, uint64_t session)
{
	for (uint32_t i = 0; i < sm->session_count; i++)
		if (sm->sessions[i].session == session)
			return &sm->sessions[i];
	if (sm->session_count == SIM_SM_SESSIONS_MAX) {
		/* Deterministic: forget the lowest session id (the oldest, since
		 * the core hands out increasing ids); its clients are long gone. */
		uint32_t low = 0;
		for (uint32_t i = 1; i < sm->session_count; i++)
			if (sm->sessions[i].session < sm->sessions[low].session)
				low = i;
		sm->sessions[low] = sm->sessions[--sm->session_count];
	}
	sim_sm_session *s = &sm->sessions[sm->session_count++];
	s->session = session;
	s->request = 0;
	return s;
}

int sim_sm_query(const sim_sm *sm, const uint8_t *op, size_t op_len, vsr_buf *reply)
{
	if (op_len != SIM_OP_BYTES || op[0] != SIM_OP_GET || op[1] >= SIM_SM_KEYS) {
		static const char msg[] = "bad test query";
		if (vsr_buf_append(reply, msg, sizeof(msg) - 1) != VSR_OK)
			return VSR_ENOMEM;
		return VSR_REPLY_ERROR;
	}
	uint8_t out[16];
	put_u64(out, sm->kv[op[1]]);
	put_u64(out + 8, sm->chain);
	if (vsr_buf_append(reply, out, sizeof(out)) != VSR_OK)
		return VSR_ENOMEM;
	return VSR_REPLY_OK;
}

static int sm_apply(void *ctx, const vsr_apply_ctx *a, const uint8_t *op,
		    size_t op_len, vsr_buf *reply)
{
	sim_sm *sm = ctx;
	if (op_len != SIM_OP_BYTES || (op[0] >= SIM_OP_KINDS && op[0] != SIM_OP_BIG) ||
	    op[1] >= SIM_SM_KEYS) {
		static const char msg[] = "bad test operation";
		if (vsr_buf_append(reply, msg, sizeof(msg) - 1) != VSR_OK)
			return VSR_ENOMEM;
		return VSR_REPLY_ERROR;
	}
	if (a->session != 0) {
		sim_sm_session *s = sm_session(sm, a->session);
		if (a->request <= s->request) {
			sm->duplicates++;
			if (sm->sim)
				sim_check_duplicate_apply(sm->sim, sm->replica,
							  a->op, a->session,
							  a->request);
		} else {
			s->request = a->request;
		}
	}
	uint64_t value = get_u64(op + 2);
	uint64_t *slot = &sm->kv[op[1]];
	switch (op[0]) {
	case SIM_OP_SET: *slot = value; break;
	case SIM_OP_ADD: *slot += value; break;
	default: break;
	}
	uint64_t h = sim_hash_u64(sm->chain, a->op);
	h = sim_hash_u64(h, a->timestamp);
	h = sim_hash_u64(h, a->session);
	h = sim_hash_u64(h, a->request);
	h = sim_hash_u64(h, a->seed);
	sm->chain = sim_hash_bytes(h, op, op_len);
	sm->applied++;
	/* --plant-divergence: a nondeterministic state machine, in a part of
	 * the state the reply does not show. */
	if (sm->sim && sim_plant_strikes(sm->sim, sm->replica, a->op))
		sm->applied += 1000;
	uint8_t out[16];
	put_u64(out, *slot);
	put_u64(out + 8, sm->chain);
	if (vsr_buf_append(reply, out, sizeof(out)) != VSR_OK)
		return VSR_ENOMEM;
	if (op[0] == SIM_OP_BIG) {
		/* A reply of `value` bytes, the same on every replica. */
		static const uint8_t fill[4096];
		for (uint64_t left = value > 16 ? value - 16 : 0; left;) {
			size_t n = left < sizeof(fill) ? (size_t)left : sizeof(fill);
			if (vsr_buf_append(reply, fill, n) != VSR_OK)
				return VSR_ENOMEM;
			left -= n;
		}
	}
	return VSR_REPLY_OK;
}

/* Snapshot layout (little endian): chain, applied, duplicates, kv[16],
 * session_count, then (session, request) pairs. */
static int sm_snapshot(void *ctx, vsr_buf *out)
{
	sim_sm *sm = ctx;
	uint8_t w[8];
	uint64_t head[3] = {sm->chain, sm->applied, sm->duplicates};
	for (int i = 0; i < 3; i++) {
		put_u64(w, head[i]);
		if (vsr_buf_append(out, w, 8) != VSR_OK)
			return VSR_ENOMEM;
	}
	for (uint32_t i = 0; i < SIM_SM_KEYS; i++) {
		put_u64(w, sm->kv[i]);
		if (vsr_buf_append(out, w, 8) != VSR_OK)
			return VSR_ENOMEM;
	}
	put_u64(w, sm->session_count);
	if (vsr_buf_append(out, w, 8) != VSR_OK)
		return VSR_ENOMEM;
	for (uint32_t i = 0; i < sm->session_count; i++) {
		put_u64(w, sm->sessions[i].session);
		if (vsr_buf_append(out, w, 8) != VSR_OK)
			return VSR_ENOMEM;
		put_u64(w, sm->sessions[i].request);
		if (vsr_buf_append(out, w, 8) != VSR_OK)
			return VSR_ENOMEM;
	}
	/* A large state (--large-state): padding derived from the chain, so
	 * its transfer takes many chunks and a wrong byte still shows. */
	uint32_t pad = sm->sim ? sim_state_pad(sm->sim) : 0;
	for (uint32_t i = 0; i < pad; i += 8) {
		put_u64(w, sim_hash_u64(sm->chain, i));
		if (vsr_buf_append(out, w, pad - i < 8 ? pad - i : 8) != VSR_OK)
			return VSR_ENOMEM;
	}
	return VSR_OK;
}

static int sm_restore(void *ctx, const uint8_t *data, size_t len)
{
	sim_sm *sm = ctx;
	size_t fixed = 8 * (3 + SIM_SM_KEYS + 1);
	size_t pad = sm->sim ? sim_state_pad(sm->sim) : 0;
	if (len < fixed + pad)
		return VSR_ECORRUPT;
	/* A restore that fails (--restore-fail-ppm), before it changes
	 * anything: whatever the core did around it must be undone. */
	if (sm->started && sm->sim && sim_restore_fails(sm->sim, sm->replica))
		return VSR_ESM;
	len -= pad;
	const uint8_t *p = data;
	uint64_t n = get_u64(data + fixed - 8);
	if (n > SIM_SM_SESSIONS_MAX || len != fixed + n * 16)
		return VSR_ECORRUPT; /* checked first: a failed restore changes nothing */
	sm->chain = get_u64(p);
	sm->applied = get_u64(p + 8);
	sm->duplicates = get_u64(p + 16);
	p += 24;
	for (uint32_t i = 0; i < SIM_SM_KEYS; i++, p += 8)
		sm->kv[i] = get_u64(p);
	p += 8;
	sm->session_count = (uint32_t)n;
	for (uint32_t i = 0; i < n; i++, p += 16) {
		sm->sessions[i].session = get_u64(p);
		sm->sessions[i].request = get_u64(p + 8);
	}
	return VSR_OK;
}

static uint64_t sm_digest(void *ctx)
{
	sim_sm *sm = ctx;
	uint64_t h = sim_hash_u64(0x5157, sm->chain);
	h = sim_hash_u64(h, sm->applied);
	h = sim_hash_u64(h, sm->duplicates);
	for (uint32_t i = 0; i < SIM_SM_KEYS; i++)
		h = sim_hash_u64(h, sm->kv[i]);
	/* Sessions as a set: order in the array depends on eviction swaps,
	 * which are themselves deterministic, but a sum keeps it order-free. */
	uint64_t set = 0;
	for (uint32_t i = 0; i < sm->session_count; i++)
		set += sim_hash_u64(sm->sessions[i].session,
				    sm->sessions[i].request);
	return sim_hash_u64(h, set);
}

void sim_sm_init(sim_sm *sm, struct sim *sim, uint8_t replica)
{
	memset(sm, 0, sizeof(*sm));
	sm->sim = sim;
	sm->replica = replica;
}

void sim_sm_iface(sim_sm *sm, vsr_snapckpt *ck, vsr_state_machine *out)
{
	vsr_state_machine inner = {.ctx = sm, .apply = sm_apply, .snapshot = sm_snapshot,
				   .restore = sm_restore, .digest = sm_digest};
	vsr_snapckpt_rebind(ck, &inner);
	ck->restore_atomic = true; /* sm_restore checks everything before it writes */
	vsr_snapckpt_machine(ck, out);
}
