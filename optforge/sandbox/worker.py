"""The two processes on the untrusted side of a job.

`supervise` (trusted: only our code runs in it) unshares namespaces, forks the job process, drains its
stdout/stderr into bounded tails, enforces the wall-clock limit and reports how the job ended.
The job process it forks (`optforge.sandbox.job_process`) applies every remaining layer, then imports
the trusted job function and calls it on the untrusted source.

Run as `python -m optforge.sandbox.worker` it is the cold-spawn entry: one request on stdin, JSON
lines on stdout. The warm template (optforge.sandbox.template) calls `supervise` after its fork.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import stat
import sys
import time
from typing import Any, BinaryIO, Callable

from optforge.sandbox import layers as L
from optforge.sandbox.job_process import execute
from optforge.sandbox.protocol import send

_NS_FLAGS = L.CLONE_NEWPID | L.CLONE_NEWNET | L.CLONE_NEWNS
QUOTA_POLL_S = 0.1  # how often the supervisor looks whether the job's directory is at its disk quota


def supervise(req: dict[str, Any], out: BinaryIO) -> None:
    """Run one job request to its end and send {"event": "started"} and {"event": "done"} to `out`."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    lim = req["limits"]
    workdir = req["workdir"]
    # the caller reads the result in this directory as the host sees it; the job writes it on a
    # tmpfs of its own (disk_quota) in our mount namespace, so keep a handle on the host's one
    host = _HostDir(workdir)
    ns = L.unshare_namespaces(_NS_FLAGS) if req.get("namespaces", True) else {}
    # a fresh uid only as root on the host (root of a user namespace cannot switch to an unmapped uid)
    uid = L.UID_BASE + os.getpid() if os.geteuid() == 0 and not ns.get("user") and req.get("drop_privileges", True) else None
    if uid is not None:
        try:
            os.chown(workdir, uid, uid)
        except OSError:
            uid = None
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the job process
        try:
            for fd in (out_r, err_r, ctl_r):
                os.close(fd)
            execute(req, ns, uid, out_w, err_w, ctl_w)
        except BaseException as e:  # noqa: BLE001 - job errors are caught inside: this is our own setup
            try:  # the control pipe is closed before candidate code runs, so only setup can say this
                os.write(ctl_w, json.dumps({"setup_error": f"{type(e).__name__}: {e}"}).encode())
            except BaseException:  # noqa: BLE001
                pass
        finally:
            os._exit(70)
    for fd in (out_w, err_w, ctl_w):
        os.close(fd)
    try:
        send(out, {"event": "started", "pid": pid, "supervisor": os.getpid()})
    except OSError:  # the caller is gone: stop the job and clean up after it
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        host.remove()
        return
    tail = int(lim.get("tail_bytes", 8192))
    streams = {out_r: _Tail(tail), err_r: _Tail(tail), ctl_r: _Tail(1 << 16)}

    def at_quota() -> bool:
        # the control record (complete before candidate code runs) says whether the quota tmpfs is there
        return bool(_control(streams[ctl_r]).get("disk_quota")) and _full(workdir)

    timed_out, quota_hit, status, ru = _watch(pid, streams, start + float(lim["timeout_s"]), at_quota)
    wall = time.monotonic() - start
    job_layers = _control(streams[ctl_r])
    job_uid = job_layers.pop("uid", None)
    # a job that reached its quota is stopped there (or, ending between two looks, found at it)
    disk_full = quota_hit or bool(job_layers.get("disk_quota") and not timed_out and _full(workdir))
    if job_layers.get("disk_quota") and not timed_out and not disk_full:
        host.copy_out(workdir, int(lim["max_output_bytes"]))
    setup = {k: str(job_layers.pop(k)) for k in ("refused", "setup_error") if k in job_layers}
    layers = {
        "pid_namespace": bool(ns.get("pid")),
        "network": bool(ns.get("net")),
        **{k: bool(v) for k, v in job_layers.items()},
    }
    _send_or_clean(
        out,
        host,
        {
            "event": "done",
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "timed_out": timed_out,
            "wall_s": wall,
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_mb": ru.ru_maxrss / 1024.0,
            "stdout_tail": streams[out_r].text(),
            "stderr_tail": streams[err_r].text(),
            "layers": layers,
            "uid": job_uid if isinstance(job_uid, int) else None,
            "disk_full": disk_full,
            **setup,
        },
    )


def _send_or_clean(out: BinaryIO, host: "_HostDir", message: dict[str, Any]) -> None:
    """Report to the caller; if it is gone (killed mid-job), nobody will read or remove the job's
    directory, so remove it here."""
    try:
        send(out, message)
    except OSError:
        host.remove()
    finally:
        host.close()


def _control(tail: "_Tail") -> dict[str, Any]:
    """The job process's control record (its layers), {} until it is complete."""
    try:
        rec = json.loads(tail.text() or "{}")
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def _full(path: str) -> bool:
    """Whether the file system at `path` has less than a page or an inode left."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 4096 or st.f_favail == 0


class _HostDir:
    """The job's directory as the host sees it, held by its parent's descriptor, opened before the
    supervisor's mount namespace (where the job covers that path with its quota tmpfs)."""

    def __init__(self, workdir: str):
        self.name = os.path.basename(os.path.normpath(workdir))
        self.parent = os.open(os.path.dirname(os.path.normpath(workdir)), os.O_RDONLY | os.O_DIRECTORY)

    def copy_out(self, job_dir: str, limit: int) -> None:
        """Copy the result files (the protocol's names only) from the job's tmpfs to the host's
        directory, after every job process is gone. The job wrote them, so: no symlink is followed,
        nothing blocks, at most `limit` + 1 bytes per file (the reader refuses more), and an entry
        that is not a regular file arrives as a FIFO, which the reader refuses as such."""
        dst = os.open(self.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.parent)
        try:
            with os.scandir(job_dir) as entries:
                names = [e.name for e, _ in zip(entries, range(_MAX_ENTRIES)) if _RESULT_NAME.fullmatch(e.name)]
            for name in names:
                _copy_file(os.path.join(job_dir, name), name, dst, limit)
        except OSError as e:  # the caller finds no result and says so; nothing here is the job's doing to report
            sys.stderr.write(f"optforge sandbox supervisor: copying the job's result out failed: {e}\n")
        finally:
            os.close(dst)

    def remove(self) -> None:
        shutil.rmtree(self.name, dir_fd=self.parent, ignore_errors=True)

    def close(self) -> None:
        os.close(self.parent)


_RESULT_NAME = re.compile(r"result\.json|buf_\d{1,9}\.bin")  # what protocol.write_result writes
_MAX_ENTRIES = 100_000  # a directory of the job's is scanned this far (tmpfs nr_inodes is 65536)


def _copy_file(src: str, name: str, dst_dir: int, limit: int) -> None:
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # a symlink (ELOOP) or something that cannot be opened
        fd = -1
    try:
        if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
            os.mkfifo(name, 0o600, dir_fd=dst_dir)
            return
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_dir)
        try:
            left = limit + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                os.write(out, chunk)
                left -= len(chunk)
        finally:
            os.close(out)
    finally:
        if fd >= 0:
            os.close(fd)


class _Tail:
    """The last `limit` bytes of a stream, and how many came before them."""

    def __init__(self, limit: int):
        self.limit, self.buf, self.dropped = limit, bytearray(), 0

    def add(self, data: bytes) -> None:
        self.buf += data
        extra = len(self.buf) - self.limit
        if extra > 0:
            del self.buf[:extra]
            self.dropped += extra

    def text(self) -> str:
        s = self.buf.decode("utf-8", "replace")
        return f"[... {self.dropped} earlier bytes dropped ...]\n{s}" if self.dropped else s


def _watch(pid: int, streams: dict[int, _Tail], deadline: float, at_quota: Callable[[], bool]) -> tuple[bool, bool, int, Any]:
    """Drain the job's pipes until it exits, the deadline passes or `at_quota()` says its directory is
    full (then kill its whole namespace and group). Returns (timed_out, quota_hit, wait status, rusage).

    The kernel signals nothing when a tmpfs fills (the writer gets ENOSPC), so the quota is looked at
    every QUOTA_POLL_S: one statvfs(2)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    open_fds = set(streams)
    timed_out = quota_hit = exited = False
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        watch = list(open_fds) + ([pidfd] if pidfd is not None else [])
        ready, _, _ = select.select(watch, [], [], min(remaining, QUOTA_POLL_S if pidfd is not None else 0.05))
        for fd in ready:
            if fd == pidfd:
                exited = True
            else:
                _read_into(fd, streams, open_fds)
        if pidfd is None and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            exited = True
        if not exited and at_quota():
            quota_hit = True
            break
    for kill in (os.kill, os.killpg):  # pid 1 of its namespace: killing it ends everything inside
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _, status, ru = os.wait4(pid, 0)
    end = time.monotonic() + 1.0  # collect what is left in the pipes; escaped writers cannot hold us
    while open_fds and time.monotonic() < end:
        ready, _, _ = select.select(list(open_fds), [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        for fd in ready:
            _read_into(fd, streams, open_fds)
    for fd in streams:
        os.close(fd)
    if pidfd is not None:
        os.close(pidfd)
    return timed_out, quota_hit, status, ru


def _read_into(fd: int, streams: dict[int, _Tail], open_fds: set[int]) -> None:
    data = os.read(fd, 1 << 16)
    if data:
        streams[fd].add(data)
    else:
        open_fds.discard(fd)


def main() -> None:
    """Cold-spawn entry: read one request from stdin, supervise it, report on stdout."""
    req = json.loads(sys.stdin.buffer.readline())
    from optforge.sandbox.preload import preload

    L.undumpable()  # as the warm template is (see template.main)
    preload()  # as the warm template does, so the wall-clock limit counts the job, not `import torch`
    supervise(req, sys.stdout.buffer)


if __name__ == "__main__":
    main()
