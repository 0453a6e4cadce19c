"""A rollout through the real evaluator and sandbox: the engine's request carries the rollout's tasks,
seeds and the candidate's lr multipliers (reuse_lr), and a reused-lr rollout on the seeds the lr was
tuned on reproduces the stage evaluation's scores on those tasks."""

from __future__ import annotations

import pytest
from fake_eval import ListStrategy

from optforge import seeds
from optforge.config import config_from_dict
from optforge.engine import Engine
from optforge.rollouts import SearchSuite
from optforge.search.base import Rollout
from optforge.store import Store


class AdamWThenRollout(ListStrategy):
    """Proposes AdamW, then (once it is observed) one reused-lr rollout of it on task smoke_quad."""

    def __init__(self, pool):
        super().__init__([seeds.source("adamw")])
        self.pool, self.asked, self.answer = pool, False, None

    def propose(self, n):
        if self.i == 0:
            return super().propose(n)
        if self.seen and not self.asked:
            self.asked = True
            return [Rollout("c0", tasks=("smoke_quad",), seeds=self.pool, reuse_lr=True)]
        return []

    def busy(self):
        return not self.done()

    def observe_rollout(self, rollout, result):
        self.answer = (rollout, result)

    def done(self):
        return self.answer is not None


@pytest.mark.slow
def test_a_reused_lr_rollout_runs_through_the_real_evaluator(ray_local, tmp_path):
    from optforge.commands.run import _request_factory, _suite_version
    from optforge.evaluators import evaluate
    from optforge.evaluators.tasks import get_suite

    cfg = config_from_dict({"strategy": {"name": "list"}, "suite": "smoke", "stages": ["smoke", "train"], "slots": 1,
                            "deterministic": True, "eval_timeout_s": 600, "baselines_check": "off"})
    smoke = get_suite("smoke")
    # the smoke suite has no search-seed pool: its selection seeds stand in, so the reused lr is the tuned one
    pool = tuple(smoke.selection_seeds)
    suite = SearchSuite("smoke", tuple(t.name for t in smoke.tasks), pool, tuple(smoke.report_seeds))
    strategy, store = AdamWThenRollout(pool), Store(tmp_path / "run")
    Engine(cfg, strategy, store, evaluate, make_request=_request_factory(cfg), suite_version=_suite_version,
           search_suite=lambda: suite).run()
    rollout, result = strategy.answer
    first = store.evaluation("c0", "train")
    row = store.evaluations(rollout_id=rollout.id)[0]
    assert first.ok and result.ok and row.reuse_lr and row.tasks == ("smoke_quad",) and row.seeds == pool
    assert set(result.metrics["tasks"]) == {"smoke_quad"}
    quad, again = first.metrics["tasks"]["smoke_quad"], result.metrics["tasks"]["smoke_quad"]
    assert again["lr_mult"] == quad["lr_mult"] and again["score"] == pytest.approx(quad["score"], abs=1e-9)
    assert store.aggregate("c0", "train").n == 2
