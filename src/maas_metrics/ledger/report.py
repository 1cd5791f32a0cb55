"""Exact reports from the ledger: integer sums, read from hourly roll-ups plus raw edges.

The range (from, to] is split into whole hour buckets, read from
`ledger_hourly`, and the partial hours at its two edges, aggregated from
`ledger_records`; both give rows per (day, user, tier, model, namespace),
priced with the price of their day (`report.pricing`), so the result is the
same `Report` the Prometheus path produces and every format renders it.
`day` and `month` are extra `--by` keys here (UTC).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from maas_metrics.config import Config
from maas_metrics.ledger.rollups import namespace_parts
from maas_metrics.ledger.schema import HOUR_MS, hourly, records
from maas_metrics.report.model import Report, ReportInputError, Row, Totals
from maas_metrics.report.pricing import Price, Usage, price_on

DAY_MS = 86_400_000
LEDGER_KEYS = ("user", "tier", "model", "namespace", "day", "month")
DETAIL = ("user", "tier", "model", "namespace", "day")


@dataclass(slots=True)
class Amounts:
    """Exact integer sums of one (day, user, tier, model, namespace) cell."""

    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    allowed: int = 0
    limited: int = 0

    def add(self, other: Amounts) -> None:
        self.tokens += other.tokens
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.allowed += other.allowed
        self.limited += other.limited


Cells = dict[tuple[str, str, str, str, date], Amounts]
"""(user, tier, model, namespace, day) -> amounts."""


def parse_ledger_by(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys or any(k not in LEDGER_KEYS for k in keys) or len(set(keys)) != len(keys):
        raise ReportInputError(
            f"--by {text!r}: use distinct keys from {', '.join(LEDGER_KEYS)} (comma-separated)"
        )
    return keys


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


@functools.lru_cache(maxsize=4096)
def _day(day_index: int) -> date:
    return datetime.fromtimestamp(day_index * DAY_MS / 1000, UTC).date()


def _filters(columns: Mapping[str, Any], filters: Mapping[str, Sequence[str]]) -> list[Any]:
    return [columns[key].in_(list(values)) for key, values in sorted(filters.items()) if values]


def _hourly_cells(
    conn: Connection, a: int, b: int, filters: Mapping[str, Sequence[str]], keep_ns: bool
) -> Cells:
    """Whole buckets (h, h + 1 h] with a <= h and h + 1 h <= b."""
    day = (hourly.c.hour_ms // DAY_MS).label("day")
    cols = {
        "user": hourly.c.user_name,
        "tier": hourly.c.tier,
        "model": hourly.c.model,
        "namespace": hourly.c.namespace,
    }
    keys = [hourly.c.user_name, hourly.c.tier, hourly.c.model, day]
    if keep_ns:
        keys.append(hourly.c.namespace)
    stmt = (
        select(
            *keys,
            *(
                func.sum(hourly.c[n])
                for n in ("tokens", "prompt_tokens", "completion_tokens", "cached_tokens")
            ),
            func.sum(hourly.c.allowed),
            func.sum(hourly.c.limited),
        )
        .where(hourly.c.hour_ms >= a, hourly.c.hour_ms + HOUR_MS <= b, *_filters(cols, filters))
        .group_by(*keys)
    )
    cells: Cells = {}
    width = len(keys)
    for row in conn.execute(stmt):
        ns = row[4] if keep_ns else ""
        amounts = Amounts(*(int(x or 0) for x in row[width:]))
        cells[(row[0], row[1], row[2], ns, _day(int(row[3])))] = amounts
    return cells


def _raw_cells(
    conn: Connection, a: int, b: int, filters: Mapping[str, Sequence[str]], keep_ns: bool
) -> Cells:
    """Records with a < ended_ms <= b, split into namespaces exactly as the roll-ups are."""
    r = records.c
    where = [r.ended_ms > a, r.ended_ms <= b]
    cols: dict[str, Any] = {"user": r.user_name, "tier": r.tier, "model": r.model}
    where += _filters(cols, {k: v for k, v in filters.items() if k != "namespace"})
    stmt = namespace_parts(where, (r.ended_ms - 1) // DAY_MS)
    cells: Cells = {}
    wanted = set(filters.get("namespace", ()))
    for user, tier, model, ns, d, *v in conn.execute(stmt):
        if wanted and ns not in wanted:
            continue
        cell = cells.setdefault((user, tier, model, ns if keep_ns else "", _day(int(d))), Amounts())
        cell.add(Amounts(*(int(x or 0) for x in v)))
    return cells


def read_cells(
    engine: Engine,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Sequence[str]],
    keep_ns: bool = True,
) -> Cells:
    """Exact amounts of records that ended in (start, end] (namespace "" unless `keep_ns`)."""
    a, b = _ms(start), _ms(end)
    first = -(-a // HOUR_MS) * HOUR_MS  # first whole bucket starts here
    last = b // HOUR_MS * HOUR_MS  # last whole bucket ends here
    with engine.connect() as conn:
        parts: list[Cells] = []
        if first < last:
            parts.append(_hourly_cells(conn, first, last, filters, keep_ns))
            parts.append(_raw_cells(conn, a, first, filters, keep_ns))
            parts.append(_raw_cells(conn, last, b, filters, keep_ns))
        else:
            parts.append(_raw_cells(conn, a, b, filters, keep_ns))
    cells = parts[0]  # the largest part (the roll-ups) is the base: no copy
    for part in parts[1:]:
        for key, amounts in part.items():
            cells.setdefault(key, Amounts()).add(amounts)
    return cells


def cell_cost(price: Price | None, amounts: Amounts) -> float | None:
    if price is None:
        return None
    usage = Usage(amounts.tokens, amounts.prompt_tokens, amounts.completion_tokens)
    return price.cost(usage)


def _key_value(key: str, cell: tuple[str, str, str, str, date]) -> str:
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
