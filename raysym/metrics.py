"""Every metric raysym records, named once with what it means.

Metric names are namespaced by what they measure: ``train/`` (the training batches), ``val/`` (the
validation split: whole training simulations held out; every decision during training reads it: stop_r2,
ASHA, Optuna), ``test/`` (the held-out test graphs or nodes: reported, never decided on), ``messages/`` (the
trained network's messages against the true law, on test graphs), ``distill/`` (the symbolic model distilled
from them), ``data/`` (the data a trial trained on), ``time/`` and ``ood/`` (out of distribution:
raysym.rollout). Writers (metrics.json, Tune results, MLflow) and readers (the sweep table, the report, the
CLI summaries) use these names; the MLflow tracker refuses a name that is not here (raysym.track), and
tests/unit/test_metrics.py fails when the source spells a metric this module does not name.

R² variants are named apart on purpose (raysym.messages has the definitions): no suffix means in
distribution (test graphs inside the training set's pruning bounds), ``_all`` every test edge
(extrapolation included), ``_robust`` every test edge by least trimmed squares (the worst 10% left out).
"""

from __future__ import annotations

import re

_R2 = "R² of a least-squares linear fit of the top message components on"

METRICS: dict[str, str] = {
    # training, per epoch
    "train/loss": "training loss per batch, averaged over the epoch (base loss + coefficient x regulariser)",
    "train/base_loss": "the prediction loss alone (L1 or MSE on the accelerations), averaged over the epoch",
    "train/regularizer": "the message penalty (L1, KL or energy terms) before its coefficient, averaged",
    "train/l1_coeff": "the L1 coefficient at the end of the epoch (the schedule's value, in the paper's units)",
    "train/penalty_weight": "the weight on raysym's per-edge penalty at the end of the epoch: coefficient x "
    "(n - 1) / (n dim) in the paper's units (raysym.regularizers)",
    "train/lr": "the learning rate at the end of the epoch",
    "train/mae": "mean absolute error on the training nodes (halos), in the target's units",
    # the validation split (N-body: pruned graphs of held-out training simulations, in distribution), per epoch
    "val/mae": "mean absolute error of the predicted accelerations on the validation graphs",
    "val/r2_force": f"{_R2} the true pair force, on the validation graphs",
    "val/r2_accel": f"{_R2} the pair force / receiver mass, on the validation graphs",
    "val/r2_pair_force": "energy models: R² of the implied pair force on the validation graphs",
    "val/r2_best": "the larger of val/r2_force and val/r2_accel (energy models: val/r2_pair_force); stop_r2 reads it",
    "val/sparsity_ratio": "smallest top-component std / largest other std, on the validation graphs",
    "val/sparsity_share": "the top components' part of the summed message-component stds, validation graphs",
    "val/sparsity_objective": "val/sparsity_share less 10 x the shortfall of val/r2_best below 0.99 "
    "(the schedule-shape search's objective)",
    "val/std_{k}": "the k-th largest message-component standard deviation on the validation graphs",
    # held-out test data: reported only
    "test/mae": "mean absolute error of the predicted accelerations on every test graph (halos: test nodes)",
    "test/mae_in_range": "test/mae on the test graphs inside the training set's pruning bounds (in distribution)",
    "test/mae_over_std": "test/mae divided by the target's standard deviation (halos)",
    "test/acpcr": "fraction of predicted acceleration components within 2% of the truth (the 2024 study's ACPCR)",
    "test/acpcr_complement": "1 - test/acpcr",
    # messages against the true law
    "messages/r2_force": f"{_R2} the true pair force, in distribution (the headline)",
    "messages/r2_force_all": f"{_R2} the true pair force, on every test edge",
    "messages/r2_force_robust": f"{_R2} the true pair force, every test edge, least trimmed squares",
    "messages/r2_accel": f"{_R2} the pair force / receiver mass, in distribution",
    "messages/r2_accel_all": f"{_R2} the pair force / receiver mass, on every test edge",
    "messages/r2_accel_robust": f"{_R2} the pair force / receiver mass, every edge, least trimmed squares",
    "messages/r2_pair_force": "energy models: R² of the pair force implied by the pair energy, in distribution",
    "messages/r2_pair_force_all": "energy models: the implied pair force's R² on every test edge",
    "messages/r2_pair_force_robust": "energy models: the implied pair force's R², least trimmed squares",
    "messages/r2_potential": "energy models: R² of the pair energy against the true potential (offsets fool it)",
    "messages/r2_best": "the larger of messages/r2_force and messages/r2_accel (test graphs: reported only)",
    "messages/mass_exponent": "the alpha for which messages best fit force x m_receiver^-alpha (a diagnostic)",
    "messages/r2_mass_scaled": "R² of that fit (a diagnostic, never a verdict)",
    "messages/r2_receiver_map": "R² of the messages as (A + B q_receiver) F m_receiver^-alpha, the best alpha: "
    "the force through a receiver-dependent linear map the node model can undo (a diagnostic, never a verdict)",
    "messages/sparse": "1 when every top component's std is at least 100x every other component's std (only for "
    "messages with a sparsity prior, L1 or KL; n/a for the others)",
    "messages/sparsity_ratio": "smallest top-component std / largest other std, in distribution",
    "messages/sparsity_ratio_all": "the same ratio over every test edge",
    "messages/sparsity_share": "the top components' part of the summed message-component stds, in distribution",
    "messages/top_std": "the standard deviations of the top (dim) message components (a list, kept as a tag)",
    "messages/stds_top15": "the 15 largest message-component standard deviations (a list, kept as a tag)",
    "messages/top_components": "the indices of the top message components (a list, in metrics.json)",
    "messages/in_range_fraction": "fraction of test graphs inside the training set's pruning bounds",
    "messages/r2_vs_true_edge": "halos: R² of the messages' leading projection against the true edge term",
    "messages/leading_variance": "halos: fraction of the messages' variance along their leading direction",
    # the distilled symbolic model
    "distill/recovered": "1 when the edge formulas are a linear transformation of the true law: every formula's R² "
    ">= 0.99 and the fitted map of full rank dim, condition number <= 10 (raysym.verdict)",
    "distill/recovered_as": "the law recovered: force, force/mass, potential, or none (a tag)",
    "distill/r2_{which}": "R² of the chosen edge formulas against the true force, force/mass or pair force "
    "(in distribution; mean over the formulas)",
    "distill/r2_{which}_all": "the same R² on every test edge",
    "distill/r2_{which}_min": "the smallest R² among the edge formulas, in distribution (what the verdict reads)",
    "distill/r2_{which}_all_min": "the smallest R² among the edge formulas, on every test edge",
    "distill/condition_{which}": "condition number of the formulas' fitted map to the force or force/mass, rows "
    "scaled to unit length (1: orthogonal directions; 1e9: fewer than dim directions)",
    "distill/r2_pair_force_robust": "energy models: the formula's pair-force R² by least trimmed squares",
    "distill/r2_vs_true_edge": "halos: R² of the edge formula against the true edge term",
    "distill/test_mae": "MAE of the composed symbolic model (edge and node formulas) on the scored test graphs",
    "distill/test_mae_in_range": "distill/test_mae on the in-distribution test graphs",
    "distill/gn_test_mae": "the network's MAE on the same graphs, for comparison",
    "distill/gn_test_mae_in_range": "the network's MAE on the in-distribution graphs",
    "distill/complexity": "total node count of the chosen formulas",
    "distill/seconds": "symbolic-regression time summed over the jobs (seconds)",
    "distill/score_graphs": "test graphs the composed model was scored on",
    "distill/in_range_graphs": "of those, graphs inside the training set's pruning bounds",
    "distill/edge_formulas": "the chosen edge formulas (a list, kept as a tag)",
    "distill/node_formulas": "the chosen node formulas (a list, kept as a tag)",
    "distill/edge_components": "the message components the edge formulas describe, in order (a list, in summary.json)",
    "distill/errors": "why jobs failed, if any (a list, kept as a tag)",
    "distill/backend": "the symbolic-regression engine that ran: operon or pysr",
    "distill/settings": "the resolved distillation settings (a dict, kept as tags)",
    # data
    "data/system": "the simulated system (a tag of the trial's MLflow run)",
    "data/dim": "the dimension of the simulated space (a tag of the trial's MLflow run)",
    "data/train_graphs": "training graphs after pruning",
    "data/val_graphs": "validation graphs (pruned graphs of the held-out training simulations)",
    "data/test_graphs": "test graphs",
    "data/pruned_graphs": "training graphs the outlier filter removed",
    "data/points": "halos: points (halos) in the catalog",
    "data/edges": "halos: edges of the radius graph",
    "data/neighbours_per_point": "halos: mean in-degree of the radius graph",
    "data/test_nodes": "halos: held-out nodes",
    "data/target_std": "halos: standard deviation of the node target",
    # time
    "time/train_seconds": "wall-clock training time of the trial (seconds)",
    # the out-of-distribution test (raysym.rollout): fresh systems per regime (in_dist: the training
    # distribution's; others: more particles or scaled initial states), model = gn or symbolic
    "ood/{regime}/onestep_mae_{model}": "MAE of a model's accelerations on the regime's fresh initial states",
    "ood/{regime}/position_error_{model}_t{h}": "mean distance of a model's rollout from the simulator's after h steps",
    "ood/errors": "why a trial's rollout failed (a tag of its distillation run)",
}


# Descriptions of a trial, not measurements: MLflow keeps them as tags of the trial's run (its params are
# the swept settings only)
DESCRIPTIONS = ("data/system", "data/dim")


def _pattern(name: str) -> re.Pattern[str]:
    """A family name such as ``messages/std_{k}`` as a regex: each ``{...}`` stands for a word."""
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(name)) + "$")


_FAMILIES = [(name, _pattern(name)) for name in METRICS if "{" in name]


def register(names: dict[str, str]) -> None:
    """Name the metrics a trial kind adds (TrialKind.metrics); a name may not change its meaning."""
    for name, text in names.items():
        if METRICS.get(name, text) != text:
            raise ValueError(f"metric '{name}' is already named, as: {METRICS[name]}")
        METRICS[name] = text
        if "{" in name:
            _FAMILIES.append((name, _pattern(name)))


def name_of(key: str) -> str | None:
    """The name in :data:`METRICS` that ``key`` is (itself, or a family such as ``messages/std_{k}``)."""
    if key in METRICS:
        return key
    matches = [name for name, pattern in _FAMILIES if pattern.match(key)]
    # the most specific family: distill/r2_accel_all is distill/r2_{which}_all, not distill/r2_{which}
    return max(matches, key=lambda name: len(re.sub(r"\{\w+\}", "", name)), default=None)


def meaning(key: str) -> str:
    name = name_of(key)
    if name is None:
        raise KeyError(f"'{key}' is not a raysym metric (raysym.metrics.METRICS names them all)")
    return METRICS[name]


def check(keys) -> None:
    """Refuse namespaced keys that are not named here (a programming error: name it in METRICS)."""
    unknown = sorted(k for k in keys if "/" in k and name_of(k) is None)
    if unknown:
        raise KeyError(f"metrics not named in raysym.metrics.METRICS: {unknown}")
