"""The frozen byte corpus for the language-model tasks (cut once by make_corpus.py).

About 1 MB of CPython standard-library source, split by file into train/val and a held-out pair
of splits from package modules. Shipped with the PSF licence (LICENSE-PSF.txt). Loading checks
each split's SHA-256 against manifest.json, so a corrupted or edited corpus is caught instead of
silently changing every score.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources

SPLITS = ("train", "val", "heldout_train", "heldout_val")


class CorpusError(RuntimeError):
    """The shipped corpus is missing or does not match its manifest."""


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    """The corpus manifest: Python version it was cut from, and per split file, bytes, sha256, sources."""
    try:
        text = resources.files(__package__).joinpath("manifest.json").read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise CorpusError("optforge/evaluators/data/manifest.json is missing; reinstall optforge") from e
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def load_corpus(split: str) -> bytes:
    """The bytes of one split, verified against the manifest's SHA-256."""
    if split not in SPLITS:
        raise ValueError(f"unknown corpus split '{split}'; use one of {', '.join(SPLITS)}")
    entry = manifest()["splits"][split]
    try:
        data = resources.files(__package__).joinpath(entry["file"]).read_bytes()
    except FileNotFoundError as e:
        raise CorpusError(f"corpus file {entry['file']} is missing; reinstall optforge") from e
    verify(data, entry["sha256"], split)
    return data


def verify(data: bytes, expected_sha256: str, split: str = "?") -> None:
    """Raise CorpusError when `data` does not hash to `expected_sha256`."""
    got = hashlib.sha256(data).hexdigest()
    if got != expected_sha256:
        raise CorpusError(
            f"corpus split '{split}' has SHA-256 {got[:16]}..., the manifest says {expected_sha256[:16]}...; "
            "the shipped corpus was modified: reinstall optforge (or re-cut it with make_corpus.py and bump "
            "the LM suites' versions)"
        )
