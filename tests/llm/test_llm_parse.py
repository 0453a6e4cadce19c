from optforge.llm.diffs import apply_diffs, diff_blocks
from optforge.llm.parse import code_blocks, parse_response
from optforge.rule import check_rule

PARENT = '''LR = 1e-3
BETA = 0.9


def init(p, ctx):
    return {"m": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m = state["m"]
    m.mul_(BETA).add_(g, alpha=1 - BETA)
    return -ctx.lr * m
'''
PARENT = "import torch\n\n" + PARENT


def test_full_rewrite_in_code_block():
    new = PARENT.replace("BETA = 0.9", "BETA = 0.95")
    p = parse_response(f"Here it is:\n```python\n{new}```\nDone.", PARENT)
    assert p.ok and p.kind == "full" and p.source.strip() == new.strip()


def test_last_block_defining_update_wins():
    new = PARENT.replace("BETA = 0.9", "BETA = 0.8")
    text = f"```python\nx = 1\n```\n```python\n{PARENT}```\n```python\n{new}```"
    assert parse_response(text, PARENT).source.strip() == new.strip()
    assert len(code_blocks(text)) == 3


def test_search_replace_diff_applied_to_parent():
    text = "<<<<<<< SEARCH\nBETA = 0.9\n=======\nBETA = 0.99\n>>>>>>> REPLACE\n"
    p = parse_response(text, PARENT)
    assert p.ok and p.kind == "diff"
    assert "BETA = 0.99" in p.source and "BETA = 0.9\n" not in p.source


def test_several_diffs_and_indentation_tolerant_match():
    text = (
        "<<<<<<< SEARCH\n  m = state['m']\n=======\nignored\n>>>>>>> REPLACE\n"
    )
    assert diff_blocks(text)
    # whitespace-insensitive line match, re-indented to the parent's indentation
    out = apply_diffs(PARENT, [("m = state[\"m\"]\n    m.mul_(BETA).add_(g, alpha=1 - BETA)\n",
                                "m = state[\"m\"]\nm.mul_(BETA).add_(g)\n")])
    assert "    m.mul_(BETA).add_(g)\n" in out and not check_rule(out)


def test_failed_diff_is_a_reason_not_an_exception():
    p = parse_response("<<<<<<< SEARCH\nGAMMA = 1\n=======\nGAMMA = 2\n>>>>>>> REPLACE", PARENT)
    assert not p.ok and p.source is None and p.reason.startswith("failed diff: diff block 1")


def test_syntax_error_reports_the_rule_check():
    bad = PARENT.replace("def update(p, g, state, ctx):", "def update(p, g, state, ctx)")
    p = parse_response(f"```python\n{bad}```", PARENT)
    assert not p.ok and p.source == bad and "syntax error" in p.reason


def test_forbidden_import_reported():
    bad = "import os\n" + PARENT
    p = parse_response(f"```python\n{bad}```", PARENT)
    assert "import of 'os' is not allowed" in p.reason


def test_empty_garbage_and_unchanged():
    assert parse_response("", PARENT).reason.startswith("empty completion")
    assert "no code block" in parse_response("I think you should use Adam.", PARENT).reason
    assert parse_response(f"```python\n{PARENT}```", PARENT).reason.startswith("no change")
    assert "malformed diff" in parse_response("<<<<<<< SEARCH\nBETA\n>>>>>>> REPLACE", PARENT).reason


def test_unterminated_code_block_is_still_read():
    new = PARENT.replace("BETA = 0.9", "BETA = 0.7")
    assert parse_response(f"```python\n{new}", PARENT).ok
