#!/bin/sh
# cleanup_test.sh VSRJEPSEN VSRHOST ROOT OUT - vsrjepsen leaves nothing behind:
# neither when the replicas cannot start (a failure path) nor when it is
# stopped by SIGTERM mid-run. Looks for its namespaces, veths, bridge and
# replica processes by its own pid (other runs may be going on), and for
# the files libfaketime makes in /dev/shm for each replica process it is
# preloaded into (the clock nemesis), which a killed replica leaves.
set -u
jepsen=$1 vsrhost=$2 root=$3 out=$4
fail=0
leftovers() { # pid
	n=$(ip netns list 2>/dev/null | grep -c "^vj$1-")
	l=$(ip -br link 2>/dev/null | grep -c "^vj$1")
	p=$(pgrep -f "$out/.*/config.lua" | wc -l)
	echo "$n $l $p"
}
# 1. A replica program that exits at once: the cluster never comes up.
"$jepsen" --vsrhost /bin/false --root "$root" --out "$out" --time 2 --seed 1 >/dev/null 2>&1 &
pid=$!
wait $pid; rc=$?
left=$(leftovers $pid)
echo "failure path: exit $rc, leftovers (namespaces links processes): $left"
[ "$rc" -eq 2 ] && [ "$left" = "0 0 0" ] || fail=1
# 2. SIGTERM once the replicas are up and the nemesis is running.
"$jepsen" --vsrhost "$vsrhost" --root "$root" --out "$out" --time 60 --seed 2 >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ] && ! ls "$out"/run-2/replica-1.log >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
sleep 3
up=$(leftovers $pid)
replicas=$(pgrep -f "$out/.*/config.lua")
shm() { # the replicas' libfaketime files
	n=0
	for r in $replicas; do
		for f in /dev/shm/faketime_shm_$r /dev/shm/sem.faketime_sem_$r; do
			[ -e "$f" ] && n=$((n + 1))
		done
	done
	echo $n
}
shm_up=$(shm)
kill -TERM $pid
wait $pid; rc=$?
left=$(leftovers $pid)
shm_left=$(shm)
echo "SIGTERM: while running $up; exit $rc, leftovers: $left;" \
	"libfaketime files of its replicas: $shm_up while running, $shm_left after"
[ "$rc" -eq 130 ] && [ "$left" = "0 0 0" ] && [ "$shm_left" -eq 0 ] || fail=1
exit $fail
