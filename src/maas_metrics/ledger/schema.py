"""The ledger's tables and the one migration path every store runs at start.

Times are integer epoch milliseconds (exact comparisons on every database).
A record belongs to the hour bucket `(bucket_ms, bucket_ms + 1 h]` of its end
time in `ledger_hourly`, and to the day bucket likewise in `ledger_daily`,
matching the reports' (from, to] ranges. `ledger_schema` holds the
version; `migrate` brings an older database up step by step and refuses
one written by a newer maas-metrics.
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
    exc,
    insert,
    select,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SCHEMA_VERSION = 2

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
    )


hourly = _rollup("ledger_hourly")
daily = _rollup("ledger_daily")
ROLLUPS: tuple[tuple[Table, int], ...] = ((daily, DAY_MS), (hourly, HOUR_MS))
"""Roll-up tables and their bucket sizes, coarsest first (the report tiles a range with them)."""

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

#: version -> step that brings a database at version - 1 to it (version 1: create all).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: metadata.create_all(conn),
    2: lambda conn: reconciliations.create(conn, checkfirst=True),
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
