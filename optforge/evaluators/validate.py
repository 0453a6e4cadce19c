"""The trusted side of a training job: run it in the sandbox, rebuild its snapshots, validate them.

The sandboxed job returns parameter snapshots as raw float32 buffers with names and shapes in
JSON, or the failure record of the candidate's rule process (`failure`), which becomes a status here. Here, in the trusted process, each snapshot goes through `validation_curve`, which rebuilds the
task with validation data and the same seed, so the score never rests on a number the candidate's
process reports about itself. A malformed snapshot (wrong names, shapes or steps) is a crash.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from optforge.evaluators.protocol import RunOutcome, RunSpec

log = logging.getLogger(__name__)

JOB = "optforge.evaluators.job:run_job"


class AllRunsFailed(RuntimeError):
    """Every run of one executor call failed in the sandbox (baselines, `isolate_failures`): the machine,
    not the rule, is at fault, and recording the runs as diverged would corrupt the baselines."""


class BatchFailure(Exception):
    """A sandbox call ended without a usable result; `result` is the SandboxResult (or None)."""

    def __init__(self, message: str, result: Any = None, reason: str | None = None):
        super().__init__(message)
        self.result = result
        self.reason = reason or getattr(result, "reason", None) or "bad_output"


# reasons a rule process's failure record may carry; anything else is reported as 'exception'
_RULE_REASONS = re.compile(r"(exception|load_error|bad_delta|memory|signal:\d+|exit:-?\d+)")


def _where(rec: dict) -> str:
    """`; while training task T (lr, seed)` or `; during the ... probe`: what the rule served when it
    failed (the job adds it to the rule process's record)."""
    if rec.get("task"):
        lr, seed = rec.get("lr"), rec.get("seed")
        extra = ", ".join(x for x in (f"lr {lr:.3g}" if isinstance(lr, (int, float)) else "",
                                      f"seed {seed}" if isinstance(seed, int) else "") if x)
        return f"; while training task {str(rec['task'])[:100]}" + (f" ({extra})" if extra else "")
    if rec.get("during"):
        return f"; during {str(rec['during'])[:100]}"
    return ""


def failed_result(res: Any, failure: Any) -> tuple[str, Any]:
    """(reason, a copy of SandboxResult `res` carrying the rule process's failure record)."""
    rec = failure if isinstance(failure, dict) else {}
    reason = str(rec.get("reason", "exception"))
    if not _RULE_REASONS.fullmatch(reason):
        reason = "exception"
    text = f"{str(rec.get('type', 'Error'))[:200]}: {str(rec.get('message', ''))[:2000]}"
    if rec.get("line"):
        text += f" (candidate line {rec['line']}" + (f": {str(rec['line_text'])[:200]}" if rec.get("line_text") else "") + ")"
    text += _where(rec)
    tail = str(res.stderr_tail or "")
    if reason == "exception" and rec.get("traceback"):
        tail = (tail + "\n" + str(rec["traceback"]))[-8192:]
    from optforge.types import status_for_reason

    return reason, dataclasses.replace(res, status=status_for_reason(reason), reason=reason, exception=text, stderr_tail=tail)


def snapshots_from(run: Mapping[str, Any], buffers: Mapping[str, np.ndarray]) -> dict[int, dict[str, torch.Tensor]]:
    """Rebuild {step: {param name: tensor}} from one run's JSON record and its raw buffer."""
    steps = [int(s) for s in run.get("steps", ())]
    if not steps:
        return {}
    names, shapes = list(run["names"]), [tuple(int(d) for d in s) for s in run["shapes"]]
    if len(names) != len(shapes):
        raise ValueError("snapshot names and shapes differ in length")
    arr = buffers.get(run.get("buffer") or "")
    sizes = [math.prod(s) for s in shapes]
    if arr is None or arr.dtype != np.float32 or arr.shape != (len(steps), sum(sizes)):
        got = None if arr is None else (arr.dtype, arr.shape)
        raise ValueError(f"snapshot buffer has the wrong layout: got {got}, want float32 {(len(steps), sum(sizes))}")
    out: dict[int, dict[str, torch.Tensor]] = {}
    for row, step in zip(np.array(arr, copy=True), steps):
        flat = torch.from_numpy(row)
        parts = torch.split(flat, sizes) if sizes else []
        out[step] = {n: part.reshape(s).clone() for n, part, s in zip(names, parts, shapes)}
    return out


def validate_run(spec: RunSpec, run: Mapping[str, Any], buffers: Mapping[str, np.ndarray], task: Any) -> RunOutcome:
    """Trusted validation losses for one run, checked against what was asked for."""
    from optforge.evaluators.trace import parse_run_trace
    from optforge.evaluators.train import validation_curve

    steps = [int(s) for s in run.get("steps", ())]
    if steps != list(spec.eval_steps[: len(steps)]):
        raise ValueError(f"run returned snapshots at steps {steps}, expected a prefix of {list(spec.eval_steps)}")
    snaps = snapshots_from(run, buffers)
    curve = validation_curve(task, spec.seed, snaps) if snaps else {}
    val = [float(curve[s]) for s in steps]
    val = [v if math.isfinite(v) else math.inf for v in val]
    div = run.get("diverged_at")
    return RunOutcome(
        spec=spec,
        steps=steps,
        val=val,
        train_loss=[math.nan if x is None else float(x) for x in run.get("train_loss", ())],
        diverged_at=None if div is None else int(div),
        step_seconds=float(run.get("step_seconds", 0.0)),
        state_bytes=int(run.get("state_bytes", 0)),
        n_params=int(run.get("n_params", 0)),
        run_seconds=float(run.get("run_seconds", 0.0)),
        timed_step_seconds=float(run.get("timed_step_seconds", 0.0)),
        adamw_step_seconds=float(run.get("adamw_step_seconds", 0.0)),
        trace=parse_run_trace(run["trace"], spec.eval_steps, spec.steps) if "trace" in run else None,
    )


# the state-memory probe (job.state_probe, seconds of a rule process on 4.5M parameters) runs once per
# candidate: in its `train` evaluation, whose metrics `optforge export` and the search prompts read.
# The smoke gate shows no state memory, and the funnel stages re-run a rule already measured.
NO_STATE_PROBE_STAGES = ("smoke", "train_fresh_seeds", "heldout")


def measures_state(stage: str, measure_state: bool | None = None) -> bool:
    """Whether an evaluation at `stage` runs the state-memory probe: `measure_state` when given
    (a standalone `optforge eval` asks for it), else every stage but NO_STATE_PROBE_STAGES."""
    return bool(measure_state) if measure_state is not None else stage not in NO_STATE_PROBE_STAGES


CALL_SHARE = 1 / 6
"""The share of the sandbox timeout one call's runs may take at AdamW's measured speed (`calls_for`).
Room for a rule several times slower a step than AdamW (symbolic renders run at 3-4x), a slower or
busier machine than the one that built the baselines, and the call's own start-up."""


def calls_for(weights: Sequence[float], at_least: int, call_seconds: float | None) -> int:
    """How many sandbox calls to split runs of these `weights` (expected seconds each) into: `at_least`
    (one per worker, or more), and more where the total would put over `call_seconds` into one call,
    so a call never nears the sandbox timeout; never more calls than runs. A `heldout` evaluation's
    fresh runs (14 tasks x 3 seeds, about 100 s at AdamW's speed) went to one call per worker against a
    120 s timeout before."""
    n = max(1, at_least)
    if call_seconds is not None and call_seconds > 0:
        n = max(n, math.ceil(sum(weights) / call_seconds))
    return max(1, min(len(weights), n))


def _split(specs: Sequence[RunSpec], n_chunks: int, weight: Callable[[RunSpec], float]) -> list[list[int]]:
    """Indices of `specs` in `n_chunks` groups of similar cost (greedy, largest first)."""
    chunks: list[list[int]] = [[] for _ in range(max(1, n_chunks))]
    load = [0.0] * len(chunks)
    for i in sorted(range(len(specs)), key=lambda i: (-weight(specs[i]), i)):
        k = load.index(min(load))
        chunks[k].append(i)
        load[k] += weight(specs[i])
    return [sorted(c) for c in chunks if c]


@dataclass
class SandboxExecutor:
    """Runs RunSpecs through the sandbox job (`workers` calls at once) and validates the results.

    Accumulates what the calls cost and the last output tails. `chunks_per_worker` splits work into
    more, smaller calls (baseline builds, so a progress bar moves); the default is one call per worker.
    Each call pays a fixed start-up cost (a forked worker importing torch's optimizer machinery), so
    fewer, larger calls are cheaper, up to `call_seconds` (`calls_for`).
    """

    source: str
    suite: str
    tasks: Mapping[str, Any]  # trusted Task objects by name, for validation
    limits: Any
    policy: Any
    workers: int = 1
    chunks_per_worker: int = 1
    cost_per_step: Mapping[str, float] = field(default_factory=dict)
    # AdamW-seconds (steps x cost_per_step, measured when the baselines were built) one call may hold;
    # None: no bound (costs that are only relative)
    call_seconds: float | None = None
    fingerprint_next: bool = False
    progress: Callable[[int], None] | None = None
    name: str = "candidate"
    trace: bool = False  # detail="trace": the job records per-role norms (evaluators/trace.py)
    isolate_failures: bool = False  # baselines: a failed call is retried run by run, not fatal
    failed: list = field(default_factory=list)  # isolate_failures: "task lr seed: why" of each run that failed twice
    # accumulated
    calls: int = 0
    cpu_s: float = 0.0
    call_wall_s: float = 0.0
    train_s: float = 0.0  # wall time of the training runs themselves, inside the jobs
    fingerprint: str | None = None
    probe_state_next: bool = False  # the next call also measures the rule's state memory (see measures_state)
    state_probe: dict | None = None  # {"n_params", "after_init", "after_steps", "resolution"} in bytes
    stdout_tail: str = ""
    stderr_tail: str = ""
    layers: dict = field(default_factory=dict)
    rule_layers: dict = field(default_factory=dict)  # the rule processes' isolation (split job), last call
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _weight(self, spec: RunSpec) -> float:
        return spec.steps * float(self.cost_per_step.get(spec.task, 1.0))

    def __call__(self, specs: list[RunSpec]) -> list[RunOutcome]:
        n = calls_for([self._weight(s) for s in specs], self.workers * self.chunks_per_worker, self.call_seconds)
        groups = _split(specs, n, self._weight)
        want_fp, self.fingerprint_next = self.fingerprint_next, False
        want_probe, self.probe_state_next = self.probe_state_next, False
        results: list[RunOutcome | None] = [None] * len(specs)
        failed_before = len(self.failed)

        def one(k: int, idx: list[int]) -> None:
            try:
                outs = self._call([specs[i] for i in idx], fingerprint=want_fp and k == 0, probe=want_probe and k == 0)
            except BatchFailure as e:
                if not self.isolate_failures:
                    raise
                log.warning("sandbox call for %d runs failed (%s); retrying them one by one", len(idx), e.reason)
                outs = [self._single(specs[i]) for i in idx]
            for i, o in zip(idx, outs):
                results[i] = o

        if len(groups) == 1 or self.workers == 1:
            for k, idx in enumerate(groups):
                one(k, idx)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                futures = [pool.submit(one, k, idx) for k, idx in enumerate(groups)]
                errors = []
                for f in futures:
                    try:
                        f.result()
                    except BaseException as e:  # noqa: BLE001 - re-raised below, first one wins
                        errors.append(e)
                if errors:
                    raise errors[0]
        if self.isolate_failures and len(self.failed) - failed_before == len(specs):
            raise AllRunsFailed(
                f"every one of the {len(specs)} runs of {self.name} failed in the sandbox, e.g. {self.failed[-1]}; "
                "nothing was saved. `optforge doctor` shows whether a real job runs on this machine")
        return [r for r in results if r is not None]

    def _single(self, spec: RunSpec) -> RunOutcome:
        """One run in its own call, retried once; a run that still fails is recorded as failed."""
        why = ""
        for attempt in range(2):
            try:
                return self._call([spec], fingerprint=False)[0]
            except BatchFailure as e:
                log.warning("run %s failed (attempt %d): %s", spec, attempt + 1, e.reason)
                why = f"{e.reason}: {e}"
        with self._lock:
            self.failed.append(f"{spec.task} lr={spec.lr:.3g} seed={spec.seed} horizon={spec.horizon}: {why}")
        if self.progress:
            self.progress(1)
        return RunOutcome(spec, [], [], [], diverged_at=0)

    def _call(self, specs: list[RunSpec], fingerprint: bool, probe: bool = False) -> list[RunOutcome]:
        from optforge import sandbox

        payload = {
            "suite": self.suite,
            "name": self.name,
            "runs": [s.to_payload() for s in specs],
            "fingerprint": fingerprint,
            "state_probe": probe,
            "trace": self.trace,
        }
        t0 = time.perf_counter()
        res = sandbox.run(self.source, JOB, payload, self.policy, self.limits)
        with self._lock:
            self.calls += 1
            self.cpu_s += float(res.cpu_s or 0.0)
            self.call_wall_s += time.perf_counter() - t0
            self.stdout_tail = res.stdout_tail or self.stdout_tail
            self.stderr_tail = res.stderr_tail or self.stderr_tail
            self.layers = dict(res.layers or {})
        if str(getattr(res.status, "value", res.status)) != "ok":
            raise BatchFailure(f"sandbox call ended with {res.reason}", res)
        value = res.value if isinstance(res.value, dict) else {}
        if isinstance(value.get("rule_layers"), dict):
            with self._lock:
                self.rule_layers = {str(k)[:64]: bool(v) for k, v in list(value["rule_layers"].items())[:16]}
        if "failure" in value:
            reason, failed = failed_result(res, value["failure"])
            raise BatchFailure(f"the rule process failed: {failed.exception}", failed, reason)
        runs = value.get("runs")
        if not isinstance(runs, list) or len(runs) != len(specs):
            raise BatchFailure(f"the job returned {type(runs).__name__} for {len(specs)} runs", res, "bad_output")
        outs = []
        try:
            for spec, run in zip(specs, runs):
                outs.append(validate_run(spec, run, res.buffers or {}, self.tasks[spec.task]))
        except (ValueError, KeyError, RuntimeError, TypeError) as e:
            raise BatchFailure(f"the job returned a malformed snapshot: {e}", res, "bad_output") from e
        with self._lock:
            self.train_s += sum(o.run_seconds for o in outs)
        probe_value = value.get("state_probe")
        if probe and isinstance(probe_value, dict):
            keys = ("n_params", "after_init", "after_steps", "resolution")
            nums = {k: probe_value.get(k) for k in keys}
            if all(isinstance(v, int) and not isinstance(v, bool) for v in nums.values()) and nums["n_params"] > 0:
                self.state_probe = nums
        if fingerprint and isinstance(value.get("fingerprint"), str):
            self.fingerprint = value["fingerprint"][:64]
        if self.progress:
            self.progress(len(specs))
        return outs
