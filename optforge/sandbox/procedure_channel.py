"""The trusted end of one procedure host process: it starts the host, moves bytes on the pipe pair
without blocking, reads the host's status reports and the stderr tail, reads the procedure's CPU
time from /proc, and kills the lot. What the bytes mean is `procedure_run`'s job.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
from typing import Any

from optforge.sandbox.layers import caller_homes, undumpable
from optforge.sandbox.procedure_records import ProcedureLimits
from optforge.sandbox.transport import python_command

HOST_MODULE = "optforge.sandbox.procedure_host"
_TAIL_BYTES = 4096


class HostChannel:
    """One procedure host process and its pipes (the base of `ProcedureRun`); not thread-safe."""

    def __init__(self, limits: ProcedureLimits):
        self.limits = limits
        self.pid: int | None = None  # the host process (its process group holds the procedure too)
        self.child_pid: int | None = None  # the procedure process
        self._proc: subprocess.Popen | None = None
        self._to_child = self._from_child = -1
        self._status: socket.socket | None = None
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._statusbuf = bytearray()
        self._stderr = bytearray()
        self._exit: dict[str, Any] | None = None
        self._channel_closed = False
        self._closed_at: float | None = None
        self._write_since: float | None = None
        self._cpu_seen = 0.0

    def _launch(self, start: dict[str, Any], host_args: tuple[str, ...] = ("-m", HOST_MODULE)) -> None:
        """Start the host process (`python *host_args IN OUT STATUS CPU_S MEMORY_MB DISABLED HOMES`) and queue the start message."""
        undumpable()  # the broker holds the LLM API key: no same-uid process reads our /proc/<pid>/environ
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        status_ours, status_host = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv, env = python_command(*host_args, str(to_r), str(from_w), str(status_host.fileno()),
                                   repr(float(self.limits.cpu_s)), str(int(self.limits.memory_mb)), ",".join(disabled_layers()) or "-",
                                   json.dumps(caller_homes()))
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                # string hashing fixed: a procedure iterating over a set of strings replays in the same order
                pass_fds=(to_r, from_w, status_host.fileno()), env={**env, "PYTHONHASHSEED": "0"}, cwd="/",
                start_new_session=True, close_fds=True,
            )
        except OSError:
            for fd in (to_r, to_w, from_r, from_w):
                os.close(fd)
            status_ours.close()
            raise
        finally:
            status_host.close()
        os.close(to_r)
        os.close(from_w)
        self.pid = self._proc.pid
        self._to_child, self._from_child, self._status = to_w, from_r, status_ours
        for fd in (to_w, from_r, status_ours.fileno(), self._proc.stderr.fileno()):  # type: ignore[union-attr]
            os.set_blocking(fd, False)
        self._outbuf += json.dumps(start).encode("utf-8") + b"\n"
        self._write_since = time.monotonic()

    def _take_line(self) -> bytes | None:
        i = self._inbuf.find(b"\n")
        if i < 0:
            return None
        line = bytes(self._inbuf[:i])
        del self._inbuf[: i + 1]
        return line

    def _send(self, data: bytes) -> None:
        """Queue one line to the procedure and write what it will take now."""
        if not self._outbuf:
            self._write_since = time.monotonic()
        self._outbuf += data
        self._flush()

    def _flush(self) -> None:
        while self._outbuf and self._to_child >= 0:
            try:
                n = os.write(self._to_child, self._outbuf[: 1 << 16])
            except BlockingIOError:
                return
            except OSError:  # the procedure's end is closed: its death shows on the other pipe
                self._outbuf.clear()
                return
            del self._outbuf[:n]
            self._write_since = time.monotonic()
        if not self._outbuf:
            self._write_since = None

    def _wait(self, timeout: float) -> None:
        """Wait for input (or room to write) up to `timeout`; read what came."""
        err = self._proc.stderr if self._proc is not None else None
        reads = [fd for fd in (self._from_child, self._status.fileno() if self._status else -1,
                               err.fileno() if err is not None and not err.closed else -1) if fd >= 0]
        writes = [self._to_child] if self._outbuf and self._to_child >= 0 else []
        if self._channel_closed:
            timeout = min(timeout, 0.05)
        try:
            ready, _, _ = select.select(reads, writes, [], timeout)
        except (OSError, ValueError):
            ready = []
        for fd in ready:
            if fd == self._from_child:
                self._read_channel()
            elif self._status is not None and fd == self._status.fileno():
                self._read_status()
            else:
                self._read_stderr()

    def _read_channel(self) -> None:
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._channel_closed = True
                self._closed_at = time.monotonic()
                os.close(self._from_child)
                self._from_child = -1
                return
            self._inbuf += chunk
            if len(self._inbuf) > self.limits.max_message_bytes + (1 << 16):
                return  # _step refuses it; reading on would only fill our memory

    def _read_status(self) -> None:
        assert self._status is not None
        try:
            chunk = self._status.recv(1 << 12)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._status.close()
            self._status = None
            if self._exit is None:
                self._exit = {"exit": None, "signal": None, "host_gone": True}
            return
        self._statusbuf += chunk
        while b"\n" in self._statusbuf:
            i = self._statusbuf.index(b"\n")
            line, self._statusbuf = bytes(self._statusbuf[:i]), self._statusbuf[i + 1:]
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "child" in msg:
                self.child_pid = int(msg["child"])
            elif "exit" in msg:
                self._exit = msg
                self._cpu_seen = max(self._cpu_seen, float(msg.get("cpu_s") or 0.0))

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        try:
            chunk = os.read(self._proc.stderr.fileno(), 1 << 16)
        except (BlockingIOError, OSError):
            return
        if not chunk:
            self._proc.stderr.close()
            return
        self._stderr += chunk
        del self._stderr[:-_TAIL_BYTES]

    def _cpu_now(self) -> float:
        """The procedure's CPU seconds so far, from /proc (its exit report once it has ended)."""
        if self.child_pid is not None and self._exit is None:
            try:
                with open(f"/proc/{self.child_pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                self._cpu_seen = max(self._cpu_seen, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
            except (OSError, IndexError, ValueError):
                pass
        return self._cpu_seen

    def _await_exit(self) -> None:
        deadline = time.monotonic() + 2.0
        while self._exit is None and self._status is not None and time.monotonic() < deadline:
            self._wait(deadline - time.monotonic())

    def _terminate(self) -> None:
        if self._proc is not None:
            self._cpu_now()
            for kill in (os.killpg, os.kill):  # the group holds host and procedure; the procedure is PID 1 of its namespace
                try:
                    kill(self._proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if self.child_pid is not None:
                try:
                    os.kill(self.child_pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self._proc.wait()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                os.close(fd)
        self._to_child = self._from_child = -1
        if self._status is not None:
            self._status.close()
            self._status = None
        self._outbuf.clear()


def disabled_layers() -> list[str]:
    """The layers OPTFORGE_SANDBOX_DISABLE switches off on purpose (as for sandbox jobs), to see and test
    how a machine without them behaves: "namespaces", "privileges" (the uid switch) and "home_hidden"."""
    named = {x.strip() for x in os.environ.get("OPTFORGE_SANDBOX_DISABLE", "").split(",")}
    return sorted(named & {"namespaces", "privileges", "home_hidden"})
