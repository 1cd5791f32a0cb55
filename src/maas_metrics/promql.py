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
