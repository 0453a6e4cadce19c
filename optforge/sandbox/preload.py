"""What a sandbox process imports before its first job, so that the job's wall-clock limit counts the
job and not `import torch`: the warm template does it once before it forks (optforge.sandbox.template),
a cold spawn once per job (optforge.sandbox.worker.main)."""

from __future__ import annotations

import importlib
import sys

# our modules every job uses; the worker is named here (not imported at the top) so that the
# template, which forks the worker's `supervise`, finds it loaded
MODULES = ("optforge.rule", "optforge.sandbox.protocol", "optforge.sandbox.result", "optforge.sandbox.worker")


def preload() -> None:
    """Import torch and numpy, run one optimizer step, import MODULES. A module that fails to import
    is reported on stderr and skipped: the job that needs it reports the error itself."""
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    # the first optimizer a process builds imports torch._dynamo and friends (seconds of wall time
    # on a busy machine): pay that here, not in every forked job
    # on a machine where torch sees a GPU, a backward pass here would start autograd's device threads,
    # and every forked job's own backward would fail ("Unable to handle autograd's threading in
    # combination with fork-based multiprocessing"): the step gets its gradient by hand
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        torch.nn.functional.cross_entropy(model(torch.zeros(1, 2)), torch.zeros(1, dtype=torch.long))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a broken optional preload must not stop the process
            sys.stderr.write(f"optforge sandbox: could not preload {name}: {e}\n")
