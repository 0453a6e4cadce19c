"""StrategyContext: factories get one context, declare what they need; old factories still work with a
DeprecationWarning; records go to the store with the state; busy() is not the end of a run."""

from __future__ import annotations

import warnings

import pytest

from optforge.sandbox.procedure import ProcedureLimits, ProcedureSandbox
from optforge.search.context import ServiceUnavailable, StrategyContext, needed, needs
from optforge.search.registry import build_strategy, needs_of


def test_built_in_factories_take_a_context_and_declare_their_needs():
    assert needs_of("evolve") == {"llm"} and needs_of("seeds") == frozenset() and needs_of("symbolic") == frozenset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no built-in factory is deprecated
        seeds = build_strategy("seeds", {"seeds": ["adamw"]}, StrategyContext(seed=0))
        symbolic = build_strategy("symbolic", {"population": 4}, StrategyContext(seed=3))
    assert [c.note["seed"] for c in seeds.propose(4)] == ["adamw"]
    assert symbolic.state() == build_strategy("symbolic", {"population": 4}, StrategyContext(seed=3)).state()
    with pytest.raises(ValueError, match="needs an LLM"):
        build_strategy("evolve", {}, StrategyContext(seed=0))


def test_an_old_signature_factory_still_works_with_a_deprecation_warning(monkeypatch):
    import fake_eval

    def old_style(params, *, seed, llm=None):
        return fake_eval.ListStrategy([fake_eval.fake_source(0.1 * seed)])

    monkeypatch.setattr(fake_eval, "old_style", old_style, raising=False)
    assert needed(old_style) == frozenset()
    with pytest.warns(DeprecationWarning, match="from_config\\(params, ctx\\)"):
        strategy = build_strategy("fake_eval:old_style", {}, StrategyContext(seed=2))
    assert "FITNESS = 0.2" in strategy.sources[0]


def test_a_service_must_be_declared_and_missing_ones_say_so():
    ctx = StrategyContext(seed=0, llm_client=object())
    with pytest.raises(ServiceUnavailable, match="@needs\\('llm'\\)"):
        ctx.llm
    ctx.declared = frozenset({"llm", "rule_probe", "procedure_sandbox", "embedder"})
    assert ctx.llm is ctx.llm_client
    box = ctx.procedure_sandbox(ProcedureLimits(max_calls=3))
    assert isinstance(box, ProcedureSandbox) and box.limits.max_calls == 3
    assert ctx.procedure_sandbox().limits == ProcedureLimits()
    with pytest.raises(ServiceUnavailable, match="embeddings"):
        ctx.embedder
    with pytest.raises(ValueError, match="unknown strategy service"):
        needs("gpu")
    ctx.record("summary", {"text": "x"}, "c0")
    assert [(r.kind, r.candidate_id) for r in ctx.records.take()] == [("summary", "c0")] and not ctx.records.take()
    assert StrategyContext(seed=5).rng.integers(1000) == StrategyContext(seed=5).rng.integers(1000)


def test_an_empty_proposal_while_busy_does_not_end_the_run(ray_local, tmp_path):
    """A strategy whose first proposals come late (it waits on something) and says busy() meanwhile."""
    from fake_eval import ListStrategy, fake_source, make_engine

    from optforge.config import config_from_dict
    from optforge.store import Store

    class Late(ListStrategy):
        def __init__(self):
            super().__init__([fake_source(0.3), fake_source(0.6)])
            self.asked = 0

        def propose(self, n):
            self.asked += 1
            return [] if self.asked < 4 else super().propose(n)

        def busy(self):
            return self.asked < 4

        def state(self):
            return {**super().state(), "asked": self.asked}

    strategy, store = Late(), Store(tmp_path / "run")
    config = config_from_dict({"strategy": {"name": "late"}, "slots": 1, "stages": ["train"], "eval_timeout_s": 30})
    summary = make_engine(config, strategy, store).run()
    assert summary.stop_reason == "strategy done" and summary.best == ("c1", 0.6) and strategy.asked >= 4


def test_partial_results_come_before_the_final_one(ray_local, tmp_path):
    from fake_eval import ListStrategy, fake_source, make_engine

    from optforge.config import config_from_dict
    from optforge.store import Store

    class Partial(ListStrategy):
        def observe_partial(self, candidate, result):
            self.seen.append(["partial", candidate.id, result.stage])

    strategy = Partial([fake_source(0.1, "# SLOW 0.3"), fake_source(0.2)])
    config = config_from_dict({"strategy": {"name": "partial"}, "slots": 2, "deterministic": True,
                               "stages": ["smoke", "train"], "eval_timeout_s": 30})
    make_engine(config, strategy, Store(tmp_path / "run")).run()
    assert [s[:3] for s in strategy.seen] == [["partial", "c0", "smoke"], ["c0", "train", "ok"],
                                              ["partial", "c1", "smoke"], ["c1", "train", "ok"]]


def test_rule_probe_measures_a_rule_in_the_sandbox():
    import numpy as np

    from optforge import seeds
    from optforge.search.probe import PROBE_LR, PROBE_STEPS, ProbeFailed

    probe = StrategyContext.of().rule_probe
    adamw = probe(seeds.source("adamw"))
    assert adamw.lr == PROBE_LR and adamw.updates["hidden_matrix"].shape == (PROBE_STEPS, 8, 6)
    # Adam's first step moves each element by about lr on unit gradients, eps shows on tiny ones
    assert np.allclose(np.abs(adamw.updates["vector"][0]), PROBE_LR, rtol=0.05)
    again = probe(seeds.source("adamw"))
    assert all(np.array_equal(adamw.updates[k], again.updates[k]) for k in adamw.updates)
    lion = probe(seeds.source("lion"))
    assert not np.allclose(lion.updates["vector"], adamw.updates["vector"])
    with pytest.raises(ProbeFailed, match="import of 'os'"):
        probe("import os\nLR = 1e-3\n")
