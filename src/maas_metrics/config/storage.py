"""Where counters and the usage ledger live, and how their URLs are shown safely."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
)

from maas_metrics.config.base import _Strict


class Storage(_Strict):
    """Where limit counters live: `memory` (one process) or a `redis://` URL (many replicas).

    `max_connections`: Redis connections per gateway process for decisions
    (one more serves the health probe). The decisions of one event-loop turn
    share one script call, and at most this many calls are in flight; later
    decisions join the next call. One (the default) makes the fewest, largest
    calls, which measured fastest through the gateway on a shared 2-core
    machine (benchmarks/results/redis-path.md); more overlap Redis's work with
    the gateway's when very many requests are in flight.
    """

    url: Annotated[str, Field(pattern=r"^(memory|rediss?://.+)$")] = "memory"
    on_failure: Literal["deny", "allow"] = "deny"
    max_connections: Annotated[int, Field(ge=1, le=1024)] = 1


class Ledger(_Strict):
    """The durable per-request usage ledger (see `maas_metrics.ledger`); off without `url`.

    `url`: `sqlite:///path/ledger.db` (embedded) or `postgresql://user@host/db`
    (many replicas). Records are written by a background writer every
    `flush_interval_ms` or `batch_rows` records, whichever comes first; at most
    `queue_max` wait in memory, beyond that (or while the database is away)
    they go to the append-only `spool_path` and are replayed in order.
    """

    url: str | None = None
    url_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    """Environment variable holding the URL instead (a Kubernetes Secret): wins over `url`."""
    flush_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 200
    batch_rows: Annotated[int, Field(ge=1, le=100_000)] = 500
    queue_max: Annotated[int, Field(ge=1)] = 50_000
    spool_path: str = "maas-ledger.spool"
    retention_days: Annotated[int, Field(ge=1)] | None = None
    retry_seconds: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        return None if value is None else check_ledger_url(value)

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.url_env is not None


def check_ledger_url(value: str) -> str:
    """`value` when its scheme is one the ledger supports; else ValueError naming the scheme only."""
    scheme = value.partition("://")[0] if "://" in value else ""
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            f"unknown scheme {scheme or '(none)'!r}: use sqlite:///PATH or postgresql://HOST/DB"
        )
    return value


def mask_secrets(url: str) -> str:
    """`url` fit for a terminal or a log: the user-info password and any `password=` value masked."""
    masked = re.sub(r"(?<=://)([^/?#]*)@", lambda m: _mask_userinfo(m.group(1)) + "@", url)
    return re.sub(r"(?i)((?:^|[?&;])password=)[^&;#]*", r"\1***", masked)


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:***" if colon else "***"
