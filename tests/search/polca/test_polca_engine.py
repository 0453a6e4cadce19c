"""A deterministic POLCA run through the real engine, evaluator, sandbox, store and Ray, against the
scripted LLM server on the `smoke` suite; then its replay, offline, reproduces it. Slow (minutes)."""

from __future__ import annotations

import os

import pytest

from optforge import seeds
from optforge.config import config_from_dict
from optforge.engine import Engine
from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer
from optforge.rollouts import SearchSuite
from optforge.search.context import StrategyContext
from optforge.search.registry import build_strategy
from optforge.store import Store

pytestmark = pytest.mark.slow

ADAMW = seeds.source("adamw")
GOOD = ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.95")
RENAMED = ADAMW.replace("BETA2", "SECOND_MOMENT_DECAY")  # the same updates: the epsilon-net rejects it
COSTS = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
SCRIPT = [f"```python\n{GOOD}```", f"```python\n{RENAMED}```",
          {"match": "^Analyse", "content": "<reasoning>r</reasoning>\n<summary>beta2 0.95 helps</summary>"}]


@pytest.fixture(scope="module")
def ray_local():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


def _run(run_dir, llm_settings):
    from optforge.commands.run import _request_factory, _suite_version
    from optforge.evaluators import evaluate
    from optforge.evaluators.tasks import get_suite

    smoke = get_suite("smoke")
    # the smoke suite has no search-seed pool: its selection seeds stand in, for the engine and the strategy
    pool = tuple(smoke.selection_seeds)
    params = {"warm_start": ["adamw"], "num_candidates": 1, "num_proposals": 2, "batch_size": 2,
              "max_iterations": 1, "search_seeds": list(pool)}
    cfg = config_from_dict({"strategy": {"name": "polca", **params}, "suite": "smoke", "stages": ["smoke", "train"],
                            "slots": 1, "deterministic": True, "eval_timeout_s": 600, "baselines_check": "off",
                            "budget": {"max_llm_calls": 3}})
    store = Store(run_dir)
    llm = LLMClient({"llm": {"model": "openai/scripted", "api_key_env": None, "concurrency": 1, **COSTS, **llm_settings},
                     "budget": {"max_llm_calls": 3}}, recorder=store.record_llm_call)
    ctx = StrategyContext(seed=0, llm_client=llm)
    strategy = build_strategy("polca", params, ctx)
    suite = SearchSuite("smoke", tuple(t.name for t in smoke.tasks), pool, tuple(smoke.report_seeds))
    Engine(cfg, strategy, store, evaluate, make_request=_request_factory(cfg), suite_version=_suite_version,
           search_suite=lambda: suite, records=ctx.records).run()
    return store, strategy


def _outcome(store):
    cands = [(c.id, c.source, c.parents) for c in store.candidates(include_reference=False)]
    rollouts = [(r.candidate_id, r.tasks, r.seeds, r.note.get("purpose")) for r in store.rollouts()]
    rows = [(e.candidate_id, e.stage, e.status.value, e.seeds, e.metrics.get("fitness")) for e in store.evaluations()]
    records = [(r.kind, r.data) for r in store.records()]
    return cands, rollouts, rows, records


def test_a_polca_run_on_smoke_and_its_replay(ray_local, tmp_path):
    with ScriptedServer(SCRIPT) as server:
        store, strategy = _run(tmp_path / "live", {"api_base": server.url})
        served = server.served
    assert served == 3 and len(store.llm_calls()) == 3  # 2 proposals, 1 summary: each one recorded
    cands, rollouts, rows, records = _outcome(store)
    adamw, good = cands[0][0], next(c for c in cands if c[1] == GOOD)[0]
    assert cands[0][1] == ADAMW and {c[1] for c in cands} == {ADAMW, GOOD}  # the renamed copy is never evaluated
    assert [(r[0], r[3]) for r in rollouts] == [(adamw, "explore")] * 2 + [(good, "validate")] * 2
    assert {r[1:3] for r in rollouts if r[0] == adamw} == {r[1:3] for r in rollouts if r[0] == good}
    kinds = [k for k, _ in records]
    assert kinds.count("epsilon_rejection") == 1 and kinds.count("summary") == 1
    rejection = next(d for k, d in records if k == "epsilon_rejection")
    assert rejection["source"] == RENAMED and rejection["nearest"] == adamw and rejection["distance"] < 1e-9
    assert all(s == "ok" for _, _, s, _, _ in rows)
    assert strategy.done() and strategy.context == "beta2 0.95 helps"

    # replay: no server (a closed port), the recorded answers, the same run
    replayed, _ = _run(tmp_path / "replay", {"replay": str(tmp_path / "live"), "api_base": "http://127.0.0.1:9/v1"})
    assert _outcome(replayed) == _outcome(store)
