"""`expand` interpolates variables as Grafana's Prometheus datasource does (values from its source)."""

from __future__ import annotations

from datetime import date

import pytest

from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.model import Variable
from maas_metrics.dashboard.variables import (
    ALL,
    Selection,
    expand,
    format_interval,
    go_duration,
    grafana_interval,
    rate_interval,
    regex_escape,
    top_values,
)

EXPR = 'x{ns=~"$namespace", tier=~"$tier", user=~"$user", model=~"$model", r!~"$request_namespace"}'


@pytest.fixture(scope="module")
def variables(example_config: Config) -> tuple[Variable, ...]:
    return build_catalogue(example_config, price_date=date(2025, 1, 1)).variables


def test_all_becomes_the_all_value_unescaped(variables: tuple[Variable, ...]) -> None:
    out = expand(EXPR, Selection(), 3600, 60, variables=variables)
    assert out == 'x{ns=~".*", tier=~".*", user=~".*", model=~".*", r!~"maas/requests"}'


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (["alice"], "alice"),
        (["alice", "bob"], "(alice|bob)"),
        # Grafana: value.replace(/[$^*{}\[\]'+?.()|]/g, '\\\\$&') -> two backslashes in the query
        (["eve.smith+1"], r"eve\\.smith\\+1"),
        (["a.b", "c|d"], r"(a\\.b|c\\|d)"),
        # backslash -> four backslashes; double quote -> \\\" (special-chars mode)
        (["back\\slash"], r"back\\\\slash"),
        (['say"hi'], r"say\\\"hi"),
        (["it's"], r"it\\'s"),
        (["maas/tokens"], "maas/tokens"),
    ],
)
def test_chosen_values_are_regex_escaped_like_grafana(
    variables: tuple[Variable, ...], values: list[str], text: str
) -> None:
    out = expand('user=~"$user"', Selection(user=values), 3600, 60, variables=variables)
    assert out == f'user=~"{text}"'


def test_a_plain_string_is_one_value() -> None:
    assert Selection(user="alice").user == ("alice",)
    assert Selection(tier=ALL).tier is ALL
    with pytest.raises(ValueError, match="at least one value"):
        Selection(model=[])


def test_regex_escape_is_what_prometheus_unescapes_to_a_literal() -> None:
    # PromQL unescapes the string once (\\ -> \), leaving RE2 `a\.b`.
    assert regex_escape("a.b") == "a\\\\.b"


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (60, "1m0s"), (75, "1m15s"), (3660, "1h1m0s"), (1.5, "1.5s")]
)
def test_rate_interval_is_go_duration_text(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(15, "15s"), (90, "1m"), (3600, "1h"), (0.5, "500ms")]
)
def test_interval_is_grafana_format_interval(seconds: float, text: str) -> None:
    assert format_interval(seconds) == text


@pytest.mark.parametrize(
    ("range_seconds", "interval"),
    [
        (3600, 15),  # 3.6 s raw -> 5 s nice -> raised to the 15 s scrape interval
        (6 * 3600, 20),  # 21.6 s -> 20 s
        (24 * 3600, 60),  # 86.4 s -> 1 m
        (7 * 86400, 600),  # 604.8 s -> 10 m
    ],
)
def test_interval_follows_grafana_rounding(range_seconds: int, interval: int) -> None:
    assert grafana_interval(range_seconds) == interval


def test_rate_interval_is_at_least_four_scrapes() -> None:
    assert rate_interval(15) == 60
    assert rate_interval(60) == 75


def test_builtins_and_unknown_variables(variables: tuple[Variable, ...]) -> None:
    out = expand(
        "increase(x[$__range]) rate(x[$__rate_interval]) $__interval",
        Selection(),
        5400.4,
        75,
        variables=variables,
        interval_seconds=60,
    )
    assert out == "increase(x[5400s]) rate(x[1m15s]) 1m"
    with pytest.raises(ValueError, match=r"\$nope"):
        expand('x{a=~"$nope"}', Selection(), 60, 60, variables=variables)
    braces = expand('x{u=~"${user}"}', Selection(user=["a"]), 60, 60, variables=variables)
    assert braces == 'x{u=~"a"}'


def test_top_variable_joins_its_options_like_grafana_all(variables: tuple[Variable, ...]) -> None:
    def text(options: list[str] | None) -> str:
        chosen = None if options is None else {"table_users": options}
        return expand('u=~"$table_users"', Selection(), 60, 60, variables=variables, options=chosen)

    assert text(["alice", "eve.smith+1"]) == r'u=~"(alice|eve\\.smith\\+1)"'
    assert text(["alice"]) == 'u=~"alice"'
    assert text([]) == 'u=~"()"'  # Grafana's empty join: matches no user
    assert text(None) == 'u=~".*"'  # unresolved: every row
    top = next(v for v in variables if v.kind == "top")
    assert top.query.startswith("query_result(topk(100, ") and top.hidden
    assert top_values(top, [{"user": "b"}, {"user": "a"}, {"user": "b"}, {}]) == ["a", "b"]
