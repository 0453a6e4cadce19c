"""Measured numbers in prompts: shown to the model, left out of the replay key.

A prompt may quote numbers that were measured, not computed (a step-time ratio, say): they differ
from run to run even with `deterministic: true`, so a prompt that quotes them could never be found
again by replay. Prompt builders wrap such text in `measured(...)`; the client sends the text
without the marks (`visible`) and keys replay on the text without the marked spans (`unmeasured`).
The marks are two ASCII control characters that never occur in prompt text.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "\x02", "\x03"  # ASCII "start of text" / "end of text"
_SPAN = re.compile(f"{OPEN}[^{OPEN}{CLOSE}]*{CLOSE}")


def measured(text: str) -> str:
    """Mark `text` as measured: it reaches the model but not the replay key."""
    return f"{OPEN}{visible(str(text))}{CLOSE}"


def visible(text: str) -> str:
    """The text the model sees: marks removed, measured text kept."""
    return text.replace(OPEN, "").replace(CLOSE, "")


def unmeasured(text: str) -> str:
    """The text replay keys on: every measured span removed."""
    return visible(_SPAN.sub("", text))


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` unmeasured characters, never inside a measured span, so that
    `unmeasured(clip(a, n)) == unmeasured(clip(b, n))` when `a` and `b` differ only in measured text."""
    out, used, at = [], 0, 0
    for m in _SPAN.finditer(text):
        plain = text[at:m.start()]
        if used + len(plain) > limit:
            break
        out.append(plain + m.group(0))
        used += len(plain)
        at = m.end()
    out.append(text[at:][: max(limit - used, 0)])  # the rest holds no span, or the cut is before it
    return "".join(out)
