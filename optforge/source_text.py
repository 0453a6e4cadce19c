"""Source text as Python reads it: one place that decodes rule files and normalises LLM answers.

Python itself accepts a UTF-8 byte-order mark and CRLF or CR line endings in a source file, but
`ast.parse` and `compile` of a *string* do not accept the mark, and line-based matching (fences,
SEARCH/REPLACE diffs) does not see "\\r\\n" as "\\n". Everything that turns outside text into rule
source goes through `normalise_text` (a str) or `read_source` (a file). Both also turn no-break
spaces (which models and web pages put in code, and which Python rejects) into plain spaces.
"""

from __future__ import annotations

import codecs
from pathlib import Path

# byte-order marks in the order they must be tested (UTF-32 LE starts with the UTF-16 LE mark)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# spaces that look like a space but are a syntax error in Python code (models and web pages emit them)
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2007": " "})


class SourceDecodeError(ValueError):
    """A file is not text in a Unicode encoding; the message names the file and the bad byte."""


def decode_source(data: bytes, name: str = "<bytes>") -> str:
    """Bytes -> str: the encoding a byte-order mark names, else UTF-8. Raises SourceDecodeError."""
    encoding = "utf-8"
    for bom, enc in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom):], enc
            break
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise SourceDecodeError(
            f"{name} is not {encoding.upper()} text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None


def normalise_text(text: str | bytes) -> str:
    """Decoded text with LF line endings, no byte-order mark, and no-break spaces made plain spaces."""
    if isinstance(text, bytes):
        text = decode_source(text)
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text.translate(_SPACES)


def read_source(path: str | Path) -> str:
    """The normalised text of a source file (a rule file passed on the command line, say)."""
    p = Path(path)
    return normalise_text(decode_source(p.read_bytes(), str(p)))
