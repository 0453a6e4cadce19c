"""The README's install, as a user takes it (issue 13): see .ci/readme-install-check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a fresh virtualenv and a full install: minutes
@pytest.mark.timeout(3600)
def test_readme_install_in_a_fresh_venv_evaluates_adamw_from_another_directory():
    if shutil.which("git") is None or not (CHECKOUT / ".git").exists():
        pytest.skip("needs the git checkout (the check copies its files as a clone has them)")
    # the user's shell: this test's virtualenv is not active there (pip's own settings stay)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = os.path.join(sys.prefix, "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    proc = subprocess.run([str(CHECKOUT / ".ci" / "readme-install-check")], capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "\nstatus ok\n" in proc.stdout and "readme install check: ok" in proc.stdout
