"""The ledger's own health in `/metrics` (`maas_ledger_*`) and the alerts that watch it.

`families(writer)` is what the gateway's /metrics appends; the alerts on
these families are in `ledger.alerts`.
"""

from __future__ import annotations

from maas_metrics.ledger.writer import LedgerWriter
from maas_metrics.telemetry import Family


def families(writer: LedgerWriter) -> list[Family]:
    stats = writer.stats
    out: list[Family] = []
    for name, kind, help_text, value in (
        (
            "maas_ledger_pending",
            "gauge",
            "Records not yet in the ledger database (queued + spooled).",
            writer.pending,
        ),
        (
            "maas_ledger_oldest_pending_seconds",
            "gauge",
            "Age of the oldest record not yet in the database.",
            writer.oldest_pending_age(),
        ),
        (
            "maas_ledger_store_up",
            "gauge",
            "1 while the last ledger database write succeeded.",
            int(stats.store_up),
        ),
        (
            "maas_ledger_written_total",
            "counter",
            "Records written to the ledger database (new ids).",
            stats.written,
        ),
        (
            "maas_ledger_duplicates_total",
            "counter",
            "Records the database already held (replays, retries).",
            stats.duplicates,
        ),
        (
            "maas_ledger_spooled_total",
            "counter",
            "Records written to the local spool while the database was away or the queue full.",
            stats.spooled,
        ),
        (
            "maas_ledger_failed_total",
            "counter",
            "Records lost: neither the database nor the spool took them.",
            stats.failed,
        ),
    ):
        family = Family(name, help_text, kind, ())  # type: ignore[arg-type]
        family.set((), value)
        out.append(family)
    return out
