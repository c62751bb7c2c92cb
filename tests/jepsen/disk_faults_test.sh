#!/bin/sh
# disk_faults_test.sh VSRJEPSEN VSRHOST ROOT WORKDIR - the disk nemeses reach
# the replicas' data with a relative --out (vsrjepsen's default is the
# relative jepsen-results): a wipe leaves the replica with no state at its
# restart, a flip finds a file to damage, and a valid run's data directory
# is removed. Before vsrjepsen made --out absolute, the replicas resolved
# the config's relative data_dir against the config's folder and kept their
# data in a nested copy of the path, where wipe and flip never looked: a
# wipe removed nothing, every flip said "no file to flip", and the data of
# valid runs stayed behind.
set -u
jepsen=$1 vsrhost=$2 root=$3 work=$4
seed=11
rm -rf "$work"
mkdir -p "$work" || exit 1
cd "$work" || exit 1
"$jepsen" --vsrhost "$vsrhost" --root "$root" --out results --durable --nemesis wipe,flip \
	--time 12 --quiet-ms 300-600 --hold-ms 500-1000 --seed $seed
rc=$?
run=results/run-$seed
fail=0
[ "$rc" -eq 0 ] || { echo "FAIL: vsrjepsen exit $rc"; fail=1; }
wipes=$(grep -c '"wipe' "$run/nemesis.jsonl")
flips=$(grep -c '"flip' "$run/nemesis.jsonl")
noflip=$(grep -c 'no file to flip' "$run/nemesis.jsonl")
# Every replica starts once with no state (a new cluster); a wiped one once more.
nostate=$(cat "$run"/replica-*.log | grep -c 'no state; unjoined')
echo "wipes $wipes, flips $flips (of them with no file to flip: $noflip), starts with no state $nostate"
[ "$wipes" -ge 1 ] && [ "$flips" -ge 1 ] || { echo "FAIL: the seed drew no wipe or no flip"; fail=1; }
[ "$noflip" -eq 0 ] || { echo "FAIL: a flip found no file"; fail=1; }
[ "$nostate" -ge $((3 + wipes)) ] || { echo "FAIL: a wiped replica restarted with its state"; fail=1; }
[ ! -e "$run/data" ] && [ ! -e "$run/results" ] ||
	{ echo "FAIL: data left behind: $(ls -d "$run"/data "$run"/results 2>/dev/null)"; fail=1; }
exit $fail
