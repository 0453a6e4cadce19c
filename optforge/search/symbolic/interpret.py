"""The trusted interpreter of the fixed library: runs a program on real tensors.

Strategies never exec a candidate's source; they run the program object through the library that
`library.build_namespace` executed once (our own code). The numeric fingerprint and the tests use it.
`as_rule` wraps a program as an `optforge.rule.Rule`, so it runs through `RuleOptimizer` directly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from typing import Any

import torch

from optforge.rule import Ctx, Rule
from optforge.search.symbolic.program import Program, render


@functools.lru_cache(maxsize=1)
def namespace() -> dict[str, Any]:
    from optforge.search.symbolic.library import build_namespace

    return build_namespace()


def _inputs(ctx: Ctx, gnorm: float | None) -> dict[str, Any]:
    s = namespace()["_s"]
    return {
        "lr": s(ctx.lr),
        "t": s(ctx.t),
        "T": s(ctx.T or ctx.t),
        "gnorm": s(ctx.grad_norm if gnorm is None else gnorm),
        "role": ctx.role,
    }


def run_update(
    program: Program, p: torch.Tensor, g: torch.Tensor, state: dict, ctx: Ctx, gnorm: float | None = None
) -> torch.Tensor:
    """One update of `program` for one tensor: updates `state` (slot reassignment) and returns the delta.

    `gnorm` overrides `ctx.grad_norm` (the fingerprint has no optimizer to compute it).
    """
    ns = namespace()
    env: dict[str, Any] = {"p": p, "g": g, **_inputs(ctx, gnorm)}
    for s in program.slots:
        env[s] = state[s]
    for st in program.body:
        fn = ns[st.fn]
        env[st.target] = fn(*[env[a] if isinstance(a, str) else a for a in st.args])
    for s in program.slots:
        state[s] = env[s]
    return env[program.ret]


def as_rule(program: Program, name: str = "") -> Rule:
    """`program` as a trusted `Rule` (interpreted, never exec'd from generated source)."""

    def init(p: torch.Tensor, ctx: Ctx) -> dict:
        return {s: torch.zeros_like(p) for s in program.slots}

    def update(p: torch.Tensor, g: torch.Tensor, state: dict, ctx: Ctx) -> torch.Tensor:
        return run_update(program, p, g, state, ctx)

    return Rule(
        name=name or program.name or "symbolic",
        source=render(program),
        hparams={"LR": program.lr},
        init=init,
        update=update,
    )


# ---------------------------------------------------------------------------------------------
# numeric fingerprint

_FP_CASES = (((6, 4), "hidden_matrix"), ((4, 6), "head"), ((5,), "vector"), ((3, 2, 2), "conv"))
_FP_STEPS = 4
_FP_LRS = (0.37, 0.29, 0.53, 0.17)  # a varying schedule, so lr-dependence is visible


@functools.lru_cache(maxsize=1)
def _fp_data() -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(20230215)
    data = []
    for shape, _role in _FP_CASES:
        p = torch.randn(shape, generator=gen, dtype=torch.float64)
        gs = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(_FP_STEPS)]
        data.append((p, gs))
    return data


def _round(x: float, digits: int = 7) -> str:
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0:
        return "0"
    return f"{x:.{digits - 1}e}"


def fingerprint(program: Program) -> str:
    """Hash of the rounded deltas of a few steps (memoised on the program's exact JSON); see `_fingerprint`."""
    return _fingerprint_json(program.dumps())


@functools.lru_cache(maxsize=4096)
def _fingerprint_json(text: str) -> str:
    return _fingerprint(Program.from_json(json.loads(text)))


def _fingerprint(program: Program) -> str:
    """Hash of the rounded deltas of a few steps on fixed random tensors (every role kind).

    Catches duplicates that the symbolic hash cannot see (x+x vs 2*x, algebraic rewrites). Programs
    that raise get a fingerprint of the error, so equal failures share it.
    """
    h = hashlib.sha256()
    h.update(repr(program.lr).encode())
    for (shape, role), (p0, gs) in zip(_FP_CASES, _fp_data()):
        p = p0.clone()
        state = {s: torch.zeros_like(p) for s in program.slots}
        for t, g in enumerate(gs, start=1):
            ctx = Ctx(lr=_FP_LRS[t - 1], t=t, T=10, role=role, shape=tuple(shape))
            try:
                with torch.no_grad():
                    d = run_update(program, p, g, state, ctx, gnorm=1.7)
            except Exception as e:  # the program's own numeric failure, part of its behaviour
                h.update(f"error:{type(e).__name__}".encode())
                break
            vals = d.detach().reshape(-1).tolist()
            h.update(",".join(_round(v) for v in vals).encode())
            h.update(b";")
            p = p + d
    return h.hexdigest()[:20]
