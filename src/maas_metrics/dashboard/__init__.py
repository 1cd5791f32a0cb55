"""The MaaS Token Metrics dashboard as code: one panel catalogue, several renderers.

`build_catalogue(config)` defines every panel once (model.py); `expand`
(variables.py) turns its templated PromQL into exactly what Grafana sends;
grafana.py renders Grafana JSON, kubernetes.py wraps it for Kubernetes.
"""

from maas_metrics.dashboard.catalogue import DETAIL_LABELS, DETAIL_USERS, build_catalogue
from maas_metrics.dashboard.model import (
    Catalogue,
    Column,
    Grid,
    Panel,
    PanelKind,
    Target,
    Threshold,
    TierStyle,
    Variable,
)
from maas_metrics.dashboard.variables import ALL, Selection, expand, top_values

__all__ = [
    "ALL",
    "DETAIL_LABELS",
    "DETAIL_USERS",
    "Catalogue",
    "Column",
    "Grid",
    "Panel",
    "PanelKind",
    "Selection",
    "Target",
    "Threshold",
    "TierStyle",
    "Variable",
    "build_catalogue",
    "expand",
    "top_values",
]
