"""Issue 28, item 5: MLflow writes leave Tune's loop. The sweep callback's hooks only queue their writes
(raysym.track_writer), so a store that is slow or locked holds up the writer thread, never Tune."""

import sqlite3
import types

from helpers import sweep_dict

from raysym import track, track_writer
from raysym.config import SweepConfig, from_dict
from raysym.sweep_plan import plan
from raysym.sweep_tracking import tracking_callback


def test_a_real_mlflow_store_receives_the_queued_writes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = track.MLflowTracker(uri, "writer")
    writer = track_writer.start(uri)
    parent = tracker.start_sweep("s", {})
    run = writer.submit(tracker.start_trial, parent, "t0", "t0", {"lr": 0.1}, {})
    for epoch in range(3):
        writer.submit(tracker.log_metrics, run, {"test/mae": 1.0 / (epoch + 1)}, step=epoch)
    writer.submit(tracker.end_run, run, "FINISHED")
    writer.flush()
    got = tracker.client.get_run(run.result())
    assert got.info.status == "FINISHED"
    assert tracker.logged_steps(run.result(), "test/mae") == {0, 1, 2}


def _callback_and_trial(tmp_path, patience_s: float):
    """The sweep's tracking callback on a fresh sqlite store, with a stand-in for Tune's Trial as the hooks read
    it (its id, config, checkpoint and last result): the hooks are what these tests are about."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "bottleneck"}))
    (spec,) = plan(cfg)
    tracker = track.MLflowTracker(uri, "tests", patience_s=patience_s)
    parent = tracker.start_sweep("tiny", {})
    writer = track_writer.start(uri)
    callback = tracking_callback(tracker, parent, {spec.key: spec}, cfg.swept_keys())
    trial = types.SimpleNamespace(trial_id="abc_00000", config={"key": spec.key}, checkpoint=None, last_result={})
    return tracker, parent, writer, callback, trial


def _locked(db):
    """Another program's connection holding ``db`` in an exclusive write transaction (COMMIT to let go)."""
    lock = sqlite3.connect(db, timeout=60, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    return lock


def test_the_callbacks_hooks_return_while_the_store_is_locked_and_their_writes_land_after(tmp_path):
    """Another program holds mlflow.db in an exclusive write transaction while Tune reports a trial's start and
    three epochs. Written in place, the first hook would wait the store's patience (3 s here) and then raise
    TrackingUnavailable (the sweep's end); queued, every hook returns while the lock is still held, and the
    writes land once it is released, in order, one point per epoch."""
    tracker, parent, writer, callback, trial = _callback_and_trial(tmp_path, patience_s=3)
    lock = _locked(tmp_path / "mlflow.db")
    try:
        callback.on_trial_start(0, [], trial)
        for epoch in (1, 2, 3):
            result = {"epoch": epoch, "train/loss": 1.0 / epoch, "test/mae": 0.5 / epoch}
            callback.on_trial_result(0, [], trial, result)
        callback.on_step_end(0, [])  # no write has failed: the store is only busy
        assert writer.jobs == 0  # nothing could be written yet, and no hook waited for it
    finally:
        lock.execute("COMMIT")
        lock.close()
    trial.last_result = {"epoch": 3, "done_training": True, "status": "ok", "test/mae": 0.1}
    callback.on_trial_complete(0, [], trial)
    writer.flush()
    run_id = callback.runs["abc_00000"].result()
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    history = tracker.client.get_metric_history(run_id, "test/mae")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert tracker.client.get_run(run_id).data.tags[track.PARENT_TAG] == parent


def test_a_write_that_fails_ends_the_sweep_from_tunes_loop(tmp_path):
    """A store that stays locked past its patience: the write fails in the writer thread and the next hook on
    Tune's loop raises the store's one-paragraph error (as a write in place did)."""
    import pytest

    _, _, _, callback, trial = _callback_and_trial(tmp_path, patience_s=2)
    lock = _locked(tmp_path / "mlflow.db")
    try:
        callback.on_trial_start(0, [], trial)
        failed = callback.runs["abc_00000"].exception()  # the writer thread waits out the 2 s of patience
        assert isinstance(failed, track.TrackingUnavailable)
        with pytest.raises(track.TrackingUnavailable, match="did not answer|locked|unavailable"):
            callback.on_step_end(0, [])
    finally:
        lock.execute("COMMIT")
        lock.close()


def test_mlflows_sqlite_busy_wait_is_capped_and_nothing_else_is_touched(tmp_path):
    """MLflow sets ``PRAGMA busy_timeout = 20000`` on every session of a sqlite store; raysym lowers that one
    statement to track.SQLITE_BUSY_S so that a held store comes back to PatientClient's patience."""
    import sqlalchemy

    track._cap_sqlite_busy_wait()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("PRAGMA busy_timeout = 20000;"))  # MLflow's statement, verbatim
        assert conn.execute(sqlalchemy.text("PRAGMA busy_timeout")).scalar() == int(track.SQLITE_BUSY_S * 1000)
        conn.execute(sqlalchemy.text("PRAGMA foreign_keys = ON;"))  # other statements pass unchanged
        assert conn.execute(sqlalchemy.text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
    # the statement is still MLflow's: were it gone, the cap would be a no-op and this test should say so
    import inspect

    from mlflow.store.db import utils

    assert "PRAGMA busy_timeout = 20000;" in inspect.getsource(utils)


def test_a_held_store_is_retried_within_raysyms_patience_not_mlflows_20_s(tmp_path):
    """MLflow would have sqlite wait 20 s per call for a store another program holds: one silent attempt
    outlasting a patience of 5 s. With the wait capped (track.SQLITE_BUSY_S), PatientClient tries again
    within its patience, says so once, and then gives up with its one-paragraph error."""
    import pytest

    said = []
    client = track.PatientClient(f"sqlite:///{tmp_path / 'mlflow.db'}", patience_s=5, say=said.append)
    run = client.create_run(client.create_experiment("held"))
    attempts = []

    def log():
        attempts.append(1)
        client._client.log_metric(run.info.run_id, "test/mae", 0.5)

    lock = _locked(tmp_path / "mlflow.db")
    try:
        with pytest.raises(track.TrackingUnavailable, match="did not answer for 5 s"):
            client.call("log_metric", log)
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert len(attempts) >= 2 and len(said) == 1 and "retrying for up to 5 s" in said[0]
    client.call("log_metric", log)  # the store answers again at once
    assert [m.value for m in client.get_metric_history(run.info.run_id, "test/mae")] == [0.5]


def test_a_trial_resumed_at_its_end_is_logged_and_distilled_once(tmp_path):
    """A driver killed between a trial's final result and Tune's next save of its state resumes the trial at
    its final checkpoint, and the trial reports its end again to a new driver's callback. Its final
    metrics are in MLflow and its distillation on disk already: the second report adds no metric point, and
    the distiller is not asked again."""
    from ray import tune

    from raysym.sweep_tracking import Distiller

    tracker, parent, writer, first, trial = _callback_and_trial(tmp_path, patience_s=10)
    final = {"epoch": 2, "done_training": True, "status": "ok", "epochs_done": 2, "test/mae": 0.1}
    first.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        first.on_trial_result(0, [], trial, {"epoch": epoch, "test/mae": 0.5 / epoch})
    first.on_trial_result(0, [], trial, final)
    trial.last_result = final
    first.on_trial_complete(0, [], trial)
    writer.flush()

    # The driver killed and started again: a new callback, with a distiller whose work for the trial is on disk.
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "bottleneck"}, distill={"backend": "operon"}))
    (spec,) = plan(cfg)
    key = trial.config["key"]
    distilled = tmp_path / "distill" / f"{key}_{trial.trial_id}" / "distill"
    distilled.mkdir(parents=True)
    (distilled / "summary.json").write_text("{}")
    folder = tmp_path / "final_checkpoint"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"")
    trial.checkpoint = tune.Checkpoint.from_directory(str(folder))
    distiller = Distiller(cfg, tracker, tmp_path / "distill")
    second = tracking_callback(tracker, parent, {spec.key: spec}, cfg.swept_keys(), distiller)
    second.on_trial_start(0, [], trial)
    second.on_trial_result(0, [], trial, final)  # its end, reported again
    second.on_trial_complete(0, [], trial)
    writer.flush()

    run_id = second.runs[trial.trial_id].result()
    assert run_id == first.runs[trial.trial_id].result()  # the same run, found again in MLflow
    assert [m.step for m in tracker.client.get_metric_history(run_id, "epochs_done")] == [2]
    assert sorted(m.step for m in tracker.client.get_metric_history(run_id, "test/mae")) == [1, 2]
    assert distiller.pending == {}  # not handed to the distiller a second time
    assert tracker.client.get_run(run_id).info.status == "FINISHED"


def test_a_final_result_after_a_restart_does_not_log_the_last_epoch_again(tmp_path):
    """A driver killed after a trial's last epoch reached MLflow but before its final result did: the resumed
    trial reports that epoch again (skipped, MLflow has it) and then its final result, which repeats the
    per-epoch metrics at the same step. Found by tests/faults/test_reliability.py (test/mae twice at the last
    epoch): the new driver's callback knew the per-epoch keys only from results it had logged itself."""
    tracker, parent, writer, first, trial = _callback_and_trial(tmp_path, patience_s=10)
    first.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        first.on_trial_result(0, [], trial, {"epoch": epoch, "test/mae": 0.5 / epoch, "train/loss": 1.0 / epoch})
    writer.flush()

    for reported_again in ([2], []):  # the last epoch reported again, or the trial resumed at its very end
        cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "bottleneck"}))
        (spec,) = plan(cfg)
        second = tracking_callback(tracker, parent, {spec.key: spec}, cfg.swept_keys())
        second.on_trial_start(0, [], trial)
        for epoch in reported_again:
            second.on_trial_result(0, [], trial, {"epoch": epoch, "test/mae": 9.0, "train/loss": 9.0})
        final = {"epoch": 2, "done_training": True, "status": "ok", "epochs_done": 2, "test/mae": 0.25}
        second.on_trial_result(0, [], trial, {**final, "train/loss": 0.5, "messages/r2_force": 0.9})
        writer.flush()
        run_id = second.runs[trial.trial_id].result()
        assert run_id == first.runs[trial.trial_id].result()
        for key, values in (("test/mae", [(1, 0.5), (2, 0.25)]), ("train/loss", [(1, 1.0), (2, 0.5)])):
            assert sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key)) == values, key
        assert [m.value for m in tracker.client.get_metric_history(run_id, "messages/r2_force")] == [0.9]


def test_a_resumed_trials_missing_epochs_come_from_its_checkpoint_even_when_tune_has_deleted_it(tmp_path):
    """A driver killed while epochs 3-5 of a trial were still queued for MLflow (the trial checkpointed them):
    the resumed trial's first result is epoch 6, and the epochs before it are logged from the history kept in
    its checkpoint. That history is read when Tune hands over the result: here the writer is held up by a
    locked store, and Tune deletes the checkpoint (it keeps the last two) before the write runs, as it did in
    a CI run where reading it on the writer thread left epochs 4 and 5 out of MLflow."""
    import shutil

    import torch
    from ray import tune

    tracker, parent, writer, first, trial = _callback_and_trial(tmp_path, patience_s=30)
    first.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        first.on_trial_result(0, [], trial, {"epoch": epoch, "test/mae": 1.0 / epoch})
    writer.flush()

    folder = tmp_path / "checkpoint_000005"
    folder.mkdir()
    history = [{"epoch": e, "test/mae": 1.0 / (e + 1)} for e in range(6)]  # the history counts epochs from 0
    torch.save({"history": history}, folder / "checkpoint.pt")
    trial.checkpoint = tune.Checkpoint.from_directory(str(folder))
    cfg = from_dict(SweepConfig, sweep_dict(tmp_path, trials={"model": "bottleneck"}))
    (spec,) = plan(cfg)
    second = tracking_callback(tracker, parent, {spec.key: spec}, cfg.swept_keys())
    lock = _locked(tmp_path / "mlflow.db")
    try:
        second.on_trial_start(0, [], trial)
        second.on_trial_result(0, [], trial, {"epoch": 6, "test/mae": 1.0 / 6})
        shutil.rmtree(folder)  # Tune's clean-up, before the held-up writer gets to the result
    finally:
        lock.execute("COMMIT")
        lock.close()
    writer.flush()
    run_id = second.runs[trial.trial_id].result()
    assert run_id == first.runs[trial.trial_id].result()
    steps = sorted(m.step for m in tracker.client.get_metric_history(run_id, "test/mae"))
    assert steps == [1, 2, 3, 4, 5, 6]  # 1-2 from the first driver, 3-5 from the checkpoint, 6 reported
