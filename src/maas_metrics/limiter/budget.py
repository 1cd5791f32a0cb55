"""Monthly budget counters: one counter per user and calendar month, in the limiter's store.

A budget counter is an ordinary fixed-window counter whose key names the
month (`2026-12`) and whose window ends at the first instant of the next
month in the budget's time zone. So it lives in the same store as the rate
limits (exact across replicas and restarts on Redis), it renews by
expiring, and a counter written a moment before midnight can never leak
into the next month (its key is that month's). Dollar budgets count whole
nano-dollars: Redis counters are integers and `INCRBY` is exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from maas_metrics.limiter.store import BudgetCheck, CounterStore

NANO_PER_USD = 1_000_000_000
"""Counter units per dollar: a cost is rounded to the nearest nano-dollar once per request."""


@dataclass(frozen=True, slots=True)
class Month:
    """One calendar month of a time zone: its label and its bounds (aware datetimes)."""

    label: str
    start: datetime
    end: datetime  # the first instant of the next month

    def seconds_left(self, now: datetime) -> float:
        return max((self.end - now).total_seconds(), 0.0)


def month_of(now: datetime, timezone: str) -> Month:
    """The calendar month of `timezone` that holds the instant `now`."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    end = datetime(year, month, 1, tzinfo=zone)
    return Month(f"{local.year:04d}-{local.month:02d}", start, end)


def day_start(now: datetime, timezone: str) -> datetime:
    """00:00 of `now`'s day in `timezone`."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def budget_key(user: str, month: Month) -> str:
    # Length-prefixed like Limit.counter_key, and never equal to a limit's key (`maas-budget:`).
    return f"maas-budget:{len(user)}:{user}:{month.label}"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A user's month after an operation, in counter units (tokens or nano-dollars)."""

    used: int
    limit: int
    month: Month

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit


class BudgetCounter:
    """Reads and charges monthly budget counters through any `CounterStore` (one operation each).

    The current month of each time zone is cached until it ends, so a request
    costs a clock read and a comparison, not a calendar computation.
    """

    def __init__(self, store: CounterStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._months: dict[str, tuple[float, float, Month]] = {}  # zone -> (start, end, month)

    def check(self, user: str, limit: int, timezone: str, hard: bool) -> BudgetCheck:
        """The admission-time check of `user`'s month, for `RateLimiter.admit` (no round trip here)."""
        month, window_ms = self._month(timezone, self._clock())
        return BudgetCheck(budget_key(user, month), limit, window_ms, hard)

    def current(self, timezone: str) -> Month:
        return self._month(timezone, self._clock())[0]

    def _month(self, timezone: str, now: float) -> tuple[Month, int]:
        """The month holding unix time `now` and the ms left in it (at least 1)."""
        cached = self._months.get(timezone)
        if cached is None or not cached[0] <= now < cached[1]:
            month = month_of(datetime.fromtimestamp(now, UTC), timezone)
            cached = (month.start.timestamp(), month.end.timestamp(), month)
            self._months[timezone] = cached
        return cached[2], max(1, math.ceil((cached[1] - now) * 1000))

    async def read(self, user: str, limit: int, timezone: str) -> BudgetState:
        """The user's use of this month; changes nothing. Raises `StoreUnavailable`."""
        month, window_ms = self._month(timezone, self._clock())
        state = await self.store.check(budget_key(user, month), limit, window_ms)
        return BudgetState(state.value, limit, month)

    async def charge(self, user: str, amount: int, limit: int, timezone: str) -> BudgetState:
        """Add `amount` to this month's counter (unconditionally: a report may overshoot)."""
        month, window_ms = self._month(timezone, self._clock())
        key = budget_key(user, month)
        if amount <= 0:
            state = await self.store.check(key, limit, window_ms)
        else:
            state = await self.store.update(key, amount, window_ms)
        return BudgetState(state.value, limit, month)
