"""The report's PromQL and how a long range is read in windows that tile it exactly.

Each counter is read as `sum by (...) (increase_exact(counter{...}, W))` at the
end `b` of a window (a, b] of length W: the same counting technique as every
dashboard panel and rule (`maas_metrics.promql.increase_exact`): per series,
its last value in the window minus its value at `a` (the last sample up to
`a`), or its last value when it was born in the window (new, or re-created
after a restart), so a series born inside the range (even a single sample)
counts its first value. Window edges lie on the `--resolution` grid and each
window counts the samples in (a, b], so the windows add up to the whole range
without losing or counting anything twice. A window with a counter reset
inside falls back to `increase` (within Prometheus' extrapolation for a
series that starts or stops inside that window).

Filter values are written as escaped PromQL string literals (one value: `=`;
several: an anchored regex of literally escaped values), so no input can
change the query.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.policies import request_namespaces
from maas_metrics.prometheus import PrometheusAPI, PrometheusError
from maas_metrics.promql import (
    duration,
    increase_exact,
    matcher,
    preferred,
    regex_alternation,
    selector,
    string_literal,
)
from maas_metrics.report.model import GROUP_KEYS, ReportRequest
from maas_metrics.report.pricing import Usage
from maas_metrics.rules.reading import range_parts
from maas_metrics.rules.recording import per_user_hour_series, per_user_series

DEFAULT_STEP = 86400.0
"""Seconds per query window unless `--step` says otherwise; halved while Prometheus refuses."""

QUERY_CONCURRENCY = 3
"""Queries of one window in flight at once (Prometheus runs 20 by default)."""

_SPLIT_ON = (
    "too many samples",
    "query timed out",
    "did not answer in time",
    "query processing would load",
)


@dataclass(frozen=True, slots=True)
class Counter:
    field: str
    metric: str
    tokens_only: bool
    """Only the token namespaces (hits there are tokens; in the request namespace, requests)."""


TOKENS = Counter("tokens", contract.HITS, tokens_only=True)
PROMPT = Counter("prompt_tokens", contract.PROMPT_TOKENS, tokens_only=True)
COMPLETION = Counter("completion_tokens", contract.COMPLETION_TOKENS, tokens_only=True)
ALLOWED = Counter("allowed", contract.CALLS, tokens_only=False)
LIMITED = Counter("limited", contract.LIMITED, tokens_only=False)


def matchers(config: Config, request: ReportRequest, counter: Counter) -> list[str]:
    """The filters, but `model` on a counter without it (calls in today's schema: every model)."""
    carried = request.schema.labels_of(counter.metric)
    out = [
        matcher(GROUP_KEYS[key], list(values))
        for key, values in sorted(request.filters.items())
        if GROUP_KEYS[key] in carried
    ]
    excluded = request_namespaces(config)  # the source's: hits there count requests
    if counter.tokens_only and excluded:
        out.insert(0, f"limitador_namespace!~{string_literal(regex_alternation(excluded))}")
    return out


def window_exprs(
    config: Config,
    request: ReportRequest,
    counter: Counter,
    seconds: float,
    end: float | None = None,
) -> list[tuple[int, str]]:
    """The (sign, query) parts whose results add up to the increase of `counter` over a window.

    The window is `seconds` long and ends at the query time. Raw counters: one
    query, under each name the schema reads them (`Schema.names_of`;
    `promql.preferred`: a series's preferred name, never both added up). With
    `request.recording_rules` it is the sum of the per-user rule's one-minute
    increases in the window (`rules.recording`): the rule samples tile time as
    the windows do, so both paths count the same traffic, and a query reads one
    sample a minute per user instead of every scrape. Given the window's `end`
    (unix seconds), whole hours are read from the per-user hour samples and
    only the edge hours' minutes from the minute samples (`rules.reading`):
    the same count, 24 samples a day per user and model instead of 1,440, in
    up to three queries whose results the reader adds up, so Prometheus never
    joins 10,000s of series with `or`.
    """
    found = matchers(config, request, counter)
    schema = request.schema
    if request.recording_rules:
        labels = ", ".join(request.detail_labels)
        sel = selector(per_user_series(counter.metric, schema), found)
        if end is not None and schema.user:
            hours = selector(per_user_hour_series(counter.metric, schema), found)
            parts = range_parts(sel, hours, end - seconds, end)
            return [(sign, f"sum by ({labels}) ({part})") for sign, part in parts]
        # (b - W, b]: a range selector also takes a sample at exactly b - W, which
        # belongs to the window before (it counts the minute that ends there).
        return [(1, f"sum by ({labels}) (sum_over_time({sel}[{duration(seconds - 0.001)}]))")]
    window = duration(seconds)
    expr = preferred(
        schema.names_of(counter.metric),
        schema.labels_of(counter.metric),
        lambda name: increase_exact(selector(name, found), window),
        request.detail_labels,
    )
    return [(1, expr)]


def plan_windows(
    start: datetime, end: datetime, boundaries: list[datetime], step: float
) -> list[tuple[datetime, datetime]]:
    """(a, b] windows tiling (start, end]: cut at every boundary, then at most `step` long."""
    cuts = [start, *boundaries, end]
    windows: list[tuple[datetime, datetime]] = []
    for a, b in pairwise(cuts):
        cursor = a
        while cursor < b:
            nxt = min(b, cursor + timedelta(seconds=step))
            windows.append((cursor, nxt))
            cursor = nxt
    return windows


Detail = dict[tuple[str, ...], dict[str, float]]


class WindowReader:
    """Reads the counters of windows, splitting a window when Prometheus refuses it as too big."""

    def __init__(
        self, api: PrometheusAPI, config: Config, request: ReportRequest, counters: list[Counter]
    ) -> None:
        self.api = api
        self.config = config
        self.request = request
        self.counters = counters
        self.queries = 0

    def read(
        self, a: datetime, b: datetime, done: Callable[[float], None] | None = None
    ) -> list[tuple[datetime, Detail]]:
        """[(window start, key -> {field: increase})] for (a, b], possibly as several windows."""
        try:
            detail = self._read_one(a, b)
        except PrometheusError as error:
            seconds = (b - a).total_seconds()
            halves = seconds / 2
            half = halves - halves % self.request.resolution
            if half <= 0 or not any(s in str(error).lower() for s in _SPLIT_ON):
                raise
            middle = a + timedelta(seconds=half)
            return self.read(a, middle, done) + self.read(middle, b, done)
        if done is not None:
            done((b - a).total_seconds())
        return [(a, detail)]

    def _read_one(self, a: datetime, b: datetime) -> Detail:
        """All counters of (a, b]; their queries run side by side (Prometheus evaluates one
        on a core while this process parses another's answer)."""
        seconds = (b - a).total_seconds()
        queries = [
            (counter.field, sign, expr)
            for counter in self.counters
            for sign, expr in window_exprs(
                self.config, self.request, counter, seconds, b.timestamp()
            )
        ]
        self.queries += len(queries)
        out: Detail = {}
        with ThreadPoolExecutor(QUERY_CONCURRENCY) as pool:
            answers = pool.map(lambda q: self.api.query(q[2], time=b.timestamp()), queries)
            for (field, sign, _), samples in zip(queries, answers, strict=True):
                for sample in samples:
                    key = tuple(sample.labels.get(x, "") for x in self.request.detail_labels)
                    values = out.setdefault(key, {})
                    values[field] = values.get(field, 0.0) + sign * sample.value
        return out


def usage_of(values: dict[str, float]) -> Usage:
    return Usage(
        tokens=values.get("tokens", 0.0),
        prompt_tokens=values.get("prompt_tokens", 0.0),
        completion_tokens=values.get("completion_tokens", 0.0),
    )
