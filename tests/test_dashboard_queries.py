"""Every panel query against a real Prometheus holding a known history equals the truth.

The history (tests/history.py) has a counter reset, a user who is only ever
limited, two token namespaces plus the request namespace and all three
tiers. Each query is expanded as Grafana expands it, for "All" and for a
specific selection, over two time ranges, and compared with totals computed
from the simulated events in plain Python. Raw-counter queries are exact;
with recording rules the range edges snap to the rules' one-minute grid
(the documented resolution), which the expectation follows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date

import pytest

from maas_metrics.config import Config, load_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.variables import Selection, expand
from maas_metrics.prometheus import PrometheusAPI
from tests.conftest import EXAMPLE_CONFIG
from tests.history import (
    CALLS,
    HITS,
    LIMITED,
    ONLY_LIMITED_USER,
    History,
    Labels,
    build_history,
)
from tests.panels import (
    HOUR,
    RATE_INTERVAL,
    Expect,
    RangeTruth,
    check,
    count_by,
    history_api,
    ratio,
    run,
    targets,
    top_options,
)

PRICE_DAY = date(2025, 6, 1)

CONFIG = load_config(EXAMPLE_CONFIG)
RAW = build_catalogue(CONFIG, price_date=PRICE_DAY)
RULES = build_catalogue(CONFIG, recording_rules=True, price_date=PRICE_DAY)

SELECTIONS = {
    "all": Selection(),
    "specific": Selection(
        namespace=[CONFIG.namespaces.tokens, CONFIG.namespaces.requests],
        tier=["free", "premium"],
        user=["alice", "eve.smith+1", ONLY_LIMITED_USER, "dave"],
        model=["granite-8b", "llama-3-8b"],
    ),
}
# (end of range after history start, range length): one with the counter reset in it, one long.
RANGES = {"1h": (2 * HOUR + 1800, HOUR), "3h15m": (3 * HOUR + 1800, 3 * HOUR + 900)}


@dataclass
class Env:
    history: History
    api: PrometheusAPI


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    start = (int(time.time()) // HOUR - 5) * HOUR
    history = build_history(CONFIG, start=start)
    with history_api(tmp_path_factory.mktemp("prometheus"), history) as api:
        yield Env(history, api)


# --- the truth ---------------------------------------------------------------------------------


@dataclass
class Case(RangeTruth):
    """One selection over one range, computing what each panel must show from the events."""

    history: History
    selection: Selection
    end: int
    length: int
    rules: bool

    @property
    def config(self) -> Config:
        return self.history.config

    def picks(self, labels: Mapping[str, str], *, tokens_only: bool, models: bool = True) -> bool:
        if tokens_only and labels["limitador_namespace"] == self.history.request_namespace:
            return False
        for name, label in (
            ("namespace", "limitador_namespace"),
            ("tier", "tier"),
            ("user", "user"),
        ):
            choice = self.selection.choice(name)
            if isinstance(choice, tuple) and labels[label] not in choice:
                return False
        choice = self.selection.choice("model")
        return not (models and isinstance(choice, tuple) and labels["model"] not in choice)

    def window_totals(
        self, metric: str, windows: list[tuple[int, int]], by: tuple[str, ...], tokens_only: bool
    ) -> list[dict[Labels, float]]:
        return self.history.totals_at(
            metric, windows, by=by, where=lambda labels: self.picks(labels, tokens_only=tokens_only)
        )

    def cost(self, by: tuple[str, ...]) -> dict[Labels, float]:
        keys = tuple(sorted({*by, "tier", "model"}))
        out: dict[Labels, float] = defaultdict(float)
        for key, hits in self.hits(keys).items():
            labels = dict(key)
            price = self.config.tier(labels["tier"]).price_per_hit_on(PRICE_DAY, labels["model"])
            out[tuple((k, labels[k]) for k in sorted(by))] += hits * price
        return dict(out)

    def quota(self, policy: str) -> dict[Labels, float]:
        """Usage over each tier's window (raw series, no model filter) / the tier's max."""
        out: dict[Labels, float] = {}
        for tier in self.config.tiers:
            limit = tier.token_limit if policy == "tokens" else tier.request_limit
            if limit is None:
                continue

            def where(labels: Mapping[str, str], tier_name: str = tier.name) -> bool:
                is_request = labels["limitador_namespace"] == self.history.request_namespace
                if is_request != (policy == "requests") or labels["tier"] != tier_name:
                    return False
                return self.picks(labels, tokens_only=False, models=False)

            used = self.history.totals_at(
                HITS,
                [self.limit_window(limit.window_seconds)],
                by=("limitador_namespace", "user", "tier"),
                where=where,
            )[0]
            out.update({k: v / limit.max for k, v in used.items()})
        return out


DETAIL = ("limitador_namespace", "model", "tier", "user")

EXPECTED: dict[tuple[str, str], Callable[[Case], Expect]] = {
    ("total_hits", "A"): lambda c: Expect({(): sum(c.hits(()).values())}),
    ("active_users", "A"): lambda c: Expect({(): float(len(c.active(("user",))))}),
    ("success_rate", "A"): lambda c: Expect(c.success(()), keep_zeros=True),
    ("total_cost", "A"): lambda c: Expect({(): sum(c.cost(()).values())}),
    ("hits_rate_by_tier", "A"): lambda c: Expect(c.rates(HITS, ("tier",), tokens_only=True)),
    ("calls_by_tier", "A"): lambda c: Expect(c.rates(CALLS, ("tier",), tokens_only=False)),
    ("calls_by_tier", "B"): lambda c: Expect(c.rates(LIMITED, ("tier",), tokens_only=False)),
    ("success_rate_by_tier", "A"): lambda c: Expect(
        ratio(
            c.rates(CALLS, ("tier",), tokens_only=False),
            c.rates(LIMITED, ("tier",), tokens_only=False),
        ),
        keep_zeros=True,
    ),
    ("hourly_hits_by_user", "A"): lambda c: Expect(c.hourly(HITS, ("user",), tokens_only=True)),
    ("hits_by_user_tier", "A"): lambda c: Expect(c.hits(("tier", "user"))),
    ("top_users", "A"): lambda c: Expect(c.hits(("tier", "user")), top=10),
    ("top_cost_users", "A"): lambda c: Expect(c.cost(("tier", "user")), top=5),
    ("hits_by_tier", "A"): lambda c: Expect(c.hits(("tier",))),
    ("tier_distribution", "A"): lambda c: Expect(count_by(c.active(("tier", "user")), "tier")),
    ("model_popularity", "A"): lambda c: Expect(c.hits(("model",))),
    ("revenue_by_tier", "A"): lambda c: Expect(c.cost(("tier",))),
    ("quota_headroom", "A"): lambda c: Expect(c.quota("tokens"), top=10),
    ("quota_headroom", "B"): lambda c: Expect(c.quota("requests"), top=10),
    ("details", "A"): lambda c: Expect(c.hits(DETAIL)),
    ("details", "B"): lambda c: Expect(c.totals(CALLS, DETAIL, tokens_only=False)),
    ("details", "C"): lambda c: Expect(c.totals(LIMITED, DETAIL, tokens_only=False)),
    ("details", "D"): lambda c: Expect(c.success(DETAIL), keep_zeros=True),
    ("details", "E"): lambda c: Expect(c.cost(DETAIL)),
}


def test_every_target_has_an_expectation() -> None:
    assert set(targets(RAW)) == set(EXPECTED)
    assert set(targets(RULES)) == set(EXPECTED)


@pytest.mark.parametrize("variant", ["raw", "rules"])
@pytest.mark.parametrize("range_name", sorted(RANGES))
@pytest.mark.parametrize("selection_name", sorted(SELECTIONS))
@pytest.mark.parametrize("target", targets(RAW), ids=lambda t: f"{t[0]}.{t[1]}")
def test_panel_query_returns_the_truth(
    env: Env, target: tuple[str, str], selection_name: str, range_name: str, variant: str
) -> None:
    offset, length = RANGES[range_name]
    rules = variant == "rules"
    case = Case(env.history, SELECTIONS[selection_name], env.history.start + offset, length, rules)
    expected = EXPECTED[target](case)
    assert expected.values, "the history must give every panel something to show"
    check(run(env.api, RULES if variant == "rules" else RAW, case, *target), expected)


def test_only_limited_user_shows_zero_success(env: Env) -> None:
    offset, length = RANGES["1h"]
    case = Case(env.history, Selection(), env.history.start + offset, length, rules=False)
    rows = run(env.api, RAW, case, "details", "D")
    mallory = {k: v for k, v in rows.items() if ("user", ONLY_LIMITED_USER) in k}
    assert mallory and set(mallory.values()) == {0.0}
    active = run(env.api, RAW, case, "active_users", "A")
    assert active[()] == len(env.history.users)  # mallory counts as active


def test_counter_reset_does_not_lose_or_invent_hits(env: Env) -> None:
    """Around the restart the raw counters drop, yet the total equals the events' sum."""
    history = env.history
    restart = history.restarts[0]
    case = Case(history, Selection(), restart + 1800, HOUR, rules=False)
    before = env.api.query(
        f'sum(authorized_hits{{limitador_namespace!="{history.request_namespace}"}})', time=restart
    )[0].value
    after = env.api.query(
        f'sum(authorized_hits{{limitador_namespace!="{history.request_namespace}"}})',
        time=restart + 15,
    )[0].value
    assert after == 0 < before
    assert run(env.api, RAW, case, "total_hits", "A")[()] == sum(case.hits(()).values()) > 0


def test_request_namespace_never_counts_as_tokens(env: Env) -> None:
    """Even when only the request namespace is chosen, token panels show nothing of it."""
    offset, length = RANGES["1h"]
    only_requests = Selection(namespace=[env.history.request_namespace])
    case = Case(env.history, only_requests, env.history.start + offset, length, rules=False)
    assert run(env.api, RAW, case, "total_hits", "A") == {(): 0.0}
    calls = run(env.api, RAW, case, "details", "B")
    assert calls and all(("limitador_namespace", env.history.request_namespace) in k for k in calls)


def test_variables_list_what_grafana_offers(env: Env) -> None:
    def values(name: str, selection: Selection) -> list[str]:
        variable = RAW.variable(name)
        match = expand(variable.match, selection, HOUR, RATE_INTERVAL, variables=RAW.variables)
        return env.api.label_values(variable.label_name, [match])

    history = env.history
    assert values("namespace", Selection()) == sorted(history.namespaces)
    assert values("user", Selection()) == sorted(history.users)
    assert ONLY_LIMITED_USER in values("user", Selection(tier=["free"]))
    premium = sorted(u for u, t in history.users.items() if t == "premium")
    assert values("user", Selection(tier=["premium"])) == premium
    assert values("tier", Selection()) == sorted(t.name for t in CONFIG.tiers)
    assert values("model", Selection()) == sorted(history.models)


def test_detailed_table_lists_the_most_active_users(env: Env) -> None:
    """With room for 3 users, the table holds exactly the rows of the 3 users with most calls."""
    catalogue = build_catalogue(CONFIG, price_date=PRICE_DAY, detail_users=3)
    offset, length = RANGES["3h15m"]
    case = Case(env.history, Selection(), env.history.start + offset, length, rules=False)
    checks: dict[str, float] = defaultdict(float)
    for metric in (CALLS, LIMITED):
        for key, value in case.totals(metric, ("user",), tokens_only=False).items():
            checks[dict(key)["user"]] += value
    ranked = sorted(checks.values(), reverse=True)
    assert ranked[2] > ranked[3], "the history must rank the top 3 users without a tie"
    top = {user for user, value in checks.items() if value >= ranked[2]}
    assert top_options(env.api, catalogue, case.selection, case.length, RATE_INTERVAL, case.end)[
        "table_users"
    ] == sorted(top)
    for ref_id in "ABCDE":
        expected = EXPECTED[("details", ref_id)](case).values
        expected = {k: v for k, v in expected.items() if dict(k)["user"] in top}
        check(
            run(env.api, catalogue, case, "details", ref_id),
            Expect(expected, keep_zeros=ref_id == "D"),
        )
