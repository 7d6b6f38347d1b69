"""The Ray Tune trainable of a sweep: one trial, on a Tune worker.

It restores the trial's last checkpoint if Tune hands it one (a retry after a crash, a resumed sweep),
trains through the trial's kind (raysym.trial_kind), reports every epoch to Tune with a checkpoint, and
reports the end with every file of the trial as its last checkpoint. Nothing here talks to MLflow: the
driver mirrors what Tune receives (raysym.sweep_tracking).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from raysym import trial_kind

# Fault injection for the retry test: "EPOCH:MARKER" makes each trial crash once after that epoch
# (the marker file records that it did). Read on the driver and handed to trials in their config.
INJECT_ENV = "RAYSYM_INJECT_CRASH"


def trainable(config: dict[str, Any], specs: dict[str, dict[str, Any]], kinds: dict[str, trial_kind.TrialKind]) -> None:
    """Ray Tune function trainable: restore the last checkpoint if any, train, report every epoch.

    ``config["key"]`` names the trial's spec in ``specs`` (bound with ``tune.with_parameters``, so Tune's
    progress table shows the short key instead of the whole spec).
    """
    spec = specs[config["key"]]
    kind = kinds[spec["kind"]]  # resolved on the driver: a kind registered there need not be on the worker
    cfg = kind.trial_config(spec, config)
    # The trial's working files live outside Tune's trial folder: on one machine that folder is inside the
    # tree Tune copies to storage with every save of its state (after every step), and a trial's checkpoint.pt
    # alone is about 1 MB at 128 units. What lasts is in the checkpoints reported below.
    work = Path(tempfile.mkdtemp(prefix=f"raysym-{config['key']}-"))
    try:
        _train_in(work, kind, cfg, config)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train_in(work: Path, kind: trial_kind.TrialKind, cfg: Any, config: dict[str, Any]) -> None:
    """The trainable's work in the folder ``work``: restore, train reporting every epoch, report the end."""
    from ray import tune

    from raysym.train import CHECKPOINT

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a crash, or a resumed sweep
        with checkpoint.as_directory() as folder:
            shutil.copy(Path(folder) / CHECKPOINT, work / CHECKPOINT)
    inject = config.get("inject_crash")

    def report(metrics: dict[str, float]) -> None:
        epoch = int(metrics["epoch"]) + 1
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(work / CHECKPOINT, Path(tmp) / CHECKPOINT)
            # Tune's live table shows the first four metrics of a result: the kind's live ones lead
            live = {k: metrics[k] for k in kind.live_metrics if k in metrics}
            tune.report({**live, **metrics, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(tmp))
        if inject and epoch == inject["epoch"] and not os.path.exists(inject["marker"]):
            Path(inject["marker"]).write_text(tune.get_context().get_trial_id())
            raise RuntimeError(f"fault injected by {INJECT_ENV} after epoch {epoch}")

    metrics = kind.train(cfg, work, callback=report, resume=True, claim=False)  # the trial's own folder
    # The final report carries the message analysis and every file of the trial as its checkpoint.
    final = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    for key in ("messages/top_std", "messages/stds_top15"):  # lists: MLflow tags
        final[key] = metrics.get(key)
    # The live metrics first here too: a resumed sweep's live table, whose first results are finished
    # trials', showed four data/* counts as its columns.
    live = {k: final[k] for k in kind.live_metrics if k in final}
    tune.report(
        {**live, **final, "epoch": cfg.epochs, "done_training": True}, checkpoint=tune.Checkpoint.from_directory(work)
    )
