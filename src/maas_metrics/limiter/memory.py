"""Counters in this process's memory: exact for one process, gone on restart."""

from __future__ import annotations

import time
from collections.abc import Callable

from maas_metrics.limiter.store import CounterState

_SWEEP_EVERY = 4096  # fewest writes between sweeps of expired counters


class InMemoryStore:
    """Fixed-window counters in a dict. Safe under asyncio: no await between read and write."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires_at seconds)
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
            self._writes = 0
            self._sweep_after = max(_SWEEP_EVERY, len(self._counters))

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
