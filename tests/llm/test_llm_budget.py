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
