"""raysym report: tables checked against the runs' own metrics in a real MLflow store, after a tiny real sweep."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import mlflow_runs, sweep_dict, write_yaml

from raysym.cli import main
from raysym.config import SweepConfig, from_dict
from raysym.report import make_report
from raysym.report_cells import Row, stat_cell
from raysym.report_data import Published, Trial
from raysym.sweep import run_sweep

# --------------------------------------------------------------------------------------------------
# Without Ray or MLflow
# --------------------------------------------------------------------------------------------------


def test_published_numbers_are_read_from_the_csv():
    pub = Published.load()
    assert pub.value("paper2020", "test_mae", "spring", 2, "bottleneck") == "0.046"
    assert pub.value("paper2020", "r2_force", "charge", 3, "kl") == "0.425"
    assert pub.value("re2024", "r2_force", "spring", 2, "l1-linear", table="Table 2") == "0.970"
    assert pub.value("re2024", "r2_force", "spring", 2, "bottleneck", table="Table 3") == "0.875"
    assert pub.value("re2024", "symbolic_mae", "r1", 2, "l1-linear") == "1.32959"
    assert pub.value("paper2020", "law_recovered", "charge", 3, "bottleneck") == "1"
    assert pub.value("re2024", "test_mae", "spring", 3, "bottleneck") is None  # the reproduction is 2D only


def test_cells_say_why_a_value_is_missing():
    def trial(status, mae=None):
        return Trial("t000", "x", status, metrics={} if mae is None else {"test/mae": mae})

    def row(*ts):
        return Row("spring", 2, "bottleneck", 1.5, None, list(ts))

    assert stat_cell(row(trial("FINISHED", 0.5), trial("FINISHED", 0.7)), "test/mae") == "0.600 ± 0.141"
    assert stat_cell(row(trial("FINISHED", 0.5), trial("FAILED")), "test/mae") == "0.500 (1 of 2)"
    assert stat_cell(row(trial("FAILED"), trial("FAILED")), "test/mae") == "failed (2)"
    assert stat_cell(row(trial("NOT RUN")), "test/mae") == "not run"
    assert stat_cell(row(trial("FINISHED")), "test/mae") == "not recorded"


def test_missing_published_file_is_a_user_error(tmp_path, capsys):
    assert (
        main(["report", "any", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--published", str(tmp_path / "no.csv")])
        == 2
    )
    assert "published numbers file" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# A real tiny sweep
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_sweep(local_ray, tmp_path_factory):
    """Bottleneck and L1 over two seeds, distilled (fast Operon) as they finish, then rolled out (twice the
    particles, and 8 particles at twice the initial spread)."""
    tmp_path = tmp_path_factory.mktemp("report")
    cfg = from_dict(
        SweepConfig,
        sweep_dict(
            tmp_path,
            name="seeds",
            trials={"model": ["bottleneck", "l1"], "seed": [0, 1]},
            distill={"backend": "operon", "setting": "fast", "samples": 200},
            rollout={
                "sims": 2,
                "steps": 12,
                "regimes": {"double": {"particle_factor": 2}, "wide8": {"particles": 8, "scale": 2.0}},
            },
        ),
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [r["status"] for r in outcome.rows] == ["finished"] * 4
    return tmp_path, cfg, outcome


def _table(outcome, title):
    return next(t for s in outcome.sections for t in s.tables if t.title.startswith(title))


def test_report_tables_match_the_runs_metrics(seeded_sweep, tmp_path):
    db, cfg, _ = seeded_sweep
    client, runs = mlflow_runs(db)
    trials = [r for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags]
    by_model = {m: [r for r in trials if r.data.params["model"] == m] for m in ("bottleneck", "l1")}
    report = make_report(cfg.tracking.uri, "seeds", tmp_path / "rep", say=lambda m: None)

    mae = {row[1]: row for row in _table(report, "Test MAE").rows}
    assert set(mae) == {"bottleneck", "l1-linear"}
    stat = lambda values, digits=3: f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    for model, label in (("bottleneck", "bottleneck"), ("l1", "l1-linear")):
        values = [r.data.metrics["test/mae"] for r in by_model[model]]
        inside = [r.data.metrics["test/mae_in_range"] for r in by_model[model]]
        share = [r.data.metrics["messages/in_range_fraction"] for r in by_model[model]]
        assert mae[label][3] == "2"  # trials in the row
        assert mae[label][4] == stat(inside) and mae[label][5] == f"{100 * statistics.fmean(share):.0f}%"
        assert mae[label][6] == stat(values)
    acpcr = [r.data.metrics["test/acpcr"] for r in by_model["l1"]]
    assert mae["l1-linear"][7] == stat(acpcr)
    assert mae["bottleneck"][8:] == ["0.046", "0.01361"]  # paper Table 3, reproduction Table 1 (spring-2)
    assert mae["l1-linear"][8:] == ["0.045", "0.02092"]

    r2 = {row[1]: row for row in _table(report, "R² of the messages").rows}
    values = [r.data.metrics["messages/r2_force"] for r in by_model["l1"]]
    assert r2["l1-linear"][3].startswith(f"{statistics.fmean(values):.3f}")
    assert r2["bottleneck"][-2:] == ["1.000", "0.875"]  # paper 2020 Table 1, reproduction Table 3
    for model, label in (("bottleneck", "bottleneck"), ("l1", "l1-linear")):  # in distribution, all edges, robust
        for column, key in ((3, "messages/r2_force"), (5, "messages/r2_force_all"), (6, "messages/r2_force_robust")):
            values = [r.data.metrics[key] for r in by_model[model]]
            assert r2[label][column] == stat(values), (label, key)
        share = [r.data.metrics["messages/in_range_fraction"] for r in by_model[model]]
        assert r2[label][4] == f"{100 * statistics.fmean(share):.0f}%"  # beside the in-distribution R²
    table1 = _table(report, "The paper's Table 1")
    assert table1.header == [
        "system",
        "bottleneck: robust, paper-comparable (raysym)",
        "bottleneck: in distribution; all edges; vs force÷m (raysym)",
        "bottleneck (paper)",
        "l1-linear: robust, paper-comparable (raysym)",
        "l1-linear: in distribution; all edges; vs force÷m (raysym)",
        "l1 (paper)",
    ]
    assert table1.rows[0][0] == "spring-2d" and table1.rows[0][3] == "1.000" and table1.rows[0][6] == "1.000"
    assert table1.rows[0][1] == r2["bottleneck"][6]  # the trimmed fit first: the column to hold against the paper
    assert table1.rows[0][2].startswith(f"{r2['bottleneck'][3]} [{r2['bottleneck'][4]} in range]; all edges")
    accel = [r.data.metrics["messages/r2_accel"] for r in by_model["bottleneck"]]  # force / m, beside the force
    assert table1.rows[0][2].endswith(f"; force÷m {stat(accel)}")
    table5 = _table(report, "The paper's Table 5")
    assert table5.rows[0][2] == "yes" and re.fullmatch(r"[012] of 2( \(as [a-z/, ]+\))?", table5.rows[0][1])
    schedule = _table(report, "R² by L1 schedule").rows
    assert len(schedule) == 1 and schedule[0][-1] == "0.970"

    law = {row[1]: row for row in _table(report, "Law recovered").rows}
    hits = int(sum(r.data.metrics["distill/recovered"] for r in by_model["bottleneck"]))
    assert law["bottleneck"][6].startswith({0: "0 of 2", 1: "1 of 2", 2: "2 of 2"}[hits])
    assert law["bottleneck"][-2:] == ["yes", "yes"]
    assert law["bottleneck"][3:6] == ["n/a (no sparsity prior)", "n/a", "n/a"]  # no prior: nothing asked
    shares = [r.data.metrics["messages/sparsity_share"] for r in by_model["l1"]]
    assert law["l1-linear"][5] == stat(shares)
    symbolic = {row[1]: row for row in _table(report, "Symbolic model").rows}
    values = [r.data.metrics["distill/test_mae"] for r in by_model["bottleneck"]]
    assert symbolic["bottleneck"][5].startswith(f"{statistics.fmean(values):.3f}")  # all graphs; in range in column 3
    assert symbolic["bottleneck"][-1] == "1.64237"

    every = _table(report, "Every trial").rows
    assert sorted(row[3] for row in every) == ["finished"] * 4
    assert {row[-1] for row in every} == {r.info.run_id for r in trials}

    md = report.markdown.read_text()
    html = report.html.read_text()
    for name in (
        "loss_curves.png",
        "l1_schedules.png",
        "messages_vs_force.png",
        "message_stds.png",
        "message_stds_by_epoch.png",
        "ood_position_error.png",
    ):
        assert (report.markdown.parent / "figures" / name).stat().st_size > 1000
        assert f"figures/{name}" in md
    assert html.count("data:image/png;base64,") == 6  # the HTML stands alone
    assert "Not drawn" in md and "pruning factor" in md  # one k, no Optuna: said, not silently dropped


def test_rollout_section_logs_ood_metrics_and_the_report_compares_gn_and_symbolic(seeded_sweep, tmp_path):
    """The sweep's rollout section: every distilled trial rolled out per regime (in_dist first), ood/* on the
    trial's run, the result and figure on its distillation run; the report's table reads them back."""
    db, cfg, _ = seeded_sweep
    client, runs = mlflow_runs(db)
    trials = [r for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags]
    keys = {
        f"ood/{regime}/{what}"
        for regime in ("in_dist", "double", "wide8")
        for model in ("gn", "symbolic")
        for what in (f"onestep_mae_{model}", f"position_error_{model}_t1", f"position_error_{model}_t10")
        + (f"position_error_{model}_t12",)
    }
    for run in trials:
        assert keys <= set(run.data.metrics), sorted(keys - set(run.data.metrics))
        assert all(run.data.metrics[k] > 0 for k in keys)
    distill_run = next(r for r in runs if r.data.tags.get("raysym.distill_of"))
    assert {a.path for a in client.list_artifacts(distill_run.info.run_id, "ood")} == {
        "ood/rollout.json",
        "ood/position_error.png",
    }
    report = make_report(cfg.tracking.uri, "seeds", tmp_path / "rep", say=lambda m: None)
    table = _table(report, "GN vs symbolic, in and out of distribution")
    assert [(row[1], row[3].split(":")[0]) for row in table.rows] == [
        (model, regime) for model in ("bottleneck", "l1-linear") for regime in ("in distribution", "double", "wide8")
    ]
    assert table.rows[1][3] == "double: 2x the particles, states x1"
    assert table.rows[2][3] == "wide8: 8 particles, states x2"
    l1 = [r for r in trials if r.data.params["model"] == "l1"]
    gn = [r.data.metrics["ood/wide8/position_error_gn_t12"] for r in l1]
    sym = [r.data.metrics["ood/wide8/position_error_symbolic_t12"] for r in l1]
    row = table.rows[5]
    assert row[7] == f"{statistics.fmean(gn):.3g} ± {statistics.stdev(gn):.2g}"
    assert row[8] == f"{statistics.fmean(sym):.3g} ± {statistics.stdev(sym):.2g}"
    assert row[10] == "12" and row[11] == f"{sum(s < g for s, g in zip(sym, gn))} of 2"


def test_failed_and_missing_trials_are_shown_as_such(seeded_sweep, tmp_path):
    """A trial the store records as failed, and one the sweep planned but that never ran."""
    db, cfg, _ = seeded_sweep
    copy = tmp_path / "mlflow.db"
    copy.write_bytes((db / "mlflow.db").read_bytes())  # the fixture's store stays untouched
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{copy}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tests")
    trials = [
        r
        for r in client.search_runs([exp.experiment_id])
        if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags
    ]
    bottleneck = sorted(
        (r for r in trials if r.data.params["model"] == "bottleneck"), key=lambda r: r.data.tags["raysym.trial_key"]
    )
    l1 = [r for r in trials if r.data.params["model"] == "l1"]
    for r in l1:
        client.set_terminated(r.info.run_id, "FAILED")
    client.delete_run(bottleneck[1].info.run_id)
    report = make_report(uri, "seeds", tmp_path / "rep", say=lambda m: None)

    mae = {row[1]: row for row in _table(report, "Test MAE").rows}
    assert mae["l1-linear"][4] == "failed (2)"
    kept = bottleneck[0].data.metrics
    assert mae["bottleneck"][4] == f"{kept['test/mae_in_range']:.3f} (1 of 2)"  # in distribution
    assert mae["bottleneck"][6] == f"{kept['test/mae']:.3f} (1 of 2)"  # every unpruned test graph
    statuses = sorted(row[3] for row in _table(report, "Every trial").rows)
    assert statuses == ["failed", "failed", "finished", "not run"]
    assert _table(report, "Law recovered").rows[-1][6] == "failed (2)"


def test_report_cli_from_the_sweep_yaml(seeded_sweep, tmp_path, monkeypatch, capsys):
    db, cfg, _ = seeded_sweep
    monkeypatch.chdir(tmp_path)
    path = write_yaml(tmp_path / "seeds.yaml", sweep_dict(db, name="seeds"))
    assert main(["report", str(path)]) == 0
    err = capsys.readouterr().err
    assert "4 trial(s): 4 finished" in err and "reports/seeds/report.md" in err
    assert Path("reports/seeds/report.html").is_file()
    assert main(["report", "nope", "--tracking-uri", cfg.tracking.uri]) == 2
    err = capsys.readouterr().err
    assert "No sweep named 'nope'" in err and "seeds" in err and "Traceback" not in err


def test_analysis_scripts_run_on_their_own(seeded_sweep, tmp_path):
    db, cfg, _ = seeded_sweep
    root = Path(__file__).resolve().parents[2] / "analysis"

    def run(*args):
        return subprocess.run(
            [sys.executable, str(root / args[0]), *args[1:]], capture_output=True, text=True, cwd=tmp_path
        )

    tables = run("tables.py", "seeds", "--tracking-uri", cfg.tracking.uri)
    assert tables.returncode == 0, tables.stderr
    assert (
        "**Test MAE by system and model**" in tables.stdout and "| spring-2d | l1-linear | 1.5 | 2 |" in tables.stdout
    )
    figures = run("figures.py", "seeds", "--tracking-uri", cfg.tracking.uri, "--out", "figs")
    assert figures.returncode == 0, figures.stderr
    assert (tmp_path / "figs" / "message_stds.png").is_file() and "skipped" in figures.stdout
    missing = run("tables.py", "nope", "--tracking-uri", cfg.tracking.uri)
    assert missing.returncode == 2 and "No sweep named 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_optuna_search_gets_its_best_shapes_table_and_figure(local_ray, tmp_path):
    search = {
        "kind": "optuna",
        "trials": 3,
        "seed": 1,
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "study": "shapes",
        "space": {
            "schedule_shape.peak": {"low": 0.01, "high": 1.0, "log": True},
            "schedule_shape.peak_at": {"low": 0.1, "high": 1.0},
        },
    }
    cfg = from_dict(
        SweepConfig, sweep_dict(tmp_path, name="shapes", trials={"model": "l1", "epochs": 2}, search=search)
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert len(outcome.rows) == 3 and all(r["status"] == "finished" for r in outcome.rows)
    report = make_report(cfg.tracking.uri, "shapes", tmp_path / "rep", say=lambda m: None)

    _, runs = mlflow_runs(tmp_path)
    objective = sorted((r.data.metrics["val/r2_best"] for r in runs if "raysym.trial_id" in r.data.tags), reverse=True)
    best = _table(report, "Best schedule shapes")
    assert [float(row[2]) for row in best.rows] == [round(v, 4) for v in objective]  # best first, every trial
    assert best.header[3:5] == ["peak", "peak_at"]
    assert _table(report, "Test MAE").rows[0][3] == "3"  # the three shapes share one row
    for name in ("optuna_shapes.png", "l1_schedules.png"):
        assert (report.markdown.parent / "figures" / name).stat().st_size > 1000


def test_sweep_over_pruning_factors_gets_r2_against_k(local_ray, tmp_path):
    cfg = from_dict(
        SweepConfig,
        sweep_dict(tmp_path, name="prune", data={"prune_k": [1.5, None]}, trials={"model": "l1", "epochs": 2}),
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [r["status"] for r in outcome.rows] == ["finished"] * 2
    report = make_report(cfg.tracking.uri, "prune", tmp_path / "rep", say=lambda m: None)

    _, runs = mlflow_runs(tmp_path)
    by_k = {r.data.params["prune_k"]: r.data.metrics for r in runs if "raysym.trial_id" in r.data.tags}
    prune = {row[2]: row for row in _table(report, "R² against pruning").rows}
    assert set(prune) == {"1.5", "none"}
    assert prune["none"][3] == f"{by_k['None']['messages/r2_force']:.3f}"
    assert prune["1.5"][5] == f"{by_k['1.5']['data/pruned_graphs']:.0f}" and prune["none"][5] == "0"
    assert (report.markdown.parent / "figures" / "r2_vs_prune.png").stat().st_size > 1000


def test_edge_variants_and_the_hamiltonian_gn_run_through_sweep_and_report(local_ray, tmp_path):
    cfg = from_dict(
        SweepConfig,
        sweep_dict(
            tmp_path,
            name="variants",
            trials={
                "model": ["wide", "inverse", "hgn", "newtonian"],
                "newtonian_messages": "l1",
                "epochs": 2,
                "hidden": 16,
            },
            distill={"backend": "operon", "setting": "fast", "samples": 200},
            rollout={"sims": 2, "steps": 3, "regimes": {}},
        ),
    )
    outcome = run_sweep(cfg, say=lambda m: None, verbose=0)
    assert [r["status"] for r in outcome.rows] == ["finished"] * 4
    report = make_report(cfg.tracking.uri, "variants", tmp_path / "rep", say=lambda m: None)
    _, runs = mlflow_runs(tmp_path)
    hgn = next(r for r in runs if r.data.params.get("model") == "hgn")
    r2 = {row[1]: row for row in _table(report, "R² of the messages").rows}
    assert set(r2) == {"hgn-linear", "inverse-linear", "wide-linear", "newtonian-l1-linear"}
    # every form rolls out: the paper's edge/node models, the Hamiltonian GN's energy, the Newtonian GN with
    # L1 messages through its readout
    for run in (r for r in runs if "raysym.trial_id" in r.data.tags and "raysym.distill_of" not in r.data.tags):
        assert run.data.metrics["ood/in_dist/position_error_symbolic_t3"] > 0, run.data.params
    assert _table(report, "R² of the messages").header[9:14] == [
        "diagnostics: messages ~ F m^-α; ~ (A + B q) F m^-α",
        "R² pair force (hgn), in distribution",
        "all edges",
        "robust",
        "R² pair energy vs U (hgn)",
    ]
    for column, key in zip(
        (10, 11, 12, 13), ("r2_pair_force", "r2_pair_force_all", "r2_pair_force_robust", "r2_potential")
    ):
        assert r2["hgn-linear"][column] == f"{hgn.data.metrics['messages/' + key]:.3f}"
    assert r2["wide-linear"][10] == "—"
    assert r2["wide-linear"][9].startswith("α = ") and r2["hgn-linear"][9] == "—"  # the mass-exponent diagnostic
    assert r2["hgn-linear"][3] == "not recorded"  # no force R² for an energy
    law = {row[1]: row for row in _table(report, "Law recovered").rows}
    assert law["hgn-linear"][6].split(" ")[0] in ("yes", "no")
    mae = {row[1]: row for row in _table(report, "Test MAE").rows}
    assert mae["wide-linear"][4].replace(".", "").isdigit() and mae["wide-linear"][8] == "—"
    assert mae["hgn-linear"][8] == "0.016"  # the paper's FlatHGN on 2D spring


# --------------------------------------------------------------------------------------------------
# The HTML report in a real browser
# --------------------------------------------------------------------------------------------------

# Appended to a copy of the report: once the page has loaded, the page's title becomes what a reader would
# see: how many images decoded, how many formulas the browser lays out as MathML (display "math" or
# "block math": a browser without MathML shows them as inline text), and the page's height.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const maths = [...document.querySelectorAll("math")];
  document.title = "PROBE " + JSON.stringify({
    images: images.length,
    decoded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    formulas: maths.length,
    laid_out: maths.filter(
      (m) => getComputedStyle(m).display.includes("math") && m.getBoundingClientRect().width > 0
    ).length,
    height: document.body.scrollHeight,
  });
});
</script>"""


def test_the_html_report_renders_in_a_real_browser(seeded_sweep, tmp_path):
    """Debian's chromium, headless (installed by .ci/run and README command 2): the report's images load,
    its formulas are laid out as mathematics, and a screenshot is kept under the test's folder."""
    import json
    import shutil

    db, cfg, _ = seeded_sweep
    report = make_report(cfg.tracking.uri, "seeds", tmp_path / "rep", say=lambda m: None)
    settings = dict(_table(report, "What produced these results").rows)
    assert "model: ['bottleneck', 'l1']" in settings["trials"] and "seed: [0, 1]" in settings["trials"]
    assert settings["distillation"].startswith("backend: operon; setting: fast")
    assert settings["run by"].startswith("raysym ") and settings["report"].startswith("written 20")
    page = report.html.read_text()
    assert "<math" in page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser test needs Debian's chromium: apt-get install chromium (.ci/run installs it)"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"<title>PROBE (\{.*?\})</title>", dom.stdout)
    assert found, f"the page did not load in chromium: {dom.stderr[-2000:]}"
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    assert seen["images"] >= 3 and seen["decoded"] == seen["images"], seen
    assert seen["formulas"] >= 4 and seen["laid_out"] == seen["formulas"], seen
    shot = tmp_path / "report.png"  # kept as the test's artifact
    subprocess.run(
        [*flags, "--window-size=1280,4000", f"--screenshot={shot}", report.html.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 50_000  # a page of tables and figures, not a blank one


PAYLOADS = [
    "<script>document.body.id='pwned'</script>",
    "<img src=x onerror=\"document.body.id='pwned'\">",
    "Symbol('<img src=x onerror=document.body.id=666>')*dx",
    "**bold** _it_ [link](javascript:alert(1)) `code`",
]


def test_a_script_planted_in_every_field_runs_in_neither_report(seeded_sweep, tmp_path):
    """Issue 28, item 7: every text tag of every run of the sweep (names, labels, settings, formulas, the
    sweep's own record) rewritten to hold script, read into a report, opened in headless chromium: nothing
    runs; report.md shows the text, escaped, and no markup of its own."""
    import ast
    import shutil

    from mlflow.tracking import MlflowClient

    db, cfg, _ = seeded_sweep
    copy = tmp_path / "planted.db"
    shutil.copy(db / "mlflow.db", copy)
    uri = f"sqlite:///{copy}"
    client = MlflowClient(uri)
    planted = 0
    for run in client.search_runs([client.get_experiment_by_name("tests").experiment_id]):
        for key, value in run.data.tags.items():
            numeric = value.replace(".", "", 1).replace("-", "", 1).isdigit()
            structure = ("raysym.sweep", "raysym.kind", "raysym.trial_id", "raysym.distill_of", "raysym.trial_key")
            if key.startswith("mlflow.") and key != "mlflow.runName" or numeric or key in structure:
                continue  # MLflow's bookkeeping, numbers, and the ids that tie runs together (refused if changed)
            payload = PAYLOADS[planted % len(PAYLOADS)]
            if key.endswith("_formulas"):
                value = str([payload, *ast.literal_eval(value)[:1]])  # the list as raysym writes it
            else:
                value = f"{value} {payload}"
            client.set_tag(run.info.run_id, key, value)
            planted += 1
    assert planted >= 40
    report = make_report(uri, "seeds", tmp_path / "rep", say=lambda m: None)
    page = report.html.read_text()
    assert "<script>document" not in page and "<img src=x" not in page
    text = report.markdown.read_text()
    assert "<script>" not in text and "<img" not in text and "**bold**" not in text and "[link](" not in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser test needs Debian's chromium: apt-get install chromium (.ci/run installs it)"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run([*flags, report.html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<body" in dom and "</table>" in dom, "the page did not load"
    assert not re.search(r"<body[^>]*id=", dom), "a planted script ran"


def test_resume_rolls_out_a_distilled_trial_whose_rollout_was_lost(seeded_sweep):
    """A sweep stopped between a trial's distillation and its rollout (issue 28, 1c): --resume runs only
    the rollout (the fronts stay as they were) and records it on the same distillation run. Last in this
    module: it rewrites one trial's ood/ folder."""
    import json
    import shutil

    db, cfg, _ = seeded_sweep
    (trial,) = list((Path(cfg.storage) / "seeds" / "distill").glob("t000_*"))
    summary = (trial / "distill" / "summary.json").read_text()
    shutil.rmtree(trial / "ood")
    said: list[str] = []
    outcome = run_sweep(cfg, resume=True, say=said.append, verbose=0)
    assert [r["status"] for r in outcome.rows] == ["finished"] * 4
    assert any("t000: trained before the sweep stopped, but its rollout did not finish" in m for m in said), said
    assert (trial / "distill" / "summary.json").read_text() == summary  # not distilled again
    assert set(json.loads((trial / "ood" / "rollout.json").read_text())["regimes"]) == {"in_dist", "double", "wide8"}
    client, runs = mlflow_runs(db)
    distills = [r for r in runs if r.data.tags.get("raysym.distill_of")]
    assert len(distills) == 4  # the same distillation runs, none added
    run = next(r for r in distills if r.data.tags["raysym.distill_of"] == trial.name.split("_", 1)[1])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "ood")} >= {"ood/rollout.json"}
    trial_run = run.data.tags["mlflow.parentRunId"]
    assert len(client.get_metric_history(trial_run, "distill/test_mae")) == 1  # logged once, not again
    assert len(client.get_metric_history(trial_run, "ood/in_dist/onestep_mae_gn")) == 2  # a rollout, then this one
