"""`optforge show` as a person reads it: long records cut with a marker that says how much is left out
and how to see it (`--full`); a run that is still running said to be running (not "stopped"), and one
whose process died told apart; `optforge eval` naming the task its feedback speaks of."""

from __future__ import annotations

import os
import re
import time

from optforge.cli import main
from optforge.commands.eval import render
from optforge.commands.show import RECORD_CHARS
from optforge.config import config_from_dict
from optforge.run_progress import LIVE_S
from optforge.store import Store, StrategyRecord, versions
from optforge.task_names import suite_tasks
from optforge.types import Candidate, EvaluationResult, Status


def _run(tmp_path, status="finished", records=()):
    st = Store(tmp_path / "run")
    st.set_meta(config=config_from_dict({"strategy": {"name": "seeds"}, "suite": "smoke",
                                         "stages": ["smoke", "train"]}).to_dict(), versions=versions(), status=status)
    cand = Candidate.new("LR = 1\n", id="gatedonly000", note={"kind": "seed", "seed": "adamw"})
    st.add_proposals([cand], None, records=list(records))
    st.add_evaluation(cand, EvaluationResult(Status.OK, stage="smoke", suite="smoke", metrics={"fitness": 0.0, "tasks": {}}),
                      seeds_spec="selection")
    st.close()
    return tmp_path / "run"


def test_records_longer_than_a_line_are_cut_with_a_marker_and_full_prints_them_whole(tmp_path, capsys):
    long = {"summary": "x" * 1000}
    run = _run(tmp_path, records=[StrategyRecord("summary", long), StrategyRecord("summary", {"summary": "short"})])
    assert main(["show", str(run), "--records"]) == 0
    cut, short = capsys.readouterr().out.splitlines()
    whole = '{"summary": "' + "x" * 1000 + '"}'
    assert cut.endswith(f"\u2026 (+{len(whole) - RECORD_CHARS} chars; --full)")
    assert whole[:RECORD_CHARS] in cut and whole not in cut
    assert short.endswith('{"summary": "short"}')  # nothing cut, no marker
    assert main(["show", str(run), "--records", "--full"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(whole)
    assert main(["show", str(run), "--full"]) != 0  # without --records: refused with the reason
    assert "--full is about strategy records: use it with --records" in capsys.readouterr().err


def test_show_says_a_running_run_is_running_and_a_dead_one_was_killed(tmp_path, capsys):
    run = _run(tmp_path, status="running")  # its store was just written: live
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "not evaluated at train (not yet: the run is running)" in out and "stopped before" not in out
    assert "its process is gone" not in out
    old = time.time() - 10 * LIVE_S  # nothing written for ten minutes: the process died without a word
    for f in run.iterdir():
        os.utime(f, (old, old))
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"status killed (its process is gone without a clean end; continue it with optforge run --resume {run})" in out
    assert "not evaluated at train (the run stopped before)" in out


def test_a_finished_run_stopped_before_its_last_stage(tmp_path, capsys):
    assert main(["show", str(_run(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "not evaluated at train (the run stopped before)" in out and "running" not in out


def test_eval_names_the_task_its_feedback_speaks_of():
    tasks = suite_tasks("train_quick")
    one = next(t for t in tasks if sum(u.family == t.family and u.steps == t.steps for u in tasks) == 1)
    phrase = f"{one.family} task (T={one.steps})"
    metrics = {"fitness": -0.4, "tasks": {one.name: {"score": -0.41, "family": one.family, "flags": []}}}
    result = EvaluationResult(Status.OK, stage="train_quick", suite="train_quick", seeds=(0, 1), metrics=metrics,
                              feedback=f"These tasks lag tuned AdamW:\n- {phrase}: score -0.41")
    text = render(result, "mine")
    assert f"- {one.name} ({one.family} task, T={one.steps}): score -0.41" in text


DIVERGES = "import torch\n\nLR = 1e-3\n\n\ndef init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n    return g * 1e30\n"


def test_a_candidate_that_failed_the_smoke_gate_is_shown_by_its_checks_not_a_fitness(tmp_path, capsys):
    import json

    from optforge.evaluators import EvalRequest, evaluate

    result = evaluate(EvalRequest(DIVERGES, stage="smoke", suite="smoke", seeds="selection"))
    assert result.status is Status.DIVERGED and "smoke task" in result.feedback  # what the evaluator writes
    # a gate, in the feedback an LLM prompt gets too: pass/fail and where it diverged, no fitness
    assert result.feedback.startswith("Smoke gate (pass/fail, not a score): failed")
    assert "fitness" not in result.feedback and "Wins" not in result.feedback and "diverged at step" in result.feedback
    st = Store(tmp_path / "run")
    st.set_meta(config=config_from_dict({"strategy": {"name": "seeds"}, "suite": "train_quick"}).to_dict(),
                versions=versions(), status="finished")
    cand = Candidate.new(DIVERGES, id="blowsup00000", note={"kind": "seed", "seed": "blowsup"})
    st.add_proposals([cand], None)
    st.add_evaluation(cand, result, seeds_spec="selection")
    st.close()

    assert main(["show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    failures = out[out.index("failures ("):]
    line = failures.splitlines()[1]
    assert line.startswith("  diverged at smoke x1 (blowsup00000): ")
    for task in ("smoke_quad", "smoke_mix"):  # each check once, by the task's name
        assert line.count(f"{task}: does not train") == 1
    assert "sandbox: ok" in line
    for scored in ("fitness", "Wins", "wins", "score", "smoke task"):
        assert scored not in failures, scored

    assert main(["show", str(tmp_path / "run"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    row = s["leaderboard"][0]
    assert row["stage"] == "smoke" and [row[k] for k in ("fitness", "fitness_hw", "robust", "wins")] == [None] * 4
    assert row["feedback"] == s["failures"][0]["reason"] == line.split(": ", 1)[1]


def test_a_candidate_with_one_evaluation_row_shows_a_dash_for_its_sd(tmp_path, capsys):
    """One row has no sd: the column says '-' (it was blank, which read as a missing value) and a line
    under the table says what the column is and what adds rows."""
    run = _run(tmp_path)
    with Store(run) as st:
        cand = st.candidate("gatedonly000")
        st.add_evaluation(cand, EvaluationResult(Status.OK, stage="train", suite="smoke",
                                                 metrics={"fitness": 0.25, "tasks": {}}), seeds_spec="selection")
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if "gatedonly000" in line)
    # fitness, 95% (no interval stored), robust (none stored), ± sd, n
    assert re.search(r" \+0\.250 +- +- +- +1 ", row), row
    assert any(line.startswith("95%: ") and "'-' while it has one" in line for line in out), out
