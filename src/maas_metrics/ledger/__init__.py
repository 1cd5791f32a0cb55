"""The durable usage ledger: one row per request, SQLite or PostgreSQL, exact reports and reconcile.

Modules: `record` (the row), `schema` (tables, migration), `store`
(idempotent batched writes and hourly roll-ups), `spool` and `writer`
(off the request path, spooled while the database is away), `metrics`
(`maas_ledger_*` and alerts), `tiling` and `cells` (how a range is read:
roll-ups and raw edges in one snapshot), `report`, `export` (CSV, JSON Lines, FOCUS),
`reconcile` (ledger vs Prometheus), `limiter_check` (ledger vs the live
Redis counters) and `reconcile_log` (each run's verdict, for the web page).
"""

from maas_metrics.ledger.record import OUTCOMES, Outcome, RequestRecord, key_id, new_id
from maas_metrics.ledger.store import LedgerError, LedgerStore
from maas_metrics.ledger.writer import LedgerWriter

__all__ = [
    "OUTCOMES",
    "LedgerError",
    "LedgerStore",
    "LedgerWriter",
    "Outcome",
    "RequestRecord",
    "key_id",
    "new_id",
]
