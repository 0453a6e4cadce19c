"""The static check: parse an untrusted source with `ast` and hold it to a caller-given `Policy`.

The policy is data, not code, so rules (torch + math) and later kinds of candidate code (search code
written by an LLM) can each bring their own. The check is an allow-list: a module attribute, a method
or a builtin that the policy does not name is refused, with a line number and a hint an LLM can act on.
It never executes anything, so it is safe on hostile text and costs milliseconds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

# builtins that open I/O, reach interpreter internals or run code from strings: refused whatever the policy
ALWAYS_FORBIDDEN = frozenset(
    {
        "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr",
        "delattr", "input", "breakpoint", "help", "exit", "quit", "memoryview", "__builtins__", "__loader__",
        "__spec__", "object", "super", "classmethod", "staticmethod", "property", "type",
    }
)


@dataclass(frozen=True)
class Policy:
    """What an untrusted source may use.

    allowed_imports: top-level module names that may be imported (the whole dotted path must start with one).
    module_names: dotted names reachable from an imported module ("torch.zeros_like", "torch.linalg.norm").
    open_modules: modules whose every public (non-underscore) attribute is allowed ("math").
    attributes: attribute names allowed on non-module values (tensor methods, dict methods, ctx fields).
    builtins: builtin names the source may call or read.
    allow_classes: whether `class` statements are accepted.
    """

    allowed_imports: tuple[str, ...] = ()
    module_names: frozenset[str] = field(default_factory=frozenset)
    open_modules: tuple[str, ...] = ()
    attributes: frozenset[str] = field(default_factory=frozenset)
    builtins: frozenset[str] = field(default_factory=frozenset)
    allow_classes: bool = False
    name: str = "custom"

    def to_dict(self) -> dict:
        """JSON-able form (sorted lists), for logs and results."""
        return {
            "name": self.name,
            "allowed_imports": list(self.allowed_imports),
            "module_names": sorted(self.module_names),
            "open_modules": list(self.open_modules),
            "attributes": sorted(self.attributes),
            "builtins": sorted(self.builtins),
            "allow_classes": self.allow_classes,
        }


@dataclass(frozen=True)
class Violation:
    """One refusal: where and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def check_source(source: str, policy: Policy) -> list[Violation]:
    """Every way `source` breaks `policy`, in line order; an empty list means it may run."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Violation(e.lineno or 0, f"syntax error: {e.msg}; fix the Python syntax")]
    return sorted(_Checker(policy, tree).run(), key=lambda v: (v.line, v.message))


def _dotted_chain(node: ast.AST) -> tuple[str, list[str]] | None:
    """For `a.b.c` return ('a', ['b', 'c']); None if the chain is not rooted at a plain name."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return node.id, list(reversed(attrs))
    return None


class _Checker:
    def __init__(self, policy: Policy, tree: ast.Module):
        self.policy = policy
        self.tree = tree
        self.problems: list[Violation] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted module path
        self.bound: set[str] = set()
        self.parents: dict[ast.AST, ast.AST] = {}
        self.chain_done: set[int] = set()

    def add(self, node: ast.AST | None, message: str) -> None:
        self.problems.append(Violation(getattr(node, "lineno", 0) or 0, message))

    # ----------------------------------------------------------------------------------------
    def run(self) -> list[Violation]:
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self._collect_bindings()
        for node in ast.walk(self.tree):
            method = getattr(self, f"_visit_{type(node).__name__}", None)
            if method is not None:
                method(node)
        return self.problems

    def _collect_bindings(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                self.bound.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.bound.add(node.name)
            elif isinstance(node, ast.arg):
                self.bound.add(node.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.bound.add(node.name)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                self.bound.update(node.names)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if self._import_ok(node, a.name):
                        local = a.asname or a.name.split(".")[0]
                        self.aliases[local] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if self._is_module_path(full):
                        self.aliases[a.asname or a.name] = full
                    else:
                        self.bound.add(a.asname or a.name)

    def _is_module_path(self, dotted: str) -> bool:
        """True when `dotted` names a module of an allowed package (a prefix of some allowed name)."""
        if dotted in self.policy.open_modules:
            return True
        prefix = dotted + "."
        return any(n.startswith(prefix) for n in self.policy.module_names)

    def _name_allowed(self, dotted: str) -> bool:
        if dotted in self.policy.module_names:
            return True
        head, _, last = dotted.rpartition(".")
        return head in self.policy.open_modules and not last.startswith("_")

    def _import_ok(self, node: ast.AST, name: str) -> bool:
        return name.split(".")[0] in self.policy.allowed_imports

    def _allowed_hint(self) -> str:
        return ", ".join(self.policy.allowed_imports) or "nothing"

    # ----------------------------------------------------------------------------------------
    def _visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if not self._import_ok(node, a.name):
                self.add(node, f"import of '{a.name}' is not allowed; this code may import only {self._allowed_hint()}")
            elif "." in a.name and not self._is_module_path(a.name):
                self.add(node, f"import of '{a.name}' is not allowed; it is not a module this policy opens")

    def _visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = node.module or ""
        if node.level or mod.split(".")[0] not in self.policy.allowed_imports:
            self.add(node, f"import from '{'.' * node.level}{mod}' is not allowed; this code may import only {self._allowed_hint()}")
            return
        for a in node.names:
            full = f"{mod}.{a.name}"
            if a.name == "*":
                self.add(node, f"'from {mod} import *' is not allowed; import the names you use explicitly")
            elif not (self._name_allowed(full) or self._is_module_path(full)):
                self.add(node, f"'{full}' is not on the allow-list; use another {mod} function")

    def _visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.policy.allow_classes:
            self.add(node, "class definitions are not allowed here; use functions and dicts")

    def _visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.add(node, "async functions are not allowed; use plain 'def'")

    def _visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name.startswith("__"):
            self.add(node, f"function name '{node.name}' is not allowed: dunder names reach interpreter internals")

    def _visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name in ALWAYS_FORBIDDEN or name.startswith("__"):
            if isinstance(node.ctx, ast.Load):
                self.add(node, f"'{name}' is not allowed: it reaches I/O or interpreter internals; compute with the allowed modules only")
            return
        if name in self.aliases:
            if isinstance(node.ctx, ast.Load):
                self._check_module_use(node)
            return
        if isinstance(node.ctx, ast.Load) and name not in self.bound and name not in self.policy.builtins:
            self.add(node, f"name '{name}' is not defined here and is not an allowed builtin")

    def _check_module_use(self, node: ast.Name) -> None:
        """A module may only be the root of an attribute chain that ends on an allowed name."""
        top: ast.AST = node
        while isinstance(self.parents.get(top), ast.Attribute) and self.parents[top].value is top:
            top = self.parents[top]
        chain = _dotted_chain(top)
        assert chain is not None
        root, attrs = chain
        dotted = ".".join([self.aliases[root], *attrs])
        self.chain_done.add(id(top))
        if top is node:
            self.add(node, f"module '{dotted}' may only be used as 'module.function'; do not pass, store or return it")
        elif any(a.startswith("_") for a in attrs):
            self.add(node, f"'{dotted}': private and dunder attributes are not allowed")
        elif not self._name_allowed(dotted):
            if self._is_module_path(dotted):
                self.add(node, f"module '{dotted}' may only be used as 'module.function'; do not pass, store or return it")
            else:
                self.add(node, f"'{dotted}' is not on the allow-list of this policy; use another function")
        elif not isinstance(self.parents.get(top), ast.Call) or self.parents[top].func is not top:
            # a plain reference (dtype constant, torch.pi, finfo passed along) is fine; nothing else to check
            pass
        if isinstance(getattr(top, "ctx", None), (ast.Store, ast.Del)):
            self.add(node, f"assigning to '{dotted}' is not allowed: no monkeypatching of modules")

    def _visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _dotted_chain(node)
        if chain is not None and chain[0] in self.aliases:
            return  # handled from the root name
        attr = node.attr
        if attr.startswith("_"):
            self.add(node, f"attribute '.{attr}' is not allowed: private and dunder attributes reach interpreter internals")
            return
        if attr not in self.policy.attributes:
            self.add(node, f"attribute or method '.{attr}' is not on the allow-list; use another tensor method or a torch function")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and not self._is_local_object(node):
            self.add(node, f"assigning to '.{attr}' of a non-local object is not allowed; keep changes in local variables or the state dict")

    def _is_local_object(self, node: ast.Attribute) -> bool:
        """True when the root of `node` is a name first bound inside the enclosing function."""
        chain = _dotted_chain(node)
        if chain is None:
            return False
        fn = self.parents.get(node)
        while fn is not None and not isinstance(fn, (ast.FunctionDef, ast.Lambda)):
            fn = self.parents.get(fn)
        if fn is None or isinstance(fn, ast.Lambda):
            return False
        params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        if chain[0] in params:
            return False
        return any(
            isinstance(n, ast.Name) and n.id == chain[0] and isinstance(n.ctx, ast.Store) for n in ast.walk(fn)
        )
