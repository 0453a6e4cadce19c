"""Engine test fixtures: one local Ray for the whole session (start-up stays out of each test)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """Ray with 2 CPUs in this process; fake_eval is shipped by value to the workers, and both
    workers are warmed up (torch imported) so that timings in tests exclude worker start-up."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    import ray.cloudpickle

    import fake_eval

    ray.cloudpickle.register_pickle_by_value(fake_eval)
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
        warm = ray.remote(num_cpus=1)(fake_eval.warm_worker)
        ray.get([warm.remote() for _ in range(2)])
    yield ray
    if started:
        ray.shutdown()
