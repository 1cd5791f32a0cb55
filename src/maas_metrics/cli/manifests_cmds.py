"""`maas-metrics manifests`: Kubernetes and Kuadrant objects generated from the config."""

from __future__ import annotations

import sys
from collections.abc import Sequence
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
    from maas_metrics.config import Config
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
    typer.Option(
        help="Container image of maas-metrics for the gateway Deployment (required for the "
        "gateway part: there is no default)."
    ),
]
UpstreamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--upstream",
        help="MODEL=URL: the model's OpenAI-compatible base URL as the gateway pods reach it "
        "(repeatable); replaces the config's upstream in the ConfigMap.",
    ),
]
AllowLoopbackOption = Annotated[
    bool,
    typer.Option(
        "--allow-loopback-upstreams",
        help="Accept upstreams on 127.0.0.0/8, ::1 or localhost (a model in the same pod).",
    ),
]
LimitadorMonitorOption = Annotated[
    bool,
    typer.Option(
        "--limitador-monitor/--no-limitador-monitor",
        help="Generate a ServiceMonitor for Limitador. Turn it off when Kuadrant's own "
        "observability (Kuadrant CR spec.observability.enable) already scrapes Limitador "
        "with its PodMonitor: both would count every hit twice.",
    ),
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
        "kuadrant (TelemetryPolicy, AuthPolicy, TokenRateLimitPolicy, RateLimitPolicy; "
        "source kuadrant), gateway (ConfigMap, Deployment, Service, Redis; source gateway). "
        "Default: the parts of the config's source.",
    ),
]


def manifests(
    config: ConfigOption,
    output: OutputDirOption = None,
    namespace: NamespaceOption = "maas",
    image: ImageOption = None,
    replicas: ReplicasOption = 2,
    upstream: UpstreamOption = None,
    allow_loopback_upstreams: AllowLoopbackOption = False,
    gateway_name: GatewayNameOption = "maas-default-gateway",
    gateway_namespace: GatewayNamespaceOption = "openshift-ingress",
    kuadrant_namespace: KuadrantNamespaceOption = "kuadrant-system",
    limitador_monitor: LimitadorMonitorOption = True,
    part: PartOption = None,
    limited_ratio: LimitedRatioOption = 0.2,
    near_quota: NearQuotaOption = 0.9,
    limiter_job: LimiterJobOption = None,
) -> None:
    """Kubernetes manifests generated from the config, for its `source`.

    source gateway (our gateway produces the metrics): a ServiceMonitor for
    the gateway, a PrometheusRule with the rules of `maas-metrics rules`, the
    config as a ConfigMap (upstreams from --upstream; loopback ones refused),
    the gateway Deployment and Service (--image required) and a Redis the
    replicas share. source kuadrant (Limitador produces them): a
    ServiceMonitor for Limitador (unless --no-limitador-monitor), the
    PrometheusRule, a TelemetryPolicy adding user, tier and model (from the
    response body) labels, an AuthPolicy putting userid and tier on the
    identity, and one TokenRateLimitPolicy per token route and one
    RateLimitPolicy per request route, so tokens never mix with requests.
    Apply with `kubectl apply -f -` (stdout) or `kubectl apply -f DIR`.
    """
    from maas_metrics.manifests import PARTS, ManifestError, ManifestOptions, build_manifests
    from maas_metrics.manifests.gateway import UpstreamError

    cfg = load_config_or_exit(config)
    settings = alert_settings(limited_ratio, near_quota, limiter_job)
    for p in part or ():
        if p not in PARTS:
            fail(f"--part {p!r}: choose from {', '.join(PARTS)}", code=2)
    try:
        options = ManifestOptions(
            namespace=namespace,
            image=image,
            replicas=replicas,
            gateway_name=gateway_name,
            gateway_namespace=gateway_namespace,
            kuadrant_namespace=kuadrant_namespace,
            parts=tuple(part) if part else None,  # type: ignore[arg-type]
            alerts=settings,
            upstreams=_upstreams(upstream or ()),
            allow_loopback_upstreams=allow_loopback_upstreams,
            limitador_monitor=limitador_monitor,
        )
        objects = build_manifests(cfg, options)
    except (ManifestError, UpstreamError) as error:
        fail(str(error), code=2)
    except ValueError as error:
        fail(str(error))
    _note_unenforced(cfg, objects)
    _write(objects, output)


def _upstreams(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`MODEL=URL` options as pairs; a malformed one fails with one line."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            fail(f"--upstream {item!r}: write MODEL=URL", code=2)
        pairs.append((name, url))
    return tuple(pairs)


def _note_unenforced(cfg: Config, objects: list[Manifest]) -> None:
    """Say on stderr what Kuadrant cannot enforce, and which request limits have no RateLimitPolicy."""
    from maas_metrics.manifests.kuadrant import (
        unenforced_request_limits,
        without_kuadrant_equivalent,
    )

    if any(o["kind"] == "TokenRateLimitPolicy" for o in objects):
        for note in without_kuadrant_equivalent(cfg):
            print(f"note: {note}", file=sys.stderr)
    skipped = unenforced_request_limits(cfg) if cfg.source == "kuadrant" else []
    if skipped and any(o["kind"] == "TelemetryPolicy" for o in objects):
        print(
            f"note: no RateLimitPolicy for the request limits of {', '.join(skipped)}: "
            "kuadrant.request_routes is empty (token policy only, so request hits never mix "
            "with token counts)",
            file=sys.stderr,
        )


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
