"""An OPTO run through the real engine, evaluator and sandbox on `smoke`, against the scripted LLM server
(match-keyed entries: an answer is given only to the prompt that shows what the test expects).

The smoke suite has no search-seed pool, so the engine is given one (its selection seeds), as in
tests/engine/test_rollouts_real.py: OPTO's trace oracle is a rollout, and rollouts draw from the pool.
Slow (a minute or more): run with `-m slow`."""

from __future__ import annotations

import contextlib
import json
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
# AdamW, except that a bias or gain (role `vector`) gets a NaN update (from its 5th update on) whenever the
# scheduled lr is above twice LR: the high lr trials diverge there, the chosen lr does not, so the
# candidate is ok and its trace rollout records where the diverged trial first went non-finite
NAN_ON_VECTOR = ADAMW.replace(
    "    m, v = state[\"m\"], state[\"v\"]\n",
    "    if ctx.role == \"vector\" and ctx.lr > 2 * LR and ctx.t >= 5:\n"
    "        return torch.full_like(g, float(\"nan\"))\n"
    "    m, v = state[\"m\"], state[\"v\"]\n")


def answer(values: dict) -> str:
    return "```json\n" + json.dumps({"reasoning": "see the feedback", "answer": "", "suggestion": values}) + "\n```\n"


SCRIPT = [
    # step 1, on AdamW's trace: rewrite the code into the rule that breaks on role vector
    {"match": r"#Variables", "content": answer({"rule": NAN_ON_VECTOR})},
    # step 2, only if the feedback names the role and step where the rule first went non-finite
    {"match": r"the update at step \d+, role vector", "content": answer({"BETA2": 0.995})},
    # step 3: no change
    {"match": r"BETA2 = 0\.995", "content": "TERMINATE"},
]


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


def run_opto(run_dir, llm_settings):
    from optforge.commands.run import _request_factory, _suite_version
    from optforge.evaluators import evaluate
    from optforge.evaluators.tasks import get_suite

    cfg = config_from_dict({"strategy": {"name": "opto", "split_constants": True, "max_steps": 3, "memory_size": 2},
                            "suite": "smoke", "stages": ["smoke", "train"], "slots": 1, "deterministic": True,
                            "seed": 0, "eval_timeout_s": 600, "baselines_check": "off",
                            "budget": {"max_llm_calls": 5},
                            "llm": {"model": "openai/scripted", "api_key_env": None, "backoff_s": 0.0,
                                    "concurrency": 1, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                    **llm_settings}})
    smoke = get_suite("smoke")
    suite = SearchSuite("smoke", tuple(t.name for t in smoke.tasks), tuple(smoke.selection_seeds),
                        tuple(smoke.report_seeds))
    store = Store(run_dir)
    llm = LLMClient(cfg, recorder=store.record_llm_call)
    ctx = StrategyContext(seed=cfg.seed, llm_client=llm)
    strategy = build_strategy("opto", cfg.strategy_params, ctx)
    Engine(cfg, strategy, store, evaluate, make_request=_request_factory(cfg), suite_version=_suite_version,
           records=ctx.records, search_suite=lambda: suite).run()
    return store, strategy


def test_opto_on_smoke_feeds_the_diverged_role_back_records_the_constant_and_replays(ray_local, tmp_path):
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ScriptedServer(SCRIPT))
        store, strategy = run_opto(tmp_path / "a", {"api_base": server.url})
        assert server.served == 3, store.meta("failure")
    cands = store.candidates()
    seed, nan_rule, beta = cands
    assert seed.source == ADAMW and nan_rule.source == NAN_ON_VECTOR and nan_rule.parents == (seed.id,)
    assert nan_rule.note["lineage"] == "code rewritten"
    assert store.evaluation(nan_rule.id, "train").ok
    # the third prompt (after the NaN rule's trace) names the role and step in #Feedback
    prompts = ["\n".join(m["content"] for m in json.loads(c["prompt"])) for c in store.llm_calls()]
    traced = [e for r in store.rollouts(nan_rule.id) for e in store.evaluations(rollout_id=r.id)]
    firsts = [t["diverged"]["first_nonfinite"] for t in traced[0].artifacts["trace"]["tasks"] if t["diverged"]]
    assert firsts and all(f["role"] == "vector" and f["kind"] == "update" and f["step"] >= 5 for f in firsts)
    feedback = prompts[1].split("#Feedback", 1)[1]
    for f in firsts:
        assert f"first non-finite value: the update at step {f['step']}, role vector" in feedback
    assert beta.source == NAN_ON_VECTOR.replace("BETA2 = 0.999", "BETA2 = 0.995")
    assert beta.note["change"]["code_changed"] is False
    assert beta.note["lineage"] == "constant BETA2 0.999 \u2192 0.995"
    assert strategy.done() and strategy.chains[0].end_reason.startswith("TERMINATE")
    assert store.rollouts() and all(r.detail == "trace" for r in store.rollouts())
    store.close()
    # offline replay of the recorded run (the server is stopped): the same candidates, bit for bit
    again, _ = run_opto(tmp_path / "b", {"replay": str(tmp_path / "a"), "api_base": "http://127.0.0.1:9/v1"})
    with Store.open(tmp_path / "a") as a:
        assert [(c.id, c.source, c.parents) for c in again.candidates()] == [(c.id, c.source, c.parents)
                                                                              for c in a.candidates()]
        assert [c["prompt_hash"] for c in again.llm_calls()] == [c["prompt_hash"] for c in a.llm_calls()]
