"""The raysym command as a user runs it: help, bad input (exit 2, one paragraph, no traceback)."""

import subprocess
import sys

import pytest


def raysym(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "raysym.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_explains_the_commands_and_systems():
    top = raysym("--help")
    assert top.returncode == 0 and "simulate" in top.stdout and "inspect" in top.stdout
    sim = raysym("simulate", "--help")
    assert sim.returncode == 0
    for word in ("--sims", "--stride", "--substeps", "superposition", "discontinuous", "dt = 0.005"):
        assert word in sim.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--system", "sprung"], "Unknown system 'sprung'. Did you mean 'spring'?"),
        (["--dim", "4"], "dim must be 2 or 3"),
        (["--particles", "1"], "particles must be at least 2"),
        (["--sims", "0"], "sims must be a positive integer"),
        (["--steps", "-5"], "steps must be a positive integer"),
        (["--stride", "0"], "stride must be a positive integer"),
        (["--sims", "lots"], "invalid int value: 'lots'"),
        (["--dt", "nan"], "dt must be a positive finite number"),
        (["--particles", "40000", "--dim", "3"], "Use fewer --particles"),
    ],
)
def test_bad_flags_exit_2_with_a_message(tmp_path, args, message):
    done = raysym("simulate", "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists()


def test_bad_yaml_key_suggests_the_closest(tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("system: spring\nparticels: 4\n")
    done = raysym("simulate", "--config", str(cfg), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "unknown key 'particels'. Did you mean 'particles'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_occupied_output_exits_2_and_keeps_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").write_text("keep me")
    done = raysym("simulate", "--sims", "2", "--steps", "5", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "not empty and holds no raysym dataset" in done.stderr
    assert (tmp_path / "out" / "results.csv").read_text() == "keep me"


def test_simulate_then_rerun_then_conflict_then_inspect(tmp_path):
    """The end-to-end path a user takes, in real processes with a real local Ray."""
    out = str(tmp_path / "charge-3d")
    args = [
        "simulate",
        "--system",
        "charge",
        "--dim",
        "3",
        "--particles",
        "3",
        "--sims",
        "6",
        "--steps",
        "30",
        "--stride",
        "10",
        "--seed",
        "2",
        "--out",
        out,
        "--num-cpus",
        "2",
        "--prune-k",
        "1.5",
    ]
    first = raysym(*args)
    assert first.returncode == 0, first.stderr
    assert "Wrote 21 graphs" in first.stdout  # (6 train + 1 test sims) x 3 states and "pruning k=1.5" in first.stdout
    assert "2/2 shards written" in first.stderr

    again = raysym(*args)
    assert again.returncode == 0 and "Reusing the existing dataset" in again.stdout

    conflict = raysym(*[a if a != "2" else "5" for a in args])  # seed 2 -> 5
    assert conflict.returncode == 2 and "seed: 2 there, 5 now" in conflict.stderr
    assert "Traceback" not in conflict.stderr

    inspect = raysym("inspect", out, "--prune-k", "1.5", "100")
    assert inspect.returncode == 0 and "checksums: all shards verified" in inspect.stdout
    assert "removed 0 of 18 graphs" in inspect.stdout  # k = 100 keeps everything

    missing = raysym("inspect", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "dataset.json is missing" in missing.stderr

    several = raysym("inspect", out, str(tmp_path / "nowhere"), out)  # each folder in turn, the bad one named
    assert several.returncode == 2 and several.stdout.count("checksums: all shards verified") == 2
    assert f"== {out}" in several.stdout and "1 of 3 folder(s) could not be read" in several.stderr


def test_train_command_writes_metrics(tiny_spring, tmp_path):
    _, data = tiny_spring
    done = raysym(
        "train",
        "--data",
        str(data),
        "--model",
        "l1",
        "--l1-schedule",
        "triangle",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--hidden",
        "16",
        "--msg-dim",
        "8",
        "--no-prune",
        "--out",
        str(tmp_path / "t"),
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stderr
    import json

    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs_done"] == 2
    assert (tmp_path / "t" / "messages_vs_force.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "l2"], "Unknown model 'l2'. Did you mean 'l1'?"),
        (["--l1-schedule", "triangel"], "Did you mean 'triangle'?"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--lr", "-1"], "lr must be a positive finite number"),
    ],
)
def test_train_bad_flags_exit_2(tiny_spring, tmp_path, args, message):
    _, data = tiny_spring
    done = raysym("train", "--data", str(data), "--out", str(tmp_path / "t"), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_train_on_a_missing_dataset_exits_2(tmp_path):
    done = raysym("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t"))
    assert done.returncode == 2 and "dataset.json is missing" in done.stderr and "Traceback" not in done.stderr


def test_inspect_into_a_pipe_closed_early_ends_quietly(tiny_spring):
    """`raysym inspect DATA | head -1`: the reader closes the pipe after one line; raysym ends with status 141
    (a closed pipe, as other Unix tools) and no BrokenPipeError traceback."""
    import shlex

    _, data = tiny_spring
    cmd = f"set -o pipefail; {shlex.quote(sys.executable)} -m raysym.cli inspect {shlex.quote(str(data))} | head -1"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert done.stdout.count("\n") == 1 and "spring 2D" in done.stdout
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode in (0, 141)  # 0 when everything fitted in the pipe before head closed it
