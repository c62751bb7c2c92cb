#!/bin/sh
# read_bench.sh - reads outside the log (issue 11): vsrbench on a 3-replica
# memory cluster of kv.lua, --mix get:90,put:10 and --mix put:100 at 1, 16
# and 128 clients, each figure measured "before" (gets through the log as
# ordinary operations, --gets-via-log: the path before the read path) and
# "after" (gets as linearizable queries), alternated in one run so the
# machine's load hits both alike. Prints a table with the after/before
# ratios and the load average.
#
# Usage: tests/bench/read_bench.sh BUILD_DIR [SECONDS] [PORT_BASE]
# Ports PORT_BASE..PORT_BASE+5 (default 25000, below 32768) on 127.0.0.1.
# Environment: CLIENTS (default "1 16 128"), MIXES (default
# "get:90,put:10 put:100"), ROUNDS (default 1), MODE (read mode of the
# "after" runs: linearizable, lease or stale; default linearizable).
set -eu
build=${1:?usage: read_bench.sh BUILD_DIR [SECONDS] [PORT_BASE]}
secs=${2:-5}
base=${3:-25000}
clients=${CLIENTS:-1 16 128}
mixes=${MIXES:-get:90,put:10 put:100}
rounds=${ROUNDS:-1}
mode=${MODE:-linearizable}
keys=10000
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir read-bench

lease=""
[ "$mode" = lease ] && lease="reads = { lease_drift_ppm = 10000, lease_margin_ms = 20 },"
bench_config "$work/cluster.lua" 79 "$(bench_ports "$base")" memory "$work/data" "$lease"
bench_start "$build" "$work/cluster.lua" "$work/host.log"
# Every key exists, so every get finds a value (preload, not measured).
"$build/vsrbench" -c "$work/cluster.lua" --clients 16 --keys $keys --preload \
	--duration 0.2 >/dev/null

# One run: prints "ops/s get_p50_ms put_p50_ms" from vsrbench's JSON line.
run() { # clients mix flags...
	n=$1
	mix=$2
	shift 2
	"$build/vsrbench" -c "$work/cluster.lua" --clients "$n" --keys $keys \
		--duration "$secs" --mix "$mix" --json "$@" 2>&1 |
		sed -n 's/.*"throughput_ops_s":\([0-9.]*\).*"get_p50_ms":\([0-9.]*\),"put_p50_ms":\([0-9.]*\)}.*/\1 \2 \3/p'
}

echo "vsrbench kv, 3 replicas (memory), 100-byte values, $keys keys, $secs s per run,"
echo "$(nproc) cores, $(uname -m); before = gets through the log, after = gets as $mode reads"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %7s  %12s %12s %7s  %14s %14s  %14s %14s\n' mix clients \
	"before ops/s" "after ops/s" ratio "before get p50" "after get p50" \
	"before put p50" "after put p50"
r=1
while [ "$r" -le "$rounds" ]; do
	for mix in $mixes; do
		for n in $clients; do
			set -- $(run "$n" "$mix" --gets-via-log)
			b_ops=${1:-0} b_get=${2:-0} b_put=${3:-0}
			set -- $(run "$n" "$mix" --read-mode "$mode")
			a_ops=${1:-0} a_get=${2:-0} a_put=${3:-0}
			ratio=$(awk -v a="$a_ops" -v b="$b_ops" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
			printf '%-15s %7s  %12.0f %12.0f %7s  %11.3f ms %11.3f ms  %11.3f ms %11.3f ms\n' \
				"$mix" "$n" "$b_ops" "$a_ops" "$ratio" "$b_get" "$a_get" "$b_put" "$a_put"
			echo "$mix $n $ratio $a_ops $a_get" >>"$work/ratios"
		done
	done
	r=$((r + 1))
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$rounds" -gt 1 ]; then
	echo "median after/before ratio over $rounds rounds (with that round's after ops/s and get p50):"
	for mix in $mixes; do
		for n in $clients; do
			awk -v m="$mix" -v n="$n" '$1 == m && $2 == n { print $3, $4, $5 }' "$work/ratios" |
				sort -n | awk -v m="$mix" -v n="$n" '{ r[NR] = $1; o[NR] = $2; g[NR] = $3 }
				END { k = int((NR + 1) / 2); printf "%-15s %7s  ratio %s  (%s ops/s, get p50 %s ms)\n", m, n, r[k], o[k], g[k] }'
		done
	done
fi
