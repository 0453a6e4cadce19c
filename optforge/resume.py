"""`optforge run --resume`: what a resumed run restores, which `--set` overrides it can take, and
whether a run whose search already stopped goes on searching (docs/resume.md).

- **Overrides.** A resumed run keeps what its stored results and strategy state were made with.
  Only keys under `RESUMABLE` may change (budgets, parallelism, where and how evaluations and LLM
  requests run); any other changed key is refused with the reason.
- **More budget.** A run whose search was stopped by a budget searches again when resumed with that
  budget raised, as long as every budget has something left (and the strategy, its state loaded, is
  not done: checked by the caller, which builds it); then the
  promotion funnel runs again (its finished evaluations are cached). An override that cannot do
  that is refused, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from optforge.config import BudgetConfig, RunConfig

RESUMABLE = ("budget.", "slots", "retries", "eval_timeout_s", "ray.", "llm.api_base", "llm.api_key_env",
             "llm.timeout_s", "llm.concurrency", "baselines_check")
"""Config keys (a trailing dot: a whole section) a resumed run may change with `--set`. `baselines_check`
is among them because the refusal of the start-of-run check tells the user to set it."""

BUDGET_STOPS = {"max_candidates", "max_evaluations", "max_train_cpu_s", "max_seconds", "max_dollars", "max_llm_calls"}
"""Stop reasons that are a budget (a larger one lets the search go on)."""


class ResumeRefused(ValueError):
    """The overrides cannot apply to this run; the message says why and what to do instead."""


@dataclass(frozen=True)
class Restored:
    """What a run directory holds when it is resumed."""

    candidates: int  # strategy proposals (references excluded): what budget.max_candidates counts
    observed: int  # of those, observed by the strategy
    evaluations: int  # stored evaluation rows, all stages
    strategy_rows: int  # of those, rows of strategy candidates: what budget.max_evaluations counts
    train_cpu_s: float  # their CPU seconds: what budget.max_train_cpu_s counts
    strategy: str  # the strategy's name
    state_saved: bool  # a strategy state is stored (it has seen exactly the stored proposals)
    elapsed_s: float  # search and funnel time of all sessions so far
    dollars: float  # LLM spend so far
    llm_requests: int  # HTTP requests to the LLM so far, retries included
    status: str  # the stored run status: running, interrupted, finished, failed
    stop_reason: str  # why the search (or the run) stopped, if it did
    search_done: bool  # the search phase ended; only the funnel was left (or nothing)

    @classmethod
    def from_store(cls, store: Any, config: RunConfig) -> "Restored":
        dollars, requests = store.llm_spend()
        search = [s.name for s in config.search_stages()]
        return cls(
            candidates=len(store.candidates(include_reference=False)), observed=len(store.observed_ids()),
            evaluations=len(store.evaluations()), strategy_rows=store.evaluation_count(stages=search),
            train_cpu_s=store.train_cpu_seconds(stages=search), strategy=config.strategy_name,
            state_saved=store.strategy_state() is not None, elapsed_s=float(store.meta("elapsed_s", 0.0)),
            dollars=dollars, llm_requests=requests, status=str(store.meta("status", "unknown")),
            stop_reason=str(store.meta("stop_reason", "") or ""), search_done=bool(store.meta("search_done", False)))

    def used(self) -> dict[str, float]:
        """Budget used so far, keyed by the budget's field name."""
        return {"max_candidates": self.candidates, "max_evaluations": self.strategy_rows,
                "max_train_cpu_s": self.train_cpu_s, "max_seconds": self.elapsed_s, "max_dollars": self.dollars,
                "max_llm_calls": self.llm_requests}


def refused_overrides(stored: RunConfig, resumed: RunConfig) -> list[str]:
    """`key: stored -> new` for every changed config key a resumed run may not change."""
    old, new = _flatten(stored.to_dict()), _flatten(resumed.to_dict())
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"{k}: {_show(old.get(k))} -> {_show(new.get(k))}" for k in changed
            if not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE)]


def check_overrides(stored: RunConfig, resumed: RunConfig) -> None:
    """Raise ResumeRefused when an override changes a key outside `RESUMABLE`."""
    refused = refused_overrides(stored, resumed)
    if refused:
        raise ResumeRefused(
            "a resumed run keeps the settings its stored results and strategy state were made with; refused: "
            + "; ".join(refused) + f". A resume may change only {', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE)}."
            " For other settings start a new run (optforge run CONFIG.yaml --out NEW_DIR)")


def exhausted(restored: Restored, budget: BudgetConfig) -> list[str]:
    """`name (used U of L)` for every budget with nothing left."""
    out = []
    for name, used in restored.used().items():
        limit = getattr(budget, name)
        if limit is not None and used >= limit:
            out.append(f"budget.{name} ({_amount(name, used)} used of {_amount(name, limit)})")
    return out


def continues_search(restored: Restored, stored: RunConfig, resumed: RunConfig) -> bool:
    """Whether a run whose search phase ended searches again: True when the overrides raise the budget
    that stopped it. False when the budget is unchanged (nothing to do: the funnel, if unfinished,
    still runs). Raises ResumeRefused when a changed budget cannot continue the search."""
    if not restored.search_done or resumed.budget == stored.budget:
        return False
    reason = restored.stop_reason
    if reason not in BUDGET_STOPS:
        raise ResumeRefused(
            f"the search stopped because {_stop_words(reason)}, not on a budget, so a larger budget cannot continue "
            "it; start a new run for more candidates")
    left = exhausted(restored, resumed.budget)
    if left:
        raise ResumeRefused("the new budget leaves nothing to search with: " + "; ".join(left)
                            + "; raise it above what was used")
    return True


def describe(restored: Restored, budget: BudgetConfig, *, continuing: bool) -> str:
    """What was restored, for the terminal: candidates, evaluations, strategy state, budget used/left."""
    state = (f"strategy state of '{restored.strategy}' as saved after {restored.candidates} proposals and "
             f"{restored.observed} observations" if restored.state_saved else
             f"no strategy state saved ('{restored.strategy}' starts from its config)")
    pending = restored.candidates - restored.observed
    lines = [f"restored: {restored.candidates} candidates ({restored.observed} observed"
             + (f", {pending} to finish first" if pending else "") + f"), {restored.evaluations} evaluations; {state}",
             "budget: " + "; ".join(_budget_line(name, used, getattr(budget, name))
                                    for name, used in restored.used().items()
                                    if name == "max_candidates" or getattr(budget, name) is not None
                                    or (used and name not in ("max_evaluations", "max_train_cpu_s")))]
    if restored.search_done:
        lines.append(f"the search had stopped ({_stop_words(restored.stop_reason)}): "
                     + ("it continues with the larger budget" if continuing else "only the promotion funnel is left"))
    return "\n".join(lines)


def _budget_line(name: str, used: float, limit: float | None) -> str:
    label = {"max_candidates": "candidates", "max_evaluations": "evaluation rows", "max_train_cpu_s": "train CPU seconds",
             "max_seconds": "seconds", "max_dollars": "dollars", "max_llm_calls": "LLM requests"}[name]
    if limit is None:
        return f"{label} {_amount(name, used)} used, no limit"
    return f"{label} {_amount(name, used)} used, {_amount(name, max(0.0, limit - used))} left of {_amount(name, limit)}"


def _amount(name: str, value: float) -> str:
    if name == "max_dollars":
        return f"${value:.4f}"
    if name in ("max_seconds", "max_train_cpu_s"):
        return f"{value:.0f} s"
    return str(int(value))


def _stop_words(reason: str) -> str:
    if reason in BUDGET_STOPS:
        return f"budget.{reason} was reached"
    return {"strategy done": "the strategy had nothing more to propose",
            "strategy proposed nothing": "the strategy proposed nothing more"}.get(reason, reason or "of an unrecorded reason")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True)
    return out


def _show(value: str | None) -> str:
    return "(unset)" if value is None else value


def reopen_search(store: Any, **why: Any) -> None:
    """Let a run whose search phase ended search again (it was resumed with a larger budget; the caller
    checked that it can go on, see `optforge.resume`). The funnel's decisions are dropped, to be made
    again over the larger pool; its evaluations stay and are cached. `why` goes into the event."""
    store.clear_promotions()
    store.set_meta(search_done=False, stop_reason="", correlation=None)
    store.add_event("search_reopened", **why)
