"""The LLM client: litellm calls with concurrency limits, retries, dollar accounting and budgets.

Every call, successful or not, becomes an `LLMCall` handed to `recorder` (the engine wires it to
the store's llm_calls table). Before each HTTP request the call is also handed over `in_flight`
(same `call_id`, replaced by the final record), so requests a killed run was waiting on still
count. With `replay: RUN_DIR` calls are answered from that run's records. A resumed run asks the
answers its killed run got after the last commit again, and gets them from the records, uncounted
(`optforge.llm.resumed`). What a response holds and which failures are retried: `optforge.llm.wire`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from optforge.config import ConfigError, LLMConfig
from optforge.llm.budget import Budget, BudgetExhausted, Reservation, budget_limits
from optforge.llm.errors import LLMConfigError, LLMError
from optforge.llm.pricing import Price, estimate_prompt_tokens, litellm, resolve_price
from optforge.llm.records import IN_FLIGHT, LLMCall, Message, prompt_text, replay_key, request_key, sent_messages
from optforge.llm.replay import RecordedCall, Replayer, ReplayError
from optforge.llm.resumed import MARK_KEYS, CallLog
from optforge.llm.wire import BadResponse, Completion, retry_after, retryable, unpack_completion, unpack_embedding

log = logging.getLogger(__name__)

Recorder = Callable[[LLMCall], None]


@dataclass(frozen=True)
class LLMResponse:
    text: str  # the message content as received (read it with optforge.llm.parse)
    model: str
    call: LLMCall

    @property
    def finish_reason(self) -> str:
        return self.call.finish_reason

    @property
    def reasoning(self) -> str:
        return self.call.reasoning


class LLMClient:
    """One client per run. Thread-safe; at most `concurrency` requests are in flight.

    `config` is the run config (with `llm` and `budget` sections) or just its `llm` section, as a
    mapping or `optforge.config.LLMConfig`; `budget` may also be given directly. `sleep` is injectable
    for tests. A bad key raises ConfigError naming `llm.<key>`.

    `recorded`: on resume, the run's recorded calls in order (`Store.llm_calls()`), so that `load_state`
    can hold the answers the killed run got after its last commit (`optforge.llm.resumed`).
    """

    def __init__(self, config: Any, recorder: Recorder | None = None, *, budget: Budget | Any = None,
                 sleep: Callable[[float], None] = time.sleep, environ: Mapping[str, str] | None = None,
                 recorded: Sequence[Mapping[str, Any]] | None = None):
        llm_section, budget_section = _split_config(config)
        self.settings = llm_section if isinstance(llm_section, LLMConfig) else LLMConfig.from_mapping(llm_section)
        try:
            self.settings.model_choices  # raises when neither llm.model nor llm.models is set
        except ConfigError as e:
            raise LLMConfigError(str(e)) from e
        if isinstance(budget, Budget):
            self.budget = budget
        else:
            md, mc = budget_limits(budget if budget is not None else budget_section)
            self.budget = Budget(md, mc)
        self.recorder = recorder
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(self.settings.concurrency)
        self._record_lock = threading.Lock()
        self._log = CallLog(recorded or ())
        self._log_known = recorded is not None  # the client knows the run's whole call log
        env = os.environ if environ is None else environ
        self._replayer = None
        self._api_key: str | None = None
        if self.settings.replay:
            self._replayer = Replayer.from_run_dir(self.settings.replay)
        elif self.settings.api_key_env:
            key = env.get(self.settings.api_key_env)
            if not key:
                raise LLMConfigError(
                    f"environment variable {self.settings.api_key_env} is not set (llm.api_key_env names it); "
                    f"export {self.settings.api_key_env}=<your key>, or set llm.api_key_env: null for a local "
                    "server that needs no key, or llm.replay: RUN_DIR to run offline"
                )
            self._api_key = key
        s = self.settings
        self._prices: dict[str, Price] = {
            m.model: resolve_price(m.model, s.input_cost_per_token, s.output_cost_per_token, s.api_base)
            for m in s.model_choices
        }

    # -- accounting -------------------------------------------------------------------------------

    @property
    def spent_dollars(self) -> float:
        return self.budget.spent_dollars

    @property
    def calls_made(self) -> int:
        return self.budget.calls_made

    def spend(self) -> tuple[float, int]:
        """(dollars, HTTP requests) this run has spent, what `budget.max_dollars` and
        `budget.max_llm_calls` limit; answers held for a resumed strategy count once they are used."""
        return self.spent_dollars, self.calls_made

    @property
    def exhausted(self) -> bool:
        """True once a budget refused a call (or no call is left): the run should stop."""
        return self.budget.exhausted

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m.model for m in self.settings.model_choices)

    def price(self, model: str) -> Price:
        if model not in self._prices:
            s = self.settings
            self._prices[model] = resolve_price(model, s.input_cost_per_token, s.output_cost_per_token, s.api_base)
        return self._prices[model]

    def worst_case_dollars(self, messages: Sequence[Message], model: str, max_tokens: int) -> float:
        return self.price(model).cost(estimate_prompt_tokens(model, messages), max_tokens)

    def state(self) -> dict:
        """Spend so far and the call log's mark (which recorded answers this state has seen), for resume."""
        with self._record_lock:  # no record lands between the two
            return {**self.budget.state(), **self._log.mark()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue the spend of a resumed run, from a client that has made no call yet.

        With the recorded calls (`recorded`) and a state that has the log's mark, the spend is that of
        the recorded calls, and the answers the state has not seen are held for the requests the
        restored strategy asks again (`optforge.llm.resumed`). Otherwise (a state from before the mark,
        no recorded calls) the spend never goes below what this client already counts: a client built
        from the store's totals knows of calls made after `state` was saved."""
        b = self.budget
        if self._log_known and MARK_KEYS[0] in state and int(state[MARK_KEYS[0]]) <= len(self._log.recorded):
            spent, calls, held, held_calls = self._log.hold(state)
            self.budget = Budget(b.max_dollars, b.max_calls, spent, calls, held_dollars=held, held_calls=held_calls)
            if held_calls:
                log.info("resume: %d recorded LLM request(s) ($%.6f) answered after the last commit are held for "
                         "the requests the strategy asks again", held_calls, float(held))
            return
        spent = max(float(state.get("spent_dollars", 0.0)), b.spent_dollars)
        calls = max(int(state.get("calls_made", 0)), b.calls_made)
        self.budget = Budget(b.max_dollars, b.max_calls, spent, calls)

    # -- calls ------------------------------------------------------------------------------------

    def complete(self, messages: Sequence[Message] | str, *, model: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None) -> LLMResponse:
        """One chat completion. Raises BudgetExhausted (no request, or no retry, left in the budget),
        LLMError (the call failed) or ReplayError (replay cannot answer: the run diverged).

        Message contents may mark measured text (`optforge.llm.measured`): the model sees it, the
        replay key leaves it out.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        keyed = [{"role": m["role"], "content": m["content"]} for m in messages]
        messages = sent_messages(keyed)
        s = self.settings
        model = model or s.model_choices[0].model
        max_tokens = int(max_tokens or s.max_tokens)
        temperature = s.temperature if temperature is None else float(temperature)
        text = prompt_text(messages)
        phash = replay_key(keyed)
        params = {"temperature": temperature, "max_tokens": max_tokens, "extra": s.extra}
        key = request_key("chat", model, phash, params)
        kwargs = {**s.extra, **self._transport(), "model": model, "messages": messages, "temperature": temperature,
                  "max_tokens": max_tokens}
        call = self._call(model, text, phash, key, self.worst_case_dollars(messages, model, max_tokens),
                          lambda lt: unpack_completion(lt.completion(**kwargs)))
        return LLMResponse(call.response, call.model, call)

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        """Embedding vectors of `texts` (one list of floats each, in order) from `llm.embedding_model`
        through litellm's `embedding` (an OpenAI-compatible `/v1/embeddings` at `llm.api_base` works).

        Counted, recorded and replayed like a chat call: one request per call, its prompt tokens
        charged at the model's input price. Raises LLMConfigError when no embedding model is set,
        BudgetExhausted, LLMError or ReplayError as `complete` does.
        """
        texts = [str(t) for t in texts]
        model = model or self.settings.embedding_model
        if not model:
            raise LLMConfigError("text embeddings need llm.embedding_model (a litellm embedding model such as "
                                 "openai/text-embedding-3-small, or the name a local server serves)")
        keyed = [{"role": "embed", "content": t} for t in texts]
        text = prompt_text(keyed)
        worst = self.price(model).cost(estimate_prompt_tokens(model, keyed), 0)

        def send(lt: Any) -> Completion:
            return unpack_embedding(lt.embedding(model=model, input=texts, **self._transport()), len(texts))

        phash = replay_key(keyed)
        call = self._call(model, text, phash, request_key("embed", model, phash, {}), worst, send)
        return [[float(x) for x in v] for v in json.loads(call.response)]

    def _call(self, model: str, text: str, phash: str, key: str, worst_dollars: float,
              send: Callable[[Any], Completion]) -> LLMCall:
        """One budgeted, recorded call (or its replay, or a held answer); raises what `complete` documents."""
        held = self._log.take(key)
        if held is not None:
            return self._use_held(held, text, key)
        reservation = self.budget.reserve(worst_dollars)
        start = time.monotonic()
        dollars = 0.0
        try:
            if self._replayer is not None:
                rec = self._replayer.answer(phash, model)
                dollars = rec.dollars
                call = LLMCall(rec.model, text, rec.response, rec.prompt_tokens, rec.completion_tokens, rec.dollars,
                               time.monotonic() - start, time.time(), phash, rec.error, rec.attempts,
                               rec.finish_reason, rec.reasoning, request_key=key)
                # the recorded retries were requests too: charge them, so the replay stops where the run did
                refused = self._charge_retries(reservation, rec.attempts - 1)
            else:
                call, refused = self._call_live(send, text, phash, key, model, start, reservation)
                dollars = call.dollars
        finally:
            self.budget.settle(reservation, dollars)
        if dollars > reservation.dollars + 1e-12:
            log.warning("call to %s cost $%.6f, above its reservation $%.6f; raise the token estimate margin",
                        model, dollars, reservation.dollars)
        self._record(call)
        if refused is not None:
            raise refused
        if call.error:
            raise LLMError(f"LLM call to {model} failed after {call.attempts} attempt(s): {call.error}")
        return call

    def _use_held(self, rec: RecordedCall, text: str, key: str) -> LLMCall:
        """A held answer (`optforge.llm.resumed`) as this call's: no request, no new record; its recorded
        dollars and requests are spent now."""
        self.budget.use_held(rec.dollars, rec.attempts)
        call = LLMCall(rec.model, text, rec.response, rec.prompt_tokens, rec.completion_tokens, rec.dollars, 0.0,
                       time.time(), rec.prompt_hash, rec.error, rec.attempts, rec.finish_reason, rec.reasoning,
                       rec.call_id, key)
        if call.error:
            raise LLMError(f"LLM call to {rec.model} failed after {call.attempts} attempt(s) (recorded before the "
                           f"resume): {call.error}")
        return call

    def _transport(self) -> dict[str, Any]:
        """Where and how litellm sends a request: api_base, key, timeout, no retries of its own."""
        s = self.settings
        kwargs: dict[str, Any] = {"timeout": s.timeout_s, "num_retries": 0, "max_retries": 0}
        if s.api_base:
            kwargs["api_base"] = s.api_base
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key
        elif s.api_base:
            kwargs["api_key"] = "no-key"  # OpenAI-compatible local servers ignore it; the SDK wants one
        return kwargs

    def _charge_retries(self, reservation: Reservation, n: int) -> BudgetExhausted | None:
        """Count `n` more requests of one call; the refusal, if the budget has no request left."""
        for _ in range(max(n, 0)):
            try:
                self.budget.add_request(reservation)
            except BudgetExhausted as e:
                return e
        return None

    def complete_many(self, requests: Sequence[Mapping[str, Any]]) -> list[LLMResponse | BaseException]:
        """Run several `complete(**request)` concurrently (at most `concurrency` requests in flight);
        results (or BudgetExhausted / LLMError) in input order. A ReplayError is raised, after the
        other requests of the batch finished.

        Daemon threads, not a ThreadPoolExecutor: an interrupted run must be able to exit without
        waiting for calls still in flight (the executor's exit hook would join them).
        """
        results: list[LLMResponse | BaseException | None] = [None] * len(requests)
        diverged: list[ReplayError] = []

        def one(i: int, request: Mapping[str, Any]) -> None:
            try:
                results[i] = self.complete(**dict(request))
            except (LLMError, BudgetExhausted) as e:
                results[i] = e
            except ReplayError as e:  # the run diverged from its recording: raised, never handed back
                diverged.append(e)
            except Exception as e:  # noqa: BLE001 - handed back in order, like the others
                results[i] = LLMError(f"{type(e).__name__}: {e}")

        order = iter(range(len(requests)))
        order_lock = threading.Lock()

        def worker() -> None:  # takes requests in input order, so concurrency 1 is strictly sequential
            while True:
                with order_lock:
                    i = next(order, None)
                if i is None:
                    return
                one(i, requests[i])

        n_workers = min(self.settings.concurrency, len(requests))
        if n_workers <= 1:
            worker()
        else:
            threads = [threading.Thread(target=worker, daemon=True, name=f"llm-call-{k}") for k in range(n_workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if diverged:
            raise diverged[0]
        return [r if r is not None else LLMError("the call produced no result") for r in results]

    def _call_live(self, send: Callable[[Any], Completion], text: str, phash: str, key: str, model: str,
                   start: float, reservation: Reservation) -> tuple[LLMCall, BudgetExhausted | None]:
        """(the call, the budget's refusal of a retry or None). Every HTTP request, retries included,
        is counted by the budget before it is sent."""
        s = self.settings
        lt = litellm()
        error = ""
        attempts = 0
        refused: BudgetExhausted | None = None
        call_id = uuid.uuid4().hex
        for attempt in range(s.max_retries + 1):
            if attempt:  # the first request was counted by the call's reservation
                refused = self._charge_retries(reservation, 1)
                if refused is not None:
                    error = f"{error}; not retried: {refused}"
                    break
            attempts = attempt + 1
            # recorded before it is sent, so that a run killed now still counts this request on resume
            self._record(LLMCall(model, text, "", 0, 0, 0.0, time.monotonic() - start, time.time(), phash,
                                 IN_FLIGHT, attempts, call_id=call_id, request_key=key))
            try:
                with self._slots:
                    out = send(lt)
            except Exception as e:  # noqa: BLE001 - classified below
                error = f"{type(e).__name__}: {str(e)[:500]}"
                if not (retryable(e) or isinstance(e, BadResponse)):
                    break
                if attempt == s.max_retries:
                    break
                wait = retry_after(e)
                if wait is None:
                    wait = s.backoff_s * (2 ** attempt)
                wait = min(wait, s.max_backoff_s)
                log.info("LLM call to %s failed (%s); retry %d/%d in %.2fs", model, type(e).__name__,
                         attempt + 1, s.max_retries, wait)
                self._sleep(wait)
                continue
            dollars = self.price(model).cost(out.prompt_tokens, out.completion_tokens)
            return LLMCall(model, text, out.content, out.prompt_tokens, out.completion_tokens, dollars,
                           time.monotonic() - start, time.time(), phash, "", attempts, out.finish_reason,
                           out.reasoning, call_id, key), None
        return LLMCall(model, text, "", 0, 0, 0.0, time.monotonic() - start, time.time(), phash, error,
                       attempts, call_id=call_id, request_key=key), refused

    def _record(self, call: LLMCall) -> None:
        with self._record_lock:
            if self.recorder is not None:
                self.recorder(call)
            self._log.add(call.call_id, final=not call.in_flight)


def _split_config(config: Any) -> tuple[Any, Any]:
    """(llm section, budget section) from a whole run config or from an llm section alone."""
    if config is None:
        return None, None
    if isinstance(config, Mapping):
        if "llm" in config or "budget" in config:
            return config.get("llm"), config.get("budget")
        return config, None
    if hasattr(config, "llm"):
        return getattr(config, "llm"), getattr(config, "budget", None)
    return config, None
