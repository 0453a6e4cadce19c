"""`optforge show RUN_DIR [--json] [--top N] [--records [--kind K] [--full]]`: leaderboard, funnel counts,
meta-overfitting check and the best candidate's source. Promoted candidates are marked with `*`. A
candidate evaluated more than once at the last search stage (rollouts, repeats) ranks by the mean over
its rows, shown with their sd and n. A POLCA run also shows its memory (the top candidates by mean
over their rollouts), an OPTO run its steps (each chain's variable changes and the feedback they
answered), a MoH run its procedures by outer iteration (meta-utility, per-subtask fitness, parent,
rules found). `--records` lists the strategy's records instead, each cut at 300 characters
with a marker saying how many more there are (`--full`: whole). Feedback printed here names its tasks;
the prompts that carried it did not.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from optforge.cli import UserError
from optforge.commands.show_views import print_strategy_view
from optforge.commands.table import clipped
from optforge.commands.table import signed as _num

RECORD_CHARS = 300
"""Characters of a record `show --records` prints without `--full`."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("show", help="print a run's leaderboard and best candidate", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory written by `optforge run`")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--top", type=int, default=20, help="leaderboard rows (default 20)")
    p.add_argument("--records", action="store_true", help="list the strategy's records (summaries, rejected "
                   "proposals, meta-programs) instead")
    p.add_argument("--kind", help="with --records: only records of this kind")
    p.add_argument("--full", action="store_true", help=f"with --records: print each record whole (default: the "
                   f"first {RECORD_CHARS} characters, and how many more there are)")
    return p


def run(args: argparse.Namespace) -> int:
    from optforge.config import RunConfig
    from optforge.run_progress import KILLED, killed_hint
    from optforge.store import Store, StoreError

    try:
        store = Store.open(args.run_dir)
    except StoreError as e:
        raise UserError(str(e)) from e
    config = RunConfig.from_dict(store.config()) if store.config() else RunConfig()
    for flag in ("kind", "full"):
        if getattr(args, flag) and not args.records:
            raise UserError(f"--{flag} is about strategy records: use it with --records")
    if args.records:
        return print_records(store, args.kind, as_json=args.json, suite=config.suite, full=args.full)
    if args.json:
        print(json.dumps(summary(store, config, top=args.top), indent=2, sort_keys=True))
        return 0
    s = summary(store, config, top=args.top)
    status = s["activity"] + (f" ({killed_hint(store.run_dir)})" if s["activity"] == KILLED else "")
    print(f"run {store.run_dir}: strategy {config.strategy_name}, suite {config.suite}, status {status}"
          f" ({s['stop_reason'] or '-'}), {s['proposed']} candidates, {s['evaluations']} evaluations,"
          f" score_version {s['score_version']}")
    if s["llm"]["requests"]:
        print(f"LLM: {s['llm']['requests']} HTTP requests (retries included), ${s['llm']['dollars']:.4f}")
    if s["records"]:
        print("strategy records: " + ", ".join(f"{k} {n}" for k, n in sorted(s["records"].items()))
              + f" (list them: optforge show {store.run_dir} --records)")
    print("funnel: " + " -> ".join(f"{k} {v}" for k, v in s["funnel"].items()))
    corr = s["meta_overfitting"]
    if corr and corr.get("n"):
        fmt = lambda v: "n/a" if v is None else f"{v:+.2f}"  # noqa: E731
        print(f"train vs heldout fitness over {corr['n']} candidates: pearson {fmt(corr['pearson'])},"
              f" spearman {fmt(corr['spearman'])}")
    if s["failure"]:
        print(f"the run stopped: {s['failure']}")
    print()
    print_leaderboard(store, config, top=args.top)
    print_failures(s["failures"])
    print_strategy_view(s["strategy_view"], store.run_dir)
    if s["promoted"]:
        print(f"promoted: {', '.join(s['promoted'])} (export one with: optforge export {store.run_dir} ID -o opt.py)")
    best = _best(store, config)
    if best is not None:
        print_candidate_detail(best)
        print(best.candidate.source.rstrip())
    return 0


def _best(store: Any, config: Any) -> Any:
    """The candidate export takes by default: promoted first, a simplified form within tolerance."""
    from optforge.export import choose_best
    from optforge.store import Ranked

    stage = _rank_stage(config)
    cid = choose_best(store, stage)
    return None if cid is None else Ranked(store.candidate(cid), store.evaluation(cid, stage))


def print_candidate_detail(ranked: Any) -> None:
    """The candidate's result: a smoke gate as status and checks; a scored stage as fitness and per-task
    scores with their 95 % intervals (from the baselines' sigma, never from the candidate's own seeds);
    task-detection flags, which the held-out stage, not this check, defends against."""
    from optforge.commands.eval import smoke_checks
    from optforge.evaluators.scoring import format_score
    from optforge.rule_flags import task_detection_flags

    cand, ev = ranked.candidate, ranked.evaluation
    m = ev.metrics or {}
    if ev.stage == "smoke":
        print(f"\nbest candidate {cand.id}: smoke gate {ev.status.value} (a gate: pass/fail, no fitness)")
        for line in smoke_checks(ev):
            print(line)
    else:
        wins, agg = m.get("wins"), ev.aggregate
        print(f"\nbest candidate {cand.id} at {ev.stage}: fitness {format_score(ev.fitness, m.get('fitness_hw'), 3)}"
              + ("" if wins is None else f", significant wins {wins}/{len(m.get('tasks') or {})}")
              + ("" if agg is None or agg.n < 2 else
                 f" (its stage evaluation; {agg.mean:+.3f} over all its {agg.n} rows, which ranks it)"))
        for task, row in (m.get("tasks") or {}).items():
            flags = ",".join(row.get("flags") or [])
            print(f"  {task:<22} {format_score(row.get('score', 0.0), row.get('hw')):>14}"
                  + (f"  [{flags}]" if flags else ""))
    flags = task_detection_flags(cand.source)
    if flags:
        print("task detection: the rule compares a step count, lr or shape with a constant; it may recognise "
              "a task (the held-out stage is the defence):")
        for f in flags:
            print(f"  {f}")
    print()


def _rank_stage(config: Any) -> str:
    return config.search_stages()[-1].name


def final_search_results(store: Any, config: Any) -> list[Any]:
    """(candidate, evaluation) of every strategy candidate at the last search stage it reached, best
    first: at the last stage by the mean over all its rows (`Store.leaderboard`; the evaluation carries
    the `aggregate`), then those that stopped earlier in proposal order (a smoke failure is listed
    instead of vanishing)."""
    from optforge.store import Ranked

    order = [s.name for s in config.search_stages()]
    ranked = list(store.leaderboard(order[-1]))
    reached = {r.candidate.id for r in ranked}
    for cand in store.candidates(include_reference=False):
        earlier = [store.evaluation(cand.id, stage) for stage in reversed(order[:-1])] if cand.id not in reached else []
        ev = next((e for e in earlier if e is not None), None)
        if ev is not None:
            ranked.append(Ranked(cand, ev))
    return ranked


def leaderboard_rows(store: Any, config: Any, top: int | None = None) -> list[dict[str, Any]]:
    """Ranked rows (see `final_search_results`) with funnel results and a promoted flag; a row at the
    smoke gate has no fitness, and its checks as feedback."""
    promoted = {p.candidate_id for p in store.promotions("promoted") if p.passed}
    funnel = {(p.candidate_id, p.stage): p for p in store.promotions()}
    rows = []
    ranked = final_search_results(store, config)
    for rank, (cand, ev) in enumerate(ranked[:top] if top is not None else ranked, 1):
        agg = ev.aggregate
        gate = ev.stage == "smoke"  # pass/fail: no fitness, interval, robust score or wins
        row = {"rank": rank, "id": cand.id, "strategy": cand.strategy, "stage": ev.stage, "status": ev.status.value,
               "fitness": None if gate else agg.mean if agg else ev.fitness, "sd": agg.sd if agg else None,
               "n": agg.n if agg else 1, "tasks_missing": list(agg.missing) if agg else [],
               "fitness_hw": None if gate else ev.metrics.get("fitness_hw"),
               "robust": None if gate else ev.metrics.get("robust"), "wins": None if gate else ev.metrics.get("wins"),
               "label": cand.note.get("seed") or cand.note.get("mutation") or "", "promoted": cand.id in promoted,
               "feedback": shown_feedback(ev) if gate else ev.feedback}
        for s in config.funnel_stages():
            p = funnel.get((cand.id, s.name))
            row[s.name] = None if p is None else {"passed": p.passed, "value": p.value, "bar": p.bar}
        rows.append(row)
    return rows


def print_leaderboard(store: Any, config: Any, top: int | None = 10) -> None:
    from optforge.run_progress import RUNNING, run_activity

    rows = leaderboard_rows(store, config, top)
    if not rows:
        print("no evaluated candidates yet")
        return
    stages = [s.name for s in config.funnel_stages()]
    last = config.search_stages()[-1].name
    head = (f"{'#':>3}  {'id':<22} {'status':<9} {'fitness':>8} {'95%':>7} {'robust':>8} {'± sd':>7} {'n':>3}  "
            + "".join(f"{s:>18}" for s in stages))
    print(head)
    for r in rows:
        cells = []
        for s in stages:
            v = r[s]
            cells.append(f"{'-':>18}" if v is None else f"{('pass ' if v['passed'] else 'fail ') + _num(v['value']):>18}")
        name = (r["id"] + (f" {r['label']}" if r["label"] and r["label"] not in r["id"] else ""))[:21]
        mark = "*" if r["promoted"] else " "
        status = r["status"] if r["status"] != "ok" or r["stage"] == last else "ok*"
        gate = r["stage"] == "smoke"  # a gate: pass/fail, never a fitness
        fitness = "gate" if gate else _num(r["fitness"])
        # "-": no interval or sd to give (one evaluation row has no sd); blank for a gate, which has no fitness
        hw = "" if gate else "-" if r["fitness_hw"] is None else f"±{r['fitness_hw']:.3f}"
        sd = "" if gate else "-" if r["sd"] is None else f"±{r['sd']:.3f}"
        print(f"{r['rank']:>3}{mark} {name:<22} {status:<9} {fitness:>8} {hw:>7} {'-' if gate else _num(r['robust']):>8} "
              f"{sd:>7} {r['n']:>3}  " + "".join(cells))
    if any(r["n"] > 1 for r in rows):
        print(f"fitness, ± sd, n: a candidate's n evaluation rows at {last} (its stage evaluation, rollouts and "
              "repeats): the mean over tasks of each task's mean over the rows that ran it, and the rows' sd "
              "('-' with one row); 95%: the interval of its stage evaluation")
    else:
        print(f"95%: the interval of a candidate's evaluation at {last}; ± sd: the sd over its evaluation rows, "
              "'-' while it has one (rollouts and repeats add rows)")
    subset = [r["id"] for r in rows if r["tasks_missing"]]
    if subset:
        print(f"scored on part of the suite only (rollouts on task subsets), so ranked after every candidate scored on "
              f"all of it: {', '.join(subset)}")
    if any(r["promoted"] for r in rows):
        print("* promoted: beat the reference on fresh seeds and on the held-out suite")
    partial = sorted({r["stage"] for r in rows if r["status"] == "ok" and r["stage"] != last})
    if partial:
        why = "not yet: the run is running" if run_activity(store) == RUNNING else "the run stopped before"
        print(f"ok*: ok at {' and '.join(partial)}, not evaluated at {last} ({why}); "
              f"ranked below every candidate with a {last} fitness")


def record_rows(store: Any, kind: str | None = None) -> list[dict[str, Any]]:
    """The strategy's records, oldest first (optionally of one kind), as JSON-able rows."""
    return [{"id": r.id, "kind": r.kind, "candidate": r.candidate_id, "created": r.created, "data": dict(r.data)}
            for r in store.records(kind)]


def print_records(store: Any, kind: str | None, *, as_json: bool = False, suite: str = "", full: bool = False) -> int:
    """The records, one line each (their texts' tasks named for reading), cut at RECORD_CHARS characters
    with a marker unless `full`; or as stored with `as_json`."""
    from optforge.strategy_views import readable

    rows = record_rows(store, kind)
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        kinds = sorted({r.kind for r in store.records()})
        print(f"no strategy records{f' of kind {kind!r}' if kind else ''} in {store.run_dir}"
              + (f" (kinds: {', '.join(kinds)})" if kinds else ""))
        return 0
    for r in rows:
        about = f" [{r['candidate']}]" if r["candidate"] else ""
        data = readable(r["data"], suite) if suite else r["data"]
        text = clipped(json.dumps(data, sort_keys=True, ensure_ascii=False), None if full else RECORD_CHARS, "--full")
        print(f"#{r['id']} {r['kind']}{about}: {text}")
    return 0


def shown_feedback(ev: Any) -> str:
    """An evaluation's feedback as `show` prints it: for the smoke gate its checks (each task by name:
    trains or not, with its flags; the sandbox's verdict), never the fitness and wins the evaluator's
    text opens with (smoke is a gate, not a score: docs/suites.md); else the feedback with its tasks
    named (`eval.readable_feedback`)."""
    from optforge.commands.eval import readable_feedback, smoke_checks

    if ev.stage == "smoke" and (ev.metrics or {}).get("tasks"):
        return "; ".join(c.strip() for c in smoke_checks(ev) if not c.strip().startswith("fingerprint"))
    return readable_feedback(ev)


def failure_rows(store: Any) -> list[dict[str, Any]]:
    """Every failed evaluation, grouped by (status, stage, reason): the reason a user needs to act on
    (`shown_feedback`), with how many candidates share it and which ones (in evaluation order)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ev in store.evaluations():
        if ev.ok:
            continue
        reason = (" ".join(shown_feedback(ev).split())
                  or str(ev.artifacts.get("exception", "")).strip() or "no reason recorded")
        key = (ev.status.value, ev.stage, reason)
        row = groups.setdefault(key, {"status": key[0], "stage": key[1], "reason": reason, "candidates": []})
        row["candidates"].append(ev.candidate_id)
    return list(groups.values())


def print_failures(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(f"\nfailures ({sum(len(r['candidates']) for r in rows)} evaluations, by reason):")
    for r in rows:
        ids = r["candidates"]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        print(f"  {r['status']} at {r['stage']} x{len(ids)} ({shown}): {r['reason']}")


def summary(store: Any, config: Any, top: int | None = 20) -> dict[str, Any]:
    """Everything `show` prints, as one JSON-able mapping."""
    from optforge.funnel import funnel_counts
    from optforge.rule_flags import task_detection_flags
    from optforge.run_progress import run_activity
    from optforge.strategy_views import strategy_view

    dollars, requests = store.llm_spend()  # HTTP requests, retries included (what budget.max_llm_calls counts)
    best = _best(store, config)
    return {
        "run_dir": str(store.run_dir), "status": store.meta("status", "unknown"), "activity": run_activity(store),
        "stop_reason": store.meta("stop_reason", ""), "config": store.config(), "versions": store.meta("versions", {}),
        # a run from before score versions were recorded was scored with version 1
        "score_version": (store.meta("versions", {}) or {}).get("score_version", 1),
        "suite_versions": store.meta("suite_versions", {}),
        "proposed": len(store.candidates(include_reference=False)), "evaluations": len(store.evaluations()),
        "statuses": store.status_counts(), "funnel": funnel_counts(store, config),
        "meta_overfitting": store.meta("correlation"), "llm": {"requests": requests, "dollars": dollars},
        "leaderboard": leaderboard_rows(store, config, top),
        "best": None if best is None else {"id": best.candidate.id, "fitness": best.evaluation.fitness,
                                           "fitness_hw": best.evaluation.metrics.get("fitness_hw"),
                                           "stage": best.evaluation.stage, "source": best.candidate.source,
                                           "task_detection": [{"line": f.line, "message": f.message}
                                                              for f in task_detection_flags(best.candidate.source)]},
        "promoted": [p.candidate_id for p in store.promotions("promoted") if p.passed],
        "failure": store.meta("failure", ""),
        "failures": failure_rows(store),
        "records": {k: n for k, n in _record_counts(store).items()},
        "strategy_view": strategy_view(store, config),
    }


def _record_counts(store: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in store.records():
        counts[r.kind] = counts.get(r.kind, 0) + 1
    return counts
