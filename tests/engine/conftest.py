"""Engine test fixtures: one local Ray for the whole session (start-up stays out of each test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_warm = None
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _warm_body() -> int:
    import time

    import torch

    time.sleep(0.5)
    return torch.get_num_threads()


@pytest.fixture(scope="session")
def ray_local():
    """Ray with 2 CPUs in this process; fake_eval is shipped by value to the workers."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    import ray.cloudpickle

    import fake_eval

    ray.cloudpickle.register_pickle_by_value(fake_eval)
    started = False
    if not ray.is_initialized():
        global _warm
        _warm = ray.remote(num_cpus=1)(_warm_body)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
        ray.get([_warm.remote() for _ in range(2)])  # both workers up with torch imported
    yield ray
    if started:
        ray.shutdown()
