"""The record of `reconcile` runs, kept in the ledger database so the web dashboard can show the last.

One row per run (time, range, verdict, counts of differences); nothing
else reads it, so it never affects reports or exports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from maas_metrics.ledger.schema import reconciliations


@dataclass(frozen=True, slots=True)
class ReconcileRun:
    """One recorded run; `ok` is the exit status 0 verdict."""

    run: datetime
    start: datetime
    end: datetime
    ok: bool
    differences: int
    beyond: int
    ledger_tokens: int
    prometheus_tokens: int
    limiter_checked: int | None = None
    limiter_differences: int | None = None

    def summary(self) -> str:
        """One line for people: `<range>: 0 differences` or what is wrong."""
        span = f"{_text(self.start)} to {_text(self.end)}"
        if self.beyond:
            verdict = (
                f"{self.beyond} difference{'s' if self.beyond != 1 else ''} beyond the edge "
                f"tolerance (ledger {self.ledger_tokens:,} vs Prometheus "
                f"{self.prometheus_tokens:,} tokens): run `maas-metrics reconcile` for causes"
            )
        elif self.differences:
            verdict = f"{self.differences} within the edge tolerance, none beyond"
        else:
            verdict = "0 differences"
        if self.limiter_checked is not None:
            verdict += (
                f"; live limiter: {self.limiter_differences or 0} difference"
                f"{'s' if self.limiter_differences != 1 else ''} in "
                f"{self.limiter_checked} counters"
            )
        return f"{span}: {verdict}"


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def save_run(engine: Engine, run: ReconcileRun) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(reconciliations).values(
                run_ms=_ms(run.run),
                start_ms=_ms(run.start),
                end_ms=_ms(run.end),
                ok=run.ok,
                differences=run.differences,
                beyond=run.beyond,
                limiter_checked=run.limiter_checked,
                limiter_differences=run.limiter_differences,
                ledger_tokens=run.ledger_tokens,
                prometheus_tokens=run.prometheus_tokens,
            )
        )


def last_run(engine: Engine) -> ReconcileRun | None:
    """The most recent run (by run time, then insertion), or None when reconcile never ran."""
    c = reconciliations.c
    stmt = select(reconciliations).order_by(c.run_ms.desc(), c.id.desc()).limit(1)
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    return ReconcileRun(
        run=_at(row["run_ms"]),
        start=_at(row["start_ms"]),
        end=_at(row["end_ms"]),
        ok=bool(row["ok"]),
        differences=row["differences"],
        beyond=row["beyond"],
        ledger_tokens=row["ledger_tokens"],
        prometheus_tokens=row["prometheus_tokens"],
        limiter_checked=row["limiter_checked"],
        limiter_differences=row["limiter_differences"],
    )


def now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)
