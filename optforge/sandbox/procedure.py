"""The trusted side of a procedure run: the transport a broker drives (no LLM or engine knowledge here).

    box = ProcedureSandbox(ProcedureLimits(cpu_s=60, max_calls=200))
    run = box.start(source, population=[{"idea", "source", "utility"}, ...], task="...", seed=0)
    while True:
        event = run.poll(timeout=1.0)
        if isinstance(event, ProcedureCall):   # kind "llm" | "llm_batch" | "utility", args a dict
            run.answer(event, value)           # or run.refuse(event, "why"): the procedure sees CallRefused
        elif isinstance(event, ProcedureEnd):  # status "ok" (value {"source", "idea"}) or "failed" (reason)
            break

A procedure is untrusted code (an LLM-written `improve(population, utility, llm, task)`); it runs in
its own process under `optforge.sandbox.procedure_host` (namespaces, read-only mounts, rlimits, a
scrubbed environment; see docs/security.md) and reaches the broker only through JSON lines on a pipe
pair. This side validates every line (size, JSON, order, one call out at a time) and enforces:

- cpu_s: the procedure's own CPU seconds (RLIMIT_CPU in the kernel, and a watchdog here that reads
  its CPU time from /proc);
- wall_s: wall-clock seconds from the moment its sandbox is ready (START_GRACE_S bounds getting
  there), EXCLUDING the time while a call is out (from the moment poll() returns a call until
  answer() or refuse());
- max_calls: requests on the channel (a prompt_batch is one); the call past the limit is not
  handed to the broker, the run ends with `call_limit`;
- max_batch: messages in one prompt_batch; a larger batch is refused here (the procedure sees
  CallRefused and may go on), never handed to the broker, and counts as a call;
- memory_mb: address space (RLIMIT_AS);
- max_message_bytes: one line from the procedure.

`ProcedureEnd.reason` is "word: text" with the word one of FAILURE_WORDS. Not thread-safe: one
broker drives a run. A run whose ProcedureRun is dropped without kill() is killed at garbage
collection; its processes also die when this process dies.

Here: `ProcedureSandbox`, which checks a source and starts its run. The records are in
`procedure_records`, the run's protocol and limits in `procedure_run`, its process and pipes in
`procedure_channel`; the untrusted side is `procedure_host` (host), `procedure_process` (isolation),
`procedure_exec` (loading and calling the procedure) and `procedure_proxies` (what it is handed).
"""

from __future__ import annotations

import json
import uuid

from optforge.sandbox.policy import Violation
from optforge.sandbox.procedure_channel import HOST_MODULE  # noqa: F401 - re-exported
from optforge.sandbox.procedure_policy import check_procedure
from optforge.sandbox.procedure_records import (  # noqa: F401 - re-exported: the broker's records
    CALL_KINDS,
    FAILURE_WORDS,
    ProcedureCall,
    ProcedureEnd,
    ProcedureLimits,
)
from optforge.sandbox.procedure_run import START_GRACE_S, ProcedureRun  # noqa: F401 - re-exported


class ProcedureSandbox:
    """Starts procedure runs under `limits`. Stateless between runs; safe to share."""

    def __init__(self, limits: ProcedureLimits = ProcedureLimits()) -> None:
        self.limits = limits

    def check(self, source: str) -> list[Violation]:
        """The static check alone: every way `source` breaks PROCEDURE_POLICY or the contract ([] = may run)."""
        return check_procedure(source)

    def start(self, source: str, *, population: list[dict], task: str, seed: int, run_id: str | None = None) -> ProcedureRun:
        """Start `source` on `population` ({"idea", "source", "utility"} dicts; higher utility is better).
        Never raises for a bad procedure: a refused one gives a run that has already ended with
        status "failed" ("policy: ..."). Raises ValueError for a population that is not JSON-able."""
        run = ProcedureRun(run_id or f"proc-{uuid.uuid4().hex[:12]}", self.limits)
        problems = self.check(source)
        if problems:
            shown = "; ".join(str(p) for p in problems[:8])
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            run._finish("failed", f"policy: the checker (procedure policy) refused the source: {shown}{more}", None)
            return run
        start = {"kind": "start", "source": source, "population": [dict(p) for p in population], "task": str(task),
                 "seed": int(seed)}
        try:
            json.dumps(start)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the population must be JSON-able dicts {{'idea', 'source', 'utility'}}: {e}") from e
        try:
            run._launch(start)
        except OSError as e:
            run._finish("failed", f"died: the procedure's sandbox could not be started: {e}", None)
        return run
