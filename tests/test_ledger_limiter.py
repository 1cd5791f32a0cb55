"""Reconcile against the live limiter: real redis-server counters vs the ledger, and the recorded verdict.

Truth: the official openai clients' outcomes (requests the request policy
admitted, tokens the answers reported), and the Redis keys read with plain
GET under names built here from the key layout, not by the code under test.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis as redis_lib
from sqlalchemy import create_engine, insert, select

from maas_metrics.config import Config
from maas_metrics.ledger import LedgerStore
from maas_metrics.ledger.limiter_check import compare, read_counters
from maas_metrics.ledger.reconcile_log import ReconcileRun, last_run, save_run
from maas_metrics.ledger.schema import (
    SCHEMA_VERSION,
    metadata,
    reconciliations,
    records,
    schema_version,
)
from tests.gateway_harness import TIER_OF, running_gateway, running_mock
from tests.ledger_gateway import REQ_NS, TOK_NS, ledger_config, mixed_scenario, wait_for_rows
from tests.servers import RedisServer


def _key(ns: str, limit: str, user: str) -> str:
    return f"maas:{len(ns)}:{ns}:{limit}:{user}"


def _redis_config(tmp_path: Path, upstream: str, slow: str, redis_url: str) -> Config:
    config = ledger_config(upstream, slow, f"sqlite:///{tmp_path}/ledger.db", tmp_path / "spool")
    storage = config.storage.model_copy(update={"url": redis_url})
    return config.model_copy(update={"storage": storage})


def test_live_redis_counters_equal_the_ledger_and_a_tampered_counter_is_found(
    redis: RedisServer, tmp_path: Path
) -> None:
    with running_mock() as mock, running_mock(latency_ms=3000) as slow:
        config = _redis_config(tmp_path, mock.url, slow.url, redis.url)
        assert config.ledger.url is not None
        with running_gateway(config) as base:
            outcomes = mixed_scenario(base)
            wait_for_rows(config.ledger.url, len(outcomes))
    # The gateway is stopped: nothing is in flight, the counters (60 s / 120 s windows) live on.
    admitted = Counter(o.user for o in outcomes if o.outcome != "requests")
    tokens = Counter[str]()
    for o in outcomes:
        tokens[o.user] += o.total
    truth = {(u, "requests"): n for u, n in admitted.items()}
    truth |= {(u, "tokens"): n for u, n in tokens.items() if n}
    client = redis_lib.Redis.from_url(redis.url, decode_responses=True)
    raw = {
        (u, kind): int(client.get(_key(ns, f"{TIER_OF[u]}-{kind}", u)) or 0)
        for (u, kind) in truth
        for ns in [REQ_NS if kind == "requests" else TOK_NS]
    }
    assert raw == truth  # the counters hold what the clients saw

    counters = read_counters(redis.url, config)
    assert {(c.user, c.kind): c.value for c in counters} == truth
    now_ms = datetime.now(UTC).timestamp() * 1000
    for c in counters:  # each window started at its first hit, within the last minutes
        assert now_ms - c.limit.seconds * 1000 <= c.window_start_ms <= c.read_ms
    store = LedgerStore(config.ledger.url)
    store.open()
    try:
        check = compare(store.engine, counters, edge_seconds=2.0)
        assert check.checked == len(truth)
        assert check.differences == ()
        assert check.ok

        # Another writer's hits (or lost ledger records): the counter runs ahead of the ledger.
        client.incrby(_key(TOK_NS, "free-tokens", "alice"), 500)  # beyond any edge slack
        client.set(_key(REQ_NS, "free-requests", "carol"), 3, px=60_000)  # no carol row at all
        again = read_counters(redis.url, config)
        check = compare(store.engine, again, edge_seconds=2.0)
        found = {(d.counter.user, d.counter.kind): (d.diff, d.within) for d in check.differences}
        assert found == {("alice", "tokens"): (-500, False), ("carol", "requests"): (-3, False)}
        assert not check.ok
        assert all("counter ahead of the ledger" in d.cause for d in check.differences)
    finally:
        store.close()
        client.close()


def test_reconcile_runs_are_recorded_and_the_last_is_read_back(tmp_path: Path) -> None:
    store = LedgerStore(f"sqlite:///{tmp_path}/ledger.db")
    store.open()
    try:
        assert last_run(store.engine) is None
        t = datetime(2026, 11, 5, 12, tzinfo=UTC)
        older = ReconcileRun(t, t - timedelta(hours=25), t - timedelta(hours=1), True, 0, 0, 10, 10)
        newer = ReconcileRun(
            t + timedelta(minutes=5),
            t - timedelta(hours=2),
            t,
            False,
            3,
            1,
            1_234,
            1_200,
            limiter_checked=8,
            limiter_differences=1,
        )
        save_run(store.engine, newer)
        save_run(store.engine, older)  # inserted later, ran earlier: not the last
        assert last_run(store.engine) == newer
        text = newer.summary()
        assert text.startswith("2026-11-05 10:00:00 UTC to 2026-11-05 12:00:00 UTC: 1 difference ")
        assert "ledger 1,234 vs Prometheus 1,200 tokens" in text
        assert text.endswith("live limiter: 1 difference in 8 counters")
        assert older.summary().endswith(": 0 differences")
    finally:
        store.close()


def test_a_version_1_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database written before the reconciliation table existed gains it and keeps its rows."""
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    v1 = [t for t in metadata.sorted_tables if t is not reconciliations]
    metadata.create_all(engine, tables=v1)
    row = {c.name: None for c in records.c} | {
        "id": "r1", "started_ms": 1, "ended_ms": 2, "user_name": "u", "key_id": "k", "tier": "t",
        "model": "m", "endpoint": "chat", "stream": False, "outcome": "ok", "status": 200,
        "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0, "total_tokens": 2,
        "latency_ms": 1.0,
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(schema_version).values(version=1))
        conn.execute(insert(records).values(**row))
    engine.dispose()
    store = LedgerStore(url)
    store.open()
    try:
        with store.engine.connect() as conn:
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
        assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))
        assert store.count() == 1
        assert last_run(store.engine) is None  # the new table exists and is empty
    finally:
        store.close()
