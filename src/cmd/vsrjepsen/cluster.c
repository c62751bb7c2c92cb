/* cluster.c - vsrjepsen's cluster: a bridge, one network namespace per replica, real vsrhost processes.
 *
 * Happy path: ip link add <tag>br (bridge, 10.A.B.254/24) -> per replica
 * ip netns add <tag>-<i>, a veth pair whose host end joins the bridge and
 * whose other end (10.A.B.<i+1>) moves into the namespace -> config.lua with
 * those addresses -> each replica forked, moved into its namespace with
 * setns(2), exec'd with stdout and stderr appended to replica-<i>.log.
 * Partitions are iptables DROP rules in the receiving replica's namespace
 * (INPUT, by source address), so a one-way cut is one rule.
 * Failure modes: a command fails (creation stops, everything made so far is
 * removed by jp_cluster_destroy, which every exit path calls); not root or
 * no `ip` (loopback, ports from the kernel, no partitions, said on stderr);
 * a controller that died without cleaning up (its names carry its pid, and
 * jp_cluster_sweep_stale removes them on the next start). */
#define _GNU_SOURCE
#include "jepsen.h"
#include "clockrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define JP_FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

/* Runs argv (in namespace ns unless NULL) and waits. Returns the exit status,
 * or -1 when it could not run. Output goes to /dev/null unless `show`. */
static int jp_run(const char *ns, bool show, const char *const *argv)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (ns != NULL) {
			char path[128];
			snprintf(path, sizeof path, "/var/run/netns/%s", ns);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
				_exit(127);
		}
		if (!show) {
			int null = open("/dev/null", O_WRONLY);
			if (null >= 0) {
				dup2(null, 1);
				dup2(null, 2);
			}
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* jp_run with a printf-built argument list split at spaces (no quoting:
 * every word here is a name or address we made). */
static int jp_runf(const char *ns, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jp_runf(const char *ns, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	const char *argv[32];
	int argc = 0;
	for (char *save = NULL, *tok = strtok_r(line, " ", &save); tok && argc < 31;
	     tok = strtok_r(NULL, " ", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	int rc = jp_run(ns, false, argv);
	if (rc != 0)
		jp_log("command failed (%d)%s%s: %s", rc, ns ? " in " : "", ns ? ns : "", fmt);
	return rc;
}

static int jp_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Kept bound until every port is chosen would be stricter; the kernel
	 * hands ports out in rotation, so a repeat within one run is unlikely
	 * and shows up as a bind error in a replica's log. */
	close(fd);
	return ntohs(a.sin_port);
}

void jp_cluster_sweep_stale(void)
{
	DIR *d = opendir("/var/run/netns");
	if (d == NULL)
		return;
	struct dirent *e;
	char names[64][64];
	int count = 0;
	while ((e = readdir(d)) != NULL && count < 64) {
		unsigned pid;
		int i;
		if (sscanf(e->d_name, "vj%u-%d", &pid, &i) != 2)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* its controller is alive: not ours to touch */
		snprintf(names[count++], sizeof names[0], "%.60s", e->d_name);
	}
	closedir(d);
	for (int k = 0; k < count; k++) {
		unsigned pid;
		sscanf(names[k], "vj%u-", &pid);
		jp_log("removing namespace %s left by a controller (pid %u) that is gone",
		       names[k], pid);
		jp_runf(NULL, "ip netns del %s", names[k]);
		char br[32];
		snprintf(br, sizeof br, "vj%ubr", pid);
		const char *argv[] = {"ip", "link", "del", br, NULL};
		jp_run(NULL, false, argv);
	}
}

static int jp_write_config(jp_cluster *c)
{
	snprintf(c->config, sizeof c->config, "%s/config.lua", c->dir);
	FILE *f = fopen(c->config, "w");
	if (f == NULL) {
		jp_log("cannot write %s: %s", c->config, strerror(errno));
		return -1;
	}
	fprintf(f, "-- written by vsrjepsen for one run\nreturn {\n  cluster = %" PRIu64 ",\n",
		c->cluster_id);
	fprintf(f, "  replicas = {");
	for (int i = 0; i < c->n; i++)
		fprintf(f, "%s\"%s:%u\"", i ? ", " : " ", c->ip[i], c->rport[i]);
	fprintf(f, " },\n  clients = {");
	for (int i = 0; i < c->n; i++)
		fprintf(f, "%s\"%s:%u\"", i ? ", " : " ", c->ip[i], c->cport[i]);
	fprintf(f, " },\n  statemachine = \"%s/statemachines/kv.lua\",\n", c->root);
	fprintf(f, "  data_dir = \"%s/data\",\n  durability = \"%s\",\n", c->dir,
		c->durable ? "durable" : "memory");
	fprintf(f, "  timeouts = { tick_ms = 10, heartbeat_ms = 50, primary_ms = 300,\n"
		   "               view_change_ms = 300, retry_ms = 100 },\n");
	if (c->lease_ppm)
		fprintf(f, "  reads = { lease_drift_ppm = %u },\n", c->lease_ppm);
	if (c->checkpoint_interval)
		fprintf(f, "  limits = { checkpoint_interval = %u },\n", c->checkpoint_interval);
	fprintf(f, "  log_level = \"info\",\n}\n");
	return fclose(f) == 0 ? 0 : -1;
}

/* Writes replica i's clock-rate control file: from now on its monotonic
 * clocks run rate_ppm fast (clockrate.h). The file outlives the replica's
 * restarts, so a restarted replica's clock goes on from the same line. */
static int jp_clockrate_write(jp_cluster *c, int i)
{
	snprintf(c->ratefile[i], sizeof c->ratefile[i], "%s/clockrate-%d", c->dir, i + 1);
	int fd = open(c->ratefile[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) != 0) {
		jp_log("cannot write %s: %s", c->ratefile[i], strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	vsrclock_ctl *ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (ctl == MAP_FAILED)
		return -1;
	vsrclock_set(ctl, jp_now_ns(), c->rate_ppm[i]);
	munmap(ctl, sizeof *ctl);
	return 0;
}

int jp_cluster_create(jp_cluster *c, int n, bool want_netns, bool faketime, bool durable,
		      uint32_t lease_ppm, uint32_t checkpoint_interval, const int64_t *rate_ppm,
		      const char *clockrate_lib, const char *vsrhost, const char *root,
		      const char *dir, uint64_t seed)
{
	memset(c, 0, sizeof *c);
	c->n = n;
	for (int i = 0; i < n && rate_ppm != NULL; i++)
		c->rate_ppm[i] = rate_ppm[i];
	c->clockrate_lib = clockrate_lib;
	c->faketime = faketime;
	c->durable = durable;
	c->lease_ppm = lease_ppm;
	c->checkpoint_interval = checkpoint_interval;
	c->vsrhost = vsrhost;
	c->root = root;
	c->cluster_id = seed % 1000000 + 1;
	c->clock_wall_only = (seed / 2) % 2 == 0; /* not seed % 2: runs alternate 3 and 5 replicas */
	/* A lease rests on the replicas' timers (the monotonic clock) running
	 * at rates within the drift bound: a leap of a backup's monotonic
	 * clock fires its suspicion early, outside that bound. Wall-clock
	 * steps, which leases do not read, stay in. */
	if (lease_ppm)
		c->clock_wall_only = true;
	snprintf(c->dir, sizeof c->dir, "%s", dir);
	pid_t me = getpid();
	snprintf(c->tag, sizeof c->tag, "vj%d", (int)me);
	if (faketime && access(JP_FAKETIME_LIB, R_OK) != 0) {
		jp_log("%s is missing (Debian package faketime): clock faults are off",
		       JP_FAKETIME_LIB);
		c->faketime = false;
	}
	bool netns = want_netns && geteuid() == 0;
	if (netns) {
		const char *argv[] = {"ip", "netns", "list", NULL};
		if (jp_run(NULL, false, argv) != 0)
			netns = false;
	}
	if (want_netns && !netns)
		jp_log("not root or no `ip`: running on loopback, without partitions");
	c->netns = netns;
	if (netns) {
		/* 10.A.B.0/24 from our pid, so concurrent controllers differ. */
		unsigned a = 100 + (unsigned)me % 100, b = ((unsigned)me / 100) % 250;
		snprintf(c->bridge, sizeof c->bridge, "%sbr", c->tag);
		snprintf(c->bridge_ip, sizeof c->bridge_ip, "10.%u.%u.254", a, b);
		if (jp_runf(NULL, "ip link add %s type bridge", c->bridge) != 0)
			return -1;
		c->bridge_made = true;
		if (jp_runf(NULL, "ip addr add %s/24 dev %s", c->bridge_ip, c->bridge) ||
		    jp_runf(NULL, "ip link set %s up", c->bridge))
			return -1;
		for (int i = 0; i < n; i++) {
			snprintf(c->ns[i], sizeof c->ns[i], "%s-%d", c->tag, i + 1);
			snprintf(c->ip[i], sizeof c->ip[i], "10.%u.%u.%d", a, b, i + 1);
			c->rport[i] = 7001;
			c->cport[i] = 7101;
			if (jp_runf(NULL, "ip netns add %s", c->ns[i]) != 0)
				return -1;
			c->ns_made[i] = true;
			if (jp_runf(NULL, "ip link add %sh%d type veth peer name %sp%d", c->tag, i + 1,
				    c->tag, i + 1) ||
			    jp_runf(NULL, "ip link set %sp%d netns %s", c->tag, i + 1, c->ns[i]) ||
			    jp_runf(NULL, "ip link set %sh%d master %s", c->tag, i + 1, c->bridge) ||
			    jp_runf(NULL, "ip link set %sh%d up", c->tag, i + 1) ||
			    jp_runf(c->ns[i], "ip addr add %s/24 dev %sp%d", c->ip[i], c->tag, i + 1) ||
			    jp_runf(c->ns[i], "ip link set %sp%d up", c->tag, i + 1) ||
			    jp_runf(c->ns[i], "ip link set lo up"))
				return -1;
		}
	} else {
		for (int i = 0; i < n; i++) {
			int rp = jp_free_port(), cp = jp_free_port();
			if (rp < 0 || cp < 0)
				return -1;
			snprintf(c->ip[i], sizeof c->ip[i], "127.0.0.1");
			c->rport[i] = (uint16_t)rp;
			c->cport[i] = (uint16_t)cp;
		}
	}
	for (int i = 0; i < n; i++) {
		snprintf(c->clockfile[i], sizeof c->clockfile[i], "%s/clock-%d", c->dir, i + 1);
		if (c->faketime && jp_cluster_clock(c, i, "+0") != 0)
			return -1;
		if (c->rate_ppm[i] != 0 && jp_clockrate_write(c, i) != 0)
			return -1;
	}
	if (jp_write_config(c) != 0)
		return -1;
	char addr[JP_REPLICAS_MAX][40];
	const char *addrs[JP_REPLICAS_MAX];
	for (int i = 0; i < n; i++) {
		snprintf(addr[i], sizeof addr[i], "%s:%u", c->ip[i], c->cport[i]);
		addrs[i] = addr[i];
	}
	char err[256];
	if (vsrc_options_from_addresses(&c->copt, c->cluster_id, addrs, (uint32_t)n, err,
					sizeof err) != 0) {
		jp_log("client options: %s", err);
		return -1;
	}
	return 0;
}

int jp_cluster_start(jp_cluster *c, int i, bool fresh)
{
	char logpath[PATH_MAX + 32];
	snprintf(logpath, sizeof logpath, "%s/replica-%d.log", c->dir, i + 1);
	int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	c->starts[i]++;
	dprintf(fd, "=== vsrjepsen: start %d of replica %d at %.3f s%s\n", c->starts[i], i + 1,
		(double)jp_now_ns() / 1e9,
		fresh ? " (fresh)" : c->durable ? " (restart)" : " (restart, memory lost)");
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(fd);
		return -1;
	}
	if (pid == 0) {
		/* Die with the controller, whatever kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		setpgid(0, 0); /* a terminal's Ctrl-C goes to the controller only */
		if (c->netns) {
			char path[128];
			snprintf(path, sizeof path, "/var/run/netns/%s", c->ns[i]);
			int nfd = open(path, O_RDONLY | O_CLOEXEC);
			if (nfd < 0 || setns(nfd, CLONE_NEWNET) != 0)
				_exit(127);
		}
		dup2(fd, 1);
		dup2(fd, 2);
		/* The clock-rate shim first: it reads the monotonic clocks
		 * through libfaketime's, which leaves them alone when only the
		 * wall clock is stepped. */
		char preload[3 * PATH_MAX + 3] = "";
		if (c->rate_ppm[i] != 0) {
			snprintf(preload, sizeof preload, "%s", c->clockrate_lib);
			setenv("VSRCLOCK_FILE", c->ratefile[i], 1);
		}
		if (c->faketime) {
			size_t used = strlen(preload);
			snprintf(preload + used, sizeof preload - used, "%s%s", used ? ":" : "",
				 JP_FAKETIME_LIB);
			setenv("FAKETIME_TIMESTAMP_FILE", c->clockfile[i], 1);
			setenv("FAKETIME_CACHE_DURATION", "1", 1);
			if (c->clock_wall_only)
				setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
		}
		/* What the controller was started with (a test's own shim)
		 * comes last: replaced, it would silently be lost. */
		const char *outer = getenv("LD_PRELOAD");
		if (preload[0] != '\0' && outer != NULL && outer[0] != '\0') {
			size_t used = strlen(preload);
			snprintf(preload + used, sizeof preload - used, ":%s", outer);
		}
		if (preload[0] != '\0')
			setenv("LD_PRELOAD", preload, 1);
		char rep[16];
		snprintf(rep, sizeof rep, "%d", i + 1);
		const char *argv[] = {c->vsrhost, c->config, "--replica", rep,
				      fresh ? "--fresh" : NULL, NULL};
		execv(c->vsrhost, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	c->pid[i] = pid;
	c->paused[i] = false;
	return 0;
}

/* A replica reaped: what libfaketime made for its process goes too. Each
 * process it is preloaded into creates /dev/shm/faketime_shm_PID and
 * sem.faketime_sem_PID and removes them at a clean exit only; replicas
 * die by SIGKILL here, and thousands were left behind (FAKETIME_DISABLE_SHM
 * does not stop them in Debian's 0.9.10). */
static void faketime_forget(const jp_cluster *c, pid_t pid)
{
	if (!c->faketime)
		return;
	char path[64];
	snprintf(path, sizeof path, "/dev/shm/faketime_shm_%d", (int)pid);
	unlink(path);
	snprintf(path, sizeof path, "/dev/shm/sem.faketime_sem_%d", (int)pid);
	unlink(path);
}

void jp_cluster_kill(jp_cluster *c, int i)
{
	if (c->pid[i] <= 0)
		return;
	kill(c->pid[i], SIGKILL);
	int st;
	while (waitpid(c->pid[i], &st, 0) < 0 && errno == EINTR)
		;
	faketime_forget(c, c->pid[i]);
	c->pid[i] = 0;
	c->paused[i] = false;
}

void jp_cluster_pause(jp_cluster *c, int i, bool pause)
{
	if (c->pid[i] <= 0)
		return;
	kill(c->pid[i], pause ? SIGSTOP : SIGCONT);
	c->paused[i] = pause;
}

bool jp_cluster_alive(jp_cluster *c, int i)
{
	if (c->pid[i] <= 0)
		return false;
	int st;
	pid_t r = waitpid(c->pid[i], &st, WNOHANG);
	if (r == c->pid[i]) {
		jp_log("replica %d (pid %d) exited by itself: %s %d", i + 1, (int)c->pid[i],
		       WIFSIGNALED(st) ? "signal" : "status",
		       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		faketime_forget(c, c->pid[i]);
		c->pid[i] = 0;
		return false;
	}
	return true;
}

int jp_cluster_block(jp_cluster *c, int i, int j)
{
	if (!c->netns)
		return -1;
	return jp_runf(c->ns[i], "iptables -w -A INPUT -s %s -j DROP", c->ip[j]);
}

int jp_cluster_heal_net(jp_cluster *c)
{
	int rc = 0;
	if (!c->netns)
		return 0;
	for (int i = 0; i < c->n; i++)
		if (c->ns_made[i] && jp_runf(c->ns[i], "iptables -w -F INPUT") != 0)
			rc = -1;
	return rc;
}

int jp_cluster_clock(jp_cluster *c, int i, const char *spec)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof tmp, "%s.tmp", c->clockfile[i]);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s\n", spec);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, c->clockfile[i]);
}

void jp_cluster_destroy(jp_cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		if (c->pid[i] > 0) {
			kill(c->pid[i], SIGCONT);
			jp_cluster_kill(c, i);
		}
	}
	for (int i = 0; i < c->n; i++) {
		if (c->ns_made[i]) {
			/* Deleting the namespace deletes its veth end, the pair,
			 * and its iptables rules. */
			jp_runf(NULL, "ip netns del %s", c->ns[i]);
			c->ns_made[i] = false;
			char host_end[32];
			snprintf(host_end, sizeof host_end, "%sh%d", c->tag, i + 1);
			const char *argv[] = {"ip", "link", "del", host_end, NULL};
			jp_run(NULL, false, argv); /* usually gone already */
		}
	}
	if (c->bridge_made) {
		jp_runf(NULL, "ip link del %s", c->bridge);
		c->bridge_made = false;
	}
}

static bool jp_status_all(jp_cluster *c, vsrc_status_entry st[VSR_REPLICAS_MAX])
{
	vsrc_status_query(&c->copt, 300, st);
	for (int i = 0; i < c->n; i++)
		if (!st[i].ok)
			return false;
	return true;
}

int jp_cluster_primary(jp_cluster *c)
{
	vsrc_status_entry st[VSR_REPLICAS_MAX];
	vsrc_status_query(&c->copt, 300, st);
	uint64_t best_view = 0;
	int primary = -1;
	for (int i = 0; i < c->n; i++)
		if (st[i].ok && st[i].status.status == VSR_STATUS_NORMAL &&
		    st[i].status.view >= best_view) {
			best_view = st[i].status.view;
			primary = st[i].status.primary;
		}
	return primary;
}

bool jp_cluster_settled(jp_cluster *c, uint32_t timeout_ms, int *primary)
{
	int64_t deadline = jp_now_ns() + (int64_t)timeout_ms * 1000000;
	*primary = -1;
	while (!jp_interrupted) {
		for (int i = 0; i < c->n; i++)
			if (c->pid[i] > 0 && !jp_cluster_alive(c, i))
				return false; /* it said why in its log; waiting will not help */
		vsrc_status_entry st[VSR_REPLICAS_MAX];
		if (jp_status_all(c, st)) {
			bool same = true;
			for (int i = 0; i < c->n; i++)
				if (st[i].status.status != VSR_STATUS_NORMAL ||
				    st[i].status.view != st[0].status.view)
					same = false;
			if (same) {
				*primary = st[0].status.primary;
				return true;
			}
		}
		if (jp_now_ns() > deadline)
			return false;
		jp_sleep_ms(100);
	}
	return false;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int jp_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
