"""The web dashboard's data layer: the catalogue's queries, expanded as Grafana does, run on Prometheus.

No query is written here: each panel target of `build_catalogue(config)` is
expanded with `dashboard.variables.expand` for the chosen filters and range
(so Prometheus gets the text Grafana would send) and evaluated as Grafana
evaluates it: instant targets at the end of the range, range targets over
it with Grafana's step. One difference on purpose: Grafana rounds a range
query's start and end down to multiples of the step; here the points are
anchored at the evaluation time instead (`end`, `end - step`, ... within the
range), so the newest point always covers the latest data. Targets that read
the range's edges (`$__from` / `$__to`, the hourly bars: one bar per clock hour,
standing at its start) are aligned as Grafana aligns them, so both show the same bars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

from maas_metrics.dashboard.model import Catalogue, Panel, Target
from maas_metrics.dashboard.variables import (
    Selection,
    expand,
    grafana_interval,
    rate_interval,
    top_values,
    variable_names,
)
from maas_metrics.durations import parse_duration
from maas_metrics.prometheus import PrometheusError, Sample, Series

#: Grafana's default for a panel's max data points when the JSON does not set one.
MAX_DATA_POINTS = 1000


class QueryAPI(Protocol):
    """What the data layer needs of Prometheus: `PrometheusAPI`, or `SharedQueries` in front of it."""

    url: str

    def query(self, expr: str, time: float | None = None) -> list[Sample]: ...

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]: ...

    def label_values(self, label: str, match: list[str] | None = None) -> list[str]: ...


def duration_seconds(text: str) -> float:
    """A Prometheus / Grafana duration (`1h`, `30s`, `1h30m`) in seconds (durations.py parses)."""
    return parse_duration(text)


@dataclass(frozen=True, slots=True)
class Window:
    """What Grafana calls the query options: range, its end, and the datasource's scrape interval."""

    end: float
    range_seconds: float
    scrape_interval_seconds: float = 15
    max_data_points: int = MAX_DATA_POINTS

    @property
    def start(self) -> float:
        return self.end - self.range_seconds

    def range_start(self, step: float) -> float:
        """The first point of a range query: whole steps back from `end`, within the range."""
        return self.end - math.floor(self.range_seconds / step) * step

    def interval(self, target: Target) -> float:
        """`$__interval` and the step of a range query (the Min step, else the scrape interval)."""
        minimum = (
            duration_seconds(target.min_step) if target.min_step else self.scrape_interval_seconds
        )
        return grafana_interval(
            self.range_seconds, max_data_points=self.max_data_points, min_interval_seconds=minimum
        )

    def rate_interval(self, target: Target) -> float:
        return rate_interval(self.interval(target), self.scrape_interval_seconds)


@dataclass(frozen=True, slots=True)
class TargetData:
    """One target's expanded query and result: `samples` (instant) or `series` (range)."""

    target: Target
    expr: str
    samples: tuple[Sample, ...] = ()
    series: tuple[Series, ...] = ()
    step: float = 0.0

    @property
    def has_data(self) -> bool:
        return bool(self.samples) or any(s.points for s in self.series)


@dataclass(frozen=True, slots=True)
class PanelData:
    panel: Panel
    targets: tuple[TargetData, ...]
    error: str | None = None

    @property
    def has_data(self) -> bool:
        return self.error is None and any(t.has_data for t in self.targets)

    def target(self, ref_id: str) -> TargetData:
        for data in self.targets:
            if data.target.ref_id == ref_id:
                return data
        raise KeyError(ref_id)


class DashboardData:
    """Runs a catalogue's panels against one Prometheus for a selection and window."""

    def __init__(self, catalogue: Catalogue, api: QueryAPI, workers: int = 4) -> None:
        self.catalogue = catalogue
        self.api = api
        self.workers = workers

    def expand(
        self,
        target: Target,
        selection: Selection,
        window: Window,
        options: Mapping[str, Sequence[str]] | None = None,
    ) -> str:
        return expand(
            target.expr,
            selection,
            window.range_seconds,
            window.rate_interval(target),
            variables=self.catalogue.variables,
            interval_seconds=window.interval(target),
            options=options,
            range_end=window.end,
        )

    def top_options(
        self, selection: Selection, window: Window, panels: Sequence[Panel] | None = None
    ) -> dict[str, list[str]]:
        """The values of the hidden `top` variables (e.g. the table's users), resolved as Grafana does.

        Grafana runs a `query_result(...)` variable as an instant query at the
        end of the range whenever the range changes, and offers the label values
        it returns; panels then see them as a multi-value selection.
        `panels`: resolve only the variables these panels use (default: all).
        """
        used = None
        if panels is not None:
            used = set().union(*(variable_names(t.expr) for p in panels for t in p.targets))
        resolved: dict[str, list[str]] = {}
        for variable in self.catalogue.variables:
            if variable.kind != "top" or (used is not None and variable.name not in used):
                continue
            expr = expand(
                variable.top_expr,
                selection,
                window.range_seconds,
                rate_interval(
                    grafana_interval(window.range_seconds), window.scrape_interval_seconds
                ),
                variables=self.catalogue.variables,
                range_end=window.end,
            )
            samples = self.api.query(expr, time=window.end)
            resolved[variable.name] = top_values(variable, (s.labels for s in samples))
        return resolved

    def run_target(
        self,
        target: Target,
        selection: Selection,
        window: Window,
        options: Mapping[str, Sequence[str]] | None = None,
    ) -> TargetData:
        expr = self.expand(target, selection, window, options)
        if target.instant:
            return TargetData(target, expr, samples=tuple(self.api.query(expr, time=window.end)))
        step = window.interval(target)
        start, end = window.range_start(step), window.end
        if variable_names(target.expr) & {"__from", "__to"}:
            start, end = window.start // step * step, window.end // step * step
        series = self.api.query_range(expr, start, end, step)
        return TargetData(target, expr, series=tuple(series), step=step)

    def panel(
        self,
        panel: Panel,
        selection: Selection,
        window: Window,
        options: Mapping[str, Sequence[str]] | None = None,
    ) -> PanelData:
        """One panel's data; a query Prometheus refuses becomes the panel's error message.

        `options`: resolved `top` variables (`top_options`); resolved here when not given.
        """
        if panel.max_data_points is not None:  # the panel's own cap, as Grafana applies it
            window = replace(window, max_data_points=panel.max_data_points)
        try:
            if options is None:
                options = self.top_options(selection, window, (panel,))
            targets = tuple(self.run_target(t, selection, window, options) for t in panel.targets)
        except PrometheusError as error:
            return PanelData(panel, (), error=str(error))
        return PanelData(panel, targets)

    def panels(
        self, selection: Selection, window: Window, panels: Sequence[Panel] | None = None
    ) -> list[PanelData]:
        """Every panel (in catalogue order), queried a few at a time."""
        chosen = list(self.catalogue.panels if panels is None else panels)
        try:
            options = self.top_options(selection, window)
        except PrometheusError as error:
            return [PanelData(p, (), error=str(error)) for p in chosen]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda p: self.panel(p, selection, window, options), chosen))

    def options(self, variable_name: str, selection: Selection, window: Window) -> list[str]:
        """The values a filter offers (Grafana's `label_values(match, label)`), narrowed by the others."""
        variable = self.catalogue.variable(variable_name)
        match = expand(
            variable.match,
            selection,
            window.range_seconds,
            rate_interval(grafana_interval(window.range_seconds), window.scrape_interval_seconds),
            variables=self.catalogue.variables,
        )
        return self.api.label_values(variable.label_name, match=[match])


def now() -> float:
    """The evaluation time of a refresh: whole seconds, like Grafana's `now`."""
    return float(math.floor(time.time()))
