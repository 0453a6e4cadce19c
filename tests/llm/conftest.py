import contextlib

import pytest

from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer


@pytest.fixture
def scripted():
    """scripted(script, recorder=None, budget=None, **llm_settings) -> (client, server, sleeps)."""
    stack = contextlib.ExitStack()

    def make(script, recorder=None, budget=None, **settings):
        server = stack.enter_context(ScriptedServer(script))
        sleeps: list[float] = []
        cfg = {"model": "openai/scripted", "api_base": server.url, "api_key_env": None, "backoff_s": 0.01,
               "timeout_s": 5.0}
        cfg.update(settings)
        client = LLMClient({"llm": cfg, "budget": budget or {}}, recorder=recorder, sleep=sleeps.append)
        return client, server, sleeps

    with stack:
        yield make
