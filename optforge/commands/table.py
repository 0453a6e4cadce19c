"""Plain-text tables for the CLI: each column as wide as its widest cell, so long ids and names never
push a row out of line; `signed` writes a score the way every table shows one; `clipped` cuts a long
text visibly."""

from __future__ import annotations

from typing import Any, Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = (),
                 gap: str = "  ") -> list[str]:
    """The lines of a table: `header`, then `rows` (cells shown with str()); columns whose index is in
    `right` are right-aligned (numbers), the others left-aligned. Trailing spaces are dropped."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(header))]
        lines.append(gap.join(parts).rstrip())
    return lines


def signed(v: Any) -> str:
    """A score with its sign and three decimals ("-" for None)."""
    return "-" if v is None else f"{float(v):+.3f}"


def clipped(text: str, limit: int | None, how: str = "") -> str:
    """`text` cut to `limit` characters (None: all of it), with a marker saying how many characters are
    left out and, with `how`, how to see them: `... (+N chars; how)`."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\u2026 (+{len(text) - limit} chars{'; ' + how if how else ''})"
