"""The untrusted side of a procedure run: `python -m optforge.sandbox.procedure_host IN OUT STATUS CPU_S MEMORY_MB DISABLED`.

DISABLED is "-" or a comma list of layers switched off on purpose (OPTFORGE_SANDBOX_DISABLE on the
trusted side): "namespaces", "privileges" (the uid switch).

Two processes (the trusted side is `optforge.sandbox.procedure`):

- the **host** (only our code runs in it) unshares PID, network and mount namespaces (with a user
  namespace when not root), forks the procedure process into them, and watches two things: the
  status socket (the trusted side gone: it kills the procedure and exits) and the procedure's exit
  (it reports the exit code or signal and the CPU time used on the status socket, which the
  procedure never holds);
- the **procedure process**, PID 1 of its own PID namespace, isolates itself (private /proc and
  tmpfs on /tmp, /var/tmp and /dev/shm, /run hidden, every other mount read-only, its own IPC
  namespace, a fresh uid when root, no capabilities, no_new_privs, a scrubbed environment, rlimits on
  CPU seconds, address space, file size, open files and processes, SIGKILL when the host dies), says
  which layers held ("ready"), reads the start message, checks the source again with
  PROCEDURE_POLICY, seeds `random`, loads the procedure with a minimal builtins table and calls
  `improve(population, utility, llm, task)` with the three proxies below.

The channel is a pipe pair: IN (trusted -> procedure) and OUT (procedure -> trusted), one JSON object
per line. The procedure process writes `{"kind": "ready", "layers": {...}}` first, then one request per
proxy call, `{"id": n, "kind": "llm" | "llm_batch" | "utility", ...}`, and blocks for the response
`{"id": n, "ok": true, "value": ...}` or `{"id": n, "ok": false, "reason": "..."}`; last, the end
message `{"kind": "end", "ok": true, "value": {"source", "idea"}}` or `{"kind": "end", "ok": false,
"reason": word, "error": {"type", "message", "line", "line_text"}}` (the line in the procedure's own
source, never a trusted-side traceback). The population is local: it comes with the start message.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import random
import select
import signal
import socket
import sys
import traceback
from typing import Any

from optforge.sandbox import layers as L
from optforge.sandbox.procedure_policy import ALLOWED_MODULES, ENTRY_POINT, PROCEDURE_POLICY, check_procedure

PROCEDURE_FILENAME = "<procedure>"
_NS_FLAGS = L.CLONE_NEWPID | L.CLONE_NEWNET | L.CLONE_NEWNS
_OPEN_FILES = 16  # the two channel ends, stdio and a margin; the procedure opens nothing
_FILE_BYTES = 1 << 20
_TMPFS_BYTES = 1 << 20
EXIT_BROKER_GONE = 75  # the procedure process ends with this when the trusted side went away mid-call
EXIT_SETUP = 70
EXIT_CPU_LIMIT = 128 + signal.SIGXCPU  # as if SIGXCPU had killed it (see isolate_process)


class CallRefused(Exception):
    """Raised in the procedure when the trusted side refuses one of its calls; the text says why."""


class _BrokerGone(BaseException):
    """The trusted side closed the channel: the procedure process exits at once (not catchable by `except Exception`)."""


# ---------------------------------------------------------------------------------------------
# the proxies the procedure is handed


class _Channel:
    """The procedure process's end of the pipe pair: one request line out, one response line in."""

    def __init__(self, in_fd: int, out_fd: int):
        self._in = os.fdopen(in_fd, "rb", buffering=1 << 16)
        self._out = out_fd
        self._next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\n"
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out, view):]
        except BrokenPipeError:
            raise _BrokerGone() from None

    def receive(self) -> dict[str, Any]:
        line = self._in.readline()
        if not line:
            raise _BrokerGone()
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise _BrokerGone()
        return msg

    def call(self, kind: str, args: dict[str, Any]) -> Any:
        self._next_id += 1
        self.send({"id": self._next_id, "kind": kind, **args})
        reply = self.receive()
        if reply.get("id") != self._next_id:
            raise _BrokerGone()
        if not reply.get("ok"):
            raise CallRefused(str(reply.get("reason") or "the call was refused"))
        return reply.get("value")


class LLM:
    """The procedure's `llm`: text generation through the trusted broker (on the run's LLM budget)."""

    def __init__(self, channel: _Channel):
        self._channel = channel

    def prompt(self, system: str, message: str, temperature: float = 1.0) -> str:
        """One completion of `message` under the system prompt `system`; raises CallRefused when refused,
        ValueError for a temperature that is not a finite number."""
        value = self._channel.call("llm", {"system": _text(system), "message": _text(message), "temperature": _finite(temperature)})
        return str(value)

    def prompt_batch(self, system: str, messages: list, temperature: float = 1.0) -> list:
        """One completion per message (one call on the channel); raises CallRefused when refused (a batch
        larger than the run's max_batch is refused too), ValueError for a temperature that is not finite."""
        value = self._channel.call(
            "llm_batch", {"system": _text(system), "messages": [_text(m) for m in messages], "temperature": _finite(temperature)}
        )
        return [str(v) for v in value] if isinstance(value, list) else []


def _text(value: Any) -> str:
    """`str(value)` as valid Unicode: a lone surrogate (chr(0xd800)) becomes "?", so that the broker can
    encode every string it is handed (the trusted side refuses a string it cannot)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _finite(temperature: Any) -> float:
    t = float(temperature)
    if not math.isfinite(t):
        raise ValueError(f"temperature must be a finite number, not {t!r}")
    return t


class Utility:
    """The procedure's `utility(source, subtask) -> float`: the fitness of a rule on a subtask, HIGHER
    IS BETTER (optforge fitness). Evaluated by the trusted broker; an answer that is not a number (None:
    the rule failed; NaN) reads as -inf; raises CallRefused when refused."""

    def __init__(self, channel: _Channel):
        self._channel = channel

    def __call__(self, source: str, subtask: str) -> float:
        value = self._channel.call("utility", {"source": _text(source), "subtask": _text(subtask)})
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        return float(value) if number else -math.inf


class Population:
    """The procedure's `population`: entries {"idea", "source", "utility"} sorted best first (higher
    utility is better), read by index, sampled by rank, or counted. Entries are copies."""

    def __init__(self, entries: list[dict[str, Any]]):
        def key(e: dict[str, Any]) -> float:
            u = e.get("utility")
            return -float(u) if isinstance(u, (int, float)) and not isinstance(u, bool) and not math.isnan(u) else math.inf

        self._entries = sorted((dict(e) for e in entries), key=key)

    def get(self, index: int) -> dict[str, Any]:
        """The entry of rank `index` (0 is the best); IndexError outside 0..size()-1."""
        if not isinstance(index, int) or not 0 <= index < len(self._entries):
            raise IndexError(f"population index {index!r} is out of range 0..{len(self._entries) - 1}")
        return dict(self._entries[index])

    def sample(self) -> dict[str, Any]:
        """A rank-sampled entry: P(rank r) proportional to 1 / (r + size / 2), drawn with the seeded `random`."""
        n = len(self._entries)
        if n == 0:
            raise IndexError("the population is empty")
        weights = [1.0 / (r + n / 2.0) for r in range(n)]
        return dict(random.choices(self._entries, weights=weights)[0])

    def size(self) -> int:
        """How many entries there are."""
        return len(self._entries)


# ---------------------------------------------------------------------------------------------
# the host process


def main(argv: list[str]) -> None:
    in_fd, out_fd, status_fd = (int(a) for a in argv[:3])
    cpu_s, memory_mb = max(1, math.ceil(float(argv[3]))), int(argv[4])
    disabled = set(argv[5].split(",")) if len(argv) > 5 else set()
    status = socket.socket(fileno=status_fd)
    # the host holds nothing of the procedure's; it must not outlive the trusted side (status EOF)
    ns = L.unshare_namespaces(_NS_FLAGS) if "namespaces" not in disabled else {}
    host_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        status.close()
        _procedure_process(in_fd, out_fd, ns, host_pid, cpu_s, memory_mb, "privileges" not in disabled)  # never returns
    os.close(in_fd)
    os.close(out_fd)
    _send_status(status, {"child": pid})
    pidfd = os.pidfd_open(pid)
    watch: list[Any] = [pidfd, status]
    while True:
        ready, _, _ = select.select(watch, [], [])
        if pidfd in ready:
            break
        try:
            data = status.recv(1 << 12)
        except OSError:
            data = b""
        if not data:  # the trusted side is gone: nothing of ours outlives it (PID 1 takes its namespace along)
            os.kill(pid, signal.SIGKILL)
            watch = [pidfd]
    _, wait_status, ru = os.wait4(pid, 0)
    _send_status(status, {
        "exit": os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None,
        "signal": os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_mb": ru.ru_maxrss / 1024.0,
    })
    status.close()


def _send_status(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# the procedure process


def _procedure_process(in_fd: int, out_fd: int, ns: dict[str, bool], host_pid: int, cpu_s: int, memory_mb: int,
                       switch_uid: bool) -> None:
    code = EXIT_SETUP
    channel: _Channel | None = None
    try:
        L.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != host_pid and not ns.get("pid"):
            return  # the host died before the death signal was set
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _close_fds_except({0, 1, 2, in_fd, out_fd})
        channel = _Channel(in_fd, out_fd)
        layers = isolate_process(ns, host_pid, cpu_s, memory_mb, switch_uid=switch_uid)
        channel.send({"kind": "ready", "layers": layers})
        start = channel.receive()
        if start.get("kind") != "start":
            return
        code = 0
        channel.send(_run(start, channel))
    except _BrokerGone:
        code = EXIT_BROKER_GONE
    except BaseException as e:  # noqa: BLE001 - our own setup failed: say so if the channel is up
        if channel is not None:
            try:
                channel.send({"kind": "end", "ok": False, "reason": "setup",
                              "error": {"type": type(e).__name__, "message": str(e)[:500]}})
            except BaseException:  # noqa: BLE001
                pass
    finally:
        os._exit(code)


def isolate_process(ns: dict[str, bool], host_pid: int, cpu_s: int, memory_mb: int, *, switch_uid: bool = True) -> dict[str, bool]:
    """Every layer after the namespaces (`ns`: what `layers.unshare_namespaces` gave the host), in the
    process about to run a procedure; best effort. `switch_uid`: as root, become a fresh uid. Returns
    which layers held."""
    keep = L.import_locations()
    mounts = L.private_mounts(None, _TMPFS_BYTES, keep) if ns.get("mnt") else {}
    private = bool(mounts.get("tmp"))
    layers = {
        "process_group": True,
        "pid_namespace": bool(ns.get("pid")),
        "network": bool(ns.get("net")),
        "private_tmp": private,
        "run_hidden": private and L.hide_run(keep),
    }
    uid = L.UID_BASE + host_pid if os.geteuid() == 0 and switch_uid else None
    if uid is not None and (L.expose_paths(keep, uid) if private else L.blocked_paths(keep, uid)):
        uid = None  # the uid could not read our own code: stay root of this process, without capabilities
    layers["read_only_root"] = private and L.read_only_root([t for t in L.PRIVATE_TMP if os.path.isdir(t)])
    layers["ipc_namespace"] = L.ipc_namespace()
    os.environ.clear()
    os.environ.update(L.scrubbed_env())
    layers["no_secrets"] = True
    os.chdir("/")
    unprivileged = L.drop_privileges(uid)
    layers["unprivileged"] = (uid is not None and unprivileged) or bool(ns.get("user")) or os.geteuid() != 0
    layers["no_capabilities"] = L.drop_capabilities() if uid is None else unprivileged
    layers["no_new_privs"] = _no_new_privs()
    # CPU seconds (SIGXCPU, SIGKILL 2 s later), address space, file size, open files, and one process:
    # fork fails (RLIMIT_NPROC binds every uid but the host's root, which the uid switch above leaves).
    # As PID 1 of its namespace the process never gets a signal it has no handler for (SIGKILL from
    # the kernel aside), so SIGXCPU gets one; a C call that holds the interpreter meets the hard limit.
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    layers["rlimits"] = L.set_rlimits(cpu_s, memory_mb, _FILE_BYTES, _OPEN_FILES, 1)
    return layers


def _on_cpu_limit(signum: int, frame: Any) -> None:
    os._exit(EXIT_CPU_LIMIT)


def _no_new_privs() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.split() == ["NoNewPrivs:", "1"] for line in f)
    except OSError:
        return False


def _close_fds_except(keep: set[int]) -> None:
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _safe_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    """`__import__` for the procedure: the allowed modules only (already loaded by this module)."""
    if level or name not in ALLOWED_MODULES:
        raise ImportError(f"import of {name!r} is not allowed in a procedure; allowed: {', '.join(ALLOWED_MODULES)}")
    return sys.modules[name]


def _procedure_builtins() -> dict[str, Any]:
    table = {n: getattr(builtins, n) for n in PROCEDURE_POLICY.builtins if hasattr(builtins, n)}
    table["__import__"] = _safe_import
    return table


def _run(start: dict[str, Any], channel: _Channel) -> dict[str, Any]:
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
    except _BrokerGone:
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
    return {"kind": "end", "ok": True, "value": {"source": _text(source), "idea": _text(idea or "")}}


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


if __name__ == "__main__":
    main(sys.argv[1:])
