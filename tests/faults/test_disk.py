"""Issue 28, item 4: a full disk is a clean stop with a sweep that resumes (raysym.disk).

The sweep test needs no privileges and never fills the machine's disk: its reserve is set just under the free
space of the test's file system, and a ballast file of a few hundred MB takes the free space under it, as a
filling disk would. The same stop on a disk filled to the last byte (a 64 MB tmpfs) is recorded in
RELIABILITY.md with its commands."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from helpers import _wait_for, mlflow_runs, sweep_dict, write_yaml

from raysym import disk
from raysym.cli import main
from raysym.errors import UserError

MB = 2**20


def _ballast(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, size)  # blocks really taken, at once
        except OSError:  # a file system without fallocate: write them
            block = b"\0" * MB
            for _ in range(size // MB):
                fh.write(block)


def test_a_sweep_stopped_by_a_low_disk_resumes_to_completion_after_space_is_freed(local_ray, tmp_path, capsys):
    # 80 epochs (~5 s a trial here): the ballast must land while the first trial trains; at 40 a CI run saw the
    # trial end before the guard stopped the sweep
    epochs = 80
    reserve = (disk.free_bytes(tmp_path) - 300 * MB) / MB
    cfg = sweep_dict(
        tmp_path,
        trials={"model": ["bottleneck", "l1"], "epochs": epochs},
        resources={"cpus_per_trial": 1, "disk_reserve_mb": reserve},
    )
    path = write_yaml(tmp_path / "sweep.yaml", cfg)
    ballast = tmp_path / "ballast"

    def fill_after_the_first_checkpoint():
        folder = tmp_path / "runs" / "tiny"
        # Once a checkpoint exists and the guard has copied Tune's state (it copies it at every step from the
        # first; a disk filled before that first copy leaves a sweep that cannot resume: RELIABILITY.md)
        _wait_for(
            lambda: any(folder.glob("t00*/checkpoint_*")) and any(folder.glob(".raysym_state/exp*")), 600, every=0.1
        )
        _ballast(ballast, 600 * MB)

    filler = threading.Thread(target=fill_after_the_first_checkpoint, daemon=True)
    filler.start()
    code = main(["sweep", str(path)])
    filler.join(timeout=60)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "under the sweep's reserve" in err and "continue it with --resume" in err
    assert "stopping the sweep as Ctrl-C would" in err  # Tune's own stop: its state saved one last time
    assert "Traceback" not in err
    stopped_at = {
        p.parent.name: int(p.name.split("_")[1]) for p in (tmp_path / "runs" / "tiny").glob("t00*/checkpoint_*")
    }
    assert stopped_at and max(stopped_at.values()) < epochs  # stopped in the middle, not at the end

    ballast.unlink()
    # What a disk filled to the last byte does to Tune's state (seen on a 64 MB tmpfs): its newest
    # experiment state copied into the storage folder cut short.
    state = sorted((tmp_path / "runs" / "tiny").glob("experiment_state-*.json"))[-1]
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    code = main(["sweep", str(path), "--resume"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "was cut short" in out + err
    assert "2 of 2 trials finished" in out
    client, runs = mlflow_runs(tmp_path)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    for run in children:  # one point per epoch: none lost, none logged twice
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "test/mae"))
        assert steps == list(range(1, epochs + 1))
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"


def test_a_sweep_is_not_started_on_a_disk_under_its_reserve(tmp_path, capsys):
    reserve = (disk.free_bytes(tmp_path) + 500 * MB) / MB
    cfg = sweep_dict(tmp_path, resources={"cpus_per_trial": 1, "disk_reserve_mb": reserve})
    code = main(["sweep", str(write_yaml(tmp_path / "sweep.yaml", cfg))])
    err = capsys.readouterr().err
    assert code == 2 and "Nothing was started" in err and "resources.disk_reserve_mb" in err
    assert not (tmp_path / "runs" / "tiny").exists() and not (tmp_path / "data").exists()


def test_a_real_no_space_error_is_recognised_through_a_chain_and_in_a_workers_text():
    with pytest.raises(OSError) as caught:
        with open("/dev/full", "wb", buffering=0) as fh:  # the kernel's ENOSPC, for real
            fh.write(b"x")
    assert caught.value.errno == errno.ENOSPC and disk.is_full(caught.value)
    try:
        try:
            raise caught.value
        except OSError:
            raise AttributeError("'_idat' object has no attribute 'fileno'")  # what matplotlib raised next
    except AttributeError as later:
        assert disk.is_full(later)
    assert disk.is_full(RuntimeError("ray::ImplicitFunc.train() ... OSError: [Errno 28] No space left on device"))
    assert not disk.is_full(OSError(errno.EACCES, "Permission denied"))
    message = str(disk.explain(caught.value, "raysym report"))
    assert "No space left on device" in message and "\n" not in message


def test_state_files_are_copied_only_when_readable_and_a_damaged_one_without_a_copy_is_refused(tmp_path):
    storage = tmp_path / "sweep"
    storage.mkdir()
    state = storage / "experiment_state-2026-01-01_00-00-00.json"
    searcher = storage / "basic-variant-state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": []}')
    searcher.write_bytes(b"\x80\x05}\x94.")  # a pickle ends in its STOP byte
    saved = disk.backup_state(storage, None)
    assert saved is not None and (storage / disk.BACKUP / state.name).read_text() == state.read_text()
    assert (storage / disk.BACKUP / searcher.name).read_bytes() == searcher.read_bytes()

    state.write_text('{"trial_data": [')  # cut short: not copied over the good copy
    assert disk.backup_state(storage, saved) == saved
    assert (storage / disk.BACKUP / state.name).read_text() == '{"trial_data": []}'
    said = []
    disk.repair_state(storage, said.append)
    assert state.read_text() == '{"trial_data": []}' and "cut short" in said[0]

    searcher.write_bytes(b"\x80\x05}")  # a pickle cut short, and its copy gone
    (storage / disk.BACKUP / searcher.name).unlink()
    with pytest.raises(UserError, match="damaged"):
        disk.repair_state(storage, said.append)


def test_a_state_rewritten_with_the_same_trials_is_not_copied_again(tmp_path):
    """Tune rewrites its state at every save (its loop counter and clock); the copy follows the trials only."""
    import os

    storage = tmp_path / "sweep"
    storage.mkdir()
    state = storage / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": [["a", "1"]], "runner_data": {"_iteration": 1}}')
    saved = disk.backup_state(storage, None)
    copy = storage / disk.BACKUP / state.name
    first = copy.stat().st_mtime_ns
    state.write_text('{"trial_data": [["a", "1"]], "runner_data": {"_iteration": 2}}')
    os.utime(state, ns=(first + 10**9, first + 10**9))
    saved = disk.backup_state(storage, saved)
    assert '"_iteration": 1' in copy.read_text() and copy.stat().st_mtime_ns == first  # not copied
    state.write_text('{"trial_data": [["a", "2"]], "runner_data": {"_iteration": 3}}')
    os.utime(state, ns=(first + 2 * 10**9, first + 2 * 10**9))
    disk.backup_state(storage, saved)
    assert copy.read_text() == state.read_text()  # a trial moved: copied


def test_a_checkpoint_the_saved_state_names_but_tune_deleted_is_put_back_from_the_newest(tmp_path):
    """A driver killed between two saves of Tune's state (once a second) can leave a state naming a
    checkpoint Tune has since deleted (it keeps a trial's last two); the trial then continues from its newest."""
    import json
    import pickle

    storage = tmp_path / "sweep"
    trial = storage / "t000_abc_00000"
    for n in (5, 6):
        (trial / f"checkpoint_00000{n}").mkdir(parents=True)
        (trial / f"checkpoint_00000{n}" / "checkpoint.pt").write_text(f"epoch {n}")
    # How Tune writes a trial's checkpoint manager: a hex-encoded cloudpickle inside the JSON of the trial
    named = [str(trial / "checkpoint_000003"), str(trial / "checkpoint_000004")]
    manager = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps({"paths": named}).hex()}
    state = {"trial_data": [["{}", json.dumps({"checkpoint_manager": manager})]]}
    (storage / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    said = []
    disk.restore_named_checkpoints(storage, said.append)
    for n in (3, 4):
        assert (trial / f"checkpoint_00000{n}" / "checkpoint.pt").read_text() == "epoch 6"
    assert len(said) == 2 and "continues from its newest one (checkpoint_000006)" in said[0]
    assert sorted(p.name for p in trial.iterdir()) == [f"checkpoint_00000{n}" for n in (3, 4, 5, 6)]  # no temp left
    said.clear()
    disk.restore_named_checkpoints(storage, said.append)  # nothing missing now: nothing done
    assert not said


def test_a_stop_asked_outside_the_main_thread_raises_the_reason_instead(tmp_path):
    """Tune's stop signal is handled in the main thread only; elsewhere the guard's reason is raised (the
    stop of earlier raysyms), and nothing is left asked for a later sweep."""
    reason = disk.DiskFull("under the reserve")
    caught = []

    def guard():
        try:
            disk.request_stop(reason)
        except disk.DiskFull as exc:
            caught.append(exc)

    worker = threading.Thread(target=guard)
    worker.start()
    worker.join()
    assert caught == [reason] and disk.stop_requested() is None
