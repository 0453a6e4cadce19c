"""The promotion funnel: bars, survivors, promotions, correlation; strategies never see it."""

from __future__ import annotations

import pytest
from fake_eval import ListStrategy, fake_source, make_engine

from optforge import funnel
from optforge.config import config_from_dict
from optforge.store import Store
from optforge.types import Candidate, EvaluationResult, Status


def _ev(fit, stage, scores=None, flags=()):
    tasks = {f"t{i}": {"score": s, "flags": list(flags)} for i, s in enumerate(scores or [fit, fit])}
    return EvaluationResult(Status.OK, stage=stage, suite="s", suite_version="1",
                            metrics={"fitness": fit, "robust": fit, "tasks": tasks})


def test_bar_is_reference_plus_measured_noise(tmp_path):
    cfg = config_from_dict({"funnel": {"reference": "sgd", "noise_seed": "adamw", "min_margin": 0.01}})
    st = Store(tmp_path / "r")
    refs = funnel.reference_candidates(cfg)
    assert [c.id for c in refs] == ["ref-sgd", "ref-adamw"]
    good, near, bad = (Candidate.new(f"LR = {i}\n", id=x) for i, x in enumerate(["good", "near", "bad"]))
    st.add_proposals([good, near, bad, *refs], None)
    stage = cfg.stage("train_fresh_seeds")
    st.add_evaluation(refs[0], _ev(-0.5, stage.name), seeds_spec="fresh")  # sgd: the bar's base
    st.add_evaluation(refs[1], _ev(0.05, stage.name, scores=[0.3, -0.2]), seeds_spec="fresh")  # adamw: noise
    st.add_evaluation(good, _ev(0.0, stage.name), seeds_spec="fresh")
    st.add_evaluation(near, _ev(-0.4, stage.name), seeds_spec="fresh")
    st.add_evaluation(bad, _ev(0.9, stage.name, flags=["diverged"]), seeds_spec="fresh")
    noise = funnel.seed_noise(st.evaluation("ref-adamw", stage.name), 0.01)
    assert noise == pytest.approx(max(0.05, (((0.09 + 0.04) / 2) ** 0.5) / 2 ** 0.5))
    out = {p.candidate_id: p for p in funnel.decide(stage, st, cfg, [good, near, bad])}
    assert out["good"].passed and out["good"].bar == pytest.approx(-0.5 + noise)
    assert not out["near"].passed  # beats sgd, but not by more than the noise
    assert not out["bad"].passed and "diverged" in out["bad"].detail["why"]


def test_resolve_stage_defaults():
    cfg = config_from_dict({"suite": "train_quick", "stages": ["smoke", "train", "train_fresh_seeds",
                                                               {"name": "heldout", "suite": "heldout_tiny"}]})
    assert funnel.resolve_stage(cfg.stage("smoke"), cfg) == ("smoke", "selection", False)
    assert funnel.resolve_stage(cfg.stage("train"), cfg) == ("train_quick", "selection", False)
    assert funnel.resolve_stage(cfg.stage("train_fresh_seeds"), cfg) == ("train_quick", "fresh", False)
    assert funnel.resolve_stage(cfg.stage("heldout"), cfg) == ("heldout_tiny", "fresh", True)


def test_engine_funnel_promotes_generalists_not_the_overfit_rule(ray_local, tmp_path):
    """fake_eval: `# OVERFIT` rules lose 0.5 on fresh seeds and score -1 on heldout."""
    cfg = config_from_dict({"strategy": {"name": "list"}, "slots": 2, "deterministic": True,
                            "funnel": {"top_k": 3}})
    sources = [fake_source(1.5, "# OVERFIT"), fake_source(0.6), fake_source(0.2), fake_source(-0.2)]
    strategy, st = ListStrategy(sources), Store(tmp_path / "run")
    summary = make_engine(cfg, strategy, st).run()
    assert sorted(summary.promoted) == ["c1", "c2"]
    fresh = {p.candidate_id: p.passed for p in st.promotions("train_fresh_seeds")}
    assert fresh == {"c0": True, "c1": True, "c2": True}  # top 3 entered; all beat adamw (0) + noise
    held = {p.candidate_id: p.passed for p in st.promotions("heldout")}
    assert held == {"c0": False, "c1": True, "c2": True}  # the overfit rule fails on held-out tasks
    assert st.evaluation("c3", "train_fresh_seeds") is None  # not in the top 3
    assert st.evaluation("ref-adamw", "heldout").ok  # the bar was measured on the same stage
    # the strategy saw only search stages
    assert {s[1] for s in strategy.seen} == {"train"} and len(strategy.seen) == 4
    counts = funnel.funnel_counts(st, cfg)
    assert counts == {"proposed": 4, "smoke": 4, "train": 4, "train_fresh_seeds": 3, "heldout": 2, "promoted": 2}
    corr = st.meta("correlation")
    assert corr["n"] == 3 and corr["stages"] == ["train", "heldout"]
