"""`optforge eval` and `optforge baselines`: table, --json keys, invalid rules without a traceback."""

import json
import subprocess
import sys

import pytest

from optforge.cli import main

BAD_RULE = "import os\n\nLR = 1e-3\n\ndef init(p, ctx):\n    return {}\n\ndef update(p, g, state, ctx):\n    return g\n"


@pytest.fixture
def bad_rule(tmp_path):
    path = tmp_path / "bad_rule.py"
    path.write_text(BAD_RULE)
    return str(path)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "optforge", *args], capture_output=True, text=True, timeout=600
    )


def test_invalid_rule_prints_reason_and_exits_nonzero(bad_rule):
    p = _run("eval", bad_rule, "--suite", "smoke")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr + p.stdout
    assert "invalid" in p.stdout
    # the reason (line and import), once
    assert p.stdout.count("import of 'os' is not allowed") == 1 and "import of 'os'" not in p.stderr


def test_invalid_rule_json_still_prints_the_result(bad_rule, capsys):
    code = main(["eval", bad_rule, "--suite", "smoke", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code != 0
    assert out["status"] == "invalid"
    assert out["metrics"]["fitness"] == -3.0
    assert "os" in out["feedback"]


def test_unknown_rule_is_a_user_error(capsys):
    assert main(["eval", "no_such_rule_or_file", "--suite", "smoke"]) == 2
    assert "neither a file nor a seed" in capsys.readouterr().err


@pytest.fixture(scope="module")
def adamw_json():
    """One real `optforge eval adamw --suite smoke --json` run, shared by the output tests."""
    p = _run("eval", "adamw", "--suite", "smoke", "--json")
    return p.returncode, p.stdout


def test_eval_json_keys(adamw_json):
    code, stdout = adamw_json
    out = json.loads(stdout)
    assert code == 0
    assert out["status"] == "ok"
    assert isinstance(out["metrics"]["fitness"], float)
    for task in ("smoke_quad", "smoke_mix"):
        assert isinstance(out["metrics"]["tasks"][task]["score"], float)
    assert out["feedback"]
    assert out["suite_version"] and out["seeds"] == [0]


def test_eval_on_smoke_prints_the_gate_not_a_fitness(adamw_json):
    from optforge.commands.eval import render
    from optforge.types import EvaluationResult

    result = EvaluationResult.from_dict(json.loads(adamw_json[1]))
    text = render(result, "adamw")
    for word in ("smoke is a gate", "smoke_quad: trains", "smoke_mix: trains", "fingerprint", "status ok"):
        assert word in text
    assert "fitness" not in text and "score" not in text.replace("not a score", "")


def test_eval_table_prints_each_score_with_its_interval(adamw_json):
    import dataclasses

    from optforge.commands.eval import render
    from optforge.types import EvaluationResult

    result = EvaluationResult.from_dict(json.loads(adamw_json[1]))
    text = render(dataclasses.replace(result, suite="train_quick"), "adamw")  # the same numbers, as a scored suite
    for word in ("smoke_quad", "best val", "AdamW val", "speedup", "score", "fitness", "wins", "step time", "status ok"):
        assert word in text
    hw = result.metrics["tasks"]["smoke_quad"]["hw"]
    assert hw > 0 and f"± {hw:.2f}" in text


def test_baselines_show(capsys):
    code = main(["baselines", "--suite", "smoke"])
    text = capsys.readouterr().out
    assert code in (0, 1)  # 1 only if the committed baselines are stale (then it says so)
    assert "suite smoke version" in text and "adamw" in text and "fitness" in text


def test_a_wrong_shape_names_the_rule_file_and_the_task(tmp_path, capsys):
    # issue 13: the shape error named neither the file nor the task
    path = tmp_path / "scalar_step.py"
    path.write_text("LR = 1e-3\n\ndef init(p, ctx):\n    return {}\n\ndef update(p, g, state, ctx):\n"
                    "    return -ctx.lr * g.sum()\n")
    assert main(["eval", str(path), "--suite", "smoke"]) != 0
    out = capsys.readouterr().out
    assert "status crashed" in out and "bad_delta" in out
    assert "rule 'scalar_step.py': update must return a tensor with the parameter's shape" in out
    assert "while training task smoke_" in out and "seed 0)" in out
