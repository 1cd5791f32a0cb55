"""The ledger against the live limiter counters in Redis, for the windows running now.

A counter's window starts at its first hit and the key expires with it, so
`PTTL` tells where the window began: `read - (window - pttl)`. The ledger's
side for that window is then exact: the request counter holds the calls the
request policy admitted, i.e. the user's records with that namespace in
`requests_namespace` that it did not limit, admitted since the window start
(by the record's `started_ms`); the token counter holds the tokens charged
since it started (`total_tokens` of records whose usage went to that
namespace, by `ended_ms`, just after the gateway charged them). Both sums
reach back `EARLY_MS` before the window start: the window's first hit is a
request that started a few milliseconds before the gateway admitted it, and
the window start (from Redis's millisecond PTTL) and the record's times
(the gateway's clock) differ by a millisecond or two.

The tolerance is computed like `reconcile`'s: the records that started (for
calls) or ended (for tokens) within `edge` of the window start or of the read
may fall on either side of it. Requests still running at the read are in the
counter but not yet in the ledger (a record is written when the request
ends): read when traffic is quiet, or expect them as differences.

Counters in memory (`storage.url: memory`) live inside the gateway process
and cannot be read from outside; only Redis is compared.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import redis
from sqlalchemy import Engine, and_, func, select

from maas_metrics.config import Config
from maas_metrics.ledger.schema import records
from maas_metrics.limiter.limits import Limit
from maas_metrics.policies import tier_policies

Kind = Literal["requests", "tokens"]
SCAN_COUNT = 1000
EARLY_MS = 1000
"""How far before the window start a record of the window's first hit may be placed."""


@dataclass(frozen=True, slots=True)
class LiveCounter:
    """One counter as Redis held it at `read_ms` (Redis's clock is not needed: PTTL is relative)."""

    limit: Limit
    tier: str
    kind: Kind
    user: str
    value: int
    window_start_ms: int
    read_ms: int


@dataclass(frozen=True, slots=True)
class CounterDifference:
    counter: LiveCounter
    ledger: int
    slack: int

    @property
    def diff(self) -> int:
        return self.ledger - self.counter.value

    @property
    def within(self) -> bool:
        return abs(self.diff) <= self.slack

    @property
    def cause(self) -> str:
        if self.within:
            return "requests at the window start or at the read (admission vs record times)"
        if self.diff < 0:
            return (
                "counter ahead of the ledger: requests still running at the read, ledger "
                "records pending or lost, or hits from another gateway writing another ledger"
            )
        return (
            "ledger ahead of the counter: the counter was reset or evicted (Redis restart, "
            "maxmemory), or the gateway counted in memory (storage.url) for part of the window"
        )


@dataclass(frozen=True, slots=True)
class LimiterCheck:
    checked: int
    differences: tuple[CounterDifference, ...]

    @property
    def ok(self) -> bool:
        return all(d.within for d in self.differences)


def _limits(config: Config) -> list[tuple[str, Kind, Limit]]:
    out: list[tuple[str, Kind, Limit]] = []
    for tier, policies in tier_policies(config).items():
        if policies.requests is not None:
            out.append((tier, "requests", policies.requests))
        if policies.tokens is not None:
            out.append((tier, "tokens", policies.tokens))
    return out


def _parse_key(key: str, limits: Iterable[tuple[str, Kind, Limit]]) -> tuple[int, str] | None:
    """(index into `limits`, user) of a counter key, None for anything else in Redis."""
    for i, (_, _, limit) in enumerate(limits):
        prefix = limit.counter_key("")
        if key.startswith(prefix):
            return i, key[len(prefix) :]
    return None


def read_counters(redis_url: str, config: Config, timeout: float = 5.0) -> list[LiveCounter]:
    """Every live counter of the config's limits in Redis (SCAN, then GET + PTTL per key)."""
    limits = _limits(config)
    client = redis.Redis.from_url(
        redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
    )
    try:
        keys = [str(k) for k in client.scan_iter(match="maas:*", count=SCAN_COUNT)]
        parsed = [(k, _parse_key(k, limits)) for k in keys]
        wanted = [(k, p) for k, p in parsed if p is not None]
        pipe = client.pipeline(transaction=False)
        for key, _ in wanted:
            pipe.get(key)
            pipe.pttl(key)
        read_ms = round(time.time() * 1000)
        replies = pipe.execute()
    finally:
        client.close()
    out: list[LiveCounter] = []
    for n, (_, (index, user)) in enumerate(wanted):
        value, pttl = replies[2 * n], replies[2 * n + 1]
        if value is None or pttl is None or int(pttl) <= 0:
            continue  # expired between SCAN and GET
        tier, kind, limit = limits[index]
        start = read_ms - (limit.seconds * 1000 - int(pttl))
        out.append(LiveCounter(limit, tier, kind, user, int(value), start, read_ms))
    return out


def _ledger_amount(engine: Engine, c: LiveCounter, lo: int, hi: int) -> int:
    """The ledger's count (calls) or sum (tokens) for counter `c` over [lo, hi] ms."""
    r = records.c
    who = and_(r.user_name == c.user, r.tier == c.tier)
    ns = c.limit.namespace
    if c.kind == "requests":
        stmt = select(func.count()).where(
            who,
            r.requests_namespace == ns,
            r.limited_namespace.is_distinct_from(ns),
            r.started_ms >= lo,
            r.started_ms <= hi,
        )
    else:
        stmt = select(func.coalesce(func.sum(r.total_tokens), 0)).where(
            who, r.usage_namespace == ns, r.ended_ms >= lo, r.ended_ms <= hi
        )
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def compare(engine: Engine, counters: list[LiveCounter], edge_seconds: float) -> LimiterCheck:
    """Each live counter against the ledger's sum since its window start, with the edge slack."""
    e = round(edge_seconds * 1000)
    diffs: list[CounterDifference] = []
    for c in counters:
        ledger = _ledger_amount(engine, c, c.window_start_ms - EARLY_MS, c.read_ms)
        if ledger == c.value:
            continue
        slack = _ledger_amount(engine, c, c.window_start_ms - e, c.window_start_ms + e)
        slack += _ledger_amount(engine, c, c.read_ms - e, c.read_ms + e)
        diffs.append(CounterDifference(c, ledger, slack))
    diffs.sort(key=lambda d: (d.counter.user, d.counter.limit.name))
    return LimiterCheck(len(counters), tuple(diffs))
