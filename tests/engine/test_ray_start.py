"""start_ray's in-process cluster: token authentication stays on (Ray's local default), set explicitly so
that Ray prints no notice about that default at every run."""

from __future__ import annotations

import os
import subprocess
import sys

START = """
import os
from optforge.scheduler import start_ray
start_ray(num_cpus=1)  # imports ray first, as optforge run does
import ray
print("mode", os.environ["RAY_AUTH_MODE"], ray.is_initialized())
ray.shutdown()
"""


def test_an_in_process_cluster_keeps_token_auth_and_prints_no_notice(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", START], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mode token True" in out.stdout
    assert "Token authentication is enabled" not in out.stderr + out.stdout
