"""Trusted jobs for the sandbox tests: they run inside the worker."""

from __future__ import annotations

import numpy as np


def rule_job(source: str, payload: dict) -> tuple[dict, dict]:
    """Load the candidate as a rule and call init/update on a small tensor a few times."""
    import torch

    from optforge.rule import Ctx, RuleError, load_rule
    from optforge.sandbox import JobFailure

    try:
        rule = load_rule(source, name="candidate")
    except RuleError as e:
        raise JobFailure("load_error", str(e)) from e
    gen = torch.Generator().manual_seed(int(payload.get("seed", 0)))
    p = torch.randn(4, 3, generator=gen)
    state = None
    for t in range(1, int(payload.get("steps", 3)) + 1):
        ctx = Ctx(lr=rule.lr, t=t, T=None, role="hidden_matrix", shape=tuple(p.shape))
        if state is None:
            state = rule.init(p, ctx)
        g = 2 * p
        p = p + rule.update(p, g, state, ctx)
    return {"norm": float(p.norm()), "steps": t}, {"p": p.numpy()}


def echo_job(source: str, payload: dict) -> dict:
    """Return the payload, the environment size and some facts about where it runs."""
    import os

    return {"payload": payload, "uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd(), "source_len": len(source)}


def exec_job(source: str, payload: dict):
    """Execute the candidate as a plain module (no rule loader, so no import check of its own) and call
    init/update like `rule_job`: lets red-team rows reach the process layers with the static check off."""
    import linecache

    import torch

    filename = "<candidate>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    ns: dict = {"__name__": "candidate"}
    exec(compile(source, filename, "exec"), ns)
    p = torch.ones(4, 3)
    state = ns["init"](p, None)
    for _ in range(int(payload.get("steps", 3))):
        p = p + ns["update"](p, p, state, None)
    return {"norm": float(p.norm())}


def buffers_job(source: str, payload: dict):
    return {"n": 3}, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])}


def bad_value_job(source: str, payload: dict):
    return {"not_json": {1, 2}}


def exit_job(source: str, payload: dict):
    import os

    os._exit(3)


def probe_pair(source: str, payload: dict):
    """Runs the doctor's probe, for the API tests."""
    from optforge.sandbox.selftest import probe

    return probe(source, payload)


def forge_job(source: str, payload: dict):
    """A job (standing in for a candidate that took over its process) forging an infrastructure reason."""
    import json
    import os

    with open(os.path.join(os.getcwd(), "result.json"), "w") as f:
        json.dump({"error": {"reason": payload["reason"], "message": "forged"}}, f)
    os._exit(0)


def hooked_import_job(source: str, payload: dict) -> dict:
    """Import payload["package"] as an editable install does: a meta-path finder maps the name to a
    directory on no sys.path entry. Then import a module of optforge the template did not preload,
    and try to write next to the package (its location must be bound read-only)."""
    import errno
    import importlib
    import importlib.machinery
    import sys

    name, parent = payload["package"], payload["parent"]

    class Finder:
        @classmethod
        def find_spec(cls, fullname, path=None, target=None):
            return importlib.machinery.PathFinder.find_spec(fullname, [parent]) if fullname == name else None

    sys.meta_path.insert(0, Finder)
    module = importlib.import_module(name)
    import optforge.evaluators.tasks  # noqa: F401 - lazily imported in a real job, never preloaded

    try:
        open(f"{parent}/{name}/written-by-the-job", "w").close()
        write = "allowed"
    except OSError as e:
        write = errno.errorcode.get(e.errno, str(e.errno))
    return {"file": module.__file__, "value": module.VALUE, "write": write}
