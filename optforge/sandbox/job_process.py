"""The job process of the sandbox, forked by the supervisor (`optforge.sandbox.worker`): it applies every
remaining isolation layer, reports which hold, then imports the trusted job function and calls it on
the untrusted source; whatever happens, it leaves `result.json` (or an error record) or dies trying.
"""

from __future__ import annotations

import importlib
import json
import linecache
import os
import signal
import sys
import traceback
from typing import Any

from optforge.sandbox import layers as L
from optforge.sandbox.boot import set_sys_path
from optforge.sandbox.protocol import write_error, write_result

STARTS_RULE_HOST = "starts_rule_host"
"""A job function with this attribute set true starts a `RuleHost` first (`evaluators.job.run_job`,
`search.probe.probe_job`); only such a job keeps the writable /proc and the prepared user namespace
the rule host needs. Every other job runs without them."""

_MEMORY_WORDS = ("can't allocate memory", "not enough memory", "std::bad_alloc", "out of memory", "cannot allocate memory")


def execute(req: dict[str, Any], ns: dict[str, bool], uid: int | None, out_w: int, err_w: int, ctl_w: int) -> None:
    """The job process, forked by `worker.supervise`: apply the layers (reporting which hold on `ctl_w`),
    then run the job on stdout `out_w` and stderr `err_w`. Never returns: it exits."""
    lim = req["limits"]
    workdir = req["workdir"]
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    L.close_fds_except({0, 1, 2, ctl_w})
    layers: dict[str, bool] = {"process_group": True, "no_secrets": True}
    # what the job imports: the caller's import locations and this process's own (torch, numpy and
    # optforge as the template loaded them), bound read-only into the job's private mounts
    keep = sorted({*req.get("import_paths", []), *req.get("sys_path", []), *L.import_locations()})
    mounts = L.private_mounts(workdir, int(lim["max_output_bytes"]), keep) if ns.get("mnt") else {}
    private = bool(mounts.get("tmp"))  # our own mount namespace, / made private: mounts stay in it
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    # OPTFORGE_SANDBOX_DISABLE may name these layers, so that a test can show each one alone holds
    on = {name: name not in req.get("disable", ())
          for name in ("run_hidden", "home_hidden", "disk_quota", "read_only_root", "ipc_namespace")}
    layers["run_hidden"] = private and on["run_hidden"] and L.hide_run(keep)
    # the caller's home (not HOME, which is the workdir now): its 0600 files are the caller's uid's to
    # read, which a job of a caller without root runs under; the workdir stays where TMPDIR put it
    layers["home_hidden"] = private and on["home_hidden"] and L.hide_home(
        req.get("homes", ()), keep, [workdir, *(t for t in L.PRIVATE_TMP if os.path.isdir(t))])
    layers["disk_quota"] = private and on["disk_quota"] and L.disk_quota(workdir, int(lim["max_output_bytes"]), uid)
    if uid is not None:
        # exposing needs the private mount namespace: without it, only check what the uid can reach
        blocked = L.expose_paths(keep, uid) if private else L.blocked_paths(keep, uid)
        if blocked:
            uid = None  # the job could not import its own code as another user: stay root, say so
    # an IPC namespace of its own with every System V limit at zero, set while /proc is still writable
    layers["ipc_namespace"] = on["ipc_namespace"] and L.ipc_namespace() and L.zero_ipc_limits()
    if uid is not None or ns.get("user") or os.geteuid() != 0:
        # for a rule host's id maps and its rule processes' IPC limits (rule_host); never for a job that
        # stays root on the host (uid switch off), which could write host-wide sysctls through it
        L.keep_writable_proc()
    if ns.get("user"):
        # root only in our user namespace: the rule host's namespace is made now, while we hold CAP_SETFCAP
        L.prepare_user_namespace()
    writable = [workdir, *(t for t in L.PRIVATE_TMP if os.path.isdir(t))]
    layers["read_only_root"] = private and on["read_only_root"] and L.read_only_root(writable)
    L.new_session_keyring()  # not the caller's: a key the user keeps there is not the job's to read
    unprivileged = L.drop_privileges(uid)
    # not root on the host: a fresh uid of ours, or root only inside a user namespace, or never root
    layers["unprivileged"] = (uid is not None and unprivileged) or bool(ns.get("user")) or os.geteuid() != 0
    layers["filesystem"] = bool(uid is not None and unprivileged and mounts.get("tmp"))
    # the process limit counts every process of the uid: only for a fresh uid of ours, or, without root,
    # where the kernel counts it per user namespace (ours), not with the caller's other processes
    own_count = (uid is not None and unprivileged) or (bool(ns.get("user")) and L.nproc_counted_per_user_namespace())
    layers["rlimits"] = L.set_rlimits(
        int(lim["cpu_limit_s"]), lim.get("memory_mb"), int(lim["max_output_bytes"]),
        int(lim["open_files"]), int(lim["processes"]) if own_count else None,
    )
    L.set_parent_death_signal(signal.SIGKILL)
    if uid is None:
        # a job that stays root (of a user namespace, or of the host where the uid switch was not
        # possible) would hold every capability over its mounts: without them it cannot unmount or
        # remount what the layers above put in place
        L.drop_capabilities()
    layers.update(L.optional_layers())
    os.chdir(workdir)
    have = {**layers, "pid_namespace": bool(ns.get("pid")), "network": bool(ns.get("net")), "static_check": True}
    missing = [r for r in req.get("require", []) if not have.get(r)]
    control = {**layers, "uid": os.getuid()}
    if missing:
        control["refused"] = f"required isolation layer(s) not available here: {', '.join(missing)}"
    os.write(ctl_w, json.dumps(control).encode())
    os.close(ctl_w)
    if missing:
        os._exit(0)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
    set_sys_path([str(p) for p in req.get("sys_path", [])])  # the standard library first (see boot)
    code = 0
    try:
        _call_job(req, workdir)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed or full pipe must not stop the exit
            code = 0
    os._exit(code)


def _call_job(req: dict[str, Any], workdir: str) -> None:
    from optforge.sandbox.result import JobFailure

    try:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        module_name, _, fn_name = req["job"].partition(":")
        fn = getattr(importlib.import_module(module_name), fn_name)
        if not getattr(fn, STARTS_RULE_HOST, False):
            # kept for a rule host only (rule_host): a job that runs its candidate in this process could
            # write id maps and System V limits through them (tests/attack/test_job_prepared_user_namespace.py)
            L.drop_rule_host_grants()
        out = fn(req["source"], req["payload"])
        value, buffers = out if isinstance(out, tuple) else (out, {})
        try:
            write_result(workdir, value, buffers)
        except (TypeError, ValueError) as e:
            write_error(workdir, {"reason": "bad_output", "type": type(e).__name__,
                                  "message": f"the job returned something that is not JSON plus numeric buffers: {e}"})
    except JobFailure as e:
        write_error(workdir, describe(e, e.reason))
    except MemoryError as e:
        write_error(workdir, describe(e, "memory"))
    except SystemExit as e:
        write_error(workdir, describe(e, f"exit:{e.code}"))
    except BaseException as e:  # noqa: BLE001 - anything the candidate raises is a result
        text = str(e).lower()
        write_error(workdir, describe(e, "memory" if any(w in text for w in _MEMORY_WORDS) else "exception"))


def describe(exc: BaseException, reason: str) -> dict[str, Any]:
    """The exception as data, with the innermost line that lies in source compiled from a string
    (the candidate: its filename looks like '<rule x>' or '<candidate>')."""
    line = text = None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for frame in traceback.extract_tb(e.__traceback__):
            if frame.filename.startswith("<") and not frame.filename.startswith("<frozen"):
                line = frame.lineno
                text = linecache.getline(frame.filename, frame.lineno).strip() or None
        if line is not None:
            break
        e = e.__cause__ or e.__context__
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "reason": reason,
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "line": line,
        "line_text": text,
        "traceback": tb[-4000:],
    }
