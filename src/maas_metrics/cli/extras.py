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

#: The top-level modules each extra installs that its commands import.
EXTRA_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "gateway": ("starlette", "uvicorn", "aiohttp", "redis", "httptools"),
    "web": ("dash", "plotly"),
    "grafana": ("grafana_foundation_sdk",),
    "postgres": ("psycopg",),
    "demo": ("prometheus_client",),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(*extras: str) -> None:
    """Exit with one line naming the first extra a module of which is missing."""
    for extra in extras:
        missing = [m for m in EXTRA_MODULES[extra] if not _installed(m)]
        if missing:
            fail(
                f"this command needs the [{extra}] extra ({', '.join(missing)} not installed): "
                f"pip install 'maas-metrics[{extra}]'"
            )
