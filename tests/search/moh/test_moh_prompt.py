"""The task texts a procedure is handed, against expected files (tests/search/moh/expected/)."""

from pathlib import Path

from optforge.llm.prompts import load_template
from optforge.search.moh.prompt import META_TASK, procedure_task, rule_task
from optforge.search.moh.subtasks import Subtask

EXPECTED = Path(__file__).parent / "expected"


def test_rule_task_names_the_subtask_its_tasks_and_carries_the_rule_contract():
    text = rule_task(Subtask("mlp", ("mlp_a", "mlp_b"), 2.0))
    assert text == (EXPECTED / "rule_task.txt").read_text()
    assert text.split("\n", 1)[0] == "subtask: mlp"
    assert "training the tasks mlp_a, mlp_b" in text
    assert load_template("rule_contract").strip() in text


def test_procedure_task_states_the_contract_subtasks_weights_and_limits():
    text = procedure_task([Subtask("mlp", ("mlp_a",), 2.0), Subtask("cnn", ("c",), 1.0)], cpu_s=60, max_calls=200,
                          llm_calls=20, evals=8)
    assert text == (EXPECTED / "procedure_task.txt").read_text()
    assert text.split("\n", 1)[0] == f"subtask: {META_TASK}"
    assert "over the subtasks mlp, cnn (weights 2, 1)" in text
    assert "60 CPU seconds, 200 calls in all, 20 language-model calls and\n  8 utility calls" in text

