"""The client against the scripted provider, through the real litellm HTTP path."""

import json
import threading
import time

import pytest

from optforge.llm import BudgetExhausted, LLMClient, LLMConfigError, LLMError
from optforge.llm.records import prompt_hash


def finished(calls):
    """A recorder that keeps final records only (each request is also recorded in flight first)."""
    return lambda call: None if call.in_flight else calls.append(call)


def test_plain_completion_is_recorded_with_tokens_and_latency(scripted):
    calls = []
    client, server, _ = scripted(["hello"], recorder=finished(calls))
    r = client.complete("say hello")
    assert r.text == "hello"
    assert len(calls) == 1
    c = calls[0]
    assert (c.model, c.prompt, c.response) == ("openai/scripted", "say hello", "hello")
    assert c.prompt_tokens == 3 and c.completion_tokens == 2  # ceil(9/4), ceil(5/4) from the server
    assert c.prompt_hash == prompt_hash("say hello")
    assert c.latency_s > 0 and c.error == "" and c.attempts == 1
    assert server.requests[0]["messages"] == [{"role": "user", "content": "say hello"}]
    assert server.requests[0]["max_tokens"] == client.settings.max_tokens


def test_429_honours_retry_after_then_500_and_truncated_json_back_off(scripted):
    script = [{"fault": "429", "retry_after": 0.7}, {"fault": "500"}, {"fault": "truncated"}, "finally"]
    client, server, sleeps = scripted(script, backoff_s=0.01)
    r = client.complete("x")
    assert r.text == "finally"
    assert r.call.attempts == 4
    assert server.served == 4
    assert sleeps == pytest.approx([0.7, 0.02, 0.04])  # retry-after wins; then backoff doubles


def test_timeout_is_retried(scripted):
    client, server, sleeps = scripted([{"fault": "timeout", "sleep_s": 2.0}, "after timeout"], timeout_s=0.4)
    t = time.monotonic()
    r = client.complete("x")
    assert r.text == "after timeout" and r.call.attempts == 2
    assert time.monotonic() - t < 2.0 + 1.5


def test_empty_completion_is_returned_not_retried(scripted):
    calls = []
    client, server, _ = scripted([{"fault": "empty"}, "unused"], recorder=finished(calls))
    r = client.complete("x")
    assert r.text == "" and server.served == 1 and calls[0].response == ""


def test_retries_exhausted_raise_and_are_recorded(scripted):
    calls = []
    client, server, sleeps = scripted([{"fault": "500"}] * 3, recorder=finished(calls), max_retries=2)
    with pytest.raises(LLMError, match="3 attempt"):
        client.complete("x")
    assert server.served == 3 and len(sleeps) == 2
    assert calls[0].error and calls[0].dollars == 0.0
    assert client.calls_made == 3  # every HTTP request counts for budget.max_llm_calls, retries included


def test_non_retryable_error_fails_at_once(scripted):
    client, server, sleeps = scripted([])  # the server answers 400 "no script entry left"
    with pytest.raises(LLMError, match="no script entry left"):
        client.complete("x")
    assert sleeps == [] and server.served == 1


def test_missing_key_variable_is_named_at_once():
    with pytest.raises(LLMConfigError, match="OPTFORGE_TEST_NO_SUCH_KEY"):
        LLMClient({"model": "openai/gpt-4o-mini", "api_key_env": "OPTFORGE_TEST_NO_SUCH_KEY"}, environ={})


def test_unknown_hosted_model_needs_prices():
    with pytest.raises(LLMConfigError, match="input_cost_per_token"):
        LLMClient({"model": "openai/not-a-model-xyz", "api_key_env": "K"}, environ={"K": "k"})


def test_dollars_from_configured_prices_hand_computed(scripted):
    script = [{"content": "a", "usage": {"prompt_tokens": 1000, "completion_tokens": 200}},
              {"content": "b", "usage": {"prompt_tokens": 10, "completion_tokens": 4000}}]
    client, _, _ = scripted(script, input_cost_per_token=2e-6, output_cost_per_token=8e-6)
    a = client.complete("x")
    b = client.complete("y")
    assert a.call.dollars == pytest.approx(1000 * 2e-6 + 200 * 8e-6)  # 0.0036
    assert b.call.dollars == pytest.approx(10 * 2e-6 + 4000 * 8e-6)  # 0.03202
    assert client.spent_dollars == pytest.approx(0.0036 + 0.03202)


def test_dollars_from_litellm_price_map(scripted):
    script = [{"content": "a", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}]
    client, _, _ = scripted(script, model="openai/gpt-4o-mini")
    r = client.complete("x")
    assert r.call.dollars == pytest.approx(1000 * 0.15e-6 + 100 * 0.6e-6)


def test_completion_tokens_are_clipped_to_max_tokens(scripted):
    client, _, _ = scripted([{"content": "z" * 400}], max_tokens=10, input_cost_per_token=0.0,
                            output_cost_per_token=1e-3)
    r = client.complete("x")
    assert r.call.completion_tokens == 10 and r.call.dollars == pytest.approx(0.01)


def test_dollar_budget_stops_at_or_below_limit(scripted):
    # each call really costs 0.004 + 0.02 = $0.024; its reservation is prompt estimate + max_tokens(50)
    script = [{"content": "r", "usage": {"prompt_tokens": 4, "completion_tokens": 20}}] * 20
    client, server, _ = scripted(script, budget={"max_dollars": 0.1}, max_tokens=50,
                                 input_cost_per_token=1e-3, output_cost_per_token=1e-3)
    made = 0
    with pytest.raises(BudgetExhausted, match="max_dollars"):
        for _ in range(20):
            client.complete("x")
            made += 1
    assert client.exhausted
    assert client.spent_dollars <= 0.1
    assert made == server.served == client.calls_made - 0  # the refused call never reached the server
    assert client.spent_dollars == pytest.approx(0.024 * made)
    # worst case per call is (est prompt + 50) * 1e-3 >= 0.067, so only one call fits in $0.1
    assert made == 1


def test_call_budget_holds_under_concurrency(scripted):
    client, server, _ = scripted({"responses": ["ok"], "cycle": True, "latency_s": 0.05},
                                 budget={"max_llm_calls": 5}, concurrency=8)
    results = client.complete_many([{"messages": f"q{i}"} for i in range(12)])
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, BudgetExhausted)]
    assert len(ok) == 5 and len(refused) == 7
    assert server.served == 5 and client.calls_made == 5 and client.exhausted


def test_dollar_budget_holds_under_concurrency(scripted):
    script = {"responses": [{"content": "r", "usage": {"prompt_tokens": 10, "completion_tokens": 30}}],
              "cycle": True, "latency_s": 0.05}
    client, server, _ = scripted(script, budget={"max_dollars": 1.0}, max_tokens=40, concurrency=6,
                                 input_cost_per_token=1e-3, output_cost_per_token=1e-2)
    errors = []

    def worker(k):
        for i in range(5):
            try:
                client.complete(f"w{k}-{i}")
            except BudgetExhausted as e:
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and client.exhausted
    assert client.spent_dollars <= 1.0
    assert server.served == client.calls_made
    assert client.spent_dollars == pytest.approx(server.served * (10e-3 + 30e-2))


def test_several_messages_are_stored_as_json(scripted):
    calls = []
    client, server, _ = scripted(["ok"], recorder=finished(calls))
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "u"}]
    client.complete(msgs)
    assert json.loads(calls[0].prompt) == msgs
    assert server.requests[0]["messages"] == msgs


def test_each_request_is_recorded_in_flight_before_it_is_sent(scripted):
    records = []
    client, server, _ = scripted([{"fault": "500"}, "ok"], recorder=records.append)

    def record(call):
        records.append((call.in_flight, call.attempts, call.call_id, server.served))

    client.recorder = record
    client.complete("x")
    (f1, a1, id1, s1), (f2, a2, id2, s2), (f3, a3, id3, s3) = records
    assert (f1, a1, s1) == (True, 1, 0) and (f2, a2, s2) == (True, 2, 1)  # written before the server saw it
    assert (f3, a3, s3) == (False, 2, 2) and id1 == id2 == id3
