"""The provider's side of an LLM call: what a litellm response holds (a chat completion or embeddings),
and which failures are worth a retry and after how long (`LLMClient` does the retrying)."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

from optforge.llm.parse import normalise_finish_reason
from optforge.llm.pricing import litellm


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header on a litellm/openai error, if there is one."""
    for headers in (getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


def retryable(exc: BaseException) -> bool:
    lt = litellm()
    retry_types = tuple(
        t for t in (
            getattr(lt, "RateLimitError", None), getattr(lt, "Timeout", None),
            getattr(lt, "InternalServerError", None), getattr(lt, "ServiceUnavailableError", None),
            getattr(lt, "BadGatewayError", None), getattr(lt, "APIConnectionError", None),
        ) if isinstance(t, type)
    )
    if isinstance(exc, retry_types):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500 or status == 408)


class BadResponse(ValueError):
    """The provider answered 200 with something that is not a chat completion."""


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    reasoning: str


def unpack_completion(resp: Any) -> Completion:
    """The parts of a litellm ModelResponse we keep. A reply given as a tool call (some servers answer
    a "return JSON" request that way) is kept as its arguments, the JSON text `parse` reads."""
    try:
        choice = resp.choices[0]
        message = choice.message
        content = message.content or ""
        if not content:
            calls = getattr(message, "tool_calls", None) or []
            content = "\n".join(str(c.function.arguments or "") for c in calls)
        reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None) or ""
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
    except (AttributeError, IndexError, TypeError) as e:
        raise BadResponse(f"malformed completion response: {e}") from e
    return Completion(str(content), pt, ct, normalise_finish_reason(getattr(choice, "finish_reason", None)),
                       reasoning if isinstance(reasoning, str) else "")


def unpack_embedding(resp: Any, n: int) -> Completion:
    """An embedding response as a recorded call: the vectors as JSON text (what replay returns)."""
    try:
        data = sorted(resp.data, key=lambda d: d["index"] if isinstance(d, Mapping) else d.index)
        vectors = [list(d["embedding"] if isinstance(d, Mapping) else d.embedding) for d in data]
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
    except (AttributeError, KeyError, IndexError, TypeError) as e:
        raise BadResponse(f"malformed embedding response: {e}") from e
    if len(vectors) != n or not all(vectors):
        raise BadResponse(f"embedding response has {len(vectors)} vectors for {n} texts")
    return Completion(json.dumps(vectors), pt, 0, "stop", "")
