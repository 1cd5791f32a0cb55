"""Live end to end, no backfill: what clients received equals every number a person reads.

A real `maas-metrics gateway` process (in front of the project's mock model)
is scraped on its operator listener every second by a real Prometheus that
also loads the generated rule file (`maas-metrics rules`). 34 users in five
tiers send 1-3 requests each with the official `openai` client: JSON chat and
text completions, streams with and without `include_usage`, and streams the
client walks away from at `finish_reason` (it stops iterating and closes the
stream, as many SDK loops do). Walk-away streams ask a second mock model with
latency (its SSE events arrive tens of ms apart), so the usage chunk is still
on its way when the client leaves and the gateway must keep reading for it; on
the fast mock the gateway would already have read it. The tiers' limits are small, so some users are
limited by the request policy, some by the token policy, and the users of a
tier whose request `max` is 0 are only ever limited: their `limited_calls`
series are born at their first 429.

The truth is what the clients received: per user and model the 200s, the
429s (which policy: the `qu` of the answer's `RateLimit-Policy`) and the
tokens (`usage` where the client got it; else counted from the text the client
received with the mock's documented formula ceil(characters / 4)), mapped to
Limitador's counters by its documented semantics. Once Prometheus has scraped
the gateway at least three times past the last answer and two scrapes in a
row read the same counters:

* the usage report equals it exactly: tokens, allowed and limited calls per
  user, tier and model (`report.build_report`, and `maas-metrics report
  --format json`, whose numbers must be JSON integers and whose cost per row
  is the tokens times the config's price);
* every target of the generated Grafana JSON (`maas-metrics dashboard`),
  expanded as Grafana expands it (`dashboard.variables.expand`) for All and
  for a specific selection, and every target of the built-in web dashboard's
  data layer (`web.data.DashboardData`), agree with it within 1 % (within +-1
  for counts under 100);
* `MaaSUserNearQuota` fires in that Prometheus for exactly the users and
  policies at 90 % or more of their limit.

The range is "last 5 minutes" ending on a 15 s boundary (Grafana's step with
its default 15 s datasource scrape interval), so the newest point of a rate
panel stands at the range end and its `$__rate_interval` (1 m) holds all the
traffic: that point times 60 s is the truth, and every earlier point lies
between 0 and it. The hourly bars must add up to the truth per user.

Checked to fail (scratch edits, not kept): with plain `increase()` in
`promql.increase_exact` the report and most targets disagree; with a gateway
that stops reading a stream once its client left, the walk-away users' tokens
are missing from the report and every token panel.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import openai

from maas_metrics.config import Config, parse_config
from maas_metrics.dashboard import Selection, build_catalogue
from maas_metrics.dashboard.latency_panels import LATENCY_KEYS
from maas_metrics.dashboard.model import Catalogue
from maas_metrics.dashboard.variables import grafana_interval, rate_interval
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.report import ReportRequest, TimeRange, build_report
from maas_metrics.web.data import DashboardData, Window
from tests.fixtures import CLI, api_keys, secret, tier
from tests.gateway_harness import gateway_process, running_mock, write_config
from tests.panels import run_expr, top_options

REQUESTS_NS, TOKENS_NS = "maas/requests", "maas/tokens"
MODELS = ("granite-8b", "llama-3-8b", "mistral-7b")
SLOW_MODEL = "mistral-7b"  # on a mock with latency: its SSE events arrive ~50 ms apart
SLOW_MS = 400  # before the first byte, then spread over the events (simulate/mock_model.py)
WINDOW = 600  # every limit's window: no window ends during the test
LONG_WINDOW = 900  # enterprise's: the quota panel reads tiers of two windows in two parts
TOKEN_CAP = (
    20  # the `capped` tier's token max: its first answer (a 100-character prompt) uses it up
)
USERS: dict[str, list[str]] = {
    "free": [f"free-{i}" for i in range(10)],  # 2 requests per window: a third is limited
    "blocked": [f"blocked-{i}" for i in range(4)],  # request max 0: only ever limited
    "capped": [f"capped-{i}" for i in range(4)],  # token max 20: limited after the first answer
    "premium": [f"premium-{i}" for i in range(10)],
    "enterprise": [f"ent.{i}+x" for i in range(6)],  # regex metacharacters in the name
}
RANGE_SECONDS = 300
STEP = 15  # Grafana's $__interval for 5 min with the default 15 s datasource scrape interval
DATASOURCE_SCRAPE = 15
RATE_SECONDS = rate_interval(grafana_interval(RANGE_SECONDS), DATASOURCE_SCRAPE)  # 60
HOUR = 3600
NEAR_QUOTA = 0.9

# How a request is sent. `walk` stops reading at finish_reason and closes the stream.
MODES = ("json", "stream_usage", "walk", "stream", "completion", "walk_usage")


def make_config(upstream: str, slow_upstream: str) -> Config:
    def t(name: str, level: int, price: float, requests: int, tokens: int) -> dict[str, Any]:
        window = LONG_WINDOW if name == "enterprise" else WINDOW
        return tier(
            name, level, price_per_hit=price, requests=(requests, window), tokens=(tokens, window)
        )

    return parse_config(
        {
            "tiers": [
                t("free", 0, 0.005, 2, 10**6),
                t("blocked", 1, 0.005, 0, 10**6),
                t("capped", 2, 0.006, 10**6, TOKEN_CAP),
                t("premium", 3, 0.008, 10**6, 10**7),
                t("enterprise", 4, 0.01, 10**6, 10**7),
            ],
            "models": [
                {"name": m, "upstream": slow_upstream if m == SLOW_MODEL else upstream}
                for m in MODELS
            ],
            "api_keys": [key for name, users in USERS.items() for key in api_keys(name, users)],
            "namespaces": {"requests": REQUESTS_NS, "tokens": TOKENS_NS},
            "gateway": {"upstream_timeout_seconds": 10},
        }
    )


# --- the clients and what they received ---------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    user: str
    tier: str
    model: str
    mode: str
    status: int
    policy: str = ""  # of a 429: "requests" or "tokens"
    tokens: int = 0  # of a 200


def mock_tokens(text: str) -> int:
    """The mock model's documented count: ceil(characters / 4) (simulate/answers.py docstring)."""
    return math.ceil(len(text) / 4)


def limited_policy(error: openai.RateLimitError) -> str:
    """`requests` or `tokens`: the `qu` parameter of the 429's RateLimit-Policy field."""
    field_value = error.response.headers["RateLimit-Policy"]
    units = {part.split("=", 1)[1].strip('"') for part in field_value.split(";") if "qu=" in part}
    assert len(units) == 1, field_value
    return units.pop()


def send(client: openai.OpenAI, user: str, tier_name: str, model: str, n: int, mode: str) -> Reply:
    # capped users: a 100-character prompt (25 tokens) uses up the 20-token cap at once
    prompt = f"{user} asks question {n} about {model}"
    if tier_name == "capped":
        prompt = prompt.ljust(100, ".")
    try:
        if mode == "completion":
            completion = client.completions.create(model=model, prompt=prompt, max_tokens=30)
            assert completion.usage is not None
            text = completion.choices[0].text
            assert completion.usage.total_tokens == mock_tokens(prompt) + mock_tokens(text)
            return Reply(user, tier_name, model, mode, 200, tokens=completion.usage.total_tokens)
        messages: list[Any] = [{"role": "user", "content": prompt}]
        if mode == "json":
            chat = client.chat.completions.create(model=model, messages=messages)
            assert chat.usage is not None
            text = chat.choices[0].message.content or ""
            assert chat.usage.total_tokens == mock_tokens(prompt) + mock_tokens(text)
            return Reply(user, tier_name, model, mode, 200, tokens=chat.usage.total_tokens)
        with_usage = mode in ("stream_usage", "walk_usage")
        stream = client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            max_tokens=2 + n * 3 if mode.startswith("walk") else 5 + n * 7,
            stream_options={"include_usage": True} if with_usage else openai.omit,
        )
        text, usage, finished = "", None, False
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage.total_tokens
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finished = finished or choice.finish_reason is not None
                if finished and mode.startswith("walk"):
                    break  # walk away: the usage chunk (if asked for) is never read
        finally:
            stream.close()
        assert finished
        # What the client was sent, counted as the mock counts (it never read a walk-away's usage).
        counted = mock_tokens(prompt) + mock_tokens(text)
        if with_usage:
            assert usage == (None if mode.startswith("walk") else counted)
        return Reply(user, tier_name, model, mode, 200, tokens=counted)
    except openai.RateLimitError as error:
        return Reply(user, tier_name, model, mode, 429, policy=limited_policy(error))


def user_traffic(base_url: str, tier_name: str, index: int, user: str) -> list[Reply]:
    """1-3 requests, one after the other; the first of a capped user is a plain JSON answer
    (its tokens are counted before the next request is checked)."""
    replies = []
    with openai.OpenAI(
        base_url=f"{base_url}/v1", api_key=secret(user), max_retries=0, timeout=30
    ) as client:
        for n in range(1 + (index + len(tier_name)) % 3):
            mode = "json" if tier_name == "capped" and n == 0 else MODES[(index + n) % len(MODES)]
            model = MODELS[(index + 2 * n) % len(MODELS)]
            if mode.startswith("walk"):
                # The usage chunk is still on its way when the client leaves: the gateway must
                # keep reading without it (on the fast mock the gateway has read it already).
                model = SLOW_MODEL
            replies.append(send(client, user, tier_name, model, n, mode))
    return replies


# --- the truth as Limitador's counters ----------------------------------------------------------

Key = tuple[str, str, str, str]  # (limitador_namespace, user, tier, model)
LABELS = ("limitador_namespace", "user", "tier", "model")


@dataclass
class Truth:
    """The counters each reply moves (Limitador's semantics, as DESIGN.md states them)."""

    hits: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    limited: dict[Key, int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def of(cls, replies: Iterable[Reply]) -> Truth:
        truth = cls()
        for r in replies:
            req: Key = (REQUESTS_NS, r.user, r.tier, r.model)
            tok: Key = (TOKENS_NS, r.user, r.tier, r.model)
            if r.status == 429 and r.policy == "requests":
                truth.limited[req] += 1  # the token policy is not checked
                continue
            truth.calls[req] += 1  # the request policy admitted it: one call, one hit
            truth.hits[req] += 1
            if r.status == 429:
                truth.limited[tok] += 1
                continue
            truth.calls[tok] += 1
            truth.hits[tok] += r.tokens
        return truth

    def metric(self, name: str) -> dict[Key, int]:
        return {"authorized_hits": self.hits, "authorized_calls": self.calls}.get(
            name, self.limited
        )


def picks(selection: Selection, key: Key) -> bool:
    for name, value in zip(("namespace", "user", "tier", "model"), key, strict=True):
        choice = selection.choice(name)
        if isinstance(choice, tuple) and value not in choice:
            return False
    return True


Row = frozenset[tuple[str, str]]


def total(
    counts: Mapping[Key, int],
    selection: Selection,
    by: tuple[str, ...],
    *,
    tokens_only: bool = False,
    value: Callable[[Key, int], float] = lambda _, v: v,
) -> dict[Row, float]:
    out: dict[Row, float] = defaultdict(float)
    for key, count in counts.items():
        if not picks(selection, key) or (tokens_only and key[0] == REQUESTS_NS):
            continue
        labels = dict(zip(LABELS, key, strict=True))
        out[frozenset((k, labels[k]) for k in by)] += value(key, count)
    return dict(out)


def merge(a: Mapping[Row, float], b: Mapping[Row, float]) -> dict[Row, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b}}


def ratio(allowed: Mapping[Row, float], limited: Mapping[Row, float]) -> dict[Row, float]:
    return {
        k: allowed.get(k, 0.0) / (allowed.get(k, 0.0) + limited.get(k, 0.0))
        for k in {*allowed, *limited}
        if allowed.get(k, 0.0) + limited.get(k, 0.0) > 0
    }


@dataclass(frozen=True)
class Expect:
    values: dict[Row, float]
    kind: str = "total"  # total | ratio | cost | top | rate | rate_ratio | hourly | share
    top: int = 0


def expectations(config: Config, truth: Truth, s: Selection) -> dict[tuple[str, str], Expect]:
    """What each panel target must show, computed from the clients' counts in plain Python."""
    day = date.today()

    def price(key: Key, hits: int) -> float:
        return hits * config.tier(key[2]).price_per_hit_on(day, key[3])

    def hits(by: tuple[str, ...]) -> dict[Row, float]:
        return total(truth.hits, s, by, tokens_only=True)

    def cost(by: tuple[str, ...]) -> dict[Row, float]:
        return total(truth.hits, s, by, tokens_only=True, value=price)

    def calls(by: tuple[str, ...]) -> dict[Row, float]:
        return total(truth.calls, s, by)

    def limited(by: tuple[str, ...]) -> dict[Row, float]:
        return total(truth.limited, s, by)

    def active(by: tuple[str, ...]) -> set[Row]:
        checks = merge(calls(by), limited(by))
        return {k for k, v in checks.items() if v > 0}

    def count_by(rows: set[Row], label: str | None) -> dict[Row, float]:
        out: dict[Row, float] = defaultdict(float)
        for row in rows:
            out[frozenset((k, v) for k, v in row if k == label)] += 1
        return dict(out)

    def quota(policy: str) -> dict[Row, float]:
        out = {}
        namespace = REQUESTS_NS if policy == "requests" else TOKENS_NS
        no_model = Selection(s.namespace, s.tier, s.user)  # limits count every model
        used = total(truth.hits, no_model, ("limitador_namespace", "user", "tier"))
        for row, value in used.items():
            labels = dict(row)
            limit = config.tier(labels["tier"]).request_limit
            if policy == "tokens":
                limit = config.tier(labels["tier"]).token_limit
            if labels["limitador_namespace"] == namespace and limit is not None and limit.max:
                out[row] = value / limit.max
        return out

    detail = ("limitador_namespace", "model", "tier", "user")
    return {
        ("total_hits", "A"): Expect({frozenset(): sum(hits(()).values())}),
        ("active_users", "A"): Expect({frozenset(): float(len(active(("user",))))}),
        ("success_rate", "A"): Expect(ratio(calls(()), limited(())), "ratio"),
        ("total_cost", "A"): Expect({frozenset(): sum(cost(()).values())}, "cost"),
        ("hits_rate_by_tier", "A"): Expect(hits(("tier",)), "rate"),
        ("calls_by_tier", "A"): Expect(calls(("tier",)), "rate"),
        ("calls_by_tier", "B"): Expect(limited(("tier",)), "rate"),
        ("success_rate_by_tier", "A"): Expect(
            ratio(calls(("tier",)), limited(("tier",))), "rate_ratio"
        ),
        ("hourly_hits_by_user", "A"): Expect(hits(("user",)), "hourly"),
        ("hits_by_user_tier", "A"): Expect(hits(("tier", "user"))),
        ("top_users", "A"): Expect(hits(("tier", "user")), "top", 10),
        ("top_cost_users", "A"): Expect(cost(("tier", "user")), "top_cost", 5),
        ("hits_by_tier", "A"): Expect(hits(("tier",))),
        ("tier_distribution", "A"): Expect(count_by(active(("tier", "user")), "tier")),
        ("model_popularity", "A"): Expect(hits(("model",))),
        ("revenue_by_tier", "A"): Expect(cost(("tier",)), "cost"),
        ("quota_headroom", "A"): Expect(quota("tokens"), "top_share", 10),
        ("quota_headroom", "B"): Expect(quota("requests"), "top_share", 10),
        ("details", "A"): Expect(hits(detail)),
        ("details", "B"): Expect(calls(detail)),
        ("details", "C"): Expect(limited(detail)),
        ("details", "D"): Expect(ratio(calls(detail), limited(detail)), "ratio"),
        ("details", "E"): Expect(cost(detail), "cost"),
    }


# --- reading the panels as Grafana and the web dashboard do --------------------------------------

Result = dict[Any, float]  # instant: row -> value; range: (row, t) -> value


def row_of(labels: Mapping[str, str]) -> Row:
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


def grafana_targets(
    dashboard: dict[str, Any], catalogue: Catalogue
) -> dict[tuple[str, str], dict[str, Any]]:
    """(panel key, refId) -> the target as the generated Grafana JSON holds it."""
    key_of = {panel.id: panel.key for panel in catalogue.panels}
    return {
        (key_of[panel["id"]], target["refId"]): target
        for panel in dashboard["panels"]
        if key_of[panel["id"]] not in LATENCY_KEYS  # tests/test_latency_dashboard.py
        for target in panel.get("targets", [])
    }


def run_grafana_target(
    api: PrometheusAPI,
    catalogue: Catalogue,
    target: dict[str, Any],
    s: Selection,
    end: float,
    options: Mapping[str, list[str]],
) -> Result:
    """One target of the Grafana JSON as Grafana runs it (tests/panels.py), rows keyed by `row_of`."""
    return run_expr(
        api,
        catalogue,
        target["expr"],
        instant=target["instant"],
        selection=s,
        range_seconds=RANGE_SECONDS,
        end=end,
        step=HOUR if target.get("interval") == "1h" else STEP,
        rate_seconds=RATE_SECONDS,
        options=options,
        key=row_of,
    )


def web_results(
    api: PrometheusAPI, catalogue: Catalogue, s: Selection, end: float
) -> dict[tuple[str, str], Result]:
    """Every target as the built-in web dashboard's data layer returns it."""
    data = DashboardData(catalogue, api)
    window = Window(end=end, range_seconds=RANGE_SECONDS, scrape_interval_seconds=DATASOURCE_SCRAPE)
    out: dict[tuple[str, str], Result] = {}
    for panel in data.panels(s, window):
        if panel.panel.key in LATENCY_KEYS:  # tests/test_latency_dashboard.py
            continue
        assert panel.error is None, (panel.panel.key, panel.error)
        for target in panel.targets:
            result: Result = {row_of(x.labels): x.value for x in target.samples}
            for series in target.series:
                result.update({(row_of(series.labels), t): v for t, v in series.points})
            out[(panel.panel.key, target.target.ref_id)] = result
    return out


# --- comparing ----------------------------------------------------------------------------------

ONE_HIT = 0.01  # the highest price per hit: the cost of one count


def tolerance(expected: Expect, want: float) -> float:
    """1 % of the truth; for counts under 100, one count (one hit's cost; a ratio: 0.01)."""
    absolute = {"ratio": 0.01, "rate_ratio": 0.01, "cost": ONE_HIT, "top_cost": ONE_HIT}
    return max(
        0.01 * abs(want), absolute.get(expected.kind, 1e-9 if "share" in expected.kind else 1.0)
    )


OTHERS_ROW: Row = frozenset({("maas_others", "true"), ("user", "others")})


def fold_others(actual: Result, want: Mapping[Row, float]) -> dict[Row, float]:
    """A top-N panel sums the users it does not list into one "others" row: fold the truth alike."""
    rows = [key[0] if isinstance(key, tuple) else key for key in actual]
    shown = {dict(row).get("user") for row in rows}
    if "others" not in shown:
        return dict(want)
    folded: dict[Row, float] = defaultdict(float)
    for row, value in want.items():
        user = dict(row).get("user")
        folded[OTHERS_ROW if user is not None and user not in shown else row] += value
    return dict(folded)


def check(what: str, actual: Result, expected: Expect, end: float) -> list[str]:
    """Every way `actual` disagrees with the truth (an empty list when it agrees)."""
    want = fold_others(actual, expected.values)
    problems: list[str] = []

    def differ(row: Any, got: float, truth: float) -> None:
        if not abs(got - truth) <= tolerance(expected, truth):
            problems.append(
                f"{what} {sorted(row) if isinstance(row, frozenset) else row}: {got} != {truth}"
            )

    if expected.kind in ("rate", "rate_ratio"):
        # The newest point (at the range end) covers all the traffic in its $__rate_interval;
        # every point before it sees part of it (at most all of it).
        scale = RATE_SECONDS if expected.kind == "rate" else 1.0
        newest = {row: v * scale for (row, t), v in actual.items() if t == end}
        kind = "total" if expected.kind == "rate" else "ratio"
        problems += check(f"{what} at the range end", newest, Expect(want, kind), end)
        for (row, t), v in actual.items():
            bound = want.get(row, 0.0) if expected.kind == "rate" else 1.0
            if not -1e-9 <= v * scale <= bound + tolerance(expected, bound):
                problems.append(f"{what} {sorted(row)} at {t}: {v * scale} outside [0, {bound}]")
        return problems
    if expected.kind == "hourly":
        summed: dict[Row, float] = defaultdict(float)
        for (row, _), v in actual.items():
            summed[row] += v
        return check(f"{what} (bars added up)", summed, Expect(want), end)
    if expected.top:
        if len(actual) > expected.top:
            problems.append(f"{what}: {len(actual)} rows, more than the top {expected.top}")
        ranked = sorted(want.values(), reverse=True)[: expected.top]
        got = sorted(actual.values(), reverse=True) + [0.0] * (len(ranked) - len(actual))
        for rank, (g, w) in enumerate(zip(got, ranked, strict=False)):
            differ(f"rank {rank + 1}", g, w)
    for row in {*actual, *(want if not expected.top else ())}:
        differ(row, actual.get(row, 0.0), want.get(row, 0.0))
    return problems


# --- waiting on Prometheus ----------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def last_scrape(api: PrometheusAPI) -> float:
    """Timestamp of the latest successful scrape of the gateway (0 before the first)."""
    samples = api.query('timestamp(up{job="gateway"}) and up{job="gateway"} == 1')
    return samples[0].value if samples else 0.0


def scrapes_after(api: PrometheusAPI, moment: float, count: int) -> float:
    """Wait for `count` successful scrapes that started after `moment`; the last one's time."""
    seen = moment
    for _ in range(count):
        previous = seen

        def landed(after: float = previous) -> bool:
            nonlocal seen
            seen = last_scrape(api)
            return seen > after

        wait_until(landed, "a scrape of the gateway")
    return seen


def scrapes_until_still(api: PrometheusAPI, moment: float) -> float:
    """Wait for scrapes after `moment` until two in a row read the same usage counters."""
    query = 'sum by (__name__) ({__name__=~"authorized_hits|authorized_calls|limited_calls"})'
    counters = None
    for _ in range(20):
        moment = scrapes_after(api, moment, 1)
        latest = sorted((x.labels["__name__"], x.value) for x in api.query(query, time=moment))
        if latest and latest == counters:
            return moment
        counters = latest
    raise AssertionError("the gateway's counters kept moving after the last answer")


def firing_near_quota(prometheus_url: str) -> set[tuple[str, str]]:
    response = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=10)
    response.raise_for_status()
    return {
        (alert["labels"]["user"], alert["labels"]["policy"])
        for alert in response.json()["data"]["alerts"]
        if alert["labels"]["alertname"] == "MaaSUserNearQuota" and alert["state"] == "firing"
    }


def near_quota_truth(config: Config, truth: Truth) -> set[tuple[str, str]]:
    """(user, policy) whose hits (all models) within the limit's window reach 90 % of a max > 0."""
    used: dict[tuple[str, str, str], int] = defaultdict(int)
    for (namespace, user, tier_name, _), hits in truth.hits.items():
        used[(namespace, user, tier_name)] += hits
    out = set()
    for (namespace, user, tier_name), hits in used.items():
        tier_config = config.tier(tier_name)
        policy, limit = ("requests", tier_config.request_limit)
        if namespace == TOKENS_NS:
            policy, limit = ("tokens", tier_config.token_limit)
        assert limit is not None
        if limit.max and hits >= NEAR_QUOTA * limit.max:
            out.add((user, policy))
    return out


# --- the test -----------------------------------------------------------------------------------


def test_live_traffic_reads_the_same_everywhere(tmp_path: Path) -> None:
    with running_mock() as mock, running_mock(latency_ms=SLOW_MS) as slow:
        config = make_config(mock.url, slow.url)
        config_path = write_config(config, tmp_path / "maas.yaml")
        rules = tmp_path / "rules.yml"
        dashboard_json = tmp_path / "dashboard.json"
        for command in (
            ["rules", "--config", str(config_path), "--output", str(rules)],
            ["dashboard", "--config", str(config_path), "--output", str(dashboard_json)],
        ):
            subprocess.run([CLI, *command], check=True, capture_output=True, timeout=60)
        with gateway_process(config_path) as gateway:
            prometheus = PrometheusProcess(
                tmp_path / "prometheus",
                targets=[ScrapeTarget("gateway", gateway.operator.removeprefix("http://"))],
                scrape_interval="1s",
                evaluation_interval="1s",
                rule_files=[rules],
            )
            with prometheus, PrometheusAPI(prometheus.url) as api:
                scrapes_after(api, 0.0, 1)  # the gateway is up and scraped before any traffic
                started = time.time()
                jobs = [
                    (tier_name, index, user)
                    for tier_name, users in USERS.items()
                    for index, user in enumerate(users)
                ]
                with ThreadPoolExecutor(max_workers=4) as pool:
                    replies = [
                        r
                        for rs in pool.map(lambda job: user_traffic(gateway, *job), jobs)
                        for r in rs
                    ]
                answered = time.time()
                # Born-at-zero series show their count one scrape after their 0; a walk-away
                # stream's tokens are reported after the client left: three scrapes after the last
                # answer, and more until two in a row read the same counters; then the range
                # ends on the next 15 s boundary (Grafana's last step).
                settled = scrapes_after(api, answered, 3)
                settled = scrapes_until_still(api, settled)
                end = float(math.ceil((settled + 0.5) / STEP) * STEP)
                wait_until(lambda: time.time() > end + 0.5, "the range end", timeout=STEP + 5)
                assert end - RATE_SECONDS < started, "the traffic took longer than $__rate_interval"

                truth = Truth.of(replies)
                catalogue = build_catalogue(config)
                targets = grafana_targets(json.loads(dashboard_json.read_text()), catalogue)
                selections = {
                    "all": Selection(),
                    "specific": Selection(
                        namespace=[TOKENS_NS, REQUESTS_NS],
                        tier=["free", "capped", "enterprise"],
                        user=[*USERS["free"][:4], *USERS["capped"][:2], *USERS["enterprise"][:3]],
                        model=["granite-8b", "llama-3-8b"],
                    ),
                }
                grafana: dict[str, dict[tuple[str, str], Result]] = {}
                web: dict[str, dict[tuple[str, str], Result]] = {}
                for name, s in selections.items():
                    options = top_options(api, catalogue, s, RANGE_SECONDS, RATE_SECONDS, end)
                    grafana[name] = {
                        key: run_grafana_target(api, catalogue, target, s, end, options)
                        for key, target in targets.items()
                    }
                    web[name] = web_results(api, catalogue, s, end)
                report = build_report(
                    api,
                    config,
                    ReportRequest(
                        range=TimeRange(
                            datetime.fromtimestamp(end - RANGE_SECONDS, UTC),
                            datetime.fromtimestamp(end, UTC),
                        ),
                        resolution=1.0,
                    ),
                )
                cli_report = json.loads(
                    subprocess.run(
                        [
                            CLI,
                            "report",
                            *("--config", str(config_path), "--prometheus", prometheus.url),
                            *(
                                "--from",
                                datetime.fromtimestamp(end - RANGE_SECONDS, UTC).isoformat(),
                            ),
                            *("--to", datetime.fromtimestamp(end, UTC).isoformat()),
                            *("--resolution", "1s", "--format", "json"),
                        ],
                        check=True,
                        capture_output=True,
                        timeout=60,
                    ).stdout
                )
                expected_alerts = near_quota_truth(config, truth)
                firing: set[tuple[str, str]] = set()

                def alerts_fired() -> bool:
                    nonlocal firing
                    firing = firing_near_quota(prometheus.url)
                    return firing >= expected_alerts

                wait_until(alerts_fired, f"MaaSUserNearQuota for {sorted(expected_alerts)}")
                firing = firing_near_quota(prometheus.url)

    # The traffic is what it was designed to be: every kind of reply, every tier.
    kinds = Counter((r.tier, r.status, r.policy) for r in replies)
    assert len({r.user for r in replies}) == sum(len(u) for u in USERS.values()) >= 30
    assert kinds[("blocked", 429, "requests")] > 0 and not kinds[("blocked", 200, "")]
    assert kinds[("free", 429, "requests")] > 0 and kinds[("free", 200, "")] > 0
    assert kinds[("capped", 429, "tokens")] > 0 and kinds[("capped", 200, "")] == len(
        USERS["capped"]
    )
    assert {r.status for r in replies} == {200, 429}
    assert {r.mode for r in replies if r.status == 200} == set(MODES)

    # The report equals the clients' counts exactly, per user, tier and model.
    want_report: dict[tuple[str, ...], tuple[int, int, int]] = {}
    for key in {*truth.calls, *truth.limited}:
        _, user, tier_name, model = key
        row = (user, tier_name, model)
        tokens = truth.hits.get((TOKENS_NS, *row), 0)
        allowed = truth.calls.get((REQUESTS_NS, *row), 0) + truth.calls.get((TOKENS_NS, *row), 0)
        limited = truth.limited.get((REQUESTS_NS, *row), 0) + truth.limited.get(
            (TOKENS_NS, *row), 0
        )
        want_report[row] = (tokens, allowed, limited)
    got_report = {
        tuple(row.key): (row.totals.tokens, row.totals.allowed, row.totals.limited)
        for row in report.rows
    }
    problems = [
        f"report {row}: (tokens, allowed, limited) {got_report.get(row)} != {want_report.get(row)}"
        for row in sorted({*got_report, *want_report})
        if got_report.get(row) != want_report.get(row)
    ]
    report_total = (report.total.tokens, report.total.allowed, report.total.limited)
    want_total = tuple(map(sum, zip(*want_report.values(), strict=True)))
    if report_total != want_total:
        problems.append(f"report total {report_total} != {want_total}")
    # The CLI's JSON states the same integers, and each row's cost at the config's prices.
    day, unlisted = date.today(), dict(want_report)
    for line in cli_report["rows"]:
        row = (line["user"], line["tier"], line["model"])
        numbers = (line["tokens"], line["allowed_calls"], line["limited_calls"])
        if numbers != unlisted.pop(row, None) or not all(type(n) is int for n in numbers):
            problems.append(f"report --format json {row}: {numbers}")
        cost = line["tokens"] * config.tier(row[1]).price_per_hit_on(day, row[2])
        if abs(line["cost_usd"] - cost) > 1e-6:
            problems.append(f"report --format json {row}: cost {line['cost_usd']} != {cost}")
    if unlisted:
        problems.append(f"report --format json lacks the rows {sorted(unlisted)}")

    # Every dashboard target, from the Grafana JSON and from the web data layer.
    for name, s in selections.items():
        expected = expectations(config, truth, s)
        assert set(grafana[name]) == set(expected) == set(web[name])
        for target, expect in expected.items():
            assert expect.values or name != "all", target
            problems += check(f"grafana {name} {target}", grafana[name][target], expect, end)
            problems += check(f"web {name} {target}", web[name][target], expect, end)

    # The quota alert fires for exactly the users at 90 % of a limit (and for some at all).
    assert {policy for _, policy in expected_alerts} == {"requests", "tokens"}
    if firing != expected_alerts:
        problems.append(
            f"MaaSUserNearQuota firing for {sorted(firing)}, not {sorted(expected_alerts)}"
        )
    where = Counter(problem.split(" ", 1)[0] for problem in problems)
    assert not problems, f"{len(problems)} disagreements {dict(where)}:\n" + "\n".join(
        problems[:60]
    )
