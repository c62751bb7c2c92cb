#!/bin/sh
# apply_cluster_bench.sh - the whole put path: vsrbench --mix put:100 on a
# 3-replica cluster at 1, 16 and 128 clients, for one build or two (before
# and after, alternated in one run), memory and durable storage; with
# ETCD=1, etcd's figures for the same workload beside them (a 3-member etcd
# cluster on this machine, fsync on every commit as always in etcd,
# loaded by tests/bench/etcd_load.c: one keep-alive HTTP/1.1 connection per
# client to the leader's JSON gateway, 16-byte keys out of 100,000, 100-byte
# values, closed loop, as vsrbench).
#
# Usage: tests/bench/apply_cluster_bench.sh BUILD_DIR [BASE_BUILD_DIR]
# Ports PORT_BASE..+5 (vsrhost) and PORT_BASE+100..+105 (etcd) on
# 127.0.0.1 (PORT_BASE: 26000 unless set).
# Environment: SECONDS_PER_RUN (default 8), CLIENTS (default "1 16 128"),
# MODES (default "memory durable"), ROUNDS (default 2), ETCD (default 0),
# PORT_BASE.
set -eu
build=${1:?usage: apply_cluster_bench.sh BUILD_DIR [BASE_BUILD_DIR]}
base=${2:-}
secs=${SECONDS_PER_RUN:-8}
clients=${CLIENTS:-1 16 128}
modes=${MODES:-memory durable}
rounds=${ROUNDS:-2}
port=${PORT_BASE:-26000}
eport=$((port + 100))
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir apply-cluster
epids=""
bench_at_exit=etcd_stop
etcd_stop() {
	for p in $epids; do kill "$p" 2>/dev/null || true; done
	for p in $epids; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	epids=""
}

config() { # mode
	bench_config "$work/$1.lua" 79 "$(bench_ports "$port")" "$1" "$work/data"
}

run() { # build mode
	rm -rf "$work/data"
	bench_start "$1" "$work/$2.lua" "$work/vsrhost.log"
	for c in $clients; do
		printf '  %-8s %-28s %4s clients: ' "$2" "$1" "$c"
		"$1/vsrbench" -c "$work/$2.lua" --mix put:100 --clients "$c" --duration "$secs" \
			--value-size 100 2>&1 |
			awk '/throughput/ { t = $2 } /latency ms/ { l = $3 " " $4 "  " $7 " " $8 }
			     END { printf "%8.0f puts/s  latency ms %s\n", t, l }'
	done
	bench_stop
}

etcd_run() {
	command -v etcd >/dev/null || { echo "  etcd: not installed (make apply-cluster-bench ETCD=1 installs etcd-server)"; return; }
	cc -O2 -pthread -o "$work/etcd_load" "$root/tests/bench/etcd_load.c"
	rm -rf "$work/etcd"
	cl="m1=http://127.0.0.1:$((eport + 1)),m2=http://127.0.0.1:$((eport + 3)),m3=http://127.0.0.1:$((eport + 5))"
	eps=""
	for i in 1 2 3; do
		cp=$((eport + 2 * i - 2))
		pp=$((eport + 2 * i - 1))
		etcd --name "m$i" --data-dir "$work/etcd/m$i" \
			--listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
			--listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
			--initial-cluster "$cl" --initial-cluster-state new --initial-cluster-token apply-bench \
			--log-level error >>"$work/etcd.log" 2>&1 &
		epids="$epids $!"
		eps="$eps${eps:+,}127.0.0.1:$cp"
	done
	# Up when the loader finds a leader and a put succeeds.
	i=0
	until "$work/etcd_load" --endpoints "$eps" --clients 1 --duration 0.2 >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "etcd did not start"; tail "$work/etcd.log"; etcd_stop; return; }
	done
	for c in $clients; do
		printf '  %-8s %-28s %4s clients: ' "fsync" "etcd $(etcd --version | awk '/etcd Version/ { print $3 }')" "$c"
		"$work/etcd_load" --endpoints "$eps" --clients "$c" --duration "$secs" --value-size 100 2>&1 |
			awk '/throughput/ { t = $2 } /latency ms/ { l = $3 " " $4 "  " $7 " " $8 }
			     END { printf "%8.0f puts/s  latency ms %s\n", t, l }'
	done
	etcd_stop
}

for m in $modes; do config "$m"; done
builds="$build"
[ -n "$base" ] && builds="$base $build"
echo "apply_cluster_bench: vsrbench --mix put:100, 100-byte values, $secs s per run, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ "$r" -le "$rounds" ]; do
	echo "round $r"
	for m in $modes; do
		for b in $builds; do
			run "$b" "$m"
		done
	done
	[ "${ETCD:-0}" = 1 ] && etcd_run
	r=$((r + 1))
done
