"""Billing panels that read the ledger through Grafana's built-in PostgreSQL data source.

The Prometheus panels estimate with `increase()`; these read the ledger's
hourly roll-up (`ledger_hourly`), so finance numbers in Grafana are the
ledger's exact integers. An hour bucket holds the records that ended in
`(bucket, bucket + 1 h]`; a panel sums the hours that lie wholly inside the
dashboard's range (`$__timeFilter` on the bucket start, bucket end at most
`$__timeTo()`), which equals `maas-metrics report --source ledger` for
ranges on whole hours. Cost is priced in SQL with a CASE generated from the
config's prices and their effective dates (the same rule as
`report/pricing.py`: per UTC day, a model's own change beats a general one),
so prices are never typed twice.

The data source comes from its own `__inputs` entry (`DS_LEDGER`) through a
`ledger` data source variable, next to the Prometheus one.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import literal
from sqlalchemy.dialects.postgresql.base import PGDialect

from maas_metrics.config import Config, PriceChange, Tier

PLUGIN_ID = "grafana-postgresql-datasource"
LEDGER_INPUT = "DS_LEDGER"
LEDGER_VARIABLE = "ledger"
ROW_TITLE = "Billing (from the ledger)"
PANEL_HEIGHT = 9


_DIALECT = PGDialect()  # type: ignore[no-untyped-call]


def _lit(value: str) -> str:
    """A SQL string literal for PostgreSQL, quoted by SQLAlchemy."""
    return str(literal(value).compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _amount(per_hit: float, change: PriceChange | None) -> str:
    if change is not None and change.per_prompt_token is not None:
        return (
            f"prompt_tokens * {change.per_prompt_token!r} + "
            f"completion_tokens * {change.per_completion_token!r}"
        )
    return f"tokens * {per_hit!r}"


def _tier_cases(tier: Tier) -> list[str]:
    """WHEN branches for one tier, in `Tier.price_change_on`'s order of precedence."""
    ordered = sorted(
        tier.price_changes, key=lambda c: (c.model is not None, c.effective_from), reverse=True
    )
    out = []
    for change in ordered:
        model = "" if change.model is None else f" AND model = {_lit(change.model)}"
        out.append(
            f"WHEN tier = {_lit(tier.name)}{model} AND bucket_ms >= {_ms(change.effective_from)} "
            f"THEN {_amount(change.per_hit, change)}"
        )
    out.append(f"WHEN tier = {_lit(tier.name)} THEN {_amount(tier.price_per_hit, None)}")
    return out


def cost_expression(config: Config) -> str:
    """Cost of one roll-up row in USD (NULL for a tier the config does not price)."""
    cases = [case for tier in config.tiers for case in _tier_cases(tier)]
    return "CASE " + " ".join(cases) + " END"


def _source(config: Config) -> str:
    """The hours of the dashboard's range, each roll-up row with its cost."""
    return (
        "(SELECT *, to_timestamp(bucket_ms / 1000.0) AS bucket_start, "
        "to_timestamp((bucket_ms + 3600000) / 1000.0) AS bucket_end, "
        f"{cost_expression(config)} AS cost FROM ledger_hourly) AS h "
        "WHERE $__timeFilter(bucket_start) AND bucket_end <= $__timeTo()"
    )


def panel_queries(config: Config) -> dict[str, str]:
    """Panel title -> its SQL (with Grafana's macros)."""
    src = _source(config)
    return {
        "Cost by tier (ledger)": (
            f"SELECT tier, sum(tokens) AS tokens, sum(cost) AS cost_usd FROM {src} "
            "GROUP BY tier ORDER BY tier"
        ),
        "Tokens by user (ledger)": (
            f"SELECT user_name AS user, sum(tokens) AS tokens, sum(cost) AS cost_usd FROM {src} "
            "GROUP BY user_name ORDER BY tokens DESC, user_name"
        ),
        "Cost by model (ledger)": (
            f"SELECT model, sum(tokens) AS tokens, sum(cost) AS cost_usd FROM {src} "
            "GROUP BY model ORDER BY model"
        ),
    }


def _datasource() -> dict[str, str]:
    return {"type": PLUGIN_ID, "uid": f"${{{LEDGER_VARIABLE}}}"}


def _table(panel_id: int, title: str, sql: str, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "table",
        "title": title,
        "description": "Exact, from the ledger's hourly roll-up: the whole hours inside the "
        "range, priced with the config's prices in force on each day.",
        "datasource": _datasource(),
        "gridPos": {"x": x, "y": y, "w": 8, "h": PANEL_HEIGHT},
        "fieldConfig": {
            "defaults": {},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "cost_usd"},
                    "properties": [
                        {"id": "unit", "value": "currencyUSD"},
                        {"id": "decimals", "value": 4},
                    ],
                }
            ],
        },
        "options": {"showHeader": True},
        "targets": [
            {
                "refId": "A",
                "datasource": _datasource(),
                "editorMode": "code",
                "format": "table",
                "rawQuery": True,
                "rawSql": sql,
            }
        ],
    }


def _variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": LEDGER_VARIABLE,
        "label": "Ledger",
        "description": "The PostgreSQL database of the maas-metrics ledger (ledger.url).",
        "query": PLUGIN_ID,
        "current": {"text": "Ledger", "value": f"${{{LEDGER_INPUT}}}", "selected": True},
        "hide": 0,
        "multi": False,
        "includeAll": False,
    }


def render_with_ledger(doc: dict[str, Any], config: Config) -> str:
    """The dashboard JSON text with the ledger panels (the same layout as `render_json`)."""
    return json.dumps(add_ledger_panels(doc, config), indent=2, ensure_ascii=False) + "\n"


def add_ledger_panels(doc: dict[str, Any], config: Config) -> dict[str, Any]:
    """`doc` (the dashboard JSON) with a billing row of ledger panels below every other panel."""
    panels = list(doc.get("panels", []))
    next_id = max((p["id"] for p in panels), default=0) + 1
    y = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=0)
    row: dict[str, Any] = {
        "id": next_id,
        "type": "row",
        "title": ROW_TITLE,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }
    added = [row]
    for i, (title, sql) in enumerate(panel_queries(config).items()):
        added.append(_table(next_id + 1 + i, title, sql, 8 * i, y + 1))
    out = {**doc, "panels": panels + added}
    templating = dict(out.get("templating", {}))
    templating["list"] = [*templating.get("list", []), _variable()]
    out["templating"] = templating
    if "__inputs" in out:
        out["__inputs"] = [
            *out["__inputs"],
            {
                "name": LEDGER_INPUT,
                "label": "Ledger (PostgreSQL)",
                "description": "The PostgreSQL database of the maas-metrics ledger",
                "type": "datasource",
                "pluginId": PLUGIN_ID,
                "pluginName": "PostgreSQL",
            },
        ]
        requires = [r for r in out.get("__requires", []) if r.get("id") != "table"]
        out["__requires"] = [
            *requires,
            {"type": "datasource", "id": PLUGIN_ID, "name": "PostgreSQL", "version": "1.0.0"},
            {"type": "panel", "id": "table", "name": "table", "version": ""},
        ]
    return out
