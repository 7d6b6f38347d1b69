"""One training trial: ``train(config) -> TrainResult``, without Ray (Tune wraps it in the sweep).

Per optimisation step: a batch of graphs (default 64), one random translation N(0, 1) * 3 added to all
positions of the batch, the dense GN forward, loss = mean |a - a_hat| over nodes and components (MSE or
Huber selectable) + alpha * scale * regulariser (L1 with a scheduled alpha, or KL with alpha = kl_alpha;
scale = (n - 1) / (n dim) puts alpha in the publications' units, raysym.regularizers), Adam with weight
decay 1e-8 and OneCycleLR (max lr 1e-3, final_div_factor 1e5). After each epoch: MAE, message stds,
sparsity and (through ``probe``) the messages' R² on the validation graphs, whole training simulations held
out (:func:`split_validation`), which every decision during training reads; the test MAE when test graphs
are given (reported, never decided on); a checkpoint (written atomically) from which a later call resumes;
and the epoch's metrics handed to ``callback`` (the sweep reports them to Tune and MLflow).

A NaN or infinite loss stops the trial with status "diverged" and a reason instead of training on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from raysym import disk, physics, regularizers
from raysym.config import TrainConfig
from raysym.errors import UserError
from raysym.graph import node_features
from raysym.messages import sparsity_objective, sparsity_ratio, sparsity_share
from raysym.model import GraphNetwork, build_model
from raysym.optim import Adam
from raysym.schedules import get_schedule
from raysym.simulate import Snapshots
from raysym.trial_folder import CHECKPOINT, CONFIG, atomic_path, write_json


def pick_device(name: str) -> torch.device:
    """The torch device for ``name`` (auto, cpu, cuda, cuda:N); a CUDA device this machine lacks is a
    UserError, not a torch traceback deep in training."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        try:
            index = int(name.split(":", 1)[1]) if ":" in name else 0
        except ValueError:
            raise UserError(f"Unknown device '{name}'. Use auto, cpu, cuda or cuda:N.") from None
        if index >= count:
            has = "no CUDA GPU" if count == 0 else f"{count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})"
            raise UserError(
                f"--device {name} asks for a GPU this machine lacks: it has {has}. Use --device auto "
                "(a GPU when there is one) or --device cpu."
            )
    return torch.device(name)


def base_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mae":
        return (pred - target).abs().mean()
    if kind == "mse":
        return ((pred - target) ** 2).mean()
    return F.huber_loss(pred, target, delta=1.0)


@dataclass
class TrainResult:
    status: str  # "finished" or "diverged"
    reason: str
    model: GraphNetwork
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # last epoch's metrics
    seconds: float = 0.0


def _subsample(graphs: Snapshots, limit: int | None, rng: np.random.Generator | None) -> Snapshots:
    if limit is None or limit >= len(graphs):
        return graphs
    return graphs.take(np.sort(rng.choice(len(graphs), size=limit, replace=False)))


VALIDATION_SEED = 2006_11287  # fixed (the paper's arXiv number): every trial on a dataset holds out the same sims


def split_validation(graphs: Snapshots, fraction: float, sims: np.ndarray | None = None) -> tuple[Snapshots, Snapshots]:
    """(training graphs, validation graphs): the graphs of ``fraction`` of the simulations (at least one),
    chosen by a fixed seed among ``sims`` (the dataset's training simulation ids; default: those present), so
    every trial on a dataset, whatever its pruning factor, validates on the same simulations. Whole
    simulations, never single graphs: consecutive snapshots of one simulation are nearly the same graph, and
    a split by graph would validate on near-copies of the training data."""
    sims = np.unique(graphs.sim) if sims is None else np.asarray(sims)
    if len(sims) < 2:
        raise UserError(
            f"A validation split needs at least 2 training simulations, this dataset has {len(sims)}. "
            "Simulate more (--sims)."
        )
    count = min(len(sims) - 1, max(1, round(fraction * len(sims))))
    held = np.random.default_rng(VALIDATION_SEED).choice(sims, size=count, replace=False)
    mask = np.isin(graphs.sim, held)
    return graphs.take(~mask), graphs.take(mask)


def load_training_data(cfg: TrainConfig):
    """(train graphs, validation graphs, test graphs, prune report) from the dataset folder: the validation
    graphs are the pruned graphs of whole training simulations (:func:`split_validation`), the test graphs
    come from the test simulations, unpruned; training and test graphs subsampled as configured."""
    from raysym import shards

    data = shards.load_dataset(cfg.data, prune_k=cfg.prune_k)
    train_graphs, val_graphs = split_validation(
        data.train, cfg.validation_fraction, np.arange(data.manifest["splits"]["train"]["sims"])
    )
    rng = np.random.default_rng(cfg.seed)
    return (
        _subsample(train_graphs, cfg.max_train_graphs, rng),
        val_graphs,
        _subsample(data.test, cfg.max_test_graphs, rng),
        data.prune,
    )


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as exc:
        # torch reports a write cut short by a full disk as "unexpected pos ..." without the errno: the
        # free space left says what happened
        if disk.is_full(exc) or disk.free_bytes(path.parent) < 2**20:
            raise disk.explain(exc, f"writing the checkpoint {path}") from None
        raise


ACPCR_TOL = 0.02  # the follow-up study's tolerance on each predicted acceleration component
STD_GRAPHS = 1000  # validation graphs whose message stds are followed epoch by epoch


@torch.no_grad()
def evaluate(model: GraphNetwork, x: torch.Tensor, y: torch.Tensor, device, batch: int = 4096) -> tuple[float, float]:
    """(mean absolute error, ACPCR) of the accelerations over all nodes and components. ACPCR (the
    follow-up study's "acceleration components predicted correctly ratio"): the fraction of predicted
    components within ACPCR_TOL of the truth."""
    model.eval()
    total, close, count = 0.0, 0, 0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        error = (model(xb).acc - yb).abs()
        total += error.sum().item()
        close += int((error <= ACPCR_TOL).sum().item())
        count += yb.numel()
    return total / max(count, 1), close / max(count, 1)


@torch.no_grad()
def message_stds(model: GraphNetwork, x: torch.Tensor, device) -> np.ndarray:
    """Std over every edge of the graphs x (G, n, features) of each message component (KL: of the
    means), (message size,): what sparsity is judged on, followed over epochs."""
    model.eval()
    return model(x.to(device)).messages.std(dim=0, unbiased=False).cpu().numpy()


def std_metrics(stds: np.ndarray, dim: int) -> dict[str, float]:
    """Per-epoch metrics from the component stds on the validation graphs: the five largest, and, when there
    are more than dim components, the sparsity ratio (the dim-th largest over the next) and share (the top
    dim's part of the summed stds; raysym.messages.sparsity_share)."""
    ranked = np.sort(stds)[::-1]
    out = {f"val/std_{k + 1}": float(v) for k, v in enumerate(ranked[:5])}
    if len(ranked) > dim:
        top = list(np.argsort(-stds)[:dim])
        out["val/sparsity_ratio"] = sparsity_ratio(stds, top)
        out["val/sparsity_share"] = sparsity_share(stds, top)
    return out


def train(
    cfg: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
    data: tuple[Snapshots, Snapshots] | None = None,
    test: Snapshots | None = None,
    resume: bool = True,
    probe: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    until: Callable[[dict[str, float]], bool] | None = None,
) -> TrainResult:
    """Train one GN. ``data`` (training graphs, validation graphs) skips loading (then ``test``, graphs whose
    MAE is reported every epoch, is optional); ``out_dir`` enables checkpoints.

    ``probe(model)`` runs after each epoch's evaluation and adds its metrics to the epoch's (run_trial
    follows the messages' R² on the validation graphs this way); ``until(metrics)`` ends training after the
    first epoch for which it is true (status "finished", reason "stopped early: ...")."""
    with subnormals_flushed():
        return _train(cfg, out_dir, callback, data, test, resume, probe, until)


@contextlib.contextmanager
def subnormals_flushed():
    """Subnormal floats flushed to zero on the CPU while training, and the setting as it was after.

    Under L1 the messages' unused inputs stop getting gradients, and Adam's moments of their weights decay
    into the subnormal range (below 1.2e-38; 46% of them after 200 epochs of 2D spring), where x86 arithmetic
    takes a slow path: a late L1 epoch took 3x as long (BENCHMARKS.md, "Subnormal floats"). Zero instead of
    1e-40 moves no weight by a representable amount: Adam divides by sqrt(v) + 1e-8 either way. The setting
    is the calling thread's processor state, so it is put back: other code in the process (a notebook,
    hypothesis in the tests) may need subnormals."""
    was_on = torch.tensor([1e-40]).mul(1.0).item() == 0.0  # torch has no getter for it
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def _train(cfg, out_dir, callback, data, test, resume, probe, until) -> TrainResult:
    """train(), with subnormal floats flushed."""
    start = time.perf_counter()
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if data is None:
        train_graphs, val_graphs, test, _ = load_training_data(cfg)
    else:
        train_graphs, val_graphs = data
    if len(train_graphs) == 0 or len(val_graphs) == 0:
        raise UserError(
            f"Nothing to train on: {len(train_graphs)} training and {len(val_graphs)} validation graphs "
            f"(after pruning with k={cfg.prune_k}). Raise --prune-k, use --no-prune, or simulate more data."
        )
    x_train, y_train = node_features(train_graphs)
    x_val, y_val = node_features(val_graphs)
    # the graphs whose message stds are followed: spread evenly over the validation split, so over all of its
    # simulations (its first graphs would be a handful of simulations' consecutive snapshots)
    std_rows = torch.from_numpy(np.unique(np.linspace(0, len(x_val) - 1, min(STD_GRAPHS, len(x_val))).astype(np.int64)))
    x_test, y_test = node_features(test) if test is not None and len(test) else (None, None)
    dim = y_train.shape[-1]

    model = build_model(
        cfg.model, dim, cfg.hidden, cfg.layers, cfg.msg_dim, cfg.newtonian_messages, bool(cfg.node_term)
    ).to(device)
    # foreach: Adam's multi-tensor kernels (torch's default on GPUs, not on CPUs): 1.16-1.21x the optimiser
    # steps per second on the 2-core CPU and the same loss after 200 steps to the last digit printed
    # (benchmarks/train_throughput.py --options; BENCHMARKS.md, "Training throughput").
    optimizer = Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)  # torch's (optim.py)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.lr,
        total_steps=total_steps,
        final_div_factor=cfg.final_div_factor,
        pct_start=cfg.warmup_fraction,
    )
    schedule = get_schedule(cfg.l1_schedule, cfg.schedule_shape)
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    first_epoch = 0

    ckpt_path = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        ckpt_path = Path(out_dir) / CHECKPOINT
    if ckpt_path is not None and resume and ckpt_path.exists():

        def restore(state):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            return state["history"], state["epoch"] + 1

        history, first_epoch = read_checkpoint(ckpt_path, device, restore)

    if history and until is not None and until(history[-1]) and first_epoch < cfg.epochs:  # resumed after an early stop
        reason = f"stopped early: the stopping rule held after epoch {first_epoch} of {cfg.epochs}"
        return TrainResult("finished", reason, model, history, history[-1], time.perf_counter() - start)
    step = first_epoch * steps_per_epoch
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        sums = {"loss": 0.0, "base": 0.0, "reg": 0.0}
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            xb = augment(xb, dim, cfg.augment, generator)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            alpha = schedule(step, total_steps) if cfg.regularizer == "l1" else cfg.kl_alpha
            loss, base, reg = batch_loss(model, cfg, xb, yb, alpha)
            if not torch.isfinite(loss):
                reason = f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}"
                return TrainResult(
                    "diverged", reason, model, history, history[-1] if history else {}, time.perf_counter() - start
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            sums["loss"] += loss.item()
            sums["base"] += base.item()
            sums["reg"] += reg.item()
        val_mae, _ = evaluate(model, x_val, y_val, device)
        stds = message_stds(model, x_val[std_rows], device)
        metrics = {
            "epoch": epoch,
            "train/loss": sums["loss"] / steps_per_epoch,
            "train/base_loss": sums["base"] / steps_per_epoch,
            "train/regularizer": sums["reg"] / steps_per_epoch,
            "train/l1_coeff": alpha if cfg.regularizer == "l1" else 0.0,
            "train/penalty_weight": alpha * penalty_scale(cfg, x_train.shape[1], dim)
            if cfg.regularizer != "none"
            else 0.0,
            "train/lr": scheduler.get_last_lr()[0],
            "val/mae": val_mae,
            **std_metrics(stds, dim),
            **(probe(model) if probe is not None else {}),
        }
        if "val/sparsity_share" in metrics and "val/r2_best" in metrics:  # the schedule search's objective
            metrics["val/sparsity_objective"] = sparsity_objective(
                metrics["val/sparsity_share"], metrics["val/r2_best"]
            )
        if x_test is not None:  # reported only: no decision during training reads the test split
            test_mae, acpcr = evaluate(model, x_test, y_test, device)
            metrics.update({"test/mae": test_mae, "test/acpcr": acpcr, "test/acpcr_complement": 1.0 - acpcr})
        if not math.isfinite(val_mae):
            return TrainResult(
                "diverged",
                f"non-finite validation MAE at epoch {epoch}",
                model,
                history,
                metrics,
                time.perf_counter() - start,
            )
        history.append({**metrics, "message_stds": [float(v) for v in stds]})  # every component, for the figure
        if ckpt_path is not None:
            _save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    "epoch": epoch,
                },
            )
        if callback is not None:
            callback(metrics)
        if until is not None and until(metrics) and epoch + 1 < cfg.epochs:
            reason = f"stopped early: the stopping rule held after epoch {epoch + 1} of {cfg.epochs}"
            return TrainResult("finished", reason, model, history, metrics, time.perf_counter() - start)
    return TrainResult("finished", "", model, history, history[-1] if history else {}, time.perf_counter() - start)


def augment(x: torch.Tensor, dim: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Translation augmentation: one random shift N(0, 1) * scale added to every position of the batch.

    x: (batch, n, features) with positions in the first ``dim`` features. Returns a new tensor.
    """
    if not scale:
        return x
    shifted = x.clone()
    shifted[..., :dim] += torch.randn(dim, generator=generator) * scale
    return shifted


def batch_loss(model: GraphNetwork, cfg: TrainConfig, xb: torch.Tensor, yb: torch.Tensor, alpha: float):
    """(loss, base loss, regulariser) of one batch; the regulariser is 0 for standard and bottleneck.

    xb: (batch, n, features), yb: (batch, n, dim). One dense forward gives both the predictions and the
    messages of every edge of every graph, so the regulariser costs no second edge-model pass.
    """
    out = model(xb)
    base = base_loss(out.acc, yb, cfg.loss)
    if cfg.model == "hgn":  # the energy terms: mean |H_pair| over edges + mean |H_self| over nodes
        reg = regularizers.l1(out.messages) + regularizers.l1(out.node_energies)
    elif cfg.regularizer == "l1":
        reg = regularizers.l1(out.messages)
    elif cfg.regularizer == "kl":
        reg = regularizers.kl(out.mu, out.logvar, cfg.kl_prior)
    else:
        return base, base, torch.zeros((), device=base.device)
    return base + alpha * penalty_scale(cfg, xb.shape[1], yb.shape[-1]) * reg, base, reg


def penalty_scale(cfg: TrainConfig, n: int, dim: int) -> float:
    """The factor between the coefficient (alpha, in ``cfg.penalty_units``) and raysym's per-edge penalty for
    graphs of n particles in dim dimensions. The Hamiltonian GN's energy penalty has no published meaning
    and keeps the per-edge scale."""
    units = regularizers.PER_EDGE if cfg.model == "hgn" else cfg.penalty_units
    return regularizers.penalty_scale(units, n, dim)


def run_trial(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    callback: Callable[[dict[str, float]], None] | None = None,
    resume: bool = True,
    until: Callable[[dict[str, float]], bool] | None = None,
    claim: bool = True,
) -> dict[str, Any]:
    """Train, analyse the messages on test graphs, save figures and ``metrics.json`` in ``out_dir``.

    ``claim``: refuse an ``out_dir`` holding anything but this same trial (raysym.outputs); the sweep
    turns it off for the work folders it owns inside Tune's trial folders.

    Every epoch also measures the messages' R² on the validation graphs (``val/r2_force``, ``val/r2_accel``,
    ``val/r2_best``; the pair force's for energy models), where ``until`` (see :func:`train`) and ``stop_r2``
    decide. At the end, the message analysis runs on the test graphs: reported, never decided on. Returns the
    flat metrics dictionary that was written. This is what ``raysym train`` and the sweep's Tune trainable
    call.
    """
    from raysym import message_figures, messages, shards
    from raysym.outputs import claim_trial_folder

    out_dir = Path(out_dir)
    manifest = shards.read_manifest(cfg.data)
    params = manifest["params"]
    system = physics.law_key(params["system"], params.get("potential"))  # custom:<formula> for a user's law
    if cfg.model == "newtonian" and cfg.node_term is None:  # the non-pairwise term: for damping only
        cfg = dataclasses.replace(cfg, node_term=system == "damped")
    if claim:
        claim_trial_folder(out_dir, trial_record(cfg))  # nothing but this same trial is overwritten
    pick_device(cfg.device)  # a missing GPU, and below bad data, stop the run before the folder is made
    train_graphs, val_graphs, test_graphs, prune = load_training_data(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The resolved settings, so the trial can be rebuilt later (raysym distill) without its YAML.
    _write_json(out_dir / CONFIG, trial_record(cfg))
    bounds = shards.prune_bounds(manifest, cfg.prune_k) if cfg.prune_k is not None else None
    dim = manifest["params"]["dim"]
    # The per-epoch probe: a seeded sample of the validation graphs (pruned training simulations, so in
    # distribution by construction).
    val_sample = _subsample(val_graphs, cfg.analysis_graphs, np.random.default_rng(cfg.seed))
    probe = (lambda model: messages.epoch_metrics(model, val_sample, system, dim)) if len(val_sample) else None
    if until is None and cfg.stop_r2 is not None:
        until = lambda m: epoch_r2(m) >= cfg.stop_r2
    result = train(
        cfg,
        out_dir=out_dir,
        callback=callback,
        data=(train_graphs, val_graphs),
        test=test_graphs,
        resume=resume,
        probe=probe,
        until=until,
    )
    metrics: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "data/system": system,
        "data/dim": manifest["params"]["dim"],
        "data/train_graphs": len(train_graphs),
        "data/val_graphs": len(val_graphs),
        "data/test_graphs": len(test_graphs),
        "data/pruned_graphs": prune.removed if prune is not None else 0,
        "time/train_seconds": result.seconds,
        **{k: v for k, v in result.metrics.items() if k != "epoch"},
        "epochs_done": len(result.history),
    }
    if result.status == "finished":
        # The analysis graphs: a seeded sample of the test graphs (reported; nothing is decided on them).
        sample = _subsample(test_graphs, cfg.analysis_graphs, np.random.default_rng(cfg.seed))
        edges = messages.edge_data(result.model, sample, system, bounds=bounds)
        analysis = messages.analyze(edges, result.model.dim, cfg.kl_prior)
        metrics.update(analysis.metrics())
        if not has_sparsity_prior(cfg):  # sparsity is asked of penalised messages only: n/a for the others
            metrics["messages/sparse"] = None
        metrics.update(mae_in_range(result.model, test_graphs, bounds, cfg.device))
        if cfg.figures:
            message_figures.plot(edges, analysis, out_dir)
        message_figures.save_sample(edges, analysis, out_dir, seed=cfg.seed)
    by_epoch = [(h["epoch"] + 1, h["message_stds"]) for h in result.history if "message_stds" in h]
    if by_epoch:
        _write_json(
            out_dir / "message_stds_by_epoch.json",
            {"epoch": [e for e, _ in by_epoch], "stds": [v for _, v in by_epoch]},
        )
        if cfg.figures:
            message_figures.plot_stds_over_epochs(
                np.array([e for e, _ in by_epoch]),
                np.array([v for _, v in by_epoch]),
                result.model.dim,
                out_dir,
                curves={
                    "share": [h.get("val/sparsity_share") for h in result.history],
                    "ratio": [h.get("val/sparsity_ratio") for h in result.history],
                },
            )
    _write_json(out_dir / "metrics.json", metrics)
    return metrics


def has_sparsity_prior(cfg: TrainConfig) -> bool:
    """Do the trial's messages carry a penalty meant to make them sparse (L1 or KL on many components)?
    Sparsity is judged for those only; for the others (standard, bottleneck, Newtonian bottleneck, the
    Hamiltonian GN's scalar energies) it does not apply."""
    return cfg.regularizer in ("l1", "kl") and cfg.model != "hgn"


def mae_in_range(model, graphs: Snapshots, bounds: tuple[float, float] | None, device: str) -> dict[str, float]:
    """``test/mae_in_range``: the test MAE on the test graphs inside the trial's pruning bounds (where it was
    trained); absent when no test graph lies inside them."""
    from raysym.messages import graphs_in_range

    inside = graphs_in_range(graphs, bounds)
    if not inside.any():
        return {}
    x, y = node_features(graphs.take(inside))
    return {"test/mae_in_range": evaluate(model, x, y, pick_device(device))[0]}


def epoch_r2(metrics: dict[str, Any]) -> float:
    """An epoch's ``val/r2_best``: the better validation R² against the force or force / receiver mass (the
    pair force's, for energy models); -inf when the epoch has none."""
    value = metrics.get("val/r2_best")
    return value if value is not None and math.isfinite(value) else -math.inf


KIND = "nbody"  # config.json's "kind" (raysym.trial_kind)


def trial_record(cfg: TrainConfig) -> dict[str, Any]:
    """A trial folder's config.json: the kind, then the resolved TrainConfig, less ``figures`` (whether its
    PNGs are drawn does not change what the trial is: a rerun with or without them is the same trial)."""
    return {"kind": KIND, **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "figures"}}


def load_trial(trial_dir: str | Path, device: str = "cpu") -> tuple[TrainConfig, GraphNetwork]:
    """(config, trained model in eval mode) of a trial folder written by ``run_trial``."""
    import json

    from raysym.config import from_dict
    from raysym.errors import UserError

    trial_dir = Path(trial_dir)
    missing = [name for name in (CONFIG, CHECKPOINT) if not (trial_dir / name).exists()]
    if missing:
        raise UserError(
            f"{trial_dir} is not a finished training trial: {', '.join(missing)} missing. Point at a folder "
            "written by `raysym train --out` (or a sweep trial's artifacts), after training finished."
        )
    try:
        data = json.loads((trial_dir / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{trial_dir / CONFIG} cannot be read ({exc}). Train the trial again into a new folder."
        ) from None
    kind = data.pop("kind", KIND) if isinstance(data, dict) else KIND  # folders before the kind was recorded
    if isinstance(data, dict):  # trials trained before penalty_units existed ran at the per-edge scale
        data.setdefault("penalty_units", regularizers.PER_EDGE)
    if kind != KIND:
        raise UserError(
            f"{trial_dir} holds a '{kind}' trial, not an N-body one. Give it to `raysym distill`, which reads the kind."
        )
    cfg = from_dict(TrainConfig, data, where=str(trial_dir / CONFIG))

    def rebuild(state):
        weights = state["model"]
        if cfg.model == "hgn":  # the self-energy MLP reads [q, p, charge, mass]: 2 dim + 2 features
            dim = (weights["self_energy.0.weight"].shape[1] - 2) // 2
        elif cfg.model == "newtonian":  # the edge model reads [dx, r, m1, m2, q1, q2]: dim + 5 inputs
            dim = weights["edge_model.0.weight"].shape[1] - 5
        else:  # the node model outputs the dim acceleration components
            dim = weights["node_model.%d.bias" % (2 * cfg.layers)].shape[0]
        model = build_model(
            cfg.model, dim, cfg.hidden, cfg.layers, cfg.msg_dim, cfg.newtonian_messages, bool(cfg.node_term)
        )
        model.to(device).load_state_dict(weights)
        return model

    model = read_checkpoint(trial_dir / CHECKPOINT, device, rebuild)
    model.eval()
    return cfg, model


def read_checkpoint(path: Path, device, use: Callable[[dict[str, Any]], Any]) -> Any:
    """``use(state)`` of the checkpoint at ``path``, read with ``weights_only=True`` (loading never runs
    code from the file). A file that is empty, truncated, garbage, or from other settings (missing keys,
    other shapes) is a UserError that says how to start afresh, not a traceback from torch."""
    try:
        return use(torch.load(path, map_location=device, weights_only=True))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 -- torch raises many kinds (EOFError, RuntimeError, UnpicklingError, KeyError)
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"The checkpoint {path} cannot be used ({type(exc).__name__}{': ' + reason if reason else ''}): it is "
            "empty, "
            "truncated, from other settings or not a raysym checkpoint. Delete it (or use a new output folder; "
            "`raysym train` also has --no-resume) to train afresh."
        ) from None


_write_json = write_json  # the trial's JSON files (raysym.trial_folder)
