"""Prices and token estimates: litellm's local price map, or per-token prices from the config."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from optforge.llm.errors import LLMConfigError
from optforge.llm.records import Message

log = logging.getLogger(__name__)


def litellm() -> Any:
    """Import litellm with the offline price map (never the network at import) and quiet banners."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm as _litellm

    _litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(max(logging.getLogger("LiteLLM").level, logging.WARNING))
    return _litellm


@dataclass(frozen=True)
class Price:
    """Dollars per token for one model; `source` says where the numbers came from."""

    input: float
    output: float
    source: str  # "config" | "litellm" | "free"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


def litellm_price(model: str) -> Price | None:
    """litellm's per-token price for `model`, or None when litellm does not know it."""
    lt = litellm()
    try:
        cin, cout = lt.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000)
    except Exception:  # noqa: BLE001 - litellm raises several types for unmapped models
        return None
    return Price(cin / 1_000_000, cout / 1_000_000, "litellm")


def resolve_price(model: str, input_cost: float | None, output_cost: float | None, api_base: str | None) -> Price:
    """The price used to account and budget `model`'s calls.

    Configured per-token prices win; then litellm's price map; then a model behind a custom
    api_base (a local server) is free. An unknown hosted model is an error: its dollars could not
    be counted, so the dollar budget could not hold.
    """
    if input_cost is not None and output_cost is not None:
        return Price(float(input_cost), float(output_cost), "config")
    price = litellm_price(model)
    if price is not None:
        return price
    if api_base:
        log.warning("no price known for %s at %s; counting its calls as $0 (set llm.input_cost_per_token and "
                    "llm.output_cost_per_token to budget it)", model, api_base)
        return Price(0.0, 0.0, "free")
    raise LLMConfigError(
        f"litellm has no price for model '{model}', so its dollars cannot be counted; set "
        "llm.input_cost_per_token and llm.output_cost_per_token, or check the model string"
    )


def estimate_prompt_tokens(model: str, messages: Sequence[Message]) -> int:
    """An upper-leaning estimate of the prompt tokens, for the budget's worst-case reservation.

    Takes the larger of litellm's tokenizer count and chars/3 (code tokenizes densely), plus a margin
    for chat framing, so that a reservation is rarely below the provider's real count.
    """
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    try:
        counted = int(litellm().token_counter(model=model, messages=[dict(m) for m in messages]))
    except Exception:  # noqa: BLE001 - fall back to the character estimate
        counted = 0
    return max(counted, math.ceil(chars / 3)) + 8 * len(messages) + 16
