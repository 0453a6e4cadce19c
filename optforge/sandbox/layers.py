"""Isolation layers, applied inside the worker after the fork and before any candidate code runs.

Each function tries one layer and returns whether it took effect; none raises, so a machine without
user namespaces or without root still runs jobs, with the missing layer visible in every result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import re
import resource
import sys
from typing import Iterable, Mapping

log = logging.getLogger(__name__)

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MNT_DETACH = 2
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # each covered by an empty private tmpfs in the job
RUN_DIRS = ("/run", "/var/run")  # where host daemons keep their unix sockets (docker, dbus, systemd)
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


def import_locations(modules: Iterable[str] = ()) -> list[str]:
    """The real paths a job process must see to import what this process imports: every sys.path
    entry, the interpreter's prefixes, and the location of every loaded top-level package and of the
    top-level package of each of `modules` ("pkg.mod" names, resolved here if not loaded).

    An editable install keeps its package outside sys.path, behind an import hook, so sys.path alone
    misses it; the package's own `__path__` / `__file__` does not. Sorted, real, existing paths."""
    paths = tuple(p or os.getcwd() for p in sys.path if isinstance(p, str))
    names = frozenset({n for n in list(sys.modules) if "." not in n} | {m.partition(".")[0] for m in modules if m})
    key = (paths, names)
    if _located[0] != key:  # the same imports give the same answer: computed once per change (~25 ms)
        found = [*paths, sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
        for name in sorted(names):
            found += _package_locations(name)
        _located[:] = [key, sorted({os.path.realpath(p) for p in found if p and os.path.exists(p)})]
    return list(_located[1])


_located: list = [None, []]  # [(sys.path, top-level names), locations]: the last answer of import_locations


def _package_locations(name: str) -> list[str]:
    """Where top-level module `name` lives: its package directories, or its file's directory."""
    try:
        module = sys.modules.get(name)
        if module is not None:
            paths = list(getattr(module, "__path__", None) or [])
            origin = getattr(module, "__file__", None)
        else:
            spec = importlib.util.find_spec(name)
            if spec is None:
                return []
            paths = list(spec.submodule_search_locations or [])
            origin = spec.origin if spec.has_location else None
    except Exception:  # noqa: BLE001 - an odd module (lazy proxy, broken finder) has no location to give
        return []
    if origin and not paths:
        paths = [os.path.dirname(origin)]
    return [p for p in paths if isinstance(p, str)]


def private_mounts(workdir: str | None, tmpfs_bytes: int, keep: Iterable[str] = ()) -> dict[str, bool]:
    """In a fresh mount namespace: a /proc for the new PID namespace, and empty private tmpfs on
    /tmp, /var/tmp and /dev/shm. The workdir (writable; None for a process that has none) and the
    `keep` paths (import locations, read-only) that live under them are bound back in at the same place."""
    done = {"proc": False, "tmp": False}
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return done
    done["proc"] = _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    targets = [t for t in PRIVATE_TMP if os.path.isdir(t)]
    roots = [os.path.realpath(t) for t in targets]
    under = lambda p: any(p.startswith(r + "/") for r in roots)  # noqa: E731 - the root itself stays private
    work = os.path.realpath(workdir) if workdir is not None else None
    inside_work = lambda p: work is not None and (p == work or p.startswith(work + "/"))  # noqa: E731 - the job's own, writable
    back = [(work, False)] if work is not None else []
    back += [(p, True) for p in _cover(q for q in _real(keep) if under(q) and not inside_work(q))]
    back = [(p, ro) for p, ro in back if under(p)]
    back.sort(key=lambda b: len(b[0]))  # an enclosing bind first, so a nested one lands on top of it
    try:
        fds = [(p, ro, os.open(p, os.O_PATH)) for p, ro in back]
    except OSError:
        return done
    # tmpfs is RAM: keep it small, in bytes and in inodes (an empty file or symlink costs no bytes, only kernel memory)
    size = f"size={min(max(tmpfs_bytes, 1 << 20), 64 << 20)},nr_inodes=16384,mode=1777"
    ok = True
    for target in targets:
        ok = _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, size) and ok
    for p, ro, fd in fds:
        if not ok:
            break
        ok = _bind_back(fd, p, readonly=ro)
    if not ok:
        lib = libc()
        for target in reversed(targets):
            lib.umount2(target.encode(), MNT_DETACH)  # type: ignore[union-attr]
    for _, _, fd in fds:
        os.close(fd)
    done["tmp"] = ok and (workdir is None or os.path.isdir(workdir))
    return done


def expose_paths(paths: Iterable[str], uid: int) -> list[str]:
    """Let `uid` read the import locations that sit under a private directory (such as a 0700 /root
    holding pyenv or a clone): in our private mount namespace, cover that directory with an empty
    tmpfs and bind back, read-only, only the needed paths. The rest of it (keys, ssh, caches) stays
    hidden. A path that is itself private (a 0700 directory in the list) cannot be opened to `uid`
    this way and is left out. Returns the paths `uid` still cannot reach (empty: all exposed)."""
    hidden: dict[str, list[str]] = {}
    for p in _reachable_in_principle(paths, uid):
        h = _blocked_ancestor(p, uid)
        if h is not None:
            hidden.setdefault(h, []).append(p)
    for h in _cover(hidden):
        keep = _cover(p for hh, ps in hidden.items() if hh == h or hh.startswith(h + "/") for p in ps)
        try:
            fds = [(p, os.open(p, os.O_PATH)) for p in keep]
        except OSError:
            continue
        try:
            if _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755"):
                for p, fd in fds:
                    if not _bind_back(fd, p, readonly=True):
                        break
        finally:
            for _, fd in fds:
                os.close(fd)
    return blocked_paths(paths, uid)


def ipc_namespace() -> bool:
    """A System V IPC namespace of the calling process's own (needs root, or root in a user
    namespace): shared memory, message queues and semaphores it creates are invisible to the host
    and die with the namespace when its last process ends; the host's are invisible to it."""
    lib = libc()
    return lib is not None and lib.unshare(ctypes.c_int(CLONE_NEWIPC)) == 0


def hide_run(keep: Iterable[str] = ()) -> bool:
    """In our private mount namespace, an empty tmpfs over /run (and /var/run where it is a directory
    of its own): the path-based unix sockets of host daemons (docker, dbus, systemd, databases) are
    not there to connect to; a network namespace does not cover them. `keep` paths (import
    locations) under them are bound back read-only. True when every existing one is covered."""
    targets = _cover(os.path.realpath(t) for t in RUN_DIRS if os.path.isdir(t))
    ok = True
    for target in targets:
        binds = _cover(p for p in _real(keep) if p.startswith(target + "/"))
        try:
            fds = [(p, os.open(p, os.O_PATH)) for p in binds]
        except OSError:
            ok = False
            continue
        try:
            ok = _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") and ok
            for p, fd in fds:
                ok = ok and _bind_back(fd, p, readonly=True)
        finally:
            for _, fd in fds:
                os.close(fd)
    return ok and all(not _visible_entries(t, keep) for t in targets)


def _visible_entries(directory: str, keep: Iterable[str]) -> list[str]:
    """Entries of `directory` other than the first path components of the `keep` paths under it."""
    allowed = {p[len(directory) + 1:].split("/")[0] for p in _real(keep) if p.startswith(directory + "/")}
    try:
        return [e for e in os.listdir(directory) if e not in allowed]
    except OSError:
        return []


def disk_quota(workdir: str, limit_bytes: int, uid: int | None) -> bool:
    """Put the job's directory on a tmpfs of its own of `limit_bytes` (in our private mount
    namespace): everything the job writes there, across any number of files, stops at the limit
    with ENOSPC. RLIMIT_FSIZE caps one file only. The directory is empty afterwards; the
    supervisor copies the result files out (see worker._copy_out). True when the mount is in place."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    size = max(int(limit_bytes), 1 << 20)
    if not _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},nr_inodes=65536,mode=0700{owner}"):
        return False
    try:
        st = os.statvfs(workdir)
    except OSError:
        return False
    return st.f_blocks * st.f_frsize <= size + st.f_frsize and os.listdir(workdir) == []


def read_only_root(writable: Iterable[str]) -> bool:
    """Every mount in our private mount namespace read-only, `/` included, except the `writable`
    paths (the job's directory and its private tmpfs), each made a mount point of its own first.
    Each visible mount point is remounted with its own locked flags (see `_locked_flags`) and then
    checked; a mount covered by another is reached by no path and needs nothing. True when every
    mount point outside `writable` reads back read-only."""
    keep = sorted({os.path.realpath(w) for w in writable if os.path.isdir(w)})
    for w in keep:  # a directory on / (no mount of its own) would go read-only with it
        if not os.path.ismount(w) and not _mount(w, w, None, MS_BIND | MS_REC):
            return False
    points = _mount_points()
    if not points:
        return False
    ok = True
    for target in points:
        if os.path.realpath(target) in keep:
            continue
        try:
            flags = os.statvfs(target).f_flag
        except OSError:
            continue  # gone or unreachable: nothing to write there
        if not flags & os.ST_RDONLY:
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(target))
        try:
            ok = ok and bool(os.statvfs(target).f_flag & os.ST_RDONLY)
        except OSError:
            pass
    return ok


def _mount_points() -> list[str]:
    """The mount points of our mount namespace, in mount order, each once (octal escapes decoded)."""
    try:
        with open("/proc/self/mountinfo") as f:
            fields = [line.split() for line in f]
    except OSError:
        return []
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)  # noqa: E731
    return list(dict.fromkeys(unescape(f[4]) for f in fields if len(f) > 4))


def drop_capabilities() -> bool:
    """No capabilities left in any set (root in a user namespace keeps all of them over its own
    namespaces otherwise, and could unmount what hides the host). True when none is left."""
    lib = libc()
    if lib is None:
        return False
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if lib.capset(ctypes.byref(header), data) != 0:
        return False
    lib.capget(ctypes.byref(header), data)
    return all(d.effective == 0 and d.permitted == 0 for d in data)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def blocked_paths(paths: Iterable[str], uid: int) -> list[str]:
    """The paths (a private directory itself left out, see `expose_paths`) `uid` cannot reach."""
    return [p for p in _reachable_in_principle(paths, uid) if _blocked_ancestor(p, uid) is not None]


def _reachable_in_principle(paths: Iterable[str], uid: int) -> list[str]:
    return [p for p in _real(paths) if _blocked_ancestor(p, uid) != p]


def _real(paths: Iterable[str]) -> list[str]:
    return sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})


def _cover(paths: Iterable[str]) -> list[str]:
    """The shortest paths of `paths` such that every path lies in one of them."""
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(p == c or p.startswith(c.rstrip("/") + "/") for c in out):
            out.append(p)
    return out


def _bind_back(fd: int, path: str, *, readonly: bool) -> bool:
    """Bind what `fd` (opened before a tmpfs hid it) refers to at `path`, creating the mount point;
    read-only means MS_BIND, then a remount with MS_RDONLY that keeps the flags the kernel locks."""
    src = f"/proc/self/fd/{fd}"
    try:
        if os.path.isdir(src):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            if not os.path.exists(path):
                open(path, "a").close()
    except OSError:
        return False
    if not _mount(src, path, None, MS_BIND | MS_REC):
        return False
    if not readonly:
        return True
    return _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(path))


def _locked_flags(path: str) -> int:
    """The mount flags of `path` a bind remount must repeat (in a user namespace the kernel refuses
    to drop nosuid, nodev, noexec or the atime mode of the original mount)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    pairs = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
    return sum(ms for st, ms in pairs if f & st)


def _blocked_ancestor(path: str, uid: int) -> str | None:
    """The first directory on the way to `path` (itself included) that `uid` (not in any group) may
    not search."""
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
