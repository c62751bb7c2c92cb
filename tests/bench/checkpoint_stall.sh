#!/bin/sh
# checkpoint_stall.sh - issue 7, finding 4 on a real cluster: a kv.lua state
# of KEYS keys (preloaded), CLIENTS closed-loop clients for SECONDS; counts
# the view changes (there should be none while the primary is healthy) and
# the checkpoints and slow steps that could have caused them.
# Usage: tests/bench/checkpoint_stall.sh BUILD_DIR [KEYS [CLIENTS [SECONDS]]]
# Environment: DURABILITY (memory, the default, or durable), CHECKPOINT
# (checkpoint_interval, default 4096), SLOW and WARM (see below).
# (BUILD_DIR holds vsrhost, vsrctl and vsrbench; VSRHOST=path overrides the
# replica binary, to compare builds.)
# Ports come from the kernel; everything lives in a temporary directory that
# is removed at the end (KEEP=1 keeps it, with the replicas' logs).
set -eu
build=$(cd "${1:?usage: checkpoint_stall.sh BUILD_DIR [KEYS [CLIENTS [SECONDS]]]}" && pwd)
keys=${2:-60000}
clients=${3:-16}
seconds=${4:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/lib.sh"
bench_workdir ckpt-bench
[ -z "${KEEP:-}${TRACE:-}" ] || bench_keep="checkpoint_stall: logs kept in"
bench_signal=KILL
bench_log_level=info

# Nine free loopback ports, all bound at once and then released.
ports=$("$build/vsr_free_ports" 9)
set -- $ports
metrics_ports="$7 $8 $9"
bench_config "$work/cluster.lua" 4242 "$ports" "${DURABILITY:-memory}" "$work/data" \
	"metrics  = { \"127.0.0.1:$7\", \"127.0.0.1:$8\", \"127.0.0.1:$9\" },
  dedup = \"$root/lua/vsr/dedup/oldest.lua\",
  timeouts = { tick_ms = 10, heartbeat_ms = 50, primary_ms = 300,
               view_change_ms = 300, retry_ms = 100 },
  limits = { pipeline = 16, batch_requests = 256, clients = 1024,
             message_bytes = 16 * 1024 * 1024, checkpoint_interval = ${CHECKPOINT:-4096},
             instructions = 1000000, memory_bytes = 256 * 1024 * 1024 },"
bench_replicas "${VSRHOST:-$build/vsrhost}" "$work/cluster.lua"
bench_wait_normal "$build" "$work/cluster.lua" 20 ||
	{ echo "cluster did not start"; tail "$work"/replica-*.log; exit 1; }
echo "checkpoint_stall: $keys keys, $clients clients, $seconds s (3 replicas, ${DURABILITY:-memory}, checkpoint every ${CHECKPOINT:-4096} ops)"
# Per replica, from its metrics: persists and steps of 50 ms or more, and
# checkpoint syncs; the figures of the measured run are the difference of
# two snapshots, taken after the preload and after the run.
snapshot() { # $1 = file
	: >"$1"
	command -v curl >/dev/null 2>&1 || return 0
	for port in $metrics_ports; do
		# Kept runs keep each replica's whole exposition too ($1.PORT).
		curl -s "http://127.0.0.1:$port/metrics" | tee "$1.$port" | awk -v port="$port" '
			/^vsr_persist_duration_seconds_bucket.*le="0.05"/ { p50 = $2 }
			/^vsr_persist_duration_seconds_count/ { pn = $2 }
			/^vsr_step_duration_seconds_bucket.*le="0.05"/ { s50 = $2 }
			/^vsr_step_duration_seconds_count/ { sn = $2 }
			/^vsr_checkpoint_syncs_total/ { cs = $2 }
			/^vsr_checkpoint_sync_waits_total/ { cw = $2 }
			END { print port, pn - p50, pn, sn - s50, sn, cs, cw }' >>"$1"
	done
}
# The preload (a short run that puts every key first), then the measured run.
"$build/vsrbench" -c "$work/cluster.lua" -n "$clients" -k "$keys" --preload -d 0.2 >"$work/preload.txt"
grep preloaded "$work/preload.txt" || true
# WARM=S (default 0): S seconds of the same load, unmeasured, before the
# measured run. Right after a sequential preload the first seconds of
# random puts fault in and split pages no interval touched yet, in both
# modes; with WARM the figures are those of the steady state.
if [ "${WARM:-0}" != 0 ]; then
	"$build/vsrbench" -c "$work/cluster.lua" -n "$clients" -k "$keys" -d "$WARM" >"$work/warm.txt"
fi
snapshot "$work/before.txt"
# Nothing of anyone's left to write back when the measured run starts. The
# kernel's flusher writes what other programs left dirty (a build, an
# earlier run, this preload's files) in large requests, 30 s later; each
# log fdatasync is a device flush, which then waits while the host makes
# all of it durable: with 780 MB of a trace file (below) written back
# during a run, three log threads sat in D state for 100-220 ms and a call
# took 348 ms (docs/storage.md, "What the tail is made of").
sync
# SLOW=MS: the measured run prints each call slower than MS with the time it
# ended, kept in slow.txt next to the replicas' logs (KEEP=1) to line up with
# their checkpoint lines (tests/bench/slow_episodes.py DIR does that).
# Beside the measured run, the machine's own stalls (tests/bench/hiccup.c):
# how late a real-time thread on each CPU wakes up. A client call cannot be
# faster than a stall of the CPUs under it.
hiccup_pid=
if [ -x "$build/hiccup" ]; then
	"$build/hiccup" "${SLOW:-2}" >"$work/hiccup.txt" &
	hiccup_pid=$!
	pids="$pids $hiccup_pid"
fi
# TRACE=1 (root, perf): the scheduler's and the block layer's events of the
# whole machine during the measured run, in perf.data next to the logs (the
# run is kept; about 20 MB a second), for tests/bench/sched_episodes.py DIR:
# where each thread of each replica was while the slowest calls waited.
# perf writes it to memory (/dev/shm) during the run, and it is moved next
# to the logs after: written to the disk under test, its write-back was
# the run's worst stall.
trace_pid=
trace_file=
if [ -n "${TRACE:-}" ]; then
	for p in $pids; do
		for t in /proc/"$p"/task/*; do
			echo "$p ${t##*/} $(cat "$t/comm")"
		done
	done >"$work/threads.txt" 2>/dev/null
	python3 -c 'import time; print(time.time() - time.monotonic())' >"$work/clock.txt"
	trace_file=$(mktemp /dev/shm/vsr-trace-XXXXXX)
	bench_at_exit="rm -f $trace_file" # (no blank in the name)
	# TRACE=stacks adds the kernel and user stacks of every switch and a
	# CPU sample every millisecond: what a thread ran while others waited.
	stacks=
	[ "$TRACE" != stacks ] || stacks="-g -e cpu-clock/freq=1000/"
	perf record -q -a -k mono -e sched:sched_switch -e sched:sched_wakeup \
		-e block:block_rq_issue -e block:block_rq_complete $stacks \
		-o "$trace_file" -- sleep "$seconds" 2>"$work/perf.log" &
	trace_pid=$!
fi
# When the measured run starts, in the stamps of slow.txt (start.txt: for
# the figures that count from it, checkpoint_stall_ratio.sh's "first 28 s").
date -u +%Y-%m-%dT%H:%M:%S.%3NZ >"$work/start.txt"
"$build/vsrbench" -c "$work/cluster.lua" -n "$clients" -k "$keys" -d "$seconds" \
	${SLOW:+--slow "$SLOW"} 2>"$work/slow.txt"
[ -z "$trace_pid" ] || wait "$trace_pid" || true
[ -z "$trace_file" ] || mv "$trace_file" "$work/perf.data"
if [ -n "$hiccup_pid" ]; then
	kill -TERM "$hiccup_pid" 2>/dev/null || true
	wait "$hiccup_pid" 2>/dev/null || true
	# Gone: out of $pids, which the exit kills again (its id may be reused).
	rest=
	for p in $pids; do [ "$p" = "$hiccup_pid" ] || rest="$rest $p"; done
	pids=$rest
	sed -n 's/^hiccup: /checkpoint_stall: machine stalls (hiccup): /p' "$work/hiccup.txt"
fi
snapshot "$work/after.txt"
"$build/vsrctl" -c "$work/cluster.lua" status || true
if [ -s "$work/after.txt" ]; then
	paste -d' ' "$work/before.txt" "$work/after.txt" | awk '{
		printf "checkpoint_stall: replica metrics :%s, measured run: persists >= 50 ms %d of %d, steps >= 50 ms %d of %d, checkpoint syncs %d, sync waits %d\n",
			$1, $9 - $2, $10 - $3, $11 - $4, $12 - $5, $13 - $6, $14 - $7 }'
fi
vc=$(grep -h "status view_change" "$work"/replica-*.log | wc -l)
ck=$(grep -h "checkpoint at op [0-9]* (the step" "$work"/replica-*.log | wc -l)
slow=$(grep -h "slow step" "$work"/replica-*.log | sed -n 's/.*took \([0-9]*\) ms/\1/p' | sort -n | tail -1)
nslow=$(grep -h "slow step" "$work"/replica-*.log | wc -l)
# The take's step, or the commit in a replica's turn (both lines say "the
# step that took it").
ckmax=$(grep -h "checkpoint at op" "$work"/replica-*.log | sed -n 's/.*took it: \([0-9.]*\) ms.*/\1/p' | sort -n | tail -1)
echo "checkpoint_stall: view changes entered (all replicas): $vc; checkpoints taken (all replicas): $ck; slow steps: $nslow (longest ${slow:-0} ms); longest checkpoint step ${ckmax:-0} ms"
