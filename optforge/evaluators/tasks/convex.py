"""Convex classification on real data: logistic regression (binary and multiclass).

Validation is the plain cross-entropy on held-out rows; the L2 term is part of training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import datasets
from .base import EpochSampler, Problem, build_model, generator


class _Scaled(nn.Module):
    def __init__(self, linear: nn.Linear, scale: float):
        super().__init__()
        self.linear, self.scale = linear, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.linear(x)


@dataclass(frozen=True)
class LogisticRegression:
    """Logistic regression on a bundled dataset, L2-regularised, minibatch.

    `dataset` is 'breast_cancer' (binary, W: 1 x 30) or 'digits' (10 classes, W: 10 x 64).
    """

    name: str = "logreg"
    family: str = "convex"
    steps: int = 300
    batch_size: int = 32
    dataset: str = "breast_cancer"
    l2: float = 1e-3
    scale: float = 30.0  # logits = scale * Linear(x), init divided by scale: Adam's best lr near 1e-2

    def _load(self, split: str):
        if self.dataset == "breast_cancer":
            return datasets.breast_cancer(split)
        if self.dataset == "digits":
            return datasets.digits(split)
        raise ValueError(f"unknown dataset '{self.dataset}' for task '{self.name}'; use breast_cancer or digits")

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.dataset == "breast_cancer":
            return F.binary_cross_entropy_with_logits(logits.squeeze(1), y)
        return F.cross_entropy(logits, y)

    def build(self, seed: int, *, validation: bool) -> Problem:
        x, y = self._load(datasets.TRAIN)
        n_out = 1 if self.dataset == "breast_cancer" else 10
        model = build_model(lambda: _Scaled(nn.Linear(x.shape[1], n_out), self.scale), generator(self.name, "init", seed))
        with torch.no_grad():
            for p in model.parameters():
                p.div_(self.scale)
        sampler = EpochSampler(len(x), self.batch_size, self.name, seed)
        weight = model.linear.weight

        def batch_loss(step: int) -> torch.Tensor:
            idx = sampler(step)
            return self._loss(model(x[idx]), y[idx]) + 0.5 * self.l2 * ((self.scale * weight) ** 2).sum()

        val_fn = None
        if validation:
            xv, yv = self._load(datasets.VAL)

            def val_fn() -> float:
                return float(self._loss(model(xv), yv))

        return Problem(model, batch_loss, val_fn)
