#!/bin/sh
# read_callgrind.sh - reads outside the log (issue 11) in instructions, which
# a shared, noisy machine does not disturb: a 3-replica memory cluster of
# kv.lua with every replica under valgrind --tool=callgrind (timeouts
# raised so that the slowdown elects nobody), vsrbench with 8 clients for
# SECONDS, the counters zeroed after the preload and dumped after the run.
# Prints the instructions the whole cluster (all three replicas) spent per
# operation, gets through the log (before) and as linearizable reads
# (after), for --mix get:90,put:10 and get:100.
#
# Usage: tests/bench/read_callgrind.sh BUILD_DIR [SECONDS] [PORT_BASE]
# Ports PORT_BASE..PORT_BASE+5 (default 25010, below 32768) on 127.0.0.1.
set -eu
build=${1:?usage: read_callgrind.sh BUILD_DIR [SECONDS] [PORT_BASE]}
secs=${2:-8}
base=${3:-25010}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir read-callgrind
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }

bench_config "$work/cluster.lua" 80 "$(bench_ports "$base")" memory "$work/data" \
	"timeouts = { tick_ms = 10, heartbeat_ms = 200, primary_ms = 10000, view_change_ms = 10000 },"

measure() { # label mix vsrbench-flags...
	label=$1
	mix=$2
	shift 2
	rm -rf "$work/data" "$work"/cg.*
	pids=""
	for i in 1 2 3; do
		valgrind --tool=callgrind --callgrind-out-file="$work/cg.$label.r$i" \
			"$build/vsrhost" "$work/cluster.lua" --replica $i >"$work/r$i.log" 2>&1 &
		pids="$pids $!"
	done
	bench_wait_put "$build" "$work/cluster.lua" 60 5000 ||
		{ echo "cluster did not start"; cat "$work"/r*.log; exit 1; }
	"$build/vsrbench" -c "$work/cluster.lua" --clients 8 --keys 1000 --preload \
		--duration 0.2 >/dev/null
	for p in $pids; do callgrind_control -z "$p" >/dev/null 2>&1; done
	ops=$("$build/vsrbench" -c "$work/cluster.lua" --clients 8 --keys 1000 \
		--duration "$secs" --mix "$mix" "$@" |
		sed -n 's/ *ops *\([0-9]*\) done, \([0-9]*\) refused.*/\1 \2/p' |
		awk '{ print $1 + $2 }')
	for p in $pids; do callgrind_control -d "$p" >/dev/null 2>&1; done
	bench_kill_pids
	total=0
	for f in "$work"/cg."$label".r*.1; do
		t=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f")
		total=$((total + t))
	done
	echo "$ops $total"
}

echo "instructions of the whole 3-replica cluster per operation (callgrind), 8 clients, $secs s"
printf '%-15s %16s %16s %7s\n' mix "before Ir/op" "after Ir/op" ratio
for mix in get:90,put:10 get:100; do
	set -- $(measure before "$mix" --gets-via-log)
	b=$(($2 / $1))
	set -- $(measure after "$mix")
	a=$(($2 / $1))
	printf '%-15s %16s %16s %7s\n' "$mix" "$b" "$a" \
		"$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
done
