"""SEARCH/REPLACE diffs (the format of OpenEvolve and aider): find the blocks in an answer and apply
them to the parent source.

    <<<<<<< SEARCH
    exact lines of the parent
    =======
    replacement lines
    >>>>>>> REPLACE

Markers of 5 to 9 characters are accepted. A SEARCH part matches exactly at a line start, or else
line by line ignoring surrounding whitespace (the replacement is then re-indented to the match).
"""

from __future__ import annotations

import re

_DIFF = re.compile(
    r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
SEARCH_LINE = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*$", re.MULTILINE)
_DIVIDER_LINE = re.compile(r"^[ \t]*={5,9}[ \t]*$", re.MULTILINE)
_REPLACE_LINE = re.compile(r"^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$", re.MULTILINE)
_ANY_MARKER = re.compile(r"^[ \t]*(?:<{7}|>{7})", re.MULTILINE)


class DiffError(ValueError):
    """A SEARCH block does not match the parent."""


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


def malformed_diff(text: str, complete: int) -> str:
    """Why the diff markers in `text` do not make `complete` whole blocks ("" when they do)."""
    counts = (len(SEARCH_LINE.findall(text)), len(_DIVIDER_LINE.findall(text)), len(_REPLACE_LINE.findall(text)))
    if counts[0] == counts[2] == complete and (complete or not _ANY_MARKER.search(text)):
        return ""
    return (f"malformed diff: the answer has {counts[0]} '<<<<<<< SEARCH', {counts[1]} '=======' and "
            f"{counts[2]} '>>>>>>> REPLACE' line(s) but {complete} complete block(s); each block needs all "
            "three lines, in that order, each on a line of its own")
