"""`reconcile`: the ledger against Prometheus, per user, model and namespace.

Both sides are exact (the ledger row by row, the report's windowed
increases counter by counter), so a difference is real, with one
legitimate exception at the two edges of the range: Prometheus sees a call
at the first scrape after its admission and tokens at the first scrape
after the answer, while the ledger places the whole request at its end.
The tolerance is therefore computed, not guessed: for each row it is what
the ledger's records near either edge (ended within `edge_seconds` of it, or
still running across it) could move between ranges. Any difference beyond
that slack is reported with its likely cause and makes the exit status 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from maas_metrics.config import Config
from maas_metrics.ledger.cells import read_cells
from maas_metrics.ledger.rollups import rollup_deltas
from maas_metrics.ledger.schema import records
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.report import ReportRequest, TimeRange, build_report

Key = tuple[str, str, str]
"""(user, model, namespace)."""
FIELDS = ("tokens", "allowed", "limited")
MAX_REQUEST_SECONDS = 600
"""Longest request the edge slack looks back for (a stream running across an edge)."""


@dataclass(frozen=True, slots=True)
class Difference:
    key: Key
    field: str
    ledger: int
    prometheus: int
    slack: int

    @property
    def diff(self) -> int:
        return self.ledger - self.prometheus

    @property
    def within(self) -> bool:
        return abs(self.diff) <= self.slack

    @property
    def cause(self) -> str:
        if self.within:
            return "requests at the range edges (scrape timing vs request end)"
        if self.diff < 0:
            return (
                "ledger records missing: still queued or spooled (maas_ledger_pending), "
                "lost (maas_ledger_failed_total), or written to another ledger"
            )
        return (
            "counts Prometheus never saw: a gateway restart or crash between scrapes, a "
            "scrape gap, data past retention, or a counter series born inside the range "
            "above zero (increase() cannot see its first increment)"
        )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    start: datetime
    end: datetime
    rows: int
    differences: tuple[Difference, ...]
    ledger_totals: dict[str, int]
    prometheus_totals: dict[str, int]

    @property
    def ok(self) -> bool:
        return all(d.within for d in self.differences)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def ledger_side(engine: Engine, start: datetime, end: datetime) -> dict[Key, dict[str, int]]:
    out: dict[Key, dict[str, int]] = {}
    for (user, _tier, model, ns, _day), a in read_cells(engine, start, end, {}).items():
        row = out.setdefault((user, model, ns), dict.fromkeys(FIELDS, 0))
        row["tokens"] += a.tokens
        row["allowed"] += a.allowed
        row["limited"] += a.limited
    return out


def edge_slack(
    engine: Engine, edges: list[datetime], edge_seconds: float
) -> dict[Key, dict[str, int]]:
    """Per row, what records near an edge contribute (they may fall on either side of it)."""
    e = round(edge_seconds * 1000)
    out: dict[Key, dict[str, int]] = {}
    r = records.c
    with engine.connect() as conn:
        for edge in edges:
            t = _ms(edge)
            stmt = select(records).where(
                r.ended_ms > t - e,
                r.ended_ms <= t + e + MAX_REQUEST_SECONDS * 1000,
                r.started_ms <= t + e,
            )
            rows = [dict(m) for m in conn.execute(stmt).mappings()]
            for d in rollup_deltas(rows):
                key = (d["user_name"], d["model"], d["namespace"])
                acc = out.setdefault(key, dict.fromkeys(FIELDS, 0))
                acc["tokens"] += d["tokens"]
                acc["allowed"] += d["allowed"]
                acc["limited"] += d["limited"]
    return out


def prometheus_side(
    api: PrometheusAPI,
    config: Config,
    rng: TimeRange,
    resolution: float,
    done: Callable[[float], None] | None = None,
) -> dict[Key, dict[str, int]]:
    request = ReportRequest(range=rng, by=("user", "model", "namespace"), resolution=resolution)
    report = build_report(api, config, request, done)
    labels = report.detail_labels
    iu, im, ins = labels.index("user"), labels.index("model"), labels.index("limitador_namespace")
    out: dict[Key, dict[str, int]] = {}
    for key, totals in report.detail.items():
        row = out.setdefault((key[iu], key[im], key[ins]), dict.fromkeys(FIELDS, 0))
        row["tokens"] += round(totals.tokens)
        row["allowed"] += round(totals.allowed)
        row["limited"] += round(totals.limited)
    return out


def reconcile(
    engine: Engine,
    api: PrometheusAPI,
    config: Config,
    rng: TimeRange,
    resolution: float = 15.0,
    edge_seconds: float = 30.0,
    done: Callable[[float], None] | None = None,
) -> Reconciliation:
    ledger = ledger_side(engine, rng.start, rng.end)
    prom = prometheus_side(api, config, rng, resolution, done)
    slack = edge_slack(engine, [rng.start, rng.end], edge_seconds)
    zero = dict.fromkeys(FIELDS, 0)
    diffs: list[Difference] = []
    for key in sorted(set(ledger) | set(prom)):
        lv, pv, sv = ledger.get(key, zero), prom.get(key, zero), slack.get(key, zero)
        for f in FIELDS:
            if lv[f] != pv[f]:
                diffs.append(Difference(key, f, lv[f], pv[f], sv[f]))
    return Reconciliation(
        start=rng.start,
        end=rng.end,
        rows=len(set(ledger) | set(prom)),
        differences=tuple(diffs),
        ledger_totals={f: sum(v[f] for v in ledger.values()) for f in FIELDS},
        prometheus_totals={f: sum(v[f] for v in prom.values()) for f in FIELDS},
    )
