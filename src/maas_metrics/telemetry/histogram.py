"""A Prometheus histogram family beside `Family`: fixed bounds, pre-escaped series text, born at zero.

An observation costs one dict look-up, one `bisect` on the precomputed
bounds and two additions; the `_bucket{...,le="..."}`, `_sum` and `_count`
label texts of a series are escaped once, when the series is created, so a
scrape only joins strings. Buckets are kept per bucket and made cumulative
while rendering.

Like a `Family` counter, a new series is first scraped with every count at
0 and shows its real counts only after it has been read at 0 and
`hold_seconds` have passed, so `rate()` and `increase()` of `_bucket` and
`_count` see its first observations.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from maas_metrics.telemetry.exposition import escape_label_value, format_value, label_text


class HistogramSeries:
    """One label set: counts per bucket (the last one is +Inf), their sum, and the rendered texts."""

    __slots__ = ("buckets", "count_text", "counts", "first_zero", "sum", "sum_text")

    def __init__(self, buckets: list[str], sum_text: str, count_text: str, size: int) -> None:
        self.counts = [0] * size
        self.sum = 0.0
        self.buckets = buckets
        self.sum_text = sum_text
        self.count_text = count_text
        self.first_zero = -1.0  # monotonic time of the first scrape that read it at 0


class Histogram:
    """A histogram metric family with explicit bucket bounds (upper bounds, `le` inclusive)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...],
        bounds: Sequence[float],
        hold_seconds: float = 0.0,
    ) -> None:
        ordered = tuple(float(b) for b in bounds)
        if not ordered or list(ordered) != sorted(set(ordered)):
            raise ValueError(f"{name}: bucket bounds must be increasing and distinct")
        self.name = name
        self.help = help
        self.labels = labels
        self.bounds = ordered
        self.hold_seconds = hold_seconds
        self._le = [format_value(b) for b in ordered] + ["+Inf"]
        self._series: dict[tuple[str, ...], HistogramSeries] = {}
        self._fresh: set[tuple[str, ...]] = set()  # series still shown at 0

    def observe(self, key: tuple[str, ...], value: float) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._create(key)
        series.counts[bisect_left(self.bounds, value)] += 1
        series.sum += value

    def series(self, key: tuple[str, ...]) -> HistogramSeries:
        """The series of `key` (created, born at zero, if new), to `add` to without a look-up."""
        series = self._series.get(key)
        return series if series is not None else self._create(key)

    def add(self, series: HistogramSeries, value: float) -> None:
        """`observe` on a series held from `series()`."""
        series.counts[bisect_left(self.bounds, value)] += 1
        series.sum += value

    def _create(self, key: tuple[str, ...]) -> HistogramSeries:
        inner = label_text(self.labels, key)[1:-1]  # `a="x",b="y"` or ""
        sep = "," if inner else ""
        buckets = [f'_bucket{{{inner}{sep}le="{escape_label_value(le)}"}}' for le in self._le]
        plain = f"{{{inner}}}" if inner else ""
        series = HistogramSeries(buckets, "_sum" + plain, "_count" + plain, len(self._le))
        self._series[key] = series
        self._fresh.add(key)
        return series

    def count(self, key: tuple[str, ...]) -> int:
        """Observations of one series (also while scrapes still show it at 0)."""
        series = self._series.get(key)
        return sum(series.counts) if series is not None else 0

    def held(self) -> int:
        """How many series scrapes still read at 0."""
        return len(self._fresh)

    def samples(self, now: float | None = None) -> Iterator[tuple[str, float]]:
        """`_bucket` (cumulative), `_sum` and `_count` of every series; call once per scrape."""
        fresh = self._fresh
        clock = (time.monotonic() if now is None else now) if fresh else 0.0
        for key, series in list(self._series.items()):
            if key in fresh:
                if series.first_zero < 0:
                    series.first_zero = clock
                    yield from self._zeros(series)
                    continue
                if clock - series.first_zero < self.hold_seconds:
                    yield from self._zeros(series)
                    continue
                fresh.discard(key)
            total = 0
            for text, count in zip(series.buckets, series.counts, strict=True):
                total += count
                yield text, total
            yield series.sum_text, series.sum
            yield series.count_text, total

    @staticmethod
    def _zeros(series: HistogramSeries) -> Iterator[tuple[str, float]]:
        for text in series.buckets:
            yield text, 0
        yield series.sum_text, 0
        yield series.count_text, 0

    def __len__(self) -> int:
        return len(self._series)
