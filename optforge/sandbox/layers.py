"""Isolation layers, applied inside the worker after the fork and before any candidate code runs.

Each function tries one layer and returns whether it took effect; none raises, so a machine without
user namespaces or without root still runs jobs, with the missing layer visible in every result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
import sys
from typing import Mapping

log = logging.getLogger(__name__)

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MNT_DETACH = 2
UID_BASE = 1_000_000  # each job runs as UID_BASE + its supervisor's pid: no two live jobs share a uid

# variables a job may see; everything else (API keys, cloud credentials, tokens) is dropped
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE")
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "TORCH_NUM_THREADS": "1",
}
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH", "SESSION")

_libc = None


def libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False  # type: ignore[assignment]
    return _libc or None


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: PATH, locale and thread caps, never a secret-looking name."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(THREAD_ENV)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for k, v in (extra or {}).items():
        if any(m in k.upper() for m in _SECRET_MARKERS):
            continue
        env[k] = v
    return env


def unshare_namespaces(flags_wanted: int) -> dict[str, bool]:
    """unshare(2) PID, network and mount namespaces for the children of this process.

    As root this needs nothing more; otherwise it adds a user namespace mapping us to root in it.
    Tries all together, then each alone, so one refused namespace does not cost the others.
    """
    done = {"pid": False, "net": False, "mnt": False, "user": False}
    lib = libc()
    if lib is None:
        return done
    uid, gid = os.geteuid(), os.getegid()
    user = 0 if uid == 0 else CLONE_NEWUSER

    def attempt(flags: int) -> bool:
        if lib.unshare(ctypes.c_int(flags | user)) != 0:
            return False
        if user:
            try:
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"0 {uid} 1")
                _write("/proc/self/gid_map", f"0 {gid} 1")
            except OSError:
                return False
            done["user"] = True
        return True

    names = {CLONE_NEWPID: "pid", CLONE_NEWNET: "net", CLONE_NEWNS: "mnt"}
    if attempt(flags_wanted):
        for f, n in names.items():
            done[n] = bool(flags_wanted & f)
        return done
    for f, n in names.items():
        if flags_wanted & f and attempt(f):
            done[n] = True
            user = 0  # a user namespace is entered once
    return done


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    lib = libc()
    if lib is None:
        return False
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    return lib.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0


def private_mounts(workdir: str, tmpfs_bytes: int, keep: list[str] = ()) -> dict[str, bool]:
    """In a fresh mount namespace: a /proc for the new PID namespace, and empty private tmpfs on
    /tmp, /var/tmp and /dev/shm. The workdir and the `keep` paths (import paths) that live under them
    are bound back in at the same place."""
    done = {"proc": False, "tmp": False}
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return done
    done["proc"] = _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    targets = [t for t in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(t)]
    roots = [os.path.realpath(t) for t in targets]
    wanted = [os.path.realpath(workdir)] + sorted(
        {os.path.realpath(p) for p in keep if p and os.path.isdir(p)}, key=len
    )
    back: list[str] = []
    for p in wanted:
        under = any(p.startswith(r + "/") for r in roots)
        if under and not any(p == b or p.startswith(b + "/") for b in back):
            back.append(p)
    try:
        fds = [(p, os.open(p, os.O_RDONLY | os.O_DIRECTORY)) for p in back]
    except OSError:
        return done
    size = f"size={min(max(tmpfs_bytes, 1 << 20), 64 << 20)},mode=1777"  # tmpfs is RAM: keep it small
    ok = True
    for target in targets:
        ok = _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, size) and ok
    for p, fd in fds:
        if not ok:
            break
        try:
            os.makedirs(p, exist_ok=True)
            ok = _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
        except OSError:
            ok = False
    if not ok:
        lib = libc()
        for target in reversed(targets):
            lib.umount2(target.encode(), MNT_DETACH)  # type: ignore[union-attr]
    for _, fd in fds:
        os.close(fd)
    done["tmp"] = ok and os.path.isdir(workdir)
    return done


def expose_paths(paths: list[str], uid: int) -> bool:
    """Let `uid` read the interpreter and import paths that sit under a private directory (such as a
    0700 /root holding pyenv): in our private mount namespace, cover that directory with an empty
    tmpfs and bind back only the needed paths. The rest of it (keys, ssh, caches) stays hidden.
    False if a needed path could not be exposed (the caller then keeps the job's uid unchanged)."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)}, key=len)
    hidden: dict[str, list[str]] = {}
    for p in real:
        h = _blocked_ancestor(p, uid)
        if h is not None:
            hidden.setdefault(h, []).append(p)
    for h in sorted(hidden, key=len):
        if any(h.startswith(other + "/") for other in hidden if other != h):
            continue
        keep: list[str] = []
        for p in hidden[h]:  # shortest first: a path inside an already exposed one comes along
            if not any(p == k or p.startswith(k + "/") for k in keep):
                keep.append(p)
        fds = [(p, os.open(p, os.O_PATH)) for p in keep]
        try:
            if not _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755"):
                return False
            for p, fd in fds:
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(p, mode=0o755, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(p), mode=0o755, exist_ok=True)
                    open(p, "a").close()
                if not _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC):
                    return False
        finally:
            for _, fd in fds:
                os.close(fd)
    return all(_blocked_ancestor(p, uid) is None for p in real)


def _blocked_ancestor(path: str, uid: int) -> str | None:
    """The first directory on the way to `path` that `uid` (not in any group) may not search."""
    cur = "/"
    for part in [x for x in path.split("/") if x]:
        cur = os.path.join(cur, part)
        try:
            st = os.stat(cur)
        except OSError:
            return None
        if not os.path.isdir(cur):
            return None
        allowed = st.st_mode & (0o100 if st.st_uid == uid else 0o001)
        if not allowed:
            return cur
    return None


def set_rlimits(cpu_s: int, memory_mb: int | None, fsize: int, open_files: int, processes: int | None) -> bool:
    """CPU seconds (SIGXCPU, then SIGKILL 2 s later), address space, file size, open files, processes
    (per uid: effective once the job runs under its own uid), no core dumps."""
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 2))
        if memory_mb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if processes is not None:  # counts every process of the uid: only for a fresh uid of our own
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        return True
    except (ValueError, OSError) as e:
        log.debug("setrlimit failed: %s", e)
        return False


def drop_privileges(uid: int | None) -> bool:
    """Become `uid` (from root) with no groups and no capabilities; no_new_privs in any case.
    True when the process ends without root on the host."""
    lib = libc()
    if lib is not None:
        lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if os.geteuid() != 0:
        return True
    if uid is None:
        return False
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        log.debug("dropping privileges failed: %s", e)
        return False
    return os.geteuid() == uid


def set_parent_death_signal(sig: int) -> None:
    lib = libc()
    if lib is not None:
        lib.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def optional_layers() -> dict[str, bool]:
    """seccomp and landlock: not wired in yet (their pip packages are not installed here), so always
    reported inactive; the namespace, uid and mount layers above cover network and filesystem."""
    return {"seccomp": False, "landlock": False}
