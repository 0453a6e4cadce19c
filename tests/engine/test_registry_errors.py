"""A strategy named by dotted path that cannot be loaded says what failed and what to do: install the
package or put it on PYTHONPATH, a missing dependency by name, a broken module with its error."""

from __future__ import annotations

import sys

import pytest

from optforge.search.registry import resolve


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A package `userpkg` in tmp_path with modules written by the test, importable once on sys.path."""
    root = tmp_path / "userpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for mod in [m for m in sys.modules if m == "userpkg" or m.startswith("userpkg.")]:
        del sys.modules[mod]


def test_a_package_not_on_the_path_names_pythonpath_and_installing():
    with pytest.raises(ValueError, match=r"strategy.name 'nopkg_xyz\.search:make'.*no module named 'nopkg_xyz'") as e:
        resolve("nopkg_xyz.search:make")
    assert "PYTHONPATH" in str(e.value) and "pip install -e" in str(e.value)


def test_a_missing_dependency_is_named_as_such(pkg):
    (pkg / "needs_dep.py").write_text("import not_installed_dep_xyz\n\ndef make(params, ctx):\n    return None\n")
    with pytest.raises(ValueError, match="importing userpkg.needs_dep failed: it imports 'not_installed_dep_xyz'"):
        resolve("userpkg.needs_dep:make")


def test_a_broken_module_gives_its_error_and_line(pkg):
    (pkg / "broken.py").write_text("def make(params, ctx)\n    return None\n")
    with pytest.raises(ValueError, match=r"importing userpkg.broken raised SyntaxError.*broken.py, line 1"):
        resolve("userpkg.broken:make")


def test_a_missing_function_and_a_dot_for_the_colon_are_explained(pkg):
    (pkg / "mod.py").write_text("def make(params, ctx):\n    return None\n")
    assert resolve("userpkg.mod:make").__name__ == "make"
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        resolve("userpkg.mod:nope")
    with pytest.raises(ValueError, match="did you mean 'userpkg.mod:make'"):
        resolve("userpkg.mod.make")
