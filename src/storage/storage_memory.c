/* storage_memory.c - the memory backend of vsr_storage: asynchronous, keeps nothing across processes.
 *
 * Happy path: submit() records the persist's id and bookkeeping (it keeps no
 * entry bytes: nothing can ever be reloaded from memory), starts an idle
 * handle, and on the next loop iteration the idle callback reports every
 * persist submitted before it ran, in order. Completions submitted from
 * inside a completion callback wait for the following iteration, so a host
 * that reacts to a completion with another persist cannot starve the loop.
 *
 * load() always returns NULL: every start is unjoined (vsr.h), whether it is
 * the first or a restart; no marker file tells them apart, the protocol does.
 *
 * Failure modes: a full pending ring (a host bug, VSR_ETOOBIG); close while
 * completions are pending (they are dropped, as a crash would). */
#include "storage_impl.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

struct vsr_storage {
	storage_head tag;       /* VSR_STORAGE_MEMORY */
	vsr_storage_options opts;
	char *dir;
	uv_idle_t idle;         /* delivers completions on a later iteration */
	bool idle_active;
	bool closing;
	bool loaded;
	vsr_storage_close_cb close_cb;
	/* Ring of pending persist ids, in submission order. */
	uint64_t *pending;
	uint32_t head;
	uint32_t count;
	vsr_storage_stats stats;
	vsr_superblock superblock;
};

int storage_memory_open(const vsr_storage_options *opts, vsr_storage **out,
			char *err, size_t err_len)
{
	*out = NULL;
	vsr_storage *s = calloc(1, sizeof *s);
	if (s == NULL)
		return VSR_ENOMEM;
	s->tag.kind = VSR_STORAGE_MEMORY;
	s->opts = *opts;
	s->dir = strdup(opts->dir);
	s->pending = calloc(VSR_STORAGE_PENDING_MAX, sizeof *s->pending);
	if (s->dir == NULL || s->pending == NULL) {
		free(s->dir);
		free(s->pending);
		free(s);
		return VSR_ENOMEM;
	}
	s->opts.dir = s->dir;
	int rc = vsr_storage_mkdirs(s->dir, NULL, 0);
	if (rc != 0) {
		storage_errf(err, err_len, "storage: cannot create %s: %s", s->dir, strerror(rc));
		free(s->dir);
		free(s->pending);
		free(s);
		return VSR_EINVAL;
	}
	rc = uv_idle_init(opts->loop, &s->idle);
	assert(rc == 0); /* uv_idle_init cannot fail */
	s->idle.data = s;
	s->superblock.cluster = opts->cluster;
	*out = s;
	return VSR_OK;
}

int storage_memory_load(vsr_storage *s, const vsr_durable **out, char *err,
		     size_t err_len)
{
	(void)err;
	(void)err_len;
	assert(!s->loaded); /* once per open: the core is created once */
	s->loaded = true;
	/* Nothing survives a process: the replica starts unjoined, and the
	 * protocol decides whether it catches up with the cluster's history
	 * or, when every replica holds nothing, begins a new one. */
	*out = NULL;
	return VSR_OK;
}

static void storage_idle_cb(uv_idle_t *handle)
{
	vsr_storage *s = handle->data;
	/* Only what was pending when this iteration began: completions that
	 * the callbacks submit wait for the next one. */
	uint32_t n = s->count;
	for (uint32_t i = 0; i < n && !s->closing; i++) {
		uint64_t id = s->pending[s->head];
		s->head = (s->head + 1) % VSR_STORAGE_PENDING_MAX;
		s->count--;
		s->stats.pending = s->count;
		s->stats.persists++;
		s->opts.persisted_cb(s, id, VSR_OK);
	}
	if (s->count == 0 && s->idle_active && !s->closing) {
		uv_idle_stop(&s->idle);
		s->idle_active = false;
	}
}

int storage_memory_submit(vsr_storage *s, const vsr_persist *p)
{
	if (s->closing)
		return VSR_EINVAL;
	if (s->count >= VSR_STORAGE_PENDING_MAX)
		return VSR_ETOOBIG;
	/* Bookkeeping only: the memory backend has no medium to write to. */
	if (p->has_truncate)
		s->stats.truncations++;
	s->stats.entries += p->entry_count;
	for (uint32_t i = 0; i < p->entry_count; i++)
		s->stats.entry_bytes += p->entries[i].body_len;
	/* Checkpoints are the state machine's: count the ones a superblock names. */
	if (p->superblock.checkpoint_op != s->superblock.checkpoint_op) {
		s->stats.checkpoints++;
		s->stats.checkpoint_bytes += p->superblock.checkpoint_size;
	}
	s->superblock = p->superblock;

	uint32_t tail = (s->head + s->count) % VSR_STORAGE_PENDING_MAX;
	s->pending[tail] = p->id;
	s->count++;
	s->stats.pending = s->count;
	if (s->count > s->stats.pending_max)
		s->stats.pending_max = s->count;
	if (!s->idle_active) {
		int rc = uv_idle_start(&s->idle, storage_idle_cb);
		assert(rc == 0); /* fails only for a closing handle, excluded above */
		s->idle_active = true;
	}
	return VSR_OK;
}

static void storage_close_cb(uv_handle_t *handle)
{
	vsr_storage *s = handle->data;
	vsr_storage_close_cb cb = s->close_cb;
	free(s->pending);
	free(s->dir);
	/* The callback sees a storage whose data pointer is still readable. */
	if (cb != NULL)
		cb(s);
	free(s);
}

void storage_memory_close(vsr_storage *s, vsr_storage_close_cb cb)
{
	assert(!s->closing);
	s->closing = true;
	s->close_cb = cb;
	s->count = 0;
	uv_close((uv_handle_t *)&s->idle, storage_close_cb);
}

void *storage_memory_data(const vsr_storage *s)
{
	return s->opts.data;
}

const vsr_storage_stats *storage_memory_stats_get(const vsr_storage *s)
{
	return &s->stats;
}

const vsr_superblock *storage_memory_superblock(const vsr_storage *s)
{
	return &s->superblock;
}
