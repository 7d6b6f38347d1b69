"""Starting or joining Ray: one place for the settings every Ray-using stage shares."""

from __future__ import annotations

import logging
import os


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` ("auto" on a cluster node), or start a local one.

    Without ``address`` a new local Ray starts even where a `ray start` cluster runs on this machine.
    A local Ray is quiet (no dashboard, Ray Data's own progress bars off: raysym prints its own)
    and, unless the user chose otherwise, runs without token authentication, which only matters
    for clusters reachable from other machines.
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        if address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        try:
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
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
