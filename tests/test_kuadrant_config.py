"""The config for Kuadrant: source, routes, and durations and limits validated as Kuadrant does.

`config check` refuses, with one line naming the field and exit 2, every
window or limit the Kuadrant operator would refuse (`rates[].window` must
match `^([0-9]{1,5}(h|m|s|ms)){1,4}$`: no days; limits up to 1e9), and a
window written as a Kuadrant duration reaches the generated policies intact.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import ConfigError, parse_config
from maas_metrics.durations import (
    KUADRANT_MAX_WINDOW_SECONDS,
    DurationError,
    kuadrant_window,
    kuadrant_window_seconds,
    parse_duration,
)
from tests.test_manifests import KUADRANT_CONFIG

runner = CliRunner()

#: Copied from the Kuadrant CRDs (`rates[].window`), not from the code under test.
CRD_WINDOW = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")


def with_free_limit(limit: dict[str, Any], **top: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(yaml.safe_dump(KUADRANT_CONFIG))
    config["tiers"][0]["token_limit"] = limit
    config.update(top)
    return config


def check(tmp_path: Path, config: dict[str, Any]) -> tuple[int, list[str]]:
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["config", "check", str(path)])
    return result.exit_code, result.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ({"max": 100, "window": "1d"}, "window '1d' is not a Kuadrant window"),
        ({"max": 100, "window": "123456s"}, "window '123456s' is not a Kuadrant window"),
        ({"max": 100, "window": "1h1m1s1ms1s"}, "is not a Kuadrant window"),
        ({"max": 100, "window": "1 m"}, "is not a Kuadrant window"),
        ({"max": 100, "window": "1500ms"}, "window '1500ms' is not a whole number of seconds"),
        ({"max": 100, "window": "0s"}, "window '0s' must be longer than zero"),
        ({"max": 100, "window": 60}, "window 60 must be a duration text"),
        ({"max": 100, "window": "1m", "window_seconds": 60}, "set window or window_seconds"),
        ({"max": 100, "window_seconds": 360_000_000}, "less than or equal to 359999999"),
        ({"max": 1_000_000_001, "window": "1m"}, "1000000001 is more than Kuadrant accepts"),
        ({"max": -1, "window": "1m"}, "greater than or equal to 0"),
    ],
)
def test_config_check_refuses_what_kuadrant_refuses_with_one_line(
    tmp_path: Path, limit: dict[str, Any], message: str
) -> None:
    code, lines = check(tmp_path, with_free_limit(limit))
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "tiers[0].token_limit" in lines[0], lines[0]
    assert message in lines[0]


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"kuadrant": {}}, "kuadrant.token_routes: source kuadrant needs the HTTPRoutes"),
        (
            {"kuadrant": {"token_routes": ["llm/a"], "request_routes": ["llm/a"]}},
            "route 'llm/a' is in both token_routes and request_routes",
        ),
        ({"kuadrant": {"token_routes": ["llm/a", "llm/a"]}}, "duplicate route 'llm/a'"),
        ({"kuadrant": {"token_routes": ["a-route"]}}, "kuadrant.token_routes[0]: String should"),
        ({"kuadrant": {"token_routes": ["Llm/a"]}}, "kuadrant.token_routes[0]: String should"),
        ({"source": "limitador"}, "source: Input should be 'gateway' or 'kuadrant'"),
    ],
)
def test_source_and_routes_are_checked(tmp_path: Path, top: dict[str, Any], message: str) -> None:
    code, lines = check(tmp_path, with_free_limit({"max": 100, "window": "1m"}, **top))
    assert code == 2 and len(lines) == 1, lines
    assert message in lines[0], lines[0]


def test_limits_over_1e9_only_on_kuadrant(tmp_path: Path) -> None:
    """Our gateway counts any limit; Kuadrant takes at most 1e9."""
    big = {"max": 10**12, "window": "1h"}
    code, lines = check(tmp_path, with_free_limit(big, source="gateway"))
    assert code == 0, lines
    code, lines = check(tmp_path, with_free_limit(big))
    assert code == 2 and lines == [
        f"error: {tmp_path / 'maas.yaml'}: tiers[0].token_limit.max: 1000000000000 is more "
        "than Kuadrant accepts (at most 1000000000 with source kuadrant)"
    ]


def test_one_namespace_for_both_policies_only_on_kuadrant(tmp_path: Path) -> None:
    same = {"requests": "maas/all", "tokens": "maas/all"}
    code, lines = check(tmp_path, with_free_limit({"max": 100, "window": "1m"}, namespaces=same))
    assert code == 0, lines
    gateway = with_free_limit({"max": 100, "window": "1m"}, namespaces=same, source="gateway")
    code, lines = check(tmp_path, gateway)
    assert code == 2 and len(lines) == 1
    assert "namespaces: requests and tokens must differ when source is gateway" in lines[0]


@pytest.mark.parametrize(
    ("window", "seconds", "written"),
    [
        ("1m", 60, "1m"),
        ("90s", 90, "1m30s"),
        ("2000ms", 2, "2s"),
        ("1h30m", 5400, "1h30m"),
        ("30s1m", 90, "1m30s"),  # the CRD accepts any order
        ("99999h", 359_996_400, "99999h"),
    ],
)
def test_a_kuadrant_window_reaches_the_policy(
    tmp_path: Path, window: str, seconds: int, written: str
) -> None:
    config = parse_config(with_free_limit({"max": 100, "window": window}))
    token_limit = config.tiers[0].token_limit
    assert token_limit is not None and token_limit.window_seconds == seconds
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(with_free_limit({"max": 100, "window": window})))
    result = runner.invoke(app, ["manifests", "-c", str(path), "--part", "kuadrant"])
    assert result.exit_code == 0, result.output
    trlp = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "TokenRateLimitPolicy")
    assert trlp["spec"]["limits"]["free-tokens"]["rates"] == [{"limit": 100, "window": written}]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("500ms", 0.5), ("1h30m", 5400), ("2w", 1_209_600), ("1d2h", 93_600)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "s", "1.5h", "-1m", "1m ", "1x"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=KUADRANT_MAX_WINDOW_SECONDS))
def test_every_window_is_written_as_kuadrant_accepts_and_reads_back(seconds: int) -> None:
    text = kuadrant_window(seconds)
    assert CRD_WINDOW.match(text)
    assert kuadrant_window_seconds(text) == seconds


def test_a_window_kuadrant_cannot_express_is_refused() -> None:
    with pytest.raises(DurationError, match="longer than Kuadrant accepts"):
        kuadrant_window(KUADRANT_MAX_WINDOW_SECONDS + 1)
    with pytest.raises(ConfigError, match="window_seconds"):
        parse_config(with_free_limit({"max": 1, "window_seconds": KUADRANT_MAX_WINDOW_SECONDS + 1}))
