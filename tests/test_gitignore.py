"""What the documented commands write into a checkout (the quickstart's `my_optimizer.py`, run
directories, reports, a MoH procedure file) is ignored by git, and nothing tracked is."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


pytestmark = pytest.mark.skipif(shutil.which("git") is None or _git("rev-parse", "--is-inside-work-tree")
                                .stdout.strip() != "true", reason="needs the git checkout")


def documented_outputs() -> list[str]:
    """Relative paths the README's and docs' commands write (`-o`, `--output`, `--out`), and the default
    file of `optforge export-procedure RUN_DIR` (./<run name>_procedure.py) for each documented run."""
    texts = [(ROOT / "README.md").read_text()] + [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    found = set()
    for text in texts:
        for path in re.findall(r"(?:^|\s)(?:-o|--output|--out)\s+([\w./-]+)", text, flags=re.M):
            if not path.startswith("/") and not path.isupper():  # placeholders: FILE, DIR
                found.add(path)
    found |= {f"{Path(p).name}_procedure.py" for p in list(found) if p.startswith("runs/")}
    return sorted(found)


def test_documented_outputs_are_ignored():
    outputs = documented_outputs()
    assert {"my_optimizer.py", "report.html", "runs/quickstart", "quickstart_procedure.py"} <= set(outputs)
    result = _git("check-ignore", "--no-index", "--verbose", "--non-matching", *outputs)
    not_ignored = [line.split("\t")[-1] for line in result.stdout.splitlines() if line.startswith("::")]
    assert not not_ignored, f"git would offer to commit these outputs: {not_ignored}"


def test_no_tracked_file_is_ignored():
    result = _git("ls-files", "--cached", "--ignored", "--exclude-standard")
    assert result.returncode == 0 and result.stdout == ""
