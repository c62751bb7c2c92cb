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
# OPS (timed ops per run, default 1000000), N1/N2 (default 20000/60000),
# CALLGRIND=0 to skip the instruction counts.
set -eu
build=${1:?usage: apply_bench.sh BUILD_DIR [BASE_BUILD_DIR]}
base=${2:-}
rounds=${ROUNDS:-3}
ops=${OPS:-1000000}
n1=${N1:-20000}
n2=${N2:-60000}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
work=$(mktemp -d /tmp/vsr-apply-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

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
collected() { # build op n
	valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
		"$1/vsrh_bench" --only "$2" --ops "$3" --repeat 1 --no-calibration 2>&1 |
		awk '/Collected/ { print $NF }'
}
echo "x86 instructions per operation (callgrind, ($n2 - $n1 ops) difference):"
for b in $builds; do
	for op in put get query; do
		a=$(collected "$b" "$op" "$n1")
		z=$(collected "$b" "$op" "$n2")
		printf '  %-28s kv %-6s %s\n' "$b:" "$op" "$(( (z - a) / (n2 - n1) ))"
	done
done
