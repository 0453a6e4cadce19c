"""`run()`: check the source, hand the job to a supervisor, turn what comes back into a SandboxResult."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any

from optforge.sandbox import transport
from optforge.sandbox.layers import caller_homes, import_locations, undumpable
from optforge.sandbox.policy import Policy, check_source
from optforge.sandbox.protocol import ProtocolError, decode_line, read_result
from optforge.sandbox.result import LAYERS, Limits, SandboxResult
from optforge.sandbox.rule_policy import RULE_POLICY
from optforge.types import Status, status_for_reason

log = logging.getLogger("optforge.sandbox")
START_GRACE_S = 120.0  # a cold spawn imports torch; a loaded machine can take a while
DONE_GRACE_S = 30.0
_warned: set[str] = set()
_warn_lock = threading.Lock()
_cold_only = False
# reasons a job's own error record may carry (anything else is reported as 'exception')
_JOB_REASONS = frozenset({"exception", "memory", "load_error", "bad_output", "diverged", "exit"})


def mode_for(limits: Limits) -> str:
    """'warm' or 'cold' for these limits here (OPTFORGE_SANDBOX_MODE overrides 'auto')."""
    mode = limits.mode
    if mode == "auto":
        mode = os.environ.get("OPTFORGE_SANDBOX_MODE", "auto")
    if mode == "auto":
        fork_ok = hasattr(os, "fork") and sys.platform.startswith("linux")
        mode = "warm" if fork_ok and not _cold_only else "cold"
    return mode


def run(
    source: str, job: str, payload: dict, policy: Policy = RULE_POLICY, limits: Limits = Limits()
) -> SandboxResult:
    """Run trusted `job` ("module:function", called as function(source, payload)) on untrusted
    `source` inside the sandbox. Never raises for anything the source does; raises ValueError only
    for a caller error (payload not JSON-able, bad job name)."""
    t0 = time.monotonic()
    if ":" not in job:
        raise ValueError(f"job must be 'module.path:function', got {job!r}")
    layers = {name: False for name in LAYERS}
    layers["static_check"] = bool(limits.static_check)
    if limits.static_check:
        problems = check_source(source, policy)
        if problems:
            shown = "; ".join(str(p) for p in problems[:8])
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            return SandboxResult(
                status=Status.INVALID, reason="rejected", layers=layers, wall_s=time.monotonic() - t0,
                exception=f"static check ({policy.name} policy) refused the source: {shown}{more}",
            )
    never = [r for r in limits.require if r in ("static_check", "seccomp", "landlock") and not layers[r]]
    if never:
        return SandboxResult.failed(
            "layer_unavailable", f"required isolation layer(s) not available here: {', '.join(never)}",
            layers=layers, wall_s=time.monotonic() - t0,
        )
    try:
        payload_json = json.dumps(payload)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sandbox payload must be JSON-able: {e}") from e
    mode = mode_for(limits)
    # this process may hold the user's API keys in its environment: where a job runs without a PID
    # namespace under the same uid, it could otherwise read them from /proc/<our pid>/environ
    undumpable()
    workdir = tempfile.mkdtemp(prefix="optforge-job-")
    try:
        request = {
            "source": source,
            "job": job,
            "payload": "__PAYLOAD__",
            "limits": {**limits.to_dict(), "cpu_limit_s": limits.cpu_limit_s},
            "workdir": workdir,
            "env": transport.worker_env(),
            "sys_path": transport.import_path(),
            # where this process imports from (an editable install's package included): the job
            # binds these read-only, wherever they are (a private /tmp, a 0700 home)
            "import_paths": import_locations([job.partition(":")[0]]),
            # the caller's home, hidden in the job's mount namespace (the job cannot know it: its HOME
            # is its workdir, its uid may be another)
            "homes": caller_homes(),
            "require": list(limits.require),
            # OPTFORGE_SANDBOX_DISABLE=namespaces,privileges switches layers off on purpose, to see
            # (and test) how a machine without them behaves; the result reports them inactive
            "namespaces": "namespaces" not in _disabled(),
            "drop_privileges": "privileges" not in _disabled(),
            # or names single layers (run_hidden, home_hidden, disk_quota, read_only_root, ipc_namespace)
            "disable": sorted(_disabled()),
        }
        line = json.dumps(request).replace('"__PAYLOAD__"', payload_json, 1).encode("utf-8") + b"\n"
        result = _run_request(line, workdir, limits, mode, layers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.wall_s = time.monotonic() - t0 if result.wall_s == 0.0 else result.wall_s
    _warn_missing(result.layers, mode)
    return result


def _disabled() -> set[str]:
    return {x.strip() for x in os.environ.get("OPTFORGE_SANDBOX_DISABLE", "").split(",") if x.strip()}


def _open_channel(mode: str, workdir: str) -> tuple[transport.Channel, str]:
    global _cold_only
    if mode == "warm":
        try:
            return transport.TEMPLATE.channel(), "warm"
        except (OSError, RuntimeError) as e:
            log.warning("sandbox: warm worker unavailable (%s); falling back to a cold spawn per job", e)
            _cold_only = True
    return transport.cold_channel(workdir), "cold"


def _run_request(line: bytes, workdir: str, limits: Limits, mode: str, layers: dict[str, bool], retry: bool = True) -> SandboxResult:
    try:
        chan, mode = _open_channel(mode, workdir)
    except OSError as e:
        return SandboxResult.failed("worker_lost", f"could not start a sandbox worker: {e}", layers=layers, mode=mode)
    started: dict[str, Any] | None = None
    try:
        chan.send(line)
        raw = chan.readline(time.monotonic() + START_GRACE_S)
        started = decode_line(raw) if raw else None
        done = None
        if started:
            raw = chan.readline(time.monotonic() + limits.timeout_s + DONE_GRACE_S)
            done = decode_line(raw) if raw else None
    except (OSError, ProtocolError) as e:
        done = None
        log.warning("sandbox: lost contact with the worker: %s", e)
    finally:
        if started is None or done is None:
            _kill_started(started)
        chan.close()
    if not started and retry and mode == "warm":
        # the template died between our liveness check and the connection: start a fresh one, once
        log.warning("sandbox: the warm template did not take the job; retrying on a fresh template")
        transport.TEMPLATE.stop()
        return _run_request(line, workdir, limits, mode, layers, retry=False)
    if not started or not done:
        return SandboxResult.failed(
            "worker_lost", "the sandbox supervisor stopped answering before the job finished; the job was killed",
            layers=layers, mode=mode,
        )
    return _interpret(done, workdir, limits, mode, layers)


def _kill_started(started: dict[str, Any] | None) -> None:
    if not started:
        return
    for key in ("pid", "supervisor"):
        pid = started.get(key)
        if isinstance(pid, int) and pid > 1:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _interpret(done: dict[str, Any], workdir: str, limits: Limits, mode: str, layers: dict[str, bool]) -> SandboxResult:
    layers = {**layers, **{k: bool(v) for k, v in (done.get("layers") or {}).items() if k in layers}}
    common = dict(
        stdout_tail=str(done.get("stdout_tail", "")),
        stderr_tail=str(done.get("stderr_tail", "")),
        wall_s=float(done.get("wall_s", 0.0)),
        cpu_s=float(done.get("cpu_s", 0.0)),
        peak_mb=float(done.get("peak_mb", 0.0)),
        layers=layers,
        mode=mode,
        uid=done.get("uid") if isinstance(done.get("uid"), int) else None,
    )
    sig, code = done.get("signal"), done.get("exit_code")
    # these two come over the control pipe, closed before candidate code runs: trusted
    if done.get("refused"):
        return SandboxResult.failed("layer_unavailable", str(done["refused"]), **common)
    if done.get("setup_error"):
        return SandboxResult.failed("worker_lost", f"the sandbox could not set up the job process: {done['setup_error']}", **common)
    if done.get("timed_out"):
        return SandboxResult.failed("timeout", f"the job ran past its {limits.timeout_s:g} s wall-clock limit and was killed", **common)
    if done.get("disk_full"):  # trusted: the supervisor looked at the quota tmpfs itself
        return SandboxResult.failed(
            "disk_quota", f"the job filled its directory to its disk quota (max_output_bytes = {limits.max_output_bytes} "
            "bytes) and was stopped there", **common)
    try:
        doc = read_result(workdir, limits.max_output_bytes)
    except (OSError, ProtocolError) as e:
        return SandboxResult.failed("bad_output", f"the job's result could not be read: {e}", **common)
    if doc is not None and "error" in doc:
        err = doc["error"]
        reason = str(err.get("reason") or "exception")
        if reason.split(":", 1)[0] not in _JOB_REASONS:
            reason = "exception"  # the result file is writable by the candidate: it cannot claim 'ok' or 'lost'
            err = {**err, "message": f"(the job claimed an unknown reason) {err.get('message', '')}"}
        text = f"{err.get('type', 'Error')}: {err.get('message', '')}"
        if err.get("line"):
            text += f" (candidate line {err['line']}" + (f": {err['line_text']}" if err.get("line_text") else "") + ")"
        if reason == "exception" and err.get("traceback"):
            common["stderr_tail"] = (common["stderr_tail"] + "\n" + str(err["traceback"]))[-limits.tail_bytes :]
        return SandboxResult(status=status_for_reason(reason), reason=reason, exception=text, **common)
    if doc is not None and code == 0 and sig is None:
        return SandboxResult(status=Status.OK, reason="ok", value=doc["value"], buffers=doc["buffers"], **common)
    if sig is not None:
        mem = limits.memory_mb
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and common["cpu_s"] >= limits.cpu_limit_s - 0.5):
            return SandboxResult.failed("cpu_limit", f"the job used its {limits.cpu_limit_s} s of CPU time and was killed", **common)
        if mem is not None and sig in (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV) and common["peak_mb"] >= 0.9 * mem:
            return SandboxResult.failed("memory", f"the job died by signal {sig} at its {mem} MiB memory limit", **common)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return SandboxResult.failed(f"signal:{sig}", f"the job process died by signal {sig} ({name})", **common)
    return SandboxResult.failed(f"exit:{code}", f"the job process exited with code {code} without a result", **common)


def _warn_missing(layers: dict[str, bool], mode: str) -> None:
    missing = sorted(k for k, v in layers.items() if not v and k not in ("seccomp", "landlock", "static_check"))
    key = ",".join(missing) + "|" + mode
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    if missing:
        log.warning("sandbox: running with these isolation layers inactive here: %s (mode %s); see `optforge doctor`", ", ".join(missing), mode)
    else:
        log.info("sandbox: all namespace, rlimit and privilege layers active (mode %s)", mode)
