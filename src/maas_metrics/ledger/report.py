"""Exact reports from the ledger: integer sums, read from daily and hourly roll-ups plus raw edges.

The range (from, to] is tiled: whole days from `ledger_daily`, whole hours of
the partial days from `ledger_hourly`, and the partial hours at the two
edges from `ledger_records`; each gives rows per (day, user, tier, model, namespace),
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

from sqlalchemy import Connection, Engine, Table, func, select

from maas_metrics.config import Config
from maas_metrics.ledger.rollups import calls_of
from maas_metrics.ledger.schema import DAY_MS, ROLLUP_VALUES, ROLLUPS, records
from maas_metrics.report.model import Report, ReportInputError, Row, Totals
from maas_metrics.report.pricing import Price, Usage, price_on

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


def _rollup_cells(
    conn: Connection,
    table: Table,
    size: int,
    a: int,
    b: int,
    filters: Mapping[str, Sequence[str]],
    keep_ns: bool,
) -> Cells:
    """Whole buckets (t, t + size] of `table` with a <= t and t + size <= b."""
    c = table.c
    day = (c.bucket_ms // DAY_MS).label("day")
    cols = {"user": c.user_name, "tier": c.tier, "model": c.model, "namespace": c.namespace}
    keys = [c.user_name, c.tier, c.model, day]
    if keep_ns:
        keys.append(c.namespace)
    sums = [func.sum(c[n]) for n in ROLLUP_VALUES]
    stmt = (
        select(*keys, *sums)
        .where(c.bucket_ms >= a, c.bucket_ms + size <= b, *_filters(cols, filters))
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
    """Records with a < ended_ms <= b, split into namespaces exactly as the roll-ups are.

    One scan grouped by the namespace columns; the split (`rollups` rule) is done on the
    few groups in Python.
    """
    r = records.c
    where = [r.ended_ms > a, r.ended_ms <= b]
    cols: dict[str, Any] = {"user": r.user_name, "tier": r.tier, "model": r.model}
    where += _filters(cols, {k: v for k, v in filters.items() if k != "namespace"})
    day = (r.ended_ms - 1) // DAY_MS
    keys = [
        r.user_name,
        r.tier,
        r.model,
        day,
        r.requests_namespace,
        r.tokens_namespace,
        r.usage_namespace,
        r.limited_namespace,
    ]
    sums = [
        func.sum(r.total_tokens),
        func.sum(r.prompt_tokens),
        func.sum(r.completion_tokens),
        func.sum(r.cached_tokens),
        func.count(),
    ]
    stmt = select(*keys, *sums).where(*where).group_by(*keys)
    cells: Cells = {}
    wanted = set(filters.get("namespace", ()))

    def add(user: str, tier: str, model: str, ns: str, d: date, amounts: Amounts) -> None:
        if wanted and ns not in wanted:
            return
        cells.setdefault((user, tier, model, ns if keep_ns else "", d), Amounts()).add(amounts)

    for user, tier, model, d, req_ns, tok_ns, usage_ns, lim_ns, *v in conn.execute(stmt):
        day_of = _day(int(d))
        tokens, prompt, completion, cached, count = (int(x or 0) for x in v)
        if usage_ns is not None and tokens:
            add(user, tier, model, usage_ns, day_of, Amounts(tokens, prompt, completion, cached))
        for ns, allowed, limited in calls_of(req_ns, tok_ns, lim_ns):
            add(
                user,
                tier,
                model,
                ns,
                day_of,
                Amounts(allowed=allowed * count, limited=limited * count),
            )
    return cells


def _merge(into: Cells, part: Cells) -> Cells:
    if len(part) > len(into):
        into, part = part, into
    for key, amounts in part.items():
        into.setdefault(key, Amounts()).add(amounts)
    return into


def _tiled(
    conn: Connection,
    a: int,
    b: int,
    levels: tuple[tuple[Table, int], ...],
    filters: Mapping[str, Sequence[str]],
    keep_ns: bool,
) -> Cells:
    """(a, b] from the coarsest roll-up that has whole buckets inside it, the rest finer."""
    if a >= b:
        return {}
    if not levels:
        return _raw_cells(conn, a, b, filters, keep_ns)
    (table, size), finer = levels[0], levels[1:]
    first = -(-a // size) * size  # the first whole bucket starts here
    last = b // size * size  # the last whole bucket ends here
    if first >= last:
        return _tiled(conn, a, b, finer, filters, keep_ns)
    cells = _rollup_cells(conn, table, size, first, last, filters, keep_ns)
    cells = _merge(cells, _tiled(conn, a, first, finer, filters, keep_ns))
    return _merge(cells, _tiled(conn, last, b, finer, filters, keep_ns))


def read_cells(
    engine: Engine,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Sequence[str]],
    keep_ns: bool = True,
) -> Cells:
    """Exact amounts of records that ended in (start, end] (namespace "" unless `keep_ns`)."""
    with engine.connect() as conn:
        return _tiled(conn, _ms(start), _ms(end), ROLLUPS, filters, keep_ns)


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
