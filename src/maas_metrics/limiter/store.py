"""The interface every counter store implements, with identical behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The counter store cannot be reached (Redis down, timed out)."""


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter after an operation: whether it was applied, its value, and ms until its window ends."""

    applied: bool
    value: int
    ttl_ms: int


class CounterStore(Protocol):
    async def check_and_update(
        self, key: str, delta: int, max_value: int, window_ms: int
    ) -> CounterState:
        """Add `delta` unless `value + delta > max_value`; a missing or expired counter starts a window."""
        ...

    async def check(self, key: str, max_value: int, window_ms: int) -> CounterState:
        """`applied` is True while the counter is below `max_value`; nothing changes."""
        ...

    async def update(self, key: str, delta: int, window_ms: int) -> CounterState:
        """Add `delta` unconditionally (a token report may overshoot the max)."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` if the store cannot be reached."""
        ...

    async def close(self) -> None: ...
