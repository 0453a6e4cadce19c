"""The mount layers, in the job's (or procedure's) private mount namespace: private tmpfs, /run and the
caller's home hidden, import locations bound back, the disk quota and the read-only root. Each returns whether it held.
"""

from __future__ import annotations

import os
import pwd
import re
from typing import Iterable

from optforge.sandbox.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    libc,
    mount,
)

PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # each covered by an empty private tmpfs in the job
RUN_DIRS = ("/run", "/var/run")  # where host daemons keep their unix sockets (docker, dbus, systemd)


def private_mounts(workdir: str | None, tmpfs_bytes: int, keep: Iterable[str] = ()) -> dict[str, bool]:
    """In a fresh mount namespace: a /proc for the new PID namespace, and empty private tmpfs on
    /tmp, /var/tmp and /dev/shm. The workdir (writable; None for a process that has none) and the
    `keep` paths (import locations, read-only) that live under them are bound back in at the same place."""
    done = {"proc": False, "tmp": False}
    if not mount(None, "/", None, MS_REC | MS_PRIVATE):
        return done
    done["proc"] = mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
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
        ok = mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, size) and ok
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
            if mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755"):
                for p, fd in fds:
                    if not _bind_back(fd, p, readonly=True):
                        break
        finally:
            for _, fd in fds:
                os.close(fd)
    return blocked_paths(paths, uid)


def hide_run(keep: Iterable[str] = ()) -> bool:
    """In our private mount namespace, an empty tmpfs over /run (and /var/run where it is a directory
    of its own): the path-based unix sockets of host daemons (docker, dbus, systemd, databases) are
    not there to connect to; a network namespace does not cover them. `keep` paths (import
    locations) under them are bound back read-only. True when every existing one is covered."""
    return hide_dirs(RUN_DIRS, keep)


def hide_home(homes: Iterable[str], keep: Iterable[str] = (), writable: Iterable[str] = ()) -> bool:
    """In our private mount namespace, an empty tmpfs over the caller's home directories (`homes`:
    `caller_homes()` of the process that asked for the job): its 0600 files (~/.netrc, ~/.ssh,
    API keys under ~/.config) are not there to read, even for a process running under the caller's
    uid. The `keep` paths under a home (a venv, a clone or a user suite that is imported) are bound
    back read-only, the `writable` ones (the job's directory, where TMPDIR lies under the home) as
    they were. False when there is no home to hide ("/" and missing ones are left out) or one is not
    covered."""
    homes = [h for h in _real(homes) if h != "/"]
    return bool(homes) and hide_dirs(homes, keep, writable, options="size=1m,nr_inodes=1024,mode=0755")


def caller_homes() -> list[str]:
    """The calling user's home directories, for `hide_home`: $HOME and the password database's entry
    for this uid (they differ where a wrapper set HOME), as real paths of existing directories, "/"
    left out. Called on the caller's side: in a job, HOME is the job's directory and the uid may be
    another."""
    found = [os.path.expanduser("~")]
    try:
        found.append(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # a uid without an entry (a container's): $HOME is all there is
        pass
    return [h for h in _real(p for p in found if os.path.isabs(p)) if h != "/" and os.path.isdir(h)]


def hide_dirs(targets: Iterable[str], keep: Iterable[str] = (), writable: Iterable[str] = (), *,
              options: str = "size=64k,nr_inodes=64,mode=0755") -> bool:
    """In our private mount namespace, cover each existing directory of `targets` with an empty tmpfs
    (`options`; nosuid, nodev, noexec), then bind back at the same path what must stay visible: the
    `keep` paths at or under it read-only (import locations; one that encloses a target needs nothing
    from it), the `writable` paths under it as they were (a process's own directory and private
    tmpfs). A target inside a `writable` path is the process's own already (a private tmpfs) and is
    not covered again. A target whose paths cannot all be bound back is uncovered again, so that
    nothing the process needs goes missing. True when every target shows nothing but what was bound
    back."""
    own = _real(writable)
    inside = lambda p, d: p == d or p.startswith(d + "/")  # noqa: E731
    targets = _cover(os.path.realpath(t) for t in targets if os.path.isdir(t))
    ok = True
    for target in (t for t in targets if not any(inside(t, w) for w in own)):
        rw = _cover(w for w in own if inside(w, target))
        ro = _cover(p for p in _real(keep) if inside(p, target) and not any(inside(p, w) for w in rw))
        back = sorted([(p, True) for p in ro] + [(p, False) for p in rw], key=lambda b: len(b[0]))  # enclosing first
        try:
            fds = [(p, readonly, os.open(p, os.O_PATH)) for p, readonly in back]
        except OSError:
            ok = False
            continue
        try:
            held = mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
            if held and not all(_bind_back(fd, p, readonly=readonly) for p, readonly, fd in fds):
                libc().umount2(target.encode(), MNT_DETACH)  # type: ignore[union-attr]
                held = False
            ok = ok and held
        finally:
            for _, _, fd in fds:
                os.close(fd)
    # a target that is one of `writable` (a home on the private /tmp) may show all of itself
    return ok and all(not visible_entries(t, [*keep, *(w for w in own if w != t)]) for t in targets)


def visible_entries(directory: str, shown: Iterable[str]) -> list[str]:
    """Entries of `directory` other than the first path components of the `shown` paths under it (all
    of them where `directory` itself is one of `shown`: it was bound back whole); none where it
    cannot be listed."""
    real = _real(shown)
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    if directory in real:
        return entries
    allowed = {p[len(directory) + 1:].split("/")[0] for p in real if p.startswith(directory + "/")}
    return [e for e in entries if e not in allowed]


def disk_quota(workdir: str, limit_bytes: int, uid: int | None) -> bool:
    """Put the job's directory on a tmpfs of its own of `limit_bytes` (in our private mount
    namespace): everything the job writes there, across any number of files, stops at the limit
    with ENOSPC. RLIMIT_FSIZE caps one file only. The directory is empty afterwards; the
    supervisor copies the result files out (`worker._HostDir.copy_out`). True when the mount is in place."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    size = max(int(limit_bytes), 1 << 20)
    if not mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},nr_inodes=65536,mode=0700{owner}"):
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
        if not os.path.ismount(w) and not mount(w, w, None, MS_BIND | MS_REC):
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
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(target))
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
    if not mount(src, path, None, MS_BIND | MS_REC):
        return False
    if not readonly:
        return True
    return mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(path))


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
