"""What a report asks (`ReportRequest`) and what it answers (`Report`): plain data for the formats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.report.timerange import TimeRange

#: `--by` / filter keys -> metric labels (the order of the detail labels); a schema offers
#: those its series carry (`keys_of`).
GROUP_KEYS: dict[str, str] = {
    contract.USER: contract.USER,
    contract.TIER: contract.TIER,
    contract.SUBSCRIPTION: contract.SUBSCRIPTION,
    contract.MODEL: contract.MODEL,
    "namespace": contract.NAMESPACE,
    **{label: label for label in contract.ATTRIBUTION_LABELS},
}


def keys_of(schema: Schema) -> tuple[str, ...]:
    """The `--by` / filter keys of `schema`: namespace, dimension, user if captured, model,
    attribution labels."""
    labels = {contract.NAMESPACE, *schema.identity_labels, contract.MODEL}
    return tuple(k for k, label in GROUP_KEYS.items() if label in labels)


def default_by(schema: Schema) -> tuple[str, ...]:
    """`user, tier, model` in the seed; the dimension and model (and user when captured)."""
    return (*((contract.USER,) if schema.user else ()), schema.dimension, contract.MODEL)


DEFAULT_BY = default_by(contract.SEED)


class ReportInputError(ValueError):
    """Bad report options; `str()` is one line naming the option and the value."""


def parse_group_by(text: str, schema: Schema = contract.SEED) -> tuple[str, ...]:
    """`user,tier` -> ("user", "tier"); unknown, empty or repeated keys are errors."""
    known = keys_of(schema)
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ReportInputError(f"--by {text!r} names no key; choose from {', '.join(known)}")
    for key in keys:
        _check_key(key, known, "--by")
    if len(set(keys)) != len(keys):
        raise ReportInputError(f"--by {text!r} repeats a key")
    return keys


def _check_key(key: str, known: tuple[str, ...], option: str) -> None:
    if key in known:
        return
    if key == contract.USER:
        raise ReportInputError(
            f"{option}: user is not captured in this schema (schema.capture_user: false)"
        )
    raise ReportInputError(f"{option}: unknown key {key!r}; choose from {', '.join(known)}")


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """A report over `range`, grouped by `by`, restricted to `filters` (key -> allowed values)."""

    range: TimeRange
    by: tuple[str, ...] = DEFAULT_BY
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    resolution: float = 15.0
    """Seconds between the points each counter is read at (at most the scrape interval)."""
    step: float | None = None
    """Longest window per query in seconds; None: a day, halved while Prometheus refuses."""
    with_users: bool = False
    """Keep per-user detail for charts (top users) whatever `by` is (when `user` is captured)."""
    schema: Schema = contract.SEED
    """The config's metric schema: which labels exist and which names are read."""
    recording_rules: bool = False
    """Read the per-user recording rules (one sample a minute) instead of the raw counters."""

    def __post_init__(self) -> None:
        known = keys_of(self.schema)
        for key in self.by:
            _check_key(key, known, "--by")
        for key in self.filters:
            _check_key(key, known, f"--{key.replace('_', '-')}")
        if self.resolution <= 0 or 86400 % self.resolution:
            raise ReportInputError(
                f"--resolution {self.resolution:g}s must divide a day (e.g. 5s, 15s, 30s, 1m)"
            )
        if self.recording_rules and self.resolution % 60:
            raise ReportInputError(
                f"--resolution {self.resolution:g}s: --recording-rules reads one sample a "
                "minute, so the resolution must be a whole number of minutes (e.g. 1m)"
            )
        if self.step is not None and (self.step <= 0 or self.step % self.resolution):
            raise ReportInputError(
                f"--step {self.step:g}s must be a multiple of the resolution ({self.resolution:g}s)"
            )

    @property
    def detail_labels(self) -> tuple[str, ...]:
        """The labels each query keeps: `by`, plus the dimension and model (prices depend on them)."""
        wanted = {GROUP_KEYS[k] for k in self.by} | {self.schema.dimension, contract.MODEL}
        if self.with_users and self.schema.user:
            wanted.add(contract.USER)
        return tuple(label for label in GROUP_KEYS.values() if label in wanted)


@dataclass(slots=True)
class Totals:
    """Counts and cost of one row (or of the whole report)."""

    tokens: float = 0.0
    allowed: float = 0.0
    limited: float = 0.0
    cost: float = 0.0

    @property
    def success_rate(self) -> float | None:
        """allowed / (allowed + limited); None without any call."""
        calls = self.allowed + self.limited
        return self.allowed / calls if calls > 0 else None

    def add(self, other: Totals) -> None:
        self.tokens += other.tokens
        self.allowed += other.allowed
        self.limited += other.limited
        self.cost += other.cost


@dataclass(frozen=True, slots=True)
class Row:
    key: tuple[str, ...]
    """Values of the report's `by` keys, in order."""
    totals: Totals


@dataclass(frozen=True, slots=True)
class Report:
    start: datetime
    end: datetime
    by: tuple[str, ...]
    filters: Mapping[str, tuple[str, ...]]
    rows: tuple[Row, ...]
    total: Totals
    detail: Mapping[tuple[str, ...], Totals]
    """Finest rows, keyed by the values of `detail_labels`."""
    detail_labels: tuple[str, ...]
    clipped: bool = False
    unknown_tiers: tuple[str, ...] = ()
    queries: int = 0

    def grouped(self, label: str) -> dict[str, Totals]:
        """The detail rows summed by one label (e.g. `tier` for cost by tier)."""
        index = self.detail_labels.index(label)
        out: dict[str, Totals] = {}
        for key, totals in self.detail.items():
            out.setdefault(key[index], Totals()).add(totals)
        return out


def aggregate(
    detail: Mapping[tuple[str, ...], Totals], detail_labels: tuple[str, ...], by: Iterable[str]
) -> tuple[tuple[Row, ...], Totals]:
    """Rows by `by` with any usage (sorted by cost, then tokens, descending; then by key) and the total."""
    positions = [detail_labels.index(GROUP_KEYS[k]) for k in by]
    rows: dict[tuple[str, ...], Totals] = {}
    total = Totals()
    for key, totals in detail.items():
        rows.setdefault(tuple(key[p] for p in positions), Totals()).add(totals)
        total.add(totals)
    # Series that exist but did not move in the range are no line on a bill.
    used = {k: t for k, t in rows.items() if t.tokens or t.allowed or t.limited or t.cost}
    ordered = sorted(used.items(), key=lambda kv: (-round(kv[1].cost, 9), -kv[1].tokens, kv[0]))
    return tuple(Row(k, t) for k, t in ordered), total
