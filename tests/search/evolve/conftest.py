import contextlib

import pytest

from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer


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
