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
    assert "evolve" in template_names()
