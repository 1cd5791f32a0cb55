"""Hourly roll-ups: how one record counts per namespace, in Python (as batches arrive) and in SQL.

A record adds, in its hour and its day bucket (see `schema.bucket_of`):
- its tokens to `usage_namespace` (when usage was reported),
- one allowed call to each policy namespace whose check admitted it,
- one limited call to the namespace whose check answered 429,
exactly as the gateway's counters move. `rollup_deltas` applies this to a
batch being written; `namespace_parts` is the same rule in SQL (the report's
partial hours, and `rebuild`, which recomputes the table from the records).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, literal, select, union_all
from sqlalchemy.sql import ColumnElement, Select

from maas_metrics.ledger.schema import (
    HOUR_MS,
    ROLLUP_KEY,
    ROLLUP_VALUES,
    ROLLUPS,
    bucket_of,
    records,
)


def _calls(row: dict[str, Any]) -> list[tuple[str, int, int]]:
    return calls_of(row["requests_namespace"], row["tokens_namespace"], row["limited_namespace"])


def calls_of(
    requests_ns: str | None, tokens_ns: str | None, limited_ns: str | None
) -> list[tuple[str, int, int]]:
    """(namespace, allowed, limited) of one record, the rule `namespace_parts` applies in SQL:
    one allowed call in each checked policy's namespace other than the one that answered 429,
    one limited call there.

    (With both policies in one namespace and a 429 from it, that namespace gets one limited
    call and no allowed one; this rule and the roll-ups' SQL must stay the same rule, which
    `tests/test_ledger_ranges.py` checks for every combination.)
    """
    out: dict[str, list[int]] = {}
    for ns in (requests_ns, tokens_ns):
        if ns is not None and ns != limited_ns:
            out.setdefault(ns, [0, 0])[0] += 1
    if limited_ns is not None:
        out.setdefault(limited_ns, [0, 0])[1] += 1
    return [(ns, a, b) for ns, (a, b) in out.items()]


def rollup_deltas(rows: Iterable[dict[str, Any]], size_ms: int = HOUR_MS) -> list[dict[str, Any]]:
    """Roll-up increments of record rows per bucket of `size_ms`, sorted by key (a fixed lock
    order: concurrent writers never deadlock)."""
    acc: dict[tuple[Any, ...], list[int]] = {}
    zero = [0] * len(ROLLUP_VALUES)
    for row in rows:
        base = (bucket_of(row["ended_ms"], size_ms), row["user_name"], row["tier"], row["model"])
        usage_ns = row["usage_namespace"]
        if usage_ns is not None and row["total_tokens"]:
            v = acc.setdefault((*base, usage_ns), zero.copy())
            v[0] += row["total_tokens"]
            v[1] += row["prompt_tokens"]
            v[2] += row["completion_tokens"]
            v[3] += row["cached_tokens"]
        for ns, allowed, limited in _calls(row):
            v = acc.setdefault((*base, ns), zero.copy())
            v[4] += allowed
            v[5] += limited
    return [
        dict(zip(ROLLUP_KEY, key, strict=True)) | dict(zip(ROLLUP_VALUES, v, strict=True))
        for key, v in sorted(acc.items())
    ]


def namespace_parts(where: list[Any], period: ColumnElement[Any]) -> Any:
    """SELECT user_name, tier, model, namespace, period, tokens, prompt, completion, cached,
    allowed, limited of the records matching `where`, one row per group and part (UNION ALL)."""
    r = records.c
    base = [r.user_name, r.tier, r.model]
    zero, one = literal(0), literal(1)
    token_sums = [
        func.sum(r.total_tokens),
        func.sum(r.prompt_tokens),
        func.sum(r.completion_tokens),
        func.sum(r.cached_tokens),
    ]

    def part(ns: Any, tokens: bool, allowed: Any, limited: Any, cond: Any) -> Select[Any]:
        sums = token_sums if tokens else [func.sum(zero)] * 4
        return (
            select(
                *base,
                ns.label("namespace"),
                period.label("period"),
                *sums,
                func.sum(allowed),
                func.sum(limited),
            )
            .where(*where, cond)
            .group_by(*base, ns, period)
        )

    admitted_req = and_(
        r.requests_namespace.is_not(None),
        r.limited_namespace.is_distinct_from(r.requests_namespace),
    )
    admitted_tok = and_(
        r.tokens_namespace.is_not(None), r.limited_namespace.is_distinct_from(r.tokens_namespace)
    )
    return union_all(
        part(
            r.usage_namespace,
            True,
            zero,
            zero,
            and_(r.usage_namespace.is_not(None), r.total_tokens > 0),
        ),
        part(r.requests_namespace, False, one, zero, admitted_req),
        part(r.tokens_namespace, False, one, zero, admitted_tok),
        part(r.limited_namespace, False, zero, one, r.limited_namespace.is_not(None)),
    )


def rebuild(engine: Engine) -> int:
    """Recompute every roll-up table from `ledger_records` in one transaction; returns their rows.

    For imports (rows inserted by SQL, not by the writer) and as a repair; the writer keeps
    the roll-ups current on its own.
    """
    total = 0
    with engine.begin() as conn:
        for table, size in ROLLUPS:
            parts = namespace_parts([], (records.c.ended_ms - 1) // size * size).subquery()
            c = parts.c
            names = [c.user_name, c.tier, c.model, c.namespace, c.period]
            sums = [func.sum(col) for col in list(c)[5:]]
            stmt = select(c.period, c.user_name, c.tier, c.model, c.namespace, *sums).group_by(
                *names
            )
            conn.execute(delete(table))
            conn.execute(insert(table).from_select([*ROLLUP_KEY, *ROLLUP_VALUES], stmt))
            total += int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return total
