"""OPTO's variables: the code variable, split constants, and the projection of a suggestion."""

from __future__ import annotations

import pytest

from optforge.rule import literal_constants
from optforge.search.opto.variables import ConstantChange, apply_suggestion, cast_constant, variables_of


def test_one_code_variable_unless_constants_are_split(source):
    assert variables_of(source) == {"rule": source}
    split = variables_of(source, split_constants=True)
    # literal numeric constants only, in source order; ONE_MINUS = 1 - BETA2 follows its input
    assert list(split) == ["rule", "LR", "BETA1", "BETA2", "EPS", "WARMUP"]
    assert split["WARMUP"] == 100 and isinstance(split["WARMUP"], int) and split["EPS"] == 1e-8


def test_a_constant_change_rewrites_only_its_literal_and_is_recorded(source):
    applied = apply_suggestion(source, {"BETA2": 0.995}, split_constants=True)
    assert applied.ok and not applied.code_changed
    assert applied.source == source.replace("BETA2 = 0.999\n", "BETA2 = 0.995\n")
    assert applied.constants == (ConstantChange("BETA2", 0.999, 0.995),)
    assert applied.changed == ("BETA2",)
    assert applied.describe() == "constant BETA2 0.999 \u2192 0.995"
    assert applied.record() == {"code_changed": False, "constants": [{"name": "BETA2", "old": 0.999, "new": 0.995}]}


def test_a_commented_constant_keeps_its_comment_and_an_int_stays_an_int(source):
    applied = apply_suggestion(source, {"LR": "3e-4", "WARMUP": 250.0}, split_constants=True)
    assert applied.ok
    expected = source.replace("LR = 1e-3  # base step", "LR = 0.0003  # base step").replace("WARMUP = 100", "WARMUP = 250")
    assert applied.source == expected
    assert literal_constants(applied.source)["WARMUP"] == 250 and isinstance(literal_constants(applied.source)["WARMUP"], int)
    assert applied.describe() == "constant LR 0.001 \u2192 0.0003; constant WARMUP 100 \u2192 250"


def test_the_same_value_is_no_change(source):
    applied = apply_suggestion(source, {"BETA2": "0.999", "rule": source}, split_constants=True)
    assert applied.ok and applied.source == source and applied.changed == () and applied.describe() == "no change"


def test_code_and_constant_together(source):
    code = source.replace("scale = min(1.0, ctx.t / WARMUP)", "scale = 1.0")
    applied = apply_suggestion(source, {"rule": code, "EPS": 1e-6}, split_constants=True)
    assert applied.ok and applied.code_changed and applied.changed == ("rule", "EPS")
    assert applied.source == code.replace("EPS = 1e-8", "EPS = 1e-06")
    assert applied.describe() == "code rewritten; constant EPS 1e-08 \u2192 1e-06"


@pytest.mark.parametrize("suggestion, split, reason", [
    ({"BETA2": 0.99}, False, "suggestion for unknown variable(s) 'BETA2'; the variables are rule"),
    ({"GAMMA": 1.0}, True, "suggestion for unknown variable(s) 'GAMMA'; the variables are rule, LR, BETA1, BETA2, EPS, WARMUP"),
    ({"WARMUP": 2.5}, True, "constant WARMUP is an int (100); 2.5 is not a whole number"),
    ({"BETA2": "slow"}, True, "constant BETA2: 'slow' is not a number (its value is the float 0.999)"),
    ({"BETA2": True}, True, "constant BETA2: True is not a number (its value is the float 0.999)"),
    ({"BETA2": 1.5}, True, "constant BETA2=1.5 must be in [0, 1)"),
    ({"EPS": "nan"}, True, "constant EPS=nan must be a finite number"),
    ({"rule": ""}, False, "the value of variable 'rule' must be the whole rule module as text, got ''"),
    ({"rule": "LR = 1\ndef init(p, ctx):\n    return {}\n"}, False,
     "rule check failed: missing function 'update'; define 'def update(p, g, state, ctx):'"),
])
def test_refusals_say_why(source, suggestion, split, reason):
    applied = apply_suggestion(source, suggestion, split_constants=split)
    assert not applied.ok and applied.source is None and applied.reason == reason


def test_rule_check_refuses_a_policy_violation(source):
    bad = source.replace("import math\n", "import os\n")
    applied = apply_suggestion(source, {"rule": bad})
    assert not applied.ok and applied.reason.startswith("rule check failed: line 3:") and "os" in applied.reason


def test_a_constant_whose_line_the_new_code_dropped(source):
    code = source.replace("EPS = 1e-8\n", "").replace("+ EPS", "+ 1e-8")
    applied = apply_suggestion(source, {"rule": code, "EPS": 1e-6}, split_constants=True)
    assert applied.reason.startswith("constant(s) EPS suggested, but the suggested code has no 'NAME = <number>' line")


@pytest.mark.parametrize("old, value, expected", [
    (100, "250", 250), (100, 3.0, 3), (100, " 7 ", 7), (0.9, 1, 1.0), (0.9, "9e-1", 0.9),
])
def test_casts(old, value, expected):
    got, why = cast_constant("X", old, value)
    assert not why and got == expected and type(got) is type(old)
