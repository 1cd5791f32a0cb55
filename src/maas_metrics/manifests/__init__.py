"""Kubernetes manifests from the config: monitoring, Kuadrant policies and the gateway itself.

`build_manifests` returns plain dicts (one per Kubernetes object) in apply
order; `render_yaml` and `write_directory` turn them into files. Which parts
exist follows the config's `source`: with `gateway` our gateway produces the
metrics (monitoring + gateway); with `kuadrant` Limitador does (monitoring +
Kuadrant policies), and no gateway of ours is deployed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from maas_metrics.config import Config, Source
from maas_metrics.durations import DurationError, parse_duration
from maas_metrics.manifests import auth, gateway, kuadrant, monitoring
from maas_metrics.manifests.kuadrant import Manifest
from maas_metrics.rules.alerts import AlertSettings
from maas_metrics.rules.render import rule_groups
from maas_metrics.yamlio import dump

Part = Literal["monitoring", "kuadrant", "gateway"]
PARTS: tuple[Part, ...] = ("monitoring", "kuadrant", "gateway")
SOURCE_PARTS: dict[Source, tuple[Part, ...]] = {
    "gateway": ("monitoring", "gateway"),
    "kuadrant": ("monitoring", "kuadrant"),
}
"""The parts that make sense for each source: who produces the metrics is deployed, not both."""

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class ManifestOptions:
    namespace: str = "maas"
    """Namespace of the gateway, its Redis, its ServiceMonitor and the PrometheusRule."""
    image: str | None = None
    """The gateway's container image; required for the gateway part (no silent default)."""
    redis_image: str = "redis:7-alpine"
    replicas: int = 2
    kuadrant_namespace: str = "kuadrant-system"
    gateway_name: str = "maas-default-gateway"
    """The Gateway API Gateway the Kuadrant policies attach to."""
    gateway_namespace: str = "openshift-ingress"
    scrape_interval: str = "15s"
    parts: tuple[Part, ...] | None = None
    """None: every part of the config's source (`SOURCE_PARTS`)."""
    alerts: AlertSettings = field(default_factory=AlertSettings)
    upstreams: tuple[tuple[str, str], ...] = ()
    """(model, URL) pairs replacing the config's upstreams in the gateway's ConfigMap."""
    allow_loopback_upstreams: bool = False
    limitador_monitor: bool = True
    """False when Kuadrant's own observability already scrapes Limitador (its PodMonitor)."""

    def __post_init__(self) -> None:
        for name in ("namespace", "kuadrant_namespace", "gateway_namespace"):
            value = getattr(self, name)
            if not DNS_LABEL.match(value):
                raise ValueError(
                    f"{name.replace('_', '-')} {value!r} is not a valid Kubernetes namespace"
                )
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")
        try:
            parse_duration(self.scrape_interval, units=("ms", "s", "m", "h"))
        except DurationError:
            raise ValueError(
                f"scrape interval {self.scrape_interval!r} is not a duration like 15s"
            ) from None
        for part in self.parts or ():
            if part not in PARTS:
                raise ValueError(f"unknown part {part!r} (choose from {', '.join(PARTS)})")


class ManifestError(ValueError):
    """The manifests would be wrong for this config and these options; `str()` is one line."""


def parts_for(config: Config, options: ManifestOptions) -> tuple[Part, ...]:
    """The requested parts, refusing one that does not fit the config's source."""
    allowed = SOURCE_PARTS[config.source]
    if options.parts is None:
        return allowed
    for part in options.parts:
        if part not in allowed:
            raise ManifestError(
                f"part {part!r} does not fit source {config.source!r} "
                f"(its parts: {', '.join(allowed)}; set `source:` in the config)"
            )
    return options.parts


def build_manifests(config: Config, options: ManifestOptions | None = None) -> list[Manifest]:
    """Every object for the parts of the config's source, in apply order (our namespace first).

    Raises `ManifestError` (or `gateway.UpstreamError`) rather than writing an
    object that cannot work: a part the source does not use, a gateway without
    an explicit image, a loopback model upstream in a pod.
    """
    o = options or ManifestOptions()
    parts = parts_for(config, o)
    out: list[Manifest] = []
    if "monitoring" in parts:
        if config.source == "kuadrant" and o.limitador_monitor:
            out.append(
                monitoring.limitador_service_monitor(o.kuadrant_namespace, o.scrape_interval)
            )
        if "gateway" in parts:
            out.append(monitoring.gateway_service_monitor(o.namespace, o.scrape_interval))
        out.append(monitoring.prometheus_rule(o.namespace, rule_groups(config, o.alerts)))
    if "kuadrant" in parts:
        out.append(kuadrant.telemetry_policy(o.gateway_name, o.gateway_namespace, config))
        out.append(auth.auth_policy(config, o.gateway_name, o.gateway_namespace))
        out += kuadrant.token_rate_limit_policies(config)
        out += kuadrant.rate_limit_policies(config)
    if "gateway" in parts:
        if not o.image:
            raise ManifestError(
                "--image is required for the gateway part: the maas-metrics image your "
                "cluster pulls (e.g. registry.example/maas-metrics:0.1.0)"
            )
        deployed = gateway.deployed_models(
            config, dict(o.upstreams), allow_loopback=o.allow_loopback_upstreams
        )
        text = gateway.config_text(gateway.cluster_config(deployed, o.namespace))
        out += [
            gateway.config_map(text, o.namespace),
            gateway.redis_deployment(o.namespace, o.redis_image),
            gateway.redis_service(o.namespace),
            gateway.gateway_deployment(deployed, text, o.namespace, o.image, o.replicas),
            gateway.gateway_service(deployed, o.namespace),
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
    "SOURCE_PARTS",
    "ManifestError",
    "ManifestOptions",
    "Part",
    "build_manifests",
    "render_yaml",
    "write_directory",
]
