"""Files written whole or not at all, and the trial folder that holds a trained trial's files.

Every file raysym writes goes first to a hidden temporary name beside its destination and is renamed into
place once complete (``os.replace``, atomic within one file system). A crash, a Ctrl-C or a full disk
leaves the old file or the new one, never half of one; the temporary name keeps the destination's
suffix, so numpy and matplotlib still pick the format from it.

A trial folder (``raysym train --out``, ``raysym halos --out``, a sweep trial's work folder) holds::

    config.json    the kind (raysym.trial_kind) and the resolved settings: the trial can be rebuilt from it
    checkpoint.pt  model, optimiser and history after the last finished epoch (raysym.train.read_checkpoint)
    metrics.json   the final metrics (names and meanings: raysym.metrics)
    ...            the kind's figures and samples; distill/ once distilled (raysym.distill_pool)
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

from raysym.errors import UserError

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
LEGACY_KIND = "nbody"  # N-body trial folders written before the kind was recorded have no "kind"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without an
    error, removed when it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON; numbers JSON cannot hold directly (numpy scalars) as floats."""
    write_text(path, json.dumps(data, indent=2, default=float) + "\n")


class TrialFolder:
    """One trial's folder: its file names, and reading and writing them (writes are atomic)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        write_json(self.path / name, data)

    def read_json(self, name: str) -> Any:
        """A JSON file of the trial; refuses (UserError) one that is missing or cannot be parsed."""
        path = self.path / name
        if not path.is_file():
            raise UserError(
                f"{self.path} is not a finished training trial: it has no {name}. Point at a folder written by "
                "`raysym train --out`, `raysym halos --out` or a sweep trial's artifacts."
            )
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} cannot be read ({exc}). Train the trial again into a new folder.") from None

    def config(self) -> dict[str, Any]:
        """config.json, with the trial's kind under ``"kind"`` (folders that predate the record are N-body)."""
        config = self.read_json(CONFIG)
        if not isinstance(config, dict):
            raise UserError(
                f"{self.path / CONFIG} is not a raysym trial config (a JSON object). Train the trial again into a "
                "new folder."
            )
        return {"kind": LEGACY_KIND, **config}

    def kind_name(self) -> str:
        return str(self.config()["kind"])
