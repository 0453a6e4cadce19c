"""`optforge show` and `optforge report` on a MoH run: per outer iteration (the seed procedures first),
each procedure with its parent, its meta-utility, per subtask the best fitness its run reached and the
rules it evaluated, the rules it found, why one failed, and whether the best new procedure replaced
the meta-optimizer; a procedure still being scored shows as such."""

from __future__ import annotations

import json

from optforge.cli import main
from optforge.config import config_from_dict
from optforge.report import build_report
from optforge.store import Store, StrategyRecord, versions


def _sub(best, candidate, found, status="ok", reason=None):
    return {"best": best, "candidate": candidate, "found": found, "status": status, "reason": reason, "run": "r0",
            "weight": 1.0}


def _proc(pid, parent, iteration, utility, subtasks, status="ok", reason=None, idea="an idea"):
    return {"id": pid, "parent": parent, "origin": "seed" if iteration is None else f"iteration {iteration}",
            "iteration": iteration, "idea": idea, "utility": utility, "status": status, "reason": reason,
            "subtasks": subtasks, "source": "def improve(population, utility, llm, task):\n    pass\n"}


P0 = _proc("p0", None, None, 0.125, {"quad": _sub(0.2, "rulequad0001", ["adamwseed001", "rulequad0001"]),
                                     "mlp": _sub(0.1, "rulemlp00001", ["rulemlp00001"])}, idea="Evolve-like")
P1 = _proc("p1", None, None, -3.0, {"quad": _sub(None, None, [], "failed", "raised ZeroDivisionError")},
           status="failed", reason="subtask quad: raised ZeroDivisionError", idea="POLCA-like")
P2 = _proc("p2", "p0", 0, 0.5, {"quad": _sub(0.5, "rulequad0002", ["rulequad0002"]),
                                "mlp": _sub(0.5, "rulemlp00002", ["rulemlp00002", "rulemlp00001"])}, idea="One shot")
P3 = {**_proc("p3", "p2", 2, None, {}, status="scoring", idea="Still running"), "utility": None}
META0 = {"iteration": 0, "meta_optimizer": "p0", "incumbent_utility": 0.125, "run_status": "ok", "run_reason": None,
         "returned": "p2", "best_new": "p2", "best_new_utility": 0.5, "accepted": True}
META1 = {**META0, "iteration": 1, "meta_optimizer": "p2", "incumbent_utility": 0.5, "returned": "p2", "best_new": None,
         "best_new_utility": None, "accepted": False}  # its meta run returned a procedure scored before


def moh_run(tmp_path):
    st = Store(tmp_path / "run")
    st.set_meta(config=config_from_dict({"strategy": {"name": "moh"}, "suite": "train_quick",
                                         "stages": ["smoke", "train"]}).to_dict(), versions=versions(), status="finished")
    subtasks = {"quad": {"tasks": ["quad_deepobs"], "weight": 1.0}, "mlp": {"tasks": ["mlp_digits"], "weight": 3.0}}
    state = {"subtasks": [["quad", ["quad_deepobs"], 1.0], ["mlp", ["mlp_digits"], 3.0]],
             "procedures": [P0, P1, P2, P3], "best": {"id": "p2", "utility": 0.5, "idea": "One shot"},
             "meta_optimizer": "p2", "stop_reason": None}
    records = [StrategyRecord("subtasks", {"subtasks": subtasks, "seeds": [100]}),
               *(StrategyRecord("procedure", p) for p in (P0, P1, P2)), StrategyRecord("meta_iteration", META0),
               StrategyRecord("meta_iteration", META1)]
    st.add_proposals([], state, records=records)
    st.close()
    return tmp_path / "run"


def test_show_prints_moh_procedures_by_iteration_with_subtask_fitness_parents_and_rules_found(tmp_path, capsys):
    run = moh_run(tmp_path)
    assert main(["show", str(run)]) == 0
    text = capsys.readouterr().out
    body = text[text.index("MoH procedures"):]
    assert "weighted quad 1, mlp 3" in body and "best p2 at +0.500" in body
    lines = body.splitlines()
    seed, it0, it1, it2 = (lines.index(h) for h in (
        "seed procedures:", "iteration 0 (meta-optimizer p0 at +0.125; best new: p2 +0.500, accepted):",
        "iteration 1 (meta-optimizer p2 at +0.500; no new procedure scored):", "iteration 2:"))
    assert seed < it0 < it1 < it2 and lines[it1 + 1] == "  (no new procedure)"
    head = lines[seed + 1].split()
    assert head == ["id", "parent", "meta-utility", "quad", "mlp", "idea"]
    assert lines[seed + 2].split() == ["p0", "-", "+0.125", "+0.200", "/", "2", "+0.100", "/", "1", "Evolve-like"]
    assert lines[seed + 3].split()[:6] == ["p1", "-", "-3.000", "-", "/", "0"]  # its quad run failed; mlp never ran
    assert "  p0 found: quad rulequad0001 +0.200; mlp rulemlp00001 +0.100" in lines
    assert "  p1 failed: subtask quad: raised ZeroDivisionError" in lines
    assert lines[it0 + 2].split()[:3] == ["p2", "p0", "+0.500"]
    assert lines[it2 + 2].split()[:3] == ["p3", "p2", "scoring"]  # from the state: not scored yet
    assert main(["show", str(run), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)["strategy_view"]
    assert view["kind"] == "moh_procedures" and view["subtasks"] == [["quad", 1.0], ["mlp", 3.0]]
    assert [(g["iteration"], [p["id"] for p in g["procedures"]]) for g in view["iterations"]] == \
        [(None, ["p0", "p1"]), (0, ["p2"]), (1, []), (2, ["p3"])]
    assert view["iterations"][1]["procedures"][0]["subtasks"]["mlp"]["found"] == ["rulemlp00002", "rulemlp00001"]


def test_report_has_a_moh_procedures_section(tmp_path):
    page = build_report(moh_run(tmp_path))
    section = page[page.index("<h2>MoH procedures</h2>"):page.index("<h2>Strategy records</h2>")]
    assert section.index("<h3>seed procedures</h3>") < section.index("<h3>iteration 0</h3>") < \
        section.index("<h3>iteration 1</h3>") < section.index("<h3>iteration 2</h3>")
    assert "best new <code>p2</code> +0.500: accepted" in section
    assert "<code>p2</code> at +0.500; no new procedure scored" in section
    assert "+0.200 <code>rulequad0001</code>" in section and "(2 evaluated)" in section
    assert "failed: subtask quad: raised ZeroDivisionError" in section
    assert "<th>quad</th><th>mlp</th>" in section
