"""The dashboard's relative time ranges (`now-1h`), as Grafana's time picker offers them."""

from __future__ import annotations

import re

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
