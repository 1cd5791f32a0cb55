"""Budget alerts at 50 / 80 / 100 %: `maas-metrics rules` output, checked and unit-tested by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import load_config
from maas_metrics.gateway.budgets import Budgets
from maas_metrics.limiter import InMemoryStore
from maas_metrics.rules import budgets as budget_rules
from tests.fixtures import EXAMPLE_CONFIG
from tests.servers import require_binary

runner = CliRunner()


def config_with_budget(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["tiers"][0]["budget"] = {"amount": 10, "unit": "usd"}
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rule_file(tmp_path: Path, config: Path) -> Path:
    out = tmp_path / "rules.yml"
    result = runner.invoke(app, ["rules", "--config", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True)


def used(instance: str, values: str, user: str = "ann", unit: str = "usd") -> dict[str, str]:
    labels = f'user="{user}",tier="free",unit="{unit}",instance="{instance}",job="gw"'
    return {"series": f"maas_budget_used{{{labels}}}", "values": values}


def limit(instance: str, value: str, user: str = "ann", unit: str = "usd") -> dict[str, str]:
    labels = f'user="{user}",tier="free",unit="{unit}",instance="{instance}",job="gw"'
    return {"series": f"maas_budget_limit{{{labels}}}", "values": f"{value}x30"}


def fired(name: str, user: str, unit: str, value: str) -> dict[str, Any]:
    says = {
        "MaaSBudgetHalfUsed": "has used half",
        "MaaSBudgetMostlyUsed": "has used 80 %",
        "MaaSBudgetExhausted": "has used all",
    }[name]
    severity = {
        "MaaSBudgetHalfUsed": "info",
        "MaaSBudgetMostlyUsed": "warning",
        "MaaSBudgetExhausted": "critical",
    }[name]
    return {
        "exp_labels": {"severity": severity, "user": user, "tier": "free", "unit": unit},
        "exp_annotations": {
            "summary": f"A user {says} of this month's budget",
            "description": f"User {user} (tier free) {says} of the monthly budget "
            f"({value} used, unit {unit}).",
        },
    }


ALERTS = ("MaaSBudgetHalfUsed", "MaaSBudgetMostlyUsed", "MaaSBudgetExhausted")


def expect(minute: int, firing: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": firing.get(name, [])}
        for name in ALERTS
    ]


# ann ($10 budget) spends over 25 minutes; replica gw2 read the counter last, gw1 lags behind.
# Minute:     0  5   10   15    20   25
# gw1 ($):    0  2   4    4     4    4      (gw1 stopped seeing ann's traffic after minute 10)
# gw2 ($):    -  3   6    8.5   10   12     (6 = 60 %, 8.5 = 85 %, 10 = 100 %, 12 = 120 %)
# bob (tokens, 1000): 400 at minute 10, 500 (exactly 50 %) at minute 20.
SCENARIO: dict[str, Any] = {
    "interval": "1m",
    "input_series": [
        used("gw1", "0 0 0 0 0 2 2 2 2 2 4x20"),
        used("gw2", "_ _ _ _ _ 3 3 3 3 3 6 6 6 6 6 8.5 8.5 8.5 8.5 8.5 10 10 10 10 10 12x5"),
        limit("gw1", "10"),
        limit("gw2", "10"),
        used("gw1", "0x9 400x10 500x10", user="bob", unit="tokens"),
        limit("gw1", "1000", user="bob", unit="tokens"),
    ],
    "alert_rule_test": [
        *expect(7, {}),  # 30 %: quiet
        *expect(12, {"MaaSBudgetHalfUsed": [fired("MaaSBudgetHalfUsed", "ann", "usd", "60%")]}),
        *expect(17, {"MaaSBudgetMostlyUsed": [fired("MaaSBudgetMostlyUsed", "ann", "usd", "85%")]}),
        *expect(
            22,
            {
                "MaaSBudgetExhausted": [fired("MaaSBudgetExhausted", "ann", "usd", "100%")],
                "MaaSBudgetHalfUsed": [fired("MaaSBudgetHalfUsed", "bob", "tokens", "50%")],
            },
        ),
        *expect(
            27,
            {
                "MaaSBudgetExhausted": [fired("MaaSBudgetExhausted", "ann", "usd", "120%")],
                "MaaSBudgetHalfUsed": [fired("MaaSBudgetHalfUsed", "bob", "tokens", "50%")],
            },
        ),
    ],
}


def run_unit_tests(tmp_path: Path, rules: Path, tests: list[dict[str, Any]]) -> str:
    spec = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}
    test_file = tmp_path / "budget-tests.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = promtool("test", "rules", str(test_file))
    return ("SUCCESS " if result.returncode == 0 else "FAILED ") + result.stdout + result.stderr


def test_budget_alerts_fire_at_50_80_and_100_percent(tmp_path: Path) -> None:
    rules = rule_file(tmp_path, config_with_budget(tmp_path))
    check = promtool("check", "rules", str(rules))
    assert check.returncode == 0, check.stdout + check.stderr
    groups = {g["name"]: g for g in yaml.safe_load(rules.read_text())["groups"]}
    assert [r["alert"] for r in groups[budget_rules.GROUP_NAME]["rules"]] == list(ALERTS)
    outcome = run_unit_tests(tmp_path, rules, [SCENARIO])
    assert outcome.startswith("SUCCESS"), outcome


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The harness can fail: claiming the 80 % alert already fires at 60 % is refused."""
    rules = rule_file(tmp_path, config_with_budget(tmp_path))
    wrong = {
        **SCENARIO,
        "alert_rule_test": expect(
            12, {"MaaSBudgetMostlyUsed": [fired("MaaSBudgetMostlyUsed", "ann", "usd", "60%")]}
        ),
    }
    outcome = run_unit_tests(tmp_path, rules, [wrong])
    assert outcome.startswith("FAILED") and "MaaSBudgetMostlyUsed" in outcome, outcome


def test_no_budget_no_group_and_the_names_match_the_gateway(tmp_path: Path) -> None:
    plain = yaml.safe_load(rule_file(tmp_path, EXAMPLE_CONFIG).read_text())["groups"]
    assert budget_rules.GROUP_NAME not in [g["name"] for g in plain]
    gateway_budgets = Budgets(load_config(config_with_budget(tmp_path)), InMemoryStore(), "deny")
    names = [family.name for family in gateway_budgets.families()]
    assert budget_rules.USED in names and budget_rules.LIMIT in names
