"""The text `optforge show` prints of a strategy's own state (`optforge.strategy_views`): POLCA's memory,
OPTO's steps, MoH's procedures by outer iteration. `optforge show RUN --json` has all of it."""

from __future__ import annotations

from typing import Any

from optforge.commands.table import clipped, format_table
from optforge.commands.table import signed as _num

FEEDBACK_LINES = 8  # lines of each OPTO step's feedback printed (--json has all of it)


def print_strategy_view(view: dict[str, Any] | None, run_dir: Any) -> None:
    """POLCA's memory, OPTO's steps or MoH's procedures (`optforge.strategy_views`), if the run has one."""
    if not view:
        return
    if view["kind"] == "polca_memory":
        rows = view["rows"]
        print(f"\nPOLCA memory after {view['iteration'] or 0} iteration(s): the top {len(rows)} of {view['size']} "
              f"candidates by mean score over their rollouts (* the exploit pick: the best mean with at least "
              f"{view['min_rollouts']} scores)")
        if not rows:
            print("  (empty: no warm start was queued)")
        table = [["*" if r["best"] else "", (r["id"] + (f" {r['label']}" if r["label"] else "")), _num(r["mean"]),
                  "-" if r["sd"] is None else f"{r['sd']:.3f}", r["n"], r["lost"], len(r["tasks"]), r["place"],
                  r["parent"] or "-"] for r in rows]
        if rows:
            for line in format_table(["", "id", "mean", "sd", "n", "lost", "tasks", "where", "parent"], table,
                                     right=(2, 3, 4, 5, 6)):
                print("  " + line)
            print("  n: known scores (one per task and search seed rolled out); lost: rollouts without a score")
        if view.get("rejections"):
            print("epsilon-net rejections (proposals never evaluated), by iteration: "
                  + ", ".join(f"{it}: {n}" for it, n in view["rejections"]))
        if view["context"]:
            print(f"summarizer context: {view['context']}")
        return
    if view["kind"] == "moh_procedures":
        print_moh_procedures(view)
        return
    best = view.get("best")
    print("\nOPTO steps" + (f" (best chain {best['chain']}: {best['candidate']} at {_num(best['fitness'])})" if best else "")
          + ":")
    if not view["rows"]:
        print("  (no step taken yet)")
    chain = None
    for r in view["rows"]:
        if r["chain"] != chain:
            chain = r["chain"]
            ended = view["ended"].get(str(chain))
            print(f"chain {chain}" + (f" (ended: {ended})" if ended else ""))
        res = r["result"]
        got = ("" if res is None else f" -> {res['status']}" + ("" if res["fitness"] is None else f" {_num(res['fitness'])}")
               + f" at {res['stage']}")
        print(f"  step {r['step']}: {r['parent']} -> {r['candidate'] or '(no candidate)'}: {r['change']}{got}")
        lines = r["feedback"].splitlines()
        for i, line in enumerate(lines[:FEEDBACK_LINES]):
            print(("    feedback: " if i == 0 else "              ") + line)
        if len(lines) > FEEDBACK_LINES:
            print(f"              ({len(lines) - FEEDBACK_LINES} more lines: optforge show {run_dir} --json)")


def print_moh_procedures(view: dict[str, Any]) -> None:
    """MoH's procedures (`strategy_views.moh_procedures`) by outer iteration: parent, meta-utility, the
    best fitness per subtask with the rules its run evaluated there, and the rules it found."""
    names = [n for n, _ in view["subtasks"]]
    weights = ", ".join(f"{n} {w:g}" for n, w in view["subtasks"]) or "not resolved yet"
    best = view.get("best")
    print(f"\nMoH procedures (meta-utility: the mean over subtasks, weighted {weights}, of the best fitness a "
          "procedure's run reached there)" + (f"; best {best['id']} at {_num(best['utility'])}" if best else "")
          + (f"; stopped: {view['stop_reason']}" if view.get("stop_reason") else ""))
    if not any(g["procedures"] for g in view["iterations"]):
        print("  (no procedure scored yet)")
    for group in view["iterations"]:
        meta = group["meta"]
        if group["iteration"] is None:
            print("seed procedures:")
        else:
            print(f"iteration {group['iteration']}" + ("" if meta is None else
                  f" (meta-optimizer {meta['meta_optimizer']} at {_num(meta['incumbent_utility'])}; "
                  + (f"best new: {meta['best_new']} {_num(meta['best_new_utility'])}, "
                     f"{'accepted' if meta['accepted'] else 'not accepted'})" if meta["best_new"] else
                     "no new procedure scored)")) + ":")
        rows = group["procedures"]
        if not rows:
            print("  (no new procedure)")
            continue
        table = [[r["id"], r["parent"] or "-", _num(r["utility"]) if r["utility"] is not None else r["status"],
                  *(_subtask_cell(r["subtasks"].get(n)) for n in names), clipped(r["idea"], 60) or "-"] for r in rows]
        for line in format_table(["id", "parent", "meta-utility", *names, "idea"], table,
                                 right=tuple(range(2, 3 + len(names)))):
            print("  " + line)
        for r in rows:
            runs = [(n, r["subtasks"][n]) for n in names if r["subtasks"].get(n, {}).get("candidate")]
            found = "; ".join(f"{n} {s['candidate']} {_num(s['best'])}" for n, s in runs)
            if found:
                print(f"  {r['id']} found: {found}")
            if r["reason"]:
                print(f"  {r['id']} {r['status']}: {r['reason']}")
    print("  per subtask: the best fitness / the rules its run evaluated there")


def _subtask_cell(s: dict[str, Any] | None) -> str:
    return "-" if s is None else f"{_num(s['best'])} / {len(s['found'])}"
