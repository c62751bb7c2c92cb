#!/usr/bin/env bash
# maelstrom_node.sh - one vsrhost-maelstrom node on stdin/stdout:
#  1. operations that arrive together on a node with no session answer
#     every one (the operation after a REGISTER is not submitted from inside
#     the step that answered the REGISTER, which lost the replies after it);
#  2. a line longer than any message (100 MB, no newline) is dropped as it
#     arrives, not held in memory, and what follows is answered.
# Usage: maelstrom_node.sh VSRHOST-MAELSTROM CONFIG
set -euo pipefail
bin=$1 config=$2
dir=$(mktemp -d /tmp/vsr-maelstrom-node-XXXXXX)
cleanup() { if [[ -n ${M_PID:-} ]]; then { kill -9 "$M_PID"; wait "$M_PID"; } 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO exited $?"; tail -n 20 "$dir/stderr" 2>/dev/null' ERR
# The config with its paths made absolute and a data directory of this
# run's own (the shipped one shares data/maelstrom with every other run).
root=$(cd "$(dirname "$config")" && pwd)
sed -e "s|\"\.\./|\"$root/../|g" -e "s|data_dir = .*|data_dir = \"$dir/data\",|" \
	"$config" >"$dir/maelstrom.lua"
config=$dir/maelstrom.lua
# Under AddressSanitizer, freed read buffers sit in its quarantine (256 MB
# by default) and would count as resident: keep it small.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1"
coproc M { exec "$bin" "$config" 2>"$dir/stderr"; }
# Copies: bash closes the coprocess descriptors in subshells (the pipeline).
exec {to}>&"${M[1]}" {from}<&"${M[0]}"
fail() { echo "FAIL: $*"; tail -5 "$dir/stderr"; exit 1; }
next() { IFS= read -r -t 20 line <&"$from" || fail "no answer within 20 s ($1)"; }
send() { echo "{\"src\":\"c1\",\"dest\":\"n1\",\"body\":$1}" >&"$to"; }

echo '{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}' >&"$to"
next init; [[ $line == *init_ok* ]] || fail "$line"
# The node is primary once a read is answered (error 20: no such key);
# until then each read is refused at once (11): ask again every 20 ms, for
# at most 10 s.
for id in $(seq 10 510); do
	send "{\"type\":\"read\",\"msg_id\":$id,\"key\":0}"
	next "read $id"
	[[ $line == *'"code":20'* || $line == *read_ok* ]] && break
	[[ $id == 510 ]] && fail "the node never answered a read: $line"
	sleep 0.02 # the poll interval, not a synchronisation
done

# 1. Three operations at once: the first takes the idle session, the other
# two register sessions in the same batch.
send '{"type":"write","msg_id":100,"key":1,"value":7}'
send '{"type":"write","msg_id":101,"key":2,"value":8}'
send '{"type":"read","msg_id":102,"key":1}'
answered=""
for _ in 1 2 3; do
	next "the three operations (answered so far: ${answered:-none})"
	[[ $line =~ \"in_reply_to\":(10[012]) ]] && answered+="${BASH_REMATCH[1]} "
done
echo "answered together: $answered"

# 2. 100 MB without a newline, then the newline, then a read.
head -c 100000000 /dev/zero | tr '\0' x >&"$to"
echo >&"$to"
send '{"type":"read","msg_id":200,"key":2}'
next "the read after the long line"
[[ $line == *'"in_reply_to":200'* && $line == *'"value":8'* ]] || fail "after the long line: $line"
grep -q 'longer than any message' "$dir/stderr" || fail "the dropped line is not logged"
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$M_PID/status")
echo "peak resident memory: $hwm_kb kB"
# The line must not have been kept: well under its 100 MB.
(( hwm_kb < 80000 )) || fail "peak memory $hwm_kb kB: the long line was buffered"
echo "ok: three operations at once all answered; the 100 MB line dropped, the next read answered"
