"""`optforge doctor`: which sandbox isolation layers are active on this machine, and the worker mode.

It runs the trusted probe job (optforge.sandbox.selftest) through the real sandbox, so what it prints
is what a candidate gets, not what the code hopes for.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

_EXPLAIN = {
    "static_check": "source checked against an allow-list policy before it runs",
    "process_group": "own session and process group, killed as a whole",
    "pid_namespace": "own PID namespace: grandchildren cannot outlive the job, host processes invisible",
    "network": "own network namespace: no network at all",
    "filesystem": "runs as a fresh uid with private /tmp: cannot write outside its directory",
    "rlimits": "CPU seconds, address space, file size, open files, processes",
    "no_secrets": "scrubbed environment: no API keys or tokens",
    "unprivileged": "not root on the host: fresh uid, no capabilities, no_new_privs",
    "seccomp": "syscall filter (needs pip pyseccomp; not wired in)",
    "landlock": "Landlock write rules (needs pip landlock; not wired in)",
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

    outside = tempfile.mkdtemp(prefix="optforge-doctor-")
    target = os.path.join(outside, "escape.txt")
    os.environ.setdefault("OPTFORGE_DOCTOR_FAKE_API_KEY", "not-a-real-key")
    limits = sandbox.Limits(timeout_s=60.0, mode=args.mode)
    try:
        res = sandbox.run(selftest.PROBE_SOURCE, "optforge.sandbox.selftest:probe", {"write_probe": target}, sandbox.RULE_POLICY, limits)
        wrote = os.path.exists(target)
    finally:
        if os.path.exists(target):
            os.remove(target)
        os.rmdir(outside)
    if not res.ok:
        raise UserError(f"the sandbox probe job failed ({res.reason}): {res.exception}")
    facts = res.value or {}
    report = {
        "mode": res.mode,
        "layers": res.layers,
        "checks": {
            "network_blocked": bool(facts.get("network_blocked")),
            "write_outside_blocked": not wrote,
            "secrets_hidden": not facts.get("secrets_seen"),
            "host_processes_hidden": 0 < int(facts.get("processes_visible", -1)) <= 3,
        },
        "job_uid": facts.get("uid"),
        "job_start_s": round(res.wall_s, 3),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"sandbox worker mode: {res.mode} ({'pre-imported template, fork per job' if res.mode == 'warm' else 'fresh interpreter per job'})")
    print("isolation layers:")
    for name in sandbox.LAYERS:
        state = "active  " if res.layers.get(name) else "INACTIVE"
        print(f"  {state} {name:14s} {_EXPLAIN[name]}")
    print("probe checks (tried from inside the sandbox):")
    for name, ok in report["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(f"job ran as uid {facts.get('uid')}, in {res.wall_s:.3f} s wall")
    return 0
