"""`maas-metrics demo`: every component as a real process, started in order and always stopped."""

from maas_metrics.demo.stack import DemoOptions, DemoPorts, DemoStack

__all__ = ["DemoOptions", "DemoPorts", "DemoStack"]
