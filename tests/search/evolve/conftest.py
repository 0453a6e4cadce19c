import contextlib

import pytest

from optforge import seeds
from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer
from optforge.types import EvaluationResult, Status

ADAMW = seeds.source("adamw")
GOOD = ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.95")  # a real change a model might propose


def fence(src: str) -> str:
    return f"A better rule:\n```python\n{src}```\n"


def diff(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def ok_result(scores: dict[str, float], stage: str = "train", feedback: str = "") -> EvaluationResult:
    tasks = {t: {"score": s, "speedup": 2.0 ** s, "lr_mult": 1.0, "family": t.split("_")[0], "flags": []}
             for t, s in scores.items()}
    fit = sum(scores.values()) / len(scores)
    return EvaluationResult(Status.OK, stage=stage, metrics={"fitness": fit, "tasks": tasks}, feedback=feedback)


def drive(st, rounds: int, fitness_of) -> list:
    """Propose and observe in order: a deterministic stand-in for the engine's deterministic mode."""
    out = []
    for _ in range(rounds):
        for c in st.propose(2):
            out.append(c)
            if c.note.get("status") == "invalid":
                st.observe(c, EvaluationResult.failure(Status.INVALID, c.note["reason"], stage="smoke"))
            else:
                st.observe(c, ok_result(fitness_of(c.source)))
    return out


@pytest.fixture
def llm_for():
    """llm_for(script, **settings) -> (client, server): a real client against the scripted server."""
    stack = contextlib.ExitStack()

    def make(script, budget=None, recorder=None, **settings):
        server = stack.enter_context(ScriptedServer(script))
        cfg = {"model": "openai/scripted", "api_base": server.url, "api_key_env": None, "backoff_s": 0.0,
               "concurrency": 1, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
        cfg.update(settings)
        return LLMClient({"llm": cfg, "budget": budget or {}}, recorder=recorder), server

    with stack:
        yield make


@pytest.fixture
def evo():
    """This module's helpers (fence, diff, drive, ok_result, ADAMW, GOOD) for tests that must not
    import conftest by name (pytest --import-mode=importlib puts no test folder on sys.path)."""
    import sys

    return sys.modules[__name__]
