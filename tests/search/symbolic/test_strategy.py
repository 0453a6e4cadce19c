from optforge.search.context import StrategyContext
"""The symbolic strategy: config checks, cache behaviour, resume determinism, restarts, simplification,
and a short real search (on the interpreter's quadratic) that improves on a bad starting rule."""

import json

import numpy as np
import pytest

from optforge.search.base import Strategy
from optforge.search.symbolic import from_config, parse
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.evolution import SymbolicParams, SymbolicSearch
from optforge.search.symbolic.program import Stmt, from_text, render

from symbolic_objective import drive, quadratic_loss, quadratic_result

REF = quadratic_loss(warmstarts.program("adamw"))


def objective(c):
    return quadratic_result(c.source, REF)


SMALL = {"population": 12, "tournament": 2, "state_slots": 3, "phase_evaluations": 18}


def test_protocol_and_config_errors():
    s = from_config({}, StrategyContext.of(seed=0))
    assert isinstance(s, Strategy) and s.name == "symbolic"
    assert s.params.population == 1000 and s.params.tournament == 2  # the reference defaults
    with pytest.raises(ValueError, match="strategy.populaton"):
        from_config({"populaton": 3}, StrategyContext.of(seed=0))
    with pytest.raises(ValueError, match="warm_start"):
        from_config({"warm_start": ["nonesuch"]}, StrategyContext.of(seed=0))
    with pytest.raises(ValueError, match="population"):
        from_config({"population": 0}, StrategyContext.of(seed=0))
    with pytest.raises(ValueError, match="phase_evaluations"):
        from_config({"restarts": 2}, StrategyContext.of(seed=0))
    with pytest.raises(ValueError, match="integer"):
        from_config({"population": "big"}, StrategyContext.of(seed=0))


def test_first_proposal_is_the_warm_start_and_waits_for_it():
    s = from_config({"warm_start": ["adamw", "lion"], **SMALL}, StrategyContext.of(seed=0))
    first = s.propose(4)
    assert [c.note["mutation"] for c in first] == ["warm_start", "warm_start"]
    assert parse(first[0].source) == warmstarts.program("adamw")  # slots padded, dead slot dropped
    assert s.propose(4) == []  # no parent until a warm start is scored
    s.observe(first[0], objective(first[0]))
    more = s.propose(2)
    assert len(more) == 2 and all(c.parents == (first[0].id,) for c in more)
    for c in more:
        assert c.strategy == "symbolic"
        assert set(c.note) >= {"mutation", "program", "hash", "fingerprint"}


def test_never_reproposes_a_known_program_and_counts_hits():
    s = from_config({**SMALL, "phase_evaluations": 24}, StrategyContext.of(seed=3))
    cands = []
    drive(s, objective, log=cands)
    fingerprints = [c.note["fingerprint"] for c in cands]
    assert len(set(fingerprints)) == len(fingerprints)  # each function evaluated once
    summ = s.summary()
    assert summ["proposed"] == len(cands) == 24  # phase_evaluations, the warm start included
    assert 0 <= summ["cache_hit_rate"] < 1 and 0 <= summ["redundancy_rate"] < 1
    assert s.done() and summ["best"]["fitness"] >= 0.0
    # a functional duplicate of an evaluated program (renamed, with dead code) is answered from the cache
    hits = summ["cache_hits"]
    prog = parse(cands[5].source)
    dup = prog.replace(body=(Stmt("zz", "exp", ("g",)),) + tuple(
        Stmt("q_" + st.target if st.target not in prog.slots and st.target != prog.ret else st.target, st.fn,
             tuple("q_" + a if isinstance(a, str) and a in {x.target for x in prog.body} - set(prog.slots) - {prog.ret}
                   else a for a in st.args)) for st in prog.body))
    assert dup != prog
    s.phase = 0  # pretend the phase is still running so the duplicate joins the population
    before = len(s.population)
    assert s._offer(s._record(dup, "test", [cands[5].id])) is None
    assert s.summary()["cache_hits"] == hits + 1 and s.summary()["proposed"] == 24
    assert s.population[-1]["id"] == cands[5].id and len(s.population) == min(before + 1, 12)


def test_resume_mid_search_gives_the_same_continuation():
    params = {**SMALL, "phase_evaluations": 8, "restarts": 2, "best_restarts": 1, "simplify_evaluations": 4}
    full_log: list = []
    a = from_config(params, StrategyContext.of(seed=11))
    drive(a, objective, log=full_log)
    assert a.done()

    part_log: list = []
    b = from_config(params, StrategyContext.of(seed=11))
    inflight: list = []
    for i in range(200):  # interrupt mid-search, with candidates in flight
        inflight = drive(b, objective, log=part_log, max_iters=1, inflight=inflight)
        if i >= 6 and inflight:
            break
    assert inflight and not b.done()
    saved = json.loads(json.dumps(b.state()))
    c2 = from_config(params, StrategyContext.of(seed=999))  # the generator state is in the saved state
    c2.load_state(saved)
    # the engine re-delivers the results of the candidates that were in flight
    drive(c2, objective, log=part_log, inflight=inflight)
    assert c2.done()
    assert [(c.id, c.source, c.parents) for c in part_log] == [(c.id, c.source, c.parents) for c in full_log]
    assert c2.summary()["best"] == a.summary()["best"]


def test_phases_restart_from_warm_start_and_best_then_simplify():
    params = {**SMALL, "phase_evaluations": 10, "restarts": 2, "best_restarts": 1, "simplify_evaluations": 8}
    s = from_config(params, StrategyContext.of(seed=5))
    cands: list = []
    drive(s, objective, log=cands)
    assert s.done()
    notes = [c.note for c in cands]
    phases = [n["phase"] for n in notes]
    assert phases == sorted(phases) and set(phases) >= {0, 1, 2}
    assert notes[0]["mutation"] == "warm_start"
    # phase 1 reuses the cached warm start (no second evaluation); phase 2 starts from the best
    assert sum(n["mutation"] == "warm_start" for n in notes) == 1
    assert sum(n["mutation"] == "restart_from_best" for n in notes) == 0  # the best is already cached
    simp = [n for n in notes if n["mutation"] == "simplify"]
    assert 0 < len(simp) <= 8
    assert all(n["simplifies"] for n in simp)


def test_search_improves_on_a_bad_starting_rule():
    """SGD with a harmful constant (a tiny step) is fixed by the search, on a real objective."""
    bad = from_text("bm = mul(b, 0.9)\nb = add(bm, g)\ns = mul(b, lr)\nt2 = mul(s, 0.001)\ndelta = negative(t2)",
                    slots=("b",), lr=1e-2, name="bad_sgd")
    params = SymbolicParams(warm_start=("sgd",), population=10, phase_evaluations=60, state_slots=2)
    strat = SymbolicSearch(params, np.random.default_rng(0), seed=0, warm_programs=[bad])
    cands: list = []
    drive(strat, objective, log=cands)
    assert cands[0].note["mutation"] == "warm_start" and parse(cands[0].source) == bad
    start = quadratic_result(render(bad), REF).fitness
    best = strat.summary()["best"]
    assert best["fitness"] > start + 1.0


@pytest.mark.parametrize("path", ["configs/quickstart.yaml", "configs/symbolic.yaml"])
def test_shipped_configs_build_and_their_budget_covers_the_search(path):
    from pathlib import Path

    from optforge.config import load_config
    from optforge.search.registry import build_strategy

    root = Path(__file__).resolve().parents[3]
    config = load_config(root / path)
    strategy = build_strategy(config.strategy_name, config.strategy_params, seed=config.seed)
    assert strategy.params.warm_start == ("adamw",)
    assert config.budget.max_candidates == strategy.params.total_evaluations
