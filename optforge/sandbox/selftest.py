"""Trusted probe jobs for `optforge doctor`, the tests and the overhead benchmark.

`probe` reports, from inside the sandbox, what the layers actually achieve (it tries the network, a
write outside its directory, looks for secrets and for other processes); `fill` writes past the disk
quota; `noop` measures the bare per-job cost. The real training job for the overhead benchmark lives
in benchmarks/sandbox_overhead.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import socket
import stat
import sys
import uuid
from typing import Any

PROBE_SOURCE = "LR = 1e-3\n"
"""The candidate source handed to `probe`; it is never executed."""


def probe(source: str, payload: dict) -> dict[str, Any]:
    """What the job process can do here. Each field True means the isolation held."""
    facts: dict[str, Any] = {"uid": os.getuid(), "pid": os.getpid()}
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        s.connect(("127.0.0.1", int(payload.get("port", 9))))
        facts["network_blocked"] = False
    except OSError as e:
        facts["network_blocked"] = "unreachable" in str(e).lower() or getattr(e, "errno", 0) in (101, 99, 1, 13)
    finally:
        s.close()
    target = payload.get("write_probe")
    if target:
        try:
            with open(target, "w") as f:
                f.write("escaped")
            facts["write_blocked"] = False
        except OSError:
            facts["write_blocked"] = True
    markers = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
    facts["secrets_seen"] = sorted(k for k in os.environ if any(m in k.upper() for m in markers))
    try:
        facts["processes_visible"] = len([d for d in os.listdir("/proc") if d.isdigit()])
    except OSError:
        facts["processes_visible"] = -1
    facts["tmp_entries"] = len(os.listdir("/tmp")) if os.path.isdir("/tmp") else -1
    token = str(payload.get("token", "probe"))
    facts["world_writable_written"] = [d for d in payload.get("world_writable", []) if _can_create(d, token)]
    facts["unix_sockets_reached"] = _reachable_unix_sockets(payload.get("sockets", []))
    if "homes" in payload:
        facts["home_entries"] = _home_entries(payload["homes"], payload.get("keep", []))
    if "ipc_key" in payload:
        facts["host_ipc_seen"], facts["ipc_left"] = _sysv_ipc(int(payload["ipc_key"]), int(payload["ipc_leave_key"]))
    return facts


def _home_entries(homes: list[str], keep: list[str]) -> list[str]:
    """What shows of the caller's home directories here ("home/entry" each), other than the import
    locations (`keep`, the caller's; and this process's own) and the job's directory under them."""
    from optforge.sandbox.import_locations import import_locations
    from optforge.sandbox.mounts import visible_entries

    shown = [*keep, *import_locations(), *sys.path, os.getcwd()]
    return [os.path.join(h, e) for h in homes for e in sorted(visible_entries(os.path.realpath(h), shown))]


def _can_create(directory: str, token: str) -> bool:
    """Whether a file named after `token` could be created in `directory` (it is left there for the
    caller to look for from outside: a private directory would hide it)."""
    try:
        with open(os.path.join(directory, f"optforge-probe-{token}"), "w") as f:
            f.write("escaped")
        return True
    except OSError:
        return False


def _reachable_unix_sockets(paths: list[str]) -> list[str]:
    """Which of `paths` (unix socket files on the host) a connection reaches from here."""
    reached = []
    for path in paths:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect(path)
            reached.append(path)
        except OSError:
            pass
        finally:
            s.close()
    return reached


IPC_CREAT = 0o1000


def _sysv_ipc(host_key: int, leave_key: int) -> tuple[bool, bool]:
    """(whether the host's shared memory segment `host_key` is visible here, whether a segment
    `leave_key` could be created here; it is left behind for the caller to look for)."""
    libc = _libc()
    seen = libc.shmget(ctypes.c_int(host_key), ctypes.c_size_t(0), ctypes.c_int(0)) >= 0
    left = libc.shmget(ctypes.c_int(leave_key), ctypes.c_size_t(4096), ctypes.c_int(IPC_CREAT | 0o600)) >= 0
    return seen, left


def fill(source: str, payload: dict) -> dict[str, Any]:
    """Write `payload["bytes"]` into many files of the working directory (none over 4 MiB, so the
    per-file size limit does not stop it) and keep them. Under the disk quota the job is stopped at
    the quota (reason `disk_quota`); without it, it returns {"bytes_written": n}."""
    written, block, per_file, limit = 0, bytes(1 << 20), 4, int(payload["bytes"])
    try:
        while written < limit:
            with open(f"fill_{written >> 22}.bin", "wb", buffering=0) as f:
                for _ in range(per_file):
                    if written >= limit:
                        break
                    written += f.write(block)
    except OSError:
        pass
    return {"bytes_written": written}


def noop(source: str, payload: dict) -> dict[str, Any]:
    """Does nothing: its round trip is the sandbox's own per-job cost."""
    return {}


# ---------------------------------------------------------------------------------------------
# on the host, around a probe run


WORLD_WRITABLE_CANDIDATES = ("/run/lock", "/var/lock", "/var/crash", "/var/mail", "/var/metrics",
                             "/dev/mqueue", "/var/spool/cron/crontabs", "/var/lib/php/sessions",
                             "/tmp", "/var/tmp", "/dev/shm")


class HostProbes:
    """What the probe job tries to reach, set up on the host: the world-writable directories found
    here, the unix sockets under /run (plus one of our own in a world-writable directory under /run
    where we may bind one), a System V shared memory segment of our own. After the run,
    `seen_from_outside` says what the job left where the host can see it; leaving the block removes
    everything either side made."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:12]
        self.world_writable = sorted({os.path.realpath(d) for d in WORLD_WRITABLE_CANDIDATES
                                      if os.path.isdir(d) and os.stat(d).st_mode & 0o002})
        self.sockets: list[str] = []
        self._listener: socket.socket | None = None
        self.ipc_key = random.randint(1 << 20, 1 << 30)
        self.ipc_leave_key = self.ipc_key + 1
        self._shm = -1

    def __enter__(self) -> "HostProbes":
        run_dirs = [d for d in self.world_writable if d == "/run" or d.startswith("/run/")]
        if run_dirs:
            path = os.path.join(run_dirs[0], f"optforge-probe-{self.token}.sock")
            try:
                self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._listener.bind(path)
                os.chmod(path, 0o777)  # so only the layer, not the file mode, can keep the job out
                self._listener.listen(8)
            except OSError:
                self._listener = None
        self.sockets = unix_sockets_under(("/run", "/var/run"))
        self._shm = _libc().shmget(ctypes.c_int(self.ipc_key), ctypes.c_size_t(4096), ctypes.c_int(IPC_CREAT | 0o666))
        return self

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token, "world_writable": self.world_writable, "sockets": self.sockets}
        if self._shm >= 0:
            out.update(ipc_key=self.ipc_key, ipc_leave_key=self.ipc_leave_key)
        return out

    def seen_from_outside(self) -> dict[str, Any]:
        """{"world_writable": directories holding the probe's file, "ipc_left": whether its segment
        outlived the job}."""
        marker = f"optforge-probe-{self.token}"
        left = _libc().shmget(ctypes.c_int(self.ipc_leave_key), ctypes.c_size_t(0), ctypes.c_int(0))
        return {"world_writable": [d for d in self.world_writable if os.path.exists(os.path.join(d, marker))],
                "ipc_left": left >= 0}

    def __exit__(self, *exc: object) -> None:
        marker = f"optforge-probe-{self.token}"
        for d in self.world_writable:
            try:
                os.remove(os.path.join(d, marker))
            except OSError:
                pass
        if self._listener is not None:
            path = self._listener.getsockname()
            self._listener.close()
            try:
                os.remove(path)
            except OSError:
                pass
        lib = _libc()
        for key in (self.ipc_key, self.ipc_leave_key):
            shm = lib.shmget(ctypes.c_int(key), ctypes.c_size_t(0), ctypes.c_int(0))
            if shm >= 0:
                lib.shmctl(ctypes.c_int(shm), ctypes.c_int(IPC_RMID), None)


IPC_RMID = 0


def unix_sockets_under(roots: tuple[str, ...], depth: int = 4, limit: int = 64) -> list[str]:
    """Socket files under `roots` (real paths, at most `depth` levels down, at most `limit`)."""
    found: list[str] = []
    for root in sorted({os.path.realpath(r) for r in roots if os.path.isdir(r)}):
        for here, dirs, files in os.walk(root):
            if here.count("/") - root.count("/") >= depth:
                dirs[:] = []
            for name in files:
                path = os.path.join(here, name)
                try:
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        found.append(path)
                except OSError:
                    continue
                if len(found) >= limit:
                    return found
    return found


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
