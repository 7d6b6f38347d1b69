"""What a local run exposes: a `raysym sweep` without --address must not be reachable from the network.

Checked the way an administrator would, with the operating system's socket table (psutil reads
/proc/net/tcp and tcp6) while a real sweep runs: Ray's GCS, raylet, object manager, workers, the
distillation actors and the runtime-env agent all listen, and every listening socket of the sweep's
process tree must be on the loopback address. RELIABILITY.md, "Safety", says what is exposed where.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
import time

import psutil
from helpers import sweep_dict, write_yaml


def _listening(root: psutil.Process) -> dict[tuple[str, int], str]:
    """(address, port) -> process name of every TCP socket in LISTEN state held by ``root`` or a
    descendant (Ray's processes are children of the driver, its workers children of the raylet). The socket
    table is read once per look, system-wide, and kept to the tree's processes: a table read per process cost
    5x the CPU (psutil parses /proc/net/tcp and tcp6 each time), polled five times a second for the whole sweep."""
    try:
        tree = {p.pid: p for p in (root, *root.children(recursive=True))}
    except psutil.Error:
        return {}
    found = {}
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in tree:
            try:
                found[(conn.laddr.ip, conn.laddr.port)] = tree[conn.pid].name()
            except psutil.Error:  # the process ended between the listing and the look
                continue
    return found


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, how a dual-stack gRPC socket shows 127.0.0.1
    return address.is_loopback


def test_a_local_sweep_listens_on_loopback_only(tmp_path):
    cfg = sweep_dict(
        tmp_path,
        name="exposure",
        trials={"model": "bottleneck", "epochs": 3},
        distill={"backend": "operon", "setting": "fast", "samples": 200},
    )
    path = write_yaml(tmp_path / "s.yaml", cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # Ray's defaults, as a user has them
    env["HOME"] = str(tmp_path)  # Ray's token file (~/.ray/auth_token) goes here, not into the user's home
    log = open(tmp_path / "sweep.log", "w")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "raysym.cli", "sweep", str(path)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    root = psutil.Process(sweep.pid)
    seen: dict[tuple[str, int], str] = {}
    try:
        while sweep.poll() is None:
            seen.update(_listening(root))
            time.sleep(0.2)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    output = (tmp_path / "sweep.log").read_text()
    assert sweep.returncode == 0, output[-3000:]
    # the sweep really ran through Ray, trials and distillation alike
    assert "1 of 1 trials finished" in output and "Laws:" in output, output[-3000:]
    names = set(seen.values())
    assert {"gcs_server", "raylet"} <= names, seen  # the table was read while Ray ran
    exposed = {f"{ip}:{port} ({name})" for (ip, port), name in seen.items() if not _is_loopback(ip)}
    assert not exposed, f"listening beyond loopback: {sorted(exposed)}"
    # Ray's token authentication stayed on (the installed Ray's default): it made a token for this user,
    # and raysym made it this user's alone (Ray writes it 0644; issue 28, item 6)
    token = tmp_path / ".ray" / "auth_token"
    assert token.is_file()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(token.parent.stat().st_mode) == 0o700


def test_a_home_ray_cannot_write_to_still_runs_with_a_token_kept_out_of_it(tmp_path):
    """Issue 28, item 6: Ray (token authentication on, its default) writes a new token to ~/.ray/auth_token, and
    a HOME it cannot write ended `raysym simulate` in an OSError traceback. HOME here is a plain file, which
    stops root as well as any user (a read-only mount behaves the same; RELIABILITY.md): the run works, with a
    token that lives in its environment only, and nothing is written under HOME."""
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(home)
    out = tmp_path / "sims"
    cmd = [sys.executable, "-m", "raysym.cli", "simulate", "--system", "spring", "--dim", "2", "--sims", "4"]
    done = subprocess.run(
        [*cmd, "--steps", "40", "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert (out / "dataset.json").is_file()
    assert home.read_text() == ""
