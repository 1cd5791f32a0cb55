"""The ledger store on real SQLite and PostgreSQL: idempotent writes, exact roll-up reports, prune."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from maas_metrics.config import parse_config
from maas_metrics.ledger import LedgerError, LedgerStore
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.schema import ROLLUPS, SCHEMA_VERSION, hourly, records, schema_version
from tests.ledger_data import T0, USERS, random_records, truth
from tests.postgres_server import PostgresServer, postgres_server

CONFIG = parse_config(
    {
        "tiers": [
            {"name": t, "level": i, "groups": [t], "price_per_hit": p}
            for i, (t, p) in enumerate((("free", 0.005), ("premium", 0.008), ("enterprise", 0.01)))
        ],
        "models": [
            {"name": "granite-8b", "upstream": "http://x"},
            {"name": "llama-3-8b", "upstream": "http://x"},
        ],
    }
)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.db"
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        server.reset()
        url = server.url
    s = LedgerStore(url)
    s.open()
    yield s
    s.close()


def _report_map(
    store: LedgerStore, start: float, end: float, by: tuple[str, ...]
) -> dict[tuple[str, ...], list[int]]:
    rep = build_ledger_report(
        store.engine,
        CONFIG,
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(end, UTC),
        by,
        {},
    )
    return {
        row.key: [int(row.totals.tokens), int(row.totals.allowed), int(row.totals.limited)]
        for row in rep.rows
    }


def test_writes_are_idempotent_and_reports_exact(store: LedgerStore) -> None:
    recs = random_records(3000, seed=7)
    rng = random.Random(1)
    # Batches of random size, every record sent twice (a retry and a replay), out of order.
    doubled = recs + rng.sample(recs, len(recs))
    new = 0
    i = 0
    while i < len(doubled):
        size = rng.randint(1, 400)
        new += store.write(doubled[i : i + size])
        i += size
    assert new == len(recs)
    assert store.count() == len(recs)
    ranges = [
        (T0 - 10, T0 + 3 * 86400),  # everything
        (T0 + 1234.567, T0 + 86400 + 77.0),  # partial hours at both edges
        (T0 + 600, T0 + 1800),  # inside one hour
        (3600 * (int(T0) // 3600 + 2), 3600 * (int(T0) // 3600 + 9)),  # exactly on hour edges
        (86400 * (int(T0) // 86400 + 1), 86400 * (int(T0) // 86400 + 2)),  # one whole day
        (86400 * (int(T0) // 86400 + 1) - 7200.25, 86400 * (int(T0) // 86400 + 2) + 3599.5),
    ]
    for start, end in ranges:
        for by in (("user", "tier", "model"), ("namespace",), ("user", "model", "namespace")):
            assert _report_map(store, start, end, by) == truth(recs, start, end, by), (
                start,
                end,
                by,
            )


def test_cost_is_priced_per_tier(store: LedgerStore) -> None:
    recs = random_records(500, seed=3)
    store.write(recs)
    start, end = T0 - 1, T0 + 3 * 86400
    rep = build_ledger_report(
        store.engine,
        CONFIG,
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(end, UTC),
        ("tier",),
        {},
    )
    price = {"free": 0.005, "premium": 0.008, "enterprise": 0.01}
    expected = {
        t: sum(r.total_tokens for r in recs if r.tier == t) * price[t] for t in set(USERS.values())
    }
    got = {row.key[0]: row.totals.cost for row in rep.rows}
    assert got.keys() <= expected.keys()
    for tier, cost in got.items():
        assert cost == pytest.approx(expected[tier], rel=1e-12)


def test_prune_drops_whole_days_only(store: LedgerStore) -> None:
    recs = random_records(1000, seed=11)
    store.write(recs)
    cut = T0 + 86400 + 1800.5  # mid-day: pruning stops at 00:00 UTC of that day
    day = int(cut) // 86400 * 86400
    gone, _ = store.prune(round(cut * 1000))
    expected_gone = sum(1 for r in recs if round(r.ended * 1000) <= day * 1000)
    assert 0 < expected_gone < len(recs)
    assert gone == expected_gone
    assert store.count() == len(recs) - expected_gone
    # What remains still reports exactly (roll-ups pruned on the same day).
    by = ("user", "namespace")
    for start in (day - 86400, day, day + 3600):
        assert _report_map(store, start, T0 + 3 * 86400, by) == truth(
            recs, max(start, day), T0 + 3 * 86400, by
        )


def test_schema_version_recorded_and_newer_refused(store: LedgerStore) -> None:
    with store.engine.connect() as conn:
        assert conn.execute(select(schema_version.c.version)).scalars().all() == list(
            range(1, SCHEMA_VERSION + 1)
        )
    with store.engine.begin() as conn:
        conn.execute(insert(schema_version).values(version=SCHEMA_VERSION + 1))
    again = LedgerStore(store.url)
    with pytest.raises(LedgerError, match="newer than this maas-metrics"):
        again.open()
    again.close()


def test_opening_twice_keeps_data(store: LedgerStore) -> None:
    store.write(random_records(10, seed=5))
    again = LedgerStore(store.url)
    again.open()
    assert again.count() == 10
    with again.engine.connect() as conn:
        assert conn.execute(select(hourly)).first() is not None
        assert conn.execute(select(records.c.id)).first() is not None
    again.close()


def test_read_only_database_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = LedgerStore(f"sqlite:///{path}")
    first.open()
    first.close()
    # mode=ro: read-only even for root (a chmod would not stop root).
    ro = LedgerStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(LedgerError, match=r"readonly|read-only"):
        ro.open()
    ro.close()


def test_unreachable_postgres_is_one_line() -> None:
    from tests.servers import free_port

    s = LedgerStore(f"postgresql://maas:s3cret@127.0.0.1:{free_port()}/ledger")
    with pytest.raises(LedgerError) as info:
        s.open()
    text = str(info.value)
    assert "\n" not in text and "s3cret" not in text and "127.0.0.1" in text


def test_rebuilt_rollups_equal_the_incremental_ones(store: LedgerStore) -> None:
    from maas_metrics.ledger.rollups import rebuild

    store.write(random_records(2000, seed=13))

    def both() -> list[list[tuple[object, ...]]]:
        with store.engine.connect() as conn:
            return [sorted(tuple(r) for r in conn.execute(select(t))) for t, _ in ROLLUPS]

    incremental = both()
    assert rebuild(store.engine) == sum(len(rows) for rows in incremental)
    assert both() == incremental


def test_new_ids_are_unique_and_time_ordered() -> None:
    import time

    from maas_metrics.ledger import new_id

    ids = []
    for _ in range(5):
        ids += [new_id() for _ in range(2000)]
        time.sleep(0.002)  # the next millisecond
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] - time.time() * 1000) < 60_000


def test_duplicates_inside_one_batch_count_once(store: LedgerStore) -> None:
    recs = random_records(95, seed=17)  # more than one multi-row INSERT chunk
    batch = [*recs, recs[0], recs[50], *recs[90:]]
    assert store.write(batch) == len(recs)
    assert store.count() == len(recs)
    start, end = T0 - 1, T0 + 3 * 86400
    by = ("user", "namespace")
    assert _report_map(store, start, end, by) == truth(recs, start, end, by)
