"""`maas-metrics report --recording-rules` gives the raw path's numbers, read from the rules.

A known traffic history (tests/history.py: series born mid-range, a gateway
restart, a user who is only ever limited) is backfilled into a real
Prometheus, the recording rules are evaluated over it by the server's engine
at RULE_OFFSET seconds past each minute, as a live server evaluates a group
at its own offset (`backfill_recording_rules_at`; promtool's rule backfill
restarts its evaluations at block boundaries), and the report is built both
ways. The truth is the history's events added up in Python. A rule sample
at e counts the scrapes in (e - 60, e], so the rules path over (a, b] on the
minute grid counts exactly the events up to the scrapes at or before
a - 60 + RULE_OFFSET and b - 60 + RULE_OFFSET: (a - SHIFT, b - SHIFT].
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config, load_config
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.report import ReportInputError, ReportRequest, TimeRange, build_report
from tests.fixtures import EXAMPLE_CONFIG
from tests.history import CALLS, HITS, LIMITED, History, backfill_recording_rules_at, build_history
from tests.servers import prometheus_holding

HOUR = 3600
KEYS = ("limitador_namespace", "user", "tier", "model")
START = (int(time.time()) // HOUR - 6) * HOUR
RULE_OFFSET = 37
SCRAPE = 15  # tests/history.py's scrape interval
SHIFT = -(-(60 - RULE_OFFSET) // SCRAPE) * SCRAPE  # back to the scrape before the first minute


@dataclass
class Env:
    history: History
    api: PrometheusAPI
    url: str
    config: Config


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, example_config: Config) -> Iterator[Env]:
    history = build_history(example_config, start=START)
    assert history.restarts
    with (
        prometheus_holding(
            tmp_path_factory.mktemp("rules-report") / "prometheus",
            history.openmetrics(),
            lambda p: backfill_recording_rules_at(p, START + RULE_OFFSET, history.end),
        ) as prometheus,
        PrometheusAPI(prometheus.url) as api,
    ):
        yield Env(history, api, prometheus.url, example_config)


@pytest.fixture(scope="module")
def example_config() -> Config:
    return load_config(EXAMPLE_CONFIG)


def rows(env: Env, after: int, until: int, rules: bool) -> dict[tuple[str, ...], tuple[float, ...]]:
    request = ReportRequest(
        range=TimeRange(datetime.fromtimestamp(after, UTC), datetime.fromtimestamp(until, UTC)),
        by=("namespace", "user", "tier", "model"),
        resolution=60,
        recording_rules=rules,
    )
    report = build_report(env.api, env.config, request)
    return {
        row.key: (row.totals.tokens, row.totals.allowed, row.totals.limited, row.totals.cost)
        for row in report.rows
    }


def truth(history: History, after: int, until: int) -> dict[tuple[str, ...], tuple[float, ...]]:
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

    tokens, allowed, limited = total(HITS, True), total(CALLS, False), total(LIMITED, False)
    keys = set(tokens) | set(allowed) | set(limited)
    return {k: (tokens.get(k, 0), allowed.get(k, 0), limited.get(k, 0)) for k in keys}


def test_rules_report_equals_the_raw_report_and_the_truth(env: Env) -> None:
    """Windows away from the restart minute: exactly the truth, both ways (rules: shifted edges)."""
    after = START + 10 * 60
    until = (env.history.restarts[0] - 10 * 60) // 60 * 60  # on the minute grid
    raw, rules = rows(env, after, until, False), rows(env, after, until, True)
    expected = truth(env.history, after, until)
    assert expected and {k: v[:3] for k, v in raw.items()} == expected
    assert {k: v[:3] for k, v in rules.items()} == truth(env.history, after - SHIFT, until - SHIFT)


def test_rules_report_over_the_whole_history_within_one_percent(env: Env) -> None:
    """Across the restart the rules' one-minute fallback extrapolates: within 1 % per row."""
    after, until = START + 60, env.history.end // 60 * 60
    rules = rows(env, after, until, True)
    expected = truth(env.history, after - SHIFT, until - SHIFT)
    assert set(rules) == set(expected)
    exact = 0
    for key, values in expected.items():
        assert rules[key][:3] == pytest.approx(values, rel=0.01), key
        exact += rules[key][:3] == values
    assert exact >= len(expected) // 2  # the restart minute touches some rows, not all
    assert any(key[1] == "mallory" and values[2] > 0 for key, values in rules.items())


def test_cli_recording_rules(env: Env, tmp_path: Path) -> None:
    config = tmp_path / "maas.yaml"
    config.write_text(yaml.safe_dump(env.config.model_dump(mode="json")))
    after = START + 10 * 60
    until = (env.history.restarts[0] - 10 * 60) // 60 * 60  # on the minute grid
    iso = [datetime.fromtimestamp(t, UTC).isoformat() for t in (after, until)]
    common = ["report", "-c", str(config), "-p", env.url, "--from", iso[0], "--to", iso[1]]
    common += ["--by", "namespace,user,tier,model", "--format", "csv", "--source", "prometheus"]
    runner = CliRunner()
    result = runner.invoke(app, [*common, "--recording-rules"])
    assert result.exit_code == 0, result.output
    expected = rows(env, after, until, True)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) >= len(expected)  # a header and one line per row (plus any total)
    bad = runner.invoke(app, [*common, "--recording-rules", "--resolution", "30s"])
    assert bad.exit_code != 0
    assert "--recording-rules reads one sample a minute" in bad.output


def test_rules_need_whole_minutes() -> None:
    with pytest.raises(ReportInputError, match="whole number of minutes"):
        ReportRequest(
            range=TimeRange(datetime.fromtimestamp(0, UTC), datetime.fromtimestamp(600, UTC)),
            resolution=15,
            recording_rules=True,
        )
