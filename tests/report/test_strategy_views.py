"""`optforge show` and `optforge report` views of POLCA's memory and OPTO's steps, feedback with its tasks
named for the reader (never in prompts), and `optforge ls` columns that stay aligned."""

from __future__ import annotations

import json
import re

from optforge.cli import main
from optforge.config import config_from_dict
from optforge.report import build_report
from optforge.store import Store, StrategyRecord, versions
from optforge.task_names import TaskInfo, name_labels, name_tasks, suite_tasks
from optforge.types import Candidate, EvaluationResult, Status

TRAIN = [TaskInfo("linreg2d", "matrix", 300), TaskInfo("matfact", "matrix", 300), TaskInfo("logreg", "convex", 300)]


def test_feedback_phrases_name_their_task_told_apart_by_the_quoted_score():
    text = "- matrix task (T=300): score -0.41, slow.\n- convex task (T=300): score +0.10"
    named = name_tasks(text, TRAIN, scores={"linreg2d": -0.05, "matfact": -0.412, "logreg": 0.1})
    assert named == "- matfact (matrix task, T=300): score -0.41, slow.\n- logreg (convex task, T=300): score +0.10"
    # without the evaluation's scores two tasks fit: both are named; an unknown phrase stays as it is
    assert name_tasks("a matrix task (T=300) lags", TRAIN) == "a linreg2d or matfact (matrix task, T=300) lags"
    assert name_tasks("an lm task (T=250) lags", TRAIN) == "an lm task (T=250) lags"
    assert {t.name for t in suite_tasks("train")} >= {"linreg2d", "matfact", "logreg"} and suite_tasks("nope") == []


def test_anonymous_labels_get_their_names_and_task_10_is_not_task_1():
    labels = {"task 1": "logreg", "task 10": "bytelm"}
    assert name_labels("task 10 lags; task 1 wins; task 2 n/a", labels) == \
        "task 10 (bytelm) lags; task 1 (logreg) wins; task 2 n/a"


def _store(tmp_path, strategy, suite="train"):
    st = Store(tmp_path / "run")
    st.set_meta(config=config_from_dict({"strategy": strategy, "suite": suite, "stages": ["smoke", "train"]}).to_dict(),
                versions=versions(), status="finished")
    return st


def _rollouts(*scores, task="matfact"):
    return [{"task": task if i % 2 else "logreg", "seed": 100 + i, "score": s, "feedback": ""} for i, s in enumerate(scores)]


def _mem(cid, created, scores, parent=None):
    return {"id": cid, "source": "LR = 1\n", "created": created, "parent": parent, "rollouts": _rollouts(*scores),
            "embedding": None}


def polca_run(tmp_path):
    st = _store(tmp_path, {"name": "polca", "min_rollouts": 3})
    seed = Candidate.new("LR = 1\n", id="adamwseed000", note={"kind": "seed", "seed": "adamw", "warm_start": True})
    st.add_proposals([seed], None)
    state = {"iteration": 2, "context": "the matrix task (T=300) wants a smaller beta2",
             "memory": {"version": 1, "next_created": 4, "queued": [
                 _mem("adamwseed000", 0, [0.1, -0.2, 0.0, 0.3]),     # mean +0.05 over 4: the exploit pick
                 _mem("child1", 1, [0.9], parent="adamwseed000"),       # the best mean, but only one score
                 _mem("child2", 2, [-0.5, None, -0.1], parent="adamwseed000")]},  # one rollout lost
             "exploring": [_mem("child3", 3, [], parent="child1")], "validating": []}
    summary = StrategyRecord("summary", {"ok": True, "summary": "Raise beta2 on the matrix task (T=300)."})
    rejected = [StrategyRecord("epsilon_rejection", {"iteration": it, "distance": 0.0, "nearest": "adamwseed000"})
                for it in (1, 2, 2)]
    st.add_proposals([], state, records=[summary, *rejected])
    st.close()
    return tmp_path / "run"


def test_show_prints_polca_memory_by_mean_with_counts_and_the_exploit_pick(tmp_path, capsys):
    run = polca_run(tmp_path)
    assert main(["show", str(run)]) == 0
    text = capsys.readouterr().out
    body = text[text.index("POLCA memory after 2 iteration(s): the top 4 of 4"):]
    rows = [ln.split() for ln in body.splitlines()[2:6]]
    assert [r[0] if r[0] != "*" else r[1] for r in rows] == ["child1", "adamwseed000", "child2", "child3"]
    star = next(r for r in rows if r[0] == "*")
    assert star[1:4] == ["adamwseed000", "adamw", "+0.050"] and star[5] == "4"  # mean, sd, n
    child2 = next(r for r in rows if r[0] == "child2")
    assert child2[1:] == ["-0.300", "0.283", "2", "1", "2", "queued", "adamwseed000"]
    assert "with at least 3 scores" in body and "linreg2d or matfact (matrix task, T=300)" in body  # the context
    assert "epsilon-net rejections (proposals never evaluated), by iteration: 1: 1, 2: 2" in body
    assert main(["show", str(run), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)["strategy_view"]
    assert view["kind"] == "polca_memory" and [r["id"] for r in view["rows"] if r["best"]] == ["adamwseed000"]
    # the summary record, as a person reads it, names the task; as stored (--json) it is what the LLM wrote
    assert main(["show", str(run), "--records"]) == 0
    assert "Raise beta2 on the linreg2d or matfact (matrix task, T=300)." in capsys.readouterr().out
    assert main(["show", str(run), "--records", "--json"]) == 0
    assert "Raise beta2 on the matrix task (T=300)." in capsys.readouterr().out


def test_report_has_a_polca_memory_section(tmp_path):
    page = build_report(polca_run(tmp_path))
    section = page[page.index("<h2>POLCA memory</h2>"):page.index("<h2>Strategy records</h2>")]
    assert section.index("child1") < section.index("adamwseed000") < section.index("child2") < section.index("child3")
    assert "&#9733;</td><td><code>adamwseed000</code> adamw</td>" in section
    assert "by iteration: 1: 1, 2: 2</p>" in section
    assert "linreg2d or matfact (matrix task, T=300)" in page[page.index("<h2>Strategy records</h2>"):]


def opto_run(tmp_path):
    st = _store(tmp_path, {"name": "opto"})
    seed = Candidate.new("LR = 1\n", id="seedseed0000", note={"kind": "seed", "seed": "adamw", "warm_start": True})
    child = Candidate.new("LR = 2\n", parents=(seed.id,), id="child0000000",
                          note={"kind": "opto", "chain": 0, "step": 1, "lineage": "constant LR 1 \u2192 2"})
    bad = Candidate.new("nonsense", parents=(child.id,), id="bad00000000",
                        note={"kind": "opto", "status": "invalid", "reason": "no suggestion in the answer"})
    feedback = "Fitness -0.200 over 2 task(s).\nThese tasks lag tuned AdamW, the worst first:\n- task 2: score -0.500"
    labels = {"task 1": "logreg", "task 2": "matfact"}
    steps = [StrategyRecord("step", {"chain": 0, "step": 1, "parent": seed.id, "outcome": "update",
                                     "change": "constant LR 1 \u2192 2", "feedback": feedback, "tasks": labels}, child.id),
             StrategyRecord("step", {"chain": 0, "step": 2, "parent": child.id, "outcome": "invalid",
                                     "change": "invalid: no suggestion in the answer",
                                     "feedback": "Fitness +0.100 over 2 task(s).\n" + "\n".join(f"line {i}" for i in range(12)),
                                     "tasks": labels}, bad.id),
             StrategyRecord("chain_ended", {"chain": 0, "steps": 2, "reason": "two unusable answers in a row"})]
    st.add_proposals([seed, child, bad], {"best": {"chain": 0, "candidate": child.id, "fitness": 0.1, "steps": 2}},
                     records=steps)
    ok = {"fitness": 0.1, "tasks": {}}
    st.add_evaluation(child, EvaluationResult(Status.OK, stage="train", suite="train", metrics=ok), seeds_spec="selection")
    st.add_evaluation(bad, EvaluationResult.failure(Status.INVALID, "no suggestion", stage="smoke"), seeds_spec="selection")
    st.close()
    return tmp_path / "run"


def test_show_prints_opto_steps_with_changes_results_and_named_feedback(tmp_path, capsys):
    run = opto_run(tmp_path)
    assert main(["show", str(run)]) == 0
    text = capsys.readouterr().out
    body = text[text.index("OPTO steps (best chain 0: child0000000 at +0.100):"):]
    assert "chain 0 (ended: two unusable answers in a row)" in body
    assert "  step 1: seedseed0000 -> child0000000: constant LR 1 \u2192 2 -> ok +0.100 at train" in body
    assert "  step 2: child0000000 -> bad00000000: invalid: no suggestion in the answer -> invalid at smoke" in body
    assert "    feedback: Fitness -0.200 over 2 task(s)." in body and "- task 2 (matfact): score -0.500" in body
    assert "(5 more lines: optforge show" in body  # 13 lines, 8 shown
    assert main(["show", str(run), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)["strategy_view"]
    assert [(r["step"], r["outcome"]) for r in view["rows"]] == [(1, "update"), (2, "invalid")]
    assert view["rows"][1]["feedback"].endswith("line 11")  # --json keeps all of it


def test_report_has_an_opto_steps_section(tmp_path):
    page = build_report(opto_run(tmp_path))
    section = page[page.index("<h2>OPTO steps</h2>"):page.index("<h2>Strategy records</h2>")]
    assert "ended: two unusable answers in a row" in section and "task 2 (matfact): score -0.500" in section
    assert section.index('<li value="1">') < section.index('<li value="2">')
    assert "constant LR 1 \u2192 2 &rarr; ok +0.100 at train" in section


def test_ls_columns_stay_aligned_with_long_run_names_and_strategies(tmp_path, capsys):
    for name, strategy in (("r", "seeds"), ("a-run-directory-with-a-much-longer-name-than-forty-characters", "mypkg.search:from_config")):
        st = Store(tmp_path / name)
        st.set_meta(config={**config_from_dict({"suite": "smoke"}).to_dict(), "strategy": {"name": strategy}},
                    status="finished", created=0.0)
        st.close()
    assert main(["ls", str(tmp_path)]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2
    for row in rows:
        strategy = "seeds" if row.startswith(str(tmp_path / "r") + " ") else "mypkg.search:from_config"
        assert row.index(strategy) == head.index("strategy") and row.index("finished") == head.index("status")
        assert row.index("finished") > row.index(strategy) + len(strategy)  # a gap, not run together
    ends = {m.end() for ln in [head, *rows] for m in [re.search(r"(cands|\d+)\s+(evals|\d+)", ln)]}
    assert len(ends) == 1, [head, *rows]  # the right-aligned counts end in one column
