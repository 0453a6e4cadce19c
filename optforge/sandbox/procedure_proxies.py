"""The three objects a procedure is handed (`llm`, `utility`, `population`) and the channel behind the
first two: in the procedure process, one JSON request line out to the trusted side, one answer line in.
Protocol: `optforge.sandbox.procedure_host`.
"""

from __future__ import annotations

import json
import math
import os
import random
from typing import Any


class CallRefused(Exception):
    """Raised in the procedure when the trusted side refuses one of its calls; the text says why."""


class BrokerGone(BaseException):
    """The trusted side closed the channel: the procedure process exits at once (not catchable by `except Exception`)."""


class Channel:
    """The procedure process's end of the pipe pair: one request line out, one response line in."""

    def __init__(self, in_fd: int, out_fd: int):
        self._in = os.fdopen(in_fd, "rb", buffering=1 << 16)
        self._out = out_fd
        self._next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\n"
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out, view):]
        except BrokenPipeError:
            raise BrokerGone() from None

    def receive(self) -> dict[str, Any]:
        line = self._in.readline()
        if not line:
            raise BrokerGone()
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise BrokerGone()
        return msg

    def call(self, kind: str, args: dict[str, Any]) -> Any:
        self._next_id += 1
        self.send({"id": self._next_id, "kind": kind, **args})
        reply = self.receive()
        if reply.get("id") != self._next_id:
            raise BrokerGone()
        if not reply.get("ok"):
            raise CallRefused(str(reply.get("reason") or "the call was refused"))
        return reply.get("value")


class LLM:
    """The procedure's `llm`: text generation through the trusted broker (on the run's LLM budget)."""

    def __init__(self, channel: Channel):
        self._channel = channel

    def prompt(self, system: str, message: str, temperature: float = 1.0) -> str:
        """One completion of `message` under the system prompt `system`; raises CallRefused when refused,
        ValueError for a temperature that is not a finite number."""
        value = self._channel.call("llm", {"system": as_text(system), "message": as_text(message), "temperature": _finite(temperature)})
        return str(value)

    def prompt_batch(self, system: str, messages: list, temperature: float = 1.0) -> list:
        """One completion per message (one call on the channel); raises CallRefused when refused (a batch
        larger than the run's max_batch is refused too), ValueError for a temperature that is not finite."""
        value = self._channel.call(
            "llm_batch", {"system": as_text(system), "messages": [as_text(m) for m in messages], "temperature": _finite(temperature)}
        )
        return [str(v) for v in value] if isinstance(value, list) else []


def as_text(value: Any) -> str:
    """`str(value)` as valid Unicode: a lone surrogate (chr(0xd800)) becomes "?", so that the broker can
    encode every string it is handed (the trusted side refuses a string it cannot)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _finite(temperature: Any) -> float:
    t = float(temperature)
    if not math.isfinite(t):
        raise ValueError(f"temperature must be a finite number, not {t!r}")
    return t


class Utility:
    """The procedure's `utility(source, subtask) -> float`: the fitness of a rule on a subtask, HIGHER
    IS BETTER (optforge fitness). Evaluated by the trusted broker; an answer that is not a number (None:
    the rule failed; NaN) reads as -inf; raises CallRefused when refused."""

    def __init__(self, channel: Channel):
        self._channel = channel

    def __call__(self, source: str, subtask: str) -> float:
        value = self._channel.call("utility", {"source": as_text(source), "subtask": as_text(subtask)})
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        return float(value) if number else -math.inf


class Population:
    """The procedure's `population`: entries {"idea", "source", "utility"} sorted best first (higher
    utility is better), read by index, sampled by rank, or counted. Entries are copies."""

    def __init__(self, entries: list[dict[str, Any]]):
        def key(e: dict[str, Any]) -> float:
            u = e.get("utility")
            return -float(u) if isinstance(u, (int, float)) and not isinstance(u, bool) and not math.isnan(u) else math.inf

        self._entries = sorted((dict(e) for e in entries), key=key)

    def get(self, index: int) -> dict[str, Any]:
        """The entry of rank `index` (0 is the best); IndexError outside 0..size()-1."""
        if not isinstance(index, int) or not 0 <= index < len(self._entries):
            raise IndexError(f"population index {index!r} is out of range 0..{len(self._entries) - 1}")
        return dict(self._entries[index])

    def sample(self) -> dict[str, Any]:
        """A rank-sampled entry: P(rank r) proportional to 1 / (r + size / 2), drawn with the seeded `random`."""
        n = len(self._entries)
        if n == 0:
            raise IndexError("the population is empty")
        weights = [1.0 / (r + n / 2.0) for r in range(n)]
        return dict(random.choices(self._entries, weights=weights)[0])

    def size(self) -> int:
        """How many entries there are."""
        return len(self._entries)
