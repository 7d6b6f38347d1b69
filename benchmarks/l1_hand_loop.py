"""The L1 hand loop: the first curves of sparsity against optimiser steps (BENCHMARKS.md, "Time to sparsity").

A plain training loop over raysym's own parts (``raysym.model.GraphNetwork``, ``raysym.train.augment`` and
``base_loss``, ``raysym.schedules.ScheduleShape``, ``raysym.messages``), kept beside ``benchmarks/sparsity.py``
because it is what the issue-27 curves were measured with: it trains on every training simulation (no
validation split), evaluates every ``--eval-every`` steps on 5,000 test graphs (MAE on all of them and on those
inside the pruning bounds) and on the edges of up to 1,000 in-range test graphs (sparsity share and ratio of the
message stds, R² of each of the top ``dim`` components against the force and force / receiver mass: mean and
minimum over the components, the mass-exponent diagnostic), and appends one JSON line per evaluation to ``--out``.
The L1 penalty is ``coeff * (n - 1) / (n dim) * mean over edges of sum_k |m_k|``: the paper's units
(raysym.regularizers).

The rows in ``benchmarks/results/l1_hand_loop.jsonl`` (one core each, two side by side, 2026-12-06)::

    python benchmarks/l1_hand_loop.py --name A-const-300k --steps 300000 --shape 0.01,0.01,0.01,1,1 --eval-every 10000
    python benchmarks/l1_hand_loop.py --name B-linear-300k --steps 300000 --shape 0.01,0.1,0.1,1,1 --eval-every 10000
    python benchmarks/l1_hand_loop.py --name E-charge-bn --model bottleneck --steps 40000 \
        --data data/study/charge-2d-2000 --lr 5e-4 --eval-every 5000

(the data folders: ``raysym simulate`` of 2,000 2D spring / charge simulations, 4 particles, seed 0).
``python benchmarks/l1_hand_loop.py --plot FIGURE`` draws share, ratio and R² against steps from ``--out``.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from raysym import messages, shards
from raysym.graph import node_features
from raysym.model import GraphNetwork
from raysym.schedules import ScheduleShape
from raysym.train import augment, base_loss

ap = argparse.ArgumentParser()
ap.add_argument("--name", help="the run's name in the results (required unless --plot)")
ap.add_argument("--data", default="data/study/spring-2d-2000")
ap.add_argument("--model", default="l1")
ap.add_argument("--hidden", type=int, default=128)
ap.add_argument("--steps", type=int, default=150_000)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--warmup", type=float, default=0.3)
ap.add_argument("--final-div", type=float, default=1e5)
ap.add_argument("--lr-sched", default="onecycle")
ap.add_argument("--shape", default="0.01,0.01,0.01,1.0,1.0", help="start,peak,end,peak_at,curv in notebook units")
ap.add_argument("--scale", default="notebook", help="notebook: multiply by (n-1)/(n dim); raw: as is")
ap.add_argument("--loss", default="mae")
ap.add_argument("--prune-k", type=float, default=1.5)
ap.add_argument("--eval-every", type=int, default=5000)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--msg-dim", type=int, default=100)
ap.add_argument("--wd", type=float, default=1e-8)
ap.add_argument("--node-wd", type=float, default=0.0, help="extra L2 on node model weights")
ap.add_argument("--out", default="benchmarks/results/l1_hand_loop.jsonl")
ap.add_argument("--plot", metavar="FIGURE", help="draw the curves in --out into FIGURE and stop")
args = ap.parse_args()


def plot(results: str, figure: str) -> None:
    """Share, ratio and R² (force, min over the top components) against optimiser steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list[dict]] = {}
    for line in Path(results).read_text().splitlines():
        row = json.loads(line)
        runs.setdefault(row["name"], []).append(row)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, rows in runs.items():
        if name.startswith("E-"):  # the charge bottleneck has no sparsity prior: not a sparsity curve
            continue
        steps = [r["step"] / 1000 for r in rows]
        axes[0].plot(steps, [r["share"] for r in rows], label=name)
        axes[1].plot(steps, [r["ratio"] for r in rows], label=name)
        axes[2].plot(steps, [r["r2f_min"] for r in rows], label=name)
    axes[0].axhline(0.95, color="grey", ls="--", lw=0.8)
    axes[1].axhline(10, color="grey", ls="--", lw=0.8)
    axes[1].axhline(100, color="grey", ls=":", lw=0.8)
    axes[2].axhline(0.99, color="grey", ls="--", lw=0.8)
    axes[1].set_yscale("log")
    axes[2].set_ylim(0.8, 1.0)
    titles = (
        "sparsity share (top 2 of 100 stds)",
        "sparsity ratio (2nd / 3rd std; 10 target, 100 paper)",
        "R² vs force, in distribution (worst top component)",
    )
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimiser steps (thousands)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("2D spring, L1 model, 128 units, max lr 1e-3 OneCycle, penalty in the paper's units", fontsize=10)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)


if args.plot:
    plot(args.out, args.plot)
    sys.exit(0)
if not args.name:
    ap.error("--name is required to train (or --plot FIGURE to draw)")
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

data = shards.load_dataset(args.data, prune_k=args.prune_k)
manifest = data.manifest
p = manifest["params"]
n, dim, system = p["particles"], p["dim"], p["system"]
bounds = shards.prune_bounds(manifest, args.prune_k)
x_train, y_train = node_features(data.train)
rng = np.random.default_rng(args.seed)
test_idx = np.sort(rng.choice(len(data.test), 5000, replace=False))
test = data.test.take(test_idx)
x_test, y_test = node_features(test)
inr = messages.graphs_in_range(test, bounds)
ana = test.take(np.where(inr)[0][:1000])
x_ana, _ = node_features(ana)
ana_edges_force = None

model = GraphNetwork(args.model, dim, args.hidden, 3, args.msg_dim)
opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.wd)
if args.lr_sched == "onecycle":
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.steps, final_div_factor=args.final_div, pct_start=args.warmup
    )
else:
    sched = None
s = [float(v) for v in args.shape.split(",")]
shape = ScheduleShape(start=s[0], peak=s[1], end=s[2], peak_at=s[3], curvature=s[4])
factor = (n - 1) / (n * dim) if args.scale == "notebook" else 1.0
gen = torch.Generator().manual_seed(args.seed)


def evaluate(step, t0, sums, count):
    model.eval()
    with torch.no_grad():
        acc = torch.cat([model(x_test[i : i + 2500]).acc for i in range(0, len(x_test), 2500)])
        mae_all = (acc - y_test).abs().mean().item()
        mae_in = (acc[torch.from_numpy(inr)] - y_test[torch.from_numpy(inr)]).abs().mean().item()
    edges = messages.edge_data(model, ana, system)
    stds = edges.messages.std(0)
    order = np.argsort(-stds)
    top = order[:dim]
    share = float(stds[top].sum() / stds.sum())
    ratio = float(stds[order[dim - 1]] / stds[order[dim]]) if len(stds) > dim else float("inf")
    alive = int((stds > 0.05 * stds[order[0]]).sum())
    accel = edges.force / edges.m_recv[:, None]
    r2f = [messages.r2_linear(edges.messages[:, k], edges.force)[0] for k in top]
    r2a = [messages.r2_linear(edges.messages[:, k], accel)[0] for k in top]
    alpha, r2_scaled = messages.mass_exponent(edges.messages[:, top], edges.force, edges.m_recv)
    model.train()
    row = dict(
        name=args.name,
        step=step,
        sec=round(time.perf_counter() - t0, 1),
        lr=opt.param_groups[0]["lr"],
        coeff=shape(step, args.steps),
        base=sums[0] / max(count, 1),
        reg=sums[1] / max(count, 1),
        mae_all=mae_all,
        mae_in=mae_in,
        share=share,
        ratio=ratio,
        alive=alive,
        r2f=float(np.mean(r2f)),
        r2a=float(np.mean(r2a)),
        r2f_min=float(np.min(r2f)),
        r2a_min=float(np.min(r2a)),
        alpha=alpha,
        r2_scaled=r2_scaled,
        top_std=[float(v) for v in stds[order[:6]]],
    )
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(
        json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "top_std"}),
        flush=True,
    )


t0 = time.perf_counter()
sums, count = [0.0, 0.0], 0
step = 0
steps_per_epoch = math.ceil(len(x_train) / args.batch)
while step < args.steps:
    order = torch.randperm(len(x_train), generator=gen)
    for b in range(steps_per_epoch):
        if step >= args.steps:
            break
        idx = order[b * args.batch : (b + 1) * args.batch]
        xb, yb = augment(x_train[idx], dim, 3.0, gen), y_train[idx]
        out = model(xb)
        base = base_loss(out.acc, yb, args.loss)
        coeff = shape(step, args.steps)
        if args.model == "l1":
            reg = out.messages.abs().sum(-1).mean()
            loss = base + coeff * factor * reg
        else:
            reg = torch.zeros(())
            loss = base
        if args.node_wd:
            loss = loss + args.node_wd * sum(
                (w**2).sum() for nm, w in model.node_model.named_parameters() if "weight" in nm
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        sums[0] += base.item()
        sums[1] += reg.item()
        count += 1
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step, t0, sums, count)
            sums, count = [0.0, 0.0], 0
            Path("runs/l1_hand_loop").mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), f"runs/l1_hand_loop/{args.name}.pt")
