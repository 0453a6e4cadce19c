"""The program form: a flat list of assignments over the fixed library, rendered to a rule source.

A program reads the inputs ``p, g, lr, t, T, gnorm, role`` and ``k`` state slots (zero-initialised,
parameter-shaped), runs its statements in order (each ``target = fn(args)`` with variables or float
constants as arguments), writes the slots back to the state and returns the variable ``ret`` as the
delta. ``render`` turns it into an ordinary rule source (torch and math only, no optforge import)
and ``parse`` turns that source back into the same program.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
from dataclasses import dataclass, field
from typing import Any, Union

from optforge.search.symbolic.library import FUNCTIONS, HELPERS, function_source, helpers_for

INPUTS = ("p", "g", "lr", "t", "T", "gnorm", "role")
"""Read-only inputs: param, gradient, lr of this step, step t (1-based), total steps T (t if unknown),
global gradient norm, role."""

_INPUT_EXPR = {
    "lr": "_s(ctx.lr)",
    "t": "_s(ctx.t)",
    "T": "_s(ctx.T or ctx.t)",
    "gnorm": "_s(ctx.grad_norm)",
    "role": "ctx.role",
}
_RESERVED = set(INPUTS) | set(FUNCTIONS) | set(HELPERS) | {"state", "ctx", "torch", "math", "LR", "init", "update"}

Arg = Union[str, float]


class ProgramError(ValueError):
    """A program (or a source that should hold one) is malformed. The message says what to fix."""


@dataclass(frozen=True)
class Stmt:
    """One assignment ``target = fn(*args)``; an argument is a variable name or a float constant."""

    target: str
    fn: str
    args: tuple[Arg, ...] = ()

    def to_json(self) -> list:
        return [self.target, self.fn, list(self.args)]

    @classmethod
    def from_json(cls, d: list) -> "Stmt":
        target, fn, args = d
        return cls(str(target), str(fn), tuple(a if isinstance(a, str) else float(a) for a in args))


@dataclass(frozen=True)
class Program:
    """A symbolic update rule. ``lr`` is the rendered rule's base learning rate ``LR``."""

    slots: tuple[str, ...]
    body: tuple[Stmt, ...]
    ret: str = "delta"
    lr: float = 1e-3
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for s in self.slots:
            if not _ident(s) or s in _RESERVED:
                raise ProgramError(f"bad state slot name {s!r}; use a plain identifier that is not an input or library name")
        if len(set(self.slots)) != len(self.slots):
            raise ProgramError(f"duplicate state slot names in {self.slots}")
        for st in self.body:
            if not _ident(st.target) or st.target in _RESERVED:
                raise ProgramError(f"bad assignment target {st.target!r}; inputs and library names are read-only")
            if st.fn not in FUNCTIONS:
                raise ProgramError(f"unknown library function {st.fn!r}")
            for a in st.args:
                if isinstance(a, float) and not math.isfinite(a):
                    raise ProgramError(f"constant {a!r} in '{st.target} = {st.fn}(...)' must be finite")
        if not (isinstance(self.lr, float) and math.isfinite(self.lr) and self.lr > 0):
            raise ProgramError(f"LR={self.lr!r} must be a finite float > 0")

    @property
    def constants(self) -> list[tuple[int, int]]:
        """(statement index, argument index) of every constant argument."""
        return [(i, j) for i, st in enumerate(self.body) for j, a in enumerate(st.args) if isinstance(a, float)]

    def to_json(self) -> dict[str, Any]:
        return {
            "slots": list(self.slots),
            "body": [s.to_json() for s in self.body],
            "ret": self.ret,
            "lr": self.lr,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Program":
        return cls(
            slots=tuple(d["slots"]),
            body=tuple(Stmt.from_json(s) for s in d["body"]),
            ret=d.get("ret", "delta"),
            lr=float(d.get("lr", 1e-3)),
            name=d.get("name", ""),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    def replace(self, **kw: Any) -> "Program":
        d = {"slots": self.slots, "body": self.body, "ret": self.ret, "lr": self.lr, "name": self.name}
        d.update(kw)
        return Program(**d)

    def text(self) -> str:
        """The statements alone, one per line (for logs and notes)."""
        return "\n".join(f"{s.target} = {s.fn}({', '.join(_arg_src(a) for a in s.args)})" for s in self.body) + (
            f"\nreturn {self.ret}"
        )


def pad_slots(program: Program, k: int) -> Program:
    """`program` with unused zero state slots added (s0, s1, ...) until it has `k`."""
    extra: list[str] = []
    i = 0
    while len(program.slots) + len(extra) < k:
        name = f"s{i}"
        i += 1
        if name not in program.slots and name not in {s.target for s in program.body}:
            extra.append(name)
    return program.replace(slots=program.slots + tuple(extra))


def _ident(name: str) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _arg_src(a: Arg) -> str:
    return a if isinstance(a, str) else repr(float(a))


# ---------------------------------------------------------------------------------------------
# render


def render(program: Program, *, doc: str = "") -> str:
    """The rule source of `program`: plain Python (torch, math) that `check_rule` accepts."""
    used_fns = {s.fn for s in program.body}
    used_vars = {a for s in program.body for a in s.args if isinstance(a, str)} | {program.ret}
    used_inputs = [i for i in INPUTS if i in used_vars and i in _INPUT_EXPR]
    need = set(helpers_for(used_fns))
    if used_inputs and any(i != "role" for i in used_inputs):
        need.add("_s")
    helper_names = [h for h in ("_c", "_w", "_s", "_m2") if h in need]
    title = f"from {program.name}" if program.name else "a symbolic program"
    lines = [
        '"""' + (doc or f"Update rule found by optforge symbolic search ({title}).") + "\n",
        "A flat program over optforge's fixed function library (generated code; slots are zero-initialised).",
        '"""',
        "",
        "import math",
        "",
        "import torch",
        "",
        f"LR = {program.lr!r}",
        "",
    ]
    for name in helper_names + sorted(used_fns):
        lines += ["", function_source(name)]
    lines += ["", "def init(p, ctx):"]
    slot_items = ", ".join(f'"{s}": torch.zeros_like(p)' for s in program.slots)
    lines += [f"    return {{{slot_items}}}", "", "", "def update(p, g, state, ctx):"]
    for i in used_inputs:
        lines.append(f"    {i} = {_INPUT_EXPR[i]}")
    for s in program.slots:
        lines.append(f'    {s} = state["{s}"]')
    for st in program.body:
        lines.append(f"    {st.target} = {st.fn}({', '.join(_arg_src(a) for a in st.args)})")
    for s in program.slots:
        lines.append(f'    state["{s}"] = {s}')
    lines.append(f"    return {program.ret}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# parse


def parse(source: str) -> Program:
    """The program that `render` wrote into `source`; raises ProgramError for any other source."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ProgramError(f"not a program source: syntax error at line {e.lineno}: {e.msg}") from e
    lr = None
    slots: tuple[str, ...] | None = None
    update = None
    doc = ast.get_docstring(tree) or ""
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["LR"]:
            lr = float(ast.literal_eval(node.value))
        elif isinstance(node, ast.FunctionDef) and node.name == "init":
            ret = node.body[-1]
            if not (isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict)):
                raise ProgramError("init must return a dict literal of zero slots")
            slots = tuple(ast.literal_eval(k) for k in ret.value.keys)
        elif isinstance(node, ast.FunctionDef) and node.name == "update":
            update = node
    if lr is None or slots is None or update is None:
        raise ProgramError("not a program source: needs LR, init and update as written by render()")
    body: list[Stmt] = []
    ret = None
    for node in update.body:
        if isinstance(node, ast.Return):
            if not isinstance(node.value, ast.Name):
                raise ProgramError(f"line {node.lineno}: update must return a variable")
            ret = node.value.id
            break
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            raise ProgramError(f"line {node.lineno}: only single assignments are allowed in a program")
        tgt, val = node.targets[0], node.value
        if isinstance(tgt, ast.Subscript):
            continue  # slot write-back
        if not isinstance(tgt, ast.Name):
            raise ProgramError(f"line {node.lineno}: assignment target must be a name")
        if tgt.id in _INPUT_EXPR or isinstance(val, ast.Subscript):
            continue  # input header or slot read
        if not (isinstance(val, ast.Call) and isinstance(val.func, ast.Name) and val.func.id in FUNCTIONS):
            raise ProgramError(f"line {node.lineno}: each statement must call one library function")
        args: list[Arg] = []
        for a in val.args:
            if isinstance(a, ast.Name):
                args.append(a.id)
            else:
                try:
                    args.append(float(ast.literal_eval(a)))
                except ValueError as e:
                    raise ProgramError(f"line {node.lineno}: arguments must be variables or numbers") from e
        body.append(Stmt(tgt.id, val.func.id, tuple(args)))
    if ret is None:
        raise ProgramError("update has no return statement")
    name = ""
    head = doc.splitlines()[0] if doc else ""
    if head.startswith("Update rule found by optforge symbolic search (") and head.endswith(")."):
        name = head[len("Update rule found by optforge symbolic search (") : -2]
        name = name[len("from ") :] if name.startswith("from ") else ""
    return Program(slots=slots, body=tuple(body), ret=ret, lr=lr, name=name)


def from_text(text: str, *, slots: tuple[str, ...], lr: float, name: str = "") -> Program:
    """A program from statement lines as `Program.text()` writes them (``x = fn(a, 0.1)``, ``return x``)."""
    body: list[Stmt] = []
    ret = "delta"
    for raw in text.strip().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("return "):
            ret = line[len("return ") :].strip()
            continue
        node = ast.parse(line).body[0]
        if not (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
        ):
            raise ProgramError(f"not a program statement: {line!r}")
        args: list[Arg] = [a.id if isinstance(a, ast.Name) else float(ast.literal_eval(a)) for a in node.value.args]
        body.append(Stmt(node.targets[0].id, node.value.func.id, tuple(args)))
    return Program(slots=tuple(slots), body=tuple(body), ret=ret, lr=float(lr), name=name)
