"""A procedure run as its broker drives it (`ProcedureRun`: poll, answer, refuse, kill): every line
from the procedure checked (size, JSON, order, one call out at a time, argument types), the limits
kept (CPU, wall clock without calls out, calls, batch size), and how the run ended. The module
docstring of `optforge.sandbox.procedure` has the contract.
"""

from __future__ import annotations

import json
import math
import signal
import time
from typing import Any

from optforge.sandbox.procedure_channel import HostChannel, disabled_layers
from optforge.sandbox.procedure_process import EXIT_CPU_LIMIT
from optforge.sandbox.procedure_records import CALL_KINDS, FAILURE_WORDS, ProcedureCall, ProcedureEnd, ProcedureLimits
from optforge.types import clean_text

START_GRACE_S = 60.0  # from launch to "ready": a fresh interpreter on a loaded machine; not the procedure's time
_STATUS_GRACE_S = 5.0  # how long the host may take to report the procedure's exit after its channel closed
_WRITE_STALL_S = 30.0  # a procedure that leaves an answer unread this long has broken the channel
_CPU_SLACK_S = 3.0  # the watchdog acts this long after the kernel's limit should have (RLIMIT_CPU hard = soft + 2)
_REASON_CHARS = 4000  # of a failure text the procedure wrote (its exception message, the policy's findings)
_WATCH_S = 0.5  # how often a waiting poll() looks at the CPU watchdog and the start grace


class ProcedureRun(HostChannel):
    """One running procedure, as its broker sees it (see `optforge.sandbox.procedure`)."""

    def __init__(self, run_id: str, limits: ProcedureLimits):
        super().__init__(limits)
        self.run_id = run_id
        self.layers: dict[str, bool] = {}
        self._end: ProcedureEnd | None = None
        self._out: ProcedureCall | None = None  # the call handed to the broker and not answered yet
        self._calls = 0
        self._ready = False
        self._wall_used = 0.0
        self._running_since: float | None = None  # the wall clock runs from "ready" while no call is out
        self._launched_at = time.monotonic()

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
        elif word not in ("policy", "exception", "no_result", "bad_result", "memory", "isolation"):
            return self.kill(f"bad_channel: the procedure's end message names an unknown reason {word!r}")
        elif word == "isolation":
            text = _isolation_text(self.layers)
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

    def __del__(self) -> None:
        if self._end is None and self._proc is not None:
            try:
                self.kill("died: the run was dropped by its broker")
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


def _isolation_text(layers: dict[str, bool]) -> str:
    """Why a procedure was not started (its process, isolated as far as it could be, found itself sharing
    the user's uid and PID namespace, or root on the host), and how to give it the layers it needs."""
    if layers.get("processes_isolated") and layers.get("unprivileged") and not layers.get("no_capabilities"):
        why = ("the procedure was not started: its process could not drop its capabilities, with which it could "
               "undo the read-only mounts that hide the host. This is a bug in optforge's sandbox on this kernel; "
               "please report it with the output of `optforge doctor`.")
    elif layers.get("processes_isolated") and not layers.get("unprivileged"):
        why = ("the procedure was not started: its process would run as root on this machine (the switch to a uid "
               "of its own is off), and root needs no capability to read its own files: root's private files (an "
               "API key in ~/.netrc, ~/.config or a .env) would be readable to it, since the mounts are read-only, "
               "not hidden. Run with the uid switch on (do not put `privileges` in OPTFORGE_SANDBOX_DISABLE), or "
               "run optforge as a user other than root with unprivileged user namespaces enabled.")
    else:
        why = ("the procedure was not started: its process would run under your uid in your PID namespace (no PID "
               "namespace and no uid of its own), where it could read the environment of your other processes from "
               "/proc, the LLM API key included, and signal them. Enable unprivileged user namespaces (Ubuntu 23.10 "
               "and later: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0; Debian: sysctl -w "
               "kernel.unprivileged_userns_clone=1; elsewhere: user.max_user_namespaces above 0; in a container, a "
               "seccomp profile that allows unshare), or run optforge as root, where each procedure gets a uid of "
               "its own.")
    why += " `optforge doctor` shows the layers this machine gives."
    off = disabled_layers()
    return why + (f" Here OPTFORGE_SANDBOX_DISABLE switches off {', '.join(off)} on purpose." if off else "")


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




def _preview(line: bytes) -> str:
    return clean_text(repr(line[:80]) + ("..." if len(line) > 80 else ""))

