"""The static check: every seed passes RULE_POLICY; escapes are refused with a line and a hint."""

from __future__ import annotations

import pytest

from optforge import seeds
from optforge.sandbox import RULE_POLICY, Policy, check_source


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_passes(name):
    assert check_source(seeds.source(name), RULE_POLICY) == []


HOSTILE = [
    ("import os", 1, "import of 'os'"),
    ("import torch.hub", 1, "torch.hub"),
    ("from torch import load", 1, "torch.load"),
    ("from math import *", 1, "import *"),
    ("from . import x", 1, "import from"),
    ("import torch\nx = torch.load('w.pt')", 2, "torch.load"),
    ("import torch\ntorch.save({}, 'x')", 2, "torch.save"),
    ("import torch\nx = torch.os.system('ls')", 2, "torch.os.system"),
    ("import torch\nx = torch.sys.modules", 2, "torch.sys.modules"),
    ("import torch\nx = torch.hub.load('a', 'b')", 2, "torch.hub.load"),
    ("import torch as t\nT = t", 2, "may only be used"),
    ("import torch\ndef f(m=torch):\n    return m.load", 2, "may only be used"),
    ("import torch\ntorch.zeros_like = None", 2, "monkeypatching"),
    ("import math\nmath.sqrt = abs", 2, "monkeypatching"),
    ("x = ().__class__.__bases__[0].__subclasses__()", 1, "__class__"),
    ("def f(g):\n    return g.__globals__", 2, "__globals__"),
    ("def f(ctx):\n    return ctx._shared", 2, "_shared"),
    ("x = open('/etc/passwd')", 1, "'open'"),
    ("x = eval('1')", 1, "'eval'"),
    ("x = exec", 1, "'exec'"),
    ("x = __import__('os')", 1, "__import__"),
    ("x = getattr(1, 'real')", 1, "'getattr'"),
    ("setattr(1, 'a', 2)", 1, "'setattr'"),
    ("x = globals()", 1, "'globals'"),
    ("x = __builtins__", 1, "__builtins__"),
    ("x = type(1)", 1, "'type'"),
    ("x = '{0.__class__}'.format(1)", 1, ".format"),
    ("import torch\ndef f(p):\n    return p.storage()", 3, ".storage"),
    ("import torch\ndef f(p):\n    return p.untyped_storage()", 3, ".untyped_storage"),
    ("import torch\ndef f(p, ctx):\n    p.custom = 1", 3, "non-local"),
    ("class A:\n    pass", 1, "class definitions"),
    ("def __del__(self):\n    pass", 1, "dunder"),
    ("async def f():\n    pass", 1, "async"),
    ("x = undefined_name + 1", 1, "not defined"),
    ("def f(:\n", 1, "syntax error"),
]


@pytest.mark.parametrize("source,line,needle", HOSTILE, ids=[h[0].splitlines()[-1][:40] for h in HOSTILE])
def test_hostile_rejected_with_line(source, line, needle):
    problems = check_source(source, RULE_POLICY)
    assert problems, "should be refused"
    assert any(p.line == line and needle in p.message for p in problems), [str(p) for p in problems]


ALLOWED = [
    "import torch\nimport math\nLR = 1e-3\ndef update(p, g, state, ctx):\n    return -ctx.lr * torch.sign(g) * math.sqrt(2)",
    "import torch as T\nfrom torch import linalg\ndef f(g):\n    u, s, vh = linalg.svd(g, full_matrices=False)\n    return T.zeros_like(u @ vh)",
    "import torch.linalg\ndef f(g):\n    return torch.linalg.vector_norm(g)",
    "import torch\ndef f(g, state):\n    m = state.setdefault('m', torch.zeros_like(g))\n    m.lerp_(g, 0.1).addcmul_(g, g, value=0.5)\n    return torch.where(m > 0, m.clamp(min=0).sqrt(), m.abs().rsqrt())",
    "import torch\ndef f(g):\n    eps = torch.finfo(g.dtype).eps\n    q = torch.quantile(g.flatten().float(), 0.5)\n    return g.mT @ torch.linalg.eigh(g @ g.mT).eigenvectors + eps + q",
    "import torch\ndef f(g):\n    class_ = [x for x in range(3)]\n    d = {}\n    d['a'] = len(class_)\n    return torch.outer(g, g).diag().mean(dim=0, keepdim=True)",
    "def f(x):\n    out = {}\n    out['k'] = x\n    res = out\n    return res",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_ordinary_rule_code_allowed(source):
    assert check_source(source, RULE_POLICY) == []


def test_attribute_store_on_local_object_allowed():
    src = "def f(p):\n    acc = {}\n    acc_list = [p]\n    box = acc_list\n    box.x = 1\n"
    problems = check_source(src, RULE_POLICY)
    # '.x' is not an allowed attribute, but the store itself is on a local
    assert problems and all("non-local" not in p.message for p in problems)


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
