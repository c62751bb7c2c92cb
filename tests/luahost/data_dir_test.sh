#!/bin/sh
# data_dir_test.sh - a data directory vsrhost cannot create or write is a
# config error: exit 78 (EX_CONFIG, which a supervisor does not restart in a
# loop, where 74 means a failing disk) and a message naming the config file,
# the key `data_dir` and what was expected (docs/config.md "Errors").
# Usage: data_dir_test.sh VSRHOST. Nothing listens: the replica stops before
# it binds its ports (127.0.0.1:7394-7395, never opened).
set -u
vsrhost=$1
dir=$(mktemp -d /tmp/vsr-data-dir-test-XXXXXX)
trap 'chmod -R u+w "$dir" 2>/dev/null; rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp statemachines/kv.lua "$dir/kv.lua"
fails=0

config() { # NAME DATA_DIR
	cat > "$dir/$1.lua" <<CFG
return { cluster = 9, replicas = { "127.0.0.1:7394" }, clients = { "127.0.0.1:7395" },
         statemachine = "kv.lua", dedup = "$PWD/lua/vsr/dedup/oldest.lua",
         data_dir = "$2", durability = "durable" }
CFG
	chmod 644 "$dir/$1.lua"
}

. "$(dirname "$0")/../tools/expect.sh"

# A regular file where the directory should be.
: > "$dir/afile"
config file "$dir/afile"
expect 78 "file.lua: data_dir: expected a directory this replica can write, but $dir/afile: Not a directory" \
	"$vsrhost" "$dir/file.lua" --replica 1

# A directory this process may not write: as root, run as nobody (root
# ignores mode bits); otherwise a directory without write permission.
mkdir "$dir/locked"
config locked "$dir/locked/kv"
if [ "$(id -u)" = 0 ]; then
	if command -v setpriv >/dev/null 2>&1; then
		expect 78 "locked.lua: data_dir: expected a directory this replica can write, but $dir/locked/kv: Permission denied" \
			setpriv --reuid=65534 --regid=65534 --clear-groups "$vsrhost" "$dir/locked.lua" --replica 1
		# The replica's own directory exists but is not writable: before,
		# the lock was skipped and the first log segment failed with 74.
		mkdir -p "$dir/locked/kv/replica-1"
		expect 78 "locked.lua: data_dir: expected a directory this replica can write, but $dir/locked/kv/replica-1: Permission denied" \
			setpriv --reuid=65534 --regid=65534 --clear-groups "$vsrhost" "$dir/locked.lua" --replica 1
	else
		echo "skip: no setpriv to drop root"
	fi
else
	chmod 555 "$dir/locked"
	expect 78 "locked.lua: data_dir: expected a directory this replica can write, but $dir/locked/kv: Permission denied" \
		"$vsrhost" "$dir/locked.lua" --replica 1
fi

# A writable one gets past storage (stopped by SIGTERM once its storage
# reports the empty directory, or when it ends, e.g. on a busy port).
config ok "$dir/ok"
"$vsrhost" "$dir/ok.lua" --replica 1 > "$dir/ok.log" 2>&1 &
pid=$!
i=0
while ! grep -q "no state; unjoined" "$dir/ok.log" && [ $i -lt 200 ] && kill -0 $pid 2>/dev/null; do
	sleep 0.05
	i=$((i + 1))
done
if grep -q "no state; unjoined" "$dir/ok.log"; then echo "ok: a writable data_dir starts"; else
	echo "FAIL: a writable data_dir did not start: $(cat "$dir/ok.log")"
	fails=$((fails + 1))
fi
kill -TERM $pid 2>/dev/null
wait $pid

[ "$fails" -eq 0 ] && echo "all passed" && exit 0
echo "$fails failed"
exit 1
