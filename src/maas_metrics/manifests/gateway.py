"""The gateway on Kubernetes for teams not on Kuadrant: Deployment, Service, ConfigMap and Redis.

The ConfigMap holds the very config the command was given (API keys are only
SHA-256 digests, so it holds no secret), with two changes a cluster needs:
the gateway listens on all interfaces, and counters live in the bundled
Redis so every replica enforces the same limits.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from maas_metrics.config import Config, OperatorListener
from maas_metrics.manifests.kuadrant import Manifest
from maas_metrics.manifests.monitoring import GATEWAY_SELECTOR, PART_OF
from maas_metrics.services import GATEWAY_SERVICE
from maas_metrics.yamlio import dump_plain

CONFIG_DIR = "/etc/maas-metrics"
CONFIG_FILE = "maas.yaml"
REDIS_NAME = "maas-redis"
REDIS_PORT = 6379
REDIS_SELECTOR = {"app.kubernetes.io/name": REDIS_NAME}


def redis_url(namespace: str) -> str:
    return f"redis://{REDIS_NAME}.{namespace}.svc:{REDIS_PORT}/0"


class UpstreamError(ValueError):
    """An upstream the gateway could not reach from its pod; `str()` is one line."""


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, 0.0.0.0/:: and localhost names: inside a pod, the pod itself."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def deployed_models(
    config: Config, upstreams: Mapping[str, str], allow_loopback: bool = False
) -> Config:
    """The config's models with `upstreams` (model -> URL) replacing theirs, checked for a pod.

    A loopback upstream (the example's `http://127.0.0.1:8001/v1`) would make
    every pod call itself, so it is refused unless `allow_loopback` (a sidecar).
    """
    known = {m.name for m in config.models}
    for name, url in upstreams.items():
        if name not in known:
            raise UpstreamError(
                f"--upstream {name}={url}: no model {name!r} in the config "
                f"(models: {', '.join(sorted(known))})"
            )
        if not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
            raise UpstreamError(f"--upstream {name}={url}: the URL must be http(s)://HOST[...]")
    models = [
        m.model_copy(update={"upstream": upstreams[m.name].rstrip("/")})
        if m.name in upstreams
        else m
        for m in config.models
    ]
    if not allow_loopback:
        for model in models:
            host = urlsplit(model.upstream).hostname or ""
            if is_loopback_host(host):
                raise UpstreamError(
                    f"model {model.name!r} has the loopback upstream {model.upstream}, which in a pod "
                    f"is the pod itself: pass --upstream {model.name}=URL (or "
                    "--allow-loopback-upstreams for a sidecar)"
                )
    return config.model_copy(update={"models": models})


LEDGER_SECRET = "maas-ledger"
"""Secret (key `url`) with the ledger's database URL: credentials never go into the ConfigMap."""
LEDGER_ENV = "MAAS_LEDGER_URL"
LEDGER_DIR = "/var/lib/maas-ledger"


def operator_port(config: Config) -> int:
    """The operator listener's (`/metrics`, `/healthz`) port in the cluster (never "any free")."""
    return config.gateway.operator.port or OperatorListener().port


def cluster_config(config: Config, namespace: str) -> Config:
    """The config as deployed: both listeners on 0.0.0.0, counters in the bundled Redis, and a
    configured ledger's URL read from the `maas-ledger` Secret, its spool on a pod volume."""
    operator = config.gateway.operator.model_copy(
        update={"host": None, "port": operator_port(config)}
    )
    update: dict[str, Any] = {
        "gateway": config.gateway.model_copy(update={"host": "0.0.0.0", "operator": operator}),
        "storage": config.storage.model_copy(update={"url": redis_url(namespace)}),
    }
    if config.ledger.enabled:
        update["ledger"] = config.ledger.model_copy(
            update={"url": None, "url_env": LEDGER_ENV, "spool_path": f"{LEDGER_DIR}/spool"}
        )
    return config.model_copy(update=update)


def config_text(config: Config) -> str:
    data = config.model_dump(mode="json", exclude_defaults=False)
    return dump_plain(data)


def _meta(name: str, namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**selector, **PART_OF}}


def config_map(text: str, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("maas-metrics-config", namespace, GATEWAY_SELECTOR),
        "data": {CONFIG_FILE: text},
    }


_SECURE = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def gateway_deployment(
    config: Config, text: str, namespace: str, image: str, replicas: int
) -> Manifest:
    port = config.gateway.port
    # Probes go to the operator listener: a flood of API connections never fails them.
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10}
    ledger_env: dict[str, Any] = {}
    ledger_mounts: list[dict[str, Any]] = []
    ledger_volumes: list[dict[str, Any]] = []
    if config.ledger.enabled:  # `cluster_config` points the ledger at this variable
        secret = {"secretKeyRef": {"name": LEDGER_SECRET, "key": "url"}}
        ledger_env = {"env": [{"name": LEDGER_ENV, "valueFrom": secret}]}
        ledger_mounts = [{"name": "ledger-spool", "mountPath": LEDGER_DIR}]
        ledger_volumes = [{"name": "ledger-spool", "emptyDir": {}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(GATEWAY_SERVICE, namespace, GATEWAY_SELECTOR),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(GATEWAY_SELECTOR)},
            "template": {
                "metadata": {
                    "labels": {**GATEWAY_SELECTOR, **PART_OF},
                    # A config change changes the pod template, so the pods roll.
                    "annotations": {
                        "maas-metrics/config-sha256": hashlib.sha256(text.encode()).hexdigest()
                    },
                },
                "spec": {
                    "containers": [
                        {
                            "name": "gateway",
                            "image": image,
                            "command": ["maas-metrics"],
                            "args": ["gateway", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
                            "ports": [
                                {"name": "http", "containerPort": port},
                                {"name": "metrics", "containerPort": operator_port(config)},
                            ],
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "failureThreshold": 6},
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": _SECURE,
                            "volumeMounts": [
                                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                *ledger_mounts,
                            ],
                            **ledger_env,
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "maas-metrics-config"}},
                        *ledger_volumes,
                    ],
                },
            },
        },
    }


def gateway_service(config: Config, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(GATEWAY_SERVICE, namespace, GATEWAY_SELECTOR),
        "spec": {
            "selector": dict(GATEWAY_SELECTOR),
            "ports": [
                {
                    "name": "http",
                    "port": config.gateway.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                },
                {
                    "name": "metrics",
                    "port": operator_port(config),
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }


def redis_deployment(namespace: str, image: str) -> Manifest:
    """One Redis holding only short-lived limit counters, so no persistence."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(REDIS_NAME, namespace, REDIS_SELECTOR),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(REDIS_SELECTOR)},
            "template": {
                "metadata": {"labels": {**REDIS_SELECTOR, **PART_OF}},
                "spec": {
                    "containers": [
                        {
                            "name": "redis",
                            "image": image,
                            "args": ["--save", "", "--appendonly", "no"],
                            "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                            "readinessProbe": {
                                "tcpSocket": {"port": "redis"},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                        }
                    ]
                },
            },
        },
    }


def redis_service(namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(REDIS_NAME, namespace, REDIS_SELECTOR),
        "spec": {
            "selector": dict(REDIS_SELECTOR),
            "ports": [
                {"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}
            ],
        },
    }
