"""Exact reports from the ledger: integer sums per day, priced with the price of their day.

The amounts come from `cells.read_cells` (whole roll-up buckets, raw records
only at the edges, in one snapshot); each (day, user, tier, model, namespace)
cell is priced with its day's price (`report.pricing`), so the result is the
same `Report` the Prometheus path produces and every format renders it.
`day` and `month` are extra `--by` keys here (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from sqlalchemy import Engine

from maas_metrics.config import Config
from maas_metrics.ledger.cells import Amounts, Cell, read_cells
from maas_metrics.report.model import Report, ReportInputError, Row, Totals
from maas_metrics.report.pricing import Price, Usage, price_on

LEDGER_KEYS = ("user", "tier", "model", "namespace", "day", "month")
DETAIL = ("user", "tier", "model", "namespace", "day")


def parse_ledger_by(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys or any(k not in LEDGER_KEYS for k in keys) or len(set(keys)) != len(keys):
        raise ReportInputError(
            f"--by {text!r}: use distinct keys from {', '.join(LEDGER_KEYS)} (comma-separated)"
        )
    return keys


def cell_cost(price: Price | None, amounts: Amounts) -> float | None:
    if price is None:
        return None
    usage = Usage(amounts.tokens, amounts.prompt_tokens, amounts.completion_tokens)
    return price.cost(usage)


def _key_value(key: str, cell: Cell) -> str:
    if key == "day":
        return cell[4].isoformat()
    if key == "month":
        return cell[4].strftime("%Y-%m")
    return str(cell[DETAIL.index(key)])


def build_ledger_report(
    engine: Engine,
    config: Config,
    start: datetime,
    end: datetime,
    by: tuple[str, ...],
    filters: Mapping[str, tuple[str, ...]],
    clipped: bool = False,
) -> Report:
    """The report over (start, end] grouped by `by`, exact, priced per day."""
    keep_ns = "namespace" in by
    cells = read_cells(engine, start, end, filters, keep_ns)
    labels = ("user", "tier", "model", "limitador_namespace", "day")
    prices: dict[tuple[str, str, date], Price | None] = {}
    detail: dict[tuple[str, ...], Totals] = {}
    rows: dict[tuple[str, ...], Totals] = {}
    total = Totals()
    unknown: set[str] = set()
    for cell, amounts in cells.items():
        price_key = (cell[1], cell[2], cell[4])
        if price_key not in prices:
            prices[price_key] = price_on(config, *price_key)
        cost = cell_cost(prices[price_key], amounts)
        if cost is None:
            unknown.add(cell[1])
        totals = Totals(amounts.tokens, amounts.allowed, amounts.limited, cost or 0.0)
        detail.setdefault((*cell[:4], cell[4].isoformat()), Totals()).add(totals)
        rows.setdefault(tuple(_key_value(k, cell) for k in by), Totals()).add(totals)
        total.add(totals)
    used = {k: t for k, t in rows.items() if t.tokens or t.allowed or t.limited or t.cost}
    ordered = sorted(used.items(), key=lambda kv: (-round(kv[1].cost, 9), -kv[1].tokens, kv[0]))
    return Report(
        start=start,
        end=end,
        by=by,
        filters=filters,
        rows=tuple(Row(k, t) for k, t in ordered),
        total=total,
        detail=detail,
        detail_labels=labels,
        clipped=clipped,
        unknown_tiers=tuple(sorted(unknown)),
    )
