"""The gateway's side of the ledger: one `Trace` per request, turned into one record at its end.

The gateway calls `LedgerHook.begin()` once the request has an identity, a
known model and passed validation (requests rejected before, 4xx without
any counter moving, are not billable and leave no record), notes what
happened on the trace, and calls `finish()` exactly once; a second call is
ignored, so every exit path can call it without counting twice.
"""

from __future__ import annotations

import time
from typing import Protocol

from maas_metrics.config import Config
from maas_metrics.ledger.record import Outcome, RequestRecord, new_id
from maas_metrics.ledger.writer import LedgerWriter


class Limit(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str: ...


class Caller(Protocol):
    """What the ledger needs of the gateway's `Identity`."""

    @property
    def user(self) -> str: ...

    @property
    def tier(self) -> str: ...

    @property
    def requests(self) -> Limit | None: ...

    @property
    def tokens(self) -> Limit | None: ...

    @property
    def token_namespace(self) -> str: ...


class Trace:
    """What one request did so far; `finish` writes it to the ledger (once)."""

    __slots__ = (
        "_done",
        "_t0",
        "_writer",
        "cached",
        "caller",
        "completion",
        "endpoint",
        "first_byte",
        "key",
        "limited",
        "missing",
        "model",
        "prompt",
        "started",
        "stream",
        "total",
    )

    def __init__(
        self,
        writer: LedgerWriter,
        caller: Caller,
        key: str,
        model: str,
        endpoint: str,
        stream: bool,
    ) -> None:
        self._writer = writer
        self._done = False
        self.caller = caller
        self.key = key
        self.model = model
        self.endpoint = endpoint
        self.stream = stream
        self.started = time.time()
        self._t0 = time.perf_counter()
        self.first_byte: float | None = None
        self.limited: Limit | None = None
        self.missing = False  # the answer had no usage: the counted tokens are an estimate
        self.prompt = self.completion = self.cached = self.total = 0

    def first_chunk(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def usage(self, prompt: int, completion: int, total: int, cached: int = 0) -> None:
        self.prompt, self.completion, self.total, self.cached = prompt, completion, total, cached

    def rate_limited(self, unit: str) -> None:
        """A 429 from the request policy (`unit` "requests") or the token policy ("tokens")."""
        self.limited = self.caller.requests if unit == "requests" else self.caller.tokens

    def failed(self, status: int, kind: str) -> None:
        """The request ended with a gateway error of HTTP `status` and OpenAI error type `kind`."""
        if status == 429:
            self.rate_limited(kind)
            self.finish("rate_limited", status)
        elif status == 503 and kind == "service_unavailable":
            self.finish("store_unavailable", status)
        elif status >= 500:
            self.finish("upstream_error", status)
        else:  # a 4xx decided after admission: answered, without usage
            self.finish("usage_missing", status)

    def finish(self, outcome: Outcome, status: int) -> None:
        if self._done:
            return
        self._done = True
        now = time.perf_counter()
        caller = self.caller
        requests_ns = tokens_ns = None
        if outcome != "store_unavailable":
            if caller.requests is not None:
                requests_ns = caller.requests.namespace
            limited_by_requests = self.limited is not None and self.limited is caller.requests
            if caller.tokens is not None and not limited_by_requests:
                tokens_ns = caller.tokens.namespace
        self._writer.record(
            RequestRecord(
                id=new_id(),
                started=self.started,
                ended=self.started + (now - self._t0),
                user=caller.user,
                key_id=self.key,
                tier=caller.tier,
                model=self.model,
                endpoint=self.endpoint,
                stream=self.stream,
                outcome=outcome,
                status=status,
                requests_namespace=requests_ns,
                tokens_namespace=tokens_ns,
                usage_namespace=caller.token_namespace if self.total else None,
                limited_namespace=self.limited.namespace if self.limited is not None else None,
                limit_name=self.limited.name if self.limited is not None else None,
                prompt_tokens=self.prompt,
                completion_tokens=self.completion,
                cached_tokens=self.cached,
                total_tokens=self.total,
                latency_ms=(now - self._t0) * 1000,
                ttft_ms=None if self.first_byte is None else (self.first_byte - self._t0) * 1000,
            )
        )


class LedgerHook:
    """Makes traces for the gateway; owns the writer's life cycle."""

    def __init__(self, writer: LedgerWriter) -> None:
        self.writer = writer

    def begin(self, caller: Caller, key: str, model: str, endpoint: str, stream: bool) -> Trace:
        """A trace for a request by `caller` with the key whose id (`record.key_id`) is `key`."""
        return Trace(self.writer, caller, key, model, endpoint, stream)


def open_ledger(config: Config) -> LedgerHook | None:
    """The hook for `config.ledger`, its database opened and migrated; None without a ledger.

    Raises `LedgerError` (one line) when the database cannot be used at start.
    """
    from maas_metrics.ledger.store import LedgerStore, configured_url

    settings = config.ledger
    if not settings.enabled:
        return None
    store = LedgerStore(configured_url(settings))
    try:
        store.open()
    except Exception:
        store.close()
        raise
    return LedgerHook(LedgerWriter(settings, store))
