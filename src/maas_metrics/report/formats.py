"""The report as a terminal table, CSV or JSON (HTML with charts: see `html`)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from maas_metrics.report.model import Report, Totals

Format = Literal["table", "csv", "json", "html"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json", "html")

COLUMNS = ("tokens", "allowed_calls", "limited_calls", "success_rate", "cost_usd")


def number(value: float) -> int | float:
    """Whole numbers as ints (counters usually are), others as floats."""
    return int(value) if float(value).is_integer() else value


def money(value: float) -> float:
    return round(value, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def values(totals: Totals) -> dict[str, Any]:
    rate = totals.success_rate
    return {
        "tokens": number(totals.tokens),
        "allowed_calls": number(totals.allowed),
        "limited_calls": number(totals.limited),
        "success_rate": None if rate is None else round(rate, 6),
        "cost_usd": money(totals.cost),
    }


def period_text(report: Report) -> str:
    text = f"{report.start.isoformat()} to {report.end.isoformat()}"
    return text + " (clipped at now)" if report.clipped else text


def to_json(report: Report) -> str:
    doc = {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "clipped_at_now": report.clipped,
        "by": list(report.by),
        "filters": {k: list(v) for k, v in sorted(report.filters.items())},
        "currency": "USD",
        "rows": [
            {**dict(zip(report.by, row.key, strict=True)), **values(row.totals)}
            for row in report.rows
        ],
        "total": values(report.total),
        "unpriced_tiers": list(report.unknown_tiers),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_csv(report: Report) -> str:
    """One row per group; no total row (a spreadsheet sums), success rate empty without calls."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.by, *COLUMNS])
    for row in report.rows:
        v = values(row.totals)
        writer.writerow([*row.key, *("" if v[c] is None else v[c] for c in COLUMNS)])
    return out.getvalue()


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def dollars(value: float) -> str:
    return f"${value:,.4f}"


def count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def to_table(report: Report, console: Console) -> None:
    table = Table(
        title=f"MaaS usage and cost, {period_text(report)}",
        caption="tokens: authorized hits of the token policy; calls: policy checks",
        show_footer=True,
    )
    cells = [
        count(report.total.tokens),
        count(report.total.allowed),
        count(report.total.limited),
        percent(report.total.success_rate),
        dollars(report.total.cost),
    ]
    # On a narrow terminal names wrap; numbers never get cut.
    for index, key in enumerate(report.by):
        table.add_column(key, footer="Total" if index == 0 else "", overflow="fold")
    for title, footer in zip(
        ("Tokens", "Allowed", "Limited", "Success", "Cost"), cells, strict=True
    ):
        table.add_column(title, footer=footer, justify="right", no_wrap=True)
    for row in report.rows:
        t = row.totals
        table.add_row(
            *row.key,
            count(t.tokens),
            count(t.allowed),
            count(t.limited),
            percent(t.success_rate),
            dollars(t.cost),
        )
    console.print(table)
    if report.unknown_tiers:
        console.print(
            f"[yellow]unpriced tiers (not in the config): {', '.join(report.unknown_tiers)}"
        )
