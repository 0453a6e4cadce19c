"""The OptoPrime answer table: each answer gives the right update, no change, or an accurate `invalid`."""

from __future__ import annotations

import json

import pytest

from optforge.search.opto.suggestion import INVALID, NO_CHANGE, UPDATE, parse_suggestion


def answer(suggestion, reasoning="BETA2 is too slow for short runs."):
    return json.dumps({"reasoning": reasoning, "answer": "", "suggestion": suggestion}, indent=1)


def new_code(source):
    return source.replace("scale = min(1.0, ctx.t / WARMUP)", "scale = min(1.0, 2 * ctx.t / WARMUP)")


def test_json_unfenced(source):
    out = parse_suggestion(answer({"BETA2": 0.995}), source, split_constants=True, finish_reason="stop")
    assert out.kind == UPDATE and out.values == {"BETA2": 0.995}
    assert out.source == source.replace("BETA2 = 0.999", "BETA2 = 0.995")
    assert out.applied.describe() == "constant BETA2 0.999 \u2192 0.995"


def test_json_fenced_after_prose_with_the_code_in_its_own_fence(source):
    code = new_code(source)
    text = ("Here is my suggestion.\n```json\n" + answer({"rule": f"```python\n{code}```"}) + "\n```\nDone.")
    out = parse_suggestion(text, source, finish_reason="stop")
    assert out.kind == UPDATE and out.source == code and out.applied.changed == ("rule",)


def test_json_with_thinking_and_braces_in_prose(source):
    text = "<think>maybe {\"suggestion\": {\"BETA1\": 0.5}}</think>\nMy answer: " + answer({"BETA1": 0.8}) + "\nThanks."
    out = parse_suggestion(text, source, split_constants=True)
    assert out.kind == UPDATE and out.values == {"BETA1": 0.8}  # drafts in the reasoning are not the answer


def test_json_with_raw_line_breaks_in_the_code_string(source):
    code = new_code(source)
    text = '{"reasoning": "warm up faster",\n "suggestion": {"rule": "' + code.replace('"', '\\"') + '"}}'
    assert "\n    m, v = state" in text  # the code's line breaks are raw, which strict JSON refuses
    out = parse_suggestion(text, source, finish_reason="stop")
    assert out.kind == UPDATE and out.source == code


def test_xml_optoprime_v2_form(source):
    code = new_code(source)
    text = (f"<reasoning>warm up faster</reasoning>\n<variable>\n<name>rule</name>\n<value>\n{code}</value>\n</variable>\n"
            "<variable><name>EPS</name><value>1e-6</value></variable>")
    out = parse_suggestion(text, source, split_constants=True, finish_reason="stop")
    assert out.kind == UPDATE and out.source == code.replace("EPS = 1e-8", "EPS = 1e-06")
    assert out.applied.describe() == "code rewritten; constant EPS 1e-08 \u2192 1e-06"


@pytest.mark.parametrize("text", ["TERMINATE", "The rule is already good.\n\nTERMINATE\n", answer({})])
def test_terminate_and_an_empty_suggestion_are_no_change(source, text):
    out = parse_suggestion(text, source, split_constants=True, finish_reason="stop")
    assert out.kind == NO_CHANGE and out.source is None and not out.reason


def test_a_suggestion_equal_to_the_current_values_is_no_change(source):
    out = parse_suggestion(answer({"BETA2": 0.999}), source, split_constants=True)
    assert out.kind == NO_CHANGE and out.applied.changed == ()


def test_a_suggestion_wins_over_terminate_in_its_reasoning(source):
    out = parse_suggestion(answer({"BETA2": 0.99}, reasoning="No reason to TERMINATE yet."), source, split_constants=True)
    assert out.kind == UPDATE


@pytest.mark.parametrize("text, split, finish, reason", [
    (answer({"GAMMA": 0.5}), True, "stop",
     "suggestion for unknown variable(s) 'GAMMA'; the variables are rule, LR, BETA1, BETA2, EPS, WARMUP"),
    (answer({"BETA2": 0.99}), False, "stop", "suggestion for unknown variable(s) 'BETA2'; the variables are rule"),
    (answer({"WARMUP": "a hundred"}), True, "stop",
     "constant WARMUP: 'a hundred' is not a number (its value is the int 100)"),
    (answer({"WARMUP": 12.5}), True, "stop", "constant WARMUP is an int (100); 12.5 is not a whole number"),
    ('{"reasoning": "cut short", "suggestion": {"BETA2": 0.9', True, "length",
     "truncated answer: the model hit the output limit (llm.max_tokens=4096, finish_reason 'length') before it "
     "finished, so its suggestion may be incomplete; give a shorter answer (less reasoning), or raise llm.max_tokens"),
    (answer({"BETA2": 0.99}), True, "max_tokens",  # a complete-looking answer cut at the limit is still refused
     "truncated answer: the model hit the output limit (llm.max_tokens=4096, finish_reason 'length') before it "
     "finished, so its suggestion may be incomplete; give a shorter answer (less reasoning), or raise llm.max_tokens"),
    ("I would lower BETA2.", True, "stop",
     'no suggestion in the answer: give JSON {"reasoning": ..., "suggestion": {"<variable>": <value>, ...}}, '
     "or TERMINATE for no change"),
])
def test_invalid_answers_say_why(source, text, split, finish, reason):
    out = parse_suggestion(text, source, split_constants=split, finish_reason=finish, max_tokens=4096)
    assert out.kind == INVALID and out.source is None and out.reason == reason


def test_code_that_fails_the_rule_check_is_invalid(source):
    out = parse_suggestion(answer({"rule": source.replace("m, v = state", "del state\n    m, v = state")}), source)
    assert out.kind == INVALID and out.reason.startswith("rule check failed: line 20: 'Del' syntax is not allowed")
