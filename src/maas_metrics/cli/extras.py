"""Commands whose optional extra is not installed fail with one line naming it.

`pip install maas-metrics[gateway]` brings no Dash, Plotly or Grafana SDK, so
the command modules import those lazily and check here first; pyproject.toml
lists the same packages per extra (tests/test_architecture.py keeps the two
in step).
"""

from __future__ import annotations

import importlib.util
from typing import Final

from maas_metrics.cli.common import fail

_GATEWAY: Final = ("starlette", "uvicorn", "aiohttp", "redis", "httptools")
_WEB: Final = ("dash", "plotly")
_GRAFANA: Final = ("grafana_foundation_sdk",)

#: The top-level modules each extra installs that its commands import.
EXTRA_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "gateway": _GATEWAY,
    "web": _WEB,
    "grafana": _GRAFANA,
    "postgres": ("psycopg",),
    "demo": (*_GATEWAY, *_WEB, *_GRAFANA, "prometheus_client"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(*extras: str) -> None:
    """Exit with one line naming the first of `extras` that is not fully installed."""
    for extra in extras:
        missing = [m for m in EXTRA_MODULES[extra] if not _installed(m)]
        if missing:
            fail(
                f"this command needs the [{extra}] extra ({', '.join(missing)} not installed): "
                f"pip install 'maas-metrics[{extra}]'"
            )
