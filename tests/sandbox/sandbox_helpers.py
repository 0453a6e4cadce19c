"""Shared helpers of the sandbox tests (a module of its own: with --import-mode=importlib a test
file cannot import from conftest)."""

from __future__ import annotations

import os
import time
from pathlib import Path

REDTEAM = Path(__file__).parent / "redteam"


def redteam(name: str, **consts: object) -> str:
    """A red-team candidate source, with its module constants (PORT, TARGET, TOKEN) filled in."""
    text = (REDTEAM / f"{name}.py").read_text()
    for key, value in consts.items():
        lines = text.splitlines()
        idx = next(i for i, ln in enumerate(lines) if ln.startswith(f"{key} = "))
        lines[idx] = f"{key} = {value!r}"
        text = "\n".join(lines) + "\n"
    return text


def processes_of_uid(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            out.append(int(d))
                        break
        except OSError:
            continue
    return out


def wait_no_processes(uid: int | None, within: float = 3.0) -> list[int]:
    """Processes still owned by the job's uid after `within` seconds (empty = nothing left behind)."""
    if uid is None or uid == os.getuid():
        return []  # the job kept our own uid (degraded mode): its processes cannot be told apart this way
    end = time.monotonic() + within
    left = processes_of_uid(uid)
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = processes_of_uid(uid)
    return left


def processes_with_arg(token: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if token.encode() in f.read().split(b"\0"):
                        out.append(int(d))
            except OSError:
                continue
    return out
