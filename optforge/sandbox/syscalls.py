"""The Linux calls the isolation layers make through libc (mount, unshare, prctl, capset), and their flags.

Only constants and thin wrappers: which layer uses them for what is in `layers` and `mounts`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MNT_DETACH = 2

_libc = None


def libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False  # type: ignore[assignment]
    return _libc or None


def write_file(path: str, text: str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    with open(fd, "w") as f:
        f.write(text)


_SYS_OPEN_TREE = 428  # the same number on every architecture (a syscall added after the unified table)
OPEN_TREE_CLONE = 1


def open_tree_clone(path: str) -> int | None:
    """open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `path` (no path reaches it,
    later remounts of `path` do not change it), as a descriptor; None where the kernel (before 5.2) or
    the caller's privileges do not allow it."""
    lib = libc()
    if lib is None:
        return None
    lib.syscall.restype = ctypes.c_long
    fd = lib.syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(-100), path.encode(),  # AT_FDCWD
                     ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC))
    return int(fd) if fd >= 0 else None


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    lib = libc()
    if lib is None:
        return False
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    return lib.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0
