"""Byte-level language models on the frozen stdlib corpus: a small Transformer and a GRU.

Training windows are drawn at random positions of the training split (positions from the seed
and step); validation is the mean next-byte cross-entropy on fixed windows of the validation
split (files never seen in training). The held-out LM uses other files (package modules).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_corpus
from .base import Problem, build_model, generator

VOCAB = 256
VAL_WINDOWS = 64


@functools.lru_cache(maxsize=None)
def corpus_tensor(split: str) -> torch.Tensor:
    """A corpus split as an int64 tensor of byte values (hash-verified on load)."""
    return torch.frombuffer(bytearray(load_corpus(split)), dtype=torch.uint8).long()


class Block(nn.Module):
    """Pre-norm Transformer block: RMSNorm, causal SDPA attention, RMSNorm, GELU MLP."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.RMSNorm(d)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc2 = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc(self.norm2(x))))


class ByteTransformer(nn.Module):
    """Token + learned position embeddings, pre-norm blocks, final RMSNorm, untied head."""

    def __init__(self, d: int, layers: int, heads: int, context: int):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class ByteGRU(nn.Module):
    """Embedding, one GRU layer, linear head."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.rnn = nn.GRU(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.tok(idx))[0])


def _scale_embeddings(model: nn.Module, std: float) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                m.weight.mul_(std)


@dataclass(frozen=True)
class ByteLM:
    """Next-byte prediction. arch 'transformer' (d, layers, heads) or 'gru' (d, hidden).

    `corpus` is 'main' (train/val splits) or 'heldout' (heldout_train/heldout_val).
    """

    name: str = "bytelm"
    family: str = "lm"
    steps: int = 250
    batch_size: int = 16
    arch: str = "transformer"
    d: int = 48
    layers: int = 2
    heads: int = 2
    hidden: int = 128
    context: int = 48
    corpus: str = "main"

    def _splits(self) -> tuple[str, str]:
        if self.corpus == "main":
            return "train", "val"
        if self.corpus == "heldout":
            return "heldout_train", "heldout_val"
        raise ValueError(f"unknown corpus '{self.corpus}' for task '{self.name}'; use main or heldout")

    def _model(self) -> nn.Module:
        if self.arch == "transformer":
            return ByteTransformer(self.d, self.layers, self.heads, self.context)
        if self.arch == "gru":
            return ByteGRU(self.d, self.hidden)
        raise ValueError(f"unknown arch '{self.arch}' for task '{self.name}'; use transformer or gru")

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = starts.unsqueeze(1) + torch.arange(self.context + 1)
        chunk = data[idx]
        return chunk[:, :-1], chunk[:, 1:]

    def build(self, seed: int, *, validation: bool) -> Problem:
        train_split, val_split = self._splits()
        data = corpus_tensor(train_split)
        model = build_model(self._model, generator(self.name, "init", seed))
        _scale_embeddings(model, 0.1 if self.arch == "transformer" else 1.0)
        high = len(data) - self.context - 1

        def batch_loss(step: int) -> torch.Tensor:
            starts = torch.randint(0, high, (self.batch_size,), generator=generator(self.name, "data", seed, step))
            x, y = self._windows(data, starts)
            return F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))

        val_fn = None
        if validation:
            vdata = corpus_tensor(val_split)
            vstarts = torch.linspace(0, len(vdata) - self.context - 2, VAL_WINDOWS).long()
            xv, yv = self._windows(vdata, vstarts)

            def val_fn() -> float:
                return float(F.cross_entropy(model(xv).reshape(-1, VOCAB), yv.reshape(-1)))

        return Problem(model, batch_loss, val_fn)
