"""Seed procedures: the built-in files load, each defines improve(...) and states its idea."""

import ast

import pytest

from optforge.search.moh.procedures import idea_of, load_procedure, seed_names

ALLOWED_IMPORTS = {"math", "random", "json", "heapq", "itertools", "re"}


def test_the_three_seed_procedures_are_bundled():
    assert seed_names() == ["evolve", "meta", "polca"]


@pytest.mark.parametrize("name", ["evolve", "meta", "polca"])
def test_a_seed_defines_improve_imports_only_the_allow_list_and_has_an_idea(name):
    source = load_procedure(name)
    tree = ast.parse(source)
    improve = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "improve"]
    assert improve and [a.arg for a in improve[0].args.args] == ["population", "utility", "llm", "task"]
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= ALLOWED_IMPORTS and not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert idea_of(source) and "\n" not in idea_of(source)


def test_a_file_loads_and_an_unknown_name_says_what_is_known(tmp_path):
    path = tmp_path / "p.py"
    path.write_text("def improve(population, utility, llm, task):\n    return population.get(0)\n")
    assert load_procedure(str(path)).startswith("def improve") and idea_of(load_procedure(str(path))) == ""
    with pytest.raises(ValueError, match="evolve, meta, polca"):
        load_procedure("nope")
