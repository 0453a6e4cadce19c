"""Dependency analysis, redundancy removal and the symbolic hash of programs (as the
abstract execution of Chen et al. 2023, arXiv 2302.06675, and its code `google/automl` hero/core.py).

The symbolic hash describes how the delta and the state recurrences are computed from the inputs:
variable names, dead statements and the argument order of commutative functions do not change it,
a constant does. State slots are labelled by their own recurrences (a few Weisfeiler-Lehman rounds),
so renaming or reordering slots does not change it either. The numeric fingerprint (interpret.py)
complements it by catching algebraic duplicates.
"""

from __future__ import annotations

import hashlib

from optforge.search.symbolic.library import FUNCTIONS
from optforge.search.symbolic.program import INPUTS, Program


def _h(*parts: str) -> str:
    return hashlib.md5("\x1f".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def live_program(program: Program) -> Program:
    """`program` without dead statements and without slots that never reach the delta.

    A slot is live when a live statement (or the return) reads its value from the previous step;
    the statements that compute a live slot's new value are then live too (fixpoint over steps).
    Slots that are dropped keep working as plain temporaries if the live code still assigns them.
    """
    slots = set(program.slots)
    live_slots: set[str] = set()
    while True:
        needed = {program.ret} | live_slots
        keep: list[int] = []
        for i in range(len(program.body) - 1, -1, -1):
            st = program.body[i]
            if st.target in needed:
                keep.append(i)
                needed.discard(st.target)
                needed |= {a for a in st.args if isinstance(a, str)}
        entry = needed & slots
        if entry <= live_slots:
            break
        live_slots |= entry
    body = tuple(program.body[i] for i in sorted(keep))
    return program.replace(slots=tuple(s for s in program.slots if s in live_slots), body=body)


def redundancy(program: Program) -> tuple[int, int]:
    """(dead statements, all statements) of `program`."""
    return len(program.body) - len(live_program(program).body), len(program.body)


def _const_key(c: float) -> str:
    return "c:" + format(float(c), ".12g")


def _run_hashes(program: Program, slot_labels: dict[str, str]) -> dict[str, str]:
    env = {name: _h("in", name) for name in INPUTS}
    for s in program.slots:
        env[s] = _h("slot", slot_labels[s])
    for st in program.body:
        args = [_const_key(a) if isinstance(a, float) else env[a] for a in st.args]
        if FUNCTIONS[st.fn].commutative:
            args = sorted(args)
        env[st.target] = _h("fn", st.fn, *args)
    return env


def symbolic_hash(program: Program) -> str:
    """Hash of the live computation: invariant to renaming, dead code and commutative argument order.

    Assumes `program` passed abstract execution (every read variable is assigned first).
    """
    prog = live_program(program)
    labels = {s: "init" for s in prog.slots}
    env = _run_hashes(prog, labels)
    for _ in range(len(prog.slots) + 1):  # each round refines slot labels by their recurrences
        labels = {s: env[s] for s in prog.slots}
        env = _run_hashes(prog, labels)
    out = [env[prog.ret], "|", *sorted(env[s] for s in prog.slots), "|", _const_key(prog.lr)]
    return _h(*out)[:20]

