"""Training throughput: raysym's dense training step against a reference written like the original notebook.

Usage:
    python benchmarks/train_throughput.py                    # paper-size L1 model, batch 64 and 1024, CPU
    python benchmarks/train_throughput.py --device cuda --seconds 10
    python benchmarks/train_throughput.py --batch-sizes 64 256 1024 --hidden 128 300   # a table per width

Both sides train the same paper-size L1 Graph Network (edge and node MLPs of 3 x 300 ReLU units, 100-dim
messages, 2D spring, 4 particles) on the same simulated graphs, with Adam, the L1 regulariser over every
edge of the batch and the per-batch translation augmentation. Rates are training graphs per second for the
whole optimisation step (batching, forward, backward, optimiser), measured for ``--seconds`` after a
warm-up, in one process, one side after the other.

  * raysym:    the step that ``raysym.train.train`` runs: rows of a (graphs, n, features) tensor picked by
               index, one dense forward that yields predictions and messages together
               (``raysym.train.batch_loss``);
  * reference: the original notebook's way: a list of torch-geometric ``Data`` graphs, a torch-geometric
               ``DataLoader`` (``Batch.from_data_list`` per batch), the MessagePassing forward, and the
               messages computed a second time from ``x[edge_index]`` for the regulariser. Unlike the
               notebook, the regulariser covers every graph of the batch (the notebook's first-graph-only
               bug would make the reference cheaper by doing less of the work the loss asks for).

Prints each rate, the reference's rate and their ratio per batch size.

``--options`` (issue 29, item 4) measures instead raysym's own step under each speed option, one after another
in one process, against the plain step measured in the same run: bf16 autocast, torch.compile (inductor),
Adam's fused and for-each kernels, one thread instead of torch's default. Printed per option: optimiser steps
per second, graphs per second and the ratio to the plain step, and the loss after the same 200 seeded steps
beside the plain step's (how far the option moves the numbers).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from raysym.config import SimulationConfig, TrainConfig
from raysym.graph import batched_edge_index, node_features
from raysym.model import GraphNetwork
from raysym.regularizers import l1
from raysym.simulate import simulate
from raysym.train import augment, base_loss, batch_loss


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def make_graphs(sims: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (G, 4, 6) and y (G, 4, 2) for ``sims`` 2D spring simulations of 500 steps, stride 5."""
    cfg = SimulationConfig(system="spring", dim=2, particles=4, sims=sims, steps=500, stride=5, seed=seed)
    return node_features(simulate(cfg, "train", np.arange(sims)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, seconds: float, batch: int, warmup: int = 3) -> float:
    """Graphs per second of ``step()`` run repeatedly for at least ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    start, steps = time.perf_counter(), 0
    while True:
        step()
        steps += 1
        if steps % 5 == 0:
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps * batch / elapsed


def raysym_rate(x, y, cfg: TrainConfig, device, seconds: float) -> float:
    torch.manual_seed(cfg.seed)
    model = GraphNetwork("l1", 2, cfg.hidden, cfg.layers, cfg.msg_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = iter(())

    def step():
        nonlocal order
        idx = next(order, None)
        if idx is None:  # a new epoch: reshuffle
            order = iter(torch.randperm(len(x), generator=gen).split(cfg.batch_size))
            idx = next(order)
        xb = augment(x[idx], 2, cfg.augment, gen).to(device, non_blocking=True)
        yb = y[idx].to(device, non_blocking=True)
        loss, _, _ = batch_loss(model, cfg, xb, yb, alpha=0.01)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    return _timed(step, device, seconds, cfg.batch_size)


OPTIONS = ("plain", "adam_foreach", "adam_fused", "bf16_autocast", "compile", "one_thread")


def option_step(x, y, cfg: TrainConfig, device, option: str):
    """One optimisation step of raysym's training with ``option`` applied (see OPTIONS), as a closure
    returning the loss; the model, optimiser and batch order seeded as in :func:`raysym_rate`."""
    torch.manual_seed(cfg.seed)
    model = GraphNetwork("l1", 2, cfg.hidden, cfg.layers, cfg.msg_dim).to(device)
    adam = {"adam_foreach": {"foreach": True}, "adam_fused": {"fused": True}}.get(option, {"foreach": False})
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **adam)
    forward = torch.compile(model) if option == "compile" else model
    gen = torch.Generator().manual_seed(cfg.seed)
    order = iter(())

    def step() -> float:
        nonlocal order
        idx = next(order, None)
        if idx is None:
            order = iter(torch.randperm(len(x), generator=gen).split(cfg.batch_size))
            idx = next(order)
            if len(idx) < cfg.batch_size:  # one shape only: torch.compile would compile a second graph
                order = iter(torch.randperm(len(x), generator=gen).split(cfg.batch_size))
                idx = next(order)
        xb = augment(x[idx], 2, cfg.augment, gen).to(device, non_blocking=True)
        yb = y[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=option == "bf16_autocast"):
            loss, _, _ = batch_loss(forward, cfg, xb, yb, alpha=0.01)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    model.train()
    return step


def options_table(x, y, hidden: int, batch: int, device, seconds: float) -> None:
    """Each option's steps/s against the plain step's, and its loss after 200 seeded steps."""
    cfg = TrainConfig(data="", model="l1", batch_size=batch, hidden=hidden)
    threads = torch.get_num_threads()
    print(f"hidden {hidden}, batch {batch}:")
    print(f"{'option':>14} {'steps/s':>9} {'graphs/s':>10} {'vs plain':>9} {'loss after 200 steps':>21}")
    plain = None
    for option in OPTIONS:
        torch.set_num_threads(1 if option == "one_thread" else threads)
        step = option_step(x, y, cfg, device, option)
        losses = [step() for _ in range(200)]  # also the warm-up (torch.compile compiles here)
        rate = _timed(step, device, seconds, 1)
        plain = plain or rate
        line = f"{option:>14} {rate:>9,.1f} {rate * batch:>10,.0f} {rate / plain:>8.2f}x {losses[-1]:>21.6f}"
        print(line, flush=True)
    torch.set_num_threads(threads)


def reference_rate(x, y, cfg: TrainConfig, device, seconds: float) -> float:
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    torch.manual_seed(cfg.seed)
    model = GraphNetwork("l1", 2, cfg.hidden, cfg.layers, cfg.msg_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = x.shape[1]
    edge_index = batched_edge_index(1, n)  # one graph's edges; the loader offsets them per graph
    graphs = [Data(x=x[i], edge_index=edge_index, y=y[i]) for i in range(len(x))]
    loader = DataLoader(graphs, batch_size=cfg.batch_size, shuffle=True)
    batches = iter(())

    def step():
        nonlocal batches
        g = next(batches, None)
        if g is None:
            batches = iter(loader)
            g = next(batches)
        g = g.to(device)
        xg = g.x.clone()
        xg[:, :2] += torch.randn(1, 2, device=device) * cfg.augment
        out = model.forward_pyg(xg, g.edge_index)
        base = base_loss(out.acc, g.y, "mae")
        senders, receivers = xg[g.edge_index[0]], xg[g.edge_index[1]]
        messages, _, _ = model.edge_messages(receivers, senders)  # the notebook's second message pass
        loss = base + 0.01 * l1(messages)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    return _timed(step, device, seconds, cfg.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured time per side and batch size")
    ap.add_argument("--sims", type=int, default=200, help="simulations of training data (100 graphs each)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[300], help="widths, each a table (default 300)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--options", action="store_true", help="raysym's step under each speed option (see above)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = make_graphs(args.sims, seed=0)
    print(
        f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    # one process for every width: the data, torch's and torch-geometric's imports once (device.sh's dry run)
    for hidden in args.hidden:
        print(f"data: {len(x):,} 2D spring graphs of 4 particles; model: L1, hidden {hidden}, messages 100")
        if args.options:
            for batch in args.batch_sizes:
                options_table(x, y, hidden, batch, device, args.seconds)
            continue
        print(f"{'batch':>6} {'raysym graphs/s':>16} {'reference graphs/s':>19} {'ratio':>7}")
        for batch in args.batch_sizes:
            cfg = TrainConfig(data="", model="l1", batch_size=batch, hidden=hidden)
            fast = raysym_rate(x, y, cfg, device, args.seconds)
            ref = reference_rate(x, y, cfg, device, args.seconds)
            print(f"{batch:>6} {fast:>16,.0f} {ref:>19,.0f} {fast / ref:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
