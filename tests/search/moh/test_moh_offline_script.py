"""The scripted model shipped for trying MoH offline (configs/moh_offline_script.json, README
"Trying MoH offline"): what it answers passes the checks, and (slow) it drives the shipped
`configs/moh_smoke.yaml` through `optforge run`, on the real engine, evaluator and sandboxes, to the
end of its two outer iterations. The slow run took 15 min on 2 loaded cores."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from optforge.llm.scripted import ScriptedServer, load_script
from optforge.rule_check import check_rule
from optforge.sandbox.procedure_policy import check_procedure
from optforge.store import Store

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SCRIPT = CONFIGS / "moh_offline_script.json"


def _answers() -> tuple[list[str], list[str]]:
    """(rule sources, procedure sources) the script answers with."""
    rules, procedures = [], []
    for entry in json.loads(SCRIPT.read_text(encoding="utf-8"))["responses"]:
        for code in re.findall(r"```python\n(.*?)```", entry["content"], re.S):
            (procedures if "def improve(" in code else rules).append(code)
    return rules, procedures


def test_the_offline_script_loads_and_answers_with_rules_and_procedures_that_pass_their_checks():
    entries, _ = load_script(SCRIPT)
    assert entries and all(e.get("repeat") for e in entries)  # never used up, however long the run
    rules, procedures = _answers()
    assert len(set(rules)) == 4 and procedures
    for source in rules:
        assert check_rule(source) == [], source
    for source in procedures:
        assert check_procedure(source) == [], source


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_the_offline_script_drives_moh_smoke_to_the_end_of_its_iterations(tmp_path):
    with ScriptedServer(SCRIPT) as server:
        done = subprocess.run([sys.executable, "-m", "optforge", "run", str(CONFIGS / "moh_smoke.yaml"), "--quiet",
                               "--out", str(tmp_path / "run"), "--set", f"llm.api_base={server.url}"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=5400)
    assert done.returncode == 0, done.stderr[-4000:]
    with Store.open(tmp_path / "run") as st:
        assert st.meta("status") == "finished"
        assert st.strategy_state()["stop_reason"] == "n_iterations (2) done"
        procs = [r.data for r in st.records("procedure")]
        assert [p["origin"] for p in procs] == ["seed evolve", "seed polca", "seed meta", "iteration 0"]
        assert all(p["status"] == "ok" and len(p["subtasks"]) == 4 for p in procs)  # train_quick's 4 families
        assert len(st.records("meta_iteration")) == 2
        sources = {c.source for c in st.candidates(include_reference=False)}
        assert set(_answers()[0]) <= sources  # every scripted rule was written by a procedure and evaluated
        assert all(e.status.value == "ok" for e in st.evaluations())
