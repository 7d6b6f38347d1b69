"""benchmarks/device.sh, the one call a lent GPU machine gets (issue 29, item 6), run here with --dry-run:
every step on CPU at the smallest sizes, the way the GPU machine runs it (time to law without Ray)."""

import json
import re
import subprocess
from pathlib import Path

from helpers import session_ray_env

ROOT = Path(__file__).resolve().parents[2]


def test_the_device_script_dry_run_runs_every_step_on_cpu(local_ray, tmp_path):
    # The overhead step's four runs join the session's Ray (RAY_ADDRESS, helpers.session_ray_env) instead of
    # starting four local Rays: ~30 core-s of CI's time (issue 29). The GPU machine's run starts its own.
    address, env = session_ray_env()
    done = subprocess.run(
        ["bash", "benchmarks/device.sh", "--dry-run"],
        cwd=ROOT,
        env={**env, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "SKIPPED" not in out and "FAILED" not in out  # Ray, MLflow and pyoperon are installed here
    log = (tmp_path / "throughput.log").read_text()
    assert "device cpu" in log
    tables = re.split(r"^data: .*hidden (\d+), messages 100$", log, flags=re.M)[1:]  # [width, table, ...]
    assert [int(w) for w in tables[::2]] == [128, 300], log  # a table per width, in one process
    for table in tables[1::2]:
        rates = re.search(r"^\s+64\s+([\d,]+)\s+([\d,]+)\s+[\d.]+x$", table, re.M)
        assert rates and all(int(g.replace(",", "")) > 0 for g in rates.groups()), log
    overhead = [json.loads(line) for line in (tmp_path / "overhead.jsonl").read_text().splitlines()]
    assert len(overhead) == 1 and overhead[0]["gpus_per_trial"] == 0 and overhead[0]["smoke"] is True
    # smoke: one 1-trial run of each of two sides, measured (trials, core-s, wall s); no marginal cost
    runs = overhead[0]["runs"]
    assert sorted(runs) == ["bare", "raysym"] and all(len(r) == 1 and r[0][0] == 1 for r in runs.values())
    assert all(cpu > 0 and wall > 0 for r in runs.values() for _, cpu, wall in r)
    assert overhead[0]["raysym_core_s"] is None and overhead[0]["ratio_core_s"] is None
    assert overhead[0]["ray_address"] == address
    rows = [json.loads(line) for line in (tmp_path / "time_to_law.jsonl").read_text().splitlines()]
    got = [(r["system"], r["dim"], r["model"], r["hidden"], r["device"]) for r in rows]
    assert got == [("spring", 2, "l1", 16, "cpu")]
    assert rows[0]["epochs"] >= 1 and rows[0]["distill_s"] > 0 and rows[0]["edge_formulas"]  # trained, then distilled
    assert not re.search(r"\bray\b", (tmp_path / "time_to_law.log").read_text(), re.I)  # the GPU machine's path


def test_the_device_script_refuses_an_unknown_argument():
    done = subprocess.run(["bash", "benchmarks/device.sh", "--fast"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument '--fast'" in done.stderr
