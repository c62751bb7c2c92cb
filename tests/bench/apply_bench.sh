#!/bin/sh
# apply_bench.sh - the apply path on one core: vsrh_bench kv put/get rates and
# callgrind's x86 instructions per operation (issue 11, item 3).
#
# Usage: tests/bench/apply_bench.sh BUILD_DIR [BASE_BUILD_DIR]
# With BASE_BUILD_DIR (a build of an earlier commit), both are measured in
# the same run: the timed runs alternate (ROUNDS times), the instruction
# counts are exact either way.
# Instructions per op are the difference between callgrind totals for
# N2 and N1 operations divided by N2 - N1, so start-up and the first
# insertion of every key cancel out. Environment: ROUNDS (default 3),
# OPS (timed ops per run, default 500000), N1/N2 (default 20000/60000),
# CALLGRIND=0 to skip the instruction counts; REPLICAS=1 adds the whole
# primary and a backup (vsrhost --replica 1 and 2 under callgrind, replica
# 3 native, memory durability, ports 26010-26015): instructions per put of
# each process, the difference between a D1 and a D2 second run of
# vsrbench --mix put:100 with one client (D1/D2 default 4/12) divided by
# the difference in puts.
set -eu
build=${1:?usage: apply_bench.sh BUILD_DIR [BASE_BUILD_DIR]}
base=${2:-}
rounds=${ROUNDS:-3}
ops=${OPS:-500000}
n1=${N1:-20000}
n2=${N2:-60000}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. "$root/tests/bench/lib.sh"
bench_workdir apply-bench

builds="$build"
[ -n "$base" ] && builds="$base $build"

echo "apply_bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "timed (CPU time, best of 3 per run; noisy on a shared machine):"
r=1
while [ "$r" -le "$rounds" ]; do
	for b in $builds; do
		printf '  round %d %-28s' "$r" "$b:"
		"$b/vsrh_bench" --ops "$ops" --no-calibration 2>&1 |
			awk '/kv (put|get) / { printf "  %s %s %.0f/s", $1, $2, $(NF-3) } END { print "" }'
	done
	r=$((r + 1))
done

[ "${CALLGRIND:-1}" = 0 ] && exit 0
command -v valgrind >/dev/null || { echo "valgrind not installed: no instruction counts"; exit 0; }
# Lua seeds its string hash from the clock, which moves the counts by 1-2%
# from run to run; with the clock frozen (faketime) they repeat exactly.
frozen() {
	if command -v faketime >/dev/null; then faketime -f '2026-01-01 00:00:00' "$@"; else "$@"; fi
}
collected() { # build op n: callgrind's total, or nothing when the run failed
	for try in 1 2; do
		frozen valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
			"$1/vsrh_bench" --only "$2" --ops "$3" --repeat 1 --no-calibration \
			>"$work/cg.log" 2>&1 || true
		if grep -q "kv .* $3 ops in" "$work/cg.log" && ! grep -q ERRORS "$work/cg.log"; then
			awk '/Collected/ { print $NF }' "$work/cg.log"
			return
		fi
		echo "apply_bench: $1/vsrh_bench --only $2 --ops $3 failed (try $try):" >&2
		tail -3 "$work/cg.log" >&2
	done
}
echo "x86 instructions per operation (callgrind, ($n2 - $n1 ops) difference):"
for b in $builds; do
	for op in put get query; do
		a=$(collected "$b" "$op" "$n1")
		z=$(collected "$b" "$op" "$n2")
		if [ -n "$a" ] && [ -n "$z" ]; then
			printf '  %-28s kv %-6s %s\n' "$b:" "$op" "$(( (z - a) / (n2 - n1) ))"
		else
			printf '  %-28s kv %-6s (a run failed)\n' "$b:" "$op"
		fi
	done
done

[ "${REPLICAS:-0}" = 1 ] || exit 0
d1=${D1:-4}
d2=${D2:-12}
bench_config "$work/r.lua" 80 "$(bench_ports 26010)" memory "$work/data"
replica_run() { # build seconds -> "puts primary_instr backup_instr"
	rm -rf "$work/data"
	"$1/vsrhost" "$work/r.lua" --replica 3 >"$work/r3.err" 2>&1 &
	pids="$!"
	for r in 1 2; do
		valgrind --tool=callgrind --callgrind-out-file="$work/cg-r$r.out" \
			"$1/vsrhost" "$work/r.lua" --replica "$r" >"$work/r$r.err" 2>&1 &
		pids="$pids $!"
	done
	bench_wait_put "$1" "$work/r.lua" 60 2000 ||
		{ echo "cluster did not start" >&2; tail "$work"/r*.err >&2; exit 1; }
	puts=$("$1/vsrbench" -c "$work/r.lua" --mix put:100 --clients 1 --duration "$2" \
		--value-size 100 | awk '/ops / { print $2 }')
	bench_kill_pids
	echo "$puts $(awk '/Collected/ { print $NF }' "$work/r1.err") $(awk '/Collected/ { print $NF }' "$work/r2.err")"
}
echo "x86 instructions per put of the whole replica process (callgrind; vsrbench 1 client, ${d2} s - ${d1} s runs):"
for b in $builds; do
	set -- $(replica_run "$b" "$d1")
	a_n=$1 a_p=$2 a_b=$3
	set -- $(replica_run "$b" "$d2")
	n=$(($1 - a_n))
	printf '  %-28s primary %s  backup %s  (%s more puts)\n' "$b:" \
		"$(( ($2 - a_p) / n ))" "$(( ($3 - a_b) / n ))" "$n"
done
