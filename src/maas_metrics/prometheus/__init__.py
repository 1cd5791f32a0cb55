"""Talking to a real Prometheus: its HTTP API, and running the binary for demos and tests."""

from maas_metrics.prometheus.api import PrometheusAPI, PrometheusError, Sample, Series
from maas_metrics.prometheus.process import PrometheusProcess, ScrapeTarget

__all__ = [
    "PrometheusAPI",
    "PrometheusError",
    "PrometheusProcess",
    "Sample",
    "ScrapeTarget",
    "Series",
]
