"""A bad budget or usage setting fails `maas-metrics config check` with one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures import EXAMPLE_CONFIG

CLI = str(Path(sys.executable).parent / "maas-metrics")


def check(tmp_path: Path, change: Any) -> subprocess.CompletedProcess[str]:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    change(data)
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(data))
    return subprocess.run([CLI, "config", "check", str(path)], capture_output=True, text=True)


def tier_budget(budget: dict[str, Any]) -> Any:
    return lambda data: data["tiers"][0].__setitem__("budget", budget)


def two_keys_two_budgets(data: dict[str, Any]) -> None:
    first = data["api_keys"][0]
    twin = {**first, "sha256": "f" * 64, "budget": {"amount": 5}}
    data["api_keys"] += [twin]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (tier_budget({"amount": 10, "timezone": "Mars/Olympus"}), "tiers[0].budget.timezone"),
        (tier_budget({"amount": 0}), "tiers[0].budget.amount"),
        (tier_budget({"amount": 10.5, "unit": "tokens"}), "whole number of tokens"),
        (tier_budget({"amount": 10, "unit": "eur"}), "tiers[0].budget.unit"),
        (tier_budget({"amount": 10, "enforcement": "maybe"}), "tiers[0].budget.enforcement"),
        (two_keys_two_budgets, "has keys with different budgets"),
        (
            lambda d: d.setdefault("gateway", {}).__setitem__(
                "usage", {"prometheus_url": "ftp://x"}
            ),
            "gateway.usage.prometheus_url",
        ),
        (
            lambda d: d.setdefault("gateway", {}).__setitem__("usage", {"resolution_seconds": 7}),
            "gateway.usage.resolution_seconds",
        ),
    ],
)
def test_bad_budget_settings_fail_with_one_line(tmp_path: Path, change: Any, expected: str) -> None:
    result = check(tmp_path, change)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_a_good_budget_passes(tmp_path: Path) -> None:
    result = check(
        tmp_path,
        tier_budget(
            {"amount": 25, "unit": "usd", "enforcement": "soft", "timezone": "Europe/Paris"}
        ),
    )
    assert result.returncode == 0, result.stderr
