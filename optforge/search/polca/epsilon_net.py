"""POLCA's epsilon-net: which proposals are far enough from everything seen to be worth evaluating.

`epsilon_net` is the reference's greedy farthest-first acceptance (`AgentOpt/OpenTrace`
`polca.py::filter_candidates`): repeat { each remaining proposal's distance is the least L2 distance
to the seen set (memory, the current exploration set, and the proposals accepted so far); those at
distance <= epsilon are rejected; of the rest, the farthest is accepted and joins the seen set } until
none remain. Rejected proposals are never evaluated; each keeps its distance and its nearest point.
Epsilon 0 filters nothing (the reference's plain PrioritySearch).

Epsilon is in the embedding's units, so each embedding is normalised to a documented scale:

- `behaviour_embedding` (the default embedding): a rule's updates on the platform's fixed probe
  (`rule_probe`: a fixed sequence of gradients, of RMS 1, for one tensor of each role, the same for
  every rule), divided by the step size `lr` the probe passed, with each (tensor, step) block
  weighted equally. The L2 distance between two rules is then

      d(a, b) = sqrt(mean over (tensor, step) blocks of mean((u_a - u_b)^2) / lr^2)

  the RMS difference of their updates in units of the step size. SGD, Adam and Lion move each
  element by about lr on unit gradients, so for them (and rules of that scale) d is the relative RMS
  difference of the updates: epsilon 1e-3 means 1e-3 relative RMS. A reformatted or renamed copy
  computes the same updates (d = 0, or ~1e-16 when the arithmetic is reordered); changing a
  constant that changes the updates moves the point (AdamW: WD 0.01 -> 0.02 is 8e-3 away, BETA1
  0.9 -> 0.95 3e-2; Lion is 0.8 away). A rule's `LR` constant (which the tuned lr multiplier
  absorbs) barely moves it: the updates are divided by the probe's ctx.lr, and only the
  parameter's path differs (4e-5 for AdamW with LR tripled, through its weight decay term).
  Constants that act only on tiny gradients are invisible on unit gradients (AdamW's EPS 1e-8 ->
  1e-7: 1e-7 away) unless the probe adds a tensor with tiny gradients (RMS 1e-8: then > 1e-3);
  such extra tensors are just more named entries of `updates`.
- `unit_normalise` (the text embeddings): vectors scaled to unit length, so d is the chord
  distance sqrt(2 - 2 cos) in [0, 2], whatever the model's raw scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

import numpy as np


class ProbeError(ValueError):
    """A rule's probe updates cannot be embedded (not finite, or not the probe's layout)."""


def behaviour_embedding(updates: Mapping[str, Sequence[Any]], lr: float) -> np.ndarray:
    """The behaviour vector of a rule from its probe updates (float64, 1-D).

    `updates[name]` is the rule's update (the delta it returned) at each probe step for the probe
    tensor `name` (one per role, named by its role, plus any extra ones), as anything
    `numpy.asarray` reads: float tensors, arrays, nested lists; `lr` is the ctx.lr the probe
    passed. Names are taken in sorted order, so the layout depends only on the probe.
    Raises ProbeError when an update is not finite or there is none.
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ProbeError(f"lr={lr!r} must be the probe's step size, a finite number > 0")
    blocks = [(name, t, np.asarray(u, dtype=np.float64).ravel())
              for name in sorted(updates) for t, u in enumerate(updates[name])]
    if not blocks or any(b.size == 0 for _, _, b in blocks):
        raise ProbeError("no probe updates to embed (every probe tensor needs at least one non-empty update)")
    parts = []
    for name, t, block in blocks:
        if not np.all(np.isfinite(block)):
            raise ProbeError(f"the probe update for tensor {name} at step {t + 1} is not finite; the rule diverges "
                             "on the probe and has no behaviour point")
        parts.append(block / (lr * math.sqrt(block.size * len(blocks))))
    return np.concatenate(parts)


def unit_normalise(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    """`vector` scaled to unit L2 length (float64). Raises ValueError for a zero or non-finite vector."""
    v = np.asarray(vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(v))
    if not np.all(np.isfinite(v)) or norm == 0.0:
        raise ValueError("an embedding must be finite and non-zero to be normalised; the embedding model "
                         "returned a vector that is not")
    return v / norm


def distance(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """L2 distance between two embeddings of the same layout."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _same_layout(x, y)
    return float(np.sqrt(np.sum((x - y) ** 2)))


def _same_layout(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape != y.shape:
        raise ValueError(f"embeddings of different layouts ({x.shape} and {y.shape}) cannot be compared; "
                         "embed both with the same probe or model")


@dataclass(frozen=True)
class Decision:
    """One proposal's fate. `distance` is to the nearest point of the seen set when it was decided
    (inf when the set was empty); `nearest` is that point's key (None when empty)."""

    key: Hashable
    distance: float
    nearest: Hashable | None


@dataclass(frozen=True)
class NetResult:
    accepted: list[Decision]  # in acceptance order: farthest first
    rejected: list[Decision]  # in rejection order


def epsilon_net(proposals: Sequence[tuple[Hashable, Any]], seen: Sequence[tuple[Hashable, Any]],
                epsilon: float) -> NetResult:
    """Greedy farthest-first acceptance of `proposals` (key, embedding) against `seen` (key, embedding):
    memory plus the current exploration set. A proposal at distance <= `epsilon` is rejected; ties
    in the farthest distance go to the earlier proposal. With `epsilon == 0` every proposal is
    accepted, in the order given."""
    if not (isinstance(epsilon, (int, float)) and 0 <= epsilon < math.inf):
        raise ValueError(f"epsilon={epsilon!r} must be a finite number >= 0")
    keys = [k for k, _ in proposals]
    nearest_d = [math.inf] * len(proposals)
    nearest_k: list[Hashable | None] = [None] * len(proposals)
    vectors = [np.asarray(v, dtype=np.float64) for _, v in proposals]

    def absorb(key: Hashable, point: np.ndarray, among: list[int]) -> None:
        for i in among:
            d = distance(vectors[i], point)
            if d < nearest_d[i]:
                nearest_d[i], nearest_k[i] = d, key

    everyone = list(range(len(proposals)))
    if seen and proposals:  # one array operation over the seen set, which may hold thousands of points
        points = [np.asarray(v, dtype=np.float64) for _, v in seen]
        for p in points + vectors:
            _same_layout(points[0], p)
        stacked = np.stack(points)
        for i in everyone:
            d = np.sqrt(np.sum((stacked - vectors[i]) ** 2, axis=tuple(range(1, stacked.ndim))))
            j = int(np.argmin(d))  # the first of equally near points, as `absorb` keeps the first
            nearest_d[i], nearest_k[i] = float(d[j]), seen[j][0]
    if epsilon == 0:
        return NetResult([Decision(keys[i], nearest_d[i], nearest_k[i]) for i in everyone], [])
    accepted: list[Decision] = []
    rejected: list[Decision] = []
    remaining = everyone
    while remaining:
        kept = []
        for i in remaining:
            if nearest_d[i] <= epsilon:
                rejected.append(Decision(keys[i], nearest_d[i], nearest_k[i]))
            else:
                kept.append(i)
        if not kept:
            break
        far = max(kept, key=lambda i: (nearest_d[i], -i))
        accepted.append(Decision(keys[far], nearest_d[far], nearest_k[far]))
        remaining = [i for i in kept if i != far]
        absorb(keys[far], vectors[far], remaining)
    return NetResult(accepted, rejected)
