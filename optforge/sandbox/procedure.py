"""The trusted side of a procedure run: the transport a broker drives (no LLM or engine knowledge here).

    box = ProcedureSandbox(ProcedureLimits(cpu_s=60, max_calls=200))
    run = box.start(source, population=[{"idea", "source", "utility"}, ...], task="...", seed=0)
    while True:
        event = run.poll(timeout=1.0)
        if isinstance(event, ProcedureCall):   # kind "llm" | "llm_batch" | "utility", args a dict
            run.answer(event, value)           # or run.refuse(event, "why"): the procedure sees CallRefused
        elif isinstance(event, ProcedureEnd):  # status "ok" (value {"source", "idea"}) or "failed" (reason)
            break

A procedure is untrusted code (an LLM-written `improve(population, utility, llm, task)`); it runs in
its own process under `optforge.sandbox.procedure_host` (namespaces, read-only mounts, rlimits, a
scrubbed environment; see docs/security.md) and reaches the broker only through JSON lines on a pipe
pair. This side validates every line (size, JSON, order, one call out at a time) and enforces:

- cpu_s: the procedure's own CPU seconds (RLIMIT_CPU in the kernel, and a watchdog here that reads
  its CPU time from /proc);
- wall_s: wall-clock seconds from the moment its sandbox is ready (START_GRACE_S bounds getting
  there), EXCLUDING the time while a call is out (from the moment poll() returns a call until
  answer() or refuse());
- max_calls: requests on the channel (a prompt_batch is one); the call past the limit is not
  handed to the broker, the run ends with `call_limit`;
- max_batch: messages in one prompt_batch; a larger batch is refused here (the procedure sees
  CallRefused and may go on), never handed to the broker, and counts as a call;
- memory_mb: address space (RLIMIT_AS);
- max_message_bytes: one line from the procedure.

`ProcedureEnd.reason` is "word: text" with the word one of FAILURE_WORDS. Not thread-safe: one
broker drives a run. A run whose ProcedureRun is dropped without kill() is killed at garbage
collection; its processes also die when this process dies.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from optforge.sandbox.policy import Violation
from optforge.sandbox.procedure_host import EXIT_CPU_LIMIT
from optforge.sandbox.procedure_policy import check_procedure
from optforge.sandbox.transport import worker_env
from optforge.types import clean_text

FAILURE_WORDS = (
    "policy",  # the checker refused the source (the violations, with lines)
    "exception",  # the procedure raised (type, message and its own line)
    "no_result",  # improve() returned nothing (None, an empty source) or is not defined
    "bad_result",  # improve() returned something that is not a source or {"source", "idea"}
    "cpu_time",  # it used its CPU seconds
    "wall_time",  # it used its wall-clock seconds (calls out not counted)
    "call_limit",  # it asked for more than max_calls calls
    "bad_channel",  # malformed JSON, an oversized line, a request out of order or while one is out
    "died",  # its process died (or could not start) without an end message, or was killed
    "memory",  # it ran out of its address space
)
CALL_KINDS = ("llm", "llm_batch", "utility")
HOST_MODULE = "optforge.sandbox.procedure_host"
START_GRACE_S = 60.0  # from launch to "ready": a fresh interpreter on a loaded machine; not the procedure's time
_STATUS_GRACE_S = 5.0  # how long the host may take to report the procedure's exit after its channel closed
_WRITE_STALL_S = 30.0  # a procedure that leaves an answer unread this long has broken the channel
_CPU_SLACK_S = 3.0  # the watchdog acts this long after the kernel's limit should have (RLIMIT_CPU hard = soft + 2)
_TAIL_BYTES = 4096
_REASON_CHARS = 4000  # of a failure text the procedure wrote (its exception message, the policy's findings)
_WATCH_S = 0.5  # how often a waiting poll() looks at the CPU watchdog and the start grace


@dataclass(frozen=True)
class ProcedureLimits:
    """What one procedure run may use. `wall_s` excludes the time while a call is out."""

    cpu_s: float = 60.0
    wall_s: float = 300.0
    max_calls: int = 200
    memory_mb: int = 1024
    max_message_bytes: int = 1 << 20
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not (self.cpu_s > 0 and self.wall_s > 0 and self.max_calls >= 0 and self.memory_mb >= 64
                and self.max_message_bytes >= 1024 and self.max_batch >= 1):
            raise ValueError(f"procedure limits out of range: {self}; need cpu_s > 0, wall_s > 0, max_calls >= 0, "
                             "memory_mb >= 64, max_message_bytes >= 1024, max_batch >= 1")


@dataclass(frozen=True)
class ProcedureCall:
    """One request of the procedure's, for the broker to answer or refuse.

    kind "llm": args {"system": str, "message": str, "temperature": float} -> answer a str;
    kind "llm_batch": args {"system": str, "messages": [str], "temperature": float} -> a list of str, one per message;
    kind "utility": args {"source": str, "subtask": str} -> a float, HIGHER IS BETTER (optforge fitness).
    `call_id` counts from 1 in the order the procedure made them."""

    run_id: str
    call_id: int
    kind: str
    args: dict


@dataclass(frozen=True)
class ProcedureEnd:
    """How a run ended. status "ok": value is {"source": str, "idea": str}; status "failed": reason is
    "word: text" (word in FAILURE_WORDS) and value None. calls: requests made (the one refused at the
    call limit included); cpu_s: the procedure's CPU seconds; wall_s: its wall-clock seconds without
    calls out; layers: the isolation layers that held."""

    run_id: str
    status: str
    reason: str | None
    value: dict | None
    calls: int
    cpu_s: float
    wall_s: float = 0.0
    layers: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failure(self) -> str | None:
        """The reason's word ("cpu_time", "policy", ...), None when ok."""
        return None if self.reason is None else self.reason.split(":", 1)[0]


class ProcedureRun:
    """One running procedure, as its broker sees it (see the module docstring)."""

    def __init__(self, run_id: str, limits: ProcedureLimits):
        self.run_id = run_id
        self.limits = limits
        self.layers: dict[str, bool] = {}
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
        self._end: ProcedureEnd | None = None
        self._out: ProcedureCall | None = None  # the call handed to the broker and not answered yet
        self._calls = 0
        self._ready = False
        self._channel_closed = False
        self._closed_at: float | None = None
        self._write_since: float | None = None
        self._wall_used = 0.0
        self._running_since: float | None = None  # the wall clock runs from "ready" while no call is out
        self._launched_at = time.monotonic()
        self._cpu_seen = 0.0

    # ------------------------------------------------------------------------------ broker API
    def poll(self, timeout: float = 0.0) -> ProcedureCall | ProcedureEnd | None:
        """The next call or the end, waiting up to `timeout` seconds; None if neither came. After the
        end, always that end. Between a call and its answer, only the end can come (the procedure
        dying, or breaking the channel)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self._end is None:
            event = self._step()
            if event is not None:
                return event
            now = time.monotonic()
            if now >= deadline:
                return None
            wait = min(deadline - now, _WATCH_S)
            if self._running_since is not None:
                wait = min(wait, max(0.0, self.limits.wall_s - self._wall()) + 0.01)
            self._wait(wait)
        return self._end

    def answer(self, call: ProcedureCall, value: Any) -> None:
        """Answer the call that is out with `value` (JSON-able). A no-op once the run has ended."""
        self._reply(call, {"id": call.call_id, "ok": True, "value": value})

    def refuse(self, call: ProcedureCall, reason: str) -> None:
        """Refuse the call that is out: the procedure sees CallRefused(reason) and may go on."""
        self._reply(call, {"id": call.call_id, "ok": False, "reason": clean_text(str(reason))})

    def kill(self, reason: str) -> ProcedureEnd:
        """End the run now (its whole process group and PID namespace); `reason` becomes the end's
        reason ("died: ..." if it names no word of FAILURE_WORDS). An ended run keeps its end."""
        if self._end is None:
            word = reason.split(":", 1)[0].strip()
            self._finish("failed", reason if word in FAILURE_WORDS else f"died: {reason}", None)
        return self._end  # type: ignore[return-value]

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def ended(self) -> ProcedureEnd | None:
        return self._end

    # ------------------------------------------------------------------------------ internals
    def _launch(self, start: dict[str, Any], host_args: tuple[str, ...] = ("-m", HOST_MODULE)) -> None:
        """Start the host process (`python *host_args IN OUT STATUS CPU_S MEMORY_MB DISABLED`) and queue the start message."""
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        status_ours, status_host = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, *host_args, str(to_r), str(from_w), str(status_host.fileno()),
                 repr(float(self.limits.cpu_s)), str(int(self.limits.memory_mb)), ",".join(_disabled()) or "-"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                # string hashing fixed: a procedure iterating over a set of strings replays in the same order
                pass_fds=(to_r, from_w, status_host.fileno()), env={**worker_env(), "PYTHONHASHSEED": "0"}, cwd="/",
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

    def _wall(self) -> float:
        running = time.monotonic() - self._running_since if self._running_since is not None else 0.0
        return self._wall_used + running

    def _pause(self) -> None:
        if self._running_since is not None:
            self._wall_used += time.monotonic() - self._running_since
            self._running_since = None

    def _step(self) -> ProcedureCall | ProcedureEnd | None:
        """Act on what is buffered and on the watchdogs; an event, or None when there is nothing yet."""
        self._flush()
        while self._end is None:
            line = self._take_line()
            if line is None:
                break
            event = self._on_line(line)
            if event is not None:
                return event
        if self._end is not None:
            return self._end
        if len(self._inbuf) > self.limits.max_message_bytes:
            return self.kill(f"bad_channel: the procedure sent a line of more than {self.limits.max_message_bytes} bytes")
        if self._channel_closed:
            if self._exit is not None or (self._closed_at is not None and time.monotonic() - self._closed_at > _STATUS_GRACE_S):
                return self._finish("failed", self._death_reason(), None)
            return None
        if not self._ready and time.monotonic() - self._launched_at > START_GRACE_S:
            return self.kill(f"died: the procedure's sandbox was not ready within {START_GRACE_S:g} s")
        if self._running_since is not None and self._wall() > self.limits.wall_s:
            return self.kill(f"wall_time: the procedure ran for more than its {self.limits.wall_s:g} s of wall-clock "
                             "time (time while a call was out not counted) and was killed")
        if self._cpu_now() > self.limits.cpu_s + _CPU_SLACK_S:
            return self.kill(f"cpu_time: the procedure used more than its {self.limits.cpu_s:g} s of CPU time and was killed")
        if self._outbuf and self._write_since is not None and time.monotonic() - self._write_since > _WRITE_STALL_S:
            return self.kill(f"bad_channel: the procedure left its input unread for {_WRITE_STALL_S:g} s")
        return None

    def _take_line(self) -> bytes | None:
        i = self._inbuf.find(b"\n")
        if i < 0:
            return None
        line = bytes(self._inbuf[:i])
        del self._inbuf[: i + 1]
        return line

    def _on_line(self, line: bytes) -> ProcedureCall | ProcedureEnd | None:
        if len(line) > self.limits.max_message_bytes:
            return self.kill(f"bad_channel: the procedure sent a line of {len(line)} bytes (limit {self.limits.max_message_bytes})")
        try:
            msg = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return self.kill(f"bad_channel: the procedure sent a line that is not JSON ({_preview(line)})")
        except RecursionError:  # "[[[[...": the decoder recurses once per level
            return self.kill(f"bad_channel: the procedure sent JSON nested too deeply to read ({_preview(line)})")
        if not isinstance(msg, dict):
            return self.kill(f"bad_channel: the procedure sent JSON that is not an object ({_preview(line)})")
        kind = msg.get("kind")
        if kind == "ready" and not self._ready:
            self._ready = True
            self._running_since = time.monotonic()
            layers = msg.get("layers")
            self.layers = {str(k): bool(v) for k, v in layers.items()} if isinstance(layers, dict) else {}
            return None
        if not self._ready:
            return self.kill(f"bad_channel: the procedure spoke before its sandbox was ready ({_preview(line)})")
        if kind == "end":
            return self._on_end(msg)
        if kind in CALL_KINDS:
            return self._on_call(kind, msg, line)
        return self.kill(f"bad_channel: the procedure sent a message of unknown kind ({_preview(line)})")

    def _on_call(self, kind: str, msg: dict[str, Any], line: bytes) -> ProcedureCall | ProcedureEnd | None:
        if self._out is not None:
            return self.kill(f"bad_channel: the procedure sent a request while call {self._out.call_id} was out "
                             f"(a flood: {_preview(line)})")
        if type(msg.get("id")) is not int or msg["id"] != self._calls + 1:  # true == 1.0 == 1 in Python
            return self.kill(f"bad_channel: request id {_scalar(msg.get('id')) or 'none'} out of order; expected {self._calls + 1}")
        args = {k: v for k, v in msg.items() if k not in ("id", "kind")}
        problem = _bad_args(kind, args)
        if problem:
            return self.kill(f"bad_channel: a {kind} request {problem}")
        self._calls += 1
        if self._calls > self.limits.max_calls:
            return self.kill(f"call_limit: the procedure asked for call {self._calls}, more than its "
                             f"{self.limits.max_calls} calls; the call was refused and the run ended")
        if kind == "llm_batch" and len(args["messages"]) > self.limits.max_batch:
            # one call on the channel must not stand for an unbounded number of completions
            why = (f"a prompt_batch may hold at most {self.limits.max_batch} messages, this one holds "
                   f"{len(args['messages'])}; split it into smaller batches")
            self._send(json.dumps({"id": self._calls, "ok": False, "reason": why}).encode("utf-8") + b"\n")
            return None
        self._pause()
        self._out = ProcedureCall(self.run_id, self._calls, kind, args)
        return self._out

    def _on_end(self, msg: dict[str, Any]) -> ProcedureEnd:
        if self._out is not None:
            return self.kill(f"bad_channel: the procedure ended while call {self._out.call_id} was out")
        if msg.get("ok") is True:
            value = msg.get("value")
            if (isinstance(value, dict) and _is_text(value.get("source")) and value["source"].strip()
                    and _is_text(value.get("idea", ""))):
                return self._finish("ok", None, {"source": value["source"], "idea": value.get("idea", "")})
            return self.kill("bad_channel: the procedure's end message carries no valid result")
        # str() of a JSON value nested hundreds deep would recurse in the broker: only scalars are shown
        err = {k: _scalar(v) for k, v in msg["error"].items()} if isinstance(msg.get("error"), dict) else {}
        word = _scalar(msg.get("reason"))
        if word == "setup":
            word, text = "died", f"the procedure process could not set itself up: {err.get('type')}: {err.get('message')}"
        elif word not in ("policy", "exception", "no_result", "bad_result", "memory"):
            return self.kill(f"bad_channel: the procedure's end message names an unknown reason {word!r}")
        elif word == "policy":
            text = f"the checker (procedure policy) refused the source: {err.get('message')}"
        else:
            text = f"{err.get('type', 'Error')}: {err.get('message', '')}"
            if err.get("line", "").isdigit():
                text += f" (procedure line {err['line']}" + (f": {err['line_text']}" if err.get("line_text") else "") + ")"
        return self._finish("failed", f"{word}: {clean_text(text)[:_REASON_CHARS]}", None)

    def _reply(self, call: ProcedureCall, message: dict[str, Any]) -> None:
        if self._end is not None:
            return
        if self._out is None or call.call_id != self._out.call_id or call.run_id != self.run_id:
            raise ValueError(f"call {call.call_id} of run {call.run_id} is not the call out on run {self.run_id} "
                             f"({self._out.call_id if self._out else 'none'}); answer each call once, in order")
        try:
            data = json.dumps(message, allow_nan=True).encode("utf-8") + b"\n"
        except (TypeError, ValueError) as e:
            raise ValueError(f"the answer to a {call.kind} call must be JSON-able: {e}") from e
        self._out = None
        self._running_since = time.monotonic()
        self._send(data)

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

    def _death_reason(self) -> str:
        ex = self._exit or {}
        sig, code, cpu = ex.get("signal"), ex.get("exit"), float(ex.get("cpu_s") or self._cpu_seen)
        limit = self.limits.cpu_s
        if sig == signal.SIGXCPU or code == EXIT_CPU_LIMIT or (sig == signal.SIGKILL and cpu >= math.ceil(limit) - 0.05):
            return f"cpu_time: the procedure used its {limit:g} s of CPU time and was killed by the kernel"
        if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT) and float(ex.get("peak_mb") or 0) >= 0.9 * self.limits.memory_mb:
            return f"memory: the procedure died by signal {sig} at its {self.limits.memory_mb} MiB memory limit"
        if not self._ready:
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            return "died: the procedure's sandbox did not start" + (f" ({' | '.join(tail)})" if tail else "")
        if ex.get("host_gone"):
            return "died: the procedure's host process died"
        how = f"signal {sig} ({signal.Signals(sig).name})" if sig in signal.Signals._value2member_map_ else f"exit code {code}"
        during = f" while call {self._out.call_id} was out" if self._out is not None else ""
        return f"died: the procedure process ended by {how}{during} without an end message"

    def _finish(self, status: str, reason: str | None, value: dict | None) -> ProcedureEnd:
        self._pause()
        if status == "ok":
            self._await_exit()  # its exit report carries the CPU time; it exits right after its end message
        self._terminate()
        self._end = ProcedureEnd(self.run_id, status, reason, value, self._calls, round(self._cpu_now(), 3),
                                 round(self._wall_used, 3), dict(self.layers))
        self._out = None
        return self._end

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

    def __del__(self) -> None:
        if self._end is None and self._proc is not None:
            try:
                self.kill("died: the run was dropped by its broker")
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


def _bad_args(kind: str, args: dict[str, Any]) -> str | None:
    """What is wrong with a request's arguments, or None."""
    want = {"llm": {"system", "message", "temperature"}, "llm_batch": {"system", "messages", "temperature"},
            "utility": {"source", "subtask"}}[kind]
    if set(args) != want:
        return f"has fields {sorted(args)}, expected {sorted(want)}"
    if "temperature" in args and (isinstance(args["temperature"], bool) or not isinstance(args["temperature"], (int, float))
                                  or not math.isfinite(args["temperature"])):
        return "has a temperature that is not a finite number"
    if "messages" in args:
        if not isinstance(args["messages"], list) or not all(_is_text(m) for m in args["messages"]):
            return "has messages that are not a list of strings (valid Unicode)"
    for k in want - {"temperature", "messages"}:
        if not _is_text(args[k]):
            return f"has a {k} that is not a string (valid Unicode)"
    return None


def _scalar(value: Any) -> str:
    """A JSON value from the procedure as text: a string as it is, null as "", a number as JSON writes it,
    an array or object only by its kind (never str() of it: it may be nested hundreds deep)."""
    if isinstance(value, str) or value is None:
        return value or ""
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return f"<a JSON {'array' if isinstance(value, list) else 'object'}>"


def _is_text(value: Any) -> bool:
    """A str that can be written as UTF-8: JSON's \\ud800 escape decodes to a lone surrogate, which would
    break the broker's first encode (an HTTP request, a database row, a log line)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _disabled() -> list[str]:
    """The layers OPTFORGE_SANDBOX_DISABLE switches off on purpose (as for sandbox jobs), to see and test
    how a machine without them behaves: "namespaces" and "privileges" (the uid switch)."""
    named = {x.strip() for x in os.environ.get("OPTFORGE_SANDBOX_DISABLE", "").split(",")}
    return sorted(named & {"namespaces", "privileges"})


def _preview(line: bytes) -> str:
    return clean_text(repr(line[:80]) + ("..." if len(line) > 80 else ""))


class ProcedureSandbox:
    """Starts procedure runs under `limits`. Stateless between runs; safe to share."""

    def __init__(self, limits: ProcedureLimits = ProcedureLimits()) -> None:
        self.limits = limits

    def check(self, source: str) -> list[Violation]:
        """The static check alone: every way `source` breaks PROCEDURE_POLICY or the contract ([] = may run)."""
        return check_procedure(source)

    def start(self, source: str, *, population: list[dict], task: str, seed: int, run_id: str | None = None) -> ProcedureRun:
        """Start `source` on `population` ({"idea", "source", "utility"} dicts; higher utility is better).
        Never raises for a bad procedure: a refused one gives a run that has already ended with
        status "failed" ("policy: ..."). Raises ValueError for a population that is not JSON-able."""
        run = ProcedureRun(run_id or f"proc-{uuid.uuid4().hex[:12]}", self.limits)
        problems = self.check(source)
        if problems:
            shown = "; ".join(str(p) for p in problems[:8])
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            run._finish("failed", f"policy: the checker (procedure policy) refused the source: {shown}{more}", None)
            return run
        start = {"kind": "start", "source": source, "population": [dict(p) for p in population], "task": str(task),
                 "seed": int(seed)}
        try:
            json.dumps(start)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the population must be JSON-able dicts {{'idea', 'source', 'utility'}}: {e}") from e
        try:
            run._launch(start)
        except OSError as e:
            run._finish("failed", f"died: the procedure's sandbox could not be started: {e}", None)
        return run
