"""The fixed function library of symbolic programs (the paper's "45 common math
functions" of Chen et al. 2023, arXiv 2302.06675, after hero/fn_lib.py, plus matrix operations).

Each function is written once, as source text. The same text is rendered into every candidate
(so a candidate stays self-contained: torch and math only) and executed once in the trusted process
to build the interpreter (so the fingerprint computes exactly what the candidate computes).

Value kinds, for abstract execution:
- ``S``: a scalar (a 0-d tensor; float64 unless it came from a reduction of a parameter-shaped value);
- ``P``: a tensor with the parameter's shape and dtype;
- ``R``: the parameter's role (a string), usable only as the first argument of ``select_matrix``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

S, P, R = "S", "P", "R"

# how a function's output kind follows from its argument kinds
EW = "elementwise"  # args S or P; output P if any arg is P, else S
RED = "reduce"  # args S or P; output S
MAT = "matrix"  # args must be P; output P
MATS = "matrix_scalar"  # arg must be P; output S (a shape-derived scalar)
SEL = "select"  # (R, X, X) -> X
NULL = "nullary"  # no args; output S


@dataclass(frozen=True)
class Fn:
    name: str
    arity: int
    rule: str
    source: str
    commutative: bool = False  # argument order does not matter (for the symbolic hash)


HELPERS = {
    "_c": '''
def _c(x):
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x), dtype=torch.float64)
''',
    "_w": '''
_CONST = {}


def _w(*xs):
    # one dtype for all arguments: the narrowest floating dtype among the tensors, so a float64 scalar
    # never widens a float32 parameter's value (0-d parameters would otherwise be promoted). Casts
    # only what differs, and reuses the 0-d tensor of each number literal: this helper runs for
    # every statement of every step, and both cost more than the arithmetic on small tensors.
    dt, size = None, 0
    for x in xs:
        if isinstance(x, torch.Tensor) and (dt is None or x.element_size() < size):
            dt, size = x.dtype, x.element_size()
    if dt is None:
        dt = torch.float64
    return tuple((x if x.dtype == dt else x.to(dt)) if isinstance(x, torch.Tensor) else _const(x, dt) for x in xs)


def _const(x, dt):
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return torch.tensor(x, dtype=dt)  # keeps -0.0 and nan apart from the cache's keys
    c = _CONST.get((x, dt))
    if c is None:
        if len(_CONST) >= 4096:
            _CONST.clear()
        c = _CONST[(x, dt)] = torch.tensor(x, dtype=dt)
    return c
''',
    "_s": '''
def _s(x):
    return torch.tensor(float(x), dtype=torch.float64)
''',
    "_m2": '''
def _m2(x):
    return x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)
''',
}


def _unary(name: str, expr: str) -> Fn:
    return Fn(name, 1, EW, f"\ndef {name}(x):\n    x = _c(x)\n    return {expr}\n")


_UNARY = [
    ("absolute", "torch.abs(x)"),
    ("cos", "torch.cos(x)"),
    ("sin", "torch.sin(x)"),
    ("tan", "torch.tan(x)"),
    ("arcsin", "torch.asin(torch.clamp(x, -1.0, 1.0))"),
    ("arccos", "torch.acos(torch.clamp(x, -1.0, 1.0))"),
    ("arctan", "torch.atan(x)"),
    ("sinh", "torch.sinh(x)"),
    ("cosh", "torch.cosh(x)"),
    ("tanh", "torch.tanh(x)"),
    ("arcsinh", "torch.asinh(x)"),
    ("arccosh", "torch.acosh(torch.clamp(x, min=1.0))"),
    ("arctanh", "torch.atanh(torch.clamp(x, -0.999999, 0.999999))"),
    ("exp", "torch.exp(x)"),
    ("exp2", "torch.exp2(x)"),
    ("exp10", "torch.pow(10.0, x)"),
    ("expm1", "torch.expm1(x)"),
    ("log", "torch.log(torch.abs(x))"),
    ("log10", "torch.log10(torch.abs(x))"),
    ("log2", "torch.log2(torch.abs(x))"),
    ("log1p", "torch.log(torch.abs(1.0 + x))"),
    ("square", "x * x"),
    ("sqrt", "torch.sqrt(torch.abs(x))"),
    ("cube", "x * x * x"),
    ("cbrt", "torch.sign(x) * torch.pow(torch.abs(x), 1.0 / 3.0)"),
    ("sign", "torch.sign(x)"),
    ("reciprocal", "1.0 / x"),
    ("negative", "-x"),
]

_OTHER = [
    # binary and ternary elementwise
    Fn("add", 2, EW, "\ndef add(x, y):\n    x, y = _w(x, y)\n    return x + y\n", commutative=True),
    Fn("sub", 2, EW, "\ndef sub(x, y):\n    x, y = _w(x, y)\n    return x - y\n"),
    Fn("mul", 2, EW, "\ndef mul(x, y):\n    x, y = _w(x, y)\n    return x * y\n", commutative=True),
    Fn("div", 2, EW, "\ndef div(x, y):\n    x, y = _w(x, y)\n    return x / y\n"),
    Fn("maximum", 2, EW, "\ndef maximum(x, y):\n    return torch.maximum(*_w(x, y))\n", commutative=True),
    Fn("minimum", 2, EW, "\ndef minimum(x, y):\n    return torch.minimum(*_w(x, y))\n", commutative=True),
    Fn("power", 2, EW, "\ndef power(x, y):\n    x, y = _w(x, y)\n    return torch.pow(torch.abs(x), y)\n"),
    Fn(
        "clip",
        2,
        EW,
        "\ndef clip(x, c):\n    x, c = _w(x, c)\n    c = torch.abs(c)\n    return torch.minimum(torch.maximum(x, -c), c)\n",
    ),
    Fn("interp", 3, EW, "\ndef interp(x, y, a):\n    x, y, a = _w(x, y, a)\n    return x + a * (y - x)\n"),
    Fn(
        "clip_by_norm",
        2,
        EW,
        "\ndef clip_by_norm(x, c):\n    x, c = _w(x, c)\n"
        "    return x * torch.clamp(torch.abs(c) / (torch.linalg.vector_norm(x) + 1e-16), max=1.0)\n",
    ),
    Fn(
        "clip_by_global_norm",
        3,
        EW,
        "\ndef clip_by_global_norm(x, n, c):\n    x, n, c = _w(x, n, c)\n"
        "    return x * torch.clamp(torch.abs(c) / (torch.abs(n) + 1e-16), max=1.0)\n",
    ),
    # reductions
    Fn("norm", 1, RED, "\ndef norm(x):\n    return torch.linalg.vector_norm(_c(x))\n"),
    Fn("rms", 1, RED, "\ndef rms(x):\n    x = _c(x)\n    return torch.sqrt(torch.mean(x * x))\n"),
    Fn("mean", 1, RED, "\ndef mean(x):\n    return torch.mean(_c(x))\n"),
    Fn("dot", 2, RED, "\ndef dot(x, y):\n    x, y = _w(x, y)\n    return torch.sum(x * y)\n", commutative=True),
    Fn(
        "cosine_sim",
        2,
        RED,
        "\ndef cosine_sim(x, y):\n    x, y = _w(x, y)\n"
        "    return torch.sum(x * y) / (torch.linalg.vector_norm(x) * torch.linalg.vector_norm(y) + 1e-16)\n",
        commutative=True,
    ),
    # nullary constants
    Fn("get_pi", 0, NULL, "\ndef get_pi():\n    return _s(math.pi)\n"),
    Fn("get_e", 0, NULL, "\ndef get_e():\n    return _s(math.e)\n"),
    Fn("get_eps", 0, NULL, "\ndef get_eps():\n    return _s(1e-8)\n"),
    # matrix operations: >= 3-D tensors act as (shape[0], -1), 1-D and 0-D as one row
    Fn(
        "newton_schulz",
        1,
        MAT,
        '''
def newton_schulz(x):
    """Muon's quintic Newton-Schulz orthogonalisation, 5 steps, (a, b, c) = (3.4445, -4.7750, 2.0315)."""
    X = _m2(x)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / (torch.linalg.vector_norm(X) + 1e-7)
    for _ in range(5):
        A = X @ X.T
        X = 3.4445 * X + (-4.7750 * A + 2.0315 * (A @ A)) @ X
    if tall:
        X = X.T
    return X.reshape(x.shape)
''',
    ),
    Fn(
        "row_normalize",
        1,
        MAT,
        "\ndef row_normalize(x):\n    X = _m2(x)\n"
        "    return (X / (torch.linalg.vector_norm(X, dim=1, keepdim=True) + 1e-8)).reshape(x.shape)\n",
    ),
    Fn(
        "col_normalize",
        1,
        MAT,
        "\ndef col_normalize(x):\n    X = _m2(x)\n"
        "    return (X / (torch.linalg.vector_norm(X, dim=0, keepdim=True) + 1e-8)).reshape(x.shape)\n",
    ),
    Fn(
        "gram_mul",
        2,
        MAT,
        '''
def gram_mul(x, y):
    """(X X^T) Y, associated through the smaller Gram matrix, so either orientation is cheap."""
    X, Y = _m2(x), _m2(y)
    if X.shape[0] <= X.shape[1]:
        return ((X @ X.T) @ Y).reshape(y.shape)
    return (X @ (X.T @ Y)).reshape(y.shape)
''',
    ),
    Fn(
        "aspect_scale",
        1,
        MATS,
        "\ndef aspect_scale(x):\n    X = _m2(x)\n    return _s(math.sqrt(max(1.0, X.shape[0] / X.shape[1])))\n",
    ),
    Fn(
        "max_dim_sqrt",
        1,
        MATS,
        "\ndef max_dim_sqrt(x):\n    X = _m2(x)\n    return _s(math.sqrt(max(X.shape[0], X.shape[1])))\n",
    ),
    Fn(
        "select_matrix",
        3,
        SEL,
        '''
def select_matrix(role, a, b):
    """a for matrix roles (hidden_matrix, conv), b for every other role."""
    return a if role in ("hidden_matrix", "conv") else b
''',
    ),
]

FUNCTIONS: dict[str, Fn] = {f.name: f for f in [_unary(n, e) for n, e in _UNARY] + _OTHER}
"""Every library function by name."""

# uses of the helpers by each function's source (for rendering only what is needed)
_HELPER_ORDER = ("_c", "_w", "_s", "_m2")


def helpers_for(fn_names: set[str]) -> list[str]:
    """The helper names that the given functions' sources need, in definition order."""
    text = "".join(FUNCTIONS[n].source for n in fn_names)
    return [h for h in _HELPER_ORDER if f"{h}(" in text]


def function_source(name: str) -> str:
    """The normalised source text of one library function or helper."""
    src = HELPERS[name] if name in HELPERS else FUNCTIONS[name].source
    return textwrap.dedent(src).strip("\n") + "\n"


def build_namespace() -> dict:
    """Execute the fixed library (trusted code, ours) into a namespace for the interpreter."""
    import math

    import torch

    ns: dict = {"torch": torch, "math": math, "__name__": "optforge_symbolic_library"}
    for name in _HELPER_ORDER:
        exec(compile(function_source(name), f"<symbolic library {name}>", "exec"), ns)  # noqa: S102
    for name in FUNCTIONS:
        exec(compile(function_source(name), f"<symbolic library {name}>", "exec"), ns)  # noqa: S102
    return ns
