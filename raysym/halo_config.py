"""The halo trial kind's stage config (raysym.halos): a catalog, its radius graph and the node-level GN's
training. Kept beside raysym.config (which re-exports it) so that each module stays readable top to bottom.
"""

from __future__ import annotations

import dataclasses
import math

from raysym.strict import _require


@dataclasses.dataclass(frozen=True)
class HaloConfig:
    """A halo-catalog run (raysym.halos): a catalog file (Parquet or CSV with x, y, z, vx, vy, vz, mass
    and ``target`` columns) or ``synthetic`` (``points`` points with a known target), the radius graph,
    and the node-level GN's training (full batch, or ``batch_nodes`` nodes per step). ``box``: the periodic box
    size, if the catalog has one
    (synthetic: chosen so each point has about 9 neighbours within the default radius)."""

    catalog: str = "synthetic"
    target: str = "delta"
    box: float | None = None
    radius: float = 2.0
    points: int = 1000
    epochs: int = 300
    lr: float = 3e-3
    l1: float = 0.1
    hidden: int = 128
    msg_dim: int = 100  # 1: a bottleneck, the message is one number per edge
    test_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    report_every: int = 10  # epochs between progress reports and checkpoints
    batch_nodes: int | None = None  # None: full batch; else training nodes (with their incoming edges) per step

    def validate(self) -> None:
        _require(
            self.radius > 0 and math.isfinite(self.radius), f"radius must be a positive distance, got {self.radius}."
        )
        _require(
            self.box is None or (self.box > 0 and math.isfinite(self.box)),
            f"box must be a positive size or left out, got {self.box}.",
        )
        _require(self.points >= 2, f"points must be at least 2, got {self.points}.")
        _require(self.epochs > 0, f"epochs must be positive, got {self.epochs}.")
        _require(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}.")
        _require(self.l1 >= 0 and math.isfinite(self.l1), f"l1 must be 0 or more, got {self.l1}.")
        _require(self.hidden > 0, f"hidden must be positive, got {self.hidden}.")
        _require(self.msg_dim > 0, f"msg_dim must be a positive message size, got {self.msg_dim}.")
        _require(0 < self.test_fraction < 1, f"test_fraction must lie between 0 and 1, got {self.test_fraction}.")
        _require(self.report_every > 0, f"report_every must be a positive number of epochs, got {self.report_every}.")
        _require(
            self.batch_nodes is None or self.batch_nodes > 0,
            "batch_nodes must be a positive number of nodes per step, or left out for full batch; got "
            f"{self.batch_nodes}.",
        )
        _require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'.",
        )

    def synthetic_box(self) -> float:
        return self.box if self.box is not None else 20.0 * (self.points / 2000) ** (1 / 3)
