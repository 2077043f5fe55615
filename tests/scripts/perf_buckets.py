#!/usr/bin/env python3
"""Bucket a `perf record --call-graph dwarf` profile of one ledgerd the way the README does.

Usage: perf script -i perf.data -F comm,tid,ip,sym,dso > perf.script
       python3 tests/scripts/perf_buckets.py perf.script [--owners N]

Prints, as shares of the node's samples:
  - buckets by the leaf frame (where the CPU actually was: signatures, kernel, allocation, ...);
  - threads (the `comm` of each sample);
  - with --owners N, the N functions of our own crates (node::, ledger_core::) that are the nearest
    caller of most samples, so allocation and copies are charged to the code that asked for them.
"""
import re
import sys
from collections import Counter

BUCKETS = [
    ("signatures (curve25519/ed25519/sha512)", re.compile(r"curve25519|ed25519|sha2::|sha512|zip215|subtle::")),
    ("kernel", re.compile(r"\[kernel")),
    ("allocation/copies (libc)", re.compile(r"malloc|free|memmove|memcpy|memset|memcmp|realloc|unlink_chunk|_int_|cfree|arena|tcache")),
    ("blake3", re.compile(r"blake3")),
    ("libp2p (gossipsub, noise, yamux)", re.compile(r"libp2p|yamux|snow::|chacha|poly1305|ring_core|multistream|quick_protobuf")),
    ("sled", re.compile(r"sled::|crossbeam_epoch")),
    ("tokio", re.compile(r"tokio::|mio::|parking_lot")),
    ("HTTP (hyper/axum)", re.compile(r"hyper::|axum::|http::|h2::|tower")),
    ("mempool/admission", re.compile(r"node::chain::mempool|node::chain::admission|keycache")),
    ("execution/state (ledger_core)", re.compile(r"ledger_core::")),
    ("encoding (borsh/serde)", re.compile(r"borsh|serde|bincode")),
    ("std collections/hash", re.compile(r"hashbrown|btree|core::hash|sip::|alloc::collections|RawVec|alloc::vec")),
    ("node (other)", re.compile(r"node::")),
]


def bucket(frame):
    for name, pat in BUCKETS:
        if pat.search(frame):
            return name
    return "other"


def samples(path):
    comm, frames = None, []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if comm is not None:
                    yield comm, frames
                comm, frames = None, []
                continue
            if not line.startswith((" ", "\t")):
                comm = line.split()[0]
                frames = []
            else:
                parts = line.strip().split(" ", 1)
                frames.append(parts[1] if len(parts) > 1 else parts[0])
    if comm is not None:
        yield comm, frames


OURS = re.compile(r"^(node::|ledger_core::|<node::|<ledger_core::)")


def main():
    path = sys.argv[1]
    owners_n = int(sys.argv[sys.argv.index("--owners") + 1]) if "--owners" in sys.argv else 0
    total = 0
    by_bucket, by_thread, by_owner = Counter(), Counter(), Counter()
    for comm, frames in samples(path):
        if not frames:
            continue
        total += 1
        leaf = frames[0]
        by_bucket[bucket(leaf)] += 1
        by_thread[comm] += 1
        if owners_n:
            owner = next((re.sub(r" \(.*$", "", f) for f in frames if OURS.search(f)), "(none of ours)")
            by_owner[owner[:140]] += 1
    print(f"{total} samples")
    for name, n in by_bucket.most_common():
        print(f"{100 * n / total:6.1f} %  {name}")
    print("\nthreads:")
    for name, n in by_thread.most_common(12):
        print(f"{100 * n / total:6.1f} %  {name}")
    if owners_n:
        print("\nnearest function of ours:")
        for name, n in by_owner.most_common(owners_n):
            print(f"{100 * n / total:6.1f} %  {name}")


if __name__ == "__main__":
    main()
