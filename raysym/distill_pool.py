"""What distilling any trial needs, whatever its kind (N-body in raysym.distill_jobs, halos in
raysym.halo_distill): running one symbolic-regression job, the pool of Ray actors that runs many, and
writing a trial's ``distill/`` folder atomically. Both trial kinds import this module; it imports
neither.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from raysym import distill
from raysym.config import DistillConfig
from raysym.errors import UserError
from raysym.verdict import RECOVERED_R2  # noqa: F401 -- a formula is the law from this R² on (the halo kind's too)

OUT = "distill"  # a trial's distillation folder


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one job; never raises: a failure comes back as {"error": ...} so a pool survives it."""
    start = time.perf_counter()
    base = {k: job[k] for k in ("kind", "index", "component")}
    try:
        from raysym.config import from_dict

        cfg = from_dict(DistillConfig, job["cfg"])
        X, y, names = job["X"], job["y"], list(job["names"])
        keep = [i for i in range(X.shape[1]) if np.std(X[:, i]) > 0]  # constant inputs carry nothing
        names = [names[i] for i in keep]
        front = distill.fit(X[:, keep], y, names, cfg, Path(job["workdir"]))
        return {
            **base,
            "names": names,
            "front": front.rows(),
            "chosen": front.chosen,
            "backend": front.backend,
            "settings": front.settings,
            "seconds": time.perf_counter() - start,
        }
    except Exception as exc:  # noqa: BLE001 -- reported per job, by design
        reason = str(exc) if isinstance(exc, (UserError, ValueError)) else traceback.format_exc(limit=3)
        return {**base, "error": f"{type(exc).__name__}: {reason}", "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------------
# The actor pool
# --------------------------------------------------------------------------------------------------


class DistillPool:
    """Long-lived Ray actors, one fit at a time each, that take jobs from any number of trials.

    ``resources`` (e.g. {"distill": 1}) steers the actors onto distillation nodes of a cluster. A job
    that fails comes back as an error result. An actor that dies (killed, out of memory, its node lost)
    is replaced, and the job it was running is run again on the next free actor, up to ``retries``
    times; only then is it reported failed.
    """

    # How long the pool waits, with nothing finishing, before it looks at why: a job still waiting for
    # an actor that no live node can host (its node lost, an autoscaler that cannot add the node type)
    # fails after start_timeout_s instead of hanging; one waiting for CPUs that trials hold is said once.
    poll_s = 30.0
    start_timeout_s = 600.0
    # While jobs run, a line at least this often (seconds) says how far the distillation has come: a fit
    # takes seconds to minutes, and a console silent for minutes looks hung.
    progress_s = 10.0

    def __init__(
        self,
        workers: int,
        cpus_per_worker: float = 1.0,
        resources: dict[str, float] | None = None,
        retries: int = 1,
        say: Callable[[str], None] | None = None,
    ):
        import ray

        if not isinstance(workers, int) or workers < 1:  # zero actors would wait for ever for a free one
            raise UserError(f"A distillation pool needs 1 or more workers, got {workers!r}.")

        @ray.remote
        class DistillWorker:
            def run(self, job):
                return run_job(job)

            def pid(self) -> int:
                return os.getpid()

        self._cls = DistillWorker.options(num_cpus=cpus_per_worker, resources=resources or {})
        self.actors = [self._cls.remote() for _ in range(workers)]
        self.retries = retries
        self.replaced = 0  # actors that died and were replaced, over the pool's life
        self.request = {"CPU": float(cpus_per_worker), **{k: float(v) for k, v in (resources or {}).items()}}
        # answered once an actor has started (queued before any job, so it runs first)
        self._started = {a: a.pid.remote() for a in self.actors}
        self._alive = list(self._started.values())
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))

    def map(self, job_list: list[dict[str, Any]], label: str = "") -> list[dict[str, Any]]:
        """Run every job on the pool; results in job order (a retried job's result says ``attempts``).
        Progress goes to ``say``: each job as it ends (seconds, the front's best loss) and, while jobs run,
        a line every ``progress_s`` seconds; ``label`` names the trial in those lines."""
        import ray

        results: list[dict[str, Any] | None] = [None] * len(job_list)
        attempts = [0] * len(job_list)
        idle = list(self.actors)
        pending: dict[Any, tuple[int, Any]] = {}
        todo = list(range(len(job_list)))
        start = time.monotonic()
        name = f"distill {label}: " if label else "distill: "

        kinds = {k: sum(j["kind"] == k for j in job_list) for k in dict.fromkeys(j["kind"] for j in job_list)}
        self.say(
            f"{name}{len(job_list)} job(s) ({', '.join(f'{n} {k}' for k, n in kinds.items())}) on "
            f"{len(self.actors)} actor(s)"
        )

        def heartbeat() -> None:
            done = sum(r is not None for r in results)
            waiting = f", {len(todo)} waiting for an actor" if todo else ""
            self.say(
                f"{name}{done}/{len(job_list)} jobs done, {len(pending)} running{waiting}, "
                f"{time.monotonic() - start:.0f} s"
            )

        while todo or pending:
            while todo:
                # Jobs go only to actors that have started: one still starting may wait for hours for a CPU a
                # trial holds, and a job given to it would wait as long while a started actor is free in a
                # minute. The pool waits for whichever comes first: a job's end, or an idle actor's start.
                ready = [a for a in idle if self._has_started(a)]
                if not ready:
                    break
                i = todo.pop(0)
                actor = ready[-1]
                idle.remove(actor)
                attempts[i] += 1
                pending[actor.run.remote(job_list[i])] = (i, actor)
            starts = [self._started[a] for a in idle] if todo else []  # an idle actor starting frees a job too
            done = self._wait(list(pending) + starts, heartbeat)
            if done[0] not in pending:
                continue
            i, actor = pending.pop(done[0])
            try:
                results[i] = ray.get(done[0]) | ({"attempts": attempts[i]} if attempts[i] > 1 else {})
                self.say(f"{name}{job_line(results[i])} [{sum(r is not None for r in results)}/{len(job_list)}]")
                idle.append(actor)
            except ray.exceptions.RayActorError as exc:
                replacement = self._cls.remote()
                self.actors[self.actors.index(actor)] = replacement
                self._started[replacement] = replacement.pid.remote()
                self._alive.append(self._started[replacement])
                self.replaced += 1
                idle.append(replacement)
                if attempts[i] <= self.retries:
                    todo.insert(0, i)  # first in line for the next free actor
                else:
                    job = job_list[i]
                    results[i] = {k: job[k] for k in ("kind", "index", "component")} | {
                        "error": f"worker died {attempts[i]} time(s) running this job: {exc}"
                    }
        return results  # type: ignore[return-value]

    def _has_started(self, actor) -> bool:
        import ray

        return bool(ray.wait([self._started[actor]], num_returns=1, timeout=0)[0])

    def _wait(self, refs: list, heartbeat: Callable[[], None] = lambda: None) -> list:
        """The first finished of ``refs``, calling ``heartbeat`` every progress_s while none is; a wait with
        nothing finishing is bounded or said (see poll_s)."""
        import ray

        from raysym._ray import node_resources

        said, unschedulable, quiet = False, 0.0, 0.0
        while True:
            step = min(self.progress_s, self.poll_s)
            done, _ = ray.wait(refs, num_returns=1, timeout=step)
            if done:
                return done
            heartbeat()
            quiet += step
            if quiet < self.poll_s:  # look at why only every poll_s
                continue
            quiet = 0.0
            started = ray.wait(self._alive, num_returns=len(self._alive), timeout=0)[0]
            if started:  # some actor runs a job: a long fit (operon, PySR) is not a hang
                unschedulable = 0.0
                continue
            fits = any(
                all(n.get(k, 0.0) >= v for k, v in self.request.items()) for n in node_resources(autoscaled=False)
            )
            unschedulable = 0.0 if fits else unschedulable + self.poll_s
            if unschedulable >= self.start_timeout_s:
                raise UserError(
                    f"No distillation actor could start for {unschedulable:.0f} s: each asks for "
                    + ", ".join(f"{k} {v:g}" for k, v in self.request.items())
                    + " on one node, and no live node of the Ray cluster has that. Lower distill.threads, or start "
                    "(or let the autoscaler add) a node with those resources; then distil again (`raysym distill`)."
                )
            if not said:
                why = "CPUs held by trials still training" if fits else "a node with those resources (none is up)"
                self.say(
                    f"distillation: {len(refs)} job(s) wait for {why}; each actor asks for "
                    + ", ".join(f"{k} {v:g}" for k, v in self.request.items())
                )
                said = True

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def job_line(result: dict[str, Any]) -> str:
    """One finished job as a progress line: which, how long, and its front's best loss or its error."""
    what = f"{result['kind']} {result['index'] + 1} (component {result['component']})"
    if "error" in result:
        return f"{what} failed after {result['seconds']:.0f} s: {result['error'].splitlines()[0][:120]}"
    best = min((row["loss"] for row in result["front"]), default=float("nan"))
    return f"{what} done in {result['seconds']:.0f} s ({result['backend']}), best loss {best:.3g}"


def start_pool(cfg: DistillConfig, *, workers: int | None, address: str | None, say, what: str) -> DistillPool:
    """Check the backend (pysr without Julia fails here, before Ray starts), join or start Ray and
    start ``workers`` actors (default: as many as the cluster's CPUs hold at cfg.threads each)."""
    import ray

    from raysym._ray import ensure_ray

    backend = distill.get_backend(cfg)
    ensure_ray(address)
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cfg.threads))
    say(f"distilling {what} with the {backend.name} backend ({cfg.setting}) on {workers} Ray actor(s)")
    return DistillPool(workers, cpus_per_worker=cfg.threads)


def write_outputs(trial_dir: Path, summary_of) -> dict[str, Any]:
    """Run ``summary_of(workdir) -> (job results, summary)`` and write ``trial_dir/distill/``: each job's
    front (CSV and Markdown) and summary.json, built under a temporary name and renamed, so an
    interrupted distillation never leaves a half-written folder (nor removes the previous one)."""
    tmp = trial_dir / f".{OUT}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        results, summary = summary_of(tmp / "work")
        for res in results:
            for key, suffix in (("front", "front"), ("energy_front", "energy_front")):
                if key not in res:
                    continue
                chosen = res["chosen" if key == "front" else "energy_chosen"]
                front = distill.Front(
                    res["names"],
                    [distill.Formula(r["equation"], r["complexity"], r["loss"], r["score"]) for r in res[key]],
                    chosen,
                )
                name = f"{res['kind']}{res['index']}_{suffix}"
                front.to_csv(tmp / f"{name}.csv")
                (tmp / f"{name}.md").write_text(front.to_markdown() + "\n")
        shutil.rmtree(tmp / "work", ignore_errors=True)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        final = trial_dir / OUT
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
