"""Set-ups several test files share: paths, the installed command, config building blocks.

Tests build their configs from these pieces so that a key's secret, its
SHA-256 in the config and the tier entry's shape are written once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from maas_metrics.config import hash_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "examples" / "maas.yaml"
DEMO_KEYS = ROOT / "examples" / "demo-keys.yaml"
CLI = str(Path(sys.executable).parent / "maas-metrics")
"""The installed `maas-metrics` command of this interpreter's environment, as a user runs it."""


def gateway_command(config_path: Path, port: int, operator_port: int) -> list[str]:
    """`maas-metrics gateway` for `config_path` on 127.0.0.1: API on `port`, /metrics on `operator_port`."""
    return [
        CLI,
        "gateway",
        "--config",
        str(config_path),
        "--port",
        str(port),
        "--operator-port",
        str(operator_port),
    ]


def secret(user: str) -> str:
    """The test API key of `user`; the config stores only its SHA-256."""
    return f"sk-{user}"


def api_keys(group: str, users: Iterable[str]) -> list[dict[str, Any]]:
    """Config `api_keys` entries putting every user in `group`, keyed by `secret(user)`."""
    return [{"user": u, "groups": [group], "sha256": hash_key(secret(u))} for u in users]


def tier(
    name: str,
    level: int,
    *,
    price_per_hit: float,
    requests: tuple[int, int],
    tokens: tuple[int, int],
    group: str | None = None,
) -> dict[str, Any]:
    """A config tier entry; `requests` and `tokens` are (max, window_seconds)."""
    return {
        "name": name,
        "level": level,
        "groups": [group or name],
        "price_per_hit": price_per_hit,
        "request_limit": {"max": requests[0], "window_seconds": requests[1]},
        "token_limit": {"max": tokens[0], "window_seconds": tokens[1]},
    }
