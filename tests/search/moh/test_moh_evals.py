"""Rule evaluations behind utility(source, subtask): a candidate per source, a rollout per subtask."""

from optforge.search.base import Rollout
from optforge.search.moh.evals import Evaluations
from optforge.search.moh.subtasks import WORST, Subtask
from optforge.types import Candidate, EvaluationResult, Status

A = Subtask("a", ("t1",), 1.0)
B = Subtask("b", ("t2", "t3"), 2.0)
SUBS = {"a": A, "b": B}


def _book():
    ids = iter(f"c{i}" for i in range(100))
    return Evaluations(lambda: next(ids))


def ok(fitness=0.0):
    return EvaluationResult(Status.OK, stage="train", suite="smoke", metrics={"fitness": fitness})


def test_a_new_source_is_a_candidate_then_one_rollout_per_subtask_on_exactly_its_tasks():
    ev = _book()
    assert ev.ask("rule", A, note={"run": "r0"}, seeds=(5,)) == ("c0", None)
    assert ev.ask("rule", B, note={}, seeds=(5,)) == ("c0", None)
    [cand] = ev.take(10)
    assert isinstance(cand, Candidate) and cand.id == "c0" and cand.note == {"run": "r0"}
    assert ev.observe(cand, ok(), SUBS, (5,)) == []
    rollouts = ev.take(10)
    assert [(r.candidate_id, r.tasks, r.seeds, r.note) for r in rollouts] == [
        ("c0", ("t1",), (5,), {"subtask": "a"}), ("c0", ("t2", "t3"), (5,), {"subtask": "b"})]
    assert ev.observe_rollout(rollouts[1], ok(0.25)) == [("c0", "b")]
    assert ev.answer("c0", "b") == 0.25 and ev.answer("c0", "a") is None
    # asked again: answered from the book, nothing proposed
    assert ev.ask("rule", B, note={}, seeds=(5,)) == ("c0", 0.25) and ev.take(10) == []


def test_a_failed_candidate_is_worst_on_every_subtask_without_a_rollout():
    ev = _book()
    ev.ask("bad", A, note={}, seeds=(5,))
    [cand] = ev.take(1)
    failed = EvaluationResult.failure(Status.INVALID, "no update()", stage="smoke")
    assert ev.observe(cand, failed, SUBS, (5,)) == [("c0", "a")]
    assert ev.take(10) == [] and ev.ask("bad", B, note={}, seeds=(5,)) == ("c0", WORST)


def test_state_round_trips():
    ev = _book()
    ev.ask("rule", A, note={}, seeds=(5,))
    again = _book()
    again.load_state(ev.state())
    assert again.state() == ev.state()
    assert [c.id for c in again.take(5)] == ["c0"]


def test_a_rollout_that_failed_answers_worst():
    ev = _book()
    ev.ask("rule", A, note={}, seeds=(5,))
    cand = ev.take(1)[0]
    ev.observe(cand, ok(), SUBS, (5,))
    [r] = ev.take(1)
    lost = EvaluationResult.failure(Status.CRASHED, "boom", stage="train")
    assert ev.observe_rollout(Rollout(r.candidate_id, tasks=r.tasks, seeds=r.seeds, note=r.note, id=1), lost) == [("c0", "a")]
    assert ev.answer("c0", "a") == WORST
