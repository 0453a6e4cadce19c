"""MoH test fixtures: the shared session Ray of tests/search (real_engine.ray_local), with the engine's
fake evaluator shipped by value so its workers can unpickle it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local(ray_local):
    import ray.cloudpickle

    import fake_eval

    ray.cloudpickle.register_pickle_by_value(fake_eval)
    return ray_local
