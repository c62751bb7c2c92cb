# The two commands: `make run` and `make test`. Both install missing Debian
# packages first, then configure CMake into build/ and build.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
PACKAGES = build-essential cmake pkg-config liblua5.4-dev lua5.4 libuv1-dev \
	libmsgpack-dev libxxhash-dev liblmdb-dev libjansson-dev libsodium-dev lua-busted clang libclang-rt-dev procps systemd \
	iproute2 iptables faketime \
	prometheus
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build run test sim failover-bench powercut-soak checkpoint-bench checkpoint-stall-bench storage-bench long-run-bench \
	auth-bench apply-bench apply-cluster-bench read-bench clean

all: build

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@if [ -x $(BUILD)/vsrhost ] && [ -f config/kv.lua ]; then \
	  exec $(BUILD)/vsrhost config/kv.lua; \
	else \
	  exec $(BUILD)/vsrsim --demo; \
	fi

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

sim: build
	$(BUILD)/vsrsim --seeds 1..1000 --replicas 3

# Power cuts (as root): 40 cuts of every replica's disk at once under write
# load, every acknowledged write checked after each (ctest process_powercut
# does 4); then 60 rounds of cuts of one replica at a time while the other
# two serve, about 110 cuts (ctest process_powercut-minority does 4 rounds;
# docs/storage.md, "Power cuts, for real"); then both again with cleanings
# all the time (a cleaning 20 ms after each sync or cleaning began, longer
# checkpoint intervals), so that cleanings and not syncs write the stores
# back between cuts. 5-10 minutes on the shared machine.
powercut-soak: build
	$(BUILD)/proctest --vsrhost $(CURDIR)/$(BUILD)/vsrhost --root $(CURDIR) \
	  --scenario powercut --trials 40
	$(BUILD)/proctest --vsrhost $(CURDIR)/$(BUILD)/vsrhost --root $(CURDIR) \
	  --scenario powercut-minority --trials 60
	VSRH_CLEAN_AFTER_MS=20 $(BUILD)/proctest --vsrhost $(CURDIR)/$(BUILD)/vsrhost \
	  --root $(CURDIR) --scenario powercut --trials 40 --checkpoint-interval 256
	VSRH_CLEAN_AFTER_MS=20 $(BUILD)/proctest --vsrhost $(CURDIR)/$(BUILD)/vsrhost \
	  --root $(CURDIR) --scenario powercut-minority --trials 60 --checkpoint-interval 40

# Kill -9 of the primary to the first write acknowledged by the new one.
failover-bench: build
	$(BUILD)/proctest --vsrhost $(CURDIR)/$(BUILD)/vsrhost --root $(CURDIR) \
	  --scenario failover-bench --trials 10

# vsrbench kv put, durable vs memory storage, 1/16/128 clients; restart time
# and disk use (ports 23000-23005).
storage-bench: build
	tests/bench/storage_bench.sh $(BUILD)

# Issue 8's long run: puts until the log holds 1,000,000 ops (about 4.8
# million puts), a checkpoint every 10,000 ops (disk use, restart time),
# then restart times with ~1 GB of state (about 10 GB of disk, 12 minutes
# in all here; tests/bench/long_run.sh BUILD 1 runs the first part).
long-run-bench: build
	tests/bench/long_run.sh $(BUILD)

# Issue 7, finding 4: 60,000 keys, 16 clients, 60 s; view changes counted.
checkpoint-bench: build
	tests/bench/checkpoint_stall.sh $(BUILD) 60000 16 60

# Issue 8: with 1,000,000 keys on a durable cluster, the worst latency while
# checkpoints are taken against the p99 of the same load without one
# (about 8 minutes: the preload dominates).
checkpoint-stall-bench: build
	tests/bench/checkpoint_stall_ratio.sh $(BUILD)

# vsrbench kv put without and with authentication, 1 and 128 clients,
# alternated (ports 23100-23105).
auth-bench: build
	tests/bench/auth_bench.sh $(BUILD)

# Issue 11: the apply path on one core (vsrh_bench put/get rates, callgrind
# instructions per op; needs valgrind). BASE=DIR: a build of an earlier
# commit measured in the same run.
apply-bench: build
	@command -v valgrind >/dev/null || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  valgrind </dev/null; }
	tests/bench/apply_bench.sh $(BUILD) $(BASE)

# Issue 11: vsrbench --mix put:100, 3 replicas, 1/16/128 clients, memory and
# durable; etcd (installed here, not in PACKAGES) beside them with ETCD=1
# (the package's own etcd service, where the system starts services, listens
# on 2379; the bench runs its own members). BASE=DIR as above (ports
# 26000-26005, 26100-26105).
apply-cluster-bench: build
	@if [ "$(ETCD)" = 1 ] && ! command -v etcd >/dev/null; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends etcd-server </dev/null; fi
	ETCD=$(ETCD) tests/bench/apply_cluster_bench.sh $(BUILD) $(BASE)
# Issue 11: vsrbench --mix get:90,put:10 and put:100 at 1, 16 and 128
# clients, gets through the log (before) and as linearizable reads (after),
# alternated in one run (ports 25000-25005).
read-bench: build
	tests/bench/read_bench.sh $(BUILD)
	tests/bench/read_callgrind.sh $(BUILD)

clean:
	rm -rf $(BUILD)
