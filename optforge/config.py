"""Run configuration: YAML -> frozen dataclasses, with errors that name the bad key.

Every key is documented on its field. Unknown keys, wrong types and bad values fail at load time with
the dotted key (`budget.max_candidates`), the value and what is allowed. `--set section.key=value`
overrides go through the same checks (`load_config(path, overrides=[...])`).

The `strategy` section is a mapping with `name` plus strategy-specific keys. Each strategy declares
its keys as a frozen dataclass and builds it with `build_strategy_params`, which applies the same
type checks (`optforge.config_builder`) and names `strategy.<key>` in its errors. The `llm` section (`LLMConfig`) is the one
config of the LLM client.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from optforge.config_builder import ConfigError, build, deep_copy, jsonable

__all__ = ["DEFAULT_STAGES", "FUNNEL_STAGES", "REMOVED_KEYS", "SEARCH_STAGES", "STAGE_NAMES", "BudgetConfig",
           "ConfigError", "FunnelConfig", "LLMConfig", "ModelWeight", "RayConfig", "RunConfig", "SandboxConfig",
           "StageConfig", "apply_override", "build_strategy_params", "config_from_dict", "load_config", "read_yaml"]

SEARCH_STAGES = ("smoke", "train")
FUNNEL_STAGES = ("train_fresh_seeds", "heldout")
STAGE_NAMES = SEARCH_STAGES + FUNNEL_STAGES
DEFAULT_STAGES = STAGE_NAMES


# ---------------------------------------------------------------------------------------------
# sections


@dataclass(frozen=True)
class BudgetConfig:
    """When the run stops: whichever limit is reached first. None = no limit."""

    max_candidates: int | None = None  # candidates taken through the search stages (smoke, train)
    max_evaluations: int | None = None  # search-stage evaluation rows: a candidate's rollouts and repeats each count
    max_train_cpu_s: float | None = None  # CPU seconds of sandboxed training over all search-stage evaluations
    max_seconds: float | None = None  # wall-clock seconds of search (the funnel still finishes)
    max_dollars: float | None = None  # LLM spend, enforced by the LLM client and checked by the engine
    max_llm_calls: int | None = None  # LLM calls, enforced by the LLM client and checked by the engine

    def __post_init__(self) -> None:
        for name in ("max_candidates", "max_evaluations", "max_train_cpu_s", "max_seconds", "max_dollars",
                     "max_llm_calls"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"budget.{name}={value!r} must be >= 0 (or null for no limit)")


@dataclass(frozen=True)
class ModelWeight:
    """One model of an LLM ensemble and its sampling weight."""

    model: str  # litellm model name, e.g. openai/gpt-4o-mini
    weight: float = 1.0  # relative sampling weight (> 0; ignored when the bandit picks)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("llm.models[].model must be a non-empty litellm model string, e.g. openai/gpt-4o-mini")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(f"llm.models weight={self.weight!r} for model '{self.model}' must be > 0")


@dataclass(frozen=True)
class LLMConfig:
    """The `llm` section: everything the LLM client (optforge.llm.LLMClient) needs.

    The engine only checks spend; strategies that need no LLM (seeds, symbolic) ignore it.
    """

    model: str | None = None  # litellm model name; null = no LLM, or the first of `models`
    api_base: str | None = None  # base URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama, scripted)
    api_key_env: str | None = "OPENAI_API_KEY"  # NAME of the environment variable holding the key; null: none sent
    temperature: float = 0.8  # sampling temperature
    max_tokens: int = 4096  # completion token limit per call; also the worst case the budget reserves
    replay: str | None = None  # RUN_DIR of a previous run: answer every call from its recorded responses
    models: tuple[ModelWeight, ...] = ()  # ensemble of {model, weight}; overrides `model` when set
    bandit: bool = False  # pick the model by a UCB bandit on fitness improvement per dollar
    concurrency: int = 4  # LLM calls in flight at once
    timeout_s: float = 120.0  # per-request timeout
    max_retries: int = 5  # retries of one call on 429, 5xx, timeouts and broken responses
    backoff_s: float = 1.0  # first backoff sleep (0: none); doubles per retry (a Retry-After header wins)
    max_backoff_s: float = 60.0  # cap on one backoff sleep
    input_cost_per_token: float | None = None  # dollars per prompt token, when litellm does not know the model
    output_cost_per_token: float | None = None  # dollars per completion token, when litellm does not know the model
    extra: Mapping[str, Any] = field(default_factory=dict)  # extra keyword arguments of litellm.completion
    embedding_model: str | None = None  # litellm embedding model for strategies that embed text; null: none

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", dict(self.extra))
        if self.embedding_model is not None and not self.embedding_model:
            raise ConfigError("llm.embedding_model='' must be a litellm embedding model string, or null")
        if self.model is not None and not self.model:
            raise ConfigError("llm.model='' must be a litellm model string like 'openai/gpt-4o-mini', or null")
        if self.api_key_env is not None and not self.api_key_env:
            raise ConfigError("llm.api_key_env='' must be the NAME of an environment variable, or null")
        if self.api_key_env is not None and self.api_key_env.startswith(("sk-", "sk_")):
            raise ConfigError("llm.api_key_env looks like a key itself; put the NAME of the environment variable "
                              "there (e.g. OPENAI_API_KEY) and export the key in that variable")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"llm.temperature={self.temperature!r} must be in [0, 2]")
        for name in ("max_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"llm.{name}={getattr(self, name)!r} must be >= 1")
        if self.max_retries < 0:
            raise ConfigError(f"llm.max_retries={self.max_retries!r} must be >= 0")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"llm.timeout_s={self.timeout_s!r} must be > 0")
        for name in ("backoff_s", "max_backoff_s"):  # 0: retry at once (tests)
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"llm.{name}={value!r} must be >= 0")
        for name in ("input_cost_per_token", "output_cost_per_token"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"llm.{name}={value!r} must be >= 0 (or null)")
        if (self.input_cost_per_token is None) != (self.output_cost_per_token is None):
            raise ConfigError("set both llm.input_cost_per_token and llm.output_cost_per_token, or neither")

    @property
    def model_choices(self) -> tuple[ModelWeight, ...]:
        """The models of this run with their weights: `models`, or `model` alone. Raises ConfigError
        when neither is set."""
        if self.models:
            return self.models
        if self.model is None:
            raise ConfigError("llm.model is not set; set it to a litellm model string (e.g. openai/gpt-4o-mini) "
                              "or list llm.models")
        return (ModelWeight(self.model),)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "LLMConfig":
        """The `llm` section from a plain mapping, with the run config's checks (ConfigError naming `llm.<key>`)."""
        return build(cls, data or {}, "llm.")


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for every sandboxed job of an evaluation (passed in `EvalRequest.sandbox`)."""

    timeout_s: float = 120.0  # wall-clock limit of one sandboxed training job
    memory_mb: int = 2048  # address-space limit of one sandboxed job
    require: tuple[str, ...] = ()  # isolation layers that must be available, or the job is `lost`
    static_check: bool = True  # run the static import/name check before executing a candidate

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"sandbox.timeout_s={self.timeout_s!r} must be > 0")
        if self.memory_mb < 64:
            raise ConfigError(f"sandbox.memory_mb={self.memory_mb!r} must be >= 64")

    def request_dict(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "require": list(self.require),
                "static_check": self.static_check}


@dataclass(frozen=True)
class RayConfig:
    """Where evaluations run."""

    address: str | None = None  # null = start Ray in-process; "auto" or "HOST:PORT" joins a cluster
    num_gpus: float = 0.0  # GPUs declared per evaluation task
    num_cpus: int | None = None  # CPUs of an in-process Ray (null = max(slots, 1)); ignored on a cluster

    def __post_init__(self) -> None:
        if self.num_gpus < 0:
            raise ConfigError(f"ray.num_gpus={self.num_gpus!r} must be >= 0")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"ray.num_cpus={self.num_cpus!r} must be >= 1")


@dataclass(frozen=True)
class StageConfig:
    """One stage of the promotion funnel. Written in YAML as a name or a mapping with overrides."""

    name: str  # smoke | train | train_fresh_seeds | heldout
    suite: str | None = None  # suite to run (null = the stage default: smoke / the search suite / heldout)
    seeds: str = ""  # "selection" or "fresh" ("" = stage default)
    top_k: int | None = None  # train_fresh_seeds: how many of the best `train` candidates enter
    tune_wd: bool | None = None  # tune weight decay for candidate and AdamW alike (default: heldout only)

    @classmethod
    def from_name(cls, name: str) -> "StageConfig":
        """A stage written in YAML as its name: its defaults."""
        return cls(name)

    def __post_init__(self) -> None:
        if self.name not in STAGE_NAMES:
            raise ConfigError(f"stages: unknown stage '{self.name}'; known stages: {', '.join(STAGE_NAMES)}")
        if self.seeds not in ("", "selection", "fresh"):
            raise ConfigError(f"stages.{self.name}.seeds={self.seeds!r} must be 'selection' or 'fresh'")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"stages.{self.name}.top_k={self.top_k!r} must be >= 1")


@dataclass(frozen=True)
class FunnelConfig:
    """The bar of the promotion stages (train_fresh_seeds, heldout): a one-sided paired t-test."""

    top_k: int = 3  # best `train` candidates re-run on fresh seeds
    reference: str = "adamw"  # seed also run at each promotion stage, shown for comparison
    alpha: float = 0.01  # promote when the t-test of the per-seed paired scores d_s > 0 gives p < alpha
    fresh_seeds: int | None = None  # the first N report seeds scored (null: 80 % power for +0.25 at alpha)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"funnel.top_k={self.top_k!r} must be >= 1")
        if not 0.0 < self.alpha < 0.5:
            raise ConfigError(f"funnel.alpha={self.alpha!r} must be in (0, 0.5)")
        if self.fresh_seeds is not None and self.fresh_seeds < 2:
            raise ConfigError(f"funnel.fresh_seeds={self.fresh_seeds!r} must be >= 2 (a t-test needs 2 seeds), or null")


REMOVED_KEYS = {
    "funnel.metric": "promotion is a one-sided paired t-test on the per-seed paired scores; set funnel.alpha",
    "funnel.min_margin": "the margin is now the t-test's; set funnel.alpha (and funnel.fresh_seeds)",
    "funnel.noise_seed": "the noise is the spread of the candidate's own per-seed paired scores; set funnel.alpha",
}
"""Keys that existed once, with what replaced them (a config that sets one gets this as its error)."""


@dataclass(frozen=True)
class RunConfig:
    """A whole run. `strategy` keys beyond `name` are checked by the strategy's `from_config`."""

    strategy: Mapping[str, Any] = field(default_factory=lambda: {"name": "seeds"})  # {name, ...strategy keys}
    suite: str = "train"  # the search suite: train | train_quick | smoke | pkg.mod:fn
    stages: tuple[StageConfig, ...] = tuple(StageConfig(n) for n in DEFAULT_STAGES)  # the promotion funnel
    funnel: FunnelConfig = FunnelConfig()  # bars of the promotion stages
    slots: int = 2  # evaluations in flight at once
    deterministic: bool = False  # observe results in proposal order, so a seeded run is reproducible
    seed: int = 0  # seed of the strategy's random generator
    eval_timeout_s: float | None = None  # engine-side limit per evaluation (null = 30 x sandbox.timeout_s)
    retries: int = 3  # times a `lost` evaluation (worker or node loss) is retried
    budget: BudgetConfig = BudgetConfig()  # when to stop
    llm: LLMConfig = LLMConfig()  # the LLM, for LLM strategies
    sandbox: SandboxConfig = SandboxConfig()  # limits of each sandboxed job
    ray: RayConfig = RayConfig()  # where evaluations run
    baselines_check: str = "refuse"  # at start: AdamW re-run on one seed per task vs the stored curves: refuse | warn | off

    def __post_init__(self) -> None:
        name = self.strategy.get("name") if isinstance(self.strategy, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ConfigError("strategy.name is missing; set e.g. 'strategy: {name: seeds}'")
        object.__setattr__(self, "strategy", dict(self.strategy))
        if self.slots < 1:
            raise ConfigError(f"slots={self.slots!r} must be >= 1")
        if self.baselines_check not in ("refuse", "warn", "off"):
            raise ConfigError(f"baselines_check={self.baselines_check!r} must be 'refuse', 'warn' or 'off'")
        if self.retries < 0:
            raise ConfigError(f"retries={self.retries!r} must be >= 0")
        if self.eval_timeout_s is not None and not self.eval_timeout_s > 0:
            raise ConfigError(f"eval_timeout_s={self.eval_timeout_s!r} must be > 0")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages={names} lists a stage twice")
        if not names:
            raise ConfigError("stages is empty; list at least 'smoke' or 'train'")
        order = [STAGE_NAMES.index(n) for n in names]
        if order != sorted(order):
            raise ConfigError(f"stages={names} are out of order; the order is {', '.join(STAGE_NAMES)}")
        if not any(n in SEARCH_STAGES for n in names):
            raise ConfigError(f"stages={names} has no search stage; include 'smoke' and/or 'train'")
        if "train_fresh_seeds" in names and "train" not in names:
            raise ConfigError("stages: 'train_fresh_seeds' needs 'train' before it (it re-runs the top `train` candidates)")
        if "heldout" in names and "train_fresh_seeds" not in names:
            raise ConfigError("stages: 'heldout' needs 'train_fresh_seeds' before it (only its survivors go on)")

    @property
    def strategy_name(self) -> str:
        return str(self.strategy["name"])

    @property
    def strategy_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}

    @property
    def timeout_per_eval(self) -> float:
        return self.eval_timeout_s if self.eval_timeout_s is not None else 30.0 * self.sandbox.timeout_s

    def stage(self, name: str) -> StageConfig | None:
        return next((s for s in self.stages if s.name == name), None)

    def search_stages(self) -> list[StageConfig]:
        return [s for s in self.stages if s.name in SEARCH_STAGES]

    def funnel_stages(self) -> list[StageConfig]:
        return [s for s in self.stages if s.name in FUNNEL_STAGES]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, and `from_dict(to_dict())` gives the same config."""
        d = dataclasses.asdict(self)
        d["strategy"] = dict(self.strategy)
        d["stages"] = [{k: v for k, v in dataclasses.asdict(s).items() if v not in (None, "")} for s in self.stages]
        return jsonable(d)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        return build(cls, data, "", REMOVED_KEYS)


# ---------------------------------------------------------------------------------------------
# loading and checking


def read_yaml(text: str) -> Any:
    """Parse YAML 1.2 (ruamel.yaml's safe loader): `5e-7`, `1e-3` and `3E4` are floats, as in JSON.
    PyYAML implements YAML 1.1, where a float needs a dot, so it reads `5e-7` as a string.
    Raises ruamel.yaml's YAMLError on bad syntax."""
    return YAML(typ="safe", pure=True).load(text)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (None = all defaults) and apply `section.key=value` overrides."""
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = read_yaml(p.read_text(encoding="utf-8")) or {}
        except YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}")
    return config_from_dict(data, overrides)


def config_from_dict(data: Mapping[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Build a checked RunConfig from a mapping plus `section.key=value` overrides."""
    merged = deep_copy(dict(data))
    if overrides and "strategy" not in merged:
        merged["strategy"] = {"name": "seeds"}  # the default, so `--set strategy.seeds=[...]` extends it
    for item in overrides:
        apply_override(merged, item)
    return build(RunConfig, merged, "", REMOVED_KEYS)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `section.key=value` (value parsed as YAML) to a raw config mapping, in place."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} must look like section.key=value")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: the key {key!r} is malformed; use section.key=value")
    try:
        value = read_yaml(raw) if raw.strip() else None
    except YAMLError as e:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from e
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def build_strategy_params(cls: type, params: Mapping[str, Any]) -> Any:
    """A strategy's own frozen dataclass from the config's `strategy` mapping (minus `name`), with the
    run config's checks: unknown keys, and types from the field annotations (an island count of 2.5
    is refused). Raises ConfigError (a ValueError) naming `strategy.<key>`."""
    return build(cls, params, "strategy.")
