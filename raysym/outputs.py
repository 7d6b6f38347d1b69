"""Output folders a command may write into: nothing of the user's, and no other run, is overwritten.

A trial folder (``raysym train --out``, ``raysym halos --out``) is either new, empty, or holds the same
run: a ``config.json`` with the same resolved settings, which the command then continues (train resumes
from its checkpoint) or redoes. Anything else is refused before a byte is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raysym.errors import UserError


def claim_trial_folder(out_dir: str | Path, config: dict[str, Any], flag: str = "--out") -> None:
    """Refuse (UserError) to write the trial whose config.json would be ``config`` into ``out_dir`` when
    that folder holds anything other than the same trial."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder. Give {flag} a new or empty folder.")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    config_path = out_dir / "config.json"
    if not config_path.is_file():
        names = sorted(p.name for p in out_dir.iterdir())
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise UserError(
            f"{out_dir} already holds files that are not a raysym trial ({shown}); writing a trial there "
            f"would overwrite them. Give {flag} a new or empty folder."
        )
    try:
        stored = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{config_path} cannot be read ({exc}), so raysym cannot tell whether {out_dir} holds this "
            f"trial. Give {flag} a new folder, or delete that one to start afresh."
        ) from None
    if isinstance(stored, dict) and "kind" not in stored:  # N-body folders written before the kind was recorded
        stored = {"kind": "nbody", **stored}
    wanted = json.loads(json.dumps(config, default=str))
    if stored != wanted:
        changes = differences(stored, wanted)
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise UserError(
            f"{out_dir} holds a trial with other settings (was -> now: {shown}); writing this one there would "
            f"mix the two. Give {flag} a new folder, or delete that one to start afresh."
        )


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted paths whose values differ between two JSON-like values, as 'path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{where}.{key}" if where else str(key)
            if key not in new:
                out.append(f"{path}: {_short(old[key])} -> (absent)")
            elif key not in old:
                out.append(f"{path}: (absent) -> {_short(new[key])}")
            else:
                out += differences(old[key], new[key], path)
        return out
    return [] if old == new else [f"{where or 'value'}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
