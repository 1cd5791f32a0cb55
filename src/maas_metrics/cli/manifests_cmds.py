"""`maas-metrics manifests`: Kubernetes and Kuadrant objects generated from the config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from maas_metrics.cli.alert_options import (
    LimitedRatioOption,
    LimiterJobOption,
    NearQuotaOption,
    alert_settings,
)
from maas_metrics.cli.common import ConfigOption, fail, load_config_or_exit

if TYPE_CHECKING:
    from maas_metrics.manifests.kuadrant import Manifest


OutputDirOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Directory to write one YAML file per object into (numbered in apply order); "
        "default: one multi-document YAML stream on stdout.",
    ),
]
NamespaceOption = Annotated[
    str, typer.Option(help="Namespace of the gateway, its Redis and the PrometheusRule.")
]
ImageOption = Annotated[
    str | None,
    typer.Option(help="Container image of maas-metrics for the gateway Deployment."),
]
ReplicasOption = Annotated[
    int, typer.Option(help="Gateway replicas (they share counters in Redis).")
]
GatewayNameOption = Annotated[
    str, typer.Option(help="The Gateway API Gateway the Kuadrant policies target.")
]
GatewayNamespaceOption = Annotated[
    str, typer.Option(help="Namespace of that Gateway (policies live next to it).")
]
KuadrantNamespaceOption = Annotated[
    str, typer.Option(help="Namespace of Limitador (its Service limitador-limitador).")
]
PartOption = Annotated[
    list[str] | None,
    typer.Option(
        "--part",
        help="Only these parts (repeatable): monitoring (ServiceMonitors, PrometheusRule), "
        "kuadrant (TelemetryPolicy, RateLimitPolicy, TokenRateLimitPolicy), gateway "
        "(ConfigMap, Deployment, Service, Redis). Default: all.",
    ),
]


def manifests(
    config: ConfigOption,
    output: OutputDirOption = None,
    namespace: NamespaceOption = "maas",
    image: ImageOption = None,
    replicas: ReplicasOption = 2,
    gateway_name: GatewayNameOption = "maas-default-gateway",
    gateway_namespace: GatewayNamespaceOption = "openshift-ingress",
    kuadrant_namespace: KuadrantNamespaceOption = "kuadrant-system",
    part: PartOption = None,
    limited_ratio: LimitedRatioOption = 0.2,
    near_quota: NearQuotaOption = 0.9,
    limiter_job: LimiterJobOption = None,
) -> None:
    """Kubernetes manifests generated from the config.

    Monitoring: a ServiceMonitor for Limitador (Service limitador-limitador,
    port http, /metrics) and one for the gateway, and a PrometheusRule with
    the rules of `maas-metrics rules`. Kuadrant: a TelemetryPolicy adding the
    user, tier and model labels to Limitador's metrics, and a RateLimitPolicy
    and a TokenRateLimitPolicy with each tier's limits and windows, counted
    per user. Gateway (for teams not on Kuadrant): the config as a ConfigMap,
    the gateway Deployment and Service, and a Redis the replicas share.
    Apply with `kubectl apply -f -` (stdout) or `kubectl apply -f DIR`.
    """
    from maas_metrics.manifests import PARTS, ManifestOptions, build_manifests

    cfg = load_config_or_exit(config)
    settings = alert_settings(limited_ratio, near_quota, limiter_job)
    parts = tuple(part) if part else PARTS
    for p in parts:
        if p not in PARTS:
            fail(f"--part {p!r}: choose from {', '.join(PARTS)}")
    try:
        options = ManifestOptions(
            namespace=namespace,
            replicas=replicas,
            gateway_name=gateway_name,
            gateway_namespace=gateway_namespace,
            kuadrant_namespace=kuadrant_namespace,
            parts=parts,  # type: ignore[arg-type]
            alerts=settings,
            **({"image": image} if image else {}),
        )
    except ValueError as error:
        fail(str(error))
    _write(build_manifests(cfg, options), output)


def _write(objects: list[Manifest], output: Path | None) -> None:
    """One YAML stream on stdout, or one file per object in `output`."""
    from maas_metrics.manifests import render_yaml, write_directory

    if output is None:
        sys.stdout.write(render_yaml(objects))
        return
    try:
        paths = write_directory(objects, output)
    except OSError as error:
        fail(f"cannot write to {output}: {error.strerror}")
    print(f"wrote {len(paths)} manifests to {output}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("manifests")(manifests)
