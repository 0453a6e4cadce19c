"""Store schema versions: a run from schema 1 opens read-only (show never writes to it) and resumes
after a migration that keeps `run.db.v0`; NULLs of old rows stay unknown; non-finite values stay distinct."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest
from fake_eval import ListStrategy, fake_source, make_engine
from old_schema import make_v1_run

from optforge.cli import main
from optforge.config import config_from_dict
from optforge.store import SCHEMA_VERSION, Store, StoreError
from optforge.types import Candidate, EvaluationResult, Status


def _files(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir())}


def _v1(tmp_path):
    current = config_from_dict({"strategy": {"name": "list"}, "slots": 1, "deterministic": True, "stages": ["train"],
                                "eval_timeout_s": 30}).to_dict()
    budget = {k: v for k, v in current["budget"].items() if k not in ("max_candidates", "max_evaluations",
                                                                       "max_train_cpu_s")}
    old = {**current, "budget": {**budget, "max_evaluations": 3}}  # version 1: max_evaluations counted candidates
    sources = [fake_source(0.5), fake_source(0.2, "# DIVERGE"), fake_source(0.9)]
    make_v1_run(tmp_path / "old", old, sources)
    return tmp_path / "old", sources


def test_an_old_run_opens_read_only_and_show_never_writes_to_it(tmp_path, capsys):
    run, _ = _v1(tmp_path)
    before = _files(run)
    with Store.open(run) as st:
        assert st.schema_version() == SCHEMA_VERSION  # read through a migrated in-memory copy
        assert st.config()["budget"]["max_candidates"] == 3 and "max_evaluations" not in st.config()["budget"]
        c0 = st.evaluation("c0", "train")
        assert c0.detail is None and c0.tune_wd is None and c0.score_version is None  # unknown, not invented
        assert st.aggregate("c0", "train").n == 1
        with pytest.raises(StoreError, match="read-only"):
            st.add_event("x")
    assert main(["show", str(run)]) == 0
    assert "c0" in capsys.readouterr().out
    assert _files(run) == before  # not a byte written, no file added
    with pytest.raises(StoreError, match="resume"):
        Store(run)  # the engine does not write an old schema


def test_an_old_run_resumes_after_migration_keeping_run_db_v0(ray_local, tmp_path):
    run, sources = _v1(tmp_path)
    (tmp_path / "expected.db").write_bytes((run / "run.db").read_bytes())
    store = Store.resume(run)
    assert _dump(run / "run.db.v0") == _dump(tmp_path / "expected.db")  # the old run, as it was
    assert store.schema_version() == SCHEMA_VERSION and store.meta("status") == "interrupted"
    config = config_from_dict(store.config())
    assert config.budget.max_candidates == 3 and config.budget.max_evaluations is None
    strategy = ListStrategy(sources)
    summary = make_engine(config, strategy, store).run()
    assert summary.stop_reason in ("strategy done", "max_candidates")
    assert [s[0] for s in strategy.seen] == ["c0", "c1", "c2"]  # c1 observed from its stored row, c2 new
    assert [len(store.evaluations(c, "train")) for c in ("c0", "c1", "c2")] == [1, 1, 1]  # nothing re-run
    assert store.evaluation("c2", "train").score_version is not None
    store.close()
    with pytest.raises(StoreError, match="exists already"):
        _migrate_again(run)


def _dump(path):
    import sqlite3

    with sqlite3.connect(str(path)) as db:
        return list(db.iterdump())


def _migrate_again(run):
    # a second migration of the same directory would overwrite run.db.v0: refused
    import shutil

    shutil.copy(run / "run.db.v0", run / "run.db")
    for extra in ("run.db-wal", "run.db-shm"):
        (run / extra).unlink(missing_ok=True)
    Store.resume(run)


def test_nan_and_infinities_are_kept_distinct(tmp_path):
    st = Store(tmp_path / "r")
    cand = Candidate.new("LR = 1\n", id="a")
    st.add_proposals([cand], None)
    from optforge.store import RequestKey

    metrics = {"fitness": 0.1, "nan": math.nan, "inf": math.inf, "ninf": -math.inf, "none": None}
    st.add_evaluation(cand, EvaluationResult(Status.OK, stage="train", metrics=metrics),
                      key=RequestKey(cand.content_hash, "train", "train", "1", "selection"))
    got = Store.open(tmp_path / "r").evaluation("a", "train").metrics
    assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf and got["none"] is None


def test_unknown_columns_of_a_version_1_row_match_no_cache_lookup(tmp_path):
    from optforge.store import RequestKey
    from optforge.types import content_hash

    run, sources = _v1(tmp_path)
    store = Store.resume(run)
    old = store.evaluation("c0", "train")
    assert old.ok and old.detail is None and old.tune_wd is None and old.reuse_lr is None and old.score_version is None
    asked = RequestKey(content_hash(sources[0]), "train", "train", "fake-1", "selection", None, "summary", False, False, 2)
    assert store.cached(asked) is None  # not served for a request that names what the row left unknown
    twin = Candidate.new(sources[0], id="twin")
    store.add_proposals([twin], None)
    store.add_evaluation(twin, old.result, key=asked)  # the same request with every column known
    assert store.cached(asked).candidate_id == "twin"
    assert store.cached(dataclasses.replace(asked, tune_wd=True)) is None
    assert store.cached(dataclasses.replace(asked, score_version=1)) is None
    store.close()


def test_a_version_2_run_gains_the_refused_column_of_rollouts(tmp_path):
    import sqlite3

    from optforge.store import RolloutRecord

    st = Store(tmp_path / "r")
    cand = Candidate.new("LR = 1\n", id="a")
    st.add_proposals([cand], None, rollouts=[RolloutRecord(0, 1, "a", "train", None, (100,), False, "summary", False)])
    st.close()
    with sqlite3.connect(str(tmp_path / "r" / "run.db")) as db:  # back to version 2, which had no such column
        db.execute("ALTER TABLE rollouts DROP COLUMN refused")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Store.open(tmp_path / "r") as ro:
        assert ro.schema_version() == SCHEMA_VERSION and ro.rollouts()[0].refused is None
    with Store.resume(tmp_path / "r") as rw:
        [r] = rw.rollouts(refused=True)
        assert r.seeds == (100,) and r.refused is None and rw.strategy_proposal_count() == 2
    assert (tmp_path / "r" / "run.db.v0").is_file()
