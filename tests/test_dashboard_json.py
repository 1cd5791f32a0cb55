"""The generated Grafana JSON and Kubernetes outputs are structurally sound and deterministic."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config, parse_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.grafana import dashboard, render_json
from maas_metrics.dashboard.kubernetes import render_configmap, render_grafana_dashboard
from tests.conftest import EXAMPLE_CONFIG

PRICE_DAY = date(2025, 6, 1)
REFERENCE_TITLES = [
    "🎯 Total Authorized Hits",
    "📈 Authorized Hits Rate by Tier",
    "👥 Authorized Hits by User & Tier",
    "🏆 Top 10 Users by Hits",
    "⏰ Hourly Authorized Hits by User",
    "📊 Total Authorized Hits by Tier",
    "👥 Active Users",
    "💰 Top 5 Users by Cost",
    "📋 Detailed Metrics Table",
]
GRAFANA_BUILTINS = {
    "__range",
    "__rate_interval",
    "__rate_interval_ms",
    "__interval",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
}
COUNTERS = ("authorized_hits", "authorized_calls", "limited_calls")


def with_fourth_tier(config: Config) -> Config:
    data = config.model_dump(mode="json")
    data["tiers"].append(
        {
            "name": "platinum",
            "level": 3,
            "groups": ["platinum-users"],
            "colour": "purple",
            "price_per_hit": 0.02,
            "request_limit": {"max": 100, "window_seconds": 120},
            "token_limit": {"max": 500000, "window_seconds": 60},
        }
    )
    return parse_config(data)


@pytest.fixture(scope="module", params=["raw", "rules"])
def board(request: pytest.FixtureRequest, example_config: Config) -> dict[str, Any]:
    catalogue = build_catalogue(
        example_config, recording_rules=request.param == "rules", price_date=PRICE_DAY
    )
    return dashboard(catalogue)


def targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in board["panels"] for t in p["targets"]]


def test_reference_panels_are_all_there(board: dict[str, Any]) -> None:
    titles = [p["title"] for p in board["panels"]]
    assert all(title in titles for title in REFERENCE_TITLES)
    assert {p["id"]: p["title"] for p in board["panels"] if p["id"] <= 9} == dict(
        enumerate(REFERENCE_TITLES, start=1)
    )
    for panel in board["panels"]:
        assert panel["description"]


def test_ids_and_ref_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and all(refs) and len(refs) == len(set(refs))


def test_grid_fits_24_columns_without_overlap(board: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['id']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]


def test_every_variable_used_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]}
    texts = [t["expr"] for _, t in targets(board)]
    texts += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    texts += [json.dumps(p["datasource"]) for p in board["panels"]]
    used = {m for text in texts for m in re.findall(r"\$\{?(\w+)", text)}
    assert used - GRAFANA_BUILTINS <= defined
    assert {"datasource", "namespace", "tier", "user", "model"} <= defined


def test_every_target_has_the_prometheus_datasource(board: dict[str, Any]) -> None:
    for panel, target in targets(board):
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel[
            "title"
        ]
        assert target["expr"]


def test_variables_are_multi_select_with_all(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("namespace", "tier", "user", "model"):
        variable = variables[name]
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
        assert variable["refresh"] == 2  # re-read when the time range changes
    assert 'tier=~"$tier"' in variables["user"]["query"]
    assert 'limitador_namespace=~"$namespace"' in variables["user"]["query"]
    assert "limited_calls" in variables["user"]["query"]  # users who were only limited
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert variables["request_namespace"]["hide"] == 2


def test_importable_with_a_datasource_input(board: dict[str, Any]) -> None:
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS"
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    assert board["refresh"] == "30s"
    assert board["time"] == {"from": "now-1h", "to": "now"}


def test_counters_are_only_read_through_the_counting_technique(board: dict[str, Any]) -> None:
    """Counters are read as `increase_exact` reads them: range functions over a window, or a
    start value (at the window's start, or subtracted from an end value), never summed raw."""
    for panel, target in targets(board):
        for counter in COUNTERS:
            for match in re.finditer(rf"{counter}\{{[^}}]*\}}(\[[^\]]+\])?", target["expr"]):
                before = target["expr"][: match.start()]
                after = target["expr"][match.end() :]
                window = match.group(1)
                if window is None:
                    at_start = re.match(r" (offset|@) ", after) or before.endswith(" - ")
                    assert at_start, f"{panel['title']}: raw counter value"
                    continue
                assert re.search(
                    r"(increase|rate|resets|last_over_time|max_over_time)\($", before
                ), panel["title"]
                assert window in ("[$__range]", "[$__rate_interval]", "[1h]") or re.fullmatch(
                    r"\[\d+s\]", window
                ), (panel["title"], window)


def test_token_panels_never_read_the_request_namespace(board: dict[str, Any]) -> None:
    for panel, target in targets(board):
        for match in re.finditer(
            r"(authorized_hits|:authorized_hits:increase1m)\{([^}]*)\}", target["expr"]
        ):
            matchers = match.group(2)
            if panel["title"].startswith("⛽") and target["refId"] == "B":
                assert 'limitador_namespace=~"$request_namespace"' in matchers  # the request quota
            else:
                assert 'limitador_namespace!~"$request_namespace"' in matchers, panel["title"]


def test_tier_colours_on_every_by_tier_panel(board: dict[str, Any], example_config: Config) -> None:
    colours = {t.name: t.colour for t in example_config.tiers}
    assert colours == {"free": "green", "premium": "blue", "enterprise": "gold"}
    coloured = [
        p
        for p in board["panels"]
        if any(t["legendFormat"].endswith("{{tier}}") for t in p["targets"])
    ]
    assert len(coloured) >= 8
    for panel in coloured:
        overrides = {
            o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
            for o in panel["fieldConfig"]["overrides"]
            if o["matcher"]["id"] == "byRegexp"
        }
        for tier, colour in colours.items():
            pattern = next(p for p in overrides if p.endswith(f"{tier}$/"))
            assert overrides[pattern] == colour
            legend_of_series = f"alice · {tier}"
            assert re.search(pattern.strip("/"), legend_of_series)
            assert re.search(pattern.strip("/"), tier)


def test_output_is_deterministic(example_config: Config) -> None:
    first = render_json(build_catalogue(example_config, price_date=PRICE_DAY))
    second = render_json(build_catalogue(example_config, price_date=PRICE_DAY))
    assert first == second
    assert first.endswith("}\n") and "🎯" in first


def test_prices_come_from_the_config_on_the_price_date(example_config: Config) -> None:
    data = example_config.model_dump(mode="json")
    data["tiers"][1]["price_changes"] = [
        {"effective_from": "2025-07-01", "per_hit": 0.009},
        {"effective_from": "2025-08-01", "per_hit": 0.02, "model": "mistral-7b"},
    ]
    config = parse_config(data)
    june = render_json(build_catalogue(config, price_date=date(2025, 6, 30)))
    july = render_json(build_catalogue(config, price_date=date(2025, 7, 1)))
    august = render_json(build_catalogue(config, price_date=date(2025, 8, 1)))
    price = r"label_replace(vector({}), \"tier\", \"premium\", \"\", \"\")"
    assert price.format("0.008") in june and price.format("0.009") not in june
    assert price.format("0.009") in july
    assert 'label_replace(vector(0.02), \\"tier\\", \\"premium\\"' in august
    assert (
        '\\"model\\", \\"mistral-7b\\"' in august and "mistral-7b" not in july.split("model=~")[0]
    )
    for text in (june, july, august):
        assert 'vector(0.01), \\"tier\\", \\"enterprise\\"' in text  # enterprise is priced too


def test_a_fourth_tier_gets_panels_colours_and_costs(example_config: Config) -> None:
    board = dashboard(build_catalogue(with_fourth_tier(example_config), price_date=PRICE_DAY))
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in board["panels"]}
    for title in (
        "💰 Top 5 Users by Cost",
        "🧾 Total Cost",
        "💵 Revenue by Tier",
        "📋 Detailed Metrics Table",
    ):
        assert 'label_replace(vector(0.02), "tier", "platinum", "", "")' in exprs[title]
    for panel in board["panels"]:
        if any(t["legendFormat"].endswith("{{tier}}") for t in panel["targets"]):
            assert any(
                o["matcher"]["options"] == "/^(?:.* · )?platinum$/"
                for o in panel["fieldConfig"]["overrides"]
            )
    quota = next(p for p in board["panels"] if p["title"].startswith("⛽"))
    # (tiers sharing a limit window share one query part: `tier=~"...|platinum|..."`)
    assert re.search(r'tier=~?"([^"]*\|)?platinum(\|[^"]*)?"', quota["targets"][0]["expr"])
    table = next(p for p in board["panels"] if p["type"] == "table")
    mapping = next(
        o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Tier"
    )
    assert mapping["properties"][0]["value"][0]["options"]["platinum"]["color"] == "purple"


def test_configmap_for_the_sidecar(example_config: Config) -> None:
    catalogue = build_catalogue(example_config, price_date=PRICE_DAY)
    doc = yaml.safe_load(render_configmap(catalogue, namespace="observability"))
    assert doc["apiVersion"] == "v1" and doc["kind"] == "ConfigMap"
    assert doc["metadata"]["namespace"] == "observability"
    assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
    body = json.loads(doc["data"]["maas-token-metrics.json"])
    assert body["uid"] == "maas-token-metrics" and "__inputs" not in body
    assert [p["title"] for p in body["panels"]] == [p.title for p in catalogue.panels]


def test_grafana_operator_resource(example_config: Config) -> None:
    catalogue = build_catalogue(example_config, price_date=PRICE_DAY)
    doc = yaml.safe_load(render_grafana_dashboard(catalogue, datasource_name="prom-main"))
    assert (
        doc["apiVersion"] == "grafana.integreatly.org/v1beta1" and doc["kind"] == "GrafanaDashboard"
    )
    assert doc["spec"]["datasources"] == [
        {"inputName": "DS_PROMETHEUS", "datasourceName": "prom-main"}
    ]
    assert doc["spec"]["instanceSelector"]["matchLabels"]
    assert json.loads(doc["spec"]["json"]) == dashboard(catalogue)


runner = CliRunner()


def test_cli_writes_identical_bytes_each_time(tmp_path: Path) -> None:
    outputs = []
    for name in ("a.json", "b.json"):
        result = runner.invoke(
            app,
            [
                "dashboard",
                "-c",
                str(EXAMPLE_CONFIG),
                "--price-date",
                "2025-06-01",
                "-o",
                str(tmp_path / name),
            ],
        )
        assert result.exit_code == 0, result.output
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    stdout = runner.invoke(
        app, ["dashboard", "-c", str(EXAMPLE_CONFIG), "--price-date", "2025-06-01"]
    )
    assert stdout.stdout.encode() == outputs[0]


@pytest.mark.parametrize(
    ("fmt", "kind"), [("configmap", "ConfigMap"), ("grafana-operator", "GrafanaDashboard")]
)
def test_cli_kubernetes_formats(fmt: str, kind: str) -> None:
    result = runner.invoke(
        app, ["dashboard", "-c", str(EXAMPLE_CONFIG), "--format", fmt, "--recording-rules"]
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["kind"] == kind
    assert "increase1m" in json.dumps(doc)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: []\nmodels: []\n")
    result = runner.invoke(app, ["dashboard", "-c", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["dashboard", "-c", str(EXAMPLE_CONFIG), "--price-date", "June"])
    assert (
        result.exit_code != 0
        and result.stderr == "error: --price-date 'June' is not a date in YYYY-MM-DD form\n"
    )
    result = runner.invoke(app, ["dashboard", "-c", str(EXAMPLE_CONFIG), "--format", "xml"])
    assert result.exit_code != 0
