"""The demo's Grafana dashboard JSON: the same catalogue as the web page, for Grafana's Import."""

from __future__ import annotations

from pathlib import Path

from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.grafana import render_json


def write_grafana_json(config: Config, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_json(build_catalogue(config)), encoding="utf-8")
    return path
