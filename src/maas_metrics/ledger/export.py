"""Ledger exports: raw records as CSV or JSON Lines, and FOCUS 1.2 cost-and-usage CSV.

Raw exports stream one line per request (with its cost, from the price of
the day its hour bucket belongs to); FOCUS rows are one per day, user,
model and SKU, where a SKU is a model and a token kind: `tokens` under a
per-hit price (the token policy's hits), `prompt-tokens` and
`completion-tokens` under per-token prices. ConsumedQuantity holds the
tokens; BilledCost = EffectiveCost = ListCost = ContractedCost = quantity
x unit price, so FOCUS totals equal the report's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from maas_metrics.config import Config
from maas_metrics.ledger.cells import read_cells
from maas_metrics.ledger.schema import DAY_MS, bucket_of, records
from maas_metrics.report.pricing import price_on

RAW_COLUMNS = (
    "id",
    "started",
    "ended",
    "user",
    "key_id",
    "tier",
    "model",
    "endpoint",
    "stream",
    "outcome",
    "status",
    "limit_name",
    "requests_namespace",
    "tokens_namespace",
    "usage_namespace",
    "limited_namespace",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "latency_ms",
    "ttft_ms",
    "cost_usd",
)

FOCUS_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def raw_rows(
    engine: Engine, config: Config, start: datetime, end: datetime
) -> Iterator[dict[str, Any]]:
    """Every record that ended in (start, end], oldest first, with its cost."""
    a, b = round(start.timestamp() * 1000), round(end.timestamp() * 1000)
    stmt = (
        select(records)
        .where(records.c.ended_ms > a, records.c.ended_ms <= b)
        .order_by(records.c.ended_ms, records.c.id)
        .execution_options(yield_per=5000)
    )
    with engine.connect() as conn:
        for row in conn.execute(stmt).mappings():
            day = datetime.fromtimestamp(bucket_of(row["ended_ms"], DAY_MS) / 1000, UTC).date()
            price = price_on(config, row["tier"], row["model"], day)
            cost = None
            if price is not None and row["usage_namespace"] is not None:
                if price.per_prompt_token is not None and price.per_completion_token is not None:
                    cost = (
                        row["prompt_tokens"] * price.per_prompt_token
                        + row["completion_tokens"] * price.per_completion_token
                    )
                else:
                    cost = row["total_tokens"] * price.per_hit
            yield {
                "id": row["id"],
                "started": _iso(row["started_ms"]),
                "ended": _iso(row["ended_ms"]),
                "user": row["user_name"],
                **{
                    k: row[k]
                    for k in RAW_COLUMNS
                    if k in row and k not in ("id", "started", "ended", "user")
                },
                "stream": bool(row["stream"]),
                "cost_usd": cost,
            }


def to_jsonl(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def to_raw_csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RAW_COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in RAW_COLUMNS])
        if out.tell() > 65536:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _month(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return start, nxt


def _fmt(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def focus_rows(
    engine: Engine,
    config: Config,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """FOCUS 1.2 rows: one per (day, user, tier, model, SKU) with tokens used in (start, end]."""
    cells = read_cells(engine, start, end, filters or {})
    grouped: dict[tuple[str, str, str, date], list[int]] = {}
    for (user, tier, model, _ns, day), amounts in cells.items():
        if amounts.tokens or amounts.prompt_tokens or amounts.completion_tokens:
            acc = grouped.setdefault((user, tier, model, day), [0, 0, 0])
            acc[0] += amounts.tokens
            acc[1] += amounts.prompt_tokens
            acc[2] += amounts.completion_tokens
    out: list[dict[str, Any]] = []
    for (user, tier, model, day), (tokens, prompt, completion) in sorted(grouped.items()):
        price = price_on(config, tier, model, day)
        if price is None:
            continue
        if price.per_prompt_token is not None and price.per_completion_token is not None:
            skus = [
                ("prompt-tokens", prompt, price.per_prompt_token),
                ("completion-tokens", completion, price.per_completion_token),
            ]
        else:
            skus = [("tokens", tokens, price.per_hit)]
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        period_start = max(day_start, start)
        period_end = min(day_start + timedelta(days=1), end)
        billing_start, billing_end = _month(day)
        for kind, quantity, unit_price in skus:
            if not quantity:
                continue
            cost = quantity * unit_price
            sku = f"{model}/{kind}"
            out.append(
                {
                    "BilledCost": cost,
                    "BillingAccountId": tier,
                    "BillingAccountName": f"{tier} tier",
                    "BillingCurrency": "USD",
                    "BillingPeriodStart": _fmt(billing_start),
                    "BillingPeriodEnd": _fmt(billing_end),
                    "ChargeCategory": "Usage",
                    "ChargeClass": "",
                    "ChargeDescription": f"{quantity} {kind} of {model} for {user} ({tier})",
                    "ChargeFrequency": "Usage-Based",
                    "ChargePeriodStart": _fmt(period_start),
                    "ChargePeriodEnd": _fmt(period_end),
                    "ConsumedQuantity": quantity,
                    "ConsumedUnit": "Tokens",
                    "ContractedCost": cost,
                    "ContractedUnitPrice": unit_price,
                    "EffectiveCost": cost,
                    "InvoiceIssuerName": "maas-metrics",
                    "ListCost": cost,
                    "ListUnitPrice": unit_price,
                    "PricingCategory": "Standard",
                    "PricingCurrency": "USD",
                    "PricingQuantity": quantity,
                    "PricingUnit": "Tokens",
                    "ProviderName": "maas-metrics",
                    "PublisherName": "maas-metrics",
                    "ResourceId": model,
                    "ResourceName": model,
                    "ResourceType": "Model",
                    "ServiceCategory": "AI and Machine Learning",
                    "ServiceName": "Models as a Service",
                    "ServiceSubcategory": "Generative AI",
                    "SkuId": sku,
                    "SkuMeter": kind,
                    "SkuPriceId": f"{sku}@{tier}@{day.isoformat()}",
                    "SubAccountId": user,
                    "SubAccountName": user,
                    "Tags": json.dumps({"tier": tier, "user": user}, sort_keys=True),
                }
            )
    return out


def to_focus_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FOCUS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return out.getvalue()
