from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maas_metrics.config import Config, load_config
from tests.servers import RedisServer, redis_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "examples" / "maas.yaml"


@pytest.fixture(scope="session")
def example_config() -> Config:
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real redis-server per test."""
    with redis_server(tmp_path) as server:
        yield server
