"""Kubernetes Service names that the manifests create and the alerts watch, owned by neither.

Prometheus Operator names a ServiceMonitor's `job` label after the Service it
scrapes, so these names are also the `job` labels the alert rules select.
"""

from __future__ import annotations

from typing import Final

LIMITADOR_SERVICE: Final = "limitador-limitador"
GATEWAY_SERVICE: Final = "maas-gateway"
