"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = _readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert readme[1].strip() == ci_lines[-1].strip()


def test_readme_install_uses_the_cpu_torch_pin():
    assert "torch==2.13.0" in _readme_commands()[0]
