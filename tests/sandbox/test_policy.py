"""The static check: an allow-list of node types, attribute names, module names and builtins.

Every seed and every symbolic program passes RULE_POLICY; every escape of the table below is refused
at its line. The table's assertions look only at line numbers, never at the payload's text.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from optforge import seeds
from optforge.rule import RuleError, check_rule, load_rule
from optforge.sandbox import RULE_POLICY, Policy, check_source
from optforge.sandbox.policy import CORE_NODES
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.library import FUNCTIONS
from optforge.search.symbolic.mutate import MutationConfig, mutate
from optforge.search.symbolic.program import Program, Stmt, render


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_passes(name):
    assert check_source(seeds.source(name), RULE_POLICY) == []
    assert check_rule(seeds.source(name)) == []


def test_the_whole_symbolic_library_passes():
    """One program calling every library function (module-level cache dict with subscript stores,
    generator expressions, '*' arguments), every warm start, and random mutants of each."""
    body = []
    for i, name in enumerate(sorted(FUNCTIONS)):
        f = FUNCTIONS[name]
        args = ("role", "g", "g") if f.rule == "select" else ("g",) * f.arity
        body.append(Stmt(f"x{i}", name, args))
    prog = Program(slots=("m",), body=tuple(body) + (Stmt("delta", "add", ("x0", "m")),), lr=1e-3)
    src = render(prog)
    used = {type(n).__name__ for n in ast.walk(ast.parse(src))}
    assert {"GeneratorExp", "Starred", "Subscript"} <= used  # the forms the renders need
    assert check_rule(src) == []
    rng = np.random.default_rng(0)
    for name in warmstarts.names():
        program = warmstarts.program(name)
        assert check_rule(render(program)) == [], name
        for _ in range(4):
            child = mutate(program, rng, MutationConfig())
            if child is not None:
                program = child.program
                assert check_rule(render(program)) == [], (name, child.detail)


# (id, source, line it is refused at). Each row is a way out that a deny-list checker missed or could
# miss; the allow-list refuses it by its structure (node type, attribute, name or scope).
ESCAPES = [
    ("match-class-dunder", "def f(x):\n    match x:\n        case int(__class__=c):\n            return c\n", 2),
    ("match-subclasses", "def f(x):\n    match x:\n        case type(__subclasses__=s):\n            return s()\n", 2),
    ("match-value-attr", "import torch\ndef f(x):\n    match x:\n        case torch.load:\n            pass\n", 3),
    ("match-mapping-rest", "def f(x):\n    match x:\n        case {**rest}:\n            return rest\n", 2),
    ("match-module", "import torch\nmatch torch:\n    case _:\n        pass\n", 2),
    ("decorator-dunder", "@print.__self__.open\ndef f():\n    pass\n", 1),
    ("decorator-lambda", "@(lambda fn: fn)\ndef f():\n    pass\n", 1),
    ("default-dunder", "def f(x=().__class__):\n    return x\n", 1),
    ("default-builtins", "def f(b=__builtins__):\n    return b\n", 1),
    ("default-outer-scope", "def f(x=bytearray):\n    bytearray = 1\n    return x\n", 1),
    ("lambda", "f = lambda: 0\n", 1),
    ("lambda-default", "f = lambda x=print.__self__: x\n", 1),
    ("fstring-format-spec", "x = f'{1:{().__class__}}'\n", 1),
    ("fstring-conversion", "def f(p):\n    return f'{p!r}'\n", 2),
    ("str-format-field", "x = '{0.__class__}'.format(1)\n", 1),
    ("getattr-string", "import torch\nx = getattr(torch, 'lo' + 'ad')\n", 2),
    ("vars-string", "import torch\nx = vars(torch)['load']\n", 2),
    ("dunder-dict", "import torch\nx = torch.__dict__['load']\n", 2),
    ("walrus", "import torch\nif (f := torch.load):\n    pass\n", 2),
    ("walrus-comprehension", "x = [(bytearray := 1) for _ in ()]\n", 1),
    ("comprehension-scope", "def f(p):\n    y = [bytearray for bytearray in (1,)]\n    return bytearray(3)\n", 3),
    ("module-shadow-unassigned", "if False:\n    bytearray = 1\nx = bytearray(8)\n", 3),
    ("annotation-dunder", "def f(x: ().__class__.__base__):\n    pass\n", 1),
    ("return-annotation", "def f() -> print.__self__:\n    pass\n", 1),
    ("module-annotation", "x: print.__self__ = 1\n", 1),
    ("global", "LR = 1\ndef f():\n    global LR\n    LR = 5\n", 3),
    ("nonlocal", "def f():\n    a = 1\n    def g():\n        nonlocal a\n        a = 2\n", 4),
    ("attr-store-local-alias", "def f(p):\n    t = p\n    t.data = p\n", 3),
    ("attr-store-module-alias", "import torch\ndef f():\n    T = torch.Tensor\n    T.add = None\n", 4),
    ("class", "class A:\n    pass\n", 1),
    ("try-traceback", "try:\n    x = 1 // 0\nexcept ZeroDivisionError as e:\n    x = e\n", 1),
    ("traceback-frame", "def f(e):\n    return e.__traceback__.tb_frame\n", 2),
    ("generator-frame", "def f():\n    g = (x for x in ())\n    return g.gi_frame\n", 3),
    ("yield", "def f():\n    yield 1\n", 2),
    ("async", "async def f():\n    pass\n", 1),
    ("del", "import torch\ndef f(state):\n    del state\n", 3),
    ("alias-rebound", "import math as m\ndef f(p):\n    m = p\n    return m.storage()\n", 3),
    ("alias-two-modules", "import math as m\nimport torch as m\nx = m.load('w')\n", 2),
    ("dunder-function-name", "def __getattr__(name):\n    return name\n", 1),
    ("dunder-arg", "def f(__builtins__):\n    return 1\n", 1),
    ("subclasses", "x = [].__class__.__base__.__subclasses__()\n", 1),
    ("torch-private", "import torch\nx = torch._C\n", 2),
    ("from-torch-private", "from torch import _C\n", 1),
    ("torch-ops", "import torch\nx = torch.ops.aten\n", 2),
    ("tensor-class-dunder", "import torch\nx = torch.Tensor.__subclasses__()\n", 2),
    ("grad-fn-graph", "def f(p):\n    return p.grad_fn.next_functions\n", 2),
    ("ctx-dict", "def f(ctx):\n    return ctx.__dict__\n", 2),
    ("print-self-import", "x = print.__self__.__import__('os')\n", 1),
    ("getattribute", "def f(state):\n    return state.__getattribute__('x')\n", 2),
    ("sandbox-import", "from optforge import sandbox\n", 1),
    ("starred-forbidden", "x = print(*[open])\n", 1),
    ("module-as-value", "import torch as t\ndef f(m=t):\n    return m\n", 2),
    ("module-subscript-store", "import torch\ntorch.__dict__['x'] = 1\n", 2),
    ("breakpoint", "def f():\n    breakpoint()\n", 2),
    ("memoryview", "x = memoryview(b'')\n", 1),
    ("with-open", "with open('/etc/passwd') as f:\n    pass\n", 1),
]


@pytest.mark.parametrize("source,line", [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape_refused_at_its_line(source, line):
    assert line in {v.line for v in check_source(source, RULE_POLICY)}


def test_escape_table_is_large_enough():
    assert len(ESCAPES) >= 30 and len({e[0] for e in ESCAPES}) == len(ESCAPES)


def test_patterns_and_decorators_are_checked_even_where_the_syntax_is_allowed():
    """A policy that allows match and decorators still checks every attribute name they read."""
    match_nodes = {"Match", "match_case", "MatchClass", "MatchAs", "MatchValue", "MatchMapping"}
    policy = Policy(
        name="permissive", node_types=CORE_NODES | match_nodes, attributes=frozenset({"real"}), builtins=frozenset({"int", "print"})
    )
    src = "def f(x):\n    match x:\n        case int(real=r):\n            return r\n        case int(__class__=c):\n            return c\n"
    assert [v.line for v in check_source(src, policy)] == [5]
    src = "def f(x):\n    match x:\n        case int(imag=i):\n            return i\n"
    assert [v.line for v in check_source(src, policy)] == [3]
    src = "@print.real.imag\ndef f():\n    return 1\n"
    assert [v.line for v in check_source(src, policy)] == [1]


def test_node_types_are_a_policy_field():
    src = "def f(x):\n    return [y for y in x]\n"
    assert check_source(src, RULE_POLICY) == []
    narrow = Policy(name="narrow", builtins=frozenset())
    assert [v.line for v in check_source(src, narrow)] == [2]  # the ListComp (its comprehension part is not repeated)
    with pytest.raises(ValueError, match="no ast node class"):
        Policy(node_types=frozenset({"Module", "Wormhole"}))


def test_refusals_say_what_to_do():
    (v,) = check_source("def f(x):\n    match x:\n        case 1:\n            return 1\n", RULE_POLICY)
    assert v.line == 2 and "use if/elif" in v.message
    (v,) = check_source("f = lambda: 0\n", RULE_POLICY)
    assert "def" in v.message


ALLOWED = [
    "import torch\nimport math\nLR = 1e-3\ndef update(p, g, state, ctx):\n    return -ctx.lr * torch.sign(g) * math.sqrt(2)",
    "import torch as T\nfrom torch import linalg\ndef f(g):\n    u, s, vh = linalg.svd(g, full_matrices=False)\n    return T.zeros_like(u @ vh)",
    "import torch.linalg\ndef f(g):\n    return torch.linalg.vector_norm(g)",
    "import torch\ndef f(g, state):\n    m = state.setdefault('m', torch.zeros_like(g))\n    m.lerp_(g, 0.1).addcmul_(g, g, value=0.5)\n    return torch.where(m > 0, m.clamp(min=0).sqrt(), m.abs().rsqrt())",
    "import torch\ndef f(g):\n    eps = torch.finfo(g.dtype).eps\n    q = torch.quantile(g.flatten().float(), 0.5)\n    return g.mT @ torch.linalg.eigh(g @ g.mT).eigenvectors + eps + q",
    "import torch\ndef f(g):\n    class_ = [x for x in range(3)]\n    d = {}\n    d['a'] = len(class_)\n    return torch.outer(g, g).diag().mean(dim=0, keepdim=True)",
    "def f(x):\n    out = {}\n    out['k'] = x\n    res = out\n    return res",
    "import torch\nEPS: float = 1e-8\ndef f(p: torch.Tensor) -> torch.Tensor:\n    with torch.no_grad():\n        assert p.ndim >= 1\n        return sum(x for x in p.unbind(0)) + EPS",
    "_CACHE = {}\ndef f(x, *xs):\n    _CACHE[x] = max(*xs, x)\n    return {k: v for k, v in _CACHE.items()}",
    "def f(x):\n    max = 3\n    return [max for max in range(max)]",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_ordinary_rule_code_allowed(source):
    assert check_source(source, RULE_POLICY) == []


def test_policy_is_data():
    src = "import numpy as np\nx = np.zeros(3)\ny = np.load('f')\n"
    policy = Policy(name="np", allowed_imports=("numpy",), module_names=frozenset({"numpy.zeros"}))
    problems = check_source(src, policy)
    assert [p.line for p in problems] == [3]
    assert check_source(src, RULE_POLICY)[0].line == 1


def test_policy_json():
    d = RULE_POLICY.to_dict()
    assert d["allowed_imports"] == ["torch", "math"] and "torch.zeros_like" in d["module_names"]
    assert "torch.load" not in d["module_names"] and "storage" not in d["attributes"]
    assert "FunctionDef" in d["node_types"] and "Match" not in d["node_types"] and "Lambda" not in d["node_types"]


def test_hostile_text_never_raises():
    for src in ["(" * 5000 + ")" * 5000, "-" * 200_000 + "1", "x = 1\0\n", "def f(:\n", "\ud800 = 1\n"]:
        problems = check_source(src, RULE_POLICY)
        assert problems and all(isinstance(p.line, int) for p in problems)


def test_load_rule_applies_the_policy():
    src = "LR = 1\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    match g:\n        case _:\n            return g\n"
    assert [p.line for p in check_rule(src)] == [5]
    assert check_rule(src, policy=None) == []  # the contract alone
    with pytest.raises(RuleError, match="line 5"):
        load_rule(src)


REDTEAM = Path(__file__).resolve().parent / "redteam"


def test_sandbox_refuses_the_match_escape_at_its_line():
    from optforge import sandbox

    source = (REDTEAM / "match_escape.py").read_text()
    res = sandbox.run(source, "optforge.sandbox.selftest:noop", {}, RULE_POLICY, sandbox.Limits(timeout_s=30))
    assert res.reason == "rejected" and "line 14:" in res.exception
    assert 14 in {p.line for p in check_rule(source)}


def test_optforge_eval_refuses_the_match_escape(tmp_path):
    import subprocess
    import sys

    rule = tmp_path / "match_escape.py"
    rule.write_text((REDTEAM / "match_escape.py").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "optforge", "eval", str(rule), "--suite", "smoke"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode != 0 and "status invalid" in proc.stdout
    assert "line 14: pattern matching" in proc.stdout + proc.stderr
    assert not (tmp_path / "escaped.txt").exists()


def test_every_node_is_walked_even_fields_of_a_newer_python():
    """Type parameters (Python 3.12) are not placed in a scope by the checker, but still walked and refused."""
    import sys

    if sys.version_info < (3, 12):
        pytest.skip("type parameter syntax needs Python 3.12")
    src = "def f[T: print.__self__](x):\n    return x\n"
    assert 1 in {v.line for v in check_source(src, RULE_POLICY)}
