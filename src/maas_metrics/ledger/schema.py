"""The ledger's tables and the one migration path every store runs at start.

Times are integer epoch milliseconds (exact comparisons on every database).
A record belongs to the hour bucket `(bucket_ms, bucket_ms + 1 h]` of its end
time in `ledger_hourly`, and to the 6-hour and day buckets likewise in
`ledger_6h` and `ledger_daily`, matching the reports' (from, to] ranges.
On SQLite the roll-up tables are WITHOUT ROWID: a report's range scan then
reads the rows in key order in place (8x faster than through a separate
index). `ledger_schema` holds the version; `migrate` brings an older
database up step by step and refuses one written by a newer maas-metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    delete,
    exc,
    func,
    insert,
    select,
)

HOUR_MS = 3_600_000
SIX_HOURS_MS = 6 * HOUR_MS
DAY_MS = 86_400_000
SCHEMA_VERSION = 3

metadata = MetaData()

records = Table(
    "ledger_records",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_ms", BigInteger, nullable=False),
    Column("ended_ms", BigInteger, nullable=False),
    Column("user_name", String(256), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("tier", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("requests_namespace", String(256)),
    Column("tokens_namespace", String(256)),
    Column("usage_namespace", String(256)),
    Column("limited_namespace", String(256)),
    Column("limit_name", String(256)),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("batch", String(32)),  # the write that inserted the row: its roll-ups come from it
    Index("ledger_records_ended", "ended_ms"),
)


def _rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket_ms", BigInteger, nullable=False),
        Column("user_name", String(256), nullable=False),
        Column("tier", String(128), nullable=False),
        Column("model", String(256), nullable=False),
        Column("namespace", String(256), nullable=False),
        Column("tokens", BigInteger, nullable=False),
        Column("prompt_tokens", BigInteger, nullable=False),
        Column("completion_tokens", BigInteger, nullable=False),
        Column("cached_tokens", BigInteger, nullable=False),
        Column("allowed", BigInteger, nullable=False),
        Column("limited", BigInteger, nullable=False),
        PrimaryKeyConstraint("bucket_ms", "user_name", "tier", "model", "namespace"),
        sqlite_with_rowid=False,
    )


hourly = _rollup("ledger_hourly")
six_hourly = _rollup("ledger_6h")
daily = _rollup("ledger_daily")
ROLLUPS: tuple[tuple[Table, int], ...] = (
    (daily, DAY_MS),
    (six_hourly, SIX_HOURS_MS),
    (hourly, HOUR_MS),
)
"""Roll-up tables and their bucket sizes, coarsest first, each a multiple of the next (the
report tiles a range with them; the 6-hour level cuts a partial day to at most 2 + 5 buckets)."""

reconciliations = Table(
    "ledger_reconciliations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_ms", BigInteger, nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("differences", Integer, nullable=False),  # any difference, within the edge slack or not
    Column("beyond", Integer, nullable=False),  # differences beyond the slack (exit status 1)
    Column("limiter_checked", Integer),  # live limiter counters compared (None: not compared)
    Column("limiter_differences", Integer),
    Column("ledger_tokens", BigInteger, nullable=False),
    Column("prometheus_tokens", BigInteger, nullable=False),
    Index("ledger_reconciliations_run", "run_ms"),
)
"""One row per `maas-metrics reconcile` run: the web dashboard shows the last one."""

schema_version = Table(
    "ledger_schema",
    metadata,
    Column("version", Integer, primary_key=True),
)

ROLLUP_KEY = ("bucket_ms", "user_name", "tier", "model", "namespace")
ROLLUP_VALUES = (
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "allowed",
    "limited",
)


def _without_rowid(conn: Connection, table: Table) -> None:
    """SQLite: re-create a roll-up table made as a rowid table (schema 1-2) WITHOUT ROWID."""
    found = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
    ).scalar()
    if found is None or "WITHOUT ROWID" in str(found).upper():
        return
    old = f"{table.name}_rowid"
    conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {old}")
    table.create(conn)
    conn.exec_driver_sql(f"INSERT INTO {table.name} SELECT * FROM {old}")
    conn.exec_driver_sql(f"DROP TABLE {old}")


def _to_v3(conn: Connection) -> None:
    """The 6-hour roll-up (filled from the hourly one) and, on SQLite, WITHOUT ROWID roll-ups."""
    if conn.dialect.name == "sqlite":
        # A write first, so the driver opens the transaction the DDL below then runs in.
        conn.execute(delete(schema_version).where(schema_version.c.version < 0))
        for table in (hourly, daily):
            _without_rowid(conn, table)
    if conn.dialect.has_table(conn, six_hourly.name):
        return  # created with the others by step 1 (a new database): nothing to fill
    six_hourly.create(conn)
    h = hourly.c
    bucket = h.bucket_ms // SIX_HOURS_MS * SIX_HOURS_MS
    keys = [bucket, h.user_name, h.tier, h.model, h.namespace]
    rows = select(*keys, *(func.sum(h[name]) for name in ROLLUP_VALUES)).group_by(*keys)
    conn.execute(insert(six_hourly).from_select([*ROLLUP_KEY, *ROLLUP_VALUES], rows))


#: version -> step that brings a database at version - 1 to it (version 1: create all).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: metadata.create_all(conn),
    2: lambda conn: reconciliations.create(conn, checkfirst=True),
    3: _to_v3,
}


class SchemaError(Exception):
    """The database holds a ledger this maas-metrics cannot use."""


def bucket_of(ended_ms: int, size_ms: int) -> int:
    """Start of the (start, start + size] bucket holding `ended_ms`."""
    return (ended_ms - 1) // size_ms * size_ms


def hour_of(ended_ms: int) -> int:
    return bucket_of(ended_ms, HOUR_MS)


def current_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, schema_version.name):
        return 0
    found = conn.execute(select(schema_version.c.version)).scalars().all()
    return max(found, default=0)


def migrate(engine: Engine) -> int:
    """Create or upgrade the schema; returns the version. Safe when replicas start together."""
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                version = current_version(conn)
                if version > SCHEMA_VERSION:
                    raise SchemaError(
                        f"the ledger database has schema version {version}, newer than this "
                        f"maas-metrics knows ({SCHEMA_VERSION}): upgrade maas-metrics"
                    )
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[step](conn)
                    conn.execute(insert(schema_version).values(version=step))
                return SCHEMA_VERSION
        except (exc.IntegrityError, exc.ProgrammingError):
            # Another replica migrated at the same moment: look again once.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
