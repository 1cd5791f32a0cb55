"""The hour level and `rules.reading` count exactly the minutes they say, over any range.

A lazy history (series born mid-way, a restart) with the recording rules
evaluated by the real Prometheus engine at a 37 s offset (not the scrape
grid, not the whole minute), hour level included. For random ranges with
arbitrary seconds at both ends, every series's reading from the hour and
edge-minute samples (`range_parts`, added up, and each clock-hour bar of
`hourly_points`) must equal the truth computed here from the minute samples
alone: a minute sample stamped `t` belongs to the minute step `s` = `t` rounded
up to a whole minute, and a range (a, b] holds the steps a < s <= b.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maas_metrics.config import load_config
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess
from maas_metrics.promql import duration
from maas_metrics.rules import reading
from maas_metrics.rules.recording import (
    all_models_hour_series,
    per_user_hour_series,
    per_user_series,
    per_user_to_date_series,
)
from tests.conftest import EXAMPLE_CONFIG
from tests.history import backfill_recording_rules_at, build_history

CONFIG = load_config(EXAMPLE_CONFIG)
HOUR = 3600
HOURS = 5.5
RULE_OFFSET = 37
MINUTES = per_user_series("authorized_hits")
HOURS_SERIES = per_user_hour_series("authorized_hits")
TO_DATE = per_user_to_date_series("authorized_hits")  # all models
ALL_MODELS_HOURS = all_models_hour_series("authorized_hits")
Key = tuple[tuple[str, str], ...]


def all_models(
    minutes: dict[Key, list[tuple[float, float]]],
) -> dict[Key, list[tuple[float, float]]]:
    """The minute samples keyed without `model` (every model's samples of a user together)."""
    out: dict[Key, list[tuple[float, float]]] = defaultdict(list)
    for key, points in minutes.items():
        out[tuple(x for x in key if x[0] != "model")].extend(points)
    return dict(out)


@dataclass(frozen=True)
class Env:
    api: PrometheusAPI
    url: str
    start: int
    end: int
    minutes: dict[Key, list[tuple[float, float]]]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, RULE_OFFSET)


@pytest.fixture(scope="module", params=[RULE_OFFSET, 0], ids=["offset-37s", "on-the-minute"])
def any_env(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Env]:
    """Rules evaluated 37 s past the minute (a server) or on it (as `promtool` backfills)."""
    if request.param == RULE_OFFSET:
        yield request.getfixturevalue("env")
    else:
        yield from _env(tmp_path_factory, request.param)


def _env(tmp_path_factory: pytest.TempPathFactory, rule_offset: int) -> Iterator[Env]:
    start = (int(time.time()) // HOUR - 7) * HOUR
    history = build_history(
        CONFIG,
        start=start,
        hours=HOURS,
        restart_after_seconds=int(2.6 * HOUR),
        lazy=True,
        joiners=(("late", int(3.2 * HOUR), int(4.1 * HOUR)), ("once", 9000, 9000)),
    )
    prometheus = PrometheusProcess(Path(tmp_path_factory.mktemp("prometheus")))
    prometheus.backfill(history.openmetrics())
    prometheus.start()
    try:
        backfill_recording_rules_at(prometheus, start + rule_offset, history.end)
        with PrometheusAPI(prometheus.url, timeout=120) as api:
            minutes = matrix(prometheus.url, MINUTES, history.end)
            yield Env(api, prometheus.url, start, history.end, minutes)
    finally:
        prometheus.stop()


def matrix(url: str, series: str, end: int) -> dict[Key, list[tuple[float, float]]]:
    """Every stored sample of `series` (a range selector over the whole history)."""
    answer = httpx.get(
        f"{url}/api/v1/query",
        params={"query": f"{series}[{int(HOURS * HOUR) + HOUR}s]", "time": end},
    ).json()
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): [
            (float(t), float(v)) for t, v in r["values"]
        ]
        for r in answer["data"]["result"]
    }


def step_of(stamp: float) -> int:
    """The minute step holding a minute sample stamped `stamp` (rounded up to a whole minute)."""
    return math.ceil(stamp / 60) * 60


def truth(env: Env, a: float, b: float) -> dict[Key, float]:
    out: dict[Key, float] = defaultdict(float)
    for key, points in env.minutes.items():
        for stamp, value in points:
            if a < step_of(stamp) <= b:
                out[key] += value
    return out


def nonzero(values: dict[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in values.items() if v}


def test_the_hour_level_is_recorded_once_an_hour_from_the_minutes(env: Env) -> None:
    hours = matrix(env.url, HOURS_SERIES, env.end)
    assert hours.keys() == env.minutes.keys()
    for key, points in hours.items():
        # one sample an hour, at the group's evaluation in the hour's first minute
        assert all(t % HOUR == RULE_OFFSET for t, _ in points), key
        for stamp, value in points:
            hour = stamp - RULE_OFFSET
            want = sum(v for t, v in env.minutes[key] if hour - HOUR < step_of(t) <= hour)
            assert value == want, (key, stamp)


def test_the_hour_to_date_level_is_the_minutes_of_the_hour_so_far(any_env: Env) -> None:
    """At every evaluation `e`, the minute steps in (clock hour of e, step of e's own sample],
    of all the user's models together."""
    env = any_env
    minutes = all_models(env.minutes)
    to_date = matrix(env.url, TO_DATE, env.end)
    assert to_date.keys() == minutes.keys()
    for key, points in to_date.items():
        assert points, key
        for stamp, value in points:
            hour = stamp // HOUR * HOUR
            want = sum(v for t, v in minutes[key] if hour < step_of(t) <= step_of(stamp))
            assert value == want, (key, stamp)
        # written at every evaluation the series has a minute sample at
        stamps = {t for t, _ in points}
        assert all(stamp in stamps for stamp, _ in minutes[key]), key


def stamped(env: Env, a: float, b: float) -> dict[Key, float]:
    """All models' minute samples stamped in (a, b], by user: what a panel's `[$__range]` over
    the minutes reads."""
    out: dict[Key, float] = defaultdict(float)
    for key, points in all_models(env.minutes).items():
        for stamp, value in points:
            if a < stamp <= b:
                out[key] += value
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edges=st.tuples(st.integers(0, int(HOURS * HOUR) - 1), st.integers(1, int(HOURS * HOUR))))
def test_range_total_equals_the_minute_samples_of_the_range(
    any_env: Env, edges: tuple[int, int]
) -> None:
    """Hour samples in the window plus the hour-to-date at its end minus at its start."""
    env = any_env
    offset, length = edges
    b = min(env.start + offset + length + 0.25, env.end)  # an end off the second too
    a = b - length
    expr = reading.range_total(ALL_MODELS_HOURS, TO_DATE, duration(length))
    got: dict[Key, float] = defaultdict(float)
    for s in env.api.query(f"sum without ({reading.PART_LABEL}) ({expr})", time=b):
        got[tuple(sorted(s.labels.items()))] += s.value
    assert nonzero(got) == nonzero(stamped(env, a, b))


ranges = st.tuples(
    st.integers(min_value=0, max_value=int(HOURS * HOUR) - 61),
    st.integers(min_value=60, max_value=int(HOURS * HOUR)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edges=ranges)
def test_range_parts_add_up_to_the_minutes_of_the_range(env: Env, edges: tuple[int, int]) -> None:
    """Each part queried on its own and added up series by series, as the report does."""
    offset, length = edges
    a = env.start + offset + 0.25  # edges off the second too
    b = min(a + length, env.end - 0.5)
    summed: dict[Key, float] = defaultdict(float)
    for sign, expr in reading.range_parts(MINUTES, HOURS_SERIES, a, b):
        for s in env.api.query(expr, time=b):
            summed[tuple(sorted(s.labels.items()))] += sign * s.value
    assert nonzero(summed) == nonzero(truth(env, a, b))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edges=ranges)
def test_hourly_points_are_the_clipped_clock_hours(env: Env, edges: tuple[int, int]) -> None:
    offset, length = edges
    a = env.start + offset
    b = min(a + length, env.end)
    expr = f"sum by (user, model, limitador_namespace) ({reading.hourly_points(MINUTES, HOURS_SERIES, str(a), str(b))})"
    first, last = a // HOUR * HOUR, b // HOUR * HOUR
    got: dict[tuple[Key, int], float] = {}
    for series in env.api.query_range(expr, first, last, HOUR):
        key = tuple(sorted(series.labels.items()))
        for t, v in series.points:
            if v:
                got[(key, int(t))] = v
    want: dict[tuple[Key, int], float] = defaultdict(float)
    for hour in range(first, last + 1, HOUR):
        for key, value in truth(env, max(hour, a), min(hour + HOUR, b)).items():
            labels = tuple(x for x in key if x[0] in ("user", "model", "limitador_namespace"))
            want[(labels, hour)] += value
    assert got == {k: v for k, v in want.items() if v}
