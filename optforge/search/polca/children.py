"""Step 4 of a POLCA iteration: the LLM's children of each exploration candidate on each minibatch.

One OptoPrimeV2-form prompt per (candidate, minibatch) (`prompt.build_messages`, the summarizer's
guidance as #Context), asked `num_proposals` times; each answer is parsed (`optforge.llm.parse`) and,
with the epsilon-net on, embedded. A child that is unusable (no rule in the answer, no embedding) is
kept as an `invalid` candidate, stored and never evaluated; the usable ones go on to the epsilon-net.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from optforge.llm.budget import BudgetExhausted
from optforge.llm.client import LLMError
from optforge.llm.parse import parse_response
from optforge.llm.replay import ReplayError
from optforge.search.polca import memory as mem
from optforge.search.polca import prompt
from optforge.search.polca.embedders import Embed
from optforge.search.polca.params import PolcaConfig

log = logging.getLogger(__name__)


@dataclass
class Children:
    """What one round of proposals gave. Children are proposal dicts (`type`, `id`, `source`,
    `parents`, `note`); a usable one also has `batch` (its minibatch's index) and, with the
    epsilon-net on, `embedding`."""

    usable: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)  # note status "invalid", with the reason
    calls: int = 0  # LLM proposal calls made (a call the budget refused is not one)
    stop_reason: str | None = None  # the first "LLM budget exhausted" met, if any


def ask_children(exploring: list[mem.Candidate], batches: list[list[tuple[str, int]]], *, context: str, llm: Any,
                 config: PolcaConfig, embed: Embed, new_id: Callable[[], str], iteration: int) -> Children:
    """Ask for `config.num_proposals` children per (candidate of `exploring`, minibatch of `batches`),
    in that order; `new_id()` names each child. A ReplayError (a diverged replay) is raised out."""
    plans = []
    for c in exploring:
        for b, batch in enumerate(batches):
            runs = {(r.task, r.seed): r for r in c.rollouts}
            feedback = prompt.format_feedback([runs[p] for p in batch if p in runs], c)
            messages = prompt.build_messages(source=c.source, feedback=feedback, context=context)
            plans += [(c, b, messages)] * config.num_proposals
    responses = llm.complete_many([{"messages": m} for _, _, m in plans]) if plans else []
    out = Children()
    for (parent, b, _), resp in zip(plans, responses):
        if isinstance(resp, BudgetExhausted):
            out.stop_reason = out.stop_reason or f"LLM budget exhausted: {resp}"
            continue
        out.calls += 1
        if isinstance(resp, LLMError):
            log.warning("polca: LLM call failed: %s", resp)
            continue
        parsed = parse_response(resp.text, parent.source, finish_reason=resp.finish_reason,
                                reasoning=resp.reasoning, max_tokens=llm.settings.max_tokens)
        note = {"kind": "llm", "iteration": iteration, "minibatch": b, "model": resp.model,
                "finish_reason": resp.finish_reason, "prompt_hash": resp.call.prompt_hash,
                "dollars": resp.call.dollars, "parsed_as": parsed.kind}
        child = {"type": "candidate", "id": new_id(), "parents": [parent.id], "note": note,
                 "source": parsed.source if parsed.source is not None else resp.text}
        reason = parsed.reason
        if not reason and config.uses_epsilon_net:
            try:
                child["embedding"] = [float(x) for x in embed(child["source"])]
            except BudgetExhausted as e:  # a text embedding is an LLM call: the budget ends the search
                out.stop_reason = out.stop_reason or f"LLM budget exhausted: {e}"
                continue
            except ReplayError:
                raise
            except (ValueError, RuntimeError) as e:
                reason = f"no {config.embedding} embedding: {e}"
        if reason:
            note.update(status="invalid", reason=reason)
            out.invalid.append(child)
        else:
            child["batch"] = b
            out.usable.append(child)
    return out
