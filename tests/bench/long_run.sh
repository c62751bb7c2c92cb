#!/bin/sh
# long_run.sh - issue 8's long-run figures on a durable 3-replica cluster
# (kv.lua, 100-byte values unless said otherwise):
#
# 1. Puts from CLIENTS (16) clients over KEYS (100,000) keys until the log
#    has reached OPS (default 1,000,000) VSR ops, checkpoint every
#    CHECKPOINT (10,000) ops, so about OPS / CHECKPOINT checkpoints (an op is
#    a log entry; one batches up to 256 puts, so this takes several million
#    puts): the disk use of the data directory after every 10 s of load, and
#    its largest; the puts and checkpoints taken; then every replica killed
#    (-9) at once and restarted: the time to the first acknowledged put.
# 2. A state of about STATE_MB (1024) MB: STATE_KEYS (1,000,000) keys of
#    STATE_MB MB / STATE_KEYS bytes, preloaded; then the same kill -9 and
#    restart of all three (time to the first acknowledged put), and of one
#    backup alone (time until it reports normal again).
#
# Usage: tests/bench/long_run.sh BUILD_DIR [PART]   (PART 1, 2 or both)
# Ports come from the kernel; everything lives in a temporary directory
# that is removed at the end (KEEP=1 keeps it). Needs about 10 GB of disk
# for part 2.
set -eu
build=$(cd "${1:?usage: long_run.sh BUILD_DIR [1|2]}" && pwd)
part=${2:-both}
ops=${OPS:-1000000}
clients=${CLIENTS:-16}
keys=${KEYS:-100000}
checkpoint=${CHECKPOINT:-10000}
state_mb=${STATE_MB:-1024}
state_keys=${STATE_KEYS:-1000000}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir long-run
[ -z "${KEEP:-}" ] || bench_keep="long_run: kept"
bench_signal=KILL
bench_log_level=info
config="$work/cluster.lua"
bench_config "$config" 4343 "$("$build/vsr_free_ports" 6)" durable "$work/data" \
	"dedup = \"$root/lua/vsr/dedup/oldest.lua\",
  limits = { pipeline = 16, batch_requests = 256, clients = 1024,
             message_bytes = 16 * 1024 * 1024, checkpoint_interval = $checkpoint },"

now_ms() { date +%s%3N; }

start_all() { for r in 1 2 3; do bench_replica "$build/vsrhost" "$config" $r; done; }
kill_all() { for r in 1 2 3; do bench_kill_replica $r; done; }

# Waits for an acknowledged put (a quorum is up and normal).
acked() {
	bench_wait_put "$build" "$config" 600 1000 ||
		{ echo "long_run: no put acknowledged"; tail "$work"/replica-*.log; exit 1; }
}

disk_mb() { du -sm "$work/data" | cut -f1; }

restart_all() { # label
	kill_all
	mb=$(disk_mb)
	t0=$(now_ms)
	start_all
	acked
	t1=$(now_ms)
	echo "long_run: $1: kill -9 of all three, restart to the first acknowledged put: $((t1 - t0)) ms (data directory $mb MB)"
}

restart_backup() { # label
	p=$("$build/vsrctl" -c "$config" status | awk 'NR > 1 {print $7; exit}')
	b=$((p % 3 + 1))
	bench_kill_replica $b
	t0=$(now_ms)
	bench_replica "$build/vsrhost" "$config" $b
	bench_wait_normal "$build" "$config" 600 $b ||
		{ echo "long_run: replica $b never normal"; exit 1; }
	t1=$(now_ms)
	echo "long_run: $1: kill -9 of backup $b, restart until it is normal: $((t1 - t0)) ms"
}

echo "long_run: load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$part" = 1 ] || [ "$part" = both ]; then
	rm -rf "$work/data"
	start_all
	acked
	echo "long_run: $ops VSR ops of puts, $clients clients, $keys keys, checkpoint every $checkpoint ops (durable)"
	done_puts=0
	st=0
	max_mb=0
	while [ "$st" -lt "$ops" ]; do
		n=$("$build/vsrbench" -c "$config" -n "$clients" -k "$keys" -d 10 |
			awk '/ops/ && /done/ {print $2}')
		done_puts=$((done_puts + n))
		# The log's op: the highest any replica reports.
		st=$("$build/vsrctl" -c "$config" status 2>/dev/null |
			awk 'NR > 1 && $5 + 0 > m {m = $5 + 0} END {print m + 0}')
		mb=$(disk_mb)
		[ "$mb" -gt "$max_mb" ] && max_mb=$mb
		echo "long_run:   op $st ($done_puts puts): data directory $mb MB"
	done
	# Checkpoints taken (a second line, "... is durable", follows each).
	ck=$(grep -h "checkpoint at op [0-9]* (the step" "$work/replica-1.log" | wc -l)
	echo "long_run: $done_puts puts in $st VSR ops, $ck checkpoints at replica 1; data directory at most $max_mb MB (three replicas; the largest of the samples after every 10 s of load)"
	restart_all "after $st ops ($done_puts puts)"
	restart_backup "after $st ops ($done_puts puts)"
	kill_all
fi
if [ "$part" = 2 ] || [ "$part" = both ]; then
	rm -rf "$work/data"
	# Three replicas hold about 5 times the state (5.2 GB for 1 GB), more
	# while it loads; a full disk stops every other job on the machine.
	need=$((state_mb * 8))
	free=$(df -Pm "$work" | awk 'NR == 2 {print $4}')
	if [ "$free" -lt "$need" ]; then
		echo "long_run: part 2 needs about $need MB free in $work, there are $free MB; not started"
		exit 1
	fi
	start_all
	acked
	vsize=$((state_mb * 1048576 / state_keys))
	t0=$(now_ms)
	"$build/vsrbench" -c "$config" -n "$clients" -k "$state_keys" -s "$vsize" --preload -d 1 |
		grep -i preload || true
	t1=$(now_ms)
	echo "long_run: a state of $state_keys keys x $vsize bytes (~$state_mb MB) loaded in $(((t1 - t0) / 1000)) s"
	restart_all "with ~$state_mb MB of state"
	restart_backup "with ~$state_mb MB of state"
	restart_all "with ~$state_mb MB of state, again"
fi
echo "long_run: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
