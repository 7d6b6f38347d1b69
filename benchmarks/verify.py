"""What the reader's checks cost: verifying a dataset's shards against reading them.

Usage:
    python benchmarks/verify.py DATASET_FOLDER [--repeats 3]

Prints, from one run on one machine (the files in the page cache after a first untimed pass):
  * sha256:    the checksum of every shard, the verification before issue 16 (the reference);
  * verify:    `shards.verify_shards` as it is now: checksum, Parquet parse and the finiteness check of
               every float column, on the same bytes;
  * read:      `shards.read_split` of both splits without verification (what training reads anyway);
and each next to the reference as a ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import time
from pathlib import Path

from raysym import shards


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.dataset)
    manifest = shards.read_manifest(folder)
    files = [folder / s["file"] for split in shards.SPLITS for s in manifest["splits"][split]["shards"]]
    size = sum(f.stat().st_size for f in files)

    def sha_only():
        for f in files:
            hashlib.sha256(f.read_bytes()).hexdigest()

    def read_both():
        for split in shards.SPLITS:
            shards.read_split(folder, split, verify=False)

    sha_only()  # page cache
    reference = best_of(args.repeats, sha_only)
    verify = best_of(args.repeats, lambda: shards.verify_shards(folder, manifest))
    read = best_of(args.repeats, read_both)
    rows = sum(manifest["splits"][s]["rows"] for s in shards.SPLITS)
    print(
        f"{folder.name}: {len(files)} shards, {size / 2**20:.0f} MiB, {rows:,} graphs; "
        f"{platform.processor() or platform.machine()}, "
        f"best of {args.repeats}"
    )
    print(f"  sha256 (reference)         {reference:7.3f} s   1.00x")
    print(f"  verify (sha + finiteness)  {verify:7.3f} s   {verify / reference:.2f}x")
    print(f"  read both splits           {read:7.3f} s   {read / reference:.2f}x")


if __name__ == "__main__":
    main()
