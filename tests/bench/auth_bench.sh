#!/bin/sh
# auth_bench.sh - the cost of authentication: vsrbench kv put on a 3-replica
# memory cluster at 1 and 128 clients, without and with `auth` (HELLO/AUTH
# handshake, a MAC on every frame), alternated ROUNDS times in one run.
#
# Usage: tests/bench/auth_bench.sh BUILD_DIR [SECONDS] [PORT_BASE]
# Ports PORT_BASE..PORT_BASE+5 (default 23100, below 32768) on 127.0.0.1.
# Environment: CLIENTS (default "1 128"), ROUNDS (default 2).
set -eu
build=${1:?usage: auth_bench.sh BUILD_DIR [SECONDS] [PORT_BASE]}
secs=${2:-8}
base=${3:-23100}
clients=${CLIENTS:-1 128}
rounds=${ROUNDS:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir auth-bench

"$build/vsrhost" keygen "$work/replica.key" >/dev/null
"$build/vsrhost" keygen "$work/client.key" >/dev/null

config() { # name auth-line
	bench_config "$work/$1.lua" 78 "$(bench_ports "$base")" memory "$work/data-$1" "$2"
}
config plain ""
config auth "auth = { replica_key = \"replica.key\", client_key = \"client.key\" },"

run() { # name
	rm -rf "$work/data-$1"
	bench_start "$build" "$work/$1.lua" "$work/$1.log"
	for c in $clients; do
		printf '%-6s %4s clients: ' "$1" "$c"
		"$build/vsrbench" -c "$work/$1.lua" --clients "$c" --duration "$secs" \
			--value-size 100 2>&1 | grep -E 'ops/s|puts/s' | head -1
	done
	bench_stop
}

echo "vsrbench kv put, 100-byte values, $secs s per run, $(nproc) cores, $(uname -m)"
r=1
while [ $r -le "$rounds" ]; do
	run plain
	run auth
	r=$((r + 1))
done
