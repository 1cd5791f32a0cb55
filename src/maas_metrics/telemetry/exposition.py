"""Prometheus text exposition exactly as Limitador writes it.

prometheus_client always renames counters to `<name>_total` on their TYPE
line, which would break Limitador compatibility, so families are rendered
here. Label strings are escaped once, when a series is created, which keeps
rendering of 100k series cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricFamily(Protocol):
    """What `render` reads: a `Family` (counter, gauge) or a `Histogram`.

    `samples()` yields (text after the family name, value): `{labels}` for a
    counter or gauge, `_bucket{...}`, `_sum...` and `_count...` for a histogram.
    """

    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def samples(self) -> Iterable[tuple[str, float]]: ...


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`{a="x",b="y"}` with labels sorted by name, as Limitador orders them; empty for no labels."""
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{n}="{escape_label_value(v)}"' for n, v in pairs) + "}"


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families: Iterable[MetricFamily]) -> bytes:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}\n")
        lines.append(f"# TYPE {family.name} {family.kind}\n")
        name = family.name
        for text, value in family.samples():
            lines.append(f"{name}{text} {format_value(value)}\n")
    return "".join(lines).encode("utf-8")
