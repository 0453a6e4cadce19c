"""The run database's tables, its schema version, and the migrations from older versions.

Version 1 (no `schema_version` in meta): one evaluation per (candidate, stage), replaced on re-run;
non-finite numbers stored as null. Version 2: evaluation rows are open-ended (a rollout or repeat
adds a row), rollouts and strategy records have their own tables, candidates carry their place in
the strategy's proposal order (`pseq`), and NaN, inf and -inf are kept distinct in JSON columns.
Version 3: a rollout the engine refused is kept with the reason (`rollouts.refused`), so the
strategy gets it back in proposal order, a resume included.

A migration runs inside the caller's transaction and never invents a value: a column added to old
rows stays NULL ("unknown"). Modelled on Optuna's versioned RDB storage.
"""

from __future__ import annotations

import json
import sqlite3

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    seq INTEGER PRIMARY KEY,            -- order of storing, 0-based (funnel references included)
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    parents TEXT NOT NULL,              -- JSON list of ids
    strategy TEXT NOT NULL,
    note TEXT NOT NULL,                 -- JSON generator note
    created REAL NOT NULL,
    observed INTEGER NOT NULL DEFAULT 0, -- 1 once the strategy observed its search result
    pseq INTEGER                        -- place in the strategy's proposal order (NULL: a funnel reference)
);
CREATE INDEX IF NOT EXISTS candidates_hash ON candidates(content_hash);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY,
    pseq INTEGER NOT NULL UNIQUE,       -- place in the strategy's proposal order
    candidate_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    tasks TEXT,                         -- JSON list of task names (NULL: the whole suite)
    seeds TEXT NOT NULL,                -- JSON list of search seeds, resolved when stored
    reuse_lr INTEGER NOT NULL,
    detail TEXT NOT NULL,               -- summary | trace
    repeat INTEGER NOT NULL,            -- 1: asked as a repeat (seeds the candidate had not used)
    note TEXT NOT NULL,                 -- JSON: the strategy's label for it
    observed INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    refused TEXT                        -- why the engine refused the request, never evaluated (NULL: accepted)
);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    candidate_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    stage TEXT NOT NULL,
    suite TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    seeds_spec TEXT NOT NULL,           -- what was asked: "selection", "fresh:N" or a JSON list
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
    tasks TEXT,                         -- JSON list of task names (NULL: the whole suite)
    detail TEXT,                        -- summary | trace (NULL: unknown, a version-1 row)
    tune_wd INTEGER,                    -- NULL: unknown
    reuse_lr INTEGER,                   -- NULL: unknown
    score_version INTEGER,              -- NULL: unknown (the run's, meta versions.score_version)
    rollout_id INTEGER                  -- the rollout this row answers (NULL: a stage evaluation)
);
CREATE INDEX IF NOT EXISTS evaluations_key ON evaluations(content_hash, stage, suite, seeds_spec);
CREATE INDEX IF NOT EXISTS evaluations_candidate ON evaluations(candidate_id, stage);
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
CREATE UNIQUE INDEX IF NOT EXISTS llm_calls_call_id ON llm_calls(call_id);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, created REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS promotions (
    candidate_id TEXT NOT NULL, stage TEXT NOT NULL, passed INTEGER NOT NULL,
    value REAL, bar REAL, noise REAL, detail TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (candidate_id, stage)
);
CREATE TABLE IF NOT EXISTS strategy_state (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS strategy_records (
    id INTEGER PRIMARY KEY,             -- append-only: never updated or deleted
    kind TEXT NOT NULL,                 -- summary, rejected, meta_program, ... (the strategy's word)
    candidate_id TEXT,                  -- the candidate it is about, if any
    data TEXT NOT NULL,                 -- JSON
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS strategy_records_kind ON strategy_records(kind);
"""

# llm_calls columns added during version 1: a version-1 run.db may lack them
_LLM_ADDED_COLUMNS = (("finish_reason", "TEXT"), ("attempts", "INTEGER"), ("call_id", "TEXT"))

_V1_EVALUATION_COLUMNS = ("id, candidate_id, content_hash, stage, suite, suite_version, seeds_spec, seeds, status, "
                          "fitness, metrics, artifacts, feedback, attempts, wall_s, cached_from, fingerprint, created")


def schema_version(db: sqlite3.Connection) -> int | None:
    """The schema version of an opened database; None for an empty one (no tables yet)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 1 if row is None else int(json.loads(row[0]))  # a meta table without a version: version 1


def create(db: sqlite3.Connection) -> None:
    """Create the current tables in an empty database (inside the caller's transaction)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))


def migrate(db: sqlite3.Connection) -> int:
    """Bring a database to SCHEMA_VERSION inside the caller's transaction; returns the version it had.
    Raises ValueError for a version newer than this code knows."""
    found = schema_version(db)
    if found is None:
        create(db)
        return SCHEMA_VERSION
    if found > SCHEMA_VERSION:
        raise ValueError(f"the run database has schema version {found}; this optforge reads up to "
                         f"{SCHEMA_VERSION}. Upgrade optforge to open it")
    if found == 1:
        _v1_to_v2(db)
    if found <= 2:
        _v2_to_v3(db)
    return found


def _v1_to_v2(db: sqlite3.Connection) -> None:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    have = {r[1] for r in db.execute("PRAGMA table_info(llm_calls)")}
    for name, kind in _LLM_ADDED_COLUMNS if "llm_calls" in tables else ():
        if name not in have:
            db.execute(f"ALTER TABLE llm_calls ADD COLUMN {name} {kind}")
    if "evaluations" in tables:  # UNIQUE(candidate_id, stage) goes: a new table, the rows copied, the old one dropped
        db.execute("ALTER TABLE evaluations RENAME TO evaluations_v1")
        for index in ("evaluations_key", "evaluations_fingerprint"):
            db.execute(f"DROP INDEX IF EXISTS {index}")
    if "candidates" in tables:
        db.execute("ALTER TABLE candidates ADD COLUMN pseq INTEGER")
    create(db)  # the tables and indexes that do not exist yet, and schema_version
    if "evaluations" in tables:
        db.execute(f"INSERT INTO evaluations({_V1_EVALUATION_COLUMNS}) SELECT {_V1_EVALUATION_COLUMNS} FROM evaluations_v1")
        db.execute("DROP TABLE evaluations_v1")
    rows = db.execute("SELECT seq, note FROM candidates ORDER BY seq").fetchall()
    strategy_rows = [seq for seq, note in rows if (json.loads(note or "{}") or {}).get("role") != "reference"]
    db.executemany("UPDATE candidates SET pseq = ? WHERE seq = ?", [(i, seq) for i, seq in enumerate(strategy_rows)])
    row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    if row is not None:
        upgraded = upgrade_config(json.loads(row[0]), 1)
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(upgraded, sort_keys=True),))


def _v2_to_v3(db: sqlite3.Connection) -> None:
    if "refused" not in {r[1] for r in db.execute("PRAGMA table_info(rollouts)")}:
        db.execute("ALTER TABLE rollouts ADD COLUMN refused TEXT")
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))


def upgrade_config(config: dict, version: int) -> dict:
    """A stored run config as the current code reads it. Before version 2, `budget.max_evaluations`
    counted candidates: it is `budget.max_candidates` now (`max_evaluations` counts evaluation rows)."""
    if version >= 2:
        return config
    budget = dict(config.get("budget") or {})
    if "max_evaluations" in budget and "max_candidates" not in budget:
        budget["max_candidates"] = budget.pop("max_evaluations")
    return {**config, "budget": budget} if "budget" in config else config
