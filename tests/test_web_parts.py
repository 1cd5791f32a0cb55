"""The web dashboard's parts without a browser: formatting, legends, table merge, messages, CLI errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.variables import Selection
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, Sample
from maas_metrics.web import figures
from maas_metrics.web.colours import css_colour
from maas_metrics.web.data import PanelData, TargetData, Window, duration_seconds
from maas_metrics.web.state import WebDashboard, selection_of
from maas_metrics.web.timerange import range_options, range_seconds
from maas_metrics.web.units import format_value
from maas_metrics.web.urlstate import View
from tests.servers import free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "maas.yaml"


@pytest.mark.parametrize(
    ("value", "unit", "decimals", "text"),
    [
        (12600, "short", None, "12.6 K"),
        (8020, "short", None, "8.02 K"),
        (2_500_000, "short", None, "2.5 Mil"),
        (42, "short", None, "42"),
        (0.5, "short", None, "0.5"),
        (0.8612, "percentunit", 1, "86.1%"),
        (1.0, "percentunit", 0, "100%"),
        (115.734, "currencyUSD", 2, "$115.73"),
        (19.76634, "currencyUSD", 4, "$19.7663"),
        (3.5, "reqps", None, "3.5 req/s"),
        (float("nan"), "percentunit", 1, "—"),
        (None, "short", None, "—"),
    ],
)
def test_values_are_formatted_like_grafana_units(
    value: float | None, unit: str, decimals: int | None, text: str
) -> None:
    assert format_value(value, unit, decimals) == text


def test_legends_follow_grafana_legend_format() -> None:
    labels = {"user": "alice", "tier": "free", "model": "m"}
    assert figures.legend_text("{{user}} · {{tier}}", labels) == "alice · free"
    assert figures.legend_text("{{ user }} ({{tier}}) tokens", labels) == "alice (free) tokens"
    assert figures.legend_text("{{missing}}x", labels) == "x"
    assert figures.legend_text("", {"__name__": "up", "job": "g"}) == 'up{job="g"}'


def test_colours_resolve_grafana_names_and_pass_css_through() -> None:
    assert css_colour("green") == "#73BF69"
    assert css_colour("Blue") == "#5794F2"
    assert css_colour("gold") == "gold"
    assert css_colour("#123456") == "#123456"


def test_durations_and_ranges() -> None:
    assert duration_seconds("1h") == 3600
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("30s") == 30
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("soon")
    assert range_seconds("now-15m") == 900
    assert range_seconds("now-7d") == 604800
    with pytest.raises(ValueError, match="unsupported time range 'yesterday'"):
        range_seconds("yesterday")
    assert next(iter(range_options("now-90m"))) == "now-90m"
    assert "now-90m" not in range_options("now-1h")


def test_empty_dropdowns_mean_all_as_in_grafana() -> None:
    assert selection_of(View("now-1h", "now", {"tier": ()})) == Selection()
    assert selection_of(
        View("now-1h", "now", {"namespace": ("ns",), "tier": ("free", "premium")})
    ) == Selection(namespace=("ns",), tier=("free", "premium"))


def test_window_uses_min_step_or_scrape_interval() -> None:
    catalogue = build_catalogue(Config.model_validate(_minimal_config()))
    hourly = catalogue.panel("hourly_hits_by_user").targets[0]
    rate = catalogue.panel("hits_rate_by_tier").targets[0]
    window = Window(end=1_700_000_000, range_seconds=3600, scrape_interval_seconds=15)
    assert window.interval(hourly) == 3600  # Min step 1h
    assert window.interval(rate) == 15  # 3600 s / 1000 points -> 5 s, raised to the scrape interval
    assert window.rate_interval(rate) == 60  # max(15 + 15, 4 x 15)
    assert window.start == 1_700_000_000 - 3600
    # Range points are anchored at the end: whole steps back, within the range.
    assert window.range_start(3600) == 1_700_000_000 - 3600
    assert window.range_start(7) == 1_700_000_000 - 3598
    assert Window(end=100_000, range_seconds=900).range_start(3600) == 100_000


def test_table_rows_merge_targets_on_the_label_columns(example_config: Config) -> None:
    panel = build_catalogue(example_config).panel("details")
    key = {"limitador_namespace": "maas/tokens", "user": "alice", "tier": "free", "model": "m"}
    other = {**key, "user": "bob"}
    targets = (
        TargetData(panel.target("A"), "", samples=(Sample(key, 10.0), Sample(other, 30.0))),
        TargetData(panel.target("B"), "", samples=(Sample(key, 2.0),)),
        TargetData(panel.target("C"), "", samples=(Sample(other, 5.0),)),
    )
    rows = figures.table_rows(PanelData(panel, targets))
    assert rows == [
        {"user": "bob", "tier": "free", "model": "m", "limitador_namespace": "maas/tokens",
         "Value #A": 30.0, "Value #C": 5.0},
        {"user": "alice", "tier": "free", "model": "m", "limitador_namespace": "maas/tokens",
         "Value #A": 10.0, "Value #B": 2.0},
    ]  # fmt: skip


def test_rendered_panels_say_whether_they_hold_data(example_config: Config) -> None:
    catalogue = build_catalogue(example_config)
    total = catalogue.panel("total_hits")
    tiers = dict(catalogue.tier_colours)
    with_data = figures.render(
        PanelData(total, (TargetData(total.targets[0], "", samples=(Sample({}, 1234.0),)),)), tiers
    )
    empty = figures.render(PanelData(total, (TargetData(total.targets[0], ""),)), tiers)
    failed = figures.render(PanelData(total, (), error="Prometheus refused the query: x"), tiers)
    assert _attr(with_data, "data-state") == "data"
    assert "1.23 K" in _json(with_data)
    assert _attr(empty, "data-state") == "empty"
    assert "No data" in _json(empty)
    assert _attr(failed, "data-state") == "error"
    assert "Prometheus refused the query: x" in _json(failed)


def _json(component: Any) -> str:
    return str(component.to_plotly_json())


def _attr(component: Any, name: str) -> str:
    value = component.to_plotly_json()["props"][name]
    assert isinstance(value, str)
    return value


@pytest.fixture
def empty_prometheus(tmp_path: Path) -> Iterator[PrometheusProcess]:
    with PrometheusProcess(tmp_path / "prometheus", scrape_interval="1s") as prometheus:
        yield prometheus


def test_banner_says_prometheus_has_no_data_yet(
    example_config: Config, empty_prometheus: PrometheusProcess
) -> None:
    with PrometheusAPI(empty_prometheus.url) as api:
        state = WebDashboard(build_catalogue(example_config), api, 15)
        message, kind = state.banner(state.window(View("now-1h"), time.time()))
    assert kind == "info"
    assert message.startswith(f"⏳ Prometheus at {empty_prometheus.url} has no MaaS metrics yet")


def test_banner_says_prometheus_is_unreachable(example_config: Config) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with PrometheusAPI(url, timeout=5) as api:
        state = WebDashboard(build_catalogue(example_config), api, 15)
        message, kind = state.banner(state.window(View("now-1h"), time.time()))
    assert kind == "error"
    assert message.startswith(f"⚠ Cannot reach Prometheus at {url}: ")
    assert message.endswith("The dashboard retries on every refresh.")


def test_serve_rejects_a_prometheus_that_is_not_a_url() -> None:
    result = CliRunner().invoke(
        app, ["serve", "--config", str(EXAMPLE), "--prometheus", "localhost:9090"]
    )
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == "error: --prometheus 'localhost:9090' must be an http:// or https:// URL"
    )


def test_serve_rejects_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: []\nmodels: []\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(bad), "--prometheus", "http://x"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: tiers:")


def _minimal_config() -> dict[str, object]:
    return {
        "tiers": [{"name": "free", "level": 0, "groups": ["g"], "price_per_hit": 0.001}],
        "models": [{"name": "m", "upstream": "http://127.0.0.1:1/v1"}],
    }
