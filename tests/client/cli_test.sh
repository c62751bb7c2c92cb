#!/bin/sh
# cli_test.sh - vsrctl and vsrbench exit codes and messages, without a cluster.
# Usage: cli_test.sh BUILD_DIR. Uses ports 7398-7399 on 127.0.0.1, where
# nothing listens, so every call must end "failed" (never "unknown").
set -u
build=$1
dir=$(mktemp -d /tmp/vsr-cli-test-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0

cat > "$dir/none.lua" <<'CFG'
return { cluster = 9, replicas = { "127.0.0.1:7398" }, clients = { "127.0.0.1:7399" },
         statemachine = "kv.lua", data_dir = "data", durability = "memory" }
CFG
: > "$dir/kv.lua"

. "$(dirname "$0")/../tools/expect.sh"

ctl=$build/vsrctl
bench=$build/vsrbench
expect 0 "usage: vsrctl" "$ctl" --help
expect 0 "vsrctl " "$ctl" --version
expect 64 "CONFIG is required" "$ctl" put k v
expect 64 "takes 2 arguments" "$ctl" -c "$dir/none.lua" put k
expect 64 "unknown command" "$ctl" -c "$dir/none.lua" frobnicate
expect 64 "timeout" "$ctl" -c "$dir/none.lua" -t 0 get k
expect 78 "none-such.lua" "$ctl" -c "$dir/none-such.lua" get k
# status too: 78 is vsrctl's own config; replicas whose configurations
# differ give 76 (process_config-mismatch).
expect 78 "none-such.lua" "$ctl" -c "$dir/none-such.lua" status
expect 65 "not valid JSON" "$ctl" -c "$dir/none.lua" call '{"op":'
expect 69 "failed: could not register a session" "$ctl" -c "$dir/none.lua" -t 300 --attempt 100 put k v
expect 69 "unreachable" "$ctl" -c "$dir/none.lua" -t 300 status
# Reads outside the log need no session: nothing answers, so "failed" (a
# query can never be "unknown", it changes nothing).
expect 69 "failed: no replica could be reached" "$ctl" -c "$dir/none.lua" -t 300 --attempt 100 get k
expect 69 "failed" "$ctl" -c "$dir/none.lua" -t 300 --attempt 100 --stale query '{"op":"get","key":"k"}'
expect 65 "not valid JSON" "$ctl" -c "$dir/none.lua" query '{"op":'
expect 69 "failed: could not register a session" "$ctl" -c "$dir/none.lua" -t 300 --attempt 100 --via-log get k
expect 0 "usage: vsrbench" "$bench" --help
expect 64 "--mix" "$bench" -c "$dir/none.lua" --mix put:1,frob:2
expect 64 "--clients" "$bench" -c "$dir/none.lua" --clients 0
expect 64 "--read-mode" "$bench" -c "$dir/none.lua" --read-mode sometimes
expect 78 "none-such.lua" "$bench" -c "$dir/none-such.lua"

if [ "$fails" -ne 0 ]; then
	echo "cli_test: $fails failures"
	exit 1
fi
echo "cli_test: all passed"
