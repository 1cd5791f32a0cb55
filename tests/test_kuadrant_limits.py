"""Limits as data: the configured limits published by recording rules, read by the near-quota alert.

On a Kuadrant cluster no gateway of ours runs, so there is no `maas_limit_max`
gauge. The histories below are shaped as Limitador exposes them on Kuadrant:
one `limitador_namespace` per HTTPRoute, `model` only on token hits, a
Limitador restart (the series comes back at its first new hit, after a missed
scrape), and no `maas_` series at all. promtool evaluates the generated rule
file; the expected alerts and values are written out by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from tests.test_manifests import KUADRANT_CONFIG
from tests.test_rules import alert, promtool, promtool_test, series

runner = CliRunner()

#: A small Kuadrant config: two tiers, two token routes, one request route.
SMALL: dict[str, Any] = {
    "source": "kuadrant",
    "kuadrant": {"token_routes": ["llm/granite", "llm-b/mistral"], "request_routes": ["ops/api"]},
    "tiers": [
        {
            "name": "free",
            "level": 0,
            "groups": ["all"],
            "price_per_hit": 0.005,
            "request_limit": {"max": 5, "window": "2m"},
            "token_limit": {"max": 100, "window": "1m"},
        },
        {
            "name": "premium",
            "level": 1,
            "groups": ["premium"],
            "price_per_hit": 0.008,
            "token_limit": {"max": 50000, "window": "1h1m"},
        },
    ],
    "models": [{"name": "granite", "upstream": "http://granite.llm.svc/v1"}],
}


def rule_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    cfg = tmp_path / "maas.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "rules.yml"
    result = runner.invoke(app, ["rules", "-c", str(cfg), "-o", str(out)])
    assert result.exit_code == 0, result.output
    check = promtool("check", "rules", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    return out


def test_every_limit_is_published_per_route(tmp_path: Path) -> None:
    groups = yaml.safe_load(rule_file(tmp_path, SMALL).read_text())["groups"]
    rules = next(g for g in groups if g["name"] == "maas-metrics-limits")["rules"]
    published = {
        (r["record"], r["labels"]["limitador_namespace"], r["labels"]["limit_name"], r["expr"])
        for r in rules
    }
    # Written by hand from SMALL: requests only on the request route, tokens on each token route.
    assert published == {
        ("maas:limit_max", "ops/api", "free-requests", "vector(5)"),
        ("maas:limit_window_seconds", "ops/api", "free-requests", "vector(120)"),
        ("maas:limit_max", "llm/granite", "free-tokens", "vector(100)"),
        ("maas:limit_window_seconds", "llm/granite", "free-tokens", "vector(60)"),
        ("maas:limit_max", "llm-b/mistral", "free-tokens", "vector(100)"),
        ("maas:limit_window_seconds", "llm-b/mistral", "free-tokens", "vector(60)"),
        ("maas:limit_max", "llm/granite", "premium-tokens", "vector(50000)"),
        ("maas:limit_window_seconds", "llm/granite", "premium-tokens", "vector(3660)"),
        ("maas:limit_max", "llm-b/mistral", "premium-tokens", "vector(50000)"),
        ("maas:limit_window_seconds", "llm-b/mistral", "premium-tokens", "vector(3660)"),
    }
    assert len(rules) == len(published)
    assert all(r["labels"]["policy"] in r["labels"]["limit_name"] for r in rules)


def tokens(route: str, tier: str, user: str, values: str) -> dict[str, str]:
    """A token-policy counter as Limitador on Kuadrant shows it: `model` from the response body."""
    labels = {"limitador_namespace": route, "model": "granite", "tier": tier, "user": user}
    return series("authorized_hits", labels, values)


def requests(route: str, tier: str, user: str, values: str) -> dict[str, str]:
    """A request-policy counter: no `model` (a request-phase report never has it)."""
    labels = {"limitador_namespace": route, "tier": tier, "user": user}
    return series("authorized_hits", labels, values)


def near(route: str, tier: str, user: str, policy: str, text: str) -> dict[str, Any]:
    limit_name = f"{tier}-{policy}"
    return alert(
        {
            "alertname": "MaaSUserNearQuota",
            "severity": "info",
            "policy": policy,
            "limit_name": limit_name,
            "limitador_namespace": route,
            "tier": tier,
            "user": user,
        },
        text,
        f"User {user} is near the {policy} quota of tier {tier}",
    )


def test_near_quota_fires_from_limits_as_data_with_no_maas_series(tmp_path: Path) -> None:
    path = rule_file(tmp_path, KUADRANT_CONFIG)
    # Samples every 15 s; evaluated at 2m. Windows: free tokens 100/1m, premium tokens
    # 50,000/1h, free requests 5/2m (KUADRANT_CONFIG). Alert at 90 % of the limit.
    scenario = {
        "interval": "15s",
        "input_series": [
            # alice: 95 tokens in the last minute on one route (>= 90): fires.
            tokens("llm/granite-8b", "free", "alice", "0 0 0 0 0 40 95 95 95"),
            # bob: 50 tokens: quiet.
            tokens("llm/granite-8b", "free", "bob", "0 0 0 0 0 20 50 50 50"),
            # dave: 46,000 premium tokens on the second route (>= 45,000): fires there.
            tokens("llm-b/mistral", "premium", "dave", "0 0 0 0 0 10000 46000 46000 46000"),
            # erin: 44,000 premium tokens: quiet.
            tokens("llm/granite-8b", "premium", "erin", "0 0 0 0 0 4000 44000 44000 44000"),
            # carol: 3 requests, Limitador restarts (a missed scrape, the series comes back at
            # its first new hit), 2 more: 5 requests in 2 minutes (>= 4.5): fires.
            requests("llm/admin-api", "free", "carol", "0 1 2 3 _ 1 2 2 2"),
            # alice's 3 requests: quiet.
            requests("llm/admin-api", "free", "alice", "0 1 2 3 3 3 3 3 3"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "2m",
                "alertname": "MaaSUserNearQuota",
                "exp_alerts": [
                    near(
                        "llm/granite-8b",
                        "free",
                        "alice",
                        "tokens",
                        "alice used 95 tokens of 100 per 60s (limit free-tokens, alert at 90%).",
                    ),
                    near(
                        "llm-b/mistral",
                        "premium",
                        "dave",
                        "tokens",
                        "dave used 46k tokens of 50000 per 3600s "
                        "(limit premium-tokens, alert at 90%).",
                    ),
                    near(
                        "llm/admin-api",
                        "free",
                        "carol",
                        "requests",
                        "carol used 5 requests of 5 per 120s (limit free-requests, alert at 90%).",
                    ),
                ],
            }
        ],
        "promql_expr_test": [
            {
                "expr": "absent(maas_limit_max)",
                "eval_time": "2m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            {
                "expr": 'maas:limit_max{limitador_namespace="llm-b/mistral",tier="premium"}',
                "eval_time": "2m",
                "exp_samples": [
                    {
                        "labels": 'maas:limit_max{limit_name="premium-tokens",'
                        'limitador_namespace="llm-b/mistral",policy="tokens",tier="premium"}',
                        "value": 50000,
                    }
                ],
            },
        ],
    }
    result = promtool_test(tmp_path, path, [scenario])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_is_quiet_without_the_limits_group(tmp_path: Path) -> None:
    """The limits group is what makes it fire: without it (and no gauge), nothing fires."""
    path = rule_file(tmp_path, KUADRANT_CONFIG)
    data = yaml.safe_load(path.read_text())
    data["groups"] = [g for g in data["groups"] if g["name"] != "maas-metrics-limits"]
    path.write_text(yaml.safe_dump(data))
    scenario = {
        "interval": "15s",
        "input_series": [tokens("llm/granite-8b", "free", "alice", "0 0 0 0 0 40 95 95 95")],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "MaaSUserNearQuota", "exp_alerts": []}
        ],
    }
    result = promtool_test(tmp_path, path, [scenario])
    assert result.returncode == 0, result.stdout + result.stderr
