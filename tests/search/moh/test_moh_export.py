"""`optforge export-procedure`: the best scored procedure of a run, as a file a later run seeds from."""

from optforge.cli import main
from optforge.search.context import RecordSink
from optforge.search.moh.params import MohConfig
from optforge.search.moh.procedures import idea_of, load_procedure
from optforge.store import Store

BEST = '"""A better improver."""\n\n\ndef improve(population, utility, llm, task):\n    return population.get(0)\n'


def _run_with_records(run_dir, records):
    store = Store(run_dir)
    store.set_meta(config={"strategy": {"name": "moh"}})
    sink = RecordSink()
    for data in records:
        sink("procedure", data)
    store.add_proposals([], {"phase": "done"}, records=sink.take())
    store.close()


def _proc(pid, utility, status="ok", source="def improve(population, utility, llm, task):\n    return None\n"):
    return {"id": pid, "utility": utility, "status": status, "origin": "iteration 0", "source": source}


def test_the_best_procedure_is_written_and_seeds_a_later_run(tmp_path, capsys):
    _run_with_records(tmp_path / "run", [_proc("p0", 0.1), _proc("p1", 0.3, source=BEST), _proc("p2", 0.9, "failed")])
    out = tmp_path / "best.py"
    assert main(["export-procedure", str(tmp_path / "run"), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# optforge export-procedure: procedure p1 of run run (meta-utility 0.3;")
    assert text.endswith(BEST) and idea_of(text) == "A better improver."
    assert "p1" in capsys.readouterr().out
    assert load_procedure(str(out)) == text
    assert MohConfig.from_params({"seed_procedures": ["evolve", str(out)]}).seed_procedures[1] == str(out)


def test_a_run_without_procedures_is_a_user_error(tmp_path, capsys):
    _run_with_records(tmp_path / "run", [])
    assert main(["export-procedure", str(tmp_path / "run"), "-o", str(tmp_path / "x.py")]) == 2
    assert "no scored procedure" in capsys.readouterr().err
    assert not (tmp_path / "x.py").exists()
    assert main(["export-procedure", str(tmp_path / "nothing")]) == 2
