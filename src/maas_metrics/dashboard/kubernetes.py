"""The dashboard wrapped for Kubernetes: a sidecar ConfigMap or a grafana-operator resource.

* `configmap`: a ConfigMap labelled `grafana_dashboard: "1"`, the label
  Grafana's Helm chart dashboard sidecar watches; the JSON is not importable
  (nothing rewrites `${DS_PROMETHEUS}`), so the datasource variable starts on
  Grafana's default Prometheus.
* `grafana-operator`: a `GrafanaDashboard` (grafana.integreatly.org/v1beta1)
  whose `datasources` maps the `DS_PROMETHEUS` input to a named datasource.
"""

from __future__ import annotations

from typing import Any

from maas_metrics.dashboard.grafana import DATASOURCE_INPUT, render_json
from maas_metrics.dashboard.model import Catalogue
from maas_metrics.yamlio import dump

SIDECAR_LABEL = "grafana_dashboard"
OPERATOR_API_VERSION = "grafana.integreatly.org/v1beta1"


def _dump(document: dict[str, Any]) -> str:
    return dump(document, width=1_000_000)


def _labels(catalogue: Catalogue) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "maas-metrics",
        "app.kubernetes.io/component": "dashboard",
        "maas-metrics/dashboard": catalogue.uid,
    }


def configmap(catalogue: Catalogue, *, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{catalogue.uid}-dashboard",
            "namespace": namespace,
            "labels": {SIDECAR_LABEL: "1", **_labels(catalogue)},
        },
        "data": {f"{catalogue.uid}.json": render_json(catalogue, importable=False)},
    }


def grafana_dashboard(
    catalogue: Catalogue, *, namespace: str, datasource_name: str, instance_labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": OPERATOR_API_VERSION,
        "kind": "GrafanaDashboard",
        "metadata": {"name": catalogue.uid, "namespace": namespace, "labels": _labels(catalogue)},
        "spec": {
            "instanceSelector": {"matchLabels": dict(instance_labels)},
            "resyncPeriod": "10m",
            "datasources": [{"inputName": DATASOURCE_INPUT, "datasourceName": datasource_name}],
            "json": render_json(catalogue, importable=True),
        },
    }


def render_configmap(catalogue: Catalogue, *, namespace: str = "monitoring") -> str:
    """The sidecar ConfigMap as YAML."""
    return _dump(configmap(catalogue, namespace=namespace))


def render_grafana_dashboard(
    catalogue: Catalogue,
    *,
    namespace: str = "monitoring",
    datasource_name: str = "Prometheus",
    instance_labels: dict[str, str] | None = None,
) -> str:
    """The grafana-operator `GrafanaDashboard` as YAML (instances selected by `dashboards: grafana`)."""
    return _dump(
        grafana_dashboard(
            catalogue,
            namespace=namespace,
            datasource_name=datasource_name,
            instance_labels=instance_labels or {"dashboards": "grafana"},
        )
    )
