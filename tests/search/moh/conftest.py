"""MoH test fixtures: one local Ray for the session, with the fake evaluator shipped by value."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    import ray.cloudpickle

    import fake_eval

    ray.cloudpickle.register_pickle_by_value(fake_eval)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
