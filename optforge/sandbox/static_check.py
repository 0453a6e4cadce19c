"""The static check: parse an untrusted source with `ast` and hold it to a caller-given `Policy`
(`optforge.sandbox.policy`).

The policy is data, not code, so rules (torch + math) and later kinds of candidate code (search code
written by an LLM) each bring their own `Policy`; there is one checker. Everything is an allow-list:

- **node types**: every AST node must be of a type the policy names. Syntax nobody modelled
  (`match`/`case`, `global`, walrus, lambda, f-strings, a construct of a future Python) is refused
  with its line instead of being walked around;
- **attribute names**: every attribute read (`x.attr`, and the attribute names a `case C(attr=...)`
  pattern reads) must be on the policy's list, and none may start with `_`;
- **module names**: an imported module may only be the root of a chain ending on an allowed name
  (`torch.zeros_like`), never a value that is stored, passed or returned;
- **names**: a name that is not bound in the source must be an allowed builtin. Scopes are resolved as
  Python resolves them (function defaults and decorators in the enclosing scope, comprehensions in
  their own), and a module-level name that shadows a builtin is refused, because an unassigned global
  falls back to the builtin at run time;
- **stores**: no attribute is ever assigned or deleted (no monkeypatching, of modules or of objects
  reached through a local alias).

It never executes anything, so it is safe on hostile text and costs milliseconds.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optforge.types import clean_text

if TYPE_CHECKING:
    from optforge.sandbox.policy import Policy

# builtins that open I/O, reach interpreter internals or run code from strings: refused whatever the policy
ALWAYS_FORBIDDEN = frozenset(
    {
        "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr",
        "delattr", "input", "breakpoint", "help", "exit", "quit", "memoryview", "__builtins__", "__loader__",
        "__spec__", "object", "super", "classmethod", "staticmethod", "property", "type",
    }
)
_BUILTIN_NAMES = frozenset(dir(builtins))

# why a node type is usually refused, phrased so an LLM can fix the code
_NODE_HINTS = {
    "Match": "pattern matching (match/case) is not allowed; use if/elif",
    "Global": "'global' is not allowed; pass values in as arguments and return them, or keep them in the state dict",
    "Nonlocal": "'nonlocal' is not allowed; pass values in as arguments and return them",
    "ClassDef": "class definitions are not allowed here; use functions and dicts",
    "Lambda": "lambda is not allowed; define a named function with 'def'",
    "NamedExpr": "the walrus operator ':=' is not allowed; assign on a line of its own",
    "AsyncFunctionDef": "async functions are not allowed; use plain 'def'",
    "Await": "'await' is not allowed; use plain 'def'",
    "AsyncFor": "'async for' is not allowed; use plain 'for'",
    "AsyncWith": "'async with' is not allowed",
    "Yield": "generators ('yield') are not allowed; return a value",
    "YieldFrom": "generators ('yield from') are not allowed; return a value",
    "Try": "try/except is not allowed; compute without catching exceptions",
    "TryStar": "try/except* is not allowed; compute without catching exceptions",
    "Delete": "'del' is not allowed; use state.pop(key) to drop a state entry",
    "JoinedStr": "f-strings are not allowed; this code computes numbers",
    "FormattedValue": "f-strings are not allowed; this code computes numbers",
    "With": "'with' blocks are not allowed here",
    "Raise": "'raise' is not allowed here",
    "Assert": "'assert' is not allowed here",
    "Starred": "'*' unpacking is not allowed here",
}

# node types that only exist inside another construct: refused once, with their construct
_PARTS = frozenset(
    """match_case MatchValue MatchSingleton MatchSequence MatchMapping MatchClass MatchStar MatchAs MatchOr
    ExceptHandler FormattedValue comprehension withitem""".split()
)


@dataclass(frozen=True)
class Violation:
    """One refusal: where (1-based line; 0 when it concerns the whole source) and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def parse_source(source: str) -> tuple[ast.Module | None, Violation | None]:
    """(tree, None), or (None, the reason it does not parse). Never raises on hostile text."""
    try:
        return ast.parse(source), None
    except SyntaxError as e:
        return None, Violation(e.lineno or 0, clean_text(f"syntax error: {e.msg}; fix the Python syntax"))
    except (ValueError, TypeError) as e:  # NUL bytes, not text
        return None, Violation(0, clean_text(f"the source cannot be parsed: {e}"))
    except (RecursionError, MemoryError):
        return None, Violation(0, "the source is nested too deeply to parse; flatten the expressions")


def check_source(source: str, policy: Policy) -> list[Violation]:
    """Every way `source` breaks `policy`, in line order; an empty list means it may run."""
    tree, error = parse_source(source)
    if error is not None:
        return [error]
    problems = Checker(policy).run(tree)
    return sorted(set(problems), key=lambda v: (v.line, v.message))


def _dotted_chain(node: ast.AST) -> tuple[ast.Name, list[str]] | None:
    """For `a.b.c` return (the Name a, ['b', 'c']); None if the chain is not rooted at a plain name."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return node, list(reversed(attrs))
    return None


class _Scope:
    """One Python scope: which names it binds, and where name lookups go next."""

    def __init__(self, kind: str, parent: "_Scope | None"):
        self.kind = kind  # module, function, comprehension, class
        self.parent = parent
        self.bound: set[str] = set()
        self.declared_global: set[str] = set()

    def module(self) -> "_Scope":
        s = self
        while s.parent is not None:
            s = s.parent
        return s

    def resolve(self, name: str) -> "_Scope | None":
        """The scope whose binding `name` refers to here, or None (a builtin)."""
        if name in self.declared_global:
            mod = self.module()
            return mod if name in mod.bound else None
        s: _Scope | None = self
        first = True
        while s is not None:
            # a class body is visible only to itself, not to functions nested in it
            if (s.kind != "class" or first) and name in s.bound:
                return s
            s, first = s.parent, False
        return None


class Checker:
    """Two passes over the tree: bind names per scope, then check every node against the policy."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.problems: list[Violation] = []
        self.aliases: dict[str, dict[str, int]] = {}  # import alias -> {dotted module path: line bound}
        self.bound_lines: dict[str, int] = {}  # every name bound other than by importing a module -> first line
        self.scope_of: dict[int, _Scope] = {}  # id(scope-opening node) -> its scope

    def add(self, line: int, message: str) -> None:
        self.problems.append(Violation(line, clean_text(message)))

    def run(self, tree: ast.Module) -> list[Violation]:
        self._bind(tree)
        for name, line in self.bound_lines.items():
            if name in self.aliases:
                self.add(line, f"'{name}' names an imported module; do not bind it to anything else")
        for name, mods in self.aliases.items():
            if len(mods) > 1:
                self.add(max(mods.values()), f"'{name}' is imported as different modules ({', '.join(sorted(mods))}); use one name per module")
        self._check(tree)
        return self.problems

    # ---------------------------------------------------------------------------------- scopes
    def _children(self, node: ast.AST, scope: _Scope) -> list[tuple[ast.AST, _Scope]]:
        """The children of `node`, each with the scope it is evaluated in; none is left out."""
        listed = self._scoped_children(node, scope)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp,
                             ast.SetComp, ast.GeneratorExp, ast.DictComp, ast.NamedExpr)):
            # fields this checker does not place in a scope (type parameters of a newer Python) are
            # still walked, in the enclosing scope, so their node types are checked like any other
            seen = {id(c) for c, _ in listed}
            listed += [(c, scope) for c in ast.iter_child_nodes(node) if id(c) not in seen]
        return listed

    def _scoped_children(self, node: ast.AST, scope: _Scope) -> list[tuple[ast.AST, _Scope]]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner = self.scope_of.setdefault(id(node), _Scope("function", scope))
            a = node.args
            outer: list[ast.AST] = [*getattr(node, "decorator_list", []), *a.defaults, *[d for d in a.kw_defaults if d]]
            outer += [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x and x.annotation]
            if getattr(node, "returns", None) is not None:
                outer.append(node.returns)
            params = [x for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x]
            body = node.body if isinstance(node.body, list) else [node.body]
            return [(c, scope) for c in outer] + [(a, inner)] + [(p, inner) for p in params] + [(c, inner) for c in body]
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = self.scope_of.setdefault(id(node), _Scope("comprehension", scope))
            out: list[tuple[ast.AST, _Scope]] = []
            for i, gen in enumerate(node.generators):
                # the first iterable is evaluated in the enclosing scope, all else in the comprehension's
                out += [(gen, inner), (gen.target, inner), (gen.iter, scope if i == 0 else inner)]
                out += [(c, inner) for c in gen.ifs]
            elts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            return out + [(e, inner) for e in elts]
        if isinstance(node, (ast.comprehension, ast.arguments, ast.arg)):
            return []  # their parts are listed by the comprehension or function itself, with their scopes
        if isinstance(node, ast.NamedExpr):
            # ':=' binds in the nearest enclosing scope that is not a comprehension
            target = scope
            while target.kind == "comprehension" and target.parent is not None:
                target = target.parent
            return [(node.target, target), (node.value, scope)]
        if isinstance(node, ast.ClassDef):
            inner = self.scope_of.setdefault(id(node), _Scope("class", scope))
            outer = [*node.decorator_list, *node.bases, *node.keywords]
            return [(c, scope) for c in outer] + [(c, inner) for c in node.body]
        return [(c, scope) for c in ast.iter_child_nodes(node)]

    def _walk(self, tree: ast.Module):
        """(node, scope, line) for every node, parents first; line is the nearest known line."""
        root = self.scope_of.setdefault(id(tree), _Scope("module", None))
        stack: list[tuple[ast.AST, _Scope, int]] = [(tree, root, 0)]
        while stack:
            node, scope, line = stack.pop()
            line = getattr(node, "lineno", None) or line
            yield node, scope, line
            stack.extend((c, s, line) for c, s in reversed(self._children(node, scope)))

    def _bind(self, tree: ast.Module) -> None:
        for node, scope, line in self._walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.append(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, ast.arg):
                names.append(node.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.append(node.name)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                names.append(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                names.append(node.rest)
            elif isinstance(node, ast.Global):
                scope.declared_global.update(node.names)
                scope.module().bound.update(node.names)
            elif isinstance(node, ast.Nonlocal):
                pass  # refers to an enclosing function's binding, which that function makes itself
            elif isinstance(node, ast.Import):
                for a in node.names:
                    local = a.asname or a.name.split(".")[0]
                    self.aliases.setdefault(local, {}).setdefault(a.name if a.asname else a.name.split(".")[0], line)
                    scope.bound.add(local)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    full, local = f"{node.module}.{a.name}", a.asname or a.name
                    if self._is_module_path(full):
                        self.aliases.setdefault(local, {}).setdefault(full, line)
                    else:
                        self.bound_lines.setdefault(local, line)
                    scope.bound.add(local)
            for name in names:
                (scope.module() if name in scope.declared_global else scope).bound.add(name)
                self.bound_lines.setdefault(name, line)

    # ---------------------------------------------------------------------------------- names
    def _is_module_path(self, dotted: str) -> bool:
        """True when `dotted` names a module of an allowed package (a prefix of some allowed name)."""
        return dotted in self.policy.module_paths

    def _name_allowed(self, dotted: str) -> bool:
        if dotted in self.policy.module_names:
            return True
        head, _, last = dotted.rpartition(".")
        return head in self.policy.open_modules and not last.startswith("_")

    def _allowed_hint(self) -> str:
        return ", ".join(self.policy.allowed_imports) or "nothing"

    def _check_binding_name(self, name: str, line: int) -> None:
        if name.startswith("__") or name in ALWAYS_FORBIDDEN:
            self.add(line, f"the name '{name}' may not be bound: dunder and interpreter names reach interpreter internals")

    def _check_attr_name(self, attr: str, line: int, where: str = "attribute or method") -> None:
        if attr.startswith("_"):
            self.add(line, f"attribute '.{attr}' is not allowed: private and dunder attributes reach interpreter internals")
        elif attr not in self.policy.attributes:
            self.add(line, f"{where} '.{attr}' is not on the allow-list; {self.policy.attribute_hint}")

    def _check_name(self, node: ast.Name, scope: _Scope, line: int) -> None:
        name = node.id
        if name in ALWAYS_FORBIDDEN or name.startswith("__"):
            self.add(line, f"'{name}' is not allowed: it reaches I/O or interpreter internals; compute with the allowed modules only")
            return
        if not isinstance(node.ctx, ast.Load):
            return
        if name in self.aliases:
            self.add(line, f"module '{name}' may only be used as 'module.function'; do not pass, store or return it")
            return
        owner = scope.resolve(name)
        if owner is not None and owner.kind in ("function", "comprehension"):
            return  # a local: it holds whatever the (checked) code assigned
        if name in _BUILTIN_NAMES and name not in self.policy.builtins:
            # a global that is never assigned at run time falls back to this builtin
            self.add(line, f"builtin '{name}' is not allowed (nor may a module-level name shadow it); rename the variable or compute another way")
        elif owner is None and name not in self.policy.builtins:
            self.add(line, f"name '{name}' is not defined here and is not an allowed builtin")

    def _check_module_chain(self, top: ast.Attribute, root: ast.Name, attrs: list[str], line: int) -> None:
        """A module may only be the root of an attribute chain that ends on an allowed name."""
        dotted = ".".join([sorted(self.aliases[root.id])[0], *attrs])
        if any(a.startswith("_") for a in attrs):
            self.add(line, f"'{dotted}': private and dunder attributes are not allowed")
        elif self._is_module_path(dotted) and not self._name_allowed(dotted):
            self.add(line, f"module '{dotted}' may only be used as 'module.function'; do not pass, store or return it")
        elif not self._name_allowed(dotted):
            self.add(line, f"'{dotted}' is not on the allow-list of this policy; use another function")
        if not isinstance(top.ctx, ast.Load):
            self.add(line, f"assigning to '{dotted}' is not allowed: no monkeypatching of modules")

    # ---------------------------------------------------------------------------------- nodes
    def _check(self, tree: ast.Module) -> None:
        skip: set[int] = set()  # inner nodes of module chains, checked from their outermost attribute
        quiet: set[int] = set()
        for node, scope, line in self._walk(tree):
            if id(node) in skip:
                continue
            kind = type(node).__name__
            if kind not in self.policy.node_types and id(node) not in quiet:
                self.add(line, _NODE_HINTS.get(kind, f"'{kind}' syntax is not allowed by the {self.policy.name} policy"))
                # the parts of a refused construct (its cases, patterns, handlers) need no refusal of their own
                quiet.update(id(n) for n in ast.walk(node) if type(n).__name__ in _PARTS)
            if isinstance(node, ast.Attribute):
                chain = _dotted_chain(node)
                if chain is not None and chain[0].id in self.aliases:
                    self._check_module_chain(node, chain[0], chain[1], line)
                    inner: ast.AST = node
                    while isinstance(inner, ast.Attribute):
                        inner = inner.value
                        skip.add(id(inner))
                    continue
                self._check_attr_name(node.attr, line)
                if not isinstance(node.ctx, ast.Load):
                    self.add(line, f"assigning to or deleting attribute '.{node.attr}' is not allowed; keep values in local variables or the state dict")
            elif isinstance(node, ast.Name):
                self._check_name(node, scope, line)
            elif isinstance(node, ast.MatchClass):
                for attr in node.kwd_attrs:
                    self._check_attr_name(attr, line, where="pattern attribute")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                self._check_import(node, line)
            elif isinstance(node, ast.comprehension) and node.is_async:
                self.add(line, "'async for' in a comprehension is not allowed")
            self._check_bound_names(node, line)

    def _check_bound_names(self, node: ast.AST, line: int) -> None:
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.arg):
            names.append(node.arg)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.append(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.append(node.rest)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names += node.names
        elif isinstance(node, ast.alias):
            names.append(node.asname or node.name.split(".")[0])
        for name in names:
            self._check_binding_name(name, line)

    def _check_import(self, node: ast.Import | ast.ImportFrom, line: int) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] not in self.policy.allowed_imports:
                    self.add(line, f"import of '{a.name}' is not allowed; this code may import only {self._allowed_hint()}")
                elif "." in a.name and not self._is_module_path(a.name):
                    self.add(line, f"import of '{a.name}' is not allowed; it is not a module this policy opens")
            return
        mod = node.module or ""
        if node.level or mod.split(".")[0] not in self.policy.allowed_imports:
            self.add(line, f"import from '{'.' * node.level}{mod}' is not allowed; this code may import only {self._allowed_hint()}")
            return
        for a in node.names:
            full = f"{mod}.{a.name}"
            if a.name == "*":
                self.add(line, f"'from {mod} import *' is not allowed; import the names you use explicitly")
            elif not (self._name_allowed(full) or self._is_module_path(full)):
                self.add(line, f"'{full}' is not on the allow-list; use another {mod} function")
