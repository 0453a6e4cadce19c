"""A short real search (engine, sandbox, evaluator) on `smoke` improves on a deliberately bad start.

Slow: every evaluation trains in the sandbox (about 10-20 s each on 2 cores).
"""

import numpy as np
import pytest

from optforge.search.symbolic.evolution import SymbolicParams, SymbolicSearch
from optforge.search.symbolic.program import from_text

pytestmark = pytest.mark.slow

# SGD whose momentum constant is harmful (1.5 > 1: the buffer explodes at every learning rate)
BAD_SGD = """
bm = mul(b, 1.5)
b = add(bm, g)
s = mul(b, lr)
delta = negative(s)
"""


def test_short_smoke_search_improves_on_a_bad_rule(tmp_path):
    from optforge.commands.run import _execute, _request_factory
    from optforge.config import config_from_dict
    from optforge.store import Store

    config = config_from_dict({
        "strategy": {"name": "symbolic", "population": 8, "phase_evaluations": 10},
        "suite": "smoke",
        "stages": ["smoke"],
        "slots": 2,
        "deterministic": True,
        "seed": 0,
        "budget": {"max_candidates": 10, "max_seconds": 900},
        "sandbox": {"timeout_s": 120},
    })
    bad = from_text(BAD_SGD, slots=("b",), lr=1e-2, name="bad_sgd")
    params = SymbolicParams(warm_start=("sgd",), population=8, phase_evaluations=10, state_slots=2)
    strategy = SymbolicSearch(params, np.random.default_rng(0), seed=0, warm_programs=[bad])
    store = Store(tmp_path / "run")
    assert _execute(config, strategy, store, _request_factory(config), address=None, quiet=True) == 0
    store = Store.open(tmp_path / "run")
    evals = {r.candidate_id: r for r in store.evaluations(stage="smoke")}
    cands = store.candidates(include_reference=False)
    start = evals[cands[0].id]
    assert cands[0].note["mutation"] == "warm_start"
    best = max(r.fitness for r in evals.values())
    assert len(evals) >= 8
    assert best > start.fitness + 0.5, (start.fitness, sorted(r.fitness for r in evals.values()))
