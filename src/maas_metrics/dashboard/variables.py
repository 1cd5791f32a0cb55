"""Interpolate dashboard variables into PromQL exactly as Grafana does.

The web dashboard, the report and the tests run the catalogue's queries
through `expand`, so they send Prometheus byte-for-byte what Grafana sends:

* a multi-value / include-All variable: each value regex-escaped
  (Grafana's `prometheusSpecialRegexEscape`, with the
  `prometheusSpecialCharsInLabelValues` behaviour that also escapes double
  quotes), one value as is, several as `(a|b)`; "All" becomes the
  variable's `allValue` unescaped (`.*` here);
* a constant (neither multi nor include-All): only backslashes and double
  quotes escaped (`prometheusRegularEscape`);
* `$__range` -> whole seconds + `s` (e.g. `3600s`); `$__rate_interval` ->
  Go's `time.Duration` text of max(interval + scrape interval, 4 x scrape
  interval) (e.g. `1m0s`); `$__interval` -> Grafana's `FormatInterval` (`15s`, `1m`);
* `${__from:date:seconds}` / `${__to:date:seconds}` -> the range's start / end
  in whole unix seconds (`$__from` / `$__to`: milliseconds), given `range_end`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from maas_metrics.dashboard.model import Variable

ALL_TEXT = "All"
ALL_VALUE = ".*"


class _All:
    """The "All" choice of a multi-select variable (a singleton, `ALL`)."""

    _instance: _All | None = None

    def __new__(cls) -> _All:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL"


ALL = _All()

Choice = _All | tuple[str, ...]

FILTER_VARIABLES = ("namespace", "tier", "user", "model")
"""The seed schema's filters; another schema adds its own (`subscription`, `cost_center`, ...)."""


def _choice(value: _All | Iterable[str]) -> Choice:
    if isinstance(value, _All):
        return value
    if isinstance(value, str):
        return (value,)
    values = tuple(value)
    if not values:
        raise ValueError("a variable needs at least one value (or ALL)")
    return values


@dataclass(frozen=True, slots=True, init=False)
class Selection:
    """The values chosen for the filter variables: `ALL` or one or more values each.

    The seed's four filters are fields; any other filter variable of the
    catalogue (the billing dimension `subscription`, attribution labels such
    as `cost_center`) is a keyword argument. A filter not given is All.
    """

    namespace: Choice
    tier: Choice
    user: Choice
    model: Choice
    others: tuple[tuple[str, Choice], ...]

    def __init__(
        self,
        namespace: _All | Iterable[str] = ALL,
        tier: _All | Iterable[str] = ALL,
        user: _All | Iterable[str] = ALL,
        model: _All | Iterable[str] = ALL,
        **others: _All | Iterable[str],
    ) -> None:
        object.__setattr__(self, "namespace", _choice(namespace))
        object.__setattr__(self, "tier", _choice(tier))
        object.__setattr__(self, "user", _choice(user))
        object.__setattr__(self, "model", _choice(model))
        chosen = ((k, _choice(v)) for k, v in others.items())
        # All is the default: leaving it out keeps equal selections equal.
        object.__setattr__(
            self, "others", tuple(sorted((k, c) for k, c in chosen if not isinstance(c, _All)))
        )

    def choice(self, name: str) -> Choice:
        if name in FILTER_VARIABLES:
            value: Choice = getattr(self, name)
            return value
        return dict(self.others).get(name, ALL)


def regular_escape(value: str) -> str:
    """Grafana's `prometheusRegularEscape` (special-chars mode): escape `\\` and `"`."""
    if re.fullmatch(r'\w+(=|!=|=~|!~)".*"', value):
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"')


_REGEX_META = re.compile(r"[$^*{}\[\]'+?.()|]")


def regex_escape(value: str) -> str:
    """Grafana's `prometheusSpecialRegexEscape` (special-chars mode).

    The result sits inside a PromQL double-quoted string, so a regex `\\.`
    is written `\\\\.`; Prometheus then matches the value literally.
    """
    value = value.replace("\\", "\\\\\\\\").replace('"', '\\\\\\"')
    return _REGEX_META.sub(lambda m: "\\\\" + m.group(0), value)


def _regex_alternatives(values: Sequence[str]) -> str:
    """Grafana's regex form of several values: `(a|b)`, one value bare, `()` for none."""
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(
    variable: Variable, choice: Choice | None, options: Sequence[str] | None = None
) -> str:
    """The text Grafana puts in place of `$variable` for this choice (None: its default).

    A `top` variable has every option selected ("All" without an allValue):
    Grafana joins the escaped options, `(a|b)`; `()` when there are none.
    Without `options` it matches every value (`.*`), i.e. no top-N limit.
    """
    if variable.kind == "constant":
        return regular_escape(variable.value)
    if variable.kind == "top":
        if options is None:
            return ALL_VALUE
        return _regex_alternatives(options)
    if variable.kind == "datasource":
        raise ValueError(f"${variable.name} selects a datasource and cannot appear in a query")
    if choice is None or isinstance(choice, _All):
        if not variable.include_all:
            raise ValueError(f"${variable.name} has no All option: choose values")
        if variable.all_value is None:
            # Grafana's All without an allValue: every option, joined like a multi-selection.
            if options is None:
                raise ValueError(f"${variable.name}: All without an allValue needs the option list")
            return _regex_alternatives(options)
        return variable.all_value
    if not variable.multi and not variable.include_all:
        if len(choice) != 1:
            raise ValueError(f"${variable.name} takes one value")
        return regular_escape(choice[0])
    return _regex_alternatives(choice)


def go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` for a non-negative duration (`1m0s`, `15s`, `1h0m0s`)."""
    if seconds < 0:
        raise ValueError("durations must not be negative")
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    sec_text = f"{secs}.{millis:03d}".rstrip("0") + "s" if millis else f"{secs}s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


def format_interval(seconds: float) -> str:
    """Grafana's `gtime.FormatInterval` (the text of `$__interval`): largest whole unit."""
    ms = int(seconds * 1000)
    for unit, size in (
        ("y", 31_536_000_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms >= 1 else "1ms"


_ROUND_STEPS_MS = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10000),
    (17500, 15000),
    (25000, 20000),
    (45000, 30000),
    (90000, 60000),
    (210000, 120000),
    (450000, 300000),
    (750000, 600000),
    (1050000, 900000),
    (1500000, 1200000),
    (2700000, 1800000),
    (5400000, 3600000),
    (9000000, 7200000),
    (16200000, 10800000),
    (32400000, 21600000),
    (86400000, 43200000),
    (604800000, 86400000),
    (1814400000, 604800000),
    (3628800000, 2592000000),
)


def round_interval_ms(interval_ms: float) -> int:
    """Grafana's `roundInterval`: snap a raw interval to a "nice" one."""
    for below, nice in _ROUND_STEPS_MS:
        if interval_ms < below:
            return nice
    return 31_536_000_000


def grafana_interval(
    range_seconds: float,
    *,
    max_data_points: int = 1000,
    min_interval_seconds: float = 15,
) -> float:
    """The `$__interval` (and query step) Grafana picks for a panel, in seconds.

    `min_interval_seconds` is the query's Min step or else the datasource's
    scrape interval (15 s by default); Prometheus' limit of 11,000 points
    per series raises it for very long ranges.
    """
    interval = round_interval_ms(range_seconds * 1000 / max_data_points) / 1000
    interval = max(interval, min_interval_seconds)
    return max(interval, math.ceil(range_seconds / 11000))


def rate_interval(interval_seconds: float, scrape_interval_seconds: float = 15) -> float:
    """`$__rate_interval`: max(`$__interval` + scrape interval, 4 x scrape interval)."""
    return max(interval_seconds + scrape_interval_seconds, 4 * scrape_interval_seconds)


_VARIABLE_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)


def expand(
    expr: str,
    selection: Selection,
    range_seconds: float,
    rate_interval_seconds: float,
    *,
    variables: Sequence[Variable],
    interval_seconds: float | None = None,
    options: Mapping[str, Sequence[str]] | None = None,
    range_end: float | None = None,
) -> str:
    """`expr` with every variable replaced as Grafana replaces it for this selection and range.

    `variables` are the catalogue's (`Catalogue.variables`): they say which
    are constants and what "All" means. `interval_seconds` (`$__interval`)
    defaults to what Grafana would compute for the range. `options` holds
    the values of `top` variables (see `top_values`); a `top` variable
    missing from it matches everything (the query then lists every row).
    `range_end` (unix seconds) is needed by `$__from` / `$__to`.
    """
    by_name = {v.name: v for v in variables}
    if interval_seconds is None:
        interval_seconds = grafana_interval(range_seconds)
    builtins = {
        "__range": f"{round(range_seconds)}s",
        "__range_s": str(round(range_seconds)),
        "__range_ms": str(round(range_seconds * 1000)),
        "__rate_interval": go_duration(rate_interval_seconds),
        "__rate_interval_ms": str(round(rate_interval_seconds * 1000)),
        "__interval": format_interval(interval_seconds),
        "__interval_ms": str(round(interval_seconds * 1000)),
    }

    edges = {}
    if range_end is not None:
        edges = {"__from": range_end - range_seconds, "__to": range_end}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if name in ("__from", "__to"):
            if name not in edges:
                raise ValueError(f"${name} needs the range's end time")
            if match.group(6) == "date:seconds":
                return str(int(edges[name]))
            if match.group(0) in (f"${name}", f"${{{name}}}"):
                return str(round(edges[name] * 1000))
        if match.group(3) or match.group(5) or match.group(6):
            raise ValueError(f"unsupported variable syntax {match.group(0)!r}")
        if name in builtins:
            return builtins[name]
        if name not in by_name:
            raise ValueError(f"unknown variable ${name} in query")
        variable = by_name[name]
        choice = selection.choice(name) if variable.kind == "query" else None
        return interpolate(variable, choice, (options or {}).get(name))

    return _VARIABLE_RE.sub(replace, expr)


def variable_names(expr: str) -> set[str]:
    """The names of the variables an expression uses (`$x`, `${x}`, `[[x]]`), builtins included."""
    return {m.group(1) or m.group(2) or m.group(4) for m in _VARIABLE_RE.finditer(expr)}


def top_values(variable: Variable, results: Iterable[Mapping[str, str]]) -> list[str]:
    """The options of a `top` variable from the label sets its `top_expr` returned (sorted, unique).

    Run `expand(variable.top_expr, ...)` as an instant query at the end of
    the range, pass the samples' labels here, then the list to `expand` as
    `options={variable.name: values}`.
    """
    return sorted(
        {labels[variable.label_name] for labels in results if variable.label_name in labels}
    )
