"""The sandbox's preload (run once before the template or a cold worker forks its jobs) never runs
autograd: on a machine where torch sees a GPU a backward pass starts autograd's device threads, and
every forked job's own backward then fails ("Unable to handle autograd's threading in combination
with fork-based multiprocessing"), as every job did on an H200 machine with torch 2.11+cu130."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import torch, torch.autograd as A
calls = []
real = A.backward
def counted(*a, **k):
    calls.append(1)
    return real(*a, **k)
A.backward = counted
from optforge.sandbox.preload import preload
preload()
import optforge.rule  # preloaded
print(len(calls))
"""


def test_preload_runs_no_backward_pass(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0"
