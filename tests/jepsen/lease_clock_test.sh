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
#           acknowledged; the checker must say so (exit 1). Seeds 5004-5006
#           (60 s each) were all caught.
# Partitions need root (network namespaces): skipped (77) otherwise.
set -u
mode=$1 jepsen=$2 vsrhost=$3 root=$4 out=$5
[ "$(id -u)" = 0 ] || { echo "skipped: partitions need root"; exit 77; }
case $mode in
within) rate=45000 seed=11 want=0 ;;
beyond) rate=3000000 seed=5004 want=1 ;;
*) echo "usage: $0 within|beyond ..."; exit 64 ;;
esac
"$jepsen" --vsrhost "$vsrhost" --root "$root" --out "$out" --time 30 \
	--lease-reads 50000 --clock-rate "$rate@1" --nemesis partition-creep \
	--quiet-ms 300-800 --hold-ms 800-1500 --attempt-ms 50 --clients 8 --readers 3 \
	--seed "$seed"
rc=$?
echo "lease_clock_test $mode: vsrjepsen exit $rc, wanted $want"
[ "$rc" -eq "$want" ]
