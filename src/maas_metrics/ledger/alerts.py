"""Alerts on the ledger's own metrics (`ledger.metrics`), added by `rules.alerts` when a ledger is configured."""

from __future__ import annotations

Rule = dict[str, object]

BEHIND_SECONDS = 300
"""The ledger is behind when a record has waited this long (default flush: 0.2 s)."""


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
