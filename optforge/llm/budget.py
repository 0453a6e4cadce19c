"""Dollar and request budgets that hold under concurrency: reserve the worst case, settle the real cost.

A call first reserves its worst-case cost (prompt tokens plus max_tokens at the model's prices) and
its first HTTP request. If the reservation would take spent + reserved past `max_dollars`, or the
request count past `max_llm_calls`, the call is refused and the budget is marked exhausted; the run
stops cleanly. Each retry of the call is one more request, counted by `add_request` before it is
sent, so `max_llm_calls` bounds the requests a provider serves, retries included. After the call
the reservation is replaced by the real cost, so the spent total never exceeds the limit as long
as a call never costs more than its reservation (providers clip output at max_tokens).

A resumed run may start with calls *held*: answered and paid for by the killed run after its last
commit, and not yet asked again (`optforge.llm.resumed`). Held calls count against the limits (a new
call must fit beside them) but are not spent until the resumed run uses their answers (`use_held`),
so the spent totals and `exhausted` follow the uninterrupted run's.
"""

from __future__ import annotations

import math
from fractions import Fraction
import threading
from dataclasses import dataclass
from typing import Any, Mapping


class BudgetExhausted(RuntimeError):
    """A call was refused because it could exceed `budget.max_dollars` or `budget.max_llm_calls`."""


@dataclass(frozen=True)
class Reservation:
    id: int
    dollars: float


class Budget:
    """Thread-safe spend tracking for one run. `None` limits are unlimited."""

    def __init__(self, max_dollars: float | None = None, max_calls: int | None = None,
                 spent_dollars: float | Fraction = 0.0, calls_made: int = 0, *,
                 held_dollars: float | Fraction = 0.0, held_calls: int = 0):
        if max_dollars is not None and not (math.isfinite(max_dollars) and max_dollars >= 0):
            raise ValueError(f"budget.max_dollars={max_dollars!r} must be a finite number >= 0 (or null)")
        if max_calls is not None and max_calls < 0:
            raise ValueError(f"budget.max_llm_calls={max_calls!r} must be >= 0 (or null)")
        self.max_dollars = max_dollars
        self.max_calls = max_calls
        self._lock = threading.Lock()
        # exact (a Fraction of floats): concurrent calls settle in any order, and a replayed run must
        # report the same spend as the run it replays, to the last bit
        self._spent = _exact(spent_dollars)
        self._calls = int(calls_made)
        self._held = _exact(held_dollars)
        self._held_calls = int(held_calls)
        self._reserved: dict[int, float] = {}
        self._next = 0
        self._exhausted = False
        self.reason = ""

    def reserve(self, worst_dollars: float) -> Reservation:
        """Hold `worst_dollars` for one call, or raise BudgetExhausted without making it."""
        worst = max(0.0, float(worst_dollars))
        with self._lock:
            if self.max_calls is not None and self._calls + self._held_calls + 1 > self.max_calls:
                self._exhausted = True
                self.reason = (f"budget.max_llm_calls={self.max_calls} reached ({self._calls} requests made, "
                               f"retries included{self._held_note()})")
                raise BudgetExhausted(self.reason)
            if self.max_dollars is not None:
                held = float(self._spent + self._held) + sum(self._reserved.values())
                if held + worst > self.max_dollars:
                    self._exhausted = True
                    self.reason = (
                        f"budget.max_dollars={self.max_dollars} would be exceeded: spent ${float(self._spent):.6f}, "
                        f"reserved ${held - float(self._spent):.6f}, this call may cost up to ${worst:.6f}"
                    )
                    raise BudgetExhausted(self.reason)
            self._next += 1
            self._calls += 1
            self._reserved[self._next] = worst
            return Reservation(self._next, worst)

    def add_request(self, reservation: Reservation) -> None:
        """Count one more HTTP request (a retry) of the call holding `reservation`, or raise
        BudgetExhausted without it. Its dollars are already held: a failed request costs nothing,
        and the reservation covers the one that succeeds."""
        with self._lock:
            if reservation.id not in self._reserved:
                raise ValueError(f"reservation {reservation.id} is settled; count requests before settling")
            if self.max_calls is not None and self._calls + self._held_calls + 1 > self.max_calls:
                self._exhausted = True
                self.reason = (f"budget.max_llm_calls={self.max_calls} reached ({self._calls} requests made, "
                               f"retries included{self._held_note()})")
                raise BudgetExhausted(self.reason)
            self._calls += 1

    def settle(self, reservation: Reservation, dollars: float) -> None:
        """Replace a reservation by the call's real cost."""
        with self._lock:
            self._reserved.pop(reservation.id, None)
            self._spent += Fraction(max(0.0, float(dollars)))

    def use_held(self, dollars: float, requests: int) -> None:
        """A held call's answer is used now: its dollars and requests, as recorded, become spent."""
        with self._lock:
            d, n = _exact(dollars), max(int(requests), 0)
            self._held, self._held_calls = max(self._held - d, Fraction(0)), max(self._held_calls - n, 0)
            self._spent += d
            self._calls += n

    def _held_note(self) -> str:
        return f", {self._held_calls} more held for answers to be used again" if self._held_calls else ""

    @property
    def spent_dollars(self) -> float:
        with self._lock:
            return float(self._spent)

    @property
    def calls_made(self) -> int:
        """HTTP requests counted so far, retries included (what `max_llm_calls` limits)."""
        with self._lock:
            return self._calls

    @property
    def exhausted(self) -> bool:
        """True once a call was refused, or when the call budget has no call left."""
        with self._lock:
            return self._exhausted or (self.max_calls is not None and self._calls >= self.max_calls)

    @property
    def held(self) -> tuple[float, int]:
        """(dollars, requests) of the held calls not used yet."""
        with self._lock:
            return float(self._held), self._held_calls

    def state(self) -> dict:
        with self._lock:
            return {"spent_dollars": float(self._spent), "calls_made": self._calls}


def _exact(dollars: float | Fraction) -> Fraction:
    """Dollars as an exact Fraction (of the float, or the Fraction itself); negative counts as 0."""
    d = dollars if isinstance(dollars, Fraction) else Fraction(float(dollars))
    return max(d, Fraction(0))


def budget_limits(config: Any) -> tuple[float | None, int | None]:
    """(max_dollars, max_llm_calls) from a `budget` mapping or dataclass; missing means unlimited."""
    if config is None:
        return None, None
    get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
    md, mc = get("max_dollars", None), get("max_llm_calls", None)
    return (None if md is None else float(md)), (None if mc is None else int(mc))
