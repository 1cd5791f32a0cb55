"""The hourly-by-user bars' query: the top users' clock hours, plus one "others" series.

From raw counters "others" sums every other user's hours (`top_and_others`).
From the recording rules that sum would read every user's hour samples and
edge minutes through subqueries: 13.6 s at 10,000 users x 24 h
(BENCHMARKS.md, scale). The per-tier minute level holds the same minutes
already summed over users (`rules.recording`), a few dozen series, so there
"others" is all users' hours from that level minus the top users' hours:
the same whole numbers, read in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence

from maas_metrics import contract
from maas_metrics.dashboard.promql import (
    ABSENT_LABEL,
    OTHERS,
    OTHERS_LABEL,
    RANGE_FROM,
    RANGE_TO,
    Counters,
    selector,
    set_label,
    top_and_others,
)
from maas_metrics.rules import reading, recording


def hourly_top_and_others(
    counters: Counters, counter: str, matchers: Sequence[str], top: str
) -> str:
    """Growth of `counter` per clock hour by user for the users `top` selects, plus "others"."""
    top_hours = counters.hourly(counter, (*matchers, top), (contract.USER,))
    if not (counters.recording_rules and counters.schema.user):
        return top_and_others(top_hours, counters.hourly(counter, matchers, (contract.USER,)))
    return top_and_rest(top_hours, _all_users(counters, counter, matchers))


def top_and_rest(top: str, total: str, label: str = contract.USER) -> str:
    """The rows of `top` plus one `label="others"` row: `total` (one labelless series) minus
    their sum, left out when 0. Exact for counts: whole numbers below 2^53 add up exactly."""
    rest = f"(({total}) - (sum({top}) or vector(0))) > 0"
    return f"({top}) or {set_label(set_label(rest, label, OTHERS), OTHERS_LABEL, 'true')}"


def _all_users(counters: Counters, counter: str, matchers: Sequence[str]) -> str:
    """All users' growth per clock hour as one series: the per-tier minutes when every user is
    selected; the chosen users' hour level when some are (`ABSENT_LABEL`, as `Counters` does)."""
    schema = counters.schema
    per_tier = selector(recording.per_tier_series(counter, schema), matchers)
    chosen = (*matchers, f'{ABSENT_LABEL}!~"$user"')
    users = reading.hourly_points(
        selector(recording.per_user_series(counter, schema), chosen),
        selector(recording.per_user_hour_series(counter, schema), chosen),
        RANGE_FROM,
        RANGE_TO,
    )
    everyone = reading.hourly_minutes(per_tier, RANGE_FROM, RANGE_TO)
    return f"sum(({everyone}) or ({users}))"
