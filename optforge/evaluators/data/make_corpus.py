"""Cut the frozen byte corpus ONCE from this Python's standard-library sources.

Not run at install or run time: the stdlib text differs between Python versions, so the corpus is
committed with the package (with the PSF licence and a SHA-256 manifest) and only this script,
kept for provenance, reads the stdlib. Re-running it on another Python gives another corpus, and
the LM suites' versions must then be bumped.

Splits (by file, never by position, so validation text is unseen text):
- train / val: top-level modules; names a-m train, n-z val.
- heldout_train / heldout_val: modules inside packages (asyncio/, email/, ...), a different kind
  of file for the held-out LM; packages a-m train, n-z val.
Every eligible file contributes its first budget/n_files bytes (whole lines), so all are represented.

Usage: python -m optforge.evaluators.data.make_corpus [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import sysconfig
from pathlib import Path

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "ensurepip", "site-packages", "turtledemo",
             "pydoc_data", "__pycache__", "__phello__", "distutils", "encodings", "config-3.11-x86_64-linux-gnu",
             "lib-dynload", "tkinter", "venv"}
BUDGETS = {"train": 620_000, "val": 180_000, "heldout_train": 240_000, "heldout_val": 80_000}
SEPARATOR = b"\n\n"


def _candidates(stdlib: Path) -> dict[str, list[Path]]:
    top = sorted(p for p in stdlib.glob("*.py") if not p.name.startswith("_") and "sysconfigdata" not in p.name)
    nested = []
    for pkg in sorted(d for d in stdlib.iterdir() if d.is_dir() and d.name not in SKIP_DIRS):
        for p in sorted(pkg.rglob("*.py")):
            rel = p.relative_to(stdlib)
            if any(part in SKIP_DIRS or part.startswith("test") for part in rel.parts[:-1]) or p.name.startswith("test"):
                continue
            nested.append(p)
    first = lambda p, root: p.relative_to(stdlib).parts[0].lower()[0]  # noqa: E731
    return {
        "train": [p for p in top if first(p, stdlib) <= "m"],
        "val": [p for p in top if first(p, stdlib) > "m"],
        "heldout_train": [p for p in nested if first(p, stdlib) <= "m"],
        "heldout_val": [p for p in nested if first(p, stdlib) > "m"],
    }


def _cut(files: list[Path], stdlib: Path, budget: int, cap: int) -> tuple[bytes, list[list]]:
    chunks, sources, total = [], [], 0
    for p in files:
        data = p.read_bytes()[:cap]
        # end on a line boundary so each chunk is whole lines
        if b"\n" in data and len(data) == cap:
            data = data[: data.rfind(b"\n") + 1]
        if total + len(data) > budget:
            break
        chunks.append(data)
        sources.append([str(p.relative_to(stdlib)), len(data)])
        total += len(data) + len(SEPARATOR)
    return SEPARATOR.join(chunks), sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent), help="output directory")
    args = ap.parse_args(argv)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = Path(args.out)
    manifest = {
        "python": sys.version.split()[0],
        "source": "CPython standard library (Lib/), see LICENSE-PSF.txt",
        "splits": {},
    }
    for split, files in _candidates(stdlib).items():
        cap = BUDGETS[split] // max(1, len(files)) - len(SEPARATOR)
        data, sources = _cut(files, stdlib, BUDGETS[split], cap)
        name = f"{split}.bin"
        (out / name).write_bytes(data)
        manifest["splits"][split] = {
            "file": name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "sources": sources,
        }
    shutil.copyfile(stdlib / "LICENSE.txt", out / "LICENSE-PSF.txt")
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(out / "manifest.json")
    for split, m in manifest["splits"].items():
        print(f"{split:14s} {m['bytes']:8d} bytes from {len(m['sources'])} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
