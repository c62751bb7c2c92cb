/* spare.c - the log's next segment made ahead of time (spare.h). */
#define _GNU_SOURCE
#include "spare.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPARE_NAME_MAX 64u

enum spare_state {
	SPARE_NONE,   /* nothing asked, or what was asked is dropped */
	SPARE_ASKED,  /* asked, the thread has not begun */
	SPARE_MAKING, /* the thread makes it */
	SPARE_READY,  /* durable, fd open */
	SPARE_FAILED, /* err, step */
};

struct vsr_spare {
	int dirfd;
	vsr_storage_io io;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Under mu: */
	enum spare_state state;
	bool busy;                /* the thread is in spare_make (maybe for a dropped one) */
	bool dropped;             /* what the thread is making is nobody's */
	bool stop;
	char name[SPARE_NAME_MAX];
	uint64_t cap;
	int fd;                   /* SPARE_READY */
	int err;                  /* SPARE_FAILED */
	const char *step;         /* SPARE_FAILED */
};

/* Creates `name` anew, preallocated to cap bytes, then makes its size and
 * its name durable. Returns the fd, or -1 with *step and errno set. */
static int spare_make(vsr_spare *s, const char *name, uint64_t cap, const char **step)
{
	/* O_TRUNC: a file left under this name (a torn group's segment a
	 * restart removed but a crash brought back, a spare from an earlier
	 * run) must not lend its records to the new segment. */
	int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		*step = "create";
		return -1;
	}
	if (s->io.fallocate(s->io.ctx, fd, 0, (off_t)cap) != 0) {
		*step = "preallocate";
		goto failed;
	}
	/* Both before it is handed over: the writer acknowledges entries in
	 * it after syncing only the file's data. */
	if (s->io.fdatasync(s->io.ctx, fd) != 0 || s->io.fdatasync(s->io.ctx, s->dirfd) != 0) {
		*step = "sync";
		goto failed;
	}
	return fd;
failed:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

static void *spare_main(void *arg)
{
	/* Named for top -H, perf and /proc/PID/task/TID/comm. */
	pthread_setname_np(pthread_self(), "vsr-spare");
	vsr_spare *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->stop && s->state != SPARE_ASKED)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		char name[SPARE_NAME_MAX];
		memcpy(name, s->name, sizeof name);
		uint64_t cap = s->cap;
		s->state = SPARE_MAKING;
		s->busy = true;
		s->dropped = false;
		pthread_mutex_unlock(&s->mu);

		const char *step = NULL;
		int fd = spare_make(s, name, cap, &step);
		int err = fd < 0 ? errno : 0;

		pthread_mutex_lock(&s->mu);
		s->busy = false;
		if (s->dropped) {
			/* Let go of meanwhile (state is no longer SPARE_MAKING). */
			if (fd >= 0) close(fd);
		} else if (fd >= 0) {
			s->state = SPARE_READY;
			s->fd = fd;
		} else {
			s->state = SPARE_FAILED;
			s->err = err != 0 ? err : EIO;
			s->step = step;
		}
		pthread_cond_broadcast(&s->cv); /* vsr_spare_take */
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

vsr_spare *vsr_spare_start(int dirfd, const vsr_storage_io *io)
{
	vsr_spare *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->dirfd = dirfd;
	s->io = *io;
	s->fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if (pthread_create(&s->thread, NULL, spare_main, s) != 0) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		free(s);
		return NULL;
	}
	return s;
}

/* Lets go of what is held, asked or being made. Called with mu held. */
static void spare_drop(vsr_spare *s)
{
	if (s->state == SPARE_READY)
		close(s->fd);
	if (s->state == SPARE_MAKING)
		s->dropped = true; /* the thread closes it when done */
	s->state = SPARE_NONE;
	s->fd = -1;
}

void vsr_spare_prepare(vsr_spare *s, const char *name, uint64_t cap)
{
	pthread_mutex_lock(&s->mu);
	spare_drop(s);
	snprintf(s->name, sizeof s->name, "%s", name);
	s->cap = cap;
	/* After a dropped one the thread is still making, if any. */
	s->state = SPARE_ASKED;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

vsr_spare_result vsr_spare_take(vsr_spare *s, const char *name, uint64_t cap)
{
	vsr_spare_result r = {.fd = -1};
	pthread_mutex_lock(&s->mu);
	bool mine = strcmp(s->name, name) == 0 && s->cap >= cap;
	/* Waits for the one asked, also before the thread began it: making it
	 * here instead would race with the thread for the same file. */
	while (mine && !s->stop && (s->state == SPARE_ASKED || s->state == SPARE_MAKING))
		pthread_cond_wait(&s->cv, &s->mu);
	if (mine && s->state == SPARE_READY) {
		r.fd = s->fd;
		s->fd = -1;
		s->state = SPARE_NONE;
	} else if (mine && s->state == SPARE_FAILED) {
		r.err = s->err;
		r.step = s->step;
		s->state = SPARE_NONE;
	} else {
		/* The caller makes `name` itself: once the thread touches no
		 * file, so that the two never meet. */
		spare_drop(s);
		while (s->busy)
			pthread_cond_wait(&s->cv, &s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}

bool vsr_spare_idle(vsr_spare *s)
{
	pthread_mutex_lock(&s->mu);
	bool idle = !s->busy && s->state != SPARE_ASKED;
	pthread_mutex_unlock(&s->mu);
	return idle;
}

void vsr_spare_stop(vsr_spare *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	if (s->state == SPARE_READY)
		close(s->fd);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
