"""The POLCA proposer prompt, tested against an expected text, and its answer read by the one reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from optforge.llm.measured import measured, unmeasured, visible
from optforge.llm.parse import parse_response
from optforge.llm.prompts import PromptError
from optforge.search.polca import prompt
from optforge.search.polca.memory import Memory, Rollout

EXPECTED = Path(__file__).with_name("expected_polca_prompt.txt")

SOURCE = "LR = 1e-3\n\n\ndef init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
BATCH = [Rollout("mlp_a", 3, 0.25, "best lr at multiplier 2; the loss plateaus after step 400"),
         Rollout("cnn_b", 7, -3.0, "diverged: NaN at step 12 (hidden_matrix)"),
         Rollout("rnn_c", 1, None, "")]


def candidate():
    c = Memory().new("c1", SOURCE)
    c.add_rollouts([Rollout("mlp_a", 0, 0.5, "")] + BATCH)
    return c


def messages(context="Orthogonalise hidden matrices; keep Adam elsewhere."):
    return prompt.build_messages(source=SOURCE, feedback=prompt.format_feedback(BATCH, candidate()),
                                 context=context, contract="<CONTRACT>")


def render(msgs):
    return "".join(f"=== {m['role']}\n{m['content']}" for m in msgs)


def test_prompt_renders_exactly():
    assert render(messages()) == EXPECTED.read_text(encoding="utf-8")


def test_the_sections_in_optoprime_v2_order():
    user = messages()[1]["content"]
    at = [user.index(s) for s in ("# Instruction\n", "# Variables\n", "# Feedback\n", "# Context\n",
                                  "What are your suggestions on variable rule?")]
    assert at == sorted(at)
    assert '<variable name="rule" type="code">\n<value>\n```python\nLR = 1e-3\n' in user
    assert "<constraint>\n<CONTRACT>\n</constraint>" in user


def test_no_context_section_before_the_first_summary():
    user = messages(context="  ")[1]["content"]
    assert "# Context" not in user
    assert "(hidden_matrix)\n\n## task rnn_c, seed 1: score unknown\n(no feedback)\n\n=====" in user


def test_the_default_constraint_is_the_rule_contract():
    user = prompt.build_messages(source=SOURCE, feedback="f")[1]["content"]
    assert "def update(p, g, state, ctx)" in user and "ctx.grad_norm" in user


def test_feedback_lines():
    text = prompt.format_feedback(BATCH, candidate())
    assert text.splitlines()[:2] == ["Mean score on this minibatch: -1.375 over 2 run(s).",
                                     "Mean score of this rule over all its runs so far: -0.750 over 3 run(s)."]
    assert "## task cnn_b, seed 7: score -3.000 (the floor: a failure, or no progress)" in text
    assert prompt.format_feedback([]) == "(no runs on this minibatch)"
    long = prompt.format_feedback([Rollout("t", 0, 2.0, "x" * 5000)])
    assert "score +2.000 (the ceiling)" in long and len(long) < prompt.FEEDBACK_CHARS + 200


def test_measured_feedback_reaches_the_model_but_not_the_replay_key():
    a = prompt.format_feedback([Rollout("t", 0, 0.1, "slow." + measured(" Each step costs 1.30x AdamW's time."))])
    b = prompt.format_feedback([Rollout("t", 0, 0.1, "slow." + measured(" Each step costs 1.70x AdamW's time."))])
    assert "1.30x" in visible(a) and unmeasured(a) == unmeasured(b)


def test_an_answer_in_the_asked_format_is_read_by_the_one_reader():
    new = SOURCE.replace("-ctx.lr * g", "-ctx.lr * g.sign()")
    answer = ("<reasoning>\ncnn_b diverged: bound the step.\n</reasoning>\n\n"
              f"```python\n{new}```\n")
    parsed = parse_response(answer, SOURCE, finish_reason="stop")
    assert parsed.ok, parsed.reason
    assert parsed.source == new and parsed.answer.reasoning == "cnn_b diverged: bound the step."


def test_templates_are_checked():
    with pytest.raises(PromptError, match="no POLCA prompt template 'nope'"):
        prompt.load("nope")
    with pytest.raises(PromptError, match=r"missing field\(s\) \['summary'\]"):
        prompt.render("context")
