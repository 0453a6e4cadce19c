"""AdamW's side of the baselines is chosen on the selection seeds only: its `chosen` lr, the arm behind
delta, `--verify`'s rerun and the weight-decay arms; the report and search seeds never pick the bar."""

from __future__ import annotations

import copy

from optforge.evaluators import baselines
from optforge.evaluators.baselines.building import wd_specs
from optforge.evaluators.baselines.lookup import missing_wd_arms, runs_at
from optforge.evaluators.protocol import TaskInfo
from optforge.evaluators.tasks import get_suite

TASK = "smoke_quad"


def _report_seeds_favour_another_lr(data: dict) -> tuple[int, int]:
    """Make the report seeds' curves of a second arm at T far lower, so that over every stored seed that
    arm is the best by far while the selection seeds still prefer the original one. (h picked, h favoured)."""
    t = data["tasks"][TASK]
    T = int(t["T"])
    picked = baselines.chosen_run(data, TASK, T)
    sel = [str(s) for s in data["selection_seeds"]]
    other = min((r for r in runs_at(t, T) if r["h"] != picked["h"] and not any(r["diverged"].values())),
                key=lambda r: sum(min(r["val"][s]) for s in sel))  # the runner-up on the selection seeds
    for s in data["report_seeds"]:
        other["val"][str(s)] = [None if v is None else v * 1e-3 for v in other["val"][str(s)]]
    return picked["h"], other["h"]


def test_adamws_chosen_lr_and_delta_follow_the_selection_seeds_not_the_report_seeds():
    data = copy.deepcopy(baselines.load("smoke"))
    T = str(data["tasks"][TASK]["T"])
    before = baselines.add_statistics(copy.deepcopy(data), data["rho"])["tasks"][TASK]["resolution"]
    picked, favoured = _report_seeds_favour_another_lr(data)
    assert picked != favoured
    # over every stored seed the favoured arm wins: a pick that saw the report seeds would take it
    all_seeds = dict(data, selection_seeds=data["seeds"])
    assert baselines.chosen_run(all_seeds, TASK, int(T))["h"] == favoured

    out = baselines.add_statistics(data, data["rho"])
    assert out["tasks"][TASK]["adamw"]["chosen"][T] == picked
    res = out["tasks"][TASK]["resolution"]
    assert res["seeds"] == out["selection_seeds"] == [0, 1]
    assert (res["best_loss"], res["seed_bests"], res["delta"]) == (before["best_loss"], before["seed_bests"], before["delta"])
    # the reference table's AdamW row and the paired scores use that arm too
    arm = baselines.chosen_run(out, TASK, int(T))
    assert out["table"]["adamw"]["tasks"][TASK]["lr"] == arm["lr"]
    assert [r["h"] for r in baselines.selected_runs(out, TASK) if int(r["horizon"]) == int(T)] == [picked]
    # --verify re-runs AdamW at that lr, on a selection seed
    row = next(r for r in baselines.verify(out, "smoke") if r["task"] == TASK)
    assert row["lr"] == arm["lr"] and row["seed"] in out["selection_seeds"]


def test_adding_report_and_search_seeds_moves_neither_the_chosen_lrs_nor_delta():
    full = baselines.add_statistics(copy.deepcopy(baselines.load("smoke")), baselines.RHO)
    fewer = copy.deepcopy(full)  # the same build before its report seeds were added
    keep = {str(s) for s in fewer["selection_seeds"]}
    for t in fewer["tasks"].values():
        for r in t["adamw"]["runs"]:
            r["val"] = {s: v for s, v in r["val"].items() if s in keep}
            r["diverged"] = {s: v for s, v in r["diverged"].items() if s in keep}
    fewer["seeds"] = sorted(int(s) for s in keep)
    fewer = baselines.add_statistics(fewer, full["rho"])
    for name, t in full["tasks"].items():
        assert fewer["tasks"][name]["adamw"]["chosen"] == t["adamw"]["chosen"]
        assert fewer["tasks"][name]["resolution"] == t["resolution"]


def test_weight_decay_runs_missing_at_the_selection_pick_are_named_and_only_they_are_run():
    data = copy.deepcopy(baselines.load("heldout_tiny"))
    t = data["tasks"]["tiny_logreg_digits"]
    T = str(t["T"])
    # pretend the build measured the weight-decay runs at T at another lr than the selection seeds pick
    h = t["adamw"]["chosen"][T]
    for r in t["adamw"]["runs"]:
        if baselines.run_wd(r) > 0 and str(r["horizon"]) == T:
            r["h"] = h + 1
    assert missing_wd_arms(data) == {"tiny_logreg_digits": [int(T)]}
    _, warnings = baselines.check(data, get_suite("heldout_tiny"))
    assert any("tiny_logreg_digits at 60 steps" in w and "--add-wd" in w for w in warnings)
    infos = [TaskInfo(x.name, x.family, int(x.steps)) for x in get_suite("heldout_tiny").tasks]
    specs = wd_specs(data, infos, 1e-3, data["seeds"], baselines.WD_GRID)
    assert {(s.task, s.horizon, s.h) for s in specs} == {("tiny_logreg_digits", int(T), h)}
    assert len(specs) == len(baselines.WD_GRID) * len(data["seeds"])


def test_the_committed_files_hold_the_statistics_this_code_derives_from_their_curves():
    for suite in ("smoke", "heldout_tiny", "train", "train_quick", "heldout"):
        data = baselines.load(suite)
        again = baselines.add_statistics(copy.deepcopy(data), data["rho"])
        for name, t in data["tasks"].items():
            assert t["adamw"]["chosen"] == again["tasks"][name]["adamw"]["chosen"], (suite, name)
            assert t["resolution"] == again["tasks"][name]["resolution"], (suite, name)
        assert data["table"] == again["table"], suite
        assert not baselines.missing_wd_arms(data), suite  # every chosen lr has its weight-decay runs


def test_baselines_show_says_which_format_and_machine_and_not_format_1_beside_format_2():
    from optforge.commands.baselines import render

    data = copy.deepcopy(baselines.load("smoke"))  # built as format 1, upgraded without reruns
    text = render(data, ([], []))
    assert "(format 1)" not in text
    assert "baselines format 2 (upgraded from format 1 on " in text
    assert "built on: not recorded (built " in text and "as format 1, which did not record the machine" in text
    old = copy.deepcopy(data)  # a format-1 file, as `--upgrade` finds it
    old["format"] = 1
    old.pop("upgraded", None)
    up = baselines.upgrade(old)
    assert up["upgraded"]["from_format"] == 1 and "machine" not in up
    # a build that recorded its machine, and a later addition measured elsewhere
    data.pop("upgraded")
    data["machine"] = baselines.machine_info()
    data["cost"]["seeds"] = [{"seeds": [5], "runs": 1, "cpu_seconds": 1.0, "wall_seconds": 1.0,
                              "machine": dict(data["machine"], cpu="Another CPU")}]
    text = render(data, ([], []))
    assert "baselines format 2\n" in text and f"built on: {data['machine']['cpu']}, torch " in text
    assert "AdamW on seed 5 added on: Another CPU, torch" in text


def test_adamws_bar_is_its_picked_arm_so_a_luckier_lr_on_the_report_seeds_does_not_lower_it():
    """Score version 4: tau_A is the envelope of AdamW's picked arms, not of every lr on the scored seeds.
    An arm the selection seeds did not pick, far better on the report seeds, would have made AdamW score
    far below 0 against itself (the lowest of many noisy curves is an oracle no tuned rule matches)."""
    data = copy.deepcopy(baselines.load("smoke"))
    picked, favoured = _report_seeds_favour_another_lr(data)
    payload = baselines.payload_from(data)
    report = [int(s) for s in data["report_seeds"]]
    curves, used = baselines.adamw_curves(payload, TASK, report)
    assert used == report and len(curves) == len({int(r["horizon"]) for r in data["tasks"][TASK]["adamw"]["runs"]})
    T = int(data["tasks"][TASK]["T"])
    at_t = [c for c in curves if c.horizon == T]
    assert len(at_t) == 1 and at_t[0].lr == baselines.chosen_run(data, TASK, T)["lr"]
    table = baselines.add_statistics(data, data["rho"])["table"]
    assert all(row["score"] == 0.0 for row in table["adamw"]["tasks"].values()), table["adamw"]["tasks"]
    assert picked != favoured
