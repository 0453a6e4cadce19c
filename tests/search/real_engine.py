"""One LLM strategy run through the real engine, evaluator, sandbox, store and Ray on the `smoke` suite,
against the scripted LLM server: the set-up the opto and polca run tests share.

The smoke suite has no search-seed pool, so the engine (and a strategy that draws its own minibatches)
is given its selection seeds as one, as in tests/engine/test_rollouts_real.py. The strategy and its
LLM client are built as `optforge run` builds them (`commands.run._build_strategy`: on resume, the
client's budget starts from the store's recorded spend), so a second call on the same run directory
resumes the run as `optforge run --resume` does.

Also a driver, for a run killed from outside: `python real_engine.py CONFIG.json RUN_DIR` starts a
private Ray and runs the config (a JSON run config) into RUN_DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pytest

HERE = Path(__file__).resolve().parent
COSTS = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}


def smoke_pool() -> tuple[int, ...]:
    """The search seeds the smoke runs draw from (its selection seeds, which have AdamW baselines)."""
    from optforge.evaluators.tasks import get_suite

    return tuple(get_suite("smoke").selection_seeds)


def smoke_config(strategy: Mapping[str, Any], llm: Mapping[str, Any], budget: Mapping[str, Any]) -> dict[str, Any]:
    """A deterministic run config on smoke (smoke then train, one slot) for `strategy` (with its name),
    against an LLM at `llm` (api_base, or replay) with `budget`."""
    return {"strategy": dict(strategy), "suite": "smoke", "stages": ["smoke", "train"], "slots": 1,
            "deterministic": True, "seed": 0, "eval_timeout_s": 600, "baselines_check": "off", "budget": dict(budget),
            "llm": {"model": "openai/scripted", "api_key_env": None, "backoff_s": 0.0, "concurrency": 1, **COSTS,
                    **llm}}


def run_on_smoke(run_dir: str | Path, config: Mapping[str, Any]) -> tuple[Any, Any]:
    """Run (or resume, if `run_dir` holds the run) `config` to its end: (store, strategy). Ray must be up."""
    from optforge.commands.run import _build_strategy, _request_factory, _suite_version
    from optforge.config import config_from_dict
    from optforge.engine import Engine
    from optforge.evaluators import evaluate
    from optforge.evaluators.tasks import get_suite
    from optforge.rollouts import SearchSuite
    from optforge.store import Store

    cfg = config_from_dict(dict(config))
    store = Store(run_dir)
    strategy, holder, ctx = _build_strategy(cfg, store)
    holder["store"] = store
    smoke = get_suite("smoke")
    suite = SearchSuite("smoke", tuple(t.name for t in smoke.tasks), smoke_pool(), tuple(smoke.report_seeds))
    Engine(cfg, strategy, store, evaluate, make_request=_request_factory(cfg), suite_version=_suite_version,
           records=ctx.records, search_suite=lambda: suite,
           llm_spend=None if ctx.llm_client is None else ctx.llm_client.spend).run()
    return store, strategy


def start_killable(config: Mapping[str, Any], run_dir: Path) -> subprocess.Popen:
    """This module as a driver process running `config` into `run_dir`, with a private Ray."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = run_dir.parent / f"{run_dir.name}.json"
    spec.write_text(json.dumps(config))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS="local")
    return subprocess.Popen([sys.executable, str(HERE / "real_engine.py"), str(spec), str(run_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(proc: subprocess.Popen, run_dir: Path, ready: Any, timeout_s: float = 900.0) -> None:
    """Poll the run's store (read-only) until `ready(store)` is true; fail if the driver ends first."""
    from optforge.store import Store, StoreError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the driver ended (rc {proc.returncode}) before the kill point:\n"
                        + proc.stderr.read().decode(errors="replace")[-3000:])
        try:
            with Store.open(run_dir) as st:
                if ready(st):
                    return
        except (StoreError, OSError, Exception):  # noqa: BLE001 - the run.db may not exist yet, or be mid-write
            pass
        time.sleep(0.2)
    pytest.fail(f"the run in {run_dir} never reached the kill point in {timeout_s:.0f} s")


def kill_at(config: Mapping[str, Any], run_dir: Path, ready: Any) -> None:
    """Run `config` into `run_dir` in a driver process and SIGKILL it (with its Ray) once `ready(store)`."""
    import signal

    proc = start_killable(config, run_dir)
    try:
        wait_for(proc, run_dir, ready)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def ray_local():
    """Ray with 2 CPUs in the test process, shared by every real-engine test of tests/search."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


if __name__ == "__main__":
    from optforge.scheduler import start_ray

    start_ray(None, num_cpus=2, num_gpus=0)
    run_on_smoke(sys.argv[2], json.loads(Path(sys.argv[1]).read_text()))
