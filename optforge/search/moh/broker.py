"""The broker half of MoH: it starts the procedure runs on the strategy's stack and serves their calls.

Calls of a running procedure (`optforge.sandbox.procedure`), served by `CallBroker`:
- `llm` / `llm_batch`: through the run's LLM client, within the run's `llm_calls_per_run`
  sub-budget and the run's LLM budget; past either the call is refused with the reason;
- `utility(source, subtask)` of an inner run: a rule evaluation on exactly that subtask's tasks of
  the search suite (`evals.Evaluations`), within `max_evals_per_subtask`, answered in `observe`; a
  subtask that is not the run's own (a held-out suite or task, say) is refused as `bad_request`;
- `utility(source, task)` of a meta run: the procedure's meta-utility (`strategy.MohStrategy._meta_utility`).

Every answer or refusal goes into the run's log (`runs.RunSpec.log`), so a run restarted on resume is
answered from the log, in order, and must make the same calls (`call_key`) until it passes the point
where it stopped. A run that ends (or is killed) is recorded as a `procedure_run` record and handed
to the level that started it (`_inner_ended` / `_meta_ended` of `strategy.MohStrategy`).
"""

from __future__ import annotations

from typing import Any

from optforge.llm.budget import BudgetExhausted
from optforge.llm.client import LLMError
from optforge.sandbox.procedure import ProcedureCall, ProcedureEnd
from optforge.search.moh.runs import INNER, META, RunSpec, call_key

RESTART_S = 60.0
"""How long a restarted run may take to reach the call it was killed in (its replayed calls are instant)."""
BAD_REQUEST = "bad_request"


class CallBroker:
    """Mixin of `MohStrategy`: runs its stack of procedure runs and serves their calls.

    Uses the strategy's `config`, `llm`, `sandbox`, `record`, `evals`, `seeds`, `stack`, `handles`,
    `calls` and `replayed`, and calls back its level logic: `_procedure(pid)`, `_by_name()`,
    `_meta_utility(spec, source)`, `_inner_ended(spec, run, returned)`, `_meta_ended(...)`.
    """

    def _restart_stack(self) -> None:
        """Start the runs of the stack that have no process (new, or restarted on resume), bottom up; a
        restarted run is driven through its logged calls to the one it waited on."""
        for spec in list(self.stack):
            if spec.run_id in self.handles:
                continue
            source = self._procedure(spec.procedure)["source"]
            self.handles[spec.run_id] = self.sandbox.start(source, population=spec.population, task=spec.task,
                                                           seed=spec.seed)
            self.replayed[spec.run_id] = 0
            if spec.log or spec.pending is not None:
                self._catch_up(spec)
            if spec not in self.stack:
                return  # it ended or failed while catching up

    def _catch_up(self, spec: RunSpec) -> None:
        """Answer a restarted run from its log until it asks the call it was killed in (or ends)."""
        handle = self.handles[spec.run_id]
        while spec in self.stack and (self.replayed[spec.run_id] < len(spec.log) or
                                      (spec.pending is not None and spec.run_id not in self.calls)):
            event = handle.poll(RESTART_S)
            if event is None:
                self._fail_run(spec, f"did not reach its logged call {self.replayed[spec.run_id] + 1} within "
                                     f"{RESTART_S:g} s of its restart")
                return
            self._on_event(spec, event)

    def _on_event(self, spec: RunSpec, event: ProcedureCall | ProcedureEnd) -> None:
        if isinstance(event, ProcedureEnd):
            self._ended(spec, event)
            return
        key = call_key(event.kind, event.args)
        done = self.replayed.get(spec.run_id, 0)
        if done < len(spec.log):
            entry = spec.log[done]
            if entry["key"] != key:
                self._fail_run(spec, f"on resume the procedure made another call {done + 1} ({event.kind}) than it "
                                     "made before: it is not deterministic")
                return
            self.replayed[spec.run_id] = done + 1
            handle = self.handles[spec.run_id]
            if "refused" in entry:
                handle.refuse(event, entry["refused"])
            else:
                handle.answer(event, entry["answer"])
            return
        if spec.pending is not None:
            if key != spec.pending:
                self._fail_run(spec, f"on resume the procedure made another call ({event.kind}) than the one it "
                                     "waited on: it is not deterministic")
                return
            self.calls[spec.run_id] = event  # its answer comes from the engine, as before the restart
            return
        if event.kind in ("llm", "llm_batch"):
            self._serve_llm(spec, event, key)
        elif event.kind == "utility":
            self._serve_utility(spec, event, key)
        else:
            self._refuse(spec, event, key, f"{BAD_REQUEST}: unknown call kind {event.kind!r}")

    def _serve_llm(self, spec: RunSpec, call: Any, key: str) -> None:
        args = call.args
        batch = call.kind == "llm_batch"
        messages = list(args.get("messages") or []) if batch else [args.get("message")]
        system, temperature = args.get("system"), args.get("temperature")
        bad = _bad_llm_args(system, messages, temperature)
        if bad:
            return self._refuse(spec, call, key, f"{BAD_REQUEST}: {bad}")
        limit = self.config.llm_calls_per_run
        if spec.llm_calls + len(messages) > limit:
            return self._refuse(spec, call, key, f"LLM sub-budget: this run may make {limit} LLM calls (strategy."
                                                 f"llm_calls_per_run), {spec.llm_calls} made, {len(messages)} asked")
        spec.llm_calls += len(messages)
        requests = [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": m}],
                     "temperature": float(temperature)} for m in messages]
        responses = self.llm.complete_many(requests)  # a ReplayError (diverged replay) is raised out
        self.record("procedure_llm", {"run": spec.run_id, "procedure": spec.procedure, "calls": len(messages),
                                      "prompt_hashes": [getattr(getattr(r, "call", None), "prompt_hash", None)
                                                        for r in responses]})
        failed = next((r for r in responses if isinstance(r, (BudgetExhausted, LLMError))), None)
        if failed is not None:
            what = "the run's LLM budget is exhausted" if isinstance(failed, BudgetExhausted) else "the LLM call failed"
            return self._refuse(spec, call, key, f"{what}: {failed}", llm=len(messages))
        texts = [r.text for r in responses]
        self._log_answer(spec, call, key, texts if batch else texts[0], llm=len(messages))

    def _serve_utility(self, spec: RunSpec, call: Any, key: str) -> None:
        source, asked = call.args.get("source"), call.args.get("subtask")
        if isinstance(source, dict):  # {"source", "idea"}, as a procedure returns it
            source = source.get("source")
        if not isinstance(source, str) or not source.strip():
            return self._refuse(spec, call, key, f"{BAD_REQUEST}: utility needs the solution's source text")
        if asked not in (spec.subtask, spec.task):
            return self._refuse(spec, call, key, f"{BAD_REQUEST}: utility of subtask {str(asked)[:80]!r}: this run may "
                                                 f"evaluate only on its own subtask '{spec.subtask}' of the search suite "
                                                 "(pass the task it was given)")
        cap = self.config.max_evals_per_subtask
        if spec.utility_calls >= cap:
            return self._refuse(spec, call, key, f"evaluation budget: this run may make {cap} utility calls "
                                                 "(strategy.max_evals_per_subtask)")
        spec.utility_calls += 1
        self.calls[spec.run_id] = call
        spec.pending = key
        if spec.level == META:
            return self._meta_utility(spec, source)
        subtask = self._by_name()[spec.subtask]
        cid, value = self.evals.ask(source, subtask, seeds=self.seeds,
                                    note={"kind": "moh", "procedure": spec.procedure, "run": spec.run_id,
                                          "subtask": spec.subtask})
        spec.waiting_for = cid
        if cid not in spec.asked:
            spec.asked.append(cid)
        if value is not None:
            self._rule_answered(spec, cid, value)

    def _answered(self, pairs: list[tuple[str, str]]) -> None:
        """Evaluations came back: answer the inner run waiting on one of them."""
        top = self.stack[-1] if self.stack else None
        if top is None or top.level != INNER or top.pending is None:
            return
        if (top.waiting_for, top.subtask) in pairs:
            if top.run_id not in self.calls:  # resumed: restart the runs before answering
                self._restart_stack()
            if top in self.stack and top.run_id in self.calls:
                self._rule_answered(top, top.waiting_for, self.evals.answer(top.waiting_for, top.subtask))

    def _rule_answered(self, spec: RunSpec, cid: str, value: float) -> None:
        if not spec.best or value > spec.best["fitness"]:
            spec.best = {"fitness": float(value), "candidate": cid}
        self._answer(spec, float(value))

    def _answer(self, spec: RunSpec, value: Any) -> None:
        call = self.calls.pop(spec.run_id)
        spec.log.append({"key": spec.pending, "kind": call.kind, "answer": value, "llm": 0})
        spec.pending = spec.waiting_for = None
        self.replayed[spec.run_id] = len(spec.log)
        self.handles[spec.run_id].answer(call, value)

    def _log_answer(self, spec: RunSpec, call: Any, key: str, value: Any, *, llm: int) -> None:
        spec.log.append({"key": key, "kind": call.kind, "answer": value, "llm": llm})
        self.replayed[spec.run_id] = len(spec.log)
        self.handles[spec.run_id].answer(call, value)

    def _refuse(self, spec: RunSpec, call: Any, key: str, reason: str, *, llm: int = 0) -> None:
        spec.log.append({"key": key, "kind": call.kind, "refused": reason, "llm": llm})
        self.replayed[spec.run_id] = len(spec.log)
        self.handles[spec.run_id].refuse(call, reason)

    def _fail_run(self, spec: RunSpec, reason: str) -> None:
        end = self.handles[spec.run_id].kill(reason)
        self._ended(spec, end, reason=reason)

    def _ended(self, spec: RunSpec, end: Any, reason: str | None = None) -> None:
        """A run ended: record it, take it off the stack, and go on with what it was part of."""
        self.handles.pop(spec.run_id, None)
        self.calls.pop(spec.run_id, None)
        self.replayed.pop(spec.run_id, None)
        self.stack.remove(spec)
        value = end.value if end.status == "ok" else None
        returned = value.get("source") if isinstance(value, dict) else None
        status, why = end.status, reason or end.reason
        if status == "ok" and not returned:
            status, why = "failed", "the procedure returned no solution"
        run = {"run": spec.run_id, "procedure": spec.procedure, "level": spec.level, "subtask": spec.subtask,
               "seed": spec.seed, "status": status, "reason": why, "calls": len(spec.log),
               "llm_calls": spec.llm_calls, "utility_calls": spec.utility_calls,
               "cpu_s": float(getattr(end, "cpu_s", 0.0) or 0.0), "best": dict(spec.best), "asked": list(spec.asked),
               "refused": [e["refused"] for e in spec.log if "refused" in e],
               "returned_idea": value.get("idea") if isinstance(value, dict) else None}
        if spec.level == INNER:
            self._inner_ended(spec, run, returned)
        else:
            self._meta_ended(spec, run, returned)


def _bad_llm_args(system: Any, messages: list[Any], temperature: Any) -> str:
    if not isinstance(system, str):
        return "the system prompt must be a string"
    if not messages or not all(isinstance(m, str) and m for m in messages):
        return "each message must be a non-empty string"
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        return "temperature must be a number from 0 to 2"
    return ""
