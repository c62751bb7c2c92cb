# lib.sh - what the cluster benchmarks share (POSIX sh, sourced after
# setting `root`, the source tree): a work directory removed at exit with
# every process the script started, a 3-replica config of
# statemachines/kv.lua, and a cluster started until it acknowledges a put.
#
#   bench_workdir NAME         $work := a fresh /tmp/vsr-NAME-XXXXXX; at exit
#                              the supervisor ($sup) and $pids are stopped,
#                              $bench_at_exit (a command, if set) runs, and
#                              $work is removed (kept if $bench_keep is set:
#                              then "$bench_keep $work" is printed)
#   bench_ports BASE           "BASE BASE+1 ... BASE+5"
#   bench_config FILE CLUSTER "PORTS" DURABILITY DATA_DIR [FIELDS]
#   bench_wait_put BUILD CONFIG TRIES TIMEOUT_MS
#   bench_start BUILD CONFIG LOG   (and bench_stop)
#   bench_replicas VSRHOST CONFIG  the three replicas as separate processes
#                              (their ids in $pids), logs $work/replica-N.log
#   bench_replica VSRHOST CONFIG N  replica N alone (its id also in
#                              $bench_pid_N)
#   bench_wait_normal BUILD CONFIG SECONDS [N]   until all three (or replica
#                              N) report normal
#   bench_kill_pids            stops $pids (kill -$bench_signal, default TERM,
#                              then wait)
#   bench_kill_replica N       stops replica N alone the same way

: "${root:?lib.sh: set root (the source tree) before sourcing it}"

bench_workdir() { # name
	work=$(mktemp -d "/tmp/vsr-$1-XXXXXX")
	sup=""
	pids=""
	trap bench_cleanup EXIT
	# A trapped signal would resume the script: exit, which runs the EXIT trap.
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

bench_cleanup() {
	bench_stop
	bench_kill_pids
	${bench_at_exit:-:}
	if [ -n "${bench_keep:-}" ]; then echo "$bench_keep $work"; else rm -rf "$work"; fi
}

bench_ports() { # base
	echo "$1 $(($1 + 1)) $(($1 + 2)) $(($1 + 3)) $(($1 + 4)) $(($1 + 5))"
}

# Writes FILE: cluster id CLUSTER, replicas on the first three of the six
# PORTS (127.0.0.1) and their client ports on the last three, kv.lua,
# DURABILITY (memory or durable) under DATA_DIR, more FIELDS of the table
# (each ending with a comma) and log_level $bench_log_level (warn).
bench_config() { # file cluster "ports" durability data_dir [fields]
	_file=$1 _cluster=$2 _durability=$4 _data=$5 _fields=${6:-}
	set -- $3
	cat >"$_file" <<EOC
return {
  cluster = $_cluster,
  replicas = { "127.0.0.1:$1", "127.0.0.1:$2", "127.0.0.1:$3" },
  clients  = { "127.0.0.1:$4", "127.0.0.1:$5", "127.0.0.1:$6" },
  statemachine = "$root/statemachines/kv.lua",
  data_dir = "$_data",
  durability = "$_durability",
  $_fields
  log_level = "${bench_log_level:-warn}",
}
EOC
}

# Returns 0 once a put to the cluster of CONFIG is acknowledged, 1 after
# TRIES puts of TIMEOUT_MS each were not.
bench_wait_put() { # build config tries timeout_ms
	_try=0
	until "$1/vsrctl" -c "$2" -t "$4" put ready 1 >/dev/null 2>&1; do
		_try=$((_try + 1))
		[ "$_try" -lt "$3" ] || return 1
	done
}

# Starts BUILD/vsrhost CONFIG (a supervisor that runs the three replicas)
# as $sup, its output appended to LOG, and returns once a put is
# acknowledged; exits (with LOG's tail) when none is after 100 tries.
bench_start() { # build config log
	"$1/vsrhost" "$2" >>"$3" 2>&1 &
	sup=$!
	bench_wait_put "$1" "$2" 100 1000 || {
		echo "cluster did not start"
		tail -n 40 "$3"
		exit 1
	}
}

bench_stop() {
	[ -n "$sup" ] || return 0
	kill "$sup" 2>/dev/null || true
	wait "$sup" 2>/dev/null || true
	sup=""
}

# Starts VSRHOST CONFIG --replica N in the background, writing to
# $work/replica-N.log; its process id is added to $pids and kept in
# $bench_pid_N (for bench_kill_replica).
bench_replica() { # vsrhost config n
	"$1" "$2" --replica "$3" >>"$work/replica-$3.log" 2>&1 &
	pids="$pids $!"
	eval "bench_pid_$3=$!"
}

# Replicas 1, 2 and 3 (bench_replica).
bench_replicas() { # vsrhost config
	for _i in 1 2 3; do bench_replica "$1" "$2" $_i; done
}

# Returns 0 once all three replicas of CONFIG (or replica N alone) report
# normal status, 1 when they did not within SECONDS (polled every 0.05 s:
# long_run.sh times a backup's restart by it).
bench_wait_normal() { # build config seconds [n]
	_deadline=$(($(date +%s) + $3))
	until "$1/vsrctl" -c "$2" -t 1000 status 2>/dev/null | awk -v r="${4:-0}" '
		$3 == "normal" && (r == 0 || $1 == r) { n++ }
		END { exit !(n >= (r == 0 ? 3 : 1)) }'; do
		[ "$(date +%s)" -lt "$_deadline" ] || return 1
		sleep 0.05 # poll interval
	done
}

bench_kill_pids() {
	for _p in $pids; do kill -"${bench_signal:-TERM}" "$_p" 2>/dev/null || true; done
	for _p in $pids; do wait "$_p" 2>/dev/null || true; done
	pids=""
}

# Stops replica N (started by bench_replica) with kill -$bench_signal, waits
# for it and drops it from $pids.
bench_kill_replica() { # n
	eval "_p=\${bench_pid_$1:-}"
	[ -n "$_p" ] || return 0
	kill -"${bench_signal:-TERM}" "$_p" 2>/dev/null || true
	wait "$_p" 2>/dev/null || true
	_rest=""
	for _q in $pids; do [ "$_q" = "$_p" ] || _rest="$_rest $_q"; done
	pids=$_rest
	eval "bench_pid_$1="
}
