"""Trace detail (`EvalRequest.detail="trace"`): per-role norms measured by the trusted trainer.

Three parts, one per side of the job:
- `TracingRule` runs in the trainer (inside the sandboxed job, which never loads the rule). It
  wraps the rule `train_rule` runs and sees every `update` call's arguments and result: at each
  eval step of the run it records, per role (optforge/roles.py), the gradient norm, the norm of the
  rule's update (the delta added to the parameters; decoupled weight decay is applied outside the
  rule and not counted) and the update/parameter norm ratio; and the first non-finite value of the
  run, a gradient or an update, by 1-based step (the tensor's update count, `ctx.t`), role and
  shape, or a non-finite loss by step. The training loop (train.py) is untouched: its source keys
  the baselines (`baselines.suite_digest`).
- `parse_run_trace` checks a run's trace on the trusted side: a fixed schema, bounded sizes,
  finite-or-null numbers (anything else is bad output).
- `evaluation_trace` gathers, per task, the mean over the scored runs and the first diverged run.

Nothing in a trace names a task or a parameter: names and exact shapes identify tasks, and rules
that match on them are flagged (optforge.rule_flags). Tasks are "task 1".."task n" in an order
derived from a hash of the rule's source and the task names: stable for one rule (repeats line up),
different from rule to rule, so an index says nothing about a task across candidates. Only the
first non-finite value carries a shape. The rule's own state norms are not recorded: they would
come from the rule process, which is untrusted, and are not built yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["KINDS", "NORMS", "TracingRule", "evaluation_trace", "parse_run_trace"]

NORMS = ("grad_norm", "update_norm", "update_ratio")
KINDS = ("gradient", "update", "loss")  # where the first non-finite value was seen
MAX_DIMS = 8


def _norm(tensors: Sequence[Any]) -> float | None:
    if not tensors:
        return None
    total = math.sqrt(float(sum(t.detach().double().pow(2).sum() for t in tensors)))
    return total if math.isfinite(total) else None


def _all_finite(tensors: Sequence[Any]) -> bool:
    import torch

    # one reduction: a NaN or inf anywhere makes the total non-finite (a finite overflow is re-checked)
    return not tensors or bool(torch.isfinite(torch.stack([t.detach().sum() for t in tensors]).sum()))


class TracingRule:
    """A rule (what `train_rule` takes: a `Rule` or a `RemoteRuleSource`) whose run is traced.

    Use one per run: `train_rule(task, TracingRule(rule, eval_steps), ...)`, then `to_json(run)`.
    """

    def __init__(self, rule: Any, eval_steps: Sequence[int]):
        self.rule = rule
        self.eval_steps = {int(s) for s in eval_steps if int(s) > 0}
        self.points: list[dict] = []
        self.first_nonfinite: dict | None = None

    @property
    def lr(self) -> float:
        return self.rule.lr

    @contextlib.contextmanager
    def start(self, groups: list[dict]) -> Iterator[Any]:
        from optforge.evaluators.train import started

        with started(self.rule, groups) as active:
            yield _Traced(active, self)

    def updated(self, args: Sequence[tuple], deltas: Sequence[Any]) -> None:
        """One `update` call: args (p, g, state, ctx) per tensor, and the rule's deltas."""
        if not args:
            return
        step = max(int(a[-1].t) for a in args)
        if self.first_nonfinite is None:
            for kind, ts in (("gradient", [a[1] for a in args]), ("update", list(deltas))):
                if not _all_finite(ts):
                    self._first(step, kind, args, ts)
                    break
        if step in self.eval_steps:
            by_role: dict[str, list[int]] = {}
            for k, a in enumerate(args):
                by_role.setdefault(a[-1].role, []).append(k)
            roles = {}
            for role, ks in by_role.items():
                update, size = _norm([deltas[k] for k in ks]), _norm([args[k][0] for k in ks])
                ratio = update / size if update is not None and size else None
                roles[role] = {"grad_norm": _norm([args[k][1] for k in ks]), "update_norm": update,
                               "update_ratio": ratio if ratio is not None and math.isfinite(ratio) else None}
            self.points.append({"step": step, "roles": roles})

    def _first(self, step: int, kind: str, args: Sequence[tuple], tensors: Sequence[Any]) -> None:
        import torch

        for a, t in zip(args, tensors):
            if not bool(torch.isfinite(t).all()):
                self.first_nonfinite = {"step": step, "kind": kind, "role": a[-1].role, "shape": list(a[-1].shape)}
                return

    def to_json(self, run: Any) -> dict:
        """The trace of the finished run (`train.RunTrace`): a non-finite loss is added here, where
        the loop saw it (it stops before the rule is called)."""
        losses = list(run.train_loss)
        if self.first_nonfinite is None and run.diverged_at is not None and losses and not math.isfinite(losses[-1]):
            self.first_nonfinite = {"step": len(losses), "kind": "loss", "role": None, "shape": None}
        return {"points": self.points, "first_nonfinite": self.first_nonfinite}


class _Traced:
    """What RuleOptimizer runs: the started rule, with every `update` call shown to the tracer."""

    def __init__(self, active: Any, tracer: TracingRule):
        self._active, self._tracer = active, tracer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._active, name)

    def batch(self, op: str, args: list[tuple]) -> list[Any]:
        inner = getattr(self._active, "batch", None)
        out = inner(op, args) if inner is not None else [getattr(self._active, op)(*a) for a in args]
        if op == "update":
            self._tracer.updated(args, out)
        return out


# ---------------------------------------------------------------------------------------------
# trusted side


def _number(x: Any, where: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"trace {where}: {x!r} is not a finite number or null")
    return float(x)


def _step(x: Any, where: str, hi: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= hi:
        raise ValueError(f"trace {where}: step {x!r} is not an int in [0, {hi}]")
    return x


def parse_run_trace(obj: Any, eval_steps: Sequence[int], steps: int) -> dict:
    """A run's trace from the job, checked: its points at eval steps of the run (`eval_steps`, at most
    one each, in order), roles from optforge.roles, the three norms finite or null; the first
    non-finite value at a step in [1, steps]. Raises ValueError on anything else."""
    from optforge.roles import ROLES

    if not isinstance(obj, dict) or set(obj) != {"points", "first_nonfinite"}:
        raise ValueError("trace must be {'points': [...], 'first_nonfinite': ...}")
    points, allowed, last = [], list(eval_steps), -1
    if not isinstance(obj["points"], list) or len(obj["points"]) > len(allowed):
        raise ValueError(f"trace points must be a list of at most {len(allowed)}")
    for pt in obj["points"]:
        if not isinstance(pt, dict) or set(pt) != {"step", "roles"} or not isinstance(pt["roles"], dict):
            raise ValueError("trace point must be {'step': int, 'roles': {role: norms}}")
        step = _step(pt["step"], "point", steps)
        if step not in allowed or step <= last:
            raise ValueError(f"trace point at step {step} is not a later eval step of the run")
        last = step
        roles = {}
        for role, norms in pt["roles"].items():
            if role not in ROLES or not isinstance(norms, dict) or set(norms) != set(NORMS):
                raise ValueError(f"trace point at step {step}: bad role entry {str(role)[:40]!r}")
            roles[role] = {k: _number(norms[k], f"{role} {k}") for k in NORMS}
        points.append({"step": step, "roles": roles})
    first = obj["first_nonfinite"]
    if first is not None:
        if not isinstance(first, dict) or set(first) != {"step", "kind", "role", "shape"} or first["kind"] not in KINDS:
            raise ValueError("trace first_nonfinite must be {'step', 'kind', 'role', 'shape'}")
        shape, role = first["shape"], first["role"]
        if first["kind"] == "loss":
            if role is not None or shape is not None:
                raise ValueError("a non-finite loss has no role or shape")
        elif role not in ROLES or not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
            raise ValueError("trace first_nonfinite needs a role and a shape of at most 8 non-negative ints")
        first = {"step": _step(first["step"], "first_nonfinite", steps), "kind": first["kind"], "role": role,
                 "shape": None if shape is None else list(shape)}
    return {"points": points, "first_nonfinite": first}


def _mean_points(traces: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Per eval step and role, the mean of each norm over the runs (null if any run has none)."""
    from optforge.roles import ROLES

    by_step: dict[int, list[Mapping]] = {}
    for tr in traces:
        for pt in tr["points"]:
            by_step.setdefault(pt["step"], []).append(pt["roles"])
    out = []
    for step in sorted(by_step):
        rows = by_step[step]
        if len(rows) != len(traces):
            continue  # a step not every run reached
        roles = {}
        for role in [r for r in ROLES if any(r in row for row in rows)]:
            vals = {k: [row.get(role, {}).get(k) for row in rows] for k in NORMS}
            roles[role] = {k: (sum(v) / len(v) if all(x is not None for x in v) else None) for k, v in vals.items()}
        out.append({"step": step, "roles": roles})
    return out


def _run_order(tt: Any) -> list:
    """A task's runs in protocol order: screen (by lr), full length (by lr), weight decay, scored."""
    runs = [tt.screen_runs[h] for h in sorted(tt.screen_runs)]
    runs += [r for h in sorted(tt.full) for r in tt.full[h]]
    runs += [r for w in sorted(tt.wd_runs) for r in tt.wd_runs[w]]
    return runs + list(tt.reported)


def anonymous_labels(source: str, names: Sequence[str]) -> dict[str, str]:
    """Task name -> "task i", in an order keyed by the rule's source (see the module docstring)."""
    def key(name: str) -> str:
        return hashlib.sha256(f"{source}\0{name}".encode()).hexdigest()

    return {name: f"task {i}" for i, name in enumerate(sorted(names, key=key), 1)}


def evaluation_trace(source: str, tunings: Mapping[str, Any]) -> dict:
    """The trace of an evaluation: per task (anonymous label), the scored runs' mean norms and the
    first diverged run's norms and first non-finite value, with their lr multipliers.

    `tunings` are protocol.TaskTuning by task name, their runs carrying `trace` (parse_run_trace).
    """
    from optforge.evaluators.protocol import multiplier

    labels = anonymous_labels(source, list(tunings))
    tasks = []
    for name, tt in tunings.items():
        scored = [r for r in tt.reported if r.trace is not None]
        diverged = next((r for r in _run_order(tt) if r.diverged and r.trace is not None), None)
        tasks.append({
            "task": labels[name],
            "scored": {
                "runs": len(scored),
                "lr_mult": multiplier(tt.chosen) if tt.chosen is not None else None,
                "points": _mean_points([r.trace for r in scored]) if scored else [],
            },
            "diverged": None if diverged is None else {
                "lr_mult": multiplier(diverged.spec.h),
                "steps": diverged.spec.steps,
                "points": diverged.trace["points"],
                "first_nonfinite": diverged.trace["first_nonfinite"],
            },
        })
    return {"tasks": sorted(tasks, key=lambda t: int(t["task"].split()[1]))}
