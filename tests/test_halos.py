"""Halo catalogs: the radius graph against a brute-force neighbour search, the synthetic target, the
catalog reader, and the synthetic law recovered by training and distillation."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from raysym.errors import UserError
from raysym.halos import (COLUMNS, distill_halos, edge_term, radius_graph, read_catalog, synthetic_catalog,
                          train_halos)


def _brute_force(pos, radius, box=None):
    d = pos[None, :, :] - pos[:, None, :]  # [receiver, sender] = x_sender - x_receiver
    if box:
        d = d - box * np.round(d / box)
    r = np.linalg.norm(d, axis=-1)
    receivers, senders = np.nonzero((r < radius) & ~np.eye(len(pos), dtype=bool))
    return senders, receivers  # np.nonzero is row-major: sorted by receiver, then sender


@pytest.mark.parametrize("box", [None, 10.0])
def test_radius_graph_matches_brute_force(box):
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 10, size=(400, 3))
    senders, receivers = radius_graph(pos, 1.3, box)
    want_s, want_r = _brute_force(pos, 1.3, box)
    assert len(senders) > 400  # a real test: many neighbours
    np.testing.assert_array_equal(receivers, want_r)
    np.testing.assert_array_equal(senders, want_s)


def test_radius_graph_refuses_a_radius_beyond_half_the_box():
    with pytest.raises(UserError, match="half the box"):
        radius_graph(np.zeros((3, 3)), 6.0, box=10.0)


def test_synthetic_target_is_the_sum_of_the_edge_term_over_neighbours():
    cat = synthetic_catalog(300, box=8.0, radius=1.5, seed=1)
    senders, receivers = _brute_force(cat.pos, 1.5, 8.0)
    d = cat.pos[senders] - cat.pos[receivers]
    r = np.linalg.norm(d - 8.0 * np.round(d / 8.0), axis=1)
    want = np.zeros(300)
    np.add.at(want, receivers, cat.mass[senders] / (r + 1))
    np.testing.assert_allclose(cat.target, want, rtol=1e-12)
    np.testing.assert_allclose(edge_term(r, cat.mass[senders]), cat.mass[senders] / (r + 1))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_catalogs_are_read_from_named_columns(tmp_path, suffix):
    cat = synthetic_catalog(50, box=5.0, radius=1.0)
    columns = dict(zip(COLUMNS, [*cat.pos.T, *cat.vel.T, cat.mass]))
    table = pa.table({**columns, "overdensity": cat.target, "id": np.arange(50)})
    path = tmp_path / f"halos{suffix}"
    (pcsv.write_csv if suffix == ".csv" else pq.write_table)(table, path)
    back = read_catalog(path, target="overdensity", box=5.0)
    np.testing.assert_allclose(back.pos, cat.pos)
    np.testing.assert_allclose(back.target, cat.target)
    with pytest.raises(UserError, match="no column"):
        read_catalog(path, target="delta")
    with pytest.raises(UserError, match="cannot be read"):
        read_catalog(tmp_path / "missing.parquet")


def test_catalog_with_nan_is_refused(tmp_path):
    cat = synthetic_catalog(20, box=5.0, radius=1.0)
    mass = cat.mass.copy()
    mass[3] = np.nan
    table = pa.table({**dict(zip(COLUMNS, [*cat.pos.T, *cat.vel.T, mass])), "delta": cat.target})
    pq.write_table(table, tmp_path / "h.parquet")
    with pytest.raises(UserError, match="NaN"):
        read_catalog(tmp_path / "h.parquet")


def test_synthetic_law_is_recovered_by_training_and_distillation():
    """The documented setting: 1,000 points (box 15.9, radius 2: about 9 neighbours each), 300 epochs
    of full-batch Adam (lr 3e-3, cosine decay), L1 0.1; Operon fast on 2,000 edges. Measured: test MAE
    0.049 against a target std of 1.5, messages' leading direction R² 0.992 and formula R² 0.997
    against m2 / (r + 1)."""
    import torch

    from raysym.config import DistillConfig

    torch.set_num_threads(1)  # the same numbers on any machine
    cat = synthetic_catalog(1000, 20.0 * 0.5 ** (1 / 3), 2.0, seed=0)
    result = train_halos(cat, 2.0, epochs=300, lr=3e-3, l1=1e-1)
    assert result.test_mae < 0.1 * np.std(cat.target)
    out = distill_halos(result, DistillConfig(backend="operon", setting="fast", seed=0), samples=2000)
    assert out["r2_messages_vs_true"] > 0.98
    assert out["recovered"] and out["r2_formula_vs_true"] >= 0.99, out["formula"]


def test_raysym_halos_command_writes_its_summary(tmp_path, capsys):
    import json

    from raysym.cli import main

    out = tmp_path / "halos"
    assert main(["halos", "--points", "300", "--epochs", "40", "--setting", "fast", "--out", str(out)]) == 0
    summary = json.loads((out / "halos.json").read_text())
    assert summary["points"] == 300 and summary["edges"] > 300 and summary["config"]["epochs"] == 40
    assert isinstance(summary["distill/recovered"], bool) and summary["distill/formula"]
    assert (out / "edge_front.csv").is_file() and "LaTeX" in (out / "edge_front.md").read_text()
    assert '"distill/formula"' in capsys.readouterr().out
    assert main(["halos", "--radius", "-1", "--out", str(out)]) == 2
    assert "radius must be a positive distance" in capsys.readouterr().err
    assert main(["halos", "--catalog", str(tmp_path / "none.parquet"), "--out", str(out)]) == 2
    assert "cannot be read" in capsys.readouterr().err
