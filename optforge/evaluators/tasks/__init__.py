"""Proxy tasks and suites: the problems every rule is trained on (docs/suites.md)."""

from .base import Problem, Suite, Task, derive_seed, generator
from .suites import get_suite, suite_names

__all__ = ["Problem", "Suite", "Task", "derive_seed", "generator", "get_suite", "suite_names"]
