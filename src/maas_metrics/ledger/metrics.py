"""The ledger's own health in `/metrics` (`maas_ledger_*`) and the alerts that watch it.

`families(writer)` is what the gateway's /metrics appends; `alert_rules()`
is what `rules/alerts.py` adds to its group.
"""

from __future__ import annotations

from maas_metrics.ledger.writer import LedgerWriter
from maas_metrics.telemetry import Family

Rule = dict[str, object]

BEHIND_SECONDS = 300
"""The ledger is behind when a record has waited this long (default flush: 0.2 s)."""


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


def alert_rules() -> list[Rule]:
    """MaaSLedgerBehind (records wait > 5 min: database away or too slow) and MaaSLedgerRecordsLost."""
    return [
        {
            "alert": "MaaSLedgerBehind",
            "expr": f"max by (job, instance) (maas_ledger_oldest_pending_seconds) > {BEHIND_SECONDS}",
            "for": "2m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The usage ledger is falling behind",
                "description": (
                    "{{ $labels.instance }} holds ledger records older than "
                    f"{BEHIND_SECONDS} s that are not in the database (it is unreachable or too "
                    "slow); they are spooled locally and replayed when it answers."
                ),
            },
        },
        {
            "alert": "MaaSLedgerRecordsLost",
            "expr": "increase(maas_ledger_failed_total[10m]) > 0",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Usage ledger records were lost",
                "description": (
                    "{{ $labels.instance }} could write neither to the ledger database nor to "
                    "its spool file (disk full or read-only): billing records are missing."
                ),
            },
        },
    ]
