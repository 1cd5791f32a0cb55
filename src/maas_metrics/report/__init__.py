"""Usage and billing reports from Prometheus: tokens, allowed and limited calls, success rate, cost.

`build_report` reads the counters window by window (see `query`), prices
each window with the prices of its day (see `pricing`), and sums the rows
by the requested keys; `formats` and `html` render the result.
"""

from __future__ import annotations

from collections.abc import Callable

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.policies import request_namespaces
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.report.model import (
    DEFAULT_BY,
    GROUP_KEYS,
    Report,
    ReportInputError,
    ReportRequest,
    Row,
    Totals,
    aggregate,
    parse_group_by,
)
from maas_metrics.report.pricing import price_boundaries, price_on, uses_token_prices
from maas_metrics.report.query import (
    ALLOWED,
    COMPLETION,
    DEFAULT_STEP,
    LIMITED,
    PROMPT,
    TOKENS,
    WindowReader,
    plan_windows,
    usage_of,
)
from maas_metrics.report.timerange import TimeInputError, TimeRange, resolve_range


def build_report(
    api: PrometheusAPI,
    config: Config,
    request: ReportRequest,
    done: Callable[[float], None] | None = None,
) -> Report:
    """The report for `request`; `done(seconds)` is called as each window of the range is read."""
    rng = request.range
    counters = [TOKENS, ALLOWED, LIMITED]
    if uses_token_prices(config):
        counters[1:1] = [PROMPT, COMPLETION]
    if "namespace" in request.filters and not (
        set(request.filters["namespace"]) - set(request_namespaces(config))
    ):
        # Only the request namespace is selected: it holds no tokens.
        counters = [c for c in counters if not c.tokens_only]
    reader = WindowReader(api, config, request, counters)
    step = request.step or DEFAULT_STEP
    tier_index = request.detail_labels.index(request.schema.dimension)
    model_index = request.detail_labels.index(contract.MODEL)
    detail: dict[tuple[str, ...], Totals] = {}
    unknown: set[str] = set()
    for a, b in plan_windows(
        rng.start, rng.end, price_boundaries(config, rng.start, rng.end), step
    ):
        for window_start, values_by_key in reader.read(a, b, done):
            day = window_start.date()
            for key, values in values_by_key.items():
                price = price_on(config, key[tier_index], key[model_index], day)
                usage = usage_of(values)
                if price is None and usage.tokens:
                    unknown.add(key[tier_index])
                totals = Totals(
                    tokens=usage.tokens,
                    allowed=values.get("allowed", 0.0),
                    limited=values.get("limited", 0.0),
                    cost=price.cost(usage) if price is not None else 0.0,
                )
                detail.setdefault(key, Totals()).add(totals)
    rows, total = aggregate(detail, request.detail_labels, request.by)
    return Report(
        start=rng.start,
        end=rng.end,
        by=request.by,
        filters=request.filters,
        rows=rows,
        total=total,
        detail=detail,
        detail_labels=request.detail_labels,
        clipped=rng.clipped,
        unknown_tiers=tuple(sorted(unknown)),
        queries=reader.queries,
    )


__all__ = [
    "DEFAULT_BY",
    "GROUP_KEYS",
    "Report",
    "ReportInputError",
    "ReportRequest",
    "Row",
    "TimeInputError",
    "TimeRange",
    "Totals",
    "build_report",
    "parse_group_by",
    "resolve_range",
]
