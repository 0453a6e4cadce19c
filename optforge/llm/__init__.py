"""The LLM layer: one litellm-based client with retries, cost accounting, budgets and replay.

`LITELLM_LOCAL_MODEL_COST_MAP` is set here, before anything imports litellm: otherwise litellm
fetches its price map from the network at import time and stalls on machines without one.
"""

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from optforge.llm.budget import Budget, BudgetExhausted  # noqa: E402
from optforge.llm.client import LLMClient, LLMConfigError, LLMError, LLMResponse  # noqa: E402
from optforge.llm.config import LLMSettings, ModelChoice  # noqa: E402
from optforge.llm.prompts import PromptError, load_template, render  # noqa: E402
from optforge.llm.records import LLMCall, prompt_hash, prompt_text  # noqa: E402
from optforge.llm.replay import ReplayError, Replayer  # noqa: E402
from optforge.llm.selector import ModelSelector  # noqa: E402

__all__ = [
    "Budget",
    "BudgetExhausted",
    "LLMCall",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMResponse",
    "LLMSettings",
    "ModelChoice",
    "ModelSelector",
    "PromptError",
    "ReplayError",
    "Replayer",
    "load_template",
    "prompt_hash",
    "prompt_text",
    "render",
]
