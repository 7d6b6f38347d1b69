"""The typed config loader: unknown keys suggest the closest valid one, wrong types are named."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raysym.config import SimulationConfig, from_dict, load_yaml
from raysym.errors import UserError


def test_defaults_resolve_from_the_physics_registry():
    cfg = from_dict(SimulationConfig, {"system": "r2", "sims": 10})
    assert cfg.resolved_dt == 1e-3 and cfg.resolved_test_sims == 2 and cfg.resolved_damping == 0.0
    assert cfg.snapshots_per_sim == 100
    damped = from_dict(SimulationConfig, {"system": "damped"})
    assert damped.data_params()["damping"] == 0.1 and "damping" not in cfg.data_params()


def test_layout_is_not_part_of_the_data_identity():
    a = SimulationConfig(sims_per_shard=10).data_params()
    assert a == SimulationConfig(sims_per_shard=99).data_params()
    assert a != SimulationConfig(substeps=2).data_params()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"particle": 4}, "unknown key 'particle'. Did you mean 'particles'?"),
        ({"stide": 4}, "Did you mean 'stride'?"),
        ({"sims": "many"}, "config.sims has the wrong type: expected int, got 'many'"),
        ({"sims": 2.5}, "expected int"),
        ({"dim": True}, "expected int"),
        ({"dt": "small"}, "config.dt has the wrong type"),
        ({"system": "sprng"}, "Unknown system 'sprng'. Did you mean 'spring'?"),
        ({"dim": 4}, "dim must be 2 or 3"),
        ({"particles": 1}, "particles must be at least 2"),
        ({"sims": 0}, "sims must be a positive integer"),
        ({"steps": -3}, "steps must be a positive integer"),
        ({"stride": 0}, "stride must be a positive integer"),
        ({"test_sims": 0}, "test_sims must be a positive integer"),
        ({"dt": float("nan")}, "dt must be a positive finite number"),
        ({"dt": -0.1}, "dt must be a positive finite number"),
        ({"damping": 0.5}, "damping applies only to the 'damped' system"),
        ({"system": "damped", "damping": -1.0}, "damping must be a non-negative"),
        ({"seed": -1}, "seed must be a non-negative"),
    ],
)
def test_bad_values_are_user_errors(data, message):
    with pytest.raises(UserError) as err:
        from_dict(SimulationConfig, data)
    assert message in str(err.value)


def test_yaml_files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("system: charge\ndim: 3\nsims: 20\n")
    assert from_dict(SimulationConfig, load_yaml(good)).dim == 3
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("system: [spring\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(tmp_path / "broken.yaml")
    with pytest.raises(UserError, match="Cannot read the config file"):
        load_yaml(tmp_path / "missing.yaml")


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)
keys = st.one_of(st.sampled_from(list(SimulationConfig.__dataclass_fields__)), st.text(min_size=1, max_size=10))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_loader_accepts_valid_or_raises_user_error(data):
    """Whatever the mapping, the loader returns a valid config or raises UserError, nothing else."""
    try:
        cfg = from_dict(SimulationConfig, data)
    except UserError as exc:
        assert str(exc)
        return
    assert cfg.dim in (2, 3) and cfg.particles >= 2 and cfg.sims > 0 and cfg.steps > 0 and cfg.stride > 0
    assert math.isfinite(cfg.resolved_dt) and cfg.resolved_dt > 0


def test_per_model_settings_give_each_model_its_own_recipe_inside_one_grid():
    from raysym.config import SweepConfig

    trials = {
        "model": ["bottleneck", "l1", "newtonian"],
        "epochs": 30,
        "lr": 5e-4,
        "per_model": {"l1": {"epochs": 260, "lr": 1e-3}, "newtonian": {"lr": 3e-3}},
    }
    cfg = from_dict(SweepConfig, {"name": "t", "data": {"system": "spring"}, "trials": trials})
    cfg.validate()
    points = {p["model"]: p for p in cfg.trial_points()}
    assert (points["bottleneck"]["epochs"], points["bottleneck"]["lr"]) == (30, 5e-4)
    assert (points["l1"]["epochs"], points["l1"]["lr"]) == (260, 1e-3)
    assert (points["newtonian"]["epochs"], points["newtonian"]["lr"]) == (30, 3e-3)
    assert cfg.swept_keys() == ["model", "epochs", "lr"]  # they vary across the sweep: MLflow params
    for per_model, message in (
        ({"l2": {"epochs": 3}}, "unknown model 'l2'"),
        ({"l1": {"epoch": 3}}, "Did you mean 'epochs'"),
        ({"l1": {"epochs": [3, 4]}}, "must be one value"),
        ({"l1": 3}, "must map settings to values"),
    ):
        with pytest.raises(UserError, match=message):
            from_dict(SweepConfig, {"name": "t", "data": {}, "trials": {**trials, "per_model": per_model}}).validate()


def test_only_runs_a_slice_of_the_grid_with_its_full_grid_keys():
    from raysym.config import SweepConfig
    from raysym.sweep_plan import parse_only, plan, select, slice_name

    cfg = from_dict(
        SweepConfig,
        {
            "name": "t",
            "data": {"system": ["spring", "charge", "r1"], "dim": [2, 3], "sims": 4, "steps": 20},
            "trials": {"model": ["bottleneck", "l1"], "epochs": 2},
        },
    )
    cfg.validate()
    full = plan(cfg)
    only = parse_only(["system=spring,r1", "dim=3", "model = l1"])
    assert only == {"system": ["spring", "r1"], "dim": ["3"], "model": ["l1"]}
    kept = select(full, only)
    assert [(s.params["system"], s.params["dim"], s.params["model"]) for s in kept] == [
        ("spring", 3, "l1"),
        ("r1", 3, "l1"),
    ]
    # keys are the full grid's, so slices run on different days never share a key
    assert [s.key for s in kept] == [s.key for s in full if s in kept] and kept[0].key != "t000"
    assert select(full, {}) == full
    # a slice runs as a sweep of its own (Tune folder, MLflow parent run), named the same way by sweep and report
    assert slice_name("t", only) == "t.dim-3.model-l1.system-r1-spring" and slice_name("t", {}) == "t"
    for args, message in (
        (["sytem=spring"], "Did you mean 'system'"),
        (["dim=4"], "no trial with dim = 4. Its values of dim are: 2, 3"),
        (["dim"], "is not SETTING=VALUE"),
        (["model="], "is not SETTING=VALUE"),
    ):
        with pytest.raises(UserError, match=message):
            select(full, parse_only(args))


def test_the_grid_starts_its_longest_trials_first():
    """With fewer CPUs than trials Tune starts grid points in list order: the longest go first."""
    from raysym.config import SweepConfig
    from raysym.sweep_plan import launch_order, plan

    cfg = from_dict(
        SweepConfig,
        {
            "name": "t",
            "data": {"system": "spring", "sims": 4, "steps": 20},
            "trials": {"model": ["bottleneck", "l1", "newtonian"], "epochs": 3, "per_model": {"l1": {"epochs": 9}}},
        },
    )
    cfg.validate()
    specs = plan(cfg)
    # l1 (9 epochs) first, then the 3-epoch trials in grid order
    assert [s.key for s in launch_order(specs)] == ["t001", "t000", "t002"]
