"""Small real datasets from scikit-learn's bundled files (never the fetch_* downloaders).

Each loader returns one split as float32 tensors, cached per split, so a problem built without
validation never even loads the validation rows. Splits are fixed permutations (task constants),
and features are standardised with training statistics only.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .base import generator

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
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = _perm("digits", len(d.target))
    idx = idx[:1400] if split == TRAIN else idx[1400:]
    x = torch.tensor(d.data[idx] / 16.0, dtype=torch.float32)
    return x, torch.tensor(d.target[idx], dtype=torch.int64)


@functools.lru_cache(maxsize=None)
def breast_cancer(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Breast cancer (569 x 30), standardised with train statistics; float 0/1 labels; 455 / 114."""
    _check(split)
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    idx = _perm("breast_cancer", len(d.target))
    tr = idx[:455]
    mean, std = d.data[tr].mean(0), d.data[tr].std(0) + 1e-8
    rows = tr if split == TRAIN else idx[455:]
    x = torch.tensor((d.data[rows] - mean) / std, dtype=torch.float32)
    return x, torch.tensor(d.target[rows], dtype=torch.float32)


@functools.lru_cache(maxsize=None)
def diabetes(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Diabetes regression (442 x 10); x and y standardised with train statistics; 300 / 142."""
    _check(split)
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    idx = _perm("diabetes", len(d.target))
    tr = idx[:300]
    mean, std = d.data[tr].mean(0), d.data[tr].std(0) + 1e-8
    ym, ys = d.target[tr].mean(), d.target[tr].std()
    rows = tr if split == TRAIN else idx[300:]
    x = torch.tensor((d.data[rows] - mean) / std, dtype=torch.float32)
    y = torch.tensor((d.target[rows] - ym) / ys, dtype=torch.float32)
    return x, y.unsqueeze(1)
