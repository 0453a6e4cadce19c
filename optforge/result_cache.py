"""The engine's result cache: an identical request is evaluated once.

Identical means the same `RequestKey`: content hash, stage, suite and its version, tasks, seeds,
detail, `tune_wd`, lr reuse and score version. A stored result answers it, and a request whose twin is
in flight waits for that one instead of running again. `lost` is never cached. A candidate whose
program equals an earlier one's (`program_hash`: the same syntax tree, other comments or layout) is
lent that one's result at the stages after the first; a fingerprint measured in the sandbox never
lends a result (the candidate controls that evidence).
"""

from __future__ import annotations

from typing import Any, Callable

from optforge.program_identity import program_hash
from optforge.store import EvaluationRecord, RequestKey, Store
from optforge.types import Candidate, EvaluationResult


class ResultCache:
    """Stored and in-flight results by request key, and program twins. `suite_version(suite)` is asked
    once per suite; the versions seen are stored in meta `suite_versions` (resume checks them)."""

    def __init__(self, store: Store, suite_version: Callable[[str], str], score_version: int) -> None:
        self.store, self.score_version = store, score_version
        self._suite_version_fn = suite_version
        self._suite_versions: dict[str, str] = {}
        self._by_key: dict[RequestKey, Any] = {}  # request key -> the in-flight job evaluating it
        self._waiters: dict[RequestKey, list[Any]] = {}  # request key -> jobs waiting on that evaluation
        self._programs: dict[str, list[str]] = {}  # program_hash -> search candidate ids, in proposal order

    def suite_version(self, suite: str) -> str:
        if suite not in self._suite_versions:
            self._suite_versions[suite] = str(self._suite_version_fn(suite))
            stored = dict(self.store.meta("suite_versions", {}))
            if stored.get(suite) != self._suite_versions[suite]:
                stored[suite] = self._suite_versions[suite]
                self.store.set_meta(suite_versions=stored)
        return self._suite_versions[suite]

    def key(self, content_hash: str, stage: str, suite: str, seeds_spec: str, *, tasks: tuple[str, ...] | None = None,
            detail: str = "summary", tune_wd: bool = False, reuse_lr: bool = False) -> RequestKey:
        return RequestKey(content_hash, stage, suite, self.suite_version(suite), seeds_spec, tasks, detail, tune_wd,
                          reuse_lr, self.score_version)

    def stored(self, key: RequestKey) -> EvaluationRecord | None:
        return self.store.cached(key)

    def running(self, key: RequestKey) -> bool:
        """Whether an evaluation of `key` is in flight (a job asking for it would wait, at no cost)."""
        return key in self._by_key

    def claim(self, key: RequestKey, job: Any) -> bool:
        """True: `job` evaluates `key`. False: a twin is in flight and `job` now waits for it."""
        if key in self._by_key:
            self._waiters.setdefault(key, []).append(job)
            return False
        self._by_key[key] = job
        return True

    def release(self, key: RequestKey) -> list[Any]:
        """The evaluation of `key` ended: the jobs that waited on it."""
        self._by_key.pop(key, None)
        return self._waiters.pop(key, [])

    def index(self, cand: Candidate) -> None:
        self._programs.setdefault(program_hash(cand.source), []).append(cand.id)

    def twin(self, cand: Candidate, stage: str, key: RequestKey) -> tuple[str, EvaluationResult] | None:
        """The result of an earlier candidate with the same program at `stage` for the same request, so
        a reformatted copy is not trained twice (the feedback says whose it is)."""
        if self.store.evaluation(cand.id, stage) is not None:
            return None
        program = program_hash(cand.source)
        for other in self._programs.get(program, []):
            if other == cand.id:
                continue
            ev = self.store.evaluation(other, stage)
            if ev is not None and ev.status.cacheable and ev.suite_version == key.suite_version \
                    and ev.seeds_spec == key.seeds_spec:
                twin = ev.result
                twin.feedback = (f"the same program as candidate {other} (identical syntax tree; only comments or "
                                 f"layout differ). {twin.feedback}")
                self.store.add_event("duplicate", candidate=cand.id, of=other, program=program)
                return other, twin
        return None
