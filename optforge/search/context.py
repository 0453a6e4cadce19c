"""What a strategy factory receives: one `StrategyContext`, and the declaration of what it needs.

A factory is `from_config(params, ctx) -> Strategy`. It declares the services it needs with
`@needs("llm", ...)`; `optforge run` builds only those (an LLM client only for a strategy that needs
one or a config that sets `llm.model`), and the context refuses a service the factory did not declare,
so the declaration stays true. A factory with the old signature `from_config(params, *, seed, llm=None)`
still works, with a DeprecationWarning.

Services:
- rng: a numpy Generator seeded from the run's `seed` (always available);
- llm: the run's LLM client (optforge.llm.LLMClient);
- embedder: `embed(texts) -> list[list[float]]` from the LLM client's embeddings endpoint;
- records: `ctx.record(kind, data, candidate_id=None)` keeps a strategy record (a summary, a rejected
  proposal with its reason, a meta-level program with its utility); records are stored in the same
  transaction as the strategy state that follows them, and listed by `optforge show --records`;
- rule_probe: `rule_probe(source) -> Probe`, the rule's updates on a fixed probe, computed in the
  sandbox (`optforge.search.probe`; raises ProbeFailed with the reason);
- procedure_sandbox: `procedure_sandbox(limits=None) -> ProcedureSandbox`, a factory: each call
  gives a sandbox for untrusted search procedures (`optforge.sandbox.procedure`; MoH) under those
  `ProcedureLimits` (the defaults when None), so a strategy can take the limits from its params.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from optforge.store.rows import StrategyRecord

SERVICES = ("llm", "embedder", "rule_probe", "procedure_sandbox")
"""Services a factory may declare with `@needs` (rng and records are always there)."""


class ServiceUnavailable(RuntimeError):
    """A strategy used a service it did not declare, or one this install cannot provide."""


def needs(*services: str) -> Callable[[Callable], Callable]:
    """Declare the services a strategy factory needs: `@needs("llm")` above `def from_config(params, ctx)`."""
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown strategy service(s) {unknown}; known: {', '.join(SERVICES)}")

    def mark(factory: Callable) -> Callable:
        factory.needs = frozenset(services)  # type: ignore[attr-defined]
        return factory

    return mark


def needed(factory: Callable) -> frozenset[str]:
    """The services `factory` declared (an old-signature factory declares none: it gets the LLM client
    when the config sets one, as before)."""
    return frozenset(getattr(factory, "needs", ()))


def is_legacy(factory: Callable) -> bool:
    """True for the old factory signature `from_config(params, *, seed, llm=None)`."""
    try:
        return "seed" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


class RecordSink:
    """Collects the records a strategy keeps until the engine stores them with the next state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[StrategyRecord] = []

    def __call__(self, kind: str, data: Mapping[str, Any], candidate_id: str | None = None) -> None:
        if not kind or not isinstance(kind, str):
            raise ValueError(f"a strategy record needs a kind (a short word such as 'summary'), got {kind!r}")
        with self._lock:
            self._pending.append(StrategyRecord(kind, dict(data), candidate_id))

    def take(self) -> list[StrategyRecord]:
        with self._lock:
            out, self._pending = self._pending, []
        return out


@dataclass
class StrategyContext:
    """The services a strategy may use (see the module docstring). `declared` is what its factory asked for."""

    seed: int = 0
    declared: frozenset[str] = frozenset()
    llm_client: Any = None
    records: RecordSink = field(default_factory=RecordSink)
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def of(cls, seed: int = 0, llm: Any = None) -> "StrategyContext":
        """A context with every service declared, for building a strategy outside `optforge run`
        (tests, notebooks): `from_config(params, StrategyContext.of(seed=0, llm=client))`."""
        return cls(seed=seed, declared=frozenset(SERVICES), llm_client=llm)

    def record(self, kind: str, data: Mapping[str, Any], candidate_id: str | None = None) -> None:
        """Keep a strategy record (stored with the next strategy state; append-only)."""
        self.records(kind, data, candidate_id)

    def _declared(self, service: str) -> None:
        if service not in self.declared:
            raise ServiceUnavailable(f"the strategy used ctx.{service} without declaring it: decorate its factory "
                                     f"with @needs({service!r}) (optforge.search.context)")

    @property
    def llm(self) -> Any:
        self._declared("llm")
        if self.llm_client is None:
            raise ServiceUnavailable("the strategy needs an LLM: configure the llm section (model, api_key_env, or "
                                     "replay: RUN_DIR to run offline)")
        return self.llm_client

    @property
    def embedder(self) -> Callable[[list[str]], list[list[float]]]:
        self._declared("embedder")
        embed = getattr(self.llm_client, "embed", None)
        if not callable(embed):
            raise ServiceUnavailable("the strategy needs text embeddings, and the LLM client offers no embeddings "
                                     "endpoint; configure the llm section with a provider that has one")
        return embed

    @property
    def rule_probe(self) -> Callable[[str], Any]:
        self._declared("rule_probe")
        from optforge.search.probe import rule_probe

        return rule_probe

    @property
    def procedure_sandbox(self) -> Callable[..., Any]:
        """`factory(limits: ProcedureLimits | None = None) -> ProcedureSandbox` (defaults when None)."""
        self._declared("procedure_sandbox")
        from optforge.sandbox.procedure import ProcedureLimits, ProcedureSandbox

        def factory(limits: ProcedureLimits | None = None) -> ProcedureSandbox:
            return ProcedureSandbox(limits if limits is not None else ProcedureLimits())

        return factory


def call_factory(factory: Callable, params: dict, ctx: StrategyContext, *, name: str) -> Any:
    """Build a strategy with a new-style factory, or an old-style one with a DeprecationWarning."""
    if is_legacy(factory):
        warnings.warn(f"strategy '{name}': the factory signature from_config(params, *, seed, llm=None) is deprecated;"
                      " use from_config(params, ctx) with @needs(...) (optforge.search.context)",
                      DeprecationWarning, stacklevel=3)
        kwargs: dict[str, Any] = {"seed": ctx.seed}
        if "llm" in inspect.signature(factory).parameters:
            kwargs["llm"] = ctx.llm_client
        return factory(params, **kwargs)
    return factory(params, ctx)
