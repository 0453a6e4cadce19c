"""The run store (`run.db`): see `optforge.store.db` for how a run is opened and written, `rows` for the
records it hands out, and `schema` for its tables, version and migrations."""

from optforge.store.db import BACKUP_SUFFIX, DB_NAME, Store, StoreError, versions
from optforge.store.rows import (
    Aggregate, EvaluationRecord, Promotion, Ranked, RequestKey, RolloutRecord, StrategyRecord, TaskAggregate,
)
from optforge.store.schema import SCHEMA_VERSION

__all__ = ["Aggregate", "BACKUP_SUFFIX", "DB_NAME", "EvaluationRecord", "Promotion", "Ranked", "RequestKey",
           "RolloutRecord", "SCHEMA_VERSION", "Store", "StoreError", "StrategyRecord", "TaskAggregate", "versions"]
