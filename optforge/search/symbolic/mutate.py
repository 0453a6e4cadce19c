"""Mutations of programs (Chen et al. 2023, arXiv 2302.06675; hero/core.py
of `google/automl`): insert, delete, modify a statement, and multiply a constant by 2^N(0,1).

Every child passes abstract execution and is functionally new (a different symbolic hash and a
different numeric fingerprint from its parent); attempts are retried up to a limit. The
hyperparameter-only mode mutates constants only (the paper's baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optforge.search.symbolic.abstract import AbstractError, arg_kind, call_kind, execute, kinds_before
from optforge.search.symbolic.hashing import live_program, symbolic_hash
from optforge.search.symbolic.interpret import fingerprint
from optforge.search.symbolic.library import EW, FUNCTIONS, MAT, MATS, NULL, RED, SEL, P, R, S
from optforge.search.symbolic.program import INPUTS, Arg, Program, Stmt

CONST_CLIP = 1e10
MUTATIONS = ("insert", "delete", "modify")


@dataclass(frozen=True)
class MutationConfig:
    """How children are made."""

    max_len: int = 40  # statements; insertion is disabled at this length
    const_prob: float = 0.2  # chance that a freshly drawn scalar argument is a new N(0,1) constant
    new_var_prob: float = 0.5  # chance that an insertion assigns a new temporary (else overwrites one)
    max_tries: int = 200  # attempts before giving up on a functionally new child
    hparam_only: bool = False  # mutate constants only (the paper's baseline)

    def __post_init__(self) -> None:
        if self.max_len < 1:
            raise ValueError(f"max_len={self.max_len!r} must be >= 1")
        for key in ("const_prob", "new_var_prob"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{key}={v!r} must be in [0, 1]")
        if self.max_tries < 1:
            raise ValueError(f"max_tries={self.max_tries!r} must be >= 1")


@dataclass(frozen=True)
class Child:
    program: Program
    mutation: str  # "insert" | "delete" | "modify" | "constant"
    detail: str
    hash: str
    fingerprint: str
    tries: int


def mutate_constant(c: float, rng: np.random.Generator) -> float:
    """c x 2^a, a ~ N(0, 1), clipped to +-1e10 (Hero's Atom.mutate)."""
    return float(np.clip(c * 2.0 ** rng.normal(), -CONST_CLIP, CONST_CLIP))


def _new_const(rng: np.random.Generator) -> float:
    return float(rng.normal())


def _choice(rng: np.random.Generator, seq: list) -> object:
    return seq[int(rng.integers(len(seq)))]


def _random_args(fn: str, env: dict[str, str], rng: np.random.Generator, cfg: MutationConfig) -> tuple[Arg, ...] | None:
    f = FUNCTIONS[fn]
    by_kind: dict[str, list[str]] = {}
    for name, kind in env.items():
        by_kind.setdefault(kind, []).append(name)
    if f.rule == NULL:
        return ()
    if f.rule == SEL:
        kind = P if rng.random() < 0.8 or not by_kind.get(S) else S
        pool = by_kind.get(kind, [])
        if not pool:
            return None
        return ("role", _choice(rng, pool), _choice(rng, pool))  # type: ignore[return-value]
    args: list[Arg] = []
    for _ in range(f.arity):
        if f.rule in (MAT, MATS):
            pool = by_kind.get(P, [])
            if not pool:
                return None
            args.append(_choice(rng, pool))  # type: ignore[arg-type]
        else:
            pool = by_kind.get(P, []) + by_kind.get(S, [])
            if rng.random() < cfg.const_prob or not pool:
                args.append(_new_const(rng))
            else:
                args.append(_choice(rng, pool))  # type: ignore[arg-type]
    return tuple(args)


def _fresh_name(program: Program) -> str:
    used = set(INPUTS) | set(program.slots) | {s.target for s in program.body} | {program.ret}
    i = 0
    while f"v{i}" in used:
        i += 1
    return f"v{i}"


def _insert(program: Program, rng: np.random.Generator, cfg: MutationConfig) -> tuple[Program, str] | None:
    if len(program.body) >= cfg.max_len:
        return None
    pos = int(rng.integers(len(program.body) + 1))
    env = kinds_before(program, pos)
    fn = _choice(rng, sorted(FUNCTIONS))
    args = _random_args(fn, {k: v for k, v in env.items() if v != R}, rng, cfg)  # type: ignore[arg-type]
    if args is None:
        return None
    try:
        kind = call_kind(fn, [arg_kind(a, env) for a in args])  # type: ignore[arg-type]
    except AbstractError:
        return None
    targets = [n for n, k in env.items() if k == kind and n not in INPUTS]
    if rng.random() < cfg.new_var_prob or not targets:
        target = _fresh_name(program)
    else:
        target = _choice(rng, sorted(targets))
    st = Stmt(str(target), str(fn), args)
    body = program.body[:pos] + (st,) + program.body[pos:]
    return program.replace(body=body), f"insert at {pos}: {st.target} = {st.fn}(...)"


def _delete(program: Program, rng: np.random.Generator, cfg: MutationConfig) -> tuple[Program, str] | None:
    if not program.body:
        return None
    i = int(rng.integers(len(program.body)))
    st = program.body[i]
    return program.replace(body=program.body[:i] + program.body[i + 1 :]), f"delete {i}: {st.target} = {st.fn}(...)"


def _with_arg(program: Program, i: int, j: int, value: Arg) -> Program:
    st = program.body[i]
    args = st.args[:j] + (value,) + st.args[j + 1 :]
    body = program.body[:i] + (Stmt(st.target, st.fn, args),) + program.body[i + 1 :]
    return program.replace(body=body)


def _modify(program: Program, rng: np.random.Generator, cfg: MutationConfig) -> tuple[Program, str] | None:
    spots = [(i, j) for i, st in enumerate(program.body) for j in range(len(st.args))]
    if not spots:
        return None
    i, j = spots[int(rng.integers(len(spots)))]
    st = program.body[i]
    old = st.args[j]
    if isinstance(old, float) and rng.random() < 0.5:
        new: Arg = mutate_constant(old, rng)
        return _with_arg(program, i, j, new), f"constant {i}.{j}: {old!r} -> {new!r}"
    env = {k: v for k, v in kinds_before(program, i).items() if v != R}
    f = FUNCTIONS[st.fn]
    if f.rule == SEL and j == 0:
        return None
    pool = sorted(env)
    if f.rule in (EW, RED) and (rng.random() < cfg.const_prob or not pool):
        new = _new_const(rng)
    else:
        if not pool:
            return None
        new = str(_choice(rng, pool))
    return _with_arg(program, i, j, new), f"modify {i}.{j}: {old!r} -> {new!r}"


def _hparam(program: Program, rng: np.random.Generator, cfg: MutationConfig) -> tuple[Program, str] | None:
    spots = program.constants
    if not spots:
        return None
    i, j = spots[int(rng.integers(len(spots)))]
    old = program.body[i].args[j]
    new = mutate_constant(float(old), rng)
    return _with_arg(program, i, j, new), f"constant {i}.{j}: {old!r} -> {new!r}"


_OPS = {"insert": _insert, "delete": _delete, "modify": _modify}


def mutate(
    parent: Program,
    rng: np.random.Generator,
    cfg: MutationConfig,
    *,
    parent_fingerprint: str | None = None,
    stats: dict | None = None,
) -> Child | None:
    """A valid, functionally new child of `parent`, or None after `cfg.max_tries` attempts.

    Valid attempts that compute the parent's function again (an edit of dead code, a rewrite the
    fingerprint sees through) are free duplicates: counted in `stats["parent_duplicates"]`, then retried.
    """
    p_hash = symbolic_hash(parent)
    p_fp = parent_fingerprint or fingerprint(live_program(parent))
    for tries in range(1, cfg.max_tries + 1):
        if cfg.hparam_only:
            kind = "constant"
            made = _hparam(parent, rng, cfg)
        else:
            kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
            made = _OPS[kind](parent, rng, cfg)
        if made is None:
            continue
        child, detail = made
        if detail.startswith("constant"):
            kind = "constant"
        try:
            execute(child)
        except AbstractError:
            continue
        h = symbolic_hash(child)
        fp = p_fp if h == p_hash else fingerprint(live_program(child))
        if fp == p_fp:
            if stats is not None:
                stats["parent_duplicates"] = stats.get("parent_duplicates", 0) + 1
            continue
        return Child(child, kind, detail, h, fp, tries)
    return None
