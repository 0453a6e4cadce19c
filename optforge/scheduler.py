"""The Ray side of the engine: submit an evaluation, collect whichever finished. The only module that
imports `ray`.

Each evaluation is a Ray task (`num_cpus=1`, `num_gpus` when asked) that runs `evaluate(request)`
with one torch thread. Ray never retries a task (`max_retries=0`): the engine retries `lost` itself.
A Python exception raised by the evaluator is `crashed`; any Ray-side failure (worker or node
death, object loss, cancellation) is `lost`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

EvaluateFn = Callable[[Any], Any]  # evaluate(request) -> EvaluationResult, run inside a Ray task

_LOST_ERRORS = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError",
                "ObjectReconstructionFailedError", "RaySystemError", "TaskUnschedulableError", "ActorDiedError",
                "OutOfMemoryError", "TaskCancelledError")


def start_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None) -> bool:
    """Start Ray in-process (usage stats off, no dashboard) or join `address`; False if already up.

    An in-process cluster uses token authentication, Ray's default for local clusters since 2.59, set
    explicitly (`RAY_AUTH_MODE=token`, unless the user set it) so that Ray does not print its notice
    about that default at every run. Ray reads the variable when it is imported, so this holds when
    `ray` is imported here first (as in `optforge run`). Joining a cluster leaves the mode to the user
    (docs/cluster.md)."""
    address = address or os.environ.get("RAY_ADDRESS") or "local"  # "local": never join a stray cluster
    if address == "local" and "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus or None, include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def _evaluate_in_task(evaluate: EvaluateFn, request: Any) -> dict[str, Any]:
    """Body of the Ray task: one torch thread (Ray reuses workers, so set it every time)."""
    import ray
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = evaluate(request)
    return {"result": result.to_dict(), "node": ray.get_runtime_context().get_node_id(),
            "wall_s": time.perf_counter() - t0}


_REMOTE: Any = None


def _remote() -> Any:
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(max_retries=0)(_evaluate_in_task)  # the engine retries `lost` itself
    return _REMOTE


@dataclass
class Completion:
    """One finished evaluation: `output` ({"result", "node", "wall_s"}) or the error that ended it."""

    job: Any
    output: dict[str, Any] | None = None
    error: BaseException | None = None
    lost: bool = False  # the error was Ray's (retry), not the evaluator's


class RayScheduler:
    """Evaluations in flight as Ray tasks, keyed by the engine's job objects."""

    def __init__(self, evaluate: EvaluateFn, *, num_gpus: float | None = None) -> None:
        self.evaluate, self.num_gpus = evaluate, num_gpus
        self._inflight: dict[Any, tuple[Any, float]] = {}  # ray ref -> (job, start time)

    def __len__(self) -> int:
        return len(self._inflight)

    def jobs(self) -> list[Any]:
        return [job for job, _ in self._inflight.values()]

    def submit(self, job: Any, request: Any, now: float) -> None:
        opts: dict[str, Any] = {"num_cpus": 1}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        ref = _remote().options(**opts).remote(self.evaluate, request)
        self._inflight[ref] = (job, now)

    def next_completed(self, timeout: float) -> list[Completion]:
        """Whatever finished within `timeout` seconds (at least one, unless none finished)."""
        import ray
        import ray.exceptions as rex

        if not self._inflight:
            return []
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        lost_types = tuple(getattr(rex, n) for n in _LOST_ERRORS if hasattr(rex, n))
        out = []
        for ref in ready:
            job, _ = self._inflight.pop(ref)
            try:
                out.append(Completion(job, output=ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - every Ray failure becomes a status
                out.append(Completion(job, error=e, lost=isinstance(e, lost_types) or not isinstance(e, rex.RayTaskError)))
        return out

    def expired(self, now: float, limit: float) -> list[tuple[Any, float]]:
        """Cancel (force) every evaluation running longer than `limit` seconds: (job, seconds it ran)."""
        import ray

        out = []
        for ref, (job, started) in list(self._inflight.items()):
            if now - started > limit:
                ray.cancel(ref, force=True)
                del self._inflight[ref]
                out.append((job, now - started))
        return out

    def cancel_all(self) -> list[Any]:
        """Cancel everything in flight and return the cancelled jobs. Always by force: the worker is
        killed and Ray starts a new one. A gentle cancel raises KeyboardInterrupt inside the task, and
        one that lands during the task's first `import torch` leaves torch half-imported in a worker
        that Ray then reuses, so every later evaluation there crashes with "cannot initialize type"
        (tests/test_scheduler.py)."""
        import ray

        jobs = []
        for ref, (job, _) in self._inflight.items():
            ray.cancel(ref, force=True)
            jobs.append(job)
        self._inflight.clear()
        return jobs
