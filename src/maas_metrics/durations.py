"""Durations written as text (`90s`, `1h30m`, `500ms`): one parser for the whole codebase.

The grammar is Go's and Prometheus's: one or more `<integer><unit>` groups.
`parse_duration` reads any such text; `kuadrant_window_seconds` additionally
applies the rule Kuadrant's RateLimitPolicy and TokenRateLimitPolicy CRDs
enforce on `rates[].window` (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`: no days, at
most five digits per group, at most four groups), so a config the operator
would reject is refused before any manifest is written.
"""

from __future__ import annotations

import re
from typing import Final

UNITS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}

_GROUP = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
KUADRANT_WINDOW: Final = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
"""The `rates[].window` pattern of Kuadrant's RateLimitPolicy and TokenRateLimitPolicy CRDs."""

#: The longest window the pattern can express: 99999h59m59s.
KUADRANT_MAX_WINDOW_SECONDS: Final = 99999 * 3600 + 59 * 60 + 59


class DurationError(ValueError):
    """A duration that cannot be read; `str()` is one line naming the text and the rule."""


def parse_duration(text: str, units: tuple[str, ...] = tuple(UNITS)) -> float:
    """`15s`, `1h30m`, `500ms`, `2w` -> seconds; only `units` are accepted."""
    groups = _GROUP.findall(text)
    if not groups or "".join(n + u for n, u in groups) != text:
        raise DurationError(f"{text!r} is not a duration like 15s, 2m or 1h30m")
    bad = sorted({u for _, u in groups if u not in units})
    if bad:
        raise DurationError(f"{text!r}: unit {bad[0]!r} not allowed here (use {', '.join(units)})")
    seconds = sum(int(n) * UNITS[u] for n, u in groups)
    if seconds <= 0:
        raise DurationError(f"{text!r} must be longer than zero")
    return seconds


def kuadrant_window_seconds(text: str) -> int:
    """A Kuadrant rate window in whole seconds, refusing what the Kuadrant CRDs refuse.

    Limitador counts windows in whole seconds, so a window that is not a whole
    number of seconds (`1500ms`) is refused too rather than silently truncated.
    """
    if not KUADRANT_WINDOW.match(text):
        raise DurationError(
            f"{text!r} is not a Kuadrant window: one to four groups of up to five digits "
            "and a unit h, m, s or ms (no days), e.g. 2m or 1h30m"
        )
    seconds = parse_duration(text, units=("h", "m", "s", "ms"))
    if seconds != int(seconds):
        raise DurationError(f"{text!r} is not a whole number of seconds (Limitador counts seconds)")
    return int(seconds)


def kuadrant_window(seconds: int) -> str:
    """Seconds -> a Kuadrant window, e.g. 120 -> `2m`, 90 -> `1m30s`, 86400 -> `24h`."""
    if seconds <= 0:
        raise DurationError(f"a window must be positive, got {seconds}s")
    if seconds > KUADRANT_MAX_WINDOW_SECONDS:
        raise DurationError(
            f"a window of {seconds}s is longer than Kuadrant accepts "
            f"(at most {KUADRANT_MAX_WINDOW_SECONDS}s = 99999h59m59s)"
        )
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
