"""Matrix-structured problems where matrix-aware optimizers (Muon, Shampoo) have room to win.

- `linreg2d`: multi-output linear regression with ill-conditioned inputs; one 2-D weight.
- `matfact`: low-rank matrix factorisation from a small init: non-convex, starts near a saddle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Problem, generator


@dataclass(frozen=True)
class LinearRegression2D:
    """y = W* x + noise with x = R (s * z), s = logspace(0, -2): ill-conditioned, not axis-aligned.

    Validation is the exact expected MSE: ||(W - W*) C^(1/2)||_F^2 / n_out + noise^2, with C the
    input covariance. `reparam` stores W / c for a fixed scale c = 10^U(-1, 1) and multiplies it
    back in the forward pass (VeLO-style task augmentation: same function, different raw scale).
    """

    name: str = "linreg2d"
    family: str = "matrix"
    steps: int = 300
    batch_size: int = 64
    n_in: int = 32
    n_out: int = 16
    noise: float = 0.001
    rotate: bool = True
    reparam: bool = False
    scale: float = 30.0  # W = scale * stored weight: puts Adam's best lr near 1e-2

    def _problem(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        g = generator("linreg2d", "problem")  # shared by the reparameterised variant on purpose
        w_star = torch.randn(self.n_out, self.n_in, generator=g) / math.sqrt(self.n_in)
        scales = torch.logspace(0.0, -2.0, self.n_in)
        rot = torch.linalg.qr(torch.randn(self.n_in, self.n_in, generator=g))[0] if self.rotate else torch.eye(self.n_in)
        mix = rot * scales  # x = mix @ z
        c = 10 ** (2 * torch.rand((), generator=generator(self.name, "reparam")).item() - 1) if self.reparam else 1.0
        return w_star, mix, c * self.scale

    def build(self, seed: int, *, validation: bool) -> Problem:
        w_star, mix, c = self._problem()
        bound = 1.0 / math.sqrt(self.n_in)
        w0 = torch.empty(self.n_out, self.n_in).uniform_(-bound, bound, generator=generator(self.name, "init", seed))
        model = nn.ParameterDict({"weight": nn.Parameter(w0 / c)})

        def batch_loss(step: int) -> torch.Tensor:
            g = generator(self.name, "data", seed, step)
            x = torch.randn(self.batch_size, self.n_in, generator=g) @ mix.T
            y = x @ w_star.T + self.noise * torch.randn(self.batch_size, self.n_out, generator=g)
            return ((x @ (c * model["weight"]).T - y) ** 2).mean()

        def val() -> float:
            d = (c * model["weight"] - w_star) @ mix
            return float((d * d).sum() / self.n_out + self.noise**2)

        return Problem(model, batch_loss, val if validation else None, roles={"weight": "hidden_matrix"})


@dataclass(frozen=True)
class MatrixFactorization:
    """Fit M (32 x 32, rank 4, entries ~0.01) by U V, U: 32 x 8, V: 8 x 32, from a small init.

    M = low rank + a small full-rank part, so the loss has a floor instead of running down to
    float precision. Full batch; validation = the same objective (mean squared error).
    """

    name: str = "matfact"
    family: str = "matrix"
    steps: int = 300
    batch_size: int = 1
    n: int = 32
    rank: int = 4
    width: int = 8
    init_scale: float = 0.01
    target_scale: float = 0.01  # entries of M ~ N(0, target_scale^2): puts Adam's best lr near 1e-2
    noise: float = 0.01  # full-rank part of M (relative): the optimum is > 0, about 1e-4 of the start

    def build(self, seed: int, *, validation: bool) -> Problem:
        g = generator(self.name, "problem")
        a = torch.randn(self.n, self.rank, generator=g)
        b = torch.randn(self.rank, self.n, generator=g)
        target = self.target_scale * (a @ b / math.sqrt(self.rank) + self.noise * torch.randn(self.n, self.n, generator=g))
        gi = generator(self.name, "init", seed)
        model = nn.ParameterDict({
            "u": nn.Parameter(self.init_scale * torch.randn(self.n, self.width, generator=gi)),
            "v": nn.Parameter(self.init_scale * torch.randn(self.width, self.n, generator=gi)),
        })

        def objective() -> torch.Tensor:
            return ((model["u"] @ model["v"] - target) ** 2).mean()

        return Problem(model, lambda step: objective(), (lambda: float(objective())) if validation else None,
                       roles={"u": "hidden_matrix", "v": "hidden_matrix"})
