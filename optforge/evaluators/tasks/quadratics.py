"""Quadratics and other synthetic objectives with a known optimum (validation = exact objective).

The problem structure (eigenvalues, rotation, optimum) is a task constant; the seed sets the
initial point and the noise, so every rule sees the same problem and the same noise sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Problem, generator


def haar_rotation(d: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal d x d matrix (QR of a Gaussian, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def _vector_model(theta: torch.Tensor) -> nn.Module:
    return nn.ParameterDict({"theta": nn.Parameter(theta.float())})


@dataclass(frozen=True)
class NoisyQuadratic:
    """DeepOBS-style quadratic: 0.5 (theta - x)^T Q (theta - x), x ~ N(0, sigma^2 I) per example.

    Q = R diag(eig) R^T with 90 eigenvalues U(0, 1) and 10 U(30, 60), R Haar. Validation is the
    noise-free objective 0.5 theta^T Q theta (optimum 0). Momentum/SGD-friendly, noisy.
    """

    name: str = "quad_deepobs"
    family: str = "quadratic"
    steps: int = 300
    batch_size: int = 16
    dim: int = 100
    sigma: float = 0.1
    init_scale: float = 0.1

    def _hessian(self) -> torch.Tensor:
        g = generator(self.name, "problem")
        n_big = self.dim // 10
        eig = torch.cat([torch.rand(self.dim - n_big, generator=g), 30 + 30 * torch.rand(n_big, generator=g)])
        rot = haar_rotation(self.dim, g)
        return (rot * eig) @ rot.T

    def build(self, seed: int, *, validation: bool) -> Problem:
        q = self._hessian()
        model = _vector_model(self.init_scale * torch.randn(self.dim, generator=generator(self.name, "init", seed)))

        def batch_loss(step: int) -> torch.Tensor:
            x = self.sigma * torch.randn(self.batch_size, self.dim, generator=generator(self.name, "data", seed, step))
            d = model["theta"] - x
            return 0.5 * ((d @ q) * d).sum(1).mean()

        def val() -> float:
            th = model["theta"]
            return float(0.5 * th @ q @ th)

        return Problem(model, batch_loss, val if validation else None, roles={"theta": "vector"})


@dataclass(frozen=True)
class IllConditionedQuadratic:
    """Deterministic rotated quadratic, log-uniform spectrum with condition number kappa."""

    name: str = "quad_illcond"
    family: str = "quadratic"
    steps: int = 200
    batch_size: int = 1  # full batch, deterministic
    dim: int = 50
    kappa: float = 1e4
    scale: float = 0.003  # distance scale of the optimum and the start (sets Adam's best lr near 1e-2)

    def build(self, seed: int, *, validation: bool) -> Problem:
        g = generator(self.name, "problem")
        eig = torch.logspace(-2.0, -2.0 + float(torch.log10(torch.tensor(self.kappa))), self.dim)
        rot = haar_rotation(self.dim, g)
        q = (rot * eig) @ rot.T
        opt = self.scale * torch.randn(self.dim, generator=g)
        model = _vector_model(opt + self.scale * torch.randn(self.dim, generator=generator(self.name, "init", seed)))

        def objective() -> torch.Tensor:
            d = model["theta"] - opt
            return 0.5 * d @ q @ d

        return Problem(model, lambda step: objective(), (lambda: float(objective())) if validation else None,
                       roles={"theta": "vector"})


@dataclass(frozen=True)
class Rosenbrock:
    """2-D Rosenbrock (1 - x)^2 + 100 (y - x^2)^2 from near (-1.5, 2): a narrow curved valley.

    The parameter is w with (x, y) = scale * w, so that Adam's best lr lands near 1e-2 like on
    the other tasks (Adam in w at lr is Adam in (x, y) at scale * lr).
    """

    name: str = "rosenbrock"
    family: str = "quadratic"
    steps: int = 500
    batch_size: int = 1
    start: tuple[float, float] = (-1.5, 2.0)
    scale: float = 100.0

    def build(self, seed: int, *, validation: bool) -> Problem:
        start = torch.tensor(self.start) + 0.05 * torch.randn(2, generator=generator(self.name, "init", seed))
        model = _vector_model(start / self.scale)

        def objective() -> torch.Tensor:
            x, y = self.scale * model["theta"][0], self.scale * model["theta"][1]
            return (1 - x) ** 2 + 100 * (y - x * x) ** 2

        return Problem(model, lambda step: objective(), (lambda: float(objective())) if validation else None,
                       roles={"theta": "vector"})


@dataclass(frozen=True)
class NoisyQuadraticModel:
    """NQM (Zhang et al. 2019): diagonal H with h_i = 1/i, gradient noise covariance H / B.

    Loss on a batch: 0.5 sum h_i theta_i^2 - eps . theta with eps ~ N(0, H/B), so the gradient is
    H theta - eps. Validation: the noise-free 0.5 theta^T H theta.
    """

    name: str = "nqm"
    family: str = "quadratic"
    steps: int = 1000
    batch_size: int = 32
    dim: int = 1000
    scale: float = 0.1  # start and noise scale (the whole problem scaled: Adam's best lr near 1e-2)

    def build(self, seed: int, *, validation: bool) -> Problem:
        h = 1.0 / torch.arange(1, self.dim + 1, dtype=torch.float32)
        noise_std = self.scale * (h / self.batch_size).sqrt()
        model = _vector_model(self.scale * torch.randn(self.dim, generator=generator(self.name, "init", seed)))

        def batch_loss(step: int) -> torch.Tensor:
            eps = noise_std * torch.randn(self.dim, generator=generator(self.name, "data", seed, step))
            th = model["theta"]
            return 0.5 * (h * th * th).sum() - (eps * th).sum()

        def val() -> float:
            th = model["theta"]
            return float(0.5 * (h * th * th).sum())

        return Problem(model, batch_loss, val if validation else None, roles={"theta": "vector"})
