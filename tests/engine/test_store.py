"""Store: atomic proposals + strategy state, cache lookups, read API, survives reopen."""

from __future__ import annotations

import pytest

from optforge.store import Promotion, RequestKey, Store, StoreError
from optforge.types import Candidate, EvaluationResult, Status


def _key(cand, seeds_spec="selection", suite_version="1", **kw):
    return RequestKey(cand.content_hash, kw.pop("stage", "train"), "train", suite_version, seeds_spec, **kw)


def _result(fit, status=Status.OK, stage="train"):
    return EvaluationResult(status, stage=stage, suite="train", suite_version="1", seeds=(0, 1),
                            metrics={"fitness": fit, "tasks": {"a": {"score": fit}}}, feedback="f")


def test_proposals_and_state_commit_together(tmp_path):
    st = Store(tmp_path / "r")
    a, b = Candidate.new("LR = 1\n", id="a"), Candidate.new("LR = 2\n", id="b", parents=["a"], note={"m": 1})
    assert st.add_proposals([a, b], {"rng": 1}) == [0, 1]
    with pytest.raises(Exception):
        st.add_proposals([Candidate.new("LR = 3\n", id="c"), Candidate.new("LR = 4\n", id="a")], {"rng": 2})
    assert [c.id for c in st.candidates()] == ["a", "b"] and st.strategy_state() == {"rng": 1}  # rolled back together
    st.mark_observed("a", {"rng": 3})
    re = Store.open(tmp_path / "r")
    assert re.observed_ids() == {"a"} and re.strategy_state() == {"rng": 3}
    assert re.candidate("b").parents == ("a",) and re.candidate("b").note == {"m": 1}


def test_cache_leaderboard_and_lost(tmp_path):
    st = Store(tmp_path / "r")
    a, b, c = (Candidate.new(f"LR = {i}\n", id=x) for i, x in enumerate("abc"))
    st.add_proposals([a, b, c], None)
    st.add_evaluation(a, _result(0.5), key=_key(a))
    st.add_evaluation(b, _result(float("nan"), Status.DIVERGED), key=_key(b))
    st.add_evaluation(c, EvaluationResult.failure(Status.LOST, "node died", stage="train"), key=_key(c))
    assert st.cached(_key(a)).candidate_id == "a"
    assert st.cached(_key(a, "fresh")) is None
    assert st.cached(_key(a, suite_version="2")) is None
    for other in (dict(tasks=("a",)), dict(detail="trace"), dict(tune_wd=True), dict(reuse_lr=True),
                  dict(score_version=2)):
        assert st.cached(_key(a, **other)) is None, other  # every part of the key counts
    assert st.cached(_key(c)) is None  # lost is never a cache hit
    assert [r.candidate.id for r in st.leaderboard()] == ["a", "b", "c"]
    assert st.leaderboard()[1].evaluation.fitness == -3.0  # a failure has the floor
    assert st.best().candidate.id == "a" and st.status_counts() == {"ok": 1, "diverged": 1, "lost": 1}
    st.add_evaluation(c, _result(0.1), key=_key(c))  # the retry is the stage evaluation now; the lost row stays
    assert st.evaluation("c", "train").ok and len(st.evaluations(stage="train")) == 4


def test_llm_calls_events_promotions_and_errors(tmp_path):
    st = Store(tmp_path / "r")
    st.record_llm_call({"model": "m", "prompt": "p", "response": "r", "prompt_tokens": 3, "completion_tokens": 4,
                        "dollars": 0.25, "latency_s": 1.0, "prompt_hash": "h"})
    assert st.llm_spend() == (0.25, 1) and st.llm_calls()[0]["prompt_hash"] == "h"
    st.add_event("lost", candidate="x")
    assert st.events("lost")[0]["candidate"] == "x"
    st.add_promotion(Promotion("x", "heldout", True, 0.3, 0.1, 0.05, {"why": "beat"}))
    assert st.promotions("heldout")[0].detail == {"why": "beat"}
    st.set_meta(config={"strategy": {"name": "seeds"}})
    assert Store.open(tmp_path / "r").config() == {"strategy": {"name": "seeds"}}
    with pytest.raises(StoreError, match="not a run directory"):
        Store.open(tmp_path / "missing")
    with pytest.raises(KeyError, match="no candidate"):
        st.candidate("zzz")
