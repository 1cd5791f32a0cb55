"""Reading the report's time range from the command line: ISO times, `now-24h`, `--period 2026-11`.

All times are UTC. A date alone means 00:00 UTC of that day; a time without
an offset is UTC. The range is (start, end]: an increment counted at `end`
belongs to this report, one counted at `start` to the previous one, so
consecutive reports never count anything twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from maas_metrics import durations

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"^now(?:\s*-\s*(\d+)\s*(s|m|h|d|w))?$")


class TimeInputError(ValueError):
    """A time, period or duration that cannot be read; `str()` is one line."""


def parse_duration(text: str, what: str) -> float:
    """`15s`, `5m`, `1h`, `1d`, `2w`, `1h30m` -> seconds (the codebase's one parser, durations.py)."""
    try:
        return durations.parse_duration(text.strip(), units=tuple(UNITS))
    except durations.DurationError:
        raise TimeInputError(f"{what} {text!r} is not a duration like 15s, 5m, 1h or 1d") from None


def parse_time(text: str, what: str, now: datetime) -> datetime:
    """`2026-11-01`, `2026-11-01T12:00`, `2026-11-01T12:00:00+02:00`, `now`, `now-24h`, `now-7d`."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative is not None:
        if relative.group(1) is None:
            return now
        return now - timedelta(seconds=int(relative.group(1)) * UNITS[relative.group(2)])
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimeInputError(
            f"{what} {text!r} is not a time: use an ISO date or time (2026-11-01, "
            "2026-11-01T12:00Z) or now / now-24h / now-7d"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_period(text: str) -> tuple[datetime, datetime]:
    """`2026-11` -> the calendar month in UTC; `2026-11-05` -> that day."""
    value = text.strip()
    month = re.fullmatch(r"(\d{4})-(\d{2})", value)
    try:
        if month is not None:
            start = datetime(int(month.group(1)), int(month.group(2)), 1, tzinfo=UTC)
            year, mon = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
            return start, datetime(year, mon, 1, tzinfo=UTC)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start, start + timedelta(days=1)
    except ValueError:
        pass
    raise TimeInputError(f"--period {text!r} is not a month (2026-11) or a day (2026-11-05)")


@dataclass(frozen=True, slots=True)
class TimeRange:
    """The report's (start, end] in UTC, on the query resolution's grid."""

    start: datetime
    end: datetime
    clipped: bool = False
    """True when the asked end lay in the future and the range stops at now."""

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _floor(moment: datetime, resolution: float) -> datetime:
    ts = moment.timestamp()
    return datetime.fromtimestamp(ts - ts % resolution, tz=UTC)


def resolve_range(
    *,
    start: str | None,
    end: str | None,
    period: str | None,
    resolution: float,
    now: datetime | None = None,
) -> TimeRange:
    """The range the options describe, snapped down to the resolution grid and clipped at now."""
    now = now or datetime.now(UTC)
    if period is not None:
        if start is not None or end is not None:
            raise TimeInputError("use either --period or --from/--to, not both")
        begin, finish = parse_period(period)
    else:
        if start is None:
            raise TimeInputError("give --from (and optionally --to), or --period")
        begin = parse_time(start, "--from", now)
        finish = parse_time(end, "--to", now) if end is not None else now
    clipped = finish > now
    if clipped:
        finish = now
    begin, finish = _floor(begin, resolution), _floor(finish, resolution)
    if finish <= begin:
        what = "now" if clipped else "--to"
        raise TimeInputError(
            f"the range is empty: {what} ({finish.isoformat()}) is not after the start "
            f"({begin.isoformat()})"
        )
    return TimeRange(begin, finish, clipped)
