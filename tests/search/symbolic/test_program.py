import numpy as np
import pytest

from optforge.rule import check_rule
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.abstract import AbstractError, execute
from optforge.search.symbolic.mutate import MutationConfig, mutate
from optforge.search.symbolic.program import Program, ProgramError, Stmt, from_text, parse, render


@pytest.mark.parametrize("name", warmstarts.names())
def test_render_is_a_rule_and_parses_back(name):
    prog = warmstarts.program(name)
    src = render(prog)
    assert check_rule(src) == []
    assert "optforge" not in src.split('"""', 2)[2]  # no optforge import in the code
    assert parse(src) == prog
    assert Program.from_json(prog.to_json()) == prog


def test_mutated_programs_round_trip():
    rng = np.random.default_rng(3)
    prog = warmstarts.program("adamw")
    for _ in range(25):
        child = mutate(prog, rng, MutationConfig())
        assert child is not None
        prog = child.program
        src = render(prog)
        assert check_rule(src) == []
        assert parse(src) == prog


def test_parse_rejects_other_sources():
    from optforge import seeds

    with pytest.raises(ProgramError):
        parse(seeds.source("adamw"))
    with pytest.raises(ProgramError):
        parse("def f(:\n")


def test_program_checks_names_and_constants():
    with pytest.raises(ProgramError, match="read-only"):
        Program(slots=(), body=(Stmt("g", "sign", ("g",)),))
    with pytest.raises(ProgramError, match="unknown library function"):
        Program(slots=(), body=(Stmt("x", "eval", ("g",)),))
    with pytest.raises(ProgramError, match="finite"):
        Program(slots=(), body=(Stmt("x", "mul", ("g", float("nan"))),))


@pytest.mark.parametrize(
    "text,slots,match",
    [
        ("delta = sign(q)", (), "before it is assigned"),
        ("delta = norm(g)", (), "parameter-shaped"),
        ("m = norm(g)\ndelta = sign(g)", ("m",), "slot 'm'"),
        ("delta = mul(role, g)", (), "role"),
        ("x = sign(g)", (), "never assigned"),
        ("s = norm(g)\ndelta = newton_schulz(s)", (), "parameter-shaped arguments"),
        ("s = norm(g)\ndelta = select_matrix(role, g, s)", (), "same kind"),
    ],
)
def test_abstract_execution_rejects(text, slots, match):
    prog = from_text(text, slots=slots, lr=1e-3)
    with pytest.raises(AbstractError, match=match):
        execute(prog)


def test_every_library_function_passes_the_sandbox_rule_policy():
    """Candidates are checked by the sandbox's static policy before they run; the whole library passes."""
    sandbox = pytest.importorskip("optforge.sandbox")
    from optforge.sandbox.policy import check_source
    from optforge.search.symbolic.library import FUNCTIONS

    body = []
    for i, name in enumerate(sorted(FUNCTIONS)):
        f = FUNCTIONS[name]
        args = ("role", "g", "g") if f.rule == "select" else ("g",) * f.arity
        body.append(Stmt(f"x{i}", name, args))
    prog = Program(slots=("m",), body=tuple(body) + (Stmt("delta", "add", ("x0", "m")),), lr=1e-3)
    src = render(prog)
    assert set(FUNCTIONS) <= {s.fn for s in parse(src).body}
    assert check_source(src, sandbox.RULE_POLICY) == []
    for name in warmstarts.names():
        assert check_source(render(warmstarts.program(name)), sandbox.RULE_POLICY) == []
