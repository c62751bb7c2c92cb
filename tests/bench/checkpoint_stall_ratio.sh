#!/bin/sh
# checkpoint_stall_ratio.sh - issue 8's checkpoint figure: on a durable
# 3-replica cluster with KEYS keys (default 1,000,000), the worst client
# latency while checkpoints are taken, against the p99 of the same load
# without one. Runs tests/bench/checkpoint_stall.sh ROUNDS times (default
# 2) each way, alternated: "without" uses a checkpoint interval longer
# than the whole run (500,000 ops: no checkpoint after the preload),
# "with" the default 4096.
# Each round also prints the worst call in flight during some replica's
# checkpoint step (slow_episodes.py --steps), over the same p99, and the
# machine's own stalls meanwhile (hiccup.c, when built: how late a
# real-time thread on each CPU woke up), with the longest that overlapped
# the worst calls; and how many calls of each run were slower than 5x the
# p99 without, with the machine's stalls of each run: the machine stops
# both runs alike (a stop of 10-20 ms, or a device flush of 100 ms, is
# over 5x by itself), so the count with checkpoints against the count
# without says what checkpoints add.
# Usage: [WARM=S] [INTERVAL=OPS] [KEEP_RUNS=1] tests/bench/checkpoint_stall_ratio.sh BUILD_DIR [KEYS [CLIENTS [SECONDS [ROUNDS]]]]
# WARM: seconds of unmeasured load before each measured run (checkpoint_stall.sh).
# INTERVAL: the checkpoint_interval of the runs with checkpoints (default
# 4096). KEEP_RUNS=1 keeps each run's directory (logs, slow.txt) and says where.
set -eu
build=${1:?usage: checkpoint_stall_ratio.sh BUILD_DIR [KEYS [CLIENTS [SECONDS [ROUNDS]]]]}
keys=${2:-1000000}
clients=${3:-16}
seconds=${4:-40}
rounds=${5:-2}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp /tmp/vsr-stall-ratio-XXXXXX)
# The runs' directories (1.3 GB each with 1,000,000 keys) are removed at
# the end, not between rounds: this disk is mounted with `discard`, and
# removing 2 GB of files held every fdatasync on it for 87-145 ms
# (disk_floor beside an rm; docs/storage.md).
gone=""
trap 'rm -f "$out" "$out.steps"; [ -z "$gone" ] || rm -rf $gone' EXIT INT TERM
figure() { # $1 = p99|max, from the run's latency line
	sed -n "s/.*latency ms .* $1 \([0-9.]*\).*/\1/p" "$out" | tail -1
}
echo "checkpoint_stall_ratio: $keys keys, $clients clients, $seconds s, $rounds rounds, checkpoint every ${INTERVAL:-4096} ops, warm-up ${WARM:-0} s; load $(cut -d' ' -f1-3 /proc/loadavg)"
i=1
while [ "$i" -le "$rounds" ]; do
	for mode in without with; do
		# Without: no write-back of the map at all, cleanings (docs/storage.md)
		# off too, as this baseline was measured before they came: they
		# would add their I/O to it and raise the p99 the ratio divides by.
		if [ "$mode" = without ]; then interval=500000 clean=0; else interval=${INTERVAL:-4096} clean=; fi
		# Both runs keep every call over 2 ms (slow.txt) and the logs, for
		# the step figure and the counts below.
		VSRH_CLEAN_AFTER_MS=$clean KEEP=1 SLOW=2 CHECKPOINT=$interval DURABILITY=durable WARM=${WARM:-0} \
			"$here/checkpoint_stall.sh" "$build" "$keys" "$clients" "$seconds" >"$out" 2>&1 ||
			{ cat "$out"; exit 1; }
		ck=$(sed -n 's/.*checkpoints taken (all replicas): \([0-9]*\).*/\1/p' "$out")
		ckstep=$(sed -n 's/.*longest checkpoint step \([0-9.]*\) ms.*/\1/p' "$out")
		echo "round $i $mode checkpoints: p99 $(figure p99) ms, max $(figure max) ms" \
			"($ck checkpoints in all, longest step ${ckstep:-0} ms; load $(cut -d' ' -f1 /proc/loadavg))"
		eval "p99_$mode=\$(figure p99) max_$mode=\$(figure max)"
		eval "kept_$mode=\$(sed -n 's/.*logs kept in //p' \"\$out\")"
		eval "stalls_$mode=\$(sed -n 's/^checkpoint_stall: machine stalls (hiccup): .* worst \([0-9.]*\) ms.*/\1/p' \"\$out\")"
	done
	# Calls slower than 5x the p99 without, in each run (slow.txt: "... X ms").
	over() { # kept dir
		awk -v lim="$(echo "$p99_without" | awk '{print 5 * $1}')" \
			'{ if ($(NF - 1) + 0 > lim) n++ } END { print n + 0 }' "$1/slow.txt" 2>/dev/null || echo "?"
	}
	echo "round $i: calls slower than 5x the p99 without ($(echo "$p99_without" | awk '{printf "%.1f", 5 * $1}') ms):" \
		"$(over "$kept_with") with checkpoints, $(over "$kept_without") without" \
		"(machine stalls up to ${stalls_with:-?} and ${stalls_without:-?} ms)"
	# The machine's own floor: the run without checkpoints, in its first 28 s.
	# Its map is never synced (no checkpoint, no cleaning), so 30 s after the
	# measured run's first write the kernel's flusher writes it back in one
	# burst (50-140 ms calls): before that nothing of the store touches the
	# disk but the log, and a call slower than 5x the p99 there is the
	# machine's (a VM stop, a device flush the host held) or the log's.
	early=$(python3 - "$here" "$kept_without" "$p99_without" <<'PY' 2>/dev/null || echo "?"
import os, sys
sys.dont_write_bytecode = True  # (no __pycache__ left in tests/bench)
sys.path.insert(0, sys.argv[1])
from slow_episodes import load_calls, stamp
d, p99 = sys.argv[2], float(sys.argv[3])
t0 = stamp(open(os.path.join(d, "start.txt")).read())
early = [ms for _, end, ms in load_calls(d) if end - t0 < 28]
worst = max(early, default=0)
print("worst call %.1f ms = %.1fx its p99, %d calls over 5x"
      % (worst, worst / p99, sum(ms > 5 * p99 for ms in early)))
PY
)
	echo "round $i: without checkpoints, first 28 s (before the kernel's write-back of its unsynced map): $early"
	[ -n "${KEEP_RUNS:-}" ] && echo "round $i: runs kept in $kept_without and $kept_with" || gone="$gone $kept_without"
	# The figure: worst latency with checkpoints over p99 without.
	echo "round $i: max with checkpoints / p99 without = $max_with / $p99_without =" \
		"$(echo "$max_with $p99_without" | awk '{printf "%.2f", $1 / $2}')x (aim: under 5x)"
	# And the worst call in flight while some replica's checkpoint step ran
	# (the take, or the commit in its turn), over the same p99: what the
	# steps cost, apart from the disk's stalls between them.
	kept=$kept_with
	if [ -n "$kept" ]; then
		python3 "$here/slow_episodes.py" --steps "$kept" >"$out.steps"
		during=$(sed -n 's/^worst call during any step \([0-9.]*\) ms.*/\1/p' "$out.steps")
		if [ "${during:-0.0}" = 0.0 ]; then
			echo "round $i: no call over 2 ms during a checkpoint step"
		else
			echo "round $i: worst call during a checkpoint step / p99 without = $during / $p99_without =" \
				"$(echo "$during $p99_without" | awk '{printf "%.1f", $1 / $2}')x"
		fi
		# The machine's own stalls beside it (hiccup.c): a real-time
		# thread's late wake-ups, and the longest of them overlapping the
		# run's worst calls during a step and outside the steps.
		sed -n 's/^checkpoint_stall: machine stalls (hiccup): /machine stalls (hiccup): /p' "$out" |
			sed "s/^/round $i: /"
		sed -n "s/^machine stalls overlapping them (hiccup): /round $i: machine stalls overlapping the worst calls during a step and outside: /p" "$out.steps"
		[ -n "${KEEP_RUNS:-}" ] && cp "$out.steps" "$kept/steps.txt"
		[ -n "${KEEP_RUNS:-}" ] || gone="$gone $kept"
		rm -f "$out.steps"
	fi
	i=$((i + 1))
done
