"""The sandbox's records: the limits a job runs under, what comes back, and the job-side failure type."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from optforge.types import SANDBOX_REASONS, Status, clean_text, status_for_reason

LAYERS = (
    "static_check",  # the source was checked against the policy before anything ran
    "process_group",  # own session and process group, killed as a whole
    "pid_namespace",  # own PID namespace: nothing it starts outlives it, it cannot see or signal the host
    "network",  # own network namespace with no interfaces up: no IP or abstract unix socket reaches anything
    "filesystem",  # writes only in its private directory: unprivileged uid and a private /tmp
    "read_only_root",  # every mount read-only but its own directory and private tmpfs (/run/lock too)
    "run_hidden",  # empty tmpfs over /run and /var/run: host daemons' unix sockets are not there
    "home_hidden",  # empty tmpfs over the caller's home, import locations bound back: ~/.netrc, ~/.ssh not there
    "ipc_namespace",  # own System V IPC namespace: no shared memory, queue or semaphore crosses it
    "disk_quota",  # its directory is a tmpfs of max_output_bytes: writes across many files stop there
    "rlimits",  # CPU seconds, address space, file size, open files, processes
    "no_secrets",  # scrubbed environment: no API keys, tokens, credentials
    "unprivileged",  # not root: a fresh uid with no capabilities, no_new_privs
    "seccomp",  # syscall filter (pip pyseccomp); reported inactive where not importable
    "landlock",  # kernel write restrictions (pip landlock); reported inactive where not importable
)


@dataclass(frozen=True)
class Limits:
    """What one job may use. `cpu_s=None` means the wall timeout plus one second of CPU.

    `require` names layers (see LAYERS) that must be active, or the job is refused with reason
    `layer_unavailable`. `mode` is "auto" (warm worker, cold spawn where fork is unsafe), "warm" or "cold".
    """

    timeout_s: float = 120.0
    memory_mb: int | None = 2048
    cpu_s: float | None = None
    max_output_bytes: int = 256 * 1024 * 1024
    static_check: bool = True
    require: tuple[str, ...] = ()
    mode: str = "auto"
    tail_bytes: int = 8192
    open_files: int = 256
    processes: int = 256

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"Limits.timeout_s must be a positive number of seconds, got {self.timeout_s!r}")
        if self.memory_mb is not None and self.memory_mb < 64:
            raise ValueError(f"Limits.memory_mb must be >= 64 (or None for no limit), got {self.memory_mb!r}")
        unknown = [r for r in self.require if r not in LAYERS]
        if unknown:
            raise ValueError(f"Limits.require names unknown layers {unknown}; known layers: {', '.join(LAYERS)}")
        if self.mode not in ("auto", "warm", "cold"):
            raise ValueError(f"Limits.mode must be 'auto', 'warm' or 'cold', got {self.mode!r}")
        object.__setattr__(self, "require", tuple(self.require))

    @classmethod
    def from_config(cls, cfg: dict | None) -> "Limits":
        """Build from a config mapping (`sandbox:` section); unknown keys raise ValueError naming them."""
        cfg = dict(cfg or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown sandbox setting(s) {unknown}; known: {', '.join(sorted(known))}")
        if "require" in cfg:
            cfg["require"] = tuple(cfg["require"])
        return cls(**cfg)

    @property
    def cpu_limit_s(self) -> int:
        return int(math.ceil(self.cpu_s if self.cpu_s is not None else self.timeout_s + 1.0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["require"] = list(self.require)
        return d


@dataclass
class SandboxResult:
    """How one job ended. `reason` is the sandbox's finer word ("signal:11", "rejected"); `status`
    is its mapping onto the one vocabulary (optforge.types.SANDBOX_REASONS)."""

    status: Status
    reason: str
    value: dict | None = None
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    exception: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0
    layers: dict[str, bool] = field(default_factory=dict)
    mode: str = ""
    uid: int | None = None  # the uid the job process ran as (fresh per job when dropped from root)

    def __post_init__(self) -> None:
        # the job's exception text and output tails are written by the candidate: cleaned here, where the
        # trusted side builds the record, before any terminal, report or prompt sees them
        self.exception = None if self.exception is None else clean_text(self.exception)
        self.stdout_tail = clean_text(self.stdout_tail)
        self.stderr_tail = clean_text(self.stderr_tail)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def failed(cls, reason: str, exception: str, **kw: Any) -> "SandboxResult":
        return cls(status=status_for_reason(reason), reason=reason, exception=exception, **kw)

    def summary(self) -> dict[str, Any]:
        """JSON-able facts without the value and buffers (for artifacts and logs)."""
        return {
            "status": self.status.value,
            "reason": self.reason,
            "exception": self.exception,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "peak_mb": round(self.peak_mb, 1),
            "layers": dict(self.layers),
            "mode": self.mode,
        }


class JobFailure(Exception):
    """Raised by a job (inside the worker) to end with a specific sandbox reason, e.g.
    `JobFailure("load_error", "rule failed to load at line 3: ...")`. Unknown reasons become 'exception'."""

    def __init__(self, reason: str, message: str):
        base = reason.split(":", 1)[0]
        self.reason = reason if base in SANDBOX_REASONS else "exception"
        super().__init__(message)
