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
work=$(mktemp -d /tmp/vsr-auth-bench-XXXXXX)
sup=""
cleanup() {
	[ -n "$sup" ] && kill "$sup" 2>/dev/null && wait "$sup" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
# A trapped signal would resume the script: exit, which runs the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

"$build/vsrhost" keygen "$work/replica.key" >/dev/null
"$build/vsrhost" keygen "$work/client.key" >/dev/null

config() { # name auth-line
	cat > "$work/$1.lua" <<EOC
return {
  cluster = 78,
  replicas = { "127.0.0.1:$base", "127.0.0.1:$((base + 1))", "127.0.0.1:$((base + 2))" },
  clients  = { "127.0.0.1:$((base + 3))", "127.0.0.1:$((base + 4))", "127.0.0.1:$((base + 5))" },
  statemachine = "$root/statemachines/kv.lua",
  data_dir = "$work/data-$1",
  durability = "memory",
  $2
  log_level = "warn",
}
EOC
}
config plain ""
config auth "auth = { replica_key = \"replica.key\", client_key = \"client.key\" },"

run() { # name
	rm -rf "$work/data-$1"
	"$build/vsrhost" "$work/$1.lua" >>"$work/$1.log" 2>&1 &
	sup=$!
	i=0
	until "$build/vsrctl" -c "$work/$1.lua" -t 1000 put ready 1 >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "cluster did not start"; cat "$work/$1.log"; exit 1; }
	done
	for c in $clients; do
		printf '%-6s %4s clients: ' "$1" "$c"
		"$build/vsrbench" -c "$work/$1.lua" --clients "$c" --duration "$secs" \
			--value-size 100 2>&1 | grep -E 'ops/s|puts/s' | head -1
	done
	kill "$sup"
	wait "$sup" || true
	sup=""
}

echo "vsrbench kv put, 100-byte values, $secs s per run, $(nproc) cores, $(uname -m)"
r=1
while [ $r -le "$rounds" ]; do
	run plain
	run auth
	r=$((r + 1))
done
