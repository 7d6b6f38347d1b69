"""Subnormal floats in a sparsifying L1 trial: optimiser steps per second with and without flushing them.

Under L1 most message components fall silent; the weights that read them stop receiving gradients, and
Adam's moments for them decay into the subnormal range (below 1.2e-38), where x86 arithmetic takes a slow
path. Given a late L1 checkpoint (a trial's ``checkpoint.pt``: model and optimiser state), this times the
same training steps (one thread, batch 64, 4 particles, L1 loss) from that state with
``torch.set_flush_denormal`` off and on, beside a reference measured in the same run: the same weights
with a fresh optimiser state (no subnormal moments). Prints each figure with its ratio to the reference.

    python benchmarks/subnormal.py runs/cpu_table/t001_*/checkpoint_000200/checkpoint.pt
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from raysym import regularizers
from raysym.model import build_model


def subnormal_share(tensors) -> tuple[int, int]:
    tiny = torch.finfo(torch.float32).tiny
    found = total = 0
    for t in tensors:
        found += int(((t != 0) & (t.abs() < tiny)).sum())
        total += t.numel()
    return found, total


def steps_per_second(model, optimizer_state, x, y, steps: int, flush: bool) -> float:
    torch.set_flush_denormal(flush)
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
    if optimizer_state is not None:
        opt.load_state_dict(copy.deepcopy(optimizer_state))
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        loss = (out.acc - y).abs().mean() + 0.01 * regularizers.l1(out.messages)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of an L1 trial late in training (2D)")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one trial per core, as a sweep runs them
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    weights = state["model"]
    hidden = weights["edge_model.0.weight"].shape[0]
    model = build_model("l1", 2, hidden, 3, weights["edge_model.6.weight"].shape[0])
    model.load_state_dict(weights)
    moments = [s[k] for s in state["optimizer"]["state"].values() for k in ("exp_avg", "exp_avg_sq")]
    found, total = subnormal_share(moments)
    print(f"{args.checkpoint}: epoch {state.get('epoch')}, {found} of {total} Adam moments subnormal")
    torch.manual_seed(0)
    x = torch.randn(64, 4, 6)
    x[..., 4] = torch.sign(x[..., 4])  # charge
    x[..., 5] = x[..., 5].abs() + 0.5  # mass
    y = torch.randn(64, 4, 2)
    rows = []
    for _ in range(2):  # interleaved, twice, so that a busy moment of the machine hits every row
        rows.append(
            {
                "fresh optimiser (reference)": steps_per_second(model, None, x, y, args.steps, flush=False),
                "late state, not flushed": steps_per_second(model, state["optimizer"], x, y, args.steps, False),
                "late state, flushed": steps_per_second(model, state["optimizer"], x, y, args.steps, True),
                "fresh optimiser, flushed": steps_per_second(model, None, x, y, args.steps, flush=True),
            }
        )
    torch.set_flush_denormal(False)
    reference = max(r["fresh optimiser (reference)"] for r in rows)
    print(f"L1 GN, 2D, {hidden} units, batch 64, one thread, best of two:")
    for name in rows[0]:
        best = max(r[name] for r in rows)
        print(f"  {name:28s} {best:8.1f} steps/s   {best / reference:5.2f}x the reference")


if __name__ == "__main__":
    main()
