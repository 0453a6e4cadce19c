"""Warm-start programs: the hand-written seeds (optforge/seeds) that fit the program form.

Each program computes the same numbers as its seed at the seed's default constants (tested to 1e-12
in float64 through RuleOptimizer). Constants appear where the seed's formula has them (``1 - BETA1``
as 0.1), so mutations act on them one at a time, as in the Lion paper.
"""

from __future__ import annotations

from optforge.search.symbolic.program import Program, from_text

# Adam's bias corrections 1 - beta^t for beta1 = 0.9 and beta2 = 0.999, shared by the Adam-family
# programs (from_text skips the blank lines the concatenations leave)
_BIAS_CORRECTIONS = """
b1t = power(0.9, t)
bc1 = sub(1.0, b1t)
b2t = power(0.999, t)
bc2 = sub(1.0, b2t)
"""

_ADAM_CORE = (
    """
m = interp(m, g, 0.1)
g2 = square(g)
v = interp(v, g2, 0.001)
"""
    + _BIAS_CORRECTIONS
    + """
sv = sqrt(v)
sbc2 = sqrt(bc2)
vhat = div(sv, sbc2)
denom = add(vhat, 1e-08)
u = div(m, denom)
step = div(lr, bc1)
"""
)

_TEXTS: dict[str, tuple[tuple[str, ...], float, str]] = {
    "adamw": (
        ("m", "v"),
        1e-3,
        _ADAM_CORE
        + """
s = mul(u, step)
wdl = mul(lr, 0.01)
decay = mul(p, wdl)
upd = add(s, decay)
delta = negative(upd)
""",
    ),
    "adam": (
        ("m", "v"),
        1e-3,
        _ADAM_CORE
        + """
s = mul(u, step)
delta = negative(s)
""",
    ),
    "lion": (
        ("m",),
        1e-4,
        """
c = interp(m, g, 0.1)
sg = sign(c)
s = mul(sg, lr)
delta = negative(s)
m = interp(m, g, 0.01)
""",
    ),
    "signum": (
        ("m",),
        1e-3,
        """
m = interp(m, g, 0.1)
sg = sign(m)
s = mul(sg, lr)
delta = negative(s)
""",
    ),
    "sgd": (
        ("b",),
        1e-2,
        """
bm = mul(b, 0.9)
b = add(bm, g)
s = mul(b, lr)
delta = negative(s)
""",
    ),
    "nesterov": (
        ("b",),
        1e-2,
        """
bm = mul(b, 0.9)
b = add(bm, g)
bn = mul(b, 0.9)
d = add(g, bn)
s = mul(d, lr)
delta = negative(s)
""",
    ),
    "adabelief": (
        ("m", "s"),
        1e-3,
        """
m = interp(m, g, 0.1)
r = sub(g, m)
r2 = square(r)
s = interp(s, r2, 0.001)
s = add(s, 1e-16)
"""
        + _BIAS_CORRECTIONS
        + """
ss = sqrt(s)
sbc2 = sqrt(bc2)
shat = div(ss, sbc2)
denom = add(shat, 1e-16)
u = div(m, denom)
step = div(lr, bc1)
st = mul(u, step)
delta = negative(st)
""",
    ),
    "muon": (
        ("buf", "m", "v"),
        0.02,
        """
buf = interp(buf, g, 0.05)
nest = interp(g, buf, 0.95)
o = newton_schulz(nest)
scale = aspect_scale(o)
lrs = mul(lr, scale)
so = mul(o, lrs)
dmat = negative(so)
alr = mul(lr, 0.015)
m = interp(m, g, 0.1)
g2 = square(g)
v = interp(v, g2, 0.05)
b1t = power(0.9, t)
bc1 = sub(1.0, b1t)
b2t = power(0.95, t)
bc2 = sub(1.0, b2t)
sv = sqrt(v)
sbc2 = sqrt(bc2)
vhat = div(sv, sbc2)
denom = add(vhat, 1e-10)
u = div(m, denom)
step = div(alr, bc1)
sa = mul(u, step)
dadam = negative(sa)
delta = select_matrix(role, dmat, dadam)
""",
    ),
    "rmsprop": (
        ("v",),
        1e-2,
        """
g2 = square(g)
v = interp(v, g2, 0.01)
sv = sqrt(v)
denom = add(sv, 1e-08)
u = div(g, denom)
s = mul(u, lr)
delta = negative(s)
""",
    ),
    "adagrad": (
        ("s",),
        1e-2,
        """
g2 = square(g)
s = add(s, g2)
ss = sqrt(s)
denom = add(ss, 1e-10)
u = div(g, denom)
st = mul(u, lr)
delta = negative(st)
""",
    ),
    "amsgrad": (
        ("m", "v", "vmax"),
        1e-3,
        """
m = interp(m, g, 0.1)
g2 = square(g)
v = interp(v, g2, 0.001)
vmax = maximum(vmax, v)
"""
        + _BIAS_CORRECTIONS
        + """
sv = sqrt(vmax)
sbc2 = sqrt(bc2)
vhat = div(sv, sbc2)
denom = add(vhat, 1e-08)
u = div(m, denom)
step = div(lr, bc1)
s = mul(u, step)
delta = negative(s)
""",
    ),
    "grams": (
        ("m", "v"),
        1e-3,
        """
m = interp(m, g, 0.1)
g2 = square(g)
v = interp(v, g2, 0.001)
"""
        + _BIAS_CORRECTIONS
        + """
sv = sqrt(v)
sbc2 = sqrt(bc2)
vhat = div(sv, sbc2)
denom = add(vhat, 1e-06)
mh = div(m, bc1)
u = div(mh, denom)
au = absolute(u)
sg = sign(g)
d = mul(au, sg)
s = mul(d, lr)
delta = negative(s)
""",
    ),
    "diffgrad": (
        ("m", "v", "g_prev"),
        1e-3,
        """
m = interp(m, g, 0.1)
g2 = square(g)
v = interp(v, g2, 0.001)
dg = sub(g_prev, g)
adg = absolute(dg)
nadg = negative(adg)
e = exp(nadg)
e1 = add(e, 1.0)
xi = reciprocal(e1)
g_prev = mul(g, 1.0)
"""
        + _BIAS_CORRECTIONS
        + """
sbc2 = sqrt(bc2)
lrs = mul(lr, sbc2)
step = div(lrs, bc1)
sv = sqrt(v)
denom = add(sv, 1e-08)
xm = mul(xi, m)
u = div(xm, denom)
s = mul(u, step)
delta = negative(s)
""",
    ),
}


def names() -> list[str]:
    """Every seed that has a warm-start program."""
    return sorted(_TEXTS)


def program(name: str) -> Program:
    """The warm-start program of seed `name`."""
    if name not in _TEXTS:
        raise ValueError(
            f"no warm-start program for seed {name!r}; available: {', '.join(names())}"
        )
    slots, lr, text = _TEXTS[name]
    return from_text(text, slots=slots, lr=lr, name=name)
