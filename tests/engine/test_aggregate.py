"""Store aggregates over rows on different task subsets: a task-balanced mean, complete candidates
ranked first (the MoH finding: a rule's ten rollouts on its one good subtask outranked its own
full-suite result, and `export --best` picked it)."""

from __future__ import annotations

import statistics

import pytest

from optforge.store import RequestKey, Store
from optforge.types import Candidate, EvaluationResult, Status


def _row(st: Store, cand: Candidate, scores: dict[str, float], *, subset: bool, n: int = 0) -> None:
    result = EvaluationResult(Status.OK, stage="train", suite="train", suite_version="1", seeds=(100 + n,),
                              metrics={"fitness": statistics.fmean(scores.values()),
                                       "tasks": {t: {"score": s} for t, s in scores.items()}})
    tasks = tuple(scores) if subset else None
    st.add_evaluation(cand, result, key=RequestKey(cand.content_hash, "train", "train", "1", f"s{n}", tasks=tasks),
                      rollout_id=n if subset else None)


def _store(tmp_path) -> tuple[Store, dict[str, Candidate]]:
    st = Store(tmp_path / "r")
    cands = {x: Candidate.new(f"LR = {i}\n", id=x) for i, x in enumerate(("lucky", "steady", "partial"))}
    st.add_proposals(list(cands.values()), None)
    return st, cands


def test_the_mean_weighs_each_task_once_however_often_it_was_rolled_out(tmp_path):
    st, c = _store(tmp_path)
    _row(st, c["lucky"], {"a": -1.0, "b": 0.0}, subset=False)  # fitness -0.5 on the full suite
    for i in range(1, 6):
        _row(st, c["lucky"], {"b": 1.0}, subset=True, n=i)  # five rollouts on its good task
    _row(st, c["steady"], {"a": 0.0, "b": 0.0}, subset=False)

    agg = st.aggregate("lucky", "train")
    rows = [r.fitness for r in st.evaluations("lucky", "train")]
    assert statistics.fmean(rows) == pytest.approx(0.75)  # what the row mean said
    assert agg.mean == pytest.approx(statistics.fmean([-1.0, statistics.fmean([0.0] + [1.0] * 5)]))
    assert agg.n == 6 and agg.sd == pytest.approx(statistics.stdev(rows))
    assert agg.tasks["a"].n == 1 and agg.tasks["b"].n == 6
    board = st.leaderboard("train")
    assert [r.candidate.id for r in board] == ["steady", "lucky"]
    assert st.best("train").candidate.id == "steady"


def test_rows_on_the_same_tasks_keep_the_plain_mean(tmp_path):
    st, c = _store(tmp_path)
    for i, (a, b) in enumerate([(0.2, 0.4), (0.1, -0.3), (0.5, 0.0)]):
        _row(st, c["steady"], {"a": a, "b": b}, subset=i > 0, n=i)
    rows = [r.fitness for r in st.evaluations("steady", "train")]
    assert st.aggregate("steady", "train").mean == pytest.approx(statistics.fmean(rows))


def test_a_candidate_scored_on_part_of_the_suite_ranks_after_the_complete_ones(tmp_path):
    st, c = _store(tmp_path)
    _row(st, c["steady"], {"a": -0.2, "b": 0.0}, subset=False)
    _row(st, c["partial"], {"b": 2.0}, subset=True, n=1)  # only a subtask rollout, never the full suite
    board = st.leaderboard("train")
    assert [r.candidate.id for r in board] == ["steady", "partial"]
    assert board[0].evaluation.aggregate.missing == () and board[1].evaluation.aggregate.missing == ("a",)


def test_a_failed_rollout_counts_its_floor_on_the_tasks_it_was_asked_to_run(tmp_path):
    st, c = _store(tmp_path)
    _row(st, c["steady"], {"a": 0.0, "b": 0.0}, subset=False)
    failed = EvaluationResult.failure(Status.CRASHED, "the rule raised", stage="train")
    st.add_evaluation(c["steady"], failed, key=RequestKey(c["steady"].content_hash, "train", "train", "1", "s1",
                                                          tasks=("b",)), rollout_id=1)
    agg = st.aggregate("steady", "train")
    floor = st.evaluations("steady", "train")[1].fitness
    assert floor < 0 and agg.tasks["b"].n == 2 and agg.tasks["a"].n == 1
    assert agg.mean == pytest.approx(statistics.fmean([0.0, statistics.fmean([0.0, floor])]))


def test_show_says_which_candidates_were_scored_on_part_of_the_suite(tmp_path, capsys):
    from optforge.commands.show import print_leaderboard
    from optforge.config import config_from_dict

    st, c = _store(tmp_path)
    _row(st, c["steady"], {"a": -0.2, "b": 0.0}, subset=False)
    _row(st, c["partial"], {"b": 2.0}, subset=True, n=1)
    print_leaderboard(st, config_from_dict({"strategy": {"name": "seeds"}, "suite": "train", "stages": ["train"]}))
    out = capsys.readouterr().out
    assert "ranked after every candidate scored on all of it: partial" in out
    assert out.index(" steady ") < out.index(" partial ")
