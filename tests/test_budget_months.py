"""Calendar months of a budget: renewal at the first instant of the next month, in its time zone.

The expected instants are written out by hand (not computed by the code under test).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from maas_metrics.limiter import InMemoryStore
from maas_metrics.limiter.budget import BudgetCounter, budget_key, month_of


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("instant", "zone", "label", "renews"),
    [
        ("2026-12-31T23:59:59.999+00:00", "UTC", "2026-12", "2027-01-01T00:00:00+00:00"),
        ("2027-01-01T00:00:00+00:00", "UTC", "2027-01", "2027-02-01T00:00:00+00:00"),
        # New York is UTC-5 in winter: its December ends at 05:00 UTC on January 1st.
        ("2027-01-01T04:59:59+00:00", "America/New_York", "2026-12", "2027-01-01T05:00:00+00:00"),
        ("2027-01-01T05:00:00+00:00", "America/New_York", "2027-01", "2027-02-01T05:00:00+00:00"),
        # Kiritimati is UTC+14: its January starts at 10:00 UTC on December 31st.
        ("2026-12-31T10:00:00+00:00", "Pacific/Kiritimati", "2027-01", "2027-01-31T10:00:00+00:00"),
        # A month that ends on a daylight-saving change: Paris, March 2027 (UTC+1 -> +2 on the 28th).
        ("2027-03-31T21:59:00+00:00", "Europe/Paris", "2027-03", "2027-03-31T22:00:00+00:00"),
        ("2028-02-29T12:00:00+00:00", "UTC", "2028-02", "2028-03-01T00:00:00+00:00"),  # leap day
    ],
)
def test_month_bounds(instant: str, zone: str, label: str, renews: str) -> None:
    month = month_of(datetime.fromisoformat(instant), zone)
    assert month.label == label
    assert month.end.astimezone(UTC) == datetime.fromisoformat(renews)


def test_a_new_month_starts_at_zero_and_the_counter_expires_at_the_month_end() -> None:
    now = [at("2026-12-31T23:59:58+00:00")]
    monotonic = [1000.0]
    store = InMemoryStore(clock=lambda: monotonic[0])
    counter = BudgetCounter(store, clock=lambda: now[0])

    async def scenario() -> None:
        charged = await counter.charge("ann", 70, 100, "UTC")
        assert (charged.used, charged.month.label) == (70, "2026-12")
        assert (await counter.read("ann", 100, "UTC")).used == 70
        assert (await counter.read("bob", 100, "UTC")).used == 0  # per user
        # One second later in the same month: still there.
        now[0] += 1
        monotonic[0] += 1
        assert (await counter.read("ann", 100, "UTC")).used == 70
        # Past midnight: January's counter, empty.
        now[0] += 1.5
        monotonic[0] += 1.5  # 2.5 s after the charge: past its 2 s window
        january = await counter.read("ann", 100, "UTC")
        assert (january.used, january.month.label) == (0, "2027-01")
        # December's counter expired with its window (2 s after the charge).
        december = await store.check(budget_key("ann", charged.month), 100, 1000)
        assert december.value == 0

    asyncio.run(scenario())
