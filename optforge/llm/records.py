"""The record of one LLM call, handed to the engine's recorder (the store's llm_calls table)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

Message = Mapping[str, str]


def prompt_text(messages: Sequence[Message]) -> str:
    """The canonical text of a chat request: what is stored as `prompt` and what replay hashes.

    A single user message is stored as its content; several messages are stored as JSON, so the
    text maps back onto the exact messages.
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return str(messages[0].get("content", ""))
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False)


def messages_from_prompt(prompt: str) -> list[dict[str, str]]:
    """Inverse of `prompt_text`."""
    if prompt.startswith("[{"):
        try:
            data = json.loads(prompt)
            if isinstance(data, list) and all(isinstance(m, dict) and "role" in m for m in data):
                return [{"role": m["role"], "content": m["content"]} for m in data]
        except json.JSONDecodeError:
            pass
    return [{"role": "user", "content": prompt}]


def prompt_hash(prompt: str) -> str:
    """Stable hash of a prompt's canonical text (the replay key)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class LLMCall:
    """One completed (or failed) LLM call: what was asked, what came back, what it cost."""

    model: str
    prompt: str
    response: str
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    latency_s: float
    created: float
    prompt_hash: str
    error: str = ""  # empty on success; the last error when every retry failed
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
