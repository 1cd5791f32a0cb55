"""The view in the URL and the time range fields, without a browser: Grafana's forms, errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maas_metrics.web.timerange import absolute_text, parse_time, resolve_range
from maas_metrics.web.urlstate import View, make_view, parse_query_string

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def test_a_view_round_trips_through_its_query_string() -> None:
    view = make_view(
        "2025-06-01 08:00:00",
        "now",
        {"tier": ["premium"], "user": ["a&b", "c d", "é=1"], "namespace": [], "model": None},
    )
    assert view.filters == {"tier": ("premium",), "user": ("a&b", "c d", "é=1")}
    assert parse_query_string(view.query_string(), "now-1h") == view
    assert View.from_data(view.as_data()) == view


def test_grafana_urls_open_the_same_view() -> None:
    view = parse_query_string(
        "?orgId=1&from=1748764800000&to=now&var-tier=free&var-tier=premium&var-user=All"
        "&var-model=$__all",
        "now-1h",
    )
    assert view == View("1748764800000", "now", {"tier": ("free", "premium")})
    assert resolve_range(view.start, view.end, NOW) == (1748764800.0, NOW)


def test_missing_parts_take_the_dashboard_defaults() -> None:
    assert parse_query_string("", "now-6h") == View("now-6h", "now", {})
    assert parse_query_string(None, "now-6h") == View("now-6h", "now", {})


def test_relative_and_absolute_times() -> None:
    assert parse_time("now", NOW, "From") == NOW
    assert parse_time("now-7d", NOW, "From") == NOW - 7 * 86400
    assert parse_time("2025-06-01 08:00", NOW, "From") == NOW - 4 * 3600
    assert parse_time("2025-06-01T08:00:00Z", NOW, "From") == NOW - 4 * 3600
    assert parse_time(absolute_text(NOW - 90), NOW, "To") == NOW - 90


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("yesterday", "now", "From"),
        ("now-1h", "2025-13-01 00:00", "To"),
        ("now-0h", "now", "From"),
        ("now", "now-1h", "From"),
        ("2025-06-01 13:00", "now", "From"),  # in the future: the range would be empty
    ],
)
def test_a_bad_range_is_one_message_naming_the_field(start: str, end: str, field: str) -> None:
    with pytest.raises(ValueError) as error:
        resolve_range(start, end, NOW)
    message = str(error.value)
    assert message.startswith(f"{field}: ") and "\n" not in message
