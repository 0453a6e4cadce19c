import threading

import pytest

from optforge.llm import Budget, BudgetExhausted


def test_reserve_settle_replaces_reservation_by_real_cost():
    b = Budget(max_dollars=1.0)
    r1 = b.reserve(0.6)
    with pytest.raises(BudgetExhausted):
        b.reserve(0.5)  # 0.6 held + 0.5 > 1.0
    b.settle(r1, 0.1)
    assert b.spent_dollars == pytest.approx(0.1)
    r2 = b.reserve(0.5)
    b.settle(r2, 0.5)
    assert b.spent_dollars == pytest.approx(0.6)
    assert b.exhausted  # a refusal happened


def test_call_limit_counts_reservations():
    b = Budget(max_calls=2)
    b.settle(b.reserve(0), 0)
    assert not b.exhausted
    b.settle(b.reserve(0), 0)
    assert b.exhausted and b.calls_made == 2
    with pytest.raises(BudgetExhausted, match="max_llm_calls=2"):
        b.reserve(0)


def test_concurrent_reservations_never_overshoot():
    b = Budget(max_dollars=10.0, max_calls=10_000)
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(500):
            try:
                r = b.reserve(0.07)
            except BudgetExhausted:
                return
            b.settle(r, 0.07)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.spent_dollars <= 10.0
    assert b.spent_dollars > 10.0 - 0.07 - 1e-9  # and it used the budget up to the last whole call
    assert b.calls_made == round(b.spent_dollars / 0.07)


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="max_dollars"):
        Budget(max_dollars=-1)
    with pytest.raises(ValueError, match="max_llm_calls"):
        Budget(max_calls=-1)


def test_max_llm_calls_bounds_the_requests_served_with_timeouts_and_retries(scripted, tmp_path):
    """budget.max_llm_calls counts HTTP requests, retries included: timed-out requests were received
    by the server, so they count, and a retry the budget has no request left for is not sent."""
    from optforge.store import Store

    store = Store(tmp_path)
    timeout = {"fault": "timeout", "sleep_s": 1.0}
    script = {"responses": [timeout, "a", "b", timeout, timeout, "c", "d", timeout, "e"], "cycle": True}
    client, server, _ = scripted(script, recorder=store.record_llm_call, budget={"max_llm_calls": 6},
                                 timeout_s=0.3, max_retries=3, concurrency=2)
    outcomes = []
    for _ in range(4):
        for r in client.complete_many([{"messages": f"prompt {len(outcomes)} {k}"} for k in range(2)]):
            outcomes.append(type(r).__name__)
        if client.exhausted:
            break
    assert server.served <= 6
    assert client.calls_made == server.served == store.llm_spend()[1]  # the store counts what was served
    assert "BudgetExhausted" in outcomes and "LLMResponse" in outcomes
    assert sum(c["attempts"] for c in store.llm_calls()) == server.served
    with pytest.raises(BudgetExhausted, match="max_llm_calls=6"):
        client.complete("one more")
    assert server.served <= 6


def test_spend_does_not_depend_on_the_order_calls_settle_in():
    # concurrent calls settle in completion order; a replay must report the recorded run's spend exactly
    import itertools

    from optforge.llm.budget import Budget

    costs = [0.0123, 0.0001, 1e-7, 0.0099, 0.00071]
    seen = set()
    for order in itertools.permutations(costs):
        b = Budget()
        for c in order:
            b.settle(b.reserve(0.1), c)
        seen.add(b.spent_dollars)
    assert len(seen) == 1
