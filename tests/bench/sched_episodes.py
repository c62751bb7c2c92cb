#!/usr/bin/env python3
"""sched_episodes.py - where every thread of every replica was while the
slowest client calls of a traced checkpoint_stall.sh run waited.

Usage: tests/bench/sched_episodes.py DIR [MIN_MS]
DIR is a run kept with TRACE=1 SLOW=MS (perf.data, threads.txt, clock.txt,
slow.txt). Runs `perf script` on perf.data (a minute or two for 40 s).

First, for the whole trace and each thread (r1.loop is replica 1's event
loop; vsr-log, vsr-sync, ... as docs/operations.md, "Threads"): the share
of time it ran, waited for a CPU (runnable), waited for I/O (D state); then
the block requests each kind of thread issued, and how long they took.
Then each episode (slow calls ending within 5 ms of each other) whose worst
call took MIN_MS (default 10) or more: per thread, the ms it ran, waited
for a CPU, waited in D state or slept, and its longest waits (W: for a CPU,
D: for I/O; @ their start in ms after the episode's start), and the block
requests in flight meanwhile.

How to read it: waits for a CPU of a few ms on the loop or vsr-log threads
are the machine's two CPUs shared by three replicas and the load
generator; every vsr-log thread in D state at once, for as long as the
episode, with few block requests completing meanwhile, is the disk's
flush (the host's), not the replicas."""
import collections
import os
import re
import subprocess
import sys

from slow_episodes import episodes, load_calls


def roles(d):
    """tid -> name such as r2.loop, r2.vsr-log, bench."""
    rows = [line.split(None, 2) for line in open(os.path.join(d, "threads.txt"))]
    pids = sorted({int(p) for p, t, c in rows if p == t and c.strip() == "vsrhost"})
    out = {}
    for p, t, c in rows:
        if int(p) in pids:
            name = "loop" if c.strip() == "vsrhost" and p == t else c.strip()
            out[int(t)] = f"r{pids.index(int(p)) + 1}.{name}"
    return out


SWITCH = re.compile(r"prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=.* next_pid=(\d+)")
RQ = re.compile(r"\d+,\d+ (\S+) (?:(\d+) )?\(\) (\d+) \+ (\d+)")


def trace(d, who):
    """Each thread's states as (start, end, state) and the block requests
    as (issue, complete, bytes, rwbs, issuer)."""
    state, spans = {}, collections.defaultdict(list)
    pending, rqs = {}, []
    perf = subprocess.Popen(["perf", "script", "-i", os.path.join(d, "perf.data"),
                             "-F", "comm,tid,time,event,trace"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line_re = re.compile(r"^\s*(.*?)\s+(\d+)\s+(\d+\.\d+):\s+(\S+):\s+(.*)$")

    def enter(tid, st, ts):
        if tid in state:
            spans[tid].append((state[tid][1], ts, state[tid][0]))
        state[tid] = (st, ts)

    for line in perf.stdout:
        m = line_re.match(line)
        if not m:
            continue
        comm, ts, ev, rest = m.group(1), float(m.group(3)), m.group(4), m.group(5)
        if ev == "sched:sched_switch":
            a = SWITCH.search(rest)
            if a:
                prev, pst, nxt = int(a.group(1)), a.group(2), int(a.group(3))
                if prev in who:
                    enter(prev, "W" if pst.startswith("R") else pst[0], ts)
                if nxt in who:
                    enter(nxt, "X", ts)
        elif ev == "sched:sched_wakeup":
            a = re.search(r"pid=(\d+)", rest)
            tid = int(a.group(1)) if a else -1
            if tid in who and state.get(tid, ("X",))[0] in "SD":
                enter(tid, "W", ts)
        elif ev in ("block:block_rq_issue", "block:block_rq_complete"):
            a = RQ.search(rest)
            if not a or a.group(1).startswith("F"):
                continue  # flushes complete out of order: not paired here
            key = (a.group(3), a.group(4))
            if ev.endswith("issue"):
                issuer = comm.split("/")[0]
                pending[key] = (ts, int(a.group(2) or 0), a.group(1), issuer)
            elif key in pending:
                t0, size, rwbs, issuer = pending.pop(key)
                rqs.append((t0, ts, size, rwbs, issuer))
    perf.wait()
    return spans, rqs


def share(spans, a, b):
    out = collections.Counter()
    for s, e, k in spans:
        if e > a and s < b:
            out[k] += min(e, b) - max(s, a)
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    least = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    who = roles(d)
    offset = float(open(os.path.join(d, "clock.txt")).read())
    spans, rqs = trace(d, who)
    every = [x for v in spans.values() for x in v]
    if not every:
        sys.exit("sched_episodes: no scheduler events for the replicas' threads in perf.data")
    lo, hi = min(x[0] for x in every), max(x[1] for x in every)
    print(f"traced {hi - lo:.1f} s; per thread: ran, waited for a CPU, waited in D state")
    for tid, name in sorted(who.items(), key=lambda x: x[1]):
        c = share(spans[tid], lo, hi)
        waits = [e - s for s, e, k in spans[tid] if k == "W"]
        ds = [e - s for s, e, k in spans[tid] if k == "D"]
        span = hi - lo
        print(f"  {name:16} ran {100 * c['X'] / span:4.1f}%  CPU wait {100 * c['W'] / span:4.1f}% "
              f"(longest {1000 * max(waits, default=0):.1f} ms)  D {100 * c['D'] / span:4.1f}% "
              f"(longest {1000 * max(ds, default=0):.1f} ms)")
    kinds = collections.Counter((r[4], r[3], r[2]) for r in rqs)
    print(f"block requests (flushes aside): {len(rqs)} in all, "
          f"{len(rqs) / max(hi - lo, 1e-9):.0f} a second; the most common:")
    for (issuer, rwbs, size), n in kinds.most_common(8):
        print(f"  {n:8d} {issuer} {rwbs} {size} bytes")
    lat = sorted(r[1] - r[0] for r in rqs)
    if lat:
        print(f"  their latency: p50 {1000 * lat[len(lat) // 2]:.2f} ms, "
              f"p99 {1000 * lat[len(lat) * 99 // 100]:.2f} ms, max {1000 * lat[-1]:.2f} ms")
    # The calls on perf's clock (CLOCK_MONOTONIC), within the trace.
    calls = [(start - offset, end - offset, ms) for start, end, ms in load_calls(d)
             if lo < start - offset and end - offset < hi]
    for a, b, worst, n in episodes(calls):
        if worst < least:
            continue
        print(f"episode of {1000 * (b - a):.1f} ms, worst call {worst:.1f} ms, {n} calls")
        for tid, name in sorted(who.items(), key=lambda x: x[1]):
            if "watchdog" in name or "reaper" in name or "spare" in name:
                continue
            c = share(spans[tid], a, b)
            long = [f"{k}{1000 * (e - s):.1f}@{1000 * (s - a):+.1f}" for s, e, k in spans[tid]
                    if e > a and s < b and k in "WD" and e - s > 0.0015]
            print(f"   {name:14} ran {1000 * c['X']:5.1f} CPU wait {1000 * c['W']:5.1f} "
                  f"D {1000 * c['D']:5.1f} slept {1000 * c['S']:5.1f} ms  {' '.join(long[:6])}")
        inside = [r for r in rqs if r[1] > a and r[0] < b]
        if inside:
            by = collections.Counter()
            for r in inside:
                by[r[4]] += r[2]
            print(f"   block: {len(inside)} requests, {sum(r[2] for r in inside) // 1024} KiB, "
                  f"longest {1000 * max(r[1] - r[0] for r in inside):.1f} ms; KiB by issuer: "
                  + ", ".join(f"{k} {v // 1024}" for k, v in by.most_common(4)))


if __name__ == "__main__":
    main()
