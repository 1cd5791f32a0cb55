"""Kubernetes manifests from the config: monitoring, Kuadrant policies and the gateway itself.

`build_manifests` returns plain dicts (one per Kubernetes object) in apply
order; `render_yaml` and `write_directory` turn them into files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from maas_metrics import __version__
from maas_metrics.config import Config
from maas_metrics.manifests import gateway, kuadrant, monitoring
from maas_metrics.manifests.kuadrant import Manifest
from maas_metrics.rules.alerts import AlertSettings
from maas_metrics.rules.render import rule_groups
from maas_metrics.yamlio import dump

Part = Literal["monitoring", "kuadrant", "gateway"]
PARTS: tuple[Part, ...] = ("monitoring", "kuadrant", "gateway")

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class ManifestOptions:
    namespace: str = "maas"
    """Namespace of the gateway, its Redis, its ServiceMonitor and the PrometheusRule."""
    image: str = f"maas-metrics:{__version__}"
    redis_image: str = "redis:7-alpine"
    replicas: int = 2
    kuadrant_namespace: str = "kuadrant-system"
    gateway_name: str = "maas-default-gateway"
    """The Gateway API Gateway the Kuadrant policies attach to."""
    gateway_namespace: str = "openshift-ingress"
    scrape_interval: str = "15s"
    parts: tuple[Part, ...] = PARTS
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def __post_init__(self) -> None:
        for name in ("namespace", "kuadrant_namespace", "gateway_namespace"):
            value = getattr(self, name)
            if not DNS_LABEL.match(value):
                raise ValueError(
                    f"{name.replace('_', '-')} {value!r} is not a valid Kubernetes namespace"
                )
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")
        if not re.fullmatch(r"([0-9]+(ms|s|m|h))+", self.scrape_interval):
            raise ValueError(f"scrape interval {self.scrape_interval!r} is not a duration like 15s")
        for part in self.parts:
            if part not in PARTS:
                raise ValueError(f"unknown part {part!r} (choose from {', '.join(PARTS)})")


def build_manifests(config: Config, options: ManifestOptions | None = None) -> list[Manifest]:
    """Every object for `options.parts`, in apply order (our namespace first)."""
    o = options or ManifestOptions()
    out: list[Manifest] = []
    if "monitoring" in o.parts:
        out.append(monitoring.limitador_service_monitor(o.kuadrant_namespace, o.scrape_interval))
        if "gateway" in o.parts:
            out.append(monitoring.gateway_service_monitor(o.namespace, o.scrape_interval))
        out.append(monitoring.prometheus_rule(o.namespace, rule_groups(config, o.alerts)))
    if "kuadrant" in o.parts:
        out.append(kuadrant.telemetry_policy(o.gateway_name, o.gateway_namespace))
        rlp = kuadrant.rate_limit_policy(config, o.gateway_name, o.gateway_namespace)
        trlp = kuadrant.token_rate_limit_policy(config, o.gateway_name, o.gateway_namespace)
        out.extend(p for p in (rlp, trlp) if p["spec"]["limits"])
    if "gateway" in o.parts:
        text = gateway.config_text(gateway.cluster_config(config, o.namespace))
        out += [
            gateway.config_map(text, o.namespace),
            gateway.redis_deployment(o.namespace, o.redis_image),
            gateway.redis_service(o.namespace),
            gateway.gateway_deployment(config, text, o.namespace, o.image, o.replicas),
            gateway.gateway_service(config, o.namespace),
        ]
    # Only our own namespace is created; Limitador's and the Gateway's exist already.
    if any(m["metadata"]["namespace"] == o.namespace for m in out):
        out.insert(0, _namespace(o.namespace))
    return out


def _namespace(name: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def render_yaml(manifests: Iterable[Manifest]) -> str:
    """One multi-document YAML stream (`kubectl apply -f -`)."""
    return "".join("---\n" + dump(m) for m in manifests)


def file_name(index: int, manifest: Manifest) -> str:
    kind = manifest["kind"].lower()
    return f"{index:02d}-{kind}-{manifest['metadata']['name']}.yaml"


def write_directory(manifests: list[Manifest], directory: Path) -> list[Path]:
    """One file per object, numbered in apply order (`kubectl apply -f DIR`)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, manifest in enumerate(manifests, start=1):
        path = directory / file_name(index, manifest)
        path.write_text(dump(manifest), encoding="utf-8")
        paths.append(path)
    return paths


__all__ = [
    "PARTS",
    "ManifestOptions",
    "Part",
    "build_manifests",
    "render_yaml",
    "write_directory",
]
