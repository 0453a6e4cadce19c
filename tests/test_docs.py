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


def test_tests_run_against_the_installed_package():
    addopts = re.search(r"^addopts = (.*)$", (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert "--import-mode=importlib" in addopts
    # `python -m pytest` in the checkout would put its root on sys.path, which tests/conftest.py refuses
    assert _readme_commands()[1].strip().endswith("&& pytest")


def test_ci_checks_the_readme_install_from_another_directory():
    ci = (ROOT / ".ci" / "run").read_text()
    check = (ROOT / ".ci" / "readme-install-check").read_text()
    assert ".ci/readme-install-check" in ci
    assert "optforge eval adamw --suite train_quick" in check and 'grep -qx "status ok"' in check
