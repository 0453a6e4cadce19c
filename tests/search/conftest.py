"""Fixtures of every strategy's tests: `ray_local` (one Ray for the real-engine runs, from real_engine.py)."""

from real_engine import ray_local  # noqa: F401 - a fixture, found by pytest through this import
