"""Latency and health metrics: the OpenTelemetry GenAI histograms, `datastore_latency`, upstream errors.

Names follow the OpenTelemetry semantic conventions for generative AI
metrics (v1.41.0, status "Development"), converted to Prometheus as the
OpenTelemetry collector converts them (dots to underscores, unit `s` ->
`_seconds`, `{token}` dropped), with the bucket bounds the conventions
recommend:

| family                                        | labels                                                     |
|-----------------------------------------------|------------------------------------------------------------|
| gen_ai_server_request_duration_seconds        | model, <billing dimension>, gen_ai_operation_name, error_type |
| gen_ai_server_time_to_first_token_seconds     | model, <billing dimension>, gen_ai_operation_name           |
| gen_ai_server_time_per_output_token_seconds   | model, <billing dimension>, gen_ai_operation_name           |
| gen_ai_client_token_usage                     | model, <billing dimension>, gen_ai_operation_name, gen_ai_token_type |
| datastore_latency                             | (none, as Limitador)                                        |
| maas_upstream_errors_total                    | model, kind                                                 |

`model` stands for the conventions' `gen_ai.request.model` and the billing
dimension (`tier` today) is added, so the dashboards filter these series
with the same `$model` and `$tier` variables as the Limitador counters.
`error_type` is empty for a successful request (Prometheus drops empty
labels), else one of `ERROR_TYPES` or `http_<status>`.
"""

from __future__ import annotations

from typing import Final

from maas_metrics.telemetry.histogram import Histogram, HistogramSeries
from maas_metrics.telemetry.metrics import BILLING_DIMENSION, Family

SEMCONV_VERSION: Final = "1.41.0"

# Bucket bounds the conventions recommend (ExplicitBucketBoundaries), in seconds or tokens.
REQUEST_DURATION_BOUNDS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TIME_TO_FIRST_TOKEN_BOUNDS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TIME_PER_OUTPUT_TOKEN_BOUNDS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
TOKEN_USAGE_BOUNDS: Final = tuple(4**i for i in range(14))  # 1, 4, 16, ... 67108864
# Counter-store round trips: tens of microseconds in memory, about a millisecond to Redis,
# up to the Redis client's timeout.
DATASTORE_LATENCY_BOUNDS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

#: `gen_ai.operation.name` of each inference path.
OPERATIONS: Final = {"/chat/completions": "chat", "/completions": "text_completion"}

TIMEOUT: Final = "timeout"
"""The upstream did not answer (or finish its stream) in time: the client got a 504 or an error event."""
BAD_GATEWAY: Final = "bad_gateway"
"""No usable answer: cannot connect, cut off, not JSON, an SSE event too large (a 502 or an error event)."""
ERROR_TYPES: Final = (TIMEOUT, BAD_GATEWAY)


def status_error(status: int) -> str:
    """`error_type` of an error status the upstream answered itself (passed to the client)."""
    return f"http_{status}"


class RequestSeries:
    """The series one (model, billing value, operation) observes into, resolved on first use.

    Held per combination by `LatencyMetrics.series_of`, so a request observes
    without building label tuples or looking series up; a series is created
    (born at zero) only when first observed, so a model that never answers
    shows no time-to-first-token series.
    """

    __slots__ = ("_first", "_input", "_metrics", "_ok", "_output", "_per_token", "key")

    def __init__(self, metrics: LatencyMetrics, key: tuple[str, str, str]) -> None:
        self._metrics = metrics
        self.key = key
        self._ok: HistogramSeries | None = None
        self._first: HistogramSeries | None = None
        self._per_token: HistogramSeries | None = None
        self._input: HistogramSeries | None = None
        self._output: HistogramSeries | None = None

    def answered(self, duration: float, first_token: float | None) -> None:
        """A successful request: its duration and (when known) its time to first token."""
        m = self._metrics
        ok = self._ok or self._resolve_ok()
        m.request_duration.add(ok, duration)
        if first_token is not None:
            first = self._first or self._resolve_first()
            m.time_to_first_token.add(first, first_token)

    def per_token(self, seconds: float) -> None:
        series = self._per_token
        if series is None:
            series = self._per_token = self._metrics.time_per_output_token.series(self.key)
        self._metrics.time_per_output_token.add(series, seconds)

    def tokens(self, prompt: int, completion: int) -> None:
        usage = self._metrics.token_usage
        if self._input is None or self._output is None:
            self._input = usage.series((*self.key, "input"))
            self._output = usage.series((*self.key, "output"))
        usage.add(self._input, prompt)
        usage.add(self._output, completion)

    def _resolve_ok(self) -> HistogramSeries:
        self._ok = self._metrics.request_duration.series((*self.key, ""))
        return self._ok

    def _resolve_first(self) -> HistogramSeries:
        self._first = self._metrics.time_to_first_token.series(self.key)
        return self._first


class LatencyMetrics:
    """The histograms and the upstream error counter; `dimension` is the billing label's name."""

    def __init__(self, hold_seconds: float = 0.0, dimension: str = BILLING_DIMENSION) -> None:
        labels = ("model", dimension, "gen_ai_operation_name")
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Generative AI server request duration: from the whole request received to the last "
            "byte of the upstream answer",
            (*labels, "error_type"),
            REQUEST_DURATION_BOUNDS,
            hold_seconds,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to generate first token for successful responses (streams: the first content "
            "chunk; JSON answers: the whole answer)",
            labels,
            TIME_TO_FIRST_TOKEN_BOUNDS,
            hold_seconds,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token generated after the first token for successful streamed "
            "responses",
            labels,
            TIME_PER_OUTPUT_TOKEN_BOUNDS,
            hold_seconds,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used, as the upstream's usage reports them",
            (*labels, "gen_ai_token_type"),
            TOKEN_USAGE_BOUNDS,
            hold_seconds,
        )
        self.datastore_latency = Histogram(
            "datastore_latency",
            "Latency to the underlying counter datastore",
            (),
            DATASTORE_LATENCY_BOUNDS,
            hold_seconds,
        )
        self.upstream_errors = Family(
            "maas_upstream_errors_total",
            "Admitted requests whose upstream failed: timeout, bad_gateway or http_<5xx status>",
            "counter",
            ("model", "kind"),
            hold_seconds,
        )
        self._requests: dict[tuple[str, str, str], RequestSeries] = {}

    def series_of(self, model: str, dimension: str, operation: str) -> RequestSeries:
        """The held series of one (model, billing value, operation), made on first use."""
        key = (model, dimension, operation)
        held = self._requests.get(key)
        if held is None:
            held = self._requests[key] = RequestSeries(self, key)
        return held

    def families(self) -> list[Histogram | Family]:
        return [
            self.request_duration,
            self.time_to_first_token,
            self.time_per_output_token,
            self.token_usage,
            self.datastore_latency,
            self.upstream_errors,
        ]

    def held(self) -> int:
        """Series that scrapes still read at 0."""
        return sum(family.held() for family in self.families())

    def store_round_trip(self, seconds: float) -> None:
        self.datastore_latency.observe((), seconds)
