"""Every panel of the dashboard generated for each schema equals the truth, on a real Prometheus.

One simulated traffic history (tests/history.py) is loaded twice into one
Prometheus:

* in the seed's shape: `authorized_hits`, `tier`, `user` and `model` on
  every counter (examples/maas.yaml);
* in today's shape: `authorized_hits_total` (the names an OpenTelemetry
  collector writes), `subscription` instead of `tier`, `organization_id` and
  `cost_center` per key, no `user` label (the series of a subscription's
  users add up), no `model` on the calls counters, and one key (`bob`) with
  no cost centre at all (the label is absent on his series).

The two shapes share no series name, so one server holds both. The
dashboard generated from each schema's config is expanded as Grafana
expands it, for All and for a specific model, subscription (tier) and cost
centre, over a range with a counter reset and a long one, from the raw
counters and from each schema's recording rules; every target is compared
with totals computed from the simulated events in plain Python, by label
names written here (not asked from the code under test). The truth follows
the documented design: calls panels cover every model when the calls
counters carry no `model`.
"""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import sync_playwright

from maas_metrics.config import Config, load_config, parse_config
from maas_metrics.dashboard.catalogue import NO_USER, build_catalogue
from maas_metrics.dashboard.latency_panels import LATENCY_KEYS
from maas_metrics.dashboard.model import Catalogue
from maas_metrics.dashboard.variables import Selection
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess
from maas_metrics.report import (
    ReportInputError,
    ReportRequest,
    TimeRange,
    build_report,
    parse_group_by,
)
from tests.conftest import EXAMPLE_CONFIG
from tests.fixtures import CLI
from tests.history import (
    CALLS,
    HITS,
    LIMITED,
    Event,
    Gauge,
    History,
    Labels,
    backfill_recording_rules_aligned,
    build_history,
)
from tests.panels import (
    HOUR,
    RULE_OFFSET,
    Expect,
    RangeTruth,
    check,
    count_by,
    ratio,
    run,
    targets,
)
from tests.servers import free_port, prometheus_holding, wait_for_port
from tests.test_web_dashboard import ARTIFACTS, CHROMIUM_ARGS

PRICE_DAY = date(2025, 6, 1)

SEED_CONFIG = load_config(EXAMPLE_CONFIG)

#: Today's attribution of the history's users (bob has no cost centre).
ORGANIZATION = {"alice": "acme", "bob": "acme", "carol": "globex", "dave": "acme"}
COST_CENTER = {"alice": "cc-100", "carol": "cc-200", "dave": "cc-200"}
DEFAULT_ORG, DEFAULT_CC = "initech", "cc-300"
NO_COST_CENTER = "bob"


def today_config(seed: Config) -> Config:
    """The seed's config as today's platform writes it: same plans, as subscriptions."""
    data = seed.model_dump(mode="json")
    data["subscriptions"] = data.pop("tiers")
    data["schema"] = {
        "billing_dimension": "subscription",
        "attribution": ["organization_id", "cost_center"],
        "capture_user": False,
        "calls_carry_model": False,
        "metric_names": "otel",
    }
    return parse_config(data)


TODAY_CONFIG = today_config(SEED_CONFIG)
OTEL = {HITS: HITS + "_total", CALLS: CALLS + "_total", LIMITED: LIMITED + "_total"}


def today_labels(metric: str, labels: Labels) -> Labels:
    pairs = dict(labels)
    user = pairs.pop("user", None)
    pairs["subscription"] = pairs.pop("tier")
    if user is not None:
        pairs["organization_id"] = ORGANIZATION.get(user, DEFAULT_ORG)
        if user != NO_COST_CENTER:
            pairs["cost_center"] = COST_CENTER.get(user, DEFAULT_CC)
    if metric in (CALLS, LIMITED):
        pairs.pop("model", None)
    return tuple(sorted(pairs.items()))


def reshape(seed: History) -> History:
    """The same events in today's shape (the history's series merge where labels now agree)."""
    events = [
        Event(e.time, OTEL.get(e.metric, e.metric), today_labels(e.metric, e.labels), e.amount)
        for e in seed.events
    ]
    gauges = [
        Gauge(g.metric, today_labels(g.metric, g.labels), g.value)
        if "tier" in dict(g.labels)
        else g
        for g in seed.gauges
        if g.metric not in ("limitador_up", "datastore_partitioned")  # already in the seed
    ]
    return replace(seed, config=TODAY_CONFIG, events=events, gauges=gauges)


@dataclass(frozen=True)
class Shape:
    """What a schema's series look like, written out by hand for the truth."""

    name: str
    config: Config
    dim: str
    user: bool
    calls_model: bool
    attribution: tuple[str, ...]
    names: Mapping[str, str]

    def catalogue(self, rules: bool) -> Catalogue:
        return build_catalogue(self.config, recording_rules=rules, price_date=PRICE_DAY)


SEED = Shape("seed", SEED_CONFIG, "tier", True, True, (), {})
TODAY = Shape(
    "today", TODAY_CONFIG, "subscription", False, False, ("organization_id", "cost_center"), OTEL
)
SHAPES = {"seed": SEED, "today": TODAY}


@dataclass
class Env:
    histories: dict[str, History]
    api: PrometheusAPI
    url: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    start = (int(time.time()) // HOUR - 5) * HOUR
    seed = build_history(SEED_CONFIG, start=start)
    today = reshape(seed)

    def rules(prometheus: PrometheusProcess) -> None:
        for config in (SEED_CONFIG, TODAY_CONFIG):
            backfill_recording_rules_aligned(prometheus, start + RULE_OFFSET, seed.end, config)

    with (
        prometheus_holding(
            tmp_path_factory.mktemp("prometheus"),
            seed.openmetrics().removesuffix("# EOF\n") + today.openmetrics(),
            rules,
        ) as prometheus,
        PrometheusAPI(prometheus.url) as api,
    ):
        yield Env({"seed": seed, "today": today}, api, prometheus.url)


# --- the truth ---------------------------------------------------------------------------------


def clean_key(pairs: Mapping[str, str], by: tuple[str, ...]) -> Labels:
    """A result key as Prometheus returns it: an empty (absent) label is no label."""
    return tuple((k, pairs.get(k, "")) for k in sorted(by) if pairs.get(k, ""))


@dataclass
class Case(RangeTruth):
    shape: Shape
    history: History
    selection: Selection
    end: int
    length: int
    rules: bool

    def picks(self, labels: Mapping[str, str], *, tokens_only: bool, models: bool = True) -> bool:
        """Does the selection keep a series with `labels`? (`models`: apply the model filter.)"""
        namespace = labels["limitador_namespace"]
        if tokens_only and namespace == self.history.request_namespace:
            return False
        filters = {"namespace": namespace}
        present = [self.shape.dim, "user", *(["model"] if models else [])]
        for label in (*present, *self.shape.attribution):
            if label in labels or label in self.shape.attribution:
                filters[label] = labels.get(label, "")
        for name, value in filters.items():
            choice = self.selection.choice(name)
            if isinstance(choice, tuple) and value not in choice:
                return False
        return True

    def window_totals(
        self, metric: str, windows: list[tuple[int, int]], by: tuple[str, ...], tokens_only: bool
    ) -> list[dict[Labels, float]]:
        name = self.shape.names.get(metric, metric)
        out: list[dict[Labels, float]] = [defaultdict(float) for _ in windows]
        for event in self.history.events:
            if event.metric != name:
                continue
            labels = dict(event.labels)
            if not self.picks(labels, tokens_only=tokens_only):
                continue
            for index, (after, until) in enumerate(windows):
                if after < event.time <= until:
                    out[index][clean_key(labels, by)] += event.amount
        return [dict(totals) for totals in out]

    def cost(self, by: tuple[str, ...]) -> dict[Labels, float]:
        dim = self.shape.dim
        keys = tuple(sorted({*by, dim, "model"}))
        out: dict[Labels, float] = defaultdict(float)
        for key, hits in self.hits(keys).items():
            labels = dict(key)
            plan = self.shape.config.tier(labels[dim])
            price = plan.price_per_hit_on(PRICE_DAY, labels["model"])
            out[clean_key(labels, by)] += hits * price
        return dict(out)

    def quota(self, policy: str) -> dict[Labels, float]:
        out: dict[Labels, float] = {}
        for plan in self.shape.config.tiers:
            limit = plan.token_limit if policy == "tokens" else plan.request_limit
            if limit is None:
                continue
            request_ns = self.history.request_namespace
            totals: dict[Labels, float] = defaultdict(float)
            after, until = self.limit_window(limit.window_seconds)
            for event in self.history.events:
                labels = dict(event.labels)
                if event.metric != HITS or labels["tier"] != plan.name:
                    continue
                if (labels["limitador_namespace"] == request_ns) != (policy == "requests"):
                    continue
                if not self.picks(labels, tokens_only=False, models=False):
                    continue
                if after < event.time <= until:
                    key = clean_key(labels, ("limitador_namespace", "user", "tier"))
                    totals[key] += event.amount
            out.update({k: v / limit.max for k, v in totals.items()})
        return out


Expectation = Callable[[Case], Expect]


def expectations(shape: Shape) -> dict[tuple[str, str], Expectation]:
    """Every target of `shape`'s dashboard and how to compute it from the events."""
    dim = shape.dim
    by_dim = (dim,)
    detail = (
        "limitador_namespace",
        *(("user",) if shape.user else ()),
        dim,
        *shape.attribution,
        *(("model",) if shape.calls_model else ()),
    )
    out: dict[tuple[str, str], Expectation] = {
        ("total_hits", "A"): lambda c: Expect({(): sum(c.hits(()).values())}),
        ("success_rate", "A"): lambda c: Expect(c.success(()), keep_zeros=True),
        ("total_cost", "A"): lambda c: Expect({(): sum(c.cost(()).values())}),
        ("hits_rate_by_tier", "A"): lambda c: Expect(c.rates(HITS, by_dim, tokens_only=True)),
        ("calls_by_tier", "A"): lambda c: Expect(c.rates(CALLS, by_dim, tokens_only=False)),
        ("calls_by_tier", "B"): lambda c: Expect(c.rates(LIMITED, by_dim, tokens_only=False)),
        ("success_rate_by_tier", "A"): lambda c: Expect(
            ratio(
                c.rates(CALLS, by_dim, tokens_only=False),
                c.rates(LIMITED, by_dim, tokens_only=False),
            ),
            keep_zeros=True,
        ),
        ("hits_by_tier", "A"): lambda c: Expect(c.hits(by_dim)),
        ("model_popularity", "A"): lambda c: Expect(c.hits(("model",))),
        ("revenue_by_tier", "A"): lambda c: Expect(c.cost(by_dim)),
        ("details", "A"): lambda c: Expect(c.hits(detail)),
        ("details", "B"): lambda c: Expect(c.totals(CALLS, detail, tokens_only=False)),
        ("details", "C"): lambda c: Expect(c.totals(LIMITED, detail, tokens_only=False)),
        ("details", "D"): lambda c: Expect(c.success(detail), keep_zeros=True),
        ("details", "E"): lambda c: Expect(c.cost(detail)),
    }
    if shape.user:
        user_dim = ("user", dim)
        out |= {
            ("active_users", "A"): lambda c: Expect({(): float(len(c.active(("user",))))}),
            ("hourly_hits_by_user", "A"): lambda c: Expect(c.hourly(HITS, ("user",))),
            ("hits_by_user_tier", "A"): lambda c: Expect(c.hits(user_dim)),
            ("top_users", "A"): lambda c: Expect(c.hits(user_dim), top=10),
            ("top_cost_users", "A"): lambda c: Expect(c.cost(user_dim), top=5),
            ("tier_distribution", "A"): lambda c: Expect(count_by(c.active(user_dim), dim)),
            ("quota_headroom", "A"): lambda c: Expect(c.quota("tokens"), top=10),
            ("quota_headroom", "B"): lambda c: Expect(c.quota("requests"), top=10),
        }
    if dim == "subscription":
        out[("top_subscriptions", "A")] = lambda c: Expect(c.hits(by_dim), top=10)
    for label in shape.attribution:
        out[(f"cost_by_{label}", "A")] = _cost_by(label)
    return out


def _cost_by(label: str) -> Expectation:
    return lambda c: Expect(c.cost((label,)))


SELECTIONS: dict[str, Callable[[Shape], Selection]] = {
    "all": lambda s: Selection(),
    "model": lambda s: Selection(model=["granite-8b"]),
    "plan": lambda s: Selection(**{s.dim: ["premium"]}),
    "cost_center": lambda s: Selection(cost_center=["cc-200"]),
    "specific": lambda s: Selection(
        namespace=[s.config.namespaces.tokens, s.config.namespaces.requests],
        model=["granite-8b", "llama-3-8b"],
        **{s.dim: ["free", "enterprise"]},
        **({"user": ["alice", "eve.smith+1", "mallory", "frank"]} if s.user else {}),
        **({"organization_id": ["acme", "initech"]} if s.attribution else {}),
    ),
}
SEED_SELECTIONS = ("all", "specific")  # the seed's own test covers it in depth
RANGES = {"1h": (2 * HOUR + 1800, HOUR), "3h15m": (3 * HOUR + 1800, 3 * HOUR + 900)}
"""One hour with the counter reset in it, and nearly the whole history."""


# --- the cases ---------------------------------------------------------------------------------


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def cases() -> list[tuple[str, str, str, str]]:
    """(shape, selection, panel, target) for every target of each schema's dashboard."""
    return [
        (name, selection, panel, ref)
        for name, shape in SHAPES.items()
        for selection in (SEED_SELECTIONS if name == "seed" else SELECTIONS)
        for panel, ref in expectations(shape)
    ]


def test_every_target_of_each_schema_has_an_expectation() -> None:
    for shape in SHAPES.values():
        for rules in (False, True):
            catalogue = shape.catalogue(rules)
            assert set(targets(catalogue)) == set(expectations(shape)), shape.name


@pytest.mark.parametrize("variant", ["raw", "rules"])
@pytest.mark.parametrize("range_name", sorted(RANGES))
@pytest.mark.parametrize("target", cases(), ids="-".join)
def test_panel_equals_the_truth(
    env: Env, target: tuple[str, str, str, str], range_name: str, variant: str
) -> None:
    shape_name, selection_name, panel, ref_id = target
    shape = SHAPES[shape_name]
    offset, length = RANGES[range_name]
    history = env.histories[shape_name]
    rules = variant == "rules"
    selection = SELECTIONS[selection_name](shape)
    case = Case(shape, history, selection, history.start + offset, length, rules)
    expected = expectations(shape)[(panel, ref_id)](case)
    assert expected.values or selection_name != "all", "the history must fill every panel"
    check(run(env.api, shape.catalogue(variant == "rules"), case, panel, ref_id), expected)


def test_the_key_without_a_cost_centre_is_counted(env: Env) -> None:
    """bob's tokens and cost are in every total, under no cost centre, and the filters tell."""
    shape, history = TODAY, env.histories["today"]
    offset, length = RANGES["3h15m"]
    catalogue = shape.catalogue(False)

    def case(selection: Selection) -> Case:
        return Case(shape, history, selection, history.start + offset, length, False)

    by_cost_center = run(env.api, catalogue, case(Selection()), "cost_by_cost_center", "A")
    bob_cost = case(Selection()).cost(("cost_center",))[()]
    assert bob_cost > 0 and by_cost_center[()] == pytest.approx(bob_cost, rel=1e-9)
    total = run(env.api, catalogue, case(Selection()), "total_hits", "A")[()]
    one = run(env.api, catalogue, case(Selection(cost_center=["cc-200"])), "total_hits", "A")[()]
    truth = sum(
        e.amount
        for e in history.events
        if e.metric == "authorized_hits_total"
        and dict(e.labels)["limitador_namespace"] != history.request_namespace
        and history.start + offset - length < e.time <= history.start + offset
    )
    assert 0 < one < total == truth


def test_panels_that_need_user_say_so() -> None:
    catalogue = TODAY.catalogue(False)
    needing = ("active_users", "top_users", "hourly_hits_by_user", "quota_headroom")
    for key in needing:
        panel = catalogue.panel(key)
        assert panel.targets == () and "`user`" in panel.no_data and "`user`" in panel.description
    assert all(v.name != "user" for v in catalogue.variables)
    calls = catalogue.panel("calls_by_tier")
    assert "no `model`" in calls.description and "model" not in calls.targets[0].expr


# --- the report over today's shape -------------------------------------------------------------

REPORT_SELECTIONS = {
    "all": {},
    "model": {"model": ("granite-8b",)},
    "plan": {"subscription": ("premium",)},
    "cost_center": {"cost_center": ("cc-200",)},
}


@pytest.mark.parametrize("selection_name", sorted(REPORT_SELECTIONS))
def test_report_in_todays_shape_equals_the_truth(env: Env, selection_name: str) -> None:
    """Tokens, allowed, limited and cost per subscription, organisation and cost centre."""
    history = env.histories["today"]
    offset, length = RANGES["3h15m"]
    until = history.start + offset
    filters = REPORT_SELECTIONS[selection_name]
    by = ("subscription", "organization_id", "cost_center")
    request = ReportRequest(
        range=TimeRange(at(until - length), at(until)),
        by=by,
        filters=filters,
        schema=TODAY_CONFIG.contract,
    )
    report = build_report(env.api, TODAY_CONFIG, request)
    rows = {row.key: row.totals for row in report.rows}
    case = Case(TODAY, history, Selection(**filters), until, length, rules=False)

    def keyed(values: dict[Labels, float]) -> dict[tuple[str, ...], float]:
        return {tuple(dict(k).get(n, "") for n in by): v for k, v in values.items() if v}

    expected = {
        "tokens": keyed(case.hits(by)),
        "allowed": keyed(case.totals(CALLS, by, tokens_only=False)),
        "limited": keyed(case.totals(LIMITED, by, tokens_only=False)),
        "cost": keyed(case.cost(by)),
    }
    assert set(rows) == set(expected["allowed"]) | set(expected["limited"])
    for field, values in expected.items():
        got = {k: getattr(t, field) for k, t in rows.items() if getattr(t, field)}
        assert got == pytest.approx(values, rel=1e-9), field
    if selection_name in ("all", "model"):
        assert ("free", "acme", "") in rows  # bob: no cost centre, counted


def test_report_refuses_keys_the_schema_lacks() -> None:
    schema = TODAY_CONFIG.contract
    with pytest.raises(ReportInputError, match="user is not captured"):
        parse_group_by("user,subscription", schema)
    with pytest.raises(ReportInputError, match="unknown key 'tier'"):
        parse_group_by("tier", schema)
    assert parse_group_by("cost_center,model", schema) == ("cost_center", "model")


# --- the web dashboard of today's schema, in headless Chromium ---------------------------------


def test_web_dashboard_in_todays_shape(env: Env, tmp_path: Path) -> None:
    """Today's filters, the per-user panels' message and the numbers of the same catalogue."""
    data = TODAY_CONFIG.model_dump(mode="json")
    data["dashboard"]["default_range"] = "now-6h"  # the whole backfilled history
    config_file = tmp_path / "today.yaml"
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    port = free_port()
    server = subprocess.Popen(
        [CLI, "serve", "--config", str(config_file), "--prometheus", env.url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = env.histories["today"]
    case = Case(TODAY, history, Selection(), int(time.time()), 6 * HOUR, rules=False)
    tokens = sum(case.hits(()).values())
    cost = sum(case.cost(()).values())
    try:
        wait_for_port(port, timeout=60, process=server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector(
                    "#panel-total_hits .panel-body[data-state=data]", timeout=90_000
                )
                filters = page.eval_on_selector_all(
                    ".filters label[for^=filter-]", "els => els.map(e => e.htmlFor)"
                )
                assert [f for f in filters if f != "filter-range"] == [
                    "filter-namespace",
                    "filter-subscription",
                    "filter-model",
                    "filter-organization_id",
                    "filter-cost_center",
                ]
                assert page.text_content("#panel-top_users .panel-body") == NO_USER
                stat = page.get_attribute("#panel-total_hits .stat-item", "data-value")
                assert float(stat or "nan") == pytest.approx(tokens, rel=0.01)
                page.wait_for_selector("#panel-cost_by_cost_center .gauge-row", timeout=30_000)
                rows = page.eval_on_selector_all(
                    "#panel-cost_by_cost_center .gauge-row", "rs => rs.map(r => r.dataset.value)"
                )
                assert sum(float(v) for v in rows) == pytest.approx(cost, rel=0.01)
                page.screenshot(path=str(ARTIFACTS / "web-dashboard-today.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_latency_row_filters_by_the_billing_dimension() -> None:
    """The histograms carry `subscription` in today's schema: the row filters on it, not `tier`."""
    catalogue = TODAY.catalogue(False)
    exprs = [t.expr for p in catalogue.panels if p.key in LATENCY_KEYS for t in p.targets]
    assert any('subscription=~"$subscription"' in e for e in exprs)
    assert not any("tier" in e for e in exprs)
