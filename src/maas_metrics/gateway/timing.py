"""Where the gateway's latency metrics are measured: a clock per request and a timed counter store.

A `RequestTimer` starts once the whole request body has arrived and is
valid (so a client that sends slowly does not count as model latency; the
limit checks do count) and records only requests the policies admitted; it ends when the upstream answer is complete (JSON) or the
upstream stream ends (SSE, in the reader task, whether or not the client is
still there). Time to first token is the first chunk carrying content for a
stream and the whole answer for JSON; time per output token is
(duration - time to first token) / (completion tokens - 1), for streams with
the upstream's usage and at least two output tokens.
"""

from __future__ import annotations

import re
import time

from maas_metrics.gateway.metering import Usage
from maas_metrics.limiter import CounterState, CounterStore
from maas_metrics.limiter.store import (
    Admission,
    BudgetCheck,
    RequestCheck,
    TokenCheck,
    TokenState,
)
from maas_metrics.telemetry.latency import (
    BAD_GATEWAY,
    TIMEOUT,
    LatencyMetrics,
    status_error,
)

# A JSON string member an OpenAI chunk carries text in, with a non-empty value.
_CONTENT = re.compile(rb'"(?:content|text|reasoning_content|arguments)"\s*:\s*"[^"]')


def has_content(events: bytes) -> bool:
    """Whether relayed SSE events carry generated text (not just a role or an empty delta)."""
    return _CONTENT.search(events) is not None


class RequestTimer:
    """The clock of one admitted inference request; records its histograms exactly once."""

    __slots__ = ("_done", "_first", "_metrics", "_model", "_series", "_started")

    def __init__(self, metrics: LatencyMetrics, model: str, dimension: str, operation: str) -> None:
        self._metrics = metrics
        self._model = model
        self._series = metrics.series_of(model, dimension, operation)
        self._started = time.perf_counter()
        self._first: float | None = None
        self._done = False

    def first_token(self) -> None:
        """A streamed chunk with content went to the client side (only the first call counts)."""
        if self._first is None:
            self._first = time.perf_counter()

    @property
    def waiting_for_first_token(self) -> bool:
        return self._first is None

    def answered(self, usage: Usage | None, *, streamed: bool) -> None:
        """A successful answer is complete: duration, time to first token, per token, tokens."""
        if self._done:
            return
        self._done = True
        end = time.perf_counter()
        started, series = self._started, self._series
        first = self._first if streamed else end
        series.answered(end - started, None if first is None else first - started)
        if usage is None:
            return
        if streamed and first is not None and usage.completion_tokens > 1:
            series.per_token((end - first) / (usage.completion_tokens - 1))
        series.tokens(usage.prompt_tokens, usage.completion_tokens)

    def failed(self, status: int, *, upstream_status: bool = False) -> None:
        """The request failed after admission: the gateway's 502/504, or the upstream's own status."""
        if self._done:
            return
        self._done = True
        if upstream_status:
            kind = status_error(status)
            counted = status >= 500
        else:
            kind = TIMEOUT if status == 504 else BAD_GATEWAY if status == 502 else str(status)
            counted = status in (502, 504)
        metrics = self._metrics
        key = (*self._series.key, kind)
        metrics.request_duration.observe(key, time.perf_counter() - self._started)
        if counted:
            metrics.upstream_errors.inc((self._model, kind))


class TimedStore:
    """A counter store whose calls for requests are observed in `datastore_latency` (Limitador's)."""

    def __init__(self, store: CounterStore, metrics: LatencyMetrics) -> None:
        self.store = store
        self._observe = metrics.store_round_trip

    async def admit(
        self,
        request: RequestCheck | None,
        tokens: TokenCheck | None,
        budget: BudgetCheck | None = None,
    ) -> Admission:
        began = time.perf_counter()
        try:
            return await self.store.admit(request, tokens, budget)
        finally:
            self._observe(time.perf_counter() - began)

    async def settle(
        self, key: str, window_ms: int, delta: int, reservation_id: str = ""
    ) -> TokenState:
        began = time.perf_counter()
        try:
            return await self.store.settle(key, window_ms, delta, reservation_id)
        finally:
            self._observe(time.perf_counter() - began)

    async def check_and_update(
        self, key: str, delta: int, max_value: int, window_ms: int
    ) -> CounterState:
        began = time.perf_counter()
        try:
            return await self.store.check_and_update(key, delta, max_value, window_ms)
        finally:
            self._observe(time.perf_counter() - began)

    async def check(self, key: str, max_value: int, window_ms: int) -> CounterState:
        began = time.perf_counter()
        try:
            return await self.store.check(key, max_value, window_ms)
        finally:
            self._observe(time.perf_counter() - began)

    async def update(self, key: str, delta: int, window_ms: int) -> CounterState:
        began = time.perf_counter()
        try:
            return await self.store.update(key, delta, window_ms)
        finally:
            self._observe(time.perf_counter() - began)

    async def ping(self) -> None:
        """Not timed: as in Limitador, `datastore_latency` covers the calls that serve requests."""
        await self.store.ping()

    async def close(self) -> None:
        await self.store.close()
