#!/usr/bin/env python3
"""Where the consensus driver's CPU goes, from the same `perf script` output as perf_buckets.py.

Usage: python3 tests/scripts/perf_driver.py perf.script [--top N]

Prints the driver's share of the node's samples (samples with a `driver::Driver` frame), the leaf buckets of
those samples (perf_buckets.py's buckets), and the driver method nearest the leaf with the next two of our
functions below it, so "commit > on_block_committed > remove" reads as the driver committing a block and
pruning the pool. On-CPU only: a driver waiting for a core, a lock or an fsync has no samples; compare its
share with `ledger_driver_busy_seconds_total` to see how much of its wall time it spends off the CPU.
"""
import re
import sys
from collections import Counter

from perf_buckets import bucket, samples

OURS = re.compile(r"(node::|ledger_core::)")
NOISE = re.compile(r"::\{\{closure\}\}|::h[0-9a-f]{16}|\+0x[0-9a-f]+| \([^)]*\)$")


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    top = int(args[args.index("--top") + 1]) if "--top" in args else 25
    total = driver = 0
    leaves, paths = Counter(), Counter()
    for _comm, frames in samples(args[0]):
        total += 1
        if not any("driver::Driver" in f for f in frames):
            continue
        driver += 1
        leaves[bucket(frames[0]) if frames else "none"] += 1
        ours = [NOISE.sub("", f) for f in reversed(frames) if OURS.search(f)]
        at = max((i for i, f in enumerate(ours) if "driver::Driver" in f), default=0)
        paths[" > ".join(ours[at : at + 3])] += 1
    if not driver:
        sys.exit(f"{total} samples, none with a driver::Driver frame")
    print(f"{total} samples, driver {driver} ({100 * driver / total:.1f} % of the node's)")
    print("\nleaf buckets of the driver's samples:")
    for name, n in leaves.most_common():
        print(f"  {100 * n / driver:5.1f} %  {name}")
    print("\ndriver method > the next two of ours (share of the driver's samples):")
    for path, n in paths.most_common(top):
        print(f"  {100 * n / driver:5.1f} %  {path}")


if __name__ == "__main__":
    main()
