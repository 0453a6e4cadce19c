"""Convolutional networks on the 8x8 digits: conv-shaped weights for matrix optimizers, and a
BatchNorm + residual variant for the held-out suite (BN statistics are recomputed from training
data at each snapshot before validation, which schedule-free style averaging needs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import datasets
from .base import EpochSampler, Problem, build_model, generator

BN_BATCHES = 8  # training batches used to recompute BatchNorm statistics at a snapshot


class SmallCNN(nn.Module):
    """conv3x3(1->c1) relu, conv3x3(c1->c2) relu, maxpool 2, linear head."""

    def __init__(self, c1: int = 8, c2: int = 16, side: int = 8, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.head = nn.Linear(c2 * (side // 2) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


class _Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class BNResNet(nn.Module):
    """Stem conv+BN, residual blocks (2 conv+BN each), a stride-2 pool between, global pool, head."""

    def __init__(self, width: int = 16, blocks: int = 2, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(blocks))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                x = F.avg_pool2d(x, 2)
        return self.head(x.mean((2, 3)))


def _images(split: str, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = datasets.digits(split)
    img = x.view(-1, 1, 8, 8)
    if side != 8:
        img = F.interpolate(img, size=(side, side), mode="bilinear", align_corners=False)
    return img.contiguous(), y


@dataclass(frozen=True)
class CNNTask:
    """Digits classification with a CNN. arch 'small' (8x8 input) or 'bnres' (BN + residuals)."""

    name: str = "cnn_digits"
    family: str = "cnn"
    steps: int = 200
    batch_size: int = 64
    arch: str = "small"
    side: int = 8

    def _model(self) -> nn.Module:
        if self.arch == "small":
            return SmallCNN(side=self.side)
        if self.arch == "bnres":
            return BNResNet()
        raise ValueError(f"unknown arch '{self.arch}' for task '{self.name}'; use small or bnres")

    def build(self, seed: int, *, validation: bool) -> Problem:
        x, y = _images(datasets.TRAIN, self.side)
        model = build_model(self._model, generator(self.name, "init", seed))
        sampler = EpochSampler(len(x), self.batch_size, self.name, seed)

        def batch_loss(step: int) -> torch.Tensor:
            idx = sampler(step)
            return F.cross_entropy(model(x[idx]), y[idx])

        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

        def recalibrate() -> None:
            # fresh statistics at these weights, from fixed training batches (cumulative average)
            was = model.training
            model.train()
            saved = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            for k in range(BN_BATCHES):
                model(x[sampler(k)])
            for m, mom in zip(bns, saved):
                m.momentum = mom
            model.train(was)

        val_fn = None
        if validation:
            xv, yv = _images(datasets.VAL, self.side)

            def val_fn() -> float:
                return float(F.cross_entropy(model(xv), yv))

        return Problem(model, batch_loss, val_fn, recalibrate=recalibrate if bns else None)
