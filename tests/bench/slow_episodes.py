#!/usr/bin/env python3
"""slow_episodes.py - lines up a checkpoint_stall.sh run's slow client calls
with the replicas' checkpoint lines.

Usage: tests/bench/slow_episodes.py DIR [MIN_MS]
DIR is a run kept with SLOW=MS KEEP=1 (slow.txt, replica-N.log). Calls that
ended within 5 ms of each other form one episode; each episode of at least
MIN_MS (default 10) is printed with the replicas' checkpoint, status and
slow-step lines from 1.5 s before it to 0.3 s after, as offsets from the
episode's start."""
import datetime
import glob
import os
import re
import sys


def stamp(s):
    return datetime.datetime.strptime(s[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    least = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    calls = []
    for line in open(os.path.join(d, "slow.txt")):
        m = re.match(r"(\S+) slow \w+: ([\d.]+) ms", line)
        if m:
            calls.append((stamp(m.group(1)), float(m.group(2))))
    events = []
    for path in sorted(glob.glob(os.path.join(d, "replica-*.log"))):
        for line in open(path):
            if re.search(r"checkpoint at op|slow step|status ", line):
                events.append((stamp(line), line[24:].strip()))
    events.sort()
    episodes = []  # [first end, last end, worst ms, calls]
    for end, ms in sorted(calls):
        if episodes and end - episodes[-1][1] < 0.005:
            e = episodes[-1]
            e[1], e[2], e[3] = end, max(e[2], ms), e[3] + 1
        else:
            episodes.append([end, end, ms, 1])
    for _, last, worst, n in episodes:
        if worst < least:
            continue
        start = last - worst / 1000
        when = datetime.datetime.fromtimestamp(last, datetime.timezone.utc)
        print(f"episode ending {when:%H:%M:%S.%f}"[:-3] + f": worst {worst:.1f} ms, {n} calls")
        for t, text in events:
            if start - 1.5 < t < last + 0.3:
                print(f"    {t - start:+.3f} s  {text[:90]}")


if __name__ == "__main__":
    main()
