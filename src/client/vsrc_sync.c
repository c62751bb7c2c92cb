/* vsrc_sync.c - a blocking client: one session on a private libuv loop. */
#include "vsrc_client.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vsrc_sync {
	uv_loop_t loop;
	vsrc_client *client;
	bool done;
	vsrc_sync_result result;
};

static void sync_call_cb(vsrc_client *c, const vsrc_result *r, void *arg)
{
	vsrc_sync *s = arg;
	(void)c;
	vsrc_sync_result *out = &s->result;
	out->outcome = r->outcome;
	out->status = r->status;
	snprintf(out->reason, sizeof(out->reason), "%s", r->reason ? r->reason : "");
	free(out->reply);
	out->reply = NULL;
	out->reply_len = 0;
	if (r->reply_len) {
		out->reply = malloc(r->reply_len);
		if (out->reply) {
			memcpy(out->reply, r->reply, r->reply_len);
			out->reply_len = r->reply_len;
		} else if (r->outcome == VSRC_DONE) {
			/* The answer is lost here, not in the cluster: say so. */
			snprintf(out->reason, sizeof(out->reason),
				 "done, but the reply could not be kept: out of memory");
		}
	}
	out->session = r->session;
	out->request = r->request;
	out->op = r->op;
	out->read_mode = r->read_mode;
	s->done = true;
}

int vsrc_sync_open(const vsrc_options *o, vsrc_sync **out)
{
	vsrc_sync *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	if (uv_loop_init(&s->loop) != 0) {
		free(s);
		return -1;
	}
	if (vsrc_client_create(&s->loop, o, &s->client) != 0) {
		uv_loop_close(&s->loop);
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

static int sync_run(vsrc_sync *s, bool query, uint8_t mode, const uint8_t *op, size_t op_len,
		    const vsrc_sync_result **out);

int vsrc_sync_call(vsrc_sync *s, const uint8_t *op, size_t op_len,
		   const vsrc_sync_result **out)
{
	return sync_run(s, false, 0, op, op_len, out);
}

int vsrc_sync_query(vsrc_sync *s, uint8_t mode, const uint8_t *op, size_t op_len,
		    const vsrc_sync_result **out)
{
	return sync_run(s, true, mode, op, op_len, out);
}

static int sync_run(vsrc_sync *s, bool query, uint8_t mode, const uint8_t *op, size_t op_len,
		    const vsrc_sync_result **out)
{
	s->done = false;
	int rc = query ? vsrc_client_query(s->client, mode, op, op_len, sync_call_cb, s)
		       : vsrc_client_call(s->client, op, op_len, sync_call_cb, s);
	if (rc != 0) {
		s->result.outcome = VSRC_FAILED;
		s->result.status = -1;
		snprintf(s->result.reason, sizeof(s->result.reason),
			 "failed: the operation is too large or the client is busy");
		*out = &s->result;
		return VSRC_FAILED;
	}
	/* The session's timers bound the call (call_ms), so this returns. */
	while (!s->done)
		uv_run(&s->loop, UV_RUN_ONCE);
	*out = &s->result;
	return s->result.outcome;
}

uint64_t vsrc_sync_session(const vsrc_sync *s)
{
	return vsrc_client_session(s->client);
}

void vsrc_sync_set_timing(vsrc_sync *s, const vsrc_timing *t)
{
	vsrc_client_set_timing(s->client, t);
}

void vsrc_sync_close(vsrc_sync *s)
{
	vsrc_client_close(s->client, NULL, NULL);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&s->loop);
	assert(rc == 0 && "a handle outlived the client");
	(void)rc;
	free(s->result.reply);
	free(s);
}
