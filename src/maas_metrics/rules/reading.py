"""Reading the recording rules exactly over any range: one-minute samples at the edges, hours between.

The per-user level records each minute's growth (`...:increase1m`) and, once
an hour, the hour's (`...:increase1h`, `rules.recording`). Summing a 24 h
range from the minute level reads 1,440 samples per user and model (72 M at
10,000 users x 5 models, seconds per query); from the hour level it reads 24,
plus the minutes of the two partial hours at the edges.

Every expression here counts **minute steps**: the whole minutes `s` (UTC)
of a range; step `s` holds the one minute sample stamped in (s - 1m, s]
(`last_over_time(x[59s999ms])` at `s`: Prometheus 2's ranges are closed at
both ends, so a full minute could hold two samples when the rules are
evaluated on the whole minute, as `promtool` backfills do). The hour sample
of the hour ending at the clock hour `H` is the sum of the minute steps in
(H - 1h, H], whatever second of the minute Prometheus evaluates the group at
(its offset is a hash of the group, not the clock). So hour samples and
minute steps tile time the same way, and a range (a, b] is:

* the hours ending at `H`, for every whole hour a < H <= b - 1h, which cover
  (floor_hour(a), Ht - 1h] with Ht = floor_hour(b) (an hour sample is written a
  few seconds after its hour, so the last hour before `b` is read from minutes);
* plus the minute steps in (max(Ht - 1h, floor_hour(a)), b];
* minus the minute steps in (floor_hour(a), a] (the first hour's part before a).

Two readers: `range_parts` (the report) knows a and b as numbers and
reads each part with a plain range selector over a computed window;
`hourly_points` (the hourly bars) must work with Grafana's
`${__from:date:seconds}` / `${__to:date:seconds}` (no arithmetic on them, and
a custom date format would use the browser's time zone), so it decides which
minutes take part by comparing subquery steps (`time()`) with a and b.
Subqueries cost a point per series and step: at 10,000 users they made panel
totals slower than the plain minute sum, which is why panel totals read the
minute level (BENCHMARKS.md, scale). A caller adds `range_parts` up series by
series, so a series missing from one part (no sample at an edge) still counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from maas_metrics.promql import duration

#: One minute step's sample (see the module docstring).
MINUTE: Final = "59s999ms"
#: An hour sample: stamped within a minute after its clock hour; read from the hour's start.
HOUR: Final = "59m59s999ms"
NOW: Final = "vector(time())"
PART_LABEL: Final = "maas_part"


def hour_of(t: str) -> str:
    """The clock hour (UTC) at or before the unix time `t`, as a one-element vector."""
    return f"(floor(vector({t}) / 3600) * 3600)"


def _when(*conditions: str) -> str:
    return "".join(f" and on () ({c})" for c in conditions)


def minute_steps(minute_series: str, conditions: Sequence[str], window: str, at: str) -> str:
    """Per series, the sum of the minute steps in `[window] @ at` that meet every condition."""
    inner = f"last_over_time({minute_series}[{MINUTE}]){_when(*conditions)}"
    return f"sum_over_time(({inner})[{window}:1m] @ {at})"


def hour_sample_recorded(minute_series: str) -> str:
    """The expression of an hour sample, at the evaluation in the hour's first minute.

    The sum of the minute steps in (H - 1h, H], H the clock hour just begun;
    at any other evaluation it is empty (nothing is recorded).
    """
    steps = f"sum_over_time(last_over_time({minute_series}[{MINUTE}])[{HOUR}:1m])"
    return f"{steps} and on () (minute() == 0)"


def hour_sign(t: str) -> str:
    """+1 in even clock hours (UTC), -1 in odd ones, of the unix time `t` (a vector expression)."""
    return f"(1 - 2 * (floor(({t}) / 3600) % 2))"


def signed_minute_recorded(minute_series: str) -> str:
    """Each minute sample just written, times its step's clock-hour sign (`hour_sign`).

    A sample stamped `e` is step ceil(e) (a whole minute), which belongs to
    the clock hour before `step - 1`: the hour sample of that hour holds it.
    """
    step = "ceil(vector(time()) / 60) * 60"
    return f"last_over_time({minute_series}[{MINUTE}]) * on () group_left () {hour_sign(f'{step} - 1')}"


def hour_to_date_recorded(minute_series: str, signed_series: str) -> str:
    """The hour-to-date sample at each evaluation `e`: the minute steps in (H, s].

    H is the clock hour at or before `e` (whose hour sample, recorded at the
    evaluation in H's first minute, holds the steps up to H) and s the step
    of `e`'s own minute sample. So at any time the hour samples so far plus
    the latest hour-to-date sample are every minute step so far, and a range
    (a, b] is the hour samples stamped in it plus the hour-to-date at b minus
    the one at a (`range_total`): a few samples per series instead of one a
    minute.

    The last hour's 60 minute samples span two clock hours of opposite signs:
    their sum plus H's sign times their signed sum (`signed_minute_recorded`)
    is twice H's part. Two plain range reads, no subquery: a subquery that
    tagged each step cost 10 s a minute per counter at 10,000 users x 5 models
    (BENCHMARKS.md, scale).
    """
    total = f"sum_over_time({minute_series}[{HOUR}])"
    split = f"sum_over_time({signed_series}[{HOUR}]) * on () group_left () {hour_sign(NOW)}"
    return f"({total} + {split}) / 2"


def range_total(hour_series: str, to_date_series: str, window: str, aggregate: str = "") -> str:
    """Per series, the minute steps of the evaluations in (now - `window`, now], for Grafana.

    The hour samples stamped in the window, plus the latest hour-to-date
    sample, minus the one at the window's start (`hour_to_date_recorded`):
    about 24 samples a day per series, where the minute level reads 1,440.
    `window` may be Grafana's `$__range` (no arithmetic needed).
    `aggregate` (e.g. `sum by (user, tier)`) is applied to each part before
    the three are joined: joining 10,000 users' sums is cheaper than joining
    50,000 series (measured at 10,000 users x 5 models, BENCHMARKS.md).
    Prometheus 2's ranges are closed: an hour sample stamped on the very
    millisecond of the window's start would be counted, an hour too many;
    the minute level has the same edge (a minute too many).
    """
    hours = f"{aggregate} (sum_over_time({hour_series}[{window}]))"
    end = f"{aggregate} (last_over_time({to_date_series}[{MINUTE}]))"
    start = f"-{aggregate} (last_over_time({to_date_series}[{MINUTE}] offset {window}))"
    return (
        f"{hours}"
        f' or label_replace({end}, "{PART_LABEL}", "end", "", "")'
        f' or label_replace({start}, "{PART_LABEL}", "start", "", "")'
    )


def range_parts(
    minute_series: str, hour_series: str, start: float, end: float
) -> list[tuple[int, str]]:
    """The (sign, expression) parts whose series-by-series sum is the minute steps in (start, end].

    For callers that know the range's edges as numbers (the report): every
    part is a plain range selector with a computed window, no subquery. The
    minute steps in (X, Y] (whole minutes) are the minute samples in the window
    (X, Y]; the hours ending at H1..H2 are the hour samples in [H1, H2 + 1 min).
    A range over fewer than two clock hours is read from minutes alone; an
    empty range has no part. A caller may query each part on its own and add
    the results up (the report does: no `or` over 10,000s of series).
    """
    first, last = _minute(start), _minute(end)
    if last <= first:
        return []
    low, high = _hour(start), _hour(end)
    if high - low < 2 * 3600:
        return [(1, f"sum_over_time({minute_series}[{left_open(last - first)}] @ {last})")]
    hours_end = high - 3600 + 59.999
    window = left_open(hours_end - (low + 3600) + 0.001)
    parts = [
        (1, f"sum_over_time({hour_series}[{window}] @ {hours_end})"),
        (1, f"sum_over_time({minute_series}[{left_open(last - (high - 3600))}] @ {last})"),
    ]
    if first > low:
        parts.append((-1, f"sum_over_time({minute_series}[{left_open(first - low)}] @ {first})"))
    return parts


def _minute(t: float) -> int:
    return int(t // 60 * 60)


def _hour(t: float) -> int:
    return int(t // 3600 * 3600)


def left_open(seconds: float) -> str:
    """A range selector's duration for the left-open window of `seconds` (Prometheus 2's ranges
    are closed: a millisecond less keeps out the sample at its start)."""
    return duration(seconds - 0.001)


def hourly_points(minute_series: str, hour_series: str, start: str, end: str) -> str:
    """Per series, at each hour step `X` of a range query, the minute steps in (X, X + 1h] ∩ (start, end].

    For bars of clock hours: a full hour is its hour sample (of the hour
    ending X + 1h); the first hour (X < start) and the last (X + 1h > end) are
    clipped to the range from the minutes; the hour before the last is read
    from minutes too until its hour sample is written (a few seconds past the hour).
    """
    full = f"last_over_time({hour_series}[{HOUR}] offset -1h{HOUR})"
    inside = (f"{NOW} >= {start}", f"{NOW} + 3600 <= {end}")
    first = minute_steps(
        minute_series,
        (f"{NOW} > {start}", f"{NOW} <= {end}", f"{NOW} <= {hour_of(start)} + 3600"),
        "1h",
        f"{start} offset -1h",
    )
    last = minute_steps(minute_series, (f"{NOW} > {hour_of(end)}",), "1h", end)
    pending = minute_steps(
        minute_series,
        (f"{NOW} > {hour_of(end)} - 3600", f"{NOW} <= {hour_of(end)}", f"{NOW} > {start}"),
        "2h",
        end,
    )
    return (
        f"({full}{_when(*inside)})"
        f" or ({first}{_when(f'{NOW} < {start}')})"
        f" or ({last}{_when(f'{NOW} >= {start}', f'{NOW} + 3600 > {end}')})"
        f" or ({pending}{_when(*inside, f'{NOW} + 3600 >= {hour_of(end)}')})"
    )


def hourly_minutes(minute_series: str, start: str, end: str) -> str:
    """Per series, at each hour step `X` of a range query, the minute steps in (X, X + 1h] ∩ (start, end].

    The same bars as `hourly_points`, from the minute samples alone: 60
    subquery steps per bar and series, so only for levels with few series
    (the per-tier level: all users' hours, for the hourly bars' "others").
    """
    inside = _when(f"{NOW} > {start}", f"{NOW} <= {end}")
    return (
        f"sum_over_time((last_over_time({minute_series}[{MINUTE}]){inside})[{HOUR}:1m] offset -1h)"
    )
