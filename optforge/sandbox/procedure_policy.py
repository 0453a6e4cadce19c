"""PROCEDURE_POLICY: the static-check policy for MoH search procedures (LLM-written search code).

A procedure is a module defining `improve(population, utility, llm, task)`. It computes with plain
Python and six small modules (math, random, json, heapq, itertools, re) and reaches the world only
through the three objects it is handed (`optforge.sandbox.procedure_proxies`). The same single checker
as for rules (`optforge.sandbox.policy`) holds it to an allow-list of:

- syntax: functions, lambdas, loops (`while` too), `try`/`except`/`raise`/`assert`, comprehensions,
  f-strings, `del`, `*` unpacking; no classes, generators, `global`/`nonlocal`, walrus, `with`, `match` or async;
- module names: the public, non-module names of the six modules (`json.decoder`, a module, is not
  one; nor are `json.load`/`json.dump`, which need a file, or `random.SystemRandom`, which is not
  replayable);
- attribute names: the methods of the handed objects, of strings, lists, dicts, sets, regex matches
  and `random.Random`, never a dunder or private name, and never `str.format`/`format_map` (their
  format strings read attributes, `"{0.__class__}"`, out of the checker's sight);
- builtins: pure functions and exception classes; no I/O, `type`, `getattr` or `object`, and no
  `id`/`hash` (object addresses change between runs: a run must replay from its seed).

`check_procedure(source)` adds the one structural rule: `improve` must be defined at module level
with at least four parameters.
"""

from __future__ import annotations

import ast
import heapq
import itertools
import json
import math
import random
import re
import types

from optforge.sandbox.policy import CORE_NODES, Policy, Violation, check_source, parse_source

ALLOWED_MODULES = ("math", "random", "json", "heapq", "itertools", "re")
"""What a procedure may import; `random` is seeded by the sandbox before the procedure is loaded."""

ENTRY_POINT = "improve"
ENTRY_PARAMS = ("population", "utility", "llm", "task")

_PROCEDURE_NODES = CORE_NODES | frozenset(
    """ListComp SetComp DictComp GeneratorExp comprehension Lambda Try ExceptHandler Raise Assert
    Starred AnnAssign Delete JoinedStr FormattedValue""".split()
)

# file-based json functions: a procedure has no file to give them; and the OS's entropy, which would
# make a procedure's run impossible to replay from its seed
_NOT_OFFERED = frozenset({"json.load", "json.dump", "random.SystemRandom"})


def _public_names(module: types.ModuleType) -> set[str]:
    """`module.name` for each public attribute of `module` that is not itself a module."""
    return {
        f"{module.__name__}.{n}"
        for n in dir(module)
        if not n.startswith("_") and not isinstance(getattr(module, n), types.ModuleType)
    }


_MODULE_NAMES = frozenset().union(*(_public_names(m) for m in (math, random, json, heapq, itertools, re))) - _NOT_OFFERED

# the handed objects' methods: llm.prompt / prompt_batch, population.get / sample / size
_HANDED = "prompt prompt_batch get sample size"

_STR = """capitalize casefold center count encode decode endswith expandtabs find index isalnum isalpha
isascii isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper join ljust
lower lstrip partition removeprefix removesuffix replace rfind rindex rjust rpartition rsplit rstrip
split splitlines startswith strip swapcase title translate upper zfill maketrans"""

_CONTAINERS = """append extend insert pop remove clear copy count index reverse sort keys values items
get setdefault update popitem fromkeys add discard union intersection difference symmetric_difference
issubset issuperset isdisjoint intersection_update difference_update symmetric_difference_update"""

# regex matches and patterns, random.Random instances, numbers, exceptions
_OTHER = """group groups groupdict start end span match search fullmatch findall finditer sub subn
pattern flags string lastindex lastgroup expand random uniform randint randrange choice choices shuffle
gauss seed getrandbits is_integer as_integer_ratio real imag conjugate bit_length hex args"""

# no id() or hash(): object addresses differ from run to run, and a replay must take the same path
_BUILTINS = """abs all any ascii bin bool chr dict divmod enumerate filter float frozenset hex int
isinstance iter len list map max min next oct ord pow print range repr reversed round set slice sorted
str sum tuple zip True False None
Exception ArithmeticError AssertionError IndexError KeyError LookupError OverflowError RuntimeError
StopIteration TypeError ValueError ZeroDivisionError"""

PROCEDURE_POLICY = Policy(
    name="procedure",
    allowed_imports=ALLOWED_MODULES,
    module_names=_MODULE_NAMES,
    open_modules=(),
    attributes=frozenset((_HANDED + " " + _STR + " " + _CONTAINERS + " " + _OTHER).split()),
    builtins=frozenset(_BUILTINS.split()),
    node_types=_PROCEDURE_NODES,
    attribute_hint="use a method of llm, population, a string, list, dict or set, or a module function",
)
"""Policy for MoH search procedures (see the module docstring)."""


def check_procedure(source: str) -> list[Violation]:
    """Every way `source` breaks PROCEDURE_POLICY or the procedure contract, in line order; [] means it may run."""
    if not isinstance(source, str):  # ast.parse takes bytes too, but the channel carries text
        return [Violation(0, f"the procedure source must be a str, not {type(source).__name__}")]
    problems = check_source(source, PROCEDURE_POLICY)
    tree, error = parse_source(source)
    if error is not None:
        return problems
    entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY_POINT]
    if not entry:
        problems.append(Violation(0, f"the procedure must define {ENTRY_POINT}({', '.join(ENTRY_PARAMS)}) at module level"))
    elif len(entry[-1].args.posonlyargs) + len(entry[-1].args.args) < len(ENTRY_PARAMS) and entry[-1].args.vararg is None:
        problems.append(Violation(entry[-1].lineno, f"{ENTRY_POINT} must take the four arguments ({', '.join(ENTRY_PARAMS)})"))
    return sorted(set(problems), key=lambda v: (v.line, v.message))
