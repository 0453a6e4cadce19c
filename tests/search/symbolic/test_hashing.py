from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.hashing import live_program, redundancy, symbolic_hash
from optforge.search.symbolic.interpret import fingerprint
from optforge.search.symbolic.program import Program, Stmt, from_text

LION = """
c = interp(m, g, 0.1)
sg = sign(c)
s = mul(sg, lr)
delta = negative(s)
m = interp(m, g, 0.01)
"""


def _lion(text=LION, slots=("m",)):
    return from_text(text, slots=slots, lr=1e-4)


def _rename(prog: Program, mapping: dict) -> Program:
    r = lambda a: mapping.get(a, a) if isinstance(a, str) else a  # noqa: E731
    body = tuple(Stmt(r(s.target), s.fn, tuple(r(a) for a in s.args)) for s in prog.body)
    return prog.replace(slots=tuple(r(s) for s in prog.slots), body=body, ret=r(prog.ret))


def test_renaming_is_invisible():
    a = _lion()
    b = _rename(a, {"m": "mom", "c": "x1", "sg": "x2", "s": "x3", "delta": "out"})
    assert symbolic_hash(a) == symbolic_hash(b)
    adamw = warmstarts.program("adamw")
    renamed = _rename(adamw, {"m": "v", "v": "m", "u": "q"})  # swapping slot names too
    assert symbolic_hash(adamw) == symbolic_hash(renamed)


def test_dead_code_is_invisible_and_removed():
    a = _lion()
    dead = from_text(
        LION.replace("sg = sign(c)", "sg = sign(c)\nz = exp(g)\nz2 = mul(z, 3.0)") + "\nw = cos(m)",
        slots=("m", "k"),
        lr=1e-4,
    )
    assert symbolic_hash(a) == symbolic_hash(dead)
    assert live_program(dead) == a
    assert redundancy(dead) == (3, 8)
    assert redundancy(a) == (0, 5)


def test_commutative_argument_order_is_invisible():
    a = _lion()
    b = _lion(LION.replace("mul(sg, lr)", "mul(lr, sg)"))
    assert symbolic_hash(a) == symbolic_hash(b)
    c = _lion(LION.replace("interp(m, g, 0.1)", "interp(g, m, 0.1)"))  # interp is not commutative
    assert symbolic_hash(a) != symbolic_hash(c)


def test_a_constant_changes_the_hash():
    a = _lion()
    b = _lion(LION.replace("0.01", "0.02"))
    assert symbolic_hash(a) != symbolic_hash(b)
    assert fingerprint(a) != fingerprint(b)


def test_a_slot_that_feeds_the_delta_through_time_is_live():
    # m is only read by the delta; its update is live because the next step reads it
    prog = from_text("delta = negative(m)\nm = interp(m, g, 0.1)", slots=("m",), lr=1e-3)
    assert live_program(prog) == prog
    # a slot that never reaches the delta is dead, with its statements
    prog2 = from_text("k = interp(k, g, 0.1)\ndelta = negative(g)", slots=("k",), lr=1e-3)
    assert live_program(prog2).body == (Stmt("delta", "negative", ("g",)),)
    assert live_program(prog2).slots == ()


def test_fingerprint_catches_algebraic_duplicates():
    a = from_text("x = add(g, g)\ndelta = mul(x, lr)", slots=(), lr=1e-3)
    b = from_text("x = mul(g, 2.0)\ndelta = mul(x, lr)", slots=(), lr=1e-3)
    assert symbolic_hash(a) != symbolic_hash(b)
    assert fingerprint(a) == fingerprint(b)
    c = from_text("x = mul(g, 2.0)\ndelta = mul(x, lr)", slots=(), lr=2e-3)  # LR is part of the rule
    assert fingerprint(b) != fingerprint(c)


def test_fingerprint_sees_roles():
    a = from_text("x = sign(g)\ndelta = select_matrix(role, x, g)", slots=(), lr=1e-3)
    b = from_text("delta = sign(g)", slots=(), lr=1e-3)
    assert fingerprint(a) != fingerprint(b)
