"""Every panel target and the report count series we do not control, within 1 % (or +-1) of the truth.

The history is exposed as a real Limitador exposes it (`build_history(lazy=True)`):
every series is born at its first value (`limited_calls` at 1, token hits at
their first report), a restart removes every series and each is re-created at
its next hit with the post-restart value; 30 s scrapes; a user who joins inside
the 1 h range, one whose only request makes a single sample at the range's end,
and one whose only request lands just before the restart (a single sample, never
re-created); over 24 h, rare series born inside the range and reset by the restart
in it too. The truth is the simulated events added up in plain Python.

Recording rules are evaluated the way a Prometheus server evaluates a rule
group: by the real server's engine at fixed times RULE_OFFSET = 37 s after an
hour plus whole minutes (not on the 30 s scrape grid), each result stored at
its evaluation time (`backfill_recording_rules_at`). A live server would need
the 25 h in real time; `promtool tsdb create-blocks-from rules` was not used
because it restarts its evaluations at each 2 h block boundary (on the scrape
grid), so only its first block would be off the grid.
Backfilled blocks carry no staleness markers, so no
range starts within the 5 min lookback after the restart (a live Prometheus
marks the vanished series stale at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from maas_metrics.dashboard.variables import Selection
from maas_metrics.report import ReportRequest, TimeRange, build_report
from maas_metrics.rules.recording import INTERVAL_SECONDS
from tests.history import (
    HITS,
    LIMITED,
    ONLY_LIMITED_USER,
    build_history,
)
from tests.panels import check_close, history_api, run, targets
from tests.test_dashboard_queries import (
    CONFIG,
    EXPECTED,
    RAW,
    RULES,
    Case,
    Env,
)

HOUR = 3600
SCRAPE = 30
RULE_OFFSET = 37
HOURS = 25.5
RESTART = 24 * HOUR + 1200  # inside both ranges
NEWCOMER, ONCE, GONE = "newcomer", "once", "gone"
# (range end after the history start, length)
RANGES = {"1h": (25 * HOUR, HOUR), "24h": (int(HOURS * HOUR), 24 * HOUR)}
JOINERS = (
    (NEWCOMER, RESTART + 900, 25 * HOUR),  # born inside the 1 h range, after the restart
    (ONCE, 25 * HOUR - 20, 25 * HOUR - 20),  # one request: a single sample at the range end
    (GONE, RESTART - 10, RESTART - 10),  # one request, then the restart: never re-created
)
SELECTIONS = {
    "all": Selection(),
    "specific": Selection(
        namespace=[CONFIG.namespaces.tokens, CONFIG.namespaces.requests],
        tier=["free", "premium"],
        user=["alice", "eve.smith+1", ONLY_LIMITED_USER, NEWCOMER, ONCE, GONE],
        model=["granite-8b", "llama-3-8b"],
    ),
}
# Absolute tolerance per target beyond 1 %: one count (hits, calls), one hit at the highest
# price (cost), one count in the window (rates), 1 % (ratios), one unit of the smallest limit.
ONE_HIT_COST = 0.02
ABSOLUTE: dict[str, float] = {
    "success_rate": 0.01,
    "success_rate_by_tier": 0.01,
    "total_cost": ONE_HIT_COST,
    "top_cost_users": ONE_HIT_COST,
    "revenue_by_tier": ONE_HIT_COST,
}


class OffsetCase(Case):
    """What a query at time t can see: the events up to the last scrape at or before t.

    With recording rules, the edges first snap to the rules' evaluation grid,
    which starts RULE_OFFSET after the history start (not on a scrape).
    """

    def snap(self, moment: int) -> int:
        return moment - (moment - self.history.start) % SCRAPE

    rule_offset = RULE_OFFSET

    def edges(self, after: int, until: int) -> tuple[int, int]:
        after, until = super().edges(after, until)
        return self.snap(after), self.snap(until)

    def limit_window(self, seconds: int) -> tuple[int, int]:
        after, until = super().limit_window(seconds)
        return self.snap(after), self.snap(until)

    def step_windows(self, step: int, length: int, *, rate: bool) -> list[tuple[int, int]]:
        windows = super().step_windows(step, length, rate=rate)
        return [(self.snap(a), self.snap(b)) for a, b in windows]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    start = (int(time.time()) // HOUR - 27) * HOUR
    history = build_history(
        CONFIG,
        start=start,
        hours=HOURS,
        restart_after_seconds=RESTART,
        bursts_after_seconds=(RESTART - 300,),
        scrape_interval=SCRAPE,
        lazy=True,
        joiners=JOINERS,
    )
    with history_api(tmp_path_factory.mktemp("prometheus"), history, RULE_OFFSET) as api:
        yield Env(history, api)


def tolerance(panel: str, ref_id: str, want: float) -> float:
    if panel == "quota_headroom":
        smallest = min(
            (
                limit.max
                for t in CONFIG.tiers
                for limit in (t.token_limit, t.request_limit)
                if limit
            ),
        )
        return max(0.01 * abs(want), 1 / smallest)
    absolute = ABSOLUTE.get(panel, 1.0)
    if panel in ("hits_rate_by_tier", "calls_by_tier"):
        absolute = 1 / INTERVAL_SECONDS
    if panel == "details":
        absolute = {"D": 0.01, "E": ONE_HIT_COST}.get(ref_id, 1.0)
    return max(0.01 * abs(want), absolute)


@pytest.mark.parametrize("variant", ["raw", "rules"])
@pytest.mark.parametrize("range_name", sorted(RANGES))
@pytest.mark.parametrize("selection_name", sorted(SELECTIONS))
@pytest.mark.parametrize("target", targets(RAW), ids=lambda t: f"{t[0]}.{t[1]}")
def test_panel_counts_series_born_inside_the_range(
    env: Env,
    target: tuple[str, str],
    selection_name: str,
    range_name: str,
    variant: str,
) -> None:
    offset, length = RANGES[range_name]
    rules = variant == "rules"
    case = OffsetCase(
        env.history, SELECTIONS[selection_name], env.history.start + offset, length, rules
    )
    expected = EXPECTED[target](case)
    # With rules the chosen users' last token window ends at the rules' latest evaluation,
    # before `once`'s request (20 s before the range end): nothing to show, and none shown.
    nothing_yet = target == ("quota_headroom", "A") and rules and selection_name == "specific"
    assert expected.values or (nothing_yet and range_name == "1h"), (
        "the history must give every panel something to show"
    )
    actual = run(env.api, RULES if variant == "rules" else RAW, case, *target)
    check_close(actual, expected, lambda want: tolerance(*target, want))


def test_history_has_what_plain_increase_misses(env: Env) -> None:
    """The data is what a lazy source produces: births above 0, single samples, a re-creation."""
    history, api = env.history, env.api
    end = history.start + RANGES["1h"][0]
    once = api.query(f'count_over_time(authorized_calls{{user="{ONCE}"}}[1h])', time=end)
    assert once and {s.value for s in once} == {1.0}
    gone = api.query(f'count_over_time(authorized_calls{{user="{GONE}"}}[1h])', time=end)
    assert gone and {s.value for s in gone} == {1.0}
    first = api.query(f'min_over_time({LIMITED}{{user="{NEWCOMER}"}}[1h])', time=end)
    born_above_zero = api.query(f'min_over_time({HITS}{{user="{NEWCOMER}"}}[1h]) > 0', time=end)
    assert first and born_above_zero
    # plain increase() loses these counts; the panels above do not
    plain = api.query(f'sum(increase(authorized_calls{{user=~"{ONCE}|{GONE}"}}[1h]))', time=end)
    assert not plain or plain[0].value == 0


REPORT_KEYS = ("limitador_namespace", "user", "tier", "model")


@pytest.mark.parametrize("range_name", sorted(RANGES))
@pytest.mark.parametrize("step_hours", [None, 1])
def test_report_counts_series_born_inside_the_range(
    env: Env, range_name: str, step_hours: int | None
) -> None:
    """Tokens, allowed and limited per row within 1 % (+-1) of the events, in one window or hourly ones."""
    offset, length = RANGES[range_name]
    until = env.history.start + offset
    report_request = ReportRequest(
        range=TimeRange(
            datetime.fromtimestamp(until - length, UTC), datetime.fromtimestamp(until, UTC)
        ),
        by=("namespace", "user", "tier", "model"),
        resolution=SCRAPE,
        step=None if step_hours is None else step_hours * HOUR,
    )
    rows = {row.key: row.totals for row in build_report(env.api, CONFIG, report_request).rows}
    history = env.history

    def truth(metric: str, tokens_only: bool) -> dict[tuple[str, ...], float]:
        raw = history.total(
            metric,
            until - length,
            until,
            by=REPORT_KEYS,
            where=lambda lb: (
                not tokens_only or lb["limitador_namespace"] != history.request_namespace
            ),
        )
        return {tuple(dict(k)[n] for n in REPORT_KEYS): v for k, v in raw.items()}

    expected = {
        "tokens": truth(HITS, True),
        "allowed": truth("authorized_calls", False),
        "limited": truth(LIMITED, False),
    }
    assert {ONCE, GONE, NEWCOMER} <= {key[1] for key in expected["allowed"]}
    for field_name, want in expected.items():
        for key in {*want, *rows}:
            got = getattr(rows[key], field_name) if key in rows else 0.0
            w = want.get(key, 0.0)
            assert abs(got - w) <= max(0.01 * w, 1.0), (field_name, key, got, w)
