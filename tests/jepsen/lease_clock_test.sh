#!/bin/sh
# lease_clock_test.sh within|beyond VSRJEPSEN VSRHOST ROOT OUT - lease reads
# against a replica whose monotonic clock runs fast (vsrjepsen --clock-rate,
# the libvsrclockrate.so shim). The cluster bounds drift at 50,000 ppm; the
# nemesis is partition-creep (the primary cut from one backup, then from
# all), where a new view waits only for the second backup's lease promise.
# Readers (clients that only read) stay with the old primary, writers move
# to the new one within 50 ms.
#   within: replica 1 runs 45,000 ppm fast, inside the bound: every run
#           must be linearizable (exit 0).
#   beyond: replica 1 runs 3,000,000 ppm fast (4x): its promise ends after
#           75 ms where the old primary's lease lasts 260 ms, and a lease
#           read there returns a value older than a write the new primary
#           acknowledged; the checker must say so (exit 1) in one of up to
#           five runs.
# Partitions need root (network namespaces): skipped (77) otherwise.
set -u
mode=$1 jepsen=$2 vsrhost=$3 root=$4 out=$5
[ "$(id -u)" = 0 ] || { echo "skipped: partitions need root"; exit 77; }
run() { # rate seed seconds
	"$jepsen" --vsrhost "$vsrhost" --root "$root" --out "$out" --time "$3" \
		--lease-reads 50000 --clock-rate "$1@1" --nemesis partition-creep \
		--quiet-ms 300-800 --hold-ms 800-1500 --attempt-ms 50 --clients 12 --readers 5 \
		--rate 900 --keys 2 --seed "$2"
}
case $mode in
within)
	run 45000 11 30
	rc=$?
	echo "lease_clock_test within: vsrjepsen exit $rc, wanted 0"
	[ "$rc" -eq 0 ] ;;
beyond)
	# A partition-creep catches a stale read when the fast replica is not
	# the primary nor the backup cut first, and the next view's primary
	# is not the old one: 3 runs of 4 were caught at 30 s, 9 of 11 at 4x
	# with this workload. Up to five runs (these three seeds' schedules
	# favour it; a seed run again differs in timing), the first violation
	# ends it: all five missing is about one in a thousand.
	for seed in 5004 5006 5007 5004 5006; do
		run 3000000 $seed 25
		rc=$?
		echo "lease_clock_test beyond: seed $seed, vsrjepsen exit $rc (1 wanted)"
		[ "$rc" -eq 1 ] && exit 0
	done
	exit 1 ;;
*) echo "usage: $0 within|beyond ..."; exit 64 ;;
esac
