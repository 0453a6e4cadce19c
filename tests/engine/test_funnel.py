"""The promotion funnel: bars, survivors, promotions, correlation; strategies never see it."""

from __future__ import annotations

import pytest
from fake_eval import ListStrategy, fake_source, make_engine

from optforge import funnel
from optforge.config import config_from_dict
from optforge.store import Store
from optforge.types import Candidate, EvaluationResult, Status


def _ev(stage, d, flags=()):
    fit = sum(d) / len(d)
    tasks = {f"t{i}": {"score": fit, "flags": list(flags)} for i in range(2)}
    return EvaluationResult(Status.OK, stage=stage, suite="s", suite_version="1", seeds=tuple(range(2, 2 + len(d))),
                            metrics={"fitness": fit, "robust": fit, "tasks": tasks,
                                     "seed_fitness": {str(2 + i): x for i, x in enumerate(d)}})


def test_promotion_is_a_one_sided_paired_t_test_at_alpha(tmp_path):
    from scipy import stats

    cfg = config_from_dict({"funnel": {"alpha": 0.05}})
    st = Store(tmp_path / "r")
    good, noisy, bad, div = (Candidate.new(f"LR = {i}\n", id=x) for i, x in enumerate(["good", "noisy", "bad", "div"]))
    st.add_proposals([good, noisy, bad, div], None)
    stage = cfg.stage("train_fresh_seeds")
    d_good, d_noisy = [0.30, 0.25, 0.35, 0.28], [0.9, -0.6, 0.5, -0.2]
    st.add_evaluation(good, _ev(stage.name, d_good), seeds_spec="fresh")
    st.add_evaluation(noisy, _ev(stage.name, d_noisy), seeds_spec="fresh")  # mean +0.15, but noise
    st.add_evaluation(bad, _ev(stage.name, [-0.1, -0.2, -0.1, -0.3]), seeds_spec="fresh")
    st.add_evaluation(div, _ev(stage.name, [1.0, 1.1, 1.2, 1.0], flags=["diverged"]), seeds_spec="fresh")
    out = {p.candidate_id: p for p in funnel.decide(stage, st, cfg, [good, noisy, bad, div])}
    for cid, d in (("good", d_good), ("noisy", d_noisy)):
        want = stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
        assert out[cid].detail["p"] == pytest.approx(want)
    assert out["good"].passed and out["good"].value == pytest.approx(0.295)
    assert not out["noisy"].passed and "p " in out["noisy"].detail["why"]
    assert not out["bad"].passed
    assert not out["div"].passed and "diverged" in out["div"].detail["why"]
    # float noise: a tiny mean with a tinier spread is not evidence (the sd is floored at SD_FLOOR)
    assert funnel.paired_t_test([1e-7, 1.1e-7, 0.9e-7, 1e-7]).p > 0.4


def test_the_default_number_of_fresh_seeds_has_80_percent_power():
    sigmas = [0.3] * 10  # sd of d_s = 0.3 / sqrt(10)
    n = funnel.fresh_seeds_for_power(sigmas, alpha=0.01)
    assert funnel.power(n, funnel.seed_sd(sigmas), 0.01) >= 0.8 > funnel.power(n - 1, funnel.seed_sd(sigmas), 0.01)
    assert funnel.fresh_seeds_for_power([0.6] * 10, 0.01) > n  # more noise needs more seeds
    cfg = config_from_dict({"funnel": {"fresh_seeds": 3}})
    assert funnel.fresh_seed_count("train", cfg) == 3


def test_removed_funnel_keys_name_their_replacement():
    from optforge.config import ConfigError

    for key in ("metric", "min_margin", "noise_seed"):
        with pytest.raises(ConfigError, match=f"funnel.{key}' was removed.*funnel.alpha"):
            config_from_dict({"funnel": {key: 1}})
    with pytest.raises(ConfigError, match="alpha"):
        config_from_dict({"funnel": {"alpha": 0.7}})


def test_resolve_stage_defaults():
    cfg = config_from_dict({"suite": "train_quick", "funnel": {"fresh_seeds": 2},
                            "stages": ["smoke", "train", "train_fresh_seeds", {"name": "heldout", "suite": "heldout_tiny"}]})
    assert funnel.resolve_stage(cfg.stage("smoke"), cfg) == ("smoke", "selection", False)
    assert funnel.resolve_stage(cfg.stage("train"), cfg) == ("train_quick", "selection", False)
    assert funnel.resolve_stage(cfg.stage("train_fresh_seeds"), cfg) == ("train_quick", "fresh:2", False)
    assert funnel.resolve_stage(cfg.stage("heldout"), cfg) == ("heldout_tiny", "fresh:2", True)


def test_engine_funnel_promotes_generalists_not_the_overfit_rule(ray_local, tmp_path):
    """fake_eval: `# OVERFIT` rules lose 0.5 on fresh seeds and score -1 on heldout."""
    cfg = config_from_dict({"strategy": {"name": "list"}, "slots": 2, "deterministic": True,
                            "funnel": {"top_k": 3}})
    sources = [fake_source(1.5, "# OVERFIT"), fake_source(0.6), fake_source(0.2), fake_source(-0.2)]
    strategy, st = ListStrategy(sources), Store(tmp_path / "run")
    summary = make_engine(cfg, strategy, st).run()
    assert sorted(summary.promoted) == ["c1", "c2"]
    fresh = {p.candidate_id: p.passed for p in st.promotions("train_fresh_seeds")}
    assert fresh == {"c0": True, "c1": True, "c2": True}  # top 3 entered; each d_s significantly above 0
    held = {p.candidate_id: p.passed for p in st.promotions("heldout")}
    assert held == {"c0": False, "c1": True, "c2": True}  # the overfit rule fails on held-out tasks
    assert st.evaluation("c3", "train_fresh_seeds") is None  # not in the top 3
    assert st.evaluation("ref-adamw", "heldout").ok  # the reference runs at each stage, for comparison
    assert st.promotions("heldout")[0].detail["statistic"].startswith("one-sided paired t-test")
    # the strategy saw only search stages
    assert {s[1] for s in strategy.seen} == {"train"} and len(strategy.seen) == 4
    counts = funnel.funnel_counts(st, cfg)
    assert counts == {"proposed": 4, "smoke": 4, "train": 4, "train_fresh_seeds": 3, "heldout": 2, "promoted": 2}
    corr = st.meta("correlation")
    assert corr["n"] == 3 and corr["stages"] == ["train", "heldout"]
