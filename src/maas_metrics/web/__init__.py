"""The built-in web dashboard: the Grafana dashboard's panels, rendered with Dash from Prometheus."""

from maas_metrics.web.app import create_app

__all__ = ["create_app"]
