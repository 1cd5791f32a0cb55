"""The ledger database through SQLAlchemy Core: SQLite (embedded) or PostgreSQL (replicas).

A batch is written in one transaction: the records with
`INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id` (SQLAlchemy's dialect
insert constructs), then the hourly, 6-hour and daily roll-ups of exactly the records that
were new, with `ON CONFLICT DO UPDATE SET x = x + excluded.x`. A record
written twice (retry, spool replay, two replicas) therefore counts once in
both tables, and the roll-ups always equal the records.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    exc,
    func,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from maas_metrics.config import Ledger, check_ledger_url
from maas_metrics.ledger.record import RequestRecord
from maas_metrics.ledger.rollups import namespace_parts
from maas_metrics.ledger.schema import (
    DAY_MS,
    ROLLUP_KEY,
    ROLLUP_VALUES,
    ROLLUPS,
    SchemaError,
    bucket_of,
    migrate,
    records,
)

log = logging.getLogger(__name__)

#: The dialects' own INSERT constructs (both offer ON CONFLICT): SQLAlchemy renders each.
_INSERTS: dict[str, Callable[[Table], Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
CONNECT_TIMEOUT_SECONDS = 5
VALUES_ROWS = (64, 16, 4, 1)
"""Rows per multi-row INSERT on positional drivers, largest first (64 x 23 parameters, far
below SQLite's 32,766): a batch is cut into these sizes, so only four statements are ever
compiled and any batch takes at most 3 of each smaller size."""


class LedgerError(Exception):
    """The ledger database cannot be used; `str()` is one line without any password."""


def _engine_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (the driver this project installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(_engine_url(url)).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "(unparsable URL)"


def describe(error: BaseException) -> str:
    """One line for a database error (the driver's first line, no SQL, no parameters)."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        text = str(error.orig)
    else:
        text = str(error)
    return (text.strip().splitlines() or [type(error).__name__])[0]


def configured_url(settings: Ledger) -> str:
    """The database URL of `settings`: from `url_env` when set (a Secret), else `url`."""
    if settings.url_env is not None:
        value = os.environ.get(settings.url_env, "").strip()
        if not value:
            raise LedgerError(f"ledger.url_env: environment variable {settings.url_env} is not set")
        try:
            return check_ledger_url(value)
        except ValueError as error:
            raise LedgerError(f"{settings.url_env}: {error}") from None
    if settings.url is None:
        raise LedgerError("ledger.url is not set in the config: there is no ledger")
    return settings.url


def create_ledger_engine(url: str) -> Engine:
    try:
        parsed = make_url(_engine_url(url))
    except exc.ArgumentError:
        raise LedgerError("ledger.url: not a database URL") from None
    args: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if (
            parsed.database
            and parsed.database != ":memory:"
            and not parsed.database.startswith("file:")
        ):
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                raise LedgerError(f"ledger.url: folder {folder} does not exist")
        args["timeout"] = 30  # wait for another writer's lock instead of failing at once
    elif parsed.get_backend_name() == "postgresql":
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        kwargs["pool_size"] = 2
    else:
        raise LedgerError(f"ledger.url: unsupported database {parsed.get_backend_name()!r}")
    try:
        engine = create_engine(parsed, connect_args=args, **kwargs)
    except (exc.ArgumentError, ImportError) as error:
        raise LedgerError(f"ledger.url: {error}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    del record
    cursor = dbapi_connection.cursor()
    # WAL: readers (reports) never block the writer; NORMAL: a commit survives a process crash.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


COLUMNS = tuple(column.name for column in records.c)


def record_values(record: RequestRecord, batch: str) -> tuple[Any, ...]:
    """The row of `record` in `COLUMNS` order (the writer's hot path: no dict per row)."""
    return (
        record.id,
        round(record.started * 1000),
        round(record.ended * 1000),
        record.user,
        record.key_id,
        record.tier,
        record.model,
        record.endpoint,
        record.stream,
        record.outcome,
        record.status,
        record.requests_namespace,
        record.tokens_namespace,
        record.usage_namespace,
        record.limited_namespace,
        record.limit_name,
        record.prompt_tokens,
        record.completion_tokens,
        record.cached_tokens,
        record.total_tokens,
        record.latency_ms,
        record.ttft_ms,
        batch,
    )


class LedgerStore:
    """Open (and migrate) a ledger database; write batches idempotently; prune old records."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_ledger_engine(url)
        self._insert = _INSERTS[self.engine.dialect.name]
        # Compiled once by SQLAlchemy for this dialect, run as a DBAPI executemany: per-row
        # parameter processing in Python was most of the writer's CPU.
        insert_records = self._insert(records).on_conflict_do_nothing(index_elements=["id"])
        compiled = insert_records.compile(
            dialect=self.engine.dialect, column_keys=[c.name for c in records.c]
        )
        self._insert_sql = compiled.string
        # Named drivers (psycopg: executemany, pipelined) take a dict per row; positional ones
        # (sqlite3) take multi-row VALUES statements (`_values_sql`), one step per chunk.
        self._named = not self.engine.dialect.positional
        self._values: dict[int, str] = {}
        self._rollup_sql = [self._rollup_statement(table, size) for table, size in ROLLUPS]

    def _values_sql(self, rows: int) -> str:
        """`INSERT ... VALUES (...), (...) ON CONFLICT (id) DO NOTHING` for `rows` rows, compiled
        by SQLAlchemy once per size. sqlite3 runs (and releases the GIL for) each row of an
        executemany separately; one statement per chunk keeps the writer thread from handing
        the GIL back and forth with the event loop hundreds of times per batch."""
        sql = self._values.get(rows)
        if sql is None:
            stmt = self._insert(records).values([dict.fromkeys(COLUMNS)] * rows)
            compiled = stmt.on_conflict_do_nothing(index_elements=["id"]).compile(
                dialect=self.engine.dialect
            )
            expected = [f"{name}_m{i}" for i in range(rows) for name in COLUMNS]
            if list(compiled.positiontup or ()) != expected:
                raise AssertionError("unexpected multi-row INSERT parameter order")
            sql = self._values[rows] = compiled.string
        return sql

    def _rollup_statement(self, table: Table, size: int) -> Any:
        """INSERT the roll-ups of one batch's new rows, adding to existing buckets (key order)."""
        r = records.c
        where = [
            r.batch == bindparam("batch"),
            r.ended_ms.between(bindparam("lo"), bindparam("hi")),
        ]
        parts = namespace_parts(where, (r.ended_ms - 1) // size * size).subquery()
        c = parts.c
        keys = [c.period, c.user_name, c.tier, c.model, c.namespace]
        sums = [func.sum(col) for col in list(c)[5:]]
        query = select(*keys, *sums).where(true()).group_by(*keys).order_by(*keys)
        up = self._insert(table).from_select([*ROLLUP_KEY, *ROLLUP_VALUES], query)
        return up.on_conflict_do_update(
            index_elements=list(ROLLUP_KEY),
            set_={name: table.c[name] + up.excluded[name] for name in ROLLUP_VALUES},
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def open(self) -> None:
        """Connect, create or upgrade the schema and prove writes work; `LedgerError` otherwise."""
        try:
            migrate(self.engine)
            with self.engine.begin() as conn:
                # A no-op write: a read-only file or a read-only role fails here, at start.
                conn.execute(delete(records).where(records.c.id == ""))
        except SchemaError as error:
            raise LedgerError(str(error)) from None
        except exc.SQLAlchemyError as error:
            raise LedgerError(f"ledger {safe_url(self.url)}: {describe(error)}") from None

    def write(self, batch: Sequence[RequestRecord]) -> int:
        """Insert `batch` (ids already present are skipped) and roll it up; returns how many were new."""
        if not batch:
            return 0
        token = uuid.uuid4().hex
        rows = [record_values(r, token) for r in batch]
        ended = [row[2] for row in rows]
        lo, hi = min(ended), max(ended)
        r = records.c
        fresh = select(func.count()).where(r.batch == token, r.ended_ms.between(lo, hi))
        with self.engine.begin() as conn:
            if self._named:
                conn.exec_driver_sql(
                    self._insert_sql, [dict(zip(COLUMNS, row, strict=True)) for row in rows]
                )
            else:
                i = 0
                for size in VALUES_ROWS:  # a few fixed statement sizes, compiled once each
                    while len(rows) - i >= size:
                        flat = tuple(value for row in rows[i : i + size] for value in row)
                        conn.exec_driver_sql(self._values_sql(size), flat)
                        i += size
            new = int(conn.execute(fresh).scalar_one())
            if new:
                for statement in self._rollup_sql:
                    conn.execute(statement, {"batch": token, "lo": lo, "hi": hi})
        return new

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(records)).scalar_one())

    def prune(self, before_ms: int) -> tuple[int, int]:
        """Delete records that ended at or before 00:00 UTC of the day of `before_ms`, with their
        roll-ups; returns (records, roll-up rows) deleted.

        The cut is on a whole day, so no roll-up row is ever half pruned.
        """
        cut = bucket_of(before_ms + 1, DAY_MS)
        with self.engine.begin() as conn:
            gone = conn.execute(delete(records).where(records.c.ended_ms <= cut)).rowcount
            rolled = 0
            for table, size in ROLLUPS:
                done = conn.execute(delete(table).where(table.c.bucket_ms + size <= cut))
                rolled += int(done.rowcount or 0)
        return int(gone or 0), rolled

    def close(self) -> None:
        self.engine.dispose()
