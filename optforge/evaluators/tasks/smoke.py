"""Smoke tasks: tiny problems that touch every parameter role in well under a second.

The smoke stage is a gate, not a measurement: it exists to catch crashes, NaNs and wrong shapes
(a rule that breaks on conv weights, embeddings or 0-d scalars) before any real cost is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import EpochSampler, Problem, build_model, generator


@dataclass(frozen=True)
class SmokeQuadratic:
    """A noisy 10-D quadratic (one vector parameter); the exact objective is the validation loss."""

    name: str = "smoke_quad"
    family: str = "smoke"
    steps: int = 20
    batch_size: int = 8
    dim: int = 10

    def build(self, seed: int, *, validation: bool) -> Problem:
        eig = torch.linspace(0.5, 5.0, self.dim)
        theta = nn.Parameter(torch.randn(self.dim, generator=generator(self.name, "init", seed)))
        model = nn.ParameterDict({"theta": theta})

        def batch_loss(step: int) -> torch.Tensor:
            x = 0.1 * torch.randn(self.batch_size, self.dim, generator=generator(self.name, "data", seed, step))
            d = model["theta"] - x
            return 0.5 * (d * d * eig).sum(1).mean()

        def val() -> float:
            th = model["theta"]
            return float(0.5 * (th * th * eig).sum())

        return Problem(model, batch_loss, val if validation else None, roles={"theta": "vector"})


class _MixNet(nn.Module):
    """Embedding -> conv1d -> hidden matrix -> head, times a learnable scalar temperature."""

    def __init__(self, vocab: int, width: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.conv = nn.Conv1d(width, width, 3, padding=1)
        self.hidden = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def reset_parameters_from(self, gen: torch.Generator) -> None:
        with torch.no_grad():
            self.temperature.fill_(1.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).transpose(1, 2)  # B, W, L
        h = torch.relu(self.conv(h)).mean(2)
        h = torch.tanh(self.hidden(h))
        return self.head(h) * self.temperature


@dataclass(frozen=True)
class SmokeMix:
    """Classify short token strings by how many tokens are in the lower half of the vocabulary
    (4 bins), with a model that has every role once."""

    name: str = "smoke_mix"
    family: str = "smoke"
    steps: int = 20
    batch_size: int = 32
    vocab: int = 16
    length: int = 6
    n_train: int = 256
    n_val: int = 128

    def _data(self, n: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, self.vocab, (n, self.length), generator=generator(self.name, split))
        low = (x < self.vocab // 2).sum(1)
        return x, (low * 4 // (self.length + 1)).clamp(max=3)

    def build(self, seed: int, *, validation: bool) -> Problem:
        model = build_model(lambda: _MixNet(self.vocab, 8, 4), generator(self.name, "init", seed))
        x, y = self._data(self.n_train, "train")
        sampler = EpochSampler(self.n_train, self.batch_size, self.name, seed)

        def batch_loss(step: int) -> torch.Tensor:
            idx = sampler(step)
            return F.cross_entropy(model(x[idx]), y[idx])

        val_fn = None
        if validation:
            xv, yv = self._data(self.n_val, "val")

            def val_fn() -> float:
                return float(F.cross_entropy(model(xv), yv))

        return Problem(model, batch_loss, val_fn)
