"""`optforge run | ls | show` end to end with the real evaluator and sandbox on the smoke suite."""

from __future__ import annotations

import json

import pytest
import yaml

from optforge import seeds
from optforge.cli import main


def _write(tmp_path, data):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_config_fails_fast_naming_the_key(tmp_path, capsys):
    cfg = _write(tmp_path, {"strategy": {"name": "seeds"}, "budget": {"max_evaluatons": 3}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "budget.max_evaluatons" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was created
    cfg = _write(tmp_path, {"strategy": {"name": "seeds", "seedz": []}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "strategy.seedz" in capsys.readouterr().err
    assert main(["run", str(_write(tmp_path, {})), "--set", "slots=two"]) == 2
    assert "slots='two'" in capsys.readouterr().err


def test_a_weight_decay_stage_without_adamw_weight_decay_runs_fails_before_running(tmp_path, capsys):
    # the smoke baselines carry no weight-decay runs; tuning wd for the candidate alone would be unfair
    cfg = _write(tmp_path, {"strategy": {"name": "seeds", "seeds": ["adamw"]}, "suite": "smoke",
                            "stages": ["smoke", "train", {"name": "train_fresh_seeds", "top_k": 1},
                                       {"name": "heldout", "suite": "smoke"}]})
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "stage 'heldout'" in err and "--add-wd" in err and "tune_wd: false" in err


def test_a_misspelled_suite_writes_nothing_and_suggests_no_failing_command(tmp_path, capsys):
    cfg = _write(tmp_path, {"strategy": {"name": "seeds", "seeds": ["adamw"]}, "suite": "train_quik"})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'train_quik'" in err and "train_quick" in err
    assert "optforge baselines" not in err  # its advice would itself fail with "unknown suite"
    assert not out.exists()
    assert main(["run", str(cfg), "--set", "suite=train_quick", "--set", "stages=[smoke, train, train_fresh_seeds, {name: heldout, suite: nope}]",
                 "--out", str(out)]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err and not out.exists()


def test_resume_refuses_a_directory_without_config_and_its_advice_works(ray_local, tmp_path, capsys):
    from optforge.store import Store

    out = tmp_path / "never-started"
    Store(out).close()  # what a start that died before the engine ran leaves
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds no stored config" in err
    advice = err.split("start it again with: ", 1)[1].split()
    assert advice[:2] == ["optforge", "run"] and advice[2] == "CONFIG.yaml"
    cfg = _write(tmp_path, {"strategy": {"name": "seeds", "seeds": ["adamw"]}, "suite": "smoke", "stages": ["smoke"]})
    assert main([advice[1], str(cfg), *advice[3:], "--quiet"]) == 0
    assert Store.open(out).meta("status") == "finished"
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    advice = capsys.readouterr().err.split("resume it with: ", 1)[1].split(" (")[0].split()
    assert main(advice[1:]) == 0  # `optforge run --resume DIR`: already finished, nothing to do


def test_a_crashed_warm_start_fails_the_run_loudly_and_show_prints_why(ray_local, tmp_path, capsys):
    cfg = _write(tmp_path, {"strategy": {"name": "fake_eval:broken_start"}, "suite": "smoke", "stages": ["smoke"],
                            "slots": 1, "deterministic": True})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "the run stopped: warm start c0 (broken) ended crashed at smoke" in err and "KeyError" in err
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "status failed" in text and "the run stopped: warm start c0" in text
    assert "failures (1 evaluations, by reason):" in text and "crashed at smoke x1 (c0):" in text and "KeyError" in text
    assert main(["show", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "failed" and shown["proposed"] <= 2
    assert [f["candidates"] for f in shown["failures"]] == [["c0"]]


def _seeds_run(tmp_path, names, stages):
    cfg = _write(tmp_path, {"strategy": {"name": "seeds", "seeds": names}, "suite": "smoke", "stages": stages,
                            "slots": 2, "deterministic": True, "sandbox": {"timeout_s": 120}})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return out


def test_seeds_run_on_smoke_is_stored_ranked_and_shown(ray_local, tmp_path, capsys):
    names = ["adamw", "sgd"]
    out = _seeds_run(tmp_path, names, ["train"])
    printed = capsys.readouterr().out
    assert "seed-adamw" in printed and "stopped: strategy done" in printed
    assert main(["show", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "finished" and shown["proposed"] == 2
    rows = shown["leaderboard"]
    assert sorted(r["id"] for r in rows) == [f"seed-{n}" for n in sorted(names)]
    assert all(r["status"] == "ok" for r in rows)
    fits = [r["fitness"] for r in rows]
    assert fits == sorted(fits, reverse=True) and len(set(fits)) > 1
    assert shown["best"]["source"] == seeds.source(rows[0]["id"][len("seed-"):])
    assert shown["suite_versions"]["smoke"]
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "best candidate seed-" in text and "def update" in text
    assert main(["ls", str(tmp_path)]) == 0
    assert "finished" in capsys.readouterr().out
    assert main(["run", "--resume", str(out)]) == 0
    assert "already finished" in capsys.readouterr().out


@pytest.mark.slow
def test_all_seeds_on_smoke(ray_local, tmp_path, capsys):
    out = _seeds_run(tmp_path, [], ["smoke", "train"])
    capsys.readouterr()
    assert main(["show", str(out), "--json", "--top", "100"]) == 0
    rows = json.loads(capsys.readouterr().out)["leaderboard"]
    assert sorted(r["id"] for r in rows) == sorted(f"seed-{n}" for n in seeds.names())


def test_resume_refuses_other_versions_unless_forced(tmp_path, capsys):
    from optforge.config import config_from_dict
    from optforge.store import Store, versions

    run_dir = tmp_path / "old"
    st = Store(run_dir)
    st.set_meta(config=config_from_dict({"suite": "smoke", "stages": ["smoke"]}).to_dict(),
                versions={**versions(), "torch": "1.0.0"}, suite_versions={"smoke": "0-old"}, status="interrupted")
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "torch 1.0.0 ->" in err and "suite 'smoke' 0-old ->" in err and "--force" in err
    assert "scored with score_version 1" in err  # recorded before score versions: the old score
    assert main(["run", "--resume", str(tmp_path / "nothing-here")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_a_diverged_replay_fails_the_run_in_one_line_and_stores_why(ray_local, tmp_path, capsys):
    from optforge.store import Store

    recorded = tmp_path / "recorded"
    Store(recorded).close()  # a recording without calls: the first prompt already diverges
    cfg = _write(tmp_path, {"strategy": {"name": "fake_eval:asks_llm"}, "suite": "smoke", "stages": ["smoke"],
                            "slots": 1, "deterministic": True,
                            "llm": {"model": "openai/scripted", "replay": str(recorded), "api_key_env": None,
                                    "api_base": "http://127.0.0.1:9/v1", "input_cost_per_token": 1e-6,
                                    "output_cost_per_token": 2e-6}})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("optforge run:")]
    assert "the run failed: ReplayError:" in line and "never recorded" in line and "without llm.replay" in line
    with Store.open(out) as st:
        assert st.meta("status") == "failed" and st.meta("stop_reason") == "error"
        assert "ReplayError" in st.meta("failure") and "diverged" in st.meta("failure")
    assert main(["show", str(out)]) == 0
    assert "status failed (error)" in capsys.readouterr().out


def test_any_error_that_ends_a_run_leaves_it_failed_not_running(ray_local, tmp_path, capsys):
    from optforge.store import Store

    cfg = _write(tmp_path, {"strategy": {"name": "fake_eval:raises_in_observe"}, "suite": "smoke", "stages": ["smoke"],
                            "slots": 1, "deterministic": True})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("optforge run:")]
    assert "the run failed: ValueError: observe broke on c0" in line and f"optforge run --resume {out}" in line
    with Store.open(out) as st:
        assert st.meta("status") == "failed" and st.meta("failure") == "ValueError: observe broke on c0"
        assert [e["error"] for e in st.events("failed")] == ["ValueError"]


def test_resume_with_a_larger_budget_continues_and_refuses_what_cannot_apply(ray_local, tmp_path, capsys):
    """docs/resume.md's example: a run stopped by
    budget.max_candidates continues when resumed with a larger one; what cannot apply is refused."""
    from optforge.store import Store

    cfg = _write(tmp_path, {"strategy": {"name": "seeds", "seeds": ["sgd", "adam", "adamw"]}, "suite": "smoke",
                            "stages": ["smoke"], "slots": 1, "deterministic": True, "budget": {"max_candidates": 1}})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--set", "budget.max_candidates=2", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "restored: 1 candidates (1 observed), 1 evaluations; strategy state of 'seeds' as saved after 1 proposals" \
        in printed.err
    assert "budget: candidates 1 used, 1 left of 2" in printed.err
    assert "it continues with the larger budget" in printed.err and "stopped: max_candidates" in printed.out
    with Store.open(out) as st:
        assert [c.id for c in st.candidates()] == ["seed-sgd", "seed-adam"]
        assert st.config()["budget"]["max_candidates"] == 2 and st.meta("status") == "finished"
        events = len(st.events())
    refusals = {  # each: exit 2, the reason, and nothing written
        ("--set", "budget.max_candidates=2"): "already finished",
        ("--set", "budget.max_candidates=1"): "budget.max_candidates (2 used of 1); raise it above what was used",
        ("--set", "budget.max_seconds=600"): "budget.max_candidates (2 used of 2)",
        ("--set", "strategy.seeds=[adamw]", "--set", "budget.max_candidates=3"):
            'refused: strategy.seeds: ["sgd", "adam", "adamw"] -> ["adamw"]',
        ("--set", "suite=train_quick"): "refused: suite:",
    }
    for extra, reason in refusals.items():
        code = main(["run", "--resume", str(out), *extra, "--quiet"])
        text = capsys.readouterr()
        assert reason in text.out + text.err
        assert code == (0 if reason == "already finished" else 2) and "restored:" not in text.err
    with Store.open(out) as st:
        assert len(st.events()) == events and st.config()["budget"]["max_candidates"] == 2
    assert main(["run", "--resume", str(out), "--set", "budget.max_candidates=3", "--quiet"]) == 0
    assert main(["run", "--resume", str(out), "--set", "budget.max_candidates=9", "--quiet"]) == 2
    assert "strategy 'seeds' is done in its stored state" in capsys.readouterr().err  # all 3 seeds proposed


def test_show_explains_ok_star_and_counts_llm_http_requests(tmp_path, capsys):
    from optforge.config import config_from_dict
    from optforge.store import Store, versions
    from optforge.types import Candidate, EvaluationResult, Status

    st = Store(tmp_path / "run")
    st.set_meta(config=config_from_dict({"suite": "smoke", "stages": ["smoke", "train"]}).to_dict(),
                versions=versions(), status="interrupted")
    done, partial = Candidate.new("LR = 1\n", id="done"), Candidate.new("LR = 2\n", id="partial")
    st.add_proposals([done, partial], None)
    metrics = {"fitness": 0.5, "robust": 0.4, "tasks": {}}
    for cand, stages in ((done, ("smoke", "train")), (partial, ("smoke",))):
        for stage in stages:
            st.add_evaluation(cand, EvaluationResult(Status.OK, stage=stage, suite="smoke", suite_version="1",
                                                     metrics=metrics), seeds_spec="selection")
    st.record_llm_call({"model": "m", "prompt": "p", "response": "r", "dollars": 0.01, "attempts": 3, "call_id": "a"})
    st.record_llm_call({"model": "m", "prompt": "p", "response": "r", "dollars": 0.01, "attempts": 1, "call_id": "b"})
    st.close()
    assert main(["show", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "LLM: 4 HTTP requests (retries included), $0.0200" in text and " calls" not in text
    assert "partial" in text and "ok*" in text
    assert "ok*: ok at smoke, not evaluated at train (the run stopped before); ranked below every candidate with a " \
           "train fitness" in text
    assert main(["show", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["llm"] == {"requests": 4, "dollars": 0.02}


def test_version_is_printed():
    import subprocess
    import sys

    import optforge

    proc = subprocess.run([sys.executable, "-m", "optforge", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"optforge {optforge.__version__}"


def test_show_prints_intervals_the_smoke_gate_the_score_version_and_task_detection(tmp_path, capsys):
    from optforge.config import config_from_dict
    from optforge.evaluators.scoring import SCORE_VERSION
    from optforge.store import Store, versions
    from optforge.types import Candidate, EvaluationResult, Status

    st = Store(tmp_path / "run")
    st.set_meta(config=config_from_dict({"suite": "smoke", "stages": ["smoke", "train"]}).to_dict(),
                versions={**versions(), "score_version": SCORE_VERSION}, status="finished")
    # the best rule recognises its task by the run length: flagged, with its line
    scored = Candidate.new("LR = 1e-3\n\ndef init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n"
                           "    if ctx.T == 250:\n        return -ctx.lr * 2 * g\n    return -ctx.lr * g\n", id="scored")
    gated = Candidate.new("LR = 2\n", id="gated")
    st.add_proposals([scored, gated], None)
    tasks = {"logreg": {"score": 0.31, "hw": 0.12, "flags": []}, "matfact": {"score": -0.05, "hw": 0.2, "flags": []}}
    train = {"fitness": 0.13, "fitness_hw": 0.117, "robust": 0.1, "wins": 1, "tasks": tasks}
    smoke = {"fitness": 0.9, "tasks": {"smoke_quad": {"score": 0.9, "best_val": 0.3, "lr": 0.1, "flags": []}}}
    st.add_evaluation(scored, EvaluationResult(Status.OK, stage="smoke", suite="smoke", suite_version="1",
                                               metrics=smoke), seeds_spec="selection")
    st.add_evaluation(scored, EvaluationResult(Status.OK, stage="train", suite="smoke", suite_version="1",
                                               metrics=train), seeds_spec="selection")
    st.add_evaluation(gated, EvaluationResult(Status.OK, stage="smoke", suite="smoke", suite_version="1",
                                              metrics=smoke), seeds_spec="selection")
    st.close()
    assert main(["show", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert f"score_version {SCORE_VERSION}" in text
    assert "+0.130  ±0.117" in text  # the leaderboard's fitness with its 95 % interval
    gated_row = next(line for line in text.splitlines() if " gated " in line)
    assert " gate " in gated_row and "+0.900" not in gated_row  # smoke is a gate: no fitness
    assert "fitness +0.130 ± 0.117, significant wins 1/2" in text
    assert "logreg" in text and "+0.31 ± 0.12" in text
    assert "task detection" in text and "line 8" in text
    assert main(["show", str(tmp_path / "run"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["score_version"] == SCORE_VERSION and shown["best"]["fitness_hw"] == 0.117
    assert [f["line"] for f in shown["best"]["task_detection"]] == [8]
