"""Prometheus Operator resources: what to scrape (ServiceMonitors) and the rules (PrometheusRule)."""

from __future__ import annotations

from typing import Any

from maas_metrics.manifests.kuadrant import Manifest
from maas_metrics.services import GATEWAY_SERVICE, LIMITADOR_SERVICE

PART_OF = {"app.kubernetes.io/part-of": "maas-metrics"}

#: Labels the Limitador Operator puts on the `limitador-limitador` Service.
LIMITADOR_SELECTOR = {"app": "limitador", "limitador-resource": "limitador"}
GATEWAY_SELECTOR = {"app.kubernetes.io/name": GATEWAY_SERVICE}


def _service_monitor(
    name: str, namespace: str, selector: dict[str, str], interval: str, port: str = "http"
) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": dict(selector)},
            "endpoints": [{"port": port, "path": "/metrics", "interval": interval}],
        },
    }


def limitador_service_monitor(kuadrant_namespace: str, interval: str) -> Manifest:
    """Scrapes Limitador's Service `limitador-limitador` (port `http`, `/metrics`)."""
    return _service_monitor(LIMITADOR_SERVICE, kuadrant_namespace, LIMITADOR_SELECTOR, interval)


def gateway_service_monitor(namespace: str, interval: str) -> Manifest:
    """Scrapes the maas-metrics gateway's Service on its operator port `metrics` (not the API's)."""
    return _service_monitor(GATEWAY_SERVICE, namespace, GATEWAY_SELECTOR, interval, "metrics")


def prometheus_rule(namespace: str, groups: list[dict[str, Any]]) -> Manifest:
    """The recording and alerting rules of `maas-metrics rules`, for the Prometheus Operator."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "maas-metrics", "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {"groups": groups},
    }
