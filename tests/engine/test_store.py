"""Store: atomic proposals + strategy state, cache lookups, read API, survives reopen."""

from __future__ import annotations

import pytest

from optforge.store import Promotion, Store, StoreError
from optforge.types import Candidate, EvaluationResult, Status


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
    st.add_evaluation(a, _result(0.5), seeds_spec="selection")
    st.add_evaluation(b, _result(float("nan"), Status.DIVERGED), seeds_spec="selection")
    st.add_evaluation(c, EvaluationResult.failure(Status.LOST, "node died", stage="train"), seeds_spec="selection")
    assert st.cached(a.content_hash, "train", "train", "selection", suite_version="1").candidate_id == "a"
    assert st.cached(a.content_hash, "train", "train", "fresh") is None
    assert st.cached(a.content_hash, "train", "train", "selection", suite_version="2") is None
    assert st.cached(c.content_hash, "train", "train", "selection") is None  # lost is never a cache hit
    assert [r.candidate.id for r in st.leaderboard()] == ["a", "b", "c"]
    assert st.leaderboard()[1].evaluation.fitness == -3.0  # a failure has the floor
    assert st.best().candidate.id == "a" and st.status_counts() == {"ok": 1, "diverged": 1, "lost": 1}
    st.add_evaluation(c, _result(0.1), seeds_spec="selection")  # the retry replaces the lost row
    assert st.evaluation("c", "train").ok and len(st.evaluations(stage="train")) == 3


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
