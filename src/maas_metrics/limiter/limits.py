"""What a limit is and what a check decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `max_value` hits per fixed window of `seconds`, counted per counter variable (the user).

    As in Limitador, a counter's window starts at its first hit and the counter
    expires `seconds` later; it is not a sliding window.
    """

    namespace: str
    name: str
    max_value: int
    seconds: int

    def counter_key(self, user: str) -> str:
        # Length-prefixing the namespace keeps keys unambiguous whatever characters users hold.
        return f"maas:{len(self.namespace)}:{self.namespace}:{self.name}:{user}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check.

    `degraded` is True when the counter store could not be reached and the
    configured failure mode decided instead of the counter. `remaining`
    already discounts `outstanding` (tokens held by live reservations).
    """

    allowed: bool
    limit: Limit
    remaining: int
    reset_seconds: float
    degraded: bool = False
    outstanding: int = 0


class Reservation(NamedTuple):
    """Tokens held for one admitted request until its usage is committed or the hold expires."""

    id: str
    limit: Limit
    user: str
    amount: int


class Admitted(NamedTuple):
    """Both policies' decisions for one request, and the reservation it holds (if any).

    `tokens` is None when the token policy was not checked: no token limit, or
    the request policy rejected first (or a hard budget before both).
    """

    requests: Decision | None
    tokens: Decision | None
    reservation: Reservation | None = None
    budget: tuple[bool, int] | None = None  # a budget check: (below its max, the month's use)
