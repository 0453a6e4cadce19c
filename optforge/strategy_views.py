"""What `optforge show` and `optforge report` say of a strategy's own state, as JSON-able rows:

- POLCA (`polca_memory`): the candidates of its memory (queued, and those in flight when the run
  stopped) by mean score over their rollouts, with sd, the number of known scores, how many rollouts
  were lost (no score), the tasks they covered, and which one is the exploit pick (the best mean with
  at least `min_rollouts` scores), from the stored strategy state; and the epsilon-net's rejections per
  iteration, from its `epsilon_rejection` records;
- OPTO (`opto_steps`): each OptoPrime step of each chain, from its `step` records: the variables'
  change (or why the answer was unusable), the result of the rule it made, and the feedback it answered;
- MoH (`moh_procedures`): per outer iteration (the seed procedures first), each procedure with its
  parent, its meta-utility and, per subtask, the best fitness its run reached and the rules it found,
  from the `procedure` records (and the stored state, for one still being scored), with the
  `meta_iteration` records saying which meta-optimizer ran and whether the best new one replaced it.

Feedback is shown to a person here, so its tasks are named (`optforge.task_names`); the prompts kept
them anonymous.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping

from optforge.task_names import name_labels, name_tasks, suite_tasks


def strategy_view(store: Any, config: Any, top: int = 10) -> dict[str, Any] | None:
    """{"kind": "polca_memory" | "opto_steps" | "moh_procedures", ...} for a POLCA, OPTO or MoH run;
    None otherwise."""
    if config.strategy_name == "polca":
        return polca_memory(store, config, top)
    if config.strategy_name == "opto":
        return opto_steps(store, config)
    if config.strategy_name == "moh":
        return moh_procedures(store)
    return None


def polca_memory(store: Any, config: Any, top: int = 10) -> dict[str, Any]:
    """The `top` candidates of POLCA's memory by mean score (candidates with no score last)."""
    from optforge.search.polca.params import PolcaConfig

    state = store.strategy_state() or {}
    min_rollouts = PolcaConfig.from_params(config.strategy_params).min_rollouts
    where = [("queued", c) for c in (state.get("memory") or {}).get("queued", [])]
    where += [("exploring", c) for c in state.get("exploring", [])] + [("validating", c) for c in state.get("validating", [])]
    rows = [_memory_row(c, place) for place, c in where]
    eligible = [r for r in rows if r["n"] >= max(min_rollouts, 1)]
    pick = max(eligible, key=lambda r: (r["mean"], r["created"]))["id"] if eligible else None
    for r in rows:
        r["best"] = r["id"] == pick
    rows.sort(key=lambda r: (r["mean"] is not None, r["mean"] if r["mean"] is not None else 0.0, r["created"]),
              reverse=True)
    labels = _labels(store, [r["id"] for r in rows[:top]])
    for r in rows[:top]:
        r["label"] = labels.get(r["id"], "")
    rejections: dict[int, int] = {}
    for rec in store.records("epsilon_rejection"):
        it = int(rec.data.get("iteration") or 0)
        rejections[it] = rejections.get(it, 0) + 1
    return {"kind": "polca_memory", "rows": rows[:top], "size": len(rows), "min_rollouts": min_rollouts,
            "rejections": [[it, n] for it, n in sorted(rejections.items())],
            "iteration": state.get("iteration"), "context": name_tasks(str(state.get("context") or ""),
                                                                        suite_tasks(config.suite))}


def _memory_row(c: Mapping[str, Any], place: str) -> dict[str, Any]:
    rollouts = c.get("rollouts") or []
    scores = [float(r["score"]) for r in rollouts if r.get("score") is not None]
    return {"id": c["id"], "parent": c.get("parent"), "created": int(c.get("created", 0)), "place": place,
            "mean": math.fsum(scores) / len(scores) if scores else None,
            "sd": statistics.stdev(scores) if len(scores) > 1 else None, "n": len(scores),
            "rollouts": len(rollouts), "lost": len(rollouts) - len(scores),
            "tasks": sorted({str(r["task"]) for r in rollouts})}


def _labels(store: Any, ids: list[str]) -> dict[str, str]:
    """A seed's name for a warm start, else nothing (the id says the rest)."""
    out = {}
    for cid in ids:
        try:
            note = store.candidate(cid).note
        except KeyError:
            continue
        out[cid] = str(note.get("seed") or "")
    return out


def opto_steps(store: Any, config: Any) -> dict[str, Any]:
    """Every OPTO step, by chain then step, with the result of the rule it made at the last search stage."""
    stage = config.search_stages()[-1].name
    tasks = suite_tasks(config.suite)
    rows = []
    for rec in store.records("step"):
        d = rec.data
        cid = rec.candidate_id
        ev = _last_result(store, cid, stage) if cid else None
        result = None if ev is None else {"stage": ev.stage, "status": ev.status.value,  # smoke is a gate: no fitness
                                          "fitness": ev.fitness if ev.ok and ev.stage != "smoke" else None}
        feedback = name_tasks(name_labels(str(d.get("feedback", "")), d.get("tasks") or {}), tasks)
        rows.append({"chain": d.get("chain"), "step": d.get("step"), "parent": d.get("parent"), "candidate": cid,
                     "outcome": d.get("outcome"), "change": d.get("change", ""), "result": result,
                     "feedback": feedback})
    rows.sort(key=lambda r: (r["chain"] if r["chain"] is not None else -1, r["step"] or 0))
    best = (store.strategy_state() or {}).get("best")
    ended = {r.data.get("chain"): r.data.get("reason") for r in store.records("chain_ended")}
    return {"kind": "opto_steps", "rows": rows, "best_chain": None if not best else best.get("chain"),
            "best": best and {k: best.get(k) for k in ("chain", "candidate", "fitness", "steps")},
            "ended": {str(k): v for k, v in ended.items()}}


def _last_result(store: Any, cid: str, stage: str) -> Any:
    ev = store.evaluation(cid, stage)
    if ev is not None:
        return ev
    evs = [e for e in store.evaluations(cid) if e.rollout_id is None]
    return max(evs, key=lambda e: e.created) if evs else None


def moh_procedures(store: Any) -> dict[str, Any]:
    """MoH's procedures grouped by outer iteration: {"subtasks": [[name, weight]], "iterations": [{"iteration":
    None (the seed procedures) or N, "meta": the `meta_iteration` record or None, "procedures": [row]}],
    "best", "meta_optimizer", "stop_reason"}. A row: id, parent, origin, idea, utility (None while being
    scored), status, reason, and per subtask {"best", "candidate" (the best rule), "found" (the rule
    candidates its run evaluated), "status"}."""
    state = store.strategy_state() or {}
    scored = {r.data["id"]: r.data for r in store.records("procedure")}
    procedures = [*scored.values(), *(p for p in state.get("procedures") or [] if p["id"] not in scored)]
    metas = {int(r.data["iteration"]): r.data for r in store.records("meta_iteration")}
    subtasks = [[str(n), float(w)] for n, _, w in state.get("subtasks") or []]
    if not subtasks:
        first = next(iter(store.records("subtasks")), None)
        subtasks = [[n, float(d["weight"])] for n, d in ((first.data if first else {}).get("subtasks") or {}).items()]
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for p in procedures:
        groups.setdefault(p.get("iteration"), []).append(_procedure_row(p))
    for it in metas:
        groups.setdefault(it, [])
    order = sorted(groups, key=lambda it: -1 if it is None else it)
    return {"kind": "moh_procedures", "subtasks": subtasks,
            "iterations": [{"iteration": it, "meta": metas.get(it) if it is not None else None,
                            "procedures": groups[it]} for it in order],
            "best": state.get("best"), "meta_optimizer": state.get("meta_optimizer"),
            "stop_reason": state.get("stop_reason")}


def _procedure_row(p: Mapping[str, Any]) -> dict[str, Any]:
    runs = {name: {"best": s.get("best"), "candidate": s.get("candidate"), "found": list(s.get("found") or []),
                   "status": s.get("status"), "reason": s.get("reason")}
            for name, s in (p.get("subtasks") or {}).items()}
    return {"id": p["id"], "parent": p.get("parent"), "origin": p.get("origin"), "idea": p.get("idea") or "",
            "utility": p.get("utility"), "status": p.get("status"), "reason": p.get("reason"), "subtasks": runs}


def readable(value: Any, suite: str) -> Any:
    """A record's data with every text's tasks named (`name_tasks` over the run's suite), for display."""
    tasks = suite_tasks(suite)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return name_tasks(v, tasks)
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)
