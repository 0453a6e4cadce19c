"""`kill_when`: run one of this folder's driver scripts (a run with the fake evaluator that joins the
test session's Ray) and SIGKILL it at a chosen point, leaving what a kill -9 leaves: the committed
transactions. tests/search/real_engine.kill_at does the same for runs with the real evaluator and a
private Ray."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from optforge.store import Store

HERE = Path(__file__).resolve().parent


def kill_when(driver: str, run_dir: Path, ready: Callable[[Store], bool], ray: Any, *args: str,
              timeout_s: float = 120.0) -> None:
    """Run `python driver RUN_DIR RAY_ADDRESS *args` (`ray`: the session's Ray module) and SIGKILL it
    once `ready(store)` holds for its store, read through a second connection. Fails if the driver
    ends first or `timeout_s` passes."""
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, str(HERE / driver), str(run_dir), address, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"driver exited early: {proc.stderr.read().decode()[-2000:]}"
            if (run_dir / "run.db").exists():
                try:
                    with Store.open(run_dir) as st:
                        if ready(st):
                            os.kill(proc.pid, signal.SIGKILL)
                            proc.wait(timeout=30)
                            return
                except sqlite3.OperationalError:  # the driver is still creating the schema
                    pass
            time.sleep(0.05)
        raise AssertionError(f"the driver made no progress in {timeout_s:.0f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
