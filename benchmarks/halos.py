"""Halo training: peak memory and time per epoch of mini-batches (``batch_nodes``) against full batch.

Each mode trains on the same synthetic catalog in its own subprocess (so each peak resident memory is
its own), on the CPU, with the HaloConfig defaults otherwise (hidden 128, 100-dim messages):

    python benchmarks/halos.py                       # 20,000 points, batches of 2,048 nodes, 5 epochs
    python benchmarks/halos.py --points 50000 --batch-nodes 4096 --epochs 3

Printed per mode: edges, seconds per epoch, peak resident memory of the process (the graph, the model
and one step's activations), and the test MAE after the epochs; then the ratios mini-batch / full batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one_mode(points: int, batch_nodes: int | None, epochs: int, threads: int) -> dict:
    import torch

    from raysym.config import HaloConfig
    from raysym.halo_data import build_graph
    from raysym.halos import train_halos

    torch.set_num_threads(threads)
    cfg = HaloConfig(points=points, epochs=epochs, batch_nodes=batch_nodes, device="cpu", report_every=epochs)
    graph = build_graph(cfg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = train_halos(graph, cfg)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "edges": len(graph.senders),
        "seconds_per_epoch": seconds / epochs,
        "peak_mib": peak / 1024,
        "graph_mib": before / 1024,
        "test_mae": result.test_mae,
        "target_std": float(graph.catalog.target.std()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--batch-nodes", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    args = parser.parse_args()
    if args.mode:
        batch = None if args.mode == "full" else int(args.mode)
        print(json.dumps(one_mode(args.points, batch, args.epochs, args.threads)))
        return
    out = {}
    for mode in ("full", str(args.batch_nodes)):
        cmd = [
            sys.executable,
            __file__,
            "--mode",
            mode,
            "--points",
            str(args.points),
            "--epochs",
            str(args.epochs),
            "--threads",
            str(args.threads),
        ]
        out[mode] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        r = out[mode]
        label = "full batch" if mode == "full" else f"batches of {mode} nodes"
        print(
            f"{label:>24}: {args.points:,} points, {r['edges']:,} edges; {r['seconds_per_epoch']:.2f} s/epoch, "
            f"peak {r['peak_mib']:,.0f} MiB (graph built: {r['graph_mib']:,.0f} MiB), "
            f"test MAE after {args.epochs} epochs {r['test_mae']:.3f} (target std {r['target_std']:.2f})"
        )
    full, mini = out["full"], out[str(args.batch_nodes)]
    print(
        f"ratio mini-batch / full batch: time per epoch {mini['seconds_per_epoch'] / full['seconds_per_epoch']:.2f}, "
        f"peak memory {mini['peak_mib'] / full['peak_mib']:.2f}, "
        "peak memory above the built graph "
        f"{(mini['peak_mib'] - mini['graph_mib']) / (full['peak_mib'] - full['graph_mib']):.2f}"
    )


if __name__ == "__main__":
    main()
