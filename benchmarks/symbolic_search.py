"""Benchmark of the symbolic search at the quickstart budget (issue 7).

Runs `configs/quickstart.yaml` through the real engine and evaluator (or, with --objective quadratic,
through a cheap in-process objective that trains a quadratic with the trusted interpreter) and prints:
the best fitness against the AdamW warm start, proposals per second, the cache hit rate, the share of
redundant statements, and the share of wall time that went into search bookkeeping (propose, observe,
state) as opposed to evaluation. Targets: bookkeeping < 5 % of wall time; cache hit rate >= 50 %.

    python benchmarks/symbolic_search.py                      # the quickstart run (about 10 minutes)
    python benchmarks/symbolic_search.py --set suite=smoke    # any config override
    python benchmarks/symbolic_search.py --objective quadratic --set strategy.phase_evaluations=300
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _quadratic_run(config) -> dict:
    """The strategy driven in-process (deterministic order) on a quadratic trained by the interpreter."""
    import torch

    from optforge.rule import RuleOptimizer
    from optforge.search.registry import build_strategy
    from optforge.search.symbolic.interpret import as_rule
    from optforge.search.symbolic.program import parse
    from optforge.search.symbolic.warmstarts import program
    from optforge.types import FLOOR, EvaluationResult, Status

    def loss_of(prog) -> float:
        gen = torch.Generator().manual_seed(0)
        a = torch.logspace(-1.5, 0.5, 6, dtype=torch.float64).reshape(6, 1)
        target = torch.randn(6, 4, dtype=torch.float64, generator=gen)
        x = torch.zeros(6, 4, dtype=torch.float64, requires_grad=True)
        opt = RuleOptimizer([{"params": [x], "role": "hidden_matrix"}], as_rule(prog), total_steps=30)
        for _ in range(30):
            loss = 0.5 * (a * (x - target) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float((0.5 * (a * (x - target) ** 2).sum()).detach())

    ref = loss_of(program("adamw"))
    strategy = build_strategy(config.strategy_name, config.strategy_params, seed=config.seed)
    fitness: dict[str, float] = {}
    eval_s = 0.0
    t0 = time.perf_counter()
    inflight: list = []
    cap = config.budget.max_candidates
    proposed = 0
    while True:
        new = strategy.propose(min(config.slots, cap - proposed) if cap is not None else config.slots)
        proposed += len(new)
        inflight += new
        if not inflight:
            break
        while inflight and (len(inflight) > config.slots or not new):
            c = inflight.pop(0)
            e0 = time.perf_counter()
            loss = loss_of(parse(c.source))
            if math.isfinite(loss):
                fit = max(FLOOR, min(2.0, math.log2(ref / max(loss, 1e-300))))
                res = EvaluationResult(Status.OK, metrics={"fitness": fit})
            else:
                res = EvaluationResult(Status.DIVERGED)
            eval_s += time.perf_counter() - e0
            fitness[c.id] = res.fitness
            strategy.observe(c, res)
            strategy.state()  # the engine stores the state with every observation
    wall = time.perf_counter() - t0
    first = next(iter(fitness))
    return {"wall": wall, "state": strategy.state(), "warm": fitness[first], "best": max(fitness.values()),
            "n": len(fitness), "eval_s": eval_s}


def _engine_run(config_path: str, overrides: list[str]) -> dict:
    from optforge.cli import main
    from optforge.store import Store

    out = Path(tempfile.mkdtemp(prefix="symbench-")) / "run"
    t0 = time.perf_counter()
    rc = main(["run", config_path, "--out", str(out), "--quiet", *[a for o in overrides for a in ("--set", o)]])
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"optforge run failed with exit code {rc}")
    store = Store.open(out)
    state = store.strategy_state() or {}
    train = {r.candidate_id: r.fitness for r in store.evaluations(stage="train")}
    smoke = {r.candidate_id: r.fitness for r in store.evaluations(stage="smoke")}
    scores = train or smoke
    cands = [c for c in store.candidates(include_reference=False)]
    warm = next((c.id for c in cands if c.note.get("mutation") == "warm_start"), None)
    return {"wall": wall, "state": state, "warm": scores.get(warm, float("nan")),
            "best": max(scores.values()) if scores else float("nan"), "n": len(cands), "run_dir": str(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--objective", choices=("engine", "quadratic"), default="engine",
                    help="engine: the real evaluator through `optforge run`; quadratic: a cheap in-process objective")
    args = ap.parse_args()

    from optforge.config import load_config

    config = load_config(args.config, args.overrides)
    r = _quadratic_run(config) if args.objective == "quadratic" else _engine_run(args.config, args.overrides)
    st = r["state"].get("stats", {})
    children = st.get("children", 0)
    dups = st.get("parent_duplicates", 0)
    hits = st.get("cache_hits", 0)
    hit_rate = (hits + dups) / (children + dups) if children + dups else 0.0
    hit_new = hits / children if children else 0.0
    redundancy = st.get("dead_statements", 0) / st["statements"] if st.get("statements") else 0.0
    book = st.get("search_seconds", 0.0)
    rows = [
        ("objective", args.objective, ""),
        ("suite", config.suite if args.objective == "engine" else "quadratic (interpreter)", ""),
        ("evaluated candidates", r["n"], ""),
        ("wall seconds", f"{r['wall']:.1f}", ""),
        ("AdamW warm start fitness", f"{r['warm']:+.3f}", ""),
        ("best fitness", f"{r['best']:+.3f}", f"{r['best'] - r['warm']:+.3f} vs warm start"),
        ("proposals per second", f"{r['n'] / r['wall']:.3f}", ""),
        ("children generated", children, f"{st.get('mutation_failures', 0)} mutation failures"),
        ("cache hit rate", f"{hit_rate:.1%}", "valid mutations needing no evaluation; target >= 50 %; paper 89 %"),
        ("  of which new functions", f"{hit_new:.1%}", f"{hits} children equal to another evaluated program"),
        ("  parent duplicates", dups, "valid mutations that recomputed the parent's function"),
        ("redundant statements", f"{redundancy:.1%}", "paper 70 %"),
        ("bookkeeping share of wall", f"{book / r['wall']:.2%}", f"{book:.2f} s; target < 5 %"),
    ]
    if "eval_s" in r:
        rows.append(("evaluation share of wall", f"{r['eval_s'] / r['wall']:.1%}", ""))
    if "run_dir" in r:
        rows.append(("run directory", r["run_dir"], ""))
    w = max(len(k) for k, _, _ in rows)
    for k, v, note in rows:
        print(f"{k:<{w}}  {str(v):>24}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
