"""How the trusted caller reaches a supervisor: the warm template (a Unix socket to a pre-imported
fork server, one per caller process) or a cold spawn (a fresh interpreter per job). Both speak the
same JSON lines (optforge.sandbox.protocol)."""

from __future__ import annotations

import atexit
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

from optforge.sandbox import boot
from optforge.sandbox.layers import scrubbed_env

log = logging.getLogger(__name__)
TEMPLATE_START_S = 120.0


def worker_env() -> dict[str, str]:
    """The environment of every interpreter and job the sandbox starts: scrubbed (see
    `layers.scrubbed_env`), and without PYTHONPATH (see `optforge.sandbox.boot`)."""
    return scrubbed_env()


def import_path() -> list[str]:
    """The caller's `sys.path` as the sandbox's processes get it: '' as the working directory, only
    paths that exist, and the interpreter's standard library first, so that a `re.py` or `random.py`
    in the caller's working directory never stands in for the standard module in a job."""
    paths = [p for p in dict.fromkeys(os.path.abspath(p or os.getcwd()) for p in sys.path) if os.path.exists(p)]
    return sorted(paths, key=lambda p: not _in_stdlib(p))  # stable: the caller's order otherwise


def _in_stdlib(path: str) -> bool:
    real = os.path.realpath(path)
    if set(real.split(os.sep)) & {"site-packages", "dist-packages"}:
        return False
    for root in {os.path.realpath(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib")}:
        # the standard library, lib-dynload below it, and the zipped library beside it (python311.zip)
        if real == root or real.startswith(root + os.sep) or (real.endswith(".zip") and os.path.dirname(real) == os.path.dirname(root)):
            return True
    return False


def python_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment for a sandbox interpreter running `-m MODULE ARGS...` (or `-c CODE ARGS...`):
    through `optforge/sandbox/boot.py`, which sets the caller's import path after the interpreter has
    started, so that the standard library always comes first (a PYTHONPATH entry would precede it).
    Every interpreter the sandbox starts is started this way."""
    env = {**worker_env(), boot.PATH_ENV: os.pathsep.join(import_path())}
    return [sys.executable, boot.__file__, *args], env


class Channel:
    """One job's connection: send the request, read JSON lines with deadlines, kill on give-up."""

    def __init__(self, read_fd: int, write: "callable", closer: "callable", proc: subprocess.Popen | None = None):
        self._fd, self._write, self._closer, self.proc = read_fd, write, closer, proc
        self._buf = bytearray()

    def send(self, data: bytes) -> None:
        self._write(data)

    def readline(self, deadline: float) -> bytes | None:
        """The next line, or None at EOF or when the deadline passes first."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk
        i = self._buf.index(b"\n")
        line = bytes(self._buf[: i + 1])
        del self._buf[: i + 1]
        return line

    def close(self) -> None:
        self._closer()


def cold_channel(workdir: str) -> Channel:
    """A fresh `python -m optforge.sandbox.worker`: slower (imports torch per job), needs no fork server."""
    argv, env = python_command("-m", "optforge.sandbox.worker")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=workdir,
        start_new_session=True,
        close_fds=True,
    )

    def write(data: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()

    def close() -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait()
        if proc.stdout:
            proc.stdout.close()

    assert proc.stdout is not None
    return Channel(proc.stdout.fileno(), write, close, proc)


class WarmTemplate:
    """The fork server of this process, started on first use; a forked or dead one is replaced."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._dir: str | None = None
        self._owner = 0

    @property
    def path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "template.sock")

    def _alive(self) -> bool:
        return self._proc is not None and self._owner == os.getpid() and self._proc.poll() is None

    def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="optforge-template-")
        argv, env = python_command("-m", "optforge.sandbox.template", self.path, str(os.getpid()))
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
            cwd=self._dir,
            start_new_session=True,
            close_fds=True,
        )
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TEMPLATE_START_S)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the warm sandbox template did not start (exit {proc.poll()}); using cold spawns")
        self._proc, self._owner = proc, os.getpid()
        log.debug("warm sandbox template pid %d at %s", proc.pid, self.path)

    def channel(self) -> Channel:
        with self._lock:
            if not self._alive():
                if self._owner == os.getpid():
                    self.stop()
                self._start()
            path = self.path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return Channel(sock.fileno(), sock.sendall, sock.close)

    def stop(self) -> None:
        """Stop the template (jobs already running finish on their own)."""
        if self._proc is not None and self._owner == os.getpid():
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
        if self._dir and self._owner == os.getpid():
            shutil.rmtree(self._dir, ignore_errors=True)
        self._proc, self._dir = None, None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._alive() else None


TEMPLATE = WarmTemplate()
atexit.register(TEMPLATE.stop)
