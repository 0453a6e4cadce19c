"""In the procedure process: check the procedure again, load it with a minimal builtins table and an
`__import__` of the six allowed modules, call `improve` with the three proxies, and turn what it
returned or raised into the end message (with the line in the procedure's own source, never a
trusted-side traceback).
"""

from __future__ import annotations

import builtins
import random
import sys
import traceback
from typing import Any

from optforge.sandbox.procedure_policy import ALLOWED_MODULES, ENTRY_POINT, PROCEDURE_POLICY, check_procedure
from optforge.sandbox.procedure_proxies import LLM, BrokerGone, Channel, Population, Utility, as_text

PROCEDURE_FILENAME = "<procedure>"


def _safe_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    """`__import__` for the procedure: the allowed modules only (already loaded by this module)."""
    if level or name not in ALLOWED_MODULES:
        raise ImportError(f"import of {name!r} is not allowed in a procedure; allowed: {', '.join(ALLOWED_MODULES)}")
    return sys.modules[name]


def _procedure_builtins() -> dict[str, Any]:
    table = {n: getattr(builtins, n) for n in PROCEDURE_POLICY.builtins if hasattr(builtins, n)}
    table["__import__"] = _safe_import
    return table


def run_procedure(start: dict[str, Any], channel: Channel) -> dict[str, Any]:
    """Check, load and call the procedure; the end message."""
    source = str(start["source"])
    problems = check_procedure(source)
    if problems:
        text = "; ".join(str(p) for p in problems[:8])
        return {"kind": "end", "ok": False, "reason": "policy", "error": {"type": "PolicyViolation", "message": text}}
    random.seed(int(start["seed"]))
    namespace: dict[str, Any] = {"__builtins__": _procedure_builtins(), "__name__": "procedure"}
    try:
        exec(compile(source, PROCEDURE_FILENAME, "exec"), namespace)  # noqa: S102 - checked above, isolated here
        improve = namespace.get(ENTRY_POINT)
        if not callable(improve):
            return _failed("no_result", "NameError", f"the procedure defines no {ENTRY_POINT}() function")
        result = improve(Population(start.get("population") or []), Utility(channel), LLM(channel), str(start.get("task", "")))
    except BrokerGone:
        raise
    except MemoryError as e:
        return _failed("memory", "MemoryError", _message(e) or "out of memory", *_procedure_line(e, source))
    except BaseException as e:  # noqa: BLE001 - whatever the procedure raises is its result
        return _failed("exception", type(e).__name__, _message(e), *_procedure_line(e, source))
    return _result(result)


def _result(result: Any) -> dict[str, Any]:
    if result is None:
        return _failed("no_result", "ValueError", f"{ENTRY_POINT}() returned None; return the best rule's source")
    if isinstance(result, str):
        result = {"source": result}
    if not isinstance(result, dict):
        return _failed("bad_result", "TypeError", f"{ENTRY_POINT}() returned a {type(result).__name__}; return the "
                       "best rule's source (a str) or a dict {'source': str, 'idea': str}")
    source, idea = result.get("source"), result.get("idea", "")
    if not isinstance(source, str) or not isinstance(idea, (str, type(None))):
        return _failed("bad_result", "TypeError", f"{ENTRY_POINT}() returned a dict whose 'source' is not a str or "
                       "whose 'idea' is not a str")
    if not source.strip():
        return _failed("no_result", "ValueError", f"{ENTRY_POINT}() returned an empty source")
    return {"kind": "end", "ok": True, "value": {"source": as_text(source), "idea": as_text(idea or "")}}


def _message(exc: BaseException) -> str:
    """str(exc), which is the procedure's code too: ValueError(a list nested 100,000 deep) cannot be shown."""
    try:
        return str(exc)[:2000]
    except BaseException:  # noqa: BLE001
        return f"(the {type(exc).__name__}'s message could not be turned into text)"


def _failed(reason: str, type_name: str, message: str, line: int | None = None, line_text: str | None = None) -> dict[str, Any]:
    return {"kind": "end", "ok": False, "reason": reason,
            "error": {"type": type_name, "message": message[:2000], "line": line, "line_text": line_text}}


def _procedure_line(exc: BaseException, source: str) -> tuple[int | None, str | None]:
    """The innermost line of the procedure's own source in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == PROCEDURE_FILENAME:
            line = frame.lineno
    if line is None:
        return None, None
    lines = source.splitlines()
    return line, (lines[line - 1].strip()[:200] if 0 < line <= len(lines) else None)
