import ast
import zipfile
from importlib import resources

import pytest

from optforge.llm import PromptError, load_template, render
from optforge.llm.prompts import template_names


def test_missing_template_is_an_error():
    with pytest.raises(PromptError, match="no prompt template 'nope'"):
        load_template("nope")


def test_fields_must_match_placeholders():
    with pytest.raises(PromptError, match="needs field"):
        render("evolve_system")
    with pytest.raises(PromptError, match="no placeholder"):
        render("evolve_system", contract="c", extra="x")


def test_contract_shows_every_ctx_field_and_the_signatures():
    text = load_template("rule_contract")
    for needle in ("ctx.lr", "ctx.t", "ctx.T", "ctx.role", "ctx.shape", "ctx.grad_norm",
                   "def init(p, ctx)", "def update(p, g, state, ctx)", "def eval_point(p, state, ctx)",
                   "LR = 1e-3", "hidden_matrix"):
        assert needle in text


def test_system_prompt_renders_exactly():
    text = render("evolve_system", contract="<CONTRACT>")
    assert text == (
        "You are an expert in deep-learning optimization who designs new neural-network optimizers.\n"
        "You improve update rules (Python source) so that they train small networks faster than tuned AdamW.\n"
        "Each rule is scored per task as log2 of its AdamW-equivalent speedup (the steps tuned AdamW needs to\n"
        "reach the rule's best validation loss, over the steps the rule needed), clipped to [-3, +2];\n"
        "fitness is the mean over tasks. Failures (invalid code, NaN/divergence, crashes, timeouts) score -3.\n"
        "\n<CONTRACT>\n"
    )


def test_template_dir_overrides(tmp_path):
    (tmp_path / "evolve_system.txt").write_text("custom $contract")
    assert render("evolve_system", tmp_path, contract="c") == "custom c"
    assert render("evolve/evolve_system", tmp_path, contract="c") == "custom c"


def test_strategy_templates_live_in_their_folder_and_load_by_path_or_name():
    names = template_names()
    assert {"rule_contract", "evolve/evolve", "evolve/evolve_system", "evolve/format_diff",
            "evolve/format_full"} <= set(names)
    bare = [n.rsplit("/", 1)[-1] for n in names]
    assert len(bare) == len(set(bare)), "a template file name is used twice; load_template('name') would be ambiguous"
    for name in names:
        assert load_template(name) == load_template(name.rsplit("/", 1)[-1])


def test_every_template_loads_from_the_installed_package():
    """The files are package data of the installed optforge (not read from the checkout)."""
    root = resources.files("optforge.llm").joinpath("prompts")
    for name in template_names():
        text = load_template(name)
        assert text.strip() and root.joinpath(*f"{name}.txt".split("/")).read_text(encoding="utf-8") == text


# syntax the rule policy refuses -> (what the contract calls it, a rule that uses it)
_BODY = "LR = 1e-3\n\ndef init(p, ctx):\n    return {{}}\n\ndef update(p, g, state, ctx):\n{}\n    return -ctx.lr * g\n"
REFUSED = {
    "Match": ("match/case", "    match ctx.role:\n        case _:\n            pass"),
    "Global": ("global", "    global LR"),
    "Nonlocal": ("nonlocal", "    def f():\n        nonlocal g\n        return g"),
    "ClassDef": ("class", "    class A:\n        pass"),
    "Lambda": ("lambda", "    f = lambda x: x"),
    "NamedExpr": (":=", "    (y := g)"),
    "AsyncFunctionDef": ("async", "    async def f():\n        return 1"),
    "Await": ("await", "    async def f():\n        await g"),
    "AsyncFor": ("async", "    async def f():\n        async for x in g:\n            pass"),
    "AsyncWith": ("async", "    async def f():\n        async with g:\n            pass"),
    "Yield": ("yield", "    def f():\n        yield g"),
    "YieldFrom": ("yield", "    def f():\n        yield from g"),
    "Try": ("try/except", "    try:\n        pass\n    except Exception:\n        pass"),
    "TryStar": ("try/except", "    try:\n        pass\n    except* Exception:\n        pass"),
    "Delete": ("del", "    del state['m']"),
    "JoinedStr": ("f-strings", "    s = f'{g}'"),
    "FormattedValue": ("f-strings", "    s = f'{g}'"),
    "attribute assignment": ("attribute assignment", "    p.data = g"),
    "private attribute": ("attributes starting with _", "    g._version"),
}


def _refused_by_the_rule_policy():
    from optforge.sandbox.policy import _NODE_HINTS
    from optforge.sandbox.rule_policy import RULE_POLICY

    return sorted(n for n in _NODE_HINTS if n not in RULE_POLICY.node_types)


def test_contract_lists_every_syntax_the_static_check_refuses():
    from optforge.sandbox.policy import check_source
    from optforge.sandbox.rule_policy import RULE_POLICY

    contract = " ".join(load_template("rule_contract").split())  # line breaks read as spaces
    assert not check_source("import torch\n" + _BODY.format("    pass"), RULE_POLICY)  # the frame itself passes
    refused = _refused_by_the_rule_policy() + ["attribute assignment", "private attribute"]
    missing = [n for n in refused if n not in REFUSED]
    assert not missing, f"the rule policy refuses {missing}: name them in rule_contract.txt and in REFUSED here"
    for node in refused:
        word, body = REFUSED[node]
        source = "import torch\n" + _BODY.format(body)
        ast.parse(source)
        assert check_source(source, RULE_POLICY), f"{node}: the example is not refused; update REFUSED"
        assert word in contract, f"rule_contract.txt does not tell the model that {word!r} ({node}) is refused"


@pytest.mark.slow  # builds a wheel: ~30 s
def test_the_wheel_ships_every_template(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(checkout)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("optforge-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("optforge/llm/prompts/")}
    assert shipped == {f"optforge/llm/prompts/{n}.txt" for n in template_names()}
