"""The LLM layer: one litellm-based client with retries, cost accounting, budgets and replay.

`LITELLM_LOCAL_MODEL_COST_MAP` is set here, before anything imports litellm: otherwise litellm
fetches its price map from the network at import time and stalls on machines without one.
"""

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from optforge.llm.budget import Budget, BudgetExhausted  # noqa: E402
from optforge.llm.client import LLMClient, LLMResponse  # noqa: E402
from optforge.llm.errors import LLMConfigError, LLMError  # noqa: E402
from optforge.config import LLMConfig, ModelWeight  # noqa: E402 - the `llm` config section
from optforge.llm.measured import measured  # noqa: E402
from optforge.llm.parse import Answer, Parsed, extract_rule, parse_response, read_answer  # noqa: E402
from optforge.llm.prompts import PromptError, load_template, render  # noqa: E402
from optforge.llm.records import LLMCall, prompt_hash, prompt_text  # noqa: E402
from optforge.llm.replay import ReplayError, Replayer  # noqa: E402
from optforge.llm.selector import ModelSelector  # noqa: E402

__all__ = [
    "Answer",
    "Budget",
    "BudgetExhausted",
    "LLMCall",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMResponse",
    "LLMConfig",
    "ModelWeight",
    "ModelSelector",
    "Parsed",
    "PromptError",
    "ReplayError",
    "Replayer",
    "extract_rule",
    "load_template",
    "measured",
    "parse_response",
    "prompt_hash",
    "prompt_text",
    "read_answer",
    "render",
]
