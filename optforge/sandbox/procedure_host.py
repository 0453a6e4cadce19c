"""The untrusted side of a procedure run: `python -m optforge.sandbox.procedure_host IN OUT STATUS CPU_S MEMORY_MB DISABLED HOMES`.

DISABLED is "-" or a comma list of layers switched off on purpose (OPTFORGE_SANDBOX_DISABLE on the
trusted side): "namespaces", "privileges" (the uid switch), "home_hidden". HOMES is a JSON list of the
caller's home directories (`layers.caller_homes` on the trusted side: the host's own environment is
scrubbed), hidden in the procedure's mount namespace.

Two processes (the trusted side is `optforge.sandbox.procedure`); this module is the host's:

- the **host** (only our code runs in it) unshares PID, network and mount namespaces (with a user
  namespace when not root), forks the procedure process into them, and watches two things: the
  status socket (the trusted side gone: it kills the procedure and exits) and the procedure's exit
  (it reports the exit code or signal and the CPU time used on the status socket, which the
  procedure never holds);
- the **procedure process** (`procedure_process`), PID 1 of its own PID namespace, isolates itself
  (private /proc and tmpfs on /tmp, /var/tmp and /dev/shm, /run and the caller's home hidden, every other mount read-only, its own IPC
  namespace, a fresh uid when root, no capabilities, no_new_privs, a scrubbed environment, rlimits on
  CPU seconds, address space, file size, open files and processes, SIGKILL when the host dies), says
  which layers held ("ready"), reads the start message, checks the source again with
  PROCEDURE_POLICY, seeds `random`, loads the procedure with a minimal builtins table and calls
  `improve(population, utility, llm, task)` with the three proxies below (`procedure_exec`; the
  proxies are in `procedure_proxies`).

The channel is a pipe pair: IN (trusted -> procedure) and OUT (procedure -> trusted), one JSON object
per line. The procedure process writes `{"kind": "ready", "layers": {...}}` first, then one request per
proxy call, `{"id": n, "kind": "llm" | "llm_batch" | "utility", ...}`, and blocks for the response
`{"id": n, "ok": true, "value": ...}` or `{"id": n, "ok": false, "reason": "..."}`; last, the end
message `{"kind": "end", "ok": true, "value": {"source", "idea"}}` or `{"kind": "end", "ok": false,
"reason": word, "error": {"type", "message", "line", "line_text"}}` (the line in the procedure's own
source, never a trusted-side traceback). The population is local: it comes with the start message.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import sys
from typing import Any

from optforge.sandbox import layers as L
from optforge.sandbox.procedure_process import run_procedure_process

_NS_FLAGS = L.CLONE_NEWPID | L.CLONE_NEWNET | L.CLONE_NEWNS


def main(argv: list[str]) -> None:
    in_fd, out_fd, status_fd = (int(a) for a in argv[:3])
    cpu_s, memory_mb = max(1, math.ceil(float(argv[3]))), int(argv[4])
    disabled = set(argv[5].split(",")) if len(argv) > 5 else set()
    homes = [] if "home_hidden" in disabled or len(argv) < 7 else [str(h) for h in json.loads(argv[6])]
    status = socket.socket(fileno=status_fd)
    # the host holds nothing of the procedure's; it must not outlive the trusted side (status EOF)
    ns = L.unshare_namespaces(_NS_FLAGS) if "namespaces" not in disabled else {}
    host_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        status.close()
        run_procedure_process(in_fd, out_fd, ns, host_pid, cpu_s, memory_mb, "privileges" not in disabled, homes)  # never returns
    os.close(in_fd)
    os.close(out_fd)
    _send_status(status, {"child": pid})
    pidfd = os.pidfd_open(pid)
    watch: list[Any] = [pidfd, status]
    while True:
        ready, _, _ = select.select(watch, [], [])
        if pidfd in ready:
            break
        try:
            data = status.recv(1 << 12)
        except OSError:
            data = b""
        if not data:  # the trusted side is gone: nothing of ours outlives it (PID 1 takes its namespace along)
            os.kill(pid, signal.SIGKILL)
            watch = [pidfd]
    _, wait_status, ru = os.wait4(pid, 0)
    _send_status(status, {
        "exit": os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None,
        "signal": os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_mb": ru.ru_maxrss / 1024.0,
    })
    status.close()


def _send_status(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
