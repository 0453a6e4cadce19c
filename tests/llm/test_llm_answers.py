"""The answer table: one row per way a provider or local server shapes an answer, read by
optforge.llm.parse exactly as the evolve strategy reads it.

Rows named `case-*` are the public cases in ../shared/cases (crlf-answer, think-tags,
fence-info-string, truncated-answer) with their right values; the other rows cover the rest of
each kind. Each row: content, finish_reason, provider reasoning field, and what must come out:
("ok", kind, text the rule must contain, text it must not contain) or ("reject", words of the reason).
"""

import json

import pytest

from optforge.llm.parse import extract_rule, parse_response, read_answer

PARENT = '''"""Sign of an exponential moving average of the gradient."""
import torch

LR = 1e-3
BETA = 0.9


def init(p, ctx):
    return {"m": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m = state["m"]
    m.mul_(BETA).add_(g, alpha=1 - BETA)
    return -ctx.lr * m.sign()
'''
TANH = PARENT.replace("m.sign()", "torch.tanh(m / (m.abs().mean() + 1e-12))")
CLAMP = PARENT.replace("m.sign()", "(m / (m.pow(2).mean().sqrt() + 1e-12)).clamp(-1.0, 1.0)")
RAW = PARENT.replace("m.sign()", "m")  # the draft a reasoning model rejects
POLYAK = PARENT.replace("    return -ctx.lr * m.sign()\n", '''    delta = -ctx.lr * m.sign()
    state["avg"] = state.get("avg", p.detach().clone()).lerp_(p + delta, 0.01)
    return delta


def eval_point(p, state, ctx):
    return state["avg"].clone()
''')
SYNTAX_ERROR = TANH.replace("def update(p, g, state, ctx):", "def update(p, g, state, ctx)")


def py(src, info="python"):
    return f"```{info}\n{src}```\n"


def diff(search, replace):
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


BETA95 = diff("BETA = 0.9", "BETA = 0.95")
BETA99 = diff("BETA = 0.9", "BETA = 0.99")
TRUNCATED = ("Polyak averaging on top of the sign step.\n\n```python\n"
             + POLYAK[: POLYAK.index("def eval_point")])

# (id, content, finish_reason, reasoning field, expected)
ROWS = [
    # --- the public cases -------------------------------------------------------------------------
    ("case-crlf-full", ("A smoother step.\n\n" + py(TANH)).replace("\n", "\r\n"), "stop", None,
     ("ok", "full", "torch.tanh", "\r")),
    ("case-crlf-diff", ("Use a longer memory:\n\n" + BETA95).replace("\n", "\r\n"), "stop", None,
     ("ok", "diff", "BETA = 0.95", "\r")),
    ("case-think-draft-diff", f"<think>\nA first idea:\n\n{BETA99}\nToo slow. 0.95 is better.\n</think>\n"
                              f"Increase the momentum moderately:\n\n{BETA95}", "stop", None,
     ("ok", "diff", "BETA = 0.95", "0.99")),
    ("case-think-draft-only", f"<think>\nMaybe drop the sign:\n\n{py(RAW)}\nNo: that diverged.\n</think>\n"
                              "I could not find a change I am confident improves this rule.", "stop", None,
     ("reject", "no code block", "inside the <think> reasoning")),
    ("case-fence-info-string", "Here is the revised rule.\n\n" + py(CLAMP, 'python title="rule.py"')
     + "\nUsage stays the same:\n\n" + py("opt.step()\n"), "stop", None, ("ok", "full", "clamp", None)),
    ("case-truncated", TRUNCATED, "length", None, ("reject", "truncated", "llm.max_tokens=160")),

    # --- line endings and encodings ---------------------------------------------------------------
    ("cr-only-line-endings", ("Old Mac endings:\n" + py(TANH)).replace("\n", "\r"), "stop", None,
     ("ok", "full", "torch.tanh", "\r")),
    ("mixed-line-endings-diff", "Change:\r\n" + BETA95.replace("=======\n", "=======\r\n"), "stop", None,
     ("ok", "diff", "BETA = 0.95", None)),
    ("byte-order-mark", "\ufeff" + py(TANH), "stop", None, ("ok", "full", "torch.tanh", "\ufeff")),
    ("utf8-bytes-with-bom", ("\ufeff" + py(TANH)).encode("utf-8-sig"), "stop", None, ("ok", "full", "tanh", "\ufeff")),
    ("no-break-spaces-in-code", py(TANH.replace("    m = state", "\u00a0\u00a0\u00a0\u00a0m = state")), "stop",
     None, ("ok", "full", "torch.tanh", "\u00a0")),

    # --- reasoning: DeepSeek-R1, QwQ, Qwen3, vLLM, llama.cpp, gpt-oss ------------------------------
    ("deepseek-r1-think-then-code", f"<think>\nThe sign loses magnitude.\n</think>\n\n{py(TANH)}", "stop", None,
     ("ok", "full", "torch.tanh", None)),
    ("deepseek-r1-draft-rewrite-then-final", f"<think>\n{py(RAW)}\nNo, keep it bounded.\n</think>\n{py(TANH)}",
     "stop", None, ("ok", "full", "torch.tanh", "return -ctx.lr * m\n")),
    ("qwen3-empty-think", f"<think>\n\n</think>\n\n{py(TANH)}", "stop", None, ("ok", "full", "torch.tanh", None)),
    ("prompted-thinking-tag", f"<thinking>draft:\n{BETA99}</thinking>\n{BETA95}", "stop", None,
     ("ok", "diff", "BETA = 0.95", "0.99")),
    ("reasoning-tag-with-attributes", f'<Think type="plan">\n{py(RAW)}</Think>\n{py(TANH)}', "stop", None,
     ("ok", "full", "torch.tanh", None)),
    ("vllm-template-opened-think", f"The prompt template opened the block.\n{py(RAW)}\n</think>\n\n{py(TANH)}",
     "stop", None, ("ok", "full", "torch.tanh", "return -ctx.lr * m\n")),
    ("vllm-reasoning-parser-field", py(CLAMP), "stop", f"I considered:\n{py(RAW)}", ("ok", "full", "clamp", None)),
    ("llama-cpp-reasoning-format-only-reasoning", "", "stop", f"draft:\n{py(TANH)}",
     ("reject", "empty", "after </think>")),
    ("think-unclosed-model-stopped", f"<think>\nLet me think about {py(TANH)}", "stop", None,
     ("reject", "unclosed <think>")),
    ("think-unclosed-truncated", f"<think>\nLet me think about {py(TANH)}", "length", None,
     ("reject", "truncated", "inside its reasoning")),
    ("gpt-oss-harmony-channels", f"<|channel|>analysis<|message|>Draft:\n{py(RAW)}<|end|><|start|>assistant"
                                 f"<|channel|>final<|message|>{py(TANH)}<|return|>", "stop", None,
     ("ok", "full", "torch.tanh", "<|")),

    # --- fences: info strings, tildes, indentation, no fence, unclosed ----------------------------
    ("fence-py", py(TANH, "py"), "stop", None, ("ok", "full", "torch.tanh", None)),
    ("fence-python3-trailing-space", py(TANH, "python3 "), "stop", None, ("ok", "full", "torch.tanh", None)),
    ("fence-no-language", py(TANH, ""), "stop", None, ("ok", "full", "torch.tanh", None)),
    ("fence-pandoc-attributes", py(TANH, "{.python .numberLines}"), "stop", None, ("ok", "full", "torch.tanh", None)),
    ("fence-colon-filename", py(TANH, "python:rule.py"), "stop", None, ("ok", "full", "torch.tanh", None)),
    ("fence-tildes", f"~~~python\n{TANH}~~~\n", "stop", None, ("ok", "full", "torch.tanh", None)),
    ("fence-four-backticks-around-triple", "````python\n" + TANH.replace(
        '"""Sign', '"""Use it as ```opt.step()```. Sign') + "````\n", "stop", None, ("ok", "full", "opt.step()", None)),
    ("fence-indented-in-list", "1. The rule:\n\n   ```python\n" + "".join(
        f"   {ln}\n" if ln else "\n" for ln in TANH.splitlines()) + "   ```\n", "stop", None,
     ("ok", "full", "torch.tanh", "\n   def")),
    ("fence-unclosed-model-stopped", "```python\n" + TANH, "stop", None, ("ok", "full", "torch.tanh", None)),
    ("ollama-no-fence-bare-code", TANH, "stop", None, ("ok", "full", "torch.tanh", None)),
    ("llama-cpp-prose-then-bare-code", "Here is the rule:\n" + TANH, "stop", None, ("ok", "full", "torch.tanh", None)),

    # --- code wrapped in JSON ---------------------------------------------------------------------
    ("json-bare-object", json.dumps({"explanation": "bounded step", "code": TANH}), "stop", None,
     ("ok", "full", "torch.tanh", None)),
    ("json-fenced", "```json\n" + json.dumps({"rule": {"source": TANH}}, indent=2) + "\n```\n", "stop", None,
     ("ok", "full", "torch.tanh", None)),
    ("json-holding-a-fence", json.dumps({"code": py(TANH)}), "stop", None, ("ok", "full", "torch.tanh", "```")),
    ("json-with-crlf-code", json.dumps({"code": TANH.replace("\n", "\r\n")}), "stop", None,
     ("ok", "full", "torch.tanh", "\r")),

    # --- several blocks: the last complete one that passes the check ------------------------------
    ("parent-quoted-then-new", "Before:\n" + py(PARENT) + "After:\n" + py(TANH), "stop", None,
     ("ok", "full", "torch.tanh", None)),
    ("new-then-usage-snippet", py(TANH) + "Use it:\n" + py("opt = Optimizer(model.parameters())\n"), "stop",
     None, ("ok", "full", "torch.tanh", None)),
    ("two-rules-last-wins", py(CLAMP) + "Or, simpler:\n" + py(TANH), "stop", None, ("ok", "full", "torch.tanh", "clamp")),
    ("last-fails-check-earlier-passes", py(TANH) + "Variant:\n" + py(SYNTAX_ERROR), "stop", None,
     ("ok", "full", "torch.tanh", None)),
    ("unknown-finish-prefers-closed-block", py(TANH) + "Variant:\n```python\n" + CLAMP, "", None,
     ("ok", "full", "torch.tanh", "clamp")),
    ("all-blocks-fail-names-the-last", py(SYNTAX_ERROR) + py(SYNTAX_ERROR.replace("tanh", "atan")), "stop", None,
     ("reject", "none of the 2 code blocks", "syntax error")),

    # --- diffs -------------------------------------------------------------------------------------
    ("diff-in-python-fence", py(BETA95.rstrip("\n") + "\n"), "stop", None, ("ok", "diff", "BETA = 0.95", None)),
    ("diff-two-blocks", BETA95 + diff("    return -ctx.lr * m.sign()", "    return -ctx.lr * torch.tanh(m)"),
     "stop", None, ("ok", "diff", "torch.tanh(m)", "0.9\n")),
    ("diff-missing-divider", "<<<<<<< SEARCH\nBETA = 0.9\nBETA = 0.95\n>>>>>>> REPLACE\n", "stop", None,
     ("reject", "malformed diff", "1 '<<<<<<< SEARCH', 0 '=======' and 1 '>>>>>>> REPLACE'")),
    ("diff-one-good-one-broken", BETA95 + "<<<<<<< SEARCH\nLR = 1e-3\n=======\nLR = 3e-3\n", "stop", None,
     ("reject", "malformed diff", "but 1 complete block")),
    ("diff-search-not-in-parent", diff("GAMMA = 1", "GAMMA = 2"), "stop", None,
     ("reject", "failed diff", "not in the parent")),
    ("unified-diff", "```diff\n--- a/rule.py\n+++ b/rule.py\n@@ -4 +4 @@\n-BETA = 0.9\n+BETA = 0.95\n```\n", "stop",
     None, ("reject", "unified diff", "SEARCH/REPLACE")),

    # --- finish reasons as providers spell them ----------------------------------------------------
    ("anthropic-end-turn", "I'll bound the step.\n\n" + py(TANH), "end_turn", None, ("ok", "full", "tanh", None)),
    ("anthropic-max-tokens", "I'll bound the step.\n\n" + py(TANH), "max_tokens", None,
     ("reject", "truncated", "llm.max_tokens")),
    ("gemini-MAX_TOKENS", py(TANH), "MAX_TOKENS", None, ("reject", "truncated", "finish_reason 'length'")),
    ("openai-length-complete-looking-code", py(TANH), "length", None, ("reject", "truncated", "raise llm.max_tokens")),
    ("content-filter", py(TANH), "content_filter", None, ("reject", "content filter")),

    # --- nothing usable, each with its own reason -------------------------------------------------
    ("empty", "", "stop", None, ("reject", "empty completion")),
    ("prose-only", "You should try Adam with a lower learning rate.", "stop", None,
     ("reject", "no code block defining update()")),
    ("python-block-without-update", py("def step(p):\n    return p\n"), "stop", None,
     ("reject", "do not define update(p, g, state, ctx)")),
    ("unchanged", py(PARENT), "stop", None, ("reject", "no change")),
]


@pytest.mark.parametrize("row_id,content,finish,reasoning,expected", ROWS, ids=[r[0] for r in ROWS])
def test_answer_table(row_id, content, finish, reasoning, expected):
    got = parse_response(content, PARENT, finish_reason=finish, reasoning=reasoning, max_tokens=160)
    if expected[0] == "ok":
        _, kind, must, must_not = expected
        assert got.ok, got.reason
        assert got.kind == kind
        assert must in got.source
        if must_not is not None:
            assert must_not not in got.source
        assert "\r" not in got.source and got.source.endswith("\n")
    else:
        assert not got.ok
        for words in expected[1:]:
            assert words in got.reason


def test_rows_cover_every_kind_of_the_issue():
    ids = {r[0] for r in ROWS}
    assert {"case-crlf-full", "case-crlf-diff", "case-think-draft-diff", "case-think-draft-only",
            "case-fence-info-string", "case-truncated"} <= ids
    assert len(ids) == len(ROWS)


def test_the_reader_returns_text_finish_reason_and_reasoning():
    a = read_answer(b"\xef\xbb\xbf<think>\r\nplan\r\n</think>\r\nanswer\r\n", "MAX_TOKENS", "field reasoning")
    assert a.text == "answer\n" and a.finish_reason == "length" and a.truncated
    assert a.reasoning == "field reasoning\n\nplan"
    assert read_answer("x", None).finish_reason == "" and not read_answer("x", "stop").truncated
    unclosed = read_answer("before <think> still thinking")
    assert unclosed.unclosed_reasoning and unclosed.text == "before\n" and unclosed.reasoning == "still thinking"


def test_the_same_answer_parses_the_same_whatever_its_line_endings():
    for content in (py(TANH), "Change:\n" + BETA95, f"<think>\n{BETA99}</think>\n{BETA95}"):
        results = {parse_response(content.replace("\n", eol), PARENT, finish_reason="stop").source
                   for eol in ("\n", "\r\n", "\r")}
        assert len(results) == 1 and None not in results


def test_truncation_without_a_known_limit_still_names_the_setting():
    got = extract_rule(read_answer(py(TANH), "length"), PARENT)
    assert "llm.max_tokens" in got.reason and "=" not in got.reason.split("llm.max_tokens")[1][:1]
