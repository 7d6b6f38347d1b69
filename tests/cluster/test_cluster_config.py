"""cluster.yaml against the cluster-launcher schema that ships inside the ray package (offline)."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[2] / "cluster.yaml"


def load() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_is_valid_for_ray_up():
    config = load()
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` checks before launching
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}  # no trials on the head
    assert any(n["resources"].get("GPU", 0) >= 1 and n["max_workers"] > n["min_workers"] for n in nodes.values())
    assert any("distill" in n["resources"] for n in nodes.values())
    setup = "\n".join(config["setup_commands"])
    assert "raysym" in setup and "julia" in setup and "import pysr" in setup


def test_the_schema_check_catches_a_misspelt_key():
    config = load()
    config["available_node_types"]["head"]["node_cofig"] = {}
    with pytest.raises(jsonschema.ValidationError, match="node_cofig"):
        validate_config(prepare_config(copy.deepcopy(config)))
