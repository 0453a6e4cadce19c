"""Baseline files: where they live, loading and saving, the checks against a live suite, and the part
scoring needs (`payload_from`).

Committed for the shipped suites as `optforge/evaluators/baselines/<suite>.json`, keyed by suite
version and torch major.minor, so a fresh install pays nothing and a remote Ray node needs no cache
(the AdamW part travels with each request, `payload_from`). Other suites (dotted paths) are cached
under $OPTFORGE_CACHE (default ~/.cache/optforge). The file records the suite's three seed sets, a
digest of its task code and training loop (a change without a version bump is a warning) and the
machine it was built on.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from optforge.evaluators.baselines.lookup import missing_wd_arms
from optforge.files import write_text_atomic

FORMAT = 2
COMMITTED_DIR = Path(__file__).parent  # the JSON files sit next to this package's modules


class BaselineError(RuntimeError):
    """Baselines are missing or do not match the suite; the message says how to rebuild them."""


def torch_version() -> str:
    """torch major.minor: baselines are keyed by it (kernels change numbers across releases)."""
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def suite_digest(suite: Any) -> str:
    """Hash of the task definitions (their reprs and module sources) and of the training loop."""
    from optforge.evaluators import train

    h = hashlib.sha256()
    modules = {train.__name__}
    for t in suite.tasks:
        h.update(repr(t).encode())
        modules.add(type(t).__module__)
    for name in sorted(modules):
        try:
            h.update(inspect.getsource(sys.modules[name]).encode())
        except (OSError, TypeError, KeyError):
            h.update(name.encode())
    return h.hexdigest()[:16]


def baseline_path(suite: str) -> Path:
    """Where the baselines of `suite` live: committed for shipped names, the user cache otherwise."""
    if re.fullmatch(r"[A-Za-z0-9_]+", suite):
        return COMMITTED_DIR / f"{suite}.json"
    cache = Path(os.environ.get("OPTFORGE_CACHE") or Path.home() / ".cache" / "optforge")
    return cache / "baselines" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", suite) + ".json")


def load(suite: str) -> dict:
    """The stored baselines of `suite` (no checks; see `check`)."""
    path = baseline_path(suite)
    if not path.exists():
        raise BaselineError(
            f"no baselines for suite '{suite}' (looked for {path}); build them with "
            f"`optforge baselines --suite {suite} --rebuild`"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(data: Mapping[str, Any], path: Path) -> None:
    """Write atomically (`optforge.files.write_text_atomic`), world-readable as a committed package file."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def check(data: Mapping[str, Any], suite: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) of stored baselines against a live Suite and this torch."""
    errors, warnings = [], []
    if data.get("format") != FORMAT:
        how = (f"upgrade it without reruns: `optforge baselines --suite {suite.name} --upgrade`"
               if data.get("format") == 1 else f"rebuild: `optforge baselines --suite {suite.name} --rebuild`")
        errors.append(f"baseline format {data.get('format')!r}, this optforge reads {FORMAT}; {how}")
    if data.get("suite_version") != suite.version:
        how = (f"its tasks and training loop are unchanged, so `optforge baselines --suite {suite.name} --add-seeds` "
               "carries the file over, running AdamW only on the seeds it lacks"
               if data.get("suite_digest") == suite_digest(suite) else f"rebuild: `optforge baselines --suite {suite.name} --rebuild`")
        errors.append(
            f"baselines were built for suite '{suite.name}' version {data.get('suite_version')!r}, "
            f"the suite is now version {suite.version!r}; {how}"
        )
    missing = sorted(set(suite.task_names) - set(data.get("tasks", {})))
    if missing:
        errors.append(f"baselines lack tasks {missing}; rebuild: `optforge baselines --suite {suite.name} --rebuild`")
    if data.get("suite_digest") and data.get("suite_digest") != suite_digest(suite):
        warnings.append(
            f"the tasks or training loop of suite '{suite.name}' changed since its baselines were built "
            f"(same version {suite.version!r}); bump the suite version and rebuild"
        )
    lacking = [s for s in suite.all_seeds if s not in {int(x) for x in data.get("seeds") or ()}]
    if lacking and not errors:
        warnings.append(
            f"baselines of suite '{suite.name}' lack AdamW runs on its seeds {lacking}; scores on them fall back to "
            f"the seeds the baselines have; add them: `optforge baselines --suite {suite.name} --add-seeds`"
        )
    missing = missing_wd_arms(data)
    if missing and not errors:
        where = ", ".join(f"{task} at {', '.join(f'{h} steps' for h in hs)}" for task, hs in sorted(missing.items()))
        warnings.append(
            f"AdamW's weight-decay runs of suite '{suite.name}' were measured at another lr than the one its selection "
            f"seeds pick ({where}), so stages that tune weight decay give AdamW no weight decay there; add them: "
            f"`optforge baselines --suite {suite.name} --add-wd`"
        )
    if data.get("torch") != torch_version():
        warnings.append(
            f"baselines were measured with torch {data.get('torch')}, this is torch {torch_version()}; "
            "scores may shift slightly (rebuild to be exact)"
        )
    return errors, warnings


def payload_from(data: Mapping[str, Any]) -> dict:
    """The part of stored baselines that scoring needs: AdamW's curves, step time and costs."""
    tasks = {}
    for name, t in data["tasks"].items():
        a = t["adamw"]
        tasks[name] = {
            "T": t["T"],
            "family": t.get("family", ""),
            "cost_per_step": t.get("cost_per_step"),  # None: not measured (an older file)
            "adamw": {k: a[k] for k in ("runs", "step_seconds", "state_bytes_per_param", "chosen") if k in a},
            **{k: t[k] for k in ("resolution", "sigma") if k in t},
        }
    keys = ("format", "suite", "suite_version", "torch", "seeds", "weight_decays", "rho", "selection_seeds",
            "report_seeds", "search_seeds", "cost")
    return {**{k: data.get(k) for k in keys}, "tasks": tasks}


def machine_info() -> dict:
    """The CPU model, torch, BLAS, CPU kernel level and thread count baselines are measured with."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    return {
        "cpu": cpu,
        "torch": torch.__version__,
        "blas": blas.group(1) if blas else "unknown",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": 1,  # every training job and the trusted validation run single-threaded
    }


def seed_text(seeds: Sequence[int]) -> str:
    """Seeds as short text: runs of consecutive seeds as ranges, e.g. [0, 1, 2, 5, 100..115] -> "0-2, 5, 100-115"."""
    out: list[str] = []
    for s in sorted(int(x) for x in seeds):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def cost_parts(data: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The measured costs a file carries, as (what, {runs, cpu_seconds, wall_seconds}): the build, then
    each later addition (references, weight-decay runs, AdamW on more seeds)."""
    cost = data.get("cost") or {}
    parts: list[tuple[str, Mapping[str, Any]]] = [("build", cost)]
    for key, what in (("references", "references added"), ("weight_decay", "weight-decay runs added")):
        added = cost.get(key)  # one record, or a list of them (each later addition appends one)
        parts += [(what, c) for c in ([added] if isinstance(added, dict) else added or [])]
    for c in cost.get("seeds") or []:
        parts.append((f"AdamW on seed{'s' if len(c['seeds']) > 1 else ''} {seed_text(c['seeds'])} added", c))
    return parts


def cost_text(part: Mapping[str, Any]) -> str:
    return f"{part.get('runs', '?')} runs, {part.get('cpu_seconds', '?')} s CPU, {part.get('wall_seconds', '?')} s wall"


def machine_text(machine: Mapping[str, Any] | None) -> str | None:
    """`machine_info` as one line, or None when it was not recorded."""
    if not machine or "cpu" not in machine:
        return None
    return (f"{machine['cpu']}, torch {machine.get('torch', '?')}, BLAS {machine.get('blas', '?')}, "
            f"kernels {machine.get('cpu_capability', '?')}, {machine.get('threads', '?')} thread(s)")


def provenance_lines(data: Mapping[str, Any]) -> list[str]:
    """What a file says of where it came from: its format (and the upgrade that made it), the machine
    of the build and of each later addition that recorded one, and where rho was measured."""
    up = data.get("upgraded")
    if isinstance(up, str):  # files upgraded before the record said from which format (all were format 1)
        up = {"from_format": 1, "at": up}
    lines = [f"baselines format {data.get('format')}"
             + (f" (upgraded from format {up['from_format']} on {up['at']} from its stored curves, no reruns)" if up else "")]
    built = machine_text(data.get("machine"))
    lines.append("built on: " + (built or "not recorded" + (
        f" (built {data.get('created', '?')} as format {up['from_format']}, which did not record the machine)" if up else "")))
    for what, part in cost_parts(data)[1:]:
        added = machine_text(part.get("machine"))
        if added and added != built:
            lines.append(f"{what} on: {added}")
    rho_on = machine_text(data.get("rho_measured_on"))
    if rho_on:
        lines.append(f"rho measured on: {rho_on}")
    return lines
