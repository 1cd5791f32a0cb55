"""`maas-metrics manifests`: the YAML parses and every field carries the config's tiers, limits,
windows and labels, for each source (`gateway`: our gateway; `kuadrant`: Limitador on Kuadrant)."""

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

#: The same tiers on Kuadrant: two routes with the token policy, one with the request policy.
KUADRANT_CONFIG: dict[str, Any] = {
    **CONFIG,
    "source": "kuadrant",
    "kuadrant": {
        "token_routes": ["llm/granite-8b", "llm-b/mistral"],
        "request_routes": ["llm/admin-api"],
    },
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


@pytest.fixture(scope="module")
def kuadrant_config(config_file: Path) -> Config:
    return parse_config(KUADRANT_CONFIG)


@pytest.fixture(scope="module")
def kuadrant_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "maas-kuadrant.yaml"
    path.write_text(yaml.safe_dump(KUADRANT_CONFIG))
    return path


def generate(config_file: Path, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["manifests", "--config", str(config_file), *args])
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


COMMON = ("--namespace", "llm-gw", "--gateway-name", "ai-gw", "--gateway-namespace", "gw-system")


@pytest.fixture(scope="module")
def docs(config_file: Path) -> list[dict[str, Any]]:
    """Source gateway: our gateway, its Redis and monitoring."""
    return generate(config_file, *COMMON, "--image", "registry.example/maas:1.2", "--replicas", "3")


@pytest.fixture(scope="module")
def kdocs(kuadrant_file: Path) -> list[dict[str, Any]]:
    """Source kuadrant: Limitador's monitoring and the Kuadrant policies."""
    return generate(kuadrant_file, *COMMON)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def test_every_object_is_present_once(
    docs: list[dict[str, Any]], kdocs: list[dict[str, Any]]
) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted(
        [
            ("Namespace", "llm-gw"),
            ("ServiceMonitor", "maas-gateway"),
            ("PrometheusRule", "maas-metrics"),
            ("ConfigMap", "maas-metrics-config"),
            ("Deployment", "maas-redis"),
            ("Service", "maas-redis"),
            ("Deployment", "maas-gateway"),
            ("Service", "maas-gateway"),
        ]
    )
    assert docs[0]["kind"] == "Namespace"
    placed = sorted(
        (d["kind"], d["metadata"]["namespace"], d["metadata"]["name"])
        for d in kdocs
        if d["kind"] != "Namespace"
    )
    assert placed == sorted(
        [
            ("ServiceMonitor", "kuadrant-system", "limitador-limitador"),
            ("PrometheusRule", "llm-gw", "maas-metrics"),
            ("TelemetryPolicy", "gw-system", "maas-telemetry"),
            ("AuthPolicy", "gw-system", "maas-auth"),
            ("TokenRateLimitPolicy", "llm", "maas-token-limits-granite-8b"),
            ("TokenRateLimitPolicy", "llm-b", "maas-token-limits-mistral"),
            ("RateLimitPolicy", "llm", "maas-request-limits-admin-api"),
        ]
    )
    # Our namespace (for the PrometheusRule) is created first; Namespaces have no namespace.
    assert kdocs[0]["kind"] == "Namespace"
    assert [d["metadata"]["name"] for d in kdocs if d["kind"] == "Namespace"] == ["llm-gw"]


def test_limitador_service_monitor(kdocs: list[dict[str, Any]], kuadrant_file: Path) -> None:
    sm = one(kdocs, "ServiceMonitor", "limitador-limitador")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == "kuadrant-system"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["kuadrant-system"]}
    # The labels the Limitador Operator sets on its Service limitador-limitador.
    assert sm["spec"]["selector"] == {
        "matchLabels": {"app": "limitador", "limitador-resource": "limitador"}
    }
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    # Kuadrant's own observability already scrapes Limitador: no second scrape, no double count.
    without = generate(kuadrant_file, *COMMON, "--no-limitador-monitor")
    assert [d for d in without if d["kind"] == "ServiceMonitor"] == []
    assert len(without) == len(kdocs) - 1


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


def test_telemetry_policy_takes_model_from_the_response_body(kdocs: list[dict[str, Any]]) -> None:
    tp = one(kdocs, "TelemetryPolicy")
    assert tp["apiVersion"] == "extensions.kuadrant.io/v1alpha1"
    assert tp["metadata"]["namespace"] == "gw-system"
    assert tp["spec"]["targetRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "ai-gw",
    }
    # Kuadrant evaluates body expressions in the response phase only: requestBodyJSON is unsupported.
    assert tp["spec"]["metrics"]["default"]["labels"] == {
        "user": "auth.identity.userid",
        "tier": "auth.identity.tier",
        "model": 'responseBodyJSON("/model")',
    }
    assert "requestBodyJSON" not in yaml.safe_dump(kdocs)


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


def routes_of(docs: list[dict[str, Any]], kind: str) -> set[str]:
    found = set()
    for d in docs:
        if d["kind"] == kind:
            target = d["spec"]["targetRef"]
            assert target["group"] == "gateway.networking.k8s.io"
            assert target["kind"] == "HTTPRoute"
            found.add(f"{d['metadata']['namespace']}/{target['name']}")
    return found


def test_each_policy_targets_its_own_routes_so_tokens_never_mix_with_requests(
    kdocs: list[dict[str, Any]], kuadrant_config: Config
) -> None:
    token_routes = routes_of(kdocs, "TokenRateLimitPolicy")
    request_routes = routes_of(kdocs, "RateLimitPolicy")
    assert token_routes == {"llm/granite-8b", "llm-b/mistral"}
    assert request_routes == {"llm/admin-api"}
    # Kuadrant's limitador_namespace is the route: no namespace gets both policies' hits.
    assert not token_routes & request_routes


def test_rate_limit_policy_has_each_tiers_request_limit(
    kdocs: list[dict[str, Any]], kuadrant_config: Config
) -> None:
    rlp = one(kdocs, "RateLimitPolicy")
    assert rlp["apiVersion"] == "kuadrant.io/v1"
    check_limits(rlp, kuadrant_config, "requests")
    assert set(rlp["spec"]["limits"]) == {"free-requests", "premium-requests", "research-requests"}


def test_token_rate_limit_policy_has_each_tiers_token_limit(
    kdocs: list[dict[str, Any]], kuadrant_config: Config
) -> None:
    for name in ("maas-token-limits-granite-8b", "maas-token-limits-mistral"):
        trlp = one(kdocs, "TokenRateLimitPolicy", name)
        assert trlp["apiVersion"] == "kuadrant.io/v1alpha1"
        check_limits(trlp, kuadrant_config, "tokens")
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


KUADRANT_EXAMPLE = EXAMPLE_CONFIG.parent / "maas-kuadrant.yaml"


def test_example_configs_and_parts(tmp_path: Path) -> None:
    kuadrant = generate(KUADRANT_EXAMPLE, "--part", "kuadrant")
    assert sorted(d["kind"] for d in kuadrant) == [
        "AuthPolicy",
        "TelemetryPolicy",
        "TokenRateLimitPolicy",
        "TokenRateLimitPolicy",
    ]
    # The reference limits: 100 / 50,000 / 100,000 tokens per minute, on each token route.
    for trlp in (d for d in kuadrant if d["kind"] == "TokenRateLimitPolicy"):
        assert {k: v["rates"] for k, v in trlp["spec"]["limits"].items()} == {
            "free-tokens": [{"limit": 100, "window": "1m"}],
            "premium-tokens": [{"limit": 50000, "window": "1m"}],
            "enterprise-tokens": [{"limit": 100000, "window": "1m"}],
        }
    out = tmp_path / "out"
    result = runner.invoke(app, ["manifests", "--config", str(KUADRANT_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    # Token policy only: the request limits are not silently dropped, the command says so.
    assert "note: no RateLimitPolicy for the request limits of free, premium, enterprise" in (
        result.stderr
    )
    files = sorted(out.iterdir())
    assert files[0].name == "01-namespace-maas.yaml"
    written = [yaml.safe_load(f.read_text()) for f in files]
    assert written == generate(KUADRANT_EXAMPLE)
    # The gateway example deploys our gateway; its upstreams are given for the cluster.
    upstreams = [f"--upstream={m}=http://{m}.llm.svc:8000/v1" for m in MODELS]
    gateway = generate(EXAMPLE_CONFIG, "--image", "quay.example/maas:0.1", *upstreams)
    assert {d["kind"] for d in gateway} == {
        "Namespace",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "Deployment",
        "Service",
    }


MODELS = ("granite-8b", "llama-3-8b", "mistral-7b")


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        (
            EXAMPLE_CONFIG,
            ["--namespace", "Not_Valid", "--image", "x:1"],
            "error: namespace 'Not_Valid' is not a valid Kubernetes namespace",
        ),
        (
            EXAMPLE_CONFIG,
            ["--replicas", "0", "--image", "x:1"],
            "error: replicas must be at least 1",
        ),
        (
            EXAMPLE_CONFIG,
            ["--part", "grafana"],
            "error: --part 'grafana': choose from monitoring, kuadrant, gateway",
        ),
        (
            EXAMPLE_CONFIG,
            ["--allow-loopback-upstreams"],
            "error: --image is required for the gateway part",
        ),
        (
            EXAMPLE_CONFIG,
            ["--part", "kuadrant"],
            "error: part 'kuadrant' does not fit source 'gateway'",
        ),
        (KUADRANT_EXAMPLE, ["--part", "gateway"], "error: part 'gateway' does not fit source"),
        (
            EXAMPLE_CONFIG,
            ["--image", "x:1", "--upstream", "gpt-5=http://gpt.svc/v1"],
            "error: --upstream gpt-5=http://gpt.svc/v1: no model 'gpt-5' in the config",
        ),
        (
            EXAMPLE_CONFIG,
            ["--image", "x:1", "--upstream", "granite-8b"],
            "error: --upstream 'granite-8b': write MODEL=URL",
        ),
        (
            EXAMPLE_CONFIG,
            ["--image", "x:1", "--upstream", "granite-8b=ftp://g/v1"],
            "error: --upstream granite-8b=ftp://g/v1: the URL must be http(s)://",
        ),
    ],
)
def test_bad_options_give_one_line_and_fail(config: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["manifests", "--config", str(config), *args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert result.stdout == ""
