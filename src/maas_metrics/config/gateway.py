"""The gateway's settings: listeners, client bounds, metering, usage history, workers."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from maas_metrics.config.base import _Strict


def _bind_address(value: str) -> str:
    """An IP address or a host name (what a listener can bind); anything else fails `config check`."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(
            r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*", value
        ):
            raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
    return value


BindHost = Annotated[str, AfterValidator(_bind_address)]
Port = Annotated[int, Field(ge=0, le=65535)]


class OperatorListener(_Strict):
    """Where `/metrics` and `/healthz` are served, apart from the API (as Limitador's http port).

    Only the operator listener shows every user's usage, so it binds where
    Prometheus and the kubelet reach it; `host: null` binds the API's host.
    """

    host: BindHost | None = None
    port: Port = 8081


class ClientBounds(_Strict):
    """How long and how much a client may take in each phase it controls, per connection."""

    header_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    keep_alive_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    max_header_bytes: Annotated[int, Field(ge=1024)] = 65_536
    max_connections: Annotated[int, Field(gt=0)] = 1000


class Metering(_Strict):
    """How the gateway counts what upstreams and scrapers make uncertain (`gateway.metering`).

    - `usage_missing`: an answer without `usage` counts `estimate` tokens
      (ceil(characters / 4) of the prompt text sent and of the answer text
      received) or `zero`; either way `maas_answers_without_usage_total` counts it.
    - `zero_hold_seconds`: a new counter series is scraped at 0 until it has
      been read at 0 and this long has passed; set it to the scrape interval
      when several Prometheus replicas (an HA pair) scrape the gateway.
    - `max_sse_event_bytes`: the largest upstream SSE event relayed; a bigger
      one ends the stream with a 502 error and counts in
      `maas_stream_events_too_large_total`.
    """

    usage_missing: Literal["estimate", "zero"] = "estimate"
    zero_hold_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.0
    max_sse_event_bytes: Annotated[int, Field(ge=1024)] = 1_048_576


class UsageSource(_Strict):
    """Where `GET /v1/usage` reads a caller's history (`gateway.usage`).

    `prometheus_url`: the Prometheus that scrapes this gateway's operator
    listener, read with the report's queries at `resolution_seconds` (at most
    the scrape interval). Without it `/v1/usage` still answers live quota and
    budget, and says history needs Prometheus (or a ledger).
    """

    prometheus_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    resolution_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0

    @field_validator("resolution_seconds")
    @classmethod
    def _divides_a_day(cls, value: float) -> float:
        if 86400 % value:
            raise ValueError(f"{value:g} must divide a day (e.g. 1, 5, 15, 30, 60)")
        return value


def workers_refusal(storage_url: str, ledger_enabled: bool) -> str | None:
    """Why more than one worker cannot run with this storage and ledger (None: they can)."""
    if storage_url == "memory":
        return (
            "counters in memory cannot be shared between workers; "
            "set storage.url to a redis:// URL or run one worker"
        )
    if ledger_enabled:
        return "the ledger's writer and spool belong to one process; run one worker with a ledger"
    return None


class Workers(_Strict):
    """Serving with several processes (`gateway.workers`, or `maas-metrics gateway --workers N`).

    With `count` > 1 the counters must live in Redis (`storage.url`), and each
    worker pushes its metric counts to Redis hashes under `metrics_key` every
    `flush_seconds`; the one operator listener renders `/metrics` from them.
    Each gateway (each replica) needs its own `metrics_key`, or replicas would
    show each other's counts; null means `maas-metrics:<host name>:<API port>`.
    """

    count: Annotated[int, Field(ge=1, le=64)] = 1
    flush_seconds: Annotated[float, Field(gt=0, le=10)] = 0.05
    metrics_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class GatewaySettings(_Strict):
    host: BindHost = "127.0.0.1"
    port: Port = 8080
    operator: OperatorListener = OperatorListener()
    connections: ClientBounds = ClientBounds()
    # A 429 whose window resets later than this tells SDKs not to retry (`x-should-retry: false`).
    retry_hint_max_seconds: Annotated[float, Field(ge=0)] = 10.0
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_048_576
    upstream_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    # On SIGTERM/SIGINT keep serving until Prometheus has scraped every count, for at most
    # this long (0: stop at once, as Limitador does, losing what was counted since the last scrape).
    shutdown_scrape_wait_seconds: Annotated[float, Field(ge=0)] = 0.0
    metering: Metering = Metering()
    usage: UsageSource = UsageSource()
    workers: Workers = Workers()

    @model_validator(mode="after")
    def _listeners_apart(self) -> GatewaySettings:
        if self.port != 0 and self.operator.port == self.port:
            raise ValueError("operator.port must differ from port (metrics stay off the API)")
        return self
