"""`maas-metrics rules`: the rule file passes `promtool check rules`, and promtool unit tests
(input series -> expected alerts, written here by hand) pass for every alert."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config, parse_config
from maas_metrics.rules import recording
from tests.conftest import EXAMPLE_CONFIG
from tests.servers import require_binary

runner = CliRunner()

TOKENS = "maas/tokens"
REQUESTS = "maas/requests"


def run_rules(tmp_path: Path, *args: str, config: Path = EXAMPLE_CONFIG) -> Path:
    out = tmp_path / f"rules-{len(list(tmp_path.iterdir()))}.yml"
    result = runner.invoke(app, ["rules", "--config", str(config), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True)


def promtool_test(
    tmp_path: Path, rule_file: Path, tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    spec = {"rule_files": [rule_file.name], "evaluation_interval": "1m", "tests": tests}
    test_file = tmp_path / f"test-{rule_file.stem}.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return promtool("test", "rules", str(test_file))


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def alert(labels: dict[str, str], description: str, summary: str) -> dict[str, Any]:
    return {
        "exp_labels": labels,
        "exp_annotations": {"summary": summary, "description": description},
    }


# --- hand-written scenarios -------------------------------------------------------------------

DOWN_SUMMARY = "The rate limiter is down: requests are not metered or limited"
DOWN_TEXT = "limitador_up is 0, the scrape target is down, or no limiter reports at all."

LIMITER_DOWN: dict[str, Any] = {
    "interval": "1m",
    "input_series": [
        series(
            "limitador_up", {"job": "limitador-limitador", "instance": "l1:8080"}, "1 1 0 0 0 0"
        ),
        series("up", {"job": "limitador-limitador", "instance": "l1:8080"}, "1x5"),
        series("limitador_up", {"job": "maas-gateway", "instance": "g1:8080"}, "1x5"),
        series("up", {"job": "maas-gateway", "instance": "g1:8080"}, "1 1 1 0 0 0"),
        series("up", {"job": "unrelated", "instance": "x:1"}, "0x5"),
    ],
    "alert_rule_test": [
        {"eval_time": "2m", "alertname": "MaaSRateLimiterDown", "exp_alerts": []},
        {
            "eval_time": "3m",
            "alertname": "MaaSRateLimiterDown",
            "exp_alerts": [
                alert(
                    {"severity": "critical", "job": "limitador-limitador", "instance": "l1:8080"},
                    "Target l1:8080: " + DOWN_TEXT,
                    DOWN_SUMMARY,
                )
            ],
        },
        {
            "eval_time": "4m",
            "alertname": "MaaSRateLimiterDown",
            "exp_alerts": [
                alert(
                    {"severity": "critical", "job": "limitador-limitador", "instance": "l1:8080"},
                    "Target l1:8080: " + DOWN_TEXT,
                    DOWN_SUMMARY,
                ),
                alert(
                    {"severity": "critical", "job": "maas-gateway", "instance": "g1:8080"},
                    "Target g1:8080: " + DOWN_TEXT,
                    DOWN_SUMMARY,
                ),
            ],
        },
    ],
}

NO_LIMITER_AT_ALL: dict[str, Any] = {
    "interval": "1m",
    "input_series": [series("up", {"job": "unrelated", "instance": "x:1"}, "1x5")],
    "alert_rule_test": [
        {
            "eval_time": "2m",
            "alertname": "MaaSRateLimiterDown",
            "exp_alerts": [alert({"severity": "critical"}, DOWN_TEXT, DOWN_SUMMARY)],
        }
    ],
}


def calls(
    name: str, ns: str, tier: str, user: str, values: str, limit: str | None = None
) -> dict[str, str]:
    labels = {"limitador_namespace": ns, "tier": tier, "user": user, "model": "granite-8b"}
    if limit:
        labels["limit_name"] = limit
    return series(name, labels, values)


RATIO_SERIES = [
    # free: 1 allowed and 1 limited check per second -> 50 % limited
    calls("authorized_calls", TOKENS, "free", "alice", "0+60x30"),
    calls("limited_calls", TOKENS, "free", "alice", "0+60x30", "free-tokens"),
    # premium: 10 allowed, 1 limited per second -> 9 %
    calls("authorized_calls", TOKENS, "premium", "dave", "0+600x30"),
    calls("limited_calls", TOKENS, "premium", "dave", "0+60x30", "premium-tokens"),
    # enterprise: only ever limited (no authorized_calls series at all) -> 100 %
    calls("limited_calls", REQUESTS, "enterprise", "frank", "0+30x30", "enterprise-requests"),
]


def ratio_alert(ns: str, tier: str, percent: str, threshold: str) -> dict[str, Any]:
    return alert(
        {"severity": "warning", "limitador_namespace": ns, "tier": tier},
        f"{percent} of the policy checks in namespace {ns} for tier {tier} were limited over the "
        f"last 5m (threshold {threshold}).",
        f"Many requests of tier {tier} are rate-limited",
    )


def near_quota_alert(ns: str, tier: str, user: str, policy: str, text: str) -> dict[str, Any]:
    return alert(
        {
            "severity": "info",
            "policy": policy,
            "limit_name": f"{tier}-{policy}",
            "limitador_namespace": ns,
            "tier": tier,
            "user": user,
        },
        text,
        f"User {user} is near the {policy} quota of tier {tier}",
    )


def hits(ns: str, tier: str, user: str, values: str) -> dict[str, str]:
    return series(
        "authorized_hits",
        {"limitador_namespace": ns, "tier": tier, "user": user, "model": "granite-8b"},
        values,
    )


def quota(ns: str, tier: str, policy: str, value: int) -> dict[str, str]:
    labels = {
        "limitador_namespace": ns,
        "tier": tier,
        "limit_name": f"{tier}-{policy}",
        "policy": policy,
    }
    return series("maas_limit_max", labels, f"{value}x40")


NEAR_QUOTA: dict[str, Any] = {
    "interval": "15s",
    "input_series": [
        quota(TOKENS, "free", "tokens", 100),
        quota(REQUESTS, "free", "requests", 5),
        quota(REQUESTS, "premium", "requests", 20),
        # alice: 100 of 100 tokens within the first minute -> alert
        hits(TOKENS, "free", "alice", "0 25 50 75 100 100x30"),
        # bob: 40 of 100 tokens -> no alert
        hits(TOKENS, "free", "bob", "0 10 20 30 40 40x30"),
        # alice: 4 of 5 requests (80 % < 90 %) -> no alert
        hits(REQUESTS, "free", "alice", "0 1 2 3 4 4x30"),
        # carol: 19 of 20 premium requests within two minutes -> alert while in the window
        hits(REQUESTS, "premium", "carol", "0 5 10 15 19 19x30"),
    ],
    "alert_rule_test": [
        {
            "eval_time": "1m",
            "alertname": "MaaSUserNearQuota",
            "exp_alerts": [
                near_quota_alert(
                    TOKENS,
                    "free",
                    "alice",
                    "tokens",
                    "alice used 100 tokens of 100 per 60s (limit free-tokens, alert at 90%).",
                ),
                near_quota_alert(
                    REQUESTS,
                    "premium",
                    "carol",
                    "requests",
                    "carol used 19 requests of 20 per 120s (limit premium-requests, alert at 90%).",
                ),
            ],
        },
        {
            "eval_time": "2m",
            "alertname": "MaaSUserNearQuota",
            "exp_alerts": [
                near_quota_alert(
                    REQUESTS,
                    "premium",
                    "carol",
                    "requests",
                    "carol used 19 requests of 20 per 120s (limit premium-requests, alert at 90%).",
                ),
            ],
        },
        # Both windows have passed without new hits.
        {"eval_time": "4m", "alertname": "MaaSUserNearQuota", "exp_alerts": []},
    ],
}

# Series as a real Limitador creates them: born at their first value, some with one sample.
BORN_INSIDE_QUOTA: dict[str, Any] = {
    "interval": "15s",
    "input_series": [
        quota(TOKENS, "free", "tokens", 100),
        quota(REQUESTS, "free", "requests", 5),
        # erin's first sample is already 95 of 100 tokens: increase() alone would read 0
        hits(TOKENS, "free", "erin", "_ _ 95x10"),
        # finn: a single sample, 5 of 5 requests
        hits(REQUESTS, "free", "finn", "_ _ _ 5"),
    ],
    "alert_rule_test": [
        {
            "eval_time": "1m",
            "alertname": "MaaSUserNearQuota",
            "exp_alerts": [
                near_quota_alert(
                    TOKENS,
                    "free",
                    "erin",
                    "tokens",
                    "erin used 95 tokens of 100 per 60s (limit free-tokens, alert at 90%).",
                ),
                near_quota_alert(
                    REQUESTS,
                    "free",
                    "finn",
                    "requests",
                    "finn used 5 requests of 5 per 120s (limit free-requests, alert at 90%).",
                ),
            ],
        },
    ],
}

# One allowed call a minute; each minute a new user is limited once (a limited_calls series born
# at 1 that never grows): 5 of 10 checks in any 5 min are limited, invisible to increase().
BORN_INSIDE_RATIO: dict[str, Any] = {
    "interval": "1m",
    "input_series": [
        calls("authorized_calls", TOKENS, "free", "alice", "0+1x30"),
        *(
            calls("limited_calls", TOKENS, "free", f"u{k:02d}", "_ " * k + "1x" + str(30 - k), "x")
            for k in range(1, 25)
        ),
    ],
    "alert_rule_test": [
        {
            "eval_time": "20m",
            "alertname": "MaaSHighLimitedRatio",
            "exp_alerts": [ratio_alert(TOKENS, "free", "50%", "20%")],
        },
    ],
}

PARTITIONED: dict[str, Any] = {
    "interval": "1m",
    "input_series": [
        series(
            "datastore_partitioned", {"job": "maas-gateway", "instance": "g1:8080"}, "0 1 1 1 1 1"
        ),
        series("datastore_partitioned", {"job": "maas-gateway", "instance": "g2:8080"}, "0x5"),
    ],
    "alert_rule_test": [
        {"eval_time": "2m", "alertname": "MaaSCounterStorePartitioned", "exp_alerts": []},
        {
            "eval_time": "3m",
            "alertname": "MaaSCounterStorePartitioned",
            "exp_alerts": [
                alert(
                    {"severity": "critical", "job": "maas-gateway", "instance": "g1:8080"},
                    "g1:8080: the counter store (Redis) is unreachable; requests are denied or "
                    "admitted unmetered, depending on storage.on_failure.",
                    "The rate limiter cannot reach its counter store",
                )
            ],
        },
    ],
}


def ratio_case(expected: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": RATIO_SERIES,
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "MaaSHighLimitedRatio", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "MaaSHighLimitedRatio", "exp_alerts": expected},
        ],
    }


# --- tests ------------------------------------------------------------------------------------


def test_rule_file_passes_promtool_check_and_holds_recording_and_alert_groups(
    tmp_path: Path,
) -> None:
    path = run_rules(tmp_path)
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    groups = yaml.safe_load(path.read_text())["groups"]
    assert [g["name"] for g in groups] == [
        recording.GROUP_NAME,
        "maas-metrics-alerts",
        "maas-metrics-limits",  # limits as data (rules/limits.py, tests/test_kuadrant_limits.py)
    ]
    assert groups[0] == recording.recording_group()
    alerts = [r["alert"] for r in groups[1]["rules"]]
    assert sorted(set(alerts)) == [
        "MaaSCounterStorePartitioned",
        "MaaSHighLimitedRatio",
        "MaaSRateLimiterDown",
        "MaaSUsageSeriesHigh",
        "MaaSUserNearQuota",
    ]
    # One near-quota rule per configured limit: 3 tiers x (requests, tokens).
    assert alerts.count("MaaSUserNearQuota") == 6


def test_promtool_unit_tests_of_every_alert_pass(tmp_path: Path) -> None:
    path = run_rules(tmp_path)
    tests: list[dict[str, Any]] = [
        LIMITER_DOWN,
        NO_LIMITER_AT_ALL,
        ratio_case(
            [
                ratio_alert(TOKENS, "free", "50%", "20%"),
                ratio_alert(REQUESTS, "enterprise", "100%", "20%"),
            ]
        ),
        NEAR_QUOTA,
        BORN_INSIDE_QUOTA,
        BORN_INSIDE_RATIO,
        PARTITIONED,
    ]
    result = promtool_test(tmp_path, path, tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_thresholds_come_from_the_command_line(tmp_path: Path) -> None:
    path = run_rules(tmp_path, "--limited-ratio", "0.6")
    result = promtool_test(
        tmp_path, path, [ratio_case([ratio_alert(REQUESTS, "enterprise", "100%", "60%")])]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_test_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: expecting the premium tier (9 % limited) to alert is refused."""
    path = run_rules(tmp_path)
    wrong = ratio_case(
        [
            ratio_alert(TOKENS, "free", "50%", "20%"),
            ratio_alert(REQUESTS, "enterprise", "100%", "20%"),
            ratio_alert(TOKENS, "premium", "9.091%", "20%"),
        ]
    )
    result = promtool_test(tmp_path, path, [wrong])
    assert result.returncode != 0
    assert "MaaSHighLimitedRatio" in result.stdout + result.stderr


def test_a_new_tier_gets_quota_alerts_with_its_own_window(
    tmp_path: Path, example_config: Config
) -> None:
    data = example_config.model_dump(mode="json")
    data["tiers"].append(
        {
            "name": "research",
            "level": 7,
            "groups": ["researchers"],
            "price_per_hit": 0.002,
            "request_limit": {"max": 7, "window_seconds": 30},
            "token_limit": {"max": 123456, "window_seconds": 3600},
        }
    )
    config_path = tmp_path / "five.yaml"
    config_path.write_text(yaml.safe_dump(data))
    parse_config(data)
    path = run_rules(tmp_path, config=config_path)
    assert promtool("check", "rules", str(path)).returncode == 0
    rules = yaml.safe_load(path.read_text())["groups"][1]["rules"]
    research = [r for r in rules if r["labels"].get("limit_name", "").startswith("research-")]
    assert {r["labels"]["limit_name"] for r in research} == {"research-requests", "research-tokens"}
    by_name = {r["labels"]["limit_name"]: r for r in research}
    assert "[30s]" in by_name["research-requests"]["expr"]
    assert 'tier="research"' in by_name["research-requests"]["expr"]
    assert "[3600s]" in by_name["research-tokens"]["expr"]
    assert "123456 per 3600s" in by_name["research-tokens"]["annotations"]["description"]


def test_prometheusrule_format_wraps_the_same_groups(tmp_path: Path) -> None:
    plain = yaml.safe_load(run_rules(tmp_path).read_text())
    wrapped = yaml.safe_load(
        run_rules(tmp_path, "--format", "prometheusrule", "--namespace", "monitoring").read_text()
    )
    assert wrapped["apiVersion"] == "monitoring.coreos.com/v1"
    assert wrapped["kind"] == "PrometheusRule"
    assert wrapped["metadata"]["namespace"] == "monitoring"
    assert wrapped["spec"]["groups"] == plain["groups"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limited-ratio", "1.5"], "error: limited ratio must be between 0 and 1"),
        (["--near-quota", "0"], "error: near-quota fraction must be in (0, 1]"),
        (["--format", "xml"], "error: --format 'xml': choose prometheus or prometheusrule"),
        (
            ["--format", "prometheusrule", "--namespace", "Bad_NS"],
            "error: namespace 'Bad_NS' is not a valid",
        ),
    ],
)
def test_bad_options_give_one_line_and_fail(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["rules", "--config", str(EXAMPLE_CONFIG), *args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
