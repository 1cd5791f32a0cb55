"""The interface every counter store implements, with identical behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol


class StoreUnavailable(Exception):
    """The counter store cannot be reached (Redis down, timed out)."""


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter after an operation: whether it was applied, its value, and ms until its window ends."""

    applied: bool
    value: int
    ttl_ms: int


class TokenState(NamedTuple):
    """A token counter after an operation; `outstanding` is what live reservations hold on it."""

    applied: bool
    value: int
    outstanding: int
    ttl_ms: int


class RequestCheck(NamedTuple):
    """Request policy: check-and-update the counter by 1 against `max_value`."""

    key: str
    max_value: int
    window_ms: int


class TokenCheck(NamedTuple):
    """Token policy at admission.

    `reserve == 0`: optimistic, applied while the counter is below `max_value`.
    `reserve > 0`: reservation, applied iff value + outstanding + reserve <= max_value;
    the hold is stored under `reservation_id` until settled or `ttl_ms` passes
    (clamped to the window end).
    """

    key: str
    max_value: int
    window_ms: int
    reserve: int = 0
    reservation_id: str = ""
    ttl_ms: int = 0


class BudgetCheck(NamedTuple):
    """A monthly budget at admission, checked before both policies (read only).

    `applied` in its state is False when the counter is at or over `max_value`;
    then a `hard` budget stops the admission there (no policy is checked, no
    counter moves), a soft one lets the policies decide as usual.
    """

    key: str
    max_value: int
    window_ms: int
    hard: bool


class Admission(NamedTuple):
    """What one admission round trip decided.

    `tokens` is None when the token policy was not checked (no token limit, or
    the request policy already rejected); both policies are None when a hard
    budget stopped the admission; `budget` is None without a budget check.
    """

    request: CounterState | None
    tokens: TokenState | None
    budget: CounterState | None = None


class CounterStore(Protocol):
    async def admit(
        self,
        request: RequestCheck | None,
        tokens: TokenCheck | None,
        budget: BudgetCheck | None = None,
    ) -> Admission:
        """The budget check (if any) and both policy checks of one request, atomically.

        The request policy goes first and, when admitted, stays counted even if
        the token policy then rejects (Kuadrant sends the two policies to
        Limitador as two calls, in this order). A rejected request policy skips
        the token policy.
        """
        ...

    async def settle(
        self, key: str, window_ms: int, delta: int, reservation_id: str = ""
    ) -> TokenState:
        """Add `delta` (unconditionally, may overshoot) and drop reservation `reservation_id` if live."""
        ...

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
