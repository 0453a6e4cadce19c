"""The warm template: a clean interpreter (scrubbed environment, no secrets in memory) with torch
already imported, that forks one supervisor per job request arriving on its Unix socket.

Started by `optforge.sandbox.warm` as `python -m optforge.sandbox.template SOCKET PARENT_PID`; it
exits when its parent process is gone. It never runs untrusted code itself: isolation is applied in
the forked children (see optforge.sandbox.worker), so each job starts from the same pristine image.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys


def _preload() -> None:
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import optforge.rule  # noqa: F401
    import optforge.sandbox.protocol  # noqa: F401
    import optforge.sandbox.result  # noqa: F401
    import optforge.sandbox.worker  # noqa: F401


def _serve(conn: socket.socket) -> None:
    from optforge.sandbox.worker import supervise

    conn.settimeout(None)
    stream = conn.makefile("rwb")
    line = stream.readline()
    if not line:
        return
    supervise(json.loads(line), stream)


def main(path: str, parent_pid: int) -> None:
    _preload()
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
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                srv.close()
                _serve(conn)
            except BaseException:  # noqa: BLE001 - the caller sees a lost worker
                code = 1
            finally:
                os._exit(code)
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
