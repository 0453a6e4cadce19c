"""`optforge eval RULE_FILE_OR_SEED_NAME`: score one rule on a suite against tuned AdamW."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="score one rule (a .py file or a seed name) against tuned AdamW",
        description=(
            "Train the rule on every task of a suite through the lr protocol (sandboxed), and print per task the "
            "chosen lr, the best validation loss against AdamW's, the AdamW-equivalent speedup and the score "
            "(log2 speedup, clipped to [-3, 2]), then the aggregates."
        ),
    )
    p.add_argument("rule", metavar="RULE_FILE_OR_SEED_NAME", help="path to a rule .py file, or a seed name (optforge seeds)")
    p.add_argument("--suite", default="train", help="smoke | train | train_quick | heldout | heldout_tiny | pkg.mod:fn (default train)")
    p.add_argument("--seeds", default="selection", help="selection (default), fresh (pick lr on selection, score on report seeds) or a list like 0,1")
    p.add_argument("--jobs", type=int, default=2, help="sandboxed training jobs at once (default 2)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per sandbox call (default 600, smoke 60)")
    p.add_argument("--json", action="store_true", help="print the EvaluationResult as one JSON object")
    return p


def _load_source(spec: str) -> tuple[str, str]:
    from optforge import seeds
    from optforge.cli import UserError

    if os.path.isfile(spec):
        from optforge.source_text import SourceDecodeError, read_source

        try:  # a byte-order mark or CRLF endings are fine for Python, so they are fine here
            return read_source(spec), os.path.basename(spec)
        except SourceDecodeError as e:
            raise UserError(str(e)) from None
    if spec in seeds.names():
        return seeds.source(spec), spec
    raise UserError(f"'{spec}' is neither a file nor a seed name; seeds: {', '.join(seeds.names())}")


def _seeds(text: str) -> str | tuple[int, ...]:
    from optforge.cli import UserError

    if text in ("selection", "fresh"):
        return text
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--seeds {text!r}: use selection, fresh or comma-separated ints like 0,1") from None


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def smoke_checks(result: Any) -> list[str]:
    """The gate's checks, one line each: smoke is pass/fail (status and checks), never a fitness.

    Shared with `optforge show` for smoke results.
    """
    tasks = (result.metrics or {}).get("tasks") or {}
    lines = []
    for k, t in tasks.items():
        flags = t.get("flags", [])
        trained = "diverged" not in flags and "no_finite_loss" not in flags and t.get("best_val") is not None
        lines.append(f"  {k}: {'trains' if trained else 'does not train'} (best val {_fmt(t.get('best_val'))}, "
                     f"lr {_fmt(t.get('lr'), '.2e')})" + ("" if trained else f" [{','.join(flags)}]"))
    art = result.artifacts or {}
    lines.append(f"  sandbox: {((art.get('sandbox') or {}).get('reason')) or result.status.value}")
    if art.get("fingerprint"):
        lines.append(f"  fingerprint {art['fingerprint']}")
    return lines


def render(result: Any, name: str) -> str:
    """The per-task table (score +- its 95 % interval) and the aggregates, as plain text. Smoke is a
    gate: its status and checks only."""
    from optforge.evaluators.scoring import format_score

    m = result.metrics
    lines = [f"{name} on {result.suite} (version {result.suite_version}, seeds {list(result.seeds)}): status {result.status.value}"]
    tasks = m.get("tasks") or {}
    if result.suite == "smoke":
        lines.append("smoke is a gate (pass/fail), not a score:")
        lines += smoke_checks(result)
        lines.append(f"status {result.status.value}")
        if result.status.value != "ok" and result.feedback:
            lines += ["", readable_feedback(result)]  # why the gate failed (an ok gate's feedback speaks of fitness)
        return "\n".join(lines)
    if tasks:
        w = max(len("task"), *(len(k) for k in tasks))
        lines.append(f"{'task':<{w}}  {'family':<10} {'lr':>9} {'best val':>10} {'AdamW val':>10} {'speedup':>8} {'score':>13}  flags")
        for k, t in tasks.items():
            lines.append((
                f"{k:<{w}}  {t.get('family', ''):<10} {_fmt(t.get('lr'), '.2e'):>9} {_fmt(t.get('best_val')):>10} "
                f"{_fmt(t.get('adamw_val')):>10} {_fmt(t.get('speedup'), '.2f') + 'x':>8} {format_score(t['score'], t.get('hw')):>13}  "
                + ",".join(t.get("flags", []))
            ).rstrip())
    lines.append(
        f"fitness {format_score(m['fitness'], m.get('fitness_hw'), 3)}   robust {_fmt(m.get('robust'), '+.3f')}   "
        f"median {_fmt(m.get('median'), '+.3f')}   wins {m.get('wins', 0)}/{len(tasks)} (interval above 0)   "
        f"worst {_fmt(m.get('worst'), '+.2f')}"
    )
    if tasks:
        lines.append("score: log2 AdamW-equivalent speedup at the rule's best loss + delta (docs/suites.md); "
                     "± 1.96 sigma_task / sqrt(seeds), sigma_task measured on the references")
        lines.append(
            f"step time {_fmt(m.get('step_time_ratio'), '.2f')}x AdamW   state {_fmt(m.get('state_bytes_per_param'), '.1f')} bytes/param   "
            f"cpu {_fmt(m.get('cpu_seconds'), '.1f')} s   wall {_fmt(m.get('wall_seconds'), '.1f')} s"
        )
    if result.artifacts.get("fingerprint"):
        lines.append(f"fingerprint {result.artifacts['fingerprint']}")
    lines.append(f"status {result.status.value}")
    if result.feedback:
        lines.append("")
        lines.append(readable_feedback(result))
    return "\n".join(lines)


def readable_feedback(result: Any) -> str:
    """The evaluation's feedback with its tasks named ("matfact (matrix task, T=300)"): the feedback
    keeps them anonymous for the prompts it goes into; the person reading this needs the name."""
    from optforge.task_names import name_tasks, suite_tasks

    scores = {k: t.get("score") for k, t in ((result.metrics or {}).get("tasks") or {}).items()}
    return name_tasks(result.feedback, suite_tasks(result.suite), scores=scores)


def run(args: argparse.Namespace) -> int:
    import torch

    from optforge.cli import UserError
    from optforge.evaluators import EvalRequest, evaluate
    from optforge.evaluators.baselines import BaselineError

    torch.set_num_threads(1)  # trusted validation: same numbers whatever the machine's thread count
    source, name = _load_source(args.rule)
    sandbox_cfg = {"timeout_s": args.timeout} if args.timeout else {}
    try:
        request = EvalRequest(
            source, stage=args.suite, suite=args.suite, seeds=_seeds(args.seeds), sandbox=sandbox_cfg, workers=max(1, args.jobs),
            name=name, measure_state=True,  # a standalone evaluation reports the state memory on any suite
        )
        result = evaluate(request)
    except (BaselineError, ValueError) as e:
        raise UserError(str(e)) from None
    if args.json:
        json.dump(clean_json(result.to_dict()), sys.stdout, default=str, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(render(result, name))
    return 0 if result.status.value == "ok" else 1


def clean_json(o: Any) -> Any:
    """Strict JSON: non-finite floats become null (JSON has no NaN or Infinity)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_json(v) for v in o]
    return o
