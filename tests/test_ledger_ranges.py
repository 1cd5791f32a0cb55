"""Ledger reports over any range (to the millisecond), on real SQLite and PostgreSQL.

The report reads whole roll-up buckets and raw records only at the edges,
sometimes a whole bucket minus its outside part (`ledger/tiling.py`). These
tests compare it with a truth summed record by record in Python
(`tests/ledger_data.truth`), for random ranges off the hour, after late
records land in hours that were already rolled up, while another writer
commits, and after upgrading a schema-2 database.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from maas_metrics.config import parse_config
from maas_metrics.ledger import LedgerStore, RequestRecord
from maas_metrics.ledger.cells import snapshot
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.rollups import rebuild
from maas_metrics.ledger.schema import (
    DAY_MS,
    HOUR_MS,
    ROLLUPS,
    SCHEMA_VERSION,
    records,
    schema_version,
    six_hourly,
)
from maas_metrics.ledger.tiling import plan
from tests.ledger_data import MODELS, REQ_NS, T0, TOK_NS, random_records, truth
from tests.postgres_server import PostgresServer, postgres_server

CONFIG = parse_config(
    {
        "tiers": [
            {"name": t, "level": i, "groups": [t], "price_per_hit": p}
            for i, (t, p) in enumerate((("free", 0.005), ("premium", 0.008), ("enterprise", 0.01)))
        ],
        "models": [{"name": m, "upstream": "http://x"} for m in MODELS],
    }
)
SIZES = tuple(size for _, size in ROLLUPS)
SPAN = 2 * 86400  # random_records spreads records over [T0, T0 + 2 days]
BYS = (("user",), ("user", "tier", "model"), ("namespace",), ("user", "model", "namespace"))


# --- the plan alone: signed pieces add up to the range ----------------------------------------


@given(
    a=st.integers(0, 5 * DAY_MS),
    length=st.integers(1, 3 * DAY_MS),
    points=st.lists(st.integers(-DAY_MS, 9 * DAY_MS), min_size=1, max_size=60),
)
def test_plan_pieces_add_up_to_the_range(a: int, length: int, points: list[int]) -> None:
    b = a + length
    pieces = plan(a, b, SIZES)
    edges = [a, b, a - 1, a + 1, b - 1, b + 1]
    for t in [*points, *edges]:
        covered = sum(p.sign for p in pieces if p.lo < t <= p.hi)
        assert covered == (1 if a < t <= b else 0), (a, b, t, pieces)
    for p in pieces:
        assert p.lo < p.hi and p.sign in (1, -1)
        if p.level is not None:
            assert p.lo % SIZES[p.level] == 0 and p.hi % SIZES[p.level] == 0
        else:  # raw records: inside one hour, at most half of it
            assert p.lo // HOUR_MS == (p.hi - 1) // HOUR_MS
            assert p.hi - p.lo <= HOUR_MS // 2
    assert sum(p.hi - p.lo for p in pieces if p.level is None) <= HOUR_MS  # both edges together


# --- the store: reports vs the truth summed per record ----------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _open(kind: str, folder: Path, request: pytest.FixtureRequest) -> LedgerStore:
    if kind == "sqlite":
        url = f"sqlite:///{folder}/ledger.db"
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        server.reset()
        url = server.url
    store = LedgerStore(url)
    store.open()
    return store


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LedgerStore, list[RequestRecord]]]:
    """A ledger with 4,000 records over two days, written in random batches, some twice."""
    store = _open(request.param, tmp_path_factory.mktemp("ranges"), request)
    recs = random_records(4000, seed=23)
    rng = random.Random(5)
    doubled = recs + rng.sample(recs, 500)
    i = 0
    while i < len(doubled):
        size = rng.randint(1, 300)
        store.write(doubled[i : i + size])
        i += size
    yield store, recs
    store.close()


def _report(
    store: LedgerStore,
    start: float,
    end: float,
    by: tuple[str, ...],
    filters: dict[str, tuple[str, ...]] | None = None,
) -> dict[tuple[str, ...], list[int]]:
    rep = build_ledger_report(
        store.engine,
        CONFIG,
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(end, UTC),
        by,
        filters or {},
    )
    got = {
        row.key: [int(row.totals.tokens), int(row.totals.allowed), int(row.totals.limited)]
        for row in rep.rows
    }
    # The report's own total agrees with its rows.
    assert [int(rep.total.tokens), int(rep.total.allowed), int(rep.total.limited)] == [
        sum(v[i] for v in got.values()) for i in range(3)
    ]
    return got


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start_ms=st.integers(-3_600_000, (SPAN + 3600) * 1000),
    length_ms=st.integers(1, (SPAN + 7200) * 1000),
    by=st.sampled_from(BYS),
)
def test_random_ranges_off_the_hour_equal_the_records(
    filled: tuple[LedgerStore, list[RequestRecord]],
    start_ms: int,
    length_ms: int,
    by: tuple[str, ...],
) -> None:
    store, recs = filled
    start = T0 + start_ms / 1000
    end = start + length_ms / 1000
    assert _report(store, start, end, by) == truth(recs, start, end, by)


@pytest.mark.parametrize(
    "hours",
    [24, 23.99, 12.5, 6, 30.25, 0.5, 47.9],
)
def test_last_n_hours_ending_off_the_hour(
    filled: tuple[LedgerStore, list[RequestRecord]], hours: float
) -> None:
    store, recs = filled
    end = T0 + 36 * 3600 + 1234.567  # 12:37:39.567 past an hour
    start = end - hours * 3600
    for by in BYS:
        assert _report(store, start, end, by) == truth(recs, start, end, by), by


def test_filters_on_ranges_off_the_hour(filled: tuple[LedgerStore, list[RequestRecord]]) -> None:
    store, recs = filled
    start, end = T0 + 1800.25, T0 + 30 * 3600 + 59.75
    for key, values in (("user", ("alice", "dave")), ("model", (MODELS[1],))):
        kept = [r for r in recs if getattr(r, key) in values]
        got = _report(store, start, end, ("user", "namespace"), {key: values})
        assert got == truth(kept, start, end, ("user", "namespace"))
    for ns in (REQ_NS, TOK_NS):
        got = _report(store, start, end, ("user", "namespace"), {"namespace": (ns,)})
        assert got == {
            k: v for k, v in truth(recs, start, end, ("user", "namespace")).items() if k[1] == ns
        }
        got = _report(store, start, end, ("user",), {"namespace": (ns,)})
        want = {
            (k[0],): v
            for k, v in truth(recs, start, end, ("user", "namespace")).items()
            if k[1] == ns
        }
        assert got == want


# --- late records and concurrent writers ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    s = _open(request.param, tmp_path, request)
    yield s
    s.close()


def test_late_records_after_a_report_are_counted(store: LedgerStore) -> None:
    first = random_records(1500, seed=31)
    store.write(first)
    start, end = T0 + 2017.5, T0 + 25 * 3600 + 1111.25  # whole days, 6 h, hours and raw edges
    by = ("user", "model", "namespace")
    assert _report(store, start, end, by) == truth(first, start, end, by)
    # Records arriving late, into hours (and days) already rolled up and already reported,
    # by a second writer on the same database (a replica, or a spool replayed hours later).
    late = random_records(len(first), seed=32)  # new ids, the same two days
    replica = LedgerStore(store.url)
    replica.open()
    for i in range(0, len(late), 97):
        replica.write(late[i : i + 97])
    replica.write(late[:200])  # and replayed twice: counted once
    replica.close()
    everything = first + late
    assert _report(store, start, end, by) == truth(everything, start, end, by)
    # The roll-ups written batch by batch equal a rebuild from the records.
    with store.engine.connect() as conn:
        before = [sorted(tuple(r) for r in conn.execute(select(t))) for t, _ in ROLLUPS]
    rebuild(store.engine)
    with store.engine.connect() as conn:
        assert [sorted(tuple(r) for r in conn.execute(select(t))) for t, _ in ROLLUPS] == before


def test_snapshot_sees_one_committed_state(store: LedgerStore) -> None:
    store.write(random_records(50, seed=41))
    other = LedgerStore(store.url)
    count = select(func.count()).select_from(records)
    with snapshot(store.engine) as conn:
        seen = conn.execute(count).scalar_one()
        other.write(random_records(30, seed=42))
        assert conn.execute(count).scalar_one() == seen
    assert store.count() == seen + 30
    other.close()


def test_reports_while_another_writer_commits_match_a_prefix(store: LedgerStore) -> None:
    """Each batch puts records both inside the range's whole hours and in its raw edges: a report
    that read the roll-ups before a commit and the edges after it would match no prefix."""
    start = T0 + 3600 * 5 + 1500.0
    end = start + 24 * 3600
    rng = random.Random(9)
    batches: list[list[RequestRecord]] = []
    for n in range(25):
        batch = random_records(40, seed=100 + n, span_seconds=SPAN)
        edge = [_ending(r, start + rng.random() * 600) for r in batch[:10]]
        inner = [_ending(r, start + 7200 + rng.random() * 36000) for r in batch[10:]]
        batches.append(edge + inner)
    by = ("user", "namespace")
    prefixes = [truth([r for b in batches[:k] for r in b], start, end, by) for k in range(26)]
    done = threading.Event()

    def write() -> None:
        writer = LedgerStore(store.url)
        try:
            for batch in batches:
                writer.write(batch)
        finally:
            writer.close()
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    reports = 0
    while not done.is_set() or reports < 3:
        got = _report(store, start, end, by)
        assert got in prefixes
        reports += 1
    thread.join()
    assert _report(store, start, end, by) == prefixes[-1]


def _ending(record: RequestRecord, ended: float) -> RequestRecord:
    return dataclasses.replace(record, started=ended - 1.5, ended=ended)


# --- upgrading a schema-2 database ------------------------------------------------------------


def test_schema_2_database_is_upgraded_and_reports_exactly(store: LedgerStore) -> None:
    recs = random_records(1200, seed=51)
    store.write(recs)
    with store.engine.begin() as conn:
        # Back to schema 2: no 6-hour table, and on SQLite rowid roll-up tables.
        six_hourly.drop(conn)
        conn.execute(delete(schema_version).where(schema_version.c.version == 3))
        if store.dialect == "sqlite":
            for name in ("ledger_hourly", "ledger_daily"):
                conn.exec_driver_sql(f"ALTER TABLE {name} RENAME TO {name}_x")
                conn.exec_driver_sql(
                    f"CREATE TABLE {name} AS SELECT * FROM {name}_x"  # a plain rowid table
                )
                conn.exec_driver_sql(f"DROP TABLE {name}_x")
    again = LedgerStore(store.url)
    again.open()
    with again.engine.connect() as conn:
        assert conn.execute(select(func.max(schema_version.c.version))).scalar_one() == 3
        if again.dialect == "sqlite":
            for name in ("ledger_hourly", "ledger_daily", "ledger_6h"):
                ddl = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
                ).scalar_one()
                assert "WITHOUT ROWID" in ddl.upper()
    assert SCHEMA_VERSION == 3
    start, end = T0 + 999.5, T0 + 40 * 3600 + 77.25
    for by in BYS:
        assert _report(again, start, end, by) == truth(recs, start, end, by)
    again.close()


def test_every_namespace_combination_counts_alike_in_roll_ups_and_raw_records(
    store: LedgerStore,
) -> None:
    """Three implementations of how a record counts per namespace must agree for every
    (requests, tokens, limited) namespace combination, including one namespace for both
    policies: the roll-ups' SQL (`rollups.namespace_parts`), the raw edges' SQL expressions
    (report without namespaces) and the raw edges' split in Python (report by namespace)."""
    hour = (int(T0) // 3600 + 5) * 3600.0
    choices = (None, "ns/a", "ns/b")
    recs = []
    for i, (req, tok, lim) in enumerate(
        (req, tok, lim) for req in choices for tok in choices for lim in choices
    ):
        base = random_records(1, seed=200 + i)[0]
        recs.append(
            dataclasses.replace(
                base,
                user=f"u{i}",
                ended=hour + 600 + i,  # all inside one hour, 10 min after it starts
                requests_namespace=req,
                tokens_namespace=tok,
                limited_namespace=lim,
                usage_namespace="ns/a" if i % 2 else "ns/b",
                total_tokens=i,
                prompt_tokens=i,
                completion_tokens=0,
            )
        )
    store.write(recs)
    whole = (hour, hour + 3600)  # the hourly roll-up alone
    raw = (hour + 599, hour + 640)  # raw records only (41 s of the hour: no complement)
    complement = (hour + 599, hour + 3600)  # the hour minus a raw part that holds nothing
    sizes = tuple(size for _, size in ROLLUPS)
    ms = [(round(a * 1000), round(b * 1000)) for a, b in (whole, raw, complement)]
    assert [p.level for p in plan(ms[0][0], ms[0][1], sizes)] == [2]
    assert [p.level for p in plan(ms[1][0], ms[1][1], sizes)] == [None]
    assert [(p.level, p.sign) for p in plan(ms[2][0], ms[2][1], sizes)] == [(2, 1), (None, -1)]
    for by in (("user",), ("user", "namespace"), ("namespace",)):
        expected = _report(store, *whole, by)
        assert expected  # something was counted
        assert _report(store, *raw, by) == expected, by
        assert _report(store, *complement, by) == expected, by
