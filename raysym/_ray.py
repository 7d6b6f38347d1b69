"""Starting or joining Ray: one place for the settings every Ray-using stage shares.

A local Ray (no ``--address``) is reachable from this machine only: every Ray process (GCS, raylet,
object manager, workers, runtime-env agent) binds to the loopback address, and Ray's own token
authentication stays as the user configured it (on by default in the installed Ray: a token in
``~/.ray/auth_token``, generated on first use). A cluster run (``--address``) keeps Ray's cluster
behaviour: its nodes must reach each other, so exposure there is the cluster's firewall's business
(see RELIABILITY.md, "Safety").
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from pathlib import Path

# Ray picks the address a new local node advertises and binds to: on Linux the machine's outward-facing
# address (every service then listens on all interfaces), on macOS and Windows the loopback address. This
# switch (read by ray._private.services.get_node_ip_address) selects the loopback behaviour; the started
# processes inherit it through the environment.
_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` ("auto" on a cluster node), or start a local one.

    Without ``address`` a new local Ray starts even where a `ray start` cluster runs on this machine;
    it listens on 127.0.0.1 only and is quiet (no dashboard, Ray Data's own progress bars off: raysym
    prints its own).
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        if address is None:
            _token_without_home()
        else:
            _check_address(address)
        try:
            switch = _loopback_only() if address is None else contextlib.nullcontext()
            with switch:
                ray.init(
                    # "local": always a new local Ray, never a `ray start` cluster that happens to run on
                    # this machine (Ray's default would join it); pass --address auto for that.
                    address=address or "local",
                    num_cpus=num_cpus if address is None else None,
                    include_dashboard=False if address is None else None,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
        except ConnectionError as exc:
            from raysym.errors import UserError

            raise UserError(
                f"Could not connect to a Ray cluster at '{address}' ({exc}). Start one with "
                "`ray up cluster.yaml` (or `ray start --head`), or leave out --address to run on a "
                "local Ray."
            ) from None
        if address is None:
            _check_loopback()
        keep_token_private()
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


@contextlib.contextmanager
def _loopback_only():
    """While a local Ray starts: make it advertise and bind 127.0.0.1 only. The switch is undone
    afterwards, so that processes this one starts later (a `ray start` of the user's, a cluster
    joined by a later call) keep Ray's cluster behaviour; the started Ray processes keep theirs."""
    from ray._private import ray_constants

    before_env, before_constant = os.environ.get(_LOOPBACK_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_SWITCH] = "0"  # for the processes Ray starts
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process imported Ray before the switch was set
    # Ray announces its (default) token authentication on every start; RELIABILITY.md says it once.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_constant
        if before_env is None:
            os.environ.pop(_LOOPBACK_SWITCH, None)
        else:
            os.environ[_LOOPBACK_SWITCH] = before_env


def _check_address(address: str, timeout: float = 5.0) -> None:
    """A cluster address (host:port, or ray://host:port) that nothing answers at: Ray's own connect retries
    for minutes before it gives up, so ask the port once first and say so at once."""
    import socket

    from raysym.errors import UserError

    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return  # "auto" (this node's cluster) or a bare name: left to Ray
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except ValueError:
        raise UserError(
            f"--address '{address}' is not host:port (e.g. 10.0.0.5:6379, or auto on a cluster node)."
        ) from None
    except OSError as exc:
        raise UserError(
            f"Nothing answers at the Ray cluster address '{address}' ({exc.strerror or exc}). Start the cluster "
            "(`ray up cluster.yaml`, or `ray start --head` on that machine), check the address and port (the head "
            "node's GCS port, 6379 by default), or leave out --address to run on a local Ray."
        ) from None


def _token_without_home() -> None:
    """A local Ray with token authentication (Ray's default) writes a new token to ``~/.ray/auth_token`` when
    there is none, and a read-only or missing HOME ended the start in an OSError traceback. There, the token
    of this run is made here and handed to Ray (and the processes it starts) in the environment instead
    (``RAY_AUTH_TOKEN``, which Ray reads before the file): it lives as long as the run."""
    import secrets

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return  # authentication turned off by the user
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return  # a token of the user's choosing
    try:
        folder = Path.home() / ".ray"
        if (folder / "auth_token").is_file():
            return
        folder.mkdir(exist_ok=True)  # never HOME itself: a missing HOME is not made here
        if os.access(folder, os.W_OK):
            probe = folder / f".raysym-probe-{os.getpid()}"
            probe.write_text("")  # access() says yes to root on a read-only mount: try it
            probe.unlink()
            return
    except (OSError, RuntimeError):  # RuntimeError: no HOME at all (Path.home)
        pass
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def keep_token_private(home: str | None = None) -> None:
    """Ray writes its authentication token (``~/.ray/auth_token``) readable by every user of the machine
    (0644), and whoever reads it may drive this user's Ray; make it the owner's alone (0600, its folder 0700).
    A missing or read-only HOME is left as it is: Ray's own start already got past it."""
    try:
        folder = Path(home or Path.home()) / ".ray"
        token = folder / "auth_token"
        if token.is_file() and not token.is_symlink() and token.stat().st_uid == os.getuid():
            os.chmod(token, 0o600)
            os.chmod(folder, 0o700)
    except (OSError, RuntimeError):  # no HOME (Path.home raises RuntimeError), a read-only one, a foreign file
        pass


def _check_loopback() -> None:
    """Refuse to go on if the local Ray came up on an address other machines can reach (a Ray version
    that ignores the switch above): a local run must never be reachable from the network."""
    import ray

    node_ip = ray._private.worker.global_worker.node.node_ip_address
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise RuntimeError(
            f"The local Ray started on {node_ip}, not on the loopback address, so it would be reachable from "
            "other machines; raysym stopped it. This Ray version does not honour "
            f"{_LOOPBACK_SWITCH}=0; pin the Ray version in pyproject.toml, or run on a cluster (--address)."
        )


def node_resources(autoscaled: bool = True) -> list[dict[str, float]]:
    """The total resources of each live node of the Ray cluster joined and, with ``autoscaled``, of each
    node type its autoscaler may add (cluster.yaml's GPU and distillation workers start at zero nodes).
    What a single trial or actor asks for must fit on one of them, or it waits for ever."""
    import ray

    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    if autoscaled:
        try:  # Ray keeps the autoscaler's node types in the GCS; no public API reads them
            from ray._private.state import state

            config = state.get_cluster_config()
            for group in config.node_group_configs if config is not None else []:
                if group.max_count != 0:
                    nodes.append({k: float(v) for k, v in group.resources.items()})
        except Exception:  # noqa: BLE001 -- an older GCS or no autoscaler: the live nodes are all there is
            pass
    return nodes
