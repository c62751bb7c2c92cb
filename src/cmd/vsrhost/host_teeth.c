/* host_teeth.c - test-only hooks of vsrhost-teeth (host_teeth.h).
 *
 * The reaper's hold: proctest open-reclaim-teeth starts a replica on a full
 * disk whose free space a leftover `trash-*` file holds, with the store's
 * disk-full hook wired after the open (VSRH_TEETH_LATE_DISK_FULL), and must
 * see the open reserve nothing. The reaper frees that file 4 MiB per 10 ms
 * from the moment storage loads; when the store opened later than about
 * 280 ms after that (a loaded CI machine), it found room without any hook
 * and the teeth saw nothing (CI, seed 714570167). Held, the reaper frees
 * nothing in the background until the store has opened, so the open meets
 * the full disk every time. vsrhost links none of this. */
#include "host_teeth.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct vsr_reaper vsr_reaper;

int __real_vsr_reaper_add(vsr_reaper *r, const char *name);
bool __real_vsr_reaper_idle(vsr_reaper *r);
void __real_vsr_reaper_flush(vsr_reaper *r);
int __wrap_vsr_reaper_add(vsr_reaper *r, const char *name);
bool __wrap_vsr_reaper_idle(vsr_reaper *r);
void __wrap_vsr_reaper_flush(vsr_reaper *r);

typedef struct held_file {
	struct held_file *next;
	vsr_reaper *r;
	char name[];
} held_file;

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static bool holding;
static held_file *held;

/* Every held file handed to its reaper, in the order it came. */
static void release_all(void)
{
	pthread_mutex_lock(&held_mu);
	held_file *h = held;
	held = NULL;
	pthread_mutex_unlock(&held_mu);
	while (h) {
		held_file *next = h->next;
		if (__real_vsr_reaper_add(h->r, h->name) != 0) {
			/* out of memory: the real add's caller would unlink it; the
			 * reaper of the next start finds it again */
		}
		free(h);
		h = next;
	}
}

void host_teeth_reaper_hold(bool on)
{
	pthread_mutex_lock(&held_mu);
	holding = on;
	pthread_mutex_unlock(&held_mu);
	if (!on)
		release_all();
}

int __wrap_vsr_reaper_add(vsr_reaper *r, const char *name)
{
	pthread_mutex_lock(&held_mu);
	if (holding) {
		size_t n = strlen(name) + 1;
		held_file *h = malloc(sizeof *h + n);
		if (h != NULL) {
			h->r = r;
			memcpy(h->name, name, n);
			held_file **at = &held;
			while (*at)
				at = &(*at)->next;
			h->next = NULL;
			*at = h;
			pthread_mutex_unlock(&held_mu);
			return 0;
		}
	}
	pthread_mutex_unlock(&held_mu);
	return __real_vsr_reaper_add(r, name);
}

bool __wrap_vsr_reaper_idle(vsr_reaper *r)
{
	pthread_mutex_lock(&held_mu);
	bool waiting = false;
	for (held_file *h = held; h && !waiting; h = h->next)
		waiting = h->r == r;
	pthread_mutex_unlock(&held_mu);
	return !waiting && __real_vsr_reaper_idle(r);
}

void __wrap_vsr_reaper_flush(vsr_reaper *r)
{
	release_all(); /* a flush frees at once, held or not */
	__real_vsr_reaper_flush(r);
}
