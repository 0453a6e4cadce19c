"""`optforge doctor`: which sandbox isolation layers are active on this machine, the worker mode, and
whether a real evaluation works.

It runs the trusted probe job (optforge.sandbox.selftest) through the real sandbox, so what it prints
is what a candidate gets, not what the code hopes for: the network, a write outside its directory,
secrets, host processes, and one probe per OS layer (a file in each world-writable host directory,
the unix sockets under /run, the entries of your home directory, a System V segment of the host's and one of its own; and a second job
writing twice its disk quota in many files, which the quota must stop), each judged from outside
where it can be. Then it evaluates the bundled `adamw` rule on the `smoke` suite exactly as
`optforge eval` does, and exits non-zero with the reason when that fails (an install whose package
the sandboxed job cannot import fails here, not in every run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

PROBE_QUOTA = 32 << 20  # bytes: the probe jobs' directory quota; the fill job tries to write twice as much

_EXPLAIN = {
    "static_check": "source checked against an allow-list policy before it runs",
    "process_group": "own session and process group, killed as a whole",
    "pid_namespace": "own PID namespace: grandchildren cannot outlive the job, host processes invisible",
    "network": "own network namespace: no network at all",
    "filesystem": "runs as a fresh uid with private /tmp: cannot write outside its directory",
    "read_only_root": "every mount read-only except its directory and private tmpfs (/run/lock too)",
    "run_hidden": "empty /run and /var/run: host daemons' unix sockets cannot be reached",
    "home_hidden": "empty tmpfs over your home, import locations bound back: ~/.netrc, ~/.ssh not there",
    "ipc_namespace": "own System V IPC namespace, limits at zero: no shared memory, queue or semaphore made or crossing",
    "disk_quota": "its directory is a tmpfs of max_output_bytes: writing many files stops there",
    "rlimits": "CPU seconds, address space, file size, open files, processes",
    "no_secrets": "scrubbed environment: no API keys or tokens",
    "unprivileged": "not root on the host: fresh uid, no capabilities, no_new_privs",
    "seccomp": "syscall filter (not implemented in optforge yet; always inactive)",
    "landlock": "Landlock write rules (not implemented in optforge yet; always inactive)",
}
# without root the uid switch cannot happen: what these layers mean then
_EXPLAIN_WITHOUT_ROOT = {
    "filesystem": "a fresh uid needs root: the job runs as your uid (root only in its user namespace); "
                  "the read-only root, private /tmp and hidden home still keep its writes in its directory",
    "unprivileged": "not root on the host: your uid outside its user namespace, no capabilities, no_new_privs",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("doctor", help="check which sandbox isolation layers work here")
    p.add_argument("--mode", choices=("auto", "warm", "cold"), default="auto", help="worker mode to check")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from optforge import sandbox
    from optforge.cli import UserError
    from optforge.sandbox import selftest
    from optforge.sandbox.layers import caller_homes, import_locations

    import logging

    # the sandbox's "layers inactive here; see `optforge doctor`" warning: this is doctor, which lists them
    logging.getLogger("optforge.sandbox").setLevel(logging.ERROR)
    outside = tempfile.mkdtemp(prefix="optforge-doctor-")
    target = os.path.join(outside, "escape.txt")
    os.environ.setdefault("OPTFORGE_DOCTOR_FAKE_API_KEY", "not-a-real-key")
    # the probes' own results are tiny: a small directory quota lets the fill job write past it quickly
    limits = sandbox.Limits(timeout_s=60.0, mode=args.mode, max_output_bytes=PROBE_QUOTA)
    with selftest.HostProbes() as host:
        try:
            res = sandbox.run(selftest.PROBE_SOURCE, "optforge.sandbox.selftest:probe",
                              {"write_probe": target, "homes": caller_homes(), "keep": import_locations(), **host.payload()},
                              sandbox.RULE_POLICY, limits)
            # a job of its own: the quota stops the job that reaches it
            quota = sandbox.run(selftest.PROBE_SOURCE, "optforge.sandbox.selftest:fill", {"bytes": 2 * PROBE_QUOTA},
                                sandbox.RULE_POLICY, limits)
            wrote = os.path.exists(target)
        finally:
            if os.path.exists(target):
                os.remove(target)
            os.rmdir(outside)
        if not res.ok:
            raise UserError(f"the sandbox probe job failed ({res.reason}): {res.exception}")
        facts = res.value or {}
        seen = host.seen_from_outside()
    real = real_job_check(args.mode)
    report = {
        "mode": res.mode,
        "layers": res.layers,
        "checks": {
            "network_blocked": bool(facts.get("network_blocked")),
            "write_outside_blocked": not wrote,
            "secrets_hidden": not facts.get("secrets_seen"),
            "host_processes_hidden": 0 < int(facts.get("processes_visible", -1)) <= 3,
            # each held if the host sees nothing of what the probe tried
            "world_writable_private": not seen["world_writable"],
            "unix_sockets_hidden": not facts.get("unix_sockets_reached"),
            # nothing of your home but the places the job imports from
            "home_files_hidden": not facts.get("home_entries"),
            # and, its limits being zero, the probe could make no segment at all
            "ipc_isolated": not facts.get("host_ipc_seen") and not seen["ipc_left"] and not facts.get("ipc_left"),
            "disk_quota_holds": quota.reason == "disk_quota",
        },
        "probed": {"world_writable": host.world_writable, "sockets": host.sockets, "homes": caller_homes(),
                   "home_entries": facts.get("home_entries", [])},
        "job_uid": facts.get("uid"),
        "job_start_s": round(res.wall_s, 3),
        "real_job": real,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if real["ok"] else 1
    print(f"sandbox worker mode: {res.mode} ({'pre-imported template, fork per job' if res.mode == 'warm' else 'fresh interpreter per job'})")
    print("isolation layers:")
    root = os.geteuid() == 0
    for name in sandbox.LAYERS:
        state = "active  " if res.layers.get(name) else "INACTIVE"
        print(f"  {state} {name:14s} {_EXPLAIN[name] if root else _EXPLAIN_WITHOUT_ROOT.get(name, _EXPLAIN[name])}")
    print("probe checks (tried from inside the sandbox):")
    for name, ok in report["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    where = "" if root or facts.get("uid") != 0 else f" inside its user namespace (your uid {os.getuid()} outside)"
    print(f"job ran as uid {facts.get('uid')}{where}, in {res.wall_s:.3f} s wall")
    if not root:
        print("without root a job can still read your files outside your home (see docs/security.md, "
              "'What is not isolated'); run as root for a fresh uid per job")
    print(f"real job (adamw on smoke, as `optforge eval` runs it): {real['status']} in {real['wall_s']:.1f} s")
    if not real["ok"]:
        print(f"optforge doctor: the real job failed: {real['reason']}", file=sys.stderr)
        return 1
    return 0


def real_job_check(mode: str) -> dict:
    """Evaluate the bundled `adamw` on `smoke` through the evaluator and the sandbox, as `eval` does:
    {"ok", "status", "reason", "wall_s"}. Its status is what counts here, not its fitness."""
    import time

    from optforge import seeds
    from optforge.evaluators import EvalRequest, evaluate

    t0 = time.perf_counter()
    sandbox_cfg = {"mode": mode} if mode != "auto" else {}
    result = evaluate(EvalRequest(seeds.source("adamw"), stage="smoke", suite="smoke", sandbox=sandbox_cfg))
    reason = ""
    if not result.ok:
        detail = result.artifacts.get("exception") or ""
        reason = f"status {result.status.value}: {result.feedback.strip()}" + (f" ({detail})" if detail and detail not in result.feedback else "")
    return {"ok": result.ok, "status": result.status.value, "reason": reason,
            "wall_s": time.perf_counter() - t0}
