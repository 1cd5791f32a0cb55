"""The background writer against a real PostgreSQL that goes away: spool, replay in order, no loss."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from maas_metrics.config import Ledger
from maas_metrics.ledger import LedgerStore, LedgerWriter
from maas_metrics.ledger.alerts import alert_rules
from maas_metrics.ledger.metrics import families
from maas_metrics.ledger.schema import records
from maas_metrics.telemetry import render
from tests.ledger_data import random_records
from tests.postgres_server import PostgresServer, postgres_server, wait_until


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _settings(tmp_path: Path, url: str, **extra: object) -> Ledger:
    return Ledger.model_validate(
        {
            "url": url,
            "flush_interval_ms": 50,
            "retry_seconds": 0.2,
            "spool_path": str(tmp_path / "ledger.spool"),
            **extra,
        }
    )


def test_database_away_records_spool_and_replay_once(pg: PostgresServer, tmp_path: Path) -> None:
    pg.reset()
    store = LedgerStore(pg.url)
    store.open()
    writer = LedgerWriter(_settings(tmp_path, pg.url), store)
    writer.start()
    recs = random_records(900, seed=21)
    try:
        for r in recs[:300]:
            writer.record(r)
        wait_until(lambda: writer.stats.written == 300, what="first 300 written")
        pg.stop()
        for r in recs[300:600]:
            writer.record(r)
        wait_until(lambda: writer.stats.spooled >= 300, what="records spooled")
        assert not writer.stats.store_up
        assert writer.pending == 300
        text = render(families(writer)).decode()
        assert "maas_ledger_store_up 0" in text and "maas_ledger_pending 300" in text
        pg.start()
        for r in recs[600:]:
            writer.record(r)
        wait_until(lambda: writer.pending == 0 and writer.stats.written == 900, what="replayed")
    finally:
        writer.stop()
    assert writer.stats.store_up and writer.stats.failed == 0
    assert not (tmp_path / "ledger.spool").exists()
    check = LedgerStore(pg.url)
    with check.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(records)).scalar_one() == 900
        ids = set(conn.execute(select(records.c.id)).scalars())
    assert ids == {r.id for r in recs}
    check.close()


def test_spool_replayed_by_the_next_process(pg: PostgresServer, tmp_path: Path) -> None:
    """Records spooled by a writer that stopped while the database was away reach it later."""
    pg.reset()
    store = LedgerStore(pg.url)
    store.open()
    pg.stop()
    writer = LedgerWriter(_settings(tmp_path, pg.url), store)
    writer.start()
    recs = random_records(50, seed=2)
    for r in recs:
        writer.record(r)
    writer.stop()  # the final flush fails: everything goes to the spool
    assert writer.stats.spooled == 50
    pg.start()
    later = LedgerWriter(_settings(tmp_path, pg.url), LedgerStore(pg.url))
    assert later.pending == 50
    later.start()
    wait_until(lambda: later.pending == 0, what="spool replayed")
    later.stop()
    assert later.stats.written == 50


def test_memory_is_bounded_overflow_goes_to_spool(pg: PostgresServer, tmp_path: Path) -> None:
    pg.reset()
    store = LedgerStore(pg.url)
    store.open()
    writer = LedgerWriter(
        _settings(tmp_path, pg.url, queue_max=10, flush_interval_ms=60_000, batch_rows=1000), store
    )
    writer.start()
    recs = random_records(25, seed=4)
    for r in recs:
        writer.record(r)
    assert writer.stats.spooled == 15  # the queue held 10, the rest went to disk at once
    writer.stop()
    assert store.count() == 25 or LedgerStore(pg.url).count() == 25


def test_spool_unwritable_is_counted_as_lost(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, "sqlite:///" + str(tmp_path / "l.db"), spool_path=str(tmp_path / "missing" / "s")
    )
    store = LedgerStore(settings.url or "")
    store.open()
    store.engine.dispose()
    (tmp_path / "l.db").unlink()
    (tmp_path / "l.db").mkdir()  # the database file is now a directory: every write fails
    writer = LedgerWriter(settings, store)
    writer.start()
    for r in random_records(5, seed=1):
        writer.record(r)
    writer.stop()
    assert writer.stats.failed == 5
    assert "maas_ledger_failed_total 5" in render(families(writer)).decode()


def test_alert_rules_are_valid_promql() -> None:
    import subprocess

    import yaml

    rules = {"groups": [{"name": "ledger", "rules": alert_rules()}]}
    path = Path("/tmp") / f"ledger-rules-{id(rules)}.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    path.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
