"""Abstract execution: infer the kind of every value of a program without running torch on data.

The kinds (library.py) are exact for the fixed library: a ``P`` value always has the parameter's
shape and dtype, an ``S`` value is a 0-d tensor that broadcasts. So a program that passes here returns
a delta of the parameter's shape for every role and shape, and keeps its state slots parameter-shaped.
"""

from __future__ import annotations

from optforge.search.symbolic.library import EW, FUNCTIONS, MAT, MATS, NULL, RED, SEL, P, R, S
from optforge.search.symbolic.program import INPUTS, Program

INPUT_KINDS = {"p": P, "g": P, "lr": S, "t": S, "T": S, "gnorm": S, "role": R}


class AbstractError(ValueError):
    """The program would fail (undefined name, wrong kind, wrong arity, bad output)."""


def call_kind(fn: str, kinds: list[str]) -> str:
    """The output kind of `fn` applied to arguments of `kinds`; raises AbstractError if invalid."""
    f = FUNCTIONS.get(fn)
    if f is None:
        raise AbstractError(f"unknown function {fn!r}")
    if len(kinds) != f.arity:
        raise AbstractError(f"{fn} takes {f.arity} arguments, got {len(kinds)}")
    if f.rule == SEL:
        if kinds[0] != R:
            raise AbstractError(f"{fn}: first argument must be the role")
        if kinds[1] == R or kinds[1] != kinds[2]:
            raise AbstractError(f"{fn}: both branches must have the same kind, got {kinds[1]} and {kinds[2]}")
        return kinds[1]
    if R in kinds:
        raise AbstractError(f"{fn}: the role can only be used by select_matrix")
    if f.rule == NULL:
        return S
    if f.rule == EW:
        return P if P in kinds else S
    if f.rule == RED:
        return S
    if f.rule in (MAT, MATS):
        if any(k != P for k in kinds):
            raise AbstractError(f"{fn} needs parameter-shaped arguments, got {kinds}")
        return P if f.rule == MAT else S
    raise AbstractError(f"{fn}: unknown kind rule {f.rule}")  # pragma: no cover


def arg_kind(arg: object, env: dict[str, str]) -> str:
    if isinstance(arg, float):
        return S
    if arg not in env:
        raise AbstractError(f"variable {arg!r} is used before it is assigned")
    return env[arg]


def execute(program: Program) -> dict[str, str]:
    """Kinds of every variable after the program; raises AbstractError if the program is invalid."""
    env: dict[str, str] = dict(INPUT_KINDS)
    for s in program.slots:
        env[s] = P
    for i, st in enumerate(program.body):
        if st.target in INPUTS:
            raise AbstractError(f"statement {i}: input {st.target!r} is read-only")
        try:
            kind = call_kind(st.fn, [arg_kind(a, env) for a in st.args])
        except AbstractError as e:
            raise AbstractError(f"statement {i} ({st.target} = {st.fn}(...)): {e}") from None
        env[st.target] = kind
    if program.ret not in env:
        raise AbstractError(f"the returned variable {program.ret!r} is never assigned")
    if env[program.ret] != P:
        raise AbstractError(f"the returned delta {program.ret!r} must be parameter-shaped, got kind {env[program.ret]}")
    for s in program.slots:
        if env[s] != P:
            raise AbstractError(f"state slot {s!r} must stay parameter-shaped, got kind {env[s]}")
    return env


def is_valid(program: Program) -> bool:
    try:
        execute(program)
    except AbstractError:
        return False
    return True


def kinds_before(program: Program, index: int) -> dict[str, str]:
    """Kinds of the variables available just before statement `index` (for generating valid edits).

    Assumes the prefix is valid; invalid statements in the prefix are skipped.
    """
    env: dict[str, str] = dict(INPUT_KINDS)
    for s in program.slots:
        env[s] = P
    for st in program.body[:index]:
        try:
            env[st.target] = call_kind(st.fn, [arg_kind(a, env) for a in st.args])
        except AbstractError:
            continue
    return env
