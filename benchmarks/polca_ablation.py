"""POLCA's four ablations side by side (issue 18): configs/polca.yaml (epsilon-net and summarizer),
polca_ps.yaml (neither), polca_eps.yaml (epsilon-net only), polca_sum.yaml (summarizer only), each run
through the real engine, sandbox, evaluator and store with the same evaluation budget, against a
loopback scripted LLM server that answers every proposal from one known mix, in the same order:

- distinct rules (bundled seeds other than AdamW: lion, sgd, adafactor);
- constant changes of AdamW (BETA2 0.999 -> 0.95, BETA1 0.9 -> 0.8): different rules;
- reformatted and renamed copies of AdamW (`polca_epsilon_net.reformatted`, `.renamed`): the same
  rule, which the epsilon-net should reject before it is evaluated.

Each variant's config is read from configs/ with the same overrides (below); only the epsilon and
summarizer keys differ between them. It prints evaluations spent, LLM calls (proposals, summaries),
the mix's proposals evaluated and rejected by kind, different rules wrongly rejected, and the best
mean score reached (POLCA's exploit pick: the best mean over at least `min_rollouts` rollouts).

    python benchmarks/polca_ablation.py [--quick] [--suite SUITE] [--evaluations N] [--variants ...]
    python benchmarks/polca_ablation.py --model openai/gpt-4o-mini   # a real LLM (needs its key)

The default is `train_quick` (5 search tasks, 8 search seeds), 48 evaluation rows per variant: about
half a minute of CPU per new candidate, so expect 10-20 minutes on 2 cores. `--quick` runs `smoke`
(seconds per evaluation; its selection seeds stand in for the search-seed pool, as in the tests) with 16
rows per variant: it shows the plumbing (evaluations, rejections by kind), but on smoke every rule,
AdamW included, scores the floor against tuned AdamW (its 3-point lr grid cannot reach it in 20 steps),
so its best means say nothing. With `--model` the same four runs ask that model instead of the
scripted server (llm.api_key_env of the configs names the key); no such run has been made here.

Measured here: see the README's benchmark table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polca_epsilon_net import renamed, reformatted  # noqa: E402 - the sibling benchmark's variants

from optforge import seeds  # noqa: E402

VARIANTS = ("polca", "polca_ps", "polca_eps", "polca_sum")
DIFFERENT = ("distinct", "constant changed")  # kinds whose rules differ from every other: never to be rejected


def mix() -> list[tuple[str, str]]:
    """(kind, source) of the answers, in the order the server gives them (cycled)."""
    adamw = seeds.source("adamw")
    return [
        ("constant changed", adamw.replace("BETA2 = 0.999", "BETA2 = 0.95")),
        ("reformatted", reformatted(adamw)),
        ("distinct", seeds.source("lion")),
        ("renamed", renamed(adamw)),
        ("constant changed", adamw.replace("BETA1 = 0.9", "BETA1 = 0.8")),
        ("reformatted", reformatted(seeds.source("lion"))),
        ("distinct", seeds.source("sgd")),
        ("renamed", renamed(seeds.source("sgd"))),
        ("distinct", seeds.source("adafactor")),
    ]


def script(answers: list[tuple[str, str]]) -> dict:
    summary = {"match": "^Analyse", "content": "<reasoning>r</reasoning>\n<summary>Smaller beta2 helps; "
               "sign updates (lion) lag.</summary>", "repeat": True}
    return {"cycle": True, "responses": [summary] + [f"```python\n{src}```" for _, src in answers]}


def overrides(suite: str, evaluations: int, llm: list[str]) -> list[str]:
    return [f"suite={suite}", "stages=[smoke, train]", "deterministic=true", "slots=2", "baselines_check=off",
            f"budget.max_evaluations={evaluations}", "budget.max_llm_calls=200", "budget.max_candidates=null",
            "budget.max_seconds=3600", "strategy.num_candidates=2", "strategy.num_proposals=2",
            "strategy.batch_size=2", "strategy.min_rollouts=2", *llm]


def run_variant(name: str, run_dir: Path, opts: list[str], suite: str) -> dict:
    from optforge.commands.run import _build_strategy, _request_factory, _suite_version
    from optforge.config import load_config
    from optforge.engine import Engine
    from optforge.evaluators import evaluate
    from optforge.evaluators.tasks import get_suite
    from optforge.rollouts import SearchSuite
    from optforge.store import Store

    s = get_suite(suite)
    pool = tuple(s.search_seeds) or tuple(s.selection_seeds)  # smoke has no pool: its selection seeds stand in
    extra = [] if s.search_seeds else [f"strategy.search_seeds=[{', '.join(map(str, pool))}]"]
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", opts + extra)
    store = Store(run_dir)
    strategy, holder, ctx = _build_strategy(cfg, store)
    holder["store"] = store
    search = SearchSuite(suite, tuple(t.name for t in s.tasks), pool, tuple(s.report_seeds))
    t0 = time.monotonic()
    summary = Engine(cfg, strategy, store, evaluate, make_request=_request_factory(cfg), suite_version=_suite_version,
                     records=ctx.records, search_suite=lambda: search).run()
    return {"store": store, "strategy": strategy, "wall_s": time.monotonic() - t0, "stop": summary.stop_reason}


def measure(out: dict, kinds: dict[str, str]) -> dict:
    store, strategy = out["store"], out["strategy"]
    llm = [c for c in store.llm_calls()]
    summaries = sum(1 for r in store.records("summary"))
    evaluated = [c for c in store.candidates(include_reference=False) if c.note.get("kind") == "llm"
                 and c.note.get("status") != "invalid"]
    rejected = [r.data for r in store.records("epsilon_rejection")]
    by_kind = {k: [0, 0] for k in dict.fromkeys(kinds.values())}  # kind -> [evaluated, rejected]
    for c in evaluated:
        if c.source in kinds:
            by_kind[kinds[c.source]][0] += 1
    for d in rejected:
        if d["source"] in kinds:
            by_kind[kinds[d["source"]]][1] += 1
    best = strategy.best()
    return {"evaluations": len(store.evaluations()), "llm": len(llm), "summaries": summaries, "by_kind": by_kind,
            "wrongly": sum(by_kind[k][1] for k in DIFFERENT if k in by_kind),
            "best": None if best is None else (best.mean, best.n), "wall_s": out["wall_s"], "stop": out["stop"]}


def table(results: dict[str, dict]) -> str:
    names = list(results)
    kinds = list(next(iter(results.values()))["by_kind"])
    rows = [("evaluations spent", [str(r["evaluations"]) for r in results.values()]),
            ("LLM calls (summaries)", [f"{r['llm']} ({r['summaries']})" for r in results.values()])]
    for k in kinds:
        rows.append((f"{k}: evaluated/rejected", [f"{r['by_kind'][k][0]}/{r['by_kind'][k][1]}" for r in results.values()]))
    rows.append(("different rules wrongly rejected", [str(r["wrongly"]) for r in results.values()]))
    rows.append(("best mean (n rollouts)", ["-" if r["best"] is None else f"{r['best'][0]:+.3f} ({r['best'][1]})"
                                            for r in results.values()]))
    rows.append(("stopped by", [r["stop"] for r in results.values()]))
    rows.append(("wall s", [f"{r['wall_s']:.0f}" for r in results.values()]))
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [" " * w0 + "  " + "  ".join(n.rjust(w) for n, w in zip(names, ws))]
    lines += [label.ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(vals, ws)) for label, vals in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke, 16 evaluations per variant: the plumbing only")
    ap.add_argument("--evaluations", type=int, help="evaluation rows per variant (default 48, --quick 16)")
    ap.add_argument("--suite", help="train_quick (default), smoke (--quick), or another suite with search seeds")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--model", help="ask this litellm model instead of the scripted server (needs its key)")
    args = ap.parse_args()
    evaluations = args.evaluations or (16 if args.quick else 48)
    suite = args.suite or ("smoke" if args.quick else "train_quick")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import logging

    from optforge.llm.scripted import ScriptedServer
    from optforge.scheduler import start_ray

    logging.basicConfig(level=logging.WARNING)
    start_ray(None, num_cpus=2)
    answers = mix()
    kinds = {src: kind for kind, src in answers}
    results = {}
    with tempfile.TemporaryDirectory(prefix="polca-ablation-") as tmp:
        for name in args.variants:
            if args.model:
                llm = [f"llm.model={args.model}"]
                out = run_variant(name, Path(tmp) / name, overrides(suite, evaluations, llm), suite)
            else:
                with ScriptedServer(script(answers)) as server:
                    llm = ["llm.model=openai/scripted", f"llm.api_base={server.url}", "llm.api_key_env=null",
                           "llm.input_cost_per_token=0.000001", "llm.output_cost_per_token=0.000002"]
                    out = run_variant(name, Path(tmp) / name, overrides(suite, evaluations, llm), suite)
            results[name] = measure(out, kinds)
            out["store"].close()
            print(f"  {name}: {results[name]['evaluations']} evaluations, {results[name]['wall_s']:.0f} s",
                  file=sys.stderr, flush=True)
    source = args.model or "scripted server (the mix above, cycled)"
    print(f"POLCA ablations on {suite}, {evaluations} evaluations each, answers from {source}\n")
    print(table(results))


if __name__ == "__main__":
    main()
