"""Building PromQL text safely (shared by the dashboard, the rules and the report): every value from a config or a command line goes through here.

Label values are written as PromQL string literals with every character that
could end the string escaped, so no tier name, user name or filter value can
change the structure of a query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string_literal(value: str) -> str:
    """`value` as a double-quoted PromQL string literal (Go string syntax)."""
    out: list[str] = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def regex_alternation(values: Iterable[str]) -> str:
    """An RE2 regex matching exactly one of `values` (Prometheus anchors label regexes)."""
    return "|".join(re.escape(v) for v in values)


def matcher(label: str, values: Sequence[str]) -> str:
    """`label="v"` for one value, `label=~"v1|v2"` for several (each matched literally)."""
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
        raise ValueError(f"not a Prometheus label name: {label!r}")
    if not values:
        raise ValueError(f"no values for label {label!r}")
    if len(values) == 1:
        return f"{label}={string_literal(values[0])}"
    return f"{label}=~{string_literal(regex_alternation(sorted(set(values))))}"


def selector(metric: str, matchers: Iterable[str]) -> str:
    """`metric{m1,m2}` (or the bare metric name without matchers)."""
    inner = ",".join(matchers)
    return f"{metric}{{{inner}}}" if inner else metric


def duration(seconds: float) -> str:
    """A PromQL duration for a whole number of milliseconds, e.g. 90 -> `90s`, 0.5 -> `500ms`."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"duration must be positive, got {seconds}")
    if millis % 1000:
        return f"{millis}ms"
    return f"{millis // 1000}s"


def preferred(
    names: Sequence[str], key: Sequence[str], read: Callable[[str], str], by: Sequence[str]
) -> str:
    """`sum by (by) (read(name))`, the counter read under each of its `names` (preferred first).

    One name: just that. Several (`contract.Schema.names_of` with `auto`): each
    is first summed by `key`, the counter's own labels (so the scrape path's
    `job`/`instance` labels go), the parts are joined with `or`, which keeps a
    series's preferred name and falls back to the other name only for series
    that do not have it, then summed by `by`. So the two names of one series
    never add up, and a series under one name only still counts. A selector
    `{__name__=~"a(_total)?"}` would add both up (and `increase()` on both fails
    as soon as they share a label set).
    """

    def total(labels: Sequence[str]) -> str:
        return f"sum by ({', '.join(labels)})" if labels else "sum"

    if len(names) == 1:
        return f"{total(by)} ({read(names[0])})"
    parts = " or ".join(f"{total(key)} ({read(name)})" for name in names)
    return f"{total(by)} ({parts})"


# --- counting: the one technique for "how much did a counter grow in a window" ------------------


def increase_exact(series: str, window: str) -> str:
    """Per series, how much the counter `series` grew in the `window` ending at the evaluation time.

    Why not plain `increase()`: a real Limitador creates a series lazily with its
    first value (`limited_calls` born at 1, `authorized_hits` at 120) and
    re-creates it at the next hit after a restart. `increase()` / `rate()` only
    add up differences between samples inside the window, so the first value of
    a series born inside it is lost (a single-sample series is invisible), and
    they extrapolate to the window's edges, so a short window over few samples
    (a recording rule's minute over 30 s scrapes) is off by up to x2.

    The cases, each series in exactly one (`or` keeps the first match):

    0. one reset inside the window (a restart; `resets() == 1`) and the last
       value below the window's peak (the counter restarted low, as a
       restarted Limitador does): the peak before the restart minus the start
       value (0 for a series born in the window), plus the last value; exact;
    1. any other reset inside the window (several restarts, or a counter
       that outgrew its old peak): `increase()`, which handles any number of
       resets; only here does Prometheus' extrapolation remain;
    2. the series had a value at the window's start (`offset`, the last sample
       up to it, within the 5 min lookback) that is not above its last value:
       last - start, exact, and consecutive windows tile exactly (each counts
       the samples in (start, end]);
    3. otherwise the series was born inside the window (a new series, or one
       re-created after a restart: stale at the start, or restarted across it):
       it grew from 0, so its last value is its increase, exact; this is the
       case that counts a single sample.

    Alternatives weighed: `increase() + (x unless x offset W)` adds the current,
    not the first, value; `min_over_time` as the first value is wrong once a
    restart drops the counter below it; a zero-filled subquery (`(x or 0 *
    last_over_time(x[W] @ end()))[W:step]`) is exact on its grid but keeps
    series x steps points in memory (Prometheus refuses it at 10k users x 24 h)
    and misses anything after its last grid point.
    """
    window_of = f"{series}[{window}]"
    return growth(window_of, f"{series} offset {window}", f"last_over_time({window_of})")


def growth(window_of: str, start: str, end: str, outside: str | None = None) -> str:
    """`increase_exact` with its parts given: the window's range selector, start and end values.

    For windows that `[W]` alone cannot express, e.g. a clock hour clipped to
    a dashboard's range: `start` may read `x @ <from>`, `end` `last_over_time(x[1h] @ <to>)`.
    `outside`: the growth inside `window_of` but outside the wanted window, taken off the
    `increase()` fallback (where it can be read).
    """
    fallback = f"increase({window_of})"
    if outside is not None:
        fallback = f"(({fallback} - ({outside})) or {fallback})"
    peak = f"max_over_time({window_of})"
    one_reset = f"resets({window_of}) == 1"
    return (
        f"((({peak} - {start} + {end}) or ({peak} + {end})) and {one_reset} and ({end} < {peak}))"
        f" or ({fallback} and resets({window_of}) > 0)"
        f" or (({end} - {start}) >= 0)"
        f" or {end}"
    )
