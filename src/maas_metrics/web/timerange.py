"""The dashboard's time ranges: relative (`now-1h`) as Grafana's picker offers them, and absolute."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: The choices of the time-range filter: Grafana's relative ranges, value -> label.
RANGES: dict[str, str] = {
    "now-5m": "Last 5 minutes",
    "now-15m": "Last 15 minutes",
    "now-30m": "Last 30 minutes",
    "now-1h": "Last 1 hour",
    "now-3h": "Last 3 hours",
    "now-6h": "Last 6 hours",
    "now-12h": "Last 12 hours",
    "now-24h": "Last 24 hours",
    "now-2d": "Last 2 days",
    "now-7d": "Last 7 days",
}


def range_seconds(relative: str) -> int:
    """`now-1h` -> 3600; raises ValueError naming the text for anything else."""
    match = re.fullmatch(r"now-(\d+)([smhdw])", relative.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"unsupported time range {relative!r} (expected e.g. now-1h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def range_options(default: str) -> dict[str, str]:
    """The picker's choices, with the config's default range added when it is not a standard one."""
    options = dict(RANGES)
    if default not in options:
        range_seconds(default)  # validate
        options = {default: f"Last {default.removeprefix('now-')}", **options}
    return options


# --- absolute ranges and Grafana's `from` / `to` ---------------------------------------------

_ABSOLUTE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


def parse_time(text: str, now: float, field: str) -> float:
    """A `from` / `to` text as epoch seconds: `now`, `now-6h`, epoch milliseconds (Grafana's URLs),
    or a UTC date and time (`2025-06-01 08:00`). Raises ValueError naming `field`."""
    value = text.strip()
    if value == "now":
        return now
    if value.startswith("now-"):
        try:
            return now - range_seconds(value)
        except ValueError:
            raise ValueError(f"{field}: {text!r} is not a time (e.g. now-6h)") from None
    if value.isdigit() and len(value) >= 10:
        return int(value) / 1000
    for pattern in _ABSOLUTE_FORMATS:
        try:
            parsed = datetime.strptime(value.removesuffix("Z"), pattern)
        except ValueError:
            continue
        return parsed.replace(tzinfo=UTC).timestamp()
    raise ValueError(f"{field}: {text!r} is not a time (now, now-6h or 2025-06-01 08:00 UTC)")


def resolve_range(start: str, end: str, now: float) -> tuple[float, float]:
    """(start, end) in epoch seconds, whole seconds; ValueError naming the field when invalid."""
    first = float(math.floor(parse_time(start, now, "From")))
    last = float(math.floor(parse_time(end, now, "To")))
    if last > now:
        last = float(math.floor(now))
    if first >= last:
        raise ValueError("From: must be before To (and not in the future)")
    return first, last


def absolute_text(timestamp: float) -> str:
    """The UTC text of an absolute time as the range fields show it (`parse_time` reads it back)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
