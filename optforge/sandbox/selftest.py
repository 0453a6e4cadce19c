"""Trusted probe jobs for `optforge doctor`, the tests and the overhead benchmark.

`probe` reports, from inside the sandbox, what the layers actually achieve (it tries the network, a
write outside its directory, looks for secrets and for other processes); `noop` measures the bare
per-job cost. The real training job for the overhead benchmark lives in benchmarks/sandbox_overhead.py.
"""

from __future__ import annotations

import os
import socket
from typing import Any

PROBE_SOURCE = "LR = 1e-3\n"
"""The candidate source handed to `probe`; it is never executed."""


def probe(source: str, payload: dict) -> dict[str, Any]:
    """What the job process can do here. Each field True means the isolation held."""
    facts: dict[str, Any] = {"uid": os.getuid(), "pid": os.getpid()}
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        s.connect(("127.0.0.1", int(payload.get("port", 9))))
        facts["network_blocked"] = False
    except OSError as e:
        facts["network_blocked"] = "unreachable" in str(e).lower() or getattr(e, "errno", 0) in (101, 99, 1, 13)
    finally:
        s.close()
    target = payload.get("write_probe")
    if target:
        try:
            with open(target, "w") as f:
                f.write("escaped")
            facts["write_blocked"] = False
        except OSError:
            facts["write_blocked"] = True
    markers = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
    facts["secrets_seen"] = sorted(k for k in os.environ if any(m in k.upper() for m in markers))
    try:
        facts["processes_visible"] = len([d for d in os.listdir("/proc") if d.isdigit()])
    except OSError:
        facts["processes_visible"] = -1
    facts["tmp_entries"] = len(os.listdir("/tmp")) if os.path.isdir("/tmp") else -1
    return facts


def noop(source: str, payload: dict) -> dict[str, Any]:
    """Does nothing: its round trip is the sandbox's own per-job cost."""
    return {}
