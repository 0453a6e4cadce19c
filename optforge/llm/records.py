"""The record of one LLM call, handed to the engine's recorder (the store's llm_calls table)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from optforge.llm.measured import unmeasured, visible

Message = Mapping[str, str]


# the error of a call recorded before its request is sent: a run killed while it waits leaves this
# record, so the request still counts for budget.max_llm_calls when the run is resumed
IN_FLIGHT = "in flight: the request was sent and no answer was recorded (the run stopped while it waited)"


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
    """Stable hash of a prompt's canonical text."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24]


def sent_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """The messages as the model gets them: measured text kept, its marks removed."""
    return [{"role": m["role"], "content": visible(str(m["content"]))} for m in messages]


def replay_key(messages: Sequence[Message]) -> str:
    """The replay key of a request: the hash of its canonical text without the measured spans
    (`optforge.llm.measured`). Equal to `prompt_hash(prompt_text(messages))` when nothing is marked."""
    return prompt_hash(prompt_text([{"role": m["role"], "content": unmeasured(str(m["content"]))} for m in messages]))


def request_key(kind: str, model: str, replay_hash: str, params: Mapping[str, Any]) -> str:
    """The key of a request as a resumed run asks it again (`optforge.llm.resumed`): its kind ("chat" or
    "embed"), model, replay key and sampling params (temperature, max_tokens, `llm.extra`). Two requests
    with equal keys would be sent with equal bodies, measured text aside."""
    text = json.dumps([kind, model, replay_hash, dict(params)], sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


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
    prompt_hash: str  # the replay key (`replay_key`), not always the hash of `prompt`
    error: str = ""  # empty on success; the last error when every retry failed
    attempts: int = 1  # HTTP requests made for this call (1 + retries); each counts for budget.max_llm_calls
    finish_reason: str = ""  # why the model stopped ("stop", "length", ...); "" when unknown or failed
    reasoning: str = ""  # a reasoning field the provider returned apart from the content
    call_id: str = ""  # one id per call: its in-flight record is replaced by its final one
    request_key: str = ""  # `request_key`: what a resumed run matches a recorded answer on

    @property
    def in_flight(self) -> bool:
        return self.error == IN_FLIGHT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
