#!/usr/bin/env python3
"""slow_episodes.py - lines up a checkpoint_stall.sh run's slow client calls
with the replicas' checkpoint lines.

Usage: tests/bench/slow_episodes.py DIR [MIN_MS]
       tests/bench/slow_episodes.py --steps DIR
DIR is a run kept with SLOW=MS KEEP=1 (slow.txt, replica-N.log). Calls that
ended within 5 ms of each other form one episode; each episode of at least
MIN_MS (default 10) is printed with the replicas' checkpoint, status and
slow-step lines from 1.5 s before it to 0.3 s after, as offsets from the
episode's start.

Where the run kept hiccup.txt (tests/bench/hiccup.c: wake-ups of a
real-time thread on each CPU late by SLOW ms or more), the machine's own
stalls are shown too: in an episode's lines, and for the worst calls of
--steps, the longest stall of the machine that overlapped each.

--steps: the worst slow call in flight during some replica's checkpoint step
(a take, or a commit in the replica's turn: the step's line is logged when
it ends, with its length), by replica, and the worst call during none: what
the steps themselves cost clients, apart from the disk's other stalls. Only
calls slower than the run's SLOW are known: keep the run with SLOW at or
below the p99 for this to mean anything."""
import datetime
import glob
import os
import re
import sys


def stamp(s):
    """Seconds since the epoch of a log or vsrbench stamp (UTC)."""
    return datetime.datetime.strptime(s[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def load_calls(d):
    """(start, end, ms) of each slow call."""
    calls = []
    for line in open(os.path.join(d, "slow.txt")):
        m = re.match(r"(\S+) slow \w+: ([\d.]+) ms", line)
        if m:
            end, ms = stamp(m.group(1)), float(m.group(2))
            calls.append((end - ms / 1000, end, ms))
    return calls


def episodes(calls):
    """Calls (start, end, ms) that ended within 5 ms of each other, as
    [earliest start, last end, worst ms, calls], in order."""
    out = []
    for start, end, ms in sorted(calls, key=lambda c: c[1]):
        if out and end - out[-1][1] < 0.005:
            e = out[-1]
            e[0], e[1], e[2], e[3] = min(e[0], start), end, max(e[2], ms), e[3] + 1
        else:
            out.append([start, end, ms, 1])
    return out


def load_hiccups(d):
    """(start, end, ms) of each stall of the machine (hiccup.txt)."""
    out = []
    path = os.path.join(d, "hiccup.txt")
    if os.path.exists(path):
        for line in open(path):
            m = re.match(r"(\S+) hiccup: cpu \d+ late ([\d.]+) ms", line)
            if m:
                due, ms = stamp(m.group(1)), float(m.group(2))
                out.append((due, due + ms / 1000, ms))
    return out


def stall_during(hiccups, start, end):
    """The longest machine stall overlapping [start, end], in ms."""
    return max((h[2] for h in hiccups if h[0] <= end and h[1] >= start), default=0.0)


def steps(d):
    calls = load_calls(d)
    hiccups = load_hiccups(d)
    windows = []  # (start, end, replica)
    for path in sorted(glob.glob(os.path.join(d, "replica-*.log"))):
        who = os.path.basename(path)[len("replica-"):-len(".log")]
        for line in open(path):
            m = re.search(r"checkpoint at op \d+.*the step that took it: ([\d.]+) ms", line)
            if m:
                # the line's stamp is in ms: the window is widened by 1 ms
                t = stamp(line)
                windows.append((t - float(m.group(1)) / 1000 - 0.001, t + 0.001, who))
    worst = {}
    outside = (0.0, 0.0, 0.0)  # ms, start, end
    inside = (0.0, 0.0, 0.0)
    for start, end, ms in calls:
        hit = [w for w in windows if start <= w[1] and end >= w[0]]
        for w in hit:
            worst[w[2]] = max(worst.get(w[2], 0.0), ms)
        if hit and ms > inside[0]:
            inside = (ms, start, end)
        if not hit and ms > outside[0]:
            outside = (ms, start, end)
    for who in sorted(set(w[2] for w in windows)):
        n = sum(1 for w in windows if w[2] == who)
        print(f"replica {who}: {n} checkpoint steps; worst call in flight during one "
              f"{worst.get(who, 0.0):.1f} ms")
    print(f"worst call during any step {max(worst.values(), default=0.0):.1f} ms; "
          f"during none {outside[0]:.1f} ms ({len(calls)} slow calls)")
    if hiccups:
        print(f"machine stalls overlapping them (hiccup): "
              f"{stall_during(hiccups, inside[1], inside[2]):.1f} ms and "
              f"{stall_during(hiccups, outside[1], outside[2]):.1f} ms; "
              f"the run's longest {max(h[2] for h in hiccups):.1f} ms")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--steps":
        return steps(sys.argv[2])
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    least = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    calls = load_calls(d)
    events = []
    for path in sorted(glob.glob(os.path.join(d, "replica-*.log"))):
        for line in open(path):
            if re.search(r"checkpoint at op|slow step|status ", line):
                events.append((stamp(line), line[24:].strip()))
    for start, _, ms in load_hiccups(d):
        events.append((start, f"machine stall (hiccup): {ms:.1f} ms"))
    events.sort()
    for _, last, worst, n in episodes(calls):
        if worst < least:
            continue
        start = last - worst / 1000
        when = datetime.datetime.fromtimestamp(last, datetime.timezone.utc)
        print(f"episode ending {when:%H:%M:%S.%f}"[:-3] + f": worst {worst:.1f} ms, {n} calls")
        for t, text in events:
            if text.startswith("machine stall") and not start - 0.05 < t < last:
                continue
            if start - 1.5 < t < last + 0.3:
                print(f"    {t - start:+.3f} s  {text[:90]}")


if __name__ == "__main__":
    main()
