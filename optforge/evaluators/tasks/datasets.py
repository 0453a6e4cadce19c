"""Small real datasets from scikit-learn's bundled files (never the fetch_* downloaders).

Digits and breast cancer are read directly from the installed scikit-learn package
(`sklearn/datasets/data/`, the same files `load_digits` and `load_breast_cancer` read) without
importing scikit-learn: that import costs about a second in every sandboxed training job that
needs them. Diabetes (held-out only) still goes through `load_diabetes`. A test checks the
values against scikit-learn's own loaders.

Each loader returns one split as float32 tensors, cached per split, so a problem built without
validation never even loads the validation rows. Splits are fixed permutations (task constants),
and features are standardised with training statistics only.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import generator


def sklearn_data_dir() -> Path:
    """The directory of scikit-learn's bundled dataset files, found without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-learn is not installed; install it (pip install scikit-learn) for the dataset tasks")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not path.is_dir():
        raise RuntimeError(f"scikit-learn's bundled datasets are missing from {path}; reinstall scikit-learn")
    return path


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 64) pixel values 0..16 and labels, as load_digits returns them."""
    with gzip.open(sklearn_data_dir() / "digits.csv.gz", "rt") as f:
        arr = np.loadtxt(f, delimiter=",")
    return arr[:, :-1], arr[:, -1].astype(np.int64)


def read_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """(569, 30) features and 0/1 labels, as load_breast_cancer returns them."""
    with open(sklearn_data_dir() / "breast_cancer.csv") as f:
        n, d = (int(v) for v in f.readline().split(",")[:2])
        arr = np.loadtxt(f, delimiter=",")
    if arr.shape != (n, d + 1):
        raise RuntimeError(f"breast_cancer.csv has shape {arr.shape}, expected {(n, d + 1)}; reinstall scikit-learn")
    return arr[:, :d], arr[:, d].astype(np.int64)


def read_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """(442, 10) raw features and the target, as load_diabetes(scaled=False) returns them."""
    base = sklearn_data_dir()
    with gzip.open(base / "diabetes_data_raw.csv.gz", "rt") as f:
        x = np.loadtxt(f)
    with gzip.open(base / "diabetes_target.csv.gz", "rt") as f:
        y = np.loadtxt(f)
    return x, y

TRAIN, VAL = "train", "val"


def _check(split: str) -> None:
    if split not in (TRAIN, VAL):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def _perm(name: str, n: int) -> np.ndarray:
    return torch.randperm(n, generator=generator("dataset-split", name)).numpy()


@functools.lru_cache(maxsize=None)
def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 digits (1,797 images): x in [0, 1] shape (n, 64), int64 labels; 1,400 train / 397 val."""
    _check(split)
    data, target = read_digits()
    idx = _perm("digits", len(target))
    idx = idx[:1400] if split == TRAIN else idx[1400:]
    x = torch.tensor(data[idx] / 16.0, dtype=torch.float32)
    return x, torch.tensor(target[idx], dtype=torch.int64)


@functools.lru_cache(maxsize=None)
def breast_cancer(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Breast cancer (569 x 30), standardised with train statistics; float 0/1 labels; 455 / 114."""
    _check(split)
    data, target = read_breast_cancer()
    idx = _perm("breast_cancer", len(target))
    tr = idx[:455]
    mean, std = data[tr].mean(0), data[tr].std(0) + 1e-8
    rows = tr if split == TRAIN else idx[455:]
    x = torch.tensor((data[rows] - mean) / std, dtype=torch.float32)
    return x, torch.tensor(target[rows], dtype=torch.float32)


@functools.lru_cache(maxsize=None)
def diabetes(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Diabetes regression (442 x 10); x and y standardised with train statistics; 300 / 142."""
    _check(split)
    # through sklearn's loader (scaled=True), as the committed held-out baselines were built
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    data, target = d.data, d.target
    idx = _perm("diabetes", len(target))
    tr = idx[:300]
    mean, std = data[tr].mean(0), data[tr].std(0) + 1e-8
    ym, ys = target[tr].mean(), target[tr].std()
    rows = tr if split == TRAIN else idx[300:]
    x = torch.tensor((data[rows] - mean) / std, dtype=torch.float32)
    y = torch.tensor((target[rows] - ym) / ys, dtype=torch.float32)
    return x, y.unsqueeze(1)
