"""OptoPrime sections of a fixed evaluation, each against an expected file, whole and cut at a budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from optforge.evaluators.tasks import get_suite
from optforge.llm.prompts import load_template
from optforge.roles import ROLES
from optforge.rule import Ctx
from optforge.search.opto import prompt
from optforge.search.opto.memory import Memory
from optforge.search.opto.params import SECTIONS, SectionBudgets
from optforge.search.opto.sections import (ROLE_DOCS, TaskInput, feedback_section, fit, others_section,
                                           one_digit, render_sections, round_steps, task_input)
from optforge.search.opto.variables import variables_of
from optforge.types import EvaluationResult, Status

EXPECTED = Path(__file__).with_name("expected")
CUT = {"Code": 300, "Documentation": 400, "Variables": 250, "Inputs": 200, "Others": 500, "Outputs": 200, "Feedback": 150}
"""A budget per section that cuts the fixture's text."""


def sections(result, source, inputs, labels, budgets=SectionBudgets(), mask=()):
    return render_sections(result, variables_of(source, split_constants=True), inputs=inputs, budgets=budgets,
                           labels=labels, mask=mask)


@pytest.mark.parametrize("name", SECTIONS)
def test_each_section_matches_its_expected_file(name, result, source, inputs, labels):
    text = sections(result, source, inputs, labels)[name]
    assert text == (EXPECTED / f"{name.lower()}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", SECTIONS)
def test_each_section_cut_at_its_budget_matches_its_expected_file(name, result, source, inputs, labels):
    budgets = SectionBudgets(**{name.lower(): CUT[name]})
    text = sections(result, source, inputs, labels, budgets)[name]
    assert len(text) <= CUT[name]
    assert text.endswith(f"characters cut: this section's budget is {CUT[name]} characters]")
    assert text == (EXPECTED / f"{name.lower()}_cut.txt").read_text(encoding="utf-8")


def test_failure_feedback_quotes_the_rule_line(crashed, source, inputs, labels):
    s = sections(crashed, source, inputs, labels)
    assert s["Feedback"] == (EXPECTED / "feedback_crashed.txt").read_text(encoding="utf-8")
    assert s["Feedback"].endswith("It points at line 21 of the rule: m.lerp_(g, 1 - BETA1)")
    assert s["Outputs"] == "(float) fitness=-3.000 (the floor: status crashed; no task results)"


def test_no_trace_is_one_line(summary_result, source, inputs, labels):
    assert sections(summary_result, source, inputs, labels)["Others"] == \
        "(no trace: this evaluation was run at summary detail)"
    assert others_section({"tasks": []}).count("\n") == 0


def test_no_task_name_reaches_the_prompt(result, source, inputs, labels):
    text = "\n".join(sections(result, source, inputs, labels).values())
    for name in inputs:
        assert name not in text
    assert "task 1: family cnn" in text and "(task) task 3: score -3.000" in text


def test_masked_sections_are_empty(result, source, inputs, labels):
    s = sections(result, source, inputs, labels, mask=("Others", "#Code"))
    assert s["Others"] == s["Code"] == "" and s["Inputs"] and s["Feedback"]


def test_held_out_results_are_refused(source, inputs, labels):
    held_out = EvaluationResult(Status.OK, stage="holdout", metrics={"fitness": 0.1, "tasks": {}})
    with pytest.raises(ValueError, match="'holdout' result is held out from search"):
        sections(held_out, source, inputs, labels)


def test_documentation_has_every_ctx_field_and_role(result, source, inputs, labels):
    doc = sections(result, source, inputs, labels)["Documentation"]
    assert load_template("rule_contract").strip() in doc
    for f in dataclasses.fields(Ctx):
        if not f.name.startswith("_"):
            assert f"ctx.{f.name}" in doc
    assert "ctx.grad_norm" in doc and tuple(ROLE_DOCS) == ROLES
    for role, text in ROLE_DOCS.items():
        assert f"- {role}: {text}" in doc


@pytest.mark.parametrize("n, text", [(34567, "30,000"), (96, "100"), (1, "1"), (0, "0"), (2_570_000, "3,000,000")])
def test_one_significant_digit(n, text):
    assert one_digit(n) == text


@pytest.mark.parametrize("steps, rounded", [(20, 50), (480, 500), (1000, 1000), (2024, 2000), (2025, 2050)])
def test_steps_rounded_to_50(steps, rounded):
    assert round_steps(steps) == rounded


def test_task_input_counts_parameters_by_role():
    quad = get_suite("smoke").task("smoke_quad")
    assert task_input(quad) == TaskInput("smoke", {"vector": 10}, 20, 8)


def test_fit_keeps_whole_lines_and_cuts_a_long_first_line():
    assert fit("a\nb", 3) == "a\nb"
    text = "x" * 200
    cut = fit(text, 90)
    assert len(cut) <= 90 and cut.startswith("x") and cut.endswith("budget is 90 characters]")


def test_lagging_tasks_worst_first(result, labels):
    text = feedback_section(result, labels, "")
    assert text.index("- task 3:") < text.index("- task 1:") and "task 2" not in text


@pytest.mark.parametrize("scores, said", [
    ((0.4, 0.1, 0.2), "Every task beats tuned AdamW; the weakest is task 2 at +0.100."),
    ((0.4, 0.0, 0.2), "No task lags tuned AdamW, but task 2 only ties it (+0.000)."),  # a tie does not beat it
])
def test_no_lagging_task_is_said_as_it_is(result, labels, scores, said):
    tasks = {name: {**row, "score": s, "flags": []} for (name, row), s in zip(sorted(result.metrics["tasks"].items(),
                                                                                   key=lambda kv: labels[kv[0]]), scores)}
    ok = EvaluationResult(Status.OK, stage="train", metrics={"fitness": sum(scores) / 3, "tasks": tasks})
    assert said in feedback_section(ok, labels, "")


def test_the_prompt_matches_its_expected_file(result, source, inputs, labels):
    memory = Memory(5)
    memory.add({"rule": source.replace("0.999", "0.99")}, "Fitness -2.000 over 3 task(s).")
    msgs = prompt.build_messages(sections(result, source, inputs, labels, mask=("Documentation",)), memory.render(2000))
    text = "".join(f"=== {m['role']}\n{m['content']}" for m in msgs)
    assert text == (EXPECTED / "prompt.txt").read_text(encoding="utf-8")
    user = msgs[1]["content"]
    at = [user.index(f"\n#{s}\n") for s in ["Instruction"] + list(SECTIONS)]
    assert at == sorted(at) and user.index("Below are some variables") > at[-1]
    assert user.endswith("Your response:\n")


def test_a_task_without_a_label_is_refused(result, source, inputs, labels):
    del labels["char_lm"]
    with pytest.raises(ValueError, match="no task label for 1 task"):
        sections(result, source, inputs, labels)


def test_default_labels_are_the_traces_own(result, source, inputs):
    from optforge.evaluators.trace import anonymous_labels

    lab = anonymous_labels(source, sorted(inputs))
    s = render_sections(result, variables_of(source), inputs=inputs, budgets=SectionBudgets())
    assert f"(task) {lab['tiny_mlp']}: score +0.412" in s["Outputs"]
    assert f"(task) {lab['small_cnn']}: family cnn" in s["Inputs"]
    assert f"- {lab['char_lm']}: score -3.000, the floor" in s["Feedback"]


def test_where_a_run_went_non_finite_is_in_the_feedback_even_with_others_masked(result, source, inputs, labels):
    s = sections(result, source, inputs, labels, mask=("Others",))
    assert s["Others"] == ""
    assert ("- task 1: a run at lr multiplier 3.16 diverged; first non-finite value: the update at step 47, "
            "role conv, shape (16, 3, 3, 3)") in s["Feedback"].splitlines()
