"""A multi-node run on `ray.cluster_utils.Cluster`: work spreads over two 1-CPU nodes and survives
the removal of one of them mid-run (its evaluations come back as `lost` and are retried)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_cluster_spreads_work_and_survives_node_loss(tmp_path):
    # its own driver process: a Cluster cannot share this process with the session's local Ray
    out = subprocess.run([sys.executable, str(HERE / "cluster_driver.py"), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stderr[-3000:]
    # Ray may echo worker log lines to stdout after the result, so find the result by its prefix
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, out.stdout[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["removed"], "the node was never removed"
    assert len(result["nodes"]) == 2  # both worker nodes ran evaluations
    assert result["lost_events"] >= 1  # the removed node's work was lost ...
    assert result["statuses"] == {"ok": 10} and result["evaluations"] == 10  # ... and retried elsewhere
