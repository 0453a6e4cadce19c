"""The warm template: a clean interpreter (scrubbed environment, no secrets in memory) with torch
already imported, that forks one supervisor per job request arriving on its Unix socket.

Started by `optforge.sandbox.transport.TEMPLATE` as `python boot.py -m optforge.sandbox.template SOCKET PARENT_PID`; it
exits when its parent process is gone. It never runs untrusted code itself: isolation is applied in
the forked children (see optforge.sandbox.worker), so each job starts from the same pristine image.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import socket
import sys

from optforge.sandbox.boot import set_sys_path
from optforge.sandbox.layers import import_locations
from optforge.sandbox import layers as L
from optforge.sandbox.preload import preload
from optforge.sandbox.worker import supervise

_failed_imports: set[str] = set()


def _warm_import(req: dict) -> None:
    """Import the (trusted) job's module here once, so every later fork starts with it loaded."""
    module = str(req.get("job", "")).partition(":")[0]
    if not module or module in sys.modules or module in _failed_imports:
        return
    set_sys_path([str(p) for p in req.get("sys_path", [])])
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - the job process will import it again and report the error
        _failed_imports.add(module)
    if len(os.listdir("/proc/self/task")) > 1:
        sys.stderr.write(f"optforge sandbox template: importing {module} started threads; forks may be unsafe\n")


def _serve(conn: socket.socket, srv: socket.socket) -> None:
    """Read one request, preload its job module, fork a supervisor for it."""
    conn.settimeout(30.0)
    stream = conn.makefile("rwb")
    try:
        line = stream.readline()
        req = json.loads(line) if line else None
    except (OSError, ValueError):
        req = None
    if req is None:
        stream.close()
        return
    conn.settimeout(None)
    _warm_import(req)
    import_locations()  # computed here once, so each forked job finds it done (see layers.import_locations)
    gc.freeze()  # keep the preloaded objects out of the children's collections: fewer copy-on-write faults
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            srv.close()
            supervise(req, stream)
        except BaseException:  # noqa: BLE001 - the caller sees a lost worker
            code = 1
        finally:
            os._exit(code)
    stream.close()


def main(path: str, parent_pid: int) -> None:
    # every supervisor and job is forked from here and inherits this: a rule process under the same uid
    # (no user namespaces on this machine) can then neither ptrace the template, which forks every later
    # job, nor read its memory, which holds earlier candidates' sources, nor its supervisor's
    L.undumpable()
    preload()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(128)
    srv.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent_pid:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        try:
            _serve(conn, srv)
        finally:
            conn.close()
    # the caller is gone (or the socket broke): leave nothing behind
    srv.close()
    for remove in (lambda: os.unlink(path), lambda: os.rmdir(os.path.dirname(path))):
        try:
            remove()
        except OSError:
            pass


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
