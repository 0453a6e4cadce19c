"""Helpers of the procedure tests: a broker loop that answers calls from plain Python functions."""

from __future__ import annotations

import textwrap
from typing import Any, Callable

from optforge.sandbox.procedure import ProcedureCall, ProcedureEnd, ProcedureRun

Answer = Callable[[ProcedureCall], Any]


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def default_answer(call: ProcedureCall) -> Any:
    """llm: echoes the message; llm_batch: one echo per message; utility: the source's length."""
    if call.kind == "llm":
        return "rule for " + call.args["message"]
    if call.kind == "llm_batch":
        return ["rule for " + m for m in call.args["messages"]]
    return float(len(call.args["source"]))


def drive(run: ProcedureRun, answer: Answer = default_answer, *, on_call: Callable[[ProcedureCall], None] | None = None,
          refuse: Callable[[ProcedureCall], str | None] = lambda c: None, budget_s: float = 120.0) -> tuple[ProcedureEnd, list[ProcedureCall]]:
    """Serve `run` to its end; the end and every call it made, in order. `refuse(call)` returns a reason to
    refuse that call, or None to answer it. `budget_s` only stops a broken test from hanging."""
    import time

    calls: list[ProcedureCall] = []
    give_up = time.monotonic() + budget_s
    while time.monotonic() < give_up:
        event = run.poll(timeout=1.0)
        if isinstance(event, ProcedureEnd):
            return event, calls
        if isinstance(event, ProcedureCall):
            calls.append(event)
            if on_call is not None:
                on_call(event)
            why = refuse(event)
            if why is not None:
                run.refuse(event, why)
            else:
                run.answer(event, answer(event))
    return run.kill("died: the test gave up waiting"), calls


def alive(pid: int | None) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its reaper counts as gone)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def wait_gone(*pids: int | None, within_s: float = 30.0) -> bool:
    """True once none of `pids` is alive; False if one still is after `within_s` (a hang guard, not a speed test)."""
    import time

    give_up = time.monotonic() + within_s
    while any(alive(p) for p in pids):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.05)
    return True
