"""Counters in this process's memory: exact for one process, gone on restart."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from maas_metrics.limiter.store import (
    Admission,
    BudgetCheck,
    CounterState,
    RequestCheck,
    TokenCheck,
    TokenState,
)

_SWEEP_EVERY = 4096  # fewest writes between sweeps of expired counters


class _Holds:
    """A token counter's live reservations, with their running total.

    Expired holds are only looked for once the earliest expiry has passed, so
    a hold that is committed or released in time costs O(1).
    """

    __slots__ = ("earliest", "items", "total")

    def __init__(self) -> None:
        self.items: dict[str, tuple[int, float]] = {}  # id -> (amount, expires_at)
        self.total = 0
        self.earliest = math.inf

    def add(self, reservation_id: str, amount: int, until: float) -> None:
        self.items[reservation_id] = (amount, until)
        self.total += amount
        self.earliest = min(self.earliest, until)

    def drop(self, reservation_id: str) -> None:
        entry = self.items.pop(reservation_id, None)
        if entry is not None:
            self.total -= entry[0]

    def live(self, now: float) -> int:
        if now >= self.earliest:
            for rid in [rid for rid, (_, until) in self.items.items() if until <= now]:
                self.total -= self.items.pop(rid)[0]
            self.earliest = min((until for _, until in self.items.values()), default=math.inf)
        return self.total


class InMemoryStore:
    """Fixed-window counters in a dict. Safe under asyncio: no await between read and write.

    Reservations are kept per token counter (`_Holds`); they never outlive the
    counter's window, so a new window starts with none.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires_at seconds)
        self._reservations: dict[str, _Holds] = {}
        self._writes = 0  # since the last sweep
        self._sweep_after = _SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._counters)

    def _current(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry

    def _write(self, key: str, value: int, expires_at: float, now: float) -> None:
        self._counters[key] = (value, expires_at)
        self._writes += 1
        # Sweep after as many writes as there were live counters at the last sweep: the
        # sweep's cost is then amortised O(1) per write, and memory stays within about
        # twice the live counters (see BENCHMARKS.md, "expiry sweep cost").
        if self._writes >= self._sweep_after:
            self._counters = {k: e for k, e in self._counters.items() if e[1] > now}
            self._reservations = {
                k: r for k, r in self._reservations.items() if k in self._counters
            }
            self._writes = 0
            self._sweep_after = max(_SWEEP_EVERY, len(self._counters))

    def _outstanding(self, key: str, now: float) -> int:
        held = self._reservations.get(key)
        return 0 if held is None else held.live(now)

    def _request(self, check: RequestCheck, now: float) -> CounterState:
        entry = self._current(check.key, now)
        value, expires_at = entry if entry else (0, now + check.window_ms / 1000)
        ttl_ms = int((expires_at - now) * 1000)
        if value + 1 > check.max_value:
            return CounterState(False, value, ttl_ms)
        self._write(check.key, value + 1, expires_at, now)
        return CounterState(True, value + 1, ttl_ms)

    def _tokens(self, check: TokenCheck, now: float) -> TokenState:
        entry = self._current(check.key, now)
        if entry is None:
            self._reservations.pop(check.key, None)  # the window they were clamped to is over
            value, expires_at = 0, now + check.window_ms / 1000
        else:
            value, expires_at = entry
        ttl_ms = int((expires_at - now) * 1000)
        if check.reserve <= 0:
            return TokenState(value < check.max_value, value, 0, ttl_ms)
        held = self._outstanding(check.key, now)
        if value + held + check.reserve > check.max_value:
            return TokenState(False, value, held, ttl_ms)
        if entry is None:
            self._write(check.key, 0, expires_at, now)  # a reservation starts the window
        until = min(now + check.ttl_ms / 1000, expires_at)
        holds = self._reservations.get(check.key)
        if holds is None:
            holds = self._reservations[check.key] = _Holds()
        holds.add(check.reservation_id, check.reserve, until)
        return TokenState(True, value, held + check.reserve, ttl_ms)

    async def admit(
        self,
        request: RequestCheck | None,
        tokens: TokenCheck | None,
        budget: BudgetCheck | None = None,
    ) -> Admission:
        now = self._clock()
        spent = None
        if budget is not None:
            entry = self._current(budget.key, now)
            value, expires_at = entry if entry else (0, now + budget.window_ms / 1000)
            spent = CounterState(value < budget.max_value, value, int((expires_at - now) * 1000))
            if budget.hard and not spent.applied:
                return Admission(None, None, spent)
        state = None
        if request is not None:
            state = self._request(request, now)
            if not state.applied:
                return Admission(state, None, spent)
        return Admission(state, None if tokens is None else self._tokens(tokens, now), spent)

    async def settle(
        self, key: str, window_ms: int, delta: int, reservation_id: str = ""
    ) -> TokenState:
        now = self._clock()
        if reservation_id:
            held = self._reservations.get(key)
            if held is not None:
                held.drop(reservation_id)
        entry = self._current(key, now)
        if entry is None:
            self._reservations.pop(key, None)
            if delta <= 0:
                return TokenState(True, 0, 0, window_ms)
            entry = (0, now + window_ms / 1000)
        value, expires_at = entry
        if delta > 0:
            value += delta
            self._write(key, value, expires_at, now)
        return TokenState(True, value, self._outstanding(key, now), int((expires_at - now) * 1000))

    async def check_and_update(
        self, key: str, delta: int, max_value: int, window_ms: int
    ) -> CounterState:
        now = self._clock()
        entry = self._current(key, now)
        value, expires_at = entry if entry else (0, now + window_ms / 1000)
        ttl_ms = int((expires_at - now) * 1000)
        if value + delta > max_value:
            return CounterState(False, value, ttl_ms)
        self._write(key, value + delta, expires_at, now)
        return CounterState(True, value + delta, ttl_ms)

    async def check(self, key: str, max_value: int, window_ms: int) -> CounterState:
        now = self._clock()
        entry = self._current(key, now)
        if entry is None:
            return CounterState(max_value > 0, 0, window_ms)
        value, expires_at = entry
        return CounterState(value < max_value, value, int((expires_at - now) * 1000))

    async def update(self, key: str, delta: int, window_ms: int) -> CounterState:
        now = self._clock()
        entry = self._current(key, now)
        value, expires_at = entry if entry else (0, now + window_ms / 1000)
        self._write(key, value + delta, expires_at, now)
        return CounterState(True, value + delta, int((expires_at - now) * 1000))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()
        self._reservations.clear()
