"""What an untrusted source may use: `Policy`, the allow-lists one checker (`static_check`) holds a
source to. Rules bring `RULE_POLICY` (`rule_policy`), search procedures `PROCEDURE_POLICY`
(`procedure_policy`); this module also re-exports the checker's entry points.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property

# the checker's entry points and records, where callers have always imported them from
from optforge.sandbox.static_check import _NODE_HINTS, ALWAYS_FORBIDDEN, Violation, check_source, parse_source  # noqa: F401

# operators, comparison operators and expression contexts: they carry no names of their own
OPERATOR_NODES = frozenset(
    """Add Sub Mult MatMult Div Mod Pow LShift RShift BitOr BitXor BitAnd FloorDiv UAdd USub Not Invert
    And Or Eq NotEq Lt LtE Gt GtE Is IsNot In NotIn Load Store""".split()
)
# straight-line computation with functions: what any kind of candidate code needs
CORE_NODES = OPERATOR_NODES | frozenset(
    """Module Expr Assign AugAssign Return If For While Break Continue Pass FunctionDef arguments arg
    Import ImportFrom alias Name Attribute Call keyword Constant BinOp UnaryOp BoolOp Compare IfExp
    Subscript Slice Tuple List Dict Set""".split()
)


@dataclass(frozen=True)
class Policy:
    """What an untrusted source may use. All fields are allow-lists.

    node_types: names of the `ast` node classes the source may contain ("FunctionDef", "Add", "Load").
    allowed_imports: top-level module names that may be imported (the whole dotted path must start with one).
    module_names: dotted names reachable from an imported module ("torch.zeros_like", "torch.linalg.norm").
    open_modules: modules whose every public (non-underscore) attribute is allowed ("math").
    attributes: attribute names allowed on non-module values (tensor methods, dict methods, ctx fields).
    builtins: builtin names the source may call or read.
    attribute_hint: what to do instead, appended to the refusal of an attribute not on the list.
    """

    allowed_imports: tuple[str, ...] = ()
    module_names: frozenset[str] = field(default_factory=frozenset)
    open_modules: tuple[str, ...] = ()
    attributes: frozenset[str] = field(default_factory=frozenset)
    builtins: frozenset[str] = field(default_factory=frozenset)
    node_types: frozenset[str] = CORE_NODES
    name: str = "custom"
    attribute_hint: str = "use another tensor method or a torch function"

    def __post_init__(self) -> None:
        unknown = sorted(n for n in self.node_types if not isinstance(getattr(ast, n, None), type))
        if unknown:
            raise ValueError(f"Policy {self.name!r}: node_types names no ast node class: {unknown}; use names like 'FunctionDef'")
        object.__setattr__(self, "node_types", frozenset(self.node_types))

    @cached_property
    def module_paths(self) -> frozenset[str]:
        """The modules this policy opens: every open module and every proper dotted prefix of an allowed name."""
        paths = set(self.open_modules)
        for dotted in self.module_names:
            parts = dotted.split(".")
            paths.update(".".join(parts[:i]) for i in range(1, len(parts)))
        return frozenset(paths)

    def to_dict(self) -> dict:
        """JSON-able form (sorted lists), for logs and results."""
        return {
            "name": self.name,
            "node_types": sorted(self.node_types),
            "allowed_imports": list(self.allowed_imports),
            "module_names": sorted(self.module_names),
            "open_modules": list(self.open_modules),
            "attributes": sorted(self.attributes),
            "builtins": sorted(self.builtins),
        }
