"""When two candidate sources are the same program, decided from the text alone.

The engine lends one candidate's result to another only on this evidence: it is computed in the
trusted process from the source, so a candidate cannot forge it. A numeric fingerprint measured in
the sandbox can be gamed (a rule may recognise the fingerprint's set-up), so it never moves a result.
"""

from __future__ import annotations

import ast
import hashlib


def program_hash(source: str) -> str:
    """A 16-hex-digit hash of the source's abstract syntax tree (`ast.dump`, no line numbers).

    Equal for sources that differ only in comments, blank lines, indentation width, line breaks
    inside brackets or quote style; different as soon as any name, constant, docstring or statement
    differs. Unparseable text hashes as itself (prefixed, so it never equals a parsed program's hash).
    """
    try:
        canon = "ast:" + ast.dump(ast.parse(source))
    except (SyntaxError, ValueError):  # ValueError: NUL bytes in the source
        canon = "text:" + source
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()[:16]
