"""Prometheus queries shared by every open tab, and never more than a few at once.

Many tabs on auto-refresh ask the same questions: each panel's query for the
same filters and (rounded) evaluation time. `SharedQueries` answers them
once: a result is kept for `ttl_seconds`, a query already on its way is
joined rather than sent again (single flight), and at most `concurrency`
queries are on their way to Prometheus at any time; the others wait their
turn here instead of piling up in Prometheus. Errors are shared with the
callers that waited for them but never kept, so the next refresh retries.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from maas_metrics.prometheus import PrometheusAPI, Sample, Series

T = TypeVar("T")
_Key = tuple[Any, ...]


class SharedQueries:
    """The `PrometheusAPI` query methods through a short cache, single flight and a concurrency bound."""

    def __init__(
        self,
        api: PrometheusAPI,
        *,
        concurrency: int = 4,
        ttl_seconds: float = 60.0,
        max_entries: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.api = api
        self.url = api.url
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, tuple[float, Future[Any]]] = OrderedDict()
        self.sent = 0  # queries that reached Prometheus (the rest were shared)

    def query(self, expr: str, time: float | None = None) -> list[Sample]:
        result: list[Sample] = self._shared(
            ("query", expr, time), lambda: self.api.query(expr, time)
        )
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        result: list[Series] = self._shared(
            ("range", expr, start, end, step), lambda: self.api.query_range(expr, start, end, step)
        )
        return result

    def label_values(self, label: str, match: list[str] | None = None) -> list[str]:
        key = ("labels", label, tuple(match or ()), self._bucket())
        result: list[str] = self._shared(key, lambda: self.api.label_values(label, match))
        return result

    def _bucket(self) -> int:
        """Label values carry no evaluation time: share them for one TTL period."""
        return int(self._clock() // max(self.ttl_seconds, 1.0))

    def _shared(self, key: _Key, run: Callable[[], T]) -> T:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (not entry[1].done() or now - entry[0] < self.ttl_seconds):
                self._entries.move_to_end(key)
                future: Future[Any] = entry[1]
                owner = False
            else:
                future = Future()
                self._entries[key] = (now, future)
                self._trim(now)
                owner = True
        if not owner:
            return future.result()  # type: ignore[no-any-return]
        try:
            with self._slots:
                self.sent += 1
                value = run()
        except BaseException as error:
            with self._lock:
                if self._entries.get(key, (0.0, None))[1] is future:
                    del self._entries[key]
            future.set_exception(error)
            raise
        future.set_result(value)
        return value

    def _trim(self, now: float) -> None:
        """Drop expired answers, then the least recently used ones beyond `max_entries`."""
        for key in [
            k for k, (t, f) in self._entries.items() if f.done() and now - t >= self.ttl_seconds
        ]:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            if not self._entries[oldest][1].done():
                break
            del self._entries[oldest]
