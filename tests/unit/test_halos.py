"""Halo catalogs: the radius graph against a brute-force neighbour search, the synthetic target, the
catalog reader, and the synthetic law recovered by training and distillation."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from raysym.errors import UserError
from raysym.halo_data import COLUMNS, edge_term, radius_graph, read_catalog, synthetic_catalog


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


def test_synthetic_law_is_recovered_by_training_and_distillation(tmp_path):
    """The documented setting (the HaloConfig defaults): 1,000 points (box 15.9, radius 2: about 8.4
    neighbours each), 300 epochs of full-batch Adam (lr 3e-3, cosine decay), L1 0.1; Operon fast on
    2,000 edges and nodes. Measured: test MAE 0.042 against a target std of 1.56, the messages' leading
    direction R² 0.992 and the edge formula's R² 0.997 against m2 / (r + 1)."""
    import torch

    from raysym.config import DistillConfig, HaloConfig
    from raysym.halo_distill import run_halos

    torch.set_num_threads(1)  # the same numbers on any machine
    cfg = HaloConfig(device="cpu")
    out = run_halos(cfg, DistillConfig(backend="operon", setting="fast", seed=0, samples=2000), tmp_path)
    assert out["test/mae"] < 0.1 * out["data/target_std"]
    assert out["messages/r2_vs_true_edge"] > 0.98
    assert out["distill/recovered_as"] == "edge term" and out["distill/r2_vs_true_edge"] >= 0.99, out[
        "distill/edge_formulas"
    ]
    # the composed symbolic model (edge formula summed at each receiver, node formula) predicts the
    # held-out targets to a tenth of their spread
    assert out["distill/test_mae"] < 0.1 * out["data/target_std"]


def test_raysym_halos_command_writes_its_summary(tmp_path, capsys):
    import json

    from raysym.cli import main

    out = tmp_path / "halos"
    assert main(["halos", "--points", "300", "--epochs", "40", "--setting", "fast", "--out", str(out)]) == 0
    summary = json.loads((out / "halos.json").read_text())
    assert summary["data/points"] == 300 and summary["data/edges"] > 300 and summary["config"]["epochs"] == 40
    assert (
        summary["distill/recovered"] in (0, 1) and summary["distill/edge_formulas"] and summary["distill/node_formulas"]
    )
    for name in ("edge0_front.csv", "node0_front.csv", "summary.json"):
        assert (out / "distill" / name).is_file(), name
    assert "LaTeX" in (out / "distill" / "edge0_front.md").read_text()
    assert '"distill/edge_formulas"' in capsys.readouterr().out
    assert main(["halos", "--radius", "-1", "--out", str(out)]) == 2
    assert "radius must be a positive distance" in capsys.readouterr().err
    assert main(["halos", "--catalog", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "new")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    # the finished trial is not replaced by one with other settings
    before = (out / "halos.json").read_bytes()
    assert main(["halos", "--points", "200", "--epochs", "2", "--out", str(out)]) == 2
    assert (
        "holds a trial with other settings" in capsys.readouterr().err and (out / "halos.json").read_bytes() == before
    )


def test_leading_direction_is_the_first_principal_axis():
    """Chunked float64 covariance + eigh (what raysym uses: messages can be millions of rows) against an
    SVD of the whole centred matrix, over more rows than one chunk (three whole chunks and a part: chunks of
    7,000 rows here, the 100,000 of a real run would need an SVD of 250,000 rows, 9 s of the unit tier)."""
    from raysym.halos import leading_direction

    rng = np.random.default_rng(0)
    messages = (
        rng.normal(size=(25_000, 5)) @ rng.normal(size=(5, 100)) + 0.1 * rng.normal(size=(25_000, 100)) + 3
    ).astype(np.float32)
    axis, fraction = leading_direction(messages, chunk_rows=7_000)
    centred = messages.astype(np.float64) - messages.astype(np.float64).mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    want = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    np.testing.assert_allclose(axis, want, atol=1e-10)
    assert fraction == pytest.approx(sv[0] ** 2 / np.sum(sv**2), rel=1e-10)
    assert axis[np.argmax(np.abs(axis))] > 0  # signed: the projection grows with the largest entry
