"""Seed sets of a suite and `baselines.add_seeds`: AdamW's runs on new seeds join a build, old runs untouched."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from optforge.evaluators.tasks import Suite, get_suite
from optforge.evaluators.tasks.smoke import SmokeQuadratic

HERE = Path(__file__).resolve().parent


def test_the_three_seed_sets_are_disjoint_and_named():
    s = Suite("x", "1", (SmokeQuadratic(),), (0, 1), (2, 3), "", (10, 11))
    assert s.seeds_of("selection") == (0, 1) and s.seeds_of("report") == (2, 3) and s.seeds_of("search") == (10, 11)
    assert s.all_seeds == (0, 1, 2, 3, 10, 11)
    with pytest.raises(ValueError, match="seed 3 is in both report and search"):
        Suite("x", "1", (SmokeQuadratic(),), (0, 1), (2, 3), "", (3, 4))
    with pytest.raises(ValueError, match="seed 1 is in both selection and report"):
        Suite("x", "1", (SmokeQuadratic(),), (0, 1), (1, 2))
    with pytest.raises(ValueError, match="twice in search"):
        Suite("x", "1", (SmokeQuadratic(),), (0,), (1,), "", (5, 5))
    with pytest.raises(ValueError, match="unknown seed set"):
        s.seeds_of("fresh")


def test_shipped_suites_have_search_seeds_only_where_search_runs_and_baselines_on_every_seed():
    from optforge.evaluators import baselines

    for name in ("train", "train_quick"):
        assert get_suite(name).search_seeds == tuple(range(100, 108))
    for name in ("smoke", "heldout", "heldout_tiny"):
        assert get_suite(name).search_seeds == ()
    for name in ("train", "train_quick"):  # every selection, report and search seed has AdamW's curves
        data = baselines.load(name)
        errors, warnings = baselines.check(data, get_suite(name))
        assert errors == [] and not any("lack AdamW runs" in w for w in warnings), warnings
        assert data["search_seeds"] == list(range(100, 108))


@pytest.fixture
def seed_suites(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTFORGE_CACHE", str(tmp_path))
    monkeypatch.syspath_prepend(str(HERE))  # the sandboxed job receives this process's sys.path
    return {k: f"seed_suites:{k}" for k in ("small", "grown", "changed")}


def test_add_seeds_runs_only_the_new_seeds_and_keeps_every_stored_run(seed_suites):
    from optforge.evaluators import baselines

    data = baselines.build(seed_suites["small"], workers=2, references=("adamw",), horizons=(2,), weight_decays=(0.1,))
    assert data["seeds"] == [0, 1] and data["search_seeds"] == []
    before = copy.deepcopy(data)
    records = [r for t in data["tasks"].values() for r in t["adamw"]["runs"]]
    assert any(baselines.run_wd(r) > 0 for r in records) and len({int(r["horizon"]) for r in records}) == 2

    # through the CLI, as a user grows a build: the file of the new version's suite, then --add-seeds
    from optforge.cli import main

    baselines.save(data, baselines.baseline_path(seed_suites["grown"]))
    assert main(["baselines", "--suite", seed_suites["grown"], "--add-seeds"]) == 0
    out = baselines.load(seed_suites["grown"])
    added = out["cost"]["seeds"]
    assert [a["seeds"] for a in added] == [[2, 7]]
    assert added[0]["runs"] == 2 * len(records) and added[0]["cpu_seconds"] > 0
    assert out["seeds"] == [0, 1, 2, 7] and out["suite_version"] == "2"
    assert (out["selection_seeds"], out["report_seeds"], out["search_seeds"]) == ([0], [1, 2], [7])
    old = {(r["h"], r["horizon"], baselines.run_wd(r)): r for r in before["tasks"]["smoke_quad"]["adamw"]["runs"]}
    new = {(r["h"], r["horizon"], baselines.run_wd(r)): r for r in out["tasks"]["smoke_quad"]["adamw"]["runs"]}
    assert new.keys() == old.keys()  # the same arms: grid, horizons and weight decays of the build
    for key, rec in new.items():
        assert sorted(rec["val"]) == ["0", "1", "2", "7"] and sorted(rec["diverged"]) == ["0", "1", "2", "7"]
        for s in ("0", "1"):  # the stored seeds' curves byte for byte
            assert json.dumps(rec["val"][s]) == json.dumps(old[key]["val"][s])
            assert rec["diverged"][s] == old[key]["diverged"][s]
        assert len(rec["val"]["7"]) == len(rec["steps"]) or rec["diverged"]["7"]
    # a seed's curve at an arm is a function of (task, lr, seed, horizon): seed 7's differs from seed 0's
    t_runs = [r for r in new.values() if not r["diverged"]["7"]]
    assert any(r["val"]["7"] != r["val"]["0"] for r in t_runs)
    assert out["tasks"]["smoke_quad"]["resolution"]["best_loss"] is not None  # statistics redone

    again = baselines.add_seeds(copy.deepcopy(out), seed_suites["grown"], [2, 7], workers=2)
    assert again["cost"]["seeds"] == added and again["tasks"] == out["tasks"]  # nothing left to run

    errors, warnings = baselines.check(out, get_suite(seed_suites["grown"]))
    assert errors == [] and not any("lack AdamW runs" in w for w in warnings)
    errors, warnings = baselines.check(before, get_suite(seed_suites["small"]))
    assert not any("lack AdamW runs" in w for w in warnings)


def test_add_seeds_refuses_changed_tasks_and_seeds_outside_the_seed_sets(seed_suites):
    from optforge.evaluators import baselines

    data = {"suite_digest": baselines.suite_digest(get_suite(seed_suites["small"])), "seeds": [0, 1], "tasks": {}}
    with pytest.raises(baselines.BaselineError, match="changed since its baselines were built.*--rebuild"):
        baselines.add_seeds(data, seed_suites["changed"])
    data["suite_digest"] = baselines.suite_digest(get_suite(seed_suites["grown"]))
    with pytest.raises(baselines.BaselineError, match=r"seeds \[3\] are in none of suite 'seedgrow' seed sets"):
        baselines.add_seeds(data, seed_suites["grown"], [2, 3])


def test_check_names_the_add_seeds_command_for_seeds_a_build_lacks():
    from optforge.evaluators import baselines

    data = copy.deepcopy(baselines.load("smoke"))
    data["seeds"] = [0, 1, 2]
    _, warnings = baselines.check(data, get_suite("smoke"))
    assert any("lack AdamW runs on its seeds [3, 4]" in w and "--add-seeds" in w for w in warnings)


def test_baselines_cli_parses_add_seeds():
    from optforge.cli import build_parser

    args = build_parser().parse_args(["baselines", "--suite", "train", "--add-seeds", "5,6"])
    assert args.add_seeds == "5,6"
    assert build_parser().parse_args(["baselines", "--add-seeds"]).add_seeds == "suite"
