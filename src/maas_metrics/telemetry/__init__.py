"""The metric contract: Limitador's counters and gauges plus `maas_` extras, and their exposition."""

from maas_metrics.telemetry.exposition import CONTENT_TYPE, render
from maas_metrics.telemetry.histogram import Histogram
from maas_metrics.telemetry.latency import LatencyMetrics
from maas_metrics.telemetry.metrics import Family, GatewayMetrics

__all__ = ["CONTENT_TYPE", "Family", "GatewayMetrics", "Histogram", "LatencyMetrics", "render"]
