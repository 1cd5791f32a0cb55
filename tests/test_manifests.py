"""`maas-metrics manifests`: the YAML parses and every field carries the config's tiers, limits,
windows and labels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config, parse_config
from tests.conftest import EXAMPLE_CONFIG

runner = CliRunner()

#: Kuadrant's `rates[].window` pattern (RateLimitPolicy / TokenRateLimitPolicy CRDs).
KUADRANT_WINDOW = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")

#: A config whose windows and names exercise the window format and a fourth tier.
CONFIG: dict[str, Any] = {
    "tiers": [
        {
            "name": "free",
            "level": 0,
            "groups": ["system:authenticated"],
            "price_per_hit": 0.005,
            "request_limit": {"max": 5, "window_seconds": 120},
            "token_limit": {"max": 100, "window_seconds": 60},
        },
        {
            "name": "premium",
            "level": 1,
            "groups": ["premium-users"],
            "price_per_hit": 0.008,
            "request_limit": {"max": 20, "window_seconds": 90},
            "token_limit": {"max": 50000, "window_seconds": 3600},
        },
        {
            "name": "enterprise",
            "level": 2,
            "groups": ["enterprise-users"],
            "price_per_hit": 0.01,
            "token_limit": {"max": 100000, "window_seconds": 86400},
        },
        {
            "name": "research",
            "level": 3,
            "groups": ["researchers"],
            "price_per_hit": 0.002,
            "request_limit": {"max": 7, "window_seconds": 3725},
        },
    ],
    "models": [{"name": "granite-8b", "upstream": "http://granite:8000/v1"}],
    "api_keys": [{"user": "alice", "groups": ["system:authenticated"], "sha256": "a" * 64}],
    "namespaces": {"requests": "team-a/requests", "tokens": "team-a/tokens"},
    "gateway": {"port": 9000},
}

# Written out by hand: seconds -> Kuadrant window.
EXPECTED_WINDOWS = {60: "1m", 90: "1m30s", 120: "2m", 3600: "1h", 3725: "1h2m5s", 86400: "24h"}


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(CONFIG)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "maas.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def generate(config_file: Path, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["manifests", "--config", str(config_file), *args])
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


@pytest.fixture(scope="module")
def docs(config_file: Path) -> list[dict[str, Any]]:
    return generate(
        config_file,
        "--namespace",
        "llm-gw",
        "--image",
        "registry.example/maas:1.2",
        "--gateway-name",
        "ai-gw",
        "--gateway-namespace",
        "gw-system",
        "--replicas",
        "3",
    )


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def test_every_object_is_present_once(docs: list[dict[str, Any]]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted(
        [
            ("Namespace", "llm-gw"),
            ("ServiceMonitor", "limitador-limitador"),
            ("ServiceMonitor", "maas-gateway"),
            ("PrometheusRule", "maas-metrics"),
            ("TelemetryPolicy", "maas-telemetry"),
            ("RateLimitPolicy", "maas-request-limits"),
            ("TokenRateLimitPolicy", "maas-token-limits"),
            ("ConfigMap", "maas-metrics-config"),
            ("Deployment", "maas-redis"),
            ("Service", "maas-redis"),
            ("Deployment", "maas-gateway"),
            ("Service", "maas-gateway"),
        ]
    )
    assert docs[0]["kind"] == "Namespace"


def test_limitador_service_monitor(docs: list[dict[str, Any]]) -> None:
    sm = one(docs, "ServiceMonitor", "limitador-limitador")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == "kuadrant-system"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["kuadrant-system"]}
    # The labels the Limitador Operator sets on its Service limitador-limitador.
    assert sm["spec"]["selector"] == {
        "matchLabels": {"app": "limitador", "limitador-resource": "limitador"}
    }
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_gateway_service_monitor_selects_the_gateway_service(docs: list[dict[str, Any]]) -> None:
    sm = one(docs, "ServiceMonitor", "maas-gateway")
    service = one(docs, "Service", "maas-gateway")
    assert sm["metadata"]["namespace"] == "llm-gw"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["llm-gw"]}
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    port_names = [p["name"] for p in service["spec"]["ports"]]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]  # the operator listener
    assert "metrics" in port_names
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_telemetry_policy_adds_user_tier_and_model(docs: list[dict[str, Any]]) -> None:
    tp = one(docs, "TelemetryPolicy")
    assert tp["apiVersion"] == "extensions.kuadrant.io/v1alpha1"
    assert tp["metadata"]["namespace"] == "gw-system"
    assert tp["spec"]["targetRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "ai-gw",
    }
    assert tp["spec"]["metrics"]["default"]["labels"] == {
        "user": "auth.identity.userid",
        "tier": "auth.identity.tier",
        "model": 'requestBodyJSON("/model")',
    }


def check_limits(policy: dict[str, Any], config: Config, kind: str) -> None:
    spec_limits = policy["spec"]["limits"]
    expected = {}
    for tier in config.tiers:
        spec = tier.request_limit if kind == "requests" else tier.token_limit
        if spec is not None:
            expected[f"{tier.name}-{kind}"] = (
                tier.name,
                spec.max,
                EXPECTED_WINDOWS[spec.window_seconds],
            )
    assert set(spec_limits) == set(expected)
    for name, (tier_name, maximum, window) in expected.items():
        limit = spec_limits[name]
        assert limit["rates"] == [{"limit": maximum, "window": window}]
        assert KUADRANT_WINDOW.match(limit["rates"][0]["window"])
        assert limit["when"] == [{"predicate": f'auth.identity.tier == "{tier_name}"'}]
        assert limit["counters"] == [{"expression": "auth.identity.userid"}]
    assert policy["metadata"]["namespace"] == "gw-system"
    assert policy["spec"]["targetRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "ai-gw",
    }


def test_rate_limit_policy_has_each_tiers_request_limit(
    docs: list[dict[str, Any]], config: Config
) -> None:
    rlp = one(docs, "RateLimitPolicy")
    assert rlp["apiVersion"] == "kuadrant.io/v1"
    check_limits(rlp, config, "requests")
    assert set(rlp["spec"]["limits"]) == {"free-requests", "premium-requests", "research-requests"}


def test_token_rate_limit_policy_has_each_tiers_token_limit(
    docs: list[dict[str, Any]], config: Config
) -> None:
    trlp = one(docs, "TokenRateLimitPolicy")
    assert trlp["apiVersion"] == "kuadrant.io/v1alpha1"
    check_limits(trlp, config, "tokens")
    assert set(trlp["spec"]["limits"]) == {"free-tokens", "premium-tokens", "enterprise-tokens"}


def test_prometheus_rule_carries_the_alerts_for_every_limit(docs: list[dict[str, Any]]) -> None:
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "llm-gw"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    records = [r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert records
    quota = {
        r["labels"]["limit_name"]: r["expr"] for r in alerts if r["alert"] == "MaaSUserNearQuota"
    }
    assert set(quota) == {
        "free-requests",
        "free-tokens",
        "premium-requests",
        "premium-tokens",
        "enterprise-tokens",
        "research-requests",
    }
    assert 'limitador_namespace="team-a/requests",tier="premium"' in quota["premium-requests"]
    assert "[90s]" in quota["premium-requests"]
    assert 'limitador_namespace="team-a/tokens",tier="enterprise"' in quota["enterprise-tokens"]
    assert "[86400s]" in quota["enterprise-tokens"]
    ratio = next(r for r in alerts if r["alert"] == "MaaSHighLimitedRatio")
    assert 'limitador_namespace=~"team\\\\-a/requests|team\\\\-a/tokens"' in ratio["expr"]
    assert {r["alert"] for r in alerts} >= {"MaaSRateLimiterDown", "MaaSCounterStorePartitioned"}


def test_config_map_holds_the_config_pointing_at_the_bundled_redis(
    docs: list[dict[str, Any]], config: Config
) -> None:
    cm = one(docs, "ConfigMap", "maas-metrics-config")
    deployed = parse_config(yaml.safe_load(cm["data"]["maas.yaml"]))
    redis = one(docs, "Service", "maas-redis")
    redis_port = redis["spec"]["ports"][0]["port"]
    assert deployed.storage.url == f"redis://maas-redis.llm-gw.svc:{redis_port}/0"
    assert deployed.gateway.host == "0.0.0.0"
    # Everything else is the config as given: tiers, limits, prices, keys, namespaces.
    assert deployed.tiers == config.tiers
    assert deployed.models == config.models
    assert deployed.api_keys == config.api_keys
    assert deployed.namespaces == config.namespaces
    assert deployed.gateway.port == config.gateway.port == 9000


def test_gateway_deployment_runs_the_config_and_serves_the_service(
    docs: list[dict[str, Any]],
) -> None:
    dep = one(docs, "Deployment", "maas-gateway")
    svc = one(docs, "Service", "maas-gateway")
    spec = dep["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/maas:1.2"
    assert container["command"] == ["maas-metrics"]
    mount = container["volumeMounts"][0]
    volume = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "maas-metrics-config"
    assert container["args"] == ["gateway", "--config", f"{mount['mountPath']}/maas.yaml"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 9000},
        {"name": "metrics", "containerPort": 8081},  # the operator listener: /metrics, /healthz
    ]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["ports"][0]["port"] == 9000
    assert svc["spec"]["ports"][1] == {
        "name": "metrics",
        "port": 8081,
        "targetPort": "metrics",
        "protocol": "TCP",
    }
    # Probes use the operator listener, which a flood of API connections cannot fill.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_redis_deployment_backs_the_redis_service(docs: list[dict[str, Any]]) -> None:
    dep = one(docs, "Deployment", "maas-redis")
    svc = one(docs, "Service", "maas-redis")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "redis:7-alpine"
    assert svc["spec"]["ports"][0]["targetPort"] in [p["name"] for p in container["ports"]]
    assert all(d["metadata"]["namespace"] == "llm-gw" for d in (dep, svc))


def test_example_config_and_parts(tmp_path: Path) -> None:
    kuadrant = generate(EXAMPLE_CONFIG, "--part", "kuadrant")
    assert sorted(d["kind"] for d in kuadrant) == [
        "RateLimitPolicy",
        "TelemetryPolicy",
        "TokenRateLimitPolicy",
    ]
    rlp = one(kuadrant, "RateLimitPolicy")
    # The reference limits: 5 / 20 / 50 requests per 2 minutes; 100 / 50,000 / 100,000 tokens per minute.
    assert {k: v["rates"] for k, v in rlp["spec"]["limits"].items()} == {
        "free-requests": [{"limit": 5, "window": "2m"}],
        "premium-requests": [{"limit": 20, "window": "2m"}],
        "enterprise-requests": [{"limit": 50, "window": "2m"}],
    }
    trlp = one(kuadrant, "TokenRateLimitPolicy")
    assert {k: v["rates"] for k, v in trlp["spec"]["limits"].items()} == {
        "free-tokens": [{"limit": 100, "window": "1m"}],
        "premium-tokens": [{"limit": 50000, "window": "1m"}],
        "enterprise-tokens": [{"limit": 100000, "window": "1m"}],
    }
    out = tmp_path / "out"
    result = runner.invoke(app, ["manifests", "--config", str(EXAMPLE_CONFIG), "-o", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert files[0].name == "01-namespace-maas.yaml"
    written = [yaml.safe_load(f.read_text()) for f in files]
    assert written == generate(EXAMPLE_CONFIG)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--namespace", "Not_Valid"],
            "error: namespace 'Not_Valid' is not a valid Kubernetes namespace",
        ),
        (["--replicas", "0"], "error: replicas must be at least 1"),
        (
            ["--part", "grafana"],
            "error: --part 'grafana': choose from monitoring, kuadrant, gateway",
        ),
    ],
)
def test_bad_options_give_one_line_and_fail(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["manifests", "--config", str(EXAMPLE_CONFIG), *args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
