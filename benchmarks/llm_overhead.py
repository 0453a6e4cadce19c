"""How much LLM latency costs the search: proposals per minute and evaluation-slot utilisation, with
LLM calls overlapped with evaluations (the engine: a background proposer keeps a queue) versus not
overlapped (a generational loop: ask the LLM, then evaluate, then ask again).

The LLM is the scripted OpenAI-compatible server with a fixed artificial latency, reached through the
real litellm client; the strategy is the real `evolve`; the engine is the real engine on local Ray.
Evaluations are a fixed-duration stand-in (sleep EVAL_S, then a score from the source hash), because
this measures scheduling overhead, not training.

    python benchmarks/llm_overhead.py [--latency 0.5] [--eval 1.5] [--evals 48] [--slots 2]

Target (issue 8): with 2 slots and an LLM latency below one evaluation time, slots stay >= 90 % busy
when overlapped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optforge import seeds  # noqa: E402
from optforge.types import EvaluationResult, Status  # noqa: E402

EVAL_S = 1.5


@dataclass(frozen=True)
class BenchRequest:
    source: str
    stage: str
    suite: str = "train"
    seeds: str = "selection"
    sandbox: dict = field(default_factory=dict)
    tune_wd: bool = False
    eval_s: float = EVAL_S


def bench_evaluate(request: BenchRequest) -> EvaluationResult:
    """Fixed-duration stand-in for a training evaluation."""
    t = time.time()
    time.sleep(request.eval_s)
    h = int(hashlib.sha256(request.source.encode()).hexdigest()[:8], 16) / 16**8
    fit = round(h - 0.5, 4)
    return EvaluationResult(Status.OK, stage=request.stage, suite=request.suite, suite_version="bench-1",
                            metrics={"fitness": fit, "tasks": {"a": {"score": fit}, "b": {"score": fit}},
                                     "t_start": t, "t_end": time.time()})


def utilisation(intervals: list[tuple[float, float, bool]], slots: int, t0: float, t1: float) -> tuple[float, float]:
    """(busy share over [t0, t1], busy share in the steady state: from the first evaluation of an LLM
    proposal to the end). `intervals` are (start, end, is_llm_proposal)."""
    def share(a: float, b: float) -> float:
        busy = sum(max(0.0, min(e, b) - max(s, a)) for s, e, _ in intervals)
        return busy / (slots * max(b - a, 1e-9))

    llm_starts = [s for s, _, is_llm in intervals if is_llm]
    steady_from = min(llm_starts) if llm_starts else t0
    return share(t0, t1), share(steady_from, max(e for _, e, _ in intervals))


def _script(n: int) -> list[str]:
    base = seeds.source("adamw")
    return [f"```python\n{base.replace('EPS = 1e-8', f'EPS = {1e-8 * (1 + k):.6g}')}```" for k in range(n)]


def _client(server, concurrency: int):
    from optforge.llm import LLMClient

    return LLMClient({"model": "openai/scripted", "api_base": server.url, "api_key_env": None,
                      "concurrency": concurrency, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0})


def _strategy(llm):
    from optforge.search.context import StrategyContext
    from optforge.search.evolve import from_config

    return from_config({"warm_start": ["adamw"], "islands": 2, "edit": "full"}, StrategyContext.of(seed=0, llm=llm))


def overlapped(latency: float, eval_s: float, n_evals: int, slots: int) -> dict:
    import ray

    from optforge.config import RunConfig
    from optforge.engine import Engine
    from optforge.llm.scripted import ScriptedServer
    from optforge.store import Store

    cfg = RunConfig.from_dict({"strategy": {"name": "evolve"}, "stages": ["train"], "slots": slots,
                               "budget": {"max_candidates": n_evals}})
    warm = ray.remote(num_cpus=1)(bench_evaluate)  # start the workers: Ray start-up is not LLM overhead
    ray.get([warm.remote(BenchRequest("warm", "train", eval_s=0.5)) for _ in range(slots)])
    with ScriptedServer(_script(4 * n_evals), latency_s=latency) as server, tempfile.TemporaryDirectory() as tmp:
        llm = _client(server, concurrency=slots)
        llm.complete("warm up")  # litellm's first-call set-up is not LLM latency
        store = Store(Path(tmp) / "run")
        llm.recorder = store.record_llm_call
        engine = Engine(cfg, _strategy(llm), store, bench_evaluate,
                        make_request=lambda **kw: BenchRequest(eval_s=eval_s, **kw),
                        suite_version=lambda s: "bench-1")
        t0 = time.time()
        engine.run()
        t1 = time.time()
        llm_ids = {c.id for c in store.candidates() if c.note.get("kind") == "llm"}
        intervals = [(e.metrics["t_start"], e.metrics["t_end"], e.candidate_id in llm_ids)
                     for e in store.evaluations() if "t_start" in e.metrics]
        proposals = len(store.llm_calls())
        store.close()
    whole, steady = utilisation(intervals, slots, t0, t1)
    return {"wall": t1 - t0, "evals": len(intervals), "busy": whole, "steady": steady, "proposals": proposals}


def serial(latency: float, eval_s: float, n_evals: int, slots: int) -> dict:
    from optforge.llm.scripted import ScriptedServer

    with ScriptedServer(_script(4 * n_evals), latency_s=latency) as server:
        llm = _client(server, concurrency=slots)
        llm.complete("warm up")
        strategy = _strategy(llm)
        intervals: list[tuple[float, float, bool]] = []
        evals = proposals = 0
        t0 = time.time()
        with ThreadPoolExecutor(max_workers=slots) as pool:
            while evals < n_evals:
                cands = strategy.propose(min(slots, n_evals - evals))
                proposals += sum(1 for c in cands if c.note.get("kind") == "llm")
                todo = [c for c in cands if c.note.get("status") != "invalid"]
                for c in cands:
                    if c not in todo:
                        strategy.observe(c, EvaluationResult.failure(Status.INVALID, c.note["reason"], stage="train"))
                results = list(pool.map(lambda c: bench_evaluate(BenchRequest(c.source, "train", eval_s=eval_s)), todo))
                for c, r in zip(todo, results):
                    strategy.observe(c, r)
                    intervals.append((r.metrics["t_start"], r.metrics["t_end"], c.note.get("kind") == "llm"))
                evals += len(todo)
        t1 = time.time()
    whole, steady = utilisation(intervals, slots, t0, t1)
    return {"wall": t1 - t0, "evals": evals, "busy": whole, "steady": steady, "proposals": proposals}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.5, help="artificial LLM latency per call, seconds")
    ap.add_argument("--eval", type=float, default=EVAL_S, help="duration of one evaluation, seconds")
    ap.add_argument("--evals", type=int, default=48, help="evaluations per mode")
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ADDRESS", "local")  # a private Ray, even if another session runs here
    import logging

    logging.basicConfig(level=logging.WARNING)
    from optforge.scheduler import start_ray

    start_ray(None, num_cpus=args.slots)
    rows = [("overlapped (engine)", overlapped(args.latency, args.eval, args.evals, args.slots)),
            ("not overlapped (generational)", serial(args.latency, args.eval, args.evals, args.slots))]
    print(f"LLM latency {args.latency:.2f} s/call, evaluation {args.eval:.2f} s, {args.slots} slots, "
          f"{args.evals} evaluations per mode")
    print(f"{'mode':32s} {'wall s':>7s} {'proposals/min':>14s} {'slots busy':>11s} {'steady busy':>12s} "
          f"{'waiting on LLM':>15s}")
    for name, r in rows:
        print(f"{name:32s} {r['wall']:7.1f} {60 * r['proposals'] / r['wall']:14.1f} {100 * r['busy']:10.1f}% "
              f"{100 * r['steady']:11.1f}% {100 * (1 - r['steady']):14.1f}%")
    print("slots busy: over the whole search (includes the warm-start seed, evaluated before any LLM call);")
    print("steady busy: from the first evaluation of an LLM proposal on; waiting on LLM = 1 - steady busy")
    ratio = rows[0][1]["steady"] / max(rows[1][1]["steady"], 1e-9)
    print(f"steady slot utilisation overlapped / not overlapped: x{ratio:.2f}; "
          f"target >= 90% busy when overlapped: {'met' if rows[0][1]['steady'] >= 0.9 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
