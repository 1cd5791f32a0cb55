"""Grafana's ledger panels: the JSON's structure, and each panel's SQL run on a real PostgreSQL.

The SQL runs with its macros expanded as Grafana's PostgreSQL data source
expands them (`$__timeFilter(c)` -> `c BETWEEN '<from>' AND '<to>'`,
`$__timeTo()` -> `'<to>'`, RFC 3339 UTC) against a database the ledger
writer filled; every panel must equal the ledger report for the range, and
the tokens also the records themselves. The prices include general,
model-specific and per-token changes on days inside the range.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from maas_metrics.config import Config, parse_config
from maas_metrics.ledger import LedgerStore, RequestRecord
from maas_metrics.ledger.report import build_ledger_report
from tests.fixtures import CLI, EXAMPLE_CONFIG
from tests.ledger_data import random_records
from tests.postgres_server import PostgresServer, postgres_server

RANGES = [
    (datetime(2026, 11, 3, 22, tzinfo=UTC), datetime(2026, 11, 5, 3, tzinfo=UTC)),
    (datetime(2026, 11, 4, 13, tzinfo=UTC), datetime(2026, 11, 4, 14, tzinfo=UTC)),
]
PANELS = {
    "Cost by tier (ledger)": "tier",
    "Tokens by user (ledger)": "user",
    "Cost by model (ledger)": "model",
}


def _config_data(url: str) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    prices = {
        "free": [
            {"effective_from": "2026-11-04", "per_hit": 0.006},
            {
                "effective_from": "2026-11-03",
                "model": "granite-8b",
                "per_hit": 0.007,
                "per_prompt_token": 0.0001,
                "per_completion_token": 0.0002,
            },
        ],
        "premium": [{"effective_from": "2026-11-05", "model": "llama-3-8b", "per_hit": 0.02}],
    }
    for tier in data["tiers"]:
        tier["price_changes"] = prices.get(tier["name"], [])
    data["ledger"] = {"url": url}
    return dict(data)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _expand(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros for a fixed range."""
    f, t = (m.strftime("%Y-%m-%dT%H:%M:%SZ") for m in (start, end))
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", rf"\1 BETWEEN '{f}' AND '{t}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{f}'").replace("$__timeTo()", f"'{t}'")
    assert "$__" not in sql
    return sql


def _record_tokens(recs: list[RequestRecord], start: datetime, end: datetime, by: str) -> Any:
    """Tokens per group straight from the records (end time in (start, end], usage charged)."""
    lo, hi = round(start.timestamp() * 1000), round(end.timestamp() * 1000)
    out: dict[str, int] = defaultdict(int)
    for r in recs:
        if lo < round(r.ended * 1000) <= hi and r.usage_namespace and r.total_tokens:
            out[{"tier": r.tier, "user": r.user, "model": r.model}[by]] += r.total_tokens
    return dict(out)


def test_ledger_panels_json_and_sql_equal_the_ledger_report(
    pg: PostgresServer, tmp_path: Path
) -> None:
    pg.reset()
    config_path = tmp_path / "maas.yaml"
    config_path.write_text(yaml.safe_dump(_config_data(pg.url)))
    config: Config = parse_config(_config_data(pg.url))
    store = LedgerStore(pg.url)
    store.open()
    recs = random_records(4000, seed=23)
    store.write(recs)

    # A PostgreSQL ledger: the panels are added with no flag.
    result = subprocess.run(
        [CLI, "dashboard", "-c", str(config_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    plain = json.loads(
        subprocess.run(
            [CLI, "dashboard", "-c", str(config_path), "--no-ledger-panels"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    panels = doc["panels"]
    assert len(panels) == len(plain["panels"]) + 1 + len(PANELS)  # a row and the panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {p['title']} overlaps another"
        cells |= mine
    inputs = {i["name"]: i for i in doc["__inputs"]}
    assert inputs["DS_LEDGER"]["pluginId"] == "grafana-postgresql-datasource"
    assert inputs["DS_LEDGER"]["type"] == "datasource"
    assert "DS_PROMETHEUS" in inputs
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["ledger"]["query"] == "grafana-postgresql-datasource"
    assert variables["ledger"]["current"]["value"] == "${DS_LEDGER}"
    ledger_panels = {p["title"]: p for p in panels if p["title"] in PANELS}
    assert set(ledger_panels) == set(PANELS)
    for p in ledger_panels.values():
        ds = {"type": "grafana-postgresql-datasource", "uid": "${ledger}"}
        assert p["datasource"] == ds and p["targets"][0]["datasource"] == ds
        assert p["targets"][0]["format"] == "table"

    try:
        with psycopg.connect(pg.url) as conn:
            for start, end in RANGES:
                for title, by in PANELS.items():
                    sql = _expand(ledger_panels[title]["targets"][0]["rawSql"], start, end)
                    got = {
                        str(row[0]): (int(row[1]), float(row[2]))
                        for row in conn.execute(sql).fetchall()
                    }
                    report = build_ledger_report(store.engine, config, start, end, (by,), {})
                    want = {
                        row.key[0]: (round(row.totals.tokens), row.totals.cost)
                        for row in report.rows
                        if row.totals.tokens or row.totals.cost
                    }
                    got = {k: v for k, v in got.items() if v[0] or v[1]}
                    assert {k: v[0] for k, v in got.items()} == _record_tokens(
                        recs, start, end, by
                    ), title
                    assert set(got) == set(want), title
                    for key, (tokens, cost) in got.items():
                        assert tokens == want[key][0], (title, key)
                        assert cost == pytest.approx(want[key][1], rel=1e-9, abs=1e-12), (
                            title,
                            key,
                        )
    finally:
        store.close()


def test_ledger_panels_only_in_json(tmp_path: Path) -> None:
    config_path = tmp_path / "maas.yaml"
    config_path.write_text(yaml.safe_dump(_config_data("sqlite:///ledger.db")))
    result = subprocess.run(
        [CLI, "dashboard", "-c", str(config_path), "--ledger-panels", "--format", "configmap"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --ledger-panels: only with --format json (Grafana's Import maps DS_LEDGER)"
    ]
    # A SQLite ledger: Grafana cannot read it, so no panels unless asked.
    plain = subprocess.run(
        [CLI, "dashboard", "-c", str(config_path)], capture_output=True, text=True, timeout=120
    )
    assert "DS_LEDGER" not in plain.stdout
