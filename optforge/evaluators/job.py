"""The trusted job that runs INSIDE the sandbox: train a (possibly untrusted) rule on suite tasks.

Split training job (docs/security.md, "The split training job"): this process is the trusted trainer and never loads the
candidate. Before it builds any task it forks a rule host (optforge.sandbox.rule_host), a clean
copy of itself holding no model and no data; per (task, lr, seed) run the host forks one isolated
rule process that loads the candidate, serves every tensor of that run through a memfd and two
pipes (optforge.evaluators.remote_rule), and exits. Here stay the model, the data, the loss, the
lr schedule, the step counts, the global grad norm, weight decay and `p += delta`.

Why the trainer runs here and not in the evaluator: the rule process must inherit the memfd and
pipes from a process that holds nothing worth stealing; inside the job that is a plain fork
(before any task exists), behind every sandbox layer (timeouts, rlimits, namespaces, uid), and the
warm template keeps start-up cheap. The trainer itself holds no secret, and the trusted evaluator
still computes every validation loss from the returned snapshots.

`run_job(source, payload)` returns JSON (divergence, step times measured here around the round
trip, the reported train loss) plus one raw float32 buffer per run holding the parameter snapshots
at the eval steps. No validation data exists in this process: the tasks are built with
validation=False. A rule-process failure (exception, bad delta, load error, death) is returned as
`{"failure": record}`; the trusted side turns it into a status. On request it also returns a
numeric fingerprint of the rule (smoke stage).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import mmap
import time
from typing import Any

import numpy as np
import torch

from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError
from optforge.evaluators.trace import TracingRule
from optforge.sandbox.rule_host import RuleHost

FINGERPRINT_STEPS = 5
# the state-memory probe: one tensor per role, 4.5M parameters, so a state of one float32 per
# parameter (18 MB) stands far above the resolution of resident memory; the 2-D hidden matrix stays
# small because matrix rules orthogonalise it every step (Newton-Schulz is cubic in its side)
PROBE_SHAPES = (
    ("hidden_matrix", (512, 512)),
    ("conv", (64, 64, 3, 3)),
    ("embedding", (16384, 128)),
    ("head", (128, 16384)),
    ("vector", (1024,)),
    ("scalar", ()),
)
PROBE_STEPS = 10
# a rule that keeps no state: its resident-memory change is the probe's resolution
_STATELESS = "LR = 1e-3\n\ndef init(p, ctx):\n    return {'n': 0}\n\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
# one fixed tensor per role kind (2-D, conv, embedding, head, 1-D, 0-D)
_FP_SHAPES = (
    ("hidden_matrix", (8, 6)),
    ("conv", (4, 2, 3, 3)),
    ("embedding", (10, 4)),
    ("head", (5, 8)),
    ("vector", (6,)),
    ("scalar", ()),
)


def run_job(source: str, payload: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Train every run of `payload["runs"]` on suite `payload["suite"]`; see the module docstring."""
    torch.set_num_threads(1)
    host = RuleHost.start()  # first: the host must be forked while this process holds no task
    try:
        return _run_all(source, payload, host)
    finally:
        host.close()


run_job.starts_rule_host = True  # type: ignore[attr-defined]  # it keeps what RuleHost.start needs (sandbox.job_process)


def _run_all(source: str, payload: dict, host: RuleHost) -> tuple[dict, dict[str, np.ndarray]]:
    from optforge import seeds
    from optforge.evaluators.tasks import get_suite
    from optforge.evaluators.train import train_rule

    rule = RemoteRuleSource(host, source, str(payload.get("name", "candidate")))
    adamw = RemoteRuleSource(host, seeds.source("adamw"), "adamw")
    tasks = {t.name: t for t in get_suite(payload["suite"]).tasks}
    runs: list[dict] = []
    buffers: dict[str, np.ndarray] = {}
    step_pairs: dict[str, tuple[float, float]] = {}
    value: dict = {"runs": runs}
    where: dict = {}  # what the rule was serving when it failed, added to its failure record
    try:
        for i, r in enumerate(payload.get("runs", ())):
            if r["task"] not in tasks:
                raise KeyError(f"task {r['task']!r} is not in suite {payload['suite']!r}")
            where = {"task": r["task"], "lr": float(r["lr"]), "seed": int(r["seed"])}
            t0 = time.perf_counter()
            traced = TracingRule(rule, r["eval_steps"]) if payload.get("trace") else None
            trace = train_rule(
                tasks[r["task"]],
                traced or rule,
                lr=float(r["lr"]),
                seed=int(r["seed"]),
                steps=int(r["steps"]),
                eval_steps=[int(s) for s in r["eval_steps"]],
                total_steps=int(r["horizon"]),
                weight_decay=float(r.get("weight_decay", 0.0)),
            )
            run_seconds = time.perf_counter() - t0
            if r["task"] not in step_pairs and trace.diverged_at is None:
                step_pairs[r["task"]] = step_seconds_pair(tasks[r["task"]], int(r["seed"]), rule, adamw)
            cand_step, adamw_step = step_pairs.get(r["task"], (0.0, 0.0))
            runs.append(_run_record(i, trace, buffers, run_seconds, cand_step, adamw_step))
            if traced is not None:
                runs[-1]["trace"] = traced.to_json(trace)
        if payload.get("fingerprint"):
            where = {"during": "the smoke fingerprint"}
            value["fingerprint"] = fingerprint(rule)
        if payload.get("state_probe"):
            where = {"during": "the state-memory probe"}
            value["state_probe"] = state_probe(rule, RemoteRuleSource(host, _STATELESS, "stateless"))
    except RuleProcessError as e:
        value["failure"] = {**e.record, **where}
    # which isolation layers held in every rule process of this call (rule_host.Child.layers)
    value["rule_layers"] = {**host.layers, **rule.layers}
    return value, buffers


def _run_record(i: int, trace, buffers: dict[str, np.ndarray], run_seconds: float, cand_step: float, adamw_step: float) -> dict:
    steps = sorted(int(s) for s in trace.snapshots)
    names: list[str] = list(trace.snapshots[steps[0]]) if steps else []
    shapes = [list(trace.snapshots[steps[0]][n].shape) for n in names] if steps else []
    if steps:
        rows = [
            torch.cat([trace.snapshots[s][n].detach().reshape(-1).to(torch.float32) for n in names]).numpy()
            for s in steps
        ]
        buffers[f"r{i}"] = np.ascontiguousarray(np.stack(rows), dtype=np.float32)
    losses = list(trace.train_loss)
    return {
        "steps": steps,
        "names": names,
        "shapes": shapes,
        "buffer": f"r{i}" if steps else None,
        "train_loss": [_num(losses[s - 1]) if 0 < s <= len(losses) else None for s in steps],
        "diverged_at": trace.diverged_at,
        "step_seconds": float(trace.step_seconds),
        "timed_step_seconds": cand_step,
        "adamw_step_seconds": adamw_step,
        "state_bytes": int(trace.state_bytes),
        "n_params": int(sum(math.prod(s) for s in shapes)),
        "run_seconds": run_seconds,
    }


def step_seconds_pair(task, seed: int, rule, adamw=None, steps: int = 10, rounds: int = 4) -> tuple[float, float]:
    """(rule, AdamW) optimizer-step seconds on this task's parameters, timed alike in this process.

    Both go through the same path (for remote rules: the round trip to their own rule process,
    timed here, outside it), with the same gradients, warm state, interleaved rounds and the best
    round, so the ratio does not depend on the machine or its load. Returns (0, 0) if the rule
    fails on the timing gradients (raises, or its process dies): the training run already judged it.
    `adamw` defaults to the AdamW seed loaded here (for a rule loaded here too).
    """
    from optforge import seeds
    from optforge.evaluators.train import role_groups, started
    from optforge.rule import RuleError, RuleOptimizer

    adamw = seeds.load("adamw") if adamw is None else adamw
    problems, groups = [], []
    for _ in (rule, adamw):
        problem = task.build(seed, validation=False)
        gen = torch.Generator().manual_seed(0)
        for p in problem.model.parameters():
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype) * 1e-3
        problems.append(problem)
        groups.append(role_groups(problem))
    best = [math.inf, math.inf]
    with started(rule, groups[0]) as r0, started(adamw, groups[1]) as r1:
        timed = [RuleOptimizer(g, r, lr=r.lr, total_steps=10**6) for g, r in zip(groups, (r0, r1))]
        try:
            for opt in timed:
                opt.step()
            for r in range(rounds):
                # ABBA order: whichever process is timed first pays for waking from its idle wait
                for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                    opt = timed[k]
                    # the other rule's process stopped meanwhile: a rule that loads the CPU from a timer
                    # while AdamW is timed made its own ratio look better (benchmarks/step_time_spinner.py)
                    with _stopped((r0, r1)[1 - k]):
                        t0 = time.perf_counter()
                        for _ in range(steps):
                            opt.step()
                        best[k] = min(best[k], (time.perf_counter() - t0) / steps)
        except (RuleError, RuleProcessError, ArithmeticError, ValueError, RuntimeError):
            return 0.0, 0.0
    return best[0], best[1]


def _stopped(rule: Any) -> Any:
    """The rule's process kept stopped for a block (`RemoteRule.stopped`); a rule loaded here has none."""
    stop = getattr(rule, "stopped", None)
    return stop() if stop is not None else contextlib.nullcontext()


def state_probe(rule: RemoteRuleSource, stateless: RemoteRuleSource) -> dict:
    """The rule process's resident-memory change on PROBE_SHAPES, read from outside it.

    `after_init` is measured after the first step (init and one update), `after_steps` after
    PROBE_STEPS; `resolution` is the larger of a page and the change a stateless rule shows the
    same way (temporaries, allocator). Both processes return freed memory at once (exact_rss).
    """
    from optforge.evaluators.train import started
    from optforge.rule import RuleOptimizer

    out: dict = {"n_params": sum(math.prod(s) for _, s in PROBE_SHAPES)}
    for key, src in (("stateless", stateless), ("rule", rule)):
        gen = torch.Generator().manual_seed(7)
        groups = [{"params": [torch.nn.Parameter(torch.randn(s, generator=gen))], "role": r} for r, s in PROBE_SHAPES]
        grads = [torch.randn(g["params"][0].shape, generator=gen) * 1e-3 for g in groups]
        for g, grad in zip(groups, grads):
            g["params"][0].grad = grad
        with started(dataclasses.replace(src, exact_rss=True), groups) as remote:
            opt = RuleOptimizer(groups, remote, total_steps=PROBE_STEPS)
            base = remote.rss_bytes()
            opt.step()
            first = remote.rss_bytes() - base
            for _ in range(PROBE_STEPS - 1):
                opt.step()
            out[key] = (first, remote.rss_bytes() - base)
    noise = max(abs(x) for x in out.pop("stateless"))
    out["after_init"], out["after_steps"] = out.pop("rule")
    out["resolution"] = max(mmap.PAGESIZE, noise)
    return out


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def fingerprint(rule) -> str:
    """A hash of what the rule does to fixed tensors over a few steps, rounded to 4 significant digits.

    Functional duplicates (renamed variables, reordered code) get the same fingerprint. Gradients
    depend on the parameters (a fixed quadratic plus fixed noise), so terms in p (weight decay) count.
    """
    from optforge.evaluators.train import started
    from optforge.rule import RuleOptimizer

    gen = torch.Generator().manual_seed(1234)
    params, targets, groups = [], [], []
    for role, shape in _FP_SHAPES:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen) if shape else torch.randn((), generator=gen))
        params.append(p)
        targets.append(torch.randn(shape, generator=gen) if shape else torch.randn((), generator=gen))
        groups.append({"params": [p], "role": role})
    noise = [[torch.randn(p.shape, generator=gen) * 0.1 for p in params] for _ in range(FINGERPRINT_STEPS)]
    digest = hashlib.sha256()
    with started(rule, groups) as active:
        opt = RuleOptimizer(groups, active, total_steps=FINGERPRINT_STEPS)
        for step in range(FINGERPRINT_STEPS):
            for p, tgt, nz in zip(params, targets, noise[step]):
                p.grad = (p.detach() - tgt) + nz
            opt.step()
            for p in params:
                for v in p.detach().reshape(-1).tolist():
                    digest.update((f"{v:.4g}" if math.isfinite(v) else "nan").encode())
                    digest.update(b",")
    return digest.hexdigest()[:16]
