"""The baselines step: the AdamW curves a request is scored against, checked against the suite.

A request carries its suite's baseline payload (the engine ships it to nodes with no cache), or
None for the committed one. Here it is checked against the live suite version, and what the
protocol needs from it is read once: the weight-decay grid, each task's loss resolution and cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

log = logging.getLogger(__name__)

__all__ = ["Reference", "baseline_payload", "reference_for", "wd_grid_for"]


def baseline_payload(suite: str) -> dict:
    """The committed AdamW baseline curves of `suite`, checked against the live suite version."""
    from optforge.evaluators import baselines
    from optforge.evaluators.tasks import get_suite

    data = baselines.load(suite)
    errors, warnings = baselines.check(data, get_suite(suite))
    if errors:
        raise baselines.BaselineError("; ".join(errors))
    for w in warnings:
        log.warning("%s", w)
    return baselines.payload_from(data)


def wd_grid_for(payload: dict, *, tune_wd: bool, stage: str, suite: str) -> tuple[float, ...]:
    """The weight decays a `stage` on `suite` tries: AdamW's grid in the baselines when it tunes them.

    Raises BaselineError when it should and the baselines have none: tuning the candidate alone would
    be unfair to AdamW.
    """
    from optforge.evaluators.baselines import BaselineError, weight_decay_grid

    if not tune_wd:
        return ()
    grid = weight_decay_grid(payload)
    if not grid:
        raise BaselineError(
            f"stage '{stage}' tunes weight decay, but the baselines of suite '{suite}' have no "
            f"weight-decay runs for AdamW; add them with `optforge baselines --suite {suite} --add-wd`, "
            "or set `tune_wd: false` on the stage"
        )
    return grid


@dataclass(frozen=True)
class Reference:
    """What the protocol and the scores take from the baselines of one request."""

    payload: dict
    wd_grid: tuple[float, ...]
    tune_deltas: dict[str, float]  # per task: the loss resolution `pick` uses, at the selection seeds
    cost_per_step: dict[str, float]  # per task: AdamW's seconds a step where measured (sandbox call balancing)
    costs_measured: bool = False  # every task's cost_per_step was measured (seconds), not the default 1.0


def reference_for(request: Any, suite: Any, tasks: Sequence[Any], n_selection: int) -> Reference:
    """The request's baselines, checked against `suite`, read for `tasks`.

    Raises BaselineError when they are for another suite version, or when the stage tunes weight
    decay and they have no weight-decay runs.
    """
    from optforge.evaluators.baselines import BaselineError, task_delta

    payload = request.baselines if request.baselines is not None else baseline_payload(request.suite)
    if payload.get("suite_version") != suite.version:
        raise BaselineError(
            f"the baselines sent are for suite '{suite.name}' version {payload.get('suite_version')!r}, "
            f"the suite is version {suite.version!r}; rebuild them with `optforge baselines --suite {suite.name} --rebuild`"
        )
    return Reference(
        payload=payload,
        wd_grid=wd_grid_for(payload, tune_wd=request.tune_wd, stage=request.stage, suite=request.suite),
        tune_deltas={t.name: task_delta(payload, t.name, n_selection) for t in tasks},
        cost_per_step={k: float(v.get("cost_per_step") or 1.0) for k, v in payload["tasks"].items()},
        costs_measured=all(v.get("cost_per_step") is not None for v in payload["tasks"].values()),
    )
