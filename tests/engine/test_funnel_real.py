"""The funnel with the real evaluator and sandbox.

- Promotion: on test-only suites loaded by dotted path (`promotion_suites`, one task each
  for the search and held-out stages), Muon, whose effect there is several sigma_task, is promoted
  by the one-sided paired t-test, and a copy of AdamW with a perturbed EPS is not. The p-values are
  printed.
- A real small run on `heldout_tiny`: neither AdamW (a tie with itself) nor a rule tuned to one task
  (it trains only vector parameters and freezes every matrix) is promoted, and the held-out stage
  tunes weight decay with AdamW's grid."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from fake_eval import ListStrategy

from optforge import seeds
from optforge.cli import UserError
from optforge.config import config_from_dict
from optforge.engine import Engine
from optforge.store import Store

OVERFIT = '''"""Adam on vector parameters only; every other parameter is frozen (tuned to a quadratic)."""

import math

import torch

LR = 1e-2
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if ctx.role != "vector":
        return torch.zeros_like(p)
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    denom = (v / (1 - BETA2 ** ctx.t)).sqrt().add_(EPS)
    return -ctx.lr * (m / (1 - BETA1 ** ctx.t)) / denom
'''


@pytest.mark.slow
def test_neither_adamw_nor_the_overfit_rule_is_promoted(ray_local, tmp_path):
    from optforge.commands.run import _request_factory, _suite_version
    from optforge.evaluators import evaluate

    cfg = config_from_dict({
        "strategy": {"name": "list"}, "suite": "heldout_tiny", "slots": 2, "deterministic": True,
        "stages": ["smoke", "train", {"name": "train_fresh_seeds", "top_k": 2},
                   {"name": "heldout", "suite": "heldout_tiny"}],
        "funnel": {"reference": "sgd", "fresh_seeds": 3}, "sandbox": {"timeout_s": 300},
    })
    try:
        make_request = _request_factory(cfg)
    except UserError as e:
        pytest.skip(f"baselines missing: {e}")
    store = Store(tmp_path / "run")
    strategy = ListStrategy([seeds.source("adamw"), OVERFIT])
    summary = Engine(cfg, strategy, store, evaluate, make_request=make_request, suite_version=_suite_version).run()
    assert summary.promoted == [], [(p.candidate_id, p.stage, p.passed, p.detail) for p in store.promotions()]
    assert all(s[1] in ("smoke", "train") for s in strategy.seen)
    fresh = {p.candidate_id: p for p in store.promotions("train_fresh_seeds")}
    assert not fresh["c0"].passed and fresh["c0"].detail["p"] > 0.01  # AdamW ties with itself
    assert store.evaluation("ref-sgd", "train_fresh_seeds") is not None  # the reference ran, for comparison
    assert not store.promotions("heldout")  # nobody got through, so the held-out stage had no entrants
    # the held-out stage tunes weight decay with AdamW's grid: evaluated as the engine would have
    from optforge.evaluators.baselines import WD_GRID
    from optforge.export import export_info_from_run
    from optforge.funnel import resolve_stage

    stage = cfg.stage("heldout")
    suite, seeds_spec, tune_wd = resolve_stage(stage, cfg)
    assert tune_wd and seeds_spec == "fresh:3"
    result = evaluate(make_request(source=store.candidate("c0").source, stage="heldout", suite=suite, seeds=seeds_spec,
                                   sandbox=cfg.sandbox.request_dict(), tune_wd=tune_wd))
    assert result.artifacts["wd_tuned"] == list(WD_GRID)
    store.add_evaluation(store.candidate("c0"), result, seeds_spec=seeds_spec)
    info = export_info_from_run(store, "c0")
    assert set(info.wd_by_task) == {"tiny_logreg_digits", "tiny_nqm", "tiny_diabetes_mlp"}
    assert info.weight_decay in (0.0, *WD_GRID)


HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def promotion_suites(tmp_path_factory):
    """The test-only suites by dotted path, their baselines built into a private cache (~2 x 45 s)."""
    import sys

    from optforge.evaluators import baselines

    sys.path.insert(0, str(HERE))  # the sandboxed job receives this process's sys.path
    old = os.environ.get("OPTFORGE_CACHE")
    os.environ["OPTFORGE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    names = {"train_fresh_seeds": "promotion_suites:search", "heldout": "promotion_suites:heldout"}
    try:
        for suite in names.values():
            t0 = time.time()
            data = baselines.build(suite, workers=2, references=("adamw", "sgd"), weight_decays=())
            baselines.save(data, baselines.baseline_path(suite))
            print(f"baselines of {suite}: {data['cost']} in {time.time() - t0:.0f} s; "
                  + ", ".join(f"{k}: sigma {t['sigma']:.3f}, delta {t['resolution']['delta']:.2g}" for k, t in data["tasks"].items()))
        yield names
    finally:
        sys.path.remove(str(HERE))
        if old is None:
            os.environ.pop("OPTFORGE_CACHE", None)
        else:
            os.environ["OPTFORGE_CACHE"] = old


@pytest.mark.slow
def test_a_rule_several_sigma_better_is_promoted_and_a_perturbed_adamw_is_not(promotion_suites, tmp_path):
    from optforge import funnel
    from optforge.evaluators import EvalRequest, evaluate
    from optforge.evaluators.baselines import load
    from optforge.types import Candidate, Status

    src = seeds.source("adamw")
    eps = re.search(r"^EPS = (.+)$", src, re.M)
    rules = {"muon": seeds.source("muon"), "adamw_eps": src.replace(eps.group(0), f"EPS = {float(eps.group(1)) * 1.001!r}")}
    cfg = config_from_dict({"suite": promotion_suites["train_fresh_seeds"],
                            "stages": ["train", "train_fresh_seeds",
                                       {"name": "heldout", "suite": promotion_suites["heldout"], "tune_wd": False}]})
    store = Store(tmp_path / "run")
    cands = [Candidate.new(s, id=name) for name, s in rules.items()]
    store.add_proposals(cands, None)
    passed = {}
    for stage in cfg.funnel_stages():
        suite, seeds_spec, tune_wd = funnel.resolve_stage(stage, cfg)
        sigma = [t["sigma"] for t in load(suite)["tasks"].values()]
        for cand in cands:
            r = evaluate(EvalRequest(cand.source, stage.name, suite=suite, seeds=seeds_spec, tune_wd=tune_wd, workers=2))
            assert r.status is Status.OK, r.feedback
            store.add_evaluation(cand, r, seeds_spec=seeds_spec)
        for p in funnel.decide(stage, store, cfg, cands):
            print(f"{stage.name} {p.candidate_id}: d_s {[round(x, 3) for x in p.detail['d']]}, "
                  f"p = {p.detail['p']:.2g} (alpha {cfg.funnel.alpha}), sigma_task {sigma}")
            passed[(stage.name, p.candidate_id)] = p
    for stage in ("train_fresh_seeds", "heldout"):
        muon = passed[(stage, "muon")]
        assert muon.passed, muon.detail
        assert muon.value >= 3 * max(t["sigma"] for t in load(funnel.resolve_stage(cfg.stage(stage), cfg)[0])["tasks"].values())
        assert not passed[(stage, "adamw_eps")].passed, passed[(stage, "adamw_eps")].detail
