#!/bin/sh
# replay_test.sh - the same seed gives the same trace and digests, twice over.
# usage: replay_test.sh VSRSIM WORKDIR [VSRSIM_TEETH]
# With the teeth binary, also: its core with no bug planted takes the very
# same path as the product core (the fault-injection build changes nothing
# when no bug is chosen).
set -eu
sim=$1
dir=$2
teeth=${3:-}
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
# amnesia restarts replay identically too (and the run really wipes a disk)
"$sim" --seed 7 --amnesia-ppm 1000000 --trace > "$dir/a.txt" || true
"$sim" --seed 7 --amnesia-ppm 1000000 --trace > "$dir/b.txt" || true
if ! cmp -s "$dir/a.txt" "$dir/b.txt"; then
  echo "seed 7 with amnesia: two replays differ:"
  diff "$dir/a.txt" "$dir/b.txt" | head -20
  exit 1
fi
if ! grep -q 'WIPED disk' "$dir/a.txt"; then
  echo "seed 7 with --amnesia-ppm 1000000: no wiped restart in the trace"
  exit 1
fi
echo "seed 7 with amnesia: identical, $(grep -c 'WIPED disk' "$dir/a.txt") wiped restarts"
# every issue-7 fault mode replays identically too
for seed in 5 31; do
  "$sim" --seed $seed --all-faults --trace > "$dir/a.txt" || true
  "$sim" --seed $seed --all-faults --trace > "$dir/b.txt" || true
  if ! cmp -s "$dir/a.txt" "$dir/b.txt"; then
    echo "seed $seed with --all-faults: two replays differ:"
    diff "$dir/a.txt" "$dir/b.txt" | head -20
    exit 1
  fi
  echo "seed $seed with --all-faults: identical ($(wc -l < "$dir/a.txt") trace lines)"
done
# and without --trace the digests are the same as with it
a=$("$sim" --seed 99 | sed 's/.*digest //')
b=$("$sim" --seed 99 --trace | tail -n 1 | sed 's/.*digest //')
if [ "$a" != "$b" ]; then
  echo "seed 99: tracing changed the run: '$a' vs '$b'"
  exit 1
fi
echo "seed 99: tracing does not change the run"
if [ -n "$teeth" ]; then
  for seed in 3 44; do
    a=$("$sim" --seed $seed | sed 's/.*digest //')
    b=$("$teeth" --seed $seed | sed 's/.*digest //')
    if [ "$a" != "$b" ]; then
      echo "seed $seed: vsrsim-teeth without a bug differs from vsrsim: '$b' vs '$a'"
      exit 1
    fi
  done
  echo "vsrsim-teeth without a bug follows vsrsim exactly"
fi
