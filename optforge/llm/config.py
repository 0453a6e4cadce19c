"""The `llm` config section as a frozen dataclass, built from a plain mapping or the engine's dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class ModelChoice:
    model: str  # any litellm model string, e.g. "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"
    weight: float = 1.0  # relative sampling weight (ignored when the bandit picks)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"llm.models[].model must be a non-empty litellm model string, got {self.model!r}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"llm.models[].weight for {self.model} must be > 0, got {self.weight!r}")


@dataclass(frozen=True)
class LLMSettings:
    """Everything the LLM client needs. One documented line per field."""

    model: str | None = "openai/gpt-4o-mini"  # litellm model string (null when `models` lists the models)
    api_base: str | None = None  # base URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama, scripted)
    api_key_env: str | None = "OPENAI_API_KEY"  # NAME of the env var holding the key; null: no key sent
    temperature: float = 0.8  # sampling temperature
    max_tokens: int = 4096  # completion cap; also the worst case the budget reserves
    replay: str | None = None  # RUN_DIR of a previous run: answer every call from its recorded responses
    models: tuple[ModelChoice, ...] = ()  # several models with weights; empty means just `model`
    bandit: bool = False  # pick the model by a UCB bandit on fitness improvement per dollar
    concurrency: int = 4  # most calls in flight at once
    timeout_s: float = 120.0  # per-attempt request timeout
    max_retries: int = 5  # retries on 429, 5xx, timeouts and broken responses
    backoff_s: float = 1.0  # first backoff; doubles per retry (retry-after wins when given)
    max_backoff_s: float = 60.0  # cap on one backoff sleep
    input_cost_per_token: float | None = None  # $ per prompt token, for local or unknown models
    output_cost_per_token: float | None = None  # $ per completion token, for local or unknown models
    extra: Mapping[str, Any] = field(default_factory=dict)  # extra litellm.completion kwargs

    def __post_init__(self) -> None:
        models = tuple(m if isinstance(m, ModelChoice) else _model_choice(m) for m in (self.models or ()))
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "extra", dict(self.extra or {}))
        if self.model is None and models:
            object.__setattr__(self, "model", models[0].model)
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"llm.model must be a litellm model string like 'openai/gpt-4o-mini', got {self.model!r}")
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str) or not self.api_key_env):
            raise ValueError(f"llm.api_key_env must be the NAME of an environment variable, got {self.api_key_env!r}")
        if isinstance(self.api_key_env, str) and self.api_key_env.startswith(("sk-", "sk_")):
            raise ValueError("llm.api_key_env looks like a key itself; put the NAME of the environment variable there "
                             "(e.g. OPENAI_API_KEY) and export the key in that variable")
        if not 0 <= float(self.temperature) <= 2:
            raise ValueError(f"llm.temperature={self.temperature!r} must be in [0, 2]")
        if int(self.max_tokens) < 1:
            raise ValueError(f"llm.max_tokens={self.max_tokens!r} must be >= 1")
        if int(self.concurrency) < 1:
            raise ValueError(f"llm.concurrency={self.concurrency!r} must be >= 1")
        if not float(self.timeout_s) > 0:
            raise ValueError(f"llm.timeout_s={self.timeout_s!r} must be > 0")
        if int(self.max_retries) < 0:
            raise ValueError(f"llm.max_retries={self.max_retries!r} must be >= 0")
        for key in ("input_cost_per_token", "output_cost_per_token"):
            v = getattr(self, key)
            if v is not None and not (math.isfinite(float(v)) and float(v) >= 0):
                raise ValueError(f"llm.{key}={v!r} must be a number >= 0 (or null)")
        if (self.input_cost_per_token is None) != (self.output_cost_per_token is None):
            raise ValueError("set both llm.input_cost_per_token and llm.output_cost_per_token, or neither")

    @property
    def model_choices(self) -> tuple[ModelChoice, ...]:
        """The models of this run with their weights (at least one)."""
        return self.models or (ModelChoice(self.model, 1.0),)

    @classmethod
    def from_any(cls, config: Any) -> "LLMSettings":
        """Build from a mapping, this dataclass, or any object with the same attributes.

        Unknown mapping keys raise ValueError naming them.
        """
        if isinstance(config, cls):
            return config
        if config is None:
            return cls()
        names = {f.name for f in fields(cls)}
        if isinstance(config, Mapping):
            unknown = sorted(set(config) - names)
            if unknown:
                raise ValueError(f"unknown llm config key(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
            return cls(**dict(config))
        return cls(**{n: getattr(config, n) for n in names if hasattr(config, n)})


def _model_choice(m: Any) -> ModelChoice:
    if isinstance(m, str):
        return ModelChoice(m)
    if isinstance(m, Mapping):
        unknown = sorted(set(m) - {"model", "weight"})
        if unknown:
            raise ValueError(f"unknown key(s) in llm.models entry: {', '.join(unknown)}; use model and weight")
        return ModelChoice(str(m.get("model", "")), float(m.get("weight", 1.0)))
    return ModelChoice(str(getattr(m, "model")), float(getattr(m, "weight", 1.0)))


def budget_limits(config: Any) -> tuple[float | None, int | None]:
    """(max_dollars, max_llm_calls) from a `budget` mapping or dataclass; missing means unlimited."""
    if config is None:
        return None, None
    get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
    md, mc = get("max_dollars", None), get("max_llm_calls", None)
    return (None if md is None else float(md)), (None if mc is None else int(mc))
