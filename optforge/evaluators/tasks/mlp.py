"""Fully connected networks: classifiers, an autoencoder and regressions, on real and synthetic data.

One `MLPTask` covers the train-suite MLP and its held-out shifts (depth/width, horizon, batch
size, reparameterisation, loss scale), so a shift changes exactly one field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import datasets
from .base import EpochSampler, Problem, build_model, generator

_ACTS = {"relu": torch.relu, "tanh": torch.tanh}


class MLP(nn.Module):
    """Linear layers with an activation between them; optional fixed per-tensor scales.

    With `scales`, each weight/bias is stored divided by its scale and multiplied back in the
    forward pass (VeLO task augmentation): the function is unchanged, the raw parameter scale is not.
    """

    def __init__(self, sizes: tuple[int, ...], act: str = "relu"):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = _ACTS[act]
        self.scales: list[tuple[float, float]] | None = None

    def set_scales(self, gen: torch.Generator) -> None:
        """Draw scales 10^U(-1, 1) per tensor and rescale the stored weights to compensate."""
        self.scales = []
        with torch.no_grad():
            for layer in self.layers:
                cw, cb = (10 ** (2 * torch.rand(2, generator=gen) - 1)).tolist()
                layer.weight.div_(cw)
                layer.bias.div_(cb)
                self.scales.append((cw, cb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if self.scales is None:
                x = layer(x)
            else:
                cw, cb = self.scales[i]
                x = F.linear(x, layer.weight * cw, layer.bias * cb)
            if i < last:
                x = self.act(x)
        return x


@dataclass(frozen=True)
class MLPTask:
    """An MLP on a bundled dataset.

    kind: 'digits' (classification, CE), 'autoencoder' (digits reconstruction, MSE),
    'diabetes' (regression, MSE). `batch_size` = 0 means full batch. `loss_scale` multiplies the
    training loss only (validation stays the true loss). `reparam` draws per-tensor scales.
    """

    name: str = "mlp_digits"
    family: str = "mlp"
    steps: int = 300
    batch_size: int = 64
    sizes: tuple[int, ...] = (64, 128, 128, 10)
    act: str = "relu"
    kind: str = "digits"
    loss_scale: float = 1.0
    reparam: bool = False

    def _load(self, split: str):
        if self.kind in ("digits", "autoencoder"):
            x, y = datasets.digits(split)
            return (x, x) if self.kind == "autoencoder" else (x, y)
        if self.kind == "diabetes":
            return datasets.diabetes(split)
        raise ValueError(f"unknown kind '{self.kind}' for task '{self.name}'; use digits, autoencoder or diabetes")

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) if self.kind == "digits" else F.mse_loss(out, y)

    def build(self, seed: int, *, validation: bool) -> Problem:
        x, y = self._load(datasets.TRAIN)
        model = build_model(lambda: MLP(self.sizes, self.act), generator(self.name, "init", seed))
        if self.reparam:
            model.set_scales(generator(self.name, "reparam"))
        bs = self.batch_size or len(x)
        sampler = EpochSampler(len(x), bs, self.name, seed)

        def batch_loss(step: int) -> torch.Tensor:
            idx = sampler(step)
            return self.loss_scale * self._loss(model(x[idx]), y[idx])

        val_fn = None
        if validation:
            xv, yv = self._load(datasets.VAL)

            def val_fn() -> float:
                return float(self._loss(model(xv), yv))

        return Problem(model, batch_loss, val_fn)


@dataclass(frozen=True)
class TeacherStudent:
    """Regression onto a fixed random teacher MLP (10-64-64-1, tanh) with label noise.

    Fresh inputs every step (infinite data); validation is the MSE on a fixed set of 2,048
    noise-free teacher outputs, so it measures the function error alone.
    """

    name: str = "teacher_student"
    family: str = "mlp"
    steps: int = 1000
    batch_size: int = 32
    teacher: tuple[int, ...] = (10, 64, 64, 1)
    student: tuple[int, ...] = (10, 128, 128, 1)
    noise: float = 0.1

    def _teacher(self) -> MLP:
        t = build_model(lambda: MLP(self.teacher, "tanh"), generator(self.name, "teacher"))
        with torch.no_grad():
            for layer in t.layers:
                layer.weight.mul_(math.sqrt(3.0))  # unit-variance weights: a non-trivial function
        return t.requires_grad_(False)

    def build(self, seed: int, *, validation: bool) -> Problem:
        teacher = self._teacher()
        model = build_model(lambda: MLP(self.student, "tanh"), generator(self.name, "init", seed))
        n_in = self.teacher[0]

        def batch_loss(step: int) -> torch.Tensor:
            g = generator(self.name, "data", seed, step)
            x = torch.randn(self.batch_size, n_in, generator=g)
            with torch.no_grad():
                y = teacher(x) + self.noise * torch.randn(self.batch_size, 1, generator=g)
            return F.mse_loss(model(x), y)

        val_fn = None
        if validation:
            xv = torch.randn(2048, n_in, generator=generator(self.name, "val"))
            yv = teacher(xv)

            def val_fn() -> float:
                return float(F.mse_loss(model(xv), yv))

        return Problem(model, batch_loss, val_fn)
