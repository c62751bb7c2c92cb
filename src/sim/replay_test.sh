#!/bin/sh
# replay_test.sh - the same seed gives the same trace and digests, twice over.
# usage: replay_test.sh VSRSIM WORKDIR
set -eu
sim=$1
dir=$2
mkdir -p "$dir"
for seed in 7 1234567; do
  for n in 3 5; do
    "$sim" --seed $seed --replicas $n --trace > "$dir/a.txt" || true
    "$sim" --seed $seed --replicas $n --trace > "$dir/b.txt" || true
    if ! cmp -s "$dir/a.txt" "$dir/b.txt"; then
      echo "seed $seed replicas $n: two replays differ:"
      diff "$dir/a.txt" "$dir/b.txt" | head -20
      exit 1
    fi
    lines=$(wc -l < "$dir/a.txt")
    if [ "$lines" -lt 100 ]; then
      echo "seed $seed replicas $n: trace suspiciously short ($lines lines)"
      exit 1
    fi
    echo "seed $seed replicas $n: identical ($lines trace lines): $(tail -n 1 "$dir/a.txt")"
  done
done
# and without --trace the digests are the same as with it
a=$("$sim" --seed 99 | sed 's/.*digest //')
b=$("$sim" --seed 99 --trace | tail -n 1 | sed 's/.*digest //')
if [ "$a" != "$b" ]; then
  echo "seed 99: tracing changed the run: '$a' vs '$b'"
  exit 1
fi
echo "seed 99: tracing does not change the run"
