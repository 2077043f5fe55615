#!/usr/bin/env python3
r"""Why a CPU is idle: for lack of work, or while a runnable thread waits on another CPU's run queue.

Usage:
    perf record -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_wakeup_new \
        -e sched:sched_migrate_task -a -o sched.perf -- sleep 4
    perf script -i sched.perf -F cpu,time,event,trace > sched.txt
    python3 tests/scripts/sched_idle.py sched.txt [--min-wait-us 50]

Replays the scheduler events: which thread runs on each CPU (pid 0 = idle), and which threads are runnable
but not running (woken, or preempted while runnable) and on which CPU's queue. For each CPU it prints the
share of the span it was idle, and how much of that it was idle while a thread had waited longer than
--min-wait-us on another CPU's queue (work existed; the kernel did not move it), and which threads waited.
A thread woken onto the idle CPU itself is not counted: that gap is the wake-up's own latency.
"""
import argparse
import re
import sys
from collections import Counter

LINE = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)")
SWITCH = re.compile(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)")
WAKE = re.compile(r"comm=(.*) pid=(\d+) prio=\d+ target_cpu=(\d+)")
MIGRATE = re.compile(r"comm=(.*) pid=(\d+) prio=\d+ orig_cpu=(\d+) dest_cpu=(\d+)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", help="output of `perf script -F cpu,time,event,trace`")
    parser.add_argument("--min-wait-us", type=float, default=50.0, help="count a waiting thread after this long")
    opts = parser.parse_args()
    min_wait = opts.min_wait_us / 1e6
    running = {}  # cpu -> pid (0: idle)
    queued = {}  # pid -> (cpu, runnable since)
    names = {}
    idle, idle_with_work = Counter(), Counter()
    waiters = Counter()
    first = last = None
    for line in open(opts.events, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        cpu, t, event, trace = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        if first is None:
            first = t
        if last is not None:
            dt = t - last
            for c, pid in running.items():
                if pid != 0:
                    continue
                idle[c] += dt
                elsewhere = {p for p, (qc, since) in queued.items() if qc != c and last - since > min_wait}
                if elsewhere:
                    idle_with_work[c] += dt
                    for p in elsewhere:
                        waiters[names.get(p, "?")] += dt / len(elsewhere)
        last = t
        if event == "sched:sched_switch":
            s = SWITCH.search(trace)
            if not s:
                continue
            prev, state, nxt = int(s.group(2)), s.group(3), int(s.group(5))
            names[prev], names[nxt] = s.group(1), s.group(4)
            if prev != 0 and state.startswith("R"):
                queued[prev] = (cpu, t)
            queued.pop(nxt, None)
            running[cpu] = nxt
        elif event in ("sched:sched_wakeup", "sched:sched_wakeup_new"):
            w = WAKE.search(trace)
            if w:
                pid, target = int(w.group(2)), int(w.group(3))
                names[pid] = w.group(1)
                if running.get(target) != pid:
                    queued[pid] = (target, t)
        elif event == "sched:sched_migrate_task":
            g = MIGRATE.search(trace)
            if g and int(g.group(2)) in queued:
                pid = int(g.group(2))
                queued[pid] = (int(g.group(4)), queued[pid][1])
    if first is None or last == first:
        sys.exit("no scheduler events in the input")
    span = last - first
    print(f"span {span:.2f} s")
    for c in sorted(idle):
        print(
            f"cpu{c}: idle {100 * idle[c] / span:.1f} % of the span; idle while a thread had waited "
            f"> {min_wait * 1e6:.0f} us on another CPU's queue {100 * idle_with_work[c] / span:.1f} %"
        )
    print("threads that waited while a CPU was idle (seconds, shared among simultaneous waiters):")
    for name, secs in waiters.most_common(10):
        print(f"  {secs:7.3f}  {name}")


if __name__ == "__main__":
    main()
