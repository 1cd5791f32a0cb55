"""Running a catalogue's targets as Grafana would, and comparing what they return with the truth.

Grafana first resolves the hidden `top` variables (an instant query at the
range end), then expands a target's templated PromQL with the selection, the
range, `$__rate_interval` and the step, and runs it as an instant query at
the range end or as a range query on its aligned steps (`alignRange`). The
panel tests (tests/test_dashboard_queries.py, test_schema_panels.py,
test_kuadrant_panels.py, test_exact_*.py, test_dashboard_fourth_tier.py,
test_scale_sample_limit.py) all run targets through here, so a change to
how Grafana is imitated is made once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from maas_metrics.dashboard.latency_panels import LATENCY_KEYS
from maas_metrics.dashboard.model import Catalogue
from maas_metrics.dashboard.variables import Selection, expand, top_values
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess
from maas_metrics.rules.recording import INTERVAL_SECONDS
from tests.history import CALLS, HITS, LIMITED, History, Labels, backfill_recording_rules_at
from tests.servers import prometheus_holding

HOUR = 3600
STEP = 15  # Grafana's step for 1 h and 3 h 15 min ranges with a 15 s scrape interval
RATE_INTERVAL = 60  # $__rate_interval = max(15 s + 15 s, 4 x 15 s)
RULE_OFFSET = 90  # the recording rules are evaluated from history start + 90 s, every minute


@contextmanager
def history_api(
    directory: Path, history: History, rule_offset: int = RULE_OFFSET
) -> Iterator[PrometheusAPI]:
    """`history` in a real Prometheus (in `directory`), with the recording rules evaluated every
    minute from `rule_offset` seconds after its start; yields its HTTP API."""

    def rules(prometheus: PrometheusProcess) -> None:
        backfill_recording_rules_at(prometheus, history.start + rule_offset, history.end)

    with (
        prometheus_holding(directory, history.openmetrics(), rules) as prometheus,
        PrometheusAPI(prometheus.url) as api,
    ):
        yield api


class Window(Protocol):
    """A selection over a range that ends at `end` and lasts `length` seconds."""

    @property
    def selection(self) -> Selection: ...

    @property
    def end(self) -> int: ...

    @property
    def length(self) -> int: ...


def targets(catalogue: Catalogue) -> list[tuple[str, str]]:
    """Every (panel key, ref id) but the latency row's (tests/test_latency_dashboard.py: a live gateway)."""
    return [
        (p.key, t.ref_id) for p in catalogue.panels if p.key not in LATENCY_KEYS for t in p.targets
    ]


def key_of(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def top_options(
    api: PrometheusAPI,
    catalogue: Catalogue,
    selection: Selection,
    range_seconds: int,
    rate_seconds: float,
    end: float,
) -> dict[str, list[str]]:
    """The `top` variables' options, resolved as Grafana resolves them (an instant query at the end)."""
    options = {}
    for variable in catalogue.variables:
        if variable.kind == "top":
            expr = expand(
                variable.top_expr,
                selection,
                range_seconds,
                rate_seconds,
                variables=catalogue.variables,
                range_end=end,
            )
            samples = api.query(expr, time=end)
            options[variable.name] = top_values(variable, [s.labels for s in samples])
    return options


def run_expr(
    api: PrometheusAPI,
    catalogue: Catalogue,
    expr: str,
    *,
    instant: bool,
    selection: Selection,
    range_seconds: int,
    end: float,
    step: int,
    rate_seconds: float = RATE_INTERVAL,
    options: Mapping[str, Sequence[str]] | None = None,
    key: Callable[[Mapping[str, str]], Any] = key_of,
) -> dict[Any, float]:
    """A target's templated `expr` as Grafana runs it: instant at the end, or on its aligned steps.

    Instant results are keyed by `key(labels)`, range results by `(key(labels), t)`.
    `options`: the `top` variables' values (resolved here when not given).
    """
    if options is None:
        options = top_options(api, catalogue, selection, range_seconds, rate_seconds, end)
    query = expand(
        expr,
        selection,
        range_seconds,
        rate_seconds,
        variables=catalogue.variables,
        interval_seconds=step,
        options=options,
        range_end=end,
    )
    if instant:
        return {key(s.labels): s.value for s in api.query(query, time=end)}
    first, last = (end - range_seconds) // step * step, end // step * step
    return {
        (key(s.labels), int(t)): v
        for s in api.query_range(query, first, last, step)
        for t, v in s.points
    }


def run(
    api: PrometheusAPI, catalogue: Catalogue, case: Window, panel_key: str, ref_id: str
) -> dict[Any, float]:
    """Panel `panel_key`'s target `ref_id` over `case` (step 15 s, or 1 h for hourly bars)."""
    target = catalogue.panel(panel_key).target(ref_id)
    return run_expr(
        api,
        catalogue,
        target.expr,
        instant=target.instant,
        selection=case.selection,
        range_seconds=case.length,
        end=case.end,
        step=HOUR if target.min_step == "1h" else STEP,
    )


# --- the truth and the comparison --------------------------------------------------------------


class RangeTruth(ABC):
    """What the panels must show over a case's range, from a history's events: the tests' `Case`s.

    A range query has a point every `step`, aligned as Grafana aligns them;
    with recording rules a window's edges snap to the rules' one-minute grid,
    which starts `rule_offset` seconds after the history's start. A subclass
    says which events its selection keeps (`window_totals`); the sums,
    ratios, rates and hourly bars follow from it here.
    """

    rule_offset: ClassVar[int] = RULE_OFFSET
    history: History
    end: int
    length: int
    rules: bool

    def steps(self, step: int) -> list[int]:
        first = (self.end - self.length) // step * step
        return list(range(first, self.end // step * step + 1, step))

    def edges(self, after: int, until: int) -> tuple[int, int]:
        """The window a query over (after, until] really covers (the rules' grid, if any)."""
        if not self.rules:
            return after, until
        first_eval = self.history.start + self.rule_offset
        first = first_eval + max(0, -(-(after - first_eval) // INTERVAL_SECONDS)) * INTERVAL_SECONDS
        last = first_eval + (until - first_eval) // INTERVAL_SECONDS * INTERVAL_SECONDS
        return first - INTERVAL_SECONDS, max(last, first - INTERVAL_SECONDS)

    def limit_window(self, seconds: int) -> tuple[int, int]:
        """The window the quota panel reads for a limit of `seconds`: the last `seconds`, or with
        rules (whole minutes) the minute samples stamped in (end - seconds, end], which end at
        the rules' latest evaluation."""
        if not (self.rules and seconds % INTERVAL_SECONDS == 0):
            return self.end - seconds, self.end
        first_eval = self.history.start + self.rule_offset
        last = first_eval + (self.end - first_eval) // INTERVAL_SECONDS * INTERVAL_SECONDS
        return last - seconds, last

    def step_windows(self, step: int, length: int, *, rate: bool) -> list[tuple[int, int]]:
        """The window of each step's point: `length` back from it, or for a rule-series rate
        the minute before the rule's latest sample."""
        if self.rules and rate:
            last = [self.edges(t - INTERVAL_SECONDS, t)[1] for t in self.steps(step)]
            return [(s - INTERVAL_SECONDS, s) for s in last]
        return [self.edges(t - length, t) for t in self.steps(step)]

    def hour_windows(self) -> tuple[list[int], list[tuple[int, int]]]:
        """The clock hours of the range (at their start) and what each hour's bar counts:
        (max(hour, range start), min(hour end, range end)]."""
        after = self.end - self.length
        hours = self.steps(HOUR)
        return hours, [self.edges(max(h, after), min(h + HOUR, self.end)) for h in hours]

    @abstractmethod
    def window_totals(
        self, metric: str, windows: list[tuple[int, int]], by: tuple[str, ...], tokens_only: bool
    ) -> list[dict[Labels, float]]:
        """The selection's events of `metric` in each window, summed by `by` (`tokens_only`:
        not the request policy's namespace)."""

    def totals(self, metric: str, by: tuple[str, ...], *, tokens_only: bool) -> dict[Labels, float]:
        window = self.edges(self.end - self.length, self.end)
        return self.window_totals(metric, [window], by, tokens_only)[0]

    def hits(self, by: tuple[str, ...]) -> dict[Labels, float]:
        return self.totals(HITS, by, tokens_only=True)

    def success(self, by: tuple[str, ...]) -> dict[Labels, float]:
        return ratio(
            self.totals(CALLS, by, tokens_only=False), self.totals(LIMITED, by, tokens_only=False)
        )

    def active(self, by: tuple[str, ...]) -> set[Labels]:
        """Keys with at least one allowed or limited call (users who were only limited too)."""
        calls = self.totals(CALLS, by, tokens_only=False)
        limited = self.totals(LIMITED, by, tokens_only=False)
        return {k for k in {*calls, *limited} if calls.get(k, 0) + limited.get(k, 0) > 0}

    def hourly(
        self, metric: str, by: tuple[str, ...], *, tokens_only: bool = True
    ) -> dict[tuple[Labels, int], float]:
        """Per clock hour, at its start (`hour_windows`)."""
        hours, windows = self.hour_windows()
        per_hour = self.window_totals(metric, windows, by, tokens_only)
        return {
            (k, h): v for h, totals in zip(hours, per_hour, strict=True) for k, v in totals.items()
        }

    def rates(
        self, metric: str, by: tuple[str, ...], *, tokens_only: bool
    ) -> dict[tuple[Labels, int], float]:
        """Per second at every step: over $__rate_interval, or a rule series' last minute."""
        seconds = INTERVAL_SECONDS if self.rules else RATE_INTERVAL
        windows = self.step_windows(STEP, RATE_INTERVAL, rate=True)
        per_step = self.window_totals(metric, windows, by, tokens_only)
        return {
            (k, t): v / seconds
            for t, totals in zip(self.steps(STEP), per_step, strict=True)
            for k, v in totals.items()
        }


@dataclass(frozen=True)
class Expect:
    """What a target must return: exact values, the top k of these values, or a ratio (zeros kept)."""

    values: dict[Any, float]
    top: int | None = None
    keep_zeros: bool = False


def ratio(allowed: Mapping[Any, float], limited: Mapping[Any, float]) -> dict[Any, float]:
    """allowed / (allowed + limited) per key, for the keys with at least one check."""
    out = {}
    for key in {*allowed, *limited}:
        a, lim = allowed.get(key, 0.0), limited.get(key, 0.0)
        if a + lim > 0:
            out[key] = a / (a + lim)
    return out


def count_by(keys: set[Labels], label: str | None) -> dict[Labels, float]:
    """How many of `keys` share each value of `label` (all of them under `()` for None)."""
    out: dict[Labels, float] = defaultdict(float)
    for key in keys:
        out[tuple((k, v) for k, v in key if k == label)] += 1
    return dict(out)


def check(actual: dict[Any, float], expected: Expect) -> None:
    """Exactly the truth (to rounding): every row, or the top k rows' values."""

    def clean(values: dict[Any, float]) -> dict[Any, float]:
        return values if expected.keep_zeros else {k: v for k, v in values.items() if v != 0}

    got, want = clean(actual), clean(expected.values)
    if expected.top is None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        return
    assert len(actual) <= expected.top
    best = sorted(want.values(), reverse=True)[: expected.top]
    assert sorted(got.values(), reverse=True) == pytest.approx(best, rel=1e-9, abs=1e-12)
    for key, value in got.items():
        assert value == pytest.approx(want[key], rel=1e-9, abs=1e-12)


OTHERS_LABELS = (("maas_others", "true"), ("user", "others"))


def _labels_and_time(key: Any) -> tuple[Any, tuple[int, ...]]:
    """Range-query keys are (labels, time); instant-query keys are the labels alone."""
    if len(key) == 2 and isinstance(key[1], int) and isinstance(key[0], tuple):
        return key[0], (key[1],)
    return key, ()


def fold_others(actual: dict[Any, float], want: dict[Any, float]) -> dict[Any, float]:
    """A top-N panel sums the users it does not list into one "others" row: fold the truth alike.

    Which users the panel lists is its `$top_users` variable's business (tested on its own);
    what this checks is that every user's count lands in exactly one row.
    """
    shown = {dict(_labels_and_time(k)[0]).get("user") for k in actual}
    if "others" not in shown:
        return want
    folded: dict[Any, float] = {}
    for key, value in want.items():
        labels, at = _labels_and_time(key)
        if dict(labels).get("user") not in shown:
            key = (OTHERS_LABELS, *at) if at else OTHERS_LABELS
        folded[key] = folded.get(key, 0.0) + value
    return folded


def check_close(
    actual: dict[Any, float], expected: Expect, tolerance: Callable[[float], float]
) -> None:
    """Within `tolerance(truth)` of the truth, "others" folded; for a top k, rank by rank too."""
    want = fold_others(actual, expected.values)
    if expected.top is not None:
        assert len(actual) <= expected.top
        ranked = sorted(want.values(), reverse=True)[: expected.top]
        got = sorted(actual.values(), reverse=True)
        got += [0.0] * (len(ranked) - len(got))  # rows at 0 may or may not be listed
        for g, w in zip(got, ranked, strict=False):
            assert abs(g - w) <= tolerance(w), (g, w)
        for key, value in actual.items():
            w = want.get(key, 0.0)
            assert abs(value - w) <= tolerance(w), (key, value, w)
        return
    for key in {*actual, *want}:
        g, w = actual.get(key, 0.0), want.get(key, 0.0)
        assert abs(g - w) <= tolerance(w), (key, g, w)
