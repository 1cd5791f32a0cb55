"""The "Latency & health" row of the catalogue: request duration, first token, per token, errors, limiter.

Read from the gateway's OpenTelemetry GenAI histograms and Limitador's health
gauges (see `telemetry/latency.py`), placed full width below every other
panel. Quantiles are `histogram_quantile` over `rate(..._bucket[$__rate_interval])`
summed by `model` (and `le`), so they combine every gateway replica; a
quantile is exact to within its bucket. The histograms carry `model` and the
billing dimension but no user or namespace, so only the model and tier
filters apply. `datastore_latency` is a histogram here and a summary in
Limitador (its Prometheus exporter renders histograms as quantiles), so its
panel reads either.

Panel keys: request_duration, time_to_first_token, time_per_output_token,
upstream_error_rate, limiter_health, datastore_latency (ids 101-106).
"""

from __future__ import annotations

from collections.abc import Sequence

from maas_metrics.dashboard.model import Grid, Panel, Target
from maas_metrics.dashboard.promql import MODEL, TIER, by, label_filter, selector

REQUEST_DURATION = "gen_ai_server_request_duration_seconds"
TIME_TO_FIRST_TOKEN = "gen_ai_server_time_to_first_token_seconds"
TIME_PER_OUTPUT_TOKEN = "gen_ai_server_time_per_output_token_seconds"
UPSTREAM_ERRORS = "maas_upstream_errors_total"
DATASTORE_LATENCY = "datastore_latency"

LATENCY_KEYS = (
    "request_duration",
    "time_to_first_token",
    "time_per_output_token",
    "upstream_error_rate",
    "limiter_health",
    "datastore_latency",
)
"""The row's panel keys, in display order."""

FIRST_ID = 101
FILTER = (MODEL, TIER)
"""The seed schema's filters of the row; `latency_panels(dimension=...)` uses the schema's."""


def _rate(series: str) -> str:
    return f"rate({series}[$__rate_interval])"


def quantile(q: float, histogram: str, labels: Sequence[str], matchers: Sequence[str]) -> str:
    """The `q` quantile of a histogram over `$__rate_interval`, per `labels`, every replica combined."""
    buckets = _rate(selector(f"{histogram}_bucket", matchers))
    return f"histogram_quantile({q:g}, {by((*labels, 'le'))} ({buckets}))"


def _quantiles(
    histogram: str,
    quantiles: Sequence[float],
    labels: Sequence[str] = ("model",),
    matchers: Sequence[str] = FILTER,
) -> tuple[Target, ...]:
    legend = " · ".join(f"{{{{{label}}}}}" for label in labels)
    return tuple(
        Target(
            chr(ord("A") + i),
            quantile(q, histogram, labels, matchers),
            legend=f"p{q * 100:g} · {legend}" if legend else f"p{q * 100:g}",
            dashed=i > 0,
        )
        for i, q in enumerate(quantiles)
    )


def upstream_error_ratio() -> str:
    """Upstream errors / admitted requests per model (0 for a model with requests and no error)."""
    errors = f"sum by (model) ({_rate(selector(UPSTREAM_ERRORS, (MODEL,)))})"
    requests = f"sum by (model) ({_rate(selector(f'{REQUEST_DURATION}_count', (MODEL,)))})"
    return f"({errors} or 0 * {requests}) / ({requests} > 0)"


def datastore_quantile(q: float) -> str:
    """Our histogram's quantile, or Limitador's summary quantile (the highest of its replicas)."""
    summary = selector(DATASTORE_LATENCY, (f'quantile="{q:g}"',))
    return f"{quantile(q, DATASTORE_LATENCY, (), ())} or max({summary})"


def latency_panels(top: int, dimension: str = "tier") -> tuple[Panel, ...]:
    """The row's panels, laid out from grid row `top` down (below every other panel).

    `dimension`: the billing dimension's label (`subscription` in today's schema),
    which the histograms carry and the row filters on.
    """
    matchers = (MODEL, label_filter(dimension))
    wide, narrow, height = 12, 6, 8
    second = top + height
    return (
        Panel(
            id=FIRST_ID,
            key="request_duration",
            title="⏱️ Request Duration P50 / P95 / P99 by Model",
            description=(
                "From the whole request received to the last byte of the upstream answer "
                "(gen_ai.server.request.duration), failed requests included, per model. "
                f"Exact to within one histogram bucket. Model and {dimension} filters apply."
            ),
            kind="timeseries",
            unit="s",
            targets=_quantiles(REQUEST_DURATION, (0.5, 0.95, 0.99), matchers=matchers),
            grid=Grid(0, top, wide, height),
        ),
        Panel(
            id=FIRST_ID + 1,
            key="time_to_first_token",
            title="⚡ Time to First Token P50 / P95 by Model",
            description=(
                "Streams: until the first chunk with content; JSON answers: the whole answer "
                "(gen_ai.server.time_to_first_token), successful requests only."
            ),
            kind="timeseries",
            unit="s",
            targets=_quantiles(TIME_TO_FIRST_TOKEN, (0.5, 0.95), matchers=matchers),
            grid=Grid(wide, top, wide, height),
        ),
        Panel(
            id=FIRST_ID + 2,
            key="time_per_output_token",
            title="🔤 Time per Output Token P50 / P95",
            description=(
                "(duration - time to first token) / (output tokens - 1) of successful streams "
                "with usage (gen_ai.server.time_per_output_token), per model."
            ),
            kind="timeseries",
            unit="s",
            targets=_quantiles(TIME_PER_OUTPUT_TOKEN, (0.5, 0.95), matchers=matchers),
            grid=Grid(0, second, narrow, height),
        ),
        Panel(
            id=FIRST_ID + 3,
            key="upstream_error_rate",
            title="🚨 Upstream Error Rate by Model",
            description=(
                "Share of admitted requests whose upstream failed: timeouts (504), bad gateway "
                "(502: cannot connect, cut off, invalid answer) and the upstream's own 5xx "
                f"(maas_upstream_errors_total). Per model; the {dimension} filter does not apply."
            ),
            kind="timeseries",
            unit="percentunit",
            decimals=1,
            min_value=0,
            targets=(Target("A", upstream_error_ratio(), legend="{{model}}"),),
            grid=Grid(narrow, second, narrow, height),
        ),
        Panel(
            id=FIRST_ID + 4,
            key="limiter_health",
            title="💓 Limiter Up / Datastore Partitioned",
            description=(
                "Replicas serving (limitador_up) and replicas that cannot reach their counter "
                "store (datastore_partitioned), over all scraped gateways or Limitadors. "
                "Filters do not apply."
            ),
            kind="timeseries",
            unit="short",
            decimals=0,
            targets=(
                Target("A", "sum(limitador_up) or vector(0)", legend="replicas up"),
                Target(
                    "B",
                    "sum(datastore_partitioned) or vector(0)",
                    legend="replicas partitioned",
                    dashed=True,
                ),
            ),
            grid=Grid(2 * narrow, second, narrow, height),
        ),
        Panel(
            id=FIRST_ID + 5,
            key="datastore_latency",
            title="🗄️ Counter-store Latency P50 / P99",
            description=(
                "Round trips to the counter store (datastore_latency: Redis, or the in-memory "
                "store), every replica combined. Filters do not apply."
            ),
            kind="timeseries",
            unit="s",
            targets=(
                Target("A", datastore_quantile(0.5), legend="p50"),
                Target("B", datastore_quantile(0.99), legend="p99", dashed=True),
            ),
            grid=Grid(3 * narrow, second, narrow, height),
        ),
    )


def bottom(panels: Sequence[Panel]) -> int:
    """The first free grid row below `panels`."""
    return max((p.grid.y + p.grid.h for p in panels), default=0)
