"""Simulation as a Ray Data pipeline (or in one process, without Ray), written as Parquet shards with a
manifest. Reading them, checksums and IQR pruning are raysym.shard_reader (its names are here too).

Layout of a dataset folder::

    dataset.json                       manifest: parameters, schema, row counts, sha256 per shard
    train/sims-0000000-0002096.parquet one shard per block of simulations (file names give sim ids)
    test/sims-0000000-0000249.parquet  test simulations: other random streams of the same seed

Rows are snapshots (graphs) with the columns of raysym.shard_format (the schema and the conversions
between tables and arrays).

Writing: ``ray.data.range(sims)`` is cut into blocks of ``sims_per_shard`` (default: ~32 MiB of rows,
so that Ray Data's per-task overhead stays small); each block is
simulated and written as one shard by a Ray Data task, which returns the shard's manifest entry.
Everything goes to a temporary sibling folder that is renamed into place when complete, so an
interrupted run leaves nothing half-written under the output name.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from raysym import __version__, physics
from raysym.config import SimulationConfig
from raysym.errors import UserError
from raysym.potential import named_failures, simulation_failed
from raysym.shard_format import (  # noqa: F401 -- the format's names, read by raysym.shards' callers too
    COLUMNS,
    MANIFEST,
    SCHEMA_VERSION,
    arrow_schema,
    flat_column,
    from_table,
    row_bytes,
    sha256,
    sims_per_shard,
    to_table,
)
from raysym.shard_reader import (  # noqa: F401 -- the readers, read by raysym.shards' callers
    GraphDataset,
    PruneReport,
    load_dataset,
    prune_bounds,
    prune_report,
    ray_dataset,
    read_manifest,
    read_split,
    training_graphs,
    verify_shards,
)
from raysym.simulate import SPLITS, Snapshots, bytes_per_sim, simulate  # noqa: F401 -- SPLITS, Snapshots: for callers

# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


@dataclass
class WriteResult:
    path: Path
    manifest: dict[str, Any]
    reused: bool
    seconds: float


def _write_shard(batch: dict[str, np.ndarray], cfg: SimulationConfig, split: str, folder: str) -> dict[str, list]:
    """Ray Data map_batches function: simulate one block of sims, write it as one shard, describe it."""
    ids = np.sort(batch["id"])
    snaps = simulate(cfg, split, ids)
    # A step too large for the system blows trajectories up to inf/NaN; such a shard is never written,
    # only counted, so the run can stop with the simulations named (see write_dataset).
    finite = np.ones(len(snaps), dtype=bool)
    for field in ("pos", "vel", "acc"):
        finite &= np.isfinite(getattr(snaps, field)).reshape(len(snaps), -1).all(axis=1)
    bad = np.unique(snaps.sim[~finite])
    if len(bad):
        return {
            "file": [f"{split}/"],
            "rows": [0],
            "sha256": [""],
            "first_sim": [int(ids[0])],
            "last_sim": [int(ids[-1])],
            "blown_up": [len(bad)],
            "first_blown_up": [int(bad[0])],
        }
    table = to_table(snaps)
    name = f"{split}/sims-{ids[0]:07d}-{ids[-1]:07d}.parquet"
    path = Path(folder) / name
    # Dictionary encoding only bloats float columns: without it writing is ~5x faster and smaller.
    pq.write_table(table, path, use_dictionary=False)
    return {
        "file": [name],
        "rows": [table.num_rows],
        "sha256": [sha256(path)],
        "first_sim": [int(ids[0])],
        "last_sim": [int(ids[-1])],
        "blown_up": [0],
        "first_blown_up": [-1],
    }


def _check_output(out: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of an existing dataset at ``out`` with these params, or None if ``out`` is free.

    Raises UserError when ``out`` holds something else, so nothing is ever overwritten.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise UserError(f"The output path {out} is a file, not a folder. Choose another --out.")
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        if any(out.iterdir()):
            raise UserError(
                f"The output folder {out} is not empty and holds no raysym dataset ({MANIFEST} is "
                "missing). raysym will not write into it, to keep its files safe. Choose another --out, "
                "or empty the folder."
            )
        return None
    manifest = read_manifest(out)
    if manifest.get("params") != params or manifest.get("schema_version") != SCHEMA_VERSION:
        old = manifest.get("params", {})
        diffs = [
            f"{k}: {old.get(k)!r} there, {params.get(k)!r} now"
            for k in sorted(set(old) | set(params))
            if old.get(k) != params.get(k)
        ]
        if manifest.get("schema_version") != SCHEMA_VERSION:
            diffs.append(f"schema version: {manifest.get('schema_version')} there, {SCHEMA_VERSION} now")
        raise UserError(
            f"The output folder {out} already holds a dataset made with other parameters "
            f"({'; '.join(diffs)}). raysym does not overwrite data: choose another --out, or delete "
            "the folder to replace it."
        )
    return manifest


def _check_resources(out: Path, cfg: SimulationConfig) -> None:
    """Refuse sizes this machine cannot hold: one simulation's memory, or the dataset's disk space."""
    n, dim = cfg.particles, cfg.dim
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    one_sim = bytes_per_sim(cfg)
    if one_sim > memory / 4:
        raise UserError(
            f"One simulation of {n:,} particles needs about {one_sim / 2**30:.1f} GiB of working memory "
            f"(the dense n x n pair forces), more than a quarter of this machine's {memory / 2**30:.0f} GiB. "
            "Use fewer --particles."
        )
    rows = (cfg.sims + cfg.resolved_test_sims) * cfg.snapshots_per_sim
    need = rows * row_bytes(n, dim)
    from raysym.track import check_writable_folder

    check_writable_folder(out, "The dataset folder", "--out (or data.root)")
    parent = out.resolve()
    while not parent.exists():  # the disk it will be written on: its nearest existing folder's
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if need > 0.9 * free:
        if free == 0:
            raise UserError(
                f"{parent} has no free space at all (a full disk, or no disk: a system folder like /proc), so the "
                f"dataset ({_size(need)}, {rows:,} graphs of {n} particles) cannot be written there. Choose another "
                "--out (or data.root)."
            )
        raise UserError(
            f"The dataset would need about {_size(need)} ({rows:,} graphs of {n} particles) but "
            f"only {_size(free)} is free under {parent}. Reduce --sims, --steps or --particles, "
            "raise --stride, or write to a larger disk."
        )


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _acc_quartiles(files: list[Path]) -> tuple[float, float]:
    """Q1 and Q3 of every acceleration component in these shards (exact, not sketched)."""
    acc = pq.read_table(files, columns=["acc"])["acc"]
    q1, q3 = np.quantile(flat_column(acc, (-1,)).astype(np.float64), [0.25, 0.75])
    return float(q1), float(q3)


def _remove_leftovers(out: Path, progress: Callable[[str], None]) -> None:
    """Delete the hidden temporary folders of earlier runs on ``out`` that were killed outright (SIGKILL,
    power loss) before they could clean up; a folder whose writer still runs is left alone."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name[len(f".{out.name}.tmp-") :].split("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        progress(f"removed {tmp.name}, left by an earlier run on {out.name} that was killed before it finished")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


ENGINES = ("ray", "local")


def _ray_shards(cfg: SimulationConfig, sizes: dict[str, int], counts: dict[str, int], tmp: Path):
    """The written shards' descriptions, as Ray Data finishes them: one execution for both splits, so worker
    start-up is paid once, one block of each range per shard."""
    import ray.data

    pipelines = [
        ray.data.range(sims, override_num_blocks=counts[split]).map_batches(
            _write_shard,
            fn_kwargs={"cfg": cfg, "split": split, "folder": str(tmp)},
            batch_size=None,  # one block of the range = one shard
            batch_format="numpy",
            num_cpus=1,
        )
        for split, sims in sizes.items()
    ]
    yield from named_failures(pipelines[0].union(*pipelines[1:]).iter_rows(), cfg.system, cfg.potential)


def _local_shards(cfg: SimulationConfig, sizes: dict[str, int], counts: dict[str, int], tmp: Path):
    """The same shards written one after another in this process (no Ray)."""
    for split, sims in sizes.items():
        for ids in np.array_split(np.arange(sims), counts[split]):
            try:
                shard = _write_shard({"id": ids}, cfg, split, str(tmp))
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 -- a custom formula failing where a simulation went
                if cfg.system != "custom":
                    raise
                raise simulation_failed(cfg.potential, f"{type(exc).__name__}: {str(exc)[:300]}") from None
            yield {k: v[0] for k, v in shard.items()}


def write_dataset(
    cfg: SimulationConfig,
    out: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[str], None] = lambda msg: None,
    engine: str = "ray",
) -> WriteResult:
    """Simulate ``cfg`` on Ray Data and write its train and test shards plus the manifest to ``out``.

    If ``out`` already holds the same dataset (same parameters), it is verified and reused. ``engine="local"``
    simulates the same shards one after another in this process, without Ray (a GPU machine with no Ray
    installed, benchmarks/device.sh): every simulation draws from its own random stream, so the data are the
    same either way (tests/e2e/test_shards.py).
    """
    if engine not in ENGINES:
        raise UserError(f"Unknown simulation engine {engine!r}: use one of {', '.join(ENGINES)}.")
    start = time.perf_counter()
    out = Path(out)
    params = cfg.data_params()
    existing = _check_output(out, params)
    if existing is not None:
        verify_shards(out, existing)
        return WriteResult(out, existing, reused=True, seconds=time.perf_counter() - start)
    _check_resources(out, cfg)
    if engine == "ray":
        from raysym._ray import ensure_ray  # Ray only where the work is distributed

        ensure_ray(address, num_cpus)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out, progress)
    # The writer's pid in the name: a later run can tell a dead run's leftovers from a live one's.
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        # One Ray Data execution for both splits, so worker start-up is paid once.
        sizes = {"train": cfg.sims, "test": cfg.resolved_test_sims}
        per_shard = sims_per_shard(cfg)
        counts = {split: -(-sims // per_shard) for split, sims in sizes.items()}
        for split in sizes:
            (tmp / split).mkdir(parents=True)
        written = {split: [] for split in sizes}
        total = sum(counts.values())
        blown_up = []  # per shard that left the finite numbers: (split, first sim that did, how many)
        shard_rows = _ray_shards if engine == "ray" else _local_shards
        for row in shard_rows(cfg, sizes, counts, tmp):
            shard = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            if shard["blown_up"]:
                blown_up.append((shard["file"].rstrip("/"), shard["first_blown_up"], shard["blown_up"]))
                continue
            del shard["blown_up"], shard["first_blown_up"]
            split = shard["file"].split("/")[0]
            written[split].append(shard)
            done = sum(len(v) for v in written.values())
            elapsed = time.perf_counter() - start
            left = f", about {elapsed / done * (total - done):.0f} s left" if done < total else ""
            progress(f"{done}/{total} shards written ({shard['file']}), {elapsed:.0f} s{left}")
        if blown_up:
            first = ", ".join(f"{split} simulation {sim}" for split, sim, _ in sorted(blown_up)[:3])
            raise UserError(
                f"The simulation blew up: positions, velocities or accelerations became infinite or NaN in "
                f"{sum(n for *_, n in blown_up)} simulation(s) at dt={cfg.resolved_dt:g} ({cfg.system}), e.g. {first}. "
                "Nothing was "
                f"written. Use a smaller step, e.g. --dt {cfg.resolved_dt / 10:g}, or leave --dt out for the "
                f"system's default ({physics.get_law(cfg.law).default_dt:g})."
            )
        splits = {}
        for split, sims in sizes.items():
            listed = sorted(written[split], key=lambda s: s["first_sim"])
            splits[split] = {"sims": sims, "rows": sum(s["rows"] for s in listed), "shards": listed}

        q1, q3 = _acc_quartiles([tmp / s["file"] for s in splits["train"]["shards"]])
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "raysym_version": __version__,
            "params": params,
            "layout": {"sims_per_shard": per_shard},
            "rng": "numpy SeedSequence(seed, spawn_key=(split, sim)); split 0 = train, 1 = test",
            "columns": COLUMNS,
            "train_acc_quartiles": {"q1": float(q1), "q3": float(q3)},
            "splits": splits,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            if out.exists():  # an empty folder (checked above): make room for the rename
                out.rmdir()
            os.rename(tmp, out)
        except OSError:
            # Another writer of the same dataset finished first (two sweeps sharing data, started together):
            # theirs is the same data (same parameters and seed), so it is used and this copy dropped.
            try:
                theirs = _check_output(out, params)
            except UserError:
                theirs = None
            if theirs is not None:
                return WriteResult(out, theirs, reused=True, seconds=time.perf_counter() - start)
            raise UserError(
                f"{out} was filled by something else while this run was writing (another raysym "
                "simulate with the same --out?). Its contents were left alone and this run's data "
                "discarded; check the folder, then run again."
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return WriteResult(out, manifest, reused=False, seconds=time.perf_counter() - start)
