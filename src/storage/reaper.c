/* reaper.c - files removed a slice at a time (reaper.h). */
#define _GNU_SOURCE
#include "reaper.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct reap_item {
	struct reap_item *next;
	char name[];
} reap_item;

struct vsr_reaper {
	int dirfd;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;        /* on CLOCK_MONOTONIC */
	reap_item *head, *tail;   /* under mu */
	bool busy;                /* the thread works on an item (under mu) */
	bool stop;                /* under mu */
	unsigned hurry;           /* flushes waiting: no pauses (under mu) */
};

/* Waits ms, or until stop: returns whether to stop. Called with mu held. */
static bool pause_or_stop(vsr_reaper *r, unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (long)ms * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	while (!r->stop && !r->hurry &&
	       pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
		;
	return r->stop;
}

/* Shrinks `name` a slice at a time, then unlinks it. Called with mu held;
 * returns with it held. */
static void reap(vsr_reaper *r, const char *name)
{
	int fd = openat(r->dirfd, name, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		off_t size = st.st_size;
		while (size > 0) {
			size = size > (off_t)VSR_REAP_SLICE ? size - (off_t)VSR_REAP_SLICE : 0;
			pthread_mutex_unlock(&r->mu);
			int rc = ftruncate(fd, size);
			pthread_mutex_lock(&r->mu);
			if (rc != 0 || (size > 0 && pause_or_stop(r, VSR_REAP_PAUSE_MS)))
				break;
		}
		if (r->stop && size > 0) { /* left for the next start */
			close(fd);
			return;
		}
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&r->mu);
	unlinkat(r->dirfd, name, 0);
	pthread_mutex_lock(&r->mu);
}

static void *reaper_main(void *arg)
{
	/* Named for top -H, perf and /proc/PID/task/TID/comm. */
	pthread_setname_np(pthread_self(), "vsr-reaper");
	vsr_reaper *r = arg;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (r->head == NULL && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop)
			break;
		reap_item *it = r->head;
		r->head = it->next;
		if (r->head == NULL)
			r->tail = NULL;
		r->busy = true;
		reap(r, it->name);
		r->busy = false;
		free(it);
		if (r->head == NULL)
			pthread_cond_broadcast(&r->cv); /* vsr_reaper_flush */
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

vsr_reaper *vsr_reaper_start(int dirfd)
{
	vsr_reaper *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->dirfd = dirfd;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&r->thread, NULL, reaper_main, r) != 0) {
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cv);
		free(r);
		return NULL;
	}
	return r;
}

int vsr_reaper_add(vsr_reaper *r, const char *name)
{
	size_t n = strlen(name) + 1;
	reap_item *it = malloc(sizeof *it + n);
	if (it == NULL)
		return -1;
	it->next = NULL;
	memcpy(it->name, name, n);
	pthread_mutex_lock(&r->mu);
	if (r->tail)
		r->tail->next = it;
	else
		r->head = it;
	r->tail = it;
	pthread_cond_broadcast(&r->cv); /* (a flush may wait on cv too) */
	pthread_mutex_unlock(&r->mu);
	return 0;
}

bool vsr_reaper_idle(vsr_reaper *r)
{
	pthread_mutex_lock(&r->mu);
	bool idle = r->head == NULL && !r->busy;
	pthread_mutex_unlock(&r->mu);
	return idle;
}

void vsr_reaper_flush(vsr_reaper *r)
{
	pthread_mutex_lock(&r->mu);
	r->hurry++;
	pthread_cond_broadcast(&r->cv);
	while ((r->head != NULL || r->busy) && !r->stop)
		pthread_cond_wait(&r->cv, &r->mu);
	r->hurry--;
	pthread_mutex_unlock(&r->mu);
}

void vsr_reaper_stop(vsr_reaper *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	while (r->head) {
		reap_item *it = r->head;
		r->head = it->next;
		free(it);
	}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}
