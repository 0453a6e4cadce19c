"""The funnel on a real small run (real evaluator and sandbox) with the test-only `heldout_tiny`
suite for every scored stage (the `smoke` suite is a gate: it scores even AdamW at the floor).
AdamW clears an SGD bar; a rule tuned to one task (it trains only vector parameters, as on a
quadratic, and freezes every matrix) does not reach promotion."""

from __future__ import annotations

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
def test_adamw_is_promoted_over_an_sgd_bar_and_the_overfit_rule_is_not(ray_local, tmp_path):
    from optforge.commands.run import _request_factory, _suite_version
    from optforge.evaluators import evaluate

    cfg = config_from_dict({
        "strategy": {"name": "list"}, "suite": "heldout_tiny", "slots": 2, "deterministic": True,
        "stages": ["smoke", "train", {"name": "train_fresh_seeds", "top_k": 2},
                   {"name": "heldout", "suite": "heldout_tiny"}],
        "funnel": {"reference": "sgd", "noise_seed": "adamw"}, "sandbox": {"timeout_s": 300},
    })
    try:
        make_request = _request_factory(cfg)
    except UserError as e:
        pytest.skip(f"baselines missing: {e}")
    store = Store(tmp_path / "run")
    strategy = ListStrategy([seeds.source("adamw"), OVERFIT])
    summary = Engine(cfg, strategy, store, evaluate, make_request=make_request, suite_version=_suite_version).run()
    assert summary.promoted == ["c0"], [(p.candidate_id, p.stage, p.passed, p.detail) for p in store.promotions()]
    assert all(s[1] in ("smoke", "train") for s in strategy.seen)
    assert store.evaluation("ref-sgd", "heldout") is not None
    heldout = {p.candidate_id: p for p in store.promotions("heldout")}
    assert "c1" not in heldout or not heldout["c1"].passed
    # the held-out stage tuned weight decay for the candidate and the references, with AdamW's grid
    from optforge.evaluators.baselines import WD_GRID
    from optforge.export import export_info_from_run

    for cid in ("c0", "ref-sgd", "ref-adamw"):
        assert store.evaluation(cid, "heldout").artifacts["wd_tuned"] == list(WD_GRID), cid
    info = export_info_from_run(store, "c0")
    assert set(info.wd_by_task) == {"tiny_logreg_digits", "tiny_nqm", "tiny_diabetes_mlp"}
    assert info.weight_decay in (0.0, *WD_GRID)
