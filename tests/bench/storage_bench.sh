#!/bin/sh
# storage_bench.sh - vsrbench kv put on a 3-replica cluster, durable then
# memory storage, at 1, 16 and 128 clients, in one run; then restart time
# and disk use of the durable cluster after the run.
#
# Usage: tests/bench/storage_bench.sh BUILD_DIR [SECONDS] [PORT_BASE]
# Ports PORT_BASE..PORT_BASE+5 (default 23000, below 32768) on 127.0.0.1.
# Environment: MODES (default "durable memory"), CLIENTS (default
# "1 16 128"), CHECKPOINT (checkpoint_interval, default 4096).
set -eu
build=${1:?usage: storage_bench.sh BUILD_DIR [SECONDS] [PORT_BASE]}
secs=${2:-10}
base=${3:-23000}
modes=${MODES:-durable memory}
clients=${CLIENTS:-1 16 128}
checkpoint=${CHECKPOINT:-4096}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir storage-bench

config() { # mode
	bench_config "$work/$1.lua" 77 "$(bench_ports "$base")" "$1" "$work/data-$1" \
		"dedup = \"$root/lua/vsr/dedup/oldest.lua\",
  limits = { pipeline = 16, batch_requests = 256, clients = 1024,
             message_bytes = 16 * 1024 * 1024, checkpoint_interval = $checkpoint },"
}

start() { # mode: up when a put is acknowledged
	bench_start "$build" "$work/$1.lua" "$work/$1.log"
}

now_ms() { date +%s%3N; }

echo "storage_bench: vsrbench kv put, 3 replicas, $secs s per row; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $modes; do
	config $mode
	start $mode
	for n in $clients; do
		printf '%-8s %4d clients: ' $mode $n
		"$build/vsrbench" -c "$work/$mode.lua" -n $n -d "$secs" | awk '
			/ops/ && /done/ {ops=$2}
			/throughput/ {t=$2}
			/latency/ {p50=$4; p99=$8; max=$12}
			END {printf "%7d puts/s  p50 %s ms  p99 %s ms  max %s ms  (%d ops)\n", t, p50, p99, max, ops}'
	done
	if [ $mode = durable ]; then
		bench_stop
		du=$(du -sh "$work/data-durable" | cut -f1)
		t0=$(now_ms)
		start durable
		t1=$(now_ms)
		echo "durable: disk use after the run $du; restart to the first acknowledged put $((t1 - t0)) ms"
	fi
	bench_stop
done
echo "storage_bench: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
