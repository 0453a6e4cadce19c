"""The protocol step: every training run a request needs, through the sandboxed job.

`run_protocol` sets up the sandbox executor for the request's tasks and drives the lr protocol
(`protocol.tune`) with it. A run that ends without usable results (the rule raised, timed out,
ran out of memory) comes back as `ProtocolFailure`, which the result step turns into a status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from optforge.evaluators.payload import Reference
from optforge.evaluators.protocol import ProtocolConfig, TaskInfo, TaskTuning, tune
from optforge.evaluators.request import EvalRequest, fixed_multipliers

__all__ = ["Protocol", "ProtocolFailure", "limits_for", "run_protocol"]


@dataclass
class Protocol:
    """What the protocol step produced: per task its tuning (tried lrs, the scored runs), and the
    executor, which holds what the sandbox calls cost and saw (tails, layers, fingerprint, probe)."""

    infos: list[TaskInfo]
    tunings: dict[str, TaskTuning]
    executor: Any


@dataclass
class ProtocolFailure:
    """A sandbox call ended without a usable result: the reason and the SandboxResult (or None)."""

    reason: str
    result: Any
    message: str


def limits_for(request: EvalRequest, smoke: bool) -> Any:
    """The sandbox limits of the request: its settings, with a timeout for the suite's size."""
    from optforge import sandbox

    cfg = dict(request.sandbox)
    if "require" in cfg:
        cfg["require"] = tuple(cfg["require"])
    cfg.setdefault("timeout_s", 60.0 if smoke else 600.0)
    return sandbox.Limits(**cfg)


def run_protocol(
    request: EvalRequest,
    tasks: Sequence[Any],
    lr0: float,
    seeds: tuple[tuple[int, ...], tuple[int, ...]],
    ref: Reference,
    limits: Any,
    smoke: bool,
) -> Protocol | ProtocolFailure:
    """Tune and train `tasks` (the suite's Task objects) for the rule at base lr `lr0`.

    `seeds` is (selection, fresh) as `request.resolve_seeds` gives them. The smoke suite runs one
    plain full-length round (no halving, no grid extension).
    """
    from optforge import sandbox
    from optforge.evaluators.train import eval_points
    from optforge.evaluators.validate import CALL_SHARE, BatchFailure, SandboxExecutor, measures_state

    sel, fresh = seeds
    config = ProtocolConfig(halving=False, max_extensions=0) if smoke else ProtocolConfig()
    infos = [TaskInfo(t.name, t.family, int(t.steps)) for t in tasks]
    ex = SandboxExecutor(
        request.source,
        request.suite,
        {t.name: t for t in tasks},
        limits,
        sandbox.RULE_POLICY,
        workers=int(request.workers),
        cost_per_step=ref.cost_per_step,
        # seconds only where the baselines measured every task's cost (older files hold none); not for
        # the smoke gate, whose few short runs fit any call (its measured costs are mostly start-up)
        call_seconds=limits.timeout_s * CALL_SHARE if ref.costs_measured and not smoke else None,
        fingerprint_next=smoke or request.stage == "smoke",
        name=request.name,
        trace=request.detail == "trace",
        probe_state_next=measures_state(request.stage, request.measure_state),
    )
    try:
        tunings = tune(infos, lr0, sel, ex, eval_points, config, fresh_seeds=fresh, wd_grid=ref.wd_grid,
                       deltas=ref.tune_deltas, fixed_multipliers=fixed_multipliers(request, tuple(tasks)))
    except BatchFailure as e:
        return ProtocolFailure(e.reason, e.result, str(e))
    return Protocol(infos, tunings, ex)
