"""A run directory as optforge wrote it before store schema version 2 (the DDL of that release, verbatim)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

V1_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    seq INTEGER PRIMARY KEY,            -- proposal order, 0-based
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    parents TEXT NOT NULL,              -- JSON list of ids
    strategy TEXT NOT NULL,
    note TEXT NOT NULL,                 -- JSON generator note
    created REAL NOT NULL,
    observed INTEGER NOT NULL DEFAULT 0 -- 1 once the strategy observed its search result
);
CREATE INDEX IF NOT EXISTS candidates_hash ON candidates(content_hash);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    candidate_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    stage TEXT NOT NULL,
    suite TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    seeds_spec TEXT NOT NULL,           -- what was asked: "selection", "fresh" or a JSON list
    seeds TEXT NOT NULL,                -- JSON list of the seeds actually used
    status TEXT NOT NULL,
    fitness REAL NOT NULL,
    metrics TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    feedback TEXT NOT NULL,
    attempts INTEGER NOT NULL,          -- 1 + retries after `lost`
    wall_s REAL NOT NULL,               -- engine-side wall time of the evaluation
    cached_from TEXT,                   -- candidate id whose identical request supplied this result
    fingerprint TEXT,                   -- the smoke stage's numeric fingerprint of the rule, if any
    created REAL NOT NULL,
    UNIQUE (candidate_id, stage)
);
CREATE INDEX IF NOT EXISTS evaluations_key ON evaluations(content_hash, stage, suite, seeds_spec);
CREATE INDEX IF NOT EXISTS evaluations_fingerprint ON evaluations(fingerprint);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY,
    model TEXT, prompt TEXT, response TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER,
    dollars REAL, latency_s REAL, created REAL,
    extra TEXT,                         -- JSON: any other fields of the call record
    finish_reason TEXT,                 -- why the model stopped: stop, length, ... (NULL: unknown)
    attempts INTEGER,                   -- HTTP requests of the call, retries included (NULL: in extra, or 1)
    call_id TEXT                        -- the client's id of the call: its final record replaces its in-flight one
);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, created REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS promotions (
    candidate_id TEXT NOT NULL, stage TEXT NOT NULL, passed INTEGER NOT NULL,
    value REAL, bar REAL, noise REAL, detail TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (candidate_id, stage)
);
CREATE TABLE IF NOT EXISTS strategy_state (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL);
"""


def make_v1_run(run_dir: Path, config: dict, sources: list[str]) -> None:
    """A version-1 run of ListStrategy over `sources` on the train stage only: c0 evaluated and observed,
    c1 evaluated (diverged: its NaN fitness stored as null, as version 1 did) but not observed yet.
    Its config says `budget.max_evaluations`, which counted candidates then."""
    from optforge.types import content_hash

    run_dir.mkdir(parents=True)
    db = sqlite3.connect(str(run_dir / "run.db"))
    db.execute("PRAGMA journal_mode=WAL")  # as version 1 wrote it
    db.executescript(V1_DDL)
    meta = {"config": config, "versions": {"score_version": 1}, "status": "interrupted", "elapsed_s": 1.0,
            "lag": 2, "batch": 1, "suite_versions": {"train": "fake-1"}}
    db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    for seq, src in enumerate(sources[:2]):
        db.execute("INSERT INTO candidates(seq, id, source, content_hash, parents, strategy, note, created, observed)"
                   " VALUES (?, ?, ?, ?, '[]', 'list', '{}', ?, ?)", (seq, f"c{seq}", src, content_hash(src), time.time(),
                                                                       int(seq == 0)))
    rows = [("c0", "ok", 0.5, {"fitness": 0.5, "tasks": {"a": {"score": 0.5}}}),
            ("c1", "diverged", -3.0, {"fitness": -3.0, "loss": None})]
    for (cid, status, fit, metrics), src in zip(rows, sources):
        db.execute("INSERT INTO evaluations(candidate_id, content_hash, stage, suite, suite_version, seeds_spec, seeds,"
                   " status, fitness, metrics, artifacts, feedback, attempts, wall_s, cached_from, fingerprint, created)"
                   " VALUES (?, ?, 'train', 'train', 'fake-1', 'selection', '[0, 1]', ?, ?, ?, '{}', 'fine', 1, 0.1,"
                   " NULL, NULL, ?)", (cid, content_hash(src), status, fit, json.dumps(metrics), time.time()))
    state = {"i": 2, "seen": [["c0", "train", "ok", 0.5]]}
    db.execute("INSERT INTO strategy_state(key, state, updated) VALUES ('strategy', ?, ?)", (json.dumps(state), time.time()))
    db.commit()
    db.close()
