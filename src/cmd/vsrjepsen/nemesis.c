/* nemesis.c - the fault schedule: kills, pauses, partitions and clock jumps drawn from the seed.
 *
 * The schedule alternates a quiet stretch and a fault held for a while, then
 * healed. A third of the faults come with a second one of another class
 * (process, network, clock), so faults are seen alone and combined. Before
 * each fault the cluster must have settled (every replica normal in one
 * view): in memory mode a replica restarted after kill -9 has lost its state
 * and recovers from the others, and killing a second one before that is over
 * leaves two amnesiacs, which memory mode does not survive (docs/storage.md);
 * when the cluster has not settled the next fault is drawn among those that
 * kill nothing. Kill-all, wipe and byte-flip need durable storage and are
 * refused without it. Every fault is an event with start and end time, and
 * every change of "a majority of replicas is up and connected" is logged for
 * the availability figures. */
#include "jepsen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *const jp_fault_names[JP_FAULT_COUNT] = {
	[JP_KILL_ONE] = "kill-one",
	[JP_KILL_MINORITY] = "kill-minority",
	[JP_KILL_PRIMARY] = "kill-primary",
	[JP_PAUSE_ONE] = "pause-one",
	[JP_PAUSE_PRIMARY] = "pause-primary",
	[JP_PART_HALVES] = "partition-halves",
	[JP_PART_PRIMARY] = "partition-primary",
	[JP_PART_BRIDGE] = "partition-bridge",
	[JP_PART_ONEWAY] = "partition-oneway",
	[JP_CLOCK] = "clock",
	[JP_KILL_ALL] = "kill-all",
	[JP_WIPE] = "wipe",
	[JP_FLIP] = "flip",
	[JP_KILL_MAJORITY] = "kill-majority",
	[JP_WIPE_MINORITY] = "wipe-minority",
	[JP_PART_CREEP] = "partition-creep",
};

enum { JP_CLASS_PROCESS, JP_CLASS_NET, JP_CLASS_CLOCK };

static int jp_fault_class(int f)
{
	if ((f >= JP_PART_HALVES && f <= JP_PART_ONEWAY) || f == JP_PART_CREEP)
		return JP_CLASS_NET;
	if (f == JP_CLOCK)
		return JP_CLASS_CLOCK;
	return JP_CLASS_PROCESS;
}

static bool jp_fault_kills(int f)
{
	return f == JP_KILL_ONE || f == JP_KILL_MINORITY || f == JP_KILL_PRIMARY ||
	       (JP_DISK_FAULTS >> f & 1);
}

#define JP_BITS(a, b) (((1u << ((b) + 1)) - 1) & ~((1u << (a)) - 1))

int jp_nemesis_parse(const char *list, uint32_t *bits, char *err, size_t err_len)
{
	*bits = 0;
	char *copy = strdup(list);
	if (copy == NULL)
		return -1;
	int rc = 0;
	for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		uint32_t b = 0;
		if (strcmp(tok, "none") == 0)
			b = 0;
		else if (strcmp(tok, "all") == 0)
			b = JP_BITS(JP_KILL_ONE, JP_CLOCK);
		else if (strcmp(tok, "kill") == 0)
			b = JP_BITS(JP_KILL_ONE, JP_KILL_PRIMARY);
		else if (strcmp(tok, "pause") == 0)
			b = JP_BITS(JP_PAUSE_ONE, JP_PAUSE_PRIMARY);
		else if (strcmp(tok, "partition") == 0)
			b = JP_BITS(JP_PART_HALVES, JP_PART_ONEWAY);
		else if (strcmp(tok, "disk") == 0)
			b = JP_DISK_FAULTS;
		else {
			for (int f = 0; f < JP_FAULT_COUNT; f++)
				if (strcmp(tok, jp_fault_names[f]) == 0)
					b = 1u << f;
			if (b == 0) {
				snprintf(err, err_len,
					 "unknown nemesis \"%s\" (all, none, kill, pause, partition, "
					 "clock, disk, or a single fault such as partition-oneway or "
					 "partition-creep)",
					 tok);
				rc = -1;
				break;
			}
		}
		*bits |= b;
	}
	free(copy);
	return rc;
}

/* ------------------------------------------------------------------------ */

typedef struct jp_active {
	int fault;
	int targets[JP_REPLICAS_MAX];
	int count;
	uint32_t event;
} jp_active;

static int64_t jp_rel(const jp_nemesis *nm)
{
	return jp_now_ns() - nm->t0_ns;
}

/* Is there a set of more than half the replicas, all up, hearing each other? */
static bool jp_majority(const jp_nemesis *nm)
{
	int n = nm->c->n;
	for (uint32_t set = 0; set < (1u << n); set++) {
		if (__builtin_popcount(set) <= n / 2)
			continue;
		bool ok = true;
		for (int i = 0; i < n && ok; i++) {
			if (!(set >> i & 1))
				continue;
			if (nm->down[i])
				ok = false;
			for (int j = 0; j < n && ok; j++)
				if ((set >> j & 1) && nm->cut[i][j])
					ok = false;
		}
		if (ok)
			return true;
	}
	return false;
}

static void jp_note_conn(jp_nemesis *nm)
{
	bool m = jp_majority(nm);
	if (nm->conn_count > 0 && nm->conn[nm->conn_count - 1].majority == m)
		return;
	if (nm->conn_count < 2 * JP_EVENTS_MAX)
		nm->conn[nm->conn_count++] = (jp_conn_change){.t_ns = jp_rel(nm), .majority = m};
}

static int jp_pick(jp_nemesis *nm, bool avoid_down)
{
	int n = nm->c->n;
	for (int tries = 0; tries < 50; tries++) {
		int i = (int)(jp_rand(&nm->rng) % (uint64_t)n);
		if (!avoid_down || !nm->down[i])
			return i;
	}
	return 0;
}

static void jp_shuffle(jp_nemesis *nm, int *order, int n)
{
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(jp_rand(&nm->rng) % (uint64_t)(i + 1));
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

static void jp_cut(jp_nemesis *nm, int i, int j)
{
	if (nm->cut[i][j])
		return;
	nm->cut[i][j] = true;
	jp_cluster_block(nm->c, i, j);
}

static void jp_cut_both(jp_nemesis *nm, int i, int j)
{
	jp_cut(nm, i, j);
	jp_cut(nm, j, i);
}

/* Appends " N" (a replica number) to a fault's description. */
static void jp_append_replica(char *buf, size_t len, int replica)
{
	size_t used = strlen(buf);
	if (used < len)
		snprintf(buf + used, len - used, " %d", replica);
}

/* The files a flip may hit: every regular, non-empty file under dir (the
 * log segments, the superblock, the store's data.mdb and synced record),
 * but not the lock files, whose bytes mean nothing. Paths are relative to
 * the replica's data directory. */
static void jp_flip_files(const char *root, const char *rel, char (*names)[256], int *count,
			  int max)
{
	char dir[PATH_MAX + 300];
	snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && *count < max) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    strcmp(e->d_name, "lock") == 0 || strcmp(e->d_name, "lock.mdb") == 0)
			continue;
		char sub[256], path[PATH_MAX + 600];
		snprintf(sub, sizeof sub, "%s%s%.200s", rel, rel[0] ? "/" : "", e->d_name);
		snprintf(path, sizeof path, "%s/%s", root, sub);
		struct stat st;
		if (lstat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode))
			jp_flip_files(root, sub, names, count, max);
		else if (S_ISREG(st.st_mode) && st.st_size > 0)
			snprintf(names[(*count)++], 256, "%s", sub);
	}
	closedir(d);
}

/* The end of a file's written part: one past its last non-zero byte. Log
 * segments are preallocated and the store's map is sparse, so a byte drawn
 * from the whole file would nearly always land in zeros nobody reads. */
static off_t jp_written_end(int fd, off_t size)
{
	static unsigned char buf[65536];
	off_t end = size;
	while (end > 0) {
		off_t at = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
		ssize_t got = pread(fd, buf, (size_t)(end - at), at);
		if (got != end - at)
			return size;
		for (ssize_t k = got; k > 0; k--)
			if (buf[k - 1] != 0)
				return at + k;
		end = at;
	}
	return 0;
}

/* Flips one bit of one byte in a file of replica i's data chosen at random
 * (durable storage only; the layout is the storage backend's), within the
 * file's written part. */
static int jp_flip_byte(jp_nemesis *nm, int i, char *what, size_t what_len)
{
	char dir[PATH_MAX + 32];
	snprintf(dir, sizeof dir, "%s/data/replica-%d", nm->c->dir, i + 1);
	static char names[64][256];
	int count = 0;
	jp_flip_files(dir, "", names, &count, 64);
	if (count == 0)
		return -1;
	const char *name = names[jp_rand(&nm->rng) % (uint64_t)count];
	char path[PATH_MAX + 300];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	off_t used = jp_written_end(fd, st.st_size);
	if (used == 0)
		used = st.st_size;
	off_t at = (off_t)(jp_rand(&nm->rng) % (uint64_t)used);
	unsigned char b;
	int rc = -1;
	if (pread(fd, &b, 1, at) == 1) {
		b ^= (unsigned char)(1u << (jp_rand(&nm->rng) % 8));
		if (pwrite(fd, &b, 1, at) == 1) {
			rc = 0;
			snprintf(what + strlen(what), what_len - strlen(what), " (%.40s byte %lld)",
				 name, (long long)at);
		}
	}
	close(fd);
	return rc;
}

/* Removes replica i's data directory (it is down): the replica restarts
 * with an empty disk and must catch up from the others. */
static void jp_wipe(jp_nemesis *nm, int i, char *what, size_t what_len)
{
	char dir[PATH_MAX + 40];
	snprintf(dir, sizeof dir, "%s/data/replica-%d", nm->c->dir, i + 1);
	snprintf(what + strlen(what), what_len - strlen(what), " (data of %d removed)", i + 1);
	if (jp_remove_tree(dir) != 0)
		jp_log("wipe: cannot remove %s: %s", dir, strerror(errno));
}

static uint32_t jp_between(jp_nemesis *nm, uint32_t lo, uint32_t hi);

static void jp_apply(jp_nemesis *nm, int f, jp_active *a)
{
	jp_cluster *c = nm->c;
	int n = c->n, order[JP_REPLICAS_MAX];
	char what[120];
	snprintf(what, sizeof what, "%s", jp_fault_names[f]);
	/* (partition-creep takes half a hold between its two cuts: the
	 * fault starts at the first.) */
	int64_t started = jp_rel(nm);
	memset(a, 0, sizeof *a);
	a->fault = f;
	switch (f) {
	case JP_KILL_ONE:
	case JP_KILL_PRIMARY:
	case JP_PAUSE_ONE:
	case JP_PAUSE_PRIMARY:
	case JP_WIPE:
	case JP_FLIP: {
		int i = -1;
		if (f == JP_KILL_PRIMARY || f == JP_PAUSE_PRIMARY)
			i = jp_cluster_primary(c);
		if (i < 0 || nm->down[i])
			i = jp_pick(nm, true);
		a->targets[a->count++] = i;
		nm->down[i] = true;
		if (f == JP_PAUSE_ONE || f == JP_PAUSE_PRIMARY) {
			jp_cluster_pause(c, i, true);
		} else {
			jp_cluster_kill(c, i);
			if (f == JP_WIPE) {
				jp_wipe(nm, i, what, sizeof what);
			} else if (f == JP_FLIP && jp_flip_byte(nm, i, what, sizeof what) != 0) {
				snprintf(what + strlen(what), sizeof what - strlen(what),
					 " (no file to flip)");
			}
		}
		jp_append_replica(what, sizeof what, i + 1);
		break;
	}
	case JP_KILL_MINORITY:
	case JP_KILL_MAJORITY:
	case JP_KILL_ALL:
	case JP_WIPE_MINORITY: {
		/* A minority (f), a majority but not all (f + 1), or all. A
		 * wiped minority is what durable mode promises to survive
		 * (protocol.md 5): f amnesiacs at once, each catching up from
		 * the majority whose disks are intact. */
		jp_shuffle(nm, order, n);
		int k = f == JP_KILL_ALL ? n : f == JP_KILL_MAJORITY ? n / 2 + 1 : (n - 1) / 2;
		for (int x = 0; x < k; x++) {
			int i = order[x];
			if (nm->down[i])
				continue;
			a->targets[a->count++] = i;
			nm->down[i] = true;
			jp_cluster_kill(c, i);
			if (f == JP_WIPE_MINORITY)
				jp_wipe(nm, i, what, sizeof what);
			else
				jp_append_replica(what, sizeof what, i + 1);
		}
		break;
	}
	case JP_PART_HALVES: {
		jp_shuffle(nm, order, n);
		int k = 1 + (int)(jp_rand(&nm->rng) % (uint64_t)((n - 1) / 2));
		snprintf(what + strlen(what), sizeof what - strlen(what), " minority of %d:", k);
		for (int x = 0; x < k; x++) {
			jp_append_replica(what, sizeof what, order[x] + 1);
			for (int y = k; y < n; y++)
				jp_cut_both(nm, order[x], order[y]);
		}
		break;
	}
	case JP_PART_PRIMARY: {
		int p = jp_cluster_primary(c);
		if (p < 0)
			p = jp_pick(nm, false);
		for (int j = 0; j < n; j++)
			if (j != p)
				jp_cut_both(nm, p, j);
		jp_append_replica(what, sizeof what, p + 1);
		break;
	}
	case JP_PART_BRIDGE: {
		/* Two majorities sharing one replica: order[mid] hears everyone,
		 * the two sides do not hear each other. */
		jp_shuffle(nm, order, n);
		int mid = n / 2;
		for (int x = 0; x < mid; x++)
			for (int y = mid + 1; y < n; y++)
				jp_cut_both(nm, order[x], order[y]);
		snprintf(what + strlen(what), sizeof what - strlen(what), " bridge %d", order[mid] + 1);
		break;
	}
	case JP_PART_CREEP: {
		/* A backup that lost the primary before the others did holds no
		 * lease promise when they lose it too: the view change after
		 * the second cut then only waits for the others' promises
		 * (docs/protocol.md "Reads"), which is where a clock running
		 * fast on one of them shows (--clock-rate). */
		int p = jp_cluster_primary(c);
		if (p < 0)
			p = jp_pick(nm, false);
		int first = (p + 1 + (int)(jp_rand(&nm->rng) % (uint64_t)(n - 1))) % n;
		jp_cut_both(nm, p, first);
		jp_log("nemesis: partition-creep: %d and %d cut", p + 1, first + 1);
		jp_sleep_ms(jp_between(nm, nm->hold_ms_min, nm->hold_ms_max) / 2);
		for (int j = 0; j < n; j++)
			if (j != p)
				jp_cut_both(nm, p, j);
		snprintf(what + strlen(what), sizeof what - strlen(what), " %d from %d, then all",
			 p + 1, first + 1);
		break;
	}
	case JP_PART_ONEWAY: {
		int i = jp_pick(nm, false);
		bool deaf = jp_rand(&nm->rng) % 2 == 0;
		for (int j = 0; j < n; j++)
			if (j != i) {
				if (deaf)
					jp_cut(nm, i, j);
				else
					jp_cut(nm, j, i);
			}
		snprintf(what + strlen(what), sizeof what - strlen(what),
			 deaf ? " %d hears nobody" : " nobody hears %d", i + 1);
		break;
	}
	case JP_CLOCK: {
		int i = jp_pick(nm, false);
		char spec[32];
		if (c->clock_wall_only) {
			static const int steps[] = {30, -20, 300, -5, -120, 3600};
			int s = steps[jp_rand(&nm->rng) % (sizeof steps / sizeof steps[0])];
			snprintf(spec, sizeof spec, "%+ds", s);
		} else {
			static const int leaps[] = {1, 5, 30, 120};
			c->clock_offset_s[i] += leaps[jp_rand(&nm->rng) % (sizeof leaps / sizeof leaps[0])];
			snprintf(spec, sizeof spec, "+%ds", c->clock_offset_s[i]);
		}
		a->targets[a->count++] = i;
		jp_cluster_clock(c, i, spec);
		snprintf(what + strlen(what), sizeof what - strlen(what), " %d %s %s", i + 1,
			 c->clock_wall_only ? "wall clock" : "wall and monotonic clocks leap to",
			 spec);
		break;
	}
	}
	if (nm->event_count < JP_EVENTS_MAX) {
		a->event = nm->event_count++;
		jp_event *e = &nm->events[a->event];
		*e = (jp_event){.start_ns = started, .fault = f};
		snprintf(e->what, sizeof e->what, "%s", what);
	}
	jp_log("nemesis: %s", what);
	jp_note_conn(nm);
}

static void jp_heal(jp_nemesis *nm, jp_active *a)
{
	jp_cluster *c = nm->c;
	switch (jp_fault_class(a->fault)) {
	case JP_CLASS_NET:
		jp_cluster_heal_net(c);
		memset(nm->cut, 0, sizeof nm->cut);
		break;
	case JP_CLASS_CLOCK:
		/* The wall clock steps back to true time; a leap of the monotonic
		 * clock stays (it never runs backwards). */
		if (c->clock_wall_only)
			jp_cluster_clock(c, a->targets[0], "+0");
		break;
	default:
		for (int x = 0; x < a->count; x++) {
			int i = a->targets[x];
			if (jp_fault_kills(a->fault))
				jp_cluster_start(c, i, false);
			else
				jp_cluster_pause(c, i, false);
			nm->down[i] = false;
		}
		break;
	}
	nm->events[a->event].end_ns = jp_rel(nm);
	jp_log("nemesis: healed %s", nm->events[a->event].what);
	jp_note_conn(nm);
}

void jp_nemesis_heal_all(jp_nemesis *nm)
{
	jp_cluster *c = nm->c;
	jp_cluster_heal_net(c);
	memset(nm->cut, 0, sizeof nm->cut);
	for (int i = 0; i < c->n; i++) {
		if (c->faketime && c->clock_wall_only)
			jp_cluster_clock(c, i, "+0");
		if (c->paused[i])
			jp_cluster_pause(c, i, false);
		if (!jp_cluster_alive(c, i))
			jp_cluster_start(c, i, false);
		nm->down[i] = false;
	}
	jp_note_conn(nm);
}

static uint32_t jp_between(jp_nemesis *nm, uint32_t lo, uint32_t hi)
{
	return lo + (hi > lo ? (uint32_t)(jp_rand(&nm->rng) % (hi - lo + 1)) : 0);
}

/* Faults that leave a replica amnesiac (its data gone or, once the damage is
 * found, not trusted): always on a settled cluster, so that no more than f
 * replicas are amnesiac at once. */
static bool jp_fault_forgets(int f)
{
	return f == JP_WIPE || f == JP_WIPE_MINORITY || f == JP_FLIP;
}

/* Draws an enabled fault of a class other than `not_class`; -1 when none.
 * may_kill: faults that kill may be drawn; may_forget: those that also make
 * amnesiacs. */
static int jp_draw(jp_nemesis *nm, int not_class, bool may_kill, bool may_forget)
{
	int choices[JP_FAULT_COUNT], k = 0;
	for (int f = 0; f < JP_FAULT_COUNT; f++) {
		if (!(nm->enabled >> f & 1) || jp_fault_class(f) == not_class)
			continue;
		if (jp_fault_kills(f) && !may_kill)
			continue;
		if (jp_fault_forgets(f) && !may_forget)
			continue;
		if (jp_fault_class(f) == JP_CLASS_NET && !nm->c->netns)
			continue;
		if (f == JP_CLOCK && !nm->c->faketime)
			continue;
		if ((JP_DISK_FAULTS >> f & 1) && !nm->c->durable)
			continue;
		choices[k++] = f;
	}
	return k ? choices[jp_rand(&nm->rng) % (uint64_t)k] : -1;
}

void jp_nemesis_run(jp_nemesis *nm, uint32_t duration_ms)
{
	int64_t end = nm->t0_ns + (int64_t)duration_ms * 1000000;
	jp_note_conn(nm);
	while (!jp_interrupted && jp_now_ns() < end) {
		uint32_t quiet = jp_between(nm, nm->quiet_ms_min, nm->quiet_ms_max);
		if (!jp_sleep_ms(quiet) || jp_now_ns() >= end)
			break;
		for (int i = 0; i < nm->c->n; i++)
			if (!jp_cluster_alive(nm->c, i)) {
				/* A replica died on its own: a finding, not a fault. */
				if (nm->event_count < JP_EVENTS_MAX) {
					jp_event *e = &nm->events[nm->event_count++];
					*e = (jp_event){.start_ns = jp_rel(nm), .end_ns = jp_rel(nm),
							.fault = -1};
					snprintf(e->what, sizeof e->what,
						 "replica %d exited by itself (see its log)", i + 1);
				}
				jp_cluster_start(nm->c, i, false);
			}
		int primary;
		/* --unsettled-kills (durable storage): a kill may land on a
		 * cluster still recovering, changing views or transferring
		 * state, where the simulator's crashes land but a settled-only
		 * schedule never does. Only a glance at the status then. */
		bool settled = jp_cluster_settled(nm->c, nm->unsettled_kills ? 0 : 15000, &primary);
		if (!settled && !nm->unsettled_kills) {
			nm->unsettled++;
			jp_log("nemesis: the cluster did not settle within 15 s; no kill this time");
		}
		if (jp_now_ns() >= end)
			break;
		if (nm->enabled == 0)
			continue;
		jp_active act[2];
		int count = 0;
		bool may_kill = settled || nm->unsettled_kills;
		int f = jp_draw(nm, -1, may_kill, settled);
		if (f < 0)
			continue;
		jp_apply(nm, f, &act[count++]);
		if (jp_rand(&nm->rng) % 3 == 0) {
			bool killed = jp_fault_kills(f);
			int g = jp_draw(nm, jp_fault_class(f), may_kill && !killed,
					settled && !killed);
			if (g >= 0)
				jp_apply(nm, g, &act[count++]);
		}
		uint32_t hold = jp_between(nm, nm->hold_ms_min, nm->hold_ms_max);
		jp_sleep_ms(hold);
		while (count > 0)
			jp_heal(nm, &act[--count]);
	}
	jp_nemesis_heal_all(nm);
}
