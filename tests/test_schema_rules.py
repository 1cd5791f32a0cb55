"""Rules, alerts and metric-name choice for each schema, judged by promtool.

* `promtool check rules` accepts the generated rule file of the seed's
  schema, of today's (subscription, attribution, `*_total`, no user, calls
  without model) and of its `auto` and user-capturing variants;
* promtool unit tests: the cardinality alert fires above
  `schema.max_usage_series` (and not below); the limited-ratio alert of
  today's schema reads `limited_calls_total` by subscription; the
  recording rules of today's schema record the exact one-minute increases
  per subscription and cost centre;
* `metric_names: auto` reads `*_total` where it exists and Limitador's name
  where only that exists, and never adds the two up (a `__name__` regex
  would double them), from the dashboard's own expanded queries.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from maas_metrics.config import Config, load_config, parse_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.variables import Selection, expand
from maas_metrics.report import ReportRequest, TimeRange
from maas_metrics.report.query import ALLOWED, TOKENS, window_exprs
from maas_metrics.report.query import LIMITED as LIMITED_CALLS
from maas_metrics.rules.render import render_rule_file, rule_groups
from tests.conftest import EXAMPLE_CONFIG
from tests.servers import require_binary

SEED = load_config(EXAMPLE_CONFIG)


def today(**schema: Any) -> Config:
    data = SEED.model_dump(mode="json")
    data["subscriptions"] = data.pop("tiers")
    data["schema"] = {
        "billing_dimension": "subscription",
        "attribution": ["organization_id", "cost_center"],
        "capture_user": False,
        "calls_carry_model": False,
        "metric_names": "otel",
        **schema,
    }
    return parse_config(data)


CONFIGS = {
    "seed": SEED,
    "today": today(),
    "today-auto": today(metric_names="auto"),
    "today-user": today(capture_user=True, calls_carry_model=True, metric_names="limitador"),
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True)


def write_rules(tmp_path: Path, config: Config) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(render_rule_file(rule_groups(config)))
    return path


def promtool_test(tmp_path: Path, rules: Path, tests: list[dict[str, Any]]) -> None:
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests})
    )
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_promtool_accepts_the_rules_of_each_schema(tmp_path: Path, name: str) -> None:
    path = write_rules(tmp_path, CONFIGS[name])
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = [
        r["alert"]
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert "MaaSUsageSeriesHigh" in alerts
    # Per-user quota alerts only where usage per user is recorded.
    assert ("MaaSUserNearQuota" in alerts) == CONFIGS[name].contract.user


def usage(name: str, subscription: str, cost_center: str, values: str) -> dict[str, str]:
    labels = {
        "limitador_namespace": "maas/tokens",
        "subscription": subscription,
        "organization_id": "acme",
        "cost_center": cost_center,
    }
    if name.startswith("authorized_hits"):
        labels["model"] = "granite-8b"
    return series(name, labels, values)


def test_cardinality_alert_fires_above_the_threshold(tmp_path: Path) -> None:
    config = today(max_usage_series=3)
    rules = write_rules(tmp_path, config)
    few = [usage("authorized_hits_total", "free", "cc-1", "0+1x40")]
    many = few + [usage("authorized_calls_total", "free", f"cc-{i}", "0+1x40") for i in range(1, 4)]
    fired = {
        "exp_labels": {"severity": "warning"},
        "exp_annotations": {
            "summary": "The usage counters have more series than planned",
            "description": (
                "4 series of the usage counters (threshold 3, schema.max_usage_series). Each "
                "captured label value multiplies them: consider schema.capture_user: false or "
                "fewer attribution labels."
            ),
        },
    }
    promtool_test(
        tmp_path,
        rules,
        [
            {
                "interval": "1m",
                "input_series": many,
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "MaaSUsageSeriesHigh", "exp_alerts": []},
                    {"eval_time": "16m", "alertname": "MaaSUsageSeriesHigh", "exp_alerts": [fired]},
                ],
            },
            {
                "interval": "1m",
                "input_series": few,
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "MaaSUsageSeriesHigh", "exp_alerts": []}
                ],
            },
        ],
    )


def test_limited_ratio_alert_reads_todays_names_by_subscription(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, today())
    labels = {"limitador_namespace": "maas/tokens", "subscription": "free"}
    description = (
        "50% of the policy checks in namespace maas/tokens for subscription free were limited "
        "over the last 5m (threshold 20%)."
    )
    promtool_test(
        tmp_path,
        rules,
        [
            {
                "interval": "1m",
                "input_series": [
                    usage("authorized_calls_total", "free", "cc-1", "0+10x30"),
                    usage("limited_calls_total", "free", "cc-1", "0+10x30"),
                    usage("authorized_calls_total", "premium", "cc-1", "0+10x30"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "MaaSHighLimitedRatio",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", **labels},
                                "exp_annotations": {
                                    "summary": "Many requests of subscription free are rate-limited",
                                    "description": description,
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    )


def test_todays_recording_rules_keep_subscription_and_cost_centre(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, today())
    hits = "namespace_subscription_organization_id_cost_center_model:authorized_hits:increase1m"
    calls = "namespace_subscription_organization_id_cost_center:authorized_calls:increase1m"
    base = {
        "limitador_namespace": "maas/tokens",
        "subscription": "free",
        "organization_id": "acme",
    }
    promtool_test(
        tmp_path,
        rules,
        [
            {
                "interval": "15s",
                "input_series": [
                    usage("authorized_hits_total", "free", "cc-1", "0+25x40"),
                    usage("authorized_hits_total", "free", "cc-2", "0+5x40"),
                    usage("authorized_calls_total", "free", "cc-1", "0+1x40"),
                ],
                "promql_expr_test": [
                    {
                        "expr": hits,
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": _labels(
                                    hits, {**base, "cost_center": "cc-1", "model": "granite-8b"}
                                ),
                                "value": 100,
                            },
                            {
                                "labels": _labels(
                                    hits, {**base, "cost_center": "cc-2", "model": "granite-8b"}
                                ),
                                "value": 20,
                            },
                        ],
                    },
                    {
                        "expr": calls,
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": _labels(calls, {**base, "cost_center": "cc-1"}), "value": 4}
                        ],
                    },
                ],
            }
        ],
    )


def _labels(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def test_auto_names_never_add_both_up(tmp_path: Path) -> None:
    """The dashboard's total and by-subscription hits with `auto`, on promtool's engine.

    free's series exists under both names (counted once), premium's only under
    Limitador's (still counted), in the total as in the breakdown.
    """
    config = today(metric_names="auto")
    catalogue = build_catalogue(config)
    rules = tmp_path / "empty.yml"
    rules.write_text("groups: []\n")

    def query(key: str) -> str:
        return expand(
            catalogue.panel(key).targets[0].expr,
            Selection(),
            600,
            60,
            variables=catalogue.variables,
        )

    both = [  # the same traffic through an OTel collector and scraped from Limitador directly
        usage("authorized_hits_total", "free", "cc-1", "0+10x20"),
        usage("authorized_hits", "free", "cc-1", "0+10x20"),
        # premium only under Limitador's name (e.g. before the collector was deployed)
        usage("authorized_hits", "premium", "cc-1", "0+3x20"),
    ]
    promtool_test(
        tmp_path,
        rules,
        [
            {
                "interval": "1m",
                "input_series": both,
                "promql_expr_test": [
                    {
                        "expr": query("hits_by_tier"),
                        "eval_time": "20m",
                        "exp_samples": [
                            {"labels": '{subscription="free"}', "value": 100},
                            {"labels": '{subscription="premium"}', "value": 30},
                        ],
                    },
                    {
                        "expr": query("total_hits"),
                        "eval_time": "20m",
                        "exp_samples": [{"labels": "{}", "value": 130}],
                    },
                ],
            }
        ],
    )


LIMITADOR_NAME = re.compile(
    r"(?<![:\w\"])(authorized_hits|authorized_calls|limited_calls)(?![\w:\"])"
)
"""Limitador's suffix-less name as a metric (not in a recording rule's `level:name:op`, nor a
quoted marker value)."""


@pytest.mark.parametrize("capture_user", [False, True])
def test_with_otel_names_no_consumer_reads_limitadors_names(
    tmp_path: Path, capture_user: bool
) -> None:
    """Every panel, variable, rule, alert and report query of an `otel` schema reads `*_total`."""
    config = today(capture_user=capture_user)
    texts = [render_rule_file(rule_groups(config))]
    for rules in (False, True):
        catalogue = build_catalogue(config, recording_rules=rules)
        texts += [t.expr for p in catalogue.panels for t in p.targets]
        texts += [v.match or v.expr for v in catalogue.variables]
    request = ReportRequest(
        range=TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)),
        by=("subscription",),
        schema=config.contract,
    )
    texts += [
        expr
        for c in (TOKENS, ALLOWED, LIMITED_CALLS)
        for _, expr in window_exprs(config, request, c, 3600)
    ]
    assert sum("authorized_hits_total" in t for t in texts) > 10
    offending = [t for t in texts if LIMITADOR_NAME.search(t)]
    assert offending == []
