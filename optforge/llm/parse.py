"""Turn an LLM response into rule source: a full rewrite in a code block, or SEARCH/REPLACE diffs
applied to the parent. Anything unusable becomes a reason, never an exception, so that a bad
response ends as an `invalid` candidate whose reason reaches the next prompt.

Diff format (as in OpenEvolve / aider):

    <<<<<<< SEARCH
    exact lines of the parent
    =======
    replacement lines
    >>>>>>> REPLACE
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from optforge.rule import check_rule

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_DIFF = re.compile(
    r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


class DiffError(ValueError):
    """A SEARCH block does not match the parent."""


@dataclass(frozen=True)
class Parsed:
    """The outcome of parsing one response. `reason` is empty when `source` is a checked rule."""

    source: str | None
    kind: str  # "diff" | "full" | "none"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.source is not None and not self.reason


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks (```python ... ```), in order; an unterminated last fence is included."""
    blocks = []
    for m in _FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang and lang not in ("python", "py", "python3", "diff"):
            continue
        blocks.append(m.group(2).strip("\n") + "\n")
    return blocks


def diff_blocks(text: str) -> list[tuple[str, str]]:
    """(search, replace) pairs in order."""
    return [(m.group(1), m.group(2)) for m in _DIFF.finditer(text)]


def apply_diffs(parent: str, blocks: list[tuple[str, str]]) -> str:
    """Apply each SEARCH/REPLACE to the text so far; exact match first, then line match ignoring
    trailing whitespace and common indentation. Raises DiffError naming the failing block."""
    out = parent
    for i, (search, replace) in enumerate(blocks, 1):
        if not search.strip():
            raise DiffError(f"diff block {i} has an empty SEARCH part; copy the exact parent lines to change")
        at = _line_start_find(out, search)
        if at >= 0:
            out = out[:at] + replace + out[at + len(search):]
            continue
        replaced = _fuzzy_replace(out, search, replace)
        if replaced is None:
            first = search.strip().splitlines()[0][:80]
            raise DiffError(f"diff block {i}: its SEARCH text (starting '{first}') is not in the parent; "
                            "SEARCH must copy the parent's lines exactly")
        out = replaced
    return out


def _line_start_find(text: str, search: str) -> int:
    """Index of the first occurrence of `search` that starts at a line start, or -1."""
    at = text.find(search)
    while at >= 0:
        if at == 0 or text[at - 1] == "\n" or search.startswith("\n"):
            return at
        at = text.find(search, at + 1)
    return -1


def _fuzzy_replace(text: str, search: str, replace: str) -> str | None:
    lines = text.splitlines(keepends=True)
    want = [ln.strip() for ln in search.strip("\n").splitlines()]
    n = len(want)
    for start in range(len(lines) - n + 1):
        if [ln.strip() for ln in lines[start:start + n]] == want:
            indent = re.match(r"[ \t]*", lines[start]).group(0)
            s_indent = re.match(r"[ \t]*", search.strip("\n").splitlines()[0]).group(0)
            new = []
            for ln in replace.strip("\n").splitlines():
                new.append((indent + ln[len(s_indent):] if ln.startswith(s_indent) else ln) + "\n")
            return "".join(lines[:start] + new + lines[start + n:])
    return None


def parse_response(text: str, parent: str | None = None) -> Parsed:
    """Parse a response into a checked rule source, or a reason it cannot be one.

    SEARCH/REPLACE blocks are applied to `parent` when present; otherwise the last code block that
    defines `update` is taken as a full rewrite (weak models often answer a diff prompt that way).
    """
    if not text or not text.strip():
        return Parsed(None, "none", "empty completion: the model returned no text")
    diffs = diff_blocks(text)
    if diffs:
        if parent is None:
            return Parsed(None, "diff", "the response is a SEARCH/REPLACE diff but there is no parent to apply it to")
        try:
            source = apply_diffs(parent, diffs)
        except DiffError as e:
            return Parsed(None, "diff", f"failed diff: {e}")
        kind = "diff"
    else:
        blocks = [b for b in code_blocks(text) if "def update" in b]
        if blocks:
            source = blocks[-1]
        elif "def update" in text and "```" not in text:
            source = text.strip("\n") + "\n"
        elif "<<<<<<<" in text or ">>>>>>>" in text:
            return Parsed(None, "diff", "malformed diff: use '<<<<<<< SEARCH', '=======', '>>>>>>> REPLACE' lines")
        else:
            return Parsed(None, "none", "no code block defining update() and no SEARCH/REPLACE diff in the response")
        kind = "full"
    if parent is not None and source.strip() == parent.strip():
        return Parsed(source, kind, "no change: the result is identical to the parent")
    problems = check_rule(source)
    if problems:
        return Parsed(source, kind, "rule check failed: " + "; ".join(str(p) for p in problems[:5]))
    return Parsed(source, kind)
