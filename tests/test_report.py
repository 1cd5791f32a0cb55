"""`maas-metrics report` against a real Prometheus holding a known history (with a counter reset).

The report's numbers must equal the truth computed from the simulated events
in plain Python, and equal the dashboard's 📋 Detailed Metrics Table queries
(expanded as Grafana expands them) over the same range. A price change takes
effect mid-range; prices below are written out by hand, not read from the code.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config, parse_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.variables import Selection, expand
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.promql import matcher, string_literal
from maas_metrics.report import ReportRequest, TimeRange, Totals, build_report
from maas_metrics.report.query import plan_windows
from maas_metrics.report.timerange import TimeInputError, parse_period, parse_time, resolve_range
from tests.conftest import EXAMPLE_CONFIG
from tests.history import CALLS, COMPLETION, HITS, LIMITED, PROMPT, History, build_history
from tests.servers import free_port, prometheus_holding

runner = CliRunner()
DAY = 86400
HOUR = 3600

#: Yesterday 00:00 UTC: the price change takes effect here, inside the history.
CHANGE = (int(time.time()) // DAY - 1) * DAY
START = CHANGE - 2 * HOUR
CHANGE_DAY = datetime.fromtimestamp(CHANGE, UTC).date()

KEYS = ("limitador_namespace", "user", "tier", "model")


def config_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    tiers = {t["name"]: t for t in data["tiers"]}
    tiers["premium"]["price_changes"] = [
        {"effective_from": CHANGE_DAY.isoformat(), "per_hit": 0.012}
    ]
    tiers["enterprise"]["price_changes"] = [
        {
            "effective_from": CHANGE_DAY.isoformat(),
            "per_hit": 0.02,
            "model": "granite-8b",
            "per_prompt_token": 0.00002,
            "per_completion_token": 0.00006,
        },
    ]
    # A price that is not in force yet must not touch this bill.
    tiers["free"]["price_changes"] = [
        {"effective_from": (CHANGE_DAY + timedelta(days=40)).isoformat(), "per_hit": 1.0}
    ]
    return data


CONFIG = parse_config(config_data())


def true_cost(history: History, after: int, until: int) -> dict[tuple[str, ...], float]:
    """Cost per (namespace, user, tier, model) from the events, with the prices written out here."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for event in history.events:
        labels = dict(event.labels)
        if (
            not after < event.time <= until
            or labels["limitador_namespace"] == history.request_namespace
        ):
            continue
        key = tuple(labels[k] for k in KEYS)
        new = event.time > CHANGE
        tier, model = labels["tier"], labels["model"]
        token_priced = tier == "enterprise" and model == "granite-8b" and new
        if event.metric == HITS and not token_priced:
            price = {"free": 0.005, "premium": 0.012 if new else 0.008, "enterprise": 0.010}[tier]
            out[key] += event.amount * price
        elif event.metric == PROMPT and token_priced:
            out[key] += event.amount * 0.00002
        elif event.metric == COMPLETION and token_priced:
            out[key] += event.amount * 0.00006
    return dict(out)


@dataclass
class Truth:
    tokens: dict[tuple[str, ...], float]
    allowed: dict[tuple[str, ...], float]
    limited: dict[tuple[str, ...], float]
    cost: dict[tuple[str, ...], float]


def truth(history: History, after: int, until: int) -> Truth:
    def total(metric: str, tokens_only: bool) -> dict[tuple[str, ...], float]:
        raw = history.total(
            metric,
            after,
            until,
            by=KEYS,
            where=lambda lb: (
                not tokens_only or lb["limitador_namespace"] != history.request_namespace
            ),
        )
        return {tuple(dict(k)[n] for n in KEYS): v for k, v in raw.items()}

    return Truth(
        total(HITS, True),
        total(CALLS, False),
        total(LIMITED, False),
        true_cost(history, after, until),
    )


@dataclass
class Env:
    history: History
    api: PrometheusAPI
    url: str
    config_file: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    history = build_history(CONFIG, start=START)
    assert START < CHANGE < history.end and history.restarts
    directory = tmp_path_factory.mktemp("report")
    config_file = directory / "maas.yaml"
    config_file.write_text(yaml.safe_dump(config_data()))
    with (
        prometheus_holding(directory / "prometheus", history.openmetrics()) as prometheus,
        PrometheusAPI(prometheus.url) as api,
    ):
        yield Env(history, api, prometheus.url, config_file)


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def report_rows(env: Env, after: int, until: int, **options: Any) -> dict[tuple[str, ...], Any]:
    request = ReportRequest(
        range=TimeRange(at(after), at(until)), by=("namespace", "user", "tier", "model"), **options
    )
    report = build_report(env.api, CONFIG, request)
    return {row.key: row.totals for row in report.rows}


def assert_equal_to_truth(rows: dict[tuple[str, ...], Any], expected: Truth) -> None:
    keys = set(rows) | set(expected.tokens) | set(expected.allowed) | set(expected.limited)
    assert keys
    for key in sorted(keys):
        got = rows.get(key)
        assert got is not None, f"{key} missing from the report"
        assert got.tokens == expected.tokens.get(key, 0), key
        assert got.allowed == expected.allowed.get(key, 0), key
        assert got.limited == expected.limited.get(key, 0), key
        assert got.cost == pytest.approx(expected.cost.get(key, 0), rel=1e-9, abs=1e-12), key


# --- exactness ----------------------------------------------------------------------------------


def test_whole_history_equals_truth_across_the_reset_and_the_price_change(env: Env) -> None:
    expected = truth(env.history, START, env.history.end)
    assert_equal_to_truth(report_rows(env, START, env.history.end), expected)
    # The history really holds what makes this hard.
    assert any(k[1] == "mallory" and not expected.allowed.get(k) for k in expected.limited)
    assert {k[2] for k in expected.tokens} == {"free", "premium", "enterprise"}
    assert any(k[2] == "enterprise" and k[3] == "granite-8b" for k in expected.tokens)


def test_many_small_windows_add_up_exactly(env: Env) -> None:
    after, until = START + 37 * 60, env.history.end - 22 * 60
    windows = plan_windows(at(after), at(until), [at(CHANGE)], 20 * 60)
    assert len(windows) > 8 and at(CHANGE) in [b for _, b in windows]
    small = report_rows(env, after, until, step=20 * 60)
    assert_equal_to_truth(small, truth(env.history, after, until))
    one = report_rows(env, after, until)
    assert {k: (v.tokens, v.allowed, v.limited) for k, v in small.items()} == {
        k: (v.tokens, v.allowed, v.limited) for k, v in one.items()
    }


def test_bills_before_and_after_the_price_change_add_up_to_the_whole(env: Env) -> None:
    before = report_rows(env, START, CHANGE)
    after = report_rows(env, CHANGE, env.history.end)
    whole = report_rows(env, START, env.history.end)
    for key, totals in whole.items():
        parts = [p[key] for p in (before, after) if key in p]
        assert totals.tokens == sum(p.tokens for p in parts)
        assert totals.cost == pytest.approx(sum(p.cost for p in parts), rel=1e-9, abs=1e-12)
    premium = [k for k in before if k[2] == "premium"]
    assert premium
    for key in premium:  # old price before, new price after, never mixed
        assert before[key].cost == pytest.approx(before[key].tokens * 0.008)
        if key in after:
            assert after[key].cost == pytest.approx(after[key].tokens * 0.012)


# --- equal to the dashboard's detailed table ---------------------------------------------------


def dashboard_table(
    env: Env, selection: Selection, after: int, until: int, day: date
) -> dict[str, dict[tuple[str, ...], float]]:
    catalogue = build_catalogue(CONFIG, price_date=day)
    panel = catalogue.panel("details")
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for target in panel.targets:
        expr = expand(target.expr, selection, until - after, 60, variables=catalogue.variables)
        out[target.ref_id] = {
            tuple(s.labels[k] for k in KEYS): s.value for s in env.api.query(expr, time=until)
        }
    return out


@pytest.mark.parametrize(
    ("selection", "filters"),
    [
        (Selection(), {}),
        (
            Selection(tier=["premium", "free"], user=["eve.smith+1", "mallory", "alice"]),
            {"tier": ("premium", "free"), "user": ("eve.smith+1", "mallory", "alice")},
        ),
    ],
    ids=["all", "specific"],
)
def test_report_equals_the_dashboards_detailed_table(
    env: Env, selection: Selection, filters: dict[str, tuple[str, ...]]
) -> None:
    for after, until in ((START, CHANGE), (START + 1800, env.history.end)):
        table = dashboard_table(env, selection, after, until, at(after).date())
        rows = report_rows(env, after, until, filters=filters)
        assert rows
        keys = set(rows) | set(table["A"]) | set(table["B"]) | set(table["C"])
        for key in keys:
            got = rows.get(key, Totals())
            assert got.tokens == table["A"].get(key, 0), key
            assert got.allowed == table["B"].get(key, 0), key
            assert got.limited == table["C"].get(key, 0), key
            if got.success_rate is None:
                assert key not in table["D"]
            else:
                assert got.success_rate == pytest.approx(table["D"][key], rel=1e-12), key
            if until <= CHANGE:  # one day's per-hit prices: the dashboard's pricing too
                assert got.cost == pytest.approx(table["E"].get(key, 0), rel=1e-9, abs=1e-12), key


# --- the command ---------------------------------------------------------------------------------


def cli(env: Env, *args: str) -> Any:
    result = runner.invoke(
        app, ["report", "--config", str(env.config_file), "--prometheus", env.url, *args]
    )
    assert result.exit_code == 0, result.output
    return result


def iso(ts: int) -> str:
    return at(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_cli_json_by_tier_equals_truth(env: Env) -> None:
    doc = json.loads(
        cli(
            env,
            "--from",
            iso(START),
            "--to",
            iso(env.history.end),
            "--by",
            "tier",
            "--format",
            "json",
        ).stdout
    )
    expected = truth(env.history, START, env.history.end)
    per_tier: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, table in (
        ("tokens", expected.tokens),
        ("allowed_calls", expected.allowed),
        ("limited_calls", expected.limited),
        ("cost_usd", expected.cost),
    ):
        for key, value in table.items():
            per_tier[key[2]][name] += value
    assert {r["tier"] for r in doc["rows"]} == set(per_tier)
    for row in doc["rows"]:
        want = per_tier[row["tier"]]
        assert row["tokens"] == want["tokens"]
        assert row["allowed_calls"] == want["allowed_calls"]
        assert row["limited_calls"] == want["limited_calls"]
        assert row["success_rate"] == pytest.approx(
            want["allowed_calls"] / (want["allowed_calls"] + want["limited_calls"]), abs=1e-6
        )
        assert row["cost_usd"] == pytest.approx(want["cost_usd"], abs=1e-6)
    assert doc["total"]["tokens"] == sum(expected.tokens.values())
    assert doc["total"]["cost_usd"] == pytest.approx(sum(expected.cost.values()), abs=1e-6)
    assert doc["from"] == at(START).isoformat() and doc["to"] == at(env.history.end).isoformat()


def test_cli_period_bills_a_calendar_day(env: Env) -> None:
    day = (CHANGE_DAY - timedelta(days=1)).isoformat()  # (CHANGE - 24h, CHANGE]
    doc = json.loads(cli(env, "--period", day, "--by", "user", "--format", "json").stdout)
    expected = truth(env.history, CHANGE - DAY, CHANGE)
    assert doc["total"]["tokens"] == sum(expected.tokens.values())
    assert doc["total"]["allowed_calls"] == sum(expected.allowed.values())
    assert doc["total"]["limited_calls"] == sum(expected.limited.values())
    assert doc["total"]["cost_usd"] == pytest.approx(sum(expected.cost.values()), abs=1e-6)


def test_cli_csv_matches_json(env: Env) -> None:
    common = ("--from", iso(START), "--to", iso(env.history.end), "--by", "user,tier")
    rows = list(csv.DictReader(io.StringIO(cli(env, *common, "--format", "csv").stdout)))
    doc = json.loads(cli(env, *common, "--format", "json").stdout)
    assert list(rows[0]) == [
        "user",
        "tier",
        "tokens",
        "allowed_calls",
        "limited_calls",
        "success_rate",
        "cost_usd",
    ]
    assert len(rows) == len(doc["rows"])
    for text, row in zip(rows, doc["rows"], strict=True):
        assert (text["user"], text["tier"]) == (row["user"], row["tier"])
        assert float(text["tokens"]) == row["tokens"]
        assert float(text["cost_usd"]) == pytest.approx(row["cost_usd"])
        assert text["success_rate"] == (
            "" if row["success_rate"] is None else str(row["success_rate"])
        )
    mallory = next(r for r in rows if r["user"] == "mallory")
    assert (mallory["tokens"], mallory["allowed_calls"], mallory["success_rate"]) == (
        "0",
        "0",
        "0.0",
    )


def test_cli_html_is_a_self_contained_page_with_the_charts(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "bill.html"
    cli(
        env,
        "--from",
        iso(START),
        "--to",
        iso(env.history.end),
        "--by",
        "tier",
        "--format",
        "html",
        "-o",
        str(out),
    )
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    users = min(10, len(env.history.users))
    assert "Cost by tier" in page and f"Top {users} users by cost" in page
    assert "Plotly.newPlot" in page and '<script src="http' not in page
    expected = truth(env.history, START, env.history.end)
    by_tier: dict[str, float] = defaultdict(float)
    for key, cost in expected.cost.items():
        by_tier[key[2]] += cost
    for tier, cost in by_tier.items():
        assert f"${cost:,.4f}" in page, tier
    assert "eve.smith+1" in page
    assert f"${sum(expected.cost.values()):,.4f}" in page


def test_cli_table(env: Env) -> None:
    text = cli(env, "--from", iso(START), "--to", iso(env.history.end), "--by", "tier").stdout
    expected = truth(env.history, START, env.history.end)
    assert "Total" in text
    assert f"{sum(expected.tokens.values()):,.0f}" in text
    for tier in ("free", "premium", "enterprise"):
        assert tier in text


# --- no input changes the PromQL ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        (['alice"} or vector(1) or x{a="'], set()),
        ([".*"], set()),
        ([".*", "alice"], {"alice"}),
        (["eve.smith+1"], {"eve.smith+1"}),
        (["eve.smith+1", "eve.smith.1"], {"eve.smith+1"}),
        (["evexsmith+1"], set()),
    ],
)
def test_filter_values_match_literally(env: Env, users: list[str], expected: set[str]) -> None:
    args = [a for u in users for a in ("--user", u)]
    doc = json.loads(
        cli(
            env,
            "--from",
            iso(START),
            "--to",
            iso(env.history.end),
            "--by",
            "user",
            "--format",
            "json",
            *args,
        ).stdout
    )
    assert {r["user"] for r in doc["rows"]} == expected
    if not expected:
        assert doc["total"]["tokens"] == 0 and doc["total"]["allowed_calls"] == 0


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-45"], "error: --from '2026-13-45' is not a time"),
        (["--from", "yesterday"], "error: --from 'yesterday' is not a time"),
        (["--from", "now-1h", "--by", "user,colour"], "error: --by: unknown key 'colour'"),
        (["--period", "2026-11", "--from", "now-1h"], "error: use either --period or --from/--to"),
        (["--period", "2026-13"], "error: --period '2026-13' is not a month"),
        (["--from", "now", "--to", "now-1h"], "error: the range is empty"),
        (["--to", "now"], "error: give --from"),
        (
            ["--from", "now-1h", "--format", "pdf"],
            "error: --format 'pdf': choose from table, csv, json, html",
        ),
        (
            ["--from", "now-1h", "--step", "7s"],
            "error: --step 7s must be a multiple of the resolution",
        ),
        (["--from", "now-1h", "--resolution", "7s"], "error: --resolution 7s must divide a day"),
        (["--from", "now-1h", "--step", "soon"], "error: --step 'soon' is not a duration"),
    ],
)
def test_bad_input_gives_one_line_and_fails(args: list[str], message: str) -> None:
    result = runner.invoke(
        app,
        ["report", "--config", str(EXAMPLE_CONFIG), "--prometheus", "http://127.0.0.1:9", *args],
    )
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_unreachable_prometheus_gives_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app, ["report", "--config", str(EXAMPLE_CONFIG), "--prometheus", url, "--from", "now-1h"]
    )
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach Prometheus at {url}"), (
        result.stderr
    )


# --- pieces -------------------------------------------------------------------------------------


def test_periods_and_times() -> None:
    assert parse_period("2026-11") == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert parse_period("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert parse_period("2028-02-29") == (
        datetime(2028, 2, 29, tzinfo=UTC),
        datetime(2028, 3, 1, tzinfo=UTC),
    )
    now = datetime(2026, 11, 15, 12, 0, 7, tzinfo=UTC)
    assert parse_time("now-24h", "--from", now) == datetime(2026, 11, 14, 12, 0, 7, tzinfo=UTC)
    assert parse_time("now-7d", "--from", now) == datetime(2026, 11, 8, 12, 0, 7, tzinfo=UTC)
    assert parse_time("2026-11-01T12:00+02:00", "--from", now) == datetime(
        2026, 11, 1, 10, 0, tzinfo=UTC
    )
    assert parse_time("2026-11-01T12:00", "--from", now) == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert parse_time("2026-11-01", "--from", now) == datetime(2026, 11, 1, tzinfo=UTC)
    # A period in progress stops at now, snapped to the 15 s grid.
    rng = resolve_range(start=None, end=None, period="2026-11", resolution=15, now=now)
    assert (rng.start, rng.end, rng.clipped) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 15, 12, 0, tzinfo=UTC),
        True,
    )
    with pytest.raises(TimeInputError):
        parse_period("November")


def test_promql_literals_escape_everything_that_could_end_them() -> None:
    assert string_literal('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert matcher("user", ['x"}']) == 'user="x\\"}"'
    assert matcher("user", ["b.c", "a+"]) == 'user=~"a\\\\+|b\\\\.c"'
    with pytest.raises(ValueError):
        matcher('user"}', ["a"])


def test_windows_tile_the_range() -> None:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC)
    windows = plan_windows(start, end, [datetime(2026, 11, 2, 7, tzinfo=UTC)], DAY)
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a < b and (b - a).total_seconds() <= DAY for a, b in windows)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(windows))
    assert datetime(2026, 11, 2, 7, tzinfo=UTC) in [b for _, b in windows]


def test_config_fixture_is_the_example_plus_price_changes(example_config: Config) -> None:
    assert [t.name for t in CONFIG.tiers] == [t.name for t in example_config.tiers]
    assert CONFIG.tier("premium").price_per_hit_on(CHANGE_DAY) == 0.012
